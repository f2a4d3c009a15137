"""Events between server processes through Redis pub/sub (configured by `redis.url`).

Each process holds one Redis subscription to its brand's channel and hands what arrives to
its local subscribers, its own events included, so every process sees one order. When the
connection to Redis drops, local subscribers are interrupted (they resume from the store,
as after an overflow) and the process reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as redis
from redis.exceptions import RedisError

from gigcx.events import Event, InProcessEventBus

log = logging.getLogger(__name__)


class RedisEventBus(InProcessEventBus):
    """The event bus of a brand's server processes, over one Redis channel."""

    def __init__(self, client: redis.Redis, prefix: str, capacity: int = 1000) -> None:
        super().__init__(capacity)
        self.client = client
        self.channel = f"{prefix}:events"
        self._connected = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe to the channel; returns once events flow."""
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(self._connected.wait(), timeout=10)

    async def publish(self, event: Event) -> None:
        try:
            await self.client.publish(self.channel, event.to_json())
        except (RedisError, OSError) as error:
            # The change itself is committed; whoever waits for it reads it from the store.
            # Here, those who would have had the event resume from the store (the lost
            # connection itself, if it is lost, interrupts everyone through the reader); a
            # WebSocket on another worker fills the gap at its next event.
            log.warning("could not publish %s to Redis (%s)", event.type, error)
            self._interrupt(event.conversation_id)

    async def check(self) -> None:
        await self.client.ping()
        if not self._connected.is_set():
            raise ConnectionError(f"not subscribed to {self.channel}")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await super().close()

    async def _read(self) -> None:
        wait = 0.1
        while True:
            try:
                async with self.client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._connected.set()
                    wait = 0.1
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._receive(message["data"])
            except (RedisError, OSError) as error:
                log.warning("lost the Redis event channel (%s); reconnecting", error)
            self._connected.clear()
            self._interrupt_all()
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)

    def _receive(self, raw: bytes) -> None:
        try:
            event = Event.from_json(raw)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a message on %s that is not a gigcx event", self.channel)
            return
        self._deliver(event)

    def _interrupt_all(self) -> None:
        for subscription in self._subscriptions:
            subscription.interrupt()

    def _interrupt(self, conversation_id: str) -> None:
        """Interrupt the subscribers that would have had an event of this conversation."""
        for subscription in self._subscribers_of(conversation_id):
            subscription.interrupt()
