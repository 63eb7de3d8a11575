"""Helpers shared by the ledger's integration tests: a clock the test moves,
command builders with readable defaults, and a snapshot of everything a
rejected command must leave unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ledger.errors import LedgerError
from ledger.records import (
    AccountFlag,
    AccountStatus,
    Command,
    CommandResult,
    NewAccount,
    NewTransaction,
    Posting,
    Receipt,
    Side,
)
from ledger.store import Ledger

START_US = 1_767_225_600_000_000
"""2026-01-01T00:00:00Z: a fixed start so committed_at and timeouts are exact figures."""

SECOND_US = 1_000_000

DatabaseFactory = Callable[[str], AbstractContextManager[str]]
"""The ``database_factory`` fixture: a fresh database location per backend name."""


class ManualClock:
    """A ``Ledger`` clock (microseconds) that moves only when the test says so."""

    def __init__(self, now_us: int = START_US) -> None:
        self.now_us = now_us

    def __call__(self) -> int:
        return self.now_us

    def advance(self, seconds: float) -> None:
        self.now_us += int(seconds * SECOND_US)


def account(
    account_id: str,
    currency: str = "USD",
    *,
    flags: Iterable[AccountFlag] = (),
    debit_limit_minor: int | None = None,
    normal_side: Side = Side.CREDIT,
    owner: str = "owner",
) -> NewAccount:
    return NewAccount(
        id=account_id,
        owner=owner,
        currency=currency,
        normal_side=normal_side,
        flags=frozenset(flags),
        debit_limit_minor=debit_limit_minor,
    )


def funded_account(account_id: str, currency: str = "USD") -> NewAccount:
    """An account that may not go below zero (debits must not exceed credits)."""
    return account(account_id, currency, flags=[AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS])


def transfer(
    transaction_id: str,
    debit_account_id: str,
    credit_account_id: str,
    amount_minor: int,
    currency: str = "USD",
    *,
    pending: bool = False,
    timeout_seconds: int | None = None,
    reference: str = "",
    code: str = "",
) -> NewTransaction:
    """One debit and one credit of the same amount."""
    return NewTransaction(
        id=transaction_id,
        postings=(
            Posting(debit_account_id, Side.DEBIT, amount_minor, currency),
            Posting(credit_account_id, Side.CREDIT, amount_minor, currency),
        ),
        pending=pending,
        timeout_seconds=timeout_seconds,
        reference=reference,
        code=code,
    )


def receipts(results: Sequence[CommandResult]) -> list[Receipt]:
    """Every result's receipt; fails the test naming the first error."""
    found: list[Receipt] = []
    for result in results:
        if result.error is not None:
            raise AssertionError(f"{result.id!r} failed: {result.error}")
        assert result.receipt is not None
        found.append(result.receipt)
    return found


def run(ledger: Ledger, *commands: Command, linked: bool = False) -> list[Receipt]:
    """Execute commands that must all succeed; check the invariants afterwards."""
    found = receipts(ledger.execute(list(commands), linked=linked))
    ledger.check_invariants()
    return found


def error_of(ledger: Ledger, command: Command) -> LedgerError:
    """Execute one command that must fail, and return its error; check the invariants."""
    (result,) = ledger.execute([command])
    assert result.error is not None, f"{command.id!r} unexpectedly succeeded"
    ledger.check_invariants()
    return result.error


Figures = tuple[int, int, int, int]
"""debits_posted, credits_posted, debits_pending, credits_pending."""


def figures(ledger: Ledger, account_id: str, as_of_index: int | None = None) -> Figures:
    balance = ledger.balance(account_id, as_of_index)
    return (
        balance.debits_posted,
        balance.credits_posted,
        balance.debits_pending,
        balance.credits_pending,
    )


@dataclass(frozen=True)
class Snapshot:
    """Everything a rejected command must leave as it was."""

    journal_size: int
    balances: dict[str, Figures]
    statuses: dict[str, AccountStatus]
    limits: dict[str, int | None]


def snapshot(ledger: Ledger) -> Snapshot:
    accounts = ledger.accounts()
    return Snapshot(
        journal_size=ledger.journal_size(),
        balances={item.id: figures(ledger, item.id) for item in accounts},
        statuses={item.id: item.status for item in accounts},
        limits={item.id: item.debit_limit_minor for item in accounts},
    )
