"""What every repository of the store shares: the database, one session factory, and the
outbox's consumers (a change writes its outbox rows in its own transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gigcx.store.group_commit import GroupCommit
from gigcx.store.models import OutboxKind

T = TypeVar("T")


class ConversationNotFound(LookupError):
    """No conversation (or handoff) with that id."""


def new_id() -> str:
    return uuid.uuid4().hex


def may_be_id(value: str) -> bool:
    # Anything else is not looked up: some text (a NUL character) PostgreSQL refuses even
    # to compare, and a client chooses what it puts in a URL.
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


class Repository:
    """A repository of the store: one responsibility, each call one transaction.

    `consumers` names who reads the outbox (a channel, say "slack") and which kinds of
    change each wants: a change leaves one outbox row per consumer that wants its kind.
    """

    def __init__(
        self, engine: AsyncEngine, consumers: Mapping[str, frozenset[OutboxKind]] | None = None
    ) -> None:
        self.engine = engine
        self.consumers: dict[str, frozenset[OutboxKind]] = dict(consumers or {})
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # Reads need no transaction of their own. On PostgreSQL each runs in autocommit: one
        # round trip instead of three (BEGIN, the query, ROLLBACK), and every statement still
        # sees what was committed before it, as in a READ COMMITTED transaction.
        self._reading = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )
        self._reads = async_sessionmaker(self._reading, expire_on_commit=False)
        # SQLite writes one transaction at a time: the busiest writes (messages, new
        # conversations) share transactions there. PostgreSQL commits concurrent
        # transactions side by side, and groups their disk flushes itself.
        self._group_commit = (
            GroupCommit(self._sessions) if engine.dialect.name == "sqlite" else None
        )

    async def _write(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work(session)` in a committed transaction (shared with other writes on SQLite);
        its result once committed."""
        if self._group_commit is not None:
            return await self._group_commit.run(work)
        async with self._sessions.begin() as session:
            return await work(session)

    def wants(self, kind: OutboxKind) -> bool:
        """Whether any consumer reads changes of `kind` (otherwise none is written)."""
        return any(kind in kinds for kinds in self.consumers.values())

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
