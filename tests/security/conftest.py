"""Fixtures of the security tests: the development PKI, a populated hub, the figures.

- ``dev_pki`` (session): the gRPC tests' development PKI.
- ``shared_hub`` (session, SQLite and PostgreSQL): the real hub, one per backend;
- ``world`` (module): this module's own resources on the shared hub
  (:func:`tests.security.world.populate`).
- ``figures`` (session): tests record the figures the closing note asks for
  (requests fuzzed per RPC, matrix cells); they are printed at the end of
  the run, in the terminal summary, so ``make test`` shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from settlement.pki import DevPki
from tests.grpc.conftest import dev_pki
from tests.grpc.hub_client import HubClient, running_hub
from tests.security.world import World, populate

__all__ = ["dev_pki"]

FIGURES: dict[str, dict[str, Any]] = {}
"""Section -> name -> value, printed by :func:`pytest_terminal_summary`."""


@pytest.fixture(scope="session")
def figures() -> dict[str, dict[str, Any]]:
    return FIGURES


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def shared_hub(
    request: pytest.FixtureRequest,
    dev_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
) -> Iterator[tuple[str, HubClient]]:
    """One real hub per backend for the session's modules (starting one takes seconds)."""
    with (
        database_factory(request.param) as location,
        running_hub(dev_pki, location, log_level="error") as client,
    ):
        yield request.param, client


@pytest.fixture(scope="module")
def world(shared_hub: tuple[str, HubClient]) -> Iterator[World]:
    """Resources of this module's own on the shared hub (tests.security.world.populate).

    A module whose tests may damage what others rely on (the fuzz rotates the
    demo participants' keys, freezes their accounts) overrides this fixture
    with a hub of its own.
    """
    backend, client = shared_hub
    built = populate(client)
    built.backend = backend
    yield built
    built.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("security figures")
    for section, values in FIGURES.items():
        terminalreporter.write_line(f"{section}:")
        for name, value in values.items():
            terminalreporter.write_line(f"  {name}: {value}")
