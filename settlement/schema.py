"""The service's own tables: read models (projections) of ledger commands.

They are written in the same database transaction as the ledger entries that
justify them (``ledger.store.Projection``) and can be rebuilt from the log.
Created by the Alembic migrations in ``settlement/migrations`` (version table
``settlement_alembic_version``, apart from the ledger's).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table

metadata = MetaData()

participants = Table(
    "participants",
    metadata,
    Column("participant_id", String(64), primary_key=True),
    Column("legal_name", String(140), nullable=False),
    Column("role", String(16), nullable=False),
    Column("country", String(2), nullable=False),
    Column("bic", String(11), nullable=False),
    Column("lei", String(20), nullable=False),
    Column("aba_routing_number", String(9), nullable=False),
    Column("iban_bank_code", String(16), nullable=False),
    Column("common_name", String(128), nullable=False, unique=True),
    Column("journal_index", BigInteger, nullable=False),
    Column("registered_at_us", BigInteger, nullable=False),
)
