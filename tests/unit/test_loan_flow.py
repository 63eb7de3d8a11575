"""The loan flow's decisions and fold, without a database: figures, states, replay.

The facility is the worked example of tests/unit/test_loan_worked_example.py
(USD 100,000,000.00, 5.25 % ACT/360, commitment fee 0.50 %, exposure fee
1.00 % per disbursement paid in cash, default margin 2.00 %, ten semi-annual
instalments from 2028-06-30), run as the hub runs it: signed, conditions
met, three disbursements, every date accrued, two repayments. Figures in
dollars are converted by :func:`usd`; each is worked out in the comments.

Continuing the worked example past 2027-06-30 (its H1 figures are the first
rows below):

- 2027-06-30 falls due: interest 1,046,354.17; fees 150,347.22 (commitment)
  + 200,000.00 + 300,000.00 + 150,000.00 (exposure) = 800,347.22. Repayment
  1 that day, 1,846,701.39, pays exactly both (fees first).
- H2, business dates 2027-06-30 to 2027-12-30 (184 days), on 65,000,000.00
  drawn and 35,000,000.00 undrawn:
  interest 3,412,500.00 x 184 / 360 = 1,744,166.666... -> 1,744,166.67;
  commitment fee 175,000.00 x 184 / 360 = 89,444.444... -> 89,444.44;
  due 2027-12-31, together 1,833,611.11.
- 2027-12-31 (the last day of availability, first day of the first
  instalment period) accrues on the balances at its end: interest
  3,412,500.00 / 360 = 9,479.166... -> 9,479.17 (carry 9,479.1666...);
  commitment fee 175,000.00 / 360 = 486.111... -> 486.11; and, the H2
  amounts being unpaid at the end of their due date, default interest
  1,833,611.11 x 2 % / 360 = 101.867... -> 101.87.
- 2028-01-01: availability ended (35,000,000.00 cancelled), repayment
  period started (schedule of ten 6,500,000.00 from 65,000,000.00).
  Repayment 2, 3,000,000.00: fees 89,444.44, default interest 101.87,
  interest 1,744,166.67, principal 3,000,000.00 - 1,833,712.98 =
  1,166,287.02, not yet due, so on the last instalment (2032-12-31):
  6,500,000.00 - 1,166,287.02 = 5,333,712.98 left on it; outstanding
  65,000,000.00 - 1,166,287.02 = 63,833,712.98.
- 2028-01-01 to 2028-01-10 accrue on 63,833,712.98: 3,351,269.93... a year
  / 360 x 10 = 93,090.831...; with 2027-12-31's 9,479.1666... the period's
  exact interest is 102,569.998... -> 102,570.00 posted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest

from ledger.errors import LedgerError
from ledger.records import NewEvent, NewTransaction, SignedInstruction
from settlement.loans import flow
from settlement.loans.accrual import BusinessDateMustBeNext
from settlement.loans.daycount import DayCount
from settlement.loans.disbursement import ConditionsPrecedentMustBeMet
from settlement.loans.states import TRANSITIONS, FacilityEvent, FacilityState, TransitionNotAllowed
from settlement.loans.terms import (
    ExposureFeeSettlement,
    ExposureFeeTiming,
    RateFixingMustBeSupplied,
    RateFixingMustNotBeSupplied,
)
from settlement.loans.waterfall import RepaymentMustNotExceedOutstanding
from tests.unit.test_loan_worked_example import usd

LENDER = "lender"
BORROWER_BANK = "bank-pk"
SUPPLIER_BANK = "bank-us"
FACILITY = "facility-2027-001"
SCREENED = flow.Screening(passed=True, best_score="0.0000", list_digest="sha256:test")


def signed(signer: str, instruction_id: str) -> flow.Signed:
    return flow.Signed(
        instruction_id,
        SignedInstruction(signer, json.dumps({"id": instruction_id}).encode(), b""),
    )


def terms_order(**changes: object) -> flow.TermsOrder:
    order = flow.TermsOrder(
        facility_id=FACILITY,
        borrower_id="pk-mining-company",
        borrower_bank_id=BORROWER_BANK,
        guarantor_id="pk-parent-guarantor",
        commitment_minor=usd("100,000,000.00"),
        currency="USD",
        availability_start="2027-01-01",
        availability_end="2027-12-31",
        interest_type="fixed",
        fixed_rate_percent="5.25",
        reference_rate="",
        margin_percent="",
        reference_floor_percent="",
        day_count=DayCount.ACT_360,
        commitment_fee_percent="0.50",
        exposure_fee_percent="1.00",
        exposure_fee_timing=ExposureFeeTiming.PER_DISBURSEMENT,
        exposure_fee_settlement=ExposureFeeSettlement.PAID,
        instalment_count=10,
        grace_period_months=6,
        default_margin_percent="2.00",
        conditions_precedent=(
            ("loan_agreement_legal_opinion", "Legal opinions of US and Pakistan counsel"),
            ("eca_cover_issued", "The export-credit agency's guarantee is in force"),
            ("sbp_loan_registration", "State Bank of Pakistan registration of the loan"),
        ),
        borrower_name="Pakistan Mining Company Limited",
        borrower_iban="PK36SCBL0000001123456702",
    )
    return dataclasses.replace(order, **changes)  # type: ignore[arg-type]


class Journal:
    """Decisions applied one after the other, as the hub commits them; leaves kept."""

    def __init__(self, order: flow.TermsOrder | None = None) -> None:
        order = order or terms_order()
        terms = flow.build_terms(order, LENDER)
        self.leaves: list[bytes] = []
        self.record = self.apply(
            flow.decide_create(
                terms, order.borrower_name, order.borrower_iban, signed(LENDER, "create")
            )
        )
        self.counter = 0

    def apply(self, decision: flow.Decision) -> flow.FacilityRecord:
        for command in decision.commands:
            if isinstance(command, NewEvent):
                instruction = command.instruction
                document = {
                    "kind": "event",
                    "event_type": command.event_type,
                    "body": command.body,
                    "instruction": {"signer": instruction.signer if instruction else ""},
                }
                self.leaves.append(json.dumps(document).encode())
        self.record = decision.record
        return decision.record

    def new_id(self, signer: str) -> flow.Signed:
        self.counter += 1
        return signed(signer, f"{signer}:{self.counter}")

    def sign(self, signer: str) -> None:
        order = flow.SignOrder(FACILITY, self.record.terms_sha256)
        self.apply(flow.decide_sign(self.record, order, self.new_id(signer)))

    def advance(self, event: FacilityEvent, business_date: str) -> flow.Decision:
        order = flow.AdvanceOrder(FACILITY, event, business_date, "")
        decision = flow.decide_advance(self.record, order, self.new_id(LENDER))
        self.apply(decision)
        return decision

    def make_available(self) -> None:
        self.sign(BORROWER_BANK)
        self.sign(LENDER)
        for condition in self.record.terms.conditions_precedent:
            order = flow.ConditionOrder(FACILITY, condition.condition_id, "counsel's letter")
            self.apply(flow.decide_condition(self.record, order, self.new_id(LENDER)))
        self.advance(FacilityEvent.CONDITIONS_PRECEDENT_MET, "2026-12-20")
        self.advance(FacilityEvent.AVAILABILITY_PERIOD_STARTED, "2027-01-01")

    def accrue_until(self, end: date) -> list[flow.Decision]:
        decisions = []
        while self.record.business_date < end:
            day = self.record.business_date
            instruction = signed(LENDER, flow.accrual_id(FACILITY, day))
            decision = flow.decide_accrual(self.record, day, instruction)
            self.apply(decision)
            decisions.append(decision)
        return decisions

    def disburse(self, amount: str, invoice: str, supplier: str) -> flow.Decision:
        order = flow.DisbursementOrder(
            facility_id=FACILITY,
            supplier_name=supplier,
            supplier_account_number="4711000123",
            supplier_bank_id=SUPPLIER_BANK,
            supplier_bank_aba="021000021",
            supplier_bank_bic="CHASUS33",
            amount_minor=usd(amount),
            currency="USD",
            invoice_reference=invoice,
            value_date=self.record.business_date.isoformat(),
        )
        request_signed = self.new_id(BORROWER_BANK)
        request = flow.check_disbursement_order(order, request_signed.instruction_id)
        requested = flow.decide_request(self.record, order, request, SCREENED, request_signed)
        self.apply(requested)
        disbursement = flow.DisbursementRecord.from_request_body(
            _event(requested).body  # the request as the projection stores it
        )
        review = flow.ReviewOrder(FACILITY, disbursement.disbursement_id, True, _uetr(), "")
        decision = flow.decide_review(
            self.record,
            disbursement,
            review,
            SCREENED,
            self.new_id(LENDER),
            lambda checked: plan(checked.supplier_payment_minor),
        )
        self.apply(decision)
        return decision

    def repay(self, amount_minor: int) -> flow.Decision:
        day = self.record.business_date
        order = flow.RepayOrder(FACILITY, amount_minor, "USD", "", _uetr(), day.isoformat())
        decision = flow.decide_repay(
            self.record, order, day, self.new_id(BORROWER_BANK), lambda number: plan(amount_minor)
        )
        self.apply(decision)
        return decision


def _uetr() -> str:
    return "3f1c8b7e-6a2d-4c5e-9f10-2b3c4d5e6f70"


def _event(decision: flow.Decision) -> NewEvent:
    event = decision.commands[0]
    assert isinstance(event, NewEvent)
    return event


def plan(amount_minor: int) -> flow.PaymentPlan:
    """A payment with no commands: these tests are about the loan's own entries."""
    return flow.PaymentPlan("payment:test", amount_minor, "USD", "", ())


def booking(decision: flow.Decision) -> list[tuple[str, str, int]]:
    """The loan transaction's postings as (side, account kind, amount), in order."""
    transactions = [
        command
        for command in decision.commands
        if isinstance(command, NewTransaction) and command.id.startswith("loan:")
    ]
    assert len(transactions) == 1
    return [
        (posting.side.value, posting.account_id.split(":")[2], posting.amount_minor)
        for posting in transactions[0].postings
    ]


@pytest.fixture(scope="module")
def scenario() -> Journal:
    """The facility run from signing to 2028-01-10 (see the module docstring)."""
    journal = Journal()
    journal.make_available()
    for value_date, amount, invoice, supplier in (
        (date(2027, 1, 15), "20,000,000.00", "INV-TRUCKS-001", "Peoria Mining Trucks Inc."),
        (date(2027, 3, 1), "30,000,000.00", "INV-LOCO-001", "Erie Locomotive Works LLC"),
        (date(2027, 6, 15), "15,000,000.00", "INV-CONV-001", "Gulf Coast Conveyors Inc."),
    ):
        journal.accrue_until(value_date)
        journal.disburse(amount, invoice, supplier)
    journal.accrue_until(date(2027, 6, 30))
    return journal


def test_the_first_half_matches_the_worked_example(scenario: Journal) -> None:
    record = scenario.record
    assert record.state is FacilityState.AVAILABLE
    assert record.business_date == date(2027, 6, 30)
    assert record.outstanding_principal_minor == usd("65,000,000.00")
    assert record.remaining_commitment_minor == usd("35,000,000.00")
    # The period 2027-01-01 to 2027-06-30 ended: what it booked is due.
    assert record.accrual.period_start == date(2027, 6, 30)
    assert record.interest_due_minor == usd("1,046,354.17")
    assert record.fees_due_minor == usd("150,347.22") + usd("650,000.00")
    assert record.interest_accruing_minor == record.fees_accruing_minor == 0
    assert flow.expected_balances(record) == {
        flow.LoanAccount.PRINCIPAL: usd("65,000,000.00"),
        flow.LoanAccount.INTEREST_RECEIVABLE: usd("1,046,354.17"),
        flow.LoanAccount.DEFAULT_INTEREST_RECEIVABLE: 0,
        flow.LoanAccount.FEES_RECEIVABLE: usd("800,347.22"),
        flow.LoanAccount.INTEREST_INCOME: usd("1,046,354.17"),
        flow.LoanAccount.FEE_INCOME: usd("800,347.22"),
        flow.LoanAccount.CASH_CLEARING: usd("65,000,000.00"),
    }


def test_the_loan_runs_on_to_two_repayments(scenario: Journal) -> None:
    journal = Journal.__new__(Journal)
    journal.__dict__.update(scenario.__dict__, leaves=list(scenario.leaves))

    first = journal.repay(usd("1,846,701.39"))
    assert booking(first) == [
        ("debit", "cash_clearing", usd("1,846,701.39")),
        ("credit", "fees_receivable", usd("800,347.22")),
        ("credit", "interest_receivable", usd("1,046,354.17")),
    ]
    journal.accrue_until(date(2027, 12, 31))
    assert journal.record.interest_due_minor == usd("1,744,166.67")
    assert journal.record.fees_due_minor == usd("89,444.44")
    (last_day,) = journal.accrue_until(date(2028, 1, 1))
    assert _event(last_day).body["interest_minor"] == str(usd("9,479.17"))
    assert _event(last_day).body["commitment_fee_minor"] == str(usd("486.11"))
    assert _event(last_day).body["default_interest_minor"] == str(usd("101.87"))
    assert booking(last_day) == [
        ("debit", "interest_receivable", usd("9,479.17")),
        ("credit", "interest_income", usd("9,479.17")),
        ("debit", "fees_receivable", usd("486.11")),
        ("credit", "fee_income", usd("486.11")),
        ("debit", "default_interest_receivable", usd("101.87")),
        ("credit", "interest_income", usd("101.87")),
    ]

    journal.advance(FacilityEvent.AVAILABILITY_PERIOD_ENDED, "2028-01-01")
    assert journal.record.cancelled_minor == usd("35,000,000.00")
    started = journal.advance(FacilityEvent.REPAYMENT_PERIOD_STARTED, "2028-01-01")
    assert [command.id for command in started.commands][1] == f"loan:{FACILITY}:schedule"
    schedule = journal.record.schedule
    assert schedule is not None
    assert schedule.instalments[0].projected_interest_minor == usd("1,725,208.33")

    second = journal.repay(usd("3,000,000.00"))
    assert _event(second).body["split"] == {
        "fees_minor": str(usd("89,444.44")),
        "default_interest_minor": str(usd("101.87")),
        "interest_minor": str(usd("1,744,166.67")),
        "principal_due_minor": "0",
        "principal_early_minor": str(usd("1,166,287.02")),
        "principal": [{"number": 10, "principal_minor": str(usd("1,166,287.02")), "early": True}],
    }
    record = journal.record
    assert record.outstanding_principal_minor == usd("63,833,712.98")
    assert record.instalments[-1].principal_minor == usd("5,333,712.98")
    assert record.repaid_principal_minor == usd("1,166,287.02")

    journal.accrue_until(date(2028, 1, 11))
    record = journal.record
    assert record.interest_accruing_minor == usd("102,570.00")
    assert flow.expected_balances(record) == {
        flow.LoanAccount.PRINCIPAL: usd("63,833,712.98"),
        flow.LoanAccount.INTEREST_RECEIVABLE: usd("102,570.00"),
        flow.LoanAccount.DEFAULT_INTEREST_RECEIVABLE: 0,
        flow.LoanAccount.FEES_RECEIVABLE: usd("486.11"),
        # 1,046,354.17 + 1,744,166.67 + 102,570.00 + 101.87
        flow.LoanAccount.INTEREST_INCOME: usd("2,893,192.71"),
        # 650,000.00 + 150,347.22 + 89,444.44 + 486.11
        flow.LoanAccount.FEE_INCOME: usd("890,277.77"),
        # 65,000,000.00 - 1,846,701.39 - 3,000,000.00
        flow.LoanAccount.CASH_CLEARING: usd("60,153,298.61"),
    }

    # The auditor's fold of the events alone gives the same record.
    rebuilt = flow.rebuild_facilities(journal.leaves)
    assert flow.record_document(rebuilt[FACILITY]) == flow.record_document(record)


def test_a_changed_figure_does_not_replay(scenario: Journal) -> None:
    leaves = list(scenario.leaves)
    for position in reversed(range(len(leaves))):
        document = json.loads(leaves[position])
        if document["event_type"] == flow.EVENT_ACCRUED:
            document["body"]["interest_minor"] = str(int(document["body"]["interest_minor"]) + 1)
            leaves[position] = json.dumps(document).encode()
            break
    with pytest.raises(flow.LoanEventMustReplay, match="interest_minor"):
        flow.rebuild_facilities(leaves)


def test_the_record_survives_its_document(scenario: Journal) -> None:
    document = flow.record_document(scenario.record)
    assert flow.record_from_document(json.loads(json.dumps(document))) == scenario.record


# -- state tables --------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(FacilityState), ids=[state.value for state in FacilityState])
def test_every_event_the_table_refuses_is_refused(state: FacilityState) -> None:
    journal = Journal()
    record = dataclasses.replace(journal.record, state=state)
    refused = 0
    for event in FacilityEvent:
        if event in TRANSITIONS[state]:
            continue
        attempt: Callable[[], flow.Decision]
        if event is FacilityEvent.LENDER_SIGNED or event is FacilityEvent.BORROWER_BANK_SIGNED:
            signer = LENDER if event is FacilityEvent.LENDER_SIGNED else BORROWER_BANK
            order = flow.SignOrder(FACILITY, record.terms_sha256)

            def attempt(order: flow.SignOrder = order, signer: str = signer) -> flow.Decision:
                return flow.decide_sign(record, order, signed(signer, "x"))

            expected: type[LedgerError] = TransitionNotAllowed
        else:
            advance = flow.AdvanceOrder(FACILITY, event, "2028-01-01", "")

            def attempt(advance: flow.AdvanceOrder = advance) -> flow.Decision:
                return flow.decide_advance(record, advance, signed(LENDER, "x"))

            expected = (
                TransitionNotAllowed
                if event in flow.DECLARABLE_EVENTS
                else flow.EventMustBeDeclarable
            )
        with pytest.raises(expected):
            attempt()
        refused += 1
    assert refused == len(FacilityEvent) - len(TRANSITIONS[state])


def test_the_signatures_commit_to_the_terms() -> None:
    journal = Journal()
    wrong = flow.SignOrder(FACILITY, "0" * 64)
    with pytest.raises(flow.TermsMustMatch):
        flow.decide_sign(journal.record, wrong, signed(BORROWER_BANK, "x"))
    journal.sign(BORROWER_BANK)
    assert journal.record.state.value == "signed_by_borrower_bank"
    with pytest.raises(TransitionNotAllowed):
        journal.sign(BORROWER_BANK)
    journal.sign(LENDER)
    assert journal.record.state.value == "signed"


def test_conditions_must_be_met_before_the_facility_is_effective() -> None:
    journal = Journal()
    journal.sign(LENDER)
    journal.sign(BORROWER_BANK)
    with pytest.raises(ConditionsPrecedentMustBeMet, match="eca_cover_issued"):
        journal.advance(FacilityEvent.CONDITIONS_PRECEDENT_MET, "2026-12-20")
    with pytest.raises(flow.ConditionMustExist):
        flow.decide_condition(
            journal.record, flow.ConditionOrder(FACILITY, "nope", "x"), signed(LENDER, "x")
        )


# -- accrual rules -------------------------------------------------------------------------------


def test_a_date_accrues_once_and_none_is_skipped(scenario: Journal) -> None:
    record = scenario.record
    for day in (record.business_date - timedelta(days=1), record.business_date + timedelta(1)):
        with pytest.raises(BusinessDateMustBeNext):
            flow.decide_accrual(record, day, signed(LENDER, flow.accrual_id(FACILITY, day)))


def test_balance_changes_happen_on_the_business_date(scenario: Journal) -> None:
    record = scenario.record
    order = flow.RepayOrder(FACILITY, 100, "USD", "", _uetr(), "2027-07-01")
    with pytest.raises(flow.ValueDateMustBeBusinessDate):
        flow.decide_repay(record, order, date(2027, 7, 1), signed(BORROWER_BANK, "x"), plan)


def test_an_overpayment_is_refused_with_the_payoff() -> None:
    journal = Journal()
    journal.make_available()
    journal.accrue_until(date(2027, 1, 15))
    journal.disburse("1,000,000.00", "INV-1", "Peoria Mining Trucks Inc.")
    # Nothing is due yet (no period has ended) and there is no schedule.
    with pytest.raises(RepaymentMustNotExceedOutstanding, match="expected at most 0"):
        journal.repay(1)


def test_accrual_needs_an_available_facility() -> None:
    journal = Journal()
    day = journal.record.business_date
    with pytest.raises(flow.FacilityMustBeAccruing):
        flow.decide_accrual(journal.record, day, signed(LENDER, flow.accrual_id(FACILITY, day)))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2027, 1, 1), date(2027, 6, 30)),  # six months before the end of availability
        (date(2027, 6, 30), date(2027, 12, 31)),
        (date(2027, 12, 31), date(2028, 6, 30)),  # the first instalment
        (date(2028, 6, 30), date(2028, 12, 31)),
        (date(2032, 12, 31), date(2033, 6, 30)),  # past maturity: every six months on
    ],
)
def test_interest_periods(start: date, end: date) -> None:
    terms = flow.build_terms(terms_order(), LENDER)
    assert flow.interest_period_end(terms, start) == end
    assert flow.is_interest_period_start(terms, start)
    assert not flow.is_interest_period_start(terms, start + timedelta(days=1))


def test_interest_periods_follow_a_grace_period_that_is_not_six_months() -> None:
    terms = flow.build_terms(terms_order(grace_period_months=3), LENDER)
    assert flow.interest_period_end(terms, date(2027, 12, 31)) == date(2028, 3, 31)
    assert flow.interest_period_end(terms, date(2028, 3, 31)) == date(2028, 9, 30)


# -- floating rate ------------------------------------------------------------------------------


def test_a_floating_facility_accrues_at_each_periods_fixing() -> None:
    journal = Journal(
        terms_order(
            interest_type="floating",
            reference_rate="TERM_SOFR_6M",
            margin_percent="1.20",
            fixed_rate_percent="",
        )
    )
    journal.make_available()
    day = journal.record.business_date
    with pytest.raises(RateFixingMustBeSupplied):
        flow.decide_accrual(journal.record, day, signed(LENDER, flow.accrual_id(FACILITY, day)))
    fixing = flow.FixingOrder(FACILITY, "TERM_SOFR_6M", "2027-01-01", "3.80")
    journal.apply(flow.decide_fixing(journal.record, fixing, journal.new_id(LENDER)))
    assert journal.record.rate_percent() == Decimal("5.00")
    with pytest.raises(flow.RateFixingExists):
        flow.decide_fixing(journal.record, fixing, journal.new_id(LENDER))
    not_a_start = dataclasses.replace(fixing, period_start="2027-02-01")
    with pytest.raises(flow.PeriodStartMustBeInterestPeriodStart):
        flow.decide_fixing(journal.record, not_a_start, journal.new_id(LENDER))
    journal.accrue_until(date(2027, 1, 15))
    journal.disburse("20,000,000.00", "INV-1", "Peoria Mining Trucks Inc.")
    (first,) = journal.accrue_until(date(2027, 1, 16))
    # 20,000,000.00 x 5.00 % / 360 = 2,777.777... -> 2,777.78
    assert _event(first).body["interest_minor"] == str(usd("2,777.78"))
    with pytest.raises(flow.RateFixingMustPrecedePeriod):
        flow.decide_fixing(journal.record, fixing, journal.new_id(LENDER))


def test_a_fixed_facility_takes_no_fixing() -> None:
    journal = Journal()
    fixing = flow.FixingOrder(FACILITY, "TERM_SOFR_6M", "2027-01-01", "3.80")
    with pytest.raises(RateFixingMustNotBeSupplied):
        flow.decide_fixing(journal.record, fixing, journal.new_id(LENDER))


# -- the end of the loan ------------------------------------------------------------------------


def test_acceleration_makes_all_principal_due_and_the_payoff_closes() -> None:
    journal = Journal(terms_order(commitment_minor=usd("1,000,000.00")))
    journal.make_available()
    journal.accrue_until(date(2027, 1, 15))
    journal.disburse("600,000.00", "INV-1", "Peoria Mining Trucks Inc.")
    journal.accrue_until(date(2027, 2, 1))
    journal.advance(FacilityEvent.DEFAULT_DECLARED, "2027-02-01")
    journal.advance(FacilityEvent.ACCELERATION_DECLARED, "2027-02-01")
    record = journal.record
    assert record.state is FacilityState.ACCELERATED
    assert record.cancelled_minor == usd("400,000.00")
    assert record.principal_due_minor(date(2027, 2, 1)) == usd("600,000.00")
    # Principal is payable at once; the exposure fee and interest of the
    # running period fall due at its end (2027-06-30).
    journal.repay(usd("600,000.00"))
    assert journal.record.outstanding_principal_minor == 0
    assert journal.record.state.value == "accelerated"
    journal.accrue_until(date(2027, 6, 30))
    record = journal.record
    # 17 days of interest on 600,000.00 at 5.25 %: 31,500.00 / 360 x 17 = 1,487.50;
    # commitment fee on 400,000.00 for 14 days then 0 after the cancellation:
    # 2,000.00 / 360 x 14 = 77.78 (77.777...), plus 17 days on 400,000.00 while still
    # committed, 2,000.00 / 360 x 17 = 94.44..., together 172.22 (172.222...).
    assert record.interest_due_minor == usd("1,487.50")
    payoff = record.outstanding(record.business_date).total_minor
    assert payoff == (
        record.interest_due_minor + record.fees_due_minor + record.default_interest_due_minor
    )
    closing = journal.repay(payoff)
    assert _event(closing).body["to_state"] == FacilityState.CLOSED.value
    assert journal.record.state.value == "closed"
    day = journal.record.business_date
    with pytest.raises(flow.FacilityMustBeAccruing):
        flow.decide_accrual(journal.record, day, signed(LENDER, flow.accrual_id(FACILITY, day)))
