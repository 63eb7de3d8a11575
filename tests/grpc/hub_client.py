"""A test client of one running hub: stubs per participant, signing, operator shortcuts.

Shared by the gRPC test modules that run one hub per backend for the whole
module. A module builds its fixture from :func:`running_hub`::

    @pytest.fixture(scope="module", params=["sqlite", "postgres"])
    def hub(request, dev_pki, database_factory):
        with database_factory(request.param) as location, running_hub(dev_pki, location) as client:
            yield client

:func:`running_hub` starts the real hub (``BackgroundServer``, mutual TLS with
the session's ``dev_pki``) and registers the demo participants of the
development PKI through ``ParticipantService``. :class:`HubClient` opens one
blocking channel per participant (each presenting that participant's client
certificate) and signs instructions with the participants' keys
(common.proto, "Signed instructions"). The instruction builders return valid
instructions whose fields a test overrides by keyword.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message

from ledger.keys import load_private_key, load_public_key, public_key_bytes
from ledger.records import AccountStatus, SetAccountStatus
from settlement.config import ServerSettings
from settlement.instructions import sign
from settlement.pki import DevPki, aba_with_check_digit, lei_with_check_digits
from settlement.server import BackgroundServer
from settlement.v1 import (
    audit_pb2_grpc,
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    participant_pb2,
    participant_pb2_grpc,
)

OPERATOR = "operator"
PARTICIPANTS = ("bank-us", "bank-pk", "fx-provider", "lender")
EVERYONE = (OPERATOR, "auditor", *PARTICIPANTS)
ERROR_KEY = "settlement-error-bin"
CALL_TIMEOUT_SECONDS = 30
ORIGIN = "test.settlement.example/ledger"
"""The log's origin (and the name of its key) in every hub these modules start."""

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXISTS = grpc.StatusCode.ALREADY_EXISTS
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

DEBIT = ledger_pb2.SIDE_DEBIT
CREDIT = ledger_pb2.SIDE_CREDIT


def type_name(message_type: type[Message]) -> str:
    """The full name of an instruction message, its ``instruction_type``."""
    return str(message_type.DESCRIPTOR.full_name)


def new_id(participant_id: str = OPERATOR) -> str:
    return f"{participant_id}:{uuid.uuid4()}"


def refusal(invoke: Callable[[], Any]) -> tuple[grpc.StatusCode, common_pb2.Error]:
    """The status and the ``settlement-error-bin`` detail of a refused call."""
    with pytest.raises(grpc.RpcError) as raised:
        invoke()
    error: Any = raised.value
    metadata = dict(error.trailing_metadata() or ())
    assert ERROR_KEY in metadata, f"no {ERROR_KEY} in {metadata} ({error.details()})"
    detail = common_pb2.Error.FromString(metadata[ERROR_KEY])
    assert error.details().startswith(f"{detail.code}: ")
    return error.code(), detail


# -- instructions (participant.proto) ----------------------------------------------------


def new_lei() -> str:
    return lei_with_check_digits("5493T" + uuid.uuid4().hex[:13].upper())


def registration(**fields: Any) -> tuple[participant_pb2.RegisterParticipantInstruction, Any]:
    """A valid registration of a new US bank; ``fields`` override any field."""
    target = fields.pop("target_participant_id", f"p-{uuid.uuid4().hex[:16]}")
    key = Ed25519PrivateKey.generate()
    values: dict[str, Any] = {
        "instruction_id": new_id(),
        "participant_id": OPERATOR,
        "instruction_type": type_name(participant_pb2.RegisterParticipantInstruction),
        "target_participant_id": target,
        "legal_name": f"Test Bank {target}",
        "role": participant_pb2.ROLE_BANK,
        "country": "US",
        "bic": "CHASUS33",
        "lei": new_lei(),
        "aba_routing_number": aba_with_check_digit("02100002"),
        "certificate_common_name": target,
        "signing_public_key": public_key_bytes(key),
    }
    values.update(fields)
    return participant_pb2.RegisterParticipantInstruction(**values), key


def open_account(
    participant_id: str, currency: str = "USD", limit: int = 0, **fields: Any
) -> participant_pb2.OpenSettlementAccountInstruction:
    values: dict[str, Any] = {
        "instruction_id": f"settlement:{participant_id}:{currency}",
        "participant_id": OPERATOR,
        "instruction_type": type_name(participant_pb2.OpenSettlementAccountInstruction),
        "target_participant_id": participant_id,
        "currency": currency,
        "debit_limit_minor": limit,
    }
    values.update(fields)
    return participant_pb2.OpenSettlementAccountInstruction(**values)


def fund(
    account_id: str, amount_minor: int, currency: str = "USD", **fields: Any
) -> participant_pb2.FundInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(),
        "participant_id": OPERATOR,
        "instruction_type": type_name(participant_pb2.FundInstruction),
        "account_id": account_id,
        "amount_minor": amount_minor,
        "currency": currency,
        "reference": "incoming wire",
    }
    values.update(fields)
    return participant_pb2.FundInstruction(**values)


def defund(
    account_id: str, amount_minor: int, currency: str = "USD", **fields: Any
) -> participant_pb2.DefundInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(),
        "participant_id": OPERATOR,
        "instruction_type": type_name(participant_pb2.DefundInstruction),
        "account_id": account_id,
        "amount_minor": amount_minor,
        "currency": currency,
        "reference": "outgoing wire",
    }
    values.update(fields)
    return participant_pb2.DefundInstruction(**values)


# -- instructions (ledger.proto) ---------------------------------------------------------


def posting(
    account_id: str, side: Any, amount_minor: int, currency: str = "USD"
) -> ledger_pb2.Posting:
    return ledger_pb2.Posting(
        account_id=account_id, side=side, amount_minor=amount_minor, currency=currency
    )


def transfer_postings(
    debit: str, credit: str, amount_minor: int, currency: str = "USD"
) -> list[Any]:
    return [
        posting(debit, DEBIT, amount_minor, currency),
        posting(credit, CREDIT, amount_minor, currency),
    ]


def transaction(
    signer: str, postings: Sequence[ledger_pb2.Posting], **fields: Any
) -> ledger_pb2.TransactionInstruction:
    values: dict[str, Any] = {
        "instruction_id": new_id(signer),
        "participant_id": signer,
        "instruction_type": type_name(ledger_pb2.TransactionInstruction),
        "postings": list(postings),
        "code": "TRANSFER",
    }
    values.update(fields)
    return ledger_pb2.TransactionInstruction(**values)


def create_account(
    owner: str, currency: str = "USD", **fields: Any
) -> ledger_pb2.CreateAccountInstruction:
    values: dict[str, Any] = {
        "instruction_id": f"test:{owner}:{currency}:{uuid.uuid4().hex[:12]}",
        "participant_id": OPERATOR,
        "instruction_type": type_name(ledger_pb2.CreateAccountInstruction),
        "owner_participant_id": owner,
        "currency": currency,
        "normal_side": CREDIT,
    }
    values.update(fields)
    return ledger_pb2.CreateAccountInstruction(**values)


LEDGER_REQUEST_TYPES: dict[str, type[Message]] = {
    "CreateAccount": ledger_pb2.CreateAccountRequest,
    "CreateTransaction": ledger_pb2.CreateTransactionRequest,
    "PostPendingTransaction": ledger_pb2.PostPendingTransactionRequest,
    "VoidPendingTransaction": ledger_pb2.VoidPendingTransactionRequest,
    "ReverseTransaction": ledger_pb2.ReverseTransactionRequest,
}
LEDGER_METHOD_OF: dict[str, str] = {
    type_name(ledger_pb2.CreateAccountInstruction): "CreateAccount",
    type_name(ledger_pb2.TransactionInstruction): "CreateTransaction",
    type_name(ledger_pb2.PostPendingInstruction): "PostPendingTransaction",
    type_name(ledger_pb2.VoidPendingInstruction): "VoidPendingTransaction",
    type_name(ledger_pb2.ReverseTransactionInstruction): "ReverseTransaction",
}
"""The LedgerService write that takes each instruction type, and its request."""


# -- the client --------------------------------------------------------------------------


@dataclass
class Scratch:
    """A participant registered by a test (no certificate: it never calls)."""

    participant_id: str
    key: Ed25519PrivateKey


@dataclass
class HubClient:
    """Stubs per participant, their signing keys, and operator shortcuts."""

    server: BackgroundServer
    pki: DevPki
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    channels: dict[str, grpc.Channel] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)

    def channel(self, who: str) -> grpc.Channel:
        if who not in self.channels:
            self.channels[who] = grpc.secure_channel(
                self.server.address, self.pki.channel_credentials(who)
            )
        return self.channels[who]

    def participants(self, who: str = OPERATOR) -> participant_pb2_grpc.ParticipantServiceStub:
        return participant_pb2_grpc.ParticipantServiceStub(self.channel(who))

    def ledger(self, who: str = OPERATOR) -> ledger_pb2_grpc.LedgerServiceStub:
        return ledger_pb2_grpc.LedgerServiceStub(self.channel(who))

    def audit(self, who: str = OPERATOR) -> audit_pb2_grpc.AuditServiceStub:
        return audit_pb2_grpc.AuditServiceStub(self.channel(who))

    def sign(self, message: Message, signer: str | None = None) -> common_pb2.SignedInstruction:
        """Sign ``message`` with ``signer``'s key; by default its own ``participant_id``'s."""
        return sign(message, self.keys[signer or getattr(message, "participant_id")])  # noqa: B009

    def journal_size(self) -> int:
        return int(self.server.hub.ledger.journal_size())

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()

    # -- LedgerService shortcuts -----------------------------------------------------------

    def write(self, instruction: Message, who: str | None = None) -> Any:
        """Send a signed instruction to the RPC of its type; ``who`` defaults to the signer."""
        caller = who or getattr(instruction, "participant_id")  # noqa: B009
        method = LEDGER_METHOD_OF[type_name(type(instruction))]
        request = LEDGER_REQUEST_TYPES[method](instruction=self.sign(instruction))
        return getattr(self.ledger(caller), method)(request, timeout=CALL_TIMEOUT_SECONDS)

    def account(self, owner: str, currency: str = "USD", **fields: Any) -> str:
        instruction = create_account(owner, currency, **fields)
        self.write(instruction)
        return str(instruction.instruction_id)

    def give(self, account_id: str, amount_minor: int, currency: str = "USD") -> None:
        """Credit ``account_id`` from an operator account without limits."""
        source = f"test-source:{currency}"
        if source not in self.sources:
            self.write(create_account(OPERATOR, currency, instruction_id=source, normal_side=DEBIT))
            self.sources.add(source)
        self.write(
            transaction(OPERATOR, transfer_postings(source, account_id, amount_minor, currency))
        )

    def funded_pair(
        self, owner: str, amount_minor: int = 100_000, currency: str = "USD", **fields: Any
    ) -> tuple[str, str]:
        """Two accounts of ``owner``: the first holds ``amount_minor`` and may not go below 0."""
        payer = self.account(owner, currency, debits_must_not_exceed_credits=True, **fields)
        payee = self.account(owner, currency)
        if amount_minor:
            self.give(payer, amount_minor, currency)
        return payer, payee

    def balance(self, account_id: str, as_of_index: int | None = None) -> tuple[int, int, int, int]:
        request = ledger_pb2.GetBalanceRequest(account_id=account_id)
        if as_of_index is not None:
            request.as_of_index = as_of_index
        found = self.ledger().GetBalance(request, timeout=CALL_TIMEOUT_SECONDS).balance
        return (
            found.debits_posted_minor,
            found.credits_posted_minor,
            found.debits_pending_minor,
            found.credits_pending_minor,
        )

    def set_status(self, account_id: str, status: AccountStatus) -> None:
        """Through the sequencer, as the hub itself would (there is no close RPC)."""
        command = SetAccountStatus(id=new_id(), account_id=account_id, status=status)
        (result,) = self.server.run_coroutine(self.server.hub.sequencer.submit([command]))
        assert result.error is None

    def freeze(self, account_id: str) -> None:
        instruction = participant_pb2.FreezeAccountInstruction(
            instruction_id=new_id(),
            participant_id=OPERATOR,
            instruction_type=type_name(participant_pb2.FreezeAccountInstruction),
            account_id=account_id,
            reason="test",
        )
        participant_pb2_grpc.ParticipantServiceStub(self.channel(OPERATOR)).FreezeAccount(
            participant_pb2.FreezeAccountRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    # -- ParticipantService shortcuts (the operator's) -------------------------------------

    def register(self, **fields: Any) -> Scratch:
        instruction, key = registration(**fields)
        self.participants().RegisterParticipant(
            participant_pb2.RegisterParticipantRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return Scratch(instruction.target_participant_id, key)

    def open_account(self, participant_id: str, currency: str = "USD", limit: int = 0) -> str:
        instruction = open_account(participant_id, currency, limit)
        self.participants().OpenSettlementAccount(
            participant_pb2.OpenSettlementAccountRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return instruction.instruction_id

    def scratch_account(self, currency: str = "USD", limit: int = 0) -> str:
        return self.open_account(self.register().participant_id, currency, limit)

    def fund(self, account_id: str, amount_minor: int, currency: str = "USD") -> Any:
        return self.participants().Fund(
            participant_pb2.FundRequest(
                instruction=self.sign(fund(account_id, amount_minor, currency))
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def defund(self, account_id: str, amount_minor: int, currency: str = "USD") -> Any:
        return self.participants().Defund(
            participant_pb2.DefundRequest(
                instruction=self.sign(defund(account_id, amount_minor, currency))
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def transfer(self, debit: str, credit: str, amount_minor: int, currency: str = "USD") -> Any:
        postings = transfer_postings(debit, credit, amount_minor, currency)
        instruction = transaction(OPERATOR, postings)
        return self.ledger().CreateTransaction(
            ledger_pb2.CreateTransactionRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )


# -- the hub under test --------------------------------------------------------------------


def server_settings(pki: DevPki, database: str, **overrides: Any) -> ServerSettings:
    """Settings of a hub on 127.0.0.1, port 0, mutual TLS with ``pki``; ``overrides`` win."""
    values: dict[str, Any] = {
        "listen_address": "127.0.0.1:0",
        "tls_directory": pki.directory,
        "database": database,
        "origin": ORIGIN,
        "log_key_path": pki.log_private_key_path,
        "operator_id": OPERATOR,
        "operator_common_name": pki.participant(OPERATOR).certificate_common_name,
        "operator_public_key_path": pki.participant(OPERATOR).signing_public_key_path,
        "grace_period_seconds": 2.0,
        "health_interval_seconds": 0.5,
        "log_level": "warning",
    }
    values.update(overrides)
    return ServerSettings(**values)


def register_demo_participants(hub: HubClient) -> None:
    """Register every participant of the development PKI but the operator (the bootstrap's)."""
    for participant_id in ("auditor", *PARTICIPANTS):
        participant = hub.pki.participant(participant_id)
        instruction, _ = registration(
            instruction_id=f"operator:register:{participant_id}",
            target_participant_id=participant_id,
            legal_name=participant.legal_name,
            role=participant_pb2.Role.Value(f"ROLE_{participant.role.value.upper()}"),
            country=participant.country,
            bic=participant.bic,
            lei=participant.lei,
            aba_routing_number=participant.aba_routing_number,
            iban_bank_code=participant.iban_bank_code,
            certificate_common_name=participant.certificate_common_name,
            signing_public_key=public_key_bytes(
                load_public_key(participant.signing_public_key_path)
            ),
        )
        hub.participants().RegisterParticipant(
            participant_pb2.RegisterParticipantRequest(instruction=hub.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )


@contextmanager
def running_hub(pki: DevPki, database: str, **overrides: Any) -> Iterator[HubClient]:
    """The real hub on ``database`` with the demo participants registered; stopped on exit.

    ``overrides`` are :class:`ServerSettings` fields (e.g. ``checkpoint_every_seconds``).
    """
    settings = server_settings(pki, database, **overrides)
    hub_settings = settings.hub_settings()

    async def open_real_hub() -> Any:
        from settlement.hub import open_hub

        return await open_hub(hub_settings)

    server = BackgroundServer(settings, open_real_hub)
    server.start()
    client = HubClient(
        server,
        pki,
        keys={
            participant_id: load_private_key(participant.signing_private_key_path)
            for participant_id, participant in pki.participants.items()
        },
    )
    try:
        register_demo_participants(client)
        yield client
    finally:
        client.close()
        server.stop()
