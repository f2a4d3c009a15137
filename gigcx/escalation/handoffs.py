"""Handoffs to people: open, claim, release, re-offer, hand back, resolve.

Each step is one guarded store update followed by events, so the web and Slack connectors
learn about it without this module knowing they exist.
"""

from __future__ import annotations

from datetime import timedelta

from gigcx import events
from gigcx.config import Settings
from gigcx.events import Event, EventBus
from gigcx.store import Conversation, ConversationStore, Handoff, Message
from gigcx.store.models import Route


class Escalations:
    """The handoff state machine of one brand, publishing an event for every change."""

    def __init__(self, settings: Settings, store: ConversationStore, bus: EventBus) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.claim_timeout = timedelta(seconds=settings.escalation.claim_timeout_seconds)
        self.resolve_timeout = timedelta(seconds=settings.escalation.resolve_timeout_seconds)

    async def open(
        self,
        conversation: Conversation,
        *,
        reason: str,
        route: Route,
        tags: list[str],
        packet: dict[str, object],
        notice: str,
        notice_meta: dict[str, object],
    ) -> tuple[Handoff, Message] | None:
        """Escalate: the notice to the customer, state `waiting`, and the handoff, at once."""
        opened = await self.store.open_handoff(
            conversation.id,
            reason=reason,
            route=route,
            tags=tags,
            packet=packet,
            notice=notice,
            notice_meta=notice_meta,
            claim_timeout=self.claim_timeout,
        )
        if opened is None:
            return None
        handoff, message = opened
        await self._publish(conversation.id, events.MESSAGE_CREATED, message=message.to_dict())
        await self._publish(conversation.id, events.CONVERSATION_STATE, state="waiting")
        await self._publish(
            conversation.id,
            events.HANDOFF_REQUESTED,
            handoff_id=handoff.id,
            reason=reason,
            route=route,
            tags=list(tags),
        )
        return opened

    async def claim(self, handoff_id: str, assignee: str) -> Handoff | None:
        handoff = await self.store.claim_handoff(handoff_id, assignee, self.resolve_timeout)
        if handoff is not None:
            await self._changed(handoff, events.HANDOFF_CLAIMED, "assigned", assignee=assignee)
        return handoff

    async def release(self, handoff_id: str, assignee: str) -> Handoff | None:
        handoff = await self.store.release_handoff(handoff_id, assignee, self.claim_timeout)
        if handoff is not None:
            await self._changed(handoff, events.HANDOFF_RELEASED, "waiting")
        return handoff

    async def reoffer(self, handoff_id: str, route: Route | None = None) -> Handoff | None:
        handoff = await self.store.reoffer_handoff(handoff_id, self.claim_timeout, route)
        if handoff is not None:
            await self._changed(handoff, events.HANDOFF_REOFFERED, "waiting", route=handoff.route)
        return handoff

    async def hand_back(self, handoff_id: str, assignee: str) -> Handoff | None:
        handoff = await self.store.hand_back(handoff_id, assignee)
        if handoff is not None:
            await self._changed(handoff, events.HANDOFF_RETURNED, "bot")
        return handoff

    async def resolve(self, handoff_id: str, assignee: str) -> Handoff | None:
        handoff = await self.store.resolve_handoff(handoff_id, assignee)
        if handoff is not None:
            await self._changed(handoff, events.CONVERSATION_RESOLVED, "resolved")
        return handoff

    async def send_reply(self, handoff_id: str, assignee: str, text: str) -> Message | None:
        """The assigned person's message to the customer; None unless they hold the handoff."""
        handoff = await self.store.get_handoff(handoff_id)
        if handoff.state != "assigned" or handoff.assignee != assignee:
            return None
        author = "staff" if handoff.route == "staff" else "expert"
        message = await self.store.add_message(
            handoff.conversation_id,
            author,
            text,
            meta={"handoff_id": handoff_id, "assignee": assignee},
            only_in_state="assigned",
        )
        if message is not None:
            await self._publish(
                handoff.conversation_id, events.MESSAGE_CREATED, message=message.to_dict()
            )
        return message

    async def _changed(self, handoff: Handoff, kind: str, state: str, **data: object) -> None:
        await self._publish(handoff.conversation_id, events.CONVERSATION_STATE, state=state)
        await self._publish(handoff.conversation_id, kind, handoff_id=handoff.id, **data)

    async def _publish(self, conversation_id: str, kind: str, **data: object) -> None:
        await self.bus.publish(Event(kind, self.settings.brand, conversation_id, dict(data)))
