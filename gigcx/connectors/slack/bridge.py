"""gigcx -> Slack: cards for new handoffs, card updates as they change hands, and the
customer's messages in the handoff's thread. Runs as a background task of the server.

What to tell Slack comes from the store's outbox, written in the same transaction as each
change, so nothing is lost to a crash or a Slack outage: an item that fails stays and is
tried again with backoff, and the items of one handoff go out in order. Events only wake
the bridge up; a periodic look at the outbox catches anything an event did not announce.
With several server processes, each item is delivered by the one that takes its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gigcx import events, metrics
from gigcx.app import GigCX
from gigcx.connectors.slack.cards import claimed_card, closed_card, handoff_card
from gigcx.connectors.slack.text import SlackText, mention
from gigcx.events import Event, SubscriptionOverflow
from gigcx.store import Handoff
from gigcx.store.models import OutboxItem, as_utc, utcnow

log = logging.getLogger(__name__)
RETRIES = 3  # immediate tries of one Web API call when Slack is rate-limiting or failing
# How long a process may hold an item while delivering it (its immediate retries included);
# if the process dies meanwhile, another one takes the item over after this.
LEASE = timedelta(seconds=30)
POLL_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 300.0

# What an administrator can do about the Web API errors that do not go away by themselves.
FIXES = {
    "channel_not_found": "check slack.expert_channel / slack.staff_channel",
    "not_in_channel": "invite the app to the channel",
    "is_archived": "unarchive the channel or configure another",
    "invalid_auth": "check GIGCX_SLACK__BOT_TOKEN",
    "token_revoked": "reinstall the app and update GIGCX_SLACK__BOT_TOKEN",
    "account_inactive": "reinstall the app and update GIGCX_SLACK__BOT_TOKEN",
    "missing_scope": "add the scope in the app manifest and reinstall the app",
}


def backoff(attempts: int) -> timedelta:
    """5 s, 10 s, 20 s ... up to 5 minutes between tries of one item."""
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, 5.0 * 2 ** max(0, attempts - 1)))


class SlackBridge:
    """Delivers the outbox to Slack."""

    def __init__(self, runtime: GigCX, client: AsyncWebClient) -> None:
        self.runtime = runtime
        self.client = client
        self.settings = runtime.settings
        escalation = runtime.settings.escalation
        self.say = SlackText(escalation.redact_personal_data, escalation.phone_regions)
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: whenever an event says something changed, and every
        few seconds for items waiting to be tried again."""
        listener = asyncio.create_task(self._listen(stop))
        try:
            while not stop.is_set():
                try:
                    await self.deliver_due()
                except Exception:  # the store may be down for a moment; the next round retries
                    log.exception("could not read the Slack outbox")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait(stop), POLL_SECONDS)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _wait(self, stop: asyncio.Event) -> None:
        waker = asyncio.create_task(self._wake.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait((waker, stopper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            stopper.cancel()
        self._wake.clear()

    async def _listen(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with self.runtime.bus.subscribe() as subscription:
                    async for event in subscription:
                        if _leaves_outbox_item(event):
                            self._wake.set()
            except SubscriptionOverflow:
                self._wake.set()  # fell behind in a surge: the outbox has it all anyway

    async def deliver_due(self, now: datetime | None = None) -> int:
        """Deliver what is due now, each handoff's items in order; how many were delivered."""
        delivered = 0
        while True:
            taken = await self.runtime.store.take_outbox(now or utcnow(), LEASE)
            if not taken:
                return delivered
            results = await asyncio.gather(*(self._deliver(item) for item in taken))
            delivered += sum(results)
            if not any(results):
                return delivered

    async def _deliver(self, item: OutboxItem) -> bool:
        store = self.runtime.store
        try:
            await self.deliver(item)
        except Exception as error:
            attempts, problem = item.attempts, _describe(error)  # attempts: counted when taken
            await store.outbox_retry(item.id, problem, utcnow() + backoff(attempts))
            log.error(
                "Slack did not get %s of handoff %s (try %d; will try again): %s",
                item.kind,
                item.handoff_id,
                attempts,
                problem,
            )
            return False
        await store.outbox_delivered(item.id)
        return True

    async def deliver(self, item: OutboxItem) -> None:
        """Tell Slack about one change, as the handoff is now."""
        store = self.runtime.store
        handoff = await store.get_handoff(item.handoff_id)
        kind = item.kind
        if kind == "requested":
            await self.post_card(handoff)
        elif kind == "reoffered":
            await self.post_card(handoff, urgent=True)
        elif kind == "moved_to_staff":
            await self.update_card(handoff, *closed_card(handoff, "Moved to staff", self.say))
            await self.post_card(handoff, urgent=True)  # the customer has waited already
        elif kind == "claimed":
            await self.update_card(handoff, *claimed_card(handoff, self.say))
            await self.post_transcript(handoff)
        elif kind == "released":
            mentions = await self.mentions(handoff)
            card = await asyncio.to_thread(handoff_card, handoff, mentions, self.say)
            await self.update_card(handoff, *card)
        elif kind in ("resolved", "returned"):
            how = "Resolved" if kind == "resolved" else "Handed back"
            await self.update_card(handoff, *closed_card(handoff, how, self.say))
        elif kind == "timed_out":
            # Whose it was is in the customer's notice (the handoff no longer names them).
            notice = None if item.message_id is None else await store.message_by_id(item.message_id)
            expert = str((notice.meta if notice is not None else {}).get("expert") or "")
            seconds = self.settings.escalation.resolve_timeout_seconds
            within = f"{seconds // 3600} h" if seconds % 3600 == 0 else f"{seconds // 60} min"
            if expert:
                await self.post_in_thread(
                    handoff,
                    f"{mention(expert)} this conversation was not resolved within {within}, "
                    "so it has been offered to other experts again. Claim it from the new card "
                    "if you are still on it.",
                )
            await self.update_card(handoff, *closed_card(handoff, "Timed out", self.say))
            await self.post_card(handoff, urgent=True)  # the customer has waited already
        elif kind == "customer_message" and item.message_id is not None:
            message = await store.message_by_id(item.message_id)
            if message is not None:
                # Masking a long message takes CPU time: off the event loop.
                text = await asyncio.to_thread(self.say.quoted, message.text)
                await self.post_in_thread(handoff, f"*Customer:*\n{text}")
                waited = utcnow() - as_utc(message.created_at)
                metrics.RELAY_SECONDS.labels("slack").observe(waited.total_seconds())
        else:
            log.warning("unknown outbox item %s (%s): skipped", item.id, kind)

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
            (note.author, note.text) for note in await self.runtime.store.internal_notes(handoff.id)
        ]
        text, blocks = await asyncio.to_thread(
            partial(handoff_card, urgent=urgent, notes=notes[-5:]), handoff, mentions, self.say
        )
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
        lines = await asyncio.to_thread(
            lambda: [
                f"*{self.say.inline(m.author, 20)}:*\n{self.say.quoted(m.text)}" for m in messages
            ]
        )
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
        """A Web API call, retried at once with backoff when Slack rate-limits or fails
        (longer outages are the outbox's to retry)."""
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


def _leaves_outbox_item(event: Event) -> bool:
    """Whether the change behind `event` left something in the outbox for Slack."""
    if event.type == events.MESSAGE_CREATED:
        return bool(event.data.get("message", {}).get("author") == "customer")
    return event.type in HANDOFF_CHANGES


HANDOFF_CHANGES = frozenset(
    {
        events.HANDOFF_REQUESTED,
        events.HANDOFF_CLAIMED,
        events.HANDOFF_RELEASED,
        events.HANDOFF_REOFFERED,
        events.HANDOFF_RETURNED,
        events.CONVERSATION_RESOLVED,
    }
)


def _describe(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        status, code = error.response.status_code, str(error.response.get("error") or "")
        if status == 429 or status >= 500:
            return f"Slack answered HTTP {status} {code}".rstrip()
        fix = FIXES.get(code)
        return f"Slack said {code}" + (f": {fix}" if fix else "")
    if isinstance(error, aiohttp.ClientError | OSError | TimeoutError):
        return f"Slack could not be reached ({type(error).__name__}: {error})"
    return f"{type(error).__name__}: {error}"
