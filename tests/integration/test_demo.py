"""``settlement demo``: the whole story in separate processes, ending with "ledger verified".

A failing step must make the demo exit non-zero and still stop the server it
started: no process is left running on the demo's files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

DEMO_TIMEOUT_SECONDS: Final = 240
"""Under a minute on an idle machine; a shared CI machine may be several times slower."""


def run_demo(*arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("SETTLEMENT_")
    }
    return subprocess.run(
        [sys.executable, "-m", "settlement.cli", "demo", *arguments],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_SECONDS,
        env=environment,
        check=False,
    )


def processes_naming(text: str) -> list[int]:
    """Process ids whose command line mentions ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in command_line:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_demo_tells_the_whole_story_and_ends_with_ledger_verified(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    completed = run_demo("--keep", str(work))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert lines[-1] == "ledger verified"
    for told in (
        "ACSC",  # the remittance
        "held for review",  # the payment to a sanctioned name
        "a refund, paid back by bank-pk",  # offtake lot 2
        "receivable on the ledger 0.00 USD",
        "Peoria Mining Trucks Inc.",  # the loan's two disbursements
        "Erie Locomotive Works LLC",
        "sent as",  # the repayment in PKR converted to USD
        "Checkpoint: ",
    ):
        assert told in completed.stdout
    assert processes_naming(str(work)) == []


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_a_failing_step_exits_non_zero_and_stops_the_server(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    completed = run_demo("--keep", str(work), "--fail-at", "remittance: pay Karachi Textile Mills")
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "ledger verified" not in completed.stdout
    assert "demo: step 'remittance: pay Karachi Textile Mills' failed" in completed.stderr
    assert "--demo-fails-here" in completed.stderr  # the client's own complaint
    assert processes_naming(str(work)) == []


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_a_terminated_demo_stops_the_server(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("SETTLEMENT_")
    }
    with subprocess.Popen(
        [sys.executable, "-m", "settlement.cli", "demo", "--keep", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=environment,
    ) as process:
        try:
            assert process.stdout is not None
            for line in process.stdout:
                if "hub listening" in line:
                    break
            process.terminate()
            assert process.wait(timeout=DEMO_TIMEOUT_SECONDS) == 128 + 15
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert processes_naming(str(work)) == []
