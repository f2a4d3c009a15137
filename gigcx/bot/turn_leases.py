"""One bot turn at a time per conversation across workers: short leases in Redis.

A worker takes a conversation's lease before its bot turn and gives it back after. The lease
is short, so a worker that dies holding it delays that conversation's next message by one
lease at most; a turn that lasts longer (a slow language model) keeps it by renewal.

Every lease a process holds is renewed by one task, in one Redis call a round (a Lua script
over all of them), however many turns run: under a surge a worker holds hundreds of turns,
and renewing each on its own (three calls a second each, on the event loop the turns also
need) made an overloaded worker slower still.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as redis
from redis.asyncio.lock import Lock
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# How often a waiting turn looks again whether the lease is free.
POLL_SECONDS = 0.05
RENEWALS_PER_LEASE = 3

# ARGV[1]: the lease in milliseconds; ARGV[i + 1]: the token of KEYS[i]. For each lease:
# 1 renewed; 0 it ran out (this process stalled for longer than a lease); -1 another worker
# holds it now.
_RENEW = """
local kept = {}
for i, key in ipairs(KEYS) do
    local holder = redis.call('get', key)
    if holder == ARGV[i + 1] then
        redis.call('pexpire', key, ARGV[1])
        kept[i] = 1
    elseif not holder then
        kept[i] = 0
    else
        kept[i] = -1
    end
end
return kept
"""


class TurnLeases:
    """The turn leases of one process, all renewed together while their turns run.

    Each lease is a redis-py `Lock` (taken, waited for and given back as the library does);
    only its renewal is shared."""

    def __init__(
        self, client: redis.Redis, prefix: str, lease_seconds: float, wait_seconds: float
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self._renew = client.register_script(_RENEW)
        self._held: dict[str, Lock] = {}  # key -> the lock of the turn holding it
        self._renewing: asyncio.Task[None] | None = None
        self.renewal_calls = 0  # Redis calls made to renew (for tests and benchmarks)

    def key(self, conversation_id: str) -> str:
        return f"{self.prefix}:turn:{conversation_id}"

    @contextlib.asynccontextmanager
    async def hold(self, conversation_id: str) -> AsyncIterator[bool]:
        """The conversation's turn while the block runs. Yields whether it had to wait for
        another worker's turn (or could not tell: Redis unavailable, answered anyway)."""
        key = self.key(conversation_id)
        lock = self.client.lock(
            key,
            timeout=self.lease_seconds,
            blocking_timeout=self.wait_seconds,
            sleep=POLL_SECONDS,
        )
        waited = False
        try:
            # Free at once, as it nearly always is: nobody's turn ran in between.
            held = bool(await lock.acquire(blocking=False))
            if not held:
                waited = True
                held = bool(await lock.acquire())
        except (RedisError, OSError) as error:
            log.warning("turn lock unavailable, answering anyway: %s", error)
            yield True
            return
        if not held:
            log.warning("turn lock of %s still held; answering anyway", conversation_id)
            yield True
            return
        self._held[key] = lock
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(self._renew_all())
        try:
            yield waited
        finally:
            self._held.pop(key, None)
            with contextlib.suppress(RedisError, OSError):
                await lock.release()  # only if still this turn's

    def stop(self) -> None:
        """Stop renewing (the process is closing; its leases run out after one lease)."""
        if self._renewing is not None:
            self._renewing.cancel()

    async def _renew_all(self) -> None:
        """Renew every held lease a few times a lease; stop when none is held."""
        while self._held:
            await asyncio.sleep(self.lease_seconds / RENEWALS_PER_LEASE)
            held = dict(self._held)
            if not held:
                return
            tokens = [lock.local.token for lock in held.values()]
            try:
                self.renewal_calls += 1
                kept = await self._renew(
                    keys=list(held), args=[int(self.lease_seconds * 1000), *tokens]
                )
            except (RedisError, OSError) as error:
                log.warning("could not renew %d turn leases: %s", len(held), error)
                continue
            for (key, lock), state in zip(held.items(), kept, strict=True):
                if state == 1 or self._held.get(key) is not lock:
                    continue  # renewed, or the turn has ended meanwhile
                # This process stalled for longer than a lease. Nobody else took the turn
                # meanwhile: it is this turn's again; else another worker answers beside it.
                with contextlib.suppress(RedisError, OSError):
                    if state == 0 and await lock.acquire(blocking=False):
                        continue
                if self._held.get(key) is lock:
                    del self._held[key]
                    log.warning("turn lease %s ran out before the turn ended", key)
