"""LedgerService over mutual TLS, on SQLite and on PostgreSQL (ledger.proto).

One hub per backend for the whole module (the ``hub`` fixture below): the
demo participants of the development PKI are registered through
ParticipantService, then every test opens accounts of its own (owned by the
demo participants, so that they can call), funds them from an operator
account and works on them; the tests do not depend on each other's order.

Local fixture: ``tests/grpc/conftest.py`` starts a server per test; the
module-scoped ``hub`` here builds the same server (``BackgroundServer``,
mutual TLS with the session's ``dev_pki``) once per module and backend.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from ledger.money import INT64_MAX
from ledger.signing import sign_instruction
from settlement.instructions import canonical_bytes, sign
from settlement.pki import DevPki
from settlement.services import ledger_service
from settlement.v1 import (
    common_pb2,
    ledger_pb2,
    participant_pb2,
)
from tests.grpc.hub_client import (
    CALL_TIMEOUT_SECONDS,
    CREDIT,
    DEBIT,
    DENIED,
    ERROR_KEY,
    EVERYONE,
    EXHAUSTED,
    EXISTS,
    INVALID,
    NOT_FOUND,
    OK,
    OPERATOR,
    PRECONDITION,
    UNAUTHENTICATED,
    HubClient,
    create_account,
    new_id,
    posting,
    refusal,
    running_hub,
    transaction,
    transfer_postings,
)
from tests.grpc.hub_client import LEDGER_METHOD_OF as METHOD_OF
from tests.grpc.hub_client import LEDGER_REQUEST_TYPES as REQUEST_TYPES
from tests.grpc.hub_client import type_name as _type

LONG_TIMEOUT_SECONDS = 3600
"""Pending transactions of these tests never expire while the module runs."""

CREATED = common_pb2.COMMIT_STATUS_CREATED
ALREADY_EXISTED = common_pb2.COMMIT_STATUS_ALREADY_EXISTED
FAILED = common_pb2.COMMIT_STATUS_FAILED


def pending(
    signer: str, postings: Sequence[ledger_pb2.Posting], **fields: Any
) -> ledger_pb2.TransactionInstruction:
    return transaction(
        signer, postings, pending=True, timeout_seconds=LONG_TIMEOUT_SECONDS, **fields
    )


def post_pending(signer: str, pending_id: str, **fields: Any) -> ledger_pb2.PostPendingInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(signer),
        "participant_id": signer,
        "instruction_type": _type(ledger_pb2.PostPendingInstruction),
        "pending_transaction_id": pending_id,
    }
    values.update(fields)
    return ledger_pb2.PostPendingInstruction(**values)


def void_pending(signer: str, pending_id: str, **fields: Any) -> ledger_pb2.VoidPendingInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(signer),
        "participant_id": signer,
        "instruction_type": _type(ledger_pb2.VoidPendingInstruction),
        "pending_transaction_id": pending_id,
    }
    values.update(fields)
    return ledger_pb2.VoidPendingInstruction(**values)


def reverse(
    signer: str, original_id: str, **fields: Any
) -> ledger_pb2.ReverseTransactionInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(signer),
        "participant_id": signer,
        "instruction_type": _type(ledger_pb2.ReverseTransactionInstruction),
        "original_transaction_id": original_id,
    }
    values.update(fields)
    return ledger_pb2.ReverseTransactionInstruction(**values)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def hub(
    request: pytest.FixtureRequest,
    dev_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
) -> Iterator[HubClient]:
    """One hub per backend for the module, with the demo participants registered."""
    with database_factory(request.param) as location, running_hub(dev_pki, location) as client:
        yield client


# -- who may call what -------------------------------------------------------------------------


def _writer_of(who: str) -> str:
    """Who owns the accounts a write row works on: the caller, or a bank for the auditor."""
    return "bank-pk" if who == "auditor" else who


def _write_request(hub: HubClient, method: str, who: str) -> Message:
    """A request that commits when ``who`` may make it (signed by ``who``)."""
    owner = _writer_of(who)
    signer = who
    if method == "CreateAccount":
        return ledger_pb2.CreateAccountRequest(
            instruction=hub.sign(create_account("bank-pk", participant_id=signer), signer)
        )
    payer, payee = hub.funded_pair(owner)
    if method == "CreateTransactionBatch":
        items = [transaction(signer, transfer_postings(payer, payee, amount)) for amount in (1, 2)]
        return _batch_request(hub, signer, items, linked=True)
    instruction: Message
    if method == "CreateTransaction":
        instruction = transaction(signer, transfer_postings(payer, payee, 100))
    elif method == "ReverseTransaction":
        original = transaction(owner, transfer_postings(payer, payee, 100))
        hub.write(original)
        instruction = reverse(signer, original.instruction_id)
    else:
        reservation = pending(owner, transfer_postings(payer, payee, 100))
        hub.write(reservation)
        resolve = post_pending if method == "PostPendingTransaction" else void_pending
        instruction = resolve(signer, reservation.instruction_id)
    return REQUEST_TYPES[method](instruction=hub.sign(instruction, signer))


def _batch_request(
    hub: HubClient, signer: str, items: Sequence[Message], *, linked: bool, **fields: Any
) -> ledger_pb2.CreateTransactionBatchRequest:
    signed_items = [hub.sign(item, signer) for item in items]
    values: dict[str, Any] = {
        "instruction_id": new_id(signer),
        "participant_id": signer,
        "instruction_type": _type(ledger_pb2.TransactionBatchInstruction),
        "linked": linked,
        "item_sha256": [hashlib.sha256(item.instruction).digest() for item in signed_items],
    }
    values.update(fields)
    batch = ledger_pb2.TransactionBatchInstruction(**values)
    return ledger_pb2.CreateTransactionBatchRequest(
        instruction=hub.sign(batch, signer), items=signed_items
    )


WRITE_METHODS = (
    "CreateAccount",
    "CreateTransaction",
    "CreateTransactionBatch",
    "PostPendingTransaction",
    "VoidPendingTransaction",
    "ReverseTransaction",
)


def _write_expectation(method: str, who: str) -> tuple[grpc.StatusCode, str]:
    if who == "auditor" or (method == "CreateAccount" and who != OPERATOR):
        return DENIED, "role_must_permit"
    return OK, ""


ROLE_TABLE: list[tuple[str, str, grpc.StatusCode, str]] = [
    (method, who, *_write_expectation(method, who)) for method in WRITE_METHODS for who in EVERYONE
]
for _method, _code in (
    ("GetAccount", "account_must_exist"),
    ("GetBalance", "account_must_exist"),
    ("ListTransactions", "account_must_exist"),
    ("GetTransaction", "transaction_must_exist"),
):
    for _who in EVERYONE:
        _sees = _who in (OPERATOR, "auditor", "bank-pk")
        ROLE_TABLE.append((_method, _who, OK if _sees else NOT_FOUND, "" if _sees else _code))
ROLE_TABLE += [("ListAccounts", who, OK, "") for who in EVERYONE]
ROLE_TABLE += [("WatchJournal", who, OK, "") for who in EVERYONE]


def _read_request(hub: HubClient, method: str) -> tuple[Message, str, str]:
    """A read of bank-pk's things; returns the request, its account and its transaction."""
    payer, payee = hub.funded_pair("bank-pk")
    moved = transaction("bank-pk", transfer_postings(payer, payee, 7))
    hub.write(moved)
    requests: dict[str, Message] = {
        "GetAccount": ledger_pb2.GetAccountRequest(account_id=payer),
        "GetBalance": ledger_pb2.GetBalanceRequest(account_id=payer),
        "ListTransactions": ledger_pb2.ListTransactionsRequest(account_id=payer),
        "GetTransaction": ledger_pb2.GetTransactionRequest(transaction_id=moved.instruction_id),
        "ListAccounts": ledger_pb2.ListAccountsRequest(),
        "WatchJournal": ledger_pb2.WatchJournalRequest(from_index=0, stop_at_end=True),
    }
    return requests[method], payer, moved.instruction_id


@pytest.mark.parametrize(("method", "who", "expected", "code"), ROLE_TABLE)
def test_role_table(
    hub: HubClient, method: str, who: str, expected: grpc.StatusCode, code: str
) -> None:
    """ledger.proto: participants on their own accounts, the operator on all, auditors read."""
    stub = hub.ledger(who)
    if method in WRITE_METHODS:
        request = _write_request(hub, method, who)
        size = hub.journal_size()
        if expected is not OK:
            status, detail = refusal(
                lambda: getattr(stub, method)(request, timeout=CALL_TIMEOUT_SECONDS)
            )
            assert (status, detail.code) == (expected, code)
            assert hub.journal_size() == size
            return
        response = getattr(stub, method)(request, timeout=CALL_TIMEOUT_SECONDS)
        results = response.results if method == "CreateTransactionBatch" else [response.result]
        assert [result.status for result in results] == [CREATED] * len(results)
        assert hub.journal_size() == size + len(results)
        return
    request, account_id, transaction_id = _read_request(hub, method)
    if expected is not OK:
        status, detail = refusal(
            lambda: getattr(stub, method)(request, timeout=CALL_TIMEOUT_SECONDS)
        )
        assert (status, detail.code) == (expected, code)
        return
    if method == "WatchJournal":
        entries = [
            response.entry
            for response in stub.WatchJournal(
                cast(ledger_pb2.WatchJournalRequest, request), timeout=CALL_TIMEOUT_SECONDS
            )
        ]
        ids = {entry.entry_id for entry in entries}
        assert (transaction_id in ids) == (who in (OPERATOR, "auditor", "bank-pk"))
        return
    response = getattr(stub, method)(request, timeout=CALL_TIMEOUT_SECONDS)
    if method == "ListAccounts":
        owners = {account.owner_participant_id for account in response.accounts}
        if who in (OPERATOR, "auditor"):
            assert account_id in {account.account_id for account in _all_accounts(hub, who)}
        else:
            assert owners <= {who}
    elif method == "GetTransaction":
        assert response.transaction.transaction_id == transaction_id
    elif method == "ListTransactions":
        assert transaction_id in [item.transaction_id for item in response.transactions]
    elif method == "GetAccount":
        assert response.account.account_id == account_id
    else:
        assert response.balance.account_id == account_id


def _all_accounts(hub: HubClient, who: str, **fields: Any) -> list[Any]:
    accounts: list[Any] = []
    token = ""
    while True:
        page = hub.ledger(who).ListAccounts(
            ledger_pb2.ListAccountsRequest(
                page=common_pb2.PageRequest(page_size=1000, page_token=token), **fields
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        accounts.extend(page.accounts)
        token = page.next_page_token
        if not token:
            return accounts


FOREIGN_WRITES = [
    "CreateTransaction",
    "PostPendingTransaction",
    "VoidPendingTransaction",
    "ReverseTransaction",
]


@pytest.mark.parametrize("method", FOREIGN_WRITES)
def test_participant_writes_on_others_accounts_are_not_found(hub: HubClient, method: str) -> None:
    """Another participant's account or transaction reads exactly like a missing one."""
    own_payer, _ = hub.funded_pair("bank-us")
    their_payer, their_payee = hub.funded_pair("bank-pk")
    if method == "CreateTransaction":
        # Also a bad code: ownership is checked right after the common checks.
        instruction: Message = transaction(
            "bank-us", transfer_postings(own_payer, their_payee, 5), code="c" * 40
        )
        missing: Message = transaction(
            "bank-us", transfer_postings(own_payer, "no-such-account", 5), code="c" * 40
        )
        expected = "account_must_exist"
    else:
        original = (
            transaction("bank-pk", transfer_postings(their_payer, their_payee, 5))
            if method == "ReverseTransaction"
            else pending("bank-pk", transfer_postings(their_payer, their_payee, 5))
        )
        hub.write(original)
        builders: dict[str, Callable[..., Message]] = {
            "PostPendingTransaction": post_pending,
            "VoidPendingTransaction": void_pending,
            "ReverseTransaction": reverse,
        }
        build = builders[method]
        instruction = build("bank-us", original.instruction_id)
        missing = build("bank-us", "no-such-transaction")
        expected = "transaction_must_exist"
    size = hub.journal_size()
    foreign_status, foreign = refusal(lambda: hub.write(instruction))
    missing_status, absent = refusal(lambda: hub.write(missing))
    assert (foreign_status, foreign.code) == (NOT_FOUND, expected)
    assert (missing_status, absent.code) == (NOT_FOUND, expected)
    assert foreign.message.replace(_named(instruction), "X") == absent.message.replace(
        _named(missing), "X"
    )
    assert hub.journal_size() == size


def _named(instruction: Any) -> str:
    if isinstance(instruction, ledger_pb2.TransactionInstruction):
        return repr(instruction.postings[1].account_id)
    if isinstance(instruction, ledger_pb2.ReverseTransactionInstruction):
        return repr(instruction.original_transaction_id)
    return repr(instruction.pending_transaction_id)


# -- the rules of a transaction, in ledger.proto's order ---------------------------------------

Build = Callable[[HubClient], Any]
"""Makes the instruction of a table row (a message, or a BadlySigned one)."""


def _tx(**fields: Any) -> Build:
    """An operator transaction between two fresh accounts, with ``fields`` changed."""

    def build(hub: HubClient) -> Message:
        payer, payee = hub.funded_pair("bank-us", 1_000)
        values: dict[str, Any] = {"postings": transfer_postings(payer, payee, 100)}
        values.update(
            {
                name: value(hub, payer, payee) if callable(value) else value
                for name, value in fields.items()
            }
        )
        return transaction(OPERATOR, **values)

    return build


def _postings(make: Callable[[str, str], list[Any]]) -> Callable[[HubClient, str, str], list[Any]]:
    return lambda hub, payer, payee: make(payer, payee)


def _changed_transaction(hub: HubClient) -> Message:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    original = transaction(OPERATOR, transfer_postings(payer, payee, 10), code="FIRST")
    hub.write(original)
    return transaction(
        OPERATOR,
        transfer_postings(payer, payee, 10),
        code="SECOND",
        instruction_id=original.instruction_id,
    )


def _frozen_payee(hub: HubClient) -> Message:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    hub.freeze(payee)
    return transaction(OPERATOR, transfer_postings(payer, payee, 10))


def _capped(hub: HubClient) -> Message:
    payer, payee = hub.funded_pair("bank-us", 1_000, debit_limit_minor=500)
    return transaction(OPERATOR, transfer_postings(payer, payee, 1_501))


def _credit_capped(hub: HubClient) -> Message:
    payer, _ = hub.funded_pair("bank-us", 1_000)
    payee = hub.account("bank-us", credits_must_not_exceed_debits=True)
    return transaction(OPERATOR, transfer_postings(payer, payee, 1))


@dataclass(frozen=True)
class BadlySigned:
    """An instruction to be sent with a signature of zeros."""

    instruction: Message


def _badly_signed(build: Build) -> Build:
    return lambda hub: BadlySigned(build(hub))


def _send(hub: HubClient, built: Message | BadlySigned, who: str | None = None) -> Any:
    instruction = built.instruction if isinstance(built, BadlySigned) else built
    method = METHOD_OF[_type(type(instruction))]
    signed = hub.sign(instruction)
    if isinstance(built, BadlySigned):
        signed.signature = bytes(64)
    request = REQUEST_TYPES[method](instruction=signed)
    caller = who or getattr(instruction, "participant_id")  # noqa: B009
    return getattr(hub.ledger(caller), method)(request, timeout=CALL_TIMEOUT_SECONDS)


TRANSACTION_RULES: list[tuple[str, Build, grpc.StatusCode, str]] = [
    ("id_must_be_valid", _tx(instruction_id="has space"), INVALID, "id_must_be_valid"),
    ("code too long", _tx(code="C" * 33), INVALID, "text_must_be_valid"),
    ("reference control character", _tx(reference="line\nbreak"), INVALID, "text_must_be_valid"),
    ("code before metadata", _tx(code="C" * 33, metadata="[1]"), INVALID, "text_must_be_valid"),
    ("metadata not an object", _tx(metadata="[1]"), INVALID, "metadata_must_be_valid"),
    ("metadata not JSON", _tx(metadata="{nope"), INVALID, "metadata_must_be_valid"),
    ("metadata fraction", _tx(metadata='{"rate":1.5}'), INVALID, "metadata_must_be_valid"),
    (
        "metadata too big",
        _tx(metadata='{"a":"' + "x" * 5000 + '"}'),
        INVALID,
        "metadata_must_be_valid",
    ),
    ("metadata not canonical", _tx(metadata='{"b":1,"a":2}'), INVALID, "json_must_be_canonical"),
    (
        "postings_must_be_at_least_two",
        _tx(postings=_postings(lambda payer, payee: [posting(payer, DEBIT, 1)])),
        INVALID,
        "postings_must_be_at_least_two",
    ),
    (
        "postings_must_not_exceed_limit",
        _tx(
            postings=_postings(
                lambda payer, payee: (
                    [posting(payer, DEBIT, 1)] * 64 + [posting(payee, CREDIT, 1)] * 65
                )
            )
        ),
        EXHAUSTED,
        "postings_must_not_exceed_limit",
    ),
    (
        "posting account id",
        _tx(postings=_postings(lambda payer, payee: transfer_postings(payer, "", 1))),
        INVALID,
        "id_must_be_valid",
    ),
    (
        "posting side unspecified",
        _tx(
            postings=_postings(
                lambda payer, payee: [posting(payer, DEBIT, 1), posting(payee, 0, 1)]
            )
        ),
        INVALID,
        "text_must_be_valid",
    ),
    (
        "amount_must_be_positive",
        _tx(postings=_postings(lambda payer, payee: transfer_postings(payer, payee, 0))),
        INVALID,
        "amount_must_be_positive",
    ),
    (
        "currency_must_be_known",
        _tx(postings=_postings(lambda payer, payee: transfer_postings(payer, payee, 1, "XYZ"))),
        INVALID,
        "currency_must_be_known",
    ),
    (
        "amount_must_fit_int64",
        _tx(
            postings=_postings(
                lambda payer, payee: [
                    posting(payer, DEBIT, INT64_MAX),
                    posting(payer, DEBIT, 1),
                    posting(payee, CREDIT, INT64_MAX),
                    posting(payee, CREDIT, 1),
                ]
            )
        ),
        INVALID,
        "amount_must_fit_int64",
    ),
    ("pending without timeout", _tx(pending=True), INVALID, "timeout_must_be_valid"),
    ("timeout without pending", _tx(timeout_seconds=60), INVALID, "timeout_must_be_valid"),
    (
        "timeout beyond 30 days",
        _tx(pending=True, timeout_seconds=30 * 24 * 3600 + 1),
        INVALID,
        "timeout_must_be_valid",
    ),
    ("exists_with_different_body", _changed_transaction, EXISTS, "exists_with_different_body"),
    (
        "account_must_exist",
        _tx(postings=_postings(lambda payer, payee: transfer_postings(payer, "missing", 1))),
        NOT_FOUND,
        "account_must_exist",
    ),
    (
        "account_must_exist before debits_must_equal_credits",
        _tx(
            postings=_postings(
                lambda payer, payee: [posting(payer, DEBIT, 2), posting("missing", CREDIT, 1)]
            )
        ),
        NOT_FOUND,
        "account_must_exist",
    ),
    ("account_must_be_open", _frozen_payee, PRECONDITION, "account_must_be_open"),
    (
        "currency_must_match_account",
        _tx(postings=_postings(lambda payer, payee: transfer_postings(payer, payee, 1, "PKR"))),
        INVALID,
        "currency_must_match_account",
    ),
    (
        "debits_must_equal_credits",
        _tx(
            postings=_postings(
                lambda payer, payee: [posting(payer, DEBIT, 2), posting(payee, CREDIT, 1)]
            )
        ),
        INVALID,
        "debits_must_equal_credits",
    ),
    (
        "debits_must_equal_credits before signature_invalid",
        _badly_signed(
            _tx(
                postings=_postings(
                    lambda payer, payee: [posting(payer, DEBIT, 2), posting(payee, CREDIT, 1)]
                )
            )
        ),
        INVALID,
        "debits_must_equal_credits",
    ),
    ("signature_invalid", _badly_signed(_tx()), UNAUTHENTICATED, "signature_invalid"),
    (
        "signature_invalid before exceeds_credits",
        _badly_signed(_capped),
        UNAUTHENTICATED,
        "signature_invalid",
    ),
    ("exceeds_credits", _capped, PRECONDITION, "exceeds_credits"),
    ("exceeds_debits", _credit_capped, PRECONDITION, "exceeds_debits"),
]


@pytest.mark.parametrize(
    ("build", "expected", "code"),
    [pytest.param(*row[1:], id=row[0]) for row in TRANSACTION_RULES],
)
def test_transaction_rules(
    hub: HubClient, build: Build, expected: grpc.StatusCode, code: str
) -> None:
    instruction = build(hub)
    size = hub.journal_size()
    status, detail = refusal(lambda: _send(hub, instruction))
    assert (status, detail.code) == (expected, code), detail.message
    assert detail.message
    assert hub.journal_size() == size


def _payload(change: Callable[[bytes], bytes], signer: str = "bank-us") -> Build:
    """A bank-us transaction whose signed bytes are changed, then signed again by ``signer``."""

    def build(hub: HubClient) -> Any:
        payer, payee = hub.funded_pair("bank-us", 1_000)
        payload = change(canonical_bytes(transaction(signer, transfer_postings(payer, payee, 1))))
        signature = sign_instruction(hub.keys[signer], payload) if len(payload) <= 1 << 20 else b""
        return common_pb2.SignedInstruction(instruction=payload, signature=signature)

    return build


COMMON_CHECKS: list[tuple[str, str, Build, grpc.StatusCode, str]] = [
    (
        "role before size",
        "auditor",
        _payload(lambda payload: payload.replace(b'"code":"', b'"code":"' + b"x" * (1 << 20))),
        DENIED,
        "role_must_permit",
    ),
    (
        "limit_exceeded",
        "bank-us",
        _payload(lambda payload: payload.replace(b'"code":"', b'"code":"' + b"x" * (1 << 20))),
        EXHAUSTED,
        "limit_exceeded",
    ),
    ("empty", "bank-us", _payload(lambda payload: b""), INVALID, "json_must_be_canonical"),
    (
        "not canonical",
        "bank-us",
        _payload(lambda payload: payload + b"\n"),
        INVALID,
        "json_must_be_canonical",
    ),
    (
        "camelCase name",
        "bank-us",
        _payload(lambda payload: payload.replace(b'"instruction_id"', b'"instructionId"')),
        INVALID,
        "json_must_be_canonical",
    ),
    (
        "unknown field",
        "bank-us",
        _payload(lambda payload: b'{"aaa":1,' + payload[1:]),
        INVALID,
        "instruction_must_parse",
    ),
    (
        "instruction_type_must_match",
        "bank-us",
        _payload(
            lambda payload: payload.replace(
                b"settlement.v1.TransactionInstruction", b"settlement.v1.CreateAccountInstruction"
            )
        ),
        INVALID,
        "instruction_type_must_match",
    ),
    (
        "signer_must_be_caller",
        "bank-us",
        _payload(lambda payload: payload, signer="bank-pk"),
        DENIED,
        "signer_must_be_caller",
    ),
]


@pytest.mark.parametrize(
    ("who", "build", "expected", "code"),
    [pytest.param(*row[1:], id=row[0]) for row in COMMON_CHECKS],
)
def test_common_checks(
    hub: HubClient, who: str, build: Build, expected: grpc.StatusCode, code: str
) -> None:
    """common.proto, "Order of checks", 2 to 5, on CreateTransaction."""
    signed = build(hub)
    size = hub.journal_size()
    status, detail = refusal(
        lambda: hub.ledger(who).CreateTransaction(
            ledger_pb2.CreateTransactionRequest(instruction=signed), timeout=CALL_TIMEOUT_SECONDS
        )
    )
    assert (status, detail.code) == (expected, code), detail.message
    assert hub.journal_size() == size


def test_exists_with_different_body_names_the_instruction_fields(hub: HubClient) -> None:
    instruction = _changed_transaction(hub)
    status, detail = refusal(lambda: hub.write(instruction))
    assert (status, detail.code, list(detail.fields)) == (
        EXISTS,
        "exists_with_different_body",
        ["code"],
    )


def test_an_id_of_another_participant_is_taken(hub: HubClient) -> None:
    us_payer, us_payee = hub.funded_pair("bank-us")
    pk_payer, pk_payee = hub.funded_pair("bank-pk")
    first = transaction("bank-us", transfer_postings(us_payer, us_payee, 1))
    hub.write(first)
    again = transaction(
        "bank-pk", transfer_postings(pk_payer, pk_payee, 1), instruction_id=first.instruction_id
    )
    size = hub.journal_size()
    status, detail = refusal(lambda: hub.write(again))
    assert (status, detail.code) == (EXISTS, "id_taken")
    assert us_payer not in detail.message
    assert hub.journal_size() == size


# -- CreateAccount, post, void, reverse: their rules -------------------------------------------


def _account(**fields: Any) -> Build:
    return lambda hub: create_account("bank-us", **fields)


def _changed_account(hub: HubClient) -> Message:
    original = create_account("bank-us")
    hub.write(original)
    return create_account("bank-us", instruction_id=original.instruction_id, currency="PKR")


def _reserved(hub: HubClient, amount_minor: int = 100, postings: int = 2) -> tuple[Any, str, str]:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    legs = transfer_postings(payer, payee, amount_minor)
    if postings == 4:
        legs += transfer_postings(payer, payee, amount_minor)
    reservation = pending(OPERATOR, legs)
    hub.write(reservation)
    return reservation, payer, payee


def _resolved(build: Callable[..., Any], state: str) -> Build:
    """``build`` on a pending already posted or voided."""

    def make(hub: HubClient) -> Message:
        reservation, _, _ = _reserved(hub)
        first = post_pending if state == "posted" else void_pending
        hub.write(first(OPERATOR, reservation.instruction_id))
        return build(OPERATOR, reservation.instruction_id)  # type: ignore[no-any-return]

    return make


def _on_pending(build: Callable[..., Any], **fields: Any) -> Build:
    def make(hub: HubClient) -> Message:
        reservation, _, _ = _reserved(hub)
        return build(OPERATOR, reservation.instruction_id, **fields)  # type: ignore[no-any-return]

    return make


def _changed_resolution(build: Callable[..., Any]) -> Build:
    def make(hub: HubClient) -> Message:
        reservation, _, _ = _reserved(hub)
        original = build(OPERATOR, reservation.instruction_id, code="FIRST")
        hub.write(original)
        return build(  # type: ignore[no-any-return]
            OPERATOR,
            reservation.instruction_id,
            code="SECOND",
            instruction_id=original.instruction_id,
        )

    return make


def _frozen_pending(hub: HubClient) -> Message:
    reservation, _, payee = _reserved(hub)
    hub.freeze(payee)
    return post_pending(OPERATOR, reservation.instruction_id)


def _posted(hub: HubClient) -> tuple[Any, str, str]:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    original = transaction(OPERATOR, transfer_postings(payer, payee, 100))
    hub.write(original)
    return original, payer, payee


def _reverse_posted(**fields: Any) -> Build:
    def make(hub: HubClient) -> Message:
        original, _, _ = _posted(hub)
        return reverse(OPERATOR, original.instruction_id, **fields)

    return make


def _reversed_twice(hub: HubClient) -> Message:
    original, _, _ = _posted(hub)
    hub.write(reverse(OPERATOR, original.instruction_id))
    return reverse(OPERATOR, original.instruction_id)


def _reverse_of(kind: str) -> Build:
    def make(hub: HubClient) -> Message:
        reservation, _, _ = _reserved(hub)
        if kind == "pending":
            return reverse(OPERATOR, reservation.instruction_id)
        void = void_pending(OPERATOR, reservation.instruction_id)
        hub.write(void)
        return reverse(OPERATOR, void.instruction_id)

    return make


def _money_moved_on(hub: HubClient) -> Message:
    """The payee spent what it received: reversing would overdraw it."""
    payer, _ = hub.funded_pair("bank-us", 1_000)
    payee, elsewhere = hub.funded_pair("bank-us", 0)
    original = transaction(OPERATOR, transfer_postings(payer, payee, 500))
    hub.write(original)
    hub.write(transaction(OPERATOR, transfer_postings(payee, elsewhere, 400)))
    return reverse(OPERATOR, original.instruction_id)


def _reverse_frozen(hub: HubClient) -> Message:
    original, _, payee = _posted(hub)
    hub.freeze(payee)
    return reverse(OPERATOR, original.instruction_id)


def _changed_reversal(hub: HubClient) -> Message:
    original, _, _ = _posted(hub)
    first = reverse(OPERATOR, original.instruction_id, code="FIRST")
    hub.write(first)
    return reverse(
        OPERATOR, original.instruction_id, code="SECOND", instruction_id=first.instruction_id
    )


OTHER_RULES: list[tuple[str, Build, grpc.StatusCode, str]] = [
    # CreateAccount.
    (
        "account participant_must_exist",
        _account(owner_participant_id="nobody", currency="XYZ"),
        NOT_FOUND,
        "participant_must_exist",
    ),
    (
        "account id_must_be_valid",
        _account(instruction_id="a b", currency="XYZ"),
        INVALID,
        "id_must_be_valid",
    ),
    (
        "account currency_must_be_known",
        _account(currency="XYZ", normal_side=0),
        INVALID,
        "currency_must_be_known",
    ),
    ("account normal side", _account(normal_side=0, metadata="[]"), INVALID, "text_must_be_valid"),
    ("account metadata_must_be_valid", _account(metadata="[]"), INVALID, "metadata_must_be_valid"),
    (
        "account json_must_be_canonical",
        _account(metadata='{ "a":1}'),
        INVALID,
        "json_must_be_canonical",
    ),
    (
        "account flags_must_be_compatible",
        _account(
            debits_must_not_exceed_credits=True,
            credits_must_not_exceed_debits=True,
            debit_limit_minor=-1,
        ),
        INVALID,
        "flags_must_be_compatible",
    ),
    (
        "account debit_limit_must_not_be_negative",
        _account(debit_limit_minor=-1),
        INVALID,
        "debit_limit_must_not_be_negative",
    ),
    (
        "account_exists_with_different_fields",
        _changed_account,
        EXISTS,
        "account_exists_with_different_fields",
    ),
    ("account signature_invalid", _badly_signed(_account()), UNAUTHENTICATED, "signature_invalid"),
    # PostPendingTransaction.
    (
        "post id_must_be_valid",
        _on_pending(post_pending, instruction_id="a b"),
        INVALID,
        "id_must_be_valid",
    ),
    (
        "post text_must_be_valid",
        _on_pending(post_pending, reference="\x00"),
        INVALID,
        "text_must_be_valid",
    ),
    (
        "post metadata_must_be_valid",
        _on_pending(post_pending, metadata="1"),
        INVALID,
        "metadata_must_be_valid",
    ),
    (
        "post amount_must_be_positive",
        _on_pending(post_pending, amount_minor=0),
        INVALID,
        "amount_must_be_positive",
    ),
    (
        "post exists_with_different_body",
        _changed_resolution(post_pending),
        EXISTS,
        "exists_with_different_body",
    ),
    (
        "post transaction_must_exist",
        lambda hub: post_pending(OPERATOR, "missing"),
        NOT_FOUND,
        "transaction_must_exist",
    ),
    (
        "post pending_must_be_pending posted",
        _resolved(post_pending, "posted"),
        PRECONDITION,
        "pending_must_be_pending",
    ),
    (
        "post pending_must_be_pending voided",
        _resolved(post_pending, "voided"),
        PRECONDITION,
        "pending_must_be_pending",
    ),
    (
        "post partial_post_needs_two_postings",
        lambda hub: post_pending(
            OPERATOR, _reserved(hub, postings=4)[0].instruction_id, amount_minor=1
        ),
        INVALID,
        "partial_post_needs_two_postings",
    ),
    (
        "post post_amount_must_not_exceed_pending",
        _on_pending(post_pending, amount_minor=101),
        INVALID,
        "post_amount_must_not_exceed_pending",
    ),
    ("post account_must_be_open", _frozen_pending, PRECONDITION, "account_must_be_open"),
    (
        "post signature_invalid",
        _badly_signed(_on_pending(post_pending)),
        UNAUTHENTICATED,
        "signature_invalid",
    ),
    # VoidPendingTransaction.
    (
        "void id_must_be_valid",
        _on_pending(void_pending, instruction_id=""),
        INVALID,
        "id_must_be_valid",
    ),
    (
        "void text_must_be_valid",
        _on_pending(void_pending, code="C" * 33),
        INVALID,
        "text_must_be_valid",
    ),
    (
        "void metadata_must_be_valid",
        _on_pending(void_pending, metadata='"x"'),
        INVALID,
        "metadata_must_be_valid",
    ),
    (
        "void exists_with_different_body",
        _changed_resolution(void_pending),
        EXISTS,
        "exists_with_different_body",
    ),
    (
        "void transaction_must_exist",
        lambda hub: void_pending(OPERATOR, "missing"),
        NOT_FOUND,
        "transaction_must_exist",
    ),
    (
        "void pending_must_be_pending",
        _resolved(void_pending, "voided"),
        PRECONDITION,
        "pending_must_be_pending",
    ),
    (
        "void signature_invalid",
        _badly_signed(_on_pending(void_pending)),
        UNAUTHENTICATED,
        "signature_invalid",
    ),
    # ReverseTransaction.
    (
        "reverse id_must_be_valid",
        _reverse_posted(instruction_id="a\tb"),
        INVALID,
        "id_must_be_valid",
    ),
    (
        "reverse text_must_be_valid",
        _reverse_posted(reference="r" * 141),
        INVALID,
        "text_must_be_valid",
    ),
    (
        "reverse metadata_must_be_valid",
        _reverse_posted(metadata="null"),
        INVALID,
        "metadata_must_be_valid",
    ),
    ("reverse exists_with_different_body", _changed_reversal, EXISTS, "exists_with_different_body"),
    (
        "reverse transaction_must_exist",
        lambda hub: reverse(OPERATOR, "missing"),
        NOT_FOUND,
        "transaction_must_exist",
    ),
    ("reverse of a pending", _reverse_of("pending"), PRECONDITION, "reversal_must_be_of_posted"),
    ("reverse of a void", _reverse_of("void"), PRECONDITION, "reversal_must_be_of_posted"),
    ("reverse already_reversed", _reversed_twice, PRECONDITION, "already_reversed"),
    ("reverse account_must_be_open", _reverse_frozen, PRECONDITION, "account_must_be_open"),
    (
        "reverse signature_invalid",
        _badly_signed(_reverse_posted()),
        UNAUTHENTICATED,
        "signature_invalid",
    ),
    ("reverse exceeds_credits", _money_moved_on, PRECONDITION, "exceeds_credits"),
]


@pytest.mark.parametrize(
    ("build", "expected", "code"),
    [pytest.param(*row[1:], id=row[0]) for row in OTHER_RULES],
)
def test_account_post_void_reverse_rules(
    hub: HubClient, build: Build, expected: grpc.StatusCode, code: str
) -> None:
    instruction = build(hub)
    size = hub.journal_size()
    status, detail = refusal(lambda: _send(hub, instruction))
    assert (status, detail.code) == (expected, code), detail.message
    assert hub.journal_size() == size


def test_pending_expires_and_can_no_longer_be_posted(hub: HubClient) -> None:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    reservation = transaction(
        OPERATOR, transfer_postings(payer, payee, 300), pending=True, timeout_seconds=1
    )
    hub.write(reservation)
    assert hub.balance(payer) == (0, 1_000, 300, 0)
    deadline = time.monotonic() + 15
    while True:
        state = (
            hub.ledger()
            .GetTransaction(
                ledger_pb2.GetTransactionRequest(transaction_id=reservation.instruction_id)
            )
            .transaction.state
        )
        if state == ledger_pb2.TRANSACTION_STATE_PENDING_EXPIRED or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert state == ledger_pb2.TRANSACTION_STATE_PENDING_EXPIRED
    assert hub.balance(payer) == (0, 1_000, 0, 0)
    size = hub.journal_size()
    for build in (post_pending, void_pending):
        status, detail = refusal(
            functools.partial(hub.write, build(OPERATOR, reservation.instruction_id))
        )
        assert (status, detail.code) == (PRECONDITION, "pending_expired")
    assert hub.journal_size() == size


# -- idempotency and signatures ----------------------------------------------------------------


def _fresh_write(hub: HubClient, method: str) -> Message:
    if method == "CreateAccount":
        return create_account("bank-us")
    if method == "CreateTransaction":
        payer, payee = hub.funded_pair("bank-us", 1_000)
        return transaction("bank-us", transfer_postings(payer, payee, 10))
    if method == "ReverseTransaction":
        return reverse(OPERATOR, _posted(hub)[0].instruction_id)
    reservation, _, _ = _reserved(hub)
    if method == "PostPendingTransaction":
        return post_pending(OPERATOR, reservation.instruction_id, amount_minor=60)
    return void_pending(OPERATOR, reservation.instruction_id)


@pytest.mark.parametrize("method", list(REQUEST_TYPES))
def test_identical_retry_answers_already_existed_with_the_original_receipt(
    hub: HubClient, method: str
) -> None:
    instruction = _fresh_write(hub, method)
    first = hub.write(instruction)
    size = hub.journal_size()
    again = hub.write(instruction)
    assert (first.result.status, again.result.status) == (CREATED, ALREADY_EXISTED)
    assert again.result.receipt == first.result.receipt
    assert again.result.committed_at == first.result.committed_at
    if method == "CreateAccount":
        assert again.account == first.account
    else:
        assert again.transaction.receipt == first.transaction.receipt
    assert hub.journal_size() == size


@pytest.mark.parametrize(
    "attack", ["flipped bit", "another participant's key", "replayed with a changed body"]
)
def test_forged_transactions_are_refused_and_write_nothing(hub: HubClient, attack: str) -> None:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    instruction = transaction("bank-us", transfer_postings(payer, payee, 100))
    signed = hub.sign(instruction)
    if attack == "flipped bit":
        tampered = bytearray(signed.signature)
        tampered[10] ^= 0x01
        signed.signature = bytes(tampered)
        expected = (UNAUTHENTICATED, "signature_invalid")
    elif attack == "another participant's key":
        signed = sign(instruction, hub.keys["bank-pk"])
        expected = (UNAUTHENTICATED, "signature_invalid")
    else:
        hub.write(instruction)
        changed = json_format.Parse(signed.instruction, ledger_pb2.TransactionInstruction())
        changed.postings[0].amount_minor = changed.postings[1].amount_minor = 900
        signed.instruction = canonical_bytes(changed)
        expected = (EXISTS, "exists_with_different_body")
    size = hub.journal_size()
    status, detail = refusal(
        lambda: hub.ledger("bank-us").CreateTransaction(
            ledger_pb2.CreateTransactionRequest(instruction=signed), timeout=CALL_TIMEOUT_SECONDS
        )
    )
    assert (status, detail.code) == expected
    if attack == "replayed with a changed body":
        assert list(detail.fields) == ["postings"]
    assert hub.journal_size() == size


# -- money, exactly ----------------------------------------------------------------------------


def test_two_phase_and_reversal_leave_exact_balances(hub: HubClient) -> None:
    payer, payee = hub.funded_pair("bank-pk", 10_000, "PKR")
    reservation = pending("bank-pk", transfer_postings(payer, payee, 4_000, "PKR"))
    created = hub.write(reservation)
    assert created.transaction.state == ledger_pb2.TRANSACTION_STATE_PENDING
    assert (
        created.transaction.expires_at.seconds
        == created.transaction.committed_at.seconds + LONG_TIMEOUT_SECONDS
    )
    assert hub.balance(payer) == (0, 10_000, 4_000, 0)
    assert hub.balance(payee) == (0, 0, 0, 4_000)
    status, detail = refusal(
        lambda: hub.write(transaction("bank-pk", transfer_postings(payer, payee, 6_001, "PKR")))
    )
    assert (status, detail.code) == (PRECONDITION, "exceeds_credits")

    posted = hub.write(post_pending("bank-pk", reservation.instruction_id, amount_minor=2_500))
    assert posted.transaction.kind == ledger_pb2.TRANSACTION_KIND_POST_PENDING
    assert posted.transaction.pending_transaction_id == reservation.instruction_id
    assert [p.amount_minor for p in posted.transaction.postings] == [2_500, 2_500]
    assert hub.balance(payer) == (2_500, 10_000, 0, 0)
    assert hub.balance(payee) == (0, 2_500, 0, 0)

    second = pending("bank-pk", transfer_postings(payer, payee, 1_000, "PKR"))
    hub.write(second)
    voided = hub.write(void_pending("bank-pk", second.instruction_id))
    assert voided.transaction.kind == ledger_pb2.TRANSACTION_KIND_VOID_PENDING
    assert list(voided.transaction.postings) == []
    assert hub.balance(payer) == (2_500, 10_000, 0, 0)

    reversed_ = hub.write(reverse("bank-pk", posted.transaction.transaction_id))
    assert reversed_.transaction.kind == ledger_pb2.TRANSACTION_KIND_REVERSAL
    assert reversed_.transaction.original_transaction_id == posted.transaction.transaction_id
    assert [(p.account_id, p.side) for p in reversed_.transaction.postings] == [
        (payer, CREDIT),
        (payee, DEBIT),
    ]
    assert hub.balance(payer) == (2_500, 12_500, 0, 0)
    assert hub.balance(payee) == (2_500, 2_500, 0, 0)

    states = {
        transaction_id: hub.ledger("bank-pk")
        .GetTransaction(ledger_pb2.GetTransactionRequest(transaction_id=transaction_id))
        .transaction.state
        for transaction_id in (reservation.instruction_id, second.instruction_id)
    }
    assert states == {
        reservation.instruction_id: ledger_pb2.TRANSACTION_STATE_PENDING_POSTED,
        second.instruction_id: ledger_pb2.TRANSACTION_STATE_PENDING_VOIDED,
    }
    hub.server.hub.ledger.check_invariants()


def test_balance_as_of_a_journal_index(hub: HubClient) -> None:
    payer, payee = hub.funded_pair("bank-us", 0)
    hub.give(payer, 700)
    indexes = []
    for amount in (100, 250):
        response = hub.write(transaction("bank-us", transfer_postings(payer, payee, amount)))
        indexes.append(response.result.receipt.journal_index)
    created_at = (
        hub.ledger()
        .GetAccount(ledger_pb2.GetAccountRequest(account_id=payee))
        .account.created_journal_index
    )
    assert hub.balance(payee, created_at) == (0, 0, 0, 0)
    assert hub.balance(payee, indexes[0]) == (0, 100, 0, 0)
    assert hub.balance(payee, indexes[1]) == (0, 350, 0, 0)
    assert hub.balance(payer, indexes[0] - 1) == (0, 700, 0, 0)
    current = hub.ledger().GetBalance(ledger_pb2.GetBalanceRequest(account_id=payer)).balance
    assert current.as_of_index >= indexes[1]
    size = hub.journal_size()
    status, detail = refusal(lambda: hub.balance(payer, size + 10))
    assert (status, detail.code) == (PRECONDITION, "index_must_be_committed")
    status, detail = refusal(lambda: hub.balance("has space"))
    assert (status, detail.code) == (INVALID, "id_must_be_valid")


def test_latest_balance_equals_the_balance_as_of_its_index(hub: HubClient) -> None:
    """The latest balance (one read of the account) against the sums of its postings."""
    payer, payee = hub.funded_pair("bank-us", 1_000)
    hub.write(transaction("bank-us", transfer_postings(payer, payee, 300)))
    hub.write(pending("bank-us", transfer_postings(payer, payee, 200)))
    for account_id in (payer, payee):
        for who in (OPERATOR, "auditor", "bank-us"):
            latest = (
                hub.ledger(who)
                .GetBalance(ledger_pb2.GetBalanceRequest(account_id=account_id))
                .balance
            )
            assert latest.as_of_index == hub.journal_size() - 1
            as_of = ledger_pb2.GetBalanceRequest(
                account_id=account_id, as_of_index=latest.as_of_index
            )
            assert hub.ledger(who).GetBalance(as_of).balance == latest
        for request in (ledger_pb2.GetBalanceRequest(account_id=account_id), as_of):
            status, detail = refusal(lambda: hub.ledger("bank-pk").GetBalance(request))  # noqa: B023
            assert (status, detail.code) == (NOT_FOUND, "account_must_exist")
    assert latest == ledger_pb2.Balance(
        account_id=payee,
        currency="USD",
        credits_posted_minor=300,
        credits_pending_minor=200,
        as_of_index=latest.as_of_index,
    )


# -- batches -----------------------------------------------------------------------------------


def _batch(
    hub: HubClient, who: str, items: Sequence[Message], *, linked: bool, **fields: Any
) -> Any:
    request = _batch_request(hub, who, items, linked=linked, **fields)
    return hub.ledger(who).CreateTransactionBatch(request, timeout=CALL_TIMEOUT_SECONDS)


@pytest.mark.parametrize("who", [OPERATOR, "bank-us"])
def test_linked_batch_commits_in_order_and_retries_as_already_existed(
    hub: HubClient, who: str
) -> None:
    payer, payee = hub.funded_pair(_writer_of(who), 1_000)
    reservation = pending(who, transfer_postings(payer, payee, 300))
    items: list[Any] = [
        reservation,
        post_pending(who, reservation.instruction_id, amount_minor=200),
        transaction(who, transfer_postings(payer, payee, 50)),
    ]
    request = _batch_request(hub, who, items, linked=True)
    size = hub.journal_size()
    response = hub.ledger(who).CreateTransactionBatch(request, timeout=CALL_TIMEOUT_SECONDS)
    assert [result.status for result in response.results] == [CREATED] * 3
    assert [result.instruction_id for result in response.results] == [
        item.instruction_id for item in items
    ]
    assert [result.receipt.journal_index for result in response.results] == [
        size,
        size + 1,
        size + 2,
    ]
    assert hub.balance(payer) == (250, 1_000, 0, 0)
    again = hub.ledger(who).CreateTransactionBatch(request, timeout=CALL_TIMEOUT_SECONDS)
    assert [result.status for result in again.results] == [ALREADY_EXISTED] * 3
    assert [result.receipt for result in again.results] == [
        result.receipt for result in response.results
    ]
    assert hub.journal_size() == size + 3


def test_linked_batch_with_a_failing_item_commits_nothing(hub: HubClient) -> None:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    items = [
        transaction("bank-us", transfer_postings(payer, payee, 100)),
        transaction("bank-us", transfer_postings(payer, payee, 5_000)),
        transaction("bank-us", transfer_postings(payer, payee, 100)),
    ]
    size = hub.journal_size()
    response = _batch(hub, "bank-us", items, linked=True)
    assert [result.status for result in response.results] == [FAILED] * 3
    assert [result.error.code for result in response.results] == [
        "linked_command_failed",
        "exceeds_credits",
        "linked_command_failed",
    ]
    assert not response.results[0].HasField("receipt")
    assert hub.journal_size() == size
    assert hub.balance(payer) == (0, 1_000, 0, 0)


def test_linked_batch_refused_before_the_ledger_commits_nothing(hub: HubClient) -> None:
    """A participant's item on another participant's account fails its linked batch."""
    payer, payee = hub.funded_pair("bank-us", 1_000)
    _, theirs = hub.funded_pair("bank-pk", 0)
    items = [
        transaction("bank-us", transfer_postings(payer, payee, 100)),
        transaction("bank-us", transfer_postings(payer, theirs, 100)),
    ]
    size = hub.journal_size()
    response = _batch(hub, "bank-us", items, linked=True)
    assert [(result.status, result.error.code) for result in response.results] == [
        (FAILED, "linked_command_failed"),
        (FAILED, "account_must_exist"),
    ]
    assert hub.journal_size() == size


def test_independent_batch_answers_each_item(hub: HubClient) -> None:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    _, theirs = hub.funded_pair("bank-pk", 0)
    badly_signed = transaction("bank-us", transfer_postings(payer, payee, 1))
    items = [
        transaction("bank-us", transfer_postings(payer, payee, 600)),
        transaction("bank-us", transfer_postings(payer, payee, 600)),
        transaction("bank-us", transfer_postings(payer, theirs, 1)),
        transaction("bank-us", transfer_postings(payer, payee, 1), metadata="{ }"),
        badly_signed,
        transaction("bank-us", transfer_postings(payer, payee, 400)),
    ]
    request = _batch_request(hub, "bank-us", items, linked=False)
    # The batch lists the items' SHA-256 of their bytes, not their signatures.
    request.items[4].signature = bytes(64)
    size = hub.journal_size()
    response = hub.ledger("bank-us").CreateTransactionBatch(request, timeout=CALL_TIMEOUT_SECONDS)
    assert [(result.status, result.error.code) for result in response.results] == [
        (CREATED, ""),
        (FAILED, "exceeds_credits"),
        (FAILED, "account_must_exist"),
        (FAILED, "json_must_be_canonical"),
        (FAILED, "signature_invalid"),
        (CREATED, ""),
    ]
    assert hub.journal_size() == size + 2
    assert hub.balance(payer) == (1_000, 1_000, 0, 0)


def _item_common_failures(hub: HubClient) -> list[tuple[str, Any, grpc.StatusCode, str, list[str]]]:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    good = transaction("bank-us", transfer_postings(payer, payee, 1))
    cases: list[tuple[str, Any, grpc.StatusCode, str, list[str]]] = []

    request = _batch_request(hub, "bank-us", [], linked=True)
    cases.append(("empty", request, INVALID, "batch_must_not_be_empty", []))

    signed_good = hub.sign(good)
    request = _batch_request(hub, "bank-us", [good], linked=False)
    request.items.extend([signed_good] * 8_000)
    cases.append(("more than 8,000 items", request, EXHAUSTED, "batch_must_not_exceed_limit", []))

    foreign = transaction("bank-pk", transfer_postings(payer, payee, 1))
    request = _batch_request(hub, "bank-us", [good, foreign], linked=False)
    request.items[1].CopyFrom(hub.sign(foreign))
    cases.append(
        (
            "item signed by another participant",
            request,
            DENIED,
            "signer_must_be_caller",
            ["items[1]"],
        )
    )

    fund = participant_pb2.FundInstruction(
        instruction_id=new_id("bank-us"),
        participant_id="bank-us",
        instruction_type=_type(participant_pb2.FundInstruction),
        account_id=payer,
        amount_minor=1,
        currency="USD",
    )
    request = _batch_request(hub, "bank-us", [fund, good], linked=False)
    cases.append(
        ("item of another type", request, INVALID, "instruction_type_must_match", ["items[0]"])
    )

    request = _batch_request(hub, "bank-us", [good], linked=False)
    request.items[0].instruction = signed_good.instruction + b" "
    cases.append(("item not canonical", request, INVALID, "json_must_be_canonical", ["items[0]"]))

    request = _batch_request(hub, "bank-us", [good, good], linked=False)
    swapped = _batch_request(
        hub, "bank-us", [transaction("bank-us", transfer_postings(payer, payee, 2))], linked=False
    )
    request.items[1].CopyFrom(swapped.items[0])
    cases.append(
        ("item not the one listed", request, INVALID, "items_must_match_batch", ["items[1]"])
    )

    request = _batch_request(hub, "bank-us", [good], linked=False)
    request.items.append(signed_good)
    cases.append(("more items than listed", request, INVALID, "items_must_match_batch", ["items"]))

    request = _batch_request(hub, "bank-us", [good], linked=False)
    request.instruction.signature = bytes(64)
    cases.append(("batch signature", request, UNAUTHENTICATED, "signature_invalid", []))

    us_payer, us_payee = hub.funded_pair("bank-pk", 1_000)
    taken = transaction("bank-pk", transfer_postings(us_payer, us_payee, 1))
    hub.write(taken)
    reuse = transaction(
        "bank-us", transfer_postings(payer, payee, 1), instruction_id=taken.instruction_id
    )
    request = _batch_request(hub, "bank-us", [good, reuse], linked=False)
    cases.append(("item id taken", request, EXISTS, "id_taken", ["items[1]"]))
    return cases


def test_batch_call_refusals(hub: HubClient) -> None:
    """Common checks of the batch or of any item fail the whole call, naming the item."""
    for label, request, expected, code, fields in _item_common_failures(hub):
        size = hub.journal_size()
        status, detail = refusal(
            functools.partial(
                hub.ledger("bank-us").CreateTransactionBatch, request, timeout=CALL_TIMEOUT_SECONDS
            )
        )
        assert (status, detail.code, list(detail.fields)) == (expected, code, fields), label
        assert hub.journal_size() == size, label


# -- reads -------------------------------------------------------------------------------------


def test_read_refusals(hub: HubClient) -> None:
    stub = hub.ledger("bank-us")
    cases: list[tuple[Callable[[], Any], grpc.StatusCode, str]] = [
        (
            lambda: stub.GetAccount(ledger_pb2.GetAccountRequest(account_id="")),
            INVALID,
            "id_must_be_valid",
        ),
        (
            lambda: stub.GetAccount(ledger_pb2.GetAccountRequest(account_id="missing")),
            NOT_FOUND,
            "account_must_exist",
        ),
        (
            lambda: stub.GetTransaction(ledger_pb2.GetTransactionRequest(transaction_id="a b")),
            INVALID,
            "id_must_be_valid",
        ),
        (
            lambda: stub.GetTransaction(ledger_pb2.GetTransactionRequest(transaction_id="missing")),
            NOT_FOUND,
            "transaction_must_exist",
        ),
        (
            lambda: stub.ListTransactions(ledger_pb2.ListTransactionsRequest()),
            INVALID,
            "filter_must_be_exactly_one",
        ),
        (
            lambda: stub.ListTransactions(
                ledger_pb2.ListTransactionsRequest(account_id="a", reference="r")
            ),
            INVALID,
            "filter_must_be_exactly_one",
        ),
        (
            lambda: stub.ListTransactions(ledger_pb2.ListTransactionsRequest(account_id="a b")),
            INVALID,
            "id_must_be_valid",
        ),
        (
            lambda: stub.ListTransactions(
                ledger_pb2.ListTransactionsRequest(
                    account_id="missing", page=common_pb2.PageRequest(page_token="x")
                )
            ),
            INVALID,
            "page_token_must_match_request",
        ),
        (
            lambda: stub.ListTransactions(ledger_pb2.ListTransactionsRequest(account_id="missing")),
            NOT_FOUND,
            "account_must_exist",
        ),
        (
            lambda: stub.ListAccounts(
                ledger_pb2.ListAccountsRequest(page=common_pb2.PageRequest(page_token="e30="))
            ),
            INVALID,
            "page_token_must_match_request",
        ),
    ]
    for invoke, expected, code in cases:
        status, detail = refusal(invoke)
        assert (status, detail.code) == (expected, code)


def test_list_transactions_pages_by_account_and_by_reference(hub: HubClient) -> None:
    payer, payee = hub.funded_pair("bank-us", 10_000)
    reference = f"uetr-{uuid.uuid4()}"
    ids = []
    for amount in range(1, 8):
        instruction = transaction(
            "bank-us", transfer_postings(payer, payee, amount), reference=reference
        )
        hub.write(instruction)
        ids.append(instruction.instruction_id)
    _, theirs = hub.funded_pair("bank-pk", 0)
    hub.write(transaction(OPERATOR, transfer_postings(payer, theirs, 1), reference=reference))

    def walk(who: str, order: common_pb2.SortOrder.ValueType, **filters: str) -> list[str]:
        found: list[str] = []
        token = ""
        while True:
            page = hub.ledger(who).ListTransactions(
                ledger_pb2.ListTransactionsRequest(
                    page=common_pb2.PageRequest(page_size=3, page_token=token),
                    order=order,
                    **filters,
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            assert len(page.transactions) <= 3
            found.extend(item.transaction_id for item in page.transactions)
            token = page.next_page_token
            if not token:
                return found

    oldest = walk("bank-us", common_pb2.SORT_ORDER_OLDEST_FIRST, account_id=payee)
    assert oldest == ids
    assert walk("bank-us", common_pb2.SORT_ORDER_UNSPECIFIED, account_id=payee) == ids[::-1]
    by_reference = walk(OPERATOR, common_pb2.SORT_ORDER_OLDEST_FIRST, reference=reference)
    assert by_reference[:7] == ids
    assert len(by_reference) == 8
    assert (
        walk("bank-us", common_pb2.SORT_ORDER_NEWEST_FIRST, reference=reference)[-7:] == ids[::-1]
    )
    assert walk("bank-pk", common_pb2.SORT_ORDER_OLDEST_FIRST, reference=reference) == [
        by_reference[-1]
    ]
    assert walk("lender", common_pb2.SORT_ORDER_OLDEST_FIRST, reference=reference) == []

    first = hub.ledger("bank-us").ListTransactions(
        ledger_pb2.ListTransactionsRequest(
            page=common_pb2.PageRequest(page_size=2), account_id=payee
        )
    )
    status, detail = refusal(
        lambda: hub.ledger("bank-us").ListTransactions(
            ledger_pb2.ListTransactionsRequest(
                page=common_pb2.PageRequest(page_token=first.next_page_token),
                account_id=payee,
                order=common_pb2.SORT_ORDER_OLDEST_FIRST,
            )
        )
    )
    assert (status, detail.code) == (INVALID, "page_token_must_match_request")


def test_list_accounts_pages_and_shows_participants_their_own(hub: HubClient) -> None:
    mine = sorted(hub.account("lender") for _ in range(5))
    listed = [account.account_id for account in _all_accounts(hub, "lender")]
    assert listed == sorted(listed)
    assert set(mine) <= set(listed)
    assert {account.owner_participant_id for account in _all_accounts(hub, "lender")} == {"lender"}
    assert _all_accounts(hub, "lender", owner_participant_id="bank-us") == []
    assert [
        a.account_id for a in _all_accounts(hub, OPERATOR, owner_participant_id="lender")
    ] == listed
    walked: list[str] = []
    token = ""
    while True:
        page = hub.ledger("auditor").ListAccounts(
            ledger_pb2.ListAccountsRequest(
                page=common_pb2.PageRequest(page_size=2, page_token=token),
                owner_participant_id="lender",
            )
        )
        assert len(page.accounts) <= 2
        walked.extend(account.account_id for account in page.accounts)
        token = page.next_page_token
        if not token:
            break
    assert walked == listed


def test_transaction_reads_back_as_signed(hub: HubClient) -> None:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    instruction = transaction(
        "bank-us",
        transfer_postings(payer, payee, 321),
        reference="ref-1",
        metadata='{"purpose":"test"}',
    )
    signed = hub.sign(instruction)
    created = hub.ledger("bank-us").CreateTransaction(
        ledger_pb2.CreateTransactionRequest(instruction=signed)
    )
    found = (
        hub.ledger("auditor")
        .GetTransaction(ledger_pb2.GetTransactionRequest(transaction_id=instruction.instruction_id))
        .transaction
    )
    assert found == created.transaction
    assert found.participant_id == "bank-us"
    assert found.signed_instruction == signed
    assert (found.code, found.reference, found.metadata) == (
        "TRANSFER",
        "ref-1",
        '{"purpose":"test"}',
    )
    assert found.receipt == created.result.receipt
    assert found.committed_at == created.result.committed_at
    assert list(found.postings) == list(instruction.postings)


def _read_back(hub: HubClient, who: str, transaction_id: str) -> Any:
    request = ledger_pb2.GetTransactionRequest(transaction_id=transaction_id)
    return hub.ledger(who).GetTransaction(request).transaction


# Text a write carries into its response: empty, canonical, non-ASCII.
_TEXTS: list[dict[str, str]] = [
    {},
    {"reference": "ref-\u00e9\u4e2d", "metadata": "{}"},
    {"code": "C", "reference": "r", "metadata": '{"a":[1,true,null],"z":"\u00e9"}'},
]


@pytest.mark.parametrize("who", [OPERATOR, "bank-us"])
@pytest.mark.parametrize("texts", _TEXTS, ids=["empty", "empty-object", "metadata"])
def test_write_responses_equal_a_read_back(hub: HubClient, who: str, texts: dict[str, str]) -> None:
    """The servicer builds a write's answer without reading it back: it must not differ."""
    owner = "bank-us"
    opened = create_account(owner, debit_limit_minor=5, metadata=texts.get("metadata", ""))
    answer = hub.write(opened)
    account_request = ledger_pb2.GetAccountRequest(account_id=opened.instruction_id)
    assert answer.account == hub.ledger(who).GetAccount(account_request).account
    payer, payee = hub.funded_pair(owner, 1_000)
    written = []
    posted = transaction(who, transfer_postings(payer, payee, 7), **texts)
    written.append(hub.write(posted))
    three = [
        *transfer_postings(payer, payee, 5),
        posting(payee, DEBIT, 1),
        posting(payer, CREDIT, 1),
    ]
    written.append(hub.write(transaction(who, three, **texts)))
    reservations = [pending(who, transfer_postings(payer, payee, 10), **texts) for _ in range(3)]
    written.extend(hub.write(reservation) for reservation in reservations)
    written.append(hub.write(post_pending(who, reservations[0].instruction_id, **texts)))
    written.append(
        hub.write(post_pending(who, reservations[1].instruction_id, amount_minor=4, **texts))
    )
    written.append(hub.write(void_pending(who, reservations[2].instruction_id, **texts)))
    written.append(hub.write(reverse(who, posted.instruction_id, **texts)))
    for response in written:
        assert response.result.status == CREATED
        found = _read_back(hub, who, response.transaction.transaction_id)
        if found.kind == ledger_pb2.TRANSACTION_KIND_STANDARD and found.state != (
            ledger_pb2.TRANSACTION_STATE_POSTED
        ):
            # Resolved since: the answer showed it as committed, still pending.
            assert found.state != ledger_pb2.TRANSACTION_STATE_PENDING
            found.state = ledger_pb2.TRANSACTION_STATE_PENDING
        assert response.transaction == found
    # A retry answers with the transaction as it is now, resolved.
    again = hub.write(reservations[0])
    assert again.result.status == ALREADY_EXISTED
    assert again.transaction == _read_back(hub, who, reservations[0].instruction_id)
    assert again.transaction.state == ledger_pb2.TRANSACTION_STATE_PENDING_POSTED


# -- the journal stream ------------------------------------------------------------------------


def _watch(hub: HubClient, who: str, **fields: Any) -> list[Any]:
    request = ledger_pb2.WatchJournalRequest(stop_at_end=True, **fields)
    return [
        response.entry
        for response in hub.ledger(who).WatchJournal(request, timeout=CALL_TIMEOUT_SECONDS)
    ]


def test_watch_journal_sends_every_entry_as_committed(hub: HubClient) -> None:
    payer, payee = hub.funded_pair("bank-us", 1_000)
    reservation = pending(OPERATOR, transfer_postings(payer, payee, 10))
    hub.write(reservation)
    hub.write(void_pending(OPERATOR, reservation.instruction_id))
    entries = _watch(hub, OPERATOR)
    ledger = hub.server.hub.ledger
    size = ledger.journal_size()
    indexes = [entry.receipt.journal_index for entry in entries]
    assert indexes == sorted(set(indexes))
    assert indexes[-1] <= size - 1
    kinds = {entry.kind for entry in entries}
    assert ledger_pb2.ENTRY_KIND_UNSPECIFIED not in kinds
    for entry in entries:
        leaf = ledger.leaf(entry.receipt.journal_index)
        assert entry.leaf == leaf
        assert entry.receipt.leaf_hash == hashlib.sha256(b"\x00" + leaf).digest()
    by_id = {entry.entry_id: entry for entry in entries}
    assert by_id[reservation.instruction_id].kind == ledger_pb2.ENTRY_KIND_TRANSACTION
    assert (
        by_id[reservation.instruction_id].transaction.state
        == ledger_pb2.TRANSACTION_STATE_PENDING_VOIDED
    )
    assert by_id[reservation.instruction_id].signed_instruction == hub.sign(reservation)
    assert by_id[payer].kind == ledger_pb2.ENTRY_KIND_ACCOUNT
    assert by_id["operator:register:bank-us"].kind == ledger_pb2.ENTRY_KIND_SIGNING_KEY
    assert by_id["bootstrap:operator"].kind == ledger_pb2.ENTRY_KIND_SIGNING_KEY
    assert not by_id["bootstrap:operator"].HasField("signed_instruction")
    later = _watch(hub, OPERATOR, from_index=indexes[-3])
    assert [entry.receipt.journal_index for entry in later] == indexes[-3:]


def test_watch_journal_shows_participants_only_their_entries(hub: HubClient) -> None:
    payer, payee = hub.funded_pair("lender", 1_000)
    reservation = pending(OPERATOR, transfer_postings(payer, payee, 10))
    hub.write(reservation)
    hub.write(void_pending(OPERATOR, reservation.instruction_id))
    hub.freeze(payee)
    other_payer, other_payee = hub.funded_pair("fx-provider", 1_000)
    hub.write(transaction(OPERATOR, transfer_postings(other_payer, other_payee, 5)))
    owned = {account.account_id for account in _all_accounts(hub, "lender")}
    entries = _watch(hub, "lender")
    assert entries
    for entry in entries:
        assert entry.kind != ledger_pb2.ENTRY_KIND_SIGNING_KEY
        assert _leaf_accounts(entry.leaf) & owned, entry
    kinds = [entry.kind for entry in entries if entry.receipt.journal_index > 0]
    assert ledger_pb2.ENTRY_KIND_VOID_PENDING in kinds
    assert ledger_pb2.ENTRY_KIND_ACCOUNT_STATUS in kinds
    ids = {entry.entry_id for entry in entries}
    assert {payer, payee, reservation.instruction_id} <= ids
    assert other_payer not in ids


def _leaf_accounts(leaf: bytes) -> set[str]:
    document = json.loads(leaf)
    touched = {item["account"] for item in document.get("postings", [])}
    touched |= {item["account"] for item in document.get("releases", [])}
    if "account_id" in document:
        touched.add(document["account_id"])
    if "account" in document:
        touched.add(document["account"]["id"])
    return touched


def test_watch_journal_streams_new_entries_until_cancelled(hub: HubClient) -> None:
    payer, payee = hub.funded_pair("bank-pk", 1_000)
    start = hub.journal_size() + 1  # beyond the end: the stream waits
    call = hub.ledger("bank-pk").WatchJournal(ledger_pb2.WatchJournalRequest(from_index=start))
    received: list[Any] = []

    def read() -> None:
        for response in call:
            received.append(response.entry)
            if len(received) == 2:
                return

    reader = threading.Thread(target=read)
    reader.start()
    written = [
        hub.write(transaction("bank-pk", transfer_postings(payer, payee, amount)))
        for amount in (1, 2, 3)
    ]
    reader.join(timeout=15)
    assert not reader.is_alive()
    call.cancel()
    assert [entry.entry_id for entry in received] == [
        response.transaction.transaction_id for response in written[1:]
    ]
    assert received[0].receipt.journal_index == start


def test_watch_journal_ends_a_reader_too_far_behind(
    hub: HubClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_service, "WATCH_CHUNK_ENTRIES", 2)
    monkeypatch.setattr(ledger_service, "WATCH_LAG_MAX_ENTRIES", 5)
    payer, payee = hub.funded_pair(OPERATOR, 1_000)
    start = hub.journal_size()
    call = hub.ledger().WatchJournal(
        ledger_pb2.WatchJournalRequest(from_index=start), timeout=CALL_TIMEOUT_SECONDS
    )
    hub.write(transaction(OPERATOR, transfer_postings(payer, payee, 1)))
    received = [next(call).entry.receipt.journal_index]  # the stream is running
    items = [transaction(OPERATOR, transfer_postings(payer, payee, 1)) for _ in range(20)]
    _batch(hub, OPERATOR, items, linked=True)  # 20 entries at once

    def read_to_the_end() -> None:
        received.extend(response.entry.receipt.journal_index for response in call)

    with pytest.raises(grpc.RpcError) as raised:
        read_to_the_end()
    error: Any = raised.value
    assert error.code() == EXHAUSTED
    detail = common_pb2.Error.FromString(dict(error.trailing_metadata())[ERROR_KEY])
    assert detail.code == "watch_must_keep_up"
    # Chunks of 2: it stops after the chunk that shows it more than 5 behind.
    assert received == list(range(start, start + len(received)))
    assert len(received) in (1, 3)
    assert f"from_index {start + len(received)}" in detail.message
