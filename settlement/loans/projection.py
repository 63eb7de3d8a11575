"""Read models of the loan flow: facilities, their state history, disbursements, repayments.

:class:`LoansProjection` writes them in the same database transaction as the
journal events that justify them (``ledger.store.Projection``), so the tables
can always be rebuilt from the log. It folds each ``loan_...`` event into the
facility's record with :func:`settlement.loans.flow.evolve`, the function the
auditor's rebuild runs on an export bundle: a loan event that does not follow
from the record (a figure that differs from the recomputation, a transition
the table refuses) raises :class:`~settlement.loans.flow.LoanEventMustReplay`
and aborts the commit. Loan events are committed in linked groups of their
own, so nothing else is aborted with them.

The readers take the ledger and use its read connection; they block (call
them in a worker thread from async code).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, func, insert, select, update

from ledger import canonical
from ledger.records import Command, NewEvent, Receipt
from ledger.store import Ledger
from settlement.loans.flow import (
    DISBURSEMENT_PAID,
    DISBURSEMENT_REJECTED,
    DISBURSEMENT_REQUESTED,
    EVENT_DISBURSEMENT_PAID,
    EVENT_DISBURSEMENT_REJECTED,
    EVENT_DISBURSEMENT_REQUESTED,
    EVENT_FACILITY_ADVANCED,
    EVENT_FACILITY_CREATED,
    EVENT_FACILITY_SIGNED,
    EVENT_REPAYMENT_APPLIED,
    EVENT_SCHEDULE_GENERATED,
    LOAN_EVENT_TYPES,
    DisbursementRecord,
    FacilityRecord,
    evolve,
    record_document,
    record_from_document,
)
from settlement.schema import (
    loan_disbursements,
    loan_facilities,
    loan_facility_history,
    loan_repayments,
)

CREATED_EVENT: Final = "created"
"""The history's name for a facility's creation (no FacilityEvent leads to APPROVED)."""

LIST_LIMIT_MAX: Final = 1000


def _text(document: Mapping[str, Any]) -> str:
    return canonical.encode(dict(document)).decode("utf-8")


class LoansProjection:
    """Folds committed loan events into the loan tables, in the commit's transaction."""

    def project(self, connection: Connection, created: Sequence[tuple[Command, Receipt]]) -> None:
        records: dict[str, FacilityRecord | None] = {}
        sequences: dict[str, int] = {}
        for command, receipt in created:
            if not isinstance(command, NewEvent) or command.event_type not in LOAN_EVENT_TYPES:
                continue
            body = command.body
            facility_id = str(body["facility_id"])
            if facility_id not in records:
                records[facility_id] = _load_record(connection, facility_id)
            before = records[facility_id]
            signer = command.instruction.signer if command.instruction is not None else ""
            after = evolve(before, command.event_type, body, signer)
            records[facility_id] = after
            self._write_facility(connection, command, receipt, before, after)
            change = _state_change(command, before, after)
            if change is not None:
                if facility_id not in sequences:
                    sequences[facility_id] = _next_sequence(connection, facility_id)
                connection.execute(
                    insert(loan_facility_history).values(
                        facility_id=facility_id,
                        sequence=sequences[facility_id],
                        event=change[0],
                        from_state=change[1],
                        to_state=change[2],
                        business_date=str(
                            body.get("business_date") or body.get("value_date") or ""
                        ),
                        participant_id=signer,
                        instruction_id=command.id,
                        journal_index=receipt.journal_index,
                        leaf_hash=receipt.leaf_hash,
                        committed_at_us=receipt.committed_at_us,
                    )
                )
                sequences[facility_id] += 1
            self._write_side_tables(connection, command, receipt)

    @staticmethod
    def _write_facility(
        connection: Connection,
        command: NewEvent,
        receipt: Receipt,
        before: FacilityRecord | None,
        after: FacilityRecord,
    ) -> None:
        text = _text(record_document(after))
        if before is None:
            connection.execute(
                insert(loan_facilities).values(
                    facility_id=after.facility_id,
                    lender_id=after.lender_id,
                    borrower_bank_id=after.terms.borrower_bank_id,
                    state=after.state.value,
                    record=text,
                    journal_index=receipt.journal_index,
                    leaf_hash=receipt.leaf_hash,
                    updated_journal_index=receipt.journal_index,
                )
            )
            return
        values: dict[str, Any] = {
            "state": after.state.value,
            "record": text,
            "updated_journal_index": receipt.journal_index,
        }
        if command.event_type == EVENT_SCHEDULE_GENERATED:
            values["schedule_journal_index"] = receipt.journal_index
            values["schedule_leaf_hash"] = receipt.leaf_hash
        connection.execute(
            update(loan_facilities)
            .where(loan_facilities.c.facility_id == after.facility_id)
            .values(**values)
        )

    @staticmethod
    def _write_side_tables(connection: Connection, command: NewEvent, receipt: Receipt) -> None:
        body = command.body
        if command.event_type == EVENT_DISBURSEMENT_REQUESTED:
            connection.execute(
                insert(loan_disbursements).values(
                    disbursement_id=body["disbursement_id"],
                    facility_id=body["facility_id"],
                    number=int(body["number"]),
                    status=DISBURSEMENT_REQUESTED,
                    supplier_bank_id=body["supplier_bank_id"],
                    request=_text(body),
                    decision="",
                    journal_index=receipt.journal_index,
                    leaf_hash=receipt.leaf_hash,
                )
            )
        elif command.event_type in (EVENT_DISBURSEMENT_PAID, EVENT_DISBURSEMENT_REJECTED):
            status = (
                DISBURSEMENT_PAID
                if command.event_type == EVENT_DISBURSEMENT_PAID
                else DISBURSEMENT_REJECTED
            )
            connection.execute(
                update(loan_disbursements)
                .where(loan_disbursements.c.disbursement_id == body["disbursement_id"])
                .where(loan_disbursements.c.status == DISBURSEMENT_REQUESTED)
                .values(
                    status=status,
                    decision=_text(body),
                    decision_journal_index=receipt.journal_index,
                    decision_leaf_hash=receipt.leaf_hash,
                )
            )
        elif command.event_type == EVENT_REPAYMENT_APPLIED:
            connection.execute(
                insert(loan_repayments).values(
                    repayment_id=body["repayment_id"],
                    facility_id=body["facility_id"],
                    number=int(body["number"]),
                    details=_text(body),
                    journal_index=receipt.journal_index,
                    leaf_hash=receipt.leaf_hash,
                    committed_at_us=receipt.committed_at_us,
                )
            )


def _state_change(
    command: NewEvent, before: FacilityRecord | None, after: FacilityRecord
) -> tuple[str, str, str] | None:
    """(event, from, to) when the event changed the facility's state."""
    if command.event_type == EVENT_FACILITY_CREATED:
        return CREATED_EVENT, "", after.state.value
    if before is None or before.state is after.state:
        return None
    if command.event_type in (
        EVENT_FACILITY_SIGNED,
        EVENT_FACILITY_ADVANCED,
        EVENT_DISBURSEMENT_PAID,
        EVENT_REPAYMENT_APPLIED,
    ):
        return str(command.body["event"]), before.state.value, after.state.value
    return None


def _load_record(connection: Connection, facility_id: str) -> FacilityRecord | None:
    text = connection.execute(
        select(loan_facilities.c.record).where(loan_facilities.c.facility_id == facility_id)
    ).scalar_one_or_none()
    return None if text is None else record_from_document(json.loads(text))


def _next_sequence(connection: Connection, facility_id: str) -> int:
    highest = connection.execute(
        select(func.max(loan_facility_history.c.sequence)).where(
            loan_facility_history.c.facility_id == facility_id
        )
    ).scalar_one_or_none()
    return 0 if highest is None else int(highest) + 1


# -- readers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryRef:
    """Where a committed entry sits in the journal."""

    journal_index: int
    leaf_hash: bytes


@dataclass(frozen=True, slots=True)
class HistoryRow:
    event: str
    from_state: str
    to_state: str
    business_date: str
    participant_id: str
    instruction_id: str
    entry: EntryRef
    committed_at_us: int


@dataclass(frozen=True, slots=True)
class FacilityRow:
    record: FacilityRecord
    created: EntryRef
    schedule: EntryRef | None
    history: tuple[HistoryRow, ...]


@dataclass(frozen=True, slots=True)
class DisbursementRow:
    record: DisbursementRecord
    requested: EntryRef
    decided: EntryRef | None


@dataclass(frozen=True, slots=True)
class RepaymentRow:
    details: Mapping[str, Any]
    """The repayment event's body."""
    entry: EntryRef
    committed_at_us: int


def facility_record(ledger: Ledger, facility_id: str) -> FacilityRecord | None:
    with ledger.reading() as connection:
        return _load_record(connection, facility_id)


def facility_exists(ledger: Ledger, facility_id: str) -> bool:
    with ledger.reading() as connection:
        found = connection.execute(
            select(loan_facilities.c.facility_id).where(
                loan_facilities.c.facility_id == facility_id
            )
        ).first()
    return found is not None


def facility(ledger: Ledger, facility_id: str) -> FacilityRow | None:
    with ledger.reading() as connection:
        row = connection.execute(
            select(loan_facilities).where(loan_facilities.c.facility_id == facility_id)
        ).first()
        if row is None:
            return None
        history = connection.execute(
            select(loan_facility_history)
            .where(loan_facility_history.c.facility_id == facility_id)
            .order_by(loan_facility_history.c.sequence)
        ).all()
    schedule = (
        None
        if row.schedule_journal_index is None
        else EntryRef(int(row.schedule_journal_index), bytes(row.schedule_leaf_hash))
    )
    return FacilityRow(
        record=record_from_document(json.loads(row.record)),
        created=EntryRef(int(row.journal_index), bytes(row.leaf_hash)),
        schedule=schedule,
        history=tuple(
            HistoryRow(
                event=item.event,
                from_state=item.from_state,
                to_state=item.to_state,
                business_date=item.business_date,
                participant_id=item.participant_id,
                instruction_id=item.instruction_id,
                entry=EntryRef(int(item.journal_index), bytes(item.leaf_hash)),
                committed_at_us=int(item.committed_at_us),
            )
            for item in history
        ),
    )


def _disbursement_row(row: Any) -> DisbursementRow:
    record = DisbursementRecord.from_request_body(json.loads(row.request))
    decision: Mapping[str, Any] = json.loads(row.decision) if row.decision else {}
    record = DisbursementRecord(
        disbursement_id=record.disbursement_id,
        number=record.number,
        request=record.request,
        supplier_bank_id=record.supplier_bank_id,
        supplier_account_number=record.supplier_account_number,
        screening=record.screening,
        status=row.status,
        decision=decision,
        request_body=record.request_body,
    )
    decided = (
        None
        if row.decision_journal_index is None
        else EntryRef(int(row.decision_journal_index), bytes(row.decision_leaf_hash))
    )
    return DisbursementRow(
        record=record,
        requested=EntryRef(int(row.journal_index), bytes(row.leaf_hash)),
        decided=decided,
    )


def disbursement(ledger: Ledger, disbursement_id: str) -> DisbursementRow | None:
    with ledger.reading() as connection:
        row = connection.execute(
            select(loan_disbursements).where(
                loan_disbursements.c.disbursement_id == disbursement_id
            )
        ).first()
    return None if row is None else _disbursement_row(row)


def disbursements(
    ledger: Ledger, facility_id: str, *, after_number: int, limit: int
) -> list[DisbursementRow]:
    """A facility's disbursements with a number above ``after_number``, in order."""
    with ledger.reading() as connection:
        rows = connection.execute(
            select(loan_disbursements)
            .where(loan_disbursements.c.facility_id == facility_id)
            .where(loan_disbursements.c.number > after_number)
            .order_by(loan_disbursements.c.number)
            .limit(min(limit, LIST_LIMIT_MAX))
        ).all()
    return [_disbursement_row(row) for row in rows]


def _repayment_row(row: Any) -> RepaymentRow:
    return RepaymentRow(
        details=json.loads(row.details),
        entry=EntryRef(int(row.journal_index), bytes(row.leaf_hash)),
        committed_at_us=int(row.committed_at_us),
    )


def repayment(ledger: Ledger, repayment_id: str) -> RepaymentRow | None:
    with ledger.reading() as connection:
        row = connection.execute(
            select(loan_repayments).where(loan_repayments.c.repayment_id == repayment_id)
        ).first()
    return None if row is None else _repayment_row(row)


def repayments(
    ledger: Ledger, facility_id: str, *, after_number: int, limit: int
) -> list[RepaymentRow]:
    with ledger.reading() as connection:
        rows = connection.execute(
            select(loan_repayments)
            .where(loan_repayments.c.facility_id == facility_id)
            .where(loan_repayments.c.number > after_number)
            .order_by(loan_repayments.c.number)
            .limit(min(limit, LIST_LIMIT_MAX))
        ).all()
    return [_repayment_row(row) for row in rows]


__all__ = [
    "DisbursementRow",
    "EntryRef",
    "FacilityRow",
    "HistoryRow",
    "LoansProjection",
    "RepaymentRow",
    "disbursement",
    "disbursements",
    "facility",
    "facility_exists",
    "facility_record",
    "repayment",
    "repayments",
]
