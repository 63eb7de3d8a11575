"""Fixtures for every gRPC test: a development PKI, a running hub, channels.

A server runs on 127.0.0.1, port 0, with mutual TLS, on its own event loop in
a thread (:class:`settlement.server.BackgroundServer`), so tests call it with
ordinary blocking stubs and stay plain functions (no pytest-asyncio). A test
that wants ``grpc.aio`` opens its channel inside ``asyncio.run(...)``::

    async def scenario() -> None:
        credentials = dev_pki.channel_credentials("bank-us")
        async with grpc.aio.secure_channel(grpc_server.address, credentials) as channel:
            ...
    asyncio.run(scenario())

Fixtures:

- ``dev_pki`` (session): :class:`settlement.pki.DevPki` written by
  ``create_dev_pki``; participants ``operator``, ``auditor``, ``bank-us``,
  ``bank-pk``, ``fx-provider``, ``lender``, each with a client certificate
  (CN = id) and an Ed25519 signing key.
- ``grpc_server``: the real hub (``settlement.hub.open_hub``) and services
  (``settlement.services.add_services``) on a fresh database, once on SQLite
  and once on PostgreSQL (the ``database`` fixture of tests/conftest.py).
  Only the operator is registered (the hub's bootstrap); register others
  through ``ParticipantService`` as the operator.
- ``start_server``: a factory for servers with other settings, another hub
  (a fake) or other services: ``start_server(open_hub=..., add_services=...,
  database=..., **ServerSettings fields)``. Servers stop at teardown. A test
  that passes the ``database`` fixture must request ``database`` BEFORE
  ``start_server`` in its parameters, so that the server stops before the
  PostgreSQL schema is dropped (``grpc_server`` takes care of this itself).
- ``open_channel``: ``open_channel(server, "bank-us")`` is a blocking
  ``grpc.Channel`` presenting that participant's client certificate;
  ``open_channel(server, None)`` presents none. Closed at teardown.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from settlement.config import ServerSettings
from settlement.pki import DevPki, create_dev_pki
from settlement.server import AddServices, BackgroundServer, OpenHub

TEST_ORIGIN = "test.settlement.example/ledger"

TEST_GRACE_PERIOD_SECONDS = 2.0
"""Short: a test's server has no long call to wait for at teardown."""

TEST_HEALTH_INTERVAL_SECONDS = 0.1
"""Fast enough for health tests to see a change within a second."""


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """A development PKI for the whole session (read-only for tests)."""
    return create_dev_pki(tmp_path_factory.mktemp("grpc") / "pki")


def server_settings(pki: DevPki, database: str, **overrides: Any) -> ServerSettings:
    """Settings of a test server: 127.0.0.1:0, mutual TLS with ``pki``, ``database``."""
    values: dict[str, Any] = {
        "listen_address": "127.0.0.1:0",
        "tls_directory": pki.directory,
        "grace_period_seconds": TEST_GRACE_PERIOD_SECONDS,
        "health_interval_seconds": TEST_HEALTH_INTERVAL_SECONDS,
        "database": database,
        "origin": TEST_ORIGIN,
        "log_key_path": pki.log_private_key_path,
        "operator_id": "operator",
        "operator_common_name": pki.participant("operator").certificate_common_name,
        "operator_public_key_path": pki.participant("operator").signing_public_key_path,
        # Small groups and frequent checkpoints exercise both paths in short tests.
        "checkpoint_every_entries": 100,
        "checkpoint_every_seconds": 1,
    }
    values.update(overrides)
    if values.get("insecure"):
        values["tls_directory"] = None
    return ServerSettings(**values)


def real_hub_opener(settings: ServerSettings) -> OpenHub:
    """Open ``settlement.hub`` with the hub part of ``settings``."""
    hub_settings = settings.hub_settings()

    async def open_real_hub() -> Any:
        from settlement.hub import open_hub

        return await open_hub(hub_settings)

    return open_real_hub


@pytest.fixture
def start_server(dev_pki: DevPki, tmp_path: Path) -> Iterator[Callable[..., BackgroundServer]]:
    """Factory: start a hub server; every one is stopped at teardown."""
    running: list[BackgroundServer] = []

    def start(
        *,
        open_hub: OpenHub | None = None,
        add_services: AddServices | None = None,
        database: str | None = None,
        **overrides: Any,
    ) -> BackgroundServer:
        location = database or str(tmp_path / f"hub-{len(running)}.db")
        settings = server_settings(dev_pki, location, **overrides)
        if add_services is None and not services_available():
            pytest.skip("settlement.services.add_services is not built yet")
        server = BackgroundServer(
            settings,
            open_hub if open_hub is not None else real_hub_opener(settings),
            add_services=add_services,
        )
        server.start()
        running.append(server)
        return server

    yield start
    errors: list[BaseException] = []
    for server in reversed(running):
        try:
            server.stop()
        except BaseException as error:  # stop every server, then report
            errors.append(error)
    if errors:
        raise errors[0]


def services_available() -> bool:
    """Whether ``settlement.services.add_services`` exists (built by another change)."""
    try:
        services = importlib.import_module("settlement.services")
    except ImportError:
        return False
    return hasattr(services, "add_services")


@pytest.fixture
def grpc_server(
    start_server: Callable[..., BackgroundServer], database: str
) -> Iterator[BackgroundServer]:
    """The real hub and services on a fresh database, on SQLite and on PostgreSQL."""
    server = start_server(database=database)
    yield server
    # Before the database fixture drops the schema under the hub's connections.
    server.stop()


@pytest.fixture
def open_channel(dev_pki: DevPki) -> Iterator[Callable[..., Any]]:
    """Factory: ``open_channel(server, participant_id)`` -> a blocking channel."""
    channels: list[Any] = []

    def open_(
        server: BackgroundServer,
        participant_id: str | None = "operator",
        *,
        credentials: Any = None,
        options: tuple[tuple[str, Any], ...] = (),
    ) -> Any:
        if server.settings.insecure:
            channel = grpc.insecure_channel(server.address, options=options)
        else:
            chosen = credentials or dev_pki.channel_credentials(participant_id)
            channel = grpc.secure_channel(server.address, chosen, options=options)
        channels.append(channel)
        return channel

    yield open_
    for channel in channels:
        channel.close()
