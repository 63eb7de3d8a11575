"""Client-side signed instructions, as a bank writes them (common.proto, "Signed instructions").

An instruction travels as ``SignedInstruction{instruction, signature}``:

- ``instruction`` is the RFC 8785 (JSON Canonicalization Scheme) encoding of
  the typed ``*Instruction`` message in the proto3 JSON mapping with the
  original (snake_case) field names: ``json_format.MessageToDict(message,
  preserving_proto_field_name=True)``, then RFC 8785. Defaults are omitted,
  int64 are strings, enums are names, bytes are padded base64.
- ``signature`` is pure Ed25519 (RFC 8032 section 5.1.6) over
  ``"settlement.v1/signed-instruction\\n" || instruction``.

Everything here is the client's own: the generated API, ``google.protobuf``,
``cryptography`` and the standard-library RFC 8785 codec
:mod:`ledger.canonical`; nothing of the service (``clients/`` speak to the hub
only over gRPC, DESIGN.md section 1).
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from google.protobuf import json_format
from google.protobuf.message import Message

from ledger import canonical
from settlement.v1 import common_pb2

INSTRUCTION_CONTEXT = b"settlement.v1/signed-instruction\n"
"""common.proto, "Signature": the domain-separation prefix, 33 ASCII bytes."""

INSTRUCTION_MAX_BYTES = 1024 * 1024
"""common.proto: an instruction is at most 1 MiB; larger ones are refused before sending."""

INSTRUCTION_ID_LENGTH_MAX = 128
"""common.proto: an instruction id is 1..128 printable ASCII characters (0x21..0x7E)."""

KEY_FILE_SIZE_MAX_BYTES = 64 * 1024
"""A PEM private key is a few hundred bytes; anything larger is not a key file."""

ED25519_SEED_SIZE_BYTES = 32
"""RFC 8032 section 5.1.5: a raw private key (seed) is 32 bytes."""

PEM_BEGIN = b"-----BEGIN"


class SigningError(Exception):
    """A key file or an instruction the client cannot sign; the message says what to fix."""


def instruction_type(message_class: type[Message]) -> str:
    """The ``instruction_type`` of a message class: its full name, e.g.
    ``"settlement.v1.PaymentInstruction"``."""
    return str(message_class.DESCRIPTOR.full_name)


def new_instruction_id(participant_id: str) -> str:
    """A fresh idempotency key, ``"<participant_id>:<random UUID>"`` (common.proto's advice).

    Generate it ONCE per logical operation and send it again, unchanged, on
    every retry of that operation: the hub answers a retry with the original
    result and applies nothing twice.
    """
    identifier = f"{participant_id}:{uuid.uuid4()}"
    check_instruction_id(identifier)
    return identifier


def check_instruction_id(identifier: str) -> str:
    """Refuse an id the hub would refuse (1..128 characters of 0x21..0x7E)."""
    if not 1 <= len(identifier) <= INSTRUCTION_ID_LENGTH_MAX or not all(
        "!" <= character <= "~" for character in identifier
    ):
        raise SigningError(
            f"expected an instruction id of 1..{INSTRUCTION_ID_LENGTH_MAX} printable ASCII "
            f"characters without spaces, got {identifier[:60]!r}"
        )
    return identifier


def canonical_bytes(message: Message) -> bytes:
    """The one valid encoding of an instruction message: proto3 JSON with original
    field names, then RFC 8785 (common.proto, "Encoding")."""
    document = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return canonical.encode(document)


def signed_message(instruction: bytes) -> bytes:
    """The exact bytes a signature covers: the context prefix, then the instruction."""
    return INSTRUCTION_CONTEXT + instruction


def sign(message: Message, private_key: Ed25519PrivateKey) -> common_pb2.SignedInstruction:
    """Encode ``message`` canonically and sign it: the request's ``instruction`` field.

    Keep the returned message and send it again on a retry; never re-encode
    or re-sign what was already sent.
    """
    payload = canonical_bytes(message)
    if len(payload) > INSTRUCTION_MAX_BYTES:
        raise SigningError(
            f"expected an instruction of at most {INSTRUCTION_MAX_BYTES} bytes, "
            f"got {len(payload)} bytes"
        )
    return common_pb2.SignedInstruction(
        instruction=payload, signature=private_key.sign(signed_message(payload))
    )


def load_signing_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The participant's Ed25519 signing key: PKCS#8 PEM or a raw 32-byte seed file.

    Refuses a file that group or other may read (as OpenSSH does): a signing
    key others may have copied signs nothing. Messages never quote the file.
    """
    key_path = Path(path)
    try:
        with key_path.open("rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            content = file.read(KEY_FILE_SIZE_MAX_BYTES + 1)
    except OSError as error:
        raise SigningError(
            f"expected a readable signing key file at {key_path}, got {error.strerror}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningError(
            f"expected the signing key {key_path} to be private (mode 0600), got mode "
            f"{stat.S_IMODE(mode):04o}; run: chmod 600 {key_path}"
        )
    if len(content) > KEY_FILE_SIZE_MAX_BYTES:
        raise SigningError(f"expected a key file at {key_path}, got more than 64 KiB")
    if content.startswith(PEM_BEGIN):
        try:
            key = load_pem_private_key(content, password=None)
        except (TypeError, ValueError, UnsupportedAlgorithm):
            raise SigningError(
                f"expected an unencrypted PKCS#8 PEM private key at {key_path}, "
                "got a PEM that does not load"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningError(
                f"expected an Ed25519 private key at {key_path}, got {type(key).__name__}"
            )
        return key
    if len(content) == ED25519_SEED_SIZE_BYTES:
        return Ed25519PrivateKey.from_private_bytes(content)
    raise SigningError(
        f"expected a PKCS#8 PEM Ed25519 key or a raw 32-byte seed at {key_path}, "
        f"got {len(content)} bytes of neither"
    )


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key (what the operator registered for the participant)."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
