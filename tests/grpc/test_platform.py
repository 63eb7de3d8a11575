"""The transport: mutual TLS, identity, errors, request ids, health, reflection,
metrics, logs and graceful shutdown, against a real server on loopback.

Most cases run a fake hub and fake servicers (below), so that they test the
platform and nothing else; ``test_real_hub_*`` run the real hub (SQLite and
PostgreSQL) behind the same fakes; the last case runs ``settlement serve``
itself when the services exist.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ledger.errors import (
    AccountNotFound,
    ExceedsCredits,
    ExistsWithDifferentBody,
    IdMustBeValid,
    IntegrityError,
    LedgerError,
    PendingExpired,
    PostingsMustNotExceedLimit,
)
from settlement import metrics
from settlement.auth import Caller, Role, current_caller
from settlement.errors import InvalidArgument, PermissionDenied, Unavailable
from settlement.interceptors import ERROR_METADATA_KEY, REQUEST_ID_METADATA_KEY
from settlement.pki import CertificateAuthority, DevPki, certificate_pem, private_key_pem
from settlement.server import BackgroundServer
from settlement.v1 import (
    common_pb2,
    ledger_pb2,
    ledger_pb2_grpc,
    participant_pb2,
    participant_pb2_grpc,
)

CALL_TIMEOUT_SECONDS = 10.0
PARTICIPANT_SERVICE = participant_pb2.DESCRIPTOR.services_by_name["ParticipantService"].full_name
LEDGER_SERVICE = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
GET_PARTICIPANT = f"/{PARTICIPANT_SERVICE}/GetParticipant"
MAIN = Path(__file__).resolve().parents[2]


class SignatureInvalid(InvalidArgument):
    """Stands for the service's error of that code (mapped by code, not by kind)."""

    code = "signature_invalid"


# One row per error: what the fake servicer raises for participant_id=<key>,
# and the status the contract says the caller gets.
ERROR_CASES: list[tuple[str, LedgerError, grpc.StatusCode, list[str]]] = [
    (
        "id",
        IdMustBeValid("id must be 1..128 printable characters"),
        grpc.StatusCode.INVALID_ARGUMENT,
        [],
    ),
    ("account", AccountNotFound("account 'x' does not exist"), grpc.StatusCode.NOT_FOUND, []),
    (
        "conflict",
        ExistsWithDifferentBody("tx-1", ["postings", "code"]),
        grpc.StatusCode.ALREADY_EXISTS,
        ["postings", "code"],
    ),
    (
        "credits",
        ExceedsCredits("net debit would pass the cap"),
        grpc.StatusCode.FAILED_PRECONDITION,
        [],
    ),
    (
        "role",
        PermissionDenied("banks may not register participants"),
        grpc.StatusCode.PERMISSION_DENIED,
        [],
    ),
    (
        "signature",
        SignatureInvalid("signature does not verify"),
        grpc.StatusCode.UNAUTHENTICATED,
        [],
    ),
    (
        "limit",
        PostingsMustNotExceedLimit("at most 16 postings"),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        [],
    ),
    ("unavailable", Unavailable("not the writer"), grpc.StatusCode.UNAVAILABLE, []),
    ("integrity", IntegrityError("balances do not sum to zero"), grpc.StatusCode.INTERNAL, []),
]
ERRORS_BY_KEY = {key: error for key, error, _, _ in ERROR_CASES}

SECRET_DETAIL = "database password hunter2"


# --- Fakes --------------------------------------------------------------------


class FakeHub:
    """The three things the transport asks of a hub."""

    def __init__(self, callers: dict[str, Caller]) -> None:
        self.callers = callers
        self.is_ready = True
        self.closed = False

    def resolve_caller(self, common_name: str) -> Caller | None:
        return self.callers.get(common_name)

    async def ready(self) -> bool:
        return self.is_ready

    async def close(self) -> None:
        self.closed = True


def fake_hub_for(pki: DevPki) -> FakeHub:
    return FakeHub(
        {
            participant.certificate_common_name: Caller(
                participant.participant_id, participant.role, participant.certificate_common_name
            )
            for participant in pki.participants.values()
        }
    )


def participant_message(caller: Caller) -> participant_pb2.Participant:
    return participant_pb2.Participant(
        participant_id=caller.participant_id,
        role=participant_pb2.Role.Value(f"ROLE_{caller.role.value.upper()}"),
        certificate_common_name=caller.common_name,
    )


class FakeParticipantService(participant_pb2_grpc.ParticipantServiceServicer):
    """GetParticipant does what its participant_id says: whoami, an error, slow, abort."""

    async def GetParticipant(
        self, request: participant_pb2.GetParticipantRequest, context: Any
    ) -> participant_pb2.GetParticipantResponse:
        key = request.participant_id
        if key == "whoami":
            return participant_pb2.GetParticipantResponse(
                participant=participant_message(current_caller())
            )
        if key in ERRORS_BY_KEY:
            raise ERRORS_BY_KEY[key]
        if key == "runtime-error":
            raise RuntimeError(SECRET_DETAIL)
        if key == "abort":
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, "the handler aborted on its own")
        if key == "sync":
            return self._sync_answer()
        if key.startswith("slow:"):
            await asyncio.sleep(float(key.removeprefix("slow:")))
            return participant_pb2.GetParticipantResponse(
                participant=participant_pb2.Participant(participant_id="slow-done")
            )
        return participant_pb2.GetParticipantResponse(
            participant=participant_pb2.Participant(participant_id=f"echo:{len(key)}")
        )

    def _sync_answer(self) -> participant_pb2.GetParticipantResponse:
        return participant_pb2.GetParticipantResponse(
            participant=participant_pb2.Participant(participant_id="sync")
        )


class FakeLedgerService(ledger_pb2_grpc.LedgerServiceServicer):
    """WatchJournal: two entries, then the end (stop_at_end) or a refusal."""

    async def WatchJournal(
        self, request: ledger_pb2.WatchJournalRequest, context: Any
    ) -> AsyncIterator[ledger_pb2.WatchJournalResponse]:
        caller = current_caller()
        for index in range(request.from_index, request.from_index + 2):
            yield ledger_pb2.WatchJournalResponse(
                entry=ledger_pb2.JournalEntry(entry_id=f"{caller.participant_id}:{index}")
            )
        if not request.stop_at_end:
            raise PendingExpired("the pending transaction expired")


def add_fake_services(server: Any, hub: Any) -> list[str]:
    # The fakes implement only the methods the tests call; the others stay
    # the generated UNIMPLEMENTED ones, which mypy-protobuf marks abstract.
    participant_service = FakeParticipantService()  # type: ignore[abstract]
    ledger_service = FakeLedgerService()  # type: ignore[abstract]
    participant_pb2_grpc.add_ParticipantServiceServicer_to_server(participant_service, server)
    ledger_pb2_grpc.add_LedgerServiceServicer_to_server(ledger_service, server)
    return [PARTICIPANT_SERVICE, LEDGER_SERVICE]


# --- Helpers ------------------------------------------------------------------


@pytest.fixture
def fake_server(start_server: Callable[..., BackgroundServer], dev_pki: DevPki) -> BackgroundServer:
    hub = fake_hub_for(dev_pki)

    async def open_fake_hub() -> FakeHub:
        return hub

    return start_server(open_hub=open_fake_hub, add_services=add_fake_services)


def credentials_for(authority: CertificateAuthority, pki: DevPki, common_name: str) -> Any:
    """Client credentials for a certificate ``authority`` issues, trusting the hub's CA."""
    certificate, key = authority.issue_client_certificate(common_name)
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_certificate_path.read_bytes(),
        private_key=private_key_pem(key),
        certificate_chain=certificate_pem(certificate),
    )


def get_participant(channel: Any, participant_id: str, **kwargs: Any) -> Any:
    stub = participant_pb2_grpc.ParticipantServiceStub(channel)
    request = participant_pb2.GetParticipantRequest(participant_id=participant_id)
    return stub.GetParticipant.with_call(request, timeout=CALL_TIMEOUT_SECONDS, **kwargs)


def call_error(channel: Any, participant_id: str, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        get_participant(channel, participant_id, **kwargs)
    return caught.value


def trailing(error_or_call: Any) -> dict[str, Any]:
    return {item.key: item.value for item in error_or_call.trailing_metadata() or ()}


def error_detail(error: grpc.RpcError) -> common_pb2.Error:
    detail = common_pb2.Error()
    detail.ParseFromString(trailing(error)[ERROR_METADATA_KEY])
    return detail


def health_status(channel: Any, service: str = "") -> int:
    stub: Any = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=service)
    return int(stub.Check(request, timeout=CALL_TIMEOUT_SECONDS).status)


# --- Identity: mutual TLS and the certificate's common name --------------------


def test_registered_certificate_is_the_caller(
    fake_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    for participant_id, role in (("bank-us", Role.BANK), ("auditor", Role.AUDITOR)):
        response, _ = get_participant(open_channel(fake_server, participant_id), "whoami")
        assert response.participant.participant_id == participant_id
        assert response.participant.role == participant_pb2.Role.Value(f"ROLE_{role.value.upper()}")
        assert response.participant.certificate_common_name == participant_id


def test_call_without_client_certificate_fails_the_handshake(
    fake_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    error = call_error(open_channel(fake_server, None), "whoami")
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_certificate_from_another_ca_fails_the_handshake(
    fake_server: BackgroundServer, open_channel: Callable[..., Any], dev_pki: DevPki
) -> None:
    impostor = CertificateAuthority.create("Impostor CA")
    credentials = credentials_for(impostor, dev_pki, "bank-us")
    error = call_error(open_channel(fake_server, credentials=credentials), "whoami")
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_unregistered_common_name_is_unauthenticated(
    fake_server: BackgroundServer, open_channel: Callable[..., Any], dev_pki: DevPki
) -> None:
    credentials = credentials_for(dev_pki.certificate_authority(), dev_pki, "stranger")
    channel = open_channel(fake_server, credentials=credentials)
    error = call_error(channel, "whoami")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    details = error.details() or ""
    assert details.startswith("certificate_must_identify_participant: ")
    assert "'stranger'" in details
    assert error_detail(error).code == "certificate_must_identify_participant"
    stream = ledger_pb2_grpc.LedgerServiceStub(channel).WatchJournal(
        ledger_pb2.WatchJournalRequest(stop_at_end=True), timeout=CALL_TIMEOUT_SECONDS
    )
    with pytest.raises(grpc.RpcError) as caught:
        list(stream)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_insecure_mode_takes_the_caller_from_metadata(
    start_server: Callable[..., BackgroundServer],
    open_channel: Callable[..., Any],
    dev_pki: DevPki,
) -> None:
    hub = fake_hub_for(dev_pki)

    async def open_fake_hub() -> FakeHub:
        return hub

    server = start_server(open_hub=open_fake_hub, add_services=add_fake_services, insecure=True)
    channel = open_channel(server)
    response, _ = get_participant(
        channel, "whoami", metadata=(("x-settlement-participant", "bank-pk"),)
    )
    assert response.participant.participant_id == "bank-pk"
    assert call_error(channel, "whoami").code() == grpc.StatusCode.UNAUTHENTICATED
    assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING


# --- Errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected_status", "expected_fields"),
    [(key, status, fields) for key, _, status, fields in ERROR_CASES],
    ids=[key for key, _, _, _ in ERROR_CASES],
)
def test_ledger_error_maps_to_status_message_and_detail(
    fake_server: BackgroundServer,
    open_channel: Callable[..., Any],
    key: str,
    expected_status: grpc.StatusCode,
    expected_fields: list[str],
) -> None:
    raised = ERRORS_BY_KEY[key]
    error = call_error(open_channel(fake_server, "bank-us"), key)
    assert error.code() == expected_status
    assert error.details() == f"{raised.code}: {raised.message}"
    detail = error_detail(error)
    assert (detail.code, detail.message, list(detail.fields)) == (
        raised.code,
        raised.message,
        expected_fields,
    )


def test_unexpected_error_is_internal_and_hides_its_message(
    fake_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    error = call_error(
        open_channel(fake_server, "bank-us"),
        "runtime-error",
        metadata=((REQUEST_ID_METADATA_KEY, "req-internal-1"),),
    )
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error (request id req-internal-1)"
    assert SECRET_DETAIL not in str(error.trailing_metadata())
    assert ERROR_METADATA_KEY not in trailing(error)
    assert trailing(error)[REQUEST_ID_METADATA_KEY] == "req-internal-1"


def test_handler_abort_and_sync_handler_pass_through(
    fake_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    channel = open_channel(fake_server, "bank-us")
    error = call_error(channel, "abort")
    assert error.code() == grpc.StatusCode.OUT_OF_RANGE
    assert error.details() == "the handler aborted on its own"
    response, _ = get_participant(channel, "sync")
    assert response.participant.participant_id == "sync"


def test_stream_sends_its_messages_then_the_mapped_error(
    fake_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    stub = ledger_pb2_grpc.LedgerServiceStub(open_channel(fake_server, "bank-pk"))
    complete = list(
        stub.WatchJournal(
            ledger_pb2.WatchJournalRequest(from_index=5, stop_at_end=True),
            timeout=CALL_TIMEOUT_SECONDS,
        )
    )
    assert [item.entry.entry_id for item in complete] == ["bank-pk:5", "bank-pk:6"]
    received: list[str] = []
    stream = stub.WatchJournal(
        ledger_pb2.WatchJournalRequest(from_index=1), timeout=CALL_TIMEOUT_SECONDS
    )
    with pytest.raises(grpc.RpcError) as caught:
        received.extend(item.entry.entry_id for item in stream)
    assert received == ["bank-pk:1", "bank-pk:2"]
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (caught.value.details() or "").startswith("pending_expired: ")
    assert error_detail(caught.value).code == "pending_expired"


# --- Request ids ----------------------------------------------------------------


def test_request_id_is_echoed_or_assigned(
    fake_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    channel = open_channel(fake_server, "bank-us")
    _, call = get_participant(channel, "whoami", metadata=((REQUEST_ID_METADATA_KEY, "req-42"),))
    assert trailing(call)[REQUEST_ID_METADATA_KEY] == "req-42"
    _, call = get_participant(channel, "whoami")
    assert uuid.UUID(trailing(call)[REQUEST_ID_METADATA_KEY]).version == 4
    # An id unfit for a log line (spaces, or too long) is replaced, not echoed.
    for unfit in ("two words", "x" * 129):
        _, call = get_participant(channel, "whoami", metadata=((REQUEST_ID_METADATA_KEY, unfit),))
        assert uuid.UUID(trailing(call)[REQUEST_ID_METADATA_KEY]).version == 4
    error = call_error(channel, "conflict", metadata=((REQUEST_ID_METADATA_KEY, "req-43"),))
    assert trailing(error)[REQUEST_ID_METADATA_KEY] == "req-43"


# --- Limits ---------------------------------------------------------------------


def test_requests_up_to_16_mib_are_accepted_and_larger_ones_refused(
    fake_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    channel = open_channel(fake_server, "bank-us")
    sixteen_mib = 16 * 1024 * 1024
    # Field tag (1 byte) and a 4-byte length prefix: the message is exactly 16 MiB.
    fitting = "a" * (sixteen_mib - 5)
    assert (
        len(participant_pb2.GetParticipantRequest(participant_id=fitting).SerializeToString())
        == sixteen_mib
    )
    response, _ = get_participant(channel, fitting)
    assert response.participant.participant_id == f"echo:{len(fitting)}"
    error = call_error(channel, fitting + "a")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- Health and reflection ------------------------------------------------------


def test_health_follows_hub_readiness_without_a_registered_participant(
    fake_server: BackgroundServer, open_channel: Callable[..., Any], dev_pki: DevPki
) -> None:
    # A CA-signed certificate that names no participant: health is exempt.
    credentials = credentials_for(dev_pki.certificate_authority(), dev_pki, "load-balancer")
    channel = open_channel(fake_server, credentials=credentials)
    services = ["", PARTICIPANT_SERVICE, LEDGER_SERVICE]
    assert [health_status(channel, name) for name in services] == [
        health_pb2.HealthCheckResponse.SERVING
    ] * 3
    fake_server.hub.is_ready = False
    deadline = time.monotonic() + 5
    while health_status(channel) != health_pb2.HealthCheckResponse.NOT_SERVING:
        assert time.monotonic() < deadline, "health did not turn NOT_SERVING"
        time.sleep(0.05)
    assert [health_status(channel, name) for name in services] == [
        health_pb2.HealthCheckResponse.NOT_SERVING
    ] * 3
    fake_server.hub.is_ready = True
    while health_status(channel) != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline + 5, "health did not turn SERVING again"
        time.sleep(0.05)


def test_health_without_a_client_certificate_fails(
    fake_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        health_status(open_channel(fake_server, None))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def reflection_ask(channel: Any, request: reflection_pb2.ServerReflectionRequest) -> Any:
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
    (response,) = stub.ServerReflectionInfo(iter([request]), timeout=CALL_TIMEOUT_SECONDS)
    return response


def reflected_pool(channel: Any, symbol: str) -> descriptor_pool.DescriptorPool:
    """Fetch the file defining ``symbol`` and its dependencies, as grpcurl does."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def take(response: Any) -> None:
        for serialized in response.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(serialized)
            files.setdefault(proto.name, proto)

    take(
        reflection_ask(
            channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        )
    )
    missing = [
        dep for proto in list(files.values()) for dep in proto.dependency if dep not in files
    ]
    while missing:
        name = missing.pop()
        if name not in files:
            take(
                reflection_ask(
                    channel, reflection_pb2.ServerReflectionRequest(file_by_filename=name)
                )
            )
            missing += [dep for dep in files[name].dependency if dep not in files]
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added:
            return
        for dependency in files[name].dependency:
            add(dependency)
        pool.Add(files[name])
        added.add(name)

    for name in files:
        add(name)
    return pool


def test_reflection_lists_services_and_drives_a_dynamic_call(
    fake_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    channel = open_channel(fake_server, "bank-us")
    listed = reflection_ask(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in listed.list_services_response.service}
    assert names == {
        PARTICIPANT_SERVICE,
        LEDGER_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    pool = reflected_pool(channel, PARTICIPANT_SERVICE)
    method = pool.FindServiceByName(PARTICIPANT_SERVICE).methods_by_name["GetParticipant"]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    call = channel.unary_unary(
        GET_PARTICIPANT,
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    # The request from JSON, as grpcurl -d '{"participant_id": "whoami"}' builds it.
    request = json_format.ParseDict({"participant_id": "whoami"}, request_class())
    response = call(request, timeout=CALL_TIMEOUT_SECONDS)
    assert response.participant.participant_id == "bank-us"
    assert type(response).DESCRIPTOR.full_name == "settlement.v1.GetParticipantResponse"


# --- Metrics --------------------------------------------------------------------


def test_metrics_endpoint_serves_call_counters_and_hub_gauges(
    fake_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    def calls(code: str) -> float:
        labels = {"method": GET_PARTICIPANT, "code": code}
        return metrics.REGISTRY.get_sample_value("settlement_rpc_calls_total", labels) or 0.0

    before_ok, before_conflict = calls("OK"), calls("ALREADY_EXISTS")
    channel = open_channel(fake_server, "bank-us")
    get_participant(channel, "whoami")
    call_error(channel, "conflict")
    metrics.observe_group_commit_size(7)
    metrics.set_journal_size(1234)
    metrics.set_checkpoint_age_seconds(2.5)
    server = metrics.start_metrics_server(0, "127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=CALL_TIMEOUT_SECONDS) as response:
            text = response.read().decode()
    finally:
        server.close()
    assert calls("OK") == before_ok + 1
    assert calls("ALREADY_EXISTS") == before_conflict + 1
    assert (
        f'settlement_rpc_calls_total{{code="OK",method="{GET_PARTICIPANT}"}} {calls("OK")}' in text
    )
    assert (
        f'settlement_rpc_duration_seconds_count{{code="ALREADY_EXISTS",method="{GET_PARTICIPANT}"}}'
        in text
    )
    assert 'settlement_group_commit_size_bucket{le="10.0"}' in text
    assert "settlement_journal_size 1234.0" in text
    assert "settlement_checkpoint_age_seconds 2.5" in text


# --- The real hub behind the platform -------------------------------------------


def test_real_hub_resolves_the_operator_and_serves_health(
    database: str,
    start_server: Callable[..., BackgroundServer],
    open_channel: Callable[..., Any],
) -> None:
    server = start_server(database=database, add_services=add_fake_services)
    response, _ = get_participant(open_channel(server, "operator"), "whoami")
    assert response.participant.participant_id == "operator"
    assert response.participant.role == participant_pb2.ROLE_OPERATOR
    # Not registered yet: only the operator is, by the hub's bootstrap.
    error = call_error(open_channel(server, "bank-us"), "whoami")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert health_status(open_channel(server, "bank-us")) == health_pb2.HealthCheckResponse.SERVING


# --- settlement serve: the listening line, logs, SIGTERM --------------------------

FAKE_SERVE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import structlog
    from settlement.auth import Caller, current_caller
    from settlement.cli import build_parser
    from settlement.config import settings_from_arguments
    from settlement.pki import load_dev_pki
    from settlement.server import serve
    from settlement.v1 import participant_pb2, participant_pb2_grpc

    log = structlog.get_logger("fake")
    options = build_parser().parse_args(["serve", *sys.argv[1:]])
    pki = load_dev_pki(options.dev_pki)

    class Hub:
        def resolve_caller(self, common_name):
            participant = pki.participants.get(common_name)
            return participant and Caller(participant.participant_id, participant.role, common_name)
        async def ready(self):
            return True
        async def close(self):
            log.info("fake hub closed")

    class Slow(participant_pb2_grpc.ParticipantServiceServicer):
        async def GetParticipant(self, request, context):
            if request.participant_id == "boom":
                raise RuntimeError("kaboom: the secret detail")
            log.info("slow call started")
            await asyncio.sleep(float(request.participant_id))
            caller = current_caller().participant_id
            return participant_pb2.GetParticipantResponse(
                participant=participant_pb2.Participant(participant_id=f"done:{caller}"))

    def add_services(server, hub):
        participant_pb2_grpc.add_ParticipantServiceServicer_to_server(Slow(), server)
        return ["settlement.v1.ParticipantService"]

    async def open_hub():
        return Hub()

    sys.exit(asyncio.run(serve(settings_from_arguments(options), open_hub=open_hub,
                               add_services=add_services)))
    """
)


class ServeProcess:
    """A ``settlement serve``-like subprocess whose stderr lines are parsed as JSON."""

    def __init__(self, arguments: list[str], environment: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            arguments,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=MAIN,
            env=environment,
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"event": "<not json>", "line": line}
            self.lines.put(record)

    def wait_for(self, event: str, timeout_seconds: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_seconds
        while True:
            remaining = deadline - time.monotonic()
            try:
                record = self.lines.get(timeout=min(max(remaining, 0.01), 0.2))
            except queue.Empty:
                exited = self.process.poll() is not None and not self._reader.is_alive()
                if (exited and self.lines.empty()) or remaining <= 0:
                    raise AssertionError(f"no {event!r} line; saw {self.seen}") from None
                continue
            self.seen.append(record)
            if record.get("event") == event:
                return record

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def serve_process() -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def start(arguments: list[str], environment: dict[str, str] | None = None) -> ServeProcess:
        process = ServeProcess(arguments, environment)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


def test_sigterm_lets_the_in_flight_call_finish_then_exits_zero(
    serve_process: Callable[..., ServeProcess],
    dev_pki: DevPki,
    tmp_path: Path,
) -> None:
    script = tmp_path / "fake_serve.py"
    script.write_text(FAKE_SERVE_SCRIPT)
    process = serve_process(
        [
            sys.executable,
            str(script),
            "--dev-pki",
            str(dev_pki.directory),
            "--listen",
            "127.0.0.1:0",
            "--grace-period-seconds",
            "10",
        ]
    )
    listening = process.wait_for("listening")
    assert listening["host"] == "127.0.0.1"
    assert listening["tls"] is True
    credentials = dev_pki.channel_credentials("bank-us")
    with grpc.secure_channel(f"127.0.0.1:{listening['port']}", credentials) as channel:
        error = call_error(channel, "boom", metadata=((REQUEST_ID_METADATA_KEY, "req-boom"),))
        assert (error.code(), error.details()) == (
            grpc.StatusCode.INTERNAL,
            "internal error (request id req-boom)",
        )
        failure = process.wait_for("rpc failed with an unexpected error")
        assert failure["level"] == "error"
        assert failure["request_id"] == "req-boom"
        assert "Traceback" in failure["exception"]
        assert "RuntimeError: kaboom: the secret detail" in failure["exception"]
        stub = participant_pb2_grpc.ParticipantServiceStub(channel)
        future = stub.GetParticipant.future(
            participant_pb2.GetParticipantRequest(participant_id="1.0"),
            timeout=CALL_TIMEOUT_SECONDS,
            metadata=((REQUEST_ID_METADATA_KEY, "req-sigterm"),),
        )
        started = process.wait_for("slow call started")
        process.process.send_signal(signal.SIGTERM)
        response = future.result(timeout=CALL_TIMEOUT_SECONDS)
    assert response.participant.participant_id == "done:bank-us"
    assert process.process.wait(timeout=30) == 0
    # In this order: the signal, the in-flight call's end, the hub, the exit.
    process.wait_for("stopping")
    rpc = process.wait_for("rpc")
    closed = process.wait_for("fake hub closed")
    process.wait_for("stopped")
    # Every line of the call carries who, what and which request.
    for record in (started, rpc):
        assert record["request_id"] == "req-sigterm"
        assert record["participant"] == "bank-us"
        assert record["method"] == GET_PARTICIPANT
        assert {"timestamp", "level"} <= set(record)
    assert rpc["code"] == "OK"
    assert "request_id" not in closed or closed["request_id"] is None


def test_settlement_serve_with_the_real_hub(
    serve_process: Callable[..., ServeProcess],
    dev_pki: DevPki,
    tmp_path: Path,
) -> None:
    services = pytest.importorskip("settlement.services")
    if not hasattr(services, "add_services"):
        pytest.skip("settlement.services.add_services is not built yet")
    executable = Path(sys.executable).parent / "settlement"
    environment = dict(os.environ, SETTLEMENT_DATABASE=str(tmp_path / "hub.db"))
    process = serve_process(
        [
            str(executable),
            "serve",
            "--dev-pki",
            str(dev_pki.directory),
            "--listen",
            "127.0.0.1:0",
        ],
        environment,
    )
    listening = process.wait_for("listening")
    credentials = dev_pki.channel_credentials("auditor")
    with grpc.secure_channel(f"127.0.0.1:{listening['port']}", credentials) as channel:
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
    process.process.send_signal(signal.SIGTERM)
    assert process.process.wait(timeout=30) == 0
    process.wait_for("stopped")


# --- Configuration and logs -----------------------------------------------------


def test_serve_help_names_the_environment_variable_of_every_flag() -> None:
    from settlement.cli import build_parser

    commands = next(action for action in build_parser()._actions if action.dest == "command")
    assert isinstance(commands.choices, dict)
    serve = commands.choices["serve"]
    flags = [action for action in serve._actions if action.option_strings != ["-h", "--help"]]
    assert len(flags) >= 20
    for action in flags:
        assert action.help is not None
        assert "(env SETTLEMENT_" in action.help, action.option_strings


def test_settings_come_from_flags_then_environment_then_defaults(
    monkeypatch: pytest.MonkeyPatch, dev_pki: DevPki
) -> None:
    from settlement.cli import build_parser
    from settlement.config import ConfigurationError, settings_from_arguments

    monkeypatch.setenv("SETTLEMENT_METRICS_PORT", "9464")
    monkeypatch.setenv("SETTLEMENT_GRACE_PERIOD_SECONDS", "3.5")
    arguments = ["serve", "--dev-pki", str(dev_pki.directory), "--grace-period-seconds", "7"]
    settings = settings_from_arguments(build_parser().parse_args(arguments))
    assert settings.metrics_port == 9464
    assert settings.grace_period_seconds == 7.0
    assert settings.max_receive_message_bytes == 16 * 1024 * 1024
    assert settings.listen_address == "127.0.0.1:50051"
    assert settings.tls_directory == dev_pki.directory
    assert settings.log_key_path == dev_pki.log_private_key_path
    hub = settings.hub_settings()
    assert hub.operator_public_key_path == dev_pki.participant("operator").signing_public_key_path
    assert hub.operator_common_name == "operator"
    with pytest.raises(ConfigurationError, match="16777216"):
        settings_from_arguments(
            build_parser().parse_args([*arguments, "--max-receive-message-bytes", "1048576"])
        )
    with pytest.raises(ConfigurationError, match="--tls-dir"):
        settings_from_arguments(build_parser().parse_args(["serve"]))


def test_log_lines_never_carry_key_material() -> None:
    from settlement.logs import REDACTED, redact_secrets

    event = redact_secrets(
        None,
        "info",
        {
            "event": "registered",
            "signing_private_key": "-----BEGIN PRIVATE KEY-----",
            "signature": "c2lnbmF0dXJl",
            "public_key": b"\x01" * 32,
            "participant": "bank-us",
        },
    )
    assert event == {
        "event": "registered",
        "signing_private_key": REDACTED,
        "signature": REDACTED,
        "public_key": "<32 bytes>",
        "participant": "bank-us",
    }


def test_grpc_server_fixture_serves_the_real_services(
    grpc_server: BackgroundServer, open_channel: Callable[..., Any]
) -> None:
    channel = open_channel(grpc_server, "operator")
    response, call = get_participant(channel, "operator")
    assert response.participant.participant_id == "operator"
    assert response.participant.role == participant_pb2.ROLE_OPERATOR
    assert REQUEST_ID_METADATA_KEY in trailing(call)
    assert health_status(channel, PARTICIPANT_SERVICE) == health_pb2.HealthCheckResponse.SERVING
