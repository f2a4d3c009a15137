"""Opening the database: an async SQLAlchemy engine, brought to the newest schema by Alembic."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gigcx.config import StoreSettings

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK = 0x67696763  # "gigc": the advisory lock key migrations hold on PostgreSQL
POOL_SIZE = 25  # PostgreSQL connections each server process keeps open...
POOL_OVERFLOW = 10  # ...and may open beyond them at a peak
PING_AFTER_IDLE_SECONDS = 10.0


class StoreUnavailable(Exception):
    """The database cannot be opened or migrated; the message says where and why."""


def create_engine(store: StoreSettings) -> AsyncEngine:
    """An engine for the configured database; a SQLite file's folder is created."""
    sqlite_path = store.sqlite_path
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    if sqlite_path is not None:
        engine = create_async_engine(store.url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # A surge keeps many turns in flight per worker: SQLAlchemy's default pool (5 + 10
    # overflow) was full all through it, turns waited for a connection while holding
    # others, and overflow connections were opened and closed for every few conversations.
    engine = create_async_engine(
        store.url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW, pool_recycle=3600
    )
    event.listen(engine.sync_engine.pool, "checkin", _note_checkin)
    event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    return engine


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """A connection that sat unused for a while is checked before it is handed out (a
    restarted or failed-over database leaves dead ones in the pool); one in use a moment ago
    is not. SQLAlchemy's `pool_pre_ping` checked every one: three round trips (asyncpg
    pings with a transaction) on each of a conversation's ~11 checkouts."""
    checked_in_at = record.info.get("checked_in_at")
    if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as error:  # any failure means: not this connection, open another
        raise DisconnectionError(f"a pooled connection is dead: {error}") from error


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer commits; writers wait for each other
    # instead of failing with "database is locked". The wait is set first: switching a new
    # file to WAL needs the write lock too, and a process that is migrating holds it.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    _switch_to_wal(cursor)
    # Every commit waits until the write-ahead log is on disk: a message the customer was
    # told is stored survives a power cut (NORMAL would lose the last commits). Group commit
    # (store/group_commit.py) is what keeps this affordable under load.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """WAL mode, once per file (it is kept in the file). Switching needs the file to itself,
    and SQLite answers "locked" at once, without its busy wait, while another process opening
    the same new file holds it: try again for as long as the busy wait would have waited."""
    deadline = time.monotonic() + 30.0
    while True:
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as error:  # the driver's OperationalError, wrapped by the adapter
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade_database(engine: AsyncEngine) -> None:
    """Apply every migration the database does not have yet (numbered, never drop-and-create).

    Server processes starting together take turns: the first migrates, the others find the
    schema current (a PostgreSQL advisory lock, or SQLite's write lock taken up front).
    """
    try:
        async with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK})
            else:
                await connection.exec_driver_sql("BEGIN IMMEDIATE")
            await connection.run_sync(lambda sync: command.upgrade(_alembic_config(sync), "head"))
    except Exception as error:
        where = engine.url.render_as_string(hide_password=True)
        raise StoreUnavailable(f"cannot open the conversation store at {where}: {error}") from error


async def current_revision(engine: AsyncEngine) -> str | None:
    """The migration the database is at, or None before the first one."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
