"""The repayment schedule: equal semi-annual principal instalments after a grace period.

Built once, when the facility enters repayment, from the principal then
outstanding; stored by the caller and fetched at any time.

- Dates: the first instalment falls ``grace_period_months`` after the start
  (the end of the availability period), then one every six months. Each date
  is counted from the start, not from the previous date, so no day drifts;
  when the start is the last day of its month every date is the last day of
  its month (31 Dec -> 30 Jun -> 31 Dec), otherwise the day is kept and
  clamped to the month's length. Dates are not moved for holidays here.
- Principal: ``principal // count`` for every instalment but the last, which
  absorbs the remainder, so the instalments add up to the principal exactly.
- Projected interest: for each period from the previous date (included) to
  the instalment's date (excluded), the principal outstanding during it x
  the annual rate x the facility's day count fraction, rounded once to the
  cent by :func:`settlement.loans.accrual.round_to_minor` (the same figure the
  daily accrual posts over that period when nothing else changes). It is a
  projection: a floating facility projects at the rate passed in, and late or
  early payments change what is actually charged.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final

from ledger.errors import IntegrityError
from settlement.errors import InvalidArgument
from settlement.loans.accrual import exact_interest_minor, round_to_minor
from settlement.loans.daycount import DayCount, period_days, year_fraction
from settlement.loans.terms import (
    COMMITMENT_MINOR_MAX,
    INSTALMENT_INTERVAL_MONTHS,
    FacilityTerms,
    FixedRate,
    all_in_rate_percent,
)

MONTHS_PER_YEAR: Final = 12


class SchedulePrincipalMustBeInRange(InvalidArgument):
    code = "schedule_principal_minor_must_be_in_range"


class ProjectionRateMustBeSupplied(InvalidArgument):
    code = "projection_rate_percent_must_be_supplied"


class InstalmentsMustAddUpToPrincipal(IntegrityError):
    code = "instalments_must_add_up_to_principal"


@dataclass(frozen=True, slots=True)
class Instalment:
    """One instalment: its period, principal and projected interest."""

    number: int
    """1 for the first instalment."""
    period_start: date
    due_date: date
    """Also the end (excluded) of its interest period."""
    period_days: int
    """The period's length as the facility's day count counts it."""
    opening_principal_minor: int
    """Principal outstanding during the period, before this instalment."""
    principal_minor: int
    projected_interest_minor: int

    @property
    def total_minor(self) -> int:
        return self.principal_minor + self.projected_interest_minor

    @property
    def closing_principal_minor(self) -> int:
        return self.opening_principal_minor - self.principal_minor


@dataclass(frozen=True, slots=True)
class RepaymentSchedule:
    """A facility's repayment schedule as generated on entering repayment."""

    facility_id: str
    start_date: date
    principal_minor: int
    annual_rate_percent: Decimal
    day_count: DayCount
    instalments: tuple[Instalment, ...]

    @property
    def projected_interest_minor(self) -> int:
        return sum(instalment.projected_interest_minor for instalment in self.instalments)


def add_months(start: date, months: int) -> date:
    """``start`` plus whole months; a month-end start gives month ends, else the day is clamped."""
    month_index = start.month - 1 + months
    year = start.year + month_index // MONTHS_PER_YEAR
    month = month_index % MONTHS_PER_YEAR + 1
    last_day = calendar.monthrange(year, month)[1]
    start_is_month_end = start.day == calendar.monthrange(start.year, start.month)[1]
    day = last_day if start_is_month_end else min(start.day, last_day)
    return date(year, month, day)


def instalment_dates(terms: FacilityTerms, start_date: date | None = None) -> tuple[date, ...]:
    """The instalments' due dates, counted from ``start_date`` (default: end of availability)."""
    start = terms.availability_end if start_date is None else start_date
    profile = terms.repayment
    return tuple(
        add_months(start, profile.grace_period_months + INSTALMENT_INTERVAL_MONTHS * index)
        for index in range(profile.instalment_count)
    )


def build_schedule(
    terms: FacilityTerms,
    principal_minor: int,
    *,
    start_date: date | None = None,
    projection_rate_percent: Decimal | None = None,
) -> RepaymentSchedule:
    """The schedule for ``principal_minor`` outstanding when repayment starts.

    ``start_date`` defaults to the end of the availability period. A fixed
    facility projects at its rate; a floating one needs
    ``projection_rate_percent`` (the all-in rate to project at). Zero
    principal (nothing drawn) gives a schedule without instalments.
    """
    if (
        not isinstance(principal_minor, int)
        or isinstance(principal_minor, bool)
        or not 0 <= principal_minor <= COMMITMENT_MINOR_MAX
    ):
        raise SchedulePrincipalMustBeInRange(
            f"expected an integer from 0 to {COMMITMENT_MINOR_MAX}, got {principal_minor!r}"
        )
    if isinstance(terms.interest, FixedRate):
        rate_percent = all_in_rate_percent(terms.interest)
    elif projection_rate_percent is None:
        raise ProjectionRateMustBeSupplied(
            f"a floating facility ({terms.interest.reference_rate} + "
            f"{terms.interest.margin_percent} %) projects interest at a rate the caller "
            "supplies; got none"
        )
    else:
        rate_percent = projection_rate_percent
    start = terms.availability_end if start_date is None else start_date
    if principal_minor == 0:
        return RepaymentSchedule(terms.facility_id, start, 0, rate_percent, terms.day_count, ())
    count = terms.repayment.instalment_count
    equal_minor = principal_minor // count
    instalments: list[Instalment] = []
    opening_minor = principal_minor
    period_start = start
    for index, due_date in enumerate(instalment_dates(terms, start)):
        is_last = index == count - 1
        principal_due_minor = opening_minor if is_last else equal_minor
        interest_minor = round_to_minor(
            exact_interest_minor(
                opening_minor,
                rate_percent,
                year_fraction(terms.day_count, period_start, due_date),
            )
        )
        instalments.append(
            Instalment(
                number=index + 1,
                period_start=period_start,
                due_date=due_date,
                period_days=period_days(terms.day_count, period_start, due_date),
                opening_principal_minor=opening_minor,
                principal_minor=principal_due_minor,
                projected_interest_minor=interest_minor,
            )
        )
        opening_minor -= principal_due_minor
        period_start = due_date
    total_minor = sum(instalment.principal_minor for instalment in instalments)
    if total_minor != principal_minor or opening_minor != 0:
        raise InstalmentsMustAddUpToPrincipal(
            f"schedule: expected instalments adding up to {principal_minor}, got {total_minor}"
        )
    return RepaymentSchedule(
        terms.facility_id, start, principal_minor, rate_percent, terms.day_count, tuple(instalments)
    )
