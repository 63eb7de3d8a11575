"""The participants registry: who may call, with which role, and their bank data.

Registration is a ledger event (``participant_registered``) committed together
with the participant's signing key; the ``participants`` table is its
projection, written in the same transaction, so the log alone can rebuild it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from ledger.records import Command, NewEvent, Receipt
from ledger.store import Ledger, storable
from settlement.auth import Caller, Role
from settlement.schema import participants

PARTICIPANT_REGISTERED = "participant_registered"
EVENT_ID_PREFIX = "participant:"


@dataclass(frozen=True, slots=True)
class Participant:
    participant_id: str
    legal_name: str
    role: Role
    country: str
    bic: str
    lei: str
    aba_routing_number: str
    iban_bank_code: str
    common_name: str
    journal_index: int
    registered_at_us: int


def registration_event(participant: dict[str, Any], instruction: Any = None) -> NewEvent:
    """The ledger event that registers a participant (body = the registry row's fields)."""
    return NewEvent(
        id=EVENT_ID_PREFIX + participant["participant_id"],
        event_type=PARTICIPANT_REGISTERED,
        body=participant,
        instruction=instruction,
    )


class ParticipantsProjection:
    """Writes a ``participants`` row for each committed registration event."""

    def project(self, connection: Connection, created: Sequence[tuple[Command, Receipt]]) -> None:
        rows = []
        for command, receipt in created:
            if isinstance(command, NewEvent) and command.event_type == PARTICIPANT_REGISTERED:
                body = dict(command.body)
                rows.append(
                    {
                        "participant_id": body["participant_id"],
                        "legal_name": body["legal_name"],
                        "role": body["role"],
                        "country": body["country"],
                        "bic": body.get("bic", ""),
                        "lei": body.get("lei", ""),
                        "aba_routing_number": body.get("aba_routing_number", ""),
                        "iban_bank_code": body.get("iban_bank_code", ""),
                        "common_name": body["common_name"],
                        "journal_index": receipt.journal_index,
                        "registered_at_us": receipt.committed_at_us,
                    }
                )
        if rows:
            connection.execute(participants.insert(), rows)


class Registry:
    """Reads participants; caches the certificate-name lookups every call makes."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._by_common_name: dict[str, Caller] = {}
        self._lock = threading.Lock()

    def caller_for_common_name(self, common_name: str) -> Caller | None:
        with self._lock:
            cached = self._by_common_name.get(common_name)
        if cached is not None:
            return cached
        with self.ledger.reading() as connection:
            row = connection.execute(
                select(participants.c.participant_id, participants.c.role).where(
                    participants.c.common_name == common_name
                )
            ).first()
        if row is None:
            return None
        caller = Caller(row.participant_id, Role(row.role), common_name)
        with self._lock:
            self._by_common_name[common_name] = caller
        return caller

    def get(self, participant_id: str) -> Participant | None:
        if not storable(participant_id):
            return None
        with self.ledger.reading() as connection:
            row = connection.execute(
                select(participants).where(participants.c.participant_id == participant_id)
            ).first()
        return None if row is None else _participant(row)

    def all(self) -> list[Participant]:
        with self.ledger.reading() as connection:
            rows = connection.execute(
                select(participants).order_by(participants.c.participant_id)
            ).all()
        return [_participant(row) for row in rows]


def _participant(row: Any) -> Participant:
    return Participant(
        participant_id=row.participant_id,
        legal_name=row.legal_name,
        role=Role(row.role),
        country=row.country,
        bic=row.bic,
        lei=row.lei,
        aba_routing_number=row.aba_routing_number,
        iban_bank_code=row.iban_bank_code,
        common_name=row.common_name,
        journal_index=row.journal_index,
        registered_at_us=row.registered_at_us,
    )
