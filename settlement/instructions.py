"""Signed instructions: parsing exactly what a participant signed.

A mutating RPC carries ``SignedInstruction{instruction, signature}``. The
``instruction`` bytes are the RFC 8785 encoding of a typed ``*Instruction``
message in the proto3 JSON mapping with original field names (see
``proto/settlement/v1/common.proto``). We parse those bytes, require that they
are the one canonical encoding of what they hold, check the header (type,
signer = caller), and hand the ledger the bytes and signature verbatim: the
ledger verifies the signature with the signer's key valid at the commit index
and stores both in the leaf. Nothing is ever re-serialized for signing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from ledger import canonical
from ledger.records import SignedInstruction
from ledger.signing import sign_instruction
from settlement.auth import Caller
from settlement.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from settlement.v1 import common_pb2

INSTRUCTION_MAX_BYTES = 1024 * 1024
"""One instruction is at most 1 MiB (the contract's limit; batches carry many)."""

MessageType = TypeVar("MessageType", bound=Message)


class InstructionMustParse(InvalidArgument):
    code = "instruction_must_parse"


class InstructionTypeMustMatch(InvalidArgument):
    code = "instruction_type_must_match"


class JsonMustBeCanonical(InvalidArgument):
    code = "json_must_be_canonical"


class SignerMustBeCaller(PermissionDenied):
    code = "signer_must_be_caller"


class InstructionTooLarge(ResourceExhausted):
    code = "limit_exceeded"


@dataclass(frozen=True, slots=True)
class ParsedInstruction(Generic[MessageType]):
    """A verified-shape instruction: the typed message and the bytes as signed."""

    message: MessageType
    signed: SignedInstruction

    @property
    def instruction_id(self) -> str:
        return str(getattr(self.message, "instruction_id"))  # noqa: B009 - every instruction has it


def canonical_bytes(message: Message) -> bytes:
    """The one valid encoding of an instruction message (what a client signs)."""
    document = json_format.MessageToDict(message, preserving_proto_field_name=True)
    # The trusted encoder is exact here: the settlement.v1 messages have no
    # float or double fields and no maps or well-known types
    # (tests/unit/test_proto_stubs_fresh.py enforces it), so the proto3 JSON
    # mapping yields only strings (int64 and bytes included), bools, int32 and
    # uint32 numbers (safe integers), lists and objects. For such a document,
    # when the sorted-keys output is ASCII it is already the RFC 8785 form;
    # anything else takes the strict encoder.
    return canonical.encode_trusted(document)


def sign(message: Message, private_key: Any) -> common_pb2.SignedInstruction:
    """Encode and sign an instruction (for tests, the demo and the reference clients)."""
    payload = canonical_bytes(message)
    return common_pb2.SignedInstruction(
        instruction=payload, signature=sign_instruction(private_key, payload)
    )


def parse(
    signed: common_pb2.SignedInstruction,
    message_type: type[MessageType],
    caller: Caller,
) -> ParsedInstruction[MessageType]:
    """Parse and check a signed instruction of the expected type from the caller.

    Order of checks: size, JSON, canonical form, known fields, type, signer
    (common.proto, "Order of checks", 3 to 5). The signature, its length
    included, is verified by the ledger at commit time, at the place each
    RPC's rules give it (after the idempotency check: an identical retry is
    answered even when re-signed after a key rotation).
    """
    payload = bytes(signed.instruction)
    if len(payload) > INSTRUCTION_MAX_BYTES:
        raise InstructionTooLarge(
            f"instruction is {len(payload)} bytes; the limit is {INSTRUCTION_MAX_BYTES}"
        )
    if not payload:
        raise JsonMustBeCanonical("instruction is empty: send the signed instruction bytes")
    try:
        document = canonical.decode(payload)
    except canonical.NotCanonical as error:
        raise JsonMustBeCanonical(f"instruction: {error.message}") from None
    if not isinstance(document, dict):
        raise InstructionMustParse("instruction must be a JSON object")
    message = message_type()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=False)
    except (json_format.ParseError, TypeError, ValueError) as error:
        raise InstructionMustParse(
            f"instruction is not a valid {message_type.DESCRIPTOR.full_name}: {error}"
        ) from None
    if canonical_bytes(message) != payload:
        raise JsonMustBeCanonical(
            "instruction bytes are not the canonical encoding of their content: use original "
            "field names, omit default values, int64 as strings, enums by name, RFC 8785 order"
        )
    expected_type = message_type.DESCRIPTOR.full_name
    instruction_type = getattr(message, "instruction_type", "")
    if instruction_type != expected_type:
        raise InstructionTypeMustMatch(
            f"instruction_type is {instruction_type!r}; this call takes {expected_type!r}"
        )
    participant_id = getattr(message, "participant_id", "")
    if participant_id != caller.participant_id:
        raise SignerMustBeCaller(
            f"instruction is from participant {participant_id!r} but the caller's certificate "
            f"identifies {caller.participant_id!r}"
        )
    return ParsedInstruction(
        message=message,
        signed=SignedInstruction(
            signer=caller.participant_id, payload=payload, signature=bytes(signed.signature)
        ),
    )
