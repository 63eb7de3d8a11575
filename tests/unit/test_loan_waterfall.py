"""The repayment waterfall: fees, default interest, interest, principal due, then early.

One position, small figures so each row is checked at a glance; the rows are
in the order the waterfall fills (each row pays a little more than the last).
"""

from __future__ import annotations

import itertools
from datetime import date

import grpc
import pytest

from settlement.errors import grpc_status_for
from settlement.loans.waterfall import (
    AmountsOutstanding,
    AmountsOutstandingMustBeValid,
    InstalmentBalance,
    PrincipalApplied,
    RepaymentAmountMustBeInRange,
    RepaymentMustNotExceedOutstanding,
    apply_repayment,
)

VALUE_DATE = date(2029, 1, 15)

# Owed on 2029-01-15: fees 10.00, default interest 2.00, interest 30.00; instalment 1
# (2028-06-30) has 5.00 left, instalment 2 (2028-12-31) 50.00, both due; instalments 3
# (2029-06-30) and 4 (2029-12-31) 50.00 each, not yet due.
#   due   = 1,000 + 200 + 3,000 + 500 + 5,000 =  9,700 minor units
#   total = 9,700 + 5,000 + 5,000             = 19,700 minor units (the payoff)
OUTSTANDING = AmountsOutstanding(
    value_date=VALUE_DATE,
    fees_minor=1_000,
    default_interest_minor=200,
    interest_minor=3_000,
    instalments=(
        InstalmentBalance(1, date(2028, 6, 30), 500),
        InstalmentBalance(2, date(2028, 12, 31), 5_000),
        InstalmentBalance(3, date(2029, 6, 30), 5_000),
        InstalmentBalance(4, date(2029, 12, 31), 5_000),
    ),
)

# amount -> (fees, default interest, interest, principal due, principal early,
#            principal per instalment in the order paid as (number, amount, early))
CASES: tuple[tuple[int, tuple[int, int, int, int, int, tuple[tuple[int, int, bool], ...]]], ...] = (
    (600, (600, 0, 0, 0, 0, ())),  # part of the fees
    (1_000, (1_000, 0, 0, 0, 0, ())),  # the fees exactly
    (1_100, (1_000, 100, 0, 0, 0, ())),  # then default interest
    (1_200, (1_000, 200, 0, 0, 0, ())),
    (3_000, (1_000, 200, 1_800, 0, 0, ())),  # then interest: 3,000 - 1,200 = 1,800
    (4_200, (1_000, 200, 3_000, 0, 0, ())),
    (4_500, (1_000, 200, 3_000, 300, 0, ((1, 300, False),))),  # oldest instalment first
    (4_700, (1_000, 200, 3_000, 500, 0, ((1, 500, False),))),
    (6_000, (1_000, 200, 3_000, 1_800, 0, ((1, 500, False), (2, 1_300, False)))),
    (9_700, (1_000, 200, 3_000, 5_500, 0, ((1, 500, False), (2, 5_000, False)))),  # all due
    # Early repayment: inverse order of maturity, the last instalment first.
    (9_701, (1_000, 200, 3_000, 5_500, 1, ((1, 500, False), (2, 5_000, False), (4, 1, True)))),
    (
        14_700,
        (1_000, 200, 3_000, 5_500, 5_000, ((1, 500, False), (2, 5_000, False), (4, 5_000, True))),
    ),
    (
        16_000,
        (
            1_000,
            200,
            3_000,
            5_500,
            6_300,
            ((1, 500, False), (2, 5_000, False), (4, 5_000, True), (3, 1_300, True)),
        ),
    ),
    (
        19_700,  # the payoff: everything
        (
            1_000,
            200,
            3_000,
            5_500,
            10_000,
            ((1, 500, False), (2, 5_000, False), (4, 5_000, True), (3, 5_000, True)),
        ),
    ),
)


@pytest.mark.parametrize(("amount_minor", "expected"), CASES, ids=[str(a) for a, _ in CASES])
def test_waterfall_splits(
    amount_minor: int,
    expected: tuple[int, int, int, int, int, tuple[tuple[int, int, bool], ...]],
) -> None:
    fees, default_interest, interest, principal_due, principal_early, per_instalment = expected
    application = apply_repayment(OUTSTANDING, amount_minor)

    assert application.fees_minor == fees
    assert application.default_interest_minor == default_interest
    assert application.interest_minor == interest
    assert application.principal_due_minor == principal_due
    assert application.principal_early_minor == principal_early
    assert [
        (item.number, item.principal_minor, item.early) for item in application.principal
    ] == list(per_instalment)
    assert fees + default_interest + interest + principal_due + principal_early == amount_minor

    remaining = application.remaining
    assert remaining.fees_minor == 1_000 - fees
    assert remaining.default_interest_minor == 200 - default_interest
    assert remaining.interest_minor == 3_000 - interest
    assert remaining.total_minor == 19_700 - amount_minor
    paid = {number: paid for number, paid, _ in per_instalment}
    assert [item.principal_minor for item in remaining.instalments] == [
        500 - paid.get(1, 0),
        5_000 - paid.get(2, 0),
        5_000 - paid.get(3, 0),
        5_000 - paid.get(4, 0),
    ]


def test_overpayment_is_refused_with_the_payoff_amount() -> None:
    with pytest.raises(RepaymentMustNotExceedOutstanding) as refused:
        apply_repayment(OUTSTANDING, 19_701)
    error = refused.value
    assert error.code == "repayment_must_not_exceed_outstanding"
    assert grpc_status_for(error) is grpc.StatusCode.FAILED_PRECONDITION
    assert error.amount_minor == 19_701
    assert error.outstanding_minor == 19_700
    assert "expected at most 19700" in error.message
    assert "1 too much" in error.message


@pytest.mark.parametrize(
    "amount_minor", [0, -1, True, 10**16], ids=["zero", "negative", "bool", "huge"]
)
def test_amount_must_be_a_positive_integer(amount_minor: int) -> None:
    with pytest.raises(RepaymentAmountMustBeInRange) as refused:
        apply_repayment(OUTSTANDING, amount_minor)
    assert refused.value.code == "repayment_amount_minor_must_be_in_range"


def test_every_amount_adds_up_and_follows_the_order() -> None:
    """Exhaustive over every amount from 1 cent to the payoff: no randomness, no seed."""
    for amount_minor in range(1, OUTSTANDING.total_minor + 1):
        application = apply_repayment(OUTSTANDING, amount_minor)
        steps = (
            (application.fees_minor, OUTSTANDING.fees_minor),
            (application.default_interest_minor, OUTSTANDING.default_interest_minor),
            (application.interest_minor, OUTSTANDING.interest_minor),
            (application.principal_due_minor, OUTSTANDING.principal_due_minor),
            (application.principal_early_minor, OUTSTANDING.principal_not_due_minor),
        )
        assert sum(paid for paid, _ in steps) == amount_minor
        # A step gets a cent only once every step before it is paid in full.
        for (paid, owed), (next_paid, _) in itertools.pairwise(steps):
            assert 0 <= paid <= owed
            assert next_paid == 0 or paid == owed
        assert application.remaining.total_minor == OUTSTANDING.total_minor - amount_minor


def test_an_instalment_due_on_the_value_date_is_due_not_early() -> None:
    outstanding = AmountsOutstanding(
        value_date=date(2028, 12, 31),
        fees_minor=0,
        default_interest_minor=0,
        interest_minor=0,
        instalments=(
            InstalmentBalance(2, date(2028, 12, 31), 5_000),
            InstalmentBalance(3, date(2029, 6, 30), 5_000),
        ),
    )
    application = apply_repayment(outstanding, 6_000)
    assert application.principal == (
        PrincipalApplied(2, date(2028, 12, 31), 5_000, early=False),
        PrincipalApplied(3, date(2029, 6, 30), 1_000, early=True),
    )


def test_a_repayment_with_nothing_due_is_all_early() -> None:
    outstanding = AmountsOutstanding(
        value_date=date(2028, 1, 10),
        fees_minor=0,
        default_interest_minor=0,
        interest_minor=0,
        instalments=(
            InstalmentBalance(1, date(2028, 6, 30), 5_000),
            InstalmentBalance(2, date(2028, 12, 31), 5_000),
        ),
    )
    application = apply_repayment(outstanding, 7_000)
    assert application.principal_due_minor == 0
    assert [(item.number, item.principal_minor) for item in application.principal] == [
        (2, 5_000),
        (1, 2_000),
    ]
    # The next instalment keeps its date and is smaller only once the later ones are gone.
    assert [item.principal_minor for item in application.remaining.instalments] == [3_000, 0]


@pytest.mark.parametrize(
    ("fees_minor", "instalments", "message"),
    [
        (-1, (), "fees_minor: expected an integer from 0"),
        (0, (InstalmentBalance(1, date(2028, 6, 30), -5),), "instalment 1 principal_minor"),
        (
            0,
            (
                InstalmentBalance(2, date(2028, 12, 31), 5),
                InstalmentBalance(1, date(2028, 6, 30), 5),
            ),
            "expected instalments in order of due date",
        ),
    ],
    ids=["negative-fees", "negative-principal", "out-of-order"],
)
def test_outstanding_amounts_must_be_valid(
    fees_minor: int, instalments: tuple[InstalmentBalance, ...], message: str
) -> None:
    with pytest.raises(AmountsOutstandingMustBeValid) as refused:
        AmountsOutstanding(VALUE_DATE, fees_minor, 0, 0, instalments)
    assert message in refused.value.message
