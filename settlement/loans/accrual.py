"""Daily accrual of interest, commitment fee and default interest.

THE ROUNDING RULE (the only one in the loan domain; every other module rounds
through :func:`round_to_minor`):

    Amounts accrue exactly, as fractions of a cent. The amount posted for a
    day is the period's cumulative exact accrual, rounded to the cent half to
    even (ROUND_HALF_EVEN), minus what the period has already posted. So the
    postings of a period always add up to its exact total rounded once, and
    daily rounding never loses or invents a cent. The carries restart at each
    interest period (:meth:`AccrualState.start_period`); what a period owes is
    what it posted.

What accrues on one calendar day ``d`` (from ``d`` included to ``d + 1``
excluded), on the balances as they stand at the end of ``d``:

- interest: outstanding principal x all-in annual rate x day fraction;
- commitment fee: undrawn commitment x commitment fee rate x day fraction;
- default interest: overdue amount x default margin x day fraction. The
  overdue amount is every sum due and unpaid (principal, interest, fees).
  Regular interest keeps accruing on all outstanding principal, overdue or
  not, so overdue principal bears the rate plus the margin, and overdue
  interest and fees bear the margin alone (interest is never compounded).

The day fraction is :func:`settlement.loans.daycount.day_fraction`: 1/360
under ACT/360; under 30/360 the day's weight within its interest period.

A disbursement paid on ``d`` bears interest from ``d``; a repayment received
on ``d`` stops interest from ``d``. A period from ``s`` to ``e`` is accrued by
the business dates ``s`` to ``e - 1``.

:func:`daily_accrual` is pure: the same state and date give the same result.
Idempotency by date belongs to the caller, who names the ledger transactions
after the facility and the date; a date already accrued by the state given is
refused (:class:`BusinessDateAlreadyAccrued`), never posted twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Final

from ledger.errors import IntegrityError
from settlement.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from settlement.loans.daycount import DAYS_IN_YEAR_BASIS, DayCount, day_weight_days
from settlement.loans.terms import FacilityTerms

ROUNDING: Final = ROUND_HALF_EVEN
"""The rounding rule's name, as :mod:`decimal` spells it (:func:`round_to_minor` applies it)."""

BALANCE_MINOR_MAX: Final = 10**15
"""A hundred times the largest commitment: any real balance fits, and every
balance times a rate stays exact and far inside int64 once rounded."""

ACCRUAL_DAYS_PER_CALL_MAX: Final = 400
"""One catch-up covers at most a year and a bit; more means a stalled job to look at."""

_ONE_DAY: Final = timedelta(days=1)
_PERCENT: Final = 100


class AccrualStateMustBeValid(InvalidArgument):
    code = "accrual_state_must_be_valid"


class BusinessDateAlreadyAccrued(AlreadyExists):
    code = "business_date_must_not_be_accrued_twice"


class BusinessDateMustBeNext(FailedPrecondition):
    code = "business_date_must_be_next_accrual_date"


class PeriodStartMustBeNextAccrualDate(FailedPrecondition):
    code = "period_start_must_be_next_accrual_date"


class AccrualCarryMustMatchPostings(IntegrityError):
    code = "accrual_carry_must_match_postings"


def round_to_minor(exact_minor: Fraction) -> int:
    """An exact amount in minor units, rounded to a whole minor unit half to even.

    The loan domain's one rounding function (ROUND_HALF_EVEN): a tie goes to
    the even neighbour, so ties do not drift up over many postings.
    """
    floor_minor, remainder = divmod(exact_minor.numerator, exact_minor.denominator)
    twice_remainder = 2 * remainder
    if twice_remainder < exact_minor.denominator:
        return floor_minor
    if twice_remainder > exact_minor.denominator:
        return floor_minor + 1
    return floor_minor + floor_minor % 2


def exact_interest_minor(
    balance_minor: int, annual_rate_percent: Decimal, year_fraction: Fraction
) -> Fraction:
    """Balance x rate x year fraction, exactly, in minor units (nothing rounded)."""
    return balance_minor * Fraction(annual_rate_percent) / _PERCENT * year_fraction


@dataclass(frozen=True, slots=True)
class AccrualCarry:
    """One accrual's running totals within the current period.

    ``exact_minor`` is everything accrued so far, exactly; ``posted_minor`` is
    what was posted, always ``round_to_minor(exact_minor)``.
    """

    exact_minor: Fraction = Fraction(0)
    posted_minor: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.exact_minor, Fraction) or self.exact_minor < 0:
            raise AccrualStateMustBeValid(
                f"carry: expected a non-negative Fraction, got {self.exact_minor!r}"
            )
        if self.posted_minor != round_to_minor(self.exact_minor):
            raise AccrualCarryMustMatchPostings(
                f"expected posted {round_to_minor(self.exact_minor)} (the exact "
                f"{self.exact_minor} rounded half to even), got {self.posted_minor}"
            )

    def advance(self, amount_exact_minor: Fraction) -> tuple[int, AccrualCarry]:
        """Accrue ``amount_exact_minor`` more; return the posting and the new carry."""
        exact_minor = self.exact_minor + amount_exact_minor
        posted_minor = round_to_minor(exact_minor)
        posting_minor = posted_minor - self.posted_minor
        # Rounding is monotone and accruals are never negative, so neither is a posting.
        if posting_minor < 0:
            raise AccrualCarryMustMatchPostings(
                f"expected a posting of at least 0, got {posting_minor} "
                f"(exact {exact_minor}, posted before {self.posted_minor})"
            )
        return posting_minor, AccrualCarry(exact_minor=exact_minor, posted_minor=posted_minor)


@dataclass(frozen=True, slots=True)
class AccrualState:
    """What one facility's daily accrual needs, as of its next accrual date.

    The balances mirror the ledger at the end of ``next_accrual_date``: the
    caller applies that day's disbursements, repayments and due dates before
    accruing it.
    """

    day_count: DayCount
    period_start: date
    """Start of the current interest period; the carries restart there."""
    next_accrual_date: date
    """The first calendar date not yet accrued."""
    outstanding_principal_minor: int
    undrawn_commitment_minor: int
    """Zero outside the availability period and once the rest is cancelled."""
    overdue_minor: int
    """Every sum due and unpaid: the base of default interest."""
    interest_rate_percent: Decimal
    """All-in annual rate for the period (see ``terms.all_in_rate_percent``)."""
    commitment_fee_percent: Decimal
    default_margin_percent: Decimal
    interest: AccrualCarry = AccrualCarry()
    commitment_fee: AccrualCarry = AccrualCarry()
    default_interest: AccrualCarry = AccrualCarry()

    def __post_init__(self) -> None:
        if not isinstance(self.day_count, DayCount):
            raise AccrualStateMustBeValid(f"day_count: expected DayCount, got {self.day_count!r}")
        if self.next_accrual_date < self.period_start:
            raise AccrualStateMustBeValid(
                f"expected next_accrual_date on or after period_start "
                f"{self.period_start.isoformat()}, got {self.next_accrual_date.isoformat()}"
            )
        balances = (
            ("outstanding_principal_minor", self.outstanding_principal_minor),
            ("undrawn_commitment_minor", self.undrawn_commitment_minor),
            ("overdue_minor", self.overdue_minor),
        )
        for name, value in balances:
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value <= BALANCE_MINOR_MAX
            ):
                raise AccrualStateMustBeValid(
                    f"{name}: expected an integer from 0 to {BALANCE_MINOR_MAX}, got {value!r}"
                )
        rates = (
            ("interest_rate_percent", self.interest_rate_percent),
            ("commitment_fee_percent", self.commitment_fee_percent),
            ("default_margin_percent", self.default_margin_percent),
        )
        for name, rate in rates:
            if not isinstance(rate, Decimal) or not rate.is_finite() or rate < 0:
                raise AccrualStateMustBeValid(
                    f"{name}: expected a finite non-negative Decimal percent, got {rate!r}"
                )

    @classmethod
    def opening(
        cls, terms: FacilityTerms, period_start: date, *, interest_rate_percent: Decimal
    ) -> AccrualState:
        """The state of a facility before its first accrual: nothing drawn or overdue."""
        return cls(
            day_count=terms.day_count,
            period_start=period_start,
            next_accrual_date=period_start,
            outstanding_principal_minor=0,
            undrawn_commitment_minor=terms.commitment_minor,
            overdue_minor=0,
            interest_rate_percent=interest_rate_percent,
            commitment_fee_percent=terms.commitment_fee_percent,
            default_margin_percent=terms.default_margin_percent,
        )

    def with_balances(
        self,
        *,
        outstanding_principal_minor: int | None = None,
        undrawn_commitment_minor: int | None = None,
        overdue_minor: int | None = None,
    ) -> AccrualState:
        """The same state with the balances named replaced (carries untouched)."""
        return dataclasses.replace(
            self,
            outstanding_principal_minor=(
                self.outstanding_principal_minor
                if outstanding_principal_minor is None
                else outstanding_principal_minor
            ),
            undrawn_commitment_minor=(
                self.undrawn_commitment_minor
                if undrawn_commitment_minor is None
                else undrawn_commitment_minor
            ),
            overdue_minor=self.overdue_minor if overdue_minor is None else overdue_minor,
        )

    def start_period(
        self, period_start: date, *, interest_rate_percent: Decimal | None = None
    ) -> AccrualState:
        """Close the current interest period and open the next at ``period_start``.

        The closing period's amounts are what it posted; its carries (less
        than half a cent each) end with it. A floating facility passes the
        new period's all-in rate.
        """
        if period_start != self.next_accrual_date:
            raise PeriodStartMustBeNextAccrualDate(
                f"expected the new period to start on {self.next_accrual_date.isoformat()}, "
                f"the first day not yet accrued, got {period_start.isoformat()}"
            )
        return dataclasses.replace(
            self,
            period_start=period_start,
            interest_rate_percent=(
                self.interest_rate_percent
                if interest_rate_percent is None
                else interest_rate_percent
            ),
            interest=AccrualCarry(),
            commitment_fee=AccrualCarry(),
            default_interest=AccrualCarry(),
        )


@dataclass(frozen=True, slots=True)
class Accrual:
    """What one business date accrues: three postings and the state after them."""

    business_date: date
    day_weight_days: int
    """The days this date adds to its period's count (1 under ACT/360)."""
    interest_minor: int
    commitment_fee_minor: int
    default_interest_minor: int
    state: AccrualState
    """The state to accrue the next date from."""


def daily_accrual(state: AccrualState, business_date: date) -> Accrual:
    """Accrue one calendar day: interest, commitment fee and default interest.

    ``business_date`` must be the state's next accrual date: an earlier date
    was accrued already (:class:`BusinessDateAlreadyAccrued`), a later one
    would skip days (:class:`BusinessDateMustBeNext`). Weekends and holidays
    accrue like any day: the caller runs every calendar date, catching up
    with :func:`accrue_until` after a pause.
    """
    if business_date < state.next_accrual_date:
        raise BusinessDateAlreadyAccrued(
            f"expected {state.next_accrual_date.isoformat()}, the first date not yet accrued, "
            f"got {business_date.isoformat()}, which was accrued already"
        )
    if business_date > state.next_accrual_date:
        raise BusinessDateMustBeNext(
            f"expected {state.next_accrual_date.isoformat()}, the first date not yet accrued, "
            f"got {business_date.isoformat()}, which would skip days"
        )
    weight_days = day_weight_days(state.day_count, state.period_start, business_date)
    fraction = Fraction(weight_days, DAYS_IN_YEAR_BASIS)
    interest_minor, interest = state.interest.advance(
        exact_interest_minor(
            state.outstanding_principal_minor, state.interest_rate_percent, fraction
        )
    )
    commitment_fee_minor, commitment_fee = state.commitment_fee.advance(
        exact_interest_minor(state.undrawn_commitment_minor, state.commitment_fee_percent, fraction)
    )
    default_interest_minor, default_interest = state.default_interest.advance(
        exact_interest_minor(state.overdue_minor, state.default_margin_percent, fraction)
    )
    return Accrual(
        business_date=business_date,
        day_weight_days=weight_days,
        interest_minor=interest_minor,
        commitment_fee_minor=commitment_fee_minor,
        default_interest_minor=default_interest_minor,
        state=dataclasses.replace(
            state,
            next_accrual_date=business_date + _ONE_DAY,
            interest=interest,
            commitment_fee=commitment_fee,
            default_interest=default_interest,
        ),
    )


def accrue_until(state: AccrualState, end_date: date) -> tuple[tuple[Accrual, ...], AccrualState]:
    """Accrue every date from the state's next accrual date up to ``end_date`` (excluded).

    The balances must not change in between: apply a balance change, then
    accrue on. At most :data:`ACCRUAL_DAYS_PER_CALL_MAX` days per call.
    """
    day_count = (end_date - state.next_accrual_date).days
    if not 0 <= day_count <= ACCRUAL_DAYS_PER_CALL_MAX:
        raise BusinessDateMustBeNext(
            f"expected an end date from {state.next_accrual_date.isoformat()} to "
            f"{ACCRUAL_DAYS_PER_CALL_MAX} days later, got {end_date.isoformat()}"
        )
    accruals: list[Accrual] = []
    for _ in range(day_count):
        accrual = daily_accrual(state, state.next_accrual_date)
        accruals.append(accrual)
        state = accrual.state
    return tuple(accruals), state
