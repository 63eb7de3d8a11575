"""The reference auditor: fetch, anchor, export and verify the hub's signed log.

``python -m clients.auditor audit --pki DIR --server HOST:PORT --out BUNDLE_DIR
--state FILE`` does, in order:

1. fetch the latest checkpoint (AuditService.GetLatestCheckpoint) and verify
   its signature with the log's public key, which the operator gives the
   auditor out of band (``--log-key FILE``: a PEM or raw Ed25519 public key,
   or a C2SP note verifier key; with ``--pki`` the development
   ``log.public.pem``). Nothing the hub says is trusted before that;
2. when ``--state`` holds the checkpoint kept from the last audit, fetch an
   RFC 9162 consistency proof from it to the new one and verify it
   (section 2.1.4.2): the log was only appended to since;
3. export the bundle over gRPC (AuditService.ExportBundle) into
   ``--out`` with a progress bar, refusing any path outside the directory and
   checking each file's SHA-256 against the one its chunks announce;
4. verify the bundle offline (:func:`ledger.verify.verify_bundle`) with the
   kept checkpoint as ``previous_checkpoint``, and check that the bundle is
   the log the anchored checkpoint describes (its checkpoint of that size has
   the verified root, its trust file lists the anchored log key);
5. print a readable report (or ``--json``) and, only when everything
   verified, keep the new checkpoint in ``--state`` (the signed note as is:
   ``settlement audit verify --previous-checkpoint FILE`` reads it too).

``python -m clients.auditor verify BUNDLE_DIR [--previous-checkpoint FILE]
[--log-key FILE]`` is step 4 alone, offline.

Exit status: 0 verified, 1 findings, 2 usage error, unreadable input or no
connection. Findings carry their evidence (check, index, expected, got),
like the verifier's.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import grpc
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from tqdm import tqdm

from clients.common import (
    EXIT_OK,
    EXIT_USAGE,
    ClientError,
    ConnectionOptions,
    RetriesExhausted,
    Retrying,
    RetryPolicy,
    add_connection_arguments,
    error_report,
    identity_from_arguments,
    open_channel,
    print_retry,
    read_file,
)
from ledger import bundle
from ledger.checkpoint import Checkpoint, CheckpointError, open_checkpoint, parse_checkpoint
from ledger.merkle import MerkleProofError, verify_consistency
from ledger.note import NoteError, NoteVerifier
from ledger.verify import (
    WORKERS_MAX,
    BundleUnreadable,
    Report,
    format_report,
    verify_bundle,
)
from settlement.v1 import audit_pb2, audit_pb2_grpc

EXIT_FINDINGS: Final = 1

PROGRAM: Final = "auditor"
DEFAULT_PARTICIPANT: Final = "auditor"

EXPORT_CALL_TIMEOUT_SECONDS: Final = 3600.0
"""Deadline of one export stream: audit.proto asks for a generous one, and a
million-entry bundle is about a gigabyte."""

EXPORT_POLICY: Final = RetryPolicy(
    attempts_max=3,
    call_timeout_seconds=EXPORT_CALL_TIMEOUT_SECONDS,
    total_seconds_max=3 * EXPORT_CALL_TIMEOUT_SECONDS,
)
"""A broken export starts again from nothing (audit.proto), at most three times."""

EXPORT_CHUNK_SIZE_MAX_BYTES: Final = 1024 * 1024
"""audit.proto: a chunk carries at most 1 MiB."""

EXPORT_FILES_MAX: Final = 1000
"""The bundle format has five files; a stream naming more is not a bundle."""

EXPORT_SIZE_MAX_BYTES: Final = 64 * 1024**3
"""64 GiB: tens of millions of entries. A larger stream is refused, not written."""

PATH_PART: Final = re.compile(r"[A-Za-z0-9._-]{1,255}")
"""audit.proto, ExportBundleResponse.path: each "/"-separated part."""

PATH_PARTS_MAX: Final = 8
SHA256_SIZE_BYTES: Final = 32
STATE_FILE_SIZE_MAX_BYTES: Final = 1024 * 1024
"""A signed checkpoint note is under 1 KiB; ledger.note refuses notes over 1 MiB."""


# --- Findings and the report -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditFinding:
    """One failed check of the online audit, with its evidence.

    Checks: ``checkpoint_signature`` (a checkpoint does not verify with the
    anchored log key), ``checkpoint_fields`` (the response's fields disagree
    with its signed note), ``consistency_proof`` (RFC 9162 section 2.1.4.2),
    ``bundle_transfer`` (the export stream broke the contract of
    audit.proto), ``bundle_checkpoint`` (the bundle is not the log of the
    anchored checkpoint), ``log_key`` (the bundle's trust file does not list
    the anchored key).
    """

    check: str
    index: int | None
    expected: str
    got: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "index": self.index,
            "expected": self.expected,
            "got": self.got,
            "message": self.message,
        }

    def line(self) -> str:
        where = "log" if self.index is None else f"index {self.index}"
        return f"{where}: {self.check}: {self.message} (expected {self.expected}, got {self.got})"


def checkpoint_json(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    return {
        "origin": checkpoint.origin,
        "tree_size": checkpoint.size,
        "root_hash": checkpoint.root_hash.hex(),
    }


@dataclass
class AuditReport:
    """Everything the audit established, and everything it found."""

    server: str = ""
    origin: str = ""
    log_key: str = ""
    latest: Checkpoint | None = None
    target: Checkpoint | None = None
    previous: Checkpoint | None = None
    previous_source: str = ""
    consistency: str = "not checked"
    bundle_directory: str = ""
    bundle_files: int = 0
    bundle_bytes: int = 0
    state_file: str = ""
    state_saved: bool = False
    findings: list[AuditFinding] = field(default_factory=list)
    verification: Report | None = None

    @property
    def ok(self) -> bool:
        verified = self.verification is not None and self.verification.ok
        return verified and not self.findings and self.target is not None

    def add(self, check: str, expected: str, got: str, message: str) -> None:
        self.findings.append(AuditFinding(check, None, expected, got, message))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "server": self.server,
            "origin": self.origin,
            "log_key": self.log_key,
            "latest_checkpoint": checkpoint_json(self.latest),
            "audited_checkpoint": checkpoint_json(self.target),
            "previous_checkpoint": checkpoint_json(self.previous),
            "previous_checkpoint_source": self.previous_source or None,
            "consistency": self.consistency,
            "bundle": {
                "directory": self.bundle_directory,
                "files": self.bundle_files,
                "bytes": self.bundle_bytes,
            },
            "state_file": self.state_file or None,
            "state_saved": self.state_saved,
            "findings": [finding.to_json() for finding in self.findings],
            "verification": None if self.verification is None else self.verification.to_json(),
        }

    def write(self, out: TextIO) -> None:
        out.write("AUDIT OK\n" if self.ok else "AUDIT FAILED\n")
        lines: list[tuple[str, str]] = []
        if self.server:
            lines.append(("server", self.server))
        lines.append(("log", f"{self.origin or '-'} (key {self.log_key or '-'})"))
        if self.latest is not None:
            lines.append(("latest checkpoint", _describe(self.latest)))
        if self.target is not None and self.target != self.latest:
            lines.append(("audited checkpoint", _describe(self.target)))
        if self.previous is not None:
            lines.append(
                ("kept checkpoint", f"{_describe(self.previous)} from {self.previous_source}")
            )
        elif self.previous_source:
            lines.append(("kept checkpoint", f"none in {self.previous_source} (first audit)"))
        lines.append(("consistency", self.consistency))
        if self.bundle_directory:
            lines.append(
                (
                    "bundle",
                    f"{self.bundle_directory} ({self.bundle_files} files, "
                    f"{self.bundle_bytes:,} bytes)",
                )
            )
        if self.state_file:
            saved = (
                f"updated to tree size {self.target.size}"
                if self.state_saved and self.target is not None
                else "NOT updated (the audit did not verify)"
            )
            lines.append(("state", f"{self.state_file} {saved}"))
        width = max(len(name) for name, _ in lines) + 1
        for name, value in lines:
            out.write(f"{name + ':':<{width}} {value}\n")
        if self.findings:
            out.write(f"\nfindings of the audit ({len(self.findings)}):\n")
            for finding in self.findings:
                out.write(f"  {_printable(finding.line())}\n")
        if self.verification is not None:
            out.write("\nbundle verification:\n")
            format_report(self.verification, out)


def _describe(checkpoint: Checkpoint) -> str:
    return f"tree size {checkpoint.size}, root {checkpoint.root_hash.hex()}"


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """Escape control characters: findings quote what the hub sent, which is untrusted."""
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


# --- The trust anchor -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogKeyAnchor:
    """The log's public key as the operator published it; its name may come later."""

    public_key: bytes
    name: str | None
    source: str

    def verifier(self, origin: str) -> NoteVerifier:
        """The note verifier of the key under the log's name (its origin)."""
        return NoteVerifier(self.name or origin, self.public_key)


def load_log_key(path: str | os.PathLike[str], origin: str | None) -> LogKeyAnchor:
    """A log key file: SubjectPublicKeyInfo PEM, the raw 32 bytes, or a note
    verifier key ``<name>+<key id>+<base64>`` (whose name must be ``origin``)."""
    key_path = Path(path)
    content = read_file(key_path, "log public key")
    if content.startswith(b"-----BEGIN"):
        try:
            key = load_pem_public_key(content)
        except (ValueError, UnsupportedAlgorithm):
            raise ClientError(
                f"expected a PEM public key at {key_path}, got one that does not load"
            ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise ClientError(
                f"expected an Ed25519 log key at {key_path}, got {type(key).__name__}"
            )
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return LogKeyAnchor(raw, origin, str(key_path))
    if len(content) == 32:
        return LogKeyAnchor(content, origin, str(key_path))
    try:
        verifier = NoteVerifier.from_vkey(content.decode("ascii").strip())
    except (UnicodeDecodeError, NoteError) as error:
        raise ClientError(
            f"expected a PEM, raw or note verifier log key at {key_path}, got neither ({error})"
        ) from None
    if origin is not None and verifier.name != origin:
        raise ClientError(
            f"expected the log key {key_path} to be named {origin!r} (--origin), "
            f"got {verifier.name!r}"
        )
    return LogKeyAnchor(verifier.public_key, verifier.name, str(key_path))


def _note_text(note: bytes) -> str:
    """The signed text of a note, unverified (to learn the origin a note claims)."""
    split = note.rfind(b"\n\n")
    return note[: split + 1].decode("utf-8", errors="replace") if split >= 0 else ""


def claimed_origin(note: bytes) -> str:
    """The first line of a checkpoint note, before any verification."""
    return _note_text(note).split("\n", 1)[0]


def open_anchored(
    note: bytes, anchor: LogKeyAnchor, origin: str, report: AuditReport, what: str
) -> Checkpoint | None:
    """Verify a checkpoint note with the anchored key; a finding when it does not."""
    verifier = anchor.verifier(origin)
    try:
        return open_checkpoint(note, [verifier], origin)
    except (NoteError, CheckpointError) as error:
        report.add(
            "checkpoint_signature",
            f"{what} signed by the log key {verifier.vkey()}",
            error.message,
            f"{what} does not verify with the log key given out of band",
        )
        return None


def _check_fields(
    message: audit_pb2.Checkpoint, checkpoint: Checkpoint, report: AuditReport, what: str
) -> None:
    claimed = (message.origin, message.tree_size, bytes(message.root_hash))
    signed = (checkpoint.origin, checkpoint.size, checkpoint.root_hash)
    if claimed != signed:
        report.add(
            "checkpoint_fields",
            f"origin {signed[0]!r}, size {signed[1]}, root {signed[2].hex()} (the signed note)",
            f"origin {claimed[0]!r}, size {claimed[1]}, root {claimed[2].hex()}",
            f"the fields of {what} disagree with its signed note",
        )


# --- The kept checkpoint ----------------------------------------------------------------------


def read_state(path: Path) -> bytes | None:
    """The kept checkpoint note, or None when the state file does not exist yet."""
    if not path.exists():
        return None
    return read_file(path, "state file", STATE_FILE_SIZE_MAX_BYTES)


def write_state(path: Path, note: bytes) -> None:
    """Replace the state file atomically: an interrupted audit never leaves half a note."""
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(note)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- Export -----------------------------------------------------------------------------------


class TransferError(Exception):
    """The export stream broke audit.proto's rules; nothing of it is kept."""

    def __init__(self, expected: str, got: str, message: str) -> None:
        super().__init__(f"{message} (expected {expected}, got {got})")
        self.expected = expected
        self.got = got
        self.message = message


def _relative_path(text: str) -> Path:
    parts = text.split("/")
    if len(parts) > PATH_PARTS_MAX or any(
        part in (".", "..") or not PATH_PART.fullmatch(part) for part in parts
    ):
        raise TransferError(
            "a relative path of [A-Za-z0-9._-] parts, none '.' or '..'",
            repr(text[:80]),
            "the hub named a bundle file outside the bundle directory",
        )
    return Path(*parts)


@dataclass
class _OpenFile:
    name: str
    path: Path
    size: int
    sha256: bytes
    written: int
    digest: Any
    handle: Any


class BundleWriter:
    """Writes ExportBundle chunks into a directory, checking every rule of audit.proto."""

    def __init__(self, root: Path, progress: tqdm[Any]) -> None:
        self.root = root
        self.progress = progress
        self.done: set[str] = set()
        self.current: _OpenFile | None = None
        self.total_bytes = 0

    def add(self, chunk: audit_pb2.ExportBundleResponse) -> None:
        data = bytes(chunk.data)
        if len(data) > EXPORT_CHUNK_SIZE_MAX_BYTES:
            raise TransferError(
                f"at most {EXPORT_CHUNK_SIZE_MAX_BYTES} bytes", str(len(data)), "oversized chunk"
            )
        current = self.current
        if current is None or chunk.path != current.name:
            if current is not None:
                raise TransferError(
                    f"the rest of {current.path.name} ({current.size - current.written} bytes)",
                    f"a chunk of {chunk.path!r}",
                    "a file's chunks were interrupted by another file",
                )
            current = self._open(chunk)
        if chunk.offset != current.written:
            raise TransferError(
                str(current.written), str(chunk.offset), f"chunk offset of {chunk.path!r}"
            )
        if chunk.file_size != current.size or bytes(chunk.file_sha256) != current.sha256:
            raise TransferError(
                f"size {current.size} and the same SHA-256 in every chunk",
                f"size {chunk.file_size}",
                f"chunks of {chunk.path!r} disagree",
            )
        if current.written + len(data) > current.size:
            raise TransferError(
                str(current.size), str(current.written + len(data)), f"size of {chunk.path!r}"
            )
        self.total_bytes += len(data)
        if self.total_bytes > EXPORT_SIZE_MAX_BYTES:
            raise TransferError(
                f"at most {EXPORT_SIZE_MAX_BYTES} bytes in all", "more", "the bundle is too large"
            )
        current.handle.write(data)
        current.digest.update(data)
        current.written += len(data)
        self.progress.update(len(data))
        if current.written == current.size:
            self._close(current)

    def _open(self, chunk: audit_pb2.ExportBundleResponse) -> _OpenFile:
        relative = _relative_path(chunk.path)
        if chunk.path in self.done:
            raise TransferError("each file once", f"{chunk.path!r} again", "a file was sent twice")
        if len(self.done) >= EXPORT_FILES_MAX:
            raise TransferError(f"at most {EXPORT_FILES_MAX} files", "more", "too many files")
        if chunk.offset != 0:
            raise TransferError("0", str(chunk.offset), f"first chunk offset of {chunk.path!r}")
        if len(chunk.file_sha256) != SHA256_SIZE_BYTES:
            raise TransferError("32 bytes", f"{len(chunk.file_sha256)} bytes", "file_sha256")
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("xb")
        self.current = _OpenFile(
            chunk.path, path, chunk.file_size, bytes(chunk.file_sha256), 0, hashlib.sha256(), handle
        )
        self.progress.set_postfix_str(chunk.path, refresh=False)
        return self.current

    def _close(self, current: _OpenFile) -> None:
        current.handle.close()
        self.current = None
        name = current.name
        self.done.add(name)
        if current.digest.digest() != current.sha256:
            raise TransferError(
                current.sha256.hex(),
                current.digest.hexdigest(),
                f"the SHA-256 of {name} is not the one its chunks announced",
            )

    def finish(self) -> None:
        if self.current is not None:
            current = self.current
            current.handle.close()
            raise TransferError(
                f"{current.size} bytes of {current.path.name}",
                f"{current.written}",
                "the stream ended inside a file",
            )
        if not self.done:
            raise TransferError("the bundle's files", "none", "the stream carried no file")

    def abort(self) -> None:
        if self.current is not None:
            self.current.handle.close()
            self.current = None


def _prepare_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ClientError(f"expected --out {out} to be new or an empty directory; choose another")


async def export_bundle(
    stub: audit_pb2_grpc.AuditServiceAsyncStub,
    retrying: Retrying,
    out: Path,
    tree_size: int,
    *,
    progress: bool,
) -> BundleWriter:
    """Stream the bundle of ``tree_size`` (0: the latest) into ``out``.

    Each attempt writes a fresh temporary directory beside ``out``, renamed to
    ``out`` only once the stream ended with OK and every file checked; a
    broken stream is discarded and started again (audit.proto).
    """
    _prepare_out(out)
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)

    async def attempt(timeout: float) -> BundleWriter:
        partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
        try:
            with tqdm(
                total=None,
                unit="B",
                unit_scale=True,
                desc="export",
                disable=None if progress else True,
                file=sys.stderr,
                mininterval=0.5,
            ) as bar:
                writer = BundleWriter(partial, bar)
                try:
                    call = stub.ExportBundle(
                        audit_pb2.ExportBundleRequest(tree_size=tree_size), timeout=timeout
                    )
                    async for chunk in call:
                        writer.add(chunk)
                    writer.finish()
                finally:
                    writer.abort()
            if out.exists():
                out.rmdir()
            partial.rename(out)
            writer.root = out
            return writer
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise

    return await retrying.run(attempt, label="export bundle", policy=EXPORT_POLICY)


# --- The audit --------------------------------------------------------------------------------


def _manifest_tree_size(directory: Path) -> int | None:
    """The tree size the manifest states (verified later, with everything else)."""
    try:
        note = (directory / bundle.MANIFEST_FILE).read_bytes()[: bundle.MANIFEST_SIZE_MAX_BYTES]
        return bundle.parse_manifest(_note_text(note)).tree_size
    except (OSError, bundle.BundleFormatError):
        return None


def check_bundle_anchor(
    directory: Path, anchored: Checkpoint, anchor: LogKeyAnchor, report: AuditReport
) -> None:
    """The bundle is the log of the anchored checkpoint, under the anchored key.

    The verifier recomputes every checkpoint root of the bundle from its
    leaves; one of them equal to the anchored root at the anchored size ties
    the leaves to the checkpoint the log key signed.
    """
    roots: list[str] = []
    try:
        for note in bundle.read_framed(directory / bundle.CHECKPOINTS_FILE):
            try:
                checkpoint = parse_checkpoint(_note_text(note))
            except CheckpointError:
                continue
            if checkpoint.size == anchored.size:
                roots.append(checkpoint.root_hash.hex())
    except (OSError, bundle.FramingError):
        pass
    if roots != [anchored.root_hash.hex()]:
        report.add(
            "bundle_checkpoint",
            f"one checkpoint of tree size {anchored.size} with root {anchored.root_hash.hex()}",
            ", ".join(roots) or "none of that size",
            "the bundle is not the log of the checkpoint verified with the log key",
        )
    verifier = anchor.verifier(anchored.origin)
    try:
        trust = bundle.parse_trust(bundle.read_json(directory / bundle.TRUST_FILE))
    except (OSError, bundle.BundleFormatError):
        return  # the verifier reports the trust file itself
    listed = [key.verifier.vkey() for key in trust.log_keys if key.covers(anchored.size)]
    if verifier.vkey() not in listed:
        report.add(
            "log_key",
            verifier.vkey(),
            ", ".join(listed) or "no key for that size",
            f"the trust file does not list the log key given out of band for tree size "
            f"{anchored.size}",
        )


async def _consistency(
    stub: audit_pb2_grpc.AuditServiceAsyncStub,
    retrying: Retrying,
    old: Checkpoint,
    new: Checkpoint,
    report: AuditReport,
) -> str:
    """Verify an RFC 9162 consistency proof from ``old`` to ``new``; a sentence for the report."""
    if old.size > new.size:
        report.add(
            "consistency_proof",
            f"a tree of at least {old.size} entries",
            f"{new.size}",
            "the log is smaller than a checkpoint it signed before",
        )
        return "FAILED: the log shrank"
    if old.size == 0:
        return "trivially (the kept checkpoint is the empty tree)"
    response = await retrying.call(
        stub.GetConsistencyProof,
        audit_pb2.GetConsistencyProofRequest(old_size=old.size, new_size=new.size),
        label=f"consistency proof {old.size} -> {new.size}",
    )
    proof = [bytes(item) for item in response.hashes]
    try:
        verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)
    except MerkleProofError as error:
        report.add(
            "consistency_proof",
            error.expected,
            error.got,
            f"RFC 9162 consistency proof from tree size {old.size} to {new.size}: {error.check}",
        )
        return f"FAILED from tree size {old.size} to {new.size}"
    return (
        f"verified from tree size {old.size} to {new.size} (RFC 9162 proof of {len(proof)} hashes)"
    )


async def run_audit(options: argparse.Namespace, retrying: Retrying) -> tuple[int, AuditReport]:
    identity = identity_from_arguments(options, signing=False)
    key_path = options.log_key or identity.log_public_key_path
    if key_path is None:
        raise ClientError("expected --log-key FILE (the log's public key, given out of band)")
    anchor = load_log_key(key_path, options.origin)
    out = Path(options.out)
    state = Path(options.state)
    report = AuditReport(server=options.server, bundle_directory=str(out), state_file=str(state))
    kept_note = read_state(state)
    report.previous_source = str(state)
    _prepare_out(out)

    connection = ConnectionOptions(options.server, options.tls_server_name)
    async with open_channel(identity, connection) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        latest_message = (
            await retrying.call(
                stub.GetLatestCheckpoint,
                audit_pb2.GetLatestCheckpointRequest(),
                label="latest checkpoint",
            )
        ).checkpoint
        latest_note = bytes(latest_message.signed_note)
        origin = anchor.name or claimed_origin(latest_note)
        report.origin = origin
        report.log_key = anchor.verifier(origin or "log").vkey()
        latest = open_anchored(latest_note, anchor, origin, report, "the latest checkpoint")
        report.latest = latest
        if latest is not None:
            _check_fields(latest_message, latest, report, "the latest checkpoint")
        if kept_note is not None:
            report.previous = open_anchored(
                kept_note, anchor, origin, report, "the kept checkpoint"
            )
        if latest is not None and report.previous is not None:
            report.consistency = await _consistency(stub, retrying, report.previous, latest, report)
        elif kept_note is None:
            report.consistency = "nothing to check (first audit: no kept checkpoint)"
        try:
            writer = await export_bundle(
                stub,
                retrying,
                out,
                latest.size if latest is not None else 0,
                progress=not options.no_progress,
            )
        except grpc.RpcError as error:
            if error_report(error).code != "checkpoint_must_exist" or latest is None:
                raise
            # The log signed a newer checkpoint since: export that one and
            # anchor it below (the hub exports at its latest checkpoint only).
            writer = await export_bundle(stub, retrying, out, 0, progress=not options.no_progress)
        except TransferError as error:
            report.add("bundle_transfer", error.expected, error.got, error.message)
            return EXIT_FINDINGS, report
        report.bundle_files = len(writer.done)
        report.bundle_bytes = writer.total_bytes
        bundle_size = _manifest_tree_size(out)
        target, target_note = latest, latest_note
        if latest is not None and bundle_size is not None and bundle_size != latest.size:
            message = (
                await retrying.call(
                    stub.GetCheckpoint,
                    audit_pb2.GetCheckpointRequest(tree_size=bundle_size),
                    label=f"checkpoint of size {bundle_size}",
                )
            ).checkpoint
            target = open_anchored(
                bytes(message.signed_note), anchor, origin, report, "the exported checkpoint"
            )
            if target is not None:
                _check_fields(message, target, report, "the exported checkpoint")
                sentence = await _consistency(stub, retrying, latest, target, report)
                report.consistency += f"; then {sentence}"
                target_note = bytes(message.signed_note)
        report.target = target

    report.verification = verify_bundle(
        out,
        previous_checkpoint=kept_note,
        workers=options.workers,
        progress=not options.no_progress,
    )
    if target is not None:
        check_bundle_anchor(out, target, anchor, report)
    if report.ok:
        write_state(state, target_note)
        report.state_saved = True
        return EXIT_OK, report
    return EXIT_FINDINGS, report


# --- Offline verification ---------------------------------------------------------------------


def run_verify(options: argparse.Namespace) -> tuple[int, AuditReport]:
    directory = Path(options.directory)
    previous: bytes | None = None
    report = AuditReport(bundle_directory=str(directory))
    if options.previous_checkpoint:
        previous = read_file(
            Path(options.previous_checkpoint), "previous checkpoint", STATE_FILE_SIZE_MAX_BYTES
        )
        report.previous_source = options.previous_checkpoint
        try:
            report.previous = parse_checkpoint(_note_text(previous))
        except CheckpointError:
            report.previous = None
        report.consistency = "checked against the bundle's leaves by the verifier"
    try:
        verification = verify_bundle(
            directory,
            previous_checkpoint=previous,
            workers=options.workers,
            progress=not options.no_progress,
        )
    except BundleUnreadable as error:
        raise ClientError(error.message) from None
    report.verification = verification
    report.bundle_files = sum(1 for path in directory.rglob("*") if path.is_file())
    report.bundle_bytes = sum(
        path.stat().st_size for path in directory.rglob("*") if path.is_file()
    )
    last = _last_checkpoint(directory)
    if last is not None:
        note, checkpoint = last
        report.origin = checkpoint.origin
        if options.log_key:
            anchor = load_log_key(options.log_key, options.origin)
            report.log_key = anchor.verifier(checkpoint.origin).vkey()
            report.target = open_anchored(
                note, anchor, checkpoint.origin, report, "the bundle's last checkpoint"
            )
            if report.target is not None:
                check_bundle_anchor(directory, report.target, anchor, report)
        else:
            report.target = checkpoint
            report.log_key = "from the bundle's trust file only (give --log-key to anchor it)"
    return (EXIT_OK if report.ok else EXIT_FINDINGS), report


def _last_checkpoint(directory: Path) -> tuple[bytes, Checkpoint] | None:
    last: tuple[bytes, Checkpoint] | None = None
    try:
        for note in bundle.read_framed(directory / bundle.CHECKPOINTS_FILE):
            try:
                checkpoint = parse_checkpoint(_note_text(note))
            except CheckpointError:
                continue
            if last is None or checkpoint.size >= last[1].size:
                last = (note, checkpoint)
    except (OSError, bundle.FramingError):
        return last
    return last


# --- Command line -----------------------------------------------------------------------------


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= WORKERS_MAX:
        raise argparse.ArgumentTypeError(f"expected 1..{WORKERS_MAX}, got {value}")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-key",
        metavar="FILE",
        help="the log's Ed25519 public key as published out of band: PEM, raw 32 bytes or a "
        "note verifier key (audit default with --pki: DIR/log.public.pem)",
    )
    parser.add_argument(
        "--origin",
        metavar="ORIGIN",
        help="the log's origin (its key name); default: the one the checkpoint names",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="processes verifying signatures (default: the number of CPUs)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Reference auditor of the settlement hub: anchor the signed log with its "
        "public key, check it only grew since the last audit, export and verify it. "
        "Exit status: 0 verified, 1 findings, 2 usage error or no connection.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    audit = commands.add_parser(
        "audit",
        help="fetch, anchor, export and verify the log; keep its checkpoint",
        description="Fetch the latest checkpoint and verify it with the log key; verify its "
        "consistency with the checkpoint kept in --state; export the bundle into --out and "
        "verify it offline; keep the new checkpoint in --state only when all verified.",
    )
    audit.add_argument("--out", required=True, metavar="DIR", help="new directory for the bundle")
    audit.add_argument(
        "--state",
        required=True,
        metavar="FILE",
        help="the checkpoint kept from the last audit (created by the first one)",
    )
    _add_common(audit)
    add_connection_arguments(audit, DEFAULT_PARTICIPANT)
    verify = commands.add_parser(
        "verify",
        help="verify an exported bundle offline",
        description="Verify a bundle directory offline: every leaf, signature, checkpoint and "
        "closing balance; with --previous-checkpoint, consistency with a kept checkpoint; with "
        "--log-key, that the bundle's log is signed by the key given out of band.",
    )
    verify.add_argument("directory", metavar="BUNDLE_DIR", help="the bundle directory")
    verify.add_argument(
        "--previous-checkpoint", metavar="FILE", help="a checkpoint kept from an earlier audit"
    )
    _add_common(verify)
    return parser


async def main_async(argv: Sequence[str] | None = None, *, retrying: Retrying | None = None) -> int:
    """:func:`main` on the caller's event loop (a program that already runs one)."""
    parser = build_parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as exit_request:
        return EXIT_OK if exit_request.code in (0, None) else EXIT_USAGE
    try:
        if options.command == "audit":
            status, report = await run_audit(options, retrying or Retrying(on_retry=print_retry))
        else:
            status, report = run_verify(options)
    except RetriesExhausted as error:
        sys.stderr.write(
            f"{PROGRAM}: {error.label}: no answer after {error.attempts} attempt(s) "
            f"({error_report(error.error).line()})\n"
        )
        return EXIT_USAGE
    except grpc.RpcError as error:
        sys.stderr.write(f"{PROGRAM}: the hub refused: {error_report(error).line()}\n")
        return EXIT_USAGE
    except (ClientError, OSError) as error:
        sys.stderr.write(f"{PROGRAM}: {error}\n")
        return EXIT_USAGE
    if options.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        report.write(sys.stdout)
    return status


def main(argv: Sequence[str] | None = None, *, retrying: Retrying | None = None) -> int:
    """The command line: 0 verified, 1 findings, 2 usage error or no connection."""
    return asyncio.run(main_async(argv, retrying=retrying))


if __name__ == "__main__":
    sys.exit(main())
