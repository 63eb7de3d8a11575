"""The ledger's tables (SQLAlchemy Core).

The schema itself is created and upgraded by the Alembic migrations in
``ledger/migrations``; this module describes the tables for queries, and the
first migration is generated from it by hand so the two never drift (a test
compares them).

Nothing is ever updated but the running totals and status of an account and
the state of a pending transaction; the journal and postings are append-only.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

journal = Table(
    "journal",
    metadata,
    Column("journal_index", BigInteger, primary_key=True, autoincrement=False),
    Column("entry_key", String(160), nullable=False, unique=True),
    Column("kind", String(24), nullable=False),
    Column("request", LargeBinary, nullable=False),
    Column("leaf", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("committed_at_us", BigInteger, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("owner", String(128), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("normal_side", String(6), nullable=False),
    Column("flags", String(100), nullable=False),
    Column("debit_limit_minor", BigInteger, nullable=True),
    Column("metadata", Text, nullable=False),
    Column("status", String(8), nullable=False),
    Column("journal_index", BigInteger, nullable=False),
    Column("debits_posted", BigInteger, nullable=False),
    Column("credits_posted", BigInteger, nullable=False),
    Column("debits_pending", BigInteger, nullable=False),
    Column("credits_pending", BigInteger, nullable=False),
)

transactions = Table(
    "transactions",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("kind", String(24), nullable=False),
    Column("state", String(24), nullable=False),
    Column("code", String(32), nullable=False),
    Column("reference", String(140), nullable=False, index=True),
    Column("metadata", Text, nullable=False),
    # At most one post, void or expiry per pending, and one reversal per
    # transaction: the unique constraints back the in-code checks.
    Column("pending_id", String(128), nullable=True, unique=True),
    Column("reverses_id", String(128), nullable=True, unique=True),
    Column("timeout_at_us", BigInteger, nullable=True),
    Column("committed_at_us", BigInteger, nullable=False),
    Index("ix_transactions_state_timeout", "state", "timeout_at_us"),
)

postings = Table(
    "postings",
    metadata,
    Column("journal_index", BigInteger, primary_key=True, autoincrement=False),
    Column("sequence", Integer, primary_key=True, autoincrement=False),
    Column("account_id", String(128), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("side", String(6), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    # posted: moves money; pending: reserves it; released: ends a reservation.
    Column("effect", String(8), nullable=False),
    Index("ix_postings_account_index", "account_id", "journal_index"),
)

merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("node_index", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", LargeBinary, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("signer", String(128), primary_key=True),
    Column("first_index", BigInteger, primary_key=True, autoincrement=False),
    Column("last_index", BigInteger, nullable=True),
    Column("public_key", LargeBinary(32), nullable=False),
)
