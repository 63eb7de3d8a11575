"""The committed gRPC API is what `make proto` generates, and keeps the contract's rules.

The stubs under ``settlement/v1/`` are regenerated into a temporary directory
and compared byte for byte with the committed ones (as flower's
``check-protos.sh`` does). The other tests hold every ``settlement.v1`` message
to the conventions of ``common.proto`` so that later .proto files keep them,
and check that the signing example documented there is a valid test vector.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor, FileDescriptor

from settlement.v1 import audit_pb2, common_pb2, ledger_pb2, participant_pb2

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_proto.py"
PACKAGE_PATH = Path("settlement") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
FILES: tuple[FileDescriptor, ...] = (
    common_pb2.DESCRIPTOR,
    participant_pb2.DESCRIPTOR,
    ledger_pb2.DESCRIPTOR,
    audit_pb2.DESCRIPTOR,
)
SIGNING_DOMAIN = b"settlement.v1/signed-instruction\n"
EXPECTED_HEADER = [
    (1, "instruction_id", FieldDescriptor.TYPE_STRING),
    (2, "participant_id", FieldDescriptor.TYPE_STRING),
    (3, "instruction_type", FieldDescriptor.TYPE_STRING),
]
"""Fields 1..3 of every instruction message, as common.proto requires."""


def generated_files(package_dir: Path) -> dict[str, bytes]:
    """Files that the generator owns in a package directory, by name."""
    return {
        path.name: path.read_bytes()
        for path in package_dir.iterdir()
        if path.is_file() and (path.name == "__init__.py" or path.name.endswith(GENERATED_SUFFIXES))
    }


def test_committed_stubs_match_a_fresh_generation(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, f"scripts/gen_proto.py failed:\n{run.stdout}\n{run.stderr}"
    fresh = generated_files(tmp_path / PACKAGE_PATH)
    committed = generated_files(ROOT / PACKAGE_PATH)
    findings = []
    for name in sorted(fresh.keys() | committed.keys()):
        path = f"{PACKAGE_PATH.as_posix()}/{name}"
        if name not in committed:
            findings.append(f"{path} is missing: run `make proto`")
        elif name not in fresh:
            findings.append(f"{path} comes from no .proto file (left over): run `make proto`")
        elif committed[name] != fresh[name]:
            findings.append(f"{path} is stale (differs from a fresh generation): run `make proto`")
    assert not findings, "\n".join(findings)


def all_messages() -> Iterator[Descriptor]:
    """Every message declared in settlement.v1, nested ones included."""
    pending = [message for file in FILES for message in file.message_types_by_name.values()]
    while pending:
        message = pending.pop()
        yield message
        pending.extend(message.nested_types)


def upper_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def test_every_enum_starts_with_unspecified() -> None:
    enums = [enum for file in FILES for enum in file.enum_types_by_name.values()]
    enums += [enum for message in all_messages() for enum in message.enum_types]
    wrong = [
        f"{enum.full_name}: zero is {enum.values_by_number[0].name}"
        for enum in enums
        if enum.values_by_number.get(0) is None
        or enum.values_by_number[0].name != f"{upper_snake(enum.name)}_UNSPECIFIED"
    ]
    assert not wrong, wrong


def test_no_floating_point_anywhere_and_money_is_int64() -> None:
    floating = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
    wrong = [
        field.full_name
        for message in all_messages()
        for field in message.fields
        if field.type in floating
        or (field.name.endswith("_minor") and field.type != FieldDescriptor.TYPE_INT64)
    ]
    assert not wrong, wrong


def instruction_messages() -> list[Descriptor]:
    return [message for message in all_messages() if message.name.endswith("Instruction")]


def test_instructions_share_the_header_and_encode_one_way() -> None:
    # Timestamps, maps and floats have more than one JSON spelling across
    # languages; signed bytes must be reproducible by every client.
    allowed_messages = {"settlement.v1.Posting", "settlement.v1.SignedInstruction"}
    findings = []
    for message in instruction_messages():
        if message.full_name == "settlement.v1.SignedInstruction":
            continue
        header = [(field.number, field.name, field.type) for field in message.fields[:3]]
        if header != EXPECTED_HEADER:
            findings.append(f"{message.full_name}: header {header}, expected {EXPECTED_HEADER}")
        for field in message.fields:
            nested = field.message_type
            if nested is not None and nested.full_name not in allowed_messages:
                findings.append(f"{field.full_name}: message type {nested.full_name}")
    assert instruction_messages(), "no instruction messages found"
    assert not findings, "\n".join(findings)


def test_mutating_requests_carry_only_signed_instructions() -> None:
    # Nothing unsigned may change a write's result: field 1 is the signed
    # instruction; a batch adds its signed items (bound to it by SHA-256).
    signed = common_pb2.SignedInstruction.DESCRIPTOR
    findings = []
    for message in all_messages():
        fields = message.fields
        is_write = any(field.message_type is signed for field in fields)
        if not message.name.endswith("Request") or not is_write:
            continue
        first, *others = fields
        if (first.number, first.name, first.is_repeated) != (1, "instruction", False):
            findings.append(f"{message.full_name}: field 1 is {first.name}")
        findings += [
            f"{field.full_name}: not a repeated SignedInstruction named items"
            for field in others
            if (field.name, field.is_repeated, field.message_type) != ("items", True, signed)
        ]
    assert not findings, findings


def documented_example() -> tuple[bytes, int, bytes]:
    """The worked example of common.proto: body, stated length, signature."""
    text = (ROOT / "proto" / "settlement" / "v1" / "common.proto").read_text(encoding="utf-8")
    body = re.search(r"exactly these (\d+) bytes.*?\n//\s*\n//   (\{[^\n]*\})\n", text, re.DOTALL)
    signature = re.search(r"the signature is \(hex, 64 bytes\):\n//\s*\n//   ([0-9a-f]+)\n", text)
    assert body is not None, "worked example body not found in common.proto"
    assert signature is not None, "worked example signature not found in common.proto"
    return body.group(2).encode("utf-8"), int(body.group(1)), bytes.fromhex(signature.group(1))


def canonical(message: ledger_pb2.TransactionInstruction) -> bytes:
    encoded: bytes = rfc8785.dumps(
        json_format.MessageToDict(message, preserving_proto_field_name=True)
    )
    return encoded


def test_documented_signing_example_is_a_valid_vector() -> None:
    body, stated_length, signature = documented_example()
    assert len(body) == stated_length
    instruction = json_format.Parse(body, ledger_pb2.TransactionInstruction())
    assert canonical(instruction) == body
    assert instruction.instruction_type == instruction.DESCRIPTOR.full_name
    # RFC 8032 section 7.1, TEST 1.
    key = Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    )
    assert key.sign(SIGNING_DOMAIN + body) == signature
    key.public_key().verify(signature, SIGNING_DOMAIN + body)


@pytest.mark.parametrize(
    ("spelling", "why"),
    [
        ('{"amountMinor":"5"}', "camelCase name"),
        ('{"amount_minor":5}', "int64 as a number"),
        ('{ "amount_minor":"5"}', "whitespace"),
        ('{"amount_minor":"0"}', "explicit default"),
        ('{"side":2}', "enum as a number"),
    ],
)
def test_other_spellings_are_not_canonical(spelling: str, why: str) -> None:
    posting = json_format.Parse(spelling, ledger_pb2.Posting())
    reencoded = rfc8785.dumps(json_format.MessageToDict(posting, preserving_proto_field_name=True))
    assert reencoded != spelling.encode("utf-8"), why
