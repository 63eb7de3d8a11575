"""The one server interceptor: identity, request id, logs, errors, metrics.

Every RPC handler (unary or streaming responses, coroutine, async generator or
plain function) runs inside :class:`ServiceInterceptor`, which

1. assigns a request id: the client's ``x-request-id`` when it is 1..128
   printable ASCII characters, else a new UUID4; echoed in the trailing
   metadata of every answer, success or failure;
2. resolves the caller from the verified client certificate's subject common
   name (``auth_context()["x509_common_name"]``) with ``hub.resolve_caller``
   and binds it (:func:`settlement.auth.bind_caller`). No name, or a name no
   participant registered: UNAUTHENTICATED
   ``certificate_must_identify_participant`` (common.proto, check 1).
   Health and reflection are exempt: they need a certificate the CA signed
   (the TLS layer checks that) but no registered participant;
3. binds ``request_id``, ``participant`` and ``method`` to structlog's
   context, so every log line of the call carries them;
4. translates failures, in this one place (DESIGN.md section 1): a database
   that fails (SQLAlchemy's ``OperationalError``, or a connection found
   invalidated) becomes UNAVAILABLE ``unavailable``; a
   :class:`ledger.errors.LedgerError` becomes ``grpc_status_for(error)`` with
   the status message ``"<code>: <message>"`` and a serialized
   ``settlement.v1.Error`` in the trailing metadata key
   ``settlement-error-bin``; any other exception becomes INTERNAL
   ``"internal error (request id X)"``, logged with its traceback and never
   shown to the caller;
5. counts the call and its latency by method and status code.

Insecure mode (``settlement serve --insecure``, local debugging only): there
is no certificate, so the caller is whoever the ``x-settlement-participant``
metadata names (taken as the certificate common name the caller would have
presented). Anyone who can reach the port can then act as anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import Token
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import structlog

from ledger.errors import LedgerError
from settlement import metrics
from settlement.auth import Caller, bind_caller, unbind_caller
from settlement.errors import InvalidArgument, Unauthenticated, Unavailable, grpc_status_for
from settlement.v1 import common_pb2

log = structlog.get_logger("settlement.rpc")

REQUEST_ID_METADATA_KEY = "x-request-id"
PARTICIPANT_METADATA_KEY = "x-settlement-participant"
ERROR_METADATA_KEY = "settlement-error-bin"

COMMON_NAME_AUTH_PROPERTY = "x509_common_name"
"""gRPC core's auth-context property holding the peer certificate's subject CN
(set only when the TLS handshake verified the certificate)."""

EXEMPT_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Methods that need no registered participant: load balancers and grpcurl
must be able to ask whether the hub is up and what it serves."""

REQUEST_ID_LENGTH_MAX = 128
"""A client's request id longer than this, or with characters outside
0x21..0x7E, is replaced: it goes into every log line of the call."""

COMMON_NAME_LENGTH_MAX = 64
"""RFC 5280 ub-common-name; a longer name cannot be a registered one."""

STATUS_MESSAGE_LENGTH_MAX = 1000
ERROR_FIELDS_MAX = 100
ERROR_FIELD_LENGTH_MAX = 200
"""The status message and the error detail travel in HTTP/2 trailers, which
clients cap (8 KiB by default in gRPC); bounded, they always arrive."""

INTERNAL_ERROR_MESSAGE = "internal error (request id {request_id})"

DATABASE_UNAVAILABLE_MESSAGE = (
    "the database is unavailable; retry with backoff (a write: with the same instruction)"
)
"""common.proto, UNAVAILABLE: "its database is down". A read or the caller's lookup
that meets a failing database answers as the sequencer does for a write."""

UNAUTHENTICATED_MISSING = (
    "the call presented no client certificate common name; present the client "
    "certificate issued for your participant"
)


class RequestMustParse(InvalidArgument):
    """The request bytes are not a message of the RPC's request type (corrupt wire
    format, a string field that is not UTF-8): refused like any malformed input,
    instead of gRPC's UNKNOWN naming a Python exception."""

    code = "request_must_parse"


@dataclass(frozen=True, slots=True)
class _Unparsed:
    """What a request that did not deserialize becomes, for the handler to refuse."""

    reason: str


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserialize`` that returns :class:`_Unparsed` instead of raising."""
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:  # DecodeError and kin: the bytes are the caller's fault
            return _Unparsed(_bounded(str(error), STATUS_MESSAGE_LENGTH_MAX // 2))

    return parse


def _require_parsed(request: Any) -> None:
    if isinstance(request, _Unparsed):
        raise RequestMustParse(f"the request does not parse: {request.reason}")


class CallerResolver(Protocol):
    """What the interceptor needs of the hub."""

    def resolve_caller(self, common_name: str) -> Caller | None: ...


# "misc": grpc is untyped (Any) unless types-grpcio is installed.
class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc,unused-ignore]
    """Wraps every handler of the server; see the module docstring."""

    def __init__(self, hub: CallerResolver, *, insecure: bool = False) -> None:
        self._hub = hub
        self._insecure = insecure

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            # Unknown method: gRPC answers UNIMPLEMENTED. Not counted, so that
            # made-up method names cannot grow the metrics' label sets.
            return None
        method: str = handler_call_details.method
        exempt = method.startswith(EXEMPT_METHOD_PREFIXES)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary_response(handler.unary_unary, method, exempt),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary_response(handler.stream_unary, method, exempt),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream_response(handler.unary_stream, method, exempt),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._stream_response(handler.stream_stream, method, exempt),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _unary_response(
        self, behavior: Callable[..., Any], method: str, exempt: bool
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def handle(request: Any, context: Any) -> Any:
            call = _Call(method, exempt, context)
            try:
                self._authenticate(call, context)
                _require_parsed(request)
                response = behavior(request, context)
                if inspect.isawaitable(response):
                    response = await response
            except BaseException as error:
                await call.fail(error)
                raise
            else:
                call.succeed()
                return response
            finally:
                call.close()

        return handle

    def _stream_response(
        self, behavior: Callable[..., Any], method: str, exempt: bool
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def handle(request: Any, context: Any) -> AsyncIterator[Any]:
            call = _Call(method, exempt, context)
            try:
                self._authenticate(call, context)
                _require_parsed(request)
                responses = behavior(request, context)
                if hasattr(responses, "__aiter__"):
                    async with _closing(responses):
                        async for response in responses:
                            yield response
                elif inspect.isawaitable(responses):
                    # A handler that writes with context.write() and returns None.
                    await responses
                elif responses is not None:
                    for response in responses:
                        yield response
            except BaseException as error:
                await call.fail(error)
                raise
            else:
                call.succeed()
            finally:
                call.close()

        return handle

    def _authenticate(self, call: _Call, context: Any) -> None:
        if call.exempt:
            return
        common_name = (
            _metadata_value(context, PARTICIPANT_METADATA_KEY)
            if self._insecure
            else _certificate_common_name(context)
        )
        if not common_name:
            raise Unauthenticated(UNAUTHENTICATED_MISSING)
        caller = (
            self._hub.resolve_caller(common_name)
            if len(common_name) <= COMMON_NAME_LENGTH_MAX
            else None
        )
        if caller is None:
            raise Unauthenticated(
                f"no participant is registered with certificate common name "
                f"{_quoted(common_name)}; the operator registers it with "
                "ParticipantService.RegisterParticipant"
            )
        call.bind(caller)


class _Call:
    """The state of one call between the interceptor's entry and exit."""

    def __init__(self, method: str, exempt: bool, context: Any) -> None:
        self.method = method
        self.exempt = exempt
        self.context = context
        self.started = time.perf_counter()
        self.request_id = _request_id(context)
        self.code = grpc.StatusCode.OK
        self._caller_token: Token[Caller | None] | None = None
        self._log_tokens: dict[str, Any] = dict(
            structlog.contextvars.bind_contextvars(
                request_id=self.request_id, method=method, participant=None
            )
        )
        context.set_trailing_metadata(((REQUEST_ID_METADATA_KEY, self.request_id),))

    def bind(self, caller: Caller) -> None:
        self._caller_token = bind_caller(caller)
        self._log_tokens |= {
            key: token
            for key, token in structlog.contextvars.bind_contextvars(
                participant=caller.participant_id
            ).items()
            if key not in self._log_tokens
        }

    def succeed(self) -> None:
        # A handler may have set a status itself (context.set_code) and returned.
        self.code = _status_code(self.context) or grpc.StatusCode.OK

    async def fail(self, error: BaseException) -> None:
        """Turn ``error`` into the call's status; aborts (raises) for our own errors."""
        if _database_unavailable(error):
            log.warning("rpc refused: database unavailable", error=type(error).__name__)
            error = Unavailable(DATABASE_UNAVAILABLE_MESSAGE)
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            self.code = grpc.StatusCode.CANCELLED
            return
        if isinstance(error, grpc.aio.AbortError):
            # The handler aborted on its own with a status of its choosing.
            self.code = _status_code(self.context) or grpc.StatusCode.UNKNOWN
            return
        if isinstance(error, LedgerError):
            self.code = grpc_status_for(error)
            detail = common_pb2.Error(
                code=error.code,
                message=_bounded(error.message, STATUS_MESSAGE_LENGTH_MAX),
                fields=[
                    _bounded(str(field), ERROR_FIELD_LENGTH_MAX)
                    for field in list(getattr(error, "fields", None) or ())[:ERROR_FIELDS_MAX]
                ],
            )
            log.info("rpc refused", code=self.code.name, error_code=error.code)
            await self.context.abort(
                self.code,
                _bounded(f"{error.code}: {error.message}", STATUS_MESSAGE_LENGTH_MAX),
                trailing_metadata=(
                    (REQUEST_ID_METADATA_KEY, self.request_id),
                    (ERROR_METADATA_KEY, detail.SerializeToString()),
                ),
            )
            return
        if isinstance(error, Exception):
            self.code = grpc.StatusCode.INTERNAL
            log.error("rpc failed with an unexpected error", exc_info=error)
            await self.context.abort(
                grpc.StatusCode.INTERNAL,
                INTERNAL_ERROR_MESSAGE.format(request_id=self.request_id),
                trailing_metadata=((REQUEST_ID_METADATA_KEY, self.request_id),),
            )
            return
        # KeyboardInterrupt, SystemExit: not the call's business to translate.
        self.code = grpc.StatusCode.UNKNOWN

    def close(self) -> None:
        duration_seconds = time.perf_counter() - self.started
        metrics.record_call(self.method, self.code.name, duration_seconds)
        log_method = log.debug if self.exempt else log.info
        log_method("rpc", code=self.code.name, duration_ms=round(duration_seconds * 1000, 3))
        if self._caller_token is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                unbind_caller(self._caller_token)
        # A streaming call's generator may be closed from another context (the
        # server finalizing it): the tokens are then not ours to reset, and
        # that context dies with the call anyway.
        with contextlib.suppress(ValueError, RuntimeError):
            structlog.contextvars.reset_contextvars(**self._log_tokens)


@contextlib.asynccontextmanager
async def _closing(iterator: Any) -> AsyncIterator[None]:
    """Close the handler's async generator as soon as we stop reading it."""
    try:
        yield
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()


def _database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` is the database failing (down, restarting, connection cut, I/O).

    Looked up in ``sys.modules``: if SQLAlchemy was never imported, no error
    can come from it (and the transport never loads the database layer).
    """
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None or not isinstance(error, exc.DBAPIError):
        return False
    return isinstance(error, exc.OperationalError) or bool(error.connection_invalidated)


def _request_id(context: Any) -> str:
    candidate = _metadata_value(context, REQUEST_ID_METADATA_KEY)
    if (
        candidate
        and len(candidate) <= REQUEST_ID_LENGTH_MAX
        and all("\x21" <= character <= "\x7e" for character in candidate)
    ):
        return candidate
    return str(uuid.uuid4())


def _metadata_value(context: Any, key: str) -> str | None:
    for item in context.invocation_metadata() or ():
        item_key, value = item
        if item_key == key and isinstance(value, str):
            return value
    return None


def _certificate_common_name(context: Any) -> str | None:
    names = context.auth_context().get(COMMON_NAME_AUTH_PROPERTY) or []
    if len(names) != 1:
        return None
    try:
        return bytes(names[0]).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _status_code(context: Any) -> grpc.StatusCode | None:
    code = context.code() if hasattr(context, "code") else None
    if code is None or isinstance(code, grpc.StatusCode):
        return code
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status
    return None


def _bounded(text: str, length_max: int) -> str:
    return text if len(text) <= length_max else text[: length_max - 3] + "..."


def _quoted(text: str) -> str:
    return repr(_bounded(text, COMMON_NAME_LENGTH_MAX + 8))
