"""The writer lease: at most one service instance writes to a shared PostgreSQL.

The lease is a session-level PostgreSQL advisory lock held on a dedicated
connection. If the holder dies, its connection closes, PostgreSQL releases
the lock, and the next instance's retry loop takes it over. Instances without
the lease serve reads and refuse writes with UNAVAILABLE. SQLite needs no
lease (one file, one machine; ``BEGIN IMMEDIATE`` serializes writers), so it
is always held there.

The ledger's per-transaction writer lock stays in force underneath: the lease
decides which instance *should* write; the lock guarantees no two writes
ever interleave, even during a takeover.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Final

import structlog
from sqlalchemy import Connection, create_engine, func, select
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

LEASE_LOCK_KEY: Final = 0x5E77_1E00_0003
"""Base of the advisory-lock key; the schema's CRC-32 is mixed in (see ``lease_key``)."""


def lease_key(schema: str) -> int:
    """The lease's advisory-lock key for one schema.

    Advisory locks are database-wide; two ledgers in different schemas of one
    database (tests, staging beside production) must not share a lease.
    """
    return LEASE_LOCK_KEY ^ zlib.crc32(schema.encode("utf-8"))


log = structlog.get_logger(__name__)


class WriterLease:
    def __init__(self, url: URL, *, enabled: bool = True) -> None:
        self.needed = enabled and url.get_backend_name() == "postgresql"
        self._engine = create_engine(url, poolclass=NullPool) if self.needed else None
        self._connection: Connection | None = None
        self._key: int | None = None

    @property
    def held(self) -> bool:
        return not self.needed or self._connection is not None

    def refresh(self) -> bool:
        """Try to take the lease, or check that it is still held; blocking, quick."""
        if not self.needed or self._engine is None:
            return True
        if self._connection is not None:
            try:
                self._connection.execute(select(1))
            except Exception as error:  # any failure means the lease is gone
                log.error("writer lease lost", error=str(error))
                self._drop()
            return self._connection is not None
        try:
            connection = self._engine.connect()
        except Exception as error:  # database unreachable: no lease
            log.warning("writer lease: database unreachable", error=str(error))
            return False
        if self._key is None:
            self._key = lease_key(str(connection.scalar(select(func.current_schema()))))
        acquired = bool(connection.scalar(select(func.pg_try_advisory_lock(self._key))))
        connection.commit()
        if acquired:
            self._connection = connection
            log.info("writer lease acquired")
        else:
            connection.close()
        return acquired

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.scalar(select(func.pg_advisory_unlock(self._key)))
            except Exception as error:  # the database is away: the lock went with the session
                log.warning("writer lease: not unlocked, the connection is gone", error=str(error))
            finally:
                self._drop()
        if self._engine is not None:
            self._engine.dispose()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # Closing a broken connection may itself fail; the lease is gone either way.
            with contextlib.suppress(Exception):
                connection.close()
