"""Private keys: refused at start-up when others may read them, never logged, never answered.

- The log's signing key and the TLS server key, with any permission for
  group or other (0644, 0640, 0604, 0660), stop ``settlement serve`` before
  it listens, with a message naming the file, its mode and the fix; 0600 and
  0400 start.
- A whole run of ``settlement serve --log-level debug`` (registrations,
  writes, refusals of bad signatures and malformed instructions, an export)
  logs no private key material: no PEM private key header or body line, no
  Ed25519 seed or ECDSA private value, raw, hex or base64, of any key of the
  development PKI.
- No RPC answer (every read RPC as the operator, the auditor and a bank,
  every write, the export bundle, refusals with their details) holds any of
  that material either.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ledger.keys import KeyFileError, load_private_key
from settlement.config import ConfigurationError
from settlement.pki import DevPki, create_dev_pki
from settlement.server import BackgroundServer
from settlement.v1 import common_pb2, ledger_pb2
from tests.grpc.conftest import real_hub_opener, server_settings
from tests.grpc.hub_client import (
    CALL_TIMEOUT_SECONDS,
    OPERATOR,
    HubClient,
    register_demo_participants,
    transaction,
    transfer_postings,
)
from tests.security.world import AUDITOR, PK, World, call, outcome, registered_rpcs

WIDE_MODES = (0o644, 0o640, 0o604, 0o660)
STARTUP_TIMEOUT_SECONDS = 60


# -- key material -----------------------------------------------------------------------------


def private_key_files(pki: DevPki) -> list[Path]:
    files = [pki.log_private_key_path, pki.server_key_path, pki.ca_key_path]
    for participant in pki.participants.values():
        files += [participant.signing_private_key_path, participant.private_key_path]
    return files


def secret_forms(pki: DevPki) -> dict[str, bytes]:
    """Every private key of ``pki`` in every spelling a leak could take, by name."""
    forms: dict[str, bytes] = {}
    for path in private_key_files(pki):
        pem = path.read_bytes()
        key: Any = load_pem_private_key(pem, password=None)
        if isinstance(key, Ed25519PrivateKey):
            secret = key.private_bytes_raw()
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            secret = key.private_numbers().private_value.to_bytes(32, "big")
        else:
            raise AssertionError(f"unexpected key type in {path}")
        name = path.relative_to(pki.directory).as_posix()
        forms[f"{name} raw"] = secret
        forms[f"{name} hex"] = secret.hex().encode()
        forms[f"{name} HEX"] = secret.hex().upper().encode()
        forms[f"{name} base64"] = base64.b64encode(secret).rstrip(b"=")
        forms[f"{name} base64url"] = base64.urlsafe_b64encode(secret).rstrip(b"=")
        for number, line in enumerate(pem.splitlines()):
            if line and not line.startswith(b"-----"):
                forms[f"{name} PEM line {number}"] = line
    forms["PEM private key header"] = b"PRIVATE KEY-----"
    return forms


def leaks(data: bytes, forms: dict[str, bytes]) -> list[str]:
    return [name for name, form in forms.items() if form in data]


@pytest.fixture(scope="module")
def own_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """A PKI of this module's own: the tests change file modes in copies of it."""
    return create_dev_pki(tmp_path_factory.mktemp("secrets") / "pki")


def copy_pki(pki: DevPki, destination: Path) -> DevPki:
    shutil.copytree(pki.directory, destination)
    from settlement.pki import load_dev_pki

    return load_dev_pki(destination)


# -- refused at start-up ----------------------------------------------------------------------


def serve_command(pki: DevPki, database: str, *extra: str) -> list[str]:
    return [
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
        "--grace-period-seconds",
        "1",
        *extra,
    ]


def test_serve_refuses_a_log_key_others_may_read(own_pki: DevPki, tmp_path: Path) -> None:
    """``settlement serve`` with a 0644 log key: exits non-zero before listening, says how
    to fix it. (Both keys and every mode: :func:`test_key_file_modes`, in process.)"""
    pki = copy_pki(own_pki, tmp_path / "pki")
    path = pki.log_private_key_path
    path.chmod(0o644)
    finished = subprocess.run(
        serve_command(pki, str(tmp_path / "hub.db")),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_SECONDS,
        check=False,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0, output
    assert '"listening"' not in output
    assert str(path) in output, output
    assert "0644" in output, output
    assert "chmod 600" in output, output


@pytest.mark.parametrize("mode", [*WIDE_MODES, 0o600, 0o400], ids=lambda mode: f"{mode:04o}")
@pytest.mark.parametrize("key", ["log key", "TLS server key"])
def test_key_file_modes(own_pki: DevPki, tmp_path: Path, key: str, mode: int) -> None:
    """Any group or other permission stops the server at start-up; 0600 and 0400 start it."""
    pki = copy_pki(own_pki, tmp_path / "pki")
    path = pki.log_private_key_path if key == "log key" else pki.server_key_path
    path.chmod(mode)
    settings = server_settings(pki, str(tmp_path / "hub.db"))
    server = BackgroundServer(settings, real_hub_opener(settings))
    try:
        if mode in WIDE_MODES:
            with pytest.raises((ConfigurationError, KeyFileError)) as raised:
                server.start()
            assert "chmod 600" in str(raised.value)
            assert f"mode {mode:04o}" in str(raised.value)
        else:
            assert server.start() > 0
            server.stop()
    finally:
        path.chmod(0o600)  # let the temporary directory be removed


def test_server_settings_refuse_a_wide_tls_key(own_pki: DevPki, tmp_path: Path) -> None:
    pki = copy_pki(own_pki, tmp_path / "pki")
    pki.server_key_path.chmod(0o640)
    with pytest.raises(ConfigurationError, match="mode 0640"):
        server_settings(pki, str(tmp_path / "hub.db")).tls_files()


# -- never logged -----------------------------------------------------------------------------


@pytest.fixture
def served(own_pki: DevPki, tmp_path: Path) -> Iterator[tuple[DevPki, str, Path]]:
    """``settlement serve --log-level debug`` on SQLite; yields (pki, address, log file)."""
    pki = copy_pki(own_pki, tmp_path / "pki")
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            serve_command(pki, str(tmp_path / "hub.db"), "--log-level", "debug"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            address = wait_for_listening(log_path, process)
            yield pki, address, log_path
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_listening(log_path: Path, process: subprocess.Popen[bytes]) -> str:
    import json

    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            if '"listening"' in line:
                event = json.loads(line)
                return f"127.0.0.1:{event['port']}"
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    raise AssertionError("the server did not start")


def test_a_run_logs_no_private_key_material(served: tuple[DevPki, str, Path]) -> None:
    pki, address, log_path = served
    client = HubClient(
        SimpleNamespace(address=address),  # type: ignore[arg-type]
        pki,
        keys={
            participant_id: load_private_key(participant.signing_private_key_path)
            for participant_id, participant in pki.participants.items()
        },
    )
    try:
        register_demo_participants(client)
        payer, payee = client.funded_pair(PK)
        for amount in (1, 2, 3):
            client.write(transaction(PK, transfer_postings(payer, payee, amount)))
        # Refusals log too: a bad signature, a malformed instruction, another's account.
        bad = client.sign(transaction(PK, transfer_postings(payer, payee, 4)))
        bad.signature = bytes(64)
        for request in (
            ledger_pb2.CreateTransactionRequest(instruction=bad),
            ledger_pb2.CreateTransactionRequest(
                instruction=common_pb2.SignedInstruction(instruction=b"{not json", signature=b"x")
            ),
        ):
            with pytest.raises(grpc.RpcError):
                client.ledger(PK).CreateTransaction(request, timeout=CALL_TIMEOUT_SECONDS)
        with pytest.raises(grpc.RpcError):
            client.ledger("bank-us").GetAccount(
                ledger_pb2.GetAccountRequest(account_id=payer), timeout=CALL_TIMEOUT_SECONDS
            )
        export = next(rpc for rpc in registered_rpcs() if rpc.name == "ExportBundle")
        bundle = call(client.channel(AUDITOR), export, export.request_type())
        assert bundle
    finally:
        client.close()
    time.sleep(0.5)
    logged = log_path.read_bytes()
    assert b'"rpc"' in logged, "the run logged no calls: the check would prove nothing"
    assert leaks(logged, secret_forms(pki)) == []


# -- never answered ---------------------------------------------------------------------------


def test_no_answer_holds_private_key_material(world: World) -> None:
    """Every RPC as the operator, the auditor and a bank; writes; refusals: no key material."""
    forms = secret_forms(world.pki)
    answers: list[bytes] = []
    for rpc in registered_rpcs():
        if rpc.name == "WatchPayments" or rpc.service not in {
            "settlement.v1.ParticipantService",
            "settlement.v1.LedgerService",
            "settlement.v1.AuditService",
            "settlement.v1.PaymentService",
        }:
            continue
        for who in (OPERATOR, AUDITOR, PK):
            request = world.valid_request(rpc, who, PK)
            got = outcome(lambda: call(world.channel(who), rpc, request))  # noqa: B023
            answers.extend(response.SerializeToString() for response in got.responses)
            answers.append(got.details.encode())
    everything = b"".join(answers)
    assert len(everything) > 10_000, "too little was answered for the check to mean anything"
    assert leaks(everything, forms) == []
