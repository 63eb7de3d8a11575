"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL tests use ``SETTLEMENT_TEST_POSTGRES_URL`` (``.ci/run`` creates a
fresh database and exports it). Each test gets its own schema there, dropped
afterwards. Without the variable, or with the server unreachable, those cases
skip with a message saying how to enable them, except under ``CI=true``,
where they fail: CI must never pass by skipping the production store.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import structlog
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

# In-process servers log every call at info level; tests keep warnings and
# errors only, so a failing test's output shows what matters. (A server that
# runs `settlement serve` configures its own JSON logging.)
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

POSTGRES_ENV = "SETTLEMENT_TEST_POSTGRES_URL"
ENABLE_HINT = (
    f"set {POSTGRES_ENV}=postgresql+psycopg://postgres@127.0.0.1:5432/DATABASE "
    "(an existing, empty database) to run the PostgreSQL cases"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_base_url() -> str:
    """The PostgreSQL URL for tests, or skip (fail under CI) when there is none."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if in_ci():
            pytest.fail(f"CI=true but {POSTGRES_ENV} is not set: {ENABLE_HINT}")
        pytest.skip(f"PostgreSQL not configured: {ENABLE_HINT}")
    try:
        engine = create_engine(url)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:
        if in_ci():
            pytest.fail(f"PostgreSQL at {POSTGRES_ENV} is unreachable under CI: {error}")
        pytest.skip(f"PostgreSQL at {POSTGRES_ENV} is unreachable ({error}); {ENABLE_HINT}")
    return url


@contextmanager
def postgres_schema(base: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema of ``base``, dropped on exit.

    Usable at any scope (per test, per module, per hypothesis example).
    """
    schema = "t_" + uuid.uuid4().hex[:16]
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A fresh, empty database location on ``backend`` ("sqlite" or "postgres").

    For tests that need more than one database per test (hypothesis examples)
    or a database shared by a module. PostgreSQL skips as ``postgres_url`` does.
    """
    if backend == "postgres":
        with postgres_schema(postgres_base_url()) as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="ledger-") as directory:
        yield str(Path(directory) / "ledger.db")


@pytest.fixture(scope="session")
def database_factory() -> Callable[[str], AbstractContextManager[str]]:
    """``fresh_database`` for tests: ``with database_factory("sqlite") as location: ...``."""
    return fresh_database


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    with postgres_schema(postgres_base_url()) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "ledger.db")


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database location on each backend."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))
