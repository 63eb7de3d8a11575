"""Day count conventions: how many days a period counts, and its year fraction.

Two conventions, as the 2006 ISDA Definitions define them (Section 4.16):

- ``ACT/360`` (4.16(e)): the actual number of days in the period, over 360.
- ``30/360`` (4.16(f), "30/360", "360/360" or "Bond Basis"), exactly::

      days = 360 * (Y2 - Y1) + 30 * (M2 - M1) + (D2 - D1)

  where D1 is the first day's day of month, changed to 30 if it is 31, and D2
  is the last day's day of month, changed to 30 if it is 31 *and* D1 (before
  that change) is 30 or 31. There is no end-of-February rule: that belongs to
  the SIA "30/360 US" variant, which this is not. The period runs from the
  first day (included) to the last day (excluded).

Year fractions are exact :class:`fractions.Fraction` values: nothing is
rounded here. Rounding happens once, at the posting point (see
:mod:`settlement.loans.accrual`).

Daily accrual needs the weight of one calendar day. Under ACT/360 every day
weighs 1/360. Under 30/360 the day counts of consecutive days do not add up to
the period's count (15 Jan to 31 Jan counts 16, 31 Jan to 1 Feb counts 1, but
15 Jan to 1 Feb counts 16), so a day's weight is taken from its interest
period: ``days(period_start, day + 1) - days(period_start, day)``. The weights
of a period's days then add up to exactly its day count, which is what the
facility agreement charges.
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Final

from settlement.errors import InvalidArgument

DAYS_IN_YEAR_BASIS: Final = 360
"""Both conventions divide by a 360-day year."""

_ONE_DAY: Final = timedelta(days=1)


class DayCount(StrEnum):
    """A day count convention, by its market name."""

    ACT_360 = "ACT/360"
    THIRTY_360 = "30/360"


class PeriodEndMustNotPrecedeStart(InvalidArgument):
    code = "period_end_must_not_precede_start"


class DayCountMustBeSupported(InvalidArgument):
    code = "day_count_must_be_supported"


class DayMustNotPrecedePeriodStart(InvalidArgument):
    code = "day_must_not_precede_period_start"


def period_days(convention: DayCount, start: date, end: date) -> int:
    """The number of days the convention counts from ``start`` (in) to ``end`` (out)."""
    if end < start:
        raise PeriodEndMustNotPrecedeStart(
            f"expected a period end on or after {start.isoformat()}, got {end.isoformat()}"
        )
    # Compared by value, and anything else refused: a plain "ACT/360" string
    # must never fall through to the other convention.
    if convention == DayCount.ACT_360:
        return (end - start).days
    if convention == DayCount.THIRTY_360:
        return _thirty_360_bond_basis_days(start, end)
    raise DayCountMustBeSupported(
        f"expected one of {[member.value for member in DayCount]}, got {convention!r}"
    )


def year_fraction(convention: DayCount, start: date, end: date) -> Fraction:
    """The exact year fraction of the period from ``start`` (in) to ``end`` (out)."""
    return Fraction(period_days(convention, start, end), DAYS_IN_YEAR_BASIS)


def day_weight_days(convention: DayCount, period_start: date, day: date) -> int:
    """How many days the calendar day ``day`` adds to its interest period's count.

    Always 1 under ACT/360. Under 30/360 it is 0 for a 31st that the rule
    folds into the 30th, 1 on most days, and 2 or 3 for the last day of
    February. The weights of all days of a period add up to
    :func:`period_days` of that period.
    """
    if day < period_start:
        raise DayMustNotPrecedePeriodStart(
            f"expected a day on or after the period start {period_start.isoformat()}, "
            f"got {day.isoformat()}"
        )
    if convention == DayCount.ACT_360:
        return 1
    return period_days(convention, period_start, day + _ONE_DAY) - period_days(
        convention, period_start, day
    )


def day_fraction(convention: DayCount, period_start: date, day: date) -> Fraction:
    """The exact year fraction one calendar day adds to its interest period."""
    return Fraction(day_weight_days(convention, period_start, day), DAYS_IN_YEAR_BASIS)


def _thirty_360_bond_basis_days(start: date, end: date) -> int:
    """ISDA 2006 Section 4.16(f), without any end-of-February adjustment."""
    first_day = start.day
    last_day = end.day
    if last_day == 31 and first_day >= 30:
        last_day = 30
    if first_day == 31:
        first_day = 30
    return 360 * (end.year - start.year) + 30 * (end.month - start.month) + (last_day - first_day)
