"""Signed notes: the C2SP ``signed-note`` format with Ed25519 signatures.

Implements c2sp.org/signed-note (v1.0.0), interoperable with the Go reference
golang.org/x/mod/sumdb/note, for signature type 0x01 (Ed25519) only:

- "Format": a note is a UTF-8 text, with no ASCII control character other than
  newline, ending in a newline; then a blank line; then one or more signature
  lines ``— <key name> <base64(key ID || signature)>``. The text is separated
  from the signatures by the last blank line, and it is the text, final
  newline included, that is signed.
- "Signatures": a key is identified by its name and its 4-byte key ID. Key
  names are non-empty, without Unicode spaces or ``+``. Signatures by unknown
  keys are ignored; a signature by a known key must verify; a note without any
  verified signature is rejected.
- "Ed25519 signatures": key ID = SHA-256(name || 0x0A || 0x01 || public key)[:4].
- Key strings are Go's ``note.NewVerifier`` / ``note.NewSigner`` formats:
  ``<name>+<hex key ID>+<base64(0x01 || public key)>`` and
  ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

Stricter than the Go reference, on purpose (a note Go produces is accepted):

- base64 must be canonical (the encoding Go writes), so one note has one
  spelling;
- a known key signs a note at most once: a second signature line by the same
  name and key ID is rejected (Go silently drops it); unknown keys' repeated
  lines are ignored like any unknown signature;
- hex key IDs in key strings are lowercase, as Go writes them;
- a note text that begins with :data:`ledger.signing.INSTRUCTION_CONTEXT` is
  neither signed nor accepted, so a participant's instruction signature can
  never pass for a note signature (see ``ledger.signing``).

Standard library and ``cryptography`` only: the offline verifier runs this.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ledger.errors import LedgerError
from ledger.signing import INSTRUCTION_CONTEXT

SIGNATURE_TYPE_ED25519 = 0x01
"""signed-note, "Signature types": the identifier byte of Ed25519."""

KEY_ID_SIZE_BYTES = 4
"""signed-note, "Signatures": the key ID is a 32-bit big-endian value."""

ED25519_PUBLIC_KEY_SIZE_BYTES = 32
"""RFC 8032 section 5.1.5."""

ED25519_SEED_SIZE_BYTES = 32
"""RFC 8032 section 5.1.5: the private key is a 32-octet seed."""

ED25519_SIGNATURE_SIZE_BYTES = 64
"""RFC 8032 section 5.1.6."""

SIGNATURES_MAX = 100
"""Most signature lines a note may carry, known or unknown.

signed-note, "Format": verifiers SHOULD limit the number of signatures and
MUST accept at least 16. 100 is the Go reference's limit; it bounds the parsing
and verification an untrusted note can cost, and a checkpoint carries one log
signature plus a few witness cosignatures.
"""

NOTE_SIZE_MAX_BYTES = 1024 * 1024
"""Largest encoded note we sign or open.

A checkpoint note is under 1 KiB. The bound still admits SIGNATURES_MAX
signatures of the largest kind the spec anticipates (post-quantum, "up to
nearly 5kB", under 7 KiB in base64) and caps the memory and work an untrusted
input costs before any signature is checked.
"""

SIGNATURE_LINE_PREFIX = "\u2014 "
"""signed-note, "Format": em dash (U+2014) then space (U+0020)."""

PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
"""Go ``note.NewSigner``: marks a signer key string, so it is never mistaken
for a verifier key."""

ERROR_EXCERPT_LENGTH_MAX = 60
"""Characters of untrusted input quoted in an error message, at most."""

_CONTROL_CHARACTER = re.compile("[\x00-\x09\x0b-\x1f]")
_KEY_ID_HEX = re.compile("[0-9a-f]{8}")


class NoteError(LedgerError):
    """A note, a key string or a signing request breaks the signed-note spec,
    or the note is not signed by any trusted key."""

    code = "note_invalid"
    kind = "invalid"


@dataclass(frozen=True)
class OpenedNote:
    """A note whose signatures were checked by :func:`open_note`.

    ``text`` is the signed text, final newline included. ``signatures_verified``
    names the known keys whose signatures verified, in note order.
    ``unknown_signatures`` counts the distinct signature lines by keys the
    caller did not trust: ignored, as the spec requires, but reported.
    """

    text: str
    signatures_verified: list[str]
    unknown_signatures: int


def _excerpt(value: str | bytes) -> str:
    """Quote untrusted input in an error message, shortened."""
    if len(value) <= ERROR_EXCERPT_LENGTH_MAX:
        return repr(value)
    return repr(value[:ERROR_EXCERPT_LENGTH_MAX]) + "..."


def _check_key_name(name: str) -> None:
    """signed-note, "Format": key names are non-empty, with no Unicode space or '+'."""
    if not isinstance(name, str):
        raise NoteError(f"expected a key name as str, got {type(name).__name__}")
    if not name:
        raise NoteError("expected a non-empty key name, got ''")
    for character in name:
        if character.isspace() or character == "+":
            raise NoteError(
                f"expected a key name without spaces or '+', got {_excerpt(name)} "
                f"containing U+{ord(character):04X}"
            )
        if _CONTROL_CHARACTER.match(character):
            raise NoteError(
                f"expected a key name without control characters, got {_excerpt(name)} "
                f"containing U+{ord(character):04X}"
            )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"expected a key name of valid Unicode, got {_excerpt(name)}") from None


def _check_public_key(public_key: bytes) -> None:
    if not isinstance(public_key, bytes):
        raise NoteError(f"expected a public key as bytes, got {type(public_key).__name__}")
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE_BYTES:
        raise NoteError(
            f"expected a {ED25519_PUBLIC_KEY_SIZE_BYTES}-byte Ed25519 public key, "
            f"got {len(public_key)} bytes"
        )


def _decode_base64_canonical(text: str) -> bytes | None:
    """Standard base64 (RFC 4648 section 4), padded, in its one canonical
    spelling; None if ``text`` is anything else."""
    try:
        decoded = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    if base64.b64encode(decoded).decode("ascii") != text:
        return None
    return decoded


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key ID of an Ed25519 key (signed-note, "Ed25519 signatures").

    SHA-256(name || 0x0A || 0x01 || 32-byte public key), first four bytes.
    """
    _check_key_name(name)
    _check_public_key(public_key)
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([SIGNATURE_TYPE_ED25519]) + public_key
    ).digest()
    return digest[:KEY_ID_SIZE_BYTES]


def _parse_key_fields(
    name: str, key_id_hex: str, key_base64: str, what: str, *, secret: bool
) -> bytes:
    """Check the fields shared by verifier and signer key strings; return the
    32-byte key material (public key or seed) after the type byte.

    ``secret`` key data (a seed) is never quoted in an error message.
    """
    _check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise NoteError(
            f"expected the {what}'s key ID as 8 lowercase hex digits, got {_excerpt(key_id_hex)}"
        )
    key_data = _decode_base64_canonical(key_base64)
    if key_data is None or not key_data:
        shown = "something else" if secret else _excerpt(key_base64)
        raise NoteError(f"expected the {what}'s key data in canonical base64, got {shown}")
    if key_data[0] != SIGNATURE_TYPE_ED25519:
        raise NoteError(
            f"expected the {what}'s signature type 0x{SIGNATURE_TYPE_ED25519:02x} (Ed25519), "
            f"got 0x{key_data[0]:02x}"
        )
    if len(key_data) != 1 + ED25519_PUBLIC_KEY_SIZE_BYTES:
        raise NoteError(
            f"expected {1 + ED25519_PUBLIC_KEY_SIZE_BYTES} bytes of {what} key data "
            f"(type byte and key), got {len(key_data)}"
        )
    return key_data[1:]


class NoteVerifier:
    """A trusted Ed25519 note key: name, 32-byte public key and key ID.

    Two verifiers are equal when name and public key are.
    """

    __slots__ = ("_key_id", "_name", "_public_key", "_public_key_object")

    def __init__(self, name: str, public_key: bytes) -> None:
        self._key_id = key_id(name, public_key)
        self._name = name
        self._public_key = public_key
        try:
            self._public_key_object = Ed25519PublicKey.from_public_bytes(public_key)
        except ValueError as error:
            raise NoteError(
                f"expected a valid Ed25519 public key, got one that does not decode: {error}"
            ) from None

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_key

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID (signed-note, "Ed25519 signatures")."""
        return self._key_id

    @classmethod
    def from_vkey(cls, text: str) -> NoteVerifier:
        """Parse a verifier key string ``<name>+<hex key ID>+<base64(0x01 || key)>``.

        The format of Go's ``note.NewVerifier``; the key ID must match the name
        and key, so a mistyped key string is refused, not trusted.
        """
        if not isinstance(text, str):
            raise NoteError(f"expected a verifier key as str, got {type(text).__name__}")
        fields = text.split("+", 2)
        if len(fields) != 3:
            raise NoteError(
                "expected a verifier key '<name>+<key ID>+<key data>', "
                f"got {_excerpt(text)} with {len(fields)} field(s)"
            )
        name, key_id_hex, key_base64 = fields
        public_key = _parse_key_fields(name, key_id_hex, key_base64, "verifier", secret=False)
        verifier = cls(name, public_key)
        if verifier.key_id.hex() != key_id_hex:
            raise NoteError(
                f"expected key ID {verifier.key_id.hex()} for key {name!r}, got {key_id_hex}"
            )
        return verifier

    def vkey(self) -> str:
        """The verifier key string, as Go's ``note.NewEd25519VerifierKey`` writes it."""
        key_data = bytes([SIGNATURE_TYPE_ED25519]) + self._public_key
        encoded = base64.b64encode(key_data).decode("ascii")
        return f"{self._name}+{self._key_id.hex()}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature over ``message``."""
        if len(signature) != ED25519_SIGNATURE_SIZE_BYTES:
            return False
        try:
            self._public_key_object.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoteVerifier):
            return NotImplemented
        return (self._name, self._public_key) == (other._name, other._public_key)

    def __hash__(self) -> int:
        return hash((self._name, self._public_key))

    def __repr__(self) -> str:
        return f"NoteVerifier({self.vkey()!r})"


class NoteSigner:
    """An Ed25519 note signing key and its name.

    Holds private key material: its ``repr`` shows the name and key ID only,
    and nothing here logs the key.
    """

    __slots__ = ("_key_id", "_name", "_private_key", "_public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise NoteError(f"expected an Ed25519PrivateKey, got {type(private_key).__name__}")
        public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self._key_id = key_id(name, public_key)
        self._name = name
        self._private_key = private_key
        self._public_key = public_key

    @property
    def name(self) -> str:
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID (signed-note, "Ed25519 signatures")."""
        return self._key_id

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_key

    @classmethod
    def from_skey(cls, text: str) -> NoteSigner:
        """Parse a signer key string ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

        The format of Go's ``note.NewSigner``. The key ID is of the public key,
        so it is checked after deriving the public key from the seed.
        """
        if not isinstance(text, str):
            raise NoteError(f"expected a signer key as str, got {type(text).__name__}")
        if not text.startswith(PRIVATE_KEY_PREFIX):
            # Never quote the text: it may be a private key with a typo.
            raise NoteError(f"expected a signer key starting with {PRIVATE_KEY_PREFIX!r}")
        fields = text[len(PRIVATE_KEY_PREFIX) :].split("+", 2)
        if len(fields) != 3:
            raise NoteError(
                "expected a signer key 'PRIVATE+KEY+<name>+<key ID>+<key data>', "
                f"got {len(fields)} field(s) after the prefix"
            )
        name, key_id_hex, key_base64 = fields
        seed = _parse_key_fields(name, key_id_hex, key_base64, "signer", secret=True)
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(seed))
        if signer.key_id.hex() != key_id_hex:
            raise NoteError(
                f"expected key ID {signer.key_id.hex()} for key {name!r}, got {key_id_hex}"
            )
        return signer

    def skey(self) -> str:
        """The signer key string (Go's ``note.GenerateKey`` format). Secret: never log it."""
        seed = self._private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        encoded = base64.b64encode(bytes([SIGNATURE_TYPE_ED25519]) + seed).decode("ascii")
        return f"{PRIVATE_KEY_PREFIX}{self._name}+{self._key_id.hex()}+{encoded}"

    def verifier(self) -> NoteVerifier:
        """The verifier for this signer's key."""
        return NoteVerifier(self._name, self._public_key)

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature over ``message`` (RFC 8032 section 5.1.6)."""
        return self._private_key.sign(message)

    def __repr__(self) -> str:
        return f"NoteSigner(name={self._name!r}, key_id={self._key_id.hex()}, private_key=<hidden>)"


def _check_text(text: str) -> bytes:
    """signed-note, "Format": the rules a note text obeys; return its UTF-8 bytes."""
    if not isinstance(text, str):
        raise NoteError(f"expected the note text as str, got {type(text).__name__}")
    if not text:
        raise NoteError("expected a non-empty note text, got ''")
    if not text.endswith("\n"):
        raise NoteError(f"expected the note text to end in a newline, got {_excerpt(text[-20:])}")
    control = _CONTROL_CHARACTER.search(text)
    if control is not None:
        raise NoteError(
            "expected no control characters but newline in the note text, "
            f"got U+{ord(control.group()):04X} at offset {control.start()}"
        )
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise NoteError(
            f"expected the note text to be valid Unicode, got a lone surrogate at "
            f"offset {error.start}"
        ) from None
    _check_not_instruction_context(encoded)
    return encoded


def _check_not_instruction_context(text: bytes) -> None:
    if text.startswith(INSTRUCTION_CONTEXT):
        raise NoteError(
            f"expected a note text not starting with the instruction context "
            f"{INSTRUCTION_CONTEXT!r}, got one that does: its signature would also be a "
            "participant instruction signature"
        )


def _check_size(size_bytes: int) -> None:
    if size_bytes > NOTE_SIZE_MAX_BYTES:
        raise NoteError(
            f"expected a note of at most {NOTE_SIZE_MAX_BYTES} bytes, got {size_bytes} bytes"
        )


def sign_note(text: str, signers: Sequence[NoteSigner]) -> bytes:
    """Encode ``text`` as a signed note with one signature line per signer.

    signed-note, "Format" and "Signatures": the signature of each signer covers
    the text's UTF-8 bytes, final newline included; signature lines follow the
    blank line in the order of ``signers``. At least one signer, at most
    :data:`SIGNATURES_MAX`, and no key twice.
    """
    text_bytes = _check_text(text)
    if not signers:
        raise NoteError("expected at least one signer, got none")
    if len(signers) > SIGNATURES_MAX:
        raise NoteError(f"expected at most {SIGNATURES_MAX} signers, got {len(signers)}")
    seen: set[tuple[str, bytes]] = set()
    lines: list[bytes] = []
    for signer in signers:
        if not isinstance(signer, NoteSigner):
            raise NoteError(f"expected a NoteSigner, got {type(signer).__name__}")
        identity = (signer.name, signer.key_id)
        if identity in seen:
            raise NoteError(
                f"expected each key to sign once, got key {signer.name}+{signer.key_id.hex()} twice"
            )
        seen.add(identity)
        signature = signer.key_id + signer.sign(text_bytes)
        encoded = base64.b64encode(signature).decode("ascii")
        lines.append(f"{SIGNATURE_LINE_PREFIX}{signer.name} {encoded}\n".encode())
    note = text_bytes + b"\n" + b"".join(lines)
    _check_size(len(note))
    return note


@dataclass(frozen=True)
class _SignatureLine:
    name: str
    key_id: bytes
    signature: bytes
    line: bytes


def _parse_signature_line(line: bytes, number: int) -> _SignatureLine:
    """signed-note, "Signatures": ``— <key name> base64(key ID || signature)``."""
    prefix = SIGNATURE_LINE_PREFIX.encode("utf-8")
    if not line.startswith(prefix):
        raise NoteError(
            f"expected signature line {number} to start with U+2014 EM DASH and a space, "
            f"got {_excerpt(line.decode('utf-8'))}"
        )
    name, separator, encoded = line[len(prefix) :].decode("utf-8").partition(" ")
    if not separator:
        raise NoteError(
            f"expected signature line {number} as '— <key name> <base64>', "
            f"got {_excerpt(line.decode('utf-8'))}"
        )
    try:
        _check_key_name(name)
    except NoteError as error:
        raise NoteError(f"signature line {number}: {error.message}") from None
    decoded = _decode_base64_canonical(encoded)
    if decoded is None:
        raise NoteError(
            f"expected signature line {number} to end in canonical base64, got {_excerpt(encoded)}"
        )
    if len(decoded) <= KEY_ID_SIZE_BYTES:
        raise NoteError(
            f"expected signature line {number} to hold a {KEY_ID_SIZE_BYTES}-byte key ID "
            f"and a signature, got {len(decoded)} bytes"
        )
    return _SignatureLine(
        name=name,
        key_id=decoded[:KEY_ID_SIZE_BYTES],
        signature=decoded[KEY_ID_SIZE_BYTES:],
        line=line,
    )


def _index_verifiers(verifiers: Sequence[NoteVerifier]) -> dict[tuple[str, bytes], NoteVerifier]:
    index: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        if not isinstance(verifier, NoteVerifier):
            raise NoteError(f"expected a NoteVerifier, got {type(verifier).__name__}")
        identity = (verifier.name, verifier.key_id)
        known = index.get(identity)
        if known is not None and known != verifier:
            # Two keys with one name and key ID: the trust configuration is
            # ambiguous, and guessing which one is meant would be worse.
            raise NoteError(
                f"expected one trusted key per name and key ID, got two for "
                f"{verifier.name}+{verifier.key_id.hex()}"
            )
        index[identity] = verifier
    return index


def open_note(note: bytes, verifiers: Sequence[NoteVerifier]) -> OpenedNote:
    """Parse a signed note and check its signatures against trusted keys.

    signed-note, "Format" and "Signatures", checked in this order: size,
    UTF-8, control characters, the blank line, the signature lines' syntax and
    count; then each signature by a known key (name and key ID both match a
    verifier) must verify, at most one per key; signatures by unknown keys are
    ignored and counted; at least one signature must have verified. Any
    failure raises :class:`NoteError`; nothing of the text is returned unless
    a trusted key signed it.
    """
    if not isinstance(note, bytes):
        raise NoteError(f"expected the note as bytes, got {type(note).__name__}")
    _check_size(len(note))
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NoteError(
            f"expected the note in UTF-8, got an invalid byte at offset {error.start}"
        ) from None
    control = _CONTROL_CHARACTER.search(decoded)
    if control is not None:
        raise NoteError(
            "expected no control characters but newline in the note, "
            f"got U+{ord(control.group()):04X}"
        )
    split = note.rfind(b"\n\n")
    if split < 0:
        raise NoteError("expected a blank line between the text and the signatures, got none")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise NoteError("expected at least one signature line after the blank line, got none")
    if not block.endswith(b"\n"):
        raise NoteError(
            # The slice may cut a character in two: replace, never raise.
            "expected the note to end in a newline, "
            f"got {_excerpt(block[-20:].decode('utf-8', errors='replace'))}"
        )
    raw_lines = block[:-1].split(b"\n")
    if len(raw_lines) > SIGNATURES_MAX:
        raise NoteError(f"expected at most {SIGNATURES_MAX} signature lines, got {len(raw_lines)}")
    _check_not_instruction_context(text)
    lines = [_parse_signature_line(line, number) for number, line in enumerate(raw_lines, 1)]

    index = _index_verifiers(verifiers)
    verified: list[str] = []
    verified_keys: set[tuple[str, bytes]] = set()
    unknown_lines: set[bytes] = set()
    for number, line in enumerate(lines, 1):
        identity = (line.name, line.key_id)
        verifier = index.get(identity)
        if verifier is None:
            unknown_lines.add(line.line)
            continue
        label = f"{line.name}+{line.key_id.hex()}"
        if identity in verified_keys:
            raise NoteError(
                f"expected one signature per known key, got a second by {label} "
                f"on signature line {number}"
            )
        if not verifier.verify(text, line.signature):
            raise NoteError(
                f"expected a valid signature by known key {label} on signature line {number}, "
                "got one that does not verify"
            )
        verified_keys.add(identity)
        verified.append(line.name)
    if not verified:
        raise NoteError(
            "expected at least one signature by a known key, "
            f"got none among {len(lines)} signature line(s)"
        )
    return OpenedNote(
        text=text.decode("utf-8"),
        signatures_verified=verified,
        unknown_signatures=len(unknown_lines),
    )
