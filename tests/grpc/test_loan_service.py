"""LoanService over mutual TLS, on SQLite and on PostgreSQL (loan.proto).

The facility is the worked example of tests/unit/test_loan_worked_example.py
(USD 100,000,000.00 at 5.25 % ACT/360, commitment fee 0.50 %, exposure fee
1.00 % per disbursement paid in cash, default margin 2.00 %, ten semi-annual
instalments from 2028-06-30), run end to end over gRPC: the lender
proposes it, the lender and the borrower's bank (bank-pk) sign it, the
conditions precedent are met, three disbursements pay three US suppliers'
banks, every date from 2027-01-01 to 2028-01-10 is accrued, the schedule is
generated and fetched, and bank-pk repays twice, each time in PKR converted
to USD through an FX quote and settled payment versus payment. The
figures, worked out by hand in tests/unit/test_loan_flow.py, are asserted
to the cent on the ledger (LedgerService.GetBalance), and outstanding
principal on the principal account equals disbursed minus repaid principal
after every step. Then the auditor's export bundle verifies, and the loan's
balances and figures are rebuilt from its leaves alone.

The module's own development PKI adds two US banks to the demo ones, so that
each supplier's bank is a different participant and each sees only its own
disbursement.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from ledger import bundle
from ledger.keys import load_public_key, public_key_bytes
from ledger.verify import verify_bundle
from settlement.auth import Role
from settlement.loans import flow
from settlement.loans.states import TRANSITIONS, FacilityEvent, FacilityState
from settlement.pki import (
    DEMO_PARTICIPANTS,
    DemoParticipant,
    DevPki,
    aba_with_check_digit,
    create_dev_pki,
    lei_with_check_digits,
)
from settlement.v1 import (
    audit_pb2,
    common_pb2,
    ledger_pb2,
    loan_pb2,
    loan_pb2_grpc,
    participant_pb2,
    payment_pb2,
    payment_pb2_grpc,
)
from tests.grpc.hub_client import (
    CALL_TIMEOUT_SECONDS,
    EXISTS,
    INVALID,
    NOT_FOUND,
    OPERATOR,
    PRECONDITION,
    HubClient,
    refusal,
    registration,
    running_hub,
    type_name,
)
from tests.unit.test_loan_worked_example import usd

LENDER = "lender"
BORROWER_BANK = "bank-pk"
FX = "fx-provider"
AUDITOR = "auditor"
TRUCKS_BANK = "bank-us"
RAIL_BANK = "bank-us-rail"
CONVEYOR_BANK = "bank-us-gulf"

EXTRA_BANKS = (
    DemoParticipant(
        RAIL_BANK,
        Role.BANK,
        "US",
        "Second Example Bank of Charlotte (demo)",
        bic="BOFAUS3NXXX",
        lei=lei_with_check_digits("5493000DEMOBANKUS1"),
        aba_routing_number=aba_with_check_digit("02600959"),
    ),
    DemoParticipant(
        CONVEYOR_BANK,
        Role.BANK,
        "US",
        "Third Example Bank of San Francisco (demo)",
        bic="WFBIUS6SXXX",
        lei=lei_with_check_digits("5493000DEMOBANKUS2"),
        aba_routing_number=aba_with_check_digit("12100024"),
    ),
)

BORROWER_NAME = "Pakistan Mining Company Limited"
BORROWER_IBAN = "PK13HABB0000001123456702"
"""The borrower's account at bank-pk (bank code HABB), a valid IBAN."""

PKR_PER_USD_INVERSE = "0.0035906643"
"""USD per PKR (about 278.50 PKR a dollar): the FX provider's PKR -> USD rate."""

LENDER_USD_MINOR = usd("70,000,000.00")
BORROWER_BANK_PKR_MINOR = 200_000_000_000
"""PKR 2,000,000,000.00: enough for both repayments at the test rate."""
FX_USD_MINOR = usd("10,000,000.00")

CONDITIONS = (
    ("loan_agreement_legal_opinion", "Legal opinions of US and Pakistan counsel"),
    ("eca_cover_issued", "The export-credit agency's guarantee is in force"),
    ("sbp_loan_registration", "State Bank of Pakistan registration of the loan"),
)


@dataclass(frozen=True)
class Supplier:
    name: str
    account_number: str
    bank_id: str
    aba: str
    bic: str


SUPPLIERS = {
    TRUCKS_BANK: Supplier(
        "Peoria Mining Trucks Inc.", "4711000123", TRUCKS_BANK, "021000021", "CHASUS33"
    ),
    RAIL_BANK: Supplier(
        "Erie Locomotive Works LLC",
        "5500012345",
        RAIL_BANK,
        aba_with_check_digit("02600959"),
        "BOFAUS3N",
    ),
    CONVEYOR_BANK: Supplier(
        "Gulf Coast Conveyors Inc.",
        "88001234",
        CONVEYOR_BANK,
        aba_with_check_digit("12100024"),
        "WFBIUS6S",
    ),
}

WRITES: dict[str, tuple[str, type[Message]]] = {
    type_name(loan_pb2.CreateFacilityInstruction): (
        "CreateFacility",
        loan_pb2.CreateFacilityRequest,
    ),
    type_name(loan_pb2.SignFacilityInstruction): ("SignFacility", loan_pb2.SignFacilityRequest),
    type_name(loan_pb2.SatisfyConditionInstruction): (
        "SatisfyCondition",
        loan_pb2.SatisfyConditionRequest,
    ),
    type_name(loan_pb2.AdvanceFacilityInstruction): (
        "AdvanceFacility",
        loan_pb2.AdvanceFacilityRequest,
    ),
    type_name(loan_pb2.SetRateFixingInstruction): (
        "SetRateFixing",
        loan_pb2.SetRateFixingRequest,
    ),
    type_name(loan_pb2.RequestDisbursementInstruction): (
        "RequestDisbursement",
        loan_pb2.RequestDisbursementRequest,
    ),
    type_name(loan_pb2.ReviewDisbursementInstruction): (
        "ReviewDisbursement",
        loan_pb2.ReviewDisbursementRequest,
    ),
    type_name(loan_pb2.AccrueInterestInstruction): (
        "AccrueInterest",
        loan_pb2.AccrueInterestRequest,
    ),
    type_name(loan_pb2.RepayInstruction): ("Repay", loan_pb2.RepayRequest),
}


def new_id(who: str) -> str:
    return f"{who}:{uuid.uuid4()}"


def instruction(message_type: type[Message], who: str, **fields: Any) -> Any:
    return message_type(
        instruction_id=fields.pop("instruction_id", None) or new_id(who),
        participant_id=who,
        instruction_type=type_name(message_type),
        **fields,
    )


def terms(facility_id: str, **changes: Any) -> loan_pb2.FacilityTerms:
    values: dict[str, Any] = {
        "facility_id": facility_id,
        "borrower_id": "pk-mining-company",
        "borrower_bank_id": BORROWER_BANK,
        "guarantor_id": "pk-parent-guarantor",
        "commitment_minor": usd("100,000,000.00"),
        "currency": "USD",
        "availability_start": "2027-01-01",
        "availability_end": "2027-12-31",
        "interest_type": loan_pb2.INTEREST_TYPE_FIXED,
        "fixed_rate_percent": "5.25",
        "day_count": loan_pb2.DAY_COUNT_ACT_360,
        "commitment_fee_percent": "0.50",
        "exposure_fee_percent": "1.00",
        "exposure_fee_timing": loan_pb2.EXPOSURE_FEE_TIMING_PER_DISBURSEMENT,
        "exposure_fee_settlement": loan_pb2.EXPOSURE_FEE_SETTLEMENT_PAID,
        "instalment_count": 10,
        "grace_period_months": 6,
        "default_margin_percent": "2.00",
        "conditions_precedent": [
            loan_pb2.ConditionPrecedent(condition_id=condition_id, description=description)
            for condition_id, description in CONDITIONS
        ],
        "borrower_name": BORROWER_NAME,
        "borrower_iban": BORROWER_IBAN,
    }
    values.update(changes)
    return loan_pb2.FacilityTerms(**values)


class LoanHub:
    """The hub client with LoanService stubs and the loan's instruction builders."""

    def __init__(self, client: HubClient) -> None:
        self.client = client

    def loans(self, who: str) -> loan_pb2_grpc.LoanServiceStub:
        return loan_pb2_grpc.LoanServiceStub(self.client.channel(who))

    def payments(self, who: str) -> payment_pb2_grpc.PaymentServiceStub:
        return payment_pb2_grpc.PaymentServiceStub(self.client.channel(who))

    def send(self, message: Any, who: str | None = None) -> Any:
        """The RPC of the instruction's type, called by ``who`` (default: the signer)."""
        method, request_type = WRITES[message.instruction_type]
        request = request_type(instruction=self.client.sign(message))
        caller = who or message.participant_id
        return getattr(self.loans(caller), method)(request, timeout=CALL_TIMEOUT_SECONDS)

    def facility(self, facility_id: str, who: str = LENDER) -> loan_pb2.Facility:
        return (
            self.loans(who)
            .GetFacility(
                loan_pb2.GetFacilityRequest(facility_id=facility_id), timeout=CALL_TIMEOUT_SECONDS
            )
            .facility
        )

    def net(self, account_id: str, who: str = LENDER) -> int:
        """Posted balance on the account's normal side (debits - credits for debit-normal).

        Settlement accounts and the loan's income and clearing accounts are
        credit-normal; its principal and receivables debit-normal.
        """
        response = self.client.ledger(who).GetBalance(
            ledger_pb2.GetBalanceRequest(account_id=account_id), timeout=CALL_TIMEOUT_SECONDS
        )
        net = response.balance.debits_posted_minor - response.balance.credits_posted_minor
        debit_normal = (
            account_id.startswith("loan:")
            and flow.LoanAccount(account_id.split(":")[2]) in flow.DEBIT_NORMAL_ACCOUNTS
        )
        return int(net if debit_normal else -net)

    def create(self, facility_id: str, **changes: Any) -> Any:
        message = instruction(
            loan_pb2.CreateFacilityInstruction, LENDER, terms=terms(facility_id, **changes)
        )
        return self.send(message)

    def sign(self, facility_id: str, who: str) -> Any:
        sha256 = self.facility(facility_id).terms_sha256
        message = instruction(
            loan_pb2.SignFacilityInstruction, who, facility_id=facility_id, terms_sha256=sha256
        )
        return self.send(message)

    def advance(self, facility_id: str, event: int, business_date: str) -> Any:
        return self.send(self.advance_instruction(facility_id, event, business_date))

    @staticmethod
    def advance_instruction(facility_id: str, event: int, business_date: str) -> Any:
        return instruction(
            loan_pb2.AdvanceFacilityInstruction,
            LENDER,
            facility_id=facility_id,
            event=event,
            business_date=business_date,
        )

    def make_available(self, facility_id: str) -> None:
        self.sign(facility_id, BORROWER_BANK)
        self.sign(facility_id, LENDER)
        for condition_id, _ in CONDITIONS:
            self.send(
                instruction(
                    loan_pb2.SatisfyConditionInstruction,
                    LENDER,
                    facility_id=facility_id,
                    condition_id=condition_id,
                    evidence=f"document {condition_id}",
                )
            )
        self.advance(facility_id, loan_pb2.FACILITY_EVENT_CONDITIONS_PRECEDENT_MET, "2026-12-20")
        self.advance(facility_id, loan_pb2.FACILITY_EVENT_AVAILABILITY_PERIOD_STARTED, "2027-01-01")

    @staticmethod
    def accrual_instruction(facility_id: str, day: date) -> Any:
        return instruction(
            loan_pb2.AccrueInterestInstruction,
            LENDER,
            instruction_id=flow.accrual_id(facility_id, day),
            facility_id=facility_id,
            business_date=day.isoformat(),
        )

    def accrue_until(self, facility_id: str, end: date, check: Callable[[], None]) -> None:
        """Accrue every business date before ``end``; ``check`` the ledger after each."""
        day = date.fromisoformat(self.facility(facility_id).business_date)
        while day < end:
            response = self.send(self.accrual_instruction(facility_id, day))
            assert response.result.status == common_pb2.COMMIT_STATUS_CREATED
            assert response.accrual.business_date == day.isoformat()
            check()
            day += timedelta(days=1)

    def disbursement_instruction(
        self, facility_id: str, supplier: Supplier, amount_minor: int, invoice: str, value: str
    ) -> Any:
        return instruction(
            loan_pb2.RequestDisbursementInstruction,
            BORROWER_BANK,
            facility_id=facility_id,
            supplier_name=supplier.name,
            supplier_account_number=supplier.account_number,
            supplier_bank_id=supplier.bank_id,
            supplier_bank_aba=supplier.aba,
            supplier_bank_bic=supplier.bic,
            amount_minor=amount_minor,
            currency="USD",
            invoice_reference=invoice,
            value_date=value,
        )

    def disburse(
        self, facility_id: str, supplier: Supplier, amount_minor: int, invoice: str
    ) -> Any:
        value = self.facility(facility_id).business_date
        requested = self.send(
            self.disbursement_instruction(facility_id, supplier, amount_minor, invoice, value)
        )
        assert requested.disbursement.status == loan_pb2.DISBURSEMENT_STATUS_REQUESTED
        return self.send(
            instruction(
                loan_pb2.ReviewDisbursementInstruction,
                LENDER,
                facility_id=facility_id,
                disbursement_id=requested.disbursement.disbursement_id,
                decision=loan_pb2.DISBURSEMENT_DECISION_APPROVE,
                uetr=str(uuid.uuid4()),
                reason="invoice and bill of lading checked",
            )
        )

    def publish_rate(self) -> None:
        message = instruction(
            payment_pb2.PublishRateInstruction,
            FX,
            source_currency="PKR",
            target_currency="USD",
            rate=PKR_PER_USD_INVERSE,
            valid_seconds=3600,
        )
        self.payments(FX).PublishRate(
            payment_pb2.PublishRateRequest(instruction=self.client.sign(message)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def quote(self, usd_minor: int) -> payment_pb2.Quote:
        message = instruction(
            payment_pb2.RequestQuoteInstruction,
            BORROWER_BANK,
            fx_provider_id=FX,
            source_currency="PKR",
            target_currency="USD",
            fixed_side=payment_pb2.FIXED_SIDE_RECEIVE,
            amount_minor=usd_minor,
        )
        return (
            self.payments(BORROWER_BANK)
            .RequestQuote(
                payment_pb2.RequestQuoteRequest(instruction=self.client.sign(message)),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            .quote
        )

    def repay(self, facility_id: str, usd_minor: int, quote_id: str = "") -> Any:
        return self.send(
            instruction(
                loan_pb2.RepayInstruction,
                BORROWER_BANK,
                facility_id=facility_id,
                amount_minor=usd_minor,
                currency="USD",
                quote_id=quote_id,
                uetr=str(uuid.uuid4()),
                value_date=self.facility(facility_id).business_date,
            )
        )


@pytest.fixture(scope="module")
def loan_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(
        tmp_path_factory.mktemp("loan") / "pki",
        participants=(*DEMO_PARTICIPANTS, *EXTRA_BANKS),
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def loan_hub(
    request: pytest.FixtureRequest,
    loan_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
) -> Iterator[LoanHub]:
    with database_factory(request.param) as location, running_hub(loan_pki, location) as client:
        for bank in EXTRA_BANKS:
            participant = loan_pki.participant(bank.participant_id)
            registered, _ = registration(
                instruction_id=f"operator:register:{bank.participant_id}",
                target_participant_id=bank.participant_id,
                legal_name=bank.legal_name,
                bic=bank.bic,
                lei=bank.lei,
                aba_routing_number=bank.aba_routing_number,
                certificate_common_name=participant.certificate_common_name,
                signing_public_key=public_key_bytes(
                    load_public_key(participant.signing_public_key_path)
                ),
            )
            client.participants().RegisterParticipant(
                participant_pb2.RegisterParticipantRequest(instruction=client.sign(registered)),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        for owner, currency, amount in (
            (LENDER, "USD", LENDER_USD_MINOR),
            (BORROWER_BANK, "USD", 0),
            (BORROWER_BANK, "PKR", BORROWER_BANK_PKR_MINOR),
            (FX, "USD", FX_USD_MINOR),
            (FX, "PKR", 0),
            (TRUCKS_BANK, "USD", 0),
            (RAIL_BANK, "USD", 0),
            (CONVEYOR_BANK, "USD", 0),
        ):
            account_id = client.open_account(owner, currency)
            if amount:
                client.fund(account_id, amount, currency)
        hub = LoanHub(client)
        hub.publish_rate()
        yield hub


def account(facility_id: str, kind: flow.LoanAccount) -> str:
    return flow.account_id(facility_id, kind)


def settlement(owner: str, currency: str = "USD") -> str:
    return f"settlement:{owner}:{currency}"


# -- the facility, end to end ---------------------------------------------------------------------


def test_facility_end_to_end(loan_hub: LoanHub, tmp_path: Path) -> None:
    hub = loan_hub
    facility_id = "facility-2027-001"
    principal = account(facility_id, flow.LoanAccount.PRINCIPAL)
    drawn_minor = 0
    repaid_minor = 0

    def principal_reconciles() -> None:
        """Outstanding principal on the ledger = disbursed - repaid, by every account."""
        facility = hub.facility(facility_id)
        assert hub.net(principal) == drawn_minor - repaid_minor
        assert facility.outstanding_principal.amount_minor == drawn_minor - repaid_minor
        assert facility.disbursed_principal.amount_minor == drawn_minor
        assert facility.repaid_principal.amount_minor == repaid_minor

    created = hub.create(facility_id)
    assert created.facility.state == loan_pb2.FACILITY_STATE_APPROVED
    assert created.facility.terms_instruction.instruction  # exactly as the lender signed it
    principal_reconciles()
    hub.make_available(facility_id)
    facility = hub.facility(facility_id, BORROWER_BANK)
    assert facility.state == loan_pb2.FACILITY_STATE_AVAILABLE
    assert [change.to_state for change in facility.history] == [
        loan_pb2.FACILITY_STATE_APPROVED,
        loan_pb2.FACILITY_STATE_SIGNED_BY_BORROWER_BANK,
        loan_pb2.FACILITY_STATE_SIGNED,
        loan_pb2.FACILITY_STATE_EFFECTIVE,
        loan_pb2.FACILITY_STATE_AVAILABLE,
    ]
    assert [change.participant_id for change in facility.history][1:3] == [BORROWER_BANK, LENDER]

    disbursed: dict[str, loan_pb2.ReviewDisbursementResponse] = {}
    for value_date, supplier_bank, amount, invoice in (
        (date(2027, 1, 15), TRUCKS_BANK, "20,000,000.00", "INV-TRUCKS-001"),
        (date(2027, 3, 1), RAIL_BANK, "30,000,000.00", "INV-LOCO-001"),
        (date(2027, 6, 15), CONVEYOR_BANK, "15,000,000.00", "INV-CONV-001"),
    ):
        hub.accrue_until(facility_id, value_date, principal_reconciles)
        response = hub.disburse(facility_id, SUPPLIERS[supplier_bank], usd(amount), invoice)
        drawn_minor += usd(amount)
        disbursed[supplier_bank] = response
        assert response.disbursement.status == loan_pb2.DISBURSEMENT_STATUS_PAID
        assert response.disbursement.exposure_fee.amount_minor == usd(amount) // 100
        assert hub.net(settlement(supplier_bank), supplier_bank) == usd(amount)
        principal_reconciles()
    assert hub.net(settlement(LENDER)) == LENDER_USD_MINOR - usd("65,000,000.00")

    # One date run twice: the identical instruction is answered with its original
    # receipt, and nothing changes.
    hub.accrue_until(facility_id, date(2027, 6, 30), principal_reconciles)
    before = (hub.client.journal_size(), hub.facility(facility_id))
    again = hub.send(hub.accrual_instruction(facility_id, date(2027, 6, 29)))
    assert again.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert again.accrual.interest.amount_minor == usd("9,479.17")  # 3,412,500.00 / 360
    assert (hub.client.journal_size(), hub.facility(facility_id)) == before

    # H1 2027, as in the worked example: due on 2027-06-30.
    facility = hub.facility(facility_id)
    assert facility.interest_due.amount_minor == usd("1,046,354.17")
    assert facility.fees_due.amount_minor == usd("800,347.22")  # 150,347.22 + 650,000.00
    balances = {kind: hub.net(account(facility_id, kind)) for kind in flow.LoanAccount}
    assert balances == {
        flow.LoanAccount.PRINCIPAL: usd("65,000,000.00"),
        flow.LoanAccount.INTEREST_RECEIVABLE: usd("1,046,354.17"),
        flow.LoanAccount.DEFAULT_INTEREST_RECEIVABLE: 0,
        flow.LoanAccount.FEES_RECEIVABLE: usd("800,347.22"),
        flow.LoanAccount.INTEREST_INCOME: usd("1,046,354.17"),
        flow.LoanAccount.FEE_INCOME: usd("800,347.22"),
        flow.LoanAccount.CASH_CLEARING: usd("65,000,000.00"),
    }

    # Repayment 1, 2027-06-30: PKR through the FX provider, PvP; fees, then interest.
    first_usd = usd("1,846,701.39")
    quote = hub.quote(first_usd)
    first = hub.repay(facility_id, first_usd, quote.quote_id)
    assert first.repayment.fees.amount_minor == usd("800,347.22")
    assert first.repayment.interest.amount_minor == usd("1,046,354.17")
    assert first.repayment.principal.amount_minor == 0
    assert first.repayment.sent == quote.send
    assert quote.send.currency == "PKR"
    principal_reconciles()

    hub.accrue_until(facility_id, date(2028, 1, 1), principal_reconciles)
    facility = hub.facility(facility_id)
    assert facility.interest_due.amount_minor == usd("1,744,166.67")
    assert facility.fees_due.amount_minor == usd("89,444.44")
    assert facility.default_interest_due.amount_minor == usd("101.87")
    assert facility.interest_accruing.amount_minor == usd("9,479.17")
    assert facility.fees_accruing.amount_minor == usd("486.11")

    hub.advance(facility_id, loan_pb2.FACILITY_EVENT_AVAILABILITY_PERIOD_ENDED, "2028-01-01")
    started = hub.advance(
        facility_id, loan_pb2.FACILITY_EVENT_REPAYMENT_PERIOD_STARTED, "2028-01-01"
    )
    assert started.facility.state == loan_pb2.FACILITY_STATE_REPAYING
    assert started.facility.cancelled.amount_minor == usd("35,000,000.00")
    for who in (LENDER, BORROWER_BANK, AUDITOR):
        schedule = (
            hub.loans(who)
            .GetRepaymentSchedule(
                loan_pb2.GetRepaymentScheduleRequest(facility_id=facility_id),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            .schedule
        )
        assert schedule.start_date == "2027-12-31"
        assert [item.due_date for item in schedule.instalments][:2] == ["2028-06-30", "2028-12-31"]
        assert {item.principal.amount_minor for item in schedule.instalments} == {
            usd("6,500,000.00")
        }
        assert schedule.instalments[0].projected_interest.amount_minor == usd("1,725,208.33")
        assert schedule.instalments[1].projected_interest.amount_minor == usd("1,569,750.00")

    # Repayment 2, 2028-01-01: default interest, fees, interest, then early principal
    # on the last instalment.
    second_usd = usd("3,000,000.00")
    quote = hub.quote(second_usd)
    pkr_before = hub.net(settlement(BORROWER_BANK, "PKR"), BORROWER_BANK)
    fx_usd_before = hub.net(settlement(FX), FX)
    second = hub.repay(facility_id, second_usd, quote.quote_id)
    repaid_minor += usd("1,166,287.02")
    repayment = second.repayment
    assert (
        repayment.fees.amount_minor,
        repayment.default_interest.amount_minor,
        repayment.interest.amount_minor,
        repayment.principal.amount_minor,
    ) == (usd("89,444.44"), usd("101.87"), usd("1,744,166.67"), usd("1,166,287.02"))
    assert [(item.instalment_number, item.early) for item in repayment.principal_applied] == [
        (10, True)
    ]
    assert hub.net(settlement(BORROWER_BANK, "PKR"), BORROWER_BANK) == (
        pkr_before - quote.send.amount_minor - quote.fee.amount_minor
    )
    assert hub.net(settlement(FX), FX) == fx_usd_before - second_usd
    principal_reconciles()

    hub.accrue_until(facility_id, date(2028, 1, 11), principal_reconciles)
    balances = {kind: hub.net(account(facility_id, kind)) for kind in flow.LoanAccount}
    assert balances == {
        flow.LoanAccount.PRINCIPAL: usd("63,833,712.98"),
        flow.LoanAccount.INTEREST_RECEIVABLE: usd("102,570.00"),
        flow.LoanAccount.DEFAULT_INTEREST_RECEIVABLE: 0,
        flow.LoanAccount.FEES_RECEIVABLE: usd("486.11"),
        flow.LoanAccount.INTEREST_INCOME: usd("2,893,192.71"),
        flow.LoanAccount.FEE_INCOME: usd("890,277.77"),
        flow.LoanAccount.CASH_CLEARING: usd("60,153,298.61"),
    }
    assert hub.net(settlement(LENDER)) == (
        LENDER_USD_MINOR - usd("65,000,000.00") + first_usd + second_usd
    )
    schedule = (
        hub.loans(LENDER)
        .GetRepaymentSchedule(
            loan_pb2.GetRepaymentScheduleRequest(facility_id=facility_id),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        .schedule
    )
    assert schedule.instalments[-1].unpaid_principal.amount_minor == usd("5,333,712.98")

    check_each_side_sees_only_its_own(hub, facility_id, disbursed, second)
    check_the_bundle_rebuilds_the_loan(hub, facility_id, tmp_path / "bundle")


def check_each_side_sees_only_its_own(
    hub: LoanHub,
    facility_id: str,
    disbursed: dict[str, loan_pb2.ReviewDisbursementResponse],
    repayment: loan_pb2.RepayResponse,
) -> None:
    principal = account(facility_id, flow.LoanAccount.PRINCIPAL)
    # The lender and the borrower's bank see the facility; the suppliers' banks do not.
    for who in (LENDER, BORROWER_BANK, AUDITOR, OPERATOR):
        assert hub.facility(facility_id, who).facility_id == facility_id
    for who in (TRUCKS_BANK, RAIL_BANK, FX):
        code, error = refusal(functools.partial(hub.facility, facility_id, who))
        assert (code, error.code) == (NOT_FOUND, "facility_must_exist")
        code, _ = refusal(
            functools.partial(
                hub.loans(who).ListDisbursements,
                loan_pb2.ListDisbursementsRequest(facility_id=facility_id),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        )
        assert code == NOT_FOUND
    listed = hub.loans(BORROWER_BANK).ListDisbursements(
        loan_pb2.ListDisbursementsRequest(facility_id=facility_id), timeout=CALL_TIMEOUT_SECONDS
    )
    assert [item.number for item in listed.disbursements] == [1, 2, 3]
    # Each supplier's bank sees its own disbursement and payment, nothing of the others'.
    for bank, response in disbursed.items():
        disbursement_id = response.disbursement.disbursement_id
        for who in disbursed:
            get = hub.loans(who).GetDisbursement
            asked = loan_pb2.GetDisbursementRequest(disbursement_id=disbursement_id)
            if who == bank:
                seen = get(asked, timeout=CALL_TIMEOUT_SECONDS).disbursement
                assert seen.supplier_bank_id == bank
                payment = (
                    hub.payments(who)
                    .GetPayment(
                        payment_pb2.GetPaymentRequest(uetr=seen.uetr),
                        timeout=CALL_TIMEOUT_SECONDS,
                    )
                    .payment
                )
                assert payment.status == payment_pb2.PAYMENT_STATUS_ACSC
                assert payment.remittance_information == seen.invoice_reference
                assert payment.receive == seen.amount
            else:
                code, error = refusal(functools.partial(get, asked, timeout=CALL_TIMEOUT_SECONDS))
                assert (code, error.code) == (NOT_FOUND, "disbursement_must_exist")
    # The loan accounts are the lender's: no one else reads them.
    for who in (BORROWER_BANK, TRUCKS_BANK):
        code, _ = refusal(functools.partial(hub.net, principal, who))
        assert code == NOT_FOUND
    # The borrower's bank sees its repayment's payment; a supplier's bank does not.
    uetr = repayment.repayment.uetr
    for who, visible in ((BORROWER_BANK, True), (LENDER, True), (TRUCKS_BANK, False)):
        request = payment_pb2.GetPaymentRequest(uetr=uetr)
        if visible:
            hub.payments(who).GetPayment(request, timeout=CALL_TIMEOUT_SECONDS)
        else:
            code, _ = refusal(
                functools.partial(
                    hub.payments(who).GetPayment, request, timeout=CALL_TIMEOUT_SECONDS
                )
            )
            assert code == NOT_FOUND


def check_the_bundle_rebuilds_the_loan(hub: LoanHub, facility_id: str, directory: Path) -> None:
    hub.client.audit(AUDITOR).GetLatestCheckpoint(
        audit_pb2.GetLatestCheckpointRequest(min_tree_size=hub.client.journal_size()),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    directory.mkdir(parents=True)
    offsets: dict[str, int] = {}
    for response in hub.client.audit(AUDITOR).ExportBundle(
        audit_pb2.ExportBundleRequest(), timeout=120
    ):
        assert response.path in bundle.BUNDLE_FILES
        assert response.offset == offsets.get(response.path, 0)
        with (directory / response.path).open("ab") as target:
            target.write(response.data)
        offsets[response.path] = response.offset + len(response.data)
    report = verify_bundle(directory, workers=1)
    assert report.ok, report.to_json()

    leaves = list(bundle.read_framed(directory / bundle.LEAVES_FILE))
    rebuilt = loan_from_leaves(leaves, facility_id)
    server = hub.facility(facility_id, AUDITOR)
    for kind in flow.LoanAccount:
        assert rebuilt.balances[kind] == hub.net(account(facility_id, kind), AUDITOR), kind
    assert rebuilt.balances[flow.LoanAccount.PRINCIPAL] == (
        rebuilt.disbursed_minor - rebuilt.repaid_minor
    )
    assert rebuilt.disbursed_minor == server.disbursed_principal.amount_minor
    assert rebuilt.repaid_minor == server.repaid_principal.amount_minor
    assert rebuilt.interest_accrued_minor == server.interest_accrued_total.amount_minor
    assert rebuilt.fees_accrued_minor == server.fees_accrued_total.amount_minor
    # The fold the hub runs gives the same record from the bundle's leaves.
    (record,) = [
        record
        for record in flow.rebuild_facilities(leaves).values()
        if record.facility_id == facility_id
    ]
    assert record.outstanding_principal_minor == server.outstanding_principal.amount_minor
    assert record.interest_accruing_minor == server.interest_accruing.amount_minor
    assert flow.expected_balances(record) == rebuilt.balances


@dataclass
class RebuiltLoan:
    balances: dict[flow.LoanAccount, int]
    disbursed_minor: int
    repaid_minor: int
    interest_accrued_minor: int
    fees_accrued_minor: int


def loan_from_leaves(leaves: list[bytes], facility_id: str) -> RebuiltLoan:
    """The loan's balances and totals from the leaves alone (standard library only).

    Balances: every posting to the facility's accounts, per account, on the
    account's normal side. Totals: from the signed events (principal of each
    disbursement paid and each repayment's split; interest and fees of each
    accrual and exposure fee).
    """
    prefix = f"loan:{facility_id}:"
    balances = dict.fromkeys(flow.LoanAccount, 0)
    disbursed = repaid = interest = fees = 0
    for leaf in leaves:
        document = json.loads(leaf)
        for posting in document.get("postings", ()):
            if not posting["account"].startswith(prefix):
                continue
            kind = flow.LoanAccount(posting["account"][len(prefix) :].rsplit(":", 1)[0])
            amount = int(posting["amount"])
            debit = posting["side"] == "debit"
            normal_debit = kind in flow.DEBIT_NORMAL_ACCOUNTS
            balances[kind] += amount if debit == normal_debit else -amount
        if document["kind"] != "event" or document["body"].get("facility_id") != facility_id:
            continue
        body = document["body"]
        if document["event_type"] == flow.EVENT_DISBURSEMENT_PAID:
            disbursed += int(body["principal_minor"])
            fees += int(body["exposure_fee_minor"])
        elif document["event_type"] == flow.EVENT_REPAYMENT_APPLIED:
            split = body["split"]
            repaid += int(split["principal_due_minor"]) + int(split["principal_early_minor"])
        elif document["event_type"] == flow.EVENT_ACCRUED:
            interest += int(body["interest_minor"])
            fees += int(body["commitment_fee_minor"])
    return RebuiltLoan(balances, disbursed, repaid, interest, fees)


# -- refusals ------------------------------------------------------------------------------------


DECLARABLE = (
    loan_pb2.FACILITY_EVENT_CONDITIONS_PRECEDENT_MET,
    loan_pb2.FACILITY_EVENT_AVAILABILITY_PERIOD_STARTED,
    loan_pb2.FACILITY_EVENT_AVAILABILITY_PERIOD_ENDED,
    loan_pb2.FACILITY_EVENT_REPAYMENT_PERIOD_STARTED,
    loan_pb2.FACILITY_EVENT_DEFAULT_DECLARED,
    loan_pb2.FACILITY_EVENT_ACCELERATION_DECLARED,
)


def test_every_illegal_transition_is_refused_and_writes_nothing(loan_hub: LoanHub) -> None:
    """Walk a facility through its states; in each, every event the table refuses is refused."""
    hub = loan_hub
    facility_id = f"f-{uuid.uuid4().hex[:12]}"
    hub.create(facility_id)

    def attempts() -> dict[FacilityEvent, Callable[[], Any]]:
        sha256 = hub.facility(facility_id).terms_sha256
        sign = {
            FacilityEvent.LENDER_SIGNED: LENDER,
            FacilityEvent.BORROWER_BANK_SIGNED: BORROWER_BANK,
        }
        found: dict[FacilityEvent, Callable[[], Any]] = {
            event: functools.partial(
                hub.send,
                instruction(
                    loan_pb2.SignFacilityInstruction,
                    who,
                    facility_id=facility_id,
                    terms_sha256=sha256,
                ),
            )
            for event, who in sign.items()
        }
        for value in DECLARABLE:
            event = FacilityEvent(loan_pb2.FacilityEvent.Name(value)[15:].lower())
            found[event] = functools.partial(hub.advance, facility_id, value, "2028-01-01")
        return found

    def refuse_all_but_allowed() -> None:
        facility = hub.facility(facility_id)
        state = FacilityState(loan_pb2.FacilityState.Name(facility.state)[15:].lower())
        size = hub.client.journal_size()
        for event, attempt in attempts().items():
            if event in TRANSITIONS[state]:
                continue
            code, error = refusal(attempt)
            assert (code, error.code) == (PRECONDITION, "transition_must_be_allowed"), (
                state,
                event,
            )
        assert hub.client.journal_size() == size
        assert hub.facility(facility_id) == facility

    refuse_all_but_allowed()  # approved
    hub.sign(facility_id, LENDER)
    refuse_all_but_allowed()  # signed_by_lender
    hub.sign(facility_id, BORROWER_BANK)
    refuse_all_but_allowed()  # signed
    for condition_id, _ in CONDITIONS:
        hub.send(
            instruction(
                loan_pb2.SatisfyConditionInstruction,
                LENDER,
                facility_id=facility_id,
                condition_id=condition_id,
                evidence="on file",
            )
        )
    hub.advance(facility_id, loan_pb2.FACILITY_EVENT_CONDITIONS_PRECEDENT_MET, "2026-12-20")
    refuse_all_but_allowed()  # effective
    hub.advance(facility_id, loan_pb2.FACILITY_EVENT_AVAILABILITY_PERIOD_STARTED, "2027-01-01")
    refuse_all_but_allowed()  # available
    hub.advance(facility_id, loan_pb2.FACILITY_EVENT_DEFAULT_DECLARED, "2027-01-01")
    refuse_all_but_allowed()  # defaulted
    hub.advance(facility_id, loan_pb2.FACILITY_EVENT_ACCELERATION_DECLARED, "2027-01-01")
    refuse_all_but_allowed()  # accelerated
    # Events that happen by themselves cannot be declared.
    for value in (
        loan_pb2.FACILITY_EVENT_COMMITMENT_FULLY_DRAWN,
        loan_pb2.FACILITY_EVENT_FULLY_REPAID,
        loan_pb2.FACILITY_EVENT_LENDER_SIGNED,
    ):
        code, error = refusal(functools.partial(hub.advance, facility_id, value, "2027-01-01"))
        assert (code, error.code) == (INVALID, "event_must_be_declarable")


def test_disbursement_requests_are_checked_and_refusals_write_nothing(loan_hub: LoanHub) -> None:
    hub = loan_hub
    facility_id = f"f-{uuid.uuid4().hex[:12]}"
    hub.create(facility_id, commitment_minor=usd("1,000,000.00"))
    supplier = SUPPLIERS[TRUCKS_BANK]

    def request(who: str = BORROWER_BANK, **changes: Any) -> Callable[[], Any]:
        message = hub.disbursement_instruction(
            facility_id, supplier, usd("100,000.00"), "INV-1", "2027-01-01"
        )
        message.participant_id = who
        for name, value in changes.items():
            setattr(message, name, value)
        return lambda: hub.send(message)

    size = hub.client.journal_size()
    code, error = refusal(request())
    assert (code, error.code) == (PRECONDITION, "facility_must_be_available")
    hub.make_available(facility_id)
    size = hub.client.journal_size()
    cases: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
        ({"supplier_bank_bic": "DEUTDEFF"}, INVALID, "bic_country_must_match"),
        ({"supplier_bank_aba": "021000022"}, INVALID, "routing_number_must_be_valid"),
        ({"supplier_account_number": "12-34"}, INVALID, "account_number_must_be_valid"),
        ({"value_date": "2027-02-30"}, INVALID, "date_must_be_valid"),
        ({"supplier_bank_id": "bank-nowhere"}, NOT_FOUND, "participant_must_exist"),
        ({"supplier_bank_id": RAIL_BANK}, INVALID, "supplier_bank_must_match"),
        (
            {"value_date": "2028-01-01"},
            PRECONDITION,
            "value_date_must_be_within_availability_period",
        ),
        ({"value_date": "2027-01-02"}, PRECONDITION, "value_date_must_be_business_date"),
        (
            {"amount_minor": usd("1,000,000.01")},
            PRECONDITION,
            "amount_must_not_exceed_remaining_commitment",
        ),
        (
            {"supplier_name": "BANCO NACIONAL DE CUBA"},
            PRECONDITION,
            "supplier_must_pass_screening",
        ),
    ]
    for changes, expected_code, expected_error in cases:
        code, error = refusal(request(**changes))
        assert (code, error.code) == (expected_code, expected_error), changes
    # A valid request, approved; the approval sent again is answered with its original
    # receipt, and the same id with another body is refused.
    requested = hub.send(
        hub.disbursement_instruction(
            facility_id, supplier, usd("100,000.00"), "INV-1", "2027-01-01"
        )
    )
    approval = instruction(
        loan_pb2.ReviewDisbursementInstruction,
        LENDER,
        facility_id=facility_id,
        disbursement_id=requested.disbursement.disbursement_id,
        decision=loan_pb2.DISBURSEMENT_DECISION_APPROVE,
        uetr=str(uuid.uuid4()),
    )
    paid = hub.send(approval)
    assert paid.disbursement.status == loan_pb2.DISBURSEMENT_STATUS_PAID
    size = hub.client.journal_size()
    again = hub.send(approval)
    assert again.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert again.result.receipt == paid.result.receipt
    approval.reason = "changed my mind"
    code, error = refusal(functools.partial(hub.send, approval))
    assert (code, error.code, list(error.fields)) == (
        EXISTS,
        "exists_with_different_body",
        ["reason"],
    )
    code, error = refusal(
        functools.partial(
            hub.send,
            instruction(
                loan_pb2.ReviewDisbursementInstruction,
                LENDER,
                facility_id=facility_id,
                disbursement_id=requested.disbursement.disbursement_id,
                decision=loan_pb2.DISBURSEMENT_DECISION_REJECT,
            ),
        )
    )
    assert (code, error.code) == (PRECONDITION, "disbursement_must_be_requested")
    # Another bank may not ask; the lender's role may not either.
    code, error = refusal(request(TRUCKS_BANK))
    assert (code, error.code) == (NOT_FOUND, "facility_must_exist")
    code, error = refusal(request(LENDER))
    assert (code, error.code) == (grpc.StatusCode.PERMISSION_DENIED, "role_must_permit")
    assert hub.client.journal_size() == size


def test_accruals_are_fixed_to_their_date(loan_hub: LoanHub) -> None:
    hub = loan_hub
    facility_id = f"f-{uuid.uuid4().hex[:12]}"
    hub.create(facility_id)
    code, error = refusal(lambda: hub.send(hub.accrual_instruction(facility_id, date(2027, 1, 1))))
    assert (code, error.code) == (PRECONDITION, "facility_must_be_accruing")
    hub.make_available(facility_id)
    wrong_id = hub.accrual_instruction(facility_id, date(2027, 1, 1))
    wrong_id.instruction_id = new_id(LENDER)
    code, error = refusal(lambda: hub.send(wrong_id))
    assert (code, error.code) == (INVALID, "instruction_id_must_be_accrual_id")
    code, error = refusal(lambda: hub.send(hub.accrual_instruction(facility_id, date(2027, 1, 2))))
    assert (code, error.code) == (PRECONDITION, "business_date_must_be_next_accrual_date")
    first = hub.send(hub.accrual_instruction(facility_id, date(2027, 1, 1)))
    # 100,000,000.00 undrawn x 0.50 % / 360 = 1,388.888... -> 1,388.89
    assert first.accrual.commitment_fee.amount_minor == usd("1,388.89")
    # The operator may run the accrual too, but not a date the lender ran.
    by_operator = hub.accrual_instruction(facility_id, date(2027, 1, 1))
    by_operator.participant_id = OPERATOR
    code, error = refusal(lambda: hub.send(by_operator))
    assert (code, error.code) == (EXISTS, "id_taken")
    by_operator = hub.accrual_instruction(facility_id, date(2027, 1, 2))
    by_operator.participant_id = OPERATOR
    assert hub.send(by_operator).result.status == common_pb2.COMMIT_STATUS_CREATED
