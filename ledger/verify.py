"""The offline verifier of an export bundle (``settlement audit verify BUNDLE``).

An auditor runs this on a bundle directory (format: :mod:`ledger.bundle`)
with no database and no network. It recomputes everything the log claims and
reports every finding, not only the first, each with its evidence ("expected
X, got Y") and a stable check name (:data:`CHECKS`, in order of precedence):

1. Manifest (``manifest_*``, ``bundle_files``): the manifest note is signed
   (c2sp.org/signed-note) by a log key of the trust file whose range covers
   the bundle's tree size; every other file's SHA-256 equals the manifest's;
   no file is missing or extra.
2. Checkpoints (``checkpoint_*``): every note in ``checkpoints.bin`` is
   signed by a log key valid for its tree size (signatures by unknown keys
   are ignored, as signed-note requires), is a c2sp.org/tlog-checkpoint of
   the trust file's origin, sizes strictly increase, and each root equals
   the RFC 9162 section 2.1.1 Merkle Tree Hash recomputed from the leaves.
3. ``previous_checkpoint``: a checkpoint the auditor kept from an earlier
   audit verifies with the trust file's log keys and its root equals the
   root recomputed at its size.
4. Leaves (``leaf_*``, ``framing``): index equals position; RFC 8785 bytes;
   known schema version and kind; field types; amounts are decimal strings.
5. Participant signatures (``participant_key``, ``participant_signature``):
   Ed25519 (RFC 8032 section 5.1.7) over ``INSTRUCTION_CONTEXT || payload``
   with the signer's key valid at that index; and ``instruction_binding``:
   a payload of a known instruction type says what the leaf did.
6. ``entry_balanced``, ``amount_range``: per currency, debits equal credits
   in every entry's postings and releases; amounts positive, within int64.
7. ``duplicate_instruction``, ``duplicate_entry_id``, ``duplicate_account_id``.
8. Replay (``account_reference``, ``entry_reference``, ``balance_negative``,
   ``closing_balance``, ``balances_total``, ``signing_key``, ``trust_keys``):
   replaying every leaf gives exactly the closing balances of
   ``balances.json``, whose totals sum to zero per currency, and the
   participant keys the leaves registered are exactly those of the trust file.

Consistency of checkpoints. RFC 9162 section 2.1.4 proves that a tree of
size n extends one of size m < n with a consistency proof. With all the
leaves at hand the verifier does better than a proof: it streams the leaves
through one :class:`~ledger.merkle.CompactRange` and compares each
checkpoint's root with the root of the same prefix, so every checkpoint whose
``checkpoint_root`` holds is a root of a prefix of the same leaf sequence;
any two such checkpoints are consistent by construction, and a checkpoint
that fails ``checkpoint_root`` is by that fact inconsistent with the others.
Two signed checkpoints of one size with different roots (a fork) are
reported as ``checkpoint_consistency`` with both roots as evidence.

Work. Leaves are read in chunks of :data:`LEAF_CHUNK_SIZE`. What a leaf
says on its own (check 4, the binding of check 5, the balance of check 6,
its hash and digests) is checked in worker processes, a chunk per task; the
main process merges the chunks in index order: leaf hashes into the Merkle
tree and checkpoints, each leaf's findings, then the checks that need the
leaves before it (signatures, duplicates, replay). Findings, their order and
the report are the same with any number of workers and any chunk size.

Memory. Leaves are streamed once, at most a few chunks ahead of the merge;
the Merkle state is O(log n) hashes. What grows is what the checks must
remember: the accounts (the balances table), open pending transactions, and
the ids already used (check 7 and the reversal reference), kept as 128-bit
digests: a few hundred bytes per entry (83 MiB peak for 100,000 entries each
with its own instruction). Distinct signatures are verified once each
through a bounded cache.

Imports: the standard library, ``cryptography``, ``tqdm`` and the ledger
modules that import only those (``bundle`` and the ``canonical`` codec it
uses, ``checkpoint``, ``errors``, ``merkle``, ``note``, ``signing``); not the
store, SQLAlchemy or gRPC.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import concurrent.futures
import functools
import hashlib
import json
import multiprocessing
import os
import re
import sys
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, TextIO, TypeVar

from tqdm import tqdm

from ledger import bundle
from ledger.bundle import (
    INT64_MAX,
    BundleFormatError,
    FramingError,
    LogKey,
    ParticipantKey,
    Trust,
)
from ledger.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from ledger.errors import LedgerError
from ledger.merkle import CompactRange, leaf_hash
from ledger.note import KEY_ID_SIZE_BYTES, SIGNATURE_LINE_PREFIX, NoteError, open_note
from ledger.signing import INSTRUCTION_SIZE_MAX_BYTES, SignedInstruction, verify_instructions

__all__ = [
    "CHECKS",
    "BundleUnreadable",
    "Finding",
    "Report",
    "format_report",
    "main",
    "verify_bundle",
]

CHECKS: tuple[str, ...] = (
    "bundle_files",
    "manifest_signature",
    "manifest_key",
    "manifest_format",
    "manifest_hash",
    "trust_file",
    "balances_file",
    "tree_size",
    "checkpoint_signature",
    "checkpoint_key",
    "checkpoint_format",
    "checkpoint_origin",
    "checkpoint_order",
    "checkpoint_consistency",
    "checkpoint_root",
    "checkpoint_size",
    "previous_checkpoint",
    "framing",
    "leaf_index",
    "leaf_canonical",
    "leaf_schema",
    "amount_range",
    "participant_key",
    "participant_signature",
    "entry_balanced",
    "instruction_binding",
    "duplicate_instruction",
    "duplicate_entry_id",
    "duplicate_account_id",
    "account_reference",
    "entry_reference",
    "balance_negative",
    "signing_key",
    "trust_keys",
    "closing_balance",
    "balances_total",
)
"""Every check name, in order of precedence. Names are part of the contract:
never renamed, only added."""

_PRECEDENCE = {name: position for position, name in enumerate(CHECKS)}

FINDINGS_PER_CHECK_MAX = 10_000
"""Findings kept per check; the rest are counted (``Report.finding_counts``).
One deleted leaf early in a long log makes every later index wrong: the count
says how many, the first ten thousand say where, and memory stays bounded."""

PROGRESS_THRESHOLD_LEAVES = 10_000
"""Bundles larger than this show a progress bar (when asked for)."""

SIGNATURE_CHUNK_SIZE = 256
"""Signatures per task sent to a worker process: large enough to amortize the
pickling and scheduling (an Ed25519 verification costs 50 to 250 µs, so a
chunk is 15 to 60 ms of work), small enough to keep every core busy to the end."""

SIGNATURE_CHUNKS_IN_FLIGHT_PER_WORKER = 4
"""Chunks queued per worker before the reader waits: bounds memory, keeps workers fed."""

LEAF_CHUNK_SIZE = 2048
"""Leaves per task sent to a worker process: about 1.4 MiB of leaves and 70 ms of
work (35 µs a leaf), large enough to amortize pickling and scheduling, small
enough that the chunks in flight stay a few MiB."""

LEAF_CHUNKS_IN_FLIGHT_PER_WORKER = 2
"""Chunks read ahead of the merge per worker: keeps every worker busy while the
main process merges, and bounds memory whatever the bundle's size."""

INSTRUCTION_CACHE_SIZE = 64
"""Instructions whose decoded bytes, JSON payload and digests are remembered:
a batch's leaves are adjacent and share one, so a few recent ones are enough."""

INSTRUCTION_CACHED_TEXT_MAX_CHARS = 16_384
"""Larger instructions (base64 payload and signature) are read uncached, so the
cache holds at most INSTRUCTION_CACHE_SIZE times this much."""

TIME_CACHE_SIZE = 256
"""Commit times whose checks are remembered: a batch is one commit."""

SIGNATURE_CACHE_SIZE = 65_536
"""Distinct (key, payload, signature) results remembered. One signature may cover
every item of a batch (``ledger.batch``): its leaves are adjacent, so a bounded
cache of recent results verifies it once without growing with the log."""

WORKERS_MAX = 256
"""Upper bound for ``--workers``."""

POSTINGS_MAX = 128
"""``ledger.validation.MAX_POSTINGS``: postings (or releases) in one entry."""

CODE_LENGTH_MAX = 32
REFERENCE_LENGTH_MAX = 140
"""``ledger.validation``: limits of an entry's code and reference."""

LEAF_SCHEMA_VERSION = 1
"""``ledger.leaf.LEAF_SCHEMA_VERSION``: the only leaf schema this verifier reads."""

EXIT_VERIFIED = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


class BundleUnreadable(LedgerError):
    """The bundle directory (or the previous checkpoint file) cannot be read at all."""

    code = "bundle_unreadable"
    kind = "invalid"


@dataclass(frozen=True)
class Finding:
    """One failed check, with its evidence.

    ``check`` is a name from :data:`CHECKS`; ``index`` the leaf index it
    concerns, or None for a finding about a file, a checkpoint or the bundle
    as a whole; ``expected`` and ``got`` the two sides compared.
    """

    check: str
    index: int | None
    expected: str
    got: str
    message: str

    def sort_key(self) -> tuple[int, int]:
        """Bundle-level findings first, then by leaf index, then by precedence."""
        return (-1 if self.index is None else self.index, _PRECEDENCE[self.check])

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "index": self.index,
            "expected": self.expected,
            "got": self.got,
            "message": self.message,
        }


@dataclass
class Report:
    """What :func:`verify_bundle` found. ``ok`` when there is no finding at all.

    ``findings`` holds up to :data:`FINDINGS_PER_CHECK_MAX` findings per check,
    sorted (:meth:`Finding.sort_key`); ``finding_counts`` counts all of them.
    """

    tree_size: int = 0
    entries_checked: int = 0
    checkpoints_checked: int = 0
    signatures_checked: int = 0
    signatures_verified: int = 0
    unsigned_entries: int = 0
    accounts_checked: int = 0
    unknown_signatures_ignored: int = 0
    findings: list[Finding] = field(default_factory=list)
    finding_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.finding_counts

    @property
    def findings_omitted(self) -> int:
        """Findings counted but not kept (over :data:`FINDINGS_PER_CHECK_MAX` per check)."""
        return sum(self.finding_counts.values()) - len(self.findings)

    def first_failure(self) -> Finding | None:
        """The failing leaf with the lowest index and its first check in precedence;
        a bundle-level finding when no leaf failed; None when verified."""
        by_leaf = [finding for finding in self.findings if finding.index is not None]
        candidates = by_leaf or self.findings
        if not candidates:
            return None
        return min(candidates, key=Finding.sort_key)

    def to_json(self) -> dict[str, Any]:
        first = self.first_failure()
        return {
            "ok": self.ok,
            "tree_size": self.tree_size,
            "entries_checked": self.entries_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "signatures_checked": self.signatures_checked,
            "signatures_verified": self.signatures_verified,
            "unsigned_entries": self.unsigned_entries,
            "accounts_checked": self.accounts_checked,
            "unknown_signatures_ignored": self.unknown_signatures_ignored,
            "first_failure": None if first is None else first.to_json(),
            "finding_counts": dict(sorted(self.finding_counts.items())),
            "findings_omitted": self.findings_omitted,
            "findings": [finding.to_json() for finding in self.findings],
        }


class _Findings:
    """Collects findings, keeping at most FINDINGS_PER_CHECK_MAX per check."""

    def __init__(self) -> None:
        self.kept: list[Finding] = []
        self.counts: dict[str, int] = {}

    def add(self, check: str, index: int | None, expected: str, got: str, message: str) -> None:
        if check not in _PRECEDENCE:
            raise LedgerError(f"internal: unknown check name {check!r}")
        count = self.counts.get(check, 0) + 1
        self.counts[check] = count
        if count <= FINDINGS_PER_CHECK_MAX:
            self.kept.append(Finding(check, index, expected, got, message))


def _quote(value: object) -> str:
    return bundle.excerpt(value)


# --- Signed notes against the trust file's log keys ---------------------------------


@dataclass(frozen=True)
class _OpenedNote:
    """A note checked against the log keys: its text and the keys that verified it."""

    text: str
    keys: tuple[LogKey, ...]


def _signature_key_ids(note: bytes) -> list[tuple[str, bytes]]:
    """(key name, key ID) of each well-formed signature line (c2sp.org/signed-note).

    Only to know which trusted keys signed; ``open_note`` does the real parsing
    and refuses malformed notes.
    """
    split = note.rfind(b"\n\n")
    if split < 0:
        return []
    identities: list[tuple[str, bytes]] = []
    prefix = SIGNATURE_LINE_PREFIX.encode("utf-8")
    for line in note[split + 2 :].split(b"\n"):
        if not line.startswith(prefix):
            continue
        name, _, encoded = line[len(prefix) :].partition(b" ")
        try:
            decoded = base64.b64decode(encoded, validate=True)
            identities.append((name.decode("utf-8"), decoded[:KEY_ID_SIZE_BYTES]))
        except (binascii.Error, UnicodeDecodeError):
            continue
    return identities


def _open_with_log_keys(note: bytes, log_keys: Sequence[LogKey]) -> tuple[_OpenedNote, int]:
    """Verify a note against each trusted log key that signed it.

    Returns the text, the keys whose signatures verified (at least one), and
    how many signature lines were by unknown keys (ignored, per signed-note).
    Raises ``NoteError`` when no trusted key signed it, when the note is
    malformed, or when a trusted key's signature does not verify (signed-note:
    a signature by a known key must verify).
    """
    identities = _signature_key_ids(note)
    trusted = {(key.verifier.name, key.verifier.key_id) for key in log_keys}
    unknown = len({identity for identity in identities if identity not in trusted})
    present = [
        key for key in log_keys if (key.verifier.name, key.verifier.key_id) in set(identities)
    ]
    if not present:
        # Let open_note say what is wrong (malformed, or no trusted signature).
        open_note(note, [key.verifier for key in log_keys])
        # open_note accepts only canonical base64, which the scan above reads too.
        raise NoteError("internal: a trusted signature the key ID scan did not see")
    text = ""
    verified: list[LogKey] = []
    for key in present:
        opened = open_note(note, [key.verifier])
        text = opened.text
        verified.append(key)
    return _OpenedNote(text=text, keys=tuple(verified)), unknown


def _key_label(key: LogKey) -> str:
    last = "" if key.last_tree_size is None else str(key.last_tree_size)
    return (
        f"log key {key.verifier.name}+{key.verifier.key_id.hex()} "
        f"(tree sizes {key.first_tree_size}..{last})"
    )


# --- Leaves ---------------------------------------------------------------------------------


class _Invalid(Exception):
    """A leaf field breaks the schema: raised by the readers, turned into a finding."""

    def __init__(self, check: str, expected: str, got: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.expected = expected
        self.got = got
        self.message = message


_COMMON_FIELDS = frozenset(("schema", "index", "kind", "committed_at", "instruction"))
_KIND_FIELDS: Mapping[str, frozenset[str]] = {
    "account": frozenset(("account",)),
    "transaction": frozenset(
        ("id", "code", "reference", "metadata", "pending", "timeout_at", "postings")
    ),
    "post_pending": frozenset(
        ("id", "pending_id", "code", "reference", "metadata", "postings", "releases")
    ),
    "void_pending": frozenset(("id", "pending_id", "code", "reference", "metadata", "releases")),
    "expire_pending": frozenset(("pending_id", "releases")),
    "reversal": frozenset(("id", "reverses_id", "code", "reference", "metadata", "postings")),
    "account_status": frozenset(("account_id", "status")),
    "debit_limit": frozenset(("account_id", "debit_limit")),
    "signing_key": frozenset(("signer", "public_key", "first_index")),
    "event": frozenset(("id", "event_type", "body")),
}
"""Each leaf kind's own fields (``ledger.batch``: the ``body`` given to ``_emit``)."""

_LEAF_FIELDS: Mapping[str, frozenset[str]] = {
    kind: _COMMON_FIELDS | fields for kind, fields in _KIND_FIELDS.items()
}
"""Every field of a leaf of each kind."""

_MONEY_KINDS = frozenset(("transaction", "post_pending", "void_pending", "reversal"))
"""Kinds whose ids share one namespace (``ledger.batch.entry_key``: "transaction/")."""

_IDENTIFIED_KINDS = _MONEY_KINDS | {"event"}
"""Kinds with an ``id`` of their own."""

_KIND_NAMES: Mapping[str, str] = {kind: kind for kind in _KIND_FIELDS}
"""One string object per kind: a chunk's results then pickle each kind once."""

_ACCOUNT_FIELDS = frozenset(
    ("id", "owner", "currency", "normal_side", "flags", "debit_limit", "metadata")
)
_POSTING_FIELDS = frozenset(("account", "currency", "side", "amount"))
_INSTRUCTION_FIELDS = frozenset(("signer", "payload", "signature"))
_FLAGS = frozenset(("debits_must_not_exceed_credits", "credits_must_not_exceed_debits"))
_STATUSES = frozenset(("open", "frozen", "closed"))
_SIDES = frozenset(("debit", "credit"))
_DECIMAL = re.compile("0|[1-9][0-9]*")
_CURRENCY = re.compile("[A-Z]{3}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
"""``ledger.leaf.format_time``: RFC 3339 UTC with exactly six fractional digits."""
_TIME_LENGTH = len("2026-11-28T16:00:00.000000Z")
_TIME_FORMAT = "RFC 3339 UTC time 'YYYY-MM-DDTHH:MM:SS.ffffffZ'"
_INT64_DIGITS = len(str(INT64_MAX))

Posting = tuple[str, str, bool, int]
"""(account, currency, is_debit, amount) of one validated posting."""


def _schema(what: str, expected: str, value: object) -> _Invalid:
    return _Invalid("leaf_schema", expected, _quote(value), f"{what}: expected {expected}")


def _read_id(document: Mapping[str, Any], name: str) -> str:
    value = document[name]
    if not bundle.is_id(value):
        raise _schema(name, f"1..{bundle.ID_LENGTH_MAX} printable ASCII characters", value)
    return value


def _read_text(document: Mapping[str, Any], name: str, length_max: int) -> str:
    value = document[name]
    if not isinstance(value, str) or len(value) > length_max:
        raise _schema(name, f"a string of at most {length_max} characters", value)
    return value


def _read_object(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = document[name]
    if not isinstance(value, dict):
        raise _schema(name, "a JSON object", value)
    return value


def _read_time(value: object, what: str) -> str:
    # Only a string of the format's length can match it, and only those are cached.
    if not isinstance(value, str) or len(value) != _TIME_LENGTH:
        raise _schema(what, _TIME_FORMAT, value)
    problem = _time_problem(value)
    if problem is not None:
        raise _schema(what, problem, value)
    return value


@functools.lru_cache(maxsize=TIME_CACHE_SIZE)
def _time_problem(value: str) -> str | None:
    """What a time of ``_TIME_LENGTH`` characters should be, or None when it is one."""
    if not _TIME.fullmatch(value):
        return _TIME_FORMAT
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return "a valid calendar time"
    return None


def _read_decimal(value: object, what: str, maximum: int) -> int:
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise _schema(what, "a decimal string without sign or leading zeros", value)
    if len(value) > len(str(maximum)) or int(value) > maximum:
        raise _Invalid(
            "amount_range", f"at most {maximum}", value, f"{what}: expected at most {maximum}"
        )
    return int(value)


def _check_fields(document: Mapping[str, Any], expected: frozenset[str], what: str) -> None:
    if document.keys() != expected:
        missing = sorted(expected - document.keys())
        extra = sorted(document.keys() - expected)
        raise _Invalid(
            "leaf_schema",
            f"fields {sorted(expected)}",
            f"missing {missing}, unknown {[_quote(name) for name in extra]}",
            f"{what}: expected exactly its schema's fields",
        )


def _is_one_of(value: object, names: frozenset[str]) -> bool:
    # A list or an object is no name, and must not reach the set (unhashable).
    return isinstance(value, str) and value in names


def _read_postings(document: Mapping[str, Any], name: str) -> tuple[Posting, ...]:
    """Postings of an entry: account, currency, side and a decimal amount string.

    The amount's format is ``leaf_schema``; its range (positive, int64) is
    ``amount_range``, reported by the caller so the entry's other checks run.
    """
    items = document[name]
    if not isinstance(items, list) or len(items) > POSTINGS_MAX:
        raise _schema(name, f"a list of at most {POSTINGS_MAX} postings", items)
    postings: list[Posting] = []
    for position, item in enumerate(items):
        if not isinstance(item, dict) or item.keys() != _POSTING_FIELDS:
            what = f"{name}[{position}]"
            if not isinstance(item, dict):
                raise _schema(what, "a JSON object", item)
            _check_fields(item, _POSTING_FIELDS, what)
        account = item["account"]
        currency = item["currency"]
        side = item["side"]
        amount = item["amount"]
        if not bundle.is_id(account):
            raise _schema(
                "account", f"1..{bundle.ID_LENGTH_MAX} printable ASCII characters", account
            )
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            raise _schema(f"{name}[{position}].currency", "an ISO 4217 code", currency)
        if not _is_one_of(side, _SIDES):
            raise _schema(f"{name}[{position}].side", "'debit' or 'credit'", side)
        if not isinstance(amount, str) or not _DECIMAL.fullmatch(amount):
            raise _schema(
                f"{name}[{position}].amount",
                "a decimal string without sign or leading zeros",
                amount,
            )
        if len(amount) > _INT64_DIGITS:
            raise _Invalid(
                "amount_range",
                f"1..{INT64_MAX}",
                _quote(amount),
                f"{name}[{position}].amount: expected a positive amount within int64",
            )
        # Accounts and currencies recur: one object each pickles once per chunk.
        postings.append((sys.intern(account), sys.intern(currency), side == "debit", int(amount)))
    return tuple(postings)


class _Instruction(NamedTuple):
    """A leaf's ``instruction``: the signer and the exact bytes it signed."""

    signer: str
    payload: bytes
    signature: bytes


class _InstructionId(NamedTuple):
    """The id a signed instruction gives itself, and what identifies the signing."""

    instruction_id: str
    identity: int
    """``_digest(signer, instruction_id)``: the key of ``duplicate_instruction``."""
    signed: int
    """64-bit digest of signature and payload: one signature may cover a whole batch."""


class _Signed(NamedTuple):
    """An instruction read from its leaf, with what its checks need of the payload.

    Cached (:func:`_read_signed`): a batch's leaves share one instruction, so
    its base64, its JSON payload and its digests are worked out once.
    """

    instruction: _Instruction
    payload: dict[str, Any] | None
    """The payload as a JSON object, or None (opaque payloads are allowed)."""
    instruction_id: _InstructionId | None
    """When the payload is a JSON object with a string ``instruction_id``."""


@dataclass(slots=True)
class _Entry:
    """The validated fields of one leaf that the checks after the schema use."""

    kind: str
    index: int
    committed_at: str
    document: dict[str, Any]
    signed: _Signed | None = None
    entry_id: str | None = None
    postings: tuple[Posting, ...] = ()
    releases: tuple[Posting, ...] = ()
    pending: bool = False
    public_key: bytes | None = None


def _read_instruction(value: object) -> _Signed | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _schema("instruction", "null or a JSON object", value)
    if value.keys() != _INSTRUCTION_FIELDS:
        _check_fields(value, _INSTRUCTION_FIELDS, "instruction")
    signer = _read_id(value, "signer")
    payload_text = value["payload"]
    signature_text = value["signature"]
    if (
        isinstance(payload_text, str)
        and isinstance(signature_text, str)
        and len(payload_text) + len(signature_text) <= INSTRUCTION_CACHED_TEXT_MAX_CHARS
    ):
        return _read_signed(signer, payload_text, signature_text)
    return _read_signed.__wrapped__(signer, payload_text, signature_text)


@functools.lru_cache(maxsize=INSTRUCTION_CACHE_SIZE)
def _read_signed(signer: str, payload_text: object, signature_text: object) -> _Signed:
    try:
        payload = bundle.decode_base64(payload_text, "instruction.payload")
        signature = bundle.decode_base64(signature_text, "instruction.signature")
    except BundleFormatError as error:
        raise _Invalid("leaf_schema", "canonical base64", "other text", error.message) from None
    if len(payload) > INSTRUCTION_SIZE_MAX_BYTES:
        raise _schema(
            "instruction.payload", f"at most {INSTRUCTION_SIZE_MAX_BYTES} bytes", len(payload)
        )
    document = _payload_object(payload)
    instruction_id: _InstructionId | None = None
    if document is not None:
        named = document.get("instruction_id")
        if isinstance(named, str):
            instruction_id = _InstructionId(
                named, _digest(signer, named), _digest(signature.hex(), payload.hex(), size=8)
            )
    return _Signed(_Instruction(signer, payload, signature), document, instruction_id)


def _read_entry(document: object) -> _Entry:
    """Check a decoded leaf against its kind's schema; raise ``_Invalid`` at the first problem."""
    if not isinstance(document, dict):
        raise _schema("leaf", "a JSON object", type(document).__name__)
    schema = document.get("schema")
    if schema != LEAF_SCHEMA_VERSION or type(schema) is not int:
        raise _schema("schema", f"schema version {LEAF_SCHEMA_VERSION}", schema)
    kind = document.get("kind")
    if not isinstance(kind, str) or kind not in _KIND_FIELDS:
        raise _schema("kind", f"one of {sorted(_KIND_FIELDS)}", kind)
    kind = _KIND_NAMES[kind]
    if document.keys() != _LEAF_FIELDS[kind]:
        _check_fields(document, _LEAF_FIELDS[kind], f"{kind} leaf")
    index = document["index"]
    if type(index) is not int or index < 0:
        raise _schema("index", "a non-negative integer", index)
    committed_at = _read_time(document["committed_at"], "committed_at")
    signed = _read_instruction(document["instruction"])
    entry_id = _read_id(document, "id") if kind in _IDENTIFIED_KINDS else None
    if "code" in document:
        _read_text(document, "code", CODE_LENGTH_MAX)
        _read_text(document, "reference", REFERENCE_LENGTH_MAX)
        _read_object(document, "metadata")
    if "pending_id" in document:
        _read_id(document, "pending_id")
    postings = _read_postings(document, "postings") if "postings" in document else ()
    releases = _read_postings(document, "releases") if "releases" in document else ()
    pending = False
    public_key: bytes | None = None
    if kind == "transaction":
        pending = document["pending"]
        if not isinstance(pending, bool):
            raise _schema("pending", "true or false", pending)
        timeout_at = document["timeout_at"]
        if pending:
            _read_time(timeout_at, "timeout_at")
        elif timeout_at is not None:
            raise _schema("timeout_at", "null for a transaction that is not pending", timeout_at)
    elif kind == "reversal":
        _read_id(document, "reverses_id")
    elif kind == "account":
        _read_account(document["account"])
    elif kind in ("account_status", "debit_limit"):
        _read_id(document, "account_id")
        if kind == "account_status" and not _is_one_of(document["status"], _STATUSES):
            raise _schema("status", f"one of {sorted(_STATUSES)}", document["status"])
        if kind == "debit_limit" and document["debit_limit"] is not None:
            _read_decimal(document["debit_limit"], "debit_limit", INT64_MAX)
    elif kind == "signing_key":
        _read_id(document, "signer")
        try:
            public_key = bundle.decode_base64(document["public_key"], "public_key")
        except BundleFormatError as error:
            raise _Invalid("leaf_schema", "canonical base64", "other text", error.message) from None
        if len(public_key) != bundle.ED25519_PUBLIC_KEY_SIZE_BYTES:
            raise _schema("public_key", "a 32-byte Ed25519 public key", len(public_key))
        _read_decimal(document["first_index"], "first_index", bundle.UINT64_MAX)
    elif kind == "event":
        _read_id(document, "event_type")
        _read_object(document, "body")
    return _Entry(
        kind,
        index,
        committed_at,
        document,
        signed,
        entry_id,
        postings,
        releases,
        pending,
        public_key,
    )


def _read_account(account: object) -> None:
    if not isinstance(account, dict):
        raise _schema("account", "a JSON object", account)
    _check_fields(account, _ACCOUNT_FIELDS, "account")
    _read_id(account, "id")
    _read_id(account, "owner")
    if not isinstance(account["currency"], str) or not _CURRENCY.fullmatch(account["currency"]):
        raise _schema("account.currency", "an ISO 4217 code", account["currency"])
    if not _is_one_of(account["normal_side"], _SIDES):
        raise _schema("account.normal_side", "'debit' or 'credit'", account["normal_side"])
    flags = account["flags"]
    if (
        not isinstance(flags, list)
        or not all(isinstance(flag, str) and flag in _FLAGS for flag in flags)
        or flags != sorted(set(flags))
    ):
        raise _schema(
            "account.flags", f"a sorted list of distinct flags from {sorted(_FLAGS)}", flags
        )
    if account["debit_limit"] is not None:
        _read_decimal(account["debit_limit"], "account.debit_limit", INT64_MAX)
    _read_object(account, "metadata")


# --- Instruction payloads --------------------------------------------------------------------

_BOUND_KINDS: Mapping[str, str] = {
    "settlement.v1.CreateAccountInstruction": "account",
    "settlement.v1.TransactionInstruction": "transaction",
    "settlement.v1.PostPendingInstruction": "post_pending",
    "settlement.v1.VoidPendingInstruction": "void_pending",
    "settlement.v1.ReverseTransactionInstruction": "reversal",
}
"""Instruction types (common.proto) whose fields a leaf of this kind must repeat."""

_PROTO_SIDES = {"SIDE_DEBIT": "debit", "SIDE_CREDIT": "credit"}


def _payload_object(payload: bytes) -> dict[str, Any] | None:
    """The payload as a JSON object, or None when it is not one (opaque payloads are allowed)."""
    if not payload.startswith(b"{"):
        return None
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _amount_text(value: object) -> object:
    """proto3 JSON writes int64 as a string and readers accept a number too."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _binding_problems(entry: _Entry, payload: Mapping[str, Any], signer: str) -> list[str]:
    """Where a leaf departs from the instruction its participant signed.

    Applies to the instruction types of :data:`_BOUND_KINDS` in the proto3 JSON
    mapping common.proto prescribes (original field names, int64 as strings,
    enums by name, default values omitted). Without it the operator could keep
    a valid signature and change what the leaf does.
    """
    problems: list[str] = []
    participant = payload.get("participant_id")
    if participant is not None and participant != signer:
        problems.append(f"participant_id {_quote(participant)} is not the signer {_quote(signer)}")
    instruction_type = payload.get("instruction_type")
    kind = _BOUND_KINDS.get(instruction_type) if isinstance(instruction_type, str) else None
    if kind is None:
        return problems
    if entry.kind != kind:
        problems.append(f"a {instruction_type} instruction on a {entry.kind} leaf")
        return problems
    document = entry.document
    # (field, the leaf's value, the proto3 default; None: compare only when present)
    pairs: list[tuple[str, object, object]]
    if kind == "account":
        account = document["account"]
        pairs = [
            ("account_id", account["id"], None),
            ("owner_participant_id", account["owner"], None),
            ("currency", account["currency"], None),
        ]
        if "normal_side" in payload:
            side = _PROTO_SIDES.get(str(payload["normal_side"]), payload["normal_side"])
            if side != account["normal_side"]:
                problems.append(
                    f"normal_side: signed {_quote(payload['normal_side'])}, "
                    f"leaf {_quote(account['normal_side'])}"
                )
    else:
        pairs = [("instruction_id", entry.entry_id, None)]
    if kind in ("post_pending", "void_pending"):
        pairs.append(("pending_transaction_id", document["pending_id"], None))
    if kind == "reversal":
        pairs.append(("original_transaction_id", document["reverses_id"], None))
    if kind == "transaction":
        pairs.append(("code", document["code"], ""))
        pairs.append(("reference", document["reference"], ""))
        pairs.append(("pending", document["pending"], False))
    for name, leaf_value, default in pairs:
        if default is None and name not in payload:
            continue
        signed = payload.get(name, default)
        if signed != leaf_value:
            problems.append(f"{name}: signed {_quote(signed)}, leaf {_quote(leaf_value)}")
    if kind == "transaction":
        signed_postings = payload.get("postings", [])
        leaf_postings = [
            (account, currency, "debit" if is_debit else "credit", str(amount))
            for account, currency, is_debit, amount in entry.postings
        ]
        readable: list[tuple[object, ...]] | None = None
        if isinstance(signed_postings, list) and all(
            isinstance(item, dict) for item in signed_postings
        ):
            readable = [
                (
                    item.get("account_id"),
                    item.get("currency"),
                    _PROTO_SIDES.get(str(item.get("side")), item.get("side")),
                    _amount_text(item.get("amount_minor")),
                )
                for item in signed_postings
            ]
        if readable != leaf_postings:
            problems.append(f"postings: signed {_quote(readable)}, leaf {_quote(leaf_postings)}")
    if kind == "post_pending" and "amount_minor" in payload:
        signed_amount = _amount_text(payload["amount_minor"])
        amounts = {str(posting[3]) for posting in entry.postings}
        # Only a string can equal the leaf's amounts (and a list would not hash).
        if not isinstance(signed_amount, str) or amounts != {signed_amount}:
            problems.append(f"amount_minor: signed {signed_amount}, leaf {sorted(amounts)}")
    return problems


# --- Each leaf on its own ---------------------------------------------------------------------

_Raw = tuple[str, int | None, str, str, str]
"""A finding not yet counted: check, index, expected, got, message (:meth:`_Findings.add`)."""


class _Leaf(NamedTuple):
    """What the checks over the whole log need of a leaf that passed its own checks."""

    kind: str
    entry_id: str | None
    """The id of a money entry or an event."""
    entry_key: int
    """``_digest(entry_id)``, 0 without an id."""
    postings: tuple[Posting, ...]
    releases: tuple[Posting, ...]
    pending: bool
    reference: str | None
    """The id the leaf acts on: the account it creates or changes, the pending
    transaction it resolves, the transaction it reverses, the signer whose key
    it registers."""
    currency: str | None
    """The currency of the account an ``account`` leaf creates."""
    public_key: bytes | None
    """The key a ``signing_key`` leaf registers."""
    signer: str | None
    """The signer of the leaf's instruction; None for a leaf without one."""
    instruction_id: _InstructionId | None
    commit: int
    """64-bit digest of ``committed_at``: a batch is one commit."""
    signature: _Pending | None
    """The signature to verify with the signer's key valid at the leaf's index;
    None without an instruction, a trust file, or such a key."""


class _ChunkResult(NamedTuple):
    """The checks of consecutive leaves on their own (:func:`_check_chunk`)."""

    hashes: list[bytes]
    """RFC 9162 leaf hash of each leaf, in order."""
    leaves: list[_Leaf | None]
    """Each leaf as the later checks need it; None for one that failed its schema."""
    findings: list[_Raw]
    """Every finding about these leaves alone, by index, in the order they were made."""


def _check_chunk(
    first_position: int,
    leaves: Sequence[bytes],
    keys_by_signer: Mapping[str, Sequence[ParticipantKey]] | None,
) -> _ChunkResult:
    """Worker task: the checks that need nothing but the leaf, its index and the trust
    file's participant keys (``None``: no trust file), for leaves ``first_position`` on.

    Checks 4 and the leaf's own part of 5 and 6 (module docstring): everything
    before the replay, which :class:`_LeafPass` does in index order.
    """
    hashes: list[bytes] = []
    results: list[_Leaf | None] = []
    findings: list[_Raw] = []
    for position, leaf in enumerate(leaves, first_position):
        hashes.append(leaf_hash(leaf))
        results.append(_check_leaf(position, leaf, keys_by_signer, findings))
    return _ChunkResult(hashes, results, findings)


def _check_leaf(
    position: int,
    leaf: bytes,
    keys_by_signer: Mapping[str, Sequence[ParticipantKey]] | None,
    findings: list[_Raw],
) -> _Leaf | None:
    try:
        document = _decode_leaf(leaf)
    except BundleFormatError as error:
        findings.append(
            (
                "leaf_canonical",
                position,
                "RFC 8785 canonical JSON",
                f"{len(leaf)} bytes that are not",
                error.message,
            )
        )
        return None
    try:
        entry = _read_entry(document)
    except _Invalid as problem:
        index = document.get("index") if isinstance(document, dict) else None
        if type(index) is int and index != position:
            findings.append(_index_finding(position, index))
        findings.append((problem.check, position, problem.expected, problem.got, problem.message))
        return None
    if entry.index != position:
        findings.append(_index_finding(position, entry.index))
    _check_amounts(position, entry, findings)
    signer: str | None = None
    instruction_id: _InstructionId | None = None
    signature: _Pending | None = None
    if entry.signed is not None:
        instruction = entry.signed.instruction
        signer = instruction.signer
        if entry.signed.payload is not None:
            for departure in _binding_problems(entry, entry.signed.payload, signer):
                findings.append(
                    (
                        "instruction_binding",
                        position,
                        "the leaf to do what the signed instruction says",
                        departure,
                        f"the {entry.kind} leaf departs from the instruction its signer signed",
                    )
                )
            instruction_id = entry.signed.instruction_id
        if keys_by_signer is not None:
            signature = _signature_to_verify(position, instruction, keys_by_signer, findings)
    _check_balanced(position, entry, findings)
    document = entry.document
    reference: str | None = None
    currency: str | None = None
    kind = entry.kind
    if kind == "account":
        reference = document["account"]["id"]
        currency = document["account"]["currency"]
    elif kind in ("post_pending", "void_pending", "expire_pending"):
        reference = document["pending_id"]
    elif kind == "reversal":
        reference = document["reverses_id"]
    elif kind in ("account_status", "debit_limit"):
        reference = document["account_id"]
    elif kind == "signing_key":
        reference = document["signer"]
        first_index = int(document["first_index"])
        if first_index != position + 1:
            findings.append(
                (
                    "signing_key",
                    position,
                    str(position + 1),
                    str(first_index),
                    "a key registered at index k signs from k + 1 (participant.proto SigningKey)",
                )
            )
    return _Leaf(
        kind=kind,
        entry_id=entry.entry_id,
        entry_key=0 if entry.entry_id is None else _digest(entry.entry_id),
        postings=entry.postings,
        releases=entry.releases,
        pending=entry.pending,
        reference=reference,
        currency=currency,
        public_key=entry.public_key,
        signer=signer,
        instruction_id=instruction_id,
        commit=_commit_digest(entry.committed_at),
        signature=signature,
    )


class _Uncommon(Exception):
    """A leaf the fast reading leaves to the strict decoder, which says what is wrong."""


def _uncommon(_text: str) -> Any:
    raise _Uncommon


def _safe_integer(text: str) -> int:
    if len(text) <= _SAFE_INTEGER_TEXT_MAX:
        value = int(text)
        if -bundle.SAFE_INTEGER_MAX <= value <= bundle.SAFE_INTEGER_MAX:
            return value
    raise _Uncommon


_SAFE_INTEGER_TEXT_MAX = len(str(-bundle.SAFE_INTEGER_MAX))
_LEAF_DECODER = json.JSONDecoder(
    parse_float=_uncommon, parse_int=_safe_integer, parse_constant=_uncommon
)
_LEAF_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, check_circular=False
)


def _decode_leaf(leaf: bytes) -> Any:
    """:func:`ledger.bundle.decode_canonical`, faster for the common leaf.

    An ASCII leaf that parses without floats, constants or unsafe integers and
    is exactly what the encoder writes for its value is canonical (RFC 8785
    and ``json.dumps`` agree on ASCII; see ``ledger.canonical.decode``), and
    the value is the one the strict decoder returns. Anything else takes the
    strict decoder, which accepts it or says why not. The fast reading reuses
    one decoder and one encoder (``json.loads`` and ``json.dumps`` with options
    build new ones per call), and a parsed value has no cycle to look for.
    """
    try:
        text = leaf.decode("ascii")
        value = _LEAF_DECODER.decode(text)
        if _LEAF_ENCODER.encode(value) == text:
            return value
    except (ValueError, RecursionError, _Uncommon):
        pass
    return bundle.decode_canonical(leaf)


@functools.lru_cache(maxsize=TIME_CACHE_SIZE)
def _commit_digest(committed_at: str) -> int:
    return _digest(committed_at, size=8)


def _index_finding(position: int, index: int) -> _Raw:
    return (
        "leaf_index",
        position,
        str(position),
        str(index),
        f"the leaf at position {position} says it is index {index} "
        "(an entry deleted, inserted or moved)",
    )


def _signature_to_verify(
    position: int,
    instruction: _Instruction,
    keys_by_signer: Mapping[str, Sequence[ParticipantKey]],
    findings: list[_Raw],
) -> _Pending | None:
    """The signature of leaf ``position`` with the signer's key valid there, or None after
    a ``participant_key`` finding when the signer has no such key."""
    candidates = keys_by_signer.get(instruction.signer, ())
    valid = [key for key in candidates if key.covers(position)]
    if not valid:
        ranges = ", ".join(
            f"{key.first_index}..{'' if key.last_index is None else key.last_index}"
            for key in candidates
        )
        findings.append(
            (
                "participant_key",
                position,
                f"a key of signer {_quote(instruction.signer)} valid at index {position}",
                f"keys valid for {ranges}" if candidates else "no key of that signer",
                f"{bundle.TRUST_FILE} has no key of the signer valid at this index",
            )
        )
        return None
    public_key = valid[-1].public_key
    if len(instruction.payload) <= INSTRUCTION_CACHED_TEXT_MAX_CHARS:
        return _pending_signature(public_key, instruction)
    return _pending_signature.__wrapped__(public_key, instruction)


@functools.lru_cache(maxsize=INSTRUCTION_CACHE_SIZE)
def _pending_signature(public_key: bytes, instruction: _Instruction) -> _Pending:
    """Cached: a batch's leaves then share one object, which pickles once per chunk."""
    # Key and signature have fixed sizes, so the concatenation is unambiguous.
    digest = hashlib.sha256(public_key + instruction.signature + instruction.payload).digest()
    return digest, (public_key, instruction.payload, instruction.signature)


def _check_amounts(position: int, entry: _Entry, findings: list[_Raw]) -> None:
    for name, postings in (("postings", entry.postings), ("releases", entry.releases)):
        for number, (_, _, _, amount) in enumerate(postings):
            if not 0 < amount <= INT64_MAX:
                findings.append(
                    (
                        "amount_range",
                        position,
                        f"1..{INT64_MAX}",
                        str(amount),
                        f"{name}[{number}].amount: expected a positive amount within int64",
                    )
                )


_BALANCED_PARTS: Mapping[str, tuple[str, ...]] = {
    "transaction": ("postings",),
    "post_pending": ("postings", "releases"),
    "void_pending": ("releases",),
    "expire_pending": ("releases",),
    "reversal": ("postings",),
}
"""The parts of each kind of money entry that must balance on their own."""


def _check_balanced(position: int, entry: _Entry, findings: list[_Raw]) -> None:
    for name in _BALANCED_PARTS.get(entry.kind, ()):
        postings = entry.postings if name == "postings" else entry.releases
        if len(postings) < 2:
            findings.append(
                (
                    "entry_balanced",
                    position,
                    "at least one debit and one credit",
                    f"{len(postings)} {name}",
                    f"double entry: the {entry.kind} needs at least two {name}",
                )
            )
            continue
        debits: dict[str, int] = {}
        credits_: dict[str, int] = {}
        for _, currency, is_debit, amount in postings:
            side = debits if is_debit else credits_
            side[currency] = side.get(currency, 0) + amount
        if len(debits) == 1 and debits == credits_:
            (debit_total,) = debits.values()
            if debit_total <= INT64_MAX:
                continue  # the common case: one currency, balanced, in range
        for currency in sorted(debits.keys() | credits_.keys()):
            debit_total = debits.get(currency, 0)
            credit_total = credits_.get(currency, 0)
            if debit_total != credit_total:
                findings.append(
                    (
                        "entry_balanced",
                        position,
                        f"{currency} credits = debits = {debit_total}",
                        f"credits {credit_total}",
                        f"{name} of the {entry.kind} do not balance in {currency}",
                    )
                )
            if max(debit_total, credit_total) > INT64_MAX:
                findings.append(
                    (
                        "amount_range",
                        position,
                        f"{currency} {name} totals within {INT64_MAX}",
                        str(max(debit_total, credit_total)),
                        f"the {name} of one entry sum beyond int64",
                    )
                )


# --- Worker processes -------------------------------------------------------------------------

_Result = TypeVar("_Result")


def _answer() -> bool:
    """Worker task: nothing; its result says the worker is up."""
    return True


class _Workers:
    """The ``spawn`` process pool of one verification, shared by leaves and signatures.

    Started on first use, so a bundle that needs no second task never pays
    for it. If it breaks (for example a caller's script without the ``if
    __name__ == "__main__"`` guard that the spawn start method needs), it is
    abandoned and every task runs inline: slower, never a different answer.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.failed = False
        self.answered = False
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._probes: list[concurrent.futures.Future[bool]] = []

    @property
    def started(self) -> bool:
        return self._pool is not None

    def ready(self) -> bool:
        """Start the pool if need be; whether a worker has answered yet.

        A worker starts a fresh interpreter that imports this module and the
        caller's main module: a fraction of a second on an idle machine,
        seconds on a busy one. Until one answers, work done inline is not
        waiting.
        """
        if self.answered:
            return not self.failed
        if self._pool is None:
            # One task per worker, so that all of them start now.
            probes = [self.submit(_answer) for _ in range(self.count)]
            self._probes = [probe for probe in probes if probe is not None]
        for probe in self._probes:
            if probe.done():
                try:
                    probe.result()
                except _WORKER_FAILURES:
                    self.abandon()
                    return False
                self.answered = True
        return self.answered and not self.failed

    def submit(
        self, function: Callable[..., _Result], *arguments: Any
    ) -> concurrent.futures.Future[_Result] | None:
        """Run ``function(*arguments)`` in a worker; None when the caller must run it inline."""
        if self.count <= 1 or self.failed:
            return None
        if self._pool is None:
            # spawn: a fresh interpreter per worker, inheriting no threads (tqdm's
            # monitor), locks or open files of this process.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.count, mp_context=multiprocessing.get_context("spawn")
            )
        try:
            return self._pool.submit(function, *arguments)
        except (BrokenProcessPool, RuntimeError):
            self.abandon()
            return None

    def abandon(self) -> None:
        """Stop using the pool: what it had not returned is redone inline by its callers."""
        self.failed = True
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_WORKER_FAILURES = (BrokenProcessPool, concurrent.futures.CancelledError)
"""What a task's future raises when its pool broke or was abandoned under it."""


# --- Signatures ------------------------------------------------------------------------------


def _verify_chunk(items: list[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Worker task: verify (public key, payload, signature) items; one bool each."""
    return verify_instructions(SignedInstruction(*item) for item in items)


_Pending = tuple[bytes, tuple[bytes, bytes, bytes]]
"""(digest, (public key, payload, signature)) of a signature waiting to be verified;
the digest is SHA-256 of key, signature and payload."""


class _SignatureChecker:
    """Verifies participant signatures, in the worker processes when there are many.

    Each distinct (key, payload, signature) is verified once: results are
    cached (bounded LRU) and leaves waiting for an in-flight result are
    resolved when it arrives. Failures are reported through ``on_failure``
    with the leaf index. The first full chunk starts the pool; chunks are
    verified inline until a worker answers, and the rest of a bundle too
    small to fill one is verified inline.
    """

    def __init__(
        self, workers: _Workers, on_failure: Callable[[int, str, bytes, bytes], None]
    ) -> None:
        self.workers = workers
        self.on_failure = on_failure
        self.verified = 0
        self._cache: OrderedDict[bytes, bool] = OrderedDict()
        self._waiting: dict[bytes, list[tuple[int, str]]] = {}
        self._chunk: list[_Pending] = []
        self._in_flight: deque[tuple[list[_Pending], concurrent.futures.Future[list[bool]]]] = (
            deque()
        )

    def add(self, index: int, signer: str, pending: _Pending) -> None:
        """Check the signature of leaf ``index``; failures reach ``on_failure`` later."""
        digest = pending[0]
        known = self._cache.get(digest)
        if known is not None:
            self._cache.move_to_end(digest)
            if not known:
                _, payload, signature = pending[1]
                self.on_failure(index, signer, payload, signature)
            return
        waiting = self._waiting.get(digest)
        if waiting is not None:
            waiting.append((index, signer))
            return
        self._waiting[digest] = [(index, signer)]
        self._chunk.append(pending)
        if len(self._chunk) >= SIGNATURE_CHUNK_SIZE:
            self._submit()

    def _submit(self) -> None:
        chunk, self._chunk = self._chunk, []
        future = None
        if self.workers.ready():
            future = self.workers.submit(_verify_chunk, [item for _, item in chunk])
        if future is None:
            self._verify_inline(chunk)
            return
        self._in_flight.append((chunk, future))
        while len(self._in_flight) > self.workers.count * SIGNATURE_CHUNKS_IN_FLIGHT_PER_WORKER:
            self._collect()

    def _collect(self) -> None:
        chunk, future = self._in_flight.popleft()
        try:
            results = future.result()
        except _WORKER_FAILURES:
            self.workers.abandon()
            self._verify_inline(chunk)
            return
        self._resolve(chunk, results)

    def _verify_inline(self, chunk: list[_Pending]) -> None:
        self._resolve(chunk, _verify_chunk([item for _, item in chunk]))

    def _resolve(self, chunk: list[_Pending], results: list[bool]) -> None:
        self.verified += len(chunk)
        for (digest, (_, payload, signature)), valid in zip(chunk, results, strict=True):
            for index, signer in self._waiting.pop(digest):
                if not valid:
                    self.on_failure(index, signer, payload, signature)
            self._cache[digest] = valid
            if len(self._cache) > SIGNATURE_CACHE_SIZE:
                self._cache.popitem(last=False)

    def finish(self) -> None:
        """Verify what is left and wait for every result."""
        if self._chunk:
            if self.workers.started:
                self._submit()
            else:
                chunk, self._chunk = self._chunk, []
                self._verify_inline(chunk)
        while self._in_flight:
            self._collect()


# --- The pass over the leaves ----------------------------------------------------------------


@dataclass(slots=True)
class _Account:
    currency: str
    created_at: int
    totals: list[int]
    """debits_posted, credits_posted, debits_pending, credits_pending."""


@dataclass(frozen=True)
class _RootClaim:
    """A signed root to compare with the recomputed root at its size."""

    check: str
    label: str
    root_hash: bytes


def _describe_totals(totals: Sequence[int]) -> str:
    return " ".join(
        f"{name}={value}" for name, value in zip(bundle.TOTAL_NAMES, totals, strict=True)
    )


class _Chunk(NamedTuple):
    """Consecutive leaves from ``first_position`` on, and their checks if in a worker."""

    first_position: int
    leaves: list[bytes]
    future: concurrent.futures.Future[_ChunkResult] | None


class _LeafPass:
    """Everything checked while streaming the leaves once, in index order.

    Leaves arrive in chunks (:meth:`add_chunk`). Each leaf's own checks
    (:func:`_check_chunk`) run in the worker processes, a bounded number of
    chunks ahead; here, in index order, each chunk's results are merged: leaf
    hashes into the Merkle tree, findings, and the checks that need what came
    before (duplicates, signatures, the replay of balances). The first chunk,
    and those that come while the pool starts, are checked here.
    """

    def __init__(
        self,
        findings: _Findings,
        trust: Trust | None,
        claims: dict[int, list[_RootClaim]],
        signatures: _SignatureChecker,
        workers: _Workers,
        report: Report,
    ) -> None:
        self.findings = findings
        self.trust = trust
        self.claims = claims
        self.signatures = signatures
        self.workers = workers
        self.report = report
        self.frontier = CompactRange()
        self.accounts: dict[str, _Account] = {}
        self.open_pending: dict[str, tuple[tuple[Posting, ...], int]] = {}
        # Ids already used, the one table that grows with the log: keyed by a
        # 128-bit digest (a collision is a 2**-128 event per pair) to about 120
        # bytes per entry, whatever the id's length.
        self.money_ids: dict[int, int] = {}
        """Digest of a money entry's id -> its index."""
        self.event_ids: dict[int, int] = {}
        self.instructions: dict[int, int] = {}
        """Digest of (signer, instruction id) -> fingerprints and index (_pack_instruction)."""
        self.registrations: list[tuple[int, str, bytes]] = []
        self.keys_by_signer: dict[str, list[ParticipantKey]] = {}
        if trust is not None:
            for key in trust.participant_keys:
                self.keys_by_signer.setdefault(key.signer, []).append(key)
            for keys in self.keys_by_signer.values():
                keys.sort(key=lambda key: key.first_index)
        self.worker_keys = self.keys_by_signer if trust is not None else None
        """What :func:`_check_chunk` needs of the trust file (None: no trust file)."""
        self.chunks: deque[_Chunk] = deque()
        self.chunks_checked = 0

    # -- Merkle ----------------------------------------------------------------

    def check_claims_at_size(self) -> None:
        size = self.frontier.size
        claims = self.claims.pop(size, None)
        if not claims:
            return
        root = self.frontier.root()
        for claim in claims:
            if claim.root_hash != root:
                self.findings.add(
                    claim.check,
                    None,
                    root.hex(),
                    claim.root_hash.hex(),
                    f"{claim.label}: its root is not the RFC 9162 root of the first {size} "
                    "leaves of this bundle, so it is inconsistent with them and with "
                    "every checkpoint that matches them",
                )

    # -- chunks -----------------------------------------------------------------

    def add_chunk(self, first_position: int, leaves: list[bytes]) -> None:
        """Check leaves ``first_position`` on; the results are merged in order, later."""
        future = None
        # The first chunk never waits for the pool, nor do those while it starts.
        if (self.chunks_checked or self.chunks) and self.workers.ready():
            future = self.workers.submit(_check_chunk, first_position, leaves, self.worker_keys)
        self.chunks.append(_Chunk(first_position, leaves, future))
        # Bounded memory: at most this many chunks are read ahead of the merge.
        ahead = 0 if future is None else self.workers.count * LEAF_CHUNKS_IN_FLIGHT_PER_WORKER
        while len(self.chunks) > ahead:
            self.merge_next()

    def finish(self) -> None:
        """Merge every chunk still in flight."""
        while self.chunks:
            self.merge_next()

    def merge_next(self) -> None:
        """Merge the oldest chunk's results."""
        first_position, leaves, future = self.chunks.popleft()
        result: _ChunkResult | None = None
        if future is not None:
            try:
                result = future.result()
            except _WORKER_FAILURES:
                self.workers.abandon()
        if result is None:
            result = _check_chunk(first_position, leaves, self.worker_keys)
        if len(result.hashes) != len(leaves):
            raise LedgerError(
                f"internal: {len(result.hashes)} leaf hashes for the {len(leaves)} leaves "
                f"from {first_position}"
            )
        self._merge(first_position, result)
        self.chunks_checked += 1

    def _merge(self, first_position: int, result: _ChunkResult) -> None:
        hashes, leaves, findings = result
        next_finding = 0
        for position, (hash_value, leaf) in enumerate(
            zip(hashes, leaves, strict=True), first_position
        ):
            self.frontier.append(hash_value)
            if self.frontier.size in self.claims:
                self.check_claims_at_size()
            # The leaf's own findings come before those of the checks below, as
            # when one process did both: per check, findings stay in index order.
            while next_finding < len(findings) and findings[next_finding][1] == position:
                self.findings.add(*findings[next_finding])
                next_finding += 1
            if leaf is not None:
                self._add_leaf(position, leaf)
        if next_finding != len(findings):
            raise LedgerError(f"internal: a finding of another chunk {findings[next_finding]}")

    # -- one leaf, with what came before ------------------------------------------

    def _add_leaf(self, position: int, leaf: _Leaf) -> None:
        if leaf.signer is None:
            self.report.unsigned_entries += 1
        else:
            self.report.signatures_checked += 1
            if leaf.instruction_id is not None:
                self._check_instruction_id(position, leaf.signer, leaf.instruction_id, leaf.commit)
            if leaf.signature is not None:
                self.signatures.add(position, leaf.signer, leaf.signature)
        if leaf.entry_id is not None:
            self._check_duplicates(position, leaf.kind, leaf.entry_id, leaf.entry_key)
        self._replay(position, leaf)

    def signature_failed(self, index: int, signer: str, payload: bytes, signature: bytes) -> None:
        """Report a failed signature; name the key when another of the signer's keys made it.

        Rare and inline: a signature by the signer's key of another range is
        evidence of a different fault (a rotated-out key still in use, or a
        backdated rotation) than a forged or corrupted signature.
        """
        for key in self.keys_by_signer.get(signer, []):
            if key.covers(index):
                continue
            if verify_instructions([SignedInstruction(key.public_key, payload, signature)])[0]:
                last = "" if key.last_index is None else str(key.last_index)
                self.findings.add(
                    "participant_key",
                    index,
                    f"a signature by the key of {_quote(signer)} valid at index {index}",
                    f"a signature by its key valid for {key.first_index}..{last}",
                    "the instruction is signed with the signer's key of another index range",
                )
                return
        self.findings.add(
            "participant_signature",
            index,
            "an Ed25519 signature over INSTRUCTION_CONTEXT || payload by the signer's key",
            "a signature that does not verify",
            "the participant's instruction signature does not verify (RFC 8032 section 5.1.7)",
        )

    def _check_instruction_id(
        self, position: int, signer: str, named: _InstructionId, commit: int
    ) -> None:
        earlier = self.instructions.get(named.identity)
        if earlier is None:
            self.instructions[named.identity] = _pack_instruction(named.signed, commit, position)
            return
        earlier_signed, earlier_commit, earlier_position = _unpack_instruction(earlier)
        # One signed instruction may cover every item of one batch (ledger.batch:
        # same payload and signature, one commit time); anything else is a replay.
        if earlier_signed == named.signed and earlier_commit == commit:
            return
        self.findings.add(
            "duplicate_instruction",
            position,
            f"instruction id {_quote(named.instruction_id)} of {_quote(signer)} used once",
            f"also used at index {earlier_position}",
            "the same signer's instruction id appears in two commits"
            + ("" if earlier_signed == named.signed else " with different instructions"),
        )

    def _check_duplicates(self, position: int, kind: str, entry_id: str, identity: int) -> None:
        money = kind in _MONEY_KINDS
        namespace = self.money_ids if money else self.event_ids
        earlier = namespace.get(identity)
        if earlier is not None:
            self.findings.add(
                "duplicate_entry_id",
                position,
                f"an id unused among {'money entries' if money else 'events'}",
                f"{_quote(entry_id)} already used at index {earlier}",
                f"the {kind} reuses the id of an earlier entry",
            )
            return
        namespace[identity] = position

    # -- replay -----------------------------------------------------------------

    def _replay(self, position: int, leaf: _Leaf) -> None:
        """Apply the entry to the accounts as the log did, even when it broke a rule."""
        kind = leaf.kind
        if kind == "transaction":
            if leaf.pending:
                self._apply(position, leaf.postings, slot=2, sign=1)
                self.open_pending[_required(leaf.entry_id, position)] = (leaf.postings, position)
            else:
                self._apply(position, leaf.postings, slot=0, sign=1)
        elif kind == "account":
            account_id = _required(leaf.reference, position)
            self._create_account(position, account_id, _required(leaf.currency, position))
        elif kind in ("post_pending", "void_pending", "expire_pending"):
            self._resolve_pending(position, leaf, _required(leaf.reference, position))
        elif kind == "reversal":
            reverses = _required(leaf.reference, position)
            if self.money_ids.get(_digest(reverses), position) >= position:
                self.findings.add(
                    "entry_reference",
                    position,
                    "the id of an earlier money entry",
                    _quote(reverses),
                    "the reversal names no earlier transaction",
                )
            self._apply(position, leaf.postings, slot=0, sign=1)
        elif kind in ("account_status", "debit_limit"):
            self._require_account(position, _required(leaf.reference, position), None)
        elif kind == "signing_key":
            self.registrations.append(
                (
                    position,
                    _required(leaf.reference, position),
                    _required(leaf.public_key, position),
                )
            )

    def _create_account(self, position: int, account_id: str, currency: str) -> None:
        earlier = self.accounts.get(account_id)
        if earlier is not None:
            self.findings.add(
                "duplicate_account_id",
                position,
                "a new account id",
                f"{_quote(account_id)} already created at index {earlier.created_at}",
                "the account id is created twice",
            )
            return
        self.accounts[account_id] = _Account(currency, position, [0, 0, 0, 0])

    def _require_account(
        self, position: int, account_id: str, currency: str | None
    ) -> _Account | None:
        account = self.accounts.get(account_id)
        if account is None:
            self.findings.add(
                "account_reference",
                position,
                "an account created by an earlier leaf",
                _quote(account_id),
                "the entry names an account that does not exist",
            )
            return None
        if currency is not None and account.currency != currency:
            self.findings.add(
                "account_reference",
                position,
                f"{account.currency} (the account's currency)",
                currency,
                f"a posting to account {_quote(account_id)} in another currency",
            )
            return None
        return account

    def _apply(self, position: int, postings: Sequence[Posting], *, slot: int, sign: int) -> None:
        """Add (sign 1) or release (sign -1) postings to posted (slot 0) or pending (slot 2)."""
        for account_id, currency, is_debit, amount in postings:
            account = self._require_account(position, account_id, currency)
            if account is None:
                continue
            total = slot if is_debit else slot + 1
            account.totals[total] += sign * amount
            value = account.totals[total]
            if value < 0:
                self.findings.add(
                    "balance_negative",
                    position,
                    f"{bundle.TOTAL_NAMES[total]} >= 0",
                    str(value),
                    f"account {_quote(account_id)} releases more than it has pending",
                )
            elif value > INT64_MAX:
                self.findings.add(
                    "amount_range",
                    position,
                    f"{bundle.TOTAL_NAMES[total]} <= {INT64_MAX}",
                    str(value),
                    f"account {_quote(account_id)} total beyond int64",
                )

    def _resolve_pending(self, position: int, leaf: _Leaf, pending_id: str) -> None:
        opened = self.open_pending.pop(pending_id, None)
        if opened is None:
            self.findings.add(
                "entry_reference",
                position,
                "the id of an open pending transaction",
                _quote(pending_id),
                f"the {leaf.kind} resolves a pending transaction that is not open",
            )
        else:
            reserved, _ = opened
            if leaf.releases != reserved:
                self.findings.add(
                    "entry_reference",
                    position,
                    f"releases equal to the pending's postings {_quote(reserved)}",
                    _quote(leaf.releases),
                    f"the {leaf.kind} releases other amounts than {_quote(pending_id)} reserved",
                )
            if leaf.kind == "post_pending" and not _posts_within(leaf.postings, reserved):
                self.findings.add(
                    "entry_reference",
                    position,
                    "the reserved postings, or both legs of a two-leg pending for less",
                    _quote(leaf.postings),
                    f"the post of {_quote(pending_id)} moves other money than was reserved",
                )
        self._apply(position, leaf.postings, slot=0, sign=1)
        self._apply(position, leaf.releases, slot=2, sign=-1)


_Value = TypeVar("_Value")


def _required(value: _Value | None, position: int) -> _Value:
    """A field :func:`_check_leaf` sets for the leaf's kind."""
    if value is None:
        raise LedgerError(f"internal: leaf {position} lacks a field its kind has")
    return value


def _digest(*parts: str, size: int = 16) -> int:
    """A ``size``-byte BLAKE2b digest of text parts, as an int (compact dict keys)."""
    # Ids and signers are printable ASCII: a NUL separator cannot occur in them.
    data = "\x00".join(parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=size).digest(), "big")


_INDEX_BITS = 64


def _pack_instruction(signed: int, commit: int, position: int) -> int:
    """One int for (64-bit digest of payload and signature, of commit time, index)."""
    return (((signed << 64) | commit) << _INDEX_BITS) | position


def _unpack_instruction(packed: int) -> tuple[int, int, int]:
    position = packed & ((1 << _INDEX_BITS) - 1)
    digests = packed >> _INDEX_BITS
    return digests >> 64, digests & ((1 << 64) - 1), position


def _posts_within(posted: tuple[Posting, ...], reserved: tuple[Posting, ...]) -> bool:
    """A post moves the reserved postings in full, or (two legs) one smaller amount on both."""
    if posted == reserved:
        return True
    if len(reserved) != 2 or len(posted) != 2:
        return False
    amounts = {posting[3] for posting in posted}
    return (
        len(amounts) == 1
        and all(p[:3] == r[:3] for p, r in zip(posted, reserved, strict=True))
        and all(p[3] <= r[3] for p, r in zip(posted, reserved, strict=True))
    )


# --- The bundle as a whole -----------------------------------------------------------------


def _load_trust(root: Path, findings: _Findings) -> Trust | None:
    try:
        trust = bundle.parse_trust(bundle.read_json(root / bundle.TRUST_FILE))
    except FileNotFoundError:
        return None  # reported as a missing file
    except (OSError, BundleFormatError) as error:
        findings.add(
            "trust_file",
            None,
            f"a readable {bundle.TRUST_FILE} of format {bundle.TRUST_FORMAT}",
            "a file that is not",
            f"{error}; no signature can be checked without it",
        )
        return None
    seen: dict[str, list[ParticipantKey]] = {}
    for key in trust.participant_keys:
        for other in seen.get(key.signer, []):
            last = key.last_index if key.last_index is not None else bundle.UINT64_MAX
            other_last = other.last_index if other.last_index is not None else bundle.UINT64_MAX
            if key.first_index <= other_last and other.first_index <= last:
                findings.add(
                    "trust_keys",
                    None,
                    f"one key of {_quote(key.signer)} valid at each index",
                    f"keys valid from {other.first_index} and from {key.first_index} overlap",
                    f"{bundle.TRUST_FILE} gives the signer two keys for the same indexes",
                )
        seen.setdefault(key.signer, []).append(key)
    return trust


def _open_signed(
    note: bytes,
    trust: Trust,
    tree_size_of: Callable[[str], int],
    checks: tuple[str, str],
    label: str,
    findings: _Findings,
    report: Report,
) -> tuple[str, int] | None:
    """Open a note signed by the log; check the signing key covers its tree size.

    ``checks`` are the names for a bad signature and for a key outside its
    range. Returns the text and tree size, or None after adding a finding.
    """
    signature_check, key_check = checks
    try:
        opened, unknown = _open_with_log_keys(note, trust.log_keys)
    except NoteError as error:
        findings.add(
            signature_check,
            None,
            f"a valid signature by a log key of {bundle.TRUST_FILE}",
            "none",
            f"{label}: {error.message}",
        )
        return None
    report.unknown_signatures_ignored += unknown
    size = tree_size_of(opened.text)
    valid = [key for key in opened.keys if key.covers(size)]
    if not valid:
        findings.add(
            key_check,
            None,
            f"a signature by a log key valid for tree size {size}",
            "signed only by " + ", ".join(_key_label(key) for key in opened.keys),
            f"{label}: signed by a log key outside the tree sizes it may sign",
        )
        return None
    return opened.text, size


def _check_manifest(
    root: Path, trust: Trust | None, findings: _Findings, report: Report
) -> bundle.Manifest | None:
    """Check 1: the manifest's signature, origin and every file hash."""
    path = root / bundle.MANIFEST_FILE
    try:
        with open(path, "rb") as source:
            note = source.read(bundle.MANIFEST_SIZE_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as error:
        findings.add("bundle_files", None, "a readable file", str(error), bundle.MANIFEST_FILE)
        return None
    manifest: bundle.Manifest | None = None
    split = note.rfind(b"\n\n")
    try:
        manifest = bundle.parse_manifest(note[: split + 1].decode("utf-8") if split >= 0 else "")
    except (BundleFormatError, UnicodeDecodeError) as error:
        findings.add(
            "manifest_format",
            None,
            f"a {bundle.MANIFEST_FORMAT} text",
            "other text",
            f"{bundle.MANIFEST_FILE}: {error}",
        )
    if trust is not None and manifest is not None:
        if manifest.origin != trust.origin:
            findings.add(
                "manifest_format",
                None,
                _quote(trust.origin),
                _quote(manifest.origin),
                f"{bundle.MANIFEST_FILE}: the origin is not the trust file's",
            )
        size = manifest.tree_size
        _open_signed(
            note,
            trust,
            lambda _text: size,
            ("manifest_signature", "manifest_key"),
            bundle.MANIFEST_FILE,
            findings,
            report,
        )
    if manifest is None:
        return None
    listed = set(manifest.file_hashes)
    for name in sorted(listed - set(bundle.MANIFEST_HASHED_FILES)):
        findings.add(
            "manifest_format",
            None,
            f"files {list(bundle.MANIFEST_HASHED_FILES)}",
            _quote(name),
            f"{bundle.MANIFEST_FILE} lists a file that is not part of a bundle",
        )
    for name in bundle.MANIFEST_HASHED_FILES:
        expected = manifest.file_hashes.get(name)
        if expected is None:
            findings.add(
                "manifest_format",
                None,
                f"a hash of {name}",
                "none",
                f"{bundle.MANIFEST_FILE} does not list {name}",
            )
            continue
        try:
            got = bundle.file_sha256(root / name)
        except OSError:
            continue  # reported as a missing or unreadable file
        if got != expected:
            findings.add(
                "manifest_hash",
                None,
                expected,
                got,
                f"SHA-256 of {name} differs from the signed manifest",
            )
    return manifest


def _load_checkpoints(
    root: Path,
    trust: Trust | None,
    findings: _Findings,
    report: Report,
    claims: dict[int, list[_RootClaim]],
) -> None:
    """Check 2, all but the roots: signatures, keys, format, origin, order.

    Each checkpoint that passes becomes a claim whose root the leaf pass checks.
    """
    if trust is None:
        return
    accepted: list[tuple[int, bytes, int]] = []
    path = root / bundle.CHECKPOINTS_FILE
    position = -1
    try:
        for position, note in enumerate(bundle.read_framed(path)):
            checkpoint = _open_checkpoint(note, trust, position, findings, report)
            if checkpoint is None:
                continue
            report.checkpoints_checked += 1
            label = f"checkpoint {position} (tree size {checkpoint.size})"
            if accepted:
                last_size, last_root, last_position = accepted[-1]
                if checkpoint.size == last_size and checkpoint.root_hash != last_root:
                    findings.add(
                        "checkpoint_consistency",
                        None,
                        f"one root for tree size {last_size}: {last_root.hex()} "
                        f"(checkpoint {last_position})",
                        f"{checkpoint.root_hash.hex()} ({label})",
                        f"two signed roots for tree size {last_size}: the log forked",
                    )
                elif checkpoint.size <= last_size:
                    findings.add(
                        "checkpoint_order",
                        None,
                        f"a tree size above {last_size}",
                        str(checkpoint.size),
                        f"{label}: checkpoints must be in strictly increasing size",
                    )
            accepted.append((checkpoint.size, checkpoint.root_hash, position))
            claims.setdefault(checkpoint.size, []).append(
                _RootClaim("checkpoint_root", label, checkpoint.root_hash)
            )
    except FramingError as error:
        findings.add(
            "framing", None, "complete frames", f"frame {error.frame} is not", error.message
        )
    except FileNotFoundError:
        pass
    except OSError as error:
        findings.add("bundle_files", None, "a readable file", str(error), bundle.CHECKPOINTS_FILE)


def _open_checkpoint(
    note: bytes,
    trust: Trust,
    position: int,
    findings: _Findings,
    report: Report,
    *,
    checks: tuple[str, str, str, str] = (
        "checkpoint_signature",
        "checkpoint_key",
        "checkpoint_format",
        "checkpoint_origin",
    ),
    label: str | None = None,
) -> Checkpoint | None:
    signature_check, key_check, format_check, origin_check = checks
    label = label or f"checkpoint {position}"
    parsed: list[Checkpoint] = []

    def tree_size_of(text: str) -> int:
        parsed.append(parse_checkpoint(text))
        return parsed[-1].size

    try:
        opened = _open_signed(
            note, trust, tree_size_of, (signature_check, key_check), label, findings, report
        )
    except CheckpointError as error:
        findings.add(
            format_check,
            None,
            "a c2sp.org/tlog-checkpoint",
            "other text",
            f"{label}: {error.message}",
        )
        return None
    if opened is None:
        return None
    checkpoint = parsed[-1]
    if checkpoint.origin != trust.origin:
        findings.add(
            origin_check,
            None,
            _quote(trust.origin),
            _quote(checkpoint.origin),
            f"{label}: the origin is not the trust file's",
        )
        return None
    return checkpoint


def _check_trust_against_leaves(
    registrations: Sequence[tuple[int, str, bytes]],
    trust: Trust,
    leaf_count: int,
    findings: _Findings,
) -> None:
    """The participant keys the leaves register must be exactly the trust file's.

    A key registered at index k signs from k + 1 until the index of the entry
    that registers the signer's next key (participant.proto ``SigningKey``).
    Keys the trust file says were registered after the bundle's last leaf, and
    end indexes beyond it, cannot be checked here and are accepted.
    """
    expected: dict[tuple[str, bytes, int], tuple[int | None, int]] = {}
    current: dict[str, tuple[str, bytes, int]] = {}
    for position, signer, public_key in registrations:
        previous = current.get(signer)
        if previous is not None:
            expected[previous] = (position, expected[previous][1])
        identity = (signer, public_key, position + 1)
        expected[identity] = (None, position)
        current[signer] = identity
    stated: dict[tuple[str, bytes, int], int | None] = {}
    for key in trust.participant_keys:
        if key.first_index > leaf_count:
            continue
        last = key.last_index
        if last is not None and last >= leaf_count:
            last = None
        stated[(key.signer, key.public_key, key.first_index)] = last
    for identity, (last, position) in sorted(expected.items(), key=lambda item: item[1][1]):
        signer, public_key, first = identity
        encoded = base64.b64encode(public_key).decode("ascii")
        if identity not in stated:
            findings.add(
                "trust_keys",
                position,
                f"key {encoded} of {_quote(signer)} from index {first}",
                "no such key",
                f"the leaf registers a key {bundle.TRUST_FILE} does not list",
            )
            continue
        stated_last = stated[identity]
        if stated_last != last:
            # Where the two histories part: the earlier of the two end indexes.
            where = min(value for value in (last, stated_last) if value is not None)
            findings.add(
                "trust_keys",
                where,
                f"last index {'none' if last is None else last} (the next registration)",
                f"last index {'none' if stated_last is None else stated_last}",
                f"{bundle.TRUST_FILE} gives the key of {_quote(signer)} registered at "
                f"index {position} another range than the leaves",
            )
    for identity in sorted(stated.keys() - expected.keys()):
        signer, public_key, first = identity
        encoded = base64.b64encode(public_key).decode("ascii")
        findings.add(
            "trust_keys",
            first - 1 if 0 < first <= leaf_count else None,
            "a key registered by a signing_key leaf at the index before its first",
            f"key {encoded} of {_quote(signer)} from index {first}",
            f"{bundle.TRUST_FILE} lists a key no leaf registered",
        )


def _check_balances(
    root: Path,
    accounts: Mapping[str, _Account],
    tree_size: int,
    findings: _Findings,
    report: Report,
) -> None:
    """Check 8: replayed totals equal balances.json, which sums to zero per currency."""
    try:
        balances = bundle.parse_balances(bundle.read_json(root / bundle.BALANCES_FILE))
    except FileNotFoundError:
        return
    except (OSError, BundleFormatError) as error:
        findings.add(
            "balances_file",
            None,
            f"a readable {bundle.BALANCES_FILE} of format {bundle.BALANCES_FORMAT}",
            "a file that is not",
            str(error),
        )
        return
    if balances.tree_size != tree_size:
        findings.add(
            "tree_size",
            None,
            str(tree_size),
            str(balances.tree_size),
            f"{bundle.BALANCES_FILE} is for another tree size than the bundle",
        )
    stated_ids = set()
    net: dict[str, list[int]] = {}
    for stated in balances.accounts:
        stated_ids.add(stated.account)
        report.accounts_checked += 1
        sums = net.setdefault(stated.currency, [0, 0])
        sums[0] += stated.debits_posted - stated.credits_posted
        sums[1] += stated.debits_pending - stated.credits_pending
        replayed = accounts.get(stated.account)
        if replayed is None:
            findings.add(
                "closing_balance",
                None,
                "no such account",
                f"{_quote(stated.account)} {stated.currency} {_describe_totals(stated.totals())}",
                f"{bundle.BALANCES_FILE} states an account no leaf created",
            )
            continue
        if replayed.currency != stated.currency or tuple(replayed.totals) != stated.totals():
            findings.add(
                "closing_balance",
                None,
                f"{replayed.currency} {_describe_totals(replayed.totals)}",
                f"{stated.currency} {_describe_totals(stated.totals())}",
                f"account {_quote(stated.account)}: the replayed totals differ from "
                f"{bundle.BALANCES_FILE}",
            )
    for account_id in sorted(accounts.keys() - stated_ids):
        replayed = accounts[account_id]
        findings.add(
            "closing_balance",
            None,
            f"{_quote(account_id)} {replayed.currency} {_describe_totals(replayed.totals)}",
            "no such account",
            f"{bundle.BALANCES_FILE} omits an account the leaves created",
        )
    for currency, (posted, pending) in sorted(net.items()):
        if posted or pending:
            findings.add(
                "balances_total",
                None,
                f"{currency} debits - credits = 0 posted and pending",
                f"posted {posted}, pending {pending}",
                f"{bundle.BALANCES_FILE} does not balance in {currency}",
            )


def _check_files(root: Path, findings: _Findings) -> None:
    try:
        present = {entry.name for entry in os.scandir(root)}
    except OSError as error:
        raise BundleUnreadable(f"cannot list the bundle directory {str(root)!r}: {error}") from None
    for name in sorted(bundle.BUNDLE_FILES - present):
        findings.add("bundle_files", None, f"a file {name}", "none", f"the bundle has no {name}")
    for name in sorted(present - bundle.BUNDLE_FILES):
        findings.add(
            "bundle_files",
            None,
            "no other file",
            _quote(name),
            "the bundle holds a file the manifest does not cover",
        )


def verify_bundle(
    directory: str | os.PathLike[str],
    *,
    previous_checkpoint: bytes | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> Report:
    """Verify an export bundle; return every finding (see the module docstring).

    ``previous_checkpoint`` is a signed checkpoint note kept from an earlier
    audit: it must verify with the trust file's log keys, and its root must be
    the root of this bundle's leaves at its size. ``workers`` processes check
    the leaves and participant signatures (default ``os.cpu_count()``; 1
    checks inline; the report is the same).
    ``progress`` shows a progress bar on stderr for bundles over
    :data:`PROGRESS_THRESHOLD_LEAVES` leaves. Raises :class:`BundleUnreadable`
    only when ``directory`` is not a readable directory: everything wrong
    inside it is a finding.
    """
    root = Path(directory)
    if not root.is_dir():
        raise BundleUnreadable(f"expected a bundle directory, got {str(root)!r}")
    if workers is None:
        workers = os.cpu_count() or 1
    if not 1 <= workers <= WORKERS_MAX:
        raise ValueError(f"workers: expected 1..{WORKERS_MAX}, got {workers}")
    findings = _Findings()
    report = Report()
    _check_files(root, findings)
    trust = _load_trust(root, findings)
    manifest = _check_manifest(root, trust, findings, report)
    claims: dict[int, list[_RootClaim]] = {}
    _load_checkpoints(root, trust, findings, report, claims)
    _add_previous_claim(previous_checkpoint, trust, findings, report, claims)
    expected_size = manifest.tree_size if manifest is not None else None

    signatures: _SignatureChecker
    leaf_pass: _LeafPass

    def on_failure(index: int, signer: str, payload: bytes, signature: bytes) -> None:
        leaf_pass.signature_failed(index, signer, payload, signature)

    pool = _Workers(workers)
    signatures = _SignatureChecker(pool, on_failure)
    leaf_pass = _LeafPass(findings, trust, claims, signatures, pool, report)
    leaf_pass.check_claims_at_size()  # claims at size 0: the empty tree
    show = progress and expected_size is not None and expected_size > PROGRESS_THRESHOLD_LEAVES
    try:
        with tqdm(
            total=expected_size,
            unit="leaf",
            unit_scale=True,
            disable=not show,
            file=sys.stderr,
            desc="verifying",
            mininterval=0.5,
        ) as bar:
            report.entries_checked = _stream_leaves(root, leaf_pass, findings, bar)
        signatures.finish()
    finally:
        pool.close()
    leaf_count = report.entries_checked
    report.signatures_verified = signatures.verified
    report.tree_size = expected_size if expected_size is not None else leaf_count
    if expected_size is not None and expected_size != leaf_count:
        findings.add(
            "tree_size",
            None,
            str(expected_size),
            str(leaf_count),
            f"the manifest's tree size is not the number of leaves in {bundle.LEAVES_FILE}",
        )
    for size in sorted(leaf_pass.claims):
        for claim in leaf_pass.claims[size]:
            check = (
                "previous_checkpoint" if claim.check == "previous_checkpoint" else "checkpoint_size"
            )
            findings.add(
                check,
                None,
                f"a tree size of at most {leaf_count} (the leaves in the bundle)",
                str(size),
                f"{claim.label} covers leaves the bundle does not hold",
            )
    if trust is not None:
        _check_trust_against_leaves(leaf_pass.registrations, trust, leaf_count, findings)
    _check_balances(root, leaf_pass.accounts, report.tree_size, findings, report)
    report.findings = sorted(findings.kept, key=Finding.sort_key)
    report.finding_counts = dict(findings.counts)
    return report


def _stream_leaves(root: Path, leaf_pass: _LeafPass, findings: _Findings, bar: tqdm[Any]) -> int:
    """Read the leaves in chunks for ``leaf_pass``; return how many were read."""
    count = 0
    chunk: list[bytes] = []
    problem: _Raw | None = None
    try:
        for leaf in bundle.read_framed(root / bundle.LEAVES_FILE):
            chunk.append(leaf)
            if len(chunk) == LEAF_CHUNK_SIZE:
                leaf_pass.add_chunk(count, chunk)
                count += len(chunk)
                bar.update(len(chunk))
                chunk = []
    except FramingError as error:
        problem = (
            "framing",
            error.frame,
            "complete frames",
            f"frame {error.frame} is not",
            error.message,
        )
    except FileNotFoundError:
        pass
    except OSError as error:
        problem = ("bundle_files", None, "a readable file", str(error), bundle.LEAVES_FILE)
    if chunk:
        leaf_pass.add_chunk(count, chunk)
        count += len(chunk)
        bar.update(len(chunk))
    leaf_pass.finish()
    # After the leaves before it, as when it stopped the pass.
    if problem is not None:
        findings.add(*problem)
    return count


def _add_previous_claim(
    note: bytes | None,
    trust: Trust | None,
    findings: _Findings,
    report: Report,
    claims: dict[int, list[_RootClaim]],
) -> int | None:
    """Check 3: the auditor's earlier checkpoint verifies and becomes a root claim."""
    if note is None:
        return None
    if trust is None:
        findings.add(
            "previous_checkpoint",
            None,
            "a trust file to verify it with",
            "none",
            "the previous checkpoint cannot be checked without the trust file",
        )
        return None
    checkpoint = _open_checkpoint(
        note,
        trust,
        -1,
        findings,
        report,
        checks=("previous_checkpoint",) * 4,
        label="the previous checkpoint",
    )
    if checkpoint is None:
        return None
    claims.setdefault(checkpoint.size, []).append(
        _RootClaim(
            "previous_checkpoint",
            f"the previous checkpoint (tree size {checkpoint.size})",
            checkpoint.root_hash,
        )
    )
    return checkpoint.size


# --- Command line ------------------------------------------------------------------------------

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """Escape control characters: messages quote bundle content, which is untrusted."""
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def format_report(report: Report, out: TextIO) -> None:
    """Write the human-readable report: status, figures, then one line per finding."""
    out.write("OK\n" if report.ok else "FAILED\n")
    out.write(f"tree size: {report.tree_size}\n")
    out.write(f"entries: {report.entries_checked}\n")
    out.write(f"checkpoints: {report.checkpoints_checked}\n")
    out.write(
        f"signatures: {report.signatures_checked} checked, "
        f"{report.signatures_verified} distinct verified, "
        f"{report.unsigned_entries} entries unsigned\n"
    )
    out.write(f"accounts: {report.accounts_checked}\n")
    if report.unknown_signatures_ignored:
        out.write(f"signatures by unknown keys ignored: {report.unknown_signatures_ignored}\n")
    first = report.first_failure()
    if first is not None:
        where = "bundle" if first.index is None else f"index {first.index}"
        out.write(f"first failure: {where}: {first.check}\n")
        counts = ", ".join(
            f"{name} {count}"
            for name, count in sorted(
                report.finding_counts.items(), key=lambda item: _PRECEDENCE[item[0]]
            )
        )
        out.write(f"findings: {counts}\n")
    for finding in report.findings:
        where = "bundle" if finding.index is None else f"index {finding.index}"
        out.write(
            _printable(
                f"{where}: {finding.check}: {finding.message} "
                f"(expected {finding.expected}, got {finding.got})"
            )
            + "\n"
        )
    if report.findings_omitted:
        out.write(
            f"... and {report.findings_omitted} more findings "
            f"(at most {FINDINGS_PER_CHECK_MAX} are listed per check)\n"
        )


class _ArgumentParser(argparse.ArgumentParser):
    """Raises instead of exiting, so ``main`` returns its status to its caller."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= WORKERS_MAX:
        raise argparse.ArgumentTypeError(f"expected 1..{WORKERS_MAX}, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="settlement audit",
        description="Verify an export bundle of the settlement ledger offline.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    verify = commands.add_parser(
        "verify",
        help="verify a bundle directory",
        description=(
            "Verify every leaf, signature, checkpoint and closing balance of a bundle. "
            "Exit status: 0 verified, 1 findings, 2 usage error or unreadable bundle."
        ),
    )
    verify.add_argument("directory", metavar="DIR", help="the bundle directory")
    verify.add_argument(
        "--previous-checkpoint",
        metavar="FILE",
        help="a signed checkpoint kept from an earlier audit; must be consistent with this bundle",
    )
    verify.add_argument("--json", action="store_true", help="print one JSON document")
    verify.add_argument(
        "--workers",
        type=_workers,
        default=None,
        metavar="N",
        help="processes checking leaves and signatures (default: the number of CPUs)",
    )
    verify.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``settlement audit verify DIR ...``: 0 verified, 1 findings, 2 usage or unreadable."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        options = _parser().parse_args(arguments)
    except _UsageError:
        return EXIT_USAGE
    except SystemExit as exit_request:  # --help
        return EXIT_VERIFIED if exit_request.code in (0, None) else EXIT_USAGE
    previous: bytes | None = None
    if options.previous_checkpoint is not None:
        try:
            previous = _read_previous(Path(options.previous_checkpoint))
        except OSError as error:
            sys.stderr.write(
                f"settlement audit verify: cannot read the previous checkpoint: {error}\n"
            )
            return EXIT_USAGE
    try:
        report = verify_bundle(
            options.directory,
            previous_checkpoint=previous,
            workers=options.workers,
            progress=not options.no_progress,
        )
    except BundleUnreadable as error:
        sys.stderr.write(f"settlement audit verify: {error.message}\n")
        return EXIT_USAGE
    if options.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        format_report(report, sys.stdout)
    return EXIT_VERIFIED if report.ok else EXIT_FINDINGS


def _read_previous(path: Path) -> bytes:
    with open(path, "rb") as source:
        data = source.read(bundle.FRAME_SIZE_MAX_BYTES + 1)
    return data
