"""Parsing a signed instruction: the canonical fast path decides exactly as the long way.

``settlement.instructions.parse`` takes a document already in the canonical
proto3 JSON form straight to its message (``exact_message``) and leaves every
other document to ``json_format.ParseDict`` and the comparison of bytes
(common.proto, "Encoding"). These tests hold the fast path to that, on every
instruction type of every service: random canonical instructions take it and
give ParseDict's message; documents changed at random (other spellings,
defaults, wrong types, unknown or camelCase keys) either leave it, or are
still canonical and give ParseDict's message and the same bytes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, cast

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import canonical
from settlement.instructions import canonical_bytes, exact_message
from settlement.v1 import (
    audit_pb2,
    common_pb2,
    ledger_pb2,
    loan_pb2,
    offtake_pb2,
    participant_pb2,
    payment_pb2,
)

MODULES = (common_pb2, participant_pb2, ledger_pb2, audit_pb2, payment_pb2, offtake_pb2, loan_pb2)

INSTRUCTION_TYPES: list[type[Message]] = sorted(
    (
        getattr(module, name)
        for module in MODULES
        for name in module.DESCRIPTOR.message_types_by_name
        if name.endswith("Instruction") and name != "SignedInstruction"
    ),
    key=lambda message_type: message_type.DESCRIPTOR.full_name,
)

INTEGER_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}

TEXT = st.text(alphabet=st.sampled_from('aZ09:-_ "\\\n\u00e9\u4e2d\U0001f600'), max_size=6)

REPLACEMENTS: list[Any] = [
    None,
    0,
    1,
    -1,
    2**53,
    True,
    False,
    "",
    "0",
    "00",
    "1",
    "01",
    "+1",
    "-0",
    " 1",
    "1.0",
    "1e2",
    "true",
    "SIDE_DEBIT",
    "side_debit",
    "AAAA",
    "AA==",
    "AB==",
    "AAB=",
    "AA",
    "-_8=",
    "\u00e9",
    [],
    [1],
    [""],
    [{}],
    {},
]
"""JSON values put in place of a member: every spelling the proto3 JSON parser
accepts for some field type, and values of the wrong type."""


def _walk(descriptor: Descriptor, seen: set[str]) -> Iterator[Descriptor]:
    if descriptor.full_name in seen:
        return
    seen.add(descriptor.full_name)
    yield descriptor
    for field in descriptor.fields:
        if field.message_type is not None:
            yield from _walk(field.message_type, seen)


def test_instruction_types_are_all_found() -> None:
    assert len(INSTRUCTION_TYPES) > 20
    assert ledger_pb2.TransactionInstruction in INSTRUCTION_TYPES


def test_no_field_type_has_a_second_json_spelling() -> None:
    """Why ``canonical_bytes`` may use the trusted encoder: no floats, maps or Struct."""
    seen: set[str] = set()
    floating = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
    wrong = [
        field.full_name
        for module in MODULES
        for top in module.DESCRIPTOR.message_types_by_name.values()
        for message in _walk(top, seen)
        for field in message.fields
        if field.type in floating
        or (field.message_type is not None and field.message_type.GetOptions().map_entry)
        or (
            field.message_type is not None
            and field.message_type.full_name.startswith("google.protobuf.")
            and field.message_type.full_name != "google.protobuf.Timestamp"
        )
    ]
    assert not wrong, wrong


@st.composite
def messages(draw: st.DrawFn, message_type: type[Message], depth: int = 0) -> Message:
    """A message of ``message_type`` with a random subset of its fields set."""
    message = message_type()
    for field in message_type.DESCRIPTOR.fields:
        if field.message_type is not None and field.message_type.full_name.startswith(
            "google.protobuf."
        ):
            continue
        if not draw(st.booleans()):
            continue
        if field.message_type is not None:
            if depth >= 2:
                continue
            child_type = GetMessageClass(cast(Descriptor, field.message_type))
            if field.is_repeated:
                children = draw(st.lists(messages(child_type, depth + 1), max_size=2))
                getattr(message, field.name).extend(children)
            else:
                getattr(message, field.name).CopyFrom(draw(messages(child_type, depth + 1)))
            continue
        values = _scalars(cast(FieldDescriptor, field))
        if field.is_repeated:
            getattr(message, field.name).extend(draw(st.lists(values, max_size=3)))
        else:
            setattr(message, field.name, draw(values))
    return message


def _scalars(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type in INTEGER_RANGES:
        low, high = INTEGER_RANGES[field.type]
        return st.one_of(st.integers(low, high), st.sampled_from([0, 1, low, high]))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=8)
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return st.sampled_from([value.number for value in field.enum_type.values])
    assert field.type == FieldDescriptor.TYPE_STRING, field.full_name
    return TEXT


def _document(message: Message) -> Any:
    return canonical.decode(canonical_bytes(message))


def _long_way(document: Any, message_type: type[Message]) -> Message | None:
    message = message_type()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=False)
    except (json_format.ParseError, TypeError, ValueError):
        return None
    return message


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _paths(item, (*path, position))


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    changed = copy.deepcopy(document)
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return changed


def _rename(document: Any, path: tuple[Any, ...], key: str) -> Any:
    changed = copy.deepcopy(document)
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    parent[key] = parent.pop(path[-1])
    return changed


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@pytest.mark.parametrize(
    "message_type", INSTRUCTION_TYPES, ids=[t.DESCRIPTOR.name for t in INSTRUCTION_TYPES]
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_canonical_instructions_take_the_fast_path(
    message_type: type[Message], data: st.DataObject
) -> None:
    message = data.draw(messages(message_type))
    document = _document(message)
    fast = exact_message(document, message_type)
    assert fast is not None
    assert fast == message == _long_way(document, message_type)


@pytest.mark.parametrize(
    "message_type", INSTRUCTION_TYPES, ids=[t.DESCRIPTOR.name for t in INSTRUCTION_TYPES]
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_other_document_decides_as_the_long_way(
    message_type: type[Message], data: st.DataObject
) -> None:
    document = _document(data.draw(messages(message_type)))
    paths = list(_paths(document))
    for _ in range(data.draw(st.integers(1, 3))):
        if not isinstance(document, dict):
            return  # not an object: refused before any parsing
        path = data.draw(st.sampled_from(paths))
        change = data.draw(st.sampled_from(["replace", "rename", "add"]))
        if change == "replace":
            document = _replace(document, path, data.draw(st.sampled_from(REPLACEMENTS)))
        elif change == "rename" and path and isinstance(path[-1], str):
            document = _rename(
                document, path, _camel(path[-1]) + data.draw(st.sampled_from(["", "x"]))
            )
        elif change == "add":
            names = [field.name for field in message_type.DESCRIPTOR.fields]
            name = data.draw(st.sampled_from([*names, "unknown_field"]))
            document = _replace(document, (name,), data.draw(st.sampled_from(REPLACEMENTS)))
        paths = list(_paths(document))
    if not isinstance(document, dict):
        return
    fast = exact_message(document, message_type)
    if fast is None:
        return
    # Taken: the long way would have parsed the same message and found it canonical.
    assert fast == _long_way(document, message_type)
    assert canonical_bytes(fast) == canonical.encode(document)


def _transaction(**members: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "instruction_id": "bank-us:1",
        "participant_id": "bank-us",
        "instruction_type": "settlement.v1.TransactionInstruction",
        "postings": [
            {"account_id": "a", "side": "SIDE_DEBIT", "amount_minor": "5", "currency": "USD"},
            {"account_id": "b", "side": "SIDE_CREDIT", "amount_minor": "5", "currency": "USD"},
        ],
    }
    document.update(members)
    return document


def _posting(**members: Any) -> dict[str, Any]:
    return _transaction(
        postings=[{"account_id": "a", "side": "SIDE_DEBIT", "amount_minor": "5", **members}]
    )


def _batch(*digests: Any) -> dict[str, Any]:
    return {
        "instruction_id": "bank-us:b",
        "participant_id": "bank-us",
        "instruction_type": "settlement.v1.TransactionBatchInstruction",
        "item_sha256": list(digests),
    }


OTHER_SPELLINGS = [
    ("int64 as a number", _posting(amount_minor=5)),
    ("int64 with a leading zero", _posting(amount_minor="05")),
    ("int64 with a plus sign", _posting(amount_minor="+5")),
    ("int64 negative zero", _posting(amount_minor="-0")),
    ("int64 in exponent form", _posting(amount_minor="5e0")),
    ("enum by number", _posting(side=1)),
    ("enum in lower case", _posting(side="side_debit")),
    ("default enum", _posting(side="SIDE_UNSPECIFIED")),
    ("default int64", _posting(amount_minor="0")),
    ("default string", _transaction(code="")),
    ("default bool", _transaction(pending=False)),
    ("bool as a number", _transaction(pending=1)),
    ("uint32 as a string", _transaction(timeout_seconds="5")),
    ("empty list", _transaction(postings=[])),
    ("null", _transaction(code=None)),
    ("camelCase name", {**_transaction(), "instructionId": "x"}),
    ("unknown field", _transaction(unknown=1)),
    ("list element not an object", _transaction(postings=["a"])),
    ("object where a list goes", _transaction(postings={})),
    ("bytes with trailing bits", _batch("AB==")),
    ("bytes without padding", _batch("AA")),
    ("bytes URL-safe", _batch("-_8=")),
    ("int64 beyond its range", _posting(amount_minor=str(2**63))),
]


@pytest.mark.parametrize(
    "document", [document for _, document in OTHER_SPELLINGS], ids=[n for n, _ in OTHER_SPELLINGS]
)
def test_other_spellings_take_the_long_way(document: dict[str, Any]) -> None:
    message_type = (
        ledger_pb2.TransactionBatchInstruction
        if "item_sha256" in document
        else ledger_pb2.TransactionInstruction
    )
    assert exact_message(document, message_type) is None


def test_an_optional_field_at_its_default_is_canonical() -> None:
    document = {
        "instruction_id": "account-1",
        "participant_id": "operator",
        "instruction_type": "settlement.v1.CreateAccountInstruction",
        "debit_limit_minor": "0",
    }
    fast = exact_message(document, ledger_pb2.CreateAccountInstruction)
    assert fast is not None
    assert fast.HasField("debit_limit_minor")
    assert fast == _long_way(document, ledger_pb2.CreateAccountInstruction)
    assert canonical_bytes(fast) == canonical.encode(document)
