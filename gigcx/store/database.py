"""Opening the database: an async SQLAlchemy engine, brought to the newest schema by Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gigcx.config import StoreSettings

MIGRATIONS = Path(__file__).parent / "migrations"
LOCK = 0x67696763  # "gigc": the advisory lock key migrations hold on PostgreSQL


class StoreUnavailable(Exception):
    """The database cannot be opened or migrated; the message says where and why."""


def create_engine(store: StoreSettings) -> AsyncEngine:
    """An engine for the configured database; a SQLite file's folder is created."""
    sqlite_path = store.sqlite_path
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(store.url, pool_pre_ping=sqlite_path is None)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer commits; writers wait for each other
    # instead of failing with "database is locked". The wait is set first: switching a new
    # file to WAL needs the write lock too, and a process that is migrating holds it.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    # Every commit waits until the write-ahead log is on disk: a message the customer was
    # told is stored survives a power cut (NORMAL would lose the last commits). Group commit
    # (store/group_commit.py) is what keeps this affordable under load.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


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
