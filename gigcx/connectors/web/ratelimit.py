"""Per-minute limits: messages per conversation and per client address, calls for a person
per conversation, wrong console tokens per address.

In one process they are counted in memory; with `redis.url` set, every server process
counts in Redis, so a client cannot get N times the limit by landing on N workers.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Check:
    """One limit to count a request against: `limit` hits per minute for `key`."""

    name: str  # what is counted: "conversation", "ip", "person", "console"
    key: str
    limit: int
    what: str  # "messages in this conversation": for the error message


@dataclass(frozen=True)
class Refusal:
    check: Check
    retry_after: int


class RateLimiter(Protocol):
    async def hit(self, checks: Sequence[Check]) -> Refusal | None:
        """Count one request against every check, or against none if any limit is reached
        (then say which, and how long to wait)."""
        ...

    async def reached(self, checks: Sequence[Check]) -> Refusal | None:
        """The first limit already reached, counting nothing."""
        ...


class SlidingWindowLimiter:
    """At most `limit` hits per key within any `window` seconds, in this process."""

    def __init__(self, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.window = window
        self._clock = clock
        self._hits: defaultdict[tuple[str, str], deque[float]] = defaultdict(deque)

    async def hit(self, checks: Sequence[Check]) -> Refusal | None:
        now = self._clock()
        refusal = self._first_reached(checks, now)
        if refusal is not None:
            return refusal
        for check in checks:
            self._hits[(check.name, check.key)].append(now)
        if len(self._hits) > 10_000:
            self._forget_idle(now)
        return None

    async def reached(self, checks: Sequence[Check]) -> Refusal | None:
        return self._first_reached(checks, self._clock())

    def _first_reached(self, checks: Sequence[Check], now: float) -> Refusal | None:
        for check in checks:
            wait = self._retry_after((check.name, check.key), check.limit, now)
            if wait:
                return Refusal(check, wait)
        return None

    def _retry_after(self, key: tuple[str, str], limit: int, now: float) -> int:
        hits = self._hits.get(key)
        if not hits:
            return 0
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= limit:
            return max(1, math.ceil(hits[0] + self.window - now))
        return 0

    def _forget_idle(self, now: float) -> None:
        for key in [
            k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.window
        ]:
            del self._hits[key]


# Check every key, then count in every key (unless ARGV[4] is "0"), as one atomic step in Redis.
_HIT = """
local now, window, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= tonumber(ARGV[4 + i]) then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {i, math.max(1, math.ceil(tonumber(oldest[2]) + window - now))}
  end
end
if ARGV[4] == "0" then
  return {0, 0}
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
end
return {0, 0}
"""


class RedisLimiter:
    """The same sliding window, shared by every server process through Redis."""

    def __init__(self, client: redis.Redis, prefix: str, window: float = WINDOW_SECONDS):
        self.window = window
        self.prefix = f"{prefix}:rate"
        self._script = client.register_script(_HIT)
        # Each hit is a member of the window's sorted set: unique across processes (this
        # process's random part) without a call for random bytes on every request.
        self._process = uuid.uuid4().hex
        self._hit_numbers = itertools.count()

    async def hit(self, checks: Sequence[Check]) -> Refusal | None:
        return await self._run(checks, count=True)

    async def reached(self, checks: Sequence[Check]) -> Refusal | None:
        return await self._run(checks, count=False)

    async def _run(self, checks: Sequence[Check], count: bool) -> Refusal | None:
        keys = [f"{self.prefix}:{check.name}:{check.key}" for check in checks]
        limits = [str(check.limit) for check in checks]
        member = f"{self._process}:{next(self._hit_numbers)}"
        args = [str(time.time()), str(self.window), member, "1" if count else "0"]
        args += limits
        try:
            index, wait = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            # Limits protect the service; customers are not refused because Redis is away.
            log.warning("rate limits not counted, Redis unavailable: %s", error)
            return None
        return None if index == 0 else Refusal(checks[int(index) - 1], int(wait))
