"""When checkpoints are signed outside the commit path: forced, or only when due.

``Ledger.issue_checkpoint()`` signs whenever there are entries since the
latest checkpoint (an auditor asking for one, an export);
``issue_checkpoint(force=False)`` signs only when the log settings say one is
due, which is what the hub's timer calls every second. The log here signs
every 1,000 entries or 10 seconds; the clock moves only when a test says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.journal import LogSettings
from ledger.note import NoteSigner
from ledger.store import Ledger
from settlement.hub import Hub
from settlement.lease import WriterLease
from tests.integration.ledger_support import ManualClock, account, run, transfer

ORIGIN = "settlement.example/checkpoints"
EVERY_SECONDS = 10


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ledger(database: str, clock: ManualClock) -> Iterator[Ledger]:
    """Two accounts, committed together: the log's first checkpoint, at size 2."""
    settings = LogSettings(
        ORIGIN,
        NoteSigner(ORIGIN, Ed25519PrivateKey.generate()),
        checkpoint_every_entries=1000,
        checkpoint_every_seconds=EVERY_SECONDS,
    )
    with Ledger(database, clock=clock, log=settings) as opened:
        run(opened, account("bank"), account("alice"))
        yield opened


def sizes(ledger: Ledger) -> list[int]:
    return [size for size, _ in ledger.checkpoints()]


def test_forced_signs_whenever_there_are_new_entries(ledger: Ledger) -> None:
    assert sizes(ledger) == [2]
    assert ledger.issue_checkpoint() is None
    run(ledger, transfer("t1", "bank", "alice", 5))
    assert ledger.issue_checkpoint() is not None
    assert ledger.issue_checkpoint() is None
    assert sizes(ledger) == [2, 3]


def test_not_forced_signs_only_when_due(ledger: Ledger, clock: ManualClock) -> None:
    run(ledger, transfer("t1", "bank", "alice", 5))
    assert ledger.issue_checkpoint(force=False) is None
    clock.advance(EVERY_SECONDS - 1)
    assert ledger.issue_checkpoint(force=False) is None
    clock.advance(1)
    assert ledger.issue_checkpoint(force=False) is not None
    clock.advance(EVERY_SECONDS)
    assert ledger.issue_checkpoint(force=False) is None
    assert sizes(ledger) == [2, 3]


def test_the_hubs_timer_signs_at_the_configured_cadence(ledger: Ledger, clock: ManualClock) -> None:
    # The timer uses only the ledger and the lease (off: not PostgreSQL's lease).
    hub = Hub(
        settings=cast(Any, None),
        ledger=ledger,
        registry=cast(Any, None),
        sequencer=cast(Any, None),
        lease=WriterLease(ledger.url, enabled=False),
    )
    for second in range(EVERY_SECONDS):
        run(ledger, transfer(f"t{second}", "bank", "alice", 1))
        hub._tick()
        clock.advance(1)
    assert sizes(ledger) == [2]
    hub._tick()
    assert sizes(ledger) == [2, 2 + EVERY_SECONDS]
