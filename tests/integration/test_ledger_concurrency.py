"""Many writers at once: threads in one process and separate OS processes.

Hot accounts with debit caps are hit from every side. No cap may ever be
passed, nothing may be lost or posted twice (the balances equal the sum of the
transfers reported successful), retries of one id post once, and the
invariants hold, also when checked while the writers run.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.errors import ExceedsCredits
from ledger.records import AccountFlag, Receipt
from ledger.store import Ledger
from tests.integration.ledger_support import account, figures, run, transfer

REPOSITORY = Path(__file__).resolve().parents[2]
HOT = ["hot-0", "hot-1", "hot-2"]
FUNDING_MINOR = 1_000
CAP_MINOR = 300
"""hot-2 may also go 300 below zero (a net debit cap), the others stop at zero."""
THREADS = 8
TRANSFERS_PER_THREAD = 30


@pytest.fixture
def ledger(database: str) -> Iterator[Ledger]:
    with Ledger(database, pool_size=THREADS + 2) as opened:
        floor = [AccountFlag.DEBITS_MUST_NOT_EXCEED_CREDITS]
        run(
            opened,
            account("issuer"),
            account("sink"),
            account("hot-0", flags=floor),
            account("hot-1", flags=floor),
            account("hot-2", debit_limit_minor=CAP_MINOR),
            *(transfer(f"fund-{name}", "issuer", name, FUNDING_MINOR) for name in HOT),
        )
        yield opened


def cap_of(name: str) -> int:
    return CAP_MINOR if name == "hot-2" else 0


@dataclass
class Tally:
    """Transfers each writer saw succeed, by hot account."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    succeeded: Counter[str] = field(default_factory=Counter)
    count: int = 0
    refused: int = 0
    failures: list[BaseException] = field(default_factory=list)


def assert_consistent(
    ledger: Ledger, succeeded: Counter[str], journal_before: int, count: int
) -> None:
    """Balances equal the sum of successes; no cap passed; one entry per success."""
    ledger.check_invariants()
    for name in HOT:
        debits, credits_posted, debits_pending, credits_pending = figures(ledger, name)
        assert debits == succeeded[name], name
        assert credits_posted == FUNDING_MINOR
        assert (debits_pending, credits_pending) == (0, 0)
        assert debits - credits_posted <= cap_of(name), name
    assert figures(ledger, "sink") == (0, sum(succeeded.values()), 0, 0)
    assert ledger.journal_size() == journal_before + count


def test_threads_never_pass_a_cap(ledger: Ledger) -> None:
    tally = Tally()
    journal_before = ledger.journal_size()
    start = threading.Barrier(THREADS + 1)
    writing = threading.Event()
    writing.set()

    def writer(number: int) -> None:
        chooser = random.Random(number)
        try:
            start.wait()
            for step in range(TRANSFERS_PER_THREAD):
                name = chooser.choice(HOT)
                amount = chooser.randint(1, 100)
                (result,) = ledger.execute([transfer(f"w{number}-{step}", name, "sink", amount)])
                with tally.lock:
                    if result.ok:
                        tally.succeeded[name] += amount
                        tally.count += 1
                    else:
                        assert isinstance(result.error, ExceedsCredits), result.error
                        tally.refused += 1
        except BaseException as error:
            tally.failures.append(error)

    def checker() -> None:
        # Invariants read while the writers commit must still hold (one snapshot).
        try:
            start.wait()
            while writing.is_set():
                ledger.check_invariants()
                for name in HOT:
                    debits, credits_posted, debits_pending, _ = figures(ledger, name)
                    assert debits + debits_pending - credits_posted <= cap_of(name)
        except BaseException as error:
            tally.failures.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    watcher = threading.Thread(target=checker)
    for thread in threads:
        thread.start()
    watcher.start()
    for thread in threads:
        thread.join()
    writing.clear()
    watcher.join()
    assert tally.failures == []
    # 240 transfers of 50 on average against 3,300 of room: many must be refused.
    assert tally.refused > 0
    assert tally.count + tally.refused == THREADS * TRANSFERS_PER_THREAD
    assert_consistent(ledger, tally.succeeded, journal_before, tally.count)


def test_concurrent_retries_of_one_id_post_once(ledger: Ledger) -> None:
    command = transfer("retried", "hot-0", "sink", 70)
    journal_before = ledger.journal_size()
    start = threading.Barrier(THREADS)
    receipts: list[Receipt] = []
    failures: list[BaseException] = []

    def retry() -> None:
        try:
            start.wait()
            (result,) = ledger.execute([command])
            assert result.receipt is not None, result.error
            receipts.append(result.receipt)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=retry) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(receipt.existed for receipt in receipts) == [False] + [True] * (THREADS - 1)
    assert len({(receipt.journal_index, receipt.leaf_hash) for receipt in receipts}) == 1
    assert figures(ledger, "hot-0") == (70, FUNDING_MINOR, 0, 0)
    assert ledger.journal_size() == journal_before + 1
    ledger.check_invariants()


def test_two_processes(ledger: Ledger, database: str) -> None:
    """Two OS processes write the same hot accounts, and retry the same shared ids."""
    journal_before = ledger.journal_size()
    count = 60
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.ledger_worker",
                "transfers",
                database,
                f"p{number}",
                str(count),
                str(number),
                *HOT,
            ],
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(2)
    ]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    for worker, (_, errors) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, errors
    succeeded: Counter[str] = Counter()
    first_posts: Counter[str] = Counter()
    entries = 0
    refused = 0
    for stdout, _ in outputs:
        for line in stdout.splitlines():
            outcome, transaction_id, *details = line.split()
            if outcome == "refused":
                assert details == ["exceeds_credits"], line
                refused += 1
                continue
            name, amount, existed = details
            if existed == "0":
                succeeded[name] += int(amount)
                first_posts[transaction_id] += 1
                entries += 1
    # Every id, shared ones included, was posted at most once across both processes.
    assert max(first_posts.values()) == 1
    assert sum(len(stdout.splitlines()) for stdout, _ in outputs) == 2 * count
    assert_consistent(ledger, succeeded, journal_before, entries)
