"""Hostile input to every RPC: each answer is a precise refusal (or a success), never INTERNAL.

Property-based (hypothesis), over the request message of every RPC of the
Participant, Ledger, Audit and Payment services, read from the generated
descriptors, on SQLite and PostgreSQL. Each example is one request, drawn
in one of these forms:

- ``signed``: the RPC's valid instruction (:meth:`World.valid_instruction`)
  with some fields replaced by hostile values of their type, or cleared,
  then encoded canonically and signed with the caller's key, so the request
  passes the common checks and reaches the RPC's own rules: empty, huge and
  control-character strings, ids of other participants' and of missing
  things, unknown currencies, zero, negative, maximum and minimum amounts,
  unknown enum numbers, many or duplicated postings; sometimes a bad
  signature, signer or type;
- ``bytes``: a signed instruction whose bytes are hostile: invalid UTF-8,
  not JSON, whitespace, camelCase names, numbers for int64, floats, duplicate
  keys, unknown fields, JSON nested 10,000 deep, metadata nested 9 to 1,000
  deep;
- ``message``: the request message itself generated from its descriptor;
- ``wire``: raw request bytes, invalid UTF-8 in a string field or garbage.

The batch RPC also gets batches of fuzzed items with duplicated ids and
mismatched hashes. Further tests send the fixed cases: 64-bit overflowing
sums, oversized instructions, requests and batches, invalid UTF-8 on the
wire for every RPC, and malformed ISO 20022 XML to ``ImportPacs008``
(not well-formed, wrong namespace, XXE, billion laughs, external DTD).

Every answer must be OK, or INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
ALREADY_EXISTS or RESOURCE_EXHAUSTED with a message (and the
``settlement-error-bin`` detail), or, for a forged signature or signer,
UNAUTHENTICATED / PERMISSION_DENIED with theirs. A refused request changes
nothing (:meth:`World.digest`: journal, accounts, balances, transactions,
participants, keys, rates, quotes, payments), and the ledger's invariants
hold after every RPC's run. The number of requests per RPC is printed in
the terminal summary; ``SETTLEMENT_FUZZ_EXAMPLES`` changes it and
``SETTLEMENT_FUZZ_SEED`` replays a run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from ledger.keys import public_key_bytes
from settlement.instructions import INSTRUCTION_MAX_BYTES, canonical_bytes
from settlement.pki import DevPki
from settlement.v1 import common_pb2, ledger_pb2, payment_pb2
from tests.grpc.hub_client import OPERATOR, new_id, transaction, transfer_postings, type_name
from tests.security.world import (
    FUZZED_SERVICES,
    FX,
    INSTRUCTION_TYPES,
    PK,
    US,
    Outcome,
    Rpc,
    World,
    call,
    outcome,
    populated_hub,
    post_pending_instruction,
    registered_rpcs,
    reverse_instruction,
    void_pending_instruction,
)

EXAMPLES_PER_RPC = int(os.environ.get("SETTLEMENT_FUZZ_EXAMPLES", "30"))
STREAM_EXAMPLES_PER_RPC = max(5, EXAMPLES_PER_RPC // 4)
"""Streaming reads may stay open until their deadline: fewer examples, short deadlines."""
STREAM_TIMEOUT_SECONDS = 0.25
SEED = int(os.environ.get("SETTLEMENT_FUZZ_SEED", str(random.SystemRandom().randrange(2**32))))

FUZZ_RPCS = [rpc for rpc in registered_rpcs() if rpc.service in FUZZED_SERVICES]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
UINT32_MAX = 2**32 - 1

REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
FORGERY_CODES = {
    grpc.StatusCode.UNAUTHENTICATED: {"signature_invalid", "signer_must_be_known"},
    grpc.StatusCode.PERMISSION_DENIED: {"signer_must_be_caller", "role_must_permit"},
}
"""Refusals of a forged signature, signer or role (the fuzz draws those too)."""

NATURAL_CALLER = {
    "ParticipantService": OPERATOR,
    "LedgerService": PK,
    "AuditService": PK,
    "CreateAccount": OPERATOR,
    "PublishRate": FX,
    "RequestQuote": US,
    "SubmitPayment": US,
    "ImportPacs008": US,
    "ReviewPayment": OPERATOR,
    "GetPayment": US,
    "GetPaymentMessage": US,
    "WatchPayments": US,
    "GetAccountStatement": PK,
    "ExportBundle": "auditor",
}
"""Who sends each RPC's requests: one who may make it, so the fuzz reaches its rules."""

REQUESTS_SENT: Counter[str] = Counter()
EXAMPLES_RUN: Counter[str] = Counter()
ANSWERED_OK: Counter[str] = Counter()

Draw = Callable[..., Any]
"""hypothesis' ``draw`` (of ``st.composite`` and of ``st.data()``)."""

SIGNING_PREFIX = b"settlement.v1/signed-instruction\n"
"""common.proto, "Signature": the domain-separation prefix."""


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest,
    dev_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
    figures: dict[str, dict[str, Any]],
) -> Iterator[World]:
    """A hub of this module's own: the fuzz rotates keys and freezes accounts of everyone."""
    with database_factory(request.param) as location, populated_hub(dev_pki, location) as built:
        built.backend = request.param
        yield built
    # Every request this module sent, hypothesis' and the fixed cases', per RPC.
    section = figures.setdefault(
        f"requests fuzzed per RPC ({request.param}): all / hypothesis / answered OK", {}
    )
    for rpc in FUZZ_RPCS:
        key = f"{request.param} {rpc.short}"
        section[rpc.short] = f"{REQUESTS_SENT[key]} / {EXAMPLES_RUN[key]} / {ANSWERED_OK[key]}"
    section["total"] = sum(
        count for key, count in REQUESTS_SENT.items() if key.startswith(request.param + " ")
    )
    section["seed"] = f"{SEED} (SETTLEMENT_FUZZ_SEED replays it)"


def caller_of(rpc: Rpc) -> str:
    return NATURAL_CALLER.get(rpc.name) or NATURAL_CALLER[rpc.descriptor.containing_service.name]


# -- hostile values ---------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "\n",
    "\t\r",
    "\x7f",
    "é",
    "\u202e\u200b",
    "😀" * 40,
    "A" * 33,
    "A" * 129,
    "A" * 141,
    "'; DROP TABLE accounts; --",
    "../../etc/passwd",
    "%s%n%x",
    "{}",
    "null",
    "-1",
    "1e400",
    "NaN",
    "０１２３",
]

AMOUNTS = [0, -1, 1, 2, INT64_MAX, INT64_MAX - 1, INT64_MIN, 2**53, 2**62, -(2**62)]


def known_values(world: World) -> dict[str, list[Any]]:
    """Field name -> values that name real things (own, another's) or nearly do."""
    accounts = [
        *world.settlement.values(),
        *(account for pair in world.pairs.values() for account in pair),
        "fees:USD",
        "ghost:account",
        "settlement:bank-pk:EUR",
    ]
    transactions = [*world.posted.values(), "ghost:transaction", f"payment:{world.payment_uetr}"]
    participants = ["operator", "auditor", US, PK, FX, "lender", "ghost", "OPERATOR"]
    uetrs = [
        world.payment_uetr,
        str(uuid.uuid4()),
        str(uuid.uuid1()),
        world.payment_uetr.upper(),
        "not-a-uuid",
    ]
    currencies = ["USD", "PKR", "EUR", "JPY", "XXX", "XTS", "usd", "US", "USDD", "\u0055SD"]
    return {
        "account_id": accounts,
        "original_transaction_id": transactions,
        "pending_transaction_id": transactions,
        "transaction_id": transactions,
        "instruction_id": [*transactions, *accounts],
        "participant_id": participants,
        "target_participant_id": participants,
        "owner_participant_id": participants,
        "fx_provider_id": participants,
        "creditor_agent_id": participants,
        "quote_id": ["ghost:quote", *transactions],
        "uetr": uetrs,
        "currency": currencies,
        "source_currency": currencies,
        "target_currency": currencies,
        "rate": ["278.45", "0", "-1", "1e5", "0.000000000000000001", "9" * 19, "1,5", "1.5.5"],
        "from_date": ["2026-11-28", "2026-02-30", "9999-12-31", "0000-01-01", "2026-1-1", ""],
        "to_date": ["2026-11-28", "2026-02-29", "1970-01-01", "99999-01-01"],
        "bic": ["CHASUS33", "HABBPKKA", "CHASUS3", "chasus33", "CHASXX33XXX"],
        "iban": ["PK36SCBL0000001123456702", "PK36SCBL0000001123456703", "DE89370400440532013000"],
        "lei": ["5493001KJTIIGC8Y1R12", "5493001KJTIIGC8Y1R13", "X" * 20],
        "aba_routing_number": ["021000021", "021000022", "12345678"],
        "country": ["US", "PK", "XK", "ZZ", "us", "USA"],
        "instruction_type": [
            *(type_name(message_type) for message_type in INSTRUCTION_TYPES.values()),
            "settlement.v1.Nothing",
        ],
        "metadata": [
            "{}",
            '{"a":1}',
            '{"a": 1}',
            '{"a":1.5}',
            '{"a":' + "[" * 9 + "]" * 9 + "}",
            '{"a":' + "[" * 1000 + "]" * 1000 + "}",
            '{"a":9007199254740993}',
            "[]",
            '{"a":"' + "x" * 5000 + '"}',
        ],
    }


def text_values(name: str, known: dict[str, list[Any]]) -> st.SearchStrategy[str]:
    options: list[st.SearchStrategy[str]] = [
        st.sampled_from(HOSTILE_TEXT),
        st.text(max_size=24),
        st.integers(1, 20_000).map(lambda length: "x" * length),
    ]
    if name in known:
        options.insert(0, st.sampled_from(known[name]))
    return st.one_of(options)


def bytes_values(name: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from([b"", b"\x00" * 32, b"\xff" * 33, b"\x01" * 31]),
        st.binary(max_size=80),
        st.just(b"<?xml version='1.0'?><Document/>"),
    )


def integer_values(field: Any) -> st.SearchStrategy[int]:
    kind = field.type
    if kind in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.one_of(
            st.sampled_from([0, 1, 2**53, 2**63 - 1, 2**63, UINT64_MAX]),
            st.integers(0, UINT64_MAX),
        )
    if kind in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.one_of(
            st.sampled_from([0, 1, 86_400, 86_401, UINT32_MAX]), st.integers(0, UINT32_MAX)
        )
    if kind in (
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
    ):
        return st.one_of(
            st.sampled_from([0, -1, INT32_MAX, INT32_MIN]), st.integers(INT32_MIN, INT32_MAX)
        )
    return st.one_of(st.sampled_from(AMOUNTS), st.integers(INT64_MIN, INT64_MAX))


def field_values(field: Any, known: dict[str, list[Any]], depth: int) -> st.SearchStrategy[Any]:
    """Hostile values of one (non-repeated) field's type."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return text_values(field.name, known)
    if kind == FieldDescriptor.TYPE_BYTES:
        return bytes_values(field.name)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        numbers = [value.number for value in field.enum_type.values]
        return st.sampled_from([*numbers, 99, -1, INT32_MAX])
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, known, depth + 1)
    return integer_values(field)


@st.composite
def messages(
    draw: st.DrawFn, descriptor: Any, known: dict[str, list[Any]], depth: int = 0
) -> Message:
    """A message of ``descriptor`` with any subset of its fields set to hostile values."""
    from google.protobuf import message_factory

    message = message_factory.GetMessageClass(descriptor)()
    if depth > 3:
        return message
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        set_field(draw, message, field, known, depth)
    return message


def set_field(
    draw: Draw,
    message: Message,
    field: Any,
    known: dict[str, list[Any]],
    depth: int,
) -> None:
    """Set ``field`` of ``message`` to hostile values (a list of them if repeated)."""
    values = field_values(field, known, depth)
    if field.is_repeated:
        count = draw(st.one_of(st.integers(0, 3), st.sampled_from([129, 300])))
        drawn = draw(st.lists(values, min_size=min(count, 3), max_size=min(count, 3)))
        if count > 3:
            drawn = (drawn or [draw(values)]) * (count // max(1, len(drawn) or 1))
        container: Any = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for value in drawn:
                container.add().CopyFrom(value)
        else:
            container.extend(drawn)
        return
    value = draw(values)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


# -- requests ---------------------------------------------------------------------------------


def signed(payload: bytes, world: World, signer: str) -> common_pb2.SignedInstruction:
    """``payload`` signed by ``signer``, whatever its size (the client library refuses > 1 MiB)."""
    key = world.client.keys[signer]
    return common_pb2.SignedInstruction(
        instruction=payload, signature=key.sign(SIGNING_PREFIX + payload)
    )


def hostile_payloads(instruction: Message) -> list[bytes]:
    """Bytes that are not the canonical encoding of ``instruction`` (or not JSON at all)."""
    document = json_format.MessageToDict(instruction, preserving_proto_field_name=True)
    canonical = canonical_bytes(instruction)
    numbers = {
        key: int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value
        for key, value in document.items()
    }
    text = canonical.decode("utf-8")
    return [
        canonical.replace(b'"instruction_id":"', b'"instruction_id":"\xff\xfe'),
        b"\xef\xbb\xbf" + canonical,
        canonical + b" ",
        canonical + b"\x00",
        json.dumps(document, indent=2).encode(),
        json_format.MessageToJson(instruction).encode(),
        json.dumps(numbers, sort_keys=True, separators=(",", ":")).encode(),
        text.replace("}", ',"unknown_field":1}', 1).encode(),
        ("{" + text[1:-1] + "," + text[1:-1] + "}").encode(),
        text.replace('":"', '":1.5,"x":"', 1).encode(),
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        b"[]",
        b"{}",
        b"null",
        b'"string"',
        b"not json",
        b"\x00\x01\x02",
        b'{"instruction_id":1e400}',
        b'{"instruction_id":NaN}',
        b'{"instruction_id":"\\ud800"}',
    ]


def nested_metadata(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


BENIGN: dict[str, list[Any]] = {
    "metadata": ["", "{}", '{"k":"v"}', '{"invoice":"INV-1","lines":[1,2],"paid":true}'],
    "code": ["", "TRANSFER", "FEE"],
    "reference": ["", "ref-1", "eb6305c9-1f7f-49de-aed0-16487c27b42d"],
    "reason": ["security fuzz", "review"],
    "remittance_information": ["", "Invoice 7"],
    "end_to_end_id": ["E2E-1", "INV-2026-0042"],
    "amount_minor": [1, 7, 999, 1_000_000],
    "debit_limit_minor": [0, 1, 1_000_000],
    "fee_minor": [0, 1, 2_500],
    "valid_seconds": [1, 600, 86_400],
    "expiry_seconds": [0, 1, 600, 3_600],
    "timeout_seconds": [0, 1, 600],
    "pending": [False, True],
    "rate": ["278.45", "1", "0.0036"],
}
"""Valid values of common fields: a request changed only in these still succeeds
(or meets a state rule), so answers OK, and what they wrote, are checked too."""


def mutated(
    draw: Draw, world: World, rpc: Rpc, base: Message, *, benign_only: bool = False
) -> Message:
    """``base`` with some fields hostile, benign or cleared; an instruction gets a fresh
    id unless the id is drawn too.

    ``benign_only``: every change is a valid value (:data:`BENIGN`), so the
    request should succeed or meet a rule of the hub's state.
    """
    known = known_values(world)
    message = type(base)()
    message.CopyFrom(base)
    if rpc.mutating and rpc.name != "OpenSettlementAccount":
        # (That id is the new account's, "settlement:<participant>:<currency>".)
        message.instruction_id = new_id(caller_of(rpc))  # type: ignore[attr-defined]
    fields: list[Any] = list(message.DESCRIPTOR.fields)
    chosen: set[Any] = draw(st.sets(st.sampled_from(fields), max_size=4))
    for field in sorted(chosen, key=lambda item: item.number):
        treatment = (
            "benign"
            if benign_only
            else draw(st.sampled_from(["clear", "benign", "hostile", "hostile"]))
        )
        if treatment == "clear":
            message.ClearField(field.name)
            continue
        if treatment == "benign":
            if field.name in BENIGN:
                setattr(message, field.name, draw(st.sampled_from(BENIGN[field.name])))
            continue
        if field.name == "metadata" and draw(st.booleans()):
            message.metadata = nested_metadata(draw(st.sampled_from([8, 9, 64, 1000])))  # type: ignore[attr-defined]
            continue
        if field.is_repeated:
            message.ClearField(field.name)
        set_field(draw, message, field, known, 0)
    return message


def fuzzed_request(
    draw: Draw, world: World, rpc: Rpc, base: Message | None
) -> tuple[str, Message | bytes]:
    """One request of ``rpc``: its form and the message (or raw bytes)."""
    known = known_values(world)
    forms = ["message", "wire"]
    if base is not None:
        forms = ["signed", "signed", "signed", "benign", "benign", "bytes", *forms]
        if not rpc.mutating:
            forms.remove("bytes")
    form = draw(st.sampled_from(forms))
    who = caller_of(rpc)
    if form == "message":
        return form, draw(messages(rpc.request_type.DESCRIPTOR, known))
    if form == "wire":
        return form, draw(wire_bytes(rpc))
    assert base is not None
    if not rpc.mutating:
        return form, mutated(draw, world, rpc, base, benign_only=form == "benign")
    if form == "bytes":
        payload = draw(st.sampled_from(hostile_payloads(base)))
        return form, rpc.request_type(instruction=signed(payload, world, who))
    instruction = mutated(draw, world, rpc, base, benign_only=form == "benign")
    payload = canonical_bytes(instruction)
    signature = world.client.keys[who].sign(SIGNING_PREFIX + payload)
    forgery = draw(st.integers(0, 9)) if form == "signed" else None
    if forgery == 0:
        signature = draw(st.sampled_from([b"", signature[:63], signature + b"\x00", bytes(64)]))
    elif forgery == 1:
        signature = world.client.keys[US if who != US else PK].sign(SIGNING_PREFIX + payload)
    request = rpc.request_type(
        instruction=common_pb2.SignedInstruction(instruction=payload, signature=signature)
    )
    if rpc.name == "CreateTransactionBatch":
        items = draw(batch_items(world))
        digests = [hashlib.sha256(item.instruction).digest() for item in items]
        if draw(st.booleans()) and isinstance(instruction, ledger_pb2.TransactionBatchInstruction):
            # Mostly bound to its items, so the items' own rules are reached.
            del instruction.item_sha256[:]
            instruction.item_sha256.extend(digests)
            request = rpc.request_type(instruction=signed(canonical_bytes(instruction), world, who))
        request.items.extend(items)  # type: ignore[attr-defined]
    return form, request


@st.composite
def batch_items(draw: st.DrawFn, world: World) -> list[common_pb2.SignedInstruction]:
    """Items of bank-pk: fuzzed transactions, posts, voids, reversals; duplicated ids."""
    payer, payee = world.pairs[PK]
    known = known_values(world)
    builders: list[Callable[[], Message]] = [
        lambda: transaction(PK, transfer_postings(payer, payee, 1)),
        lambda: post_pending_instruction(PK, world.posted[PK]),
        lambda: void_pending_instruction(PK, world.posted[PK]),
        lambda: reverse_instruction(PK, world.posted[PK]),
    ]
    count = draw(st.integers(0, 5))
    items = []
    for _ in range(count):
        base = draw(st.sampled_from(builders))()
        if draw(st.booleans()):
            field: Any = draw(st.sampled_from(list(base.DESCRIPTOR.fields)))
            if field.is_repeated:
                base.ClearField(field.name)
            set_field(draw, base, field, known, 0)
        items.append(base)
    if len(items) >= 2 and draw(st.booleans()):
        items[1].instruction_id = items[0].instruction_id  # type: ignore[attr-defined]
    return [signed(canonical_bytes(item), world, PK) for item in items]


@st.composite
def wire_bytes(draw: st.DrawFn, rpc: Rpc) -> bytes:
    """Raw request bytes: invalid UTF-8 in a string field, or garbage."""
    strings: list[Any] = [
        field
        for field in rpc.request_type.DESCRIPTOR.fields
        if field.type == FieldDescriptor.TYPE_STRING
    ]
    use_string: bool = draw(st.booleans())
    if strings and use_string:
        chosen: Any = draw(st.sampled_from(strings))
        return invalid_utf8_field(
            chosen.number, draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b"]))
        )
    return draw(st.binary(max_size=64))


def invalid_utf8_field(number: int, payload: bytes) -> bytes:
    """A length-delimited field ``number`` holding ``payload`` (not valid UTF-8)."""
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# -- the checks -------------------------------------------------------------------------------


def send(
    world: World, rpc: Rpc, request: Message | bytes, who: str, *, timeout: float | None = None
) -> Outcome:
    REQUESTS_SENT[f"{world.backend} {rpc.short}"] += 1
    if timeout is None:
        # ExportBundle ends by itself (a whole bundle); the watches stream on.
        live = rpc.streaming and rpc.name != "ExportBundle"
        timeout = STREAM_TIMEOUT_SECONDS if live else 30.0
    got = outcome(lambda: call(world.channel(who), rpc, request, timeout=timeout))
    if rpc.streaming and got.status is grpc.StatusCode.DEADLINE_EXCEEDED:
        # Still streaming when the deadline came: a live stream, not a refusal.
        got = Outcome(grpc.StatusCode.OK)
    if got.status is grpc.StatusCode.OK:
        ANSWERED_OK[f"{world.backend} {rpc.short}"] += 1
    return got


def problems_with(got: Outcome, changed: bool, *, grpc_limit: bool = False) -> list[str]:
    """What is wrong with an answer, given whether the state changed."""
    if got.status is grpc.StatusCode.OK:
        return []
    found = []
    allowed = got.status in REFUSALS or got.code in FORGERY_CODES.get(got.status, set())
    if not allowed:
        found.append(f"answered {got.status.name} {got.code} {got.details!r}")
    if not got.details:
        found.append(f"{got.status.name} without a message")
    elif not got.has_detail and not (
        grpc_limit and got.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    ):
        found.append(f"{got.status.name} without the settlement-error-bin detail: {got.details!r}")
    if changed:
        found.append(f"refused ({got.status.name} {got.code}) but the ledger changed")
    return found


def check_batch_growth(world: World, got: Outcome, size_before: int) -> list[str]:
    """An OK batch wrote exactly its CREATED items, no failed one."""
    if got.status is not grpc.StatusCode.OK or not got.responses:
        return []
    response: Any = got.responses[0]
    created = sum(
        1 for result in response.results if result.status == common_pb2.COMMIT_STATUS_CREATED
    )
    grown = world.journal_size() - size_before
    return [] if grown == created else [f"batch: {created} items CREATED, journal grew {grown}"]


BASES: dict[tuple[int, str], Message | None] = {}


RICH_FIELDS = {"metadata": '{"k":"v"}', "code": "FUZZ", "reference": "fuzz-ref"}
"""Optional text set in every base instruction that has it, so mutations keep or drop it."""


def base_instruction(world: World, rpc: Rpc) -> Message | None:
    """The RPC's valid instruction, built once per hub (its setup writes stay outside
    examples), with its optional text fields set; None for a read."""
    key = (id(world), rpc.path)
    if key not in BASES:
        if not rpc.mutating:
            BASES[key] = None
        elif rpc.name == "CreateTransactionBatch":
            BASES[key] = ledger_pb2.TransactionBatchInstruction(
                instruction_id=new_id(PK),
                participant_id=PK,
                instruction_type=type_name(ledger_pb2.TransactionBatchInstruction),
                linked=True,
            )
        else:
            who = caller_of(rpc)
            instruction = world.valid_instruction(rpc.path, who, who)
            for name, value in RICH_FIELDS.items():
                if name in instruction.DESCRIPTOR.fields_by_name and not getattr(instruction, name):
                    setattr(instruction, name, value)
            BASES[key] = instruction
    return BASES[key]


def refreshed(world: World, rpc: Rpc, base: Message | None) -> Message | None:
    """``base`` with what one request uses up made anew: a fresh UETR, participant,
    key, pending or posted transaction, held payment, funds to defund, so that
    every example can reach the RPC's rules, not only the first one."""
    if base is None or not rpc.mutating:
        return base
    message: Any = type(base)()
    message.CopyFrom(base)
    name = rpc.name
    if name == "RegisterParticipant":
        target = f"p-{uuid.uuid4().hex[:16]}"
        message.target_participant_id = target
        message.certificate_common_name = target
        message.signing_public_key = public_key_bytes(Ed25519PrivateKey.generate())
    elif name == "RotateSigningKey":
        message.signing_public_key = public_key_bytes(Ed25519PrivateKey.generate())
    elif name == "OpenSettlementAccount":
        target = world.client.register().participant_id
        message.target_participant_id = target
        message.instruction_id = f"settlement:{target}:{message.currency}"
    elif name == "Defund":
        world.client.fund(message.account_id, message.amount_minor)
    elif name in ("PostPendingTransaction", "VoidPendingTransaction"):
        message.pending_transaction_id = world.pending_transaction(PK)
    elif name == "ReverseTransaction":
        message.original_transaction_id = world.posted_transaction(PK)
    elif name == "SubmitPayment":
        message.uetr = str(uuid.uuid4())
    elif name == "ImportPacs008":
        message.pacs008_xml = world.pacs008(US)[1]
    elif name == "ReviewPayment":
        message.uetr = world.held_payment()
    fresh: Message = message
    return fresh


def base_request(world: World, rpc: Rpc) -> Message | None:
    """What the fuzz mutates: the valid instruction of a write, a valid request of a read."""
    if rpc.mutating:
        return base_instruction(world, rpc)
    return world.read_request(rpc, PK)


def test_every_mutating_rpc_has_an_instruction_type() -> None:
    missing = [rpc.path for rpc in FUZZ_RPCS if rpc.mutating and rpc.path not in INSTRUCTION_TYPES]
    assert missing == [], f"add these RPCs' instruction messages to INSTRUCTION_TYPES: {missing}"


@pytest.mark.parametrize("rpc", FUZZ_RPCS, ids=lambda rpc: rpc.short)
def test_fuzz_rpc(world: World, rpc: Rpc) -> None:
    """Hypothesis over one RPC's requests (module docstring); invariants hold afterwards."""
    base = base_request(world, rpc)
    who = caller_of(rpc)
    examples = STREAM_EXAMPLES_PER_RPC if rpc.streaming else EXAMPLES_PER_RPC
    print(f"fuzz seed {SEED} (SETTLEMENT_FUZZ_SEED={SEED} replays it)")

    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        form, request = fuzzed_request(data.draw, world, rpc, refreshed(world, rpc, base))
        EXAMPLES_RUN[f"{world.backend} {rpc.short}"] += 1
        before = world.digest()
        size_before = world.journal_size()
        got = send(world, rpc, request, who)
        changed = world.digest() != before
        found = problems_with(got, changed, grpc_limit=form == "wire")
        if rpc.name == "CreateTransactionBatch":
            found += check_batch_growth(world, got, size_before)
        assert found == [], f"{rpc.short} ({form}): {found}"

    run()
    world.client.server.hub.ledger.check_invariants()


# -- fixed hostile cases ----------------------------------------------------------------------


def refused_without_change(
    world: World, rpc: Rpc, request: Message | bytes, who: str, *, grpc_limit: bool = False
) -> Outcome:
    before = world.digest()
    got = send(world, rpc, request, who, timeout=30.0)
    found = problems_with(got, world.digest() != before, grpc_limit=grpc_limit)
    assert got.status is not grpc.StatusCode.OK, f"{rpc.short}: accepted"
    assert found == [], f"{rpc.short}: {found}"
    return got


def rpc_named(name: str) -> Rpc:
    return next(rpc for rpc in FUZZ_RPCS if rpc.name == name)


@pytest.mark.parametrize("rpc", FUZZ_RPCS, ids=lambda rpc: rpc.short)
def test_oversized_and_invalid_utf8_requests(world: World, rpc: Rpc) -> None:
    """A request over 16 MiB, an instruction over 1 MiB, invalid UTF-8 on the wire."""
    who = caller_of(rpc)
    oversized = invalid_utf8_field(1, b"x" * (16 * 1024 * 1024 + 1))
    got = refused_without_change(world, rpc, oversized, who, grpc_limit=True)
    assert got.status is grpc.StatusCode.RESOURCE_EXHAUSTED
    strings = [
        field
        for field in rpc.request_type.DESCRIPTOR.fields
        if field.type == FieldDescriptor.TYPE_STRING
    ]
    for field in strings:
        got = refused_without_change(world, rpc, invalid_utf8_field(field.number, b"\xc3\x28"), who)
        assert got.status is grpc.StatusCode.INVALID_ARGUMENT, got
    if rpc.mutating:
        base = base_instruction(world, rpc)
        assert base is not None
        padded = type(base)()
        padded.CopyFrom(base)
        padded.instruction_id = "x" * (INSTRUCTION_MAX_BYTES + 1)  # type: ignore[attr-defined]
        request = rpc.request_type(instruction=signed(canonical_bytes(padded), world, who))
        got = refused_without_change(world, rpc, request, who)
        assert (got.status, got.code) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "limit_exceeded")


def test_sums_that_overflow_64_bits(world: World) -> None:
    payer, payee = world.pairs[PK]
    rpc = rpc_named("CreateTransaction")
    for postings in (
        [
            ledger_pb2.Posting(
                account_id=payer, side=ledger_pb2.SIDE_DEBIT, amount_minor=INT64_MAX, currency="USD"
            ),
            ledger_pb2.Posting(
                account_id=payer, side=ledger_pb2.SIDE_DEBIT, amount_minor=INT64_MAX, currency="USD"
            ),
            ledger_pb2.Posting(
                account_id=payee, side=ledger_pb2.SIDE_CREDIT, amount_minor=1, currency="USD"
            ),
        ],
        [
            ledger_pb2.Posting(
                account_id=payer, side=ledger_pb2.SIDE_DEBIT, amount_minor=2**62, currency="USD"
            ),
            ledger_pb2.Posting(
                account_id=payer, side=ledger_pb2.SIDE_DEBIT, amount_minor=2**62, currency="USD"
            ),
            ledger_pb2.Posting(
                account_id=payee, side=ledger_pb2.SIDE_CREDIT, amount_minor=2**62, currency="USD"
            ),
            ledger_pb2.Posting(
                account_id=payee, side=ledger_pb2.SIDE_CREDIT, amount_minor=2**62, currency="USD"
            ),
        ],
    ):
        request = ledger_pb2.CreateTransactionRequest(
            instruction=world.sign(transaction(PK, postings))
        )
        got = refused_without_change(world, rpc, request, PK)
        assert (got.status, got.code) == (grpc.StatusCode.INVALID_ARGUMENT, "amount_must_fit_int64")
    # A balance that would leave the int64 range: the operator's unlimited source.
    source = world.client.account(OPERATOR, "USD", normal_side=ledger_pb2.SIDE_DEBIT)
    sink = world.client.account(OPERATOR, "USD")
    world.client.write(transaction(OPERATOR, transfer_postings(source, sink, INT64_MAX)))
    request = ledger_pb2.CreateTransactionRequest(
        instruction=world.sign(transaction(OPERATOR, transfer_postings(source, sink, 1)))
    )
    got = refused_without_change(world, rpc, request, OPERATOR)
    assert got.status is grpc.StatusCode.INVALID_ARGUMENT, got


def test_batch_limits_and_duplicated_ids(world: World) -> None:
    rpc = rpc_named("CreateTransactionBatch")
    payer, payee = world.pairs[PK]
    twin = transaction(PK, transfer_postings(payer, payee, 3))
    duplicate = world.batch_request(PK, [twin, twin], linked=True)
    before, size = world.digest(), world.journal_size()
    got = send(world, rpc, duplicate, PK)
    assert got.status in (grpc.StatusCode.OK, *REFUSALS), got
    if got.status is grpc.StatusCode.OK:
        statuses = [result.status for result in got.responses[0].results]  # type: ignore[attr-defined]
        assert (
            common_pb2.COMMIT_STATUS_CREATED not in statuses[1:]
            or statuses.count(common_pb2.COMMIT_STATUS_CREATED) == 1
        ), statuses
        assert world.journal_size() - size <= 1
    else:
        assert world.digest() == before
    different = transaction(PK, transfer_postings(payer, payee, 4))
    different.instruction_id = twin.instruction_id + "-2"
    clash = transaction(
        PK, transfer_postings(payer, payee, 5), instruction_id=different.instruction_id
    )
    unlinked = world.batch_request(PK, [different, clash], linked=False)
    size = world.journal_size()
    got = send(world, rpc, unlinked, PK)
    if got.status is grpc.StatusCode.OK:
        results = got.responses[0].results  # type: ignore[attr-defined]
        assert [result.status for result in results].count(common_pb2.COMMIT_STATUS_CREATED) <= 1
        assert world.journal_size() - size <= 1
    else:
        assert problems_with(got, False) == []
    # NUL in an item (PostgreSQL text cannot hold it): that item fails, the others commit.
    nul_item = transaction(PK, transfer_postings(payer + "\x00", payee, 6))
    fine_item = transaction(PK, transfer_postings(payer, payee, 7))
    size = world.journal_size()
    got = send(world, rpc, world.batch_request(PK, [nul_item, fine_item], linked=False), PK)
    assert got.status is grpc.StatusCode.OK, got
    results = got.responses[0].results  # type: ignore[attr-defined]
    assert results[0].status == common_pb2.COMMIT_STATUS_FAILED
    assert results[1].status == common_pb2.COMMIT_STATUS_CREATED
    assert world.journal_size() == size + 1
    items = [signed(b"{}", world, PK)] * 8_001
    batch = ledger_pb2.TransactionBatchInstruction(
        instruction_id=new_id(PK),
        participant_id=PK,
        instruction_type=type_name(ledger_pb2.TransactionBatchInstruction),
        linked=True,
        item_sha256=[hashlib.sha256(b"{}").digest()] * 8_001,
    )
    request = ledger_pb2.CreateTransactionBatchRequest(
        instruction=signed(canonical_bytes(batch), world, PK), items=items
    )
    got = refused_without_change(world, rpc, request, PK)
    assert got.status is grpc.StatusCode.RESOURCE_EXHAUSTED, got


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"><FIToFICstmrCdtTrf>
<GrpHdr><MsgId>&lol9;</MsgId></GrpHdr></FIToFICstmrCdtTrf></Document>"""


DECLARES_ENTITIES = frozenset(
    {
        "xxe file",
        "xxe http",
        "external dtd",
        "parameter entity",
        "internal entity",
        "billion laughs",
        "quadratic blowup",
    }
)
"""Documents with a DTD: refused unread (payment.proto, ImportPacs008), whatever it holds."""


def malformed_documents(template: bytes, secret_path: str) -> dict[str, bytes]:
    """Hostile pacs.008 documents, by name."""
    body = template.split(b"?>", 1)[1] if template.startswith(b"<?xml") else template
    return {
        "not well-formed": template[: len(template) // 2],
        "not XML": b"\x00\x01 definitely not xml",
        "empty": b"",
        "wrong namespace": template.replace(b"pacs.008.001.08", b"pacs.008.001.02"),
        "no namespace": template.replace(
            b' xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"', b""
        ),
        "another message": template.replace(b"pacs.008.001.08", b"camt.053.001.08"),
        "xxe file": (
            b'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY xxe SYSTEM "file://'
            + secret_path.encode()
            + b'">]>'
            + body.replace(b"<Ustrd>", b"<Ustrd>&xxe;", 1)
        ),
        "xxe http": (
            b'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">]>'
            + body.replace(b"<Ustrd>", b"<Ustrd>&xxe;", 1)
        ),
        "external dtd": b'<?xml version="1.0"?><!DOCTYPE Document SYSTEM "http://127.0.0.1:9/pacs.dtd">'
        + body,
        "parameter entity": (
            b'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY % p SYSTEM "file://'
            + secret_path.encode()
            + b'"> %p;]>'
            + body
        ),
        "internal entity": (
            b'<?xml version="1.0"?><!DOCTYPE Document [<!ENTITY e "EXPANDED-ENTITY">]>'
            + body.replace(b"<Ustrd>", b"<Ustrd>&e;", 1)
        ),
        "billion laughs": BILLION_LAUGHS,
        "quadratic blowup": (
            b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "'
            + b"x" * 50_000
            + b'">]>'
            + b"<Document>"
            + b"&a;" * 5_000
            + b"</Document>"
        ),
        "deeply nested": b"<a>" * 100_000 + b"</a>" * 100_000,
        "over 1 MiB": template.replace(b"<Ustrd>", b"<Ustrd>" + b" " * (1024 * 1024), 1),
        "utf-16": template.decode("utf-8").encode("utf-16"),
        "xinclude": body.replace(
            b"<Ustrd>",
            b'<Ustrd><xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://'
            + secret_path.encode()
            + b'" parse="text"/>',
            1,
        ),
    }


def test_malformed_pacs008_is_refused_unexpanded(world: World, tmp_path: Any) -> None:
    """ImportPacs008: not well-formed, wrong namespace, XXE, billion laughs: refused unexpanded."""
    rpc = rpc_named("ImportPacs008")
    secret = f"SECRET-{uuid.uuid4()}"
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(secret)
    creditor_agent, template = world.pacs008(US)
    for name, document in malformed_documents(template, str(secret_file)).items():
        instruction = payment_pb2.ImportPacs008Instruction(
            instruction_id=new_id(US),
            participant_id=US,
            instruction_type=type_name(payment_pb2.ImportPacs008Instruction),
            pacs008_xml=document,
            creditor_agent_id=creditor_agent,
        )
        request = payment_pb2.ImportPacs008Request(
            instruction=signed(canonical_bytes(instruction), world, US)
        )
        started = time.monotonic()
        got = refused_without_change(world, rpc, request, US)
        elapsed = time.monotonic() - started
        assert got.status in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ), (name, got)
        if name in DECLARES_ENTITIES:
            assert got.code == "xml_must_not_declare_entities", (name, got)
        assert "EXPANDED-ENTITY" not in got.details, f"{name}: the entity was expanded"
        assert secret not in got.details, f"{name}: the entity was expanded into the answer"
        assert "lollol" not in got.details, f"{name}: the entity was expanded into the answer"
        assert elapsed < 5, f"{name}: took {elapsed:.1f} s"
    # And the template itself imports: the refusals above are about the hostility.
    good = payment_pb2.ImportPacs008Instruction(
        instruction_id=new_id(US),
        participant_id=US,
        instruction_type=type_name(payment_pb2.ImportPacs008Instruction),
        pacs008_xml=world.pacs008(US)[1],
        creditor_agent_id=creditor_agent,
    )
    request = payment_pb2.ImportPacs008Request(instruction=signed(canonical_bytes(good), world, US))
    assert send(world, rpc, request, US).status is grpc.StatusCode.OK


def test_base64_and_bytes_fields_survive_every_value(world: World) -> None:
    """Signing keys of every length and content: a clear refusal, never a crash."""
    rpc = rpc_named("RegisterParticipant")
    base = base_instruction(world, rpc)
    assert base is not None
    for key_bytes in (
        b"",
        b"\x00" * 31,
        b"\x00" * 32,
        b"\xff" * 32,
        b"\x01" * 33,
        bytes(range(32)),
    ):
        instruction = type(base)()
        instruction.CopyFrom(base)
        instruction.instruction_id = new_id(OPERATOR)  # type: ignore[attr-defined]
        instruction.target_participant_id = f"p-{uuid.uuid4().hex[:12]}"  # type: ignore[attr-defined]
        instruction.certificate_common_name = instruction.target_participant_id  # type: ignore[attr-defined]
        instruction.signing_public_key = key_bytes  # type: ignore[attr-defined]
        request = rpc.request_type(
            instruction=signed(canonical_bytes(instruction), world, OPERATOR)
        )
        got = send(world, rpc, request, OPERATOR)
        assert problems_with(got, False) == [], (base64.b64encode(key_bytes), got)


def string_paths(
    descriptor: Any, prefix: tuple[Any, ...] = (), depth: int = 0
) -> list[tuple[Any, ...]]:
    """Every path of fields from ``descriptor`` down to a string field (messages 3 deep)."""
    paths: list[tuple[Any, ...]] = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            paths.append((*prefix, field))
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
            paths += string_paths(field.message_type, (*prefix, field), depth + 1)
    return paths


def with_text_at(message: Message, path: tuple[Any, ...], value: str) -> Message:
    """A copy of ``message`` with ``value`` in the string field at ``path``."""
    copy = type(message)()
    copy.CopyFrom(message)
    target: Any = copy
    for field in path[:-1]:
        if field.is_repeated:
            container = getattr(target, field.name)
            target = container[0] if len(container) else container.add()
        else:
            target = getattr(target, field.name)
    last = path[-1]
    if last.is_repeated:
        getattr(target, last.name).append(value)
    else:
        setattr(target, last.name, value)
    return copy


@pytest.mark.parametrize("rpc", FUZZ_RPCS, ids=lambda rpc: rpc.short)
def test_nul_and_control_characters_in_every_string_field(world: World, rpc: Rpc) -> None:
    """NUL (which PostgreSQL text cannot hold) and other controls, in every string field."""
    who = caller_of(rpc)
    base = base_instruction(world, rpc)
    template: Message = base if base is not None else world.read_request(rpc, PK)
    failures = []
    for path in string_paths(template.DESCRIPTOR):
        for value in ("\x00", "a\x00b", "\x1b[31m", "\u2028"):
            hostile = with_text_at(template, path, value)
            if base is not None:
                hostile.instruction_id = new_id(who)  # type: ignore[attr-defined]
                if path[0].name == "instruction_id":
                    hostile = with_text_at(hostile, path, value)
                request: Message = rpc.request_type(
                    instruction=signed(canonical_bytes(hostile), world, who)
                )
            else:
                request = hostile
            before = world.digest()
            got = send(world, rpc, request, who)
            changed = world.digest() != before
            where = ".".join(field.name for field in path)
            found = problems_with(got, changed)
            if found:
                failures.append(f"{where}={value!r}: {found[0]}")
    assert failures == [], "\n".join(failures)
