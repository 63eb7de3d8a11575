"""``settlement audit export`` then ``settlement audit verify``, on a busy ledger.

On SQLite and PostgreSQL (the ``database`` fixture): keys come from
``settlement keys generate``, the ledger is driven by ``tests/busy_ledger.py``
(every kind of entry, batches under one signature, a key rotation), and both
commands run as an operator and an auditor would run them, in their own
processes. A second export after more traffic must be consistent with the
last checkpoint of the first one (``--previous-checkpoint``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ledger import bundle
from ledger.journal import LogSettings
from ledger.keys import PRIVATE_KEY_FILE_SUFFIX, load_private_key
from ledger.note import NoteSigner
from ledger.store import Ledger
from settlement.cli import main as cli_main
from tests.busy_ledger import PARTICIPANTS, BusyLedger, SteppingClock

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "settlement.example/integration"
FIRST_SIZE = 400
SECOND_SIZE = 600
ROTATED = "bankus-rotated"


def settlement(*arguments: str) -> subprocess.CompletedProcess[str]:
    """The ``settlement`` command in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "settlement.cli", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def generate_keys(directory: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path]:
    """``settlement keys generate`` for the log, each participant and BANKUS's next key."""
    names = ["log", ROTATED, *(participant.lower() for participant in PARTICIPANTS)]
    for name in names:
        assert cli_main(["keys", "generate", "--out", str(directory), "--name", name]) == 0
    capsys.readouterr()
    return {name: directory / f"{name}{PRIVATE_KEY_FILE_SUFFIX}" for name in names}


def export(database: str, log_key: Path, out: Path) -> None:
    result = settlement(
        "audit",
        "export",
        "--database",
        database,
        "--log-key",
        str(log_key),
        "--origin",
        ORIGIN,
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def last_checkpoint(directory: Path) -> bytes:
    notes = list(bundle.read_framed(directory / bundle.CHECKPOINTS_FILE))
    assert notes, "a bundle holds at least one checkpoint"
    return notes[-1]


def test_export_verifies_and_extends_the_previous_audit(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = generate_keys(tmp_path / "keys", capsys)
    clock = SteppingClock()
    log = LogSettings(ORIGIN, NoteSigner(ORIGIN, load_private_key(keys["log"])))
    participant_keys = {
        participant: load_private_key(keys[participant.lower()]) for participant in PARTICIPANTS
    }
    first = tmp_path / "first"
    second = tmp_path / "second"
    with Ledger(database, clock=clock, log=log) as ledger:
        traffic = BusyLedger(ledger, clock, participant_keys, load_private_key(keys[ROTATED]))
        traffic.run_until(FIRST_SIZE)
        export(database, keys["log"], first)

        verified = settlement("audit", "verify", str(first), "--no-progress")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.splitlines()[:3] == [
            "OK",
            f"tree size: {FIRST_SIZE}",
            f"entries: {FIRST_SIZE}",
        ]
        kept = tmp_path / "kept.checkpoint"
        kept.write_bytes(last_checkpoint(first))

        traffic.run_until(SECOND_SIZE)
        ledger.check_invariants()
        export(database, keys["log"], second)

    verified = settlement(
        "audit", "verify", str(second), "--no-progress", "--previous-checkpoint", str(kept)
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.splitlines()[:3] == [
        "OK",
        f"tree size: {SECOND_SIZE}",
        f"entries: {SECOND_SIZE}",
    ]
    # The kept checkpoint is the first export's size, and the second bundle holds it too.
    assert kept.read_bytes() in set(bundle.read_framed(second / bundle.CHECKPOINTS_FILE))
