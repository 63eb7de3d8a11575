"""Random sequences of ledger commands, held against a simple model after every step.

A hypothesis state machine opens and closes accounts, posts transfers (some
meant to break a balance rule or overflow), reserves, posts (in full or in
part), voids and lets pending transactions expire, reverses, retries with the
same body and with a different one, and runs linked batches. After each step
the ledger's own invariants must hold and every account's four totals and the
journal size must equal the model's. Each example gets a fresh database; on
failure hypothesis prints the steps that reproduce it (and a blob to replay).
"""

from __future__ import annotations

import copy
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger.errors import (
    AccountExistsWithDifferentFields,
    AccountMustBeOpen,
    AccountNotFound,
    AlreadyReversed,
    CurrencyMustMatchAccount,
    ExceedsCredits,
    ExceedsDebits,
    ExistsWithDifferentBody,
    FlagsMustBeCompatible,
    LedgerError,
    LinkedCommandFailed,
    PendingExpired,
    PendingMustBePending,
    PostAmountMustNotExceedPending,
    ReversalMustBeOfPosted,
    TransactionNotFound,
)
from ledger.money import INT64_MAX, AmountOverflow
from ledger.records import (
    AccountFlag,
    AccountStatus,
    Command,
    CommandResult,
    NewAccount,
    NewTransaction,
    Posting,
    PostPending,
    Receipt,
    Reverse,
    SetAccountStatus,
    SetDebitLimit,
    Side,
    TransactionState,
    VoidPending,
)
from ledger.store import Ledger
from tests.integration.ledger_support import SECOND_US, DatabaseFactory, ManualClock

CURRENCY_OF = {
    "a0": "USD",
    "a1": "USD",
    "a2": "USD",
    "a3": "USD",
    "a4": "USD",
    "k0": "PKR",
    "k1": "PKR",
}
ACCOUNT_IDS = st.sampled_from(sorted(CURRENCY_OF))
OTHER_CURRENCY = {"USD": "PKR", "PKR": "USD"}
ROUTES = st.sampled_from(
    [
        (debit, credit)
        for debit in sorted(CURRENCY_OF)
        for credit in sorted(CURRENCY_OF)
        if CURRENCY_OF[debit] == CURRENCY_OF[credit]
    ]
    + [("a0", "k1"), ("k0", "a1")]  # across currencies: refused
)
"""(debit, credit) account pairs, mostly of one currency."""
FUNDING_ROUTES = st.sampled_from(
    [("a0", "a1"), ("a0", "a2"), ("a0", "a3"), ("k0", "k1"), ("a4", "a0"), ("a0", "a4")]
)
"""From an issuer, so most of these succeed and give the other rules money to move."""
AMOUNTS = st.one_of(
    st.integers(1, 1_000),
    st.integers(1, 1_000),
    st.integers(2**62, INT64_MAX),  # to reach the int64 bound within a few steps
)
FLAGS = st.sampled_from(
    [
        frozenset(),
        frozenset(),
        frozenset({AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS}),
        frozenset({AccountFlag.CREDITS_MUST_NOT_EXCEED_DEBITS}),
        frozenset(AccountFlag),  # incompatible: refused
    ]
)
LIMITS = st.sampled_from([None, None, 0, 500, INT64_MAX])
TIMEOUTS = st.integers(1, 120)

Outcome = type[LedgerError] | None


@dataclass
class ModelAccount:
    request: NewAccount
    status: AccountStatus = AccountStatus.OPEN
    limit: int | None = None
    totals: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    """debits_posted, credits_posted, debits_pending, credits_pending."""

    def cap(self) -> int | None:
        if self.limit is not None:
            return self.limit
        if AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS in self.request.flags:
            return 0
        return None


@dataclass
class ModelTransaction:
    kind: str  # transaction, post, void, reversal
    postings: tuple[Posting, ...]
    state: TransactionState
    timeout_at_us: int | None = None
    reversed: bool = False


def _slot(posting: Posting, pending: bool) -> int:
    return (2 if pending else 0) + (0 if posting.side is Side.DEBIT else 1)


def _mirror(posting: Posting) -> Posting:
    side = Side.CREDIT if posting.side is Side.DEBIT else Side.DEBIT
    return replace(posting, side=side)


@dataclass
class Model:
    """What the ledger should hold, computed the simplest way."""

    accounts: dict[str, ModelAccount] = field(default_factory=dict)
    transactions: dict[str, ModelTransaction] = field(default_factory=dict)
    journal_size: int = 0

    def sweep(self, now_us: int) -> int:
        expired = 0
        for record in self.transactions.values():
            timeout = record.timeout_at_us
            pending = record.state is TransactionState.PENDING
            if pending and timeout is not None and timeout <= now_us:
                self._move((), record.postings)
                record.state = TransactionState.PENDING_EXPIRED
                self.journal_size += 1
                expired += 1
        return expired

    def _move(
        self,
        posted: tuple[Posting, ...],
        released: tuple[Posting, ...],
        pending: tuple[Posting, ...] = (),
    ) -> None:
        for posting in posted:
            self.accounts[posting.account_id].totals[_slot(posting, False)] += posting.amount_minor
        for posting in pending:
            self.accounts[posting.account_id].totals[_slot(posting, True)] += posting.amount_minor
        for posting in released:
            self.accounts[posting.account_id].totals[_slot(posting, True)] -= posting.amount_minor

    def _check_accounts(self, postings: tuple[Posting, ...]) -> Outcome:
        if any(posting.account_id not in self.accounts for posting in postings):
            return AccountNotFound
        if any(self.accounts[p.account_id].status is not AccountStatus.OPEN for p in postings):
            return AccountMustBeOpen
        if any(self.accounts[p.account_id].request.currency != p.currency for p in postings):
            return CurrencyMustMatchAccount
        return None

    def _check_limits(self, posted: tuple[Posting, ...], pending: tuple[Posting, ...]) -> Outcome:
        after: dict[str, list[int]] = {}
        moved: dict[str, list[int]] = {}
        for postings, is_pending in ((posted, False), (pending, True)):
            for posting in postings:
                account = self.accounts[posting.account_id]
                totals = after.setdefault(posting.account_id, list(account.totals))
                delta = moved.setdefault(posting.account_id, [0, 0, 0, 0])
                totals[_slot(posting, is_pending)] += posting.amount_minor
                delta[_slot(posting, is_pending)] += posting.amount_minor
        for dp, cp, dpend, cpend in after.values():
            if dp + dpend > INT64_MAX or cp + cpend > INT64_MAX:
                return AmountOverflow
        for account_id, (dp, cp, dpend, _) in after.items():
            cap = self.accounts[account_id].cap()
            debited = moved[account_id][0] or moved[account_id][2]
            if debited and cap is not None and dp + dpend - cp > cap:
                return ExceedsCredits
        for account_id, (dp, cp, _, cpend) in after.items():
            flags = self.accounts[account_id].request.flags
            credited = moved[account_id][1] or moved[account_id][3]
            forbidden = AccountFlag.CREDITS_MUST_NOT_EXCEED_DEBITS in flags
            if credited and forbidden and cp + cpend - dp > 0:
                return ExceedsDebits
        return None

    def apply(self, command: Command, now_us: int) -> Outcome:
        """Apply one command (fresh id unless an account) or return its error class."""
        if isinstance(command, NewAccount):
            return self._new_account(command)
        if isinstance(command, NewTransaction):
            return self._new_transaction(command, now_us)
        if isinstance(command, PostPending):
            return self._post(command)
        if isinstance(command, VoidPending):
            return self._void(command)
        if isinstance(command, Reverse):
            return self._reverse(command)
        if isinstance(command, SetAccountStatus):
            return self._set_status(command)
        if isinstance(command, SetDebitLimit):
            return self._set_limit(command)
        raise AssertionError(f"unexpected command {command!r}")

    def _new_account(self, command: NewAccount) -> Outcome:
        if set(AccountFlag) <= command.flags:
            return FlagsMustBeCompatible
        existing = self.accounts.get(command.id)
        if existing is not None:
            return None if existing.request == command else AccountExistsWithDifferentFields
        self.accounts[command.id] = ModelAccount(command, limit=command.debit_limit_minor)
        self.journal_size += 1
        return None

    def _new_transaction(self, command: NewTransaction, now_us: int) -> Outcome:
        error = self._check_accounts(command.postings)
        if error is None:
            posted = () if command.pending else command.postings
            pending = command.postings if command.pending else ()
            error = self._check_limits(posted, pending)
        if error is not None:
            return error
        timeout = None
        if command.pending:
            timeout = now_us + (command.timeout_seconds or 0) * SECOND_US
        state = TransactionState.PENDING if command.pending else TransactionState.POSTED
        self.transactions[command.id] = ModelTransaction(
            "transaction", command.postings, state, timeout
        )
        self._move(posted, (), pending)
        self.journal_size += 1
        return None

    def _pending(self, pending_id: str) -> ModelTransaction | type[LedgerError]:
        record = self.transactions.get(pending_id)
        if record is None or record.kind != "transaction":
            return TransactionNotFound
        if record.state is TransactionState.PENDING_EXPIRED:
            return PendingExpired
        if record.state is not TransactionState.PENDING:
            return PendingMustBePending
        return record

    def _post(self, command: PostPending) -> Outcome:
        record = self._pending(command.pending_id)
        if not isinstance(record, ModelTransaction):
            return record
        reserved = record.postings[0].amount_minor
        amount = reserved if command.amount_minor is None else command.amount_minor
        if amount > reserved:
            return PostAmountMustNotExceedPending
        posted = tuple(replace(posting, amount_minor=amount) for posting in record.postings)
        error = self._check_accounts(posted)
        if error is not None:
            return error
        record.state = TransactionState.PENDING_POSTED
        self.transactions[command.id] = ModelTransaction("post", posted, TransactionState.POSTED)
        self._move(posted, record.postings)
        self.journal_size += 1
        return None

    def _void(self, command: VoidPending) -> Outcome:
        record = self._pending(command.pending_id)
        if not isinstance(record, ModelTransaction):
            return record
        record.state = TransactionState.PENDING_VOIDED
        self.transactions[command.id] = ModelTransaction("void", (), TransactionState.POSTED)
        self._move((), record.postings)
        self.journal_size += 1
        return None

    def _reverse(self, command: Reverse) -> Outcome:
        original = self.transactions.get(command.original_id)
        if original is None:
            return TransactionNotFound
        if original.state is not TransactionState.POSTED or not original.postings:
            return ReversalMustBeOfPosted
        if original.reversed:
            return AlreadyReversed
        mirrored = tuple(_mirror(posting) for posting in original.postings)
        error = self._check_accounts(mirrored) or self._check_limits(mirrored, ())
        if error is not None:
            return error
        original.reversed = True
        self.transactions[command.id] = ModelTransaction(
            "reversal", mirrored, TransactionState.POSTED
        )
        self._move(mirrored, ())
        self.journal_size += 1
        return None

    def _set_status(self, command: SetAccountStatus) -> Outcome:
        account = self.accounts.get(command.account_id)
        if account is None:
            return AccountNotFound
        if account.status is AccountStatus.CLOSED:
            return AccountMustBeOpen
        if command.status is AccountStatus.CLOSED and (account.totals[2] or account.totals[3]):
            return PendingMustBePending
        account.status = command.status
        self.journal_size += 1
        return None

    def _set_limit(self, command: SetDebitLimit) -> Outcome:
        account = self.accounts.get(command.account_id)
        if account is None:
            return AccountNotFound
        account.limit = command.debit_limit_minor
        self.journal_size += 1
        return None


class LedgerMachine(RuleBasedStateMachine):
    """One ledger on a fresh database, and the model it must agree with."""

    def __init__(self, database: AbstractContextManager[str]) -> None:
        super().__init__()
        self.database = database
        location = self.database.__enter__()
        self.clock = ManualClock()
        self.ledger = Ledger(location, clock=self.clock)
        self.model = Model()
        self.counter = 0
        self.done: list[tuple[Command, Receipt]] = []
        """Commands that succeeded, with their receipts: what a retry must return."""

    def teardown(self) -> None:
        self.ledger.close()
        self.database.__exit__(None, None, None)

    # -- helpers -------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def submit(self, commands: list[Command], *, linked: bool = False) -> list[CommandResult]:
        """Execute on the ledger and on the model; both must agree on every outcome."""
        now = self.clock()
        self.model.sweep(now)
        if linked:
            # All or nothing: apply to a copy, keep it only if every command succeeds.
            trial = copy.deepcopy(self.model)
            outcomes: list[Outcome] = [LinkedCommandFailed] * len(commands)
            for position, command in enumerate(commands):
                error = trial.apply(command, now)
                if error is not None:
                    outcomes[position] = error
                    break
            else:
                outcomes = [None] * len(commands)
                self.model = trial
        else:
            outcomes = [self.model.apply(command, now) for command in commands]
        results = self.ledger.execute(commands, linked=linked)
        for command, result, expected in zip(commands, results, outcomes, strict=True):
            assert type(result.error) is (expected or type(None)), (command, result.error)
            outcome = "ok" if expected is None else expected.code
            event(f"{type(command).__name__}: {outcome}")
            if result.receipt is not None:
                self.done.append((command, result.receipt))
        return results

    def pick_transaction(self, data: st.DataObject, wanted: TransactionState) -> str:
        """Mostly one in the ``wanted`` state; sometimes any id, or an unknown one."""
        records = self.model.transactions
        likely = [
            transaction_id
            for transaction_id, record in records.items()
            if record.state is wanted and (record.postings or wanted is TransactionState.PENDING)
        ]
        if likely and data.draw(st.integers(0, 4), label="likely") > 0:
            return data.draw(st.sampled_from(likely), label="transaction")
        return data.draw(st.sampled_from([*records, "unknown"]), label="transaction")

    # -- rules ---------------------------------------------------------------------

    @initialize()
    def open_accounts(self) -> None:
        """Unconstrained issuers in both currencies, so money exists to move, and
        a few constrained accounts; a3 is left for ``create_account``."""
        floor = frozenset({AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS})
        ceiling = frozenset({AccountFlag.CREDITS_MUST_NOT_EXCEED_DEBITS})
        self.submit(
            [
                NewAccount("a0", "issuer", "USD", Side.DEBIT),
                NewAccount("k0", "issuer", "PKR", Side.DEBIT),
                NewAccount("a1", "bank-a", "USD", Side.CREDIT, flags=floor),
                NewAccount("a2", "bank-b", "USD", Side.CREDIT, debit_limit_minor=500),
                NewAccount("k1", "bank-a", "PKR", Side.CREDIT, flags=floor),
                NewAccount("a4", "settlement", "USD", Side.DEBIT, flags=ceiling),
            ]
        )

    @rule(
        account_id=ACCOUNT_IDS,
        flags=FLAGS,
        limit=LIMITS,
        owner=st.sampled_from(["bank-a", "bank-b"]),
    )
    def create_account(
        self, account_id: str, flags: frozenset[AccountFlag], limit: int | None, owner: str
    ) -> None:
        command = NewAccount(
            account_id,
            owner,
            CURRENCY_OF[account_id],
            Side.CREDIT,
            flags=flags,
            debit_limit_minor=limit,
        )
        existed = account_id in self.model.accounts
        (result,) = self.submit([command])
        if result.receipt is not None:
            assert result.receipt.existed is existed

    @rule(
        route=ROUTES,
        amount=AMOUNTS,
        same_currency=st.sampled_from([True, True, True, True, True, False]),
        pending=st.booleans(),
        timeout=TIMEOUTS,
    )
    def transfer(
        self,
        route: tuple[str, str],
        amount: int,
        same_currency: bool,
        pending: bool,
        timeout: int,
    ) -> None:
        debit_account_id, credit_account_id = route
        currency = CURRENCY_OF[debit_account_id]
        if not same_currency:
            currency = OTHER_CURRENCY[currency]
        self.submit(
            [
                self._transfer(
                    debit_account_id, credit_account_id, amount, currency, pending, timeout
                )
            ]
        )

    @rule(route=FUNDING_ROUTES, amount=AMOUNTS, pending=st.booleans(), timeout=TIMEOUTS)
    def fund(self, route: tuple[str, str], amount: int, pending: bool, timeout: int) -> None:
        debit_account_id, credit_account_id = route
        currency = CURRENCY_OF[debit_account_id]
        self.submit(
            [
                self._transfer(
                    debit_account_id, credit_account_id, amount, currency, pending, timeout
                )
            ]
        )

    def _transfer(
        self,
        debit_account_id: str,
        credit_account_id: str,
        amount: int,
        currency: str,
        pending: bool = False,
        timeout: int = 60,
    ) -> NewTransaction:
        return NewTransaction(
            self.new_id("t"),
            (
                Posting(debit_account_id, Side.DEBIT, amount, currency),
                Posting(credit_account_id, Side.CREDIT, amount, currency),
            ),
            pending=pending,
            timeout_seconds=timeout if pending else None,
        )

    @rule(data=st.data(), partial=st.booleans())
    def post_pending(self, data: st.DataObject, partial: bool) -> None:
        pending_id = self.pick_transaction(data, TransactionState.PENDING)
        amount = None
        if partial:
            amount = data.draw(st.integers(1, 1_100), label="amount")
            record = self.model.transactions.get(pending_id)
            if record is not None and record.postings and data.draw(st.booleans()):
                amount = record.postings[0].amount_minor  # exactly the reserved amount
        self.submit([PostPending(self.new_id("post"), pending_id, amount_minor=amount)])
        self._check_state(pending_id)

    @rule(data=st.data())
    def void_pending(self, data: st.DataObject) -> None:
        pending_id = self.pick_transaction(data, TransactionState.PENDING)
        self.submit([VoidPending(self.new_id("void"), pending_id)])
        self._check_state(pending_id)

    @rule(seconds=st.integers(0, 150), sweep_now=st.booleans())
    def time_passes(self, seconds: int, sweep_now: bool) -> None:
        self.clock.advance(seconds)
        if sweep_now:
            assert self.ledger.expire_pending() == self.model.sweep(self.clock())

    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        original_id = self.pick_transaction(data, TransactionState.POSTED)
        self.submit([Reverse(self.new_id("reverse"), original_id)])

    @rule(
        account_id=ACCOUNT_IDS,
        status=st.sampled_from(
            [AccountStatus.FROZEN, AccountStatus.OPEN, AccountStatus.OPEN, AccountStatus.CLOSED]
        ),
    )
    def set_status(self, account_id: str, status: AccountStatus) -> None:
        self.submit([SetAccountStatus(self.new_id("status"), account_id, status)])

    @rule(account_id=ACCOUNT_IDS, limit=LIMITS)
    def set_debit_limit(self, account_id: str, limit: int | None) -> None:
        self.submit([SetDebitLimit(self.new_id("limit"), account_id, limit)])

    @precondition(lambda self: bool(self.done))
    @rule(data=st.data())
    def retry_same_body(self, data: st.DataObject) -> None:
        command, original = data.draw(st.sampled_from(self.done), label="retry")
        self.model.sweep(self.clock())
        (result,) = self.ledger.execute([command])
        assert result.receipt is not None, result.error
        assert result.receipt.existed is True
        assert (result.receipt.journal_index, result.receipt.leaf_hash) == (
            original.journal_index,
            original.leaf_hash,
        )

    @precondition(lambda self: any(isinstance(c, NewTransaction) for c, _ in self.done))
    @rule(data=st.data())
    def retry_different_body(self, data: st.DataObject) -> None:
        transactions = [c for c, _ in self.done if isinstance(c, NewTransaction)]
        command = data.draw(st.sampled_from(transactions), label="conflict")
        first, second = command.postings
        changed = replace(
            command,
            postings=(
                replace(first, amount_minor=first.amount_minor % INT64_MAX + 1),
                replace(second, amount_minor=second.amount_minor % INT64_MAX + 1),
            ),
        )
        self.model.sweep(self.clock())
        (result,) = self.ledger.execute([changed])
        assert isinstance(result.error, ExistsWithDifferentBody)
        assert result.error.fields == ["postings"]

    @rule(
        first=st.tuples(ROUTES, AMOUNTS),
        second=st.tuples(ROUTES, AMOUNTS),
    )
    def linked_pair(
        self, first: tuple[tuple[str, str], int], second: tuple[tuple[str, str], int]
    ) -> None:
        commands: list[Command] = [
            self._transfer(debit, credit, amount, CURRENCY_OF[debit])
            for (debit, credit), amount in (first, second)
        ]
        self.submit(commands, linked=True)

    def _check_state(self, transaction_id: str) -> None:
        record = self.model.transactions.get(transaction_id)
        if record is not None:
            assert self.ledger.transaction(transaction_id).state is record.state

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        self.ledger.check_invariants()
        size = self.ledger.journal_size()
        assert size == self.model.journal_size
        # Every stored total equals its postings (check_invariants), so one query
        # over the postings gives every account's balance.
        balances = {
            balance.account_id: [
                balance.debits_posted,
                balance.credits_posted,
                balance.debits_pending,
                balance.credits_pending,
            ]
            for balance in self.ledger.closing_balances(size)
        }
        assert balances == {
            account_id: account.totals for account_id, account in self.model.accounts.items()
        }


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_ledger_state_machine(
    backend: str, database_factory: DatabaseFactory, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":
        request.getfixturevalue("postgres_url")  # skips (or fails under CI) without a server

    class Machine(LedgerMachine):
        def __init__(self) -> None:
            super().__init__(database_factory(backend))

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
