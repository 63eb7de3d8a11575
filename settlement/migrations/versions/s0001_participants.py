"""Participants registry.

Revision ID: s0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "participants",
        sa.Column("participant_id", sa.String(64), primary_key=True),
        sa.Column("legal_name", sa.String(140), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("bic", sa.String(11), nullable=False),
        sa.Column("lei", sa.String(20), nullable=False),
        sa.Column("aba_routing_number", sa.String(9), nullable=False),
        sa.Column("iban_bank_code", sa.String(16), nullable=False),
        sa.Column("common_name", sa.String(128), nullable=False, unique=True),
        sa.Column("journal_index", sa.BigInteger, nullable=False),
        sa.Column("registered_at_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("participants")
