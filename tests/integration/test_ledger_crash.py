"""Durability: a transaction acknowledged by ``execute`` survives SIGKILL of the writer.

A separate process posts transfers in a loop and prints each id once
``execute`` has returned; the test kills it without warning mid-run (twice,
on the same database), reopens the ledger and finds every acknowledged id
exactly once, at most one more that committed just before the kill, and the
invariants intact.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from ledger.store import Ledger
from tests.integration.ledger_support import account, figures, run, transfer

REPOSITORY = Path(__file__).resolve().parents[2]


def post_until_killed(database: str, prefix: str, acknowledgements: int) -> list[str]:
    """Start the writer, kill it after ``acknowledgements`` acks; return every ack it printed."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.ledger_worker", "crash", database, prefix],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    try:
        assert worker.stdout.readline().strip() == "ready"
        acknowledged: list[str] = []
        deadline = time.monotonic() + 120
        while len(acknowledged) < acknowledgements:
            assert time.monotonic() < deadline, "the writer stopped acknowledging"
            line = worker.stdout.readline()
            assert line.startswith("ack "), (line, worker.stderr.read() if worker.stderr else "")
            acknowledged.append(line.split()[1])
        worker.send_signal(signal.SIGKILL)
        remaining, _ = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == -signal.SIGKILL
    acknowledged.extend(line.split()[1] for line in remaining.splitlines())
    return acknowledged


def test_acknowledged_transactions_survive_sigkill(database: str) -> None:
    with Ledger(database) as ledger:
        run(ledger, account("issuer"), account("sink"))
        setup_size = ledger.journal_size()
    acknowledged: list[str] = []
    for round_number, acknowledgements in enumerate((25, 40)):
        acknowledged += post_until_killed(database, f"c{round_number}", acknowledgements)
        with Ledger(database) as reopened:
            reopened.check_invariants()
            for transaction_id in acknowledged:
                found = reopened.transactions_by_reference(transaction_id)
                assert [item.id for item in found] == [transaction_id]
            committed = reopened.journal_size() - setup_size
            # At most one more: committed, killed before it could print its ack.
            assert len(acknowledged) <= committed <= len(acknowledged) + round_number + 1
            assert figures(reopened, "sink") == (0, committed, 0, 0)
            assert figures(reopened, "issuer") == (committed, 0, 0, 0)
    with Ledger(database) as reopened:
        run(reopened, transfer("after-the-crashes", "issuer", "sink", 1))
