"""Every command in README.md runs, so the README cannot go stale.

Shell blocks are read line by line: ``make X`` must be a Makefile target,
``settlement ...`` lines are run (with throwaway directories and a SQLite
database substituted for the example paths and URL), and the Python block is
executed. Commands named inline (``python -m clients.X --help``) run too.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import bundle

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GOLDEN = ROOT / "tests" / "vectors" / "bundles" / "golden"
COMMAND_TIMEOUT_SECONDS = 120


def _blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _shell_commands() -> list[str]:
    commands = []
    for block in _blocks("sh"):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command:
                commands.append(command)
    return commands


def _run(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / arguments[0]
    if executable.exists():
        arguments = [str(executable), *arguments[1:]]
    return subprocess.run(
        arguments,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )


def test_readme_names_the_two_commands_first() -> None:
    assert _shell_commands()[:2] == ["make demo", "make test"]


def test_every_make_command_is_a_target() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for command in _shell_commands():
        if command.startswith("make "):
            target = command.split()[1]
            assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.MULTILINE), command


def test_every_settlement_command_runs(tmp_path: Path) -> None:
    kept = tmp_path / "kept.checkpoint"
    kept.write_bytes(next(iter(bundle.read_framed(GOLDEN / bundle.CHECKPOINTS_FILE))))
    ran = 0
    for command in _shell_commands():
        if not command.startswith("settlement "):
            continue
        arguments = [
            str(GOLDEN)
            if word == "BUNDLE_DIR"
            else str(kept)
            if word == "kept.checkpoint"
            else word
            for word in shlex.split(command)
        ]
        if arguments[1] == "serve":
            _serve_until_listening(arguments, tmp_path)
        else:
            result = _run(arguments, tmp_path)
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        ran += 1
    assert ran >= 4


def _serve_until_listening(arguments: list[str], cwd: Path) -> None:
    position = arguments.index("--database")
    arguments[position + 1] = str(cwd / "readme.db")
    arguments += ["--listen", "127.0.0.1:0"]
    executable = Path(sys.executable).parent / "settlement"
    process = subprocess.Popen(
        [str(executable), *arguments[1:]],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if '"listening"' in line:
                break
        else:
            pytest.fail("settlement serve from the README did not start")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=COMMAND_TIMEOUT_SECONDS) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("module", ["clients.us_bank", "clients.pk_bank", "clients.auditor"])
def test_client_help_runs(module: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_the_python_example_runs(tmp_path: Path) -> None:
    (code,) = _blocks("python")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("2 Balance(account_id='settlement:BANKUS33:USD'")
