"""The hub: the ledger, the sequencer, the registry and their background work.

One :class:`Hub` per server process. It opens the ledger with the log key
and the service's projections, brings the service's tables up to date,
registers the operator on first start (the log's first entries), holds the
writer lease on PostgreSQL, and runs the timers that expire pending
reservations and sign checkpoints on a quiet log.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy import create_engine, select

from ledger.errors import LedgerError
from ledger.journal import (
    CHECKPOINT_EVERY_ENTRIES_DEFAULT,
    CHECKPOINT_EVERY_SECONDS_DEFAULT,
    LogSettings,
)
from ledger.keys import load_private_key, load_public_key, public_key_bytes
from ledger.note import NoteSigner
from ledger.records import RegisterSigningKey
from ledger.store import Ledger
from settlement import metrics, migrations
from settlement.auth import Caller, Role
from settlement.lease import WriterLease
from settlement.loans.projection import LoansProjection
from settlement.offtake.projection import OfftakeProjection
from settlement.payments.projection import PaymentsProjection
from settlement.registry import ParticipantsProjection, Registry, registration_event
from settlement.sequencer import GROUP_COMMIT_MAX_DEFAULT, Sequencer

log = structlog.get_logger(__name__)

TIMER_INTERVAL_SECONDS = 1.0
"""How often pending expiry, checkpoints and the lease are looked after."""


@dataclass(frozen=True)
class HubSettings:
    database: str
    origin: str
    log_key_path: Path
    operator_id: str
    operator_common_name: str
    operator_public_key_path: Path
    checkpoint_every_entries: int = CHECKPOINT_EVERY_ENTRIES_DEFAULT
    checkpoint_every_seconds: int = CHECKPOINT_EVERY_SECONDS_DEFAULT
    group_commit_max: int = GROUP_COMMIT_MAX_DEFAULT
    writer_lease: bool = True


@dataclass
class Hub:
    settings: HubSettings
    ledger: Ledger
    registry: Registry
    sequencer: Sequencer
    lease: WriterLease
    _timer: asyncio.Task[None] | None = None

    def resolve_caller(self, common_name: str) -> Caller | None:
        return self.registry.caller_for_common_name(common_name)

    async def ready(self) -> bool:
        """True when the database answers (the health check's SERVING)."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self._ping), timeout=2.0)
        except Exception:  # any failure means not ready
            return False
        return True

    def _ping(self) -> None:
        with self.ledger.reading() as connection:
            connection.execute(select(1))

    def start(self) -> None:
        self.sequencer.start()
        self._timer = asyncio.get_running_loop().create_task(self._tick_forever())

    async def close(self) -> None:
        """Commit what is queued, stop the timers, release the lease, close the store."""
        await self.sequencer.stop()
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await asyncio.to_thread(self.lease.release)
        await asyncio.to_thread(self.ledger.close)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TIMER_INTERVAL_SECONDS)
            try:
                await asyncio.to_thread(self._tick)
            except Exception as error:  # a timer must outlive a bad tick
                log.warning("background tick failed", error=str(error))

    def _tick(self) -> None:
        if not self.lease.refresh():
            return
        expired = self.ledger.expire_pending()
        if expired:
            log.info("pending transactions expired", count=expired)
        self.ledger.issue_checkpoint(force=False)
        self._report_metrics()

    def _report_metrics(self) -> None:
        metrics.set_journal_size(self.ledger.journal_size())
        signed_at_us = self.ledger.latest_checkpoint_time_us()
        if signed_at_us is not None:
            age_us = max(0, self.ledger.clock() - signed_at_us)
            metrics.set_checkpoint_age_seconds(age_us / 1_000_000)


async def open_hub(settings: HubSettings) -> Hub:
    """Open the store, migrate, bootstrap the operator, take the lease, start timers."""
    hub = await asyncio.to_thread(_open_hub_blocking, settings)
    hub.start()
    return hub


def _open_hub_blocking(settings: HubSettings) -> Hub:
    signer = NoteSigner(settings.origin, load_private_key(settings.log_key_path))
    log_settings = LogSettings(
        origin=settings.origin,
        signer=signer,
        checkpoint_every_entries=settings.checkpoint_every_entries,
        checkpoint_every_seconds=settings.checkpoint_every_seconds,
    )
    ledger = Ledger(
        settings.database,
        log=log_settings,
        projections=[
            ParticipantsProjection(),
            PaymentsProjection(),
            OfftakeProjection(),
            LoansProjection(),
        ],
    )
    engine = create_engine(ledger.url)
    try:
        migrations.upgrade(engine)
    finally:
        engine.dispose()
    lease = WriterLease(ledger.url, enabled=settings.writer_lease)
    registry = Registry(ledger)
    if lease.refresh():
        _bootstrap_operator(ledger, settings)
    hub = Hub(
        settings=settings,
        ledger=ledger,
        registry=registry,
        sequencer=Sequencer(
            ledger,
            max_group=settings.group_commit_max,
            may_write=lambda: lease.held,
            on_group=metrics.observe_group_commit_size,
        ),
        lease=lease,
    )
    return hub


def _bootstrap_operator(ledger: Ledger, settings: HubSettings) -> None:
    """Register the operator and its signing key: the log's first, unsigned entries.

    Idempotent: on every later start the same commands find themselves in the
    log. A different operator key or name is refused, never silently applied.
    """
    public_key = public_key_bytes(load_public_key(settings.operator_public_key_path))
    operator = {
        "participant_id": settings.operator_id,
        "legal_name": "Settlement hub operator",
        "role": Role.OPERATOR.value,
        "country": "US",
        "bic": "",
        "lei": "",
        "aba_routing_number": "",
        "iban_bank_code": "",
        "common_name": settings.operator_common_name,
    }
    results = ledger.execute(
        [
            RegisterSigningKey(
                id=f"bootstrap:{settings.operator_id}",
                signer=settings.operator_id,
                public_key=public_key,
            ),
            registration_event(operator),
        ],
        linked=True,
    )
    for result in results:
        if result.error is not None:
            raise BootstrapMismatch(
                f"the operator bootstrap does not match this database's log "
                f"({result.error}); start with the operator key and name it was created with"
            )


class BootstrapMismatch(LedgerError):
    code = "bootstrap_must_match_log"
    kind = "failed_precondition"
