"""ParticipantService over mutual TLS, on SQLite and on PostgreSQL (participant.proto).

One hub per backend for the whole module (the ``hub`` fixture below): the
demo participants of the development PKI are registered through the RPC
itself, then every test works on participants and accounts of its own, so
the tests do not depend on each other's order.

Local fixture: ``tests/grpc/conftest.py`` starts a server per test; the
module-scoped ``hub`` here builds the same server (``BackgroundServer``,
mutual TLS with the session's ``dev_pki``) once per module and backend.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format
from google.protobuf.message import Message

from ledger.keys import load_public_key, public_key_bytes
from ledger.records import AccountStatus
from ledger.signing import sign_instruction
from settlement.instructions import canonical_bytes, sign
from settlement.pki import DevPki
from settlement.v1 import (
    common_pb2,
    ledger_pb2,
    participant_pb2,
)
from tests.grpc.hub_client import (
    CALL_TIMEOUT_SECONDS,
    DENIED,
    EVERYONE,
    EXHAUSTED,
    EXISTS,
    INVALID,
    NOT_FOUND,
    OK,
    OPERATOR,
    PARTICIPANTS,
    PRECONDITION,
    UNAUTHENTICATED,
    HubClient,
    defund,
    fund,
    new_id,
    open_account,
    refusal,
    registration,
    running_hub,
)
from tests.grpc.hub_client import type_name as _type

# -- instructions ---------------------------------------------------------------------


def set_limit(
    account_id: str, limit: int, **fields: Any
) -> participant_pb2.SetAccountLimitInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(),
        "participant_id": OPERATOR,
        "instruction_type": _type(participant_pb2.SetAccountLimitInstruction),
        "account_id": account_id,
        "debit_limit_minor": limit,
    }
    values.update(fields)
    return participant_pb2.SetAccountLimitInstruction(**values)


def freeze(account_id: str, **fields: Any) -> participant_pb2.FreezeAccountInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(),
        "participant_id": OPERATOR,
        "instruction_type": _type(participant_pb2.FreezeAccountInstruction),
        "account_id": account_id,
        "reason": "compliance review",
    }
    values.update(fields)
    return participant_pb2.FreezeAccountInstruction(**values)


def unfreeze(account_id: str, **fields: Any) -> participant_pb2.UnfreezeAccountInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(),
        "participant_id": OPERATOR,
        "instruction_type": _type(participant_pb2.UnfreezeAccountInstruction),
        "account_id": account_id,
        "reason": "review closed",
    }
    values.update(fields)
    return participant_pb2.UnfreezeAccountInstruction(**values)


def rotate(participant_id: str, public_key: bytes, **fields: Any) -> Message:
    values: dict[str, Any] = {
        "instruction_id": new_id(),
        "participant_id": OPERATOR,
        "instruction_type": _type(participant_pb2.RotateSigningKeyInstruction),
        "target_participant_id": participant_id,
        "signing_public_key": public_key,
    }
    values.update(fields)
    return participant_pb2.RotateSigningKeyInstruction(**values)


def new_public_key() -> bytes:
    return public_key_bytes(Ed25519PrivateKey.generate())


REQUEST_TYPES: dict[str, type[Message]] = {
    "RegisterParticipant": participant_pb2.RegisterParticipantRequest,
    "RotateSigningKey": participant_pb2.RotateSigningKeyRequest,
    "OpenSettlementAccount": participant_pb2.OpenSettlementAccountRequest,
    "SetAccountLimit": participant_pb2.SetAccountLimitRequest,
    "FreezeAccount": participant_pb2.FreezeAccountRequest,
    "UnfreezeAccount": participant_pb2.UnfreezeAccountRequest,
    "Fund": participant_pb2.FundRequest,
    "Defund": participant_pb2.DefundRequest,
}
WRITES = tuple(REQUEST_TYPES)


def request_of(method: str, signed: common_pb2.SignedInstruction) -> Message:
    return REQUEST_TYPES[method](instruction=signed)


def call(hub: HubClient, who: str, method: str, request: Message) -> Any:
    return getattr(hub.participants(who), method)(request, timeout=CALL_TIMEOUT_SECONDS)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hub(
    request: pytest.FixtureRequest,
    dev_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
) -> Iterator[HubClient]:
    """One hub per backend for the module, with the demo participants registered."""
    with database_factory(request.param) as location, running_hub(dev_pki, location) as client:
        yield client


# -- registration as read back --------------------------------------------------------------


def test_registration_reads_back_with_its_key_history(hub: HubClient) -> None:
    for participant_id in ("auditor", *PARTICIPANTS):
        expected = hub.pki.participant(participant_id)
        found = (
            hub.participants(participant_id)
            .GetParticipant(
                participant_pb2.GetParticipantRequest(participant_id=participant_id),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            .participant
        )
        assert found.participant_id == participant_id
        assert found.legal_name == expected.legal_name
        assert found.role == participant_pb2.Role.Value(f"ROLE_{expected.role.value.upper()}")
        assert (found.country, found.bic, found.lei) == (
            expected.country,
            expected.bic,
            expected.lei,
        )
        assert found.aba_routing_number == expected.aba_routing_number
        assert found.iban_bank_code == expected.iban_bank_code
        assert found.certificate_common_name == expected.certificate_common_name
        (key,) = found.signing_keys
        assert key.public_key == public_key_bytes(load_public_key(expected.signing_public_key_path))
        assert not key.HasField("valid_until_index")
        assert found.registered_at.seconds > 0


def test_register_returns_the_signing_key_entry_and_the_key_signs_from_the_next(
    hub: HubClient,
) -> None:
    instruction, _ = registration()
    response = hub.participants().RegisterParticipant(
        participant_pb2.RegisterParticipantRequest(instruction=hub.sign(instruction)),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert response.result.status == common_pb2.COMMIT_STATUS_CREATED
    assert response.result.instruction_id == instruction.instruction_id
    index = response.result.receipt.journal_index
    (key,) = response.participant.signing_keys
    assert key.valid_from_index == index + 1
    assert key.public_key == instruction.signing_public_key
    entry = next(
        iter(
            hub.ledger().WatchJournal(
                ledger_pb2.WatchJournalRequest(from_index=index, stop_at_end=True),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        )
    ).entry
    assert entry.kind == ledger_pb2.ENTRY_KIND_SIGNING_KEY
    assert entry.entry_id == instruction.instruction_id
    assert entry.signed_instruction.instruction == canonical_bytes(instruction)
    assert entry.receipt.leaf_hash == response.result.receipt.leaf_hash


def test_rotation_keeps_the_old_key_in_the_history_and_refuses_its_new_signatures(
    hub: HubClient,
) -> None:
    lender_accounts = [hub.open_account("lender", "USD"), hub.open_account("lender", "PKR")]
    new_key = Ed25519PrivateKey.generate()
    response = hub.participants().RotateSigningKey(
        participant_pb2.RotateSigningKeyRequest(
            instruction=hub.sign(rotate("lender", public_key_bytes(new_key)))
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    index = response.result.receipt.journal_index
    old, new = response.participant.signing_keys
    assert old.valid_until_index == index
    assert new.valid_from_index == index + 1
    assert not new.HasField("valid_until_index")
    assert new.public_key == public_key_bytes(new_key)
    old_key, hub.keys["lender"] = hub.keys["lender"], new_key
    hub.fund(lender_accounts[0], 1_000)

    def lender_transfer(signer: Ed25519PrivateKey) -> Any:
        instruction = ledger_pb2.TransactionInstruction(
            instruction_id=new_id("lender"),
            participant_id="lender",
            instruction_type=_type(ledger_pb2.TransactionInstruction),
            postings=[
                ledger_pb2.Posting(
                    account_id=lender_accounts[0],
                    side=ledger_pb2.SIDE_DEBIT,
                    amount_minor=10,
                    currency="USD",
                ),
                ledger_pb2.Posting(
                    account_id=lender_accounts[0],
                    side=ledger_pb2.SIDE_CREDIT,
                    amount_minor=10,
                    currency="USD",
                ),
            ],
        )
        return hub.ledger("lender").CreateTransaction(
            ledger_pb2.CreateTransactionRequest(instruction=sign(instruction, signer)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    size = hub.journal_size()
    status, detail = refusal(lambda: lender_transfer(old_key))
    assert (status, detail.code) == (UNAUTHENTICATED, "signature_invalid")
    assert hub.journal_size() == size
    assert lender_transfer(new_key).result.status == common_pb2.COMMIT_STATUS_CREATED


# -- who may call what ---------------------------------------------------------------------------


def _valid_write(hub: HubClient, method: str) -> Message:
    """A request the operator's call commits (any other caller is refused first)."""
    if method == "RegisterParticipant":
        instruction: Message = registration()[0]
    elif method == "RotateSigningKey":
        instruction = rotate(hub.register().participant_id, new_public_key())
    elif method == "OpenSettlementAccount":
        instruction = open_account(hub.register().participant_id)
    elif method == "SetAccountLimit":
        instruction = set_limit(hub.scratch_account(), 1_000)
    elif method == "FreezeAccount":
        instruction = freeze(hub.scratch_account())
    elif method == "UnfreezeAccount":
        instruction = unfreeze(hub.scratch_account())
    elif method == "Fund":
        instruction = fund(hub.scratch_account(), 100)
    else:
        account = hub.scratch_account()
        hub.fund(account, 100)
        instruction = defund(account, 100)
    return request_of(method, hub.sign(instruction))


ROLE_TABLE = [
    *[
        (
            method,
            who,
            OK if who == OPERATOR else DENIED,
            "" if who == OPERATOR else "role_must_permit",
        )
        for method in WRITES
        for who in EVERYONE
    ],
    *[
        (
            "GetParticipant",
            who,
            OK if who in (OPERATOR, "auditor", "bank-pk") else NOT_FOUND,
            "" if who in (OPERATOR, "auditor", "bank-pk") else "participant_must_exist",
        )
        for who in EVERYONE
    ],
    *[("ListParticipants", who, OK, "") for who in EVERYONE],
]


@pytest.mark.parametrize(("method", "who", "expected", "code"), ROLE_TABLE)
def test_role_table(
    hub: HubClient, method: str, who: str, expected: grpc.StatusCode, code: str
) -> None:
    """participant.proto: writes are the operator's; others' records are NOT_FOUND."""
    if method == "GetParticipant":
        request: Message = participant_pb2.GetParticipantRequest(participant_id="bank-pk")
    elif method == "ListParticipants":
        request = participant_pb2.ListParticipantsRequest()
    else:
        request = _valid_write(hub, method)
    size = hub.journal_size()
    if expected is not OK:
        status, detail = refusal(lambda: call(hub, who, method, request))
        assert (status, detail.code) == (expected, code)
        assert hub.journal_size() == size
        return
    response = call(hub, who, method, request)
    if method == "ListParticipants":
        listed = [participant.participant_id for participant in response.participants]
        if who in (OPERATOR, "auditor"):
            assert set(EVERYONE) <= set(listed)
        else:
            assert listed == [who]
    elif method == "GetParticipant":
        assert response.participant.participant_id == "bank-pk"
    else:
        assert response.result.status == common_pb2.COMMIT_STATUS_CREATED
        assert hub.journal_size() > size


# -- refusals, one row per rule, in each RPC's order ---------------------------------------------

Row = tuple[str, Callable[[HubClient], tuple[str, Message]], grpc.StatusCode, str, list[str]]


def _register(**fields: Any) -> Callable[[HubClient], tuple[str, Message]]:
    def build(hub: HubClient) -> tuple[str, Message]:
        return "RegisterParticipant", request_of(
            "RegisterParticipant", hub.sign(registration(**fields)[0])
        )

    return build


def _register_taken(field_name: str) -> Callable[[HubClient], tuple[str, Message]]:
    """A registration whose id, certificate name or key another participant has."""

    def build(hub: HubClient) -> tuple[str, Message]:
        taken: dict[str, dict[str, Any]] = {
            "target_participant_id": {"target_participant_id": "bank-us"},
            "certificate_common_name": {"certificate_common_name": "bank-us"},
            "signing_public_key": {
                "signing_public_key": public_key_bytes(
                    load_public_key(hub.pki.participant("bank-pk").signing_public_key_path)
                )
            },
        }
        return "RegisterParticipant", request_of(
            "RegisterParticipant", hub.sign(registration(**taken[field_name])[0])
        )

    return build


CHANGED_FIELD = {
    "RegisterParticipant": "legal_name",
    "RotateSigningKey": "signing_public_key",
    "OpenSettlementAccount": "debit_limit_minor",
    "SetAccountLimit": "debit_limit_minor",
    "FreezeAccount": "reason",
    "UnfreezeAccount": "reason",
    "Fund": "reference",
    "Defund": "reference",
}
"""The field a test changes to send a committed id again with another body."""


def _changed(instruction: Message, field_name: str) -> Message:
    value = getattr(instruction, field_name)
    if isinstance(value, bytes):
        changed: Any = new_public_key()
    elif isinstance(value, int):
        changed = value + 1
    else:
        changed = value + " changed"
    setattr(instruction, field_name, changed)
    return instruction


def _changed_body(method: str) -> Callable[[HubClient], tuple[str, Message]]:
    """A committed instruction's id sent again with another body."""

    def build(hub: HubClient) -> tuple[str, Message]:
        original = _valid_write(hub, method)
        call(hub, OPERATOR, method, original)
        instruction = _changed(_message_of(original, method), CHANGED_FIELD[method])
        return method, request_of(method, hub.sign(instruction))

    return build


INSTRUCTION_TYPES: dict[str, type[Message]] = {
    "RegisterParticipant": participant_pb2.RegisterParticipantInstruction,
    "RotateSigningKey": participant_pb2.RotateSigningKeyInstruction,
    "OpenSettlementAccount": participant_pb2.OpenSettlementAccountInstruction,
    "SetAccountLimit": participant_pb2.SetAccountLimitInstruction,
    "FreezeAccount": participant_pb2.FreezeAccountInstruction,
    "UnfreezeAccount": participant_pb2.UnfreezeAccountInstruction,
    "Fund": participant_pb2.FundInstruction,
    "Defund": participant_pb2.DefundInstruction,
}


def _message_of(request: Any, method: str) -> Message:
    """The instruction a request carries, decoded."""
    return json_format.Parse(bytes(request.instruction.instruction), INSTRUCTION_TYPES[method]())


def _bad_signature(method: str) -> Callable[[HubClient], tuple[str, Message]]:
    def build(hub: HubClient) -> tuple[str, Message]:
        request: Any = _valid_write(hub, method)
        signature = bytearray(request.instruction.signature)
        signature[0] ^= 1
        request.instruction.signature = bytes(signature)
        return method, request

    return build


def _scratch(
    method: str, make: Callable[[HubClient], Message]
) -> Callable[[HubClient], tuple[str, Message]]:
    def build(hub: HubClient) -> tuple[str, Message]:
        return method, request_of(method, hub.sign(make(hub)))

    return build


def _frozen_account(hub: HubClient) -> str:
    account = hub.scratch_account()
    hub.participants().FreezeAccount(
        participant_pb2.FreezeAccountRequest(instruction=hub.sign(freeze(account))),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return account


def _closed_account(hub: HubClient) -> str:
    account = hub.scratch_account()
    hub.set_status(account, AccountStatus.CLOSED)
    return account


def _funded_account(hub: HubClient, amount_minor: int = 1_000, limit: int = 0) -> str:
    account = hub.scratch_account(limit=limit)
    hub.fund(account, amount_minor)
    return account


def _foreign_funding_account(hub: HubClient) -> str:
    """A EUR settlement account while 'funding:EUR' is a bank's account, not the hub's."""
    instruction = ledger_pb2.CreateAccountInstruction(
        instruction_id="funding:EUR",
        participant_id=OPERATOR,
        instruction_type=_type(ledger_pb2.CreateAccountInstruction),
        owner_participant_id=hub.register().participant_id,
        currency="EUR",
        normal_side=ledger_pb2.SIDE_DEBIT,
    )
    hub.ledger().CreateAccount(
        ledger_pb2.CreateAccountRequest(instruction=hub.sign(instruction)),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return hub.scratch_account("EUR")


def _funding_account(hub: HubClient, currency: str = "USD") -> str:
    """The hub's funding account in ``currency`` (a first Fund creates it)."""
    hub.fund(hub.scratch_account(currency), 1, currency)
    return f"funding:{currency}"


def _oversized(hub: HubClient) -> tuple[str, Message]:
    instruction, _ = registration(legal_name="x" * (1024 * 1024))
    # Refused before the signature is looked at; sign() itself refuses such sizes.
    signed = common_pb2.SignedInstruction(
        instruction=canonical_bytes(instruction), signature=bytes(64)
    )
    return "RegisterParticipant", request_of("RegisterParticipant", signed)


def _beyond_own_funds_badly_signed(hub: HubClient) -> tuple[str, Message]:
    request: Any = request_of("Defund", hub.sign(defund(_funded_account(hub, 100), 101)))
    request.instruction.signature = bytes(64)
    return "Defund", request


def _replace_payload(
    method: str, change: Callable[[bytes], bytes], signer: str = OPERATOR
) -> Callable[[HubClient], tuple[str, Message]]:
    """Common checks: the payload altered, then signed by ``signer``."""

    def build(hub: HubClient) -> tuple[str, Message]:
        request: Any = _valid_write(hub, method)
        payload = change(bytes(request.instruction.instruction))
        request.instruction.instruction = payload
        request.instruction.signature = sign_instruction(hub.keys[signer], payload)
        return method, request

    return build


def _id_used_by_bank(hub: HubClient) -> tuple[str, Message]:
    account = hub.open_account("bank-us", "CHF")
    hub.fund(account, 100, "CHF")
    taken = new_id("bank-us")
    instruction = ledger_pb2.TransactionInstruction(
        instruction_id=taken,
        participant_id="bank-us",
        instruction_type=_type(ledger_pb2.TransactionInstruction),
        postings=[
            ledger_pb2.Posting(
                account_id=account, side=ledger_pb2.SIDE_DEBIT, amount_minor=1, currency="CHF"
            ),
            ledger_pb2.Posting(
                account_id=account, side=ledger_pb2.SIDE_CREDIT, amount_minor=1, currency="CHF"
            ),
        ],
    )
    hub.ledger("bank-us").CreateTransaction(
        ledger_pb2.CreateTransactionRequest(instruction=hub.sign(instruction, "bank-us")),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return "Fund", request_of("Fund", hub.sign(fund(account, 5, "CHF", instruction_id=taken)))


REFUSALS: list[Row] = [
    # Common checks of common.proto (3 to 6), on one RPC each.
    ("limit_exceeded", _oversized, EXHAUSTED, "limit_exceeded", []),
    (
        "json_must_be_canonical",
        _replace_payload("Fund", lambda payload: payload.replace(b",", b", ", 1)),
        INVALID,
        "json_must_be_canonical",
        [],
    ),
    (
        "instruction_must_parse",
        _replace_payload("Fund", lambda payload: b'{"aaa":"red",' + payload[1:]),
        INVALID,
        "instruction_must_parse",
        [],
    ),
    (
        "instruction_type_must_match",
        _replace_payload(
            "Defund",
            lambda payload: payload.replace(b"DefundInstruction", b"FundInstruction"),
        ),
        INVALID,
        "instruction_type_must_match",
        [],
    ),
    (
        "signer_must_be_caller",
        _replace_payload(
            "Fund",
            lambda payload: payload.replace(
                b'"participant_id":"operator"', b'"participant_id":"auditor"'
            ),
            signer="auditor",
        ),
        DENIED,
        "signer_must_be_caller",
        [],
    ),
    ("id_taken", _id_used_by_bank, EXISTS, "id_taken", []),
    # RegisterParticipant, in participant.proto's order.
    (
        "register participant_id_must_be_valid",
        _register(target_participant_id="bank:us"),
        INVALID,
        "participant_id_must_be_valid",
        ["target_participant_id"],
    ),
    (
        "register legal_name empty",
        _register(legal_name=""),
        INVALID,
        "text_must_be_valid",
        ["legal_name"],
    ),
    (
        "register legal_name control character",
        _register(legal_name="Bank\x07"),
        INVALID,
        "text_must_be_valid",
        ["legal_name"],
    ),
    (
        "register role_must_be_specified",
        _register(role=participant_pb2.ROLE_UNSPECIFIED),
        INVALID,
        "role_must_be_specified",
        ["role"],
    ),
    (
        "register country lower case",
        _register(country="us"),
        INVALID,
        "country_must_be_valid",
        ["country"],
    ),
    (
        "register country not assigned",
        _register(country="XK", bic="", aba_routing_number="", role=participant_pb2.ROLE_LENDER),
        INVALID,
        "country_must_be_valid",
        ["country"],
    ),
    ("register bic missing for a bank", _register(bic=""), INVALID, "bic_must_be_valid", ["bic"]),
    ("register bic malformed", _register(bic="CHAS1S33"), INVALID, "bic_must_be_valid", ["bic"]),
    ("register bic lower case", _register(bic="chasus33"), INVALID, "bic_must_be_valid", ["bic"]),
    (
        "register country_must_match_bic",
        _register(bic="HABBPKKA", aba_routing_number=""),
        INVALID,
        "country_must_match_bic",
        ["bic", "country"],
    ),
    ("register lei missing", _register(lei=""), INVALID, "lei_must_be_valid", ["lei"]),
    (
        "register lei check digits",
        _register(lei="5493000DEMOBANKUS000"),
        INVALID,
        "lei_must_be_valid",
        ["lei"],
    ),
    (
        "register aba checksum",
        _register(aba_routing_number="021000022"),
        INVALID,
        "aba_routing_number_must_be_valid",
        ["aba_routing_number"],
    ),
    (
        "register aba outside the US",
        _register(country="PK", bic="HABBPKKA", aba_routing_number="021000021"),
        INVALID,
        "aba_routing_number_must_be_valid",
        ["aba_routing_number"],
    ),
    (
        "register iban bank code shape",
        _register(country="PK", bic="HABBPKKA", aba_routing_number="", iban_bank_code="HAB1"),
        INVALID,
        "iban_bank_code_must_be_valid",
        ["iban_bank_code"],
    ),
    (
        "register iban bank code outside IBAN countries",
        _register(iban_bank_code="CHAS"),
        INVALID,
        "iban_bank_code_must_be_valid",
        ["iban_bank_code"],
    ),
    (
        "register certificate name empty",
        _register(certificate_common_name=""),
        INVALID,
        "certificate_common_name_must_be_valid",
        ["certificate_common_name"],
    ),
    (
        "register certificate name too long",
        _register(certificate_common_name="c" * 65),
        INVALID,
        "certificate_common_name_must_be_valid",
        ["certificate_common_name"],
    ),
    (
        "register signing key size",
        _register(signing_public_key=b"\x01" * 31),
        INVALID,
        "signing_key_must_be_valid",
        ["signing_public_key"],
    ),
    (
        "register exists_with_different_body",
        _changed_body("RegisterParticipant"),
        EXISTS,
        "exists_with_different_body",
        ["legal_name"],
    ),
    (
        "register participant_exists",
        _register_taken("target_participant_id"),
        EXISTS,
        "participant_exists",
        ["target_participant_id"],
    ),
    (
        "register certificate_common_name_taken",
        _register_taken("certificate_common_name"),
        EXISTS,
        "certificate_common_name_taken",
        ["certificate_common_name"],
    ),
    (
        "register signing_key_taken",
        _register_taken("signing_public_key"),
        EXISTS,
        "signing_key_taken",
        ["signing_public_key"],
    ),
    (
        "register signature_invalid",
        _bad_signature("RegisterParticipant"),
        UNAUTHENTICATED,
        "signature_invalid",
        [],
    ),
    # RotateSigningKey.
    (
        "rotate participant_id_must_be_valid",
        _scratch("RotateSigningKey", lambda hub: rotate("", new_public_key())),
        INVALID,
        "participant_id_must_be_valid",
        ["target_participant_id"],
    ),
    (
        "rotate signing_key_must_be_valid",
        _scratch("RotateSigningKey", lambda hub: rotate("bank-us", b"")),
        INVALID,
        "signing_key_must_be_valid",
        ["signing_public_key"],
    ),
    (
        "rotate exists_with_different_body",
        _changed_body("RotateSigningKey"),
        EXISTS,
        "exists_with_different_body",
        ["signing_public_key"],
    ),
    (
        "rotate participant_must_exist",
        _scratch("RotateSigningKey", lambda hub: rotate("nobody", new_public_key())),
        NOT_FOUND,
        "participant_must_exist",
        ["target_participant_id"],
    ),
    (
        "rotate signing_key_taken by itself",
        _scratch(
            "RotateSigningKey",
            lambda hub: rotate(
                "bank-pk",
                public_key_bytes(
                    load_public_key(hub.pki.participant("bank-pk").signing_public_key_path)
                ),
            ),
        ),
        EXISTS,
        "signing_key_taken",
        ["signing_public_key"],
    ),
    (
        "rotate signature_invalid",
        _bad_signature("RotateSigningKey"),
        UNAUTHENTICATED,
        "signature_invalid",
        [],
    ),
    # OpenSettlementAccount.
    (
        "open participant_id_must_be_valid",
        _scratch("OpenSettlementAccount", lambda hub: open_account("bad id")),
        INVALID,
        "participant_id_must_be_valid",
        ["target_participant_id"],
    ),
    (
        "open currency_must_be_known",
        _scratch("OpenSettlementAccount", lambda hub: open_account("bank-us", "XYZ")),
        INVALID,
        "currency_must_be_known",
        [],
    ),
    (
        "open instruction_id_must_be_account_id",
        _scratch(
            "OpenSettlementAccount",
            lambda hub: open_account("bank-us", "GBP", instruction_id=new_id()),
        ),
        INVALID,
        "instruction_id_must_be_account_id",
        ["instruction_id"],
    ),
    (
        "open participant_must_exist",
        _scratch("OpenSettlementAccount", lambda hub: open_account("nobody")),
        NOT_FOUND,
        "participant_must_exist",
        ["target_participant_id"],
    ),
    (
        "open participant_must_hold_accounts",
        _scratch("OpenSettlementAccount", lambda hub: open_account("auditor")),
        PRECONDITION,
        "participant_must_hold_accounts",
        ["target_participant_id"],
    ),
    (
        "open debit_limit_must_not_be_negative",
        _scratch(
            "OpenSettlementAccount",
            lambda hub: open_account(hub.register().participant_id, limit=-1),
        ),
        INVALID,
        "debit_limit_must_not_be_negative",
        ["debit_limit_minor"],
    ),
    (
        "open account_exists_with_different_fields",
        _changed_body("OpenSettlementAccount"),
        EXISTS,
        "account_exists_with_different_fields",
        ["debit_limit_minor"],
    ),
    (
        "open signature_invalid",
        _bad_signature("OpenSettlementAccount"),
        UNAUTHENTICATED,
        "signature_invalid",
        [],
    ),
    # SetAccountLimit.
    (
        "limit id_must_be_valid",
        _scratch("SetAccountLimit", lambda hub: set_limit("no such account", 1)),
        INVALID,
        "id_must_be_valid",
        [],
    ),
    (
        "limit debit_limit_must_not_be_negative",
        _scratch("SetAccountLimit", lambda hub: set_limit(hub.scratch_account(), -5)),
        INVALID,
        "debit_limit_must_not_be_negative",
        [],
    ),
    (
        "limit exists_with_different_body",
        _changed_body("SetAccountLimit"),
        EXISTS,
        "exists_with_different_body",
        ["debit_limit_minor"],
    ),
    (
        "limit account_must_exist",
        _scratch("SetAccountLimit", lambda hub: set_limit("settlement:nobody:USD", 1)),
        NOT_FOUND,
        "account_must_exist",
        [],
    ),
    (
        "limit signature_invalid",
        _bad_signature("SetAccountLimit"),
        UNAUTHENTICATED,
        "signature_invalid",
        [],
    ),
    # FreezeAccount and UnfreezeAccount.
    (
        "freeze id_must_be_valid",
        _scratch("FreezeAccount", lambda hub: freeze("")),
        INVALID,
        "id_must_be_valid",
        [],
    ),
    (
        "freeze reason empty",
        _scratch("FreezeAccount", lambda hub: freeze(hub.scratch_account(), reason="")),
        INVALID,
        "text_must_be_valid",
        ["reason"],
    ),
    (
        "freeze reason too long",
        _scratch("FreezeAccount", lambda hub: freeze(hub.scratch_account(), reason="r" * 141)),
        INVALID,
        "text_must_be_valid",
        ["reason"],
    ),
    (
        "freeze exists_with_different_body",
        _changed_body("FreezeAccount"),
        EXISTS,
        "exists_with_different_body",
        ["reason"],
    ),
    (
        "freeze account_must_exist",
        _scratch("FreezeAccount", lambda hub: freeze("settlement:nobody:USD")),
        NOT_FOUND,
        "account_must_exist",
        [],
    ),
    (
        "freeze account_must_be_open",
        _scratch("FreezeAccount", lambda hub: freeze(_closed_account(hub))),
        PRECONDITION,
        "account_must_be_open",
        [],
    ),
    (
        "freeze signature_invalid",
        _bad_signature("FreezeAccount"),
        UNAUTHENTICATED,
        "signature_invalid",
        [],
    ),
    (
        "unfreeze account_must_be_open",
        _scratch("UnfreezeAccount", lambda hub: unfreeze(_closed_account(hub))),
        PRECONDITION,
        "account_must_be_open",
        [],
    ),
    (
        "unfreeze exists_with_different_body",
        _changed_body("UnfreezeAccount"),
        EXISTS,
        "exists_with_different_body",
        ["reason"],
    ),
    # Fund, in participant.proto's order, then the transaction rules.
    (
        "fund account_must_exist",
        _scratch("Fund", lambda hub: fund("settlement:nobody:USD", 1)),
        NOT_FOUND,
        "account_must_exist",
        ["account_id"],
    ),
    (
        "fund account_must_be_settlement_account",
        _scratch("Fund", lambda hub: fund(_funding_account(hub), 1)),
        INVALID,
        "account_must_be_settlement_account",
        ["account_id"],
    ),
    (
        "fund funding_account_must_exist",
        _scratch("Fund", lambda hub: fund(_foreign_funding_account(hub), 1, "EUR")),
        PRECONDITION,
        "funding_account_must_exist",
        [],
    ),
    (
        "fund id_must_be_valid",
        _scratch("Fund", lambda hub: fund(hub.scratch_account(), 1, instruction_id="has space")),
        INVALID,
        "id_must_be_valid",
        [],
    ),
    (
        "fund reference too long",
        _scratch("Fund", lambda hub: fund(hub.scratch_account(), 1, reference="r" * 141)),
        INVALID,
        "text_must_be_valid",
        [],
    ),
    (
        "fund amount_must_be_positive",
        _scratch("Fund", lambda hub: fund(hub.scratch_account(), 0)),
        INVALID,
        "amount_must_be_positive",
        [],
    ),
    (
        "fund currency_must_be_known",
        _scratch("Fund", lambda hub: fund(hub.scratch_account(), 1, "XYZ")),
        INVALID,
        "currency_must_be_known",
        [],
    ),
    (
        "fund exists_with_different_body",
        _changed_body("Fund"),
        EXISTS,
        "exists_with_different_body",
        ["reference"],
    ),
    (
        "fund account_must_be_open",
        _scratch("Fund", lambda hub: fund(_frozen_account(hub), 1)),
        PRECONDITION,
        "account_must_be_open",
        [],
    ),
    (
        "fund currency_must_match_account",
        _scratch("Fund", lambda hub: fund(hub.scratch_account(), 1, "PKR")),
        INVALID,
        "currency_must_match_account",
        [],
    ),
    ("fund signature_invalid", _bad_signature("Fund"), UNAUTHENTICATED, "signature_invalid", []),
    # Defund: as Fund, and never beyond the participant's own funds.
    (
        "defund account_must_be_settlement_account",
        _scratch("Defund", lambda hub: defund(_funding_account(hub), 1)),
        INVALID,
        "account_must_be_settlement_account",
        ["account_id"],
    ),
    (
        "defund exists_with_different_body",
        _changed_body("Defund"),
        EXISTS,
        "exists_with_different_body",
        ["reference"],
    ),
    (
        "defund beyond own funds but frozen: account_must_be_open first",
        _scratch("Defund", lambda hub: defund(_frozen_account(hub), 1)),
        PRECONDITION,
        "account_must_be_open",
        [],
    ),
    (
        "defund beyond own funds, wrongly signed: signature_invalid first",
        _beyond_own_funds_badly_signed,
        UNAUTHENTICATED,
        "signature_invalid",
        [],
    ),
    (
        "defund exceeds_credits within the credit line",
        _scratch("Defund", lambda hub: defund(_funded_account(hub, 1_000, limit=5_000), 1_001)),
        PRECONDITION,
        "exceeds_credits",
        ["amount_minor"],
    ),
]


@pytest.mark.parametrize(
    ("build", "expected", "code", "fields"),
    [pytest.param(*row[1:], id=row[0]) for row in REFUSALS],
)
def test_refusals(
    hub: HubClient,
    build: Callable[[HubClient], tuple[str, Message]],
    expected: grpc.StatusCode,
    code: str,
    fields: list[str],
) -> None:
    """Each rule refuses with its status and code, names its fields, and writes nothing."""
    method, request = build(hub)
    size = hub.journal_size()
    status, detail = refusal(lambda: call(hub, OPERATOR, method, request))
    assert (status, detail.code) == (expected, code), detail.message
    assert list(detail.fields) == fields
    assert detail.message
    assert hub.journal_size() == size


def test_read_refusals(hub: HubClient) -> None:
    service = hub.participants("bank-us")
    status, detail = refusal(
        lambda: service.GetParticipant(
            participant_pb2.GetParticipantRequest(participant_id="no:colons"),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    )
    assert (status, detail.code) == (INVALID, "participant_id_must_be_valid")
    status, detail = refusal(
        lambda: hub.participants().GetParticipant(
            participant_pb2.GetParticipantRequest(participant_id="nobody"),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    )
    assert (status, detail.code) == (NOT_FOUND, "participant_must_exist")


# -- idempotency and signatures ----------------------------------------------------------------


@pytest.mark.parametrize("method", WRITES)
def test_identical_retry_answers_already_existed_with_the_original_receipt(
    hub: HubClient, method: str
) -> None:
    request = _valid_write(hub, method)
    first = call(hub, OPERATOR, method, request)
    size = hub.journal_size()
    again = call(hub, OPERATOR, method, request)
    assert first.result.status == common_pb2.COMMIT_STATUS_CREATED
    assert again.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert again.result.receipt == first.result.receipt
    assert again.result.committed_at == first.result.committed_at
    assert again.result.instruction_id == first.result.instruction_id
    assert hub.journal_size() == size


def test_identical_retry_with_a_bad_signature_is_still_answered(hub: HubClient) -> None:
    """common.proto: the signature was checked when the instruction was first committed."""
    request: Any = _valid_write(hub, "Fund")
    first = hub.participants().Fund(request, timeout=CALL_TIMEOUT_SECONDS)
    request.instruction.signature = b""
    again = hub.participants().Fund(request, timeout=CALL_TIMEOUT_SECONDS)
    assert again.result.status == common_pb2.COMMIT_STATUS_ALREADY_EXISTED
    assert again.result.receipt == first.result.receipt


SIGNATURE_ATTACKS = ["flipped bit", "another participant's key", "replayed with a changed body"]


@pytest.mark.parametrize("attack", SIGNATURE_ATTACKS)
@pytest.mark.parametrize("method", ["RegisterParticipant", "Fund", "SetAccountLimit"])
def test_forged_instructions_are_refused_and_write_nothing(
    hub: HubClient, method: str, attack: str
) -> None:
    request: Any = _valid_write(hub, method)
    payload = bytes(request.instruction.instruction)
    if attack == "flipped bit":
        signature = bytearray(request.instruction.signature)
        signature[-1] ^= 0x80
        request.instruction.signature = bytes(signature)
        expected = (UNAUTHENTICATED, "signature_invalid")
    elif attack == "another participant's key":
        request.instruction.signature = sign(
            _message_of(request, method), hub.keys["bank-us"]
        ).signature
        expected = (UNAUTHENTICATED, "signature_invalid")
    else:
        call(hub, OPERATOR, method, request)
        field_name = {"RegisterParticipant": "legal_name"}.get(method, CHANGED_FIELD[method])
        changed = _changed(_message_of(request, method), field_name)
        request.instruction.instruction = canonical_bytes(changed)
        assert request.instruction.instruction != payload
        expected = (EXISTS, "exists_with_different_body")
    size = hub.journal_size()
    status, detail = refusal(lambda: call(hub, OPERATOR, method, request))
    assert (status, detail.code) == expected
    assert hub.journal_size() == size


# -- money ---------------------------------------------------------------------------------------


def test_fund_transfer_defund_leave_exact_balances(hub: HubClient) -> None:
    payer = hub.scratch_account("PKR", limit=50_000)
    payee = hub.scratch_account("PKR")
    funding_before = hub.balance("funding:PKR") if _exists(hub, "funding:PKR") else (0, 0, 0, 0)

    funded = hub.fund(payer, 1_250_000, "PKR")
    assert funded.transaction.code == "FUND"
    assert [(p.account_id, p.side, p.amount_minor) for p in funded.transaction.postings] == [
        ("funding:PKR", ledger_pb2.SIDE_DEBIT, 1_250_000),
        (payer, ledger_pb2.SIDE_CREDIT, 1_250_000),
    ]
    hub.transfer(payer, payee, 300_000, "PKR")
    hub.transfer(payer, payee, 975_000, "PKR")  # 25,000 into its credit line
    assert hub.balance(payer) == (1_275_000, 1_250_000, 0, 0)
    status, detail = refusal(lambda: hub.defund(payer, 1, "PKR"))
    assert (status, detail.code) == (PRECONDITION, "exceeds_credits")

    defunded = hub.defund(payee, 1_000_000, "PKR")
    assert defunded.transaction.code == "DEFUND"
    assert [(p.account_id, p.side, p.amount_minor) for p in defunded.transaction.postings] == [
        (payee, ledger_pb2.SIDE_DEBIT, 1_000_000),
        ("funding:PKR", ledger_pb2.SIDE_CREDIT, 1_000_000),
    ]
    assert hub.balance(payee) == (1_000_000, 1_275_000, 0, 0)
    funding = hub.balance("funding:PKR")
    assert funding[0] - funding_before[0] == 1_250_000
    assert funding[1] - funding_before[1] == 1_000_000
    status, detail = refusal(lambda: hub.defund(payee, 275_001, "PKR"))
    assert (status, detail.code) == (PRECONDITION, "exceeds_credits")
    hub.defund(payee, 275_000, "PKR")
    assert hub.balance(payee) == (1_275_000, 1_275_000, 0, 0)
    hub.server.hub.ledger.check_invariants()


def test_defund_takes_only_own_funds_never_the_credit_line(hub: HubClient) -> None:
    account = _funded_account(hub, 1_000, limit=500)
    size = hub.journal_size()
    status, detail = refusal(lambda: hub.defund(account, 1_200))
    assert (status, detail.code) == (PRECONDITION, "exceeds_credits")
    assert "credit line" in detail.message
    assert hub.journal_size() == size
    assert hub.defund(account, 1_000).result.status == common_pb2.COMMIT_STATUS_CREATED
    assert hub.balance(account) == (1_000, 1_000, 0, 0)


def _exists(hub: HubClient, account_id: str) -> bool:
    try:
        hub.ledger().GetAccount(
            ledger_pb2.GetAccountRequest(account_id=account_id), timeout=CALL_TIMEOUT_SECONDS
        )
    except grpc.RpcError:
        return False
    return True


def test_funding_account_is_created_on_first_use_by_the_signed_fund(hub: HubClient) -> None:
    account = hub.scratch_account("KWD")
    assert not _exists(hub, "funding:KWD")
    response = hub.fund(account, 5_000, "KWD")
    funding = (
        hub.ledger()
        .GetAccount(ledger_pb2.GetAccountRequest(account_id="funding:KWD"), timeout=30)
        .account
    )
    assert funding.owner_participant_id == OPERATOR
    assert funding.normal_side == ledger_pb2.SIDE_DEBIT
    assert not funding.debits_must_not_exceed_credits
    assert not funding.HasField("debit_limit_minor")
    assert funding.created_journal_index == response.result.receipt.journal_index - 1
    assert hub.balance("funding:KWD") == (5_000, 0, 0, 0)


def test_settlement_account_freeze_limit_and_unfreeze(hub: HubClient) -> None:
    participant = hub.register().participant_id
    opened = hub.participants().OpenSettlementAccount(
        participant_pb2.OpenSettlementAccountRequest(
            instruction=hub.sign(open_account(participant, "USD", 2_500))
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    account = opened.account
    assert account.account_id == f"settlement:{participant}:USD"
    assert account.owner_participant_id == participant
    assert account.normal_side == ledger_pb2.SIDE_CREDIT
    assert account.debits_must_not_exceed_credits
    assert account.debit_limit_minor == 2_500
    assert account.status == ledger_pb2.ACCOUNT_STATUS_OPEN
    assert account.created_journal_index == opened.result.receipt.journal_index

    limited = hub.participants().SetAccountLimit(
        participant_pb2.SetAccountLimitRequest(
            instruction=hub.sign(set_limit(account.account_id, 0))
        ),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert limited.account.debit_limit_minor == 0
    frozen = hub.participants().FreezeAccount(
        participant_pb2.FreezeAccountRequest(instruction=hub.sign(freeze(account.account_id))),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert frozen.account.status == ledger_pb2.ACCOUNT_STATUS_FROZEN
    again = hub.participants().FreezeAccount(
        participant_pb2.FreezeAccountRequest(instruction=hub.sign(freeze(account.account_id))),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert again.result.status == common_pb2.COMMIT_STATUS_CREATED  # recorded, changes nothing
    opened_again = hub.participants().UnfreezeAccount(
        participant_pb2.UnfreezeAccountRequest(instruction=hub.sign(unfreeze(account.account_id))),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert opened_again.account.status == ledger_pb2.ACCOUNT_STATUS_OPEN


# -- listing -----------------------------------------------------------------------------------


def test_list_participants_pages_in_id_order(hub: HubClient) -> None:
    everyone = [
        participant.participant_id
        for participant in hub.participants("auditor")
        .ListParticipants(
            participant_pb2.ListParticipantsRequest(page=common_pb2.PageRequest(page_size=1000)),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        .participants
    ]
    assert everyone == sorted(everyone)
    walked: list[str] = []
    token = ""
    while True:
        page = hub.participants().ListParticipants(
            participant_pb2.ListParticipantsRequest(
                page=common_pb2.PageRequest(page_size=2, page_token=token)
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        assert len(page.participants) <= 2
        walked.extend(participant.participant_id for participant in page.participants)
        token = page.next_page_token
        if not token:
            break
    assert walked[: len(everyone)] == everyone
    banks = hub.participants().ListParticipants(
        participant_pb2.ListParticipantsRequest(role=participant_pb2.ROLE_FX_PROVIDER),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    assert [participant.participant_id for participant in banks.participants] == ["fx-provider"]

    first = hub.participants().ListParticipants(
        participant_pb2.ListParticipantsRequest(page=common_pb2.PageRequest(page_size=1)),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    for bad in (
        participant_pb2.ListParticipantsRequest(
            page=common_pb2.PageRequest(page_token=first.next_page_token),
            role=participant_pb2.ROLE_BANK,
        ),
        participant_pb2.ListParticipantsRequest(page=common_pb2.PageRequest(page_token="garbage")),
    ):
        service = hub.participants()
        status, detail = refusal(
            functools.partial(service.ListParticipants, bad, timeout=CALL_TIMEOUT_SECONDS)
        )
        assert (status, detail.code) == (INVALID, "page_token_must_match_request")
