"""Who may call what: every RPC of every registered service, for every kind of caller.

The RPCs come from the generated descriptors of the services the server
registers (:func:`tests.security.world.registered_rpcs`), so a new RPC is in
the matrix as soon as it is served:

- transport cells, for every RPC: no client certificate, and a certificate
  from an unknown CA (even one naming a registered participant) are refused
  in the TLS handshake (UNAVAILABLE, the handler never runs); a certificate
  of the hub's CA whose CN no participant registered is UNAUTHENTICATED
  ``certificate_must_identify_participant``; an auditor's call to any
  mutating RPC is PERMISSION_DENIED ``role_must_permit`` (common.proto);
- role cells, for every RPC of the Participant, Ledger, Audit and Payment
  services (a missing row fails :func:`test_every_rpc_has_a_row`): each of
  operator, auditor, bank-us, bank-pk, fx-provider and lender makes the call
  that succeeds for whoever may make it, aimed at bank-pk's accounts,
  transactions, journal entries and payments (the payment is bank-us's to
  bank-pk through the FX provider). The exact status and error code are
  expected; a refused call writes nothing; and where another participant's
  thing is NOT_FOUND, the answer is the one for a thing that does not exist
  at all (same status, code and message, ids aside), so its existence is
  not revealed either.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from settlement.pki import CertificateAuthority, certificate_pem, private_key_pem
from settlement.v1 import common_pb2, ledger_pb2, participant_pb2, payment_pb2
from tests.grpc.hub_client import OPERATOR, transaction, transfer_postings
from tests.security.world import (
    AUDITOR,
    FUZZED_SERVICES,
    FX,
    LENDER,
    PK,
    ROLES,
    US,
    Outcome,
    Rpc,
    World,
    call,
    outcome,
    payment_instruction,
    post_pending_instruction,
    registered_rpcs,
    reverse_instruction,
    void_pending_instruction,
)

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED

OWNER = PK
"""Whose things every role cell aims at."""

SEES_OWNER = frozenset({OPERATOR, AUDITOR, OWNER})
SEES_PAYMENT = frozenset({OPERATOR, AUDITOR, US, PK, FX})
"""The payment is bank-us's to bank-pk, converted by the FX provider."""
WATCHES_PAYMENT = frozenset({OPERATOR, AUDITOR, US, PK})
"""WatchPayments: debtor and creditor agents (payment.proto); the watched one is in USD only."""

Expected = tuple[grpc.StatusCode, str]
Rule = Callable[[str], Expected]

ALL_RPCS = registered_rpcs()
ROW_RPCS = [rpc for rpc in ALL_RPCS if rpc.service in FUZZED_SERVICES]


def only(*allowed: str) -> Rule:
    """A call only ``allowed`` roles may make; others PERMISSION_DENIED."""
    return lambda who: (OK, "") if who in allowed else (DENIED, "role_must_permit")


def visible(seers: frozenset[str], code: str) -> Rule:
    """A read of something only ``seers`` may see; others NOT_FOUND ``code``."""
    return lambda who: (OK, "") if who in seers else (NOT_FOUND, code)


def everyone(who: str) -> Expected:
    return OK, ""


def owner_write(code: str) -> Rule:
    """A write on bank-pk's things: bank-pk and the operator; auditors never write."""

    def rule(who: str) -> Expected:
        if who == AUDITOR:
            return DENIED, "role_must_permit"
        return (OK, "") if who in (OPERATOR, OWNER) else (NOT_FOUND, code)

    return rule


def batch_on_owner(who: str) -> Expected:
    """A batch answers OK with each item's result (ledger.proto): for another participant
    every item FAILED ``account_must_exist``; the first failed item's code is the cell's."""
    if who in (OPERATOR, OWNER):
        return OK, ""
    if who == AUDITOR:
        return DENIED, "role_must_permit"
    return OK, "account_must_exist"


ROWS: dict[str, Rule] = {
    **{
        f"ParticipantService.{name}": only(OPERATOR)
        for name in (
            "RegisterParticipant",
            "RotateSigningKey",
            "OpenSettlementAccount",
            "SetAccountLimit",
            "FreezeAccount",
            "UnfreezeAccount",
            "Fund",
            "Defund",
        )
    },
    "ParticipantService.GetParticipant": visible(SEES_OWNER, "participant_must_exist"),
    "ParticipantService.ListParticipants": everyone,
    "LedgerService.CreateAccount": only(OPERATOR),
    "LedgerService.CreateTransaction": owner_write("account_must_exist"),
    "LedgerService.CreateTransactionBatch": batch_on_owner,
    "LedgerService.PostPendingTransaction": owner_write("transaction_must_exist"),
    "LedgerService.VoidPendingTransaction": owner_write("transaction_must_exist"),
    "LedgerService.ReverseTransaction": owner_write("transaction_must_exist"),
    "LedgerService.GetAccount": visible(SEES_OWNER, "account_must_exist"),
    "LedgerService.ListAccounts": everyone,
    "LedgerService.GetBalance": visible(SEES_OWNER, "account_must_exist"),
    "LedgerService.GetTransaction": visible(SEES_OWNER, "transaction_must_exist"),
    "LedgerService.ListTransactions": visible(SEES_OWNER, "account_must_exist"),
    "LedgerService.WatchJournal": everyone,
    "AuditService.GetLatestCheckpoint": everyone,
    "AuditService.GetCheckpoint": everyone,
    "AuditService.GetInclusionProof": visible(SEES_OWNER, "entry_must_exist"),
    "AuditService.GetConsistencyProof": everyone,
    "AuditService.GetLeaf": visible(SEES_OWNER, "entry_must_exist"),
    "AuditService.ExportBundle": only(OPERATOR, AUDITOR),
    "PaymentService.PublishRate": only(FX),
    "PaymentService.RequestQuote": only(US, PK),
    "PaymentService.SubmitPayment": only(US, PK),
    "PaymentService.ImportPacs008": only(US, PK),
    "PaymentService.ReviewPayment": only(OPERATOR),
    "PaymentService.GetPayment": visible(SEES_PAYMENT, "payment_must_exist"),
    "PaymentService.WatchPayments": everyone,
    "PaymentService.GetPaymentMessage": visible(SEES_PAYMENT, "payment_must_exist"),
    "PaymentService.GetAccountStatement": visible(SEES_OWNER, "account_must_exist"),
}
"""The expected answer of every role cell, by RPC (see the module docstring)."""

TRANSPORT_CALLERS = ("no-certificate", "unknown-ca", "unregistered-cn")

NO_GHOST = {
    "GetInclusionProof": "every index below a checkpoint's tree size exists, and that size "
    "is public: the cell checks the entry's content stays hidden",
}
"""NOT_FOUND cells without a does-not-exist twin to compare with, and why."""


# -- cells ------------------------------------------------------------------------------------


def _record(figures: dict[str, dict[str, Any]], world: World, kind: str, count: int) -> None:
    section = figures.setdefault(f"access matrix ({world.backend})", {})
    section[kind] = section.get(kind, 0) + count
    section["cells"] = section.get("role cells", 0) + section.get("transport cells", 0)


def test_every_rpc_has_a_row() -> None:
    """A new RPC of these services needs its row; other services get the transport cells."""
    missing = sorted(rpc.short for rpc in ROW_RPCS if rpc.short not in ROWS)
    assert missing == [], f"add the expected outcome of every role to ROWS for {missing}"
    stale = sorted(set(ROWS) - {rpc.short for rpc in ROW_RPCS})
    assert stale == [], f"ROWS names RPCs the server does not serve: {stale}"


def _transport_channels(world: World) -> dict[str, grpc.Channel]:
    ca_certificate = world.pki.ca_certificate_path.read_bytes()
    rogue = CertificateAuthority.create("Rogue CA")
    # Impersonation: the rogue certificate names a registered participant.
    rogue_certificate, rogue_key = rogue.issue_client_certificate(US)
    stranger_certificate, stranger_key = world.pki.certificate_authority().issue_client_certificate(
        "stranger"
    )
    credentials = {
        "no-certificate": world.pki.channel_credentials(None),
        "unknown-ca": grpc.ssl_channel_credentials(
            root_certificates=ca_certificate,
            private_key=private_key_pem(rogue_key),
            certificate_chain=certificate_pem(rogue_certificate),
        ),
        "unregistered-cn": grpc.ssl_channel_credentials(
            root_certificates=ca_certificate,
            private_key=private_key_pem(stranger_key),
            certificate_chain=certificate_pem(stranger_certificate),
        ),
    }
    address = world.client.server.address
    return {name: grpc.secure_channel(address, value) for name, value in credentials.items()}


def test_transport_cells(world: World, figures: dict[str, dict[str, Any]]) -> None:
    """Every RPC: no certificate, unknown CA, unregistered CN; and an auditor's write."""
    channels = _transport_channels(world)
    failures: list[str] = []
    cells = 0
    try:
        for rpc in ALL_RPCS:
            request = rpc.request_type()
            for caller, channel in channels.items():
                before = world.journal_size()
                got = outcome(lambda: call(channel, rpc, request, timeout=10))  # noqa: B023
                cells += 1
                if caller == "unregistered-cn":
                    wanted: Expected = (UNAUTHENTICATED, "certificate_must_identify_participant")
                    if (got.status, got.code) != wanted or not got.has_detail:
                        failures.append(f"{rpc.short} {caller}: expected {wanted}, got {got}")
                elif got.status != UNAVAILABLE:
                    failures.append(f"{rpc.short} {caller}: expected UNAVAILABLE, got {got}")
                if world.journal_size() != before:
                    failures.append(f"{rpc.short} {caller}: the journal changed")
            if rpc.mutating:
                got = outcome(
                    lambda: call(world.channel(AUDITOR), rpc, request)  # noqa: B023
                )
                cells += 1
                if (got.status, got.code) != (DENIED, "role_must_permit"):
                    failures.append(f"{rpc.short} auditor: expected PERMISSION_DENIED, got {got}")
    finally:
        for channel in channels.values():
            channel.close()
    _record(figures, world, "transport cells", cells)
    assert failures == []


def _item_outcome(rpc: Rpc, got: Outcome) -> Outcome:
    """A batch answered OK with failed items: the first failed item's error is the cell's."""
    if rpc.name != "CreateTransactionBatch" or got.status is not OK:
        return got
    response: Any = got.responses[0]
    for result in response.results:
        if result.status == common_pb2.COMMIT_STATUS_FAILED:
            error = result.error
            return Outcome(OK, error.code, f"{error.code}: {error.message}", True, got.responses)
    return got


def _ghost_request(world: World, rpc: Rpc, who: str) -> Message | None:
    """The role cell's request aimed at something that does not exist (None: no such variant)."""
    ghost_account = f"ghost:{uuid.uuid4()}"
    ghost_transaction = f"ghost:{uuid.uuid4()}"
    name = rpc.name
    if name == "CreateTransaction":
        instruction = transaction(who, transfer_postings(ghost_account, ghost_account + "b", 1))
        return rpc.request_type(instruction=world.sign(instruction, who))
    if name == "CreateTransactionBatch":
        items: list[Message] = [
            transaction(who, transfer_postings(ghost_account, ghost_account + "b", 1))
        ]
        return world.batch_request(who, items)
    if name in ("PostPendingTransaction", "VoidPendingTransaction", "ReverseTransaction"):
        builders: dict[str, Callable[..., Message]] = {
            "PostPendingTransaction": post_pending_instruction,
            "VoidPendingTransaction": void_pending_instruction,
            "ReverseTransaction": reverse_instruction,
        }
        build = builders[name]
        return rpc.request_type(instruction=world.sign(build(who, ghost_transaction), who))
    request = world.read_request(rpc, OWNER)
    for field_name, value in (
        ("account_id", ghost_account),
        ("transaction_id", ghost_transaction),
        ("participant_id", f"ghost-{uuid.uuid4().hex[:12]}"),
        ("uetr", str(uuid.uuid4())),
        ("leaf_index", world.journal_size() + 1_000),
    ):
        if field_name in rpc.request_type.DESCRIPTOR.fields_by_name:
            setattr(request, field_name, value)
            return request
    return None


def _masked(text: str) -> str:
    """An error message with ids and numbers masked, to compare two refusals."""
    import re

    text = re.sub(r"'[^']*'|\"[^\"]*\"", "<id>", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", text)
    text = re.sub(r"ghost:\S+|settlement:\S+|test:\S+", "<id>", text)
    return re.sub(r"\d+", "<n>", text)


def _check_content(world: World, rpc: Rpc, who: str, got: Outcome) -> str | None:
    """For an OK read, that it shows what ``who`` may see and nothing else."""
    responses: list[Any] = list(got.responses)
    name = rpc.name
    if name == "ListParticipants":
        listed = {item.participant_id for item in responses[0].participants}
        wanted_ok = set(ROLES) <= listed if who in (OPERATOR, AUDITOR) else listed == {who}
        return None if wanted_ok else f"listed {sorted(listed)}"
    if name == "ListAccounts":
        owners = {account.owner_participant_id for account in responses[0].accounts}
        if who in (OPERATOR, AUDITOR):
            return None if owners else "nothing listed"
        return None if owners <= {who} else f"listed accounts of {sorted(owners)}"
    if name == "WatchJournal":
        ids = {response.entry.entry_id for response in responses}
        sees = world.posted[OWNER] in ids
        return None if sees == (who in SEES_OWNER) else f"bank-pk's entry seen: {sees}"
    if name in ("GetAccount", "GetBalance"):
        message = responses[0].account if name == "GetAccount" else responses[0].balance
        return None if message.account_id == world.pairs[OWNER][0] else "another account"
    if name == "GetTransaction":
        found = responses[0].transaction.transaction_id
        return None if found == world.posted[OWNER] else "another transaction"
    if name == "ListTransactions":
        ids = {item.transaction_id for item in responses[0].transactions}
        return None if world.posted[OWNER] in ids else "bank-pk's transaction missing"
    if name == "GetPayment":
        return None if responses[0].payment.uetr == world.payment_uetr else "another payment"
    return None


@pytest.mark.parametrize(
    "rpc", [rpc for rpc in ROW_RPCS if rpc.name != "WatchPayments"], ids=lambda rpc: rpc.short
)
def test_role_cells(world: World, rpc: Rpc, figures: dict[str, dict[str, Any]]) -> None:
    """One RPC, every role: the exact answer, nothing written when refused, nothing revealed."""
    rule = ROWS[rpc.short]
    failures: list[str] = []
    for who in ROLES:
        wanted = rule(who)
        request = world.valid_request(rpc, who, OWNER)
        before = world.digest()
        got = _item_outcome(rpc, outcome(lambda: call(world.channel(who), rpc, request)))  # noqa: B023
        after = world.digest()
        if (got.status, got.code) != wanted:
            failures.append(
                f"{who}: expected {wanted[0].name} {wanted[1]}, got {got} {got.details}"
            )
            continue
        if got.status is OK and not got.code:
            if rpc.mutating and after == before:
                failures.append(f"{who}: answered OK but nothing was written")
            problem = _check_content(world, rpc, who, got)
            if problem is not None:
                failures.append(f"{who}: {problem}")
            continue
        if after != before:
            failures.append(f"{who}: refused ({got}) but the ledger changed")
        if not got.has_detail or not got.details.startswith(f"{got.code}: "):
            failures.append(f"{who}: refusal without its error detail: {got.details!r}")
        if got.status is NOT_FOUND or (got.status is OK and got.code):
            if rpc.name in NO_GHOST:
                continue
            ghost = _ghost_request(world, rpc, who)
            if ghost is None:
                failures.append(f"{who}: no ghost variant to compare the NOT_FOUND with")
                continue
            missing = _item_outcome(rpc, outcome(lambda: call(world.channel(who), rpc, ghost)))  # noqa: B023
            if (missing.status, missing.code, _masked(missing.details)) != (
                got.status,
                got.code,
                _masked(got.details),
            ):
                failures.append(
                    f"{who}: another's thing answers {got} {got.details!r}, a missing one "
                    f"{missing} {missing.details!r}: its existence shows"
                )
    _record(figures, world, "role cells", len(ROLES))
    assert failures == []


def test_watch_payments_cells(world: World, figures: dict[str, dict[str, Any]]) -> None:
    """WatchPayments: every role watches; only the agents, operator and auditor see a payment."""
    rpc = next(rpc for rpc in ROW_RPCS if rpc.name == "WatchPayments")
    assert rpc.short in ROWS
    seen: dict[str, set[str]] = {who: set() for who in ROLES}
    endings: dict[str, grpc.StatusCode] = {}
    streams: dict[str, Any] = {}
    for who in ROLES:
        stub = world.payments(who)
        stream = stub.WatchPayments(payment_pb2.WatchPaymentsRequest(), timeout=6)
        stream.initial_metadata()  # the stream has fixed its starting position
        streams[who] = stream

    def read(who: str) -> None:
        try:
            for response in streams[who]:
                seen[who].add(response.uetr)
        except grpc.RpcError as error:
            endings[who] = error.code()

    readers = [threading.Thread(target=read, args=(who,)) for who in ROLES]
    for reader in readers:
        reader.start()
    payment = world.submit(payment_instruction(US))
    for reader in readers:
        reader.join(timeout=30)
    failures = []
    for who in ROLES:
        if endings.get(who) is not grpc.StatusCode.DEADLINE_EXCEEDED:
            failures.append(f"{who}: the stream ended with {endings.get(who)}")
        sees = payment.uetr in seen[who]
        if sees != (who in WATCHES_PAYMENT):
            failures.append(f"{who}: saw the payment: {sees}")
        others = seen[who] - {payment.uetr}
        if who not in (OPERATOR, AUDITOR) and others:
            failures.append(f"{who}: saw other payments {sorted(others)}")
    _record(figures, world, "role cells", len(ROLES))
    assert failures == []


def test_listings_hide_other_participants(world: World) -> None:
    """Filters naming another participant's things answer as for things that do not exist."""
    stub_us = world.client.ledger(US)
    by_owner = stub_us.ListAccounts(ledger_pb2.ListAccountsRequest(owner_participant_id=OWNER))
    assert list(by_owner.accounts) == []
    reference = f"ref-{uuid.uuid4()}"
    payer, payee = world.pairs[OWNER]
    world.client.write(transaction(OWNER, transfer_postings(payer, payee, 5), reference=reference))
    for who, count in ((US, 0), (LENDER, 0), (OWNER, 1), (OPERATOR, 1), (AUDITOR, 1)):
        page = world.client.ledger(who).ListTransactions(
            ledger_pb2.ListTransactionsRequest(reference=reference)
        )
        assert len(page.transactions) == count, who
    participants = world.client.participants(US).ListParticipants(
        participant_pb2.ListParticipantsRequest(page=common_pb2.PageRequest(page_size=1000))
    )
    assert [item.participant_id for item in participants.participants] == [US]
