"""Export-credit loans: facilities, their state history, disbursements and repayments.

Revision ID: s0004
Revises: s0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "s0004"
down_revision = "s0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loan_facilities",
        sa.Column("facility_id", sa.String(64), primary_key=True),
        sa.Column("lender_id", sa.String(64), nullable=False),
        sa.Column("borrower_bank_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("updated_journal_index", sa.BigInteger, nullable=False),
        sa.Column("schedule_journal_index", sa.BigInteger, nullable=True),
        sa.Column("schedule_leaf_hash", sa.LargeBinary(32), nullable=True),
    )
    op.create_index("ix_loan_facilities_lender_id", "loan_facilities", ["lender_id"])
    op.create_index("ix_loan_facilities_borrower_bank_id", "loan_facilities", ["borrower_bank_id"])
    op.create_table(
        "loan_facility_history",
        sa.Column("facility_id", sa.String(64), primary_key=True),
        sa.Column("sequence", sa.Integer, primary_key=True),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=False),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("business_date", sa.String(10), nullable=False),
        sa.Column("participant_id", sa.String(64), nullable=False),
        sa.Column("instruction_id", sa.String(128), nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("committed_at_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "loan_disbursements",
        sa.Column("disbursement_id", sa.String(128), primary_key=True),
        sa.Column("facility_id", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("supplier_bank_id", sa.String(64), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("decision_journal_index", sa.BigInteger, nullable=True, unique=True),
        sa.Column("decision_leaf_hash", sa.LargeBinary(32), nullable=True),
    )
    op.create_index(
        "ix_loan_disbursements_supplier_bank_id", "loan_disbursements", ["supplier_bank_id"]
    )
    op.create_index(
        "loan_disbursements_by_number",
        "loan_disbursements",
        ["facility_id", "number"],
        unique=True,
    )
    op.create_table(
        "loan_repayments",
        sa.Column("repayment_id", sa.String(128), primary_key=True),
        sa.Column("facility_id", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("journal_index", sa.BigInteger, nullable=False, unique=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("committed_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "loan_repayments_by_number", "loan_repayments", ["facility_id", "number"], unique=True
    )


def downgrade() -> None:
    op.drop_index("loan_repayments_by_number", "loan_repayments")
    op.drop_table("loan_repayments")
    op.drop_index("loan_disbursements_by_number", "loan_disbursements")
    op.drop_index("ix_loan_disbursements_supplier_bank_id", "loan_disbursements")
    op.drop_table("loan_disbursements")
    op.drop_table("loan_facility_history")
    op.drop_index("ix_loan_facilities_borrower_bank_id", "loan_facilities")
    op.drop_index("ix_loan_facilities_lender_id", "loan_facilities")
    op.drop_table("loan_facilities")
