"""The export bundle: file names, framing, canonical JSON files and the manifest.

A bundle is a directory an auditor verifies offline (DESIGN.md section 3,
"Export bundle"; ``ledger.verify`` is the verifier, ``ledger.export`` the
writer). It holds five files:

- :data:`LEAVES_FILE`: every leaf in index order, each framed as a 4-byte
  big-endian unsigned length and the leaf bytes (:func:`write_framed`);
- :data:`CHECKPOINTS_FILE`: every checkpoint issued up to the bundle's tree
  size, ascending, framed the same way; each is a C2SP signed note of a
  C2SP tlog-checkpoint (``ledger.checkpoint``);
- :data:`TRUST_FILE`: RFC 8785 JSON naming the log keys and the participant
  keys with the ranges in which each may sign (:func:`parse_trust`);
- :data:`BALANCES_FILE`: RFC 8785 JSON with every account's four closing
  totals at the tree size (:func:`parse_balances`);
- :data:`MANIFEST_FILE`: a C2SP signed note by the log key whose text lists
  the SHA-256 of every other file (:func:`manifest_text`).

Readers are strict, as the verifier must be: one value has one spelling
(canonical JSON, canonical base64, decimal strings without leading zeros), and
every limit is a named constant, checked before the work it bounds.

Standard library and ``cryptography`` only (through ``ledger.note``): the
offline verifier runs this. In particular the canonical JSON codec here does
not use ``ledger.canonical``, which imports the third-party ``rfc8785``
package; the two are held against each other in the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from ledger import canonical
from ledger.errors import LedgerError
from ledger.note import NoteError, NoteVerifier

__all__ = [
    "BALANCES_FILE",
    "BALANCES_FORMAT",
    "BUNDLE_FILES",
    "CHECKPOINTS_FILE",
    "FRAME_HEADER_SIZE_BYTES",
    "FRAME_SIZE_MAX_BYTES",
    "INT64_MAX",
    "JSON_FILE_SIZE_MAX_BYTES",
    "LEAF_SIZE_MAX_BYTES",
    "LEAVES_FILE",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "MANIFEST_HASHED_FILES",
    "SAFE_INTEGER_MAX",
    "TRUST_FILE",
    "TRUST_FORMAT",
    "AccountBalance",
    "Balances",
    "BundleFormatError",
    "FramingError",
    "LogKey",
    "Manifest",
    "NotCanonicalJson",
    "ParticipantKey",
    "Trust",
    "balances_document",
    "decode_canonical",
    "encode_canonical",
    "file_sha256",
    "is_id",
    "manifest_file_hashes",
    "manifest_text",
    "parse_balances",
    "parse_decimal",
    "parse_manifest",
    "parse_trust",
    "read_framed",
    "read_json",
    "trust_document",
    "write_framed",
    "write_json",
]

# --- Names ---------------------------------------------------------------------

LEAVES_FILE = "leaves.bin"
CHECKPOINTS_FILE = "checkpoints.bin"
TRUST_FILE = "trust.json"
BALANCES_FILE = "balances.json"
MANIFEST_FILE = "manifest.note"

MANIFEST_HASHED_FILES = (BALANCES_FILE, CHECKPOINTS_FILE, LEAVES_FILE, TRUST_FILE)
"""The files the manifest lists, sorted by name as its lines are."""

BUNDLE_FILES = frozenset((*MANIFEST_HASHED_FILES, MANIFEST_FILE))
"""Every file of a bundle: a verifier reports any other file as extra."""

TRUST_FORMAT = "settlement.v1/trust"
BALANCES_FORMAT = "settlement.v1/balances"
MANIFEST_FORMAT = "settlement.v1/bundle-manifest"
"""First line of the manifest text: says what the signed note is, so a log key's
signature over a manifest can never pass for a checkpoint (whose first line is
the origin) and the reverse."""

# --- Limits ----------------------------------------------------------------------

FRAME_HEADER_SIZE_BYTES = 4
"""A frame starts with its length as a 4-byte big-endian unsigned integer."""

LEAF_SIZE_MAX_BYTES = 1024 * 1024
"""Largest leaf. A leaf is a few kilobytes: the entry, up to 128 postings, 4 KiB
of metadata (64 KiB for an event body) and the signed instruction (64 KiB at
most, common.proto). 1 MiB leaves room and still bounds what one frame of a
hostile file makes the verifier allocate."""

FRAME_SIZE_MAX_BYTES = LEAF_SIZE_MAX_BYTES
"""Largest frame of either framed file. Checkpoint notes are bounded by the
same figure (``ledger.note.NOTE_SIZE_MAX_BYTES``)."""

JSON_FILE_SIZE_MAX_BYTES = 512 * 1024 * 1024
"""Largest trust or balances file read. Balances take about 200 bytes per
account, so this admits over two million accounts; a hostile file cannot make
the verifier read gigabytes into memory before parsing fails."""

MANIFEST_SIZE_MAX_BYTES = 1024 * 1024
"""Largest manifest note (``ledger.note.NOTE_SIZE_MAX_BYTES``): a few hundred bytes in practice."""

INT64_MAX = 2**63 - 1
"""Amounts and totals fit PostgreSQL BIGINT and protobuf int64 (``ledger.money``)."""

UINT64_MAX = 2**64 - 1
"""Tree sizes and leaf indexes are uint64 (RFC 9162 section 4)."""

SAFE_INTEGER_MAX = canonical.SAFE_INTEGER_MAX
"""RFC 8785 section 3.2.2.3 numbers are IEEE 754 doubles: larger integers have no
exact canonical form, so JSON integers beyond this are refused."""

ED25519_PUBLIC_KEY_SIZE_BYTES = 32
"""RFC 8032 section 5.1.5."""

READ_CHUNK_SIZE_BYTES = 1024 * 1024
"""Buffer for streaming reads and hashing."""

ERROR_EXCERPT_LENGTH_MAX = 60
"""Characters of untrusted input quoted in an error message, at most."""

_DECIMAL = re.compile("0|[1-9][0-9]*")
_FILE_NAME = re.compile("[A-Za-z0-9._-]{1,64}")
_SHA256_HEX = re.compile("[0-9a-f]{64}")
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


class BundleFormatError(LedgerError):
    """A bundle file breaks the bundle format: the message says where and how."""

    code = "bundle_format_invalid"
    kind = "invalid"


class FramingError(BundleFormatError):
    """A framed file ends inside a frame, or a frame's length is over the limit.

    ``frame`` is the 0-based number of the frame that failed (the leaf index in
    :data:`LEAVES_FILE`) and ``offset`` the byte offset of its length header.
    """

    code = "bundle_framing_invalid"

    def __init__(self, message: str, *, frame: int, offset: int) -> None:
        super().__init__(message)
        self.frame = frame
        self.offset = offset


class NotCanonicalJson(BundleFormatError):
    """Bytes that must be RFC 8785 JSON are not, or hold values it cannot represent."""

    code = "json_must_be_canonical"


def excerpt(value: object) -> str:
    """Quote untrusted input for a message: repr (escapes control characters), shortened."""
    if isinstance(value, (str, bytes)) and len(value) > ERROR_EXCERPT_LENGTH_MAX:
        return repr(value[:ERROR_EXCERPT_LENGTH_MAX]) + "..."
    text = repr(value)
    if len(text) > 2 * ERROR_EXCERPT_LENGTH_MAX:
        return text[: 2 * ERROR_EXCERPT_LENGTH_MAX] + "..."
    return text


# --- Framing -----------------------------------------------------------------------

_FRAME_HEADER = struct.Struct(">I")


def write_framed(path: str | os.PathLike[str], frames: Iterable[bytes]) -> int:
    """Write each item of ``frames`` as a 4-byte big-endian length then its bytes.

    Streams: holds one frame at a time. Refuses (``BundleFormatError``) a frame
    that is not bytes or is larger than :data:`FRAME_SIZE_MAX_BYTES`, before
    writing it; the file is then incomplete and must be discarded. Returns the
    number of frames written.
    """
    count = 0
    with open(path, "wb", buffering=READ_CHUNK_SIZE_BYTES) as output:
        for frame in frames:
            if not isinstance(frame, (bytes, bytearray, memoryview)):
                raise BundleFormatError(
                    f"frame {count}: expected bytes, got {type(frame).__name__}"
                )
            size = len(frame)
            if size > FRAME_SIZE_MAX_BYTES:
                raise BundleFormatError(
                    f"frame {count}: expected at most {FRAME_SIZE_MAX_BYTES} bytes, "
                    f"got {size} bytes"
                )
            output.write(_FRAME_HEADER.pack(size))
            output.write(frame)
            count += 1
    return count


def read_framed(
    path: str | os.PathLike[str], *, size_max: int = FRAME_SIZE_MAX_BYTES
) -> Iterator[bytes]:
    """Yield the frames of a file written by :func:`write_framed`, in order.

    Streams: reads one frame at a time and never the whole file. Raises
    :class:`FramingError` at the first frame whose header or body is cut
    short by the end of the file, or whose length exceeds ``size_max``
    (checked before anything is allocated for it); the frames before it have
    already been yielded. The file is opened on the first ``next()``.
    """
    name = Path(path).name
    with open(path, "rb", buffering=READ_CHUNK_SIZE_BYTES) as source:
        frame = 0
        offset = 0
        while True:
            header = source.read(FRAME_HEADER_SIZE_BYTES)
            if not header:
                return
            if len(header) < FRAME_HEADER_SIZE_BYTES:
                raise FramingError(
                    f"{name} frame {frame} at byte {offset}: expected a "
                    f"{FRAME_HEADER_SIZE_BYTES}-byte length header, got {len(header)} "
                    "byte(s) before the end of the file (truncated)",
                    frame=frame,
                    offset=offset,
                )
            (size,) = _FRAME_HEADER.unpack(header)
            if size > size_max:
                raise FramingError(
                    f"{name} frame {frame} at byte {offset}: expected a length of at most "
                    f"{size_max} bytes, got {size}",
                    frame=frame,
                    offset=offset,
                )
            body = source.read(size)
            if len(body) < size:
                raise FramingError(
                    f"{name} frame {frame} at byte {offset}: expected {size} bytes, "
                    f"got {len(body)} before the end of the file (truncated)",
                    frame=frame,
                    offset=offset,
                )
            yield body
            frame += 1
            offset += FRAME_HEADER_SIZE_BYTES + size


# --- Hashes and the manifest --------------------------------------------------------


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Lowercase hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as source:
        while chunk := source.read(READ_CHUNK_SIZE_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_file_hashes(directory: str | os.PathLike[str]) -> dict[str, str]:
    """SHA-256 of each file the manifest lists (:data:`MANIFEST_HASHED_FILES`)."""
    root = Path(directory)
    return {name: file_sha256(root / name) for name in MANIFEST_HASHED_FILES}


@dataclass(frozen=True)
class Manifest:
    """The signed text of :data:`MANIFEST_FILE`: origin, tree size, file hashes (hex)."""

    origin: str
    tree_size: int
    file_hashes: Mapping[str, str]


def _check_origin(origin: object, what: str) -> str:
    if not isinstance(origin, str) or not origin:
        raise BundleFormatError(f"{what}: expected a non-empty origin, got {excerpt(origin)}")
    if _CONTROL_CHARACTER.search(origin) or origin != origin.strip():
        raise BundleFormatError(
            f"{what}: expected an origin without control characters or surrounding "
            f"spaces, got {excerpt(origin)}"
        )
    return origin


def manifest_text(origin: str, tree_size: int, file_hashes: Mapping[str, str]) -> str:
    """The manifest note text: format line, origin, tree size, then one line per file.

    ``settlement.v1/bundle-manifest\\n{origin}\\n{tree_size}\\n`` followed by
    ``{sha256 hex} {file name}\\n`` for each file, sorted by name. Refuses
    (``BundleFormatError``) names outside ``[A-Za-z0-9._-]``, the manifest's
    own name, hashes that are not 64 lowercase hex digits, and tree sizes
    outside uint64. :func:`parse_manifest` inverts it exactly.
    """
    _check_origin(origin, "manifest")
    if type(tree_size) is not int or not 0 <= tree_size <= UINT64_MAX:
        raise BundleFormatError(f"manifest: expected a uint64 tree size, got {tree_size!r}")
    lines = [MANIFEST_FORMAT, origin, str(tree_size)]
    for name in sorted(file_hashes):
        digest = file_hashes[name]
        if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or name == MANIFEST_FILE:
            raise BundleFormatError(f"manifest: expected a plain file name, got {excerpt(name)}")
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
            raise BundleFormatError(
                f"manifest: expected 64 lowercase hex digits for {name}, got {excerpt(digest)}"
            )
        lines.append(f"{digest} {name}")
    return "".join(f"{line}\n" for line in lines)


def parse_manifest(text: str) -> Manifest:
    """Parse a manifest text strictly; the inverse of :func:`manifest_text`.

    Refuses a missing final newline, a wrong format line, a tree size with a
    sign or leading zeros, a malformed line, and names out of order or
    repeated, with ``BundleFormatError`` naming the line.
    """
    if not isinstance(text, str) or not text.endswith("\n"):
        raise BundleFormatError("manifest: expected text ending in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise BundleFormatError(
            f"manifest: expected at least 3 lines (format, origin, tree size), got {len(lines)}"
        )
    if lines[0] != MANIFEST_FORMAT:
        raise BundleFormatError(
            f"manifest line 1: expected {MANIFEST_FORMAT!r}, got {excerpt(lines[0])}"
        )
    origin = _check_origin(lines[1], "manifest line 2")
    tree_size = parse_decimal(lines[2], "manifest line 3 (tree size)", UINT64_MAX)
    file_hashes: dict[str, str] = {}
    previous = ""
    for number, line in enumerate(lines[3:], 4):
        digest, separator, name = line.partition(" ")
        if not separator or not _SHA256_HEX.fullmatch(digest) or not _FILE_NAME.fullmatch(name):
            raise BundleFormatError(
                f"manifest line {number}: expected '<64 lowercase hex> <file name>', "
                f"got {excerpt(line)}"
            )
        if name <= previous:
            raise BundleFormatError(
                f"manifest line {number}: expected file names in strictly increasing order, "
                f"got {excerpt(name)} after {excerpt(previous)}"
            )
        previous = name
        file_hashes[name] = digest
    return Manifest(origin=origin, tree_size=tree_size, file_hashes=file_hashes)


# --- Canonical JSON (RFC 8785) ---------------------------------------------------------


def encode_canonical(value: Any) -> bytes:
    """RFC 8785 bytes (:func:`ledger.canonical.encode`), errors as :class:`NotCanonicalJson`."""
    try:
        return canonical.encode(value)
    except canonical.NotCanonical as error:
        raise NotCanonicalJson(error.message) from None


def decode_canonical(data: bytes) -> Any:
    """Strict RFC 8785 parse (:func:`ledger.canonical.decode`); errors as NotCanonicalJson."""
    try:
        return canonical.decode(data)
    except canonical.NotCanonical as error:
        raise NotCanonicalJson(error.message) from None


def write_json(path: str | os.PathLike[str], document: Any) -> None:
    """Write ``document`` as RFC 8785 bytes (:func:`encode_canonical`), no final newline."""
    Path(path).write_bytes(encode_canonical(document))


def read_json(path: str | os.PathLike[str], *, size_max: int = JSON_FILE_SIZE_MAX_BYTES) -> Any:
    """Read a canonical JSON file (:func:`decode_canonical`), refusing one over ``size_max``."""
    with open(path, "rb") as source:
        data = source.read(size_max + 1)
    if len(data) > size_max:
        raise BundleFormatError(f"{Path(path).name}: expected at most {size_max} bytes, got more")
    return decode_canonical(data)


# --- Field readers -----------------------------------------------------------------------


def parse_decimal(value: object, what: str, maximum: int) -> int:
    """An unsigned decimal string without sign or leading zeros, at most ``maximum``."""
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise BundleFormatError(
            f"{what}: expected a decimal string without sign or leading zeros, got {excerpt(value)}"
        )
    if len(value) > len(str(maximum)) or int(value) > maximum:
        raise BundleFormatError(f"{what}: expected at most {maximum}, got {excerpt(value)}")
    return int(value)


def decode_base64(value: object, what: str) -> bytes:
    """Standard padded base64 (RFC 4648 section 4) in its one canonical spelling."""
    if isinstance(value, str) and value.isascii():
        try:
            decoded = base64.b64decode(value, validate=True)
        except binascii.Error:
            pass
        else:
            if base64.b64encode(decoded).decode("ascii") == value:
                return decoded
    raise BundleFormatError(f"{what}: expected canonical standard base64, got {excerpt(value)}")


def _require_object(value: object, what: str, fields: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BundleFormatError(f"{what}: expected a JSON object, got {type(value).__name__}")
    if set(value) != set(fields):
        missing = sorted(set(fields) - set(value))
        extra = sorted(set(value) - set(fields))
        raise BundleFormatError(
            f"{what}: expected exactly the fields {sorted(fields)}, "
            f"got missing {missing} and unknown {[excerpt(name) for name in extra]}"
        )
    return value


def _require_list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BundleFormatError(f"{what}: expected a JSON array, got {type(value).__name__}")
    return value


def _require_id(value: object, what: str) -> str:
    # ledger.validation.validate_id: 1..128 printable ASCII characters, no spaces.
    if not is_id(value):
        raise BundleFormatError(
            f"{what}: expected 1..{ID_LENGTH_MAX} printable ASCII characters without "
            f"spaces, got {excerpt(value)}"
        )
    return value


ID_LENGTH_MAX = 128
"""``ledger.validation.ID_MAX_LENGTH``: ids, signers and account ids."""

_ID = re.compile(f"[!-~]{{1,{ID_LENGTH_MAX}}}")


def is_id(value: object) -> TypeGuard[str]:
    """``ledger.validation.validate_id``: 1..128 printable ASCII characters, no spaces."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


# --- Trust file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogKey:
    """A log key and the tree sizes (inclusive; ``None``: no end) it may sign at."""

    verifier: NoteVerifier
    first_tree_size: int
    last_tree_size: int | None

    def covers(self, tree_size: int) -> bool:
        """Whether this key may sign a checkpoint or manifest of ``tree_size``."""
        return self.first_tree_size <= tree_size and (
            self.last_tree_size is None or tree_size <= self.last_tree_size
        )


@dataclass(frozen=True)
class ParticipantKey:
    """A participant's Ed25519 key and the leaf indexes (inclusive; ``None``: no end)
    whose instructions it may sign (participant.proto ``SigningKey``)."""

    signer: str
    public_key: bytes
    first_index: int
    last_index: int | None

    def covers(self, index: int) -> bool:
        """Whether this key may sign the instruction of the leaf at ``index``."""
        return self.first_index <= index and (self.last_index is None or index <= self.last_index)


@dataclass(frozen=True)
class Trust:
    """The trust file: the log's origin, its keys, and every participant key."""

    origin: str
    log_keys: tuple[LogKey, ...]
    participant_keys: tuple[ParticipantKey, ...]


_TRUST_FIELDS = ("format", "origin", "log_keys", "participant_keys")
_LOG_KEY_FIELDS = ("vkey", "first_tree_size", "last_tree_size")
_PARTICIPANT_KEY_FIELDS = ("signer", "public_key", "first_index", "last_index")


def _parse_range(
    first: object, last: object, what: str, names: tuple[str, str]
) -> tuple[int, int | None]:
    first_value = parse_decimal(first, f"{what}.{names[0]}", UINT64_MAX)
    if last is None:
        return first_value, None
    last_value = parse_decimal(last, f"{what}.{names[1]}", UINT64_MAX)
    if last_value < first_value:
        raise BundleFormatError(
            f"{what}: expected {names[1]} >= {names[0]} {first_value}, got {last_value}"
        )
    return first_value, last_value


def parse_trust(document: Any) -> Trust:
    """Read a decoded trust file strictly; raise ``BundleFormatError`` naming the field.

    Every log key is a C2SP note verifier key named after the origin (the
    tlog-checkpoint convention ``ledger.checkpoint`` enforces); ranges are
    decimal strings with ``last >= first`` or null.
    """
    top = _require_object(document, TRUST_FILE, _TRUST_FIELDS)
    if top["format"] != TRUST_FORMAT:
        raise BundleFormatError(
            f"{TRUST_FILE}.format: expected {TRUST_FORMAT!r}, got {excerpt(top['format'])}"
        )
    origin = _check_origin(top["origin"], f"{TRUST_FILE}.origin")
    log_keys: list[LogKey] = []
    for position, item in enumerate(_require_list(top["log_keys"], f"{TRUST_FILE}.log_keys")):
        what = f"{TRUST_FILE}.log_keys[{position}]"
        fields = _require_object(item, what, _LOG_KEY_FIELDS)
        vkey = fields["vkey"]
        if not isinstance(vkey, str):
            raise BundleFormatError(f"{what}.vkey: expected a string, got {type(vkey).__name__}")
        try:
            verifier = NoteVerifier.from_vkey(vkey)
        except NoteError as error:
            raise BundleFormatError(f"{what}.vkey: {error.message}") from None
        if verifier.name != origin:
            raise BundleFormatError(
                f"{what}.vkey: expected a key named after the origin {excerpt(origin)}, "
                f"got one named {excerpt(verifier.name)}"
            )
        first, last = _parse_range(
            fields["first_tree_size"],
            fields["last_tree_size"],
            what,
            ("first_tree_size", "last_tree_size"),
        )
        log_keys.append(LogKey(verifier, first, last))
    if not log_keys:
        raise BundleFormatError(f"{TRUST_FILE}.log_keys: expected at least one log key, got none")
    participant_keys: list[ParticipantKey] = []
    participants = _require_list(top["participant_keys"], f"{TRUST_FILE}.participant_keys")
    for position, item in enumerate(participants):
        what = f"{TRUST_FILE}.participant_keys[{position}]"
        fields = _require_object(item, what, _PARTICIPANT_KEY_FIELDS)
        signer = _require_id(fields["signer"], f"{what}.signer")
        public_key = decode_base64(fields["public_key"], f"{what}.public_key")
        if len(public_key) != ED25519_PUBLIC_KEY_SIZE_BYTES:
            raise BundleFormatError(
                f"{what}.public_key: expected {ED25519_PUBLIC_KEY_SIZE_BYTES} bytes, "
                f"got {len(public_key)}"
            )
        first, last = _parse_range(
            fields["first_index"], fields["last_index"], what, ("first_index", "last_index")
        )
        participant_keys.append(ParticipantKey(signer, public_key, first, last))
    return Trust(origin=origin, log_keys=tuple(log_keys), participant_keys=tuple(participant_keys))


def trust_document(trust: Trust) -> dict[str, Any]:
    """The JSON document of a :class:`Trust` (for :func:`write_json`)."""
    return {
        "format": TRUST_FORMAT,
        "origin": trust.origin,
        "log_keys": [
            {
                "vkey": key.verifier.vkey(),
                "first_tree_size": str(key.first_tree_size),
                "last_tree_size": _optional_decimal(key.last_tree_size),
            }
            for key in trust.log_keys
        ],
        "participant_keys": [
            {
                "signer": key.signer,
                "public_key": base64.b64encode(key.public_key).decode("ascii"),
                "first_index": str(key.first_index),
                "last_index": _optional_decimal(key.last_index),
            }
            for key in trust.participant_keys
        ],
    }


def _optional_decimal(value: int | None) -> str | None:
    return None if value is None else str(value)


# --- Balances file -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountBalance:
    """One account's four closing totals, in integer minor units."""

    account: str
    currency: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    def totals(self) -> tuple[int, int, int, int]:
        """(debits_posted, credits_posted, debits_pending, credits_pending)."""
        return (self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending)


@dataclass(frozen=True)
class Balances:
    """The balances file: every account's closing totals at ``tree_size``, by account id."""

    tree_size: int
    accounts: tuple[AccountBalance, ...]


TOTAL_NAMES = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
"""The four totals of an account, in the order :meth:`AccountBalance.totals` returns them."""

_BALANCES_FIELDS = ("format", "tree_size", "accounts")
_ACCOUNT_FIELDS = ("account", "currency", *TOTAL_NAMES)
_CURRENCY = re.compile("[A-Z]{3}")


def parse_balances(document: Any) -> Balances:
    """Read a decoded balances file strictly; raise ``BundleFormatError`` naming the field.

    Accounts must be sorted by id, strictly (so each appears once); totals are
    decimal strings from 0 to 2**63 - 1.
    """
    top = _require_object(document, BALANCES_FILE, _BALANCES_FIELDS)
    if top["format"] != BALANCES_FORMAT:
        raise BundleFormatError(
            f"{BALANCES_FILE}.format: expected {BALANCES_FORMAT!r}, got {excerpt(top['format'])}"
        )
    tree_size = parse_decimal(top["tree_size"], f"{BALANCES_FILE}.tree_size", UINT64_MAX)
    accounts: list[AccountBalance] = []
    previous: str | None = None
    for position, item in enumerate(_require_list(top["accounts"], f"{BALANCES_FILE}.accounts")):
        what = f"{BALANCES_FILE}.accounts[{position}]"
        fields = _require_object(item, what, _ACCOUNT_FIELDS)
        account = _require_id(fields["account"], f"{what}.account")
        if previous is not None and account <= previous:
            raise BundleFormatError(
                f"{what}.account: expected ids in strictly increasing order, "
                f"got {excerpt(account)} after {excerpt(previous)}"
            )
        previous = account
        currency = fields["currency"]
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            raise BundleFormatError(
                f"{what}.currency: expected an ISO 4217 code, got {excerpt(currency)}"
            )
        totals = [parse_decimal(fields[name], f"{what}.{name}", INT64_MAX) for name in TOTAL_NAMES]
        accounts.append(AccountBalance(account, currency, *totals))
    return Balances(tree_size=tree_size, accounts=tuple(accounts))


def balances_document(balances: Balances) -> dict[str, Any]:
    """The JSON document of a :class:`Balances` (for :func:`write_json`), sorted by account."""
    return {
        "format": BALANCES_FORMAT,
        "tree_size": str(balances.tree_size),
        "accounts": [
            {
                "account": item.account,
                "currency": item.currency,
                "debits_posted": str(item.debits_posted),
                "credits_posted": str(item.credits_posted),
                "debits_pending": str(item.debits_pending),
                "credits_pending": str(item.credits_pending),
            }
            for item in sorted(balances.accounts, key=lambda item: item.account)
        ],
    }
