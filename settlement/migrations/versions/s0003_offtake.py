"""Offtake contracts, lots, invoices, the payments applied to them, and price fixings.

Revision ID: s0003
Revises: s0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0003"
down_revision = "s0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "offtake_contracts",
        sa.Column("contract_id", sa.String(48), primary_key=True),
        sa.Column("buyer_bank_id", sa.String(64), nullable=False),
        sa.Column("seller_bank_id", sa.String(64), nullable=False),
        sa.Column("terms", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("buyer_bank_signed", sa.Boolean, nullable=False),
        sa.Column("seller_bank_signed", sa.Boolean, nullable=False),
        sa.Column("invoiced_minor", sa.BigInteger, nullable=False),
        sa.Column("received_minor", sa.BigInteger, nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("updated_index", sa.BigInteger, nullable=False),
    )
    op.create_index("offtake_contracts_by_buyer_bank", "offtake_contracts", ["buyer_bank_id"])
    op.create_index("offtake_contracts_by_seller_bank", "offtake_contracts", ["seller_bank_id"])
    op.create_table(
        "offtake_lots",
        sa.Column("contract_id", sa.String(48), primary_key=True),
        sa.Column("lot_id", sa.String(24), primary_key=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("disputed_from", sa.String(32), nullable=True),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("updated_index", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "offtake_invoices",
        sa.Column("invoice_id", sa.String(80), primary_key=True),
        sa.Column("contract_id", sa.String(48), nullable=False),
        sa.Column("lot_id", sa.String(24), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value_minor", sa.BigInteger, nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("paid_minor", sa.BigInteger, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=True),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("issued_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("offtake_invoices_by_lot", "offtake_invoices", ["contract_id", "lot_id"])
    op.create_table(
        "offtake_invoice_payments",
        sa.Column("uetr", sa.String(36), primary_key=True),
        sa.Column("invoice_id", sa.String(80), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("transaction_id", sa.String(128), nullable=False, unique=True),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index(
        "offtake_invoice_payments_by_invoice", "offtake_invoice_payments", ["invoice_id"]
    )
    op.create_table(
        "offtake_price_fixings",
        sa.Column("metal", sa.String(2), primary_key=True),
        sa.Column("fixing_date", sa.String(10), primary_key=True),
        sa.Column("price_usd", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("offtake_price_fixings")
    op.drop_index("offtake_invoice_payments_by_invoice", "offtake_invoice_payments")
    op.drop_table("offtake_invoice_payments")
    op.drop_index("offtake_invoices_by_lot", "offtake_invoices")
    op.drop_table("offtake_invoices")
    op.drop_table("offtake_lots")
    op.drop_index("offtake_contracts_by_seller_bank", "offtake_contracts")
    op.drop_index("offtake_contracts_by_buyer_bank", "offtake_contracts")
    op.drop_table("offtake_contracts")
