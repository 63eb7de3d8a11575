"""FX rates and quotes, payments and their status history.

Revision ID: s0002
Revises: s0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0002"
down_revision = "s0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fx_rates",
        sa.Column("rate_id", sa.String(128), primary_key=True),
        sa.Column("fx_provider_id", sa.String(64), nullable=False),
        sa.Column("source_currency", sa.String(3), nullable=False),
        sa.Column("target_currency", sa.String(3), nullable=False),
        sa.Column("rate", sa.String(40), nullable=False),
        sa.Column("fee_minor", sa.BigInteger, nullable=False),
        sa.Column("valid_from_us", sa.BigInteger, nullable=False),
        sa.Column("valid_until_us", sa.BigInteger, nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
    )
    op.create_index(
        "fx_rates_by_pair", "fx_rates", ["fx_provider_id", "source_currency", "target_currency"]
    )
    op.create_table(
        "fx_quotes",
        sa.Column("quote_id", sa.String(128), primary_key=True),
        sa.Column("requester_id", sa.String(64), nullable=False),
        sa.Column("fx_provider_id", sa.String(64), nullable=False),
        sa.Column("rate_id", sa.String(128), nullable=False),
        sa.Column("source_currency", sa.String(3), nullable=False),
        sa.Column("target_currency", sa.String(3), nullable=False),
        sa.Column("fixed_side", sa.String(8), nullable=False),
        sa.Column("send_minor", sa.BigInteger, nullable=False),
        sa.Column("receive_minor", sa.BigInteger, nullable=False),
        sa.Column("fee_minor", sa.BigInteger, nullable=False),
        sa.Column("rate", sa.String(40), nullable=False),
        sa.Column("issued_at_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
        sa.Column("used_by_uetr", sa.String(36), nullable=True, unique=True),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "payments",
        sa.Column("uetr", sa.String(36), primary_key=True),
        sa.Column("instruction_id", sa.String(128), nullable=False, unique=True),
        sa.Column("end_to_end_id", sa.String(35), nullable=False),
        sa.Column("debtor_agent_id", sa.String(64), nullable=False),
        sa.Column("creditor_agent_id", sa.String(64), nullable=False),
        sa.Column("fx_provider_id", sa.String(64), nullable=False),
        sa.Column("quote_id", sa.String(128), nullable=True, unique=True),
        sa.Column("source_currency", sa.String(3), nullable=False),
        sa.Column("send_minor", sa.BigInteger, nullable=False),
        sa.Column("target_currency", sa.String(3), nullable=False),
        sa.Column("receive_minor", sa.BigInteger, nullable=False),
        sa.Column("fee_minor", sa.BigInteger, nullable=False),
        sa.Column("rate", sa.String(40), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("status", sa.String(4), nullable=False),
        sa.Column("reason_code", sa.String(4), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=False),
        sa.Column("hold_expires_at_us", sa.BigInteger, nullable=True),
        sa.Column("submitted_at_us", sa.BigInteger, nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("ix_payments_debtor_agent_id", "payments", ["debtor_agent_id"])
    op.create_index("ix_payments_creditor_agent_id", "payments", ["creditor_agent_id"])
    op.create_index("ix_payments_hold_expires_at_us", "payments", ["hold_expires_at_us"])
    op.create_table(
        "payment_status",
        sa.Column("uetr", sa.String(36), primary_key=True),
        sa.Column("sequence", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(4), nullable=False),
        sa.Column("reason_code", sa.String(4), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("committed_at_us", sa.BigInteger, nullable=False),
        sa.Column("instruction_id", sa.String(128), nullable=True, unique=True),
        sa.Column("signer", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("payment_status")
    op.drop_index("ix_payments_hold_expires_at_us", "payments")
    op.drop_index("ix_payments_creditor_agent_id", "payments")
    op.drop_index("ix_payments_debtor_agent_id", "payments")
    op.drop_table("payments")
    op.drop_table("fx_quotes")
    op.drop_index("fx_rates_by_pair", "fx_rates")
    op.drop_table("fx_rates")
