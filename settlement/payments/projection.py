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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, select, update

from ledger import canonical
from ledger.records import Command, NewEvent, Receipt
from ledger.store import Ledger
from settlement.errors import AlreadyExists, FailedPrecondition, NotFoundError
from settlement.schema import fx_quotes, fx_rates, payment_status, payments

RATE_PUBLISHED: Final = "fx_rate_published"
QUOTE_ISSUED: Final = "fx_quote_issued"
PAYMENT_STATUS: Final = "payment_status"

TRANSACTION_ID_PREFIX: Final = "payment:"
"""A payment's ledger transaction is ``payment:<uetr>`` (payment.proto)."""

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
    """Writes rates, quotes, payments and status rows for newly committed payment events."""

    def project(self, connection: Connection, created: Sequence[tuple[Command, Receipt]]) -> None:
        for command, receipt in created:
            if not isinstance(command, NewEvent):
                continue
            if command.event_type == RATE_PUBLISHED:
                _insert_rate(connection, command, receipt)
            elif command.event_type == QUOTE_ISSUED:
                _insert_quote(connection, command, receipt)
            elif command.event_type == PAYMENT_STATUS:
                _apply_status(connection, command, receipt)


def _insert_rate(connection: Connection, event: NewEvent, receipt: Receipt) -> None:
    body = event.body
    valid_seconds = int(body["valid_seconds"])
    connection.execute(
        fx_rates.insert().values(
            rate_id=event.id,
            fx_provider_id=body["fx_provider_id"],
            source_currency=body["source_currency"],
            target_currency=body["target_currency"],
            rate=body["rate"],
            fee_minor=int(body["fee_minor"]),
            valid_from_us=receipt.committed_at_us,
            valid_until_us=receipt.committed_at_us + valid_seconds * 1_000_000,
            journal_index=receipt.journal_index,
        )
    )


def _insert_quote(connection: Connection, event: NewEvent, receipt: Receipt) -> None:
    body = event.body
    connection.execute(
        fx_quotes.insert().values(
            quote_id=event.id,
            requester_id=body["requester_id"],
            fx_provider_id=body["fx_provider_id"],
            rate_id=body["rate_id"],
            source_currency=body["source_currency"],
            target_currency=body["target_currency"],
            fixed_side=body["fixed_side"],
            send_minor=int(body["send_minor"]),
            receive_minor=int(body["receive_minor"]),
            fee_minor=int(body["fee_minor"]),
            rate=body["rate"],
            issued_at_us=receipt.committed_at_us,
            expires_at_us=receipt.committed_at_us + int(body["expiry_seconds"]) * 1_000_000,
            used_by_uetr=None,
            journal_index=receipt.journal_index,
            leaf_hash=receipt.leaf_hash,
        )
    )


def _apply_status(connection: Connection, event: NewEvent, receipt: Receipt) -> None:
    body = event.body
    uetr = str(body["uetr"])
    submitted = body.get("payment")
    if submitted is not None:
        _insert_payment(connection, uetr, submitted, receipt)
    status = str(body["status"])
    instruction_id = body.get("instruction_id")
    connection.execute(
        payment_status.insert().values(
            uetr=uetr,
            sequence=int(body["sequence"]),
            status=status,
            reason_code=body["reason_code"],
            reason=body["reason"],
            journal_index=receipt.journal_index,
            leaf_hash=receipt.leaf_hash,
            committed_at_us=receipt.committed_at_us,
            instruction_id=instruction_id,
            signer=None if event.instruction is None else event.instruction.signer,
        )
    )
    hold_seconds = body.get("hold_seconds")
    changed = connection.execute(
        update(payments)
        .where(payments.c.uetr == uetr)
        .values(
            status=status,
            reason_code=body["reason_code"],
            reason=body["reason"],
            hold_expires_at_us=(
                None
                if hold_seconds is None
                else receipt.committed_at_us + int(hold_seconds) * 1_000_000
            ),
        )
    )
    if changed.rowcount != 1:
        raise PaymentStatusWithoutPayment(
            f"status event {event.id!r} names payment {uetr!r}, which has no submission event"
        )


class PaymentStatusWithoutPayment(FailedPrecondition):
    """A status event for a UETR whose submission (sequence 0) was never committed."""

    code = "payment_must_exist"


def _insert_payment(
    connection: Connection, uetr: str, submitted: Mapping[str, Any], receipt: Receipt
) -> None:
    quote_id = submitted["quote_id"] or None
    if quote_id is not None:
        _claim_quote(connection, quote_id, uetr, receipt.committed_at_us)
    details = {key: submitted[key] for key in _DETAIL_KEYS}
    connection.execute(
        payments.insert().values(
            uetr=uetr,
            instruction_id=submitted["instruction_id"],
            end_to_end_id=submitted["end_to_end_id"],
            debtor_agent_id=submitted["debtor_agent_id"],
            creditor_agent_id=submitted["creditor_agent_id"],
            fx_provider_id=submitted["fx_provider_id"],
            quote_id=quote_id,
            source_currency=submitted["source_currency"],
            send_minor=int(submitted["send_minor"]),
            target_currency=submitted["target_currency"],
            receive_minor=int(submitted["receive_minor"]),
            fee_minor=int(submitted["fee_minor"]),
            rate=submitted["rate"],
            details=canonical.encode(details).decode("utf-8"),
            status="",
            reason_code="",
            reason="",
            transaction_id=submitted["transaction_id"],
            hold_expires_at_us=None,
            submitted_at_us=receipt.committed_at_us,
            journal_index=receipt.journal_index,
            leaf_hash=receipt.leaf_hash,
        )
    )


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
        update(fx_quotes)
        .where(fx_quotes.c.quote_id == quote_id)
        .where(fx_quotes.c.used_by_uetr.is_(None))
        .where(fx_quotes.c.expires_at_us > committed_at_us)
        .values(used_by_uetr=uetr)
    )
    if claimed.rowcount == 1:
        return
    row = connection.execute(
        select(fx_quotes.c.used_by_uetr, fx_quotes.c.expires_at_us).where(
            fx_quotes.c.quote_id == quote_id
        )
    ).first()
    if row is None:
        raise QuoteMustExist(f"quote {quote_id!r} does not exist")
    if row.used_by_uetr is not None:
        raise QuoteUsed(
            f"quote {quote_id!r} was used by payment {row.used_by_uetr}; request a new quote"
        )
    raise QuoteExpired(
        f"quote {quote_id!r} expired at {row.expires_at_us} us, before this payment committed "
        f"at {committed_at_us} us; request a new quote"
    )


# -- readers ------------------------------------------------------------------------------------


def latest_valid_rate(
    ledger: Ledger, fx_provider_id: str, source: str, target: str, now_us: int
) -> Rate | None:
    """The provider's most recently published rate for the pair that is still quotable."""
    with ledger.reading() as connection:
        row = connection.execute(
            select(fx_rates)
            .where(fx_rates.c.fx_provider_id == fx_provider_id)
            .where(fx_rates.c.source_currency == source)
            .where(fx_rates.c.target_currency == target)
            .where(fx_rates.c.valid_until_us > now_us)
            .order_by(fx_rates.c.journal_index.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
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


def rate_by_id(ledger: Ledger, rate_id: str) -> Rate | None:
    with ledger.reading() as connection:
        row = connection.execute(select(fx_rates).where(fx_rates.c.rate_id == rate_id)).first()
    if row is None:
        return None
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


def quote_by_id(ledger: Ledger, quote_id: str) -> Quote | None:
    with ledger.reading() as connection:
        row = connection.execute(select(fx_quotes).where(fx_quotes.c.quote_id == quote_id)).first()
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


def payment_by_uetr(ledger: Ledger, uetr: str) -> PaymentRecord | None:
    found = _payments(ledger, payments.c.uetr == uetr)
    return found[0] if found else None


def payment_by_instruction(ledger: Ledger, instruction_id: str) -> PaymentRecord | None:
    found = _payments(ledger, payments.c.instruction_id == instruction_id)
    return found[0] if found else None


def payments_by_uetr(ledger: Ledger, uetrs: Iterable[str]) -> dict[str, PaymentRecord]:
    wanted = sorted(set(uetrs))
    found: dict[str, PaymentRecord] = {}
    for start in range(0, len(wanted), 500):
        for record in _payments(ledger, payments.c.uetr.in_(wanted[start : start + 500])):
            found[record.uetr] = record
    return found


def status_by_instruction(ledger: Ledger, instruction_id: str) -> StatusChange | None:
    """The status change an instruction caused (a review), if it was committed."""
    with ledger.reading() as connection:
        row = connection.execute(
            select(payment_status).where(payment_status.c.instruction_id == instruction_id)
        ).first()
    return None if row is None else _status_change(row)


def uetr_of_status(ledger: Ledger, instruction_id: str) -> str | None:
    with ledger.reading() as connection:
        value = connection.scalar(
            select(payment_status.c.uetr).where(payment_status.c.instruction_id == instruction_id)
        )
    return None if value is None else str(value)


def holds_due(ledger: Ledger, now_us: int, limit: int = 1000) -> list[str]:
    """UETRs of held (PDNG) payments whose reservation has timed out, oldest first."""
    with ledger.reading() as connection:
        return list(
            connection.scalars(
                select(payments.c.uetr)
                .where(payments.c.hold_expires_at_us <= now_us)
                .order_by(payments.c.hold_expires_at_us)
                .limit(limit)
            )
        )


@dataclass(frozen=True, slots=True)
class WatchedChange:
    uetr: str
    change: StatusChange


def last_status_index(ledger: Ledger) -> int:
    """The journal index of the latest status change (-1 when there is none)."""
    with ledger.reading() as connection:
        value = connection.scalar(
            select(payment_status.c.journal_index)
            .order_by(payment_status.c.journal_index.desc())
            .limit(1)
        )
    return -1 if value is None else int(value)


def status_changes_after(
    ledger: Ledger,
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
    query = (
        select(
            payment_status,
            payments.c.debtor_agent_id,
            payments.c.creditor_agent_id,
        )
        .join(payments, payments.c.uetr == payment_status.c.uetr)
        .where(payment_status.c.journal_index > after_index)
        .order_by(payment_status.c.journal_index)
        .limit(limit)
    )
    with ledger.reading() as connection:
        rows = connection.execute(query).all()
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


def _payments(ledger: Ledger, condition: Any) -> list[PaymentRecord]:
    with ledger.reading() as connection:
        rows = connection.execute(select(payments).where(condition)).all()
        if not rows:
            return []
        uetrs = [row.uetr for row in rows]
        history: dict[str, list[StatusChange]] = {uetr: [] for uetr in uetrs}
        for status_row in connection.execute(
            select(payment_status)
            .where(payment_status.c.uetr.in_(uetrs))
            .order_by(payment_status.c.uetr, payment_status.c.sequence)
        ):
            history[status_row.uetr].append(_status_change(status_row))
    return [_payment(row, tuple(history[row.uetr])) for row in rows]


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
