"""The auditor client (clients/auditor.py).

Against the real hub (SQLite and PostgreSQL): an audit anchors the latest
checkpoint with the log key, exports the bundle over gRPC, verifies it and
keeps the checkpoint; the next audit, after more entries, checks an RFC 9162
consistency proof from the kept checkpoint. A forged kept checkpoint, a
wrong log key and a tampered bundle are findings (exit 1), never a new state.

Against a fake AuditService over mutual TLS serving a bundle: an operator who
rewrote history and re-signed every checkpoint is caught by the kept
checkpoint; a stream broken by UNAVAILABLE is discarded and started again.
The export stream's rules (paths, offsets, SHA-256) are held one by one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from tqdm import tqdm

from clients import auditor, common
from ledger import bundle
from ledger.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from ledger.keys import load_private_key
from ledger.merkle import CompactRange, MemoryNodeStore, consistency_proof, leaf_hash
from ledger.note import NoteSigner
from settlement.v1 import audit_pb2
from tests.bundle_builder import LogSigning
from tests.bundle_tamper import change_amount, note_text, read_checkpoints, read_leaves
from tests.clients.conftest import CALL_TIMEOUT_SECONDS, Operator, on_hub_loop
from tests.grpc.conftest import TEST_ORIGIN

FAST_POLICY = common.RetryPolicy(
    attempts_max=2, backoff_initial_seconds=0.01, call_timeout_seconds=2.0, total_seconds_max=5.0
)


def checkpointed(operator: Operator) -> int:
    """Have the hub sign a checkpoint over the whole journal; its size."""
    size = operator.journal_size()
    operator.audit().GetLatestCheckpoint(
        audit_pb2.GetLatestCheckpointRequest(min_tree_size=size), timeout=CALL_TIMEOUT_SECONDS
    )
    return size


def run_auditor(
    capsys: pytest.CaptureFixture[str],
    *arguments: str,
    on: Callable[[Coroutine[Any, Any, int]], int] | None = None,
    retrying: common.Retrying | None = None,
) -> tuple[int, str, str]:
    """The auditor's command line; ``on`` runs it on a server's loop (see ``on_hub_loop``)."""
    coroutine = auditor.main_async(
        [*arguments, "--workers", "1", "--no-progress"], retrying=retrying
    )
    status = on(coroutine) if on is not None else asyncio.run(coroutine)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def hub(operator: Operator) -> Callable[[Coroutine[Any, Any, int]], int]:
    return lambda coroutine: on_hub_loop(operator.server, coroutine)


def audit_arguments(operator: Operator, out: Path, state: Path, *extra: str) -> list[str]:
    return [
        "audit",
        "--pki",
        str(operator.pki.directory),
        "--server",
        operator.server.address,
        "--out",
        str(out),
        "--state",
        str(state),
        *extra,
    ]


def log_signing(operator: Operator) -> LogSigning:
    """The log's private key: what a malicious operator holds."""
    key = load_private_key(operator.pki.log_private_key_path)
    return LogSigning.single(NoteSigner(TEST_ORIGIN, key))


def busy(operator: Operator, rounds: int) -> None:
    for round_number in range(rounds):
        operator.fund("settlement:bank-us:USD", 1000 + round_number, "USD")
        operator.fund("settlement:bank-pk:PKR", 2000 + round_number, "PKR")


# --- Against the real hub ---------------------------------------------------------------------


def test_audit_verifies_a_real_export_and_keeps_its_checkpoint(
    operator: Operator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy(operator, 3)
    size = checkpointed(operator)
    state = tmp_path / "state" / "kept.checkpoint"
    status, out, err = run_auditor(
        capsys, *audit_arguments(operator, tmp_path / "b1", state), on=hub(operator)
    )
    assert status == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "AUDIT OK"
    assert f"tree size {size}" in out
    assert "first audit" in out
    assert f"updated to tree size {size}" in out
    assert "bundle verification:" in out
    assert sorted(path.name for path in (tmp_path / "b1").iterdir()) == sorted(bundle.BUNDLE_FILES)
    kept = parse_checkpoint(note_text(state.read_bytes()))
    assert (kept.origin, kept.size) == (TEST_ORIGIN, size)
    # No partial export is left beside the bundle.
    assert [path.name for path in tmp_path.iterdir() if "partial" in path.name] == []


def test_second_audit_checks_consistency_with_the_kept_checkpoint(
    operator: Operator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy(operator, 2)
    first = checkpointed(operator)
    state = tmp_path / "kept.checkpoint"
    status, _, err = run_auditor(
        capsys, *audit_arguments(operator, tmp_path / "b1", state), on=hub(operator)
    )
    assert status == 0, err
    busy(operator, 5)
    second = checkpointed(operator)
    assert second > first
    status, out, err = run_auditor(
        capsys, *audit_arguments(operator, tmp_path / "b2", state, "--json"), on=hub(operator)
    )
    assert status == 0, out + err
    report = json.loads(out)
    assert report["ok"] is True
    assert report["previous_checkpoint"]["tree_size"] == first
    assert report["audited_checkpoint"]["tree_size"] == second
    assert report["consistency"].startswith(f"verified from tree size {first} to {second}")
    assert report["state_saved"] is True
    assert report["verification"]["ok"] is True
    assert parse_checkpoint(note_text(state.read_bytes())).size == second


def test_forged_kept_checkpoint_is_a_consistency_finding(
    operator: Operator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy(operator, 2)
    size = checkpointed(operator)
    honest = parse_checkpoint(
        note_text(
            operator.audit()
            .GetCheckpoint(audit_pb2.GetCheckpointRequest(tree_size=size), timeout=30)
            .checkpoint.signed_note
        )
    )
    # Signed by the real log key, but not the log's root at that size: a fork.
    forged = Checkpoint(TEST_ORIGIN, size, hashlib.sha256(b"another history").digest())
    state = tmp_path / "kept.checkpoint"
    note = sign_checkpoint(forged, log_signing(operator).signer_for(size))
    state.write_bytes(note)
    busy(operator, 1)
    checkpointed(operator)
    status, out, err = run_auditor(
        capsys, *audit_arguments(operator, tmp_path / "b", state, "--json"), on=hub(operator)
    )
    assert status == 1, err
    report = json.loads(out)
    assert report["ok"] is False
    assert report["state_saved"] is False
    checks = {finding["check"] for finding in report["findings"]}
    assert "consistency_proof" in checks
    assert "previous_checkpoint" in report["verification"]["finding_counts"]
    assert state.read_bytes() == note
    assert honest.root_hash != forged.root_hash


def test_wrong_log_key_is_a_signature_finding(
    operator: Operator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy(operator, 1)
    checkpointed(operator)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    (tmp_path / "other.key").write_bytes(other)
    state = tmp_path / "kept.checkpoint"
    status, out, _ = run_auditor(
        capsys,
        *audit_arguments(operator, tmp_path / "b", state, "--log-key", str(tmp_path / "other.key")),
    )
    assert status == 1
    assert out.splitlines()[0] == "AUDIT FAILED"
    assert "checkpoint_signature" in out
    assert "log_key" in out
    assert "NOT updated" in out
    assert not state.exists()


def test_tampered_export_fails_offline_verification_naming_the_check(
    operator: Operator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy(operator, 3)
    checkpointed(operator)
    state = tmp_path / "kept.checkpoint"
    exported = tmp_path / "exported"
    status, _, err = run_auditor(
        capsys, *audit_arguments(operator, exported, state), on=hub(operator)
    )
    assert status == 0, err
    status, out, _ = run_auditor(
        capsys, "verify", str(exported), "--log-key", str(operator.pki.log_public_key_path)
    )
    assert status == 0
    assert out.splitlines()[0] == "AUDIT OK"

    tampered = tmp_path / "tampered"
    shutil.copytree(exported, tampered)
    index = _first_fund_index(tampered)
    change_amount(tampered, log_signing(operator), index)
    status, out, _ = run_auditor(capsys, "verify", str(tampered))
    assert status == 1
    assert out.splitlines()[0] == "AUDIT FAILED"
    first_failure = next(line for line in out.splitlines() if line.startswith("first failure:"))
    assert first_failure.startswith(f"first failure: index {index}: ")
    check = first_failure.rsplit(": ", 1)[1]
    assert check in {"participant_signature", "entry_balanced", "instruction_binding"}
    assert f"index {index}: {check}: " in out

    # Re-signed by the operator, the tampered copy still contradicts the kept checkpoint.
    status, out, _ = run_auditor(
        capsys, "verify", str(tampered), "--previous-checkpoint", str(state), "--json"
    )
    assert status == 1
    assert "previous_checkpoint" in json.loads(out)["verification"]["finding_counts"]


def _first_fund_index(directory: Path) -> int:
    for index, leaf in enumerate(read_leaves(directory)):
        document = bundle.decode_canonical(leaf)
        if document.get("kind") == "transaction" and document.get("postings"):
            return index
    raise AssertionError("no transaction leaf")


def test_usage_and_connection_errors_exit_2(
    operator: Operator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpointed(operator)
    busy_out = tmp_path / "not-empty"
    busy_out.mkdir()
    (busy_out / "file").write_text("x")
    status, _, err = run_auditor(
        capsys, *audit_arguments(operator, busy_out, tmp_path / "s"), on=hub(operator)
    )
    assert status == 2
    assert "empty directory" in err

    # A bank may read checkpoints but not export the log.
    status, _, err = run_auditor(
        capsys,
        *audit_arguments(operator, tmp_path / "b", tmp_path / "s", "--participant", "bank-us"),
        on=hub(operator),
    )
    assert status == 2
    assert "PERMISSION_DENIED role_must_permit" in err
    assert not (tmp_path / "b").exists()

    status, _, err = run_auditor(
        capsys,
        "audit",
        "--pki",
        str(operator.pki.directory),
        "--server",
        "127.0.0.1:9",
        "--out",
        str(tmp_path / "c"),
        "--state",
        str(tmp_path / "s"),
        retrying=common.Retrying(policy=FAST_POLICY),
        on=hub(operator),
    )
    assert status == 2
    assert "no answer after 2 attempt(s)" in err


@pytest.mark.parametrize("command", ["audit", "verify"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert auditor.main([command, "--help"]) == 0
    assert f"auditor {command}" in capsys.readouterr().out


# --- Against a fake AuditService serving a given bundle ---------------------------------------


class FakeAudit:
    """Serves one bundle directory as AuditService would, over mutual TLS."""

    CHUNK_BYTES = 4096

    def __init__(self, directory: Path, *, break_first_export: bool = False) -> None:
        self.files = {path.name: path.read_bytes() for path in sorted(directory.iterdir())}
        self.notes = read_checkpoints(directory)
        self.store = MemoryNodeStore()
        frontier = CompactRange()
        for leaf in read_leaves(directory):
            for level, index, value in frontier.append(leaf_hash(leaf)):
                self.store.put(level, index, value)
        self.break_first_export = break_first_export
        self.exports = 0

    def _message(self, note: bytes) -> audit_pb2.Checkpoint:
        checkpoint = parse_checkpoint(note_text(note))
        return audit_pb2.Checkpoint(
            signed_note=note,
            origin=checkpoint.origin,
            tree_size=checkpoint.size,
            root_hash=checkpoint.root_hash,
        )

    async def latest(self, request: Any, context: Any) -> audit_pb2.GetLatestCheckpointResponse:
        return audit_pb2.GetLatestCheckpointResponse(checkpoint=self._message(self.notes[-1]))

    async def checkpoint(self, request: Any, context: Any) -> audit_pb2.GetCheckpointResponse:
        for note in self.notes:
            if parse_checkpoint(note_text(note)).size == request.tree_size:
                return audit_pb2.GetCheckpointResponse(checkpoint=self._message(note))
        await context.abort(grpc.StatusCode.NOT_FOUND, "checkpoint_must_exist: none")
        raise AssertionError("unreachable")

    async def consistency(
        self, request: Any, context: Any
    ) -> audit_pb2.GetConsistencyProofResponse:
        hashes = consistency_proof(self.store, request.old_size, request.new_size)
        return audit_pb2.GetConsistencyProofResponse(
            old_size=request.old_size, new_size=request.new_size, hashes=hashes
        )

    async def export(
        self, request: Any, context: Any
    ) -> AsyncIterator[audit_pb2.ExportBundleResponse]:
        self.exports += 1
        sent = 0
        for name, data in self.files.items():
            digest = hashlib.sha256(data).digest()
            for offset in range(0, max(len(data), 1), self.CHUNK_BYTES):
                if self.break_first_export and self.exports == 1 and sent == 2:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "writer lease lost")
                sent += 1
                yield audit_pb2.ExportBundleResponse(
                    path=name,
                    offset=offset,
                    data=data[offset : offset + self.CHUNK_BYTES],
                    file_size=len(data),
                    file_sha256=digest,
                )

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(behaviour: Callable[..., Any], request: Any, response: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )

        return grpc.method_handlers_generic_handler(
            "settlement.v1.AuditService",
            {
                "GetLatestCheckpoint": unary(
                    self.latest,
                    audit_pb2.GetLatestCheckpointRequest,
                    audit_pb2.GetLatestCheckpointResponse,
                ),
                "GetCheckpoint": unary(
                    self.checkpoint,
                    audit_pb2.GetCheckpointRequest,
                    audit_pb2.GetCheckpointResponse,
                ),
                "GetConsistencyProof": unary(
                    self.consistency,
                    audit_pb2.GetConsistencyProofRequest,
                    audit_pb2.GetConsistencyProofResponse,
                ),
                "ExportBundle": grpc.unary_stream_rpc_method_handler(
                    self.export,
                    request_deserializer=audit_pb2.ExportBundleRequest.FromString,
                    response_serializer=audit_pb2.ExportBundleResponse.SerializeToString,
                ),
            },
        )


class FakeServer:
    """A grpc.aio server on its own loop in a thread, with the dev PKI's server certificate."""

    def __init__(self, fake: FakeAudit, operator: Operator) -> None:
        self.fake = fake
        self.pki = operator.pki
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.address = ""

    async def _start(self) -> grpc.aio.Server:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((self.fake.handler(),))
        credentials = grpc.ssl_server_credentials(
            [
                (
                    self.pki.server_key_path.read_bytes(),
                    self.pki.server_certificate_path.read_bytes(),
                )
            ],
            root_certificates=self.pki.ca_certificate_path.read_bytes(),
            require_client_auth=True,
        )
        port = server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        self.address = f"127.0.0.1:{port}"
        return server

    def run(self, coroutine: Coroutine[Any, Any, int]) -> int:
        """Run a client coroutine on this server's loop (see ``on_hub_loop``)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(300)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture
def honest_audit(
    operator: Operator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Operator, Path, Path]:
    """An honest first audit (state kept), then more entries and an honest second export."""
    busy(operator, 3)
    checkpointed(operator)
    state = tmp_path / "kept.checkpoint"
    status, _, err = run_auditor(
        capsys, *audit_arguments(operator, tmp_path / "first", state), on=hub(operator)
    )
    assert status == 0, err
    busy(operator, 4)
    checkpointed(operator)
    scratch = tmp_path / "scratch.checkpoint"
    shutil.copy(state, scratch)
    status, _, err = run_auditor(
        capsys, *audit_arguments(operator, tmp_path / "second", scratch), on=hub(operator)
    )
    assert status == 0, err
    return operator, state, tmp_path / "second"


def fake_audit_arguments(
    operator: Operator, server: FakeServer, out: Path, state: Path
) -> list[str]:
    return [
        "audit",
        "--pki",
        str(operator.pki.directory),
        "--server",
        server.address,
        "--out",
        str(out),
        "--state",
        str(state),
        "--json",
    ]


def test_operator_rewriting_history_is_caught_by_the_kept_checkpoint(
    honest_audit: tuple[Operator, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every checkpoint and the manifest re-signed with the real log key, one early
    amount changed: only the checkpoint kept from the last audit can tell."""
    operator, state, honest = honest_audit
    kept_before = state.read_bytes()
    forged = tmp_path / "forged"
    shutil.copytree(honest, forged)
    change_amount(forged, log_signing(operator), _first_fund_index(forged))
    with FakeServer(FakeAudit(forged), operator) as server:
        status, out, err = run_auditor(
            capsys, *fake_audit_arguments(operator, server, tmp_path / "got", state), on=server.run
        )
    assert status == 1, err
    report = json.loads(out)
    assert report["ok"] is False
    consistency = [f for f in report["findings"] if f["check"] == "consistency_proof"]
    assert consistency, report["findings"]
    assert report["consistency"].startswith("FAILED")
    assert "previous_checkpoint" in report["verification"]["finding_counts"]
    assert state.read_bytes() == kept_before


def test_export_broken_by_unavailable_is_discarded_and_started_again(
    honest_audit: tuple[Operator, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    operator, state, honest = honest_audit
    fake = FakeAudit(honest, break_first_export=True)
    with FakeServer(fake, operator) as server:
        status, out, err = run_auditor(
            capsys,
            *fake_audit_arguments(operator, server, tmp_path / "got", state),
            retrying=common.Retrying(policy=FAST_POLICY),
            on=server.run,
        )
    assert status == 0, out + err
    assert fake.exports == 2
    assert "UNAVAILABLE on attempt 1" not in err  # FAST_POLICY has no on_retry printer
    for name in bundle.BUNDLE_FILES:
        assert (tmp_path / "got" / name).read_bytes() == (honest / name).read_bytes()
    assert [path.name for path in tmp_path.iterdir() if "partial" in path.name] == []
    report = json.loads(out)
    assert report["consistency"].startswith("verified from tree size")


# --- The export stream's rules -----------------------------------------------------------------


def chunk(
    path: str, data: bytes, *, offset: int = 0, size: int | None = None, sha: bytes | None = None
) -> audit_pb2.ExportBundleResponse:
    whole = size if size is not None else len(data)
    return audit_pb2.ExportBundleResponse(
        path=path,
        offset=offset,
        data=data,
        file_size=whole,
        file_sha256=sha if sha is not None else hashlib.sha256(data).digest(),
    )


TRANSFER_CASES: list[tuple[str, list[audit_pb2.ExportBundleResponse], str]] = [
    ("parent directory", [chunk("../escape", b"x")], "outside the bundle directory"),
    ("absolute path", [chunk("/etc/passwd", b"x")], "outside the bundle directory"),
    ("dot part", [chunk("a/./b", b"x")], "outside the bundle directory"),
    ("bad character", [chunk("a b", b"x")], "outside the bundle directory"),
    ("first offset", [chunk("a", b"x", offset=1, size=2)], "first chunk offset"),
    (
        "gap",
        [
            chunk("a", b"xy", size=4, sha=b"\x00" * 32),
            chunk("a", b"zz", offset=3, size=4, sha=b"\x00" * 32),
        ],
        "chunk offset",
    ),
    ("wrong digest", [chunk("a", b"xy", sha=b"\x01" * 32)], "SHA-256 of a"),
    ("short digest", [chunk("a", b"xy", sha=b"\x01" * 8)], "file_sha256"),
    (
        "interleaved",
        [chunk("a", b"xy", size=4, sha=b"\x00" * 32), chunk("b", b"zz")],
        "interrupted by another file",
    ),
    ("twice", [chunk("a", b"xy"), chunk("a", b"xy")], "sent twice"),
    ("overflow", [chunk("a", b"xyz", size=2)], "size of 'a'"),
]


def feed(writer: auditor.BundleWriter, chunks: list[audit_pb2.ExportBundleResponse]) -> None:
    for item in chunks:
        writer.add(item)


@pytest.mark.parametrize(
    ("chunks", "message"),
    [(chunks, message) for _, chunks, message in TRANSFER_CASES],
    ids=[name for name, _, _ in TRANSFER_CASES],
)
def test_export_stream_rules(
    chunks: list[audit_pb2.ExportBundleResponse], message: str, tmp_path: Path
) -> None:
    with tqdm(disable=True) as bar:
        writer = auditor.BundleWriter(tmp_path, bar)
        with pytest.raises(auditor.TransferError, match=message):
            feed(writer, chunks)
        writer.abort()
    assert not (tmp_path.parent / "escape").exists()


def test_export_stream_ending_inside_a_file_is_refused(tmp_path: Path) -> None:
    with tqdm(disable=True) as bar:
        writer = auditor.BundleWriter(tmp_path, bar)
        writer.add(chunk("a", b"xy", size=4, sha=b"\x00" * 32))
        with pytest.raises(auditor.TransferError, match="ended inside a file"):
            writer.finish()


def test_export_stream_of_several_chunks_and_an_empty_file(tmp_path: Path) -> None:
    data = b"0123456789"
    digest = hashlib.sha256(data).digest()
    with tqdm(disable=True) as bar:
        writer = auditor.BundleWriter(tmp_path, bar)
        writer.add(chunk("a", data[:4], size=10, sha=digest))
        writer.add(chunk("a", data[4:], offset=4, size=10, sha=digest))
        writer.add(chunk("empty", b""))
        writer.finish()
    assert (tmp_path / "a").read_bytes() == data
    assert (tmp_path / "empty").read_bytes() == b""
    assert writer.done == {"a", "empty"}
