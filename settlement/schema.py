"""The service's own tables: read models (projections) of ledger commands.

They are written in the same database transaction as the ledger entries that
justify them (``ledger.store.Projection``) and can be rebuilt from the log.
Created by the Alembic migrations in ``settlement/migrations`` (version table
``settlement_alembic_version``, apart from the ledger's).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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

# -- offtake contracts (settlement.offtake.projection) ------------------------

offtake_contracts = Table(
    "offtake_contracts",
    metadata,
    Column("contract_id", String(48), primary_key=True),
    Column("buyer_bank_id", String(64), nullable=False),
    Column("seller_bank_id", String(64), nullable=False),
    # The terms both banks signed (settlement.offtake.flow.terms_document), canonical JSON.
    Column("terms", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("buyer_bank_signed", Boolean, nullable=False),
    Column("seller_bank_signed", Boolean, nullable=False),
    # Invoice totals issued (net of refunds) and payments applied (net of refunds paid).
    Column("invoiced_minor", BigInteger, nullable=False),
    Column("received_minor", BigInteger, nullable=False),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("updated_index", BigInteger, nullable=False),
    Index("offtake_contracts_by_buyer_bank", "buyer_bank_id"),
    Index("offtake_contracts_by_seller_bank", "seller_bank_id"),
)
"""Offtake contracts by id: terms, state and the receivable's two running totals."""

offtake_lots = Table(
    "offtake_lots",
    metadata,
    Column("contract_id", String(48), primary_key=True),
    Column("lot_id", String(24), primary_key=True),
    Column("state", String(32), nullable=False),
    Column("disputed_from", String(32), nullable=True),
    # Canonical JSON of what the lot's events recorded: shipment, arrival, assays, pricing.
    Column("details", Text, nullable=False),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("updated_index", BigInteger, nullable=False),
)
"""Lots of offtake contracts: the state and the facts their invoices are computed from."""

offtake_invoices = Table(
    "offtake_invoices",
    metadata,
    Column("invoice_id", String(80), primary_key=True),
    Column("contract_id", String(48), nullable=False),
    Column("lot_id", String(24), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("value_minor", BigInteger, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    # Paid so far, with the sign of the total.
    Column("paid_minor", BigInteger, nullable=False),
    # Canonical JSON: the lines and the prices, exactly as logged.
    Column("details", Text, nullable=False),
    # The receivable posting; NULL for a zero total (nothing to post).
    Column("transaction_id", String(128), nullable=True),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("issued_at_us", BigInteger, nullable=False),
    Index("offtake_invoices_by_lot", "contract_id", "lot_id"),
)
"""Provisional and final invoices, one row per ``offtake_invoice_issued`` event."""

offtake_invoice_payments = Table(
    "offtake_invoice_payments",
    metadata,
    Column("uetr", String(36), primary_key=True),
    Column("invoice_id", String(80), nullable=False),
    # The USD applied to the invoice, positive (the invoice's sign says which way).
    Column("amount_minor", BigInteger, nullable=False),
    Column("transaction_id", String(128), nullable=False, unique=True),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Index("offtake_invoice_payments_by_invoice", "invoice_id"),
)
"""Payments applied to invoices, one row per ``offtake_invoice_paid`` event."""

offtake_price_fixings = Table(
    "offtake_price_fixings",
    metadata,
    Column("metal", String(2), primary_key=True),
    Column("fixing_date", String(10), primary_key=True),
    Column("price_usd", String(40), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("journal_index", BigInteger, nullable=False),
)
"""Published daily prices (``OfftakeService.PublishPriceFixings``): one per metal and day."""

# -- export-credit loans (settlement.loans.projection) ------------------------

loan_facilities = Table(
    "loan_facilities",
    metadata,
    Column("facility_id", String(64), primary_key=True),
    Column("lender_id", String(64), nullable=False, index=True),
    Column("borrower_bank_id", String(64), nullable=False, index=True),
    Column("state", String(32), nullable=False),
    Column("record", Text, nullable=False),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("updated_journal_index", BigInteger, nullable=False),
    Column("schedule_journal_index", BigInteger, nullable=True),
    Column("schedule_leaf_hash", LargeBinary(32), nullable=True),
)
"""One row per facility: ``record`` is the canonical JSON of the fold of its
loan events (``settlement.loans.flow.record_document``); the receipts are
those of its creation and of its schedule."""

loan_facility_history = Table(
    "loan_facility_history",
    metadata,
    Column("facility_id", String(64), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("event", String(40), nullable=False),
    Column("from_state", String(32), nullable=False),
    Column("to_state", String(32), nullable=False),
    Column("business_date", String(10), nullable=False),
    Column("participant_id", String(64), nullable=False),
    Column("instruction_id", String(128), nullable=False),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("committed_at_us", BigInteger, nullable=False),
)
"""Every change of a facility's state, in order."""

loan_disbursements = Table(
    "loan_disbursements",
    metadata,
    Column("disbursement_id", String(128), primary_key=True),
    Column("facility_id", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("supplier_bank_id", String(64), nullable=False, index=True),
    Column("request", Text, nullable=False),
    Column("decision", Text, nullable=False),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("decision_journal_index", BigInteger, nullable=True, unique=True),
    Column("decision_leaf_hash", LargeBinary(32), nullable=True),
    Index("loan_disbursements_by_number", "facility_id", "number", unique=True),
)
"""Disbursement requests and their decisions: ``request`` and ``decision`` are
the canonical JSON of the two events' bodies ("" while undecided)."""

loan_repayments = Table(
    "loan_repayments",
    metadata,
    Column("repayment_id", String(128), primary_key=True),
    Column("facility_id", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("details", Text, nullable=False),
    Column("journal_index", BigInteger, nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("committed_at_us", BigInteger, nullable=False),
    Index("loan_repayments_by_number", "facility_id", "number", unique=True),
)
"""Repayments: ``details`` is the canonical JSON of the repayment event's body."""
