"""ledger.signing: domain-separated participant instruction signatures."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.errors import LedgerError, LimitExceeded
from ledger.note import NoteError, NoteSigner, NoteVerifier, open_note
from ledger.signing import (
    INSTRUCTION_CONTEXT,
    INSTRUCTION_SIZE_MAX_BYTES,
    SignatureInvalid,
    SignedInstruction,
    sign_instruction,
    signed_message,
    verify_instruction,
    verify_instructions,
)


def private_key(fill: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([fill]) * 32)


def raw_public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


BANK_KEY = private_key(1)
OTHER_KEY = private_key(2)
BANK_PUBLIC = raw_public_key(BANK_KEY)
INSTRUCTION = b'{"amount_minor":"125000","currency":"USD","id":"ins-1"}'
SIGNATURE = sign_instruction(BANK_KEY, INSTRUCTION)


def test_error_is_a_ledger_error_with_stable_code_and_kind() -> None:
    assert issubclass(SignatureInvalid, LedgerError)
    assert SignatureInvalid.code == "signature_invalid"
    assert SignatureInvalid.kind == "invalid"


def test_context_is_the_fixed_versioned_line() -> None:
    assert INSTRUCTION_CONTEXT == b"settlement.v1/signed-instruction\n"
    assert signed_message(INSTRUCTION) == INSTRUCTION_CONTEXT + INSTRUCTION


def test_signature_is_ed25519_over_context_and_instruction() -> None:
    assert len(SIGNATURE) == 64
    assert BANK_KEY.sign(INSTRUCTION_CONTEXT + INSTRUCTION) == SIGNATURE
    verify_instruction(BANK_PUBLIC, INSTRUCTION, SIGNATURE)


def test_empty_instruction_signs_and_verifies() -> None:
    verify_instruction(BANK_PUBLIC, b"", sign_instruction(BANK_KEY, b""))


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


REJECTIONS: list[tuple[str, bytes, bytes, bytes, str]] = [
    (
        "key too short",
        BANK_PUBLIC[:31],
        INSTRUCTION,
        SIGNATURE,
        "32-byte Ed25519 public key, got 31",
    ),
    (
        "key too long",
        BANK_PUBLIC + b"\x00",
        INSTRUCTION,
        SIGNATURE,
        "32-byte Ed25519 public key, got 33",
    ),
    (
        "signature truncated",
        BANK_PUBLIC,
        INSTRUCTION,
        SIGNATURE[:63],
        "64-byte Ed25519 signature, got 63",
    ),
    (
        "signature extended",
        BANK_PUBLIC,
        INSTRUCTION,
        SIGNATURE + b"\x00",
        "64-byte Ed25519 signature, got 65",
    ),
    ("signature empty", BANK_PUBLIC, INSTRUCTION, b"", "64-byte Ed25519 signature, got 0"),
    (
        "signature flipped first byte",
        BANK_PUBLIC,
        INSTRUCTION,
        flip(SIGNATURE, 0),
        "does not verify",
    ),
    (
        "signature flipped last byte",
        BANK_PUBLIC,
        INSTRUCTION,
        flip(SIGNATURE, 63),
        "does not verify",
    ),
    ("instruction flipped byte", BANK_PUBLIC, flip(INSTRUCTION, 10), SIGNATURE, "does not verify"),
    ("instruction truncated", BANK_PUBLIC, INSTRUCTION[:-1], SIGNATURE, "does not verify"),
    ("wrong key", raw_public_key(OTHER_KEY), INSTRUCTION, SIGNATURE, "does not verify"),
    (
        "signature without context",
        BANK_PUBLIC,
        INSTRUCTION,
        BANK_KEY.sign(INSTRUCTION),
        "does not verify",
    ),
    (
        "signature over another context",
        BANK_PUBLIC,
        INSTRUCTION,
        BANK_KEY.sign(b"settlement.v1/checkpoint\n" + INSTRUCTION),
        "does not verify",
    ),
    (
        "context moved into the instruction",
        BANK_PUBLIC,
        INSTRUCTION_CONTEXT + INSTRUCTION,
        SIGNATURE,
        "does not verify",
    ),
]


@pytest.mark.parametrize(
    ("public_key", "instruction", "signature", "message"),
    [row[1:] for row in REJECTIONS],
    ids=[row[0] for row in REJECTIONS],
)
def test_verify_rejects(
    public_key: bytes, instruction: bytes, signature: bytes, message: str
) -> None:
    with pytest.raises(SignatureInvalid, match=message):
        verify_instruction(public_key, instruction, signature)


def test_too_large_instruction_is_refused_both_ways() -> None:
    large = b"x" * (INSTRUCTION_SIZE_MAX_BYTES + 1)
    with pytest.raises(LimitExceeded, match="at most 1048576 bytes"):
        sign_instruction(BANK_KEY, large)
    with pytest.raises(LimitExceeded, match="at most 1048576 bytes"):
        verify_instruction(BANK_PUBLIC, large, SIGNATURE)


def test_instruction_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="as bytes"):
        sign_instruction(BANK_KEY, INSTRUCTION.decode())  # type: ignore[arg-type]


def test_batch_reports_every_item_in_order() -> None:
    items = [
        SignedInstruction(BANK_PUBLIC, INSTRUCTION, SIGNATURE),
        SignedInstruction(BANK_PUBLIC, INSTRUCTION, flip(SIGNATURE, 5)),
        SignedInstruction(BANK_PUBLIC[:5], INSTRUCTION, SIGNATURE),
        SignedInstruction(BANK_PUBLIC, b"x" * (INSTRUCTION_SIZE_MAX_BYTES + 1), SIGNATURE),
        SignedInstruction(BANK_PUBLIC, b"", sign_instruction(BANK_KEY, b"")),
    ]
    assert verify_instructions(items) == [True, False, False, False, True]
    assert verify_instructions([]) == []


def test_instruction_signature_cannot_pass_as_a_note_signature() -> None:
    # Even if a bank's key were trusted as a note key, its instruction
    # signature covers context || instruction, a text no note may have.
    verifier = NoteVerifier("bank.example", BANK_PUBLIC)
    text = INSTRUCTION + b"\n"
    signature = sign_instruction(BANK_KEY, text)
    key_id = NoteSigner("bank.example", BANK_KEY).key_id
    encoded = base64.b64encode(key_id + signature).decode()
    note = signed_message(text) + b"\n" + f"— bank.example {encoded}\n".encode()
    with pytest.raises(NoteError, match="instruction context"):
        open_note(note, [verifier])
    # And over the bare text, the instruction signature does not verify.
    bare = text + b"\n" + f"— bank.example {encoded}\n".encode()
    with pytest.raises(NoteError, match="does not verify"):
        open_note(bare, [verifier])
