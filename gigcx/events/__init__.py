"""The event bus: how the bot and escalation tell the connectors that something happened.

Events are published after the change is committed. In-process by default; with
`redis.url` set, `RedisEventBus` (events/redis_bus.py) carries them between server
processes. Events are notices, not the record: a subscriber that missed some (fell behind,
lost its connection) reads what changed from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

MESSAGE_CREATED = "message.created"
MESSAGE_DRAFT = "message.draft"  # a streamed answer so far; not stored, replaced by the message
CONVERSATION_STATE = "conversation.state"
HANDOFF_REQUESTED = "handoff.requested"
HANDOFF_CLAIMED = "handoff.claimed"
HANDOFF_RELEASED = "handoff.released"
HANDOFF_REOFFERED = "handoff.reoffered"
HANDOFF_RETURNED = "handoff.returned"
CONVERSATION_RESOLVED = "conversation.resolved"
TYPING = "typing"  # someone is writing a reply: {"author": ..., "active": true|false}
CSAT_RECEIVED = "csat.received"
CONTACT_LEFT = "contact.left"  # the customer left an e-mail address for a reply


@dataclass(frozen=True)
class Event:
    type: str
    brand: str
    conversation_id: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "conversation_id": self.conversation_id, **self.data}

    def to_json(self) -> str:
        return json.dumps(
            {"type": self.type, "brand": self.brand, "id": self.conversation_id, "data": self.data},
            default=str,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        fields = json.loads(raw)
        return cls(fields["type"], fields["brand"], fields["id"], fields["data"])


class SubscriptionOverflow(Exception):
    """A subscriber fell too far behind; it should resume from the store."""


class Subscription:
    """Events for one subscriber, in publish order; iterate with `async for`."""

    def __init__(self, conversation_id: str | None, capacity: int) -> None:
        self.conversation_id = conversation_id
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(capacity)
        self.overflowed = False

    def offer(self, event: Event) -> None:
        if self.conversation_id is not None and event.conversation_id != self.conversation_id:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    def close(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def interrupt(self) -> None:
        """Events may have been missed (the bus lost its connection): resume from the store."""
        self.overflowed = True
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while True:
            if self.overflowed:
                raise SubscriptionOverflow("subscriber fell behind")
            event = await self._queue.get()
            if event is None:
                if self.overflowed:
                    raise SubscriptionOverflow("events may have been missed")
                return
            yield event


class EventBus(Protocol):
    async def publish(self, event: Event) -> None: ...

    def subscribe(
        self, conversation_id: str | None = None
    ) -> contextlib.AbstractAsyncContextManager[Subscription]: ...

    async def check(self) -> None:
        """Raise if the bus cannot carry events now (for the readiness check)."""

    async def close(self) -> None: ...


class InProcessEventBus:
    """Delivers events to subscribers in this process (the embedded default).

    Subscriptions are kept by conversation, so an event costs one lookup however many
    customers are connected (with 1,000 open WebSockets, offering each event to every one
    of them was the event loop's largest cost)."""

    def __init__(self, capacity: int = 1000) -> None:
        # conversation id -> its subscribers; None: subscribers to every conversation
        self._by_conversation: dict[str | None, set[Subscription]] = {}
        self._capacity = capacity

    @property
    def _subscriptions(self) -> list[Subscription]:
        return [s for subscribers in self._by_conversation.values() for s in subscribers]

    async def publish(self, event: Event) -> None:
        self._deliver(event)

    def _subscribers_of(self, conversation_id: str) -> list[Subscription]:
        """Who gets events of this conversation: its subscribers and those of every one."""
        return [
            subscription
            for key in (conversation_id, None)
            for subscription in self._by_conversation.get(key, ())
        ]

    def _deliver(self, event: Event) -> None:
        for subscription in self._subscribers_of(event.conversation_id):
            subscription.offer(event)

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()

    @contextlib.asynccontextmanager
    async def subscribe(self, conversation_id: str | None = None) -> AsyncIterator[Subscription]:
        """Events from now on, for one conversation or (None) for all."""
        subscription = Subscription(conversation_id, self._capacity)
        self._by_conversation.setdefault(conversation_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._by_conversation.get(conversation_id, set())
            subscribers.discard(subscription)
            if not subscribers:
                self._by_conversation.pop(conversation_id, None)
            subscription.close()
