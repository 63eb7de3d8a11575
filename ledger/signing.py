"""Participant instruction signatures: Ed25519 over a domain-separated message.

DESIGN.md section 3, "Participant signatures": each bank signs its instructions
with its own Ed25519 key (RFC 8032 section 5.1, pure Ed25519) over a
domain-separated message; the service verifies before posting and keeps the
exact signed bytes in the leaf.

Why a context string. An Ed25519 signature says "this key signed these bytes",
nothing about what the bytes mean. Without separation, a signature made for one
purpose is a valid signature for any other protocol that happens to read the
same bytes: a participant's signature over an instruction could be presented
as a signature over a checkpoint note, a manifest, or a message of a system we
have never heard of that reuses the key. Signing
``INSTRUCTION_CONTEXT || instruction`` instead of ``instruction`` means every
message a participant key signs for us begins with a fixed line no other
message of ours begins with (``ledger.note`` refuses note texts that start with
it), so a signature over an instruction can never be replayed as a signature
over a checkpoint or any other message, and no other signature can be replayed
as an instruction. RFC 8032's own answer, Ed25519ctx (section 5.1, ``dom2``),
is not offered by ``cryptography`` nor by most participants' libraries, so the
context is a prefix of the signed message; the version in it (``v1``) lets a
future format get a new context rather than a new meaning for old signatures.

Standard library and ``cryptography`` only: the offline verifier runs this.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ledger.errors import LedgerError, LimitExceeded

INSTRUCTION_CONTEXT = b"settlement.v1/signed-instruction\n"
"""Prefix of every message a participant signs; see the module docstring.

It ends in a newline so that no instruction byte can extend it into another
context string, and it is never changed: changing it invalidates every
signature ever made.
"""

ED25519_PUBLIC_KEY_SIZE_BYTES = 32
"""RFC 8032 section 5.1.5: a public key is 32 octets."""

ED25519_SIGNATURE_SIZE_BYTES = 64
"""RFC 8032 section 5.1.6: a signature is 64 octets."""

INSTRUCTION_SIZE_MAX_BYTES = 1024 * 1024
"""Largest instruction we sign or verify.

An instruction is a few kilobytes of canonical JSON (an ISO 20022 message at
most tens of kilobytes); the bound keeps one hostile item from making the
verifier hash megabytes, for every item of a batch.
"""


class SignatureInvalid(LedgerError):
    """An instruction signature does not verify under the participant's key.

    Also raised when the key or the signature is not of Ed25519's fixed size:
    either way the instruction is not signed by that participant.
    """

    code = "signature_invalid"
    kind = "invalid"


class SignedInstruction(NamedTuple):
    """One item for :func:`verify_instructions`: who, what, and the signature."""

    public_key_raw: bytes
    instruction: bytes
    signature: bytes


def _check_instruction_size(instruction: bytes) -> None:
    if len(instruction) > INSTRUCTION_SIZE_MAX_BYTES:
        raise LimitExceeded(
            f"expected an instruction of at most {INSTRUCTION_SIZE_MAX_BYTES} bytes, "
            f"got {len(instruction)} bytes"
        )


def signed_message(instruction: bytes) -> bytes:
    """Return the exact bytes an instruction signature covers: context || instruction."""
    if not isinstance(instruction, bytes):
        raise TypeError(f"expected instruction as bytes, got {type(instruction).__name__}")
    return INSTRUCTION_CONTEXT + instruction


def sign_instruction(private_key: Ed25519PrivateKey, instruction: bytes) -> bytes:
    """Sign ``INSTRUCTION_CONTEXT || instruction`` with Ed25519 (RFC 8032 section 5.1.6).

    Returns the 64-byte signature. The instruction is signed as given: callers
    keep these exact bytes, never a re-serialization (DESIGN.md section 3).
    """
    message = signed_message(instruction)
    _check_instruction_size(instruction)
    return private_key.sign(message)


def verify_instruction(public_key_raw: bytes, instruction: bytes, signature: bytes) -> None:
    """Check an instruction signature (RFC 8032 section 5.1.7) or raise.

    Raises :class:`SignatureInvalid` if the key is not 32 bytes, the signature
    is not 64 bytes, or the signature does not verify over
    ``INSTRUCTION_CONTEXT || instruction``; :class:`~ledger.errors.LimitExceeded`
    if the instruction exceeds :data:`INSTRUCTION_SIZE_MAX_BYTES`.
    """
    message = signed_message(instruction)
    _check_instruction_size(instruction)
    if len(public_key_raw) != ED25519_PUBLIC_KEY_SIZE_BYTES:
        raise SignatureInvalid(
            f"expected a {ED25519_PUBLIC_KEY_SIZE_BYTES}-byte Ed25519 public key, "
            f"got {len(public_key_raw)} bytes"
        )
    if len(signature) != ED25519_SIGNATURE_SIZE_BYTES:
        raise SignatureInvalid(
            f"expected a {ED25519_SIGNATURE_SIZE_BYTES}-byte Ed25519 signature, "
            f"got {len(signature)} bytes"
        )
    try:
        public_key = Ed25519PublicKey.from_public_bytes(public_key_raw)
    except ValueError as error:
        raise SignatureInvalid(
            f"expected a valid Ed25519 public key, got one that does not decode: {error}"
        ) from None
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        raise SignatureInvalid(
            "expected a signature over the instruction under context "
            f"{INSTRUCTION_CONTEXT!r} by key {public_key_raw.hex()}, "
            "got one that does not verify"
        ) from None


def verify_instructions(items: Iterable[SignedInstruction]) -> list[bool]:
    """Verify many instruction signatures; one boolean per item, in order.

    For the auditor, who reports every failing index rather than the first:
    an item that would make :func:`verify_instruction` raise is ``False``.
    """
    results: list[bool] = []
    for item in items:
        try:
            verify_instruction(item.public_key_raw, item.instruction, item.signature)
        except (SignatureInvalid, LimitExceeded):
            results.append(False)
        else:
            results.append(True)
    return results
