"""Two server processes on one PostgreSQL: one writer lease, and a takeover when it dies.

The first `settlement serve` takes the lease and accepts writes; the second
serves reads but refuses writes with UNAVAILABLE. When the first is killed
(SIGKILL: no goodbye), PostgreSQL drops its session and its advisory lock, and
the second takes the lease on its next tick and accepts the same write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import grpc
import pytest

from ledger.keys import load_private_key
from settlement.instructions import sign
from settlement.pki import DevPki
from settlement.v1 import ledger_pb2, ledger_pb2_grpc

STARTUP_TIMEOUT_SECONDS = 60
TAKEOVER_TIMEOUT_SECONDS = 20


def _start(pki: DevPki, database: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "settlement.cli",
            "serve",
            "--dev-pki",
            str(pki.directory),
            "--database",
            database,
            "--listen",
            "127.0.0.1:0",
            "--origin",
            "lease-test.example/log",
            "--grace-period-seconds",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return process, _listening_port(process.stdout)


def _listening_port(stream: IO[str] | None) -> int:
    assert stream is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    lines = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        lines.append(line)
        try:
            record: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "listening":
            return int(record["port"])
    raise AssertionError("server did not start:\n" + "".join(lines[-20:]))


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[str]]]:
    running: list[subprocess.Popen[str]] = []
    yield running
    for process in running:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def _create_account(pki: DevPki, port: int, account_id: str) -> grpc.StatusCode:
    operator = pki.participant("operator")
    instruction = ledger_pb2.CreateAccountInstruction(
        instruction_id=account_id,
        participant_id="operator",
        instruction_type=ledger_pb2.CreateAccountInstruction.DESCRIPTOR.full_name,
        owner_participant_id="operator",
        currency="USD",
        normal_side=ledger_pb2.SIDE_DEBIT,
    )
    signed = sign(instruction, load_private_key(operator.signing_private_key_path))
    with grpc.secure_channel(f"127.0.0.1:{port}", pki.channel_credentials("operator")) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        try:
            stub.CreateAccount(ledger_pb2.CreateAccountRequest(instruction=signed), timeout=10)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK


def test_second_instance_takes_the_lease_when_the_writer_dies(
    postgres_url: str, dev_pki: DevPki, servers: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    first, first_port = _start(dev_pki, postgres_url)
    servers.append(first)
    assert _create_account(dev_pki, first_port, "lease:first") == grpc.StatusCode.OK

    second, second_port = _start(dev_pki, postgres_url)
    servers.append(second)
    assert _create_account(dev_pki, second_port, "lease:second") == grpc.StatusCode.UNAVAILABLE

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    deadline = time.monotonic() + TAKEOVER_TIMEOUT_SECONDS
    outcome = grpc.StatusCode.UNAVAILABLE
    while time.monotonic() < deadline and outcome == grpc.StatusCode.UNAVAILABLE:
        time.sleep(0.5)
        outcome = _create_account(dev_pki, second_port, "lease:second")
    assert outcome == grpc.StatusCode.OK
