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

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
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
    # float or double fields, no maps and no well-known type but Timestamp
    # (tests/unit/test_instruction_parsing.py holds every settlement.v1 file
    # to it), so the proto3 JSON mapping yields only strings (int64, bytes
    # and timestamps included), bools, int32 and uint32 numbers (safe
    # integers), lists and objects. For such a document, when the sorted-keys
    # output is ASCII it is already the RFC 8785 form; anything else takes the
    # strict encoder.
    return canonical.encode_trusted(document)


# -- the canonical fast path ---------------------------------------------------------

FAST_PARSE_DEPTH_MAX = 8
"""Nesting the fast path follows (instructions nest two levels); deeper goes the long way."""

_INT64_TYPES: Final = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_INT32_TYPES: Final = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_SFIXED32,
    }
)

_FIELDS_BY_KEY: dict[str, dict[str, FieldDescriptor]] = {}
"""Per message type, the field json_format.ParseDict takes for each JSON key."""


class _NotExact(Exception):
    """The document is not one the fast path proves canonical: take the long way."""


def _fields_by_key(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    fields = _FIELDS_BY_KEY.get(descriptor.full_name)
    if fields is None:
        # ParseDict looks a key up by JSON name first, then by proto name.
        fields = {field.name: field for field in descriptor.fields}
        fields.update((field.json_name, field) for field in descriptor.fields)
        _FIELDS_BY_KEY[descriptor.full_name] = fields
    return fields


def _exact_scalar(field: FieldDescriptor, value: Any) -> Any:
    """The field value of a JSON value spelled exactly as MessageToDict spells it."""
    kind = field.type
    value_type = type(value)
    if value_type is str:
        if kind == FieldDescriptor.TYPE_STRING:
            return value
        if kind in _INT64_TYPES:
            return _exact_int64(value)
        if kind == FieldDescriptor.TYPE_ENUM:
            return _exact_enum(field, value)
        if kind == FieldDescriptor.TYPE_BYTES:
            return _exact_bytes(value)
    elif (value_type is int and kind in _INT32_TYPES) or (
        value_type is bool and kind == FieldDescriptor.TYPE_BOOL
    ):
        return value
    raise _NotExact


def _exact_int64(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise _NotExact from None
    if str(number) != text:
        raise _NotExact
    return number


def _exact_enum(field: FieldDescriptor, name: str) -> int:
    enum_type = field.enum_type
    enum_value = None if enum_type is None else enum_type.values_by_name.get(name)
    if enum_type is None or enum_value is None:
        raise _NotExact
    if enum_type.values_by_number[enum_value.number].name != name:
        raise _NotExact  # an alias: MessageToDict prints the first name
    return int(enum_value.number)


def _exact_bytes(text: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise _NotExact from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise _NotExact
    return raw


def _fill_exact(message: Message, document: dict[str, Any], depth: int) -> None:
    if depth > FAST_PARSE_DEPTH_MAX:
        raise _NotExact
    fields = _fields_by_key(cast(Descriptor, message.DESCRIPTOR))
    for key, value in document.items():
        field = fields.get(key)
        # Only original names (a JSON name is another spelling), no oneof of
        # several members (ParseDict refuses two of them), no maps.
        if (
            field is None
            or field.name != key
            or (field.containing_oneof is not None and len(field.containing_oneof.fields) > 1)
        ):
            raise _NotExact
        if field.is_repeated:
            # An empty list is the default, which the canonical form omits.
            if type(value) is not list or not value:
                raise _NotExact
            container = getattr(message, key)
            if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                if field.message_type is None or field.message_type.GetOptions().map_entry:
                    raise _NotExact
                for item in value:
                    if type(item) is not dict:
                        raise _NotExact
                    _fill_exact(container.add(), item, depth + 1)
            else:
                container.extend([_exact_scalar(field, item) for item in value])
        elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            if (
                type(value) is not dict
                or field.message_type is None
                or field.message_type.full_name.startswith("google.protobuf.")
            ):
                raise _NotExact
            child = getattr(message, key)
            child.SetInParent()
            _fill_exact(child, value, depth + 1)
        else:
            converted = _exact_scalar(field, value)
            # A field without presence holding its default is omitted by the
            # canonical form (0, "", false, b"" and enum 0 are all falsy).
            if not converted and not field.has_presence:
                raise _NotExact
            setattr(message, key, converted)


def exact_message(document: dict[str, Any], message_type: type[MessageType]) -> MessageType | None:
    """The message of a document already in its canonical proto3 JSON form, else None.

    Returns a message only when every member is spelled exactly as
    ``json_format.MessageToDict(message, preserving_proto_field_name=True)``
    spells it: original field names, no default values outside ``optional``
    fields, int64 as decimal strings, int32 and bools as JSON numbers and
    literals, enums by their names, bytes as padded standard base64, nested
    objects the same way. Such a document is ``MessageToDict`` of the message
    returned, which is what ``json_format.ParseDict`` makes of it; so when its
    bytes are RFC 8785, they are ``canonical_bytes`` of the message, without
    ParseDict and a second encoding (two thirds of parsing an instruction).
    None leaves the document to ParseDict and the comparison of bytes, which
    decide as before: the fast path never refuses anything.
    """
    message = message_type()
    try:
        _fill_exact(message, document, 1)
    except (_NotExact, ValueError, TypeError):
        # ValueError and TypeError: out of range for the field; ParseDict says so.
        return None
    return message


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
    # The payload is the RFC 8785 form of ``document`` (decode checked it), so
    # a document in the canonical proto3 JSON form is a canonical instruction.
    message = exact_message(document, message_type)
    if message is None:
        message = message_type()
        try:
            json_format.ParseDict(document, message, ignore_unknown_fields=False)
        except (json_format.ParseError, TypeError, ValueError) as error:
            raise InstructionMustParse(
                f"instruction is not a valid {message_type.DESCRIPTOR.full_name}: {error}"
            ) from None
        if canonical_bytes(message) != payload:
            raise JsonMustBeCanonical(
                "instruction bytes are not the canonical encoding of their content: use "
                "original field names, omit default values, int64 as strings, enums by name, "
                "RFC 8785 order"
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
