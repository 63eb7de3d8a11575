"""Alembic migrations for the ledger schema, run programmatically.

``upgrade(engine)`` brings a database to the newest schema. Concurrent
starters are serialized (SQLite: the write lock of ``BEGIN IMMEDIATE``;
PostgreSQL: a transaction-scoped advisory lock), so two processes opening a
fresh database cannot both create it.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATION_LOCK_KEY = 0x5E77_1E00_0001
"""PostgreSQL advisory-lock key held while migrating (distinct from the writer lock)."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
