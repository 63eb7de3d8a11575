"""The service's own tables: read models (projections) of ledger commands.

They are written in the same database transaction as the ledger entries that
justify them (``ledger.store.Projection``) and can be rebuilt from the log.
Created by the Alembic migrations in ``settlement/migrations`` (version table
``settlement_alembic_version``, apart from the ledger's).
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

# -- cross-border payments (settlement.payments.projection) -------------------

fx_rates = Table(
    "fx_rates",
    metadata,
    Column("rate_id", String(128), primary_key=True),
    Column("fx_provider_id", String(64), nullable=False),
    Column("source_currency", String(3), nullable=False),
    Column("target_currency", String(3), nullable=False),
    Column("rate", String(40), nullable=False),
    Column("fee_minor", BigInteger, nullable=False),
    Column("valid_from_us", BigInteger, nullable=False),
    Column("valid_until_us", BigInteger, nullable=False),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Index("fx_rates_by_pair", "fx_provider_id", "source_currency", "target_currency"),
)
"""Rates published by FX providers (``PaymentService.PublishRate``), one per event."""

fx_quotes = Table(
    "fx_quotes",
    metadata,
    Column("quote_id", String(128), primary_key=True),
    Column("requester_id", String(64), nullable=False),
    Column("fx_provider_id", String(64), nullable=False),
    Column("rate_id", String(128), nullable=False),
    Column("source_currency", String(3), nullable=False),
    Column("target_currency", String(3), nullable=False),
    Column("fixed_side", String(8), nullable=False),
    Column("send_minor", BigInteger, nullable=False),
    Column("receive_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=False),
    Column("rate", String(40), nullable=False),
    Column("issued_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    # A quote executes once: the unique constraint backs the projection's check.
    Column("used_by_uetr", String(36), nullable=True, unique=True),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
)
"""Firm FX quotes (``PaymentService.RequestQuote``) and the payment that used each."""

payments = Table(
    "payments",
    metadata,
    Column("uetr", String(36), primary_key=True),
    Column("instruction_id", String(128), nullable=False, unique=True),
    Column("end_to_end_id", String(35), nullable=False),
    Column("debtor_agent_id", String(64), nullable=False, index=True),
    Column("creditor_agent_id", String(64), nullable=False, index=True),
    Column("fx_provider_id", String(64), nullable=False),
    # NULL for a same-currency payment; unique otherwise (one payment per quote).
    Column("quote_id", String(128), nullable=True, unique=True),
    Column("source_currency", String(3), nullable=False),
    Column("send_minor", BigInteger, nullable=False),
    Column("target_currency", String(3), nullable=False),
    Column("receive_minor", BigInteger, nullable=False),
    Column("fee_minor", BigInteger, nullable=False),
    Column("rate", String(40), nullable=False),
    Column("details", Text, nullable=False),
    Column("status", String(4), nullable=False),
    Column("reason_code", String(4), nullable=False),
    Column("reason", Text, nullable=False),
    Column("transaction_id", String(128), nullable=False),
    # Set while the payment is held (PDNG): when its reservation times out.
    Column("hold_expires_at_us", BigInteger, nullable=True, index=True),
    Column("submitted_at_us", BigInteger, nullable=False),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
)
"""Payments by UETR: the submission's resolved fields and the current status.

``details`` is the canonical JSON of the rest of the submission event's
``payment`` object (parties, remittance, charge bearer, screening, reporting
flags), exactly as logged.
"""

payment_status = Table(
    "payment_status",
    metadata,
    Column("uetr", String(36), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("status", String(4), nullable=False),
    Column("reason_code", String(4), nullable=False),
    Column("reason", Text, nullable=False),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("committed_at_us", BigInteger, nullable=False),
    # The instruction that caused the change (submission, review); NULL for
    # the hub's own changes (an expired hold).
    Column("instruction_id", String(128), nullable=True, unique=True),
    Column("signer", String(64), nullable=True),
)
"""Every status change of every payment, one row per ``payment_status`` event."""
