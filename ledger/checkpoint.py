"""Checkpoints: the C2SP ``tlog-checkpoint`` note body, signed as a C2SP signed note.

Implements c2sp.org/tlog-checkpoint, "Note text": a sequence of at least three
non-empty lines, each ending in a newline:

1. the origin, a non-empty unique identifier of the log;
2. the tree size, ASCII decimal, no leading zeros (``0`` for the empty tree);
3. the root hash, standard base64 of the RFC 6962 / RFC 9162 Merkle tree root
   (SHA-256 here, so 32 bytes; DESIGN.md section 3);
4. optional extension lines, opaque and non-empty.

"Signatures": the log's key name SHOULD match the origin line. Our log always
does so: :func:`sign_checkpoint` refuses a signer named otherwise, and
:func:`open_checkpoint` accepts a checkpoint only with a verified signature by
a key named after the origin, so a witness's cosignature alone (another name)
never stands in for the log's. Unknown signatures are ignored, as the signed-note
spec requires.

Standard library and ``cryptography`` only: the offline verifier runs this.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import LedgerError
from ledger.note import NoteSigner, NoteVerifier, open_note, sign_note

ROOT_HASH_SIZE_BYTES = 32
"""RFC 9162 section 2.1 over SHA-256: a root hash is 32 bytes."""

TREE_SIZE_MAX = 2**64 - 1
"""RFC 9162 section 4.10: tree_size is a uint64."""

TREE_SIZE_DIGITS_MAX = len(str(TREE_SIZE_MAX))
"""Decimal digits of the largest tree size; longer lines are refused unparsed."""

CHECKPOINT_LINES_MIN = 3
"""tlog-checkpoint, "Note text": origin, tree size and root hash."""

_TREE_SIZE_DECIMAL = re.compile("0|[1-9][0-9]*")
_CONTROL_CHARACTER = re.compile("[\x00-\x1f]")


class CheckpointError(LedgerError):
    """A checkpoint body breaks tlog-checkpoint, or is not the expected log's."""

    code = "checkpoint_invalid"
    kind = "invalid"


def _check_line(value: str, what: str) -> None:
    """A checkpoint line: non-empty text with no newline or control character."""
    if not isinstance(value, str):
        raise CheckpointError(f"expected the {what} as str, got {type(value).__name__}")
    if not value:
        raise CheckpointError(f"expected a non-empty {what}, got ''")
    control = _CONTROL_CHARACTER.search(value)
    if control is not None:
        raise CheckpointError(
            f"expected the {what} without newline or control characters, "
            f"got U+{ord(control.group()):04X} in {value[:60]!r}"
        )


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head at one size (tlog-checkpoint, "Note text").

    ``origin`` identifies the log; ``size`` is the number of leaves;
    ``root_hash`` is the 32-byte RFC 9162 Merkle tree root at that size;
    ``extensions`` are the optional extension lines, without their newlines.
    Invalid field values are refused on construction.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise CheckpointError(f"expected the tree size as int, got {type(self.size).__name__}")
        if not 0 <= self.size <= TREE_SIZE_MAX:
            raise CheckpointError(
                f"expected a tree size from 0 to {TREE_SIZE_MAX}, got {self.size}"
            )
        if not isinstance(self.root_hash, bytes):
            raise CheckpointError(
                f"expected the root hash as bytes, got {type(self.root_hash).__name__}"
            )
        if len(self.root_hash) != ROOT_HASH_SIZE_BYTES:
            raise CheckpointError(
                f"expected a {ROOT_HASH_SIZE_BYTES}-byte root hash, got {len(self.root_hash)} bytes"
            )
        if not isinstance(self.extensions, tuple):
            raise CheckpointError(
                f"expected the extension lines as a tuple, got {type(self.extensions).__name__}"
            )
        for number, extension in enumerate(self.extensions, 1):
            _check_line(extension, f"extension line {number}")

    def body(self) -> str:
        """The note text: origin, size, base64 root hash, extensions, each ending in '\\n'."""
        root_hash = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root_hash, *self.extensions]
        return "".join(f"{line}\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body strictly (tlog-checkpoint, "Note text").

    Refuses: no final newline, fewer than three lines, an empty line, a tree
    size with a sign, leading zeros, non-ASCII digits or above
    :data:`TREE_SIZE_MAX`, a root hash that is not canonical standard base64
    of 32 bytes. ``parse_checkpoint(cp.body()) == cp`` for every checkpoint.
    """
    if not isinstance(text, str):
        raise CheckpointError(f"expected the checkpoint body as str, got {type(text).__name__}")
    if not text.endswith("\n"):
        raise CheckpointError(
            f"expected the checkpoint body to end in a newline, got {text[-20:]!r}"
        )
    lines = text[:-1].split("\n")
    if len(lines) < CHECKPOINT_LINES_MIN:
        raise CheckpointError(
            f"expected at least {CHECKPOINT_LINES_MIN} lines (origin, tree size, root hash), "
            f"got {len(lines)}"
        )
    origin, size_text, root_hash_text, *extensions = lines
    _check_line(origin, "origin")
    if len(size_text) > TREE_SIZE_DIGITS_MAX or not _TREE_SIZE_DECIMAL.fullmatch(size_text):
        raise CheckpointError(
            "expected the tree size in ASCII decimal without sign or leading zeros, "
            f"got {size_text[:60]!r}"
        )
    size = int(size_text)
    root_hash = _decode_root_hash(root_hash_text)
    return Checkpoint(origin=origin, size=size, root_hash=root_hash, extensions=tuple(extensions))


def _decode_root_hash(text: str) -> bytes:
    try:
        decoded = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        decoded = None
    if decoded is None or base64.b64encode(decoded).decode("ascii") != text:
        raise CheckpointError(
            f"expected the root hash in canonical standard base64, got {text[:60]!r}"
        )
    if len(decoded) != ROOT_HASH_SIZE_BYTES:
        raise CheckpointError(
            f"expected a {ROOT_HASH_SIZE_BYTES}-byte root hash, got {len(decoded)} bytes"
        )
    return decoded


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> bytes:
    """Sign a checkpoint as a signed note by the log's key.

    tlog-checkpoint, "Signatures": the log's key name SHOULD match the origin;
    ours must, so a signer named otherwise is refused.
    """
    if signer.name != checkpoint.origin:
        raise CheckpointError(
            f"expected the log key to be named after the origin {checkpoint.origin!r}, "
            f"got a key named {signer.name!r}"
        )
    return sign_note(checkpoint.body(), [signer])


def open_checkpoint(note: bytes, verifiers: Sequence[NoteVerifier], origin: str) -> Checkpoint:
    """Verify a signed checkpoint of the log ``origin`` and return it.

    First the note (``ledger.note.open_note``: raises ``NoteError`` unless a
    trusted key signed it and no trusted key's signature fails), then the body
    (:func:`parse_checkpoint`), then that its origin is ``origin`` and that a
    key named ``origin`` is among those whose signature verified
    (tlog-checkpoint, "Signatures"). Raises :class:`CheckpointError` otherwise.
    """
    _check_line(origin, "expected origin")
    opened = open_note(note, verifiers)
    checkpoint = parse_checkpoint(opened.text)
    if checkpoint.origin != origin:
        raise CheckpointError(f"expected origin {origin!r}, got {checkpoint.origin[:60]!r}")
    if origin not in opened.signatures_verified:
        raise CheckpointError(
            f"expected a verified signature by the log key named {origin!r}, "
            f"got verified signatures by {opened.signatures_verified!r} only"
        )
    return checkpoint
