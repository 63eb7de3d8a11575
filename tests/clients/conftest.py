"""Fixtures of the reference-client tests: the gRPC fixtures and a prepared hub.

The server fixtures (``dev_pki``, ``start_server``, ``grpc_server`` on SQLite
and PostgreSQL, ``open_channel``) are those of ``tests/grpc/conftest.py``,
imported here (``pytest_plugins`` is only honoured in the root conftest).

``Operator`` sets a hub up the way the operator does it, over gRPC with the
service's own signing code (the clients under test must agree with it):
registers the demo participants of the development PKI, opens their
settlement accounts and funds them.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import pytest
import structlog
from google.protobuf.message import Message

from ledger.keys import load_private_key, load_public_key, public_key_bytes
from settlement.instructions import sign
from settlement.pki import DevPki
from settlement.server import BackgroundServer
from settlement.v1 import (
    audit_pb2_grpc,
    common_pb2,
    ledger_pb2_grpc,
    participant_pb2,
    participant_pb2_grpc,
    payment_pb2,
    payment_pb2_grpc,
)
from tests.grpc.conftest import (
    dev_pki,
    grpc_server,
    open_channel,
    real_hub_opener,
    server_settings,
    start_server,
)

__all__ = ["Operator", "dev_pki", "grpc_server", "open_channel", "start_server"]

OPERATOR = "operator"
CALL_TIMEOUT_SECONDS = 30.0
CLIENT_TIMEOUT_SECONDS = 300.0
"""A whole client command (an audit exports and verifies) run on the hub's loop."""

T = TypeVar("T")
ROLES = {
    "bank": participant_pb2.ROLE_BANK,
    "fx_provider": participant_pb2.ROLE_FX_PROVIDER,
    "lender": participant_pb2.ROLE_LENDER,
    "operator": participant_pb2.ROLE_OPERATOR,
    "auditor": participant_pb2.ROLE_AUDITOR,
}


class _CurrentStderr:
    """Whatever ``sys.stderr`` is at the time of writing (pytest swaps it per test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture(autouse=True)
def server_logs_on_stderr() -> Iterator[None]:
    """The in-process hub logs through structlog, whose default prints on stdout,
    where the clients under test print their tables and JSON: move it to stderr."""
    previous = structlog.get_config()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()))  # type: ignore[arg-type]
    try:
        yield
    finally:
        structlog.configure(**previous)


def on_hub_loop(server: BackgroundServer, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a ``grpc.aio`` client coroutine on the in-process hub's own event loop.

    One event loop for the aio client and the aio server, the arrangement
    grpc.aio is tested in, rather than a second loop in the main thread. Now
    and then the in-process hub's loop never closes at teardown: a grpc.aio
    server task (``_request_registered_call``) outlives ``server.stop()`` and
    ``asyncio.run`` waits for it forever (BackgroundServer.stop then times
    out). A real bank runs its client in its own process (one test does).
    """
    return server.run_coroutine(coroutine, CLIENT_TIMEOUT_SECONDS)


def _type(message_type: type[Message]) -> str:
    return str(message_type.DESCRIPTOR.full_name)


def new_id(participant_id: str = OPERATOR) -> str:
    return f"{participant_id}:{uuid.uuid4()}"


@dataclass
class Operator:
    """The hub's operator and the other demo participants, with blocking stubs."""

    server: BackgroundServer
    pki: DevPki
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def channel(self, who: str = OPERATOR) -> grpc.Channel:
        if who not in self.channels:
            self.channels[who] = grpc.secure_channel(
                self.server.address, self.pki.channel_credentials(who)
            )
        return self.channels[who]

    def sign(self, message: Message, who: str = OPERATOR) -> common_pb2.SignedInstruction:
        key = load_private_key(self.pki.participant(who).signing_private_key_path)
        return sign(message, key)

    def participants(self) -> participant_pb2_grpc.ParticipantServiceStub:
        return participant_pb2_grpc.ParticipantServiceStub(self.channel())

    def ledger(self, who: str = OPERATOR) -> ledger_pb2_grpc.LedgerServiceStub:
        return ledger_pb2_grpc.LedgerServiceStub(self.channel(who))

    def audit(self, who: str = OPERATOR) -> audit_pb2_grpc.AuditServiceStub:
        return audit_pb2_grpc.AuditServiceStub(self.channel(who))

    def payments(self, who: str = OPERATOR) -> payment_pb2_grpc.PaymentServiceStub:
        return payment_pb2_grpc.PaymentServiceStub(self.channel(who))

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()

    def register(self, participant_id: str) -> None:
        participant = self.pki.participant(participant_id)
        instruction = participant_pb2.RegisterParticipantInstruction(
            instruction_id=f"operator:register:{participant_id}",
            participant_id=OPERATOR,
            instruction_type=_type(participant_pb2.RegisterParticipantInstruction),
            target_participant_id=participant_id,
            legal_name=participant.legal_name,
            role=ROLES[participant.role.value],
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
        self.participants().RegisterParticipant(
            participant_pb2.RegisterParticipantRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def open_account(self, participant_id: str, currency: str, limit_minor: int = 0) -> str:
        instruction = participant_pb2.OpenSettlementAccountInstruction(
            instruction_id=f"settlement:{participant_id}:{currency}",
            participant_id=OPERATOR,
            instruction_type=_type(participant_pb2.OpenSettlementAccountInstruction),
            target_participant_id=participant_id,
            currency=currency,
            debit_limit_minor=limit_minor,
        )
        self.participants().OpenSettlementAccount(
            participant_pb2.OpenSettlementAccountRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return instruction.instruction_id

    def fund(self, account_id: str, amount_minor: int, currency: str) -> Any:
        instruction = participant_pb2.FundInstruction(
            instruction_id=new_id(),
            participant_id=OPERATOR,
            instruction_type=_type(participant_pb2.FundInstruction),
            account_id=account_id,
            amount_minor=amount_minor,
            currency=currency,
            reference="incoming wire",
        )
        return self.participants().Fund(
            participant_pb2.FundRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def defund(self, account_id: str, amount_minor: int, currency: str) -> Any:
        instruction = participant_pb2.DefundInstruction(
            instruction_id=new_id(),
            participant_id=OPERATOR,
            instruction_type=_type(participant_pb2.DefundInstruction),
            account_id=account_id,
            amount_minor=amount_minor,
            currency=currency,
            reference="outgoing wire",
        )
        return self.participants().Defund(
            participant_pb2.DefundRequest(instruction=self.sign(instruction)),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def publish_rate(self, source: str, target: str, rate: str, fee_minor: int = 0) -> Any:
        instruction = payment_pb2.PublishRateInstruction(
            instruction_id=new_id("fx-provider"),
            participant_id="fx-provider",
            instruction_type=_type(payment_pb2.PublishRateInstruction),
            source_currency=source,
            target_currency=target,
            rate=rate,
            valid_seconds=3600,
            fee_minor=fee_minor,
        )
        return self.payments("fx-provider").PublishRate(
            payment_pb2.PublishRateRequest(instruction=self.sign(instruction, "fx-provider")),
            timeout=CALL_TIMEOUT_SECONDS,
        )

    def payment_service_available(self) -> bool:
        """Whether the server has PaymentService (another change is building it)."""
        try:
            self.payments().GetPayment(
                payment_pb2.GetPaymentRequest(uetr=str(uuid.uuid4())), timeout=CALL_TIMEOUT_SECONDS
            )
        except grpc.RpcError as error:
            return error.code() != grpc.StatusCode.UNIMPLEMENTED
        return True

    def journal_size(self) -> int:
        return int(self.server.hub.ledger.journal_size())


def prepare(server: BackgroundServer, pki: DevPki) -> Operator:
    """Register the demo participants and open their settlement accounts (unfunded)."""
    operator = Operator(server, pki)
    for participant_id in ("auditor", "bank-us", "bank-pk", "fx-provider"):
        operator.register(participant_id)
    for participant_id in ("bank-us", "bank-pk", "fx-provider"):
        for currency in ("USD", "PKR"):
            operator.open_account(participant_id, currency)
    return operator


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def operator(
    request: pytest.FixtureRequest,
    dev_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
) -> Iterator[Operator]:
    """One hub per test module and backend, with the demo participants and accounts.

    Shared by the module's tests, which therefore assert on what they did
    (their own UETRs, ids and balance changes), never on the hub's totals.
    Few hubs, not one per test: the in-process hub now and then fails to
    stop (see ``on_hub_loop``), and each start and stop is a chance of that.
    """
    with database_factory(request.param) as location:
        settings = server_settings(dev_pki, location)
        server = BackgroundServer(settings, real_hub_opener(settings))
        server.start()
        try:
            prepared = prepare(server, dev_pki)
            try:
                yield prepared
            finally:
                prepared.close()
        finally:
            server.stop()


@pytest.fixture
def fresh_operator(grpc_server: BackgroundServer, dev_pki: DevPki) -> Iterator[Operator]:
    """A hub of the test's own (SQLite and PostgreSQL), for figures that must start at zero."""
    prepared = prepare(grpc_server, dev_pki)
    try:
        yield prepared
    finally:
        prepared.close()
