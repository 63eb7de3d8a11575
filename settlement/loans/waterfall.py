"""The repayment waterfall: how a payment received is split across what is owed.

A repayment of ``amount_minor`` received on ``value_date`` pays, in order,
each step in full before the next gets a cent:

1. fees due (commitment fee, an exposure fee paid in cash, any other fee);
2. default interest due;
3. interest due;
4. principal due: instalments whose due date is on or before the value date,
   oldest first;
5. early repayment: principal not yet due, in **inverse order of maturity**
   (the last instalment first). The borrower's next instalments stay as
   scheduled; the loan gets shorter, not each instalment smaller, which is
   how export-credit agreements apply prepayments and keeps the agency's
   exposure falling fastest at the far end.

Interest accrued but not yet due is not a step: it stays in the accrual and
falls due on the next interest payment date with the rest of that period's
interest, charged on the principal as it actually stood each day (prepaid
principal stops bearing interest on the value date). Break costs, if the
agreement has any, are a fee the caller adds to the fees due.

**Overpayment is refused**: an amount above everything outstanding (fees,
interest and all principal, due or not) raises
:class:`RepaymentMustNotExceedOutstanding`, which states the payoff amount,
and nothing is applied. The hub only moves money on a signed instruction, so
refusing writes nothing and the bank resends the exact payoff; a surplus
would need a suspense account and a refund flow of its own.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from datetime import date
from typing import Final

from ledger.errors import IntegrityError
from settlement.errors import FailedPrecondition, InvalidArgument
from settlement.loans.accrual import BALANCE_MINOR_MAX
from settlement.loans.schedule import RepaymentSchedule
from settlement.loans.terms import INSTALMENT_COUNT_MAX

INSTALMENTS_MAX: Final = INSTALMENT_COUNT_MAX
"""A facility has at most this many instalments (see terms)."""


class AmountsOutstandingMustBeValid(InvalidArgument):
    code = "amounts_outstanding_must_be_valid"


class RepaymentAmountMustBeInRange(InvalidArgument):
    code = "repayment_amount_minor_must_be_in_range"


class RepaymentMustNotExceedOutstanding(FailedPrecondition):
    code = "repayment_must_not_exceed_outstanding"

    def __init__(self, amount_minor: int, outstanding_minor: int) -> None:
        super().__init__(
            f"expected at most {outstanding_minor}, everything outstanding (the payoff "
            f"amount), got {amount_minor}: {amount_minor - outstanding_minor} too much"
        )
        self.amount_minor = amount_minor
        self.outstanding_minor = outstanding_minor


class WaterfallMustAddUp(IntegrityError):
    code = "waterfall_must_add_up"


@dataclass(frozen=True, slots=True)
class InstalmentBalance:
    """The unpaid principal of one scheduled instalment."""

    number: int
    due_date: date
    principal_minor: int


@dataclass(frozen=True, slots=True)
class AmountsOutstanding:
    """Everything the borrower owes on ``value_date``, by waterfall step."""

    value_date: date
    fees_minor: int
    default_interest_minor: int
    interest_minor: int
    """Interest due (of interest periods that have ended) and unpaid."""
    instalments: tuple[InstalmentBalance, ...]
    """Every instalment with unpaid principal, due or not, by due date."""

    def __post_init__(self) -> None:
        amounts = (
            ("fees_minor", self.fees_minor),
            ("default_interest_minor", self.default_interest_minor),
            ("interest_minor", self.interest_minor),
            *(
                (f"instalment {instalment.number} principal_minor", instalment.principal_minor)
                for instalment in self.instalments
            ),
        )
        for name, value in amounts:
            if not _is_amount(value, 0):
                raise AmountsOutstandingMustBeValid(
                    f"{name}: expected an integer from 0 to {BALANCE_MINOR_MAX}, got {value!r}"
                )
        if len(self.instalments) > INSTALMENTS_MAX:
            raise AmountsOutstandingMustBeValid(
                f"expected at most {INSTALMENTS_MAX} instalments, got {len(self.instalments)}"
            )
        for earlier, later in itertools.pairwise(self.instalments):
            if not (earlier.due_date < later.due_date and earlier.number < later.number):
                raise AmountsOutstandingMustBeValid(
                    f"expected instalments in order of due date, got instalment "
                    f"{earlier.number} ({earlier.due_date.isoformat()}) before "
                    f"{later.number} ({later.due_date.isoformat()})"
                )

    @property
    def principal_due_minor(self) -> int:
        return sum(item.principal_minor for item in self.instalments if self._is_due(item))

    @property
    def principal_not_due_minor(self) -> int:
        return sum(item.principal_minor for item in self.instalments if not self._is_due(item))

    @property
    def principal_minor(self) -> int:
        return sum(item.principal_minor for item in self.instalments)

    @property
    def due_minor(self) -> int:
        """What is due on the value date: fees, interest and principal due."""
        return (
            self.fees_minor
            + self.default_interest_minor
            + self.interest_minor
            + self.principal_due_minor
        )

    @property
    def total_minor(self) -> int:
        """Everything outstanding: the payoff amount on the value date."""
        return self.due_minor + self.principal_not_due_minor

    def _is_due(self, instalment: InstalmentBalance) -> bool:
        return instalment.due_date <= self.value_date


@dataclass(frozen=True, slots=True)
class PrincipalApplied:
    """Principal paid on one instalment by one repayment."""

    number: int
    due_date: date
    principal_minor: int
    early: bool
    """True when the instalment was not yet due (an early repayment)."""


@dataclass(frozen=True, slots=True)
class RepaymentApplication:
    """How one repayment was split, and what is outstanding after it."""

    amount_minor: int
    fees_minor: int
    default_interest_minor: int
    interest_minor: int
    principal_due_minor: int
    principal_early_minor: int
    principal: tuple[PrincipalApplied, ...]
    """Per instalment, in the order the waterfall paid them."""
    remaining: AmountsOutstanding

    @property
    def principal_minor(self) -> int:
        return self.principal_due_minor + self.principal_early_minor


def instalment_balances(schedule: RepaymentSchedule) -> tuple[InstalmentBalance, ...]:
    """A fresh schedule's instalments, nothing paid yet."""
    return tuple(
        InstalmentBalance(item.number, item.due_date, item.principal_minor)
        for item in schedule.instalments
    )


def apply_repayment(outstanding: AmountsOutstanding, amount_minor: int) -> RepaymentApplication:
    """Split ``amount_minor`` over fees, default interest, interest, principal due, then early.

    Raises :class:`RepaymentAmountMustBeInRange` for an amount that is not a
    positive integer and :class:`RepaymentMustNotExceedOutstanding` for an
    overpayment; nothing is applied in either case.
    """
    if not _is_amount(amount_minor, 1):
        raise RepaymentAmountMustBeInRange(
            f"expected an integer of minor units from 1 to {BALANCE_MINOR_MAX}, "
            f"got {amount_minor!r}"
        )
    if amount_minor > outstanding.total_minor:
        raise RepaymentMustNotExceedOutstanding(amount_minor, outstanding.total_minor)

    left_minor = amount_minor
    fees_minor = min(left_minor, outstanding.fees_minor)
    left_minor -= fees_minor
    default_interest_minor = min(left_minor, outstanding.default_interest_minor)
    left_minor -= default_interest_minor
    interest_minor = min(left_minor, outstanding.interest_minor)
    left_minor -= interest_minor

    due = [item for item in outstanding.instalments if item.due_date <= outstanding.value_date]
    not_due = [item for item in outstanding.instalments if item.due_date > outstanding.value_date]
    paid_by_number: dict[int, int] = {}
    applied: list[PrincipalApplied] = []
    # Due: oldest first. Early: inverse order of maturity, the last instalment first.
    in_order = [(item, False) for item in due] + [(item, True) for item in reversed(not_due)]
    for item, early in in_order:
        if left_minor == 0:
            break
        paid_minor = min(left_minor, item.principal_minor)
        if paid_minor == 0:
            continue
        left_minor -= paid_minor
        paid_by_number[item.number] = paid_minor
        applied.append(PrincipalApplied(item.number, item.due_date, paid_minor, early))

    remaining = dataclasses.replace(
        outstanding,
        fees_minor=outstanding.fees_minor - fees_minor,
        default_interest_minor=outstanding.default_interest_minor - default_interest_minor,
        interest_minor=outstanding.interest_minor - interest_minor,
        instalments=tuple(
            dataclasses.replace(
                item, principal_minor=item.principal_minor - paid_by_number.get(item.number, 0)
            )
            for item in outstanding.instalments
        ),
    )
    application = RepaymentApplication(
        amount_minor=amount_minor,
        fees_minor=fees_minor,
        default_interest_minor=default_interest_minor,
        interest_minor=interest_minor,
        principal_due_minor=sum(item.principal_minor for item in applied if not item.early),
        principal_early_minor=sum(item.principal_minor for item in applied if item.early),
        principal=tuple(applied),
        remaining=remaining,
    )
    _check_adds_up(outstanding, application, left_minor)
    return application


def _check_adds_up(
    before: AmountsOutstanding, application: RepaymentApplication, left_minor: int
) -> None:
    """Every cent received is applied once, and what remains is what was owed less it."""
    if left_minor != 0:
        raise WaterfallMustAddUp(f"expected nothing left unapplied, got {left_minor}")
    split_minor = (
        application.fees_minor
        + application.default_interest_minor
        + application.interest_minor
        + application.principal_minor
    )
    if split_minor != application.amount_minor:
        raise WaterfallMustAddUp(
            f"expected the split to add up to {application.amount_minor}, got {split_minor}"
        )
    after_minor = application.remaining.total_minor
    if after_minor != before.total_minor - application.amount_minor:
        raise WaterfallMustAddUp(
            f"expected {before.total_minor - application.amount_minor} outstanding after, "
            f"got {after_minor}"
        )
    principal_after_minor = application.remaining.principal_minor
    if principal_after_minor != before.principal_minor - application.principal_minor:
        raise WaterfallMustAddUp(
            f"expected principal {before.principal_minor - application.principal_minor} "
            f"after, got {principal_after_minor}"
        )


def _is_amount(value: object, lowest: int) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and lowest <= value <= BALANCE_MINOR_MAX
    )
