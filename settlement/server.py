"""The gRPC server: mutual TLS, the interceptor, health, reflection, shutdown.

:func:`create_server` builds a ``grpc.aio`` server around a hub and returns it
with its bound port, so tests listen on port 0 (after the grpc examples'
``create_server(address) -> (server, port)``). :func:`serve` is
``settlement serve``: it opens the hub, serves until SIGTERM or SIGINT, lets
in-flight calls finish within the grace period, closes the hub and returns 0.
:class:`BackgroundServer` runs the same on its own event loop in a thread, for
tests and benchmarks that drive it with ordinary blocking clients.

Transport (common.proto): every call uses mutual TLS and the client
certificate must chain to the configured CA (``require_client_auth``); the
interceptor then maps its subject CN to a participant. Plaintext exists only
with an explicit ``insecure=True`` (``--insecure``), for local debugging.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from settlement.auth import Caller
from settlement.config import ConfigurationError, ServerSettings
from settlement.interceptors import ServiceInterceptor
from settlement.logs import configure_logging
from settlement.metrics import MetricsServer, start_metrics_server

log = structlog.get_logger("settlement.server")

OVERALL_HEALTH_SERVICE = ""
"""The health-checking protocol's name for the server as a whole."""

FIRST_HEALTH_CHECK_TIMEOUT_SECONDS = 5.0
"""How long :func:`serve` waits for the first ``hub.ready()`` before
announcing "listening" anyway (then NOT_SERVING until the database answers)."""

T = TypeVar("T")


class ServedHub(Protocol):
    """What the transport needs of :class:`settlement.hub.Hub`."""

    def resolve_caller(self, common_name: str) -> Caller | None: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


AddServices = Callable[[Any, Any], list[str]]
"""``add_services(server, hub) -> full service names`` (settlement.services)."""

OpenHub = Callable[[], Awaitable[Any]]
"""A coroutine function that opens a hub on the running loop."""


@dataclass
class _Platform:
    """What :func:`create_server` attached to a server beyond its services."""

    health: Any
    service_names: list[str]
    refresher: asyncio.Task[None]
    first_refresh: asyncio.Event


_PLATFORMS: weakref.WeakKeyDictionary[Any, _Platform] = weakref.WeakKeyDictionary()


def create_server(
    settings: ServerSettings,
    hub: ServedHub,
    *,
    add_services: AddServices | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Build the hub's server, bound but not started; call from a running loop.

    Registers the services (``add_services``, by default
    ``settlement.services.add_services``), standard health checking (refreshed
    from ``hub.ready()`` every ``health_interval_seconds`` until
    :func:`stop_server`) and server reflection, behind :class:`ServiceInterceptor`.
    Returns the server and the bound port (the real one when the address
    asks for port 0). Start it with ``await server.start()`` and stop it with
    :func:`stop_server`.
    """
    if settings.insecure:
        log.warning(
            "insecure mode: plaintext without TLS; the caller is taken from the "
            "x-settlement-participant metadata, so anyone can act as anyone. "
            "For local debugging only.",
            address=settings.listen_address,
        )
    server = grpc.aio.server(
        interceptors=[ServiceInterceptor(hub, insecure=settings.insecure)],
        options=[
            ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
            ("grpc.max_send_message_length", settings.max_send_message_bytes),
            ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
            # Two hubs must never share a port silently (Linux SO_REUSEPORT).
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    adder = add_services if add_services is not None else _default_add_services
    service_names = list(adder(server, hub))

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )

    try:
        if settings.insecure:
            port = server.add_insecure_port(settings.listen_address)
        else:
            tls = settings.tls_files()
            credentials = grpc.ssl_server_credentials(
                [(tls.server_private_key, tls.server_certificate)],
                root_certificates=tls.ca_certificate,
                require_client_auth=True,
            )
            port = server.add_secure_port(settings.listen_address, credentials)
    except RuntimeError as error:
        raise ConfigurationError(
            f"expected to listen on {settings.listen_address}, got: {error}"
        ) from None
    if port == 0:
        raise ConfigurationError(f"expected to listen on {settings.listen_address}, got no port")

    first_refresh = asyncio.Event()
    refresher = asyncio.get_running_loop().create_task(
        _keep_health(
            health_servicer,
            hub,
            service_names,
            settings.health_interval_seconds,
            first_refresh,
        ),
        name="settlement-health",
    )
    _PLATFORMS[server] = _Platform(health_servicer, service_names, refresher, first_refresh)
    return server, int(port)


async def wait_for_first_health_check(
    server: grpc.aio.Server, timeout_seconds: float = FIRST_HEALTH_CHECK_TIMEOUT_SECONDS
) -> bool:
    """Wait until the health status reflects ``hub.ready()`` once; False on timeout."""
    platform = _PLATFORMS.get(server)
    if platform is None:
        return False
    try:
        await asyncio.wait_for(platform.first_refresh.wait(), timeout_seconds)
    except TimeoutError:
        return False
    return True


async def stop_server(server: grpc.aio.Server, grace_seconds: float | None) -> None:
    """Stop gracefully: health NOT_SERVING, refuse new calls, let in-flight ones finish.

    Calls still running after ``grace_seconds`` are cancelled.
    """
    platform = _PLATFORMS.pop(server, None)
    if platform is not None:
        # Load balancers watching health drain the instance first.
        await platform.health.enter_graceful_shutdown()
        platform.refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await platform.refresher
    await server.stop(grace_seconds)


async def serve(
    settings: ServerSettings,
    *,
    open_hub: OpenHub | None = None,
    add_services: AddServices | None = None,
) -> int:
    """``settlement serve``: run until SIGTERM or SIGINT, then shut down; returns 0.

    Logs one JSON line ``"listening"`` with the bound ``host`` and ``port``
    (tests and the demo read it to find a port-0 server). On the signal:
    stop accepting calls, give in-flight calls ``grace_period_seconds``, then
    ``await hub.close()`` (commit what is queued, stop the timers).
    """
    configure_logging(settings.log_level)
    opener = open_hub if open_hub is not None else _default_open_hub(settings)
    hub = await opener()
    metrics_server: MetricsServer | None = None
    server: grpc.aio.Server | None = None
    stopped = False
    try:
        server, port = create_server(settings, hub, add_services=add_services)
        await server.start()
        await wait_for_first_health_check(server)
        if settings.metrics_port:
            metrics_server = start_metrics_server(settings.metrics_port, settings.metrics_address)
        # Handlers first: whoever reads "listening" may send SIGTERM at once.
        stop_signal = _install_stop_signals()
        host = listen_host(settings.listen_address)
        log.info(
            "listening",
            address=join_host_port(host, port),
            host=host,
            port=port,
            tls=not settings.insecure,
            metrics_port=metrics_server.port if metrics_server is not None else None,
        )
        received = await stop_signal
        log.info(
            "stopping",
            signal=received,
            grace_period_seconds=settings.grace_period_seconds,
        )
        await stop_server(server, settings.grace_period_seconds)
        stopped = True
    finally:
        if server is not None and not stopped:
            await stop_server(server, None)
        if metrics_server is not None:
            metrics_server.close()
        await hub.close()
    log.info("stopped")
    return 0


def run(settings: ServerSettings) -> int:
    """Run :func:`serve` on a new event loop (the CLI's entry point)."""
    return asyncio.run(serve(settings))


def listen_host(address: str) -> str:
    """The host part of ``host:port`` (``[::1]:0`` -> ``::1``)."""
    host, _, _ = address.rpartition(":")
    return host.removeprefix("[").removesuffix("]")


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class BackgroundServer:
    """A hub and its server on their own event loop, in a thread.

    For tests and benchmarks that call the server with blocking clients::

        with BackgroundServer(settings, lambda: open_hub(hub_settings)) as running:
            channel = grpc.secure_channel(f"127.0.0.1:{running.port}", credentials)

    ``open_hub`` is called on the server's loop. :meth:`stop` shuts down as
    :func:`serve` does on SIGTERM (grace period, then ``hub.close()``).
    """

    def __init__(
        self,
        settings: ServerSettings,
        open_hub: OpenHub,
        *,
        add_services: AddServices | None = None,
    ) -> None:
        self.settings = settings
        self._open_hub = open_hub
        self._add_services = add_services
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.hub: Any = None
        self.port = 0

    @property
    def address(self) -> str:
        return join_host_port(listen_host(self.settings.listen_address), self.port)

    def start(self, timeout_seconds: float = 60.0) -> int:
        """Open the hub, start serving; returns the bound port."""
        self._thread = threading.Thread(target=self._run, name="settlement-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_seconds):
            raise TimeoutError(f"the server did not start within {timeout_seconds} s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.port

    def stop(self, timeout_seconds: float = 60.0) -> None:
        """Stop gracefully and close the hub; re-raise a failure of the server's loop."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_seconds)
        if self._thread.is_alive():
            raise TimeoutError(f"the server did not stop within {timeout_seconds} s")
        self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def run_coroutine(self, coroutine: Coroutine[Any, Any, T], timeout_seconds: float = 30.0) -> T:
        """Run ``coroutine`` on the server's loop (e.g. to use the hub) and return its result."""
        if self._loop is None:
            raise RuntimeError("the server is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_seconds)

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        except BaseException as error:
            self._error = error
        finally:
            self._started.set()
            _close_loop(loop)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.hub = await self._open_hub()
        server: grpc.aio.Server | None = None
        try:
            server, self.port = create_server(
                self.settings, self.hub, add_services=self._add_services
            )
            await server.start()
            await wait_for_first_health_check(server)
            self._started.set()
            await self._stop.wait()
            await stop_server(server, self.settings.grace_period_seconds)
            server = None
        finally:
            if server is not None:
                await stop_server(server, None)
            await self.hub.close()


LOOP_CLOSE_TIMEOUT_SECONDS = 5.0
"""How long leftover tasks get to finish once the server has stopped."""


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Like the end of ``asyncio.run``, but bounded in time.

    ``asyncio.run`` waits forever for cancelled tasks; now and then a grpc.aio
    task (``_request_registered_call``) outlives ``server.stop()`` and ignores
    cancellation, which hung the background server's thread. Leftover tasks
    get a bounded time to finish, then the loop is closed regardless.
    """
    try:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=LOOP_CLOSE_TIMEOUT_SECONDS))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(
            asyncio.wait_for(loop.shutdown_default_executor(), LOOP_CLOSE_TIMEOUT_SECONDS)
        )
    except (TimeoutError, RuntimeError) as error:
        log.warning("server loop closed with work left", error=type(error).__name__)
    finally:
        loop.close()


async def _keep_health(
    health_servicer: Any,
    hub: ServedHub,
    service_names: list[str],
    interval_seconds: float,
    first_refresh: asyncio.Event,
) -> None:
    """Set every service SERVING or NOT_SERVING from ``hub.ready()``, until cancelled.

    :func:`stop_server` cancels it. (Not tied to ``server.wait_for_termination()``:
    cancelling that wait would cancel the server's own shutdown future.)
    """
    serving: bool | None = None
    while True:
        try:
            ready = bool(await hub.ready())
        except Exception as error:  # a failing check means "not ready", never a crash
            log.warning("health check failed", error=type(error).__name__)
            ready = False
        if ready != serving:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if ready
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in (OVERALL_HEALTH_SERVICE, *service_names):
                await health_servicer.set(name, status)
            status_name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            if not ready:
                log.warning("health changed", status=status_name)
            elif serving is not None:
                log.info("health changed", status=status_name)
            serving = ready
        first_refresh.set()
        await asyncio.sleep(interval_seconds)


def _install_stop_signals() -> asyncio.Future[str]:
    """Handle SIGTERM and SIGINT; the future resolves to the first signal's name."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[str] = loop.create_future()

    def on_signal(number: signal.Signals) -> None:
        if received.done():
            log.warning("already stopping", signal=number.name)
        else:
            received.set_result(number.name)

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, on_signal, number)
    # The handlers stay installed until the loop closes: a second Ctrl-C while
    # in-flight calls finish is logged, and does not kill the process before
    # the hub is closed.
    return received


def _default_open_hub(settings: ServerSettings) -> OpenHub:
    hub_settings = settings.hub_settings()

    async def open_default_hub() -> Any:
        from settlement.hub import open_hub  # noqa: PLC0415 - the database layer on demand

        return await open_hub(hub_settings)

    return open_default_hub


def _default_add_services(server: Any, hub: Any) -> list[str]:
    services = importlib.import_module("settlement.services")
    return list(services.add_services(server, hub))
