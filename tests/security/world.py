"""A populated hub for the security tests: every participant owns something to attack.

:func:`populated_hub` starts the real hub (``running_hub``: mutual TLS, the
demo participants registered) on one backend and gives each participant
resources of its own, so that every RPC has a real target:

- settlement accounts: bank-us USD, bank-pk PKR and USD, fx-provider USD and
  PKR, lender USD, funded where a flow needs money;
- per participant a pair of USD ledger accounts (the payer funded, not
  allowed below zero) and one posted transaction between them;
- an FX rate, and a settled USD -> PKR payment from bank-us to bank-pk through
  the FX provider (visible to those three, the operator and the auditor);
- a same-currency payment each way between the banks, whose pacs.008 serves
  as the template of an ImportPacs008 document.

The hub's clock is frozen after setup (:class:`FrozenClock`): no pending
transaction, quote or hold expires during a test, so the only writes are the
ones a test makes, and "nothing was written" can be checked exactly with
:meth:`World.digest`.

:meth:`World.valid_request` builds, for every RPC, a request that succeeds
when its caller may make it, aimed at another participant's resources (the
access matrix) or the caller's own (fuzzing and signature attacks).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from sqlalchemy import func, select

from ledger.schema import accounts, journal, postings, signing_keys, transactions
from ledger.store import system_clock_us
from settlement.pki import DevPki, aba_with_check_digit, certificate_pem, private_key_pem
from settlement.schema import fx_quotes, fx_rates, participants, payment_status, payments
from settlement.v1 import (
    audit_pb2,
    common_pb2,
    ledger_pb2,
    participant_pb2,
    payment_pb2,
)
from tests.grpc.hub_client import (
    CALL_TIMEOUT_SECONDS,
    CREDIT,
    DEBIT,
    ERROR_KEY,
    OPERATOR,
    PARTICIPANTS,
    HubClient,
    create_account,
    defund,
    fund,
    new_id,
    open_account,
    registration,
    running_hub,
    transaction,
    transfer_postings,
    type_name,
)

US = "bank-us"
PK = "bank-pk"
FX = "fx-provider"
LENDER = "lender"
AUDITOR = "auditor"
ROLES = (OPERATOR, AUDITOR, *PARTICIPANTS)
"""Every registered participant of the development PKI."""

RATE = "278.4500"
PAIR_FUNDS_MINOR = 1_000_000_000
PENDING_TIMEOUT_SECONDS = 86_400

DEBTOR_US = {
    "name": "Acme Mining Supplies Inc",
    "account_number": "000123456789",
    "aba_routing_number": aba_with_check_digit("02100002"),
    "country": "US",
}
CREDITOR_PK = {
    "name": "Karachi Textile Mills Limited",
    "iban": "PK36SCBL0000001123456702",
    "country": "PK",
}
SDN_NAME = "BANCO NACIONAL DE CUBA"
"""A primary name on OFAC's SDN list: a payment to it is held for review."""

INSTRUCTION_TYPES: dict[str, type[Message]] = {
    "/settlement.v1.ParticipantService/RegisterParticipant": (
        participant_pb2.RegisterParticipantInstruction
    ),
    "/settlement.v1.ParticipantService/RotateSigningKey": (
        participant_pb2.RotateSigningKeyInstruction
    ),
    "/settlement.v1.ParticipantService/OpenSettlementAccount": (
        participant_pb2.OpenSettlementAccountInstruction
    ),
    "/settlement.v1.ParticipantService/SetAccountLimit": (
        participant_pb2.SetAccountLimitInstruction
    ),
    "/settlement.v1.ParticipantService/FreezeAccount": participant_pb2.FreezeAccountInstruction,
    "/settlement.v1.ParticipantService/UnfreezeAccount": (
        participant_pb2.UnfreezeAccountInstruction
    ),
    "/settlement.v1.ParticipantService/Fund": participant_pb2.FundInstruction,
    "/settlement.v1.ParticipantService/Defund": participant_pb2.DefundInstruction,
    "/settlement.v1.LedgerService/CreateAccount": ledger_pb2.CreateAccountInstruction,
    "/settlement.v1.LedgerService/CreateTransaction": ledger_pb2.TransactionInstruction,
    "/settlement.v1.LedgerService/CreateTransactionBatch": (ledger_pb2.TransactionBatchInstruction),
    "/settlement.v1.LedgerService/PostPendingTransaction": ledger_pb2.PostPendingInstruction,
    "/settlement.v1.LedgerService/VoidPendingTransaction": ledger_pb2.VoidPendingInstruction,
    "/settlement.v1.LedgerService/ReverseTransaction": ledger_pb2.ReverseTransactionInstruction,
    "/settlement.v1.PaymentService/PublishRate": payment_pb2.PublishRateInstruction,
    "/settlement.v1.PaymentService/RequestQuote": payment_pb2.RequestQuoteInstruction,
    "/settlement.v1.PaymentService/SubmitPayment": payment_pb2.PaymentInstruction,
    "/settlement.v1.PaymentService/ImportPacs008": payment_pb2.ImportPacs008Instruction,
    "/settlement.v1.PaymentService/ReviewPayment": payment_pb2.ReviewPaymentInstruction,
}
"""The instruction message each mutating RPC takes (from the .proto comments)."""

FUZZED_SERVICES = (
    "settlement.v1.ParticipantService",
    "settlement.v1.LedgerService",
    "settlement.v1.AuditService",
    "settlement.v1.PaymentService",
)
"""The services whose every RPC has a valid request builder below."""


# -- RPCs from the descriptors ----------------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    """One RPC of a registered service, callable generically."""

    path: str
    descriptor: MethodDescriptor

    @property
    def service(self) -> str:
        return str(self.descriptor.containing_service.full_name)

    @property
    def name(self) -> str:
        return str(self.descriptor.name)

    @property
    def short(self) -> str:
        return f"{self.descriptor.containing_service.name}.{self.name}"

    @property
    def request_type(self) -> type[Message]:
        return message_factory.GetMessageClass(self.descriptor.input_type)

    @property
    def response_type(self) -> type[Message]:
        return message_factory.GetMessageClass(self.descriptor.output_type)

    @property
    def streaming(self) -> bool:
        return bool(self.descriptor.server_streaming)

    @property
    def mutating(self) -> bool:
        """Every mutating RPC takes one ``SignedInstruction`` (common.proto)."""
        return any(
            field.message_type is not None
            and field.message_type.full_name == "settlement.v1.SignedInstruction"
            for field in self.descriptor.input_type.fields
        )


class _RecordingServer:
    """Stands in for a grpc server: records the services registered on it."""

    def __init__(self) -> None:
        self.methods: dict[str, list[str]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        del handlers

    def add_registered_method_handlers(self, name: str, handlers: dict[str, Any]) -> None:
        self.methods[name] = sorted(handlers)


def registered_rpcs() -> list[Rpc]:
    """Every RPC that ``settlement.services.add_services`` registers, from the descriptors.

    The servicers are built on a stand-in hub (they only keep a reference to
    it), so a service or method added to the server shows up here, and in
    every test built on this list, without touching the tests.
    """
    from unittest import mock

    from settlement.services import add_services

    recorder = _RecordingServer()
    names = add_services(recorder, mock.MagicMock())  # type: ignore[arg-type]
    pool = descriptor_pool.Default()
    found = []
    for name in names:
        service = pool.FindServiceByName(name)
        for method in service.methods:
            found.append(Rpc(f"/{name}/{method.name}", method))
    return found


def call(
    channel: grpc.Channel,
    rpc: Rpc,
    request: Message | bytes,
    *,
    timeout: float = CALL_TIMEOUT_SECONDS,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> list[Message]:
    """Call ``rpc`` with a message (or raw request bytes); the responses, as a list."""
    serialize: Callable[[Any], bytes] = (
        (lambda raw: raw) if isinstance(request, bytes) else rpc.request_type.SerializeToString
    )
    if rpc.streaming:
        stream = channel.unary_stream(
            rpc.path,
            request_serializer=serialize,
            response_deserializer=rpc.response_type.FromString,
        )
        return list(stream(request, timeout=timeout, metadata=metadata))
    unary = channel.unary_unary(
        rpc.path, request_serializer=serialize, response_deserializer=rpc.response_type.FromString
    )
    return [unary(request, timeout=timeout, metadata=metadata)]


@dataclass(frozen=True)
class Outcome:
    """How a call was answered: the status, the ``settlement-error-bin`` detail, the message."""

    status: grpc.StatusCode
    code: str = ""
    details: str = ""
    has_detail: bool = False
    responses: tuple[Message, ...] = ()

    def __str__(self) -> str:
        return f"{self.status.name} {self.code}".strip()


def outcome(invoke: Callable[[], list[Message]]) -> Outcome:
    try:
        responses = invoke()
    except grpc.RpcError as error:
        failure: Any = error
        metadata = dict(failure.trailing_metadata() or ())
        raw = metadata.get(ERROR_KEY)
        detail = common_pb2.Error.FromString(raw) if raw is not None else None
        return Outcome(
            failure.code(),
            detail.code if detail is not None else "",
            failure.details() or "",
            detail is not None,
        )
    return Outcome(grpc.StatusCode.OK, responses=tuple(responses))


# -- the world --------------------------------------------------------------------------------


class FrozenClock:
    """The hub's clock, stopped: no pending transaction, quote or hold expires."""

    def __init__(self) -> None:
        self.now_us = system_clock_us()

    def __call__(self) -> int:
        return self.now_us


@dataclass
class Identity:
    """A participant a test registered, with its own client certificate and signing key."""

    participant_id: str
    key: Ed25519PrivateKey
    channel: grpc.Channel


@dataclass
class World:
    """The hub and what each participant owns; see the module docstring."""

    client: HubClient
    backend: str = ""
    settlement: dict[tuple[str, str], str] = field(default_factory=dict)
    pairs: dict[str, tuple[str, str]] = field(default_factory=dict)
    posted: dict[str, str] = field(default_factory=dict)
    payment_uetr: str = ""
    same_currency_uetr: dict[str, str] = field(default_factory=dict)
    pacs008_templates: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    identities: list[Identity] = field(default_factory=list)

    @property
    def pki(self) -> DevPki:
        return self.client.pki

    def channel(self, who: str) -> grpc.Channel:
        return self.client.channel(who)

    def sign(self, message: Message, signer: str | None = None) -> common_pb2.SignedInstruction:
        return self.client.sign(message, signer)

    def journal_size(self) -> int:
        return self.client.journal_size()

    # -- state ----------------------------------------------------------------------------------

    def digest(self) -> str:
        """A hash of everything a request may change, but the checkpoints.

        Checkpoints are left out: the hub signs them on its own timer and on a
        read (``GetLatestCheckpoint`` with ``min_tree_size``); they change no
        balance and no record.
        """
        hasher = hashlib.sha256()
        ledger = self.client.server.hub.ledger
        with ledger.reading() as connection:
            for table in (journal, postings, payment_status, fx_rates, signing_keys):
                hasher.update(
                    repr(connection.scalar(select(func.count()).select_from(table))).encode()
                )
            last = select(journal.c.leaf_hash).order_by(journal.c.journal_index.desc()).limit(1)
            hasher.update(repr(connection.scalar(last)).encode())
            for query in (
                select(accounts).order_by(accounts.c.id),
                select(transactions.c.id, transactions.c.state).order_by(transactions.c.id),
                select(participants).order_by(participants.c.participant_id),
                select(fx_quotes).order_by(fx_quotes.c.quote_id),
                select(payments.c.uetr, payments.c.status).order_by(payments.c.uetr),
            ):
                for row in connection.execute(query):
                    hasher.update(repr(tuple(row)).encode())
        return hasher.hexdigest()

    # -- setup helpers -----------------------------------------------------------------------

    def own_pair(self, owner: str) -> tuple[str, str]:
        """A fresh pair of ``owner``'s USD accounts, the first funded."""
        payer = self.client.account(owner, "USD", debits_must_not_exceed_credits=True)
        payee = self.client.account(owner, "USD")
        self.client.give(payer, PAIR_FUNDS_MINOR)
        return payer, payee

    def posted_transaction(self, owner: str, amount_minor: int = 100) -> str:
        payer, payee = self.pairs[owner]
        instruction = transaction(owner, transfer_postings(payer, payee, amount_minor))
        self.client.write(instruction)
        return str(instruction.instruction_id)

    def pending_transaction(self, owner: str, amount_minor: int = 100) -> str:
        payer, payee = self.pairs[owner]
        instruction = transaction(
            owner,
            transfer_postings(payer, payee, amount_minor),
            pending=True,
            timeout_seconds=PENDING_TIMEOUT_SECONDS,
        )
        self.client.write(instruction)
        return str(instruction.instruction_id)

    def scratch_account(self, funded_minor: int = 0) -> str:
        """A settlement account of a newly registered bank (operator writes aim here)."""
        account_id = self.client.scratch_account()
        if funded_minor:
            self.client.fund(account_id, funded_minor)
        return account_id

    def payments(self, who: str) -> Any:
        from settlement.v1 import payment_pb2_grpc

        return payment_pb2_grpc.PaymentServiceStub(self.channel(who))

    def publish_rate(self) -> None:
        self.payments(FX).PublishRate(
            payment_pb2.PublishRateRequest(instruction=self.sign(rate_instruction())),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def quote(self, who: str = US, amount_minor: int = 500_000) -> str:
        instruction = quote_instruction(who, amount_minor=amount_minor)
        self.payments(who).RequestQuote(
            payment_pb2.RequestQuoteRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return str(instruction.instruction_id)

    def submit(self, instruction: payment_pb2.PaymentInstruction) -> payment_pb2.Payment:
        response: payment_pb2.SubmitPaymentResponse = self.payments(
            instruction.participant_id
        ).SubmitPayment(
            payment_pb2.SubmitPaymentRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return response.payment

    def held_payment(self) -> str:
        """A same-currency payment from bank-us held for review (a sanctions hit)."""
        instruction = payment_instruction(US, creditor={**CREDITOR_PK, "name": SDN_NAME})
        payment = self.submit(instruction)
        if payment.status != payment_pb2.PAYMENT_STATUS_PDNG:
            raise AssertionError(f"expected a held payment, got {payment.status}")
        return str(instruction.uetr)

    def pacs008(self, who: str) -> tuple[str, bytes]:
        """A fresh pacs.008 document from ``who`` (a bank), and its creditor agent."""
        creditor_agent, template = self.pacs008_templates[who]
        old_uetr = self.same_currency_uetr[who]
        return creditor_agent, template.replace(old_uetr.encode(), str(uuid.uuid4()).encode())

    def new_identity(self) -> Identity:
        """Register a new bank with a client certificate of the development CA."""
        scratch = self.client.register()
        certificate, private_key = self.pki.certificate_authority().issue_client_certificate(
            scratch.participant_id
        )
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca_certificate_path.read_bytes(),
            private_key=private_key_pem(private_key),
            certificate_chain=certificate_pem(certificate),
        )
        channel = grpc.secure_channel(self.client.server.address, credentials)
        identity = Identity(scratch.participant_id, scratch.key, channel)
        self.identities.append(identity)
        return identity

    # -- valid requests --------------------------------------------------------------------------

    def valid_instruction(self, rpc_path: str, who: str, owner: str) -> Message:
        """An instruction by ``who`` that commits if ``who`` may make it, on ``owner``'s things.

        For the ParticipantService (operator only) ``owner`` is ignored: every
        write aims at a newly registered participant, so rows do not disturb
        each other. Payment writes are each bank's own (``owner`` ignored).
        """
        method = rpc_path.rsplit("/", 1)[1]
        if method == "RegisterParticipant":
            return registration(participant_id=who)[0]
        if method == "RotateSigningKey":
            return rotate_instruction(who, self.client.register().participant_id)
        if method == "OpenSettlementAccount":
            opening = open_account(self.client.register().participant_id)
            opening.participant_id = who
            return opening
        if method == "SetAccountLimit":
            return set_limit_instruction(who, self.scratch_account(), 1_000)
        if method in ("FreezeAccount", "UnfreezeAccount"):
            return freeze_instruction(who, self.scratch_account(), freeze=method == "FreezeAccount")
        if method == "Fund":
            return fund(self.scratch_account(), 100, participant_id=who, instruction_id=new_id(who))
        if method == "Defund":
            return defund(
                self.scratch_account(funded_minor=100),
                100,
                participant_id=who,
                instruction_id=new_id(who),
            )
        if method == "CreateAccount":
            return create_account(owner, participant_id=who)
        if method == "CreateTransaction":
            payer, payee = self.pairs[owner]
            return transaction(who, transfer_postings(payer, payee, 1))
        if method == "CreateTransactionBatch":
            raise ValueError("a batch is a request with items: use valid_request")
        if method in ("PostPendingTransaction", "VoidPendingTransaction"):
            pending_id = self.pending_transaction(owner)
            if method == "PostPendingTransaction":
                return post_pending_instruction(who, pending_id)
            return void_pending_instruction(who, pending_id)
        if method == "ReverseTransaction":
            return reverse_instruction(who, self.posted_transaction(owner))
        if method == "PublishRate":
            return rate_instruction(participant_id=who, instruction_id=new_id(who))
        if method == "RequestQuote":
            return quote_instruction(who)
        if method == "SubmitPayment":
            return payment_instruction(who)
        if method == "ImportPacs008":
            bank = who if who in (US, PK) else US
            creditor_agent, document = self.pacs008(bank)
            return payment_pb2.ImportPacs008Instruction(
                instruction_id=new_id(who),
                participant_id=who,
                instruction_type=type_name(payment_pb2.ImportPacs008Instruction),
                pacs008_xml=document,
                creditor_agent_id=creditor_agent,
            )
        if method == "ReviewPayment":
            return review_instruction(who, self.held_payment())
        raise KeyError(f"no valid instruction for {rpc_path}")

    def batch_request(
        self, who: str, items: list[Message], *, linked: bool = True, **fields: Any
    ) -> ledger_pb2.CreateTransactionBatchRequest:
        signed_items = [self.sign(item, who) for item in items]
        values: dict[str, Any] = {
            "instruction_id": new_id(who),
            "participant_id": who,
            "instruction_type": type_name(ledger_pb2.TransactionBatchInstruction),
            "linked": linked,
            "item_sha256": [hashlib.sha256(item.instruction).digest() for item in signed_items],
        }
        values.update(fields)
        batch = ledger_pb2.TransactionBatchInstruction(**values)
        return ledger_pb2.CreateTransactionBatchRequest(
            instruction=self.sign(batch, who), items=signed_items
        )

    def valid_request(self, rpc: Rpc, who: str, owner: str) -> Message:
        """A request of ``rpc`` that succeeds when ``who`` may make it, on ``owner``'s things."""
        if rpc.name == "CreateTransactionBatch":
            payer, payee = self.pairs[owner]
            items: list[Message] = [
                transaction(who, transfer_postings(payer, payee, amount)) for amount in (1, 2)
            ]
            return self.batch_request(who, items)
        if rpc.mutating:
            instruction = self.valid_instruction(rpc.path, who, owner)
            return rpc.request_type(instruction=self.sign(instruction, who))
        return self.read_request(rpc, owner)

    def read_request(self, rpc: Rpc, owner: str) -> Message:
        """A read of ``owner``'s things (or of the whole hub, for listings and the log)."""
        payer = self.pairs[owner][0]
        posted = self.posted[owner]
        index = self.client.server.hub.ledger.transaction(posted).journal_index
        today = datetime.fromtimestamp(self.client.server.hub.ledger.clock() / 1e6, UTC)
        requests: dict[str, Message] = {
            "GetParticipant": participant_pb2.GetParticipantRequest(participant_id=owner),
            "ListParticipants": participant_pb2.ListParticipantsRequest(),
            "GetAccount": ledger_pb2.GetAccountRequest(account_id=payer),
            "ListAccounts": ledger_pb2.ListAccountsRequest(),
            "GetBalance": ledger_pb2.GetBalanceRequest(account_id=payer),
            "GetTransaction": ledger_pb2.GetTransactionRequest(transaction_id=posted),
            "ListTransactions": ledger_pb2.ListTransactionsRequest(account_id=payer),
            "WatchJournal": ledger_pb2.WatchJournalRequest(from_index=0, stop_at_end=True),
            "GetLatestCheckpoint": audit_pb2.GetLatestCheckpointRequest(),
            "GetCheckpoint": audit_pb2.GetCheckpointRequest(tree_size=self.checkpoint_size()),
            "GetInclusionProof": audit_pb2.GetInclusionProofRequest(
                leaf_index=index, tree_size=self.checkpoint_size(min_tree_size=index + 1)
            ),
            "GetConsistencyProof": audit_pb2.GetConsistencyProofRequest(old_size=1),
            "GetLeaf": audit_pb2.GetLeafRequest(leaf_index=index),
            "ExportBundle": audit_pb2.ExportBundleRequest(),
            "GetPayment": payment_pb2.GetPaymentRequest(uetr=self.payment_uetr),
            "WatchPayments": payment_pb2.WatchPaymentsRequest(),
            "GetPaymentMessage": payment_pb2.GetPaymentMessageRequest(
                uetr=self.payment_uetr, message_type=payment_pb2.PAYMENT_MESSAGE_TYPE_PACS_008
            ),
            "GetAccountStatement": payment_pb2.GetAccountStatementRequest(
                account_id=payer,
                from_date=today.date().isoformat(),
                to_date=today.date().isoformat(),
                format=payment_pb2.STATEMENT_FORMAT_CAMT_053,
            ),
        }
        return requests[rpc.name]

    def checkpoint_size(self, min_tree_size: int = 0) -> int:
        """The tree size of the latest signed checkpoint (signed now if it is smaller
        than ``min_tree_size``)."""
        from settlement.v1 import audit_pb2_grpc

        latest = audit_pb2_grpc.AuditServiceStub(self.channel(OPERATOR)).GetLatestCheckpoint(
            audit_pb2.GetLatestCheckpointRequest(min_tree_size=min_tree_size),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return int(latest.checkpoint.tree_size)

    def close(self) -> None:
        for identity in self.identities:
            identity.channel.close()


def populate(client: HubClient) -> World:
    """Give every participant resources (module docstring) and freeze the clock."""
    world = World(client)
    for owner, currency, amount in (
        (US, "USD", 10_000_000_000),
        (PK, "PKR", 0),
        (PK, "USD", 10_000_000_000),
        (FX, "USD", 10_000_000_000),
        (FX, "PKR", 10_000_000_000_000),
        (LENDER, "USD", 10_000_000_000),
    ):
        account_id = client.open_account(owner, currency)
        world.settlement[(owner, currency)] = account_id
        if amount:
            client.fund(account_id, amount, currency)
    for owner in PARTICIPANTS:
        world.pairs[owner] = world.own_pair(owner)
        world.posted[owner] = world.posted_transaction(owner)
    world.publish_rate()
    quote_id = world.quote(US)
    settled = world.submit(payment_instruction(US, quote_id=quote_id))
    if settled.status != payment_pb2.PAYMENT_STATUS_ACSC:
        raise AssertionError(f"the setup payment did not settle: {settled}")
    world.payment_uetr = str(settled.uetr)
    for debtor_agent, creditor_agent in ((US, PK), (PK, US)):
        payment = world.submit(payment_instruction(debtor_agent))
        world.same_currency_uetr[debtor_agent] = str(payment.uetr)
        document = world.payments(debtor_agent).GetPaymentMessage(
            payment_pb2.GetPaymentMessageRequest(
                uetr=payment.uetr, message_type=payment_pb2.PAYMENT_MESSAGE_TYPE_PACS_008
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        world.pacs008_templates[debtor_agent] = (creditor_agent, bytes(document.xml))
    client.server.hub.ledger.clock = FrozenClock()
    return world


@contextmanager
def populated_hub(pki: DevPki, database: str, **overrides: Any) -> Iterator[World]:
    """The real hub on ``database``, populated (module docstring); stopped on exit."""
    with running_hub(pki, database, log_level="error", **overrides) as client:
        world = populate(client)
        try:
            yield world
        finally:
            world.close()


# -- instructions -----------------------------------------------------------------------------


def rate_instruction(**fields: Any) -> payment_pb2.PublishRateInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(FX),
        "participant_id": FX,
        "instruction_type": type_name(payment_pb2.PublishRateInstruction),
        "source_currency": "USD",
        "target_currency": "PKR",
        "rate": RATE,
        "valid_seconds": 86_400,
        "fee_minor": 2_500,
    }
    values.update(fields)
    return payment_pb2.PublishRateInstruction(**values)


def quote_instruction(who: str, **fields: Any) -> payment_pb2.RequestQuoteInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(who),
        "participant_id": who,
        "instruction_type": type_name(payment_pb2.RequestQuoteInstruction),
        "fx_provider_id": FX,
        "source_currency": "USD",
        "target_currency": "PKR",
        "fixed_side": payment_pb2.FIXED_SIDE_SEND,
        "amount_minor": 500_000,
    }
    values.update(fields)
    return payment_pb2.RequestQuoteInstruction(**values)


def payment_instruction(who: str, **fields: Any) -> payment_pb2.PaymentInstruction:
    """A same-currency USD payment to the other bank (a cross-currency one with ``quote_id``)."""
    creditor_agent = PK if who != PK else US
    values: dict[str, Any] = {
        "instruction_id": new_id(who),
        "participant_id": who,
        "instruction_type": type_name(payment_pb2.PaymentInstruction),
        "uetr": str(uuid.uuid4()),
        "end_to_end_id": "INV-2026-0042",
        "debtor": payment_pb2.Party(**DEBTOR_US) if who != PK else payment_pb2.Party(**CREDITOR_PK),
        "creditor": (
            payment_pb2.Party(**CREDITOR_PK)
            if creditor_agent == PK
            else payment_pb2.Party(**DEBTOR_US)
        ),
        "creditor_agent_id": creditor_agent,
        "remittance_information": "Invoice 2026-0042",
        "charge_bearer": payment_pb2.CHARGE_BEARER_DEBT,
    }
    if "quote_id" not in fields:
        values["amount"] = common_pb2.Money(amount_minor=10_000, currency="USD")
    for key, value in fields.items():
        values[key] = payment_pb2.Party(**value) if key in ("debtor", "creditor") else value
    return payment_pb2.PaymentInstruction(**values)


def review_instruction(who: str, uetr: str, **fields: Any) -> payment_pb2.ReviewPaymentInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(who),
        "participant_id": who,
        "instruction_type": type_name(payment_pb2.ReviewPaymentInstruction),
        "uetr": uetr,
        "decision": payment_pb2.REVIEW_DECISION_REJECT,
        "reason": "screening hit confirmed",
    }
    values.update(fields)
    return payment_pb2.ReviewPaymentInstruction(**values)


def rotate_instruction(who: str, target: str) -> participant_pb2.RotateSigningKeyInstruction:
    from ledger.keys import public_key_bytes

    return participant_pb2.RotateSigningKeyInstruction(
        instruction_id=new_id(who),
        participant_id=who,
        instruction_type=type_name(participant_pb2.RotateSigningKeyInstruction),
        target_participant_id=target,
        signing_public_key=public_key_bytes(Ed25519PrivateKey.generate()),
    )


def set_limit_instruction(
    who: str, account_id: str, limit_minor: int
) -> participant_pb2.SetAccountLimitInstruction:
    return participant_pb2.SetAccountLimitInstruction(
        instruction_id=new_id(who),
        participant_id=who,
        instruction_type=type_name(participant_pb2.SetAccountLimitInstruction),
        account_id=account_id,
        debit_limit_minor=limit_minor,
    )


def freeze_instruction(who: str, account_id: str, *, freeze: bool) -> Message:
    message_type: Any = (
        participant_pb2.FreezeAccountInstruction
        if freeze
        else participant_pb2.UnfreezeAccountInstruction
    )
    message: Message = message_type(
        instruction_id=new_id(who),
        participant_id=who,
        instruction_type=type_name(message_type),
        account_id=account_id,
        reason="security test",
    )
    return message


def post_pending_instruction(who: str, pending_id: str, **fields: Any) -> Message:
    values: dict[str, Any] = {
        "instruction_id": new_id(who),
        "participant_id": who,
        "instruction_type": type_name(ledger_pb2.PostPendingInstruction),
        "pending_transaction_id": pending_id,
    }
    values.update(fields)
    return ledger_pb2.PostPendingInstruction(**values)


def void_pending_instruction(who: str, pending_id: str, **fields: Any) -> Message:
    values: dict[str, Any] = {
        "instruction_id": new_id(who),
        "participant_id": who,
        "instruction_type": type_name(ledger_pb2.VoidPendingInstruction),
        "pending_transaction_id": pending_id,
    }
    values.update(fields)
    return ledger_pb2.VoidPendingInstruction(**values)


def reverse_instruction(who: str, original_id: str, **fields: Any) -> Message:
    values: dict[str, Any] = {
        "instruction_id": new_id(who),
        "participant_id": who,
        "instruction_type": type_name(ledger_pb2.ReverseTransactionInstruction),
        "original_transaction_id": original_id,
    }
    values.update(fields)
    return ledger_pb2.ReverseTransactionInstruction(**values)


__all__ = [
    "CREDIT",
    "DEBIT",
    "INSTRUCTION_TYPES",
    "ROLES",
    "Outcome",
    "Rpc",
    "World",
    "call",
    "outcome",
    "populated_hub",
    "registered_rpcs",
]
