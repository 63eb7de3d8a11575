"""Read models of the payment flow: rates, quotes, payments and their status history.

Every row here is written by :class:`PaymentsProjection` in the same database
transaction as the journal event that justifies it (``ledger.store.Projection``),
so the tables can always be rebuilt from the log. Three event types feed them:

- ``fx_rate_published`` (id: the ``PublishRateInstruction`` id): a provider's rate;
- ``fx_quote_issued`` (id: the quote id): a firm quote priced from a rate;
- ``payment_status`` (id: ``payment:<uetr>:status:<n>``, n = 0, 1, ...): one
  status change of a payment. The first (n = 0, ACTC) carries the payment's
  resolved fields in ``body["payment"]`` and claims the payment's quote.

The rule "a quote executes once, before it expires" is enforced HERE, at
write time, inside the commit: the claim is a conditional update of the
quote row (``used_by_uetr IS NULL AND expires_at_us > committed_at``), backed
by unique constraints on ``fx_quotes.used_by_uetr`` and ``payments.quote_id``.
The flow checks the same rule before it submits, to answer early; the check
here is the one that cannot race. A failed claim raises :class:`QuoteUsed` or
:class:`QuoteExpired`, which aborts the commit (payments are committed as
linked groups of their own, so nothing else is aborted with them).

The readers below take the ledger and use its read connection; they block
(call them in a worker thread from async code).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, bindparam, select, update

from ledger.errors import LedgerError
from ledger.records import Command, NewEvent, Receipt
from ledger.store import Ledger
from settlement.errors import AlreadyExists, FailedPrecondition, NotFoundError
from settlement.schema import fx_quotes, fx_rates, payment_status, payments

RATE_PUBLISHED: Final = "fx_rate_published"
QUOTE_ISSUED: Final = "fx_quote_issued"
PAYMENT_STATUS: Final = "payment_status"

TRANSACTION_ID_PREFIX: Final = "payment:"
"""A payment's ledger transaction is ``payment:<uetr>`` (payment.proto)."""

Source = Ledger | Connection
"""Where a reader reads: the ledger (a read connection of its own) or an open connection."""

WATCH_ROWS_MAX: Final = 500
"""Status changes read per poll of a watch stream."""


# -- errors of the payments package (raised here at write time, and by the flow) --------


class QuoteMustExist(NotFoundError):
    code = "quote_must_exist"


class QuoteExpired(FailedPrecondition):
    code = "quote_expired"


class QuoteUsed(FailedPrecondition):
    code = "quote_used"


class QuoteMustMatch(FailedPrecondition):
    code = "quote_must_match"


class UetrTaken(AlreadyExists):
    code = "uetr_taken"


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rate:
    """A published rate: target units per one source unit, quotable until ``valid_until_us``."""

    rate_id: str
    fx_provider_id: str
    source_currency: str
    target_currency: str
    rate: str
    fee_minor: int
    valid_from_us: int
    valid_until_us: int
    journal_index: int


@dataclass(frozen=True, slots=True)
class Quote:
    """A firm quote. ``fee_minor`` is in the source currency, charged on top of ``send_minor``."""

    quote_id: str
    requester_id: str
    fx_provider_id: str
    rate_id: str
    source_currency: str
    target_currency: str
    fixed_side: str
    """``send`` or ``receive``: which amount the requester fixed."""
    send_minor: int
    receive_minor: int
    fee_minor: int
    rate: str
    issued_at_us: int
    expires_at_us: int
    """Usable while the hub's clock is strictly before this instant."""
    used_by_uetr: str | None
    journal_index: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class PartyRecord:
    """A debtor, creditor or ultimate party as submitted (payment.proto ``Party``)."""

    name: str = ""
    iban: str = ""
    account_number: str = ""
    aba_routing_number: str = ""
    lei: str = ""
    country: str = ""
    address_lines: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "iban": self.iban,
            "account_number": self.account_number,
            "aba_routing_number": self.aba_routing_number,
            "lei": self.lei,
            "country": self.country,
            "address_lines": list(self.address_lines),
        }
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PartyRecord:
        return cls(
            name=str(document["name"]),
            iban=str(document["iban"]),
            account_number=str(document["account_number"]),
            aba_routing_number=str(document["aba_routing_number"]),
            lei=str(document["lei"]),
            country=str(document["country"]),
            address_lines=tuple(str(line) for line in document["address_lines"]),
        )


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One pacs.002 status of a payment, with the journal entry that recorded it."""

    sequence: int
    status: str
    reason_code: str
    reason: str
    committed_at_us: int
    journal_index: int
    leaf_hash: bytes
    instruction_id: str | None
    signer: str | None


@dataclass(frozen=True, slots=True)
class Screening:
    """What screening found: the best hit (score and listed name), against which list."""

    hit: bool
    score: str
    """Best score of a hit as a decimal string ("0.9512"); empty without a hit."""
    screened_name: str
    """The party name that hit; empty without a hit."""
    listed_name: str
    """The listed name it matched; empty without a hit."""
    list_digest: str
    threshold: str


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """A payment by UETR: what was submitted, what the hub resolved, where it stands."""

    uetr: str
    instruction_id: str
    end_to_end_id: str
    debtor_agent_id: str
    creditor_agent_id: str
    fx_provider_id: str
    quote_id: str
    source_currency: str
    send_minor: int
    target_currency: str
    receive_minor: int
    fee_minor: int
    rate: str
    debtor: PartyRecord
    creditor: PartyRecord
    ultimate_debtor: PartyRecord | None
    ultimate_creditor: PartyRecord | None
    remittance_information: str
    charge_bearer: str
    """ISO 20022 ChargeBearerType1Code: DEBT, CRED or SHAR."""
    screening: Screening
    reporting_flags: tuple[str, ...]
    status: str
    reason_code: str
    reason: str
    transaction_id: str
    """``payment:<uetr>`` once funds were reserved; empty when the payment was
    rejected before anything was reserved (AM04, AC01)."""
    hold_expires_at_us: int | None
    submitted_at_us: int
    journal_index: int
    leaf_hash: bytes
    history: tuple[StatusChange, ...]

    @property
    def cross_currency(self) -> bool:
        return self.source_currency != self.target_currency

    def visible_to(self, participant_id: str) -> bool:
        """Debtor agent, creditor agent and the quote's FX provider (payment.proto GetPayment)."""
        return participant_id in (
            self.debtor_agent_id,
            self.creditor_agent_id,
            self.fx_provider_id or None,
        )


def payment_details(
    *,
    debtor: PartyRecord,
    creditor: PartyRecord,
    ultimate_debtor: PartyRecord | None,
    ultimate_creditor: PartyRecord | None,
    remittance_information: str,
    charge_bearer: str,
    screening: Screening,
    reporting_flags: Sequence[str],
) -> dict[str, Any]:
    """The JSON of the fields kept in ``payments.details`` (and logged in the event)."""
    return {
        "debtor": debtor.to_json(),
        "creditor": creditor.to_json(),
        "ultimate_debtor": None if ultimate_debtor is None else ultimate_debtor.to_json(),
        "ultimate_creditor": None if ultimate_creditor is None else ultimate_creditor.to_json(),
        "remittance_information": remittance_information,
        "charge_bearer": charge_bearer,
        "screening": {
            "hit": screening.hit,
            "score": screening.score,
            "screened_name": screening.screened_name,
            "listed_name": screening.listed_name,
            "list_digest": screening.list_digest,
            "threshold": screening.threshold,
        },
        "reporting_flags": list(reporting_flags),
    }


# -- the projection ---------------------------------------------------------------------------


class PaymentsProjection:
    """Writes rates, quotes, payments and status rows for newly committed payment events.

    Rows are gathered over the whole commit and written with one statement
    per table where possible (a group commit may carry many payments); the
    statements are built once, at import.
    """

    def project(self, connection: Connection, created: Sequence[tuple[Command, Receipt]]) -> None:
        rates: list[dict[str, Any]] = []
        quotes: list[dict[str, Any]] = []
        submitted: list[tuple[str, Mapping[str, Any], Receipt]] = []
        changes: list[dict[str, Any]] = []
        latest: dict[str, tuple[dict[str, Any], int | None]] = {}
        for command, receipt in created:
            if not isinstance(command, NewEvent):
                continue
            if command.event_type == RATE_PUBLISHED:
                rates.append(_rate_row(command, receipt))
            elif command.event_type == QUOTE_ISSUED:
                quotes.append(_quote_row(command, receipt))
            elif command.event_type == PAYMENT_STATUS:
                body = command.body
                uetr = str(body["uetr"])
                if body.get("payment") is not None:
                    submitted.append((uetr, body["payment"], receipt))
                change, hold_expires_at_us = _status_row(command, receipt)
                changes.append(change)
                latest[uetr] = (change, hold_expires_at_us)
        if rates:
            connection.execute(fx_rates.insert(), rates)
        if quotes:
            connection.execute(fx_quotes.insert(), quotes)
        if not changes:
            return
        new_payments = []
        for uetr, payment, receipt in submitted:
            if payment["quote_id"]:
                _claim_quote(connection, payment["quote_id"], uetr, receipt.committed_at_us)
            new_payments.append(_payment_row(uetr, payment, receipt, latest.pop(uetr)))
        if new_payments:
            connection.execute(payments.insert(), new_payments)
        connection.execute(payment_status.insert(), changes)
        for uetr, (change, hold_expires_at_us) in latest.items():
            updated = connection.execute(
                _UPDATE_PAYMENT,
                {
                    "b_uetr": uetr,
                    "status": change["status"],
                    "reason_code": change["reason_code"],
                    "reason": change["reason"],
                    "hold_expires_at_us": hold_expires_at_us,
                },
            )
            if updated.rowcount != 1:
                raise _naming(
                    PaymentStatusWithoutPayment(
                        f"a status event names payment {uetr!r}, which has no submission event"
                    ),
                    uetr,
                )


_UPDATE_PAYMENT = (
    update(payments)
    .where(payments.c.uetr == bindparam("b_uetr"))
    .values(
        status=bindparam("status"),
        reason_code=bindparam("reason_code"),
        reason=bindparam("reason"),
        hold_expires_at_us=bindparam("hold_expires_at_us"),
    )
)
_CLAIM_QUOTE = (
    update(fx_quotes)
    .where(fx_quotes.c.quote_id == bindparam("b_quote_id"))
    .where(fx_quotes.c.used_by_uetr.is_(None))
    .where(fx_quotes.c.expires_at_us > bindparam("b_committed_at_us"))
    .values(used_by_uetr=bindparam("b_uetr"))
)
_QUOTE_USE = select(fx_quotes.c.used_by_uetr, fx_quotes.c.expires_at_us).where(
    fx_quotes.c.quote_id == bindparam("quote_id")
)


def _rate_row(event: NewEvent, receipt: Receipt) -> dict[str, Any]:
    body = event.body
    return {
        "rate_id": event.id,
        "fx_provider_id": body["fx_provider_id"],
        "source_currency": body["source_currency"],
        "target_currency": body["target_currency"],
        "rate": body["rate"],
        "fee_minor": int(body["fee_minor"]),
        "valid_from_us": receipt.committed_at_us,
        "valid_until_us": receipt.committed_at_us + int(body["valid_seconds"]) * 1_000_000,
        "journal_index": receipt.journal_index,
    }


def _quote_row(event: NewEvent, receipt: Receipt) -> dict[str, Any]:
    body = event.body
    return {
        "quote_id": event.id,
        "requester_id": body["requester_id"],
        "fx_provider_id": body["fx_provider_id"],
        "rate_id": body["rate_id"],
        "source_currency": body["source_currency"],
        "target_currency": body["target_currency"],
        "fixed_side": body["fixed_side"],
        "send_minor": int(body["send_minor"]),
        "receive_minor": int(body["receive_minor"]),
        "fee_minor": int(body["fee_minor"]),
        "rate": body["rate"],
        "issued_at_us": receipt.committed_at_us,
        "expires_at_us": receipt.committed_at_us + int(body["expiry_seconds"]) * 1_000_000,
        "used_by_uetr": None,
        "journal_index": receipt.journal_index,
        "leaf_hash": receipt.leaf_hash,
    }


def _status_row(event: NewEvent, receipt: Receipt) -> tuple[dict[str, Any], int | None]:
    """The payment_status row of an event, and when the hold it starts ends (None: none)."""
    body = event.body
    hold_seconds = body.get("hold_seconds")
    row = {
        "uetr": str(body["uetr"]),
        "sequence": int(body["sequence"]),
        "status": str(body["status"]),
        "reason_code": body["reason_code"],
        "reason": body["reason"],
        "journal_index": receipt.journal_index,
        "leaf_hash": receipt.leaf_hash,
        "committed_at_us": receipt.committed_at_us,
        "instruction_id": body.get("instruction_id"),
        "signer": None if event.instruction is None else event.instruction.signer,
    }
    if hold_seconds is None:
        return row, None
    return row, receipt.committed_at_us + int(hold_seconds) * 1_000_000


class PaymentStatusWithoutPayment(FailedPrecondition):
    """A status event for a UETR whose submission (sequence 0) was never committed."""

    code = "payment_must_exist"


def _payment_row(
    uetr: str,
    submitted: Mapping[str, Any],
    receipt: Receipt,
    latest: tuple[Mapping[str, Any], int | None],
) -> dict[str, Any]:
    """The payments row of a submission, with the status it reached in the same commit."""
    details = {key: submitted[key] for key in _DETAIL_KEYS}
    return {
        "uetr": uetr,
        "instruction_id": submitted["instruction_id"],
        "end_to_end_id": submitted["end_to_end_id"],
        "debtor_agent_id": submitted["debtor_agent_id"],
        "creditor_agent_id": submitted["creditor_agent_id"],
        "fx_provider_id": submitted["fx_provider_id"],
        "quote_id": submitted["quote_id"] or None,
        "source_currency": submitted["source_currency"],
        "send_minor": int(submitted["send_minor"]),
        "target_currency": submitted["target_currency"],
        "receive_minor": int(submitted["receive_minor"]),
        "fee_minor": int(submitted["fee_minor"]),
        "rate": submitted["rate"],
        "details": json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        "status": latest[0]["status"],
        "reason_code": latest[0]["reason_code"],
        "reason": latest[0]["reason"],
        "transaction_id": submitted["transaction_id"],
        "hold_expires_at_us": latest[1],
        "submitted_at_us": receipt.committed_at_us,
        "journal_index": receipt.journal_index,
        "leaf_hash": receipt.leaf_hash,
    }


def _naming(error: LedgerError, uetr: str) -> LedgerError:
    """Name the payment whose commit failed, so that the others of a group can be retried."""
    setattr(error, "uetr", uetr)  # noqa: B010 - an optional attribute of these errors
    return error


_DETAIL_KEYS: Final = (
    "debtor",
    "creditor",
    "ultimate_debtor",
    "ultimate_creditor",
    "remittance_information",
    "charge_bearer",
    "screening",
    "reporting_flags",
)


def _claim_quote(connection: Connection, quote_id: str, uetr: str, committed_at_us: int) -> None:
    """Mark the quote used by ``uetr``, or raise why it cannot be (the race-free check)."""
    claimed = connection.execute(
        _CLAIM_QUOTE,
        {"b_quote_id": quote_id, "b_uetr": uetr, "b_committed_at_us": committed_at_us},
    )
    if claimed.rowcount == 1:
        return
    row = connection.execute(_QUOTE_USE, {"quote_id": quote_id}).first()
    if row is None:
        raise _naming(QuoteMustExist(f"quote {quote_id!r} does not exist"), uetr)
    if row.used_by_uetr is not None:
        raise _naming(
            QuoteUsed(
                f"quote {quote_id!r} was used by payment {row.used_by_uetr}; request a new quote"
            ),
            uetr,
        )
    raise _naming(
        QuoteExpired(
            f"quote {quote_id!r} expired at {row.expires_at_us} us, before this payment "
            f"committed at {committed_at_us} us; request a new quote"
        ),
        uetr,
    )


# -- readers ------------------------------------------------------------------------------------
#
# Each takes the ledger, or an open read connection (``with ledger.reading() as
# connection``) so that a flow makes all the reads of one step in one transaction.

_LATEST_VALID_RATE = (
    select(fx_rates)
    .where(fx_rates.c.fx_provider_id == bindparam("fx_provider_id"))
    .where(fx_rates.c.source_currency == bindparam("source"))
    .where(fx_rates.c.target_currency == bindparam("target"))
    .where(fx_rates.c.valid_until_us > bindparam("now_us"))
    .order_by(fx_rates.c.journal_index.desc())
    .limit(1)
)
_RATE_BY_ID = select(fx_rates).where(fx_rates.c.rate_id == bindparam("rate_id"))
_QUOTE_BY_ID = select(fx_quotes).where(fx_quotes.c.quote_id == bindparam("quote_id"))
_PAYMENT_EXISTS = select(payments.c.uetr).where(payments.c.uetr == bindparam("uetr"))
_PAYMENT_BY_UETR = select(payments).where(payments.c.uetr == bindparam("uetr"))
_HISTORY = (
    select(payment_status)
    .where(payment_status.c.uetr == bindparam("uetr"))
    .order_by(payment_status.c.sequence)
)
_SUBMISSION_BY_INSTRUCTION = select(
    payments.c.uetr,
    payments.c.journal_index,
    payments.c.leaf_hash,
    payments.c.submitted_at_us.label("committed_at_us"),
).where(payments.c.instruction_id == bindparam("instruction_id"))
_CHANGE_BY_INSTRUCTION = select(
    payment_status.c.uetr,
    payment_status.c.journal_index,
    payment_status.c.leaf_hash,
    payment_status.c.committed_at_us,
).where(payment_status.c.instruction_id == bindparam("instruction_id"))
_HOLDS_DUE = (
    select(payments.c.uetr)
    .where(payments.c.hold_expires_at_us <= bindparam("now_us"))
    .order_by(payments.c.hold_expires_at_us)
    .limit(bindparam("limit"))
)
_LAST_STATUS_INDEX = (
    select(payment_status.c.journal_index).order_by(payment_status.c.journal_index.desc()).limit(1)
)
_CHANGES_AFTER = (
    select(payment_status, payments.c.debtor_agent_id, payments.c.creditor_agent_id)
    .join(payments, payments.c.uetr == payment_status.c.uetr)
    .where(payment_status.c.journal_index > bindparam("after_index"))
    .order_by(payment_status.c.journal_index)
    .limit(bindparam("limit"))
)


def latest_valid_rate(
    source: Source, fx_provider_id: str, source_currency: str, target_currency: str, now_us: int
) -> Rate | None:
    """The provider's most recently published rate for the pair that is still quotable."""
    with _connected(source) as connection:
        row = connection.execute(
            _LATEST_VALID_RATE,
            {
                "fx_provider_id": fx_provider_id,
                "source": source_currency,
                "target": target_currency,
                "now_us": now_us,
            },
        ).first()
        return None if row is None else _rate(row)


def rate_by_id(source: Source, rate_id: str) -> Rate | None:
    with _connected(source) as connection:
        row = connection.execute(_RATE_BY_ID, {"rate_id": rate_id}).first()
        return None if row is None else _rate(row)


@dataclass(frozen=True, slots=True)
class InstructionUse:
    """Where a payment or review instruction was committed (its status event)."""

    uetr: str
    journal_index: int
    leaf_hash: bytes
    committed_at_us: int


def instruction_use(source: Source, instruction_id: str) -> InstructionUse | None:
    """The submission or review committed under ``instruction_id``, if any."""
    with _connected(source) as connection:
        row = connection.execute(
            _SUBMISSION_BY_INSTRUCTION, {"instruction_id": instruction_id}
        ).first()
        if row is None:
            row = connection.execute(
                _CHANGE_BY_INSTRUCTION, {"instruction_id": instruction_id}
            ).first()
        if row is None:
            return None
        return InstructionUse(
            row.uetr, int(row.journal_index), bytes(row.leaf_hash), int(row.committed_at_us)
        )


def payment_exists(source: Source, uetr: str) -> bool:
    with _connected(source) as connection:
        return connection.execute(_PAYMENT_EXISTS, {"uetr": uetr}).first() is not None


def quote_by_id(source: Source, quote_id: str) -> Quote | None:
    with _connected(source) as connection:
        row = connection.execute(_QUOTE_BY_ID, {"quote_id": quote_id}).first()
        if row is None:
            return None
        return Quote(
            quote_id=row.quote_id,
            requester_id=row.requester_id,
            fx_provider_id=row.fx_provider_id,
            rate_id=row.rate_id,
            source_currency=row.source_currency,
            target_currency=row.target_currency,
            fixed_side=row.fixed_side,
            send_minor=int(row.send_minor),
            receive_minor=int(row.receive_minor),
            fee_minor=int(row.fee_minor),
            rate=row.rate,
            issued_at_us=int(row.issued_at_us),
            expires_at_us=int(row.expires_at_us),
            used_by_uetr=row.used_by_uetr,
            journal_index=int(row.journal_index),
            leaf_hash=bytes(row.leaf_hash),
        )


def payment_by_uetr(source: Source, uetr: str) -> PaymentRecord | None:
    with _connected(source) as connection:
        row = connection.execute(_PAYMENT_BY_UETR, {"uetr": uetr}).first()
        if row is None:
            return None
        history = tuple(
            _status_change(change) for change in connection.execute(_HISTORY, {"uetr": uetr})
        )
        return _payment(row, history)


def payments_by_uetr(source: Source, uetrs: Iterable[str]) -> dict[str, PaymentRecord]:
    with _connected(source) as connection:
        wanted = sorted(set(uetrs))
        found: dict[str, PaymentRecord] = {}
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            rows = connection.execute(select(payments).where(payments.c.uetr.in_(chunk))).all()
            history: dict[str, list[StatusChange]] = {row.uetr: [] for row in rows}
            for change in connection.execute(
                select(payment_status)
                .where(payment_status.c.uetr.in_(chunk))
                .order_by(payment_status.c.uetr, payment_status.c.sequence)
            ):
                history[change.uetr].append(_status_change(change))
            for row in rows:
                found[row.uetr] = _payment(row, tuple(history[row.uetr]))
        return found


_IN_CHUNK: Final = 500
"""Bound on ids per ``IN (...)`` (SQLite's variable limit)."""


def holds_due(source: Source, now_us: int, limit: int = 1000) -> list[str]:
    """UETRs of held (PDNG) payments whose reservation has timed out, oldest first."""
    with _connected(source) as connection:
        return list(connection.scalars(_HOLDS_DUE, {"now_us": now_us, "limit": limit}))


@dataclass(frozen=True, slots=True)
class WatchedChange:
    uetr: str
    change: StatusChange


def last_status_index(source: Source) -> int:
    """The journal index of the latest status change (-1 when there is none)."""
    with _connected(source) as connection:
        value = connection.scalar(_LAST_STATUS_INDEX)
        return -1 if value is None else int(value)


def status_changes_after(
    source: Source,
    after_index: int,
    *,
    participant_id: str | None,
    uetr: str | None,
    limit: int = WATCH_ROWS_MAX,
) -> tuple[list[WatchedChange], int]:
    """Status changes after a journal index that the viewer may see, and the new position.

    ``participant_id`` None means everything (operator, auditor); otherwise the
    payments where the participant is the debtor or creditor agent. The
    position returned is the last index READ (visible or not), so a poll never
    reads the same rows twice.
    """
    with _connected(source) as connection:
        rows = connection.execute(
            _CHANGES_AFTER, {"after_index": after_index, "limit": limit}
        ).all()
        changes = []
        for row in rows:
            if uetr is not None and row.uetr != uetr:
                continue
            if participant_id is not None and participant_id not in (
                row.debtor_agent_id,
                row.creditor_agent_id,
            ):
                continue
            changes.append(WatchedChange(row.uetr, _status_change(row)))
        position = int(rows[-1].journal_index) if rows else after_index
        return changes, position


@contextmanager
def _connected(source: Source) -> Iterator[Connection]:
    if isinstance(source, Connection):
        yield source
    else:
        with source.reading() as connection:
            yield connection


def _rate(row: Any) -> Rate:
    return Rate(
        rate_id=row.rate_id,
        fx_provider_id=row.fx_provider_id,
        source_currency=row.source_currency,
        target_currency=row.target_currency,
        rate=row.rate,
        fee_minor=int(row.fee_minor),
        valid_from_us=int(row.valid_from_us),
        valid_until_us=int(row.valid_until_us),
        journal_index=int(row.journal_index),
    )


def _status_change(row: Any) -> StatusChange:
    return StatusChange(
        sequence=int(row.sequence),
        status=row.status,
        reason_code=row.reason_code,
        reason=row.reason,
        committed_at_us=int(row.committed_at_us),
        journal_index=int(row.journal_index),
        leaf_hash=bytes(row.leaf_hash),
        instruction_id=row.instruction_id,
        signer=row.signer,
    )


def _optional_party(document: Mapping[str, Any] | None) -> PartyRecord | None:
    return None if document is None else PartyRecord.from_json(document)


def _payment(row: Any, history: tuple[StatusChange, ...]) -> PaymentRecord:
    details = json.loads(row.details)
    screening = details["screening"]
    return PaymentRecord(
        uetr=row.uetr,
        instruction_id=row.instruction_id,
        end_to_end_id=row.end_to_end_id,
        debtor_agent_id=row.debtor_agent_id,
        creditor_agent_id=row.creditor_agent_id,
        fx_provider_id=row.fx_provider_id,
        quote_id=row.quote_id or "",
        source_currency=row.source_currency,
        send_minor=int(row.send_minor),
        target_currency=row.target_currency,
        receive_minor=int(row.receive_minor),
        fee_minor=int(row.fee_minor),
        rate=row.rate,
        debtor=PartyRecord.from_json(details["debtor"]),
        creditor=PartyRecord.from_json(details["creditor"]),
        ultimate_debtor=_optional_party(details["ultimate_debtor"]),
        ultimate_creditor=_optional_party(details["ultimate_creditor"]),
        remittance_information=details["remittance_information"],
        charge_bearer=details["charge_bearer"],
        screening=Screening(
            hit=bool(screening["hit"]),
            score=screening["score"],
            screened_name=screening["screened_name"],
            listed_name=screening["listed_name"],
            list_digest=screening["list_digest"],
            threshold=screening["threshold"],
        ),
        reporting_flags=tuple(details["reporting_flags"]),
        status=row.status,
        reason_code=row.reason_code,
        reason=row.reason,
        transaction_id=row.transaction_id,
        hold_expires_at_us=None if row.hold_expires_at_us is None else int(row.hold_expires_at_us),
        submitted_at_us=int(row.submitted_at_us),
        journal_index=int(row.journal_index),
        leaf_hash=bytes(row.leaf_hash),
        history=history,
    )


__all__ = [
    "PAYMENT_STATUS",
    "QUOTE_ISSUED",
    "RATE_PUBLISHED",
    "PartyRecord",
    "PaymentRecord",
    "PaymentsProjection",
    "Quote",
    "QuoteExpired",
    "QuoteMustExist",
    "QuoteMustMatch",
    "QuoteUsed",
    "Rate",
    "Screening",
    "StatusChange",
    "UetrTaken",
]
