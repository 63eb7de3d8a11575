"""Reliability tests reuse the gRPC fixtures (the development PKI).

Tests record their figures (outage timings, load throughput, latency, memory)
in :data:`FIGURES`; they are printed in the terminal summary of the run.
"""

from typing import Any

import pytest

from tests.grpc.conftest import dev_pki

__all__ = ["dev_pki"]

FIGURES: dict[str, dict[str, Any]] = {}
"""Section -> name -> value, printed by :func:`pytest_terminal_summary`."""


@pytest.fixture(scope="session")
def figures() -> dict[str, dict[str, Any]]:
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for section, values in FIGURES.items():
        terminalreporter.write_line(f"{section}:")
        for name, value in values.items():
            terminalreporter.write_line(f"  {name}: {value}")
