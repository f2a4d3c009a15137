"""Group commit: writes that arrive together share one transaction and one commit.

SQLite has one writer at a time. With each message its own transaction, a surge of customers
queued their commits behind each other, and each commit waited for the disk (the store runs
at `synchronous=FULL`). Here the writes waiting at one moment run one after the other in a
single transaction, committed once; each caller is answered only after that commit has
returned, so an acknowledged message is on disk and survives a power cut exactly as before.
Nothing waits for a batch to fill: the first write starts a transaction at once, and what
arrives while it commits is the next batch.

A write that fails (a conversation that does not exist, a duplicate) must not take the
others down with it: when a batch fails, each of its writes is run again in a transaction of
its own, so only the failing one fails, with its own error. When the database itself fails
(an OperationalError: locked too long, disk full) the whole batch fails at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")
Write = Callable[[AsyncSession], Awaitable[Any]]

MAX_BATCH = 200  # writes per transaction: a batch's commit must not keep the first waiting


class GroupCommit:
    """Runs writes (`work(session)`) in shared transactions; see the module's docstring."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._queue: list[tuple[Write, asyncio.Future[Any]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work` in a transaction shared with the writes asked for meanwhile; its result
        once that transaction has committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((work, future))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[Write, asyncio.Future[Any]]] = []
        try:
            while self._queue:
                batch = [item for item in self._queue[:MAX_BATCH] if not item[1].done()]
                del self._queue[:MAX_BATCH]
                if batch:
                    await self._commit(batch)
                batch = []
        finally:
            # Cancelled (the server is stopping): nobody is left waiting for ever.
            stopped = RuntimeError("the store stopped before this write was committed")
            for _, future in [*batch, *self._queue]:
                _settle(future, error=stopped)
            self._queue.clear()
            self._draining = None

    async def _commit(self, batch: list[tuple[Write, asyncio.Future[Any]]]) -> None:
        try:
            async with self._sessions.begin() as session:
                # Messages and new conversations are table statements, run as each write
                # runs; rows added to the session (outbox items) are not flushed before the
                # next write's statements, but go to the database together at the commit.
                with session.sync_session.no_autoflush:
                    results = [await work(session) for work, _ in batch]
        except Exception as error:
            if len(batch) == 1 or isinstance(error, OperationalError):
                # The database itself failed (locked too long, disk full): every write would
                # fail again, one after the other.
                for _, future in batch:
                    _settle(future, error=error)
                return
            for work, future in batch:  # again, one transaction each
                try:
                    async with self._sessions.begin() as session:
                        result = await work(session)
                except Exception as own_error:
                    _settle(future, error=own_error)
                else:
                    _settle(future, result=result)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():  # its caller gave up (a client that went away); the write stands
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
