"""The PostgreSQL and Redis the tests need, at addresses taken from the environment, and a
check run by `make test` before pytest so that a missing service is one clear message, not
a hundred failed tests.

    GIGCX_TEST_POSTGRES_URL  default postgresql://postgres@127.0.0.1:5432/test
        a database the tests connect to as a user who may CREATE DATABASE: each test gets
        its own new database, dropped afterwards
    GIGCX_TEST_REDIS_URL     default redis://127.0.0.1:6379/0

Run it by hand with `.venv/bin/python -m tests.helpers.check_services`.
"""

from __future__ import annotations

import asyncio
import os
import sys

from sqlalchemy.engine import make_url

POSTGRES_URL_VARIABLE = "GIGCX_TEST_POSTGRES_URL"
REDIS_URL_VARIABLE = "GIGCX_TEST_REDIS_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TIMEOUT_SECONDS = 3.0

# As asyncpg takes it (no +driver), whichever way it was written.
POSTGRES_ADMIN_URL = (
    make_url(os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL)
    .set(drivername="postgresql")
    .render_as_string(hide_password=False)
)
REDIS_URL = os.environ.get(REDIS_URL_VARIABLE) or DEFAULT_REDIS_URL

HOW_TO_START_POSTGRES = """\
  Start one, e.g. on Debian/Ubuntu:
      sudo apt-get install -y postgresql && sudo service postgresql start
      sudo -u postgres psql -c "CREATE DATABASE test"
  and let local connections in without a password (trust in pg_hba.conf), or with Docker:
      docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test postgres:16
  or point the tests at yours: export GIGCX_TEST_POSTGRES_URL=postgresql://user:pass@host:5432/db"""

HOW_TO_START_REDIS = """\
  Start one, e.g. on Debian/Ubuntu:
      sudo apt-get install -y redis-server && sudo service redis-server start
  or with Docker:
      docker run -d -p 6379:6379 redis:7
  or point the tests at yours: export GIGCX_TEST_REDIS_URL=redis://host:6379/0"""


def postgres_url(database: str, *, driver: str = "postgresql") -> str:
    """The URL of `database` on the test server (same user, host and port)."""
    url = make_url(POSTGRES_ADMIN_URL).set(drivername=driver, database=database)
    return url.render_as_string(hide_password=False)


def shown(url: str) -> str:
    """`url` with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


async def postgres_problem() -> str | None:
    """Why the tests cannot use PostgreSQL, or None if they can."""
    import asyncpg

    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=TIMEOUT_SECONDS)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return f"cannot connect: {error or type(error).__name__}"
    try:
        allowed = await connection.fetchval(
            "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await connection.close()
    if not allowed:
        return "connected, but its user may not CREATE DATABASE (each test makes its own)"
    return None


async def redis_problem() -> str | None:
    """Why the tests cannot use Redis, or None if they can."""
    import redis.asyncio as redis
    from redis.exceptions import RedisError

    client = redis.from_url(REDIS_URL, socket_connect_timeout=TIMEOUT_SECONDS)
    try:
        await client.ping()
    except (OSError, RedisError) as error:
        return f"cannot connect: {error or type(error).__name__}"
    finally:
        await client.aclose()
    return None


async def problems() -> list[str]:
    """One paragraph per missing service: what, where, why, and how to start it."""
    found = []
    postgres, redis = await asyncio.gather(postgres_problem(), redis_problem())
    if postgres is not None:
        found.append(
            f"PostgreSQL at {shown(POSTGRES_ADMIN_URL)} ({POSTGRES_URL_VARIABLE}): "
            f"{postgres}\n{HOW_TO_START_POSTGRES}"
        )
    if redis is not None:
        found.append(
            f"Redis at {shown(REDIS_URL)} ({REDIS_URL_VARIABLE}): {redis}\n{HOW_TO_START_REDIS}"
        )
    return found


def main() -> int:
    found = asyncio.run(problems())
    if not found:
        print(f"PostgreSQL at {shown(POSTGRES_ADMIN_URL)} and Redis at {shown(REDIS_URL)}: ok")
        return 0
    print("The tests cannot run; they need these services:\n", file=sys.stderr)
    for paragraph in found:
        print(f"- {paragraph}\n", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
