"""A worked loan, every figure computed by hand below and asserted to the cent.

The facility: a US export-credit lender lends USD 100,000,000.00 to a
Pakistani mining company for US equipment.

- availability 2027-01-01 to 2027-12-31 (both days included);
- interest fixed at 5.25 % p.a., ACT/360; commitment fee 0.50 % p.a. on the
  undrawn commitment, ACT/360; default margin 2.00 % p.a.;
- exposure fee 1.00 % of each disbursement, paid in cash (not financed);
- 10 equal semi-annual instalments, the first 6 months after availability
  ends (2028-06-30);
- three disbursements: 2027-01-15 USD 20,000,000.00 (mining trucks),
  2027-03-01 USD 30,000,000.00 (locomotives), 2027-06-15 USD 15,000,000.00
  (conveyors); the undrawn USD 35,000,000.00 is cancelled when availability
  ends.

Accrual convention: the business date ``d`` accrues the day from ``d`` to
``d + 1`` on the balances at the end of ``d``, so a disbursement bears
interest from its value date and the period 2027-01-01 to 2027-06-30 is
accrued by the business dates 2027-01-01 to 2027-06-29 (180 days).

Money is written here as dollars and cents and converted by :func:`usd`, so
each figure reads as it was worked out.

Also here, being the facility's own figures: the terms' validation, the day
count conventions and the disbursement checks, each as a table.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import grpc
import pytest

from ledger.errors import IntegrityError
from settlement.errors import InvalidArgument, grpc_status_for
from settlement.loans.accrual import (
    Accrual,
    AccrualCarry,
    AccrualCarryMustMatchPostings,
    AccrualState,
    BusinessDateAlreadyAccrued,
    BusinessDateMustBeNext,
    PeriodStartMustBeNextAccrualDate,
    accrue_until,
    daily_accrual,
    round_to_minor,
)
from settlement.loans.daycount import (
    DayCount,
    DayCountMustBeSupported,
    day_weight_days,
    period_days,
    year_fraction,
)
from settlement.loans.disbursement import (
    DisbursementRequest,
    FacilityPosition,
    OutstandingPrincipalMustEqualDisbursedMinusRepaid,
    check_disbursement,
    check_outstanding_principal,
    disbursement_findings,
    exposure_fee_minor,
)
from settlement.loans.schedule import build_schedule
from settlement.loans.states import FacilityEvent, FacilityState, transition
from settlement.loans.terms import (
    ConditionPrecedent,
    ExposureFee,
    ExposureFeeSettlement,
    ExposureFeeTiming,
    FacilityTerms,
    FixedRate,
    FloatingRate,
    InvalidFacilityTerm,
    PercentMustBeDecimalString,
    RateFixing,
    RateFixingMustBeSupplied,
    RateFixingMustMatchReferenceRate,
    RateFixingMustNotBeSupplied,
    RepaymentProfile,
    all_in_rate_percent,
    parse_percent,
)
from settlement.loans.waterfall import AmountsOutstanding, apply_repayment, instalment_balances

ONE_DAY = timedelta(days=1)


def usd(text: str) -> int:
    """'1,046,354.17' -> 104635417 minor units (exact, or the test is wrong)."""
    dollars = Decimal(text.replace(",", ""))
    minor = dollars * 100
    assert minor == minor.to_integral_value(), text
    return int(minor)


CONDITIONS = (
    ConditionPrecedent("loan_agreement_legal_opinion", "Legal opinions of US and Pakistan counsel"),
    ConditionPrecedent("eca_cover_issued", "The export-credit agency's guarantee is in force"),
    ConditionPrecedent("sbp_loan_registration", "State Bank of Pakistan registration of the loan"),
)

TERMS = FacilityTerms(
    facility_id="facility-2027-001",
    lender_id="us-exim-lender",
    borrower_id="pk-mining-company",
    borrower_bank_id="pk-borrower-bank",
    guarantor_id="pk-parent-guarantor",
    currency="USD",
    commitment_minor=usd("100,000,000.00"),
    availability_start=date(2027, 1, 1),
    availability_end=date(2027, 12, 31),
    interest=FixedRate(parse_percent("5.25")),
    day_count=DayCount.ACT_360,
    commitment_fee_percent=parse_percent("0.50"),
    exposure_fee=ExposureFee(
        parse_percent("1.00"), ExposureFeeTiming.PER_DISBURSEMENT, ExposureFeeSettlement.PAID
    ),
    repayment=RepaymentProfile(instalment_count=10, grace_period_months=6),
    default_margin_percent=parse_percent("2.00"),
    conditions_precedent=CONDITIONS,
)

ALL_CONDITIONS = frozenset(condition.condition_id for condition in CONDITIONS)


def request(
    value_date: date, amount: str, invoice: str, supplier: str = "Peoria Mining Trucks Inc."
) -> DisbursementRequest:
    return DisbursementRequest(
        request_id=f"disbursement-{invoice}",
        facility_id=TERMS.facility_id,
        supplier_name=supplier,
        supplier_bank_aba="021000021",
        supplier_bank_bic="CHASUS33",
        amount_minor=usd(amount),
        currency="USD",
        invoice_reference=invoice,
        value_date=value_date,
    )


DISBURSEMENTS = (
    request(date(2027, 1, 15), "20,000,000.00", "INV-TRUCKS-001"),
    request(date(2027, 3, 1), "30,000,000.00", "INV-LOCO-001", "Erie Locomotive Works LLC"),
    request(date(2027, 6, 15), "15,000,000.00", "INV-CONV-001", "Gulf Coast Conveyors Inc."),
)


# --- The rounding rule. --------------------------------------------------------


@pytest.mark.parametrize(
    ("exact", "rounded"),
    [
        (Fraction(5, 2), 2),  # tie: to the even neighbour
        (Fraction(7, 2), 4),
        (Fraction(-5, 2), -2),
        (Fraction(24_999, 10_000), 2),
        (Fraction(25_001, 10_000), 3),
        (Fraction(313_906_250, 3), 104_635_417),  # the H1 2027 interest below
        (Fraction(0), 0),
    ],
)
def test_round_to_minor_is_half_even(exact: Fraction, rounded: int) -> None:
    assert round_to_minor(exact) == rounded
    assert round_to_minor(exact) == round(exact)  # Python's own half-even rounding agrees


# --- The facility's life up to repayment. ---------------------------------------


def test_the_facility_is_signed_made_effective_and_drawn() -> None:
    state = FacilityState.APPROVED
    for event in (
        FacilityEvent.LENDER_SIGNED,
        FacilityEvent.BORROWER_BANK_SIGNED,
        FacilityEvent.CONDITIONS_PRECEDENT_MET,
        FacilityEvent.AVAILABILITY_PERIOD_STARTED,
    ):
        state = transition(state, event)
    assert state is FacilityState.AVAILABLE

    position = FacilityPosition(state, 0, 0, ALL_CONDITIONS, 0)
    # Exposure fee 1.00 % of each amount, paid in cash, so principal = amount:
    #   20,000,000.00 x 1 % = 200,000.00; remaining 100,000,000.00 - 20,000,000.00 = 80,000,000.00
    #   30,000,000.00 x 1 % = 300,000.00; remaining  80,000,000.00 - 30,000,000.00 = 50,000,000.00
    #   15,000,000.00 x 1 % = 150,000.00; remaining  50,000,000.00 - 15,000,000.00 = 35,000,000.00
    expected = (
        ("200,000.00", "80,000,000.00"),
        ("300,000.00", "50,000,000.00"),
        ("150,000.00", "35,000,000.00"),
    )
    for disbursement, (fee, remaining) in zip(DISBURSEMENTS, expected, strict=True):
        checked = check_disbursement(TERMS, position, disbursement, supplier_screening_passed=True)
        assert checked.supplier_payment_minor == disbursement.amount_minor
        assert checked.exposure_fee_minor == usd(fee)
        assert checked.exposure_fee_settlement is ExposureFeeSettlement.PAID
        assert checked.principal_minor == disbursement.amount_minor
        assert checked.remaining_commitment_minor == usd(remaining)
        assert not checked.commitment_fully_drawn
        position = dataclasses.replace(
            position,
            disbursed_principal_minor=position.disbursed_principal_minor + checked.principal_minor,
            disbursement_count=position.disbursement_count + 1,
        )
        check_outstanding_principal(
            position.disbursed_principal_minor, 0, position.disbursed_principal_minor
        )
    assert position.disbursed_principal_minor == usd("65,000,000.00")

    # 2027-12-31 ends availability: 35,000,000.00 undrawn is cancelled; repayment starts.
    state = transition(state, FacilityEvent.AVAILABILITY_PERIOD_ENDED)
    state = transition(state, FacilityEvent.REPAYMENT_PERIOD_STARTED)
    assert state is FacilityState.REPAYING


# --- Daily accrual, 2027-01-01 to 2027-06-30. ------------------------------------
#
# Segments (business dates accrued, balances at the end of each):
#   2027-01-01 .. 2027-01-14   14 days   principal          0.00   undrawn 100,000,000.00
#   2027-01-15 .. 2027-02-28   45 days   principal 20,000,000.00   undrawn  80,000,000.00
#                                        (17 days of January + 28 of February)
#   2027-03-01 .. 2027-06-14  106 days   principal 50,000,000.00   undrawn  50,000,000.00
#                                        (31 + 30 + 31 + 14)
#   2027-06-15 .. 2027-06-29   15 days   principal 65,000,000.00   undrawn  35,000,000.00
#   total 14 + 45 + 106 + 15 = 180 days = (2027-06-30 - 2027-01-01)
#
# Interest at 5.25 % ACT/360, principal x 0.0525 x days / 360:
#   20,000,000 x 0.0525 = 1,050,000.00 a year; x  45/360 =   131,250.00
#   50,000,000 x 0.0525 = 2,625,000.00 a year; x 106/360 =   772,916.666...
#   65,000,000 x 0.0525 = 3,412,500.00 a year; x  15/360 =   142,187.50
#   exact total 1,046,354.1666...  ->  posted 1,046,354.17
#
# Commitment fee at 0.50 % ACT/360 on the undrawn amount:
#   100,000,000 x 0.005 = 500,000.00 a year; x  14/360 =  19,444.444...
#    80,000,000 x 0.005 = 400,000.00 a year; x  45/360 =  50,000.00
#    50,000,000 x 0.005 = 250,000.00 a year; x 106/360 =  73,611.111...
#    35,000,000 x 0.005 = 175,000.00 a year; x  15/360 =   7,291.666...
#   exact total 150,347.2222...  ->  posted 150,347.22
#
# Rounding each day on its own would not add up: 50,000,000 a day is
# 2,625,000 / 360 = 7,291.666... -> 7,291.67, x 106 days = 772,917.02, 35 cents
# more than the segment's 772,916.67. Over the period, day-by-day rounding
# gives 45 x 2,916.67 + 106 x 7,291.67 + 15 x 9,479.17
#       = 131,250.15 + 772,917.02 + 142,187.55 = 1,046,354.72 (55 cents invented).

H1_START = date(2027, 1, 1)
H1_END = date(2027, 6, 30)


def accrue_first_half() -> tuple[list[Accrual], AccrualState]:
    """Accrue 2027-01-01 to 2027-06-29, applying each disbursement on its value date."""
    state = AccrualState.opening(
        TERMS, H1_START, interest_rate_percent=all_in_rate_percent(TERMS.interest)
    )
    drawn_on = {item.value_date: item.amount_minor for item in DISBURSEMENTS}
    accruals: list[Accrual] = []
    business_date = H1_START
    while business_date < H1_END:
        if business_date in drawn_on:
            amount_minor = drawn_on[business_date]
            state = state.with_balances(
                outstanding_principal_minor=state.outstanding_principal_minor + amount_minor,
                undrawn_commitment_minor=state.undrawn_commitment_minor - amount_minor,
            )
        accrual = daily_accrual(state, business_date)
        accruals.append(accrual)
        state = accrual.state
        business_date += ONE_DAY
    return accruals, state


def test_interest_and_commitment_fee_to_2027_06_30() -> None:
    accruals, state = accrue_first_half()

    assert len(accruals) == 180
    assert sum(item.interest_minor for item in accruals) == usd("1,046,354.17")
    assert sum(item.commitment_fee_minor for item in accruals) == usd("150,347.22")
    assert sum(item.default_interest_minor for item in accruals) == 0
    assert state.next_accrual_date == H1_END
    assert state.outstanding_principal_minor == usd("65,000,000.00")
    assert state.undrawn_commitment_minor == usd("35,000,000.00")
    # The carries hold the exact totals in cents: 1,046,354.1666... and 150,347.2222...
    assert state.interest == AccrualCarry(Fraction(313_906_250, 3), usd("1,046,354.17"))
    assert state.commitment_fee == AccrualCarry(Fraction(135_312_500, 9), usd("150,347.22"))


def test_daily_postings_add_up_to_the_period_formula_per_segment() -> None:
    accruals, _ = accrue_first_half()
    rate = Fraction(525, 10_000)  # 5.25 %
    fee_rate = Fraction(5, 1_000)  # 0.50 %
    segments = (  # (days, principal, undrawn) in cents
        (14, 0, usd("100,000,000.00")),
        (45, usd("20,000,000.00"), usd("80,000,000.00")),
        (106, usd("50,000,000.00"), usd("50,000,000.00")),
        (15, usd("65,000,000.00"), usd("35,000,000.00")),
    )
    interest_formula = sum(
        principal * rate * Fraction(days, 360) for days, principal, _ in segments
    )
    fee_formula = sum(undrawn * fee_rate * Fraction(days, 360) for days, _, undrawn in segments)

    assert round(interest_formula) == sum(item.interest_minor for item in accruals)
    assert round(fee_formula) == sum(item.commitment_fee_minor for item in accruals)
    # Each segment's exact figure, in cents, as worked out above.
    assert [principal * rate * Fraction(days, 360) for days, principal, _ in segments] == [
        0,
        usd("131,250.00"),
        Fraction(usd("2,625,000.00") * 106, 360),  # 772,916.666...
        usd("142,187.50"),
    ]


def test_the_first_days_postings_carry_the_fractions_of_a_cent() -> None:
    accruals, _ = accrue_first_half()
    # 2027-01-01 onwards, commitment fee on 100,000,000.00: 500,000.00 / 360 = 1,388.888...
    # a day, 138,888.888... cents. Cumulative, rounded half even, less what was posted:
    #   day 1: 138,888.89 -> 138,889; posting 138,889
    #   day 2: 277,777.78 -> 277,778; posting 138,889
    #   day 3: 416,666.67 -> 416,667; posting 138,889
    #   day 4: 555,555.56 -> 555,556; posting 138,889
    #   day 5: 694,444.44 -> 694,444; posting 138,888
    assert [item.commitment_fee_minor for item in accruals[:5]] == [138_889] * 4 + [138_888]
    # 2027-01-15 onwards, interest on 20,000,000.00: 1,050,000.00 / 360 = 2,916.666... a
    # day, 291,666.666... cents: cumulative 291,666.67 -> 291,667, 583,333.33 -> 583,333,
    # 875,000.00 -> 875,000: postings 291,667, 291,666, 291,667.
    assert accruals[13].interest_minor == 0  # 2027-01-14: nothing drawn yet
    assert [item.interest_minor for item in accruals[14:17]] == [291_667, 291_666, 291_667]


def test_a_date_is_accrued_once() -> None:
    state = AccrualState.opening(TERMS, H1_START, interest_rate_percent=Decimal("5.25"))
    first = daily_accrual(state, H1_START)
    # Pure: the same state and date give the same accrual.
    assert daily_accrual(state, H1_START) == first
    # Running the date again on the state after it is refused, never posted twice.
    with pytest.raises(BusinessDateAlreadyAccrued) as refused:
        daily_accrual(first.state, H1_START)
    assert refused.value.code == "business_date_must_not_be_accrued_twice"
    assert grpc_status_for(refused.value) is grpc.StatusCode.ALREADY_EXISTS
    # Skipping a date is refused too.
    with pytest.raises(BusinessDateMustBeNext):
        daily_accrual(first.state, H1_START + 2 * ONE_DAY)
    # A new period starts only where accrual stands.
    with pytest.raises(PeriodStartMustBeNextAccrualDate):
        first.state.start_period(H1_START)


def test_a_carry_that_does_not_match_its_postings_is_an_integrity_error() -> None:
    with pytest.raises(AccrualCarryMustMatchPostings) as refused:
        AccrualCarry(Fraction(313_906_250, 3), usd("1,046,354.16"))
    assert isinstance(refused.value, IntegrityError)


# --- The repayment schedule. ------------------------------------------------------
#
# Principal when repayment starts: 65,000,000.00, in 10 instalments of
# 65,000,000.00 / 10 = 6,500,000.00. Dates: 2027-12-31 + 6 months = 2028-06-30,
# then every 6 months at month end, the last 2032-12-31.
#
# Instalment 1, 2027-12-31 to 2028-06-30: 1 day of December + 31 + 29 (2028 is a leap
# year) + 31 + 30 + 31 + 29 days of June = 182 days, on 65,000,000.00:
#   65,000,000 x 0.0525 x 182 / 360 = 3,412,500 x 182 / 360 = 621,075,000 / 360
#     = 1,725,208.333...  ->  1,725,208.33; instalment 6,500,000.00 + 1,725,208.33
#     = 8,225,208.33
# Instalment 2, 2028-06-30 to 2028-12-31: 31 + 31 + 30 + 31 + 30 + 31 = 184 days, on
# 65,000,000.00 - 6,500,000.00 = 58,500,000.00:
#   58,500,000 x 0.0525 x 184 / 360 = 3,071,250 x 184 / 360 = 565,110,000 / 360
#     = 1,569,750.00 exactly; instalment 6,500,000.00 + 1,569,750.00 = 8,069,750.00

SCHEDULE = build_schedule(TERMS, usd("65,000,000.00"))


def test_schedule_of_ten_equal_semi_annual_instalments() -> None:
    assert SCHEDULE.start_date == date(2027, 12, 31)
    assert [item.due_date for item in SCHEDULE.instalments] == [
        date(2028, 6, 30),
        date(2028, 12, 31),
        date(2029, 6, 30),
        date(2029, 12, 31),
        date(2030, 6, 30),
        date(2030, 12, 31),
        date(2031, 6, 30),
        date(2031, 12, 31),
        date(2032, 6, 30),
        date(2032, 12, 31),
    ]
    assert [item.principal_minor for item in SCHEDULE.instalments] == [usd("6,500,000.00")] * 10
    assert SCHEDULE.instalments[-1].closing_principal_minor == 0


def test_first_two_instalments_to_the_cent() -> None:
    first, second = SCHEDULE.instalments[:2]
    assert (first.period_start, first.due_date, first.period_days) == (
        date(2027, 12, 31),
        date(2028, 6, 30),
        182,
    )
    assert first.opening_principal_minor == usd("65,000,000.00")
    assert first.principal_minor == usd("6,500,000.00")
    assert first.projected_interest_minor == usd("1,725,208.33")
    assert first.total_minor == usd("8,225,208.33")

    assert (second.period_start, second.due_date, second.period_days) == (
        date(2028, 6, 30),
        date(2028, 12, 31),
        184,
    )
    assert second.opening_principal_minor == usd("58,500,000.00")
    assert second.principal_minor == usd("6,500,000.00")
    assert second.projected_interest_minor == usd("1,569,750.00")
    assert second.total_minor == usd("8,069,750.00")


def test_daily_accrual_over_the_first_instalment_period_matches_the_projection() -> None:
    state = AccrualState.opening(TERMS, date(2027, 12, 31), interest_rate_percent=Decimal("5.25"))
    state = state.with_balances(
        outstanding_principal_minor=usd("65,000,000.00"), undrawn_commitment_minor=0
    )
    accruals, _ = accrue_until(state, date(2028, 6, 30))
    assert len(accruals) == 182
    assert sum(item.interest_minor for item in accruals) == usd("1,725,208.33")
    assert sum(item.commitment_fee_minor for item in accruals) == 0


def test_the_last_instalment_absorbs_the_remainder() -> None:
    # 65,000,000.07 / 10 = 6,500,000.007: nine of 6,500,000.00, the last 6,500,000.07.
    schedule = build_schedule(TERMS, usd("65,000,000.07"))
    assert [item.principal_minor for item in schedule.instalments] == [usd("6,500,000.00")] * 9 + [
        usd("6,500,000.07")
    ]
    assert build_schedule(TERMS, 0).instalments == ()


# --- A late first instalment, and the repayment that pays it. ---------------------
#
# Instalment 1 (8,225,208.33: principal 6,500,000.00 + interest 1,725,208.33) is due on
# 2028-06-30 and paid on 2028-07-15, 15 days late (business dates 2028-06-30 to
# 2028-07-14). Default interest at the 2.00 % margin on the overdue 8,225,208.33:
#   8,225,208.33 x 0.02 x 15 / 360 = 8,225,208.33 / 1,200 = 6,854.340275  ->  6,854.34
# Regular interest keeps accruing on the 65,000,000.00 still outstanding (the overdue
# principal included): 65,000,000 x 0.0525 x 15 / 360 = 3,412,500 / 24 = 142,187.50, in
# the second period's interest, due on 2028-12-31.
#
# The borrower pays 8,250,000.00 on 2028-07-15. Waterfall:
#   fees              0.00  (the exposure fees were paid with each disbursement)
#   default interest  6,854.34       left 8,250,000.00 - 6,854.34     = 8,243,145.66
#   interest          1,725,208.33   left 8,243,145.66 - 1,725,208.33 = 6,517,937.33
#   principal due     6,500,000.00   left 6,517,937.33 - 6,500,000.00 =    17,937.33
#   early repayment      17,937.33   on instalment 10 (2032-12-31), the last maturity:
#                                    6,500,000.00 - 17,937.33 = 6,482,062.67 left on it
# Principal repaid 6,517,937.33; outstanding 65,000,000.00 - 6,517,937.33 = 58,482,062.67.

LATE_DUE_DATE = date(2028, 6, 30)
PAID_ON = date(2028, 7, 15)


def test_a_late_instalment_accrues_default_interest() -> None:
    state = AccrualState.opening(TERMS, LATE_DUE_DATE, interest_rate_percent=Decimal("5.25"))
    state = state.with_balances(
        outstanding_principal_minor=usd("65,000,000.00"),
        undrawn_commitment_minor=0,
        overdue_minor=usd("8,225,208.33"),
    )
    accruals, state = accrue_until(state, PAID_ON)
    assert len(accruals) == 15
    assert sum(item.default_interest_minor for item in accruals) == usd("6,854.34")
    assert sum(item.interest_minor for item in accruals) == usd("142,187.50")
    assert state.default_interest.exact_minor == Fraction(usd("8,225,208.33"), 1_200)


def test_the_late_repayment_through_the_waterfall() -> None:
    outstanding = AmountsOutstanding(
        value_date=PAID_ON,
        fees_minor=0,
        default_interest_minor=usd("6,854.34"),
        interest_minor=usd("1,725,208.33"),
        instalments=instalment_balances(SCHEDULE),
    )
    assert outstanding.due_minor == usd("8,232,062.67")  # 6,854.34 + 8,225,208.33

    application = apply_repayment(outstanding, usd("8,250,000.00"))

    assert application.fees_minor == 0
    assert application.default_interest_minor == usd("6,854.34")
    assert application.interest_minor == usd("1,725,208.33")
    assert application.principal_due_minor == usd("6,500,000.00")
    assert application.principal_early_minor == usd("17,937.33")
    assert [(item.number, item.principal_minor, item.early) for item in application.principal] == [
        (1, usd("6,500,000.00"), False),
        (10, usd("17,937.33"), True),
    ]
    remaining = application.remaining
    assert [item.principal_minor for item in remaining.instalments] == [0] + [
        usd("6,500,000.00")
    ] * 8 + [usd("6,482,062.67")]
    assert remaining.principal_minor == usd("58,482,062.67")
    assert remaining.total_minor == usd("58,482,062.67")
    check_outstanding_principal(
        usd("65,000,000.00"), application.principal_minor, remaining.principal_minor
    )
    with pytest.raises(OutstandingPrincipalMustEqualDisbursedMinusRepaid):
        check_outstanding_principal(
            usd("65,000,000.00"), application.principal_minor, usd("58,500,000.00")
        )


# --- Terms: each broken term refused under its own code. ---------------------------

TERM_CASES: list[tuple[str, dict[str, object], str]] = [
    ("empty facility id", {"facility_id": ""}, "facility_id_must_be_valid"),
    ("space in lender id", {"lender_id": "us exim"}, "lender_id_must_be_valid"),
    ("long borrower id", {"borrower_id": "b" * 129}, "borrower_id_must_be_valid"),
    ("empty borrower bank", {"borrower_bank_id": ""}, "borrower_bank_id_must_be_valid"),
    ("empty guarantor", {"guarantor_id": ""}, "guarantor_id_must_be_valid"),
    ("lender is borrower bank", {"borrower_bank_id": "us-exim-lender"}, "parties_must_be_distinct"),
    ("PKR facility", {"currency": "PKR"}, "currency_must_be_usd"),
    ("zero commitment", {"commitment_minor": 0}, "commitment_minor_must_be_in_range"),
    ("huge commitment", {"commitment_minor": 10**13 + 1}, "commitment_minor_must_be_in_range"),
    ("bool commitment", {"commitment_minor": True}, "commitment_minor_must_be_in_range"),
    (
        "availability ends first",
        {"availability_end": date(2026, 12, 31)},
        "availability_period_must_be_valid",
    ),
    (
        "availability too long",
        {"availability_end": date(2037, 1, 31)},
        "availability_period_must_be_valid",
    ),
    (
        "negative rate",
        {"interest": FixedRate(Decimal("-0.01"))},
        "interest_rate_percent_must_be_valid",
    ),
    (
        "seven decimals",
        {"interest": FixedRate(Decimal("5.2500001"))},
        "interest_rate_percent_must_be_valid",
    ),
    ("NaN rate", {"interest": FixedRate(Decimal("NaN"))}, "interest_rate_percent_must_be_valid"),
    ("float rate", {"interest": FixedRate(5.25)}, "interest_rate_percent_must_be_valid"),  # type: ignore[arg-type]
    (
        "unnamed reference rate",
        {"interest": FloatingRate("", Decimal("1.20"))},
        "reference_rate_must_be_named",
    ),
    (
        "margin over 100 %",
        {"interest": FloatingRate("TERM_SOFR_6M", Decimal("100.01"))},
        "margin_percent_must_be_valid",
    ),
    ("ACT/365", {"day_count": "ACT/365"}, "day_count_must_be_supported"),
    (
        "negative commitment fee",
        {"commitment_fee_percent": Decimal("-0.5")},
        "commitment_fee_percent_must_be_valid",
    ),
    (
        "exposure fee over 100 %",
        {
            "exposure_fee": ExposureFee(
                Decimal("100.5"), ExposureFeeTiming.UPFRONT, ExposureFeeSettlement.PAID
            )
        },
        "exposure_fee_percent_must_be_valid",
    ),
    ("no instalments", {"repayment": RepaymentProfile(0, 6)}, "instalment_count_must_be_in_range"),
    ("49 instalments", {"repayment": RepaymentProfile(49, 6)}, "instalment_count_must_be_in_range"),
    ("no grace", {"repayment": RepaymentProfile(10, 0)}, "grace_period_months_must_be_in_range"),
    (
        "negative default margin",
        {"default_margin_percent": Decimal("-2")},
        "default_margin_percent_must_be_valid",
    ),
    (
        "duplicate condition",
        {"conditions_precedent": (*CONDITIONS, CONDITIONS[0])},
        "conditions_precedent_must_be_valid",
    ),
    (
        "blank condition description",
        {"conditions_precedent": (ConditionPrecedent("cp", " "),)},
        "conditions_precedent_must_be_valid",
    ),
]


@pytest.mark.parametrize(
    ("change", "code"), [c[1:] for c in TERM_CASES], ids=[c[0] for c in TERM_CASES]
)
def test_each_broken_term_is_refused_under_its_code(change: dict[str, object], code: str) -> None:
    with pytest.raises(InvalidFacilityTerm) as refused:
        dataclasses.replace(TERMS, **change)  # type: ignore[arg-type]
    assert refused.value.code == code
    assert isinstance(refused.value, InvalidArgument)
    assert grpc_status_for(refused.value) is grpc.StatusCode.INVALID_ARGUMENT


def test_every_broken_term_is_reported_at_once() -> None:
    with pytest.raises(InvalidFacilityTerm) as refused:
        dataclasses.replace(
            TERMS, currency="PKR", commitment_minor=0, repayment=RepaymentProfile(0, 0)
        )
    assert [finding.code for finding in refused.value.findings] == [
        "currency_must_be_usd",
        "commitment_minor_must_be_in_range",
        "instalment_count_must_be_in_range",
        "grace_period_months_must_be_in_range",
    ]


@pytest.mark.parametrize(
    ("text", "value"), [("5.25", Decimal("5.25")), ("0", Decimal(0)), ("-0.125", Decimal("-0.125"))]
)
def test_parse_percent(text: str, value: Decimal) -> None:
    assert parse_percent(text) == value


@pytest.mark.parametrize("text", ["5.25e0", " 5.25", "NaN", "1000", "5.2500001", "05.25", "5.", ""])
def test_parse_percent_refuses(text: str) -> None:
    with pytest.raises(PercentMustBeDecimalString):
        parse_percent(text)


def test_floating_rate_is_fixing_floored_plus_margin() -> None:
    interest = FloatingRate("TERM_SOFR_6M", Decimal("1.20"))
    fixing = RateFixing("TERM_SOFR_6M", date(2027, 1, 1), Decimal("3.80"))
    assert all_in_rate_percent(interest, fixing) == Decimal("5.00")
    negative = dataclasses.replace(fixing, rate_percent=Decimal("-0.10"))
    assert all_in_rate_percent(interest, negative) == Decimal("1.20")  # floored at 0
    with pytest.raises(RateFixingMustBeSupplied):
        all_in_rate_percent(interest)
    with pytest.raises(RateFixingMustMatchReferenceRate):
        all_in_rate_percent(interest, dataclasses.replace(fixing, reference_rate="TERM_SOFR_3M"))
    with pytest.raises(RateFixingMustNotBeSupplied):
        all_in_rate_percent(TERMS.interest, fixing)


# --- Day counts. ---------------------------------------------------------------------

# 30/360 Bond basis (ISDA 2006 4.16(f)): D1 31 -> 30; D2 31 -> 30 only if D1 is 30 or 31.
DAY_COUNT_CASES = [
    (date(2027, 1, 15), date(2027, 2, 15), 31, 30),
    (date(2027, 1, 31), date(2027, 2, 28), 28, 28),  # D1 31 -> 30: 30 + (28 - 30)
    (date(2027, 1, 30), date(2027, 3, 31), 60, 60),  # D2 31 -> 30 since D1 is 30
    (date(2027, 1, 15), date(2027, 3, 31), 75, 76),  # D2 stays 31 since D1 is 15
    (date(2027, 2, 28), date(2027, 3, 31), 31, 33),  # no end-of-February rule
    (date(2027, 12, 31), date(2028, 6, 30), 182, 180),  # 360 - 180 + (30 - 30)
    (date(2027, 1, 1), date(2027, 6, 30), 180, 179),  # 150 + 29
]


@pytest.mark.parametrize(("start", "end", "actual", "thirty"), DAY_COUNT_CASES)
def test_day_counts(start: date, end: date, actual: int, thirty: int) -> None:
    assert period_days(DayCount.ACT_360, start, end) == actual
    assert period_days(DayCount.THIRTY_360, start, end) == thirty
    assert year_fraction(DayCount.THIRTY_360, start, end) == Fraction(thirty, 360)
    # A period's day weights add up to its count, in both conventions.
    for convention, days in ((DayCount.ACT_360, actual), (DayCount.THIRTY_360, thirty)):
        weights = [
            day_weight_days(convention, start, start + timedelta(days=offset))
            for offset in range((end - start).days)
        ]
        assert sum(weights) == days


def test_thirty_360_day_weights() -> None:
    period_start = date(2027, 1, 15)
    assert day_weight_days(DayCount.THIRTY_360, period_start, date(2027, 1, 30)) == 1
    assert day_weight_days(DayCount.THIRTY_360, period_start, date(2027, 1, 31)) == 0
    assert day_weight_days(DayCount.THIRTY_360, period_start, date(2027, 2, 28)) == 3
    with pytest.raises(InvalidArgument):
        period_days(DayCount.ACT_360, date(2027, 2, 1), date(2027, 1, 31))
    # A convention given as a plain string is compared by value; an unknown one is refused.
    assert period_days("30/360", date(2027, 1, 31), date(2027, 3, 1)) == 31  # type: ignore[arg-type]
    with pytest.raises(DayCountMustBeSupported):
        period_days("ACT/365", date(2027, 1, 1), date(2027, 2, 1))  # type: ignore[arg-type]


def test_thirty_360_accrual_of_the_first_instalment_period() -> None:
    # 30/360: 2027-12-31 to 2028-06-30 counts 180 days, so 65,000,000 x 0.0525 x 180/360
    # = 3,412,500 / 2 = 1,706,250.00 exactly, against 1,725,208.33 under ACT/360.
    terms = dataclasses.replace(TERMS, day_count=DayCount.THIRTY_360)
    state = AccrualState.opening(terms, date(2027, 12, 31), interest_rate_percent=Decimal("5.25"))
    state = state.with_balances(
        outstanding_principal_minor=usd("65,000,000.00"), undrawn_commitment_minor=0
    )
    accruals, _ = accrue_until(state, date(2028, 6, 30))
    assert sum(item.day_weight_days for item in accruals) == 180
    assert sum(item.interest_minor for item in accruals) == usd("1,706,250.00")
    assert build_schedule(terms, usd("65,000,000.00")).instalments[0].projected_interest_minor == (
        usd("1,706,250.00")
    )


# --- Disbursement checks, in order of precedence. ------------------------------------

AVAILABLE = FacilityPosition(FacilityState.AVAILABLE, usd("65,000,000.00"), 0, ALL_CONDITIONS, 3)
GOOD = request(date(2027, 9, 1), "10,000,000.00", "INV-DRILLS-001", "Houston Drill Rigs Inc.")

DISBURSEMENT_CASES: list[tuple[str, DisbursementRequest, FacilityPosition, bool, str]] = [
    (
        "bad ABA check digit",
        dataclasses.replace(GOOD, supplier_bank_aba="021000022"),
        AVAILABLE,
        True,
        "routing_number_must_be_valid",
    ),
    (
        "non-US BIC",
        dataclasses.replace(GOOD, supplier_bank_bic="DEUTDEFF"),
        AVAILABLE,
        True,
        "bic_country_must_match",
    ),
    (
        "malformed BIC",
        dataclasses.replace(GOOD, supplier_bank_bic="CHAS US33"),
        AVAILABLE,
        True,
        "bic_must_be_valid",
    ),
    (
        "blank supplier name",
        dataclasses.replace(GOOD, supplier_name="  "),
        AVAILABLE,
        True,
        "name_must_be_valid",
    ),
    (
        "zero amount",
        dataclasses.replace(GOOD, amount_minor=0),
        AVAILABLE,
        True,
        "amount_minor_must_be_in_range",
    ),
    (
        "PKR amount",
        dataclasses.replace(GOOD, currency="PKR"),
        AVAILABLE,
        True,
        "currency_must_match_facility",
    ),
    (
        "no invoice",
        dataclasses.replace(GOOD, invoice_reference=""),
        AVAILABLE,
        True,
        "invoice_reference_must_be_valid",
    ),
    (
        "in default",
        GOOD,
        dataclasses.replace(AVAILABLE, state=FacilityState.DEFAULTED),
        True,
        "facility_must_not_be_in_default",
    ),
    (
        "accelerated",
        GOOD,
        dataclasses.replace(AVAILABLE, state=FacilityState.ACCELERATED),
        True,
        "facility_must_not_be_in_default",
    ),
    (
        "not yet available",
        GOOD,
        dataclasses.replace(AVAILABLE, state=FacilityState.EFFECTIVE),
        True,
        "facility_must_be_available",
    ),
    (
        "condition outstanding",
        GOOD,
        dataclasses.replace(AVAILABLE, satisfied_condition_ids=frozenset({"eca_cover_issued"})),
        True,
        "conditions_precedent_must_be_met",
    ),
    (
        "after availability",
        dataclasses.replace(GOOD, value_date=date(2028, 1, 1)),
        AVAILABLE,
        True,
        "value_date_must_be_within_availability_period",
    ),
    (
        "before availability",
        dataclasses.replace(GOOD, value_date=date(2026, 12, 31)),
        AVAILABLE,
        True,
        "value_date_must_be_within_availability_period",
    ),
    (
        "over the remaining commitment",
        dataclasses.replace(GOOD, amount_minor=usd("35,000,000.01")),
        AVAILABLE,
        True,
        "amount_must_not_exceed_remaining_commitment",
    ),
    ("screening hit", GOOD, AVAILABLE, False, "supplier_must_pass_screening"),
]


@pytest.mark.parametrize(
    ("disbursement", "position", "screening_passed", "code"),
    [case[1:] for case in DISBURSEMENT_CASES],
    ids=[case[0] for case in DISBURSEMENT_CASES],
)
def test_each_disbursement_check(
    disbursement: DisbursementRequest,
    position: FacilityPosition,
    screening_passed: bool,
    code: str,
) -> None:
    findings = disbursement_findings(
        TERMS, position, disbursement, supplier_screening_passed=screening_passed
    )
    assert [finding.code for finding in findings] == [code]
    with pytest.raises(type(findings[0])):
        check_disbursement(
            TERMS, position, disbursement, supplier_screening_passed=screening_passed
        )


def test_the_good_request_passes_and_the_rest_of_the_commitment_can_be_drawn() -> None:
    assert disbursement_findings(TERMS, AVAILABLE, GOOD, supplier_screening_passed=True) == []
    last = dataclasses.replace(
        GOOD, amount_minor=usd("35,000,000.00"), value_date=date(2027, 12, 31)
    )
    checked = check_disbursement(TERMS, AVAILABLE, last, supplier_screening_passed=True)
    assert checked.remaining_commitment_minor == 0
    assert checked.commitment_fully_drawn


def test_every_disbursement_finding_is_reported_in_precedence_order() -> None:
    broken = dataclasses.replace(GOOD, supplier_bank_bic="DEUTDEFF", value_date=date(2028, 1, 1))
    position = dataclasses.replace(AVAILABLE, state=FacilityState.DEFAULTED)
    findings = disbursement_findings(TERMS, position, broken, supplier_screening_passed=False)
    assert [finding.code for finding in findings] == [
        "bic_country_must_match",
        "facility_must_not_be_in_default",
        "value_date_must_be_within_availability_period",
        "supplier_must_pass_screening",
    ]


def test_a_financed_exposure_fee_is_principal_and_uses_commitment() -> None:
    terms = dataclasses.replace(
        TERMS,
        exposure_fee=ExposureFee(
            Decimal("1.00"), ExposureFeeTiming.PER_DISBURSEMENT, ExposureFeeSettlement.FINANCED
        ),
    )
    # 35,000,000.00 remain. 34,653,465.35 x 1 % = 346,534.6535 -> 346,534.65;
    # principal 34,653,465.35 + 346,534.65 = 35,000,000.00: exactly the rest.
    exact = dataclasses.replace(GOOD, amount_minor=usd("34,653,465.35"))
    checked = check_disbursement(terms, AVAILABLE, exact, supplier_screening_passed=True)
    assert checked.exposure_fee_minor == usd("346,534.65")
    assert checked.principal_minor == usd("35,000,000.00")
    assert checked.commitment_fully_drawn
    # One cent more: 34,653,465.36 + 346,534.65 (346,534.6536 rounded) = 35,000,000.01.
    over = dataclasses.replace(GOOD, amount_minor=usd("34,653,465.36"))
    findings = disbursement_findings(terms, AVAILABLE, over, supplier_screening_passed=True)
    assert [finding.code for finding in findings] == ["amount_must_not_exceed_remaining_commitment"]


def test_an_upfront_exposure_fee_falls_on_the_first_disbursement() -> None:
    terms = dataclasses.replace(
        TERMS,
        exposure_fee=ExposureFee(
            Decimal("1.25"), ExposureFeeTiming.UPFRONT, ExposureFeeSettlement.PAID
        ),
    )
    # 100,000,000.00 x 1.25 % = 1,250,000.00 on the commitment, once.
    amount = usd("20,000,000.00")
    assert exposure_fee_minor(terms, amount, first_disbursement=True) == usd("1,250,000.00")
    assert exposure_fee_minor(terms, amount, first_disbursement=False) == 0
