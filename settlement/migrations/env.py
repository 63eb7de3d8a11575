"""Alembic environment for the service's tables."""

from __future__ import annotations

from alembic import context

from settlement.migrations import VERSION_TABLE
from settlement.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
