"""SIGKILL the server under load, restart it, retry: nothing acknowledged is lost.

A `settlement serve` subprocess takes signed transactions from several
concurrent client threads. A seeded killer SIGKILLs it at random moments (at
least five times) and restarts it on the same port. Clients retry every
unanswered request with its original instruction (same id, same bytes) until
it is answered. Afterwards: every acknowledged transaction is present exactly
once with its acknowledged journal index, the ledger's invariants hold, and an
exported bundle verifies, including consistency with every checkpoint a client
kept before the crashes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ledger.export import export_bundle
from ledger.journal import LogSettings
from ledger.keys import load_private_key
from ledger.note import NoteSigner
from ledger.store import Ledger
from ledger.verify import verify_bundle
from settlement.instructions import sign
from settlement.pki import DevPki
from settlement.v1 import audit_pb2, audit_pb2_grpc, ledger_pb2, ledger_pb2_grpc

SEED = 20261128
ORIGIN = "crash-test.example/log"
CLIENTS = 4
TRANSACTIONS_PER_CLIENT = 40
KILLS = 5
STARTUP_TIMEOUT_SECONDS = 60
RUN_TIMEOUT_SECONDS = 240
CALL_TIMEOUT_SECONDS = 5
RETRYABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
)
"""What a client sees while the server is down or dying: retry with the same bytes."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """One `settlement serve` process at a time, always on the same port."""

    def __init__(self, pki: DevPki, database: str, port: int, log_path: Path) -> None:
        self.pki = pki
        self.database = database
        self.port = port
        self.log = log_path.open("a", encoding="utf-8")
        self.process: subprocess.Popen[str] | None = None
        self.processes: list[subprocess.Popen[str]] = []
        self.starts = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "settlement.cli",
                "serve",
                "--dev-pki",
                str(self.pki.directory),
                "--database",
                self.database,
                "--listen",
                f"127.0.0.1:{self.port}",
                "--origin",
                ORIGIN,
                "--checkpoint-every-entries",
                "20",
                "--checkpoint-every-seconds",
                "1",
                "--grace-period-seconds",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.starts += 1
        self.processes.append(self.process)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.log.write(line)
            if '"listening"' in line:
                threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()
                return
        raise AssertionError(f"server did not start (see {self.log.name})")

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.log.write(line)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        for process in self.processes:
            if process.stdout is not None:
                process.stdout.close()
        self.log.close()


@pytest.fixture
def crash_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "crash.db")
    else:
        yield str(request.getfixturevalue("postgres_url"))


def _operator_call(pki: DevPki, port: int, method: str, request: Any) -> Any:
    with grpc.secure_channel(f"127.0.0.1:{port}", pki.channel_credentials("operator")) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        return getattr(stub, method)(request, timeout=CALL_TIMEOUT_SECONDS)


@pytest.mark.slow
@pytest.mark.parametrize("crash_database", ["sqlite", "postgres"], indirect=True)
def test_acknowledged_transactions_survive_sigkill(
    crash_database: str, dev_pki: DevPki, tmp_path: Path
) -> None:
    generator = random.Random(SEED)
    print(f"crash test seed {SEED}")
    operator_key = load_private_key(dev_pki.participant("operator").signing_private_key_path)
    server = Server(dev_pki, crash_database, _free_port(), tmp_path / "server.log")
    server.start()
    try:
        for name, side in (
            ("crash:source", ledger_pb2.SIDE_DEBIT),
            ("crash:sink", ledger_pb2.SIDE_CREDIT),
        ):
            account = ledger_pb2.CreateAccountInstruction(
                instruction_id=name,
                participant_id="operator",
                instruction_type=ledger_pb2.CreateAccountInstruction.DESCRIPTOR.full_name,
                owner_participant_id="operator",
                currency="USD",
                normal_side=side,
            )
            _operator_call(
                dev_pki,
                server.port,
                "CreateAccount",
                ledger_pb2.CreateAccountRequest(instruction=sign(account, operator_key)),
            )

        work: list[tuple[str, int, Any]] = []
        for client in range(CLIENTS):
            for number in range(TRANSACTIONS_PER_CLIENT):
                amount = generator.randint(1, 100_000)
                instruction = ledger_pb2.TransactionInstruction(
                    instruction_id=f"crash:{client}:{number}",
                    participant_id="operator",
                    instruction_type=ledger_pb2.TransactionInstruction.DESCRIPTOR.full_name,
                    postings=[
                        ledger_pb2.Posting(
                            account_id="crash:source",
                            side=ledger_pb2.SIDE_DEBIT,
                            amount_minor=amount,
                            currency="USD",
                        ),
                        ledger_pb2.Posting(
                            account_id="crash:sink",
                            side=ledger_pb2.SIDE_CREDIT,
                            amount_minor=amount,
                            currency="USD",
                        ),
                    ],
                    code="CRASH",
                )
                work.append((instruction.instruction_id, amount, sign(instruction, operator_key)))

        acknowledged: dict[str, int] = {}
        failures: list[str] = []
        kept_checkpoints: list[bytes] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + RUN_TIMEOUT_SECONDS

        def client_loop(items: list[tuple[str, int, Any]]) -> None:
            for instruction_id, _amount, signed in items:
                while time.monotonic() < stop_at:
                    try:
                        response = _operator_call(
                            dev_pki,
                            server.port,
                            "CreateTransaction",
                            ledger_pb2.CreateTransactionRequest(instruction=signed),
                        )
                    except grpc.RpcError as error:
                        if error.code() not in RETRYABLE:
                            failures.append(f"{instruction_id}: {error.code()} {error.details()}")
                            return
                        time.sleep(0.05)
                        continue
                    with lock:
                        acknowledged[instruction_id] = response.result.receipt.journal_index
                    break

        def checkpoint_keeper() -> None:
            while time.monotonic() < stop_at and len(acknowledged) < len(work):
                try:
                    with grpc.secure_channel(
                        f"127.0.0.1:{server.port}", dev_pki.channel_credentials("operator")
                    ) as channel:
                        note = (
                            audit_pb2_grpc.AuditServiceStub(channel)
                            .GetLatestCheckpoint(
                                audit_pb2.GetLatestCheckpointRequest(), timeout=CALL_TIMEOUT_SECONDS
                            )
                            .checkpoint.signed_note
                        )
                    with lock:
                        kept_checkpoints.append(bytes(note))
                except grpc.RpcError:
                    pass
                time.sleep(0.3)

        threads = [
            threading.Thread(target=client_loop, args=(work[client::CLIENTS],))
            for client in range(CLIENTS)
        ] + [threading.Thread(target=checkpoint_keeper)]
        for thread in threads:
            thread.start()
        for _ in range(KILLS):
            time.sleep(generator.uniform(0.3, 1.5))
            server.kill()
            server.start()
        for thread in threads:
            thread.join(timeout=RUN_TIMEOUT_SECONDS)
        assert failures == []
        assert len(acknowledged) == len(work), "some requests were never answered"
        assert server.starts == KILLS + 1
    finally:
        server.stop()

    log_key = NoteSigner(ORIGIN, load_private_key(dev_pki.log_private_key_path))
    with Ledger(crash_database, log=LogSettings(ORIGIN, log_key)) as ledger:
        ledger.check_invariants()
        for instruction_id, index in acknowledged.items():
            assert ledger.transaction(instruction_id).journal_index == index
        ids = [ledger.transaction(instruction_id).id for instruction_id, _, _ in work]
        assert len(ids) == len(set(ids)) == len(work)
        total = sum(amount for _, amount, _ in work)
        assert ledger.balance("crash:sink").credits_posted == total
        assert ledger.balance("crash:source").debits_posted == total
        export_bundle(ledger, tmp_path / "bundle")
    assert kept_checkpoints, "the checkpoint keeper never got a checkpoint"
    report = verify_bundle(tmp_path / "bundle", workers=1)
    assert report.ok, report.findings[:3]
    for note in set(kept_checkpoints[:: max(1, len(kept_checkpoints) // 5)]):
        assert verify_bundle(tmp_path / "bundle", previous_checkpoint=note, workers=1).ok
    print(
        json.dumps(
            {"crashes": KILLS, "transactions": len(work), "checkpoints_kept": len(kept_checkpoints)}
        )
    )
