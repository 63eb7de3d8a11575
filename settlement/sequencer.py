"""Group commit: one writer orders every write and commits many at once.

Callers ``await submit(commands)``. A single worker task takes everything
queued (up to ``max_group`` commands), runs one ``Ledger.execute`` in a worker
thread (one durable database transaction), and only then answers each
caller with its own results. While one group commits, the next one gathers,
so the commit cost is shared by every caller in the group.

Independent commands from different callers share a group: the ledger checks
each on its own, so one bad request never fails the others. A linked
(all-or-nothing) batch is committed in a group of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger.records import Command, CommandResult
from ledger.store import MAX_BATCH, Ledger
from settlement.errors import Unavailable

GROUP_COMMIT_MAX_DEFAULT = 2000

log = structlog.get_logger(__name__)


@dataclass
class _Request:
    commands: Sequence[Command]
    linked: bool
    future: asyncio.Future[list[CommandResult]] = field(repr=False)


class Sequencer:
    """Orders and group-commits writes to one ledger."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_group: int = GROUP_COMMIT_MAX_DEFAULT,
        may_write: Callable[[], bool] = lambda: True,
        on_group: Callable[[int], None] = lambda size: None,
    ) -> None:
        self.ledger = ledger
        self.max_group = max_group
        self.may_write = may_write
        self.on_group = on_group
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        if self._worker is None:
            return
        await self._queue.join()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    async def submit(
        self, commands: Sequence[Command], *, linked: bool = False
    ) -> list[CommandResult]:
        """Queue commands; return their results once they are durable."""
        if not self.may_write():
            raise Unavailable(
                "this instance does not hold the writer lease; send writes to the writer "
                "(retry with the same instruction ids)"
            )
        if self._worker is None:
            self.start()
        future: asyncio.Future[list[CommandResult]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(list(commands), linked, future))
        return await future

    async def _run(self) -> None:
        pending: _Request | None = None
        while True:
            first = pending if pending is not None else await self._queue.get()
            pending = None
            group = [first]
            size = len(first.commands)
            while not first.linked and size < self.max_group and not self._queue.empty():
                following = self._queue.get_nowait()
                if following.linked or size + len(following.commands) > MAX_BATCH:
                    pending = following  # committed next, in a group of its own
                    break
                group.append(following)
                size += len(following.commands)
            await self._commit(group)

    async def _commit(self, group: list[_Request]) -> None:
        commands = [command for request in group for command in request.commands]
        linked = len(group) == 1 and group[0].linked
        try:
            results = await asyncio.to_thread(self.ledger.execute, commands, linked=linked)
        except (OperationalError, DBAPIError) as error:
            log.error("group commit failed: database unavailable", error=str(error.orig))
            failure = Unavailable("the database is unavailable; retry with the same ids")
            for request in group:
                if not request.future.done():
                    request.future.set_exception(failure)
        except BaseException as error:
            for request in group:
                if not request.future.done():
                    request.future.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            self.on_group(len(commands))
            position = 0
            for request in group:
                count = len(request.commands)
                if not request.future.done():
                    request.future.set_result(results[position : position + count])
                position += count
        finally:
            for _ in group:
                self._queue.task_done()
