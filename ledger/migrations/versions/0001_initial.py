"""Initial ledger schema: journal, accounts, transactions, postings, Merkle nodes,
checkpoints and signing keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "journal",
        sa.Column("journal_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("entry_key", sa.String(160), nullable=False, unique=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("request", sa.LargeBinary, nullable=False),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("committed_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("normal_side", sa.String(6), nullable=False),
        sa.Column("flags", sa.String(100), nullable=False),
        sa.Column("debit_limit_minor", sa.BigInteger, nullable=True),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False),
        sa.Column("debits_posted", sa.BigInteger, nullable=False),
        sa.Column("credits_posted", sa.BigInteger, nullable=False),
        sa.Column("debits_pending", sa.BigInteger, nullable=False),
        sa.Column("credits_pending", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_accounts_owner", "accounts", ["owner"])
    op.create_table(
        "transactions",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("reference", sa.String(140), nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("pending_id", sa.String(128), nullable=True, unique=True),
        sa.Column("reverses_id", sa.String(128), nullable=True, unique=True),
        sa.Column("timeout_at_us", sa.BigInteger, nullable=True),
        sa.Column("committed_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_transactions_reference", "transactions", ["reference"])
    op.create_index("ix_transactions_state_timeout", "transactions", ["state", "timeout_at_us"])
    op.create_table(
        "postings",
        sa.Column("journal_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("sequence", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("side", sa.String(6), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("effect", sa.String(8), nullable=False),
    )
    op.create_index("ix_postings_account_index", "postings", ["account_id", "journal_index"])
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("node_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.LargeBinary, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "signing_keys",
        sa.Column("signer", sa.String(128), primary_key=True),
        sa.Column("first_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("last_index", sa.BigInteger, nullable=True),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "signing_keys",
        "checkpoints",
        "merkle_nodes",
        "postings",
        "transactions",
        "accounts",
        "journal",
    ):
        op.drop_table(table)
