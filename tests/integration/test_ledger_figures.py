"""Exact figures: balances after each kind of entry, history, paging, retries, expiry.

Every test runs on SQLite and PostgreSQL (the ``database`` fixture) with a
clock the test moves, and checks the ledger's invariants after every write.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger.errors import (
    ExceedsCredits,
    LinkedCommandFailed,
    PendingExpired,
    PendingMustBePending,
    TransactionNotFound,
)
from ledger.money import INT64_MAX
from ledger.records import (
    AccountStatus,
    Command,
    EntryKind,
    NewTransaction,
    Posting,
    PostPending,
    Reverse,
    SetAccountStatus,
    SetDebitLimit,
    Side,
    TransactionState,
    VoidPending,
)
from ledger.store import MAX_BATCH, Ledger
from tests.integration.ledger_support import (
    SECOND_US,
    START_US,
    ManualClock,
    account,
    error_of,
    figures,
    funded_account,
    receipts,
    run,
    transfer,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(database: str, clock: ManualClock) -> Iterator[Ledger]:
    """bank (unconstrained), alice funded with 1000, bob at zero; journal indexes 0..3."""
    with Ledger(database, clock=clock) as opened:
        run(opened, account("bank"), funded_account("alice"), funded_account("bob"))
        run(opened, transfer("fund-alice", "bank", "alice", 1000))
        yield opened


def test_posting_moves_exact_amounts(ledger: Ledger) -> None:
    (receipt,) = run(ledger, transfer("t-1", "alice", "bob", 250))
    assert receipt.journal_index == 4
    assert receipt.existed is False
    assert figures(ledger, "bank") == (1000, 0, 0, 0)
    assert figures(ledger, "alice") == (250, 1000, 0, 0)
    assert figures(ledger, "bob") == (0, 250, 0, 0)
    assert ledger.balance("alice").net_debit_posted == -750
    assert ledger.journal_size() == 5
    stored = ledger.transaction("t-1")
    assert stored.state is TransactionState.POSTED
    assert stored.kind is EntryKind.TRANSACTION
    assert stored.journal_index == 4
    assert stored.committed_at_us == START_US
    assert stored.postings == (
        Posting("alice", Side.DEBIT, 250, "USD"),
        Posting("bob", Side.CREDIT, 250, "USD"),
    )


def test_pending_reserves_and_full_post_moves_it(ledger: Ledger) -> None:
    run(ledger, transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=60))
    assert figures(ledger, "alice") == (0, 1000, 300, 0)
    assert figures(ledger, "bob") == (0, 0, 0, 300)
    assert ledger.transaction("p-1").timeout_at_us == START_US + 60 * SECOND_US
    # The reservation counts: alice may now debit only 700.
    assert isinstance(error_of(ledger, transfer("t-1", "alice", "bob", 701)), ExceedsCredits)
    run(ledger, PostPending("post-1", "p-1"))
    assert figures(ledger, "alice") == (300, 1000, 0, 0)
    assert figures(ledger, "bob") == (0, 300, 0, 0)
    assert ledger.transaction("p-1").state is TransactionState.PENDING_POSTED
    post = ledger.transaction("post-1")
    assert post.kind is EntryKind.POST_PENDING
    assert post.pending_id == "p-1"
    assert [posting.amount_minor for posting in post.postings] == [300, 300]


def test_partial_post_releases_the_rest(ledger: Ledger) -> None:
    run(ledger, transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=60))
    run(ledger, PostPending("post-1", "p-1", amount_minor=120))
    assert figures(ledger, "alice") == (120, 1000, 0, 0)
    assert figures(ledger, "bob") == (0, 120, 0, 0)
    assert [posting.amount_minor for posting in ledger.transaction("post-1").postings] == [
        120,
        120,
    ]
    # At most once: the released 180 cannot be posted afterwards.
    error = error_of(ledger, PostPending("post-2", "p-1", amount_minor=180))
    assert isinstance(error, PendingMustBePending)


def test_void_releases_everything(ledger: Ledger) -> None:
    run(ledger, transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=60))
    run(ledger, VoidPending("void-1", "p-1"))
    assert figures(ledger, "alice") == (0, 1000, 0, 0)
    assert figures(ledger, "bob") == (0, 0, 0, 0)
    assert ledger.transaction("p-1").state is TransactionState.PENDING_VOIDED
    assert ledger.transaction("void-1").pending_id == "p-1"
    assert isinstance(error_of(ledger, PostPending("post-1", "p-1")), PendingMustBePending)


def test_reversal_is_a_new_linked_transaction(ledger: Ledger) -> None:
    run(ledger, transfer("t-1", "alice", "bob", 250, reference="uetr-1"))
    original = ledger.transaction("t-1")
    run(ledger, Reverse("r-1", "t-1", reference="uetr-1"))
    assert figures(ledger, "alice") == (250, 1250, 0, 0)
    assert figures(ledger, "bob") == (250, 250, 0, 0)
    reversal = ledger.transaction("r-1")
    assert reversal.kind is EntryKind.REVERSAL
    assert reversal.reverses_id == "t-1"
    assert reversal.postings == (
        Posting("alice", Side.CREDIT, 250, "USD"),
        Posting("bob", Side.DEBIT, 250, "USD"),
    )
    # The original is never updated.
    assert ledger.transaction("t-1") == original


def test_reversal_of_a_partial_post(ledger: Ledger) -> None:
    run(ledger, transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=60))
    run(ledger, PostPending("post-1", "p-1", amount_minor=120))
    run(ledger, Reverse("r-1", "post-1"))
    assert figures(ledger, "alice") == (120, 1120, 0, 0)
    assert figures(ledger, "bob") == (120, 120, 0, 0)


def test_balance_as_of_index(ledger: Ledger) -> None:
    (t1,) = run(ledger, transfer("t-1", "alice", "bob", 250))
    (p1,) = run(ledger, transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=60))
    (post,) = run(ledger, PostPending("post-1", "p-1", amount_minor=100))
    (reversal,) = run(ledger, Reverse("r-1", "t-1"))
    assert (t1.journal_index, p1.journal_index, post.journal_index) == (4, 5, 6)
    assert reversal.journal_index == 7
    expected = {
        0: (0, 0, 0, 0),  # bank created; alice not yet
        2: (0, 0, 0, 0),  # bob created
        3: (0, 1000, 0, 0),  # funded
        4: (250, 1000, 0, 0),  # t-1
        5: (250, 1000, 300, 0),  # p-1 reserves 300
        6: (350, 1000, 0, 0),  # 100 posted, 200 released
        7: (350, 1250, 0, 0),  # t-1 reversed
    }
    for index, alice in expected.items():
        assert figures(ledger, "alice", index) == alice, index
        assert ledger.balance("alice", index).as_of_index == index
    assert figures(ledger, "bob", 5) == (0, 250, 0, 300)
    assert figures(ledger, "bob", 6) == (0, 350, 0, 0)
    assert figures(ledger, "bob", 7) == (250, 350, 0, 0)
    assert figures(ledger, "alice") == expected[7]


def test_transactions_by_account_keyset_paged(ledger: Ledger) -> None:
    ids = [f"t-{n}" for n in range(7)]
    for transaction_id in ids:
        run(ledger, transfer(transaction_id, "alice", "bob", 10))
    run(ledger, transfer("t-other", "bank", "bob", 5))
    every = ["fund-alice", *ids]

    newest: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = ledger.transactions_by_account("alice", limit=3, cursor=cursor)
        newest.extend(item.id for item in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert newest == every[::-1]
    assert pages == 3

    first = ledger.transactions_by_account("alice", limit=3, newest_first=False)
    assert [item.id for item in first.items] == ["fund-alice", "t-0", "t-1"]
    assert first.next_cursor == ledger.transaction("t-1").journal_index
    second = ledger.transactions_by_account(
        "alice", limit=3, newest_first=False, cursor=first.next_cursor
    )
    assert [item.id for item in second.items] == ["t-2", "t-3", "t-4"]
    third = ledger.transactions_by_account(
        "alice", limit=3, newest_first=False, cursor=second.next_cursor
    )
    assert [item.id for item in third.items] == ["t-5", "t-6"]
    assert third.next_cursor is None
    # An exact fit ends with no further cursor.
    exact = ledger.transactions_by_account("alice", limit=8)
    assert len(exact.items) == 8
    assert exact.next_cursor is None


def test_find_by_reference(ledger: Ledger) -> None:
    run(
        ledger,
        transfer("t-1", "alice", "bob", 10, reference="uetr-a"),
        transfer("t-2", "alice", "bob", 20, reference="uetr-b"),
        transfer("t-3", "bob", "alice", 5, reference="uetr-a"),
    )
    assert [item.id for item in ledger.transactions_by_reference("uetr-a")] == ["t-1", "t-3"]
    assert [item.id for item in ledger.transactions_by_reference("uetr-b")] == ["t-2"]
    assert ledger.transactions_by_reference("uetr-none") == []
    with pytest.raises(TransactionNotFound):
        ledger.transaction("t-404")


def test_idempotent_retry_returns_the_original_receipt(ledger: Ledger) -> None:
    command = transfer("t-1", "alice", "bob", 600, reference="uetr-1")
    (original,) = run(ledger, command)
    size = ledger.journal_size()
    # Alice could not afford it a second time: the retry must not be re-checked or re-posted.
    (retry,) = run(ledger, command)
    assert retry.existed is True
    assert (retry.id, retry.journal_index, retry.leaf_hash) == (
        original.id,
        original.journal_index,
        original.leaf_hash,
    )
    assert ledger.journal_size() == size
    assert figures(ledger, "alice") == (600, 1000, 0, 0)
    assert figures(ledger, "bob") == (0, 600, 0, 0)


def test_retry_within_one_batch_posts_once(ledger: Ledger) -> None:
    command = transfer("t-1", "alice", "bob", 100)
    first, second = run(ledger, command, command)
    assert first.existed is False
    assert second.existed is True
    assert second.journal_index == first.journal_index
    assert figures(ledger, "bob") == (0, 100, 0, 0)


def test_retries_of_every_command_kind(ledger: Ledger) -> None:
    commands: list[Command] = [
        account("carol", "PKR"),
        transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=60),
        PostPending("post-1", "p-1", amount_minor=100),
        transfer("p-2", "alice", "bob", 50, pending=True, timeout_seconds=60),
        VoidPending("void-2", "p-2"),
        transfer("t-1", "alice", "bob", 10, reference="r"),
        Reverse("r-1", "t-1"),
        SetDebitLimit("limit-1", "bank", 5000),
        SetAccountStatus("freeze-1", "carol", AccountStatus.FROZEN),
    ]
    originals = run(ledger, *commands)
    balances = {name: figures(ledger, name) for name in ("bank", "alice", "bob")}
    size = ledger.journal_size()
    retries = run(ledger, *commands)
    assert [(r.journal_index, r.leaf_hash) for r in retries] == [
        (r.journal_index, r.leaf_hash) for r in originals
    ]
    assert all(r.existed for r in retries)
    assert ledger.journal_size() == size
    assert {name: figures(ledger, name) for name in balances} == balances


def test_retry_with_tuple_metadata_is_the_same_body(ledger: Ledger) -> None:
    """Metadata lists may be given as tuples; they encode alike, so a retry is no conflict."""
    command = NewTransaction(
        "t-1",
        (Posting("alice", Side.DEBIT, 5, "USD"), Posting("bob", Side.CREDIT, 5, "USD")),
        metadata={"invoices": ("inv-1", "inv-2"), "nested": {"pair": (1, 2)}},
    )
    (original,) = run(ledger, command)
    (retry,) = run(ledger, command)
    assert retry.existed is True
    assert retry.journal_index == original.journal_index
    assert ledger.transaction("t-1").metadata == {
        "invoices": ["inv-1", "inv-2"],
        "nested": {"pair": [1, 2]},
    }


def test_expiry_by_expire_pending(ledger: Ledger, clock: ManualClock) -> None:
    run(ledger, transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=30))
    clock.advance(30 - 1 / SECOND_US)
    assert ledger.expire_pending() == 0
    assert figures(ledger, "alice") == (0, 1000, 300, 0)
    clock.advance(1 / SECOND_US)  # exactly at the timeout: expired
    assert ledger.expire_pending() == 1
    ledger.check_invariants()
    assert ledger.expire_pending() == 0
    assert figures(ledger, "alice") == (0, 1000, 0, 0)
    assert figures(ledger, "bob") == (0, 0, 0, 0)
    assert ledger.transaction("p-1").state is TransactionState.PENDING_EXPIRED
    assert isinstance(error_of(ledger, PostPending("post-1", "p-1")), PendingExpired)
    assert isinstance(error_of(ledger, VoidPending("void-1", "p-1")), PendingExpired)
    ledger.check_invariants()
    # The released reservation is spendable again.
    run(ledger, transfer("t-1", "alice", "bob", 1000))


def test_expiry_by_the_next_execute(ledger: Ledger, clock: ManualClock) -> None:
    run(ledger, transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=30))
    size = ledger.journal_size()
    clock.advance(31)
    (receipt,) = run(ledger, transfer("t-1", "bank", "bob", 1))
    # The expiry entry is written first, in the same write transaction.
    assert receipt.journal_index == size + 1
    assert figures(ledger, "alice") == (0, 1000, 0, 0)
    assert figures(ledger, "bob") == (0, 1, 0, 0)
    assert isinstance(error_of(ledger, PostPending("post-1", "p-1")), PendingExpired)


def test_expiry_by_a_post_that_comes_too_late(ledger: Ledger, clock: ManualClock) -> None:
    run(ledger, transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=30))
    clock.advance(30)
    assert isinstance(error_of(ledger, PostPending("post-1", "p-1")), PendingExpired)
    ledger.check_invariants()
    assert figures(ledger, "alice") == (0, 1000, 0, 0)
    assert ledger.transaction("p-1").state is TransactionState.PENDING_EXPIRED


def test_expiry_by_a_failing_linked_batch(ledger: Ledger, clock: ManualClock) -> None:
    """A linked batch that fails applies none of its commands, but the sweep still happens."""
    run(ledger, transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=30))
    clock.advance(30)
    results = ledger.execute(
        [transfer("t-1", "bank", "bob", 1), PostPending("post-1", "p-1")], linked=True
    )
    assert isinstance(results[0].error, LinkedCommandFailed)
    assert isinstance(results[1].error, PendingExpired)
    ledger.check_invariants()
    assert figures(ledger, "alice") == (0, 1000, 0, 0)
    assert figures(ledger, "bob") == (0, 0, 0, 0)
    assert ledger.transaction("p-1").state is TransactionState.PENDING_EXPIRED


def test_independent_batch_reports_each_item(ledger: Ledger) -> None:
    size = ledger.journal_size()
    results = ledger.execute(
        [
            transfer("t-1", "alice", "bob", 400),
            transfer("t-2", "alice", "bob", 700),  # 600 left: refused
            transfer("t-3", "alice", "bob", 600),
        ]
    )
    ledger.check_invariants()
    assert [result.ok for result in results] == [True, False, True]
    assert isinstance(results[1].error, ExceedsCredits)
    assert [r.receipt.journal_index for r in results if r.receipt] == [size, size + 1]
    assert figures(ledger, "alice") == (1000, 1000, 0, 0)
    with pytest.raises(TransactionNotFound):
        ledger.transaction("t-2")


def test_linked_batch_is_all_or_nothing(ledger: Ledger) -> None:
    commands: list[Command] = [
        account("fx-usd"),
        account("fx-pkr", "PKR"),
        account("bob-pkr", "PKR"),
        # Payment versus payment: both currency legs in one transaction.
        NewTransaction(
            "pvp-1",
            (
                Posting("alice", Side.DEBIT, 100, "USD"),
                Posting("fx-usd", Side.CREDIT, 100, "USD"),
                Posting("fx-pkr", Side.DEBIT, 27_800, "PKR"),
                Posting("bob-pkr", Side.CREDIT, 27_800, "PKR"),
            ),
        ),
    ]
    receipts_ = run(ledger, *commands, linked=True)
    assert [r.journal_index for r in receipts_] == [4, 5, 6, 7]
    assert figures(ledger, "alice") == (100, 1000, 0, 0)
    assert figures(ledger, "bob-pkr") == (0, 27_800, 0, 0)


def test_limits_freeze_and_close(ledger: Ledger) -> None:
    run(ledger, SetDebitLimit("limit-1", "bob", 50))
    run(ledger, transfer("t-1", "bob", "bank", 50))  # a cap of 50 overrides the zero floor
    assert isinstance(error_of(ledger, transfer("t-2", "bob", "bank", 1)), ExceedsCredits)
    run(ledger, SetAccountStatus("freeze-1", "alice", AccountStatus.FROZEN))
    assert ledger.account("alice").status is AccountStatus.FROZEN
    run(ledger, SetAccountStatus("open-1", "alice", AccountStatus.OPEN))
    run(ledger, transfer("t-3", "alice", "bob", 1))
    run(ledger, SetAccountStatus("close-1", "alice", AccountStatus.CLOSED))
    assert ledger.account("alice").status is AccountStatus.CLOSED
    assert figures(ledger, "alice") == (1, 1000, 0, 0)


def test_batch_of_the_maximum_size(ledger: Ledger) -> None:
    commands = [transfer(f"t-{n}", "bank", "bob", 1) for n in range(MAX_BATCH)]
    found = receipts(ledger.execute(commands))
    assert len(found) == MAX_BATCH
    assert found[-1].journal_index == 4 + MAX_BATCH - 1
    assert figures(ledger, "bob") == (0, MAX_BATCH, 0, 0)
    ledger.check_invariants()


def test_history_of_large_reservations(ledger: Ledger) -> None:
    """Reserving and releasing the int64 maximum again and again: totals stay exact.

    All the pending amounts an account ever reserved add up past 2**63 - 1,
    though its balance never does.
    """
    run(ledger, account("issuer"), account("holder"))
    for n in range(3):
        run(
            ledger,
            transfer(f"p-{n}", "issuer", "holder", INT64_MAX, pending=True, timeout_seconds=60),
        )
        run(ledger, VoidPending(f"void-{n}", f"p-{n}"))
    run(ledger, transfer("p-3", "issuer", "holder", INT64_MAX, pending=True, timeout_seconds=60))
    (post,) = run(ledger, PostPending("post-3", "p-3"))
    (last,) = run(
        ledger, transfer("p-4", "holder", "issuer", INT64_MAX, pending=True, timeout_seconds=60)
    )
    assert figures(ledger, "issuer") == (INT64_MAX, 0, 0, INT64_MAX)
    assert figures(ledger, "issuer", post.journal_index) == (INT64_MAX, 0, 0, 0)
    assert figures(ledger, "holder", last.journal_index) == (0, INT64_MAX, INT64_MAX, 0)
    assert figures(ledger, "holder", post.journal_index - 1) == (0, 0, 0, INT64_MAX)
    closing = {item.account_id: item for item in ledger.closing_balances(last.journal_index)}
    assert closing["holder"].credits_posted == INT64_MAX
    assert closing["holder"].debits_pending == 0


def test_commit_times_never_run_backwards(ledger: Ledger, clock: ManualClock) -> None:
    run(ledger, transfer("p-1", "alice", "bob", 300, pending=True, timeout_seconds=30))
    clock.advance(-3600)  # the wall clock steps back an hour
    run(ledger, transfer("t-1", "alice", "bob", 1))
    assert ledger.transaction("t-1").committed_at_us == START_US
    clock.advance(3600 + 30)
    assert ledger.expire_pending() == 1
    ledger.check_invariants()
