"""The Alembic migrations produce exactly ``ledger.schema.metadata``, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from ledger import migrations
from ledger.schema import metadata
from ledger.store import database_url


def test_migrations_match_schema(database: str) -> None:
    engine = create_engine(database_url(database))
    try:
        migrations.upgrade(engine)
        migrations.upgrade(engine)  # a second run is a no-op
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, metadata) == []
            assert context.get_current_revision() is not None
            tables = set(inspect(connection).get_table_names())
        assert tables == set(metadata.tables) | {"alembic_version"}
    finally:
        engine.dispose()
