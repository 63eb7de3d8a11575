"""Read models of the offtake flow: contracts, lots, invoices, applied payments, price fixings.

Every row here is written by :class:`OfftakeProjection` in the same database
transaction as the journal event that justifies it (``ledger.store.Projection``),
so the tables can always be rebuilt from the log. The events (offtake.proto,
"What the journal holds") carry everything their rows need; nothing here
computes: the flow (:mod:`settlement.offtake.flow`) decided, the event
recorded, the projection copies.

Amounts in event bodies are decimal strings of minor units (a body is JSON,
whose numbers are exact only up to 2**53); quantities, grades and prices are
decimal strings as on the invoice.

The readers below take the ledger and use its read connection; they block
(call them in a worker thread from async code).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, func, select, update

from ledger import canonical
from ledger.errors import IntegrityError
from ledger.records import Command, NewEvent, Receipt
from ledger.schema import journal
from ledger.store import Ledger
from settlement.schema import (
    offtake_contracts,
    offtake_invoice_payments,
    offtake_invoices,
    offtake_lots,
    offtake_price_fixings,
)

CONTRACT_SIGNED: Final = "offtake_contract_signed"
CONTRACT_CHANGED: Final = "offtake_contract_changed"
PRICE_FIXINGS_PUBLISHED: Final = "offtake_price_fixings_published"
LOT_SHIPPED: Final = "offtake_lot_shipped"
INVOICE_ISSUED: Final = "offtake_invoice_issued"
LOT_ARRIVED: Final = "offtake_lot_arrived"
FINAL_ASSAYS_RECORDED: Final = "offtake_final_assays_recorded"
LOT_PRICED: Final = "offtake_lot_priced"
INVOICE_PAID: Final = "offtake_invoice_paid"
LOT_CHANGED: Final = "offtake_lot_changed"

EVENT_TYPES: Final = frozenset(
    {
        CONTRACT_SIGNED,
        CONTRACT_CHANGED,
        PRICE_FIXINGS_PUBLISHED,
        LOT_SHIPPED,
        INVOICE_ISSUED,
        LOT_ARRIVED,
        FINAL_ASSAYS_RECORDED,
        LOT_PRICED,
        INVOICE_PAID,
        LOT_CHANGED,
    }
)

LOT_DETAIL_KEYS: Final = {
    LOT_SHIPPED: "shipment",
    LOT_ARRIVED: "arrival",
    FINAL_ASSAYS_RECORDED: "assays",
    LOT_PRICED: "pricing",
}
"""Which part of a lot's ``details`` each event fills in."""


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractRecord:
    contract_id: str
    buyer_bank_id: str
    seller_bank_id: str
    terms: Mapping[str, Any]
    """The terms both banks signed, as :func:`settlement.offtake.flow.terms_document` wrote them."""
    state: str
    buyer_bank_signed: bool
    seller_bank_signed: bool
    invoiced_minor: int
    received_minor: int
    journal_index: int

    @property
    def outstanding_minor(self) -> int:
        """Invoices issued minus payments received: what the buyer owes (negative: a refund)."""
        return self.invoiced_minor - self.received_minor

    def is_party(self, participant_id: str) -> bool:
        return participant_id in (self.buyer_bank_id, self.seller_bank_id)


@dataclass(frozen=True, slots=True)
class LotRecord:
    contract_id: str
    lot_id: str
    state: str
    disputed_from: str | None
    details: Mapping[str, Any]
    """``shipment``, ``arrival``, ``assays``, ``pricing``: the bodies that recorded them."""
    journal_index: int


@dataclass(frozen=True, slots=True)
class AppliedPayment:
    uetr: str
    invoice_id: str
    amount_minor: int
    transaction_id: str
    journal_index: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    invoice_id: str
    contract_id: str
    lot_id: str
    kind: str
    value_minor: int
    total_minor: int
    paid_minor: int
    """With the sign of the total."""
    details: Mapping[str, Any]
    """``lines`` and ``prices`` as logged."""
    transaction_id: str | None
    journal_index: int
    leaf_hash: bytes
    issued_at_us: int
    payments: tuple[AppliedPayment, ...] = ()

    @property
    def outstanding_minor(self) -> int:
        return self.total_minor - self.paid_minor


@dataclass(frozen=True, slots=True)
class FixingRecord:
    metal: str
    fixing_date: str
    price_usd: str
    event_id: str
    journal_index: int


# -- the projection ----------------------------------------------------------------------------


class OfftakeProjection:
    """Writes the offtake rows of newly committed offtake events."""

    def project(self, connection: Connection, created: Sequence[tuple[Command, Receipt]]) -> None:
        for command, receipt in created:
            if not isinstance(command, NewEvent) or command.event_type not in EVENT_TYPES:
                continue
            body = command.body
            event_type = command.event_type
            if event_type == CONTRACT_SIGNED:
                _contract_signed(connection, body, receipt)
            elif event_type == CONTRACT_CHANGED:
                _set_contract(connection, body["contract_id"], receipt, state=body["state"])
            elif event_type == PRICE_FIXINGS_PUBLISHED:
                _fixings(connection, command.id, body, receipt)
            elif event_type == LOT_SHIPPED:
                _lot_shipped(connection, body, receipt)
            elif event_type == INVOICE_ISSUED:
                _invoice_issued(connection, body, receipt)
            elif event_type == INVOICE_PAID:
                _invoice_paid(connection, body, receipt)
            else:
                _lot_changed(connection, event_type, body, receipt)


def _contract_signed(connection: Connection, body: Mapping[str, Any], receipt: Receipt) -> None:
    contract_id = body["contract_id"]
    exists = connection.scalar(
        select(offtake_contracts.c.contract_id).where(
            offtake_contracts.c.contract_id == contract_id
        )
    )
    signatures = {
        "state": body["state"],
        "buyer_bank_signed": bool(body["buyer_bank_signed"]),
        "seller_bank_signed": bool(body["seller_bank_signed"]),
    }
    if exists is not None:
        _set_contract(connection, contract_id, receipt, **signatures)
        return
    connection.execute(
        offtake_contracts.insert().values(
            contract_id=contract_id,
            buyer_bank_id=body["buyer_bank_id"],
            seller_bank_id=body["seller_bank_id"],
            terms=_text(body["terms"]),
            invoiced_minor=0,
            received_minor=0,
            journal_index=receipt.journal_index,
            updated_index=receipt.journal_index,
            **signatures,
        )
    )


def _set_contract(
    connection: Connection, contract_id: str, receipt: Receipt, **values: Any
) -> None:
    changed = connection.execute(
        update(offtake_contracts)
        .where(offtake_contracts.c.contract_id == contract_id)
        .values(updated_index=receipt.journal_index, **values)
    )
    if changed.rowcount != 1:
        raise IntegrityError(f"offtake event at {receipt.journal_index} names no contract")


def _add_to_contract(
    connection: Connection,
    contract_id: str,
    receipt: Receipt,
    *,
    invoiced_minor: int = 0,
    received_minor: int = 0,
) -> None:
    changed = connection.execute(
        update(offtake_contracts)
        .where(offtake_contracts.c.contract_id == contract_id)
        .values(
            invoiced_minor=offtake_contracts.c.invoiced_minor + invoiced_minor,
            received_minor=offtake_contracts.c.received_minor + received_minor,
            updated_index=receipt.journal_index,
        )
    )
    if changed.rowcount != 1:
        raise IntegrityError(f"offtake event at {receipt.journal_index} names no contract")


def _fixings(
    connection: Connection, event_id: str, body: Mapping[str, Any], receipt: Receipt
) -> None:
    connection.execute(
        offtake_price_fixings.insert(),
        [
            {
                "metal": fixing["metal"],
                "fixing_date": fixing["fixing_date"],
                "price_usd": fixing["price_usd"],
                "event_id": event_id,
                "journal_index": receipt.journal_index,
            }
            for fixing in body["fixings"]
        ],
    )


def _lot_shipped(connection: Connection, body: Mapping[str, Any], receipt: Receipt) -> None:
    connection.execute(
        offtake_lots.insert().values(
            contract_id=body["contract_id"],
            lot_id=body["lot_id"],
            state=body["state"],
            disputed_from=None,
            details=_text({"shipment": _lot_facts(body)}),
            journal_index=receipt.journal_index,
            updated_index=receipt.journal_index,
        )
    )


def _lot_facts(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in body.items()
        if key not in ("contract_id", "lot_id", "state", "disputed_from")
    }


def _lot_changed(
    connection: Connection, event_type: str, body: Mapping[str, Any], receipt: Receipt
) -> None:
    values: dict[str, Any] = {
        "state": body["state"],
        "disputed_from": body.get("disputed_from"),
        "updated_index": receipt.journal_index,
    }
    key = LOT_DETAIL_KEYS.get(event_type)
    where = (offtake_lots.c.contract_id == body["contract_id"]) & (
        offtake_lots.c.lot_id == body["lot_id"]
    )
    if key is not None:
        current = connection.scalar(select(offtake_lots.c.details).where(where))
        if current is None:
            raise IntegrityError(f"offtake event at {receipt.journal_index} names no lot")
        details = dict(json.loads(current))
        details[key] = _lot_facts(body)
        values["details"] = _text(details)
    changed = connection.execute(update(offtake_lots).where(where).values(**values))
    if changed.rowcount != 1:
        raise IntegrityError(f"offtake event at {receipt.journal_index} names no lot")


def _invoice_issued(connection: Connection, body: Mapping[str, Any], receipt: Receipt) -> None:
    invoice = body["invoice"]
    total_minor = int(invoice["total_minor"])
    connection.execute(
        offtake_invoices.insert().values(
            invoice_id=invoice["invoice_id"],
            contract_id=body["contract_id"],
            lot_id=body["lot_id"],
            kind=invoice["kind"],
            value_minor=int(invoice["value_minor"]),
            total_minor=total_minor,
            paid_minor=0,
            details=_text({"lines": invoice["lines"], "prices": body["prices"]}),
            transaction_id=body["transaction_id"],
            journal_index=receipt.journal_index,
            leaf_hash=receipt.leaf_hash,
            issued_at_us=receipt.committed_at_us,
        )
    )
    _add_to_contract(connection, body["contract_id"], receipt, invoiced_minor=total_minor)
    _lot_changed(connection, INVOICE_ISSUED, body, receipt)


def _invoice_paid(connection: Connection, body: Mapping[str, Any], receipt: Receipt) -> None:
    amount_minor = int(body["amount_minor"])
    # A refund is paid by the seller: it lowers what was received.
    signed_minor = -amount_minor if body["refund"] else amount_minor
    connection.execute(
        offtake_invoice_payments.insert().values(
            uetr=body["uetr"],
            invoice_id=body["invoice_id"],
            amount_minor=amount_minor,
            transaction_id=body["transaction_id"],
            journal_index=receipt.journal_index,
            leaf_hash=receipt.leaf_hash,
        )
    )
    changed = connection.execute(
        update(offtake_invoices)
        .where(offtake_invoices.c.invoice_id == body["invoice_id"])
        .values(paid_minor=offtake_invoices.c.paid_minor + signed_minor)
    )
    if changed.rowcount != 1:
        raise IntegrityError(f"offtake payment at {receipt.journal_index} names no invoice")
    _add_to_contract(connection, body["contract_id"], receipt, received_minor=signed_minor)
    _lot_changed(connection, INVOICE_PAID, body, receipt)


def _text(document: Any) -> str:
    return canonical.encode(document).decode("utf-8")


# -- readers -----------------------------------------------------------------------------------


def contract_by_id(ledger: Ledger, contract_id: str) -> ContractRecord | None:
    with ledger.reading() as connection:
        row = connection.execute(
            select(offtake_contracts).where(offtake_contracts.c.contract_id == contract_id)
        ).first()
    return None if row is None else _contract(row)


def lot_by_id(ledger: Ledger, contract_id: str, lot_id: str) -> LotRecord | None:
    with ledger.reading() as connection:
        row = connection.execute(
            select(offtake_lots)
            .where(offtake_lots.c.contract_id == contract_id)
            .where(offtake_lots.c.lot_id == lot_id)
        ).first()
    return None if row is None else _lot(row)


def lots_of_contract(ledger: Ledger, contract_id: str) -> list[LotRecord]:
    with ledger.reading() as connection:
        rows = connection.execute(
            select(offtake_lots)
            .where(offtake_lots.c.contract_id == contract_id)
            .order_by(offtake_lots.c.journal_index)
        ).all()
    return [_lot(row) for row in rows]


def lot_count(ledger: Ledger, contract_id: str) -> int:
    with ledger.reading() as connection:
        count = connection.scalar(
            select(func.count())
            .select_from(offtake_lots)
            .where(offtake_lots.c.contract_id == contract_id)
        )
    return int(count or 0)


def invoice_by_id(ledger: Ledger, invoice_id: str) -> InvoiceRecord | None:
    found = _invoices(ledger, offtake_invoices.c.invoice_id == invoice_id)
    return found[0] if found else None


def invoices_of_contract(ledger: Ledger, contract_id: str) -> list[InvoiceRecord]:
    return _invoices(ledger, offtake_invoices.c.contract_id == contract_id)


def invoices_of_lot(ledger: Ledger, contract_id: str, lot_id: str) -> list[InvoiceRecord]:
    return _invoices(
        ledger,
        (offtake_invoices.c.contract_id == contract_id) & (offtake_invoices.c.lot_id == lot_id),
    )


def applied_payment(ledger: Ledger, uetr: str) -> AppliedPayment | None:
    with ledger.reading() as connection:
        row = connection.execute(
            select(offtake_invoice_payments).where(offtake_invoice_payments.c.uetr == uetr)
        ).first()
    return None if row is None else _applied(row)


def fixings_between(
    ledger: Ledger, metals: Iterable[str], first_day: str, last_day: str
) -> list[FixingRecord]:
    """Fixings of ``metals`` dated ``first_day``..``last_day`` (ISO dates sort as text)."""
    with ledger.reading() as connection:
        rows = connection.execute(
            select(offtake_price_fixings)
            .where(offtake_price_fixings.c.metal.in_(sorted(set(metals))))
            .where(offtake_price_fixings.c.fixing_date >= first_day)
            .where(offtake_price_fixings.c.fixing_date <= last_day)
            .order_by(offtake_price_fixings.c.metal, offtake_price_fixings.c.fixing_date)
        ).all()
    return [_fixing(row) for row in rows]


def fixings_published(ledger: Ledger, keys: Iterable[tuple[str, str]]) -> list[FixingRecord]:
    """The published fixings among ``(metal, fixing_date)`` pairs."""
    wanted = set(keys)
    dates = sorted({day for _, day in wanted})
    found: list[FixingRecord] = []
    with ledger.reading() as connection:
        for start in range(0, len(dates), 500):
            rows = connection.execute(
                select(offtake_price_fixings).where(
                    offtake_price_fixings.c.fixing_date.in_(dates[start : start + 500])
                )
            ).all()
            found += [_fixing(row) for row in rows if (row.metal, row.fixing_date) in wanted]
    return sorted(found, key=lambda fixing: (fixing.metal, fixing.fixing_date))


def event_receipt(ledger: Ledger, event_id: str) -> Receipt | None:
    """The receipt of the event committed under ``event_id`` (``existed``: a retry's answer)."""
    found = event_instruction(ledger, event_id)
    return None if found is None else found[0]


def event_instruction(ledger: Ledger, event_id: str) -> tuple[Receipt, bytes | None] | None:
    """The event committed under ``event_id``: its receipt and the signed instruction's bytes."""
    with ledger.reading() as connection:
        row = connection.execute(
            select(
                journal.c.journal_index,
                journal.c.leaf_hash,
                journal.c.committed_at_us,
                journal.c.leaf,
            ).where(journal.c.entry_key == "event/" + event_id)
        ).first()
    if row is None:
        return None
    receipt = Receipt(
        event_id, int(row.journal_index), bytes(row.leaf_hash), int(row.committed_at_us), True
    )
    document = canonical.decode(bytes(row.leaf))
    instruction = document.get("instruction") if isinstance(document, dict) else None
    payload = base64.b64decode(instruction["payload"]) if instruction else None
    return receipt, payload


def _contract(row: Any) -> ContractRecord:
    return ContractRecord(
        contract_id=row.contract_id,
        buyer_bank_id=row.buyer_bank_id,
        seller_bank_id=row.seller_bank_id,
        terms=json.loads(row.terms),
        state=row.state,
        buyer_bank_signed=bool(row.buyer_bank_signed),
        seller_bank_signed=bool(row.seller_bank_signed),
        invoiced_minor=int(row.invoiced_minor),
        received_minor=int(row.received_minor),
        journal_index=int(row.journal_index),
    )


def _lot(row: Any) -> LotRecord:
    return LotRecord(
        contract_id=row.contract_id,
        lot_id=row.lot_id,
        state=row.state,
        disputed_from=row.disputed_from,
        details=json.loads(row.details),
        journal_index=int(row.journal_index),
    )


def _applied(row: Any) -> AppliedPayment:
    return AppliedPayment(
        uetr=row.uetr,
        invoice_id=row.invoice_id,
        amount_minor=int(row.amount_minor),
        transaction_id=row.transaction_id,
        journal_index=int(row.journal_index),
        leaf_hash=bytes(row.leaf_hash),
    )


def _fixing(row: Any) -> FixingRecord:
    return FixingRecord(
        metal=row.metal,
        fixing_date=row.fixing_date,
        price_usd=row.price_usd,
        event_id=row.event_id,
        journal_index=int(row.journal_index),
    )


def _invoices(ledger: Ledger, condition: Any) -> list[InvoiceRecord]:
    with ledger.reading() as connection:
        rows = connection.execute(
            select(offtake_invoices).where(condition).order_by(offtake_invoices.c.journal_index)
        ).all()
        if not rows:
            return []
        ids = [row.invoice_id for row in rows]
        payments: dict[str, list[AppliedPayment]] = {invoice_id: [] for invoice_id in ids}
        for payment_row in connection.execute(
            select(offtake_invoice_payments)
            .where(offtake_invoice_payments.c.invoice_id.in_(ids))
            .order_by(offtake_invoice_payments.c.journal_index)
        ):
            payments[payment_row.invoice_id].append(_applied(payment_row))
    return [
        InvoiceRecord(
            invoice_id=row.invoice_id,
            contract_id=row.contract_id,
            lot_id=row.lot_id,
            kind=row.kind,
            value_minor=int(row.value_minor),
            total_minor=int(row.total_minor),
            paid_minor=int(row.paid_minor),
            details=json.loads(row.details),
            transaction_id=row.transaction_id,
            journal_index=int(row.journal_index),
            leaf_hash=bytes(row.leaf_hash),
            issued_at_us=int(row.issued_at_us),
            payments=tuple(payments[row.invoice_id]),
        )
        for row in rows
    ]


__all__ = [
    "CONTRACT_CHANGED",
    "CONTRACT_SIGNED",
    "EVENT_TYPES",
    "FINAL_ASSAYS_RECORDED",
    "INVOICE_ISSUED",
    "INVOICE_PAID",
    "LOT_ARRIVED",
    "LOT_CHANGED",
    "LOT_PRICED",
    "LOT_SHIPPED",
    "PRICE_FIXINGS_PUBLISHED",
    "AppliedPayment",
    "ContractRecord",
    "FixingRecord",
    "InvoiceRecord",
    "LotRecord",
    "OfftakeProjection",
]
