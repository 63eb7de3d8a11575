"""Fixtures of the security tests: the development PKI, a populated hub, the figures.

- ``dev_pki`` (session): the gRPC tests' development PKI.
- ``world`` (module, SQLite and PostgreSQL): a populated hub
  (:func:`tests.security.world.populated_hub`), one per module and backend.
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
from tests.security.world import World, populated_hub

__all__ = ["dev_pki"]

FIGURES: dict[str, dict[str, Any]] = {}
"""Section -> name -> value, printed by :func:`pytest_terminal_summary`."""


@pytest.fixture(scope="session")
def figures() -> dict[str, dict[str, Any]]:
    return FIGURES


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest,
    dev_pki: DevPki,
    database_factory: Callable[[str], AbstractContextManager[str]],
) -> Iterator[World]:
    with database_factory(request.param) as location, populated_hub(dev_pki, location) as built:
        built.backend = request.param
        yield built


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("security figures")
    for section, values in FIGURES.items():
        terminalreporter.write_line(f"{section}:")
        for name, value in values.items():
            terminalreporter.write_line(f"  {name}: {value}")
