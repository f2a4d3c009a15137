"""Pacing Slack Web API calls under Slack's rate limits.

Slack limits chat.postMessage to about one message a second per channel and several hundred
a minute per workspace, and other methods by tier (Tier 3: about 50 a minute per method);
beyond that it answers 429 with a Retry-After, and an app that keeps calling risks its
token. So every call first takes a turn: a slot in each of its buckets ("post:<channel>",
"post:*", or the method's own), spaced by the bucket's interval after a short burst (fewer
than Slack tolerates, so that calls bunched up on the way do not exceed it). A caller that
would wait longer than it may is told how long (`SlackBusy`) and reserves nothing: the
outbox tries the item again then, and a new handoff goes on the queue board instead.

A 429 holds every bucket of the method until its Retry-After has passed, whatever Slack's
reason (one channel or the workspace: Slack does not say which), so no call of that method
goes out before then. With Redis, turns and holds are shared by every server process (one
Lua script, Redis's clock); without it, the one process keeps them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as redis

from gigcx.config import SlackLimits

# Methods of Slack's Tier 3 that gigcx calls (each its own bucket, per workspace).
TIER3 = frozenset(
    {
        "chat.update",
        "chat.delete",
        "reactions.add",
        "conversations.history",
        "conversations.info",
    }
)
POST = "chat.postMessage"
# Calls that may go at once after a quiet while. Slack grants "generous bursts" without
# saying how many; these stay well inside what its limits leave.
CHANNEL_BURST = 2
WORKSPACE_BURST = 10
TIER_BURST = 3


class SlackBusy(Exception):
    """The call's turn is further away than the caller may wait; nothing was reserved."""

    def __init__(self, method: str, seconds: float) -> None:
        super().__init__(f"{method} has no turn for {seconds:.1f} s (Slack's rate limits)")
        self.method = method
        self.seconds = seconds


@dataclass(frozen=True)
class Bucket:
    """Calls that Slack counts together: the seconds between two of them, and how many may
    go at once after a quiet while (a generic cell rate algorithm)."""

    key: str
    interval: float
    burst: int = 1


class Turns(Protocol):
    """Where the buckets' next free slots and holds are kept."""

    async def reserve(self, buckets: Sequence[Bucket], max_wait: float) -> tuple[bool, float]:
        """(reserved, seconds to wait): a slot in every bucket at the same moment, at the
        earliest one all allow, if that is within `max_wait`; else nothing is reserved."""
        ...

    async def hold(self, keys: Sequence[str], seconds: float) -> None:
        """No slot in these buckets before `seconds` from now."""
        ...


class LocalTurns:
    """Turns kept by this process (a server without Redis)."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._held: dict[str, float] = {}

    async def reserve(self, buckets: Sequence[Bucket], max_wait: float) -> tuple[bool, float]:
        now = time.monotonic()
        start = max(
            [now]
            + [self._next.get(b.key, 0.0) - (b.burst - 1) * b.interval for b in buckets]
            + [self._held.get(b.key, 0.0) for b in buckets]
        )
        if start - now > max_wait:
            return False, start - now
        for bucket in buckets:
            self._next[bucket.key] = max(self._next.get(bucket.key, 0.0), start) + bucket.interval
        return True, start - now

    async def hold(self, keys: Sequence[str], seconds: float) -> None:
        until = time.monotonic() + seconds
        for key in keys:
            self._held[key] = max(self._held.get(key, 0.0), until)


# KEYS: the buckets; ARGV[1]: the longest wait (ms); ARGV[2i], ARGV[2i + 1]: bucket i's
# interval (ms) and burst. Returns {1 if reserved else 0, wait in ms}. Each key holds the
# bucket's next free slot, on Redis's own clock, in milliseconds.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local start = now
local free = {}
for i, key in ipairs(KEYS) do
  free[i] = tonumber(redis.call('GET', key) or '0')
  local interval, burst = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local held = tonumber(redis.call('GET', key .. ':held') or '0')
  start = math.max(start, free[i] - (burst - 1) * interval, held)
end
if start - now > tonumber(ARGV[1]) then return {0, start - now} end
for i, key in ipairs(KEYS) do
  local next_free = math.max(free[i], start) + tonumber(ARGV[2 * i])
  redis.call('SET', key, next_free, 'PX', next_free - now + 1000)
end
return {1, start - now}
"""
# KEYS: the buckets; ARGV[1]: how long (ms). A hold never shortens an earlier, longer one.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local held = tonumber(redis.call('GET', key .. ':held') or '0')
  if until_ms > held then
    redis.call('SET', key .. ':held', until_ms, 'PX', until_ms - now + 1000)
  end
end
return until_ms
"""


class RedisTurns:
    """Turns shared by every server process of the deployment (`prefix` is its namespace)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.prefix = f"{prefix}:slack-pace"
        self._reserve = client.register_script(_RESERVE)
        self._hold = client.register_script(_HOLD)

    async def reserve(self, buckets: Sequence[Bucket], max_wait: float) -> tuple[bool, float]:
        keys = [f"{self.prefix}:{bucket.key}" for bucket in buckets]
        shapes = [n for b in buckets for n in (round(b.interval * 1000), b.burst)]
        reserved, wait_ms = await self._reserve(keys, [round(max_wait * 1000), *shapes])
        return bool(reserved), int(wait_ms) / 1000

    async def hold(self, keys: Sequence[str], seconds: float) -> None:
        await self._hold([f"{self.prefix}:{key}" for key in keys], [round(seconds * 1000)])


class SlackPacer:
    """Takes turns for Slack Web API calls (see the module docstring)."""

    def __init__(self, limits: SlackLimits, turns: Turns | None = None) -> None:
        self.limits = limits
        self.turns: Turns = turns or LocalTurns()
        # A DM is posted to by user id and answered with its own channel id; both name one
        # DM, which Slack limits as one channel.
        self._dm_of: dict[str, str] = {}

    def buckets(self, method: str, channel: str = "") -> list[Bucket]:
        limits = self.limits
        if method == POST:
            channel = self._dm_of.get(channel, channel)
            return [
                Bucket(f"post:{channel}", 1 / limits.posts_per_channel_per_second, CHANNEL_BURST),
                Bucket("post:*", 60 / limits.posts_per_minute, WORKSPACE_BURST),
            ]
        if method in TIER3:
            return [Bucket(method, 60 / limits.tier3_per_minute, TIER_BURST)]
        return []

    async def turn(self, method: str, channel: str = "", *, max_wait: float) -> None:
        """Wait for the call's turn; `SlackBusy` when it is further than `max_wait`."""
        buckets = self.buckets(method, channel)
        if not buckets:
            return
        reserved, wait = await self.turns.reserve(buckets, max_wait)
        if not reserved:
            raise SlackBusy(method, wait)
        if wait > 0:
            await asyncio.sleep(wait)

    async def rate_limited(self, method: str, seconds: float) -> None:
        """Slack answered `method` with 429: no call of it anywhere before `seconds`."""
        if method == POST:
            # The workspace bucket is in every post's turn: holding it holds every channel.
            await self.turns.hold(["post:*"], seconds)
        elif method in TIER3:
            await self.turns.hold([method], seconds)

    def posted(self, channel: str, answered_channel: str) -> None:
        """Slack answered a post to `channel` (a user id, for a DM) from `answered_channel`."""
        if channel != answered_channel:
            self._dm_of[channel] = answered_channel
