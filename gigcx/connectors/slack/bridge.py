"""Events -> Slack: cards for new handoffs, card updates as they change hands, and the
customer's messages in the handoff's thread. Runs as a background task of the server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gigcx import events
from gigcx.app import GigCX
from gigcx.connectors.slack.cards import claimed_card, closed_card, handoff_card
from gigcx.events import Event, SubscriptionOverflow
from gigcx.store import Handoff

log = logging.getLogger(__name__)
RETRIES = 4


class SlackBridge:
    """Posts what happens to handoffs and customers into Slack."""

    def __init__(self, runtime: GigCX, client: AsyncWebClient) -> None:
        self.runtime = runtime
        self.client = client
        self.settings = runtime.settings

    async def run(self, stop: asyncio.Event) -> None:
        """Bring events to Slack until `stop` is set."""
        while not stop.is_set():
            try:
                await self._relay(stop)
            except SubscriptionOverflow:
                # Fell behind in a surge: keep going with new events (the missed ones are
                # still in the store; a durable outbox would replay them).
                log.warning("the Slack bridge fell behind; some events were not posted")

    async def _relay(self, stop: asyncio.Event) -> None:
        async with self.runtime.bus.subscribe() as subscription:

            async def close_on_stop() -> None:
                await stop.wait()
                subscription.close()

            closer = asyncio.create_task(close_on_stop())
            try:
                async for event in subscription:
                    try:
                        await self.handle(event)
                    except Exception:  # one failed post must not stop the bridge
                        log.exception("could not bring %s to Slack", event.type)
            finally:
                closer.cancel()

    async def handle(self, event: Event) -> None:
        store = self.runtime.store
        if event.type == events.HANDOFF_REQUESTED:
            await self.post_card(await store.get_handoff(event.data["handoff_id"]))
        elif event.type == events.HANDOFF_REOFFERED:
            await self.post_card(await store.get_handoff(event.data["handoff_id"]), urgent=True)
        elif event.type == events.HANDOFF_CLAIMED:
            handoff = await store.get_handoff(event.data["handoff_id"])
            await self.update_card(handoff, *claimed_card(handoff))
            await self.post_transcript(handoff)
        elif event.type in (events.CONVERSATION_RESOLVED, events.HANDOFF_RETURNED):
            handoff = await store.get_handoff(event.data["handoff_id"])
            how = "Resolved" if event.type == events.CONVERSATION_RESOLVED else "Handed back"
            await self.update_card(handoff, *closed_card(handoff, how))
        elif event.type == events.HANDOFF_RELEASED:
            handoff = await store.get_handoff(event.data["handoff_id"])
            await self.update_card(handoff, *handoff_card(handoff, await self.mentions(handoff)))
        elif event.type == events.MESSAGE_CREATED and event.data["message"]["author"] == "customer":
            handoff = await store.open_handoff_for(event.conversation_id)
            if handoff is not None:
                await self.post_in_thread(handoff, f"*Customer:* {event.data['message']['text']}")

    async def mentions(self, handoff: Handoff, *, wide: bool = False) -> list[str]:
        """Available, active experts of the route whose skills match the handoff's tags
        (with `wide`, every available one of the route: nobody matching has claimed it)."""
        wanted = set() if wide else {t.split(":", 1)[1].lower() for t in handoff.tags if ":" in t}
        tier = "staff" if handoff.route == "staff" else "gig"
        return [
            expert.slack_user_id
            for expert in await self.runtime.store.experts(self.settings.brand)
            if expert.active
            and expert.available
            and expert.tier == tier
            and (not wanted or wanted & set(expert.skills))
        ]

    async def post_card(self, handoff: Handoff, urgent: bool = False) -> None:
        channel = self._channel(handoff)
        mentions = await self.mentions(handoff, wide=urgent)
        notes = [
            f"<@{note.author}>: {note.text}"
            for note in await self.runtime.store.internal_notes(handoff.id)
        ]
        text, blocks = handoff_card(handoff, mentions, urgent=urgent, notes=notes[-5:])
        posted = await self._call("chat_postMessage", channel=channel, text=text, blocks=blocks)
        await self.runtime.store.save_card(handoff.id, posted["channel"], posted["ts"])

    async def update_card(self, handoff: Handoff, text: str, blocks: list[dict[str, Any]]) -> None:
        card = await self.runtime.store.card_for(handoff.id)
        if card is not None:
            await self._call(
                "chat_update", channel=card.channel, ts=card.ts, text=text, blocks=blocks
            )

    async def post_transcript(self, handoff: Handoff) -> None:
        messages = await self.runtime.store.messages_after(handoff.conversation_id)
        lines = [f"*{m.author}:* {m.text}" for m in messages]
        await self.post_in_thread(handoff, "Conversation so far:\n" + "\n".join(lines))

    async def post_in_thread(self, handoff: Handoff, text: str) -> None:
        card = await self.runtime.store.card_for(handoff.id)
        if card is not None:
            await self._call("chat_postMessage", channel=card.channel, thread_ts=card.ts, text=text)

    def _channel(self, handoff: Handoff) -> str:
        slack = self.settings.slack
        channel = slack.staff_channel if handoff.route == "staff" else slack.expert_channel
        assert channel is not None  # checked when the settings were loaded
        return channel

    async def _call(self, method: str, **arguments: Any) -> Any:
        """A Web API call, retried with backoff when Slack rate-limits or fails."""
        for attempt in range(RETRIES):
            try:
                return await getattr(self.client, method)(**arguments)
            except SlackApiError as error:
                status = error.response.status_code
                if (status != 429 and status < 500) or attempt == RETRIES - 1:
                    raise
                wait = float(error.response.headers.get("Retry-After", 0.5 * 2**attempt))
                await asyncio.sleep(min(wait, 10.0))
        raise AssertionError("unreachable")
