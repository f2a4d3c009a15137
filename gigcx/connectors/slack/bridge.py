"""gigcx -> Slack: cards for new handoffs, card updates as they change hands, and the
customer's messages in the handoff's thread. Runs as a background task of the server.

What to tell Slack comes from the store's outbox, written in the same transaction as each
change, so nothing is lost to a crash or a Slack outage: an item that fails stays and is
tried again with backoff, and the items of one handoff go out in order. Events only wake
the bridge up; a periodic look at the outbox catches anything an event did not announce.
With several server processes, each item is delivered by the one that takes its lease.

Every call waits for its turn under Slack's rate limits first (`pacing`), never past a 429's
Retry-After; an item whose turn is far off goes back to the outbox until then, and a new
handoff that cannot have a card of its own soon is listed on the channel's queue board
(`board`), which one process keeps up to date every few seconds.

One delivery (at most `MAX_CALLS_PER_DELIVERY` Web API calls, each bounded by its wait for a
turn, the client's timeout and one retry) fits well within the lease, and the lease is
fenced besides: a process whose lease ran out anyway (a stalled event loop, a slow database)
cannot mark the item delivered or due again once another process has taken it over. A card
remembers the outbox item that posted it, so a second delivery of one change neither posts
a second card (it finds the first, recorded or in the channel) nor keeps one (it deletes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextvars import ContextVar
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient

from gigcx import events, metrics
from gigcx.app import GigCX
from gigcx.connectors.slack.blocks import claimed_card, closed_card, handoff_card, transcript
from gigcx.connectors.slack.board import BOARD_EVENT, board_message, digest
from gigcx.connectors.slack.pacing import (
    POST,
    LocalTurns,
    RedisTurns,
    SlackBusy,
    SlackPacer,
)
from gigcx.connectors.slack.text import SlackText, is_user_id, mention
from gigcx.events import Event, SubscriptionOverflow
from gigcx.store import EXPERT_CHANNEL_KINDS, Handoff, OutboxKind
from gigcx.store.models import (
    ChannelCard,
    OutboxItem,
    as_utc,
    board_channel,
    on_board,
    utcnow,
)

log = logging.getLogger(__name__)
# The bridge's name in the outbox and on its cards, and what it is told: every handoff
# change and the customer's messages (the experts' replies were written in Slack).
CONSUMER = "slack"
SLACK_KINDS = EXPERT_CHANNEL_KINDS
# How long one delivery's calls may wait in all for their turns under Slack's rate limits
# (longer, and the item goes back to the outbox until its turn); how long one try of a call
# may take, and how long it may wait before its one retry (a longer Retry-After goes back to
# the outbox instead).
TURN_WAIT_SECONDS = 4.0
CALL_TIMEOUT_SECONDS = 4.0
RETRY_INTERVAL_SECONDS = 0.5
MAX_RETRY_AFTER_SECONDS = 1.0
# How long a card's update waits for a turn before the card is marked stale instead.
UPDATE_WAIT_SECONDS = 0.5
# The most calls one delivery makes (a resolve timeout): tell the expert in the old thread,
# close the old card, look for a card an earlier try posted, post the new card, delete it
# when another try's card was recorded first.
MAX_CALLS_PER_DELIVERY = 5
# How long a process may hold an item while delivering it; if the process dies meanwhile,
# another one takes the item over after this. Longer than the slowest delivery (54 s).
LEASE = timedelta(seconds=55)
POLL_SECONDS = 2.0
MAX_IN_FLIGHT = 50  # deliveries under way at once, in one process
MAX_BACKOFF_SECONDS = 300.0
# Marks the cards the bridge posts, with the outbox item that posted them, so a later try
# can find a card whose answer never came back (timed out, or the process died).
CARD_EVENT = "gigcx_handoff_card"
CLOCK_SKEW_SECONDS = 600.0

# The item the running delivery is for (each delivery runs in its own task): cards are
# posted and updated on its behalf.
_delivering: ContextVar[OutboxItem | None] = ContextVar("delivering", default=None)
# What is left of the running delivery's (or board update's) time to wait for turns.
_turn_budget: ContextVar[float] = ContextVar("turn_budget", default=TURN_WAIT_SECONDS)

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


def slack_retry_handlers() -> list[AsyncRetryHandler]:
    """One quick retry of a call that could not connect, or that Slack answered with
    500/503; anything longer is the outbox's to retry. A 429 is the pacer's (`_call`): every
    process must wait out its Retry-After, not only the call that got it.

    A connection that broke after the request went out is not retried here: Slack may have
    acted on it, and a later outbox try first looks for the card it may have posted.
    """
    interval = FixedValueRetryIntervalCalculator(RETRY_INTERVAL_SECONDS)
    return [
        AsyncConnectionErrorRetryHandler(
            max_retry_count=1,
            interval_calculator=interval,
            error_types=[aiohttp.ClientConnectorError],
        ),
        AsyncServerErrorRetryHandler(max_retry_count=1, interval_calculator=interval),
    ]


def delivery_time_bound(call_timeout: float = CALL_TIMEOUT_SECONDS) -> float:
    """The longest one delivery's Web API calls can take, in seconds: their waits for
    turns, and each call two tries and the wait between them."""
    one_call = 2 * call_timeout + max(RETRY_INTERVAL_SECONDS, MAX_RETRY_AFTER_SECONDS + 1)
    return TURN_WAIT_SECONDS + MAX_CALLS_PER_DELIVERY * one_call


def slack_pacer(runtime: GigCX) -> SlackPacer:
    """Turns under Slack's rate limits, shared through Redis by every server process."""
    turns = (
        RedisTurns(runtime.redis, runtime.redis_prefix)
        if runtime.redis is not None
        else LocalTurns()
    )
    return SlackPacer(runtime.settings.slack.limits, turns)


class SlackBridge:
    """Delivers the outbox to Slack, holding each item for `lease` while it does."""

    def __init__(
        self,
        runtime: GigCX,
        client: AsyncWebClient,
        *,
        lease: timedelta = LEASE,
        pacer: SlackPacer | None = None,
    ) -> None:
        self.runtime = runtime
        self.client = client
        self.lease = lease
        self.pacer = pacer or slack_pacer(runtime)
        self.settings = runtime.settings
        escalation = runtime.settings.escalation
        self.say = SlackText(escalation.redact_personal_data, escalation.phone_regions)
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: whenever an event says something changed, when a
        delivery ends (its handoff's next item may be due), and every few seconds for items
        waiting to be tried again. Up to `MAX_IN_FLIGHT` deliveries run at once, each on its
        own: one waiting for its turn in a busy channel holds up no other."""
        listener = asyncio.create_task(self._listen(stop))
        boards = asyncio.create_task(self._keep_boards(stop))
        in_flight: set[asyncio.Task[bool]] = set()
        try:
            while not stop.is_set():
                room = MAX_IN_FLIGHT - len(in_flight)
                taken: list[OutboxItem] = []
                if room > 0:
                    try:
                        now = utcnow()
                        taken = await self.runtime.store.take_outbox(
                            CONSUMER, now, self.lease, limit=room
                        )
                    except Exception:  # the store may be down for a moment: the next round
                        log.exception("could not read the Slack outbox")
                for item in taken:
                    task = asyncio.create_task(self._deliver(item))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if taken and len(taken) == room:
                    continue  # more may be due
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait(stop, in_flight), POLL_SECONDS)
        finally:
            if in_flight:  # let what is under way finish; a lease covers the rest
                await asyncio.wait(in_flight, timeout=CALL_TIMEOUT_SECONDS)
            for task in (listener, boards, *in_flight):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _wait(self, stop: asyncio.Event, in_flight: set[asyncio.Task[bool]]) -> None:
        """Until something may be due: an event, a delivery ending, or `stop`."""
        waker = asyncio.create_task(self._wake.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait((waker, stopper, *in_flight), return_when=asyncio.FIRST_COMPLETED)
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
            taken = await self.runtime.store.take_outbox(CONSUMER, now or utcnow(), self.lease)
            if not taken:
                return delivered
            results = await asyncio.gather(*(self._deliver(item) for item in taken))
            delivered += sum(results)
            if not any(results):
                return delivered

    async def _deliver(self, item: OutboxItem) -> bool:
        store = self.runtime.store
        _delivering.set(item)  # this task's own context: concurrent deliveries don't mix
        _turn_budget.set(TURN_WAIT_SECONDS)
        try:
            await self.deliver(item)
        except SlackBusy as busy:
            # Not a failure: Slack's limits leave no turn for it yet. Nothing was sent.
            due = utcnow() + timedelta(seconds=busy.seconds)
            if not await store.outbox_retry(item, str(busy), due, tried=False):
                _lease_lost(item)
            return False
        except Exception as error:
            attempts, problem = item.attempts, _describe(error)  # attempts: counted when taken
            wait = max(backoff(attempts), slack_asks_to_wait(error))
            if await store.outbox_retry(item, problem, utcnow() + wait):
                log.error(
                    "Slack did not get %s of handoff %s (try %d; will try again): %s",
                    item.kind,
                    item.handoff_id,
                    attempts,
                    problem,
                )
            else:
                _lease_lost(item)
            return False
        if not await store.outbox_delivered(item):
            _lease_lost(item)
            return False
        return True

    async def deliver(self, item: OutboxItem) -> None:
        """Tell Slack about one change, as the handoff is now."""
        store = self.runtime.store
        handoff = await store.get_handoff(item.handoff_id)
        kind = item.kind
        holder = await self.slack_id(handoff.assignee)
        if kind == OutboxKind.REQUESTED:
            await self.post_card(handoff)
        elif kind == OutboxKind.REOFFERED:
            await self.post_card(handoff, urgent=True)
        elif kind == OutboxKind.MOVED_TO_STAFF:
            card = closed_card(handoff, "Moved to staff", self.say, holder)
            await self.update_card(handoff, *card)
            await self.post_card(handoff, urgent=True)  # the customer has waited already
        elif kind == OutboxKind.CLAIMED:
            if on_board(await store.card_for(CONSUMER, handoff.id)):
                await self.post_claimed_card(handoff, holder)
            else:
                card = claimed_card(handoff, self.say, holder)
                await self.update_card(handoff, *card, coalesce=True)
                await self.start_conversation(handoff, holder)
        elif kind == OutboxKind.RELEASED:
            # A conversation moved to the releasing expert's DM stays there no longer.
            await store.drop_thread(CONSUMER, handoff.id)
            mentions = await self.mentions(handoff)
            card = await asyncio.to_thread(handoff_card, handoff, mentions, self.say)
            await self.update_card(handoff, *card, coalesce=True)
        elif kind in (OutboxKind.RESOLVED, OutboxKind.RETURNED):
            how = "Resolved" if kind == OutboxKind.RESOLVED else "Handed back"
            card = closed_card(handoff, how, self.say, holder)
            await self.update_card(handoff, *card, coalesce=True)
        elif kind == OutboxKind.TIMED_OUT:
            # Whose it was is in the customer's notice (the handoff no longer names them).
            notice = None if item.message_id is None else await store.message_by_id(item.message_id)
            expert = await self.slack_id(
                str((notice.meta if notice is not None else {}).get("expert") or "") or None
            )
            seconds = self.settings.escalation.resolve_timeout_seconds
            within = (
                f"{seconds // 3600} h"
                if seconds % 3600 == 0
                else f"{seconds // 60} min"
                if seconds % 60 == 0
                else f"{seconds} s"
            )
            # A retry's new card: the expert was told in the old thread already.
            told = _posted_for(await store.card_for(CONSUMER, handoff.id), item)
            if expert and not told:
                await self.post_in_thread(
                    handoff,
                    f"{mention(expert)} this conversation was not resolved within {within}, "
                    "so it has been offered to other experts again. Claim it from the new card "
                    "if you are still on it.",
                )
            await self.update_card(handoff, *closed_card(handoff, "Timed out", self.say))
            await self.post_card(handoff, urgent=True)  # the customer has waited already
        elif kind == OutboxKind.CUSTOMER_MESSAGE and item.message_id is not None:
            message = await store.message_by_id(item.message_id)
            card = await store.card_for(CONSUMER, handoff.id)
            shown = -1 if card is None or card.shows_seq is None else card.shows_seq
            if message is not None and message.seq <= shown:
                return  # the card's transcript, posted after it, showed it already
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
            expert.handles[CONSUMER]
            for expert in await self.runtime.store.experts(self.settings.brand)
            if expert.active
            and expert.available
            and expert.tier == tier
            and CONSUMER in expert.handles
            and (not wanted or wanted & set(expert.skills))
        ]

    async def slack_id(self, expert_key: str | None) -> str | None:
        """The Slack user id of the expert with gigcx id `expert_key` (to mention them);
        the key itself for someone without one (shown as text)."""
        if expert_key is None:
            return None
        expert = await self.runtime.store.find_expert(self.settings.brand, expert_key)
        return expert.handles.get(CONSUMER, expert_key) if expert is not None else expert_key

    async def post_card(self, handoff: Handoff, urgent: bool = False) -> None:
        """Post the handoff's card, once per outbox item however often it is tried; or list
        the handoff on the channel's queue board while the channel is too busy for a card
        each (a board already lists others, or the channel has no turn soon)."""
        store = self.runtime.store
        item = _delivering.get()
        item_id = None if item is None else item.id
        channel = self._channel(handoff)
        if item is not None:
            if _posted_for(await store.card_for(CONSUMER, handoff.id), item):
                return  # an earlier try of this item posted and recorded it
            if item.attempts > 1:  # an earlier try may have posted it without recording it
                found = await self._find_card(channel, item)
                if found is not None:
                    await store.save_card(CONSUMER, handoff.id, channel, found, item.id)
                    return
        # First come, first listed: while the board lists others, join them.
        busy = await store.board_in_use(CONSUMER, channel)
        if not busy:
            try:
                wait = min(self.settings.slack.limits.card_wait_seconds, _turn_budget.get())
                await self._turn(POST, channel, max_wait=wait)
            except SlackBusy:
                busy = True
        if busy:
            await store.save_card(CONSUMER, handoff.id, board_channel(channel), handoff.id, item_id)
            return  # the board shows it within `board_seconds`
        mentions = await self.mentions(handoff, wide=urgent)
        notes = [
            (await self.slack_id(note.author) or note.author, note.text)
            for note in (await store.internal_notes(handoff.id))[-5:]
        ]
        text, blocks = await asyncio.to_thread(
            partial(handoff_card, urgent=urgent, notes=notes), handoff, mentions, self.say
        )
        metadata = {
            "event_type": CARD_EVENT,
            "event_payload": {"handoff_id": handoff.id, "outbox_item_id": item_id},
        }
        posted = await self._call(
            "chat_postMessage",
            turn_taken=True,
            channel=channel,
            text=text,
            blocks=blocks,
            metadata=metadata,
        )
        recorded = await store.save_card(
            CONSUMER, handoff.id, posted["channel"], posted["ts"], item_id
        )
        if (recorded.channel, recorded.ts) != (posted["channel"], posted["ts"]):
            # Another try of this item (this one's lease ran out) recorded its card first:
            # replies in this one's thread would reach nobody.
            await self._call("chat_delete", channel=posted["channel"], ts=posted["ts"])

    async def update_card(
        self,
        handoff: Handoff,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        coalesce: bool = False,
    ) -> None:
        """Show the handoff's change on its card. With `coalesce`, a card whose update has
        no turn at once is marked stale instead, and brought up to date when chat.update has
        a turn to spare (`refresh_stale_cards`): in a surge, the cards' updates wait, not
        the boards', relays and claims behind them, and one update shows every change."""
        store = self.runtime.store
        card = await store.card_for(CONSUMER, handoff.id)
        item = _delivering.get()
        if card is None or on_board(card) or (item is not None and _posted_for(card, item)):
            # No card; or listed on a board, which shows it as it is now; or the one on
            # record is the new card this very item posted.
            return
        if coalesce:
            try:
                await self._turn("chat.update", card.channel, max_wait=UPDATE_WAIT_SECONDS)
            except SlackBusy:
                await store.mark_card_stale(CONSUMER, handoff.id)
                return
        await self._rewrite(card, handoff, text, blocks, turn_taken=coalesce)

    async def refresh_stale_cards(self) -> int:
        """Bring stale cards up to date, the longest-waiting first, while chat.update has a
        turn free now (the boards' and the outbox's come first); how many were."""
        store = self.runtime.store
        if not await self._board_is_mine("stale-cards"):
            return 0
        refreshed = 0
        for card in await store.stale_cards(CONSUMER):
            try:
                await self._turn("chat.update", card.channel, max_wait=0.0)
            except SlackBusy:
                break
            handoff = await store.get_handoff(card.handoff_id)
            try:
                await self._rewrite(card, handoff, *await self._card_as_now(handoff))
            except SlackApiError as error:
                if error.response.get("error") not in ("message_not_found", "cant_update_message"):
                    raise
            await store.card_refreshed(card)
            refreshed += 1
        return refreshed

    async def _card_as_now(self, handoff: Handoff) -> tuple[str, list[dict[str, Any]]]:
        """The card for the handoff's state now."""
        holder = await self.slack_id(handoff.assignee)
        if handoff.state == "waiting":
            mentions = await self.mentions(handoff)
            return await asyncio.to_thread(handoff_card, handoff, mentions, self.say)
        if handoff.state == "assigned":
            return claimed_card(handoff, self.say, holder)
        how = "Resolved" if handoff.state == "resolved" else "Handed back"
        return closed_card(handoff, how, self.say, holder)

    async def _rewrite(
        self,
        card: ChannelCard,
        handoff: Handoff,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        turn_taken: bool = True,
    ) -> None:
        """Show `text`/`blocks` on the card; a card in an expert's DM keeps the
        conversation it was posted with, brought up to date."""
        if card.channel not in (self._route_channel("expert"), self._route_channel("staff")):
            lines, _ = await self._transcript_lines(handoff)
            blocks = blocks + transcript(lines)
        await self._call(
            "chat_update",
            turn_taken=turn_taken,
            channel=card.channel,
            ts=card.ts,
            text=text,
            blocks=blocks,
        )

    async def _find_card(self, channel: str, item: OutboxItem) -> str | None:
        """The ts of a card posted for `item` since it was written, if Slack has one."""
        try:
            history = await self._call(
                "conversations_history",
                channel=channel,
                # Slack stamps the card by its clock, a little off ours: look a while back.
                oldest=f"{as_utc(item.created_at).timestamp() - CLOCK_SKEW_SECONDS:.6f}",
                include_all_metadata=True,
                limit=200,
            )
        except SlackApiError as error:
            if _transient(error):
                raise
            # No history to read (the app lacks channels:history, say): better a card
            # twice than none at all.
            log.warning("cannot look for an earlier card in %s: %s", channel, _describe(error))
            return None
        for message in history.get("messages", []):
            metadata = message.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            ours = metadata.get("event_type") == CARD_EVENT
            if ours and payload.get("outbox_item_id") == item.id:
                return str(message["ts"])
        return None

    async def _transcript_lines(self, handoff: Handoff) -> tuple[list[str], int]:
        """The conversation so far, a line each, and the last message's seq."""
        messages = await self.runtime.store.messages_after(handoff.conversation_id)
        lines = await asyncio.to_thread(
            lambda: [
                f"*{self.say.inline(m.author, 20)}:*\n{self.say.quoted(m.text)}" for m in messages
            ]
        )
        return lines, max((m.seq for m in messages), default=0)

    async def post_transcript(self, handoff: Handoff, *, turn_taken: bool = False) -> None:
        lines, last = await self._transcript_lines(handoff)
        text = "Conversation so far:\n" + "\n".join(lines)
        await self.post_in_thread(handoff, text, turn_taken=turn_taken)
        card = await self.runtime.store.card_for(CONSUMER, handoff.id)
        if card is not None and not on_board(card):
            await self.runtime.store.card_shows(CONSUMER, card, last)

    async def start_conversation(self, handoff: Handoff, holder: str | None) -> None:
        """The conversation so far, where the claimer answers the customer: the card's
        thread while its channel has a turn soon; else the claimer's DM with the app (a
        channel of its own to Slack's limits), so that a busy channel's threads do not hold
        up the relay."""
        store = self.runtime.store
        card = await store.card_for(CONSUMER, handoff.id)
        if card is None or card.thread_channel is not None:
            return  # no card; or an earlier try of this change moved it to a DM already
        if holder is not None and is_user_id(holder):
            try:
                wait = min(self.settings.slack.limits.card_wait_seconds, _turn_budget.get())
                await self._turn(POST, card.channel, max_wait=wait)
            except SlackBusy:
                await self.post_conversation_in_dm(handoff, holder, card)
                return
            await self.post_transcript(handoff, turn_taken=True)
            return
        await self.post_transcript(handoff)

    async def post_conversation_in_dm(
        self, handoff: Handoff, holder: str, card: ChannelCard
    ) -> None:
        """The claimed card, with the conversation so far, in the claimer's DM: the thread
        where the conversation goes on (the channel's card stays the handoff's card)."""
        text, blocks = claimed_card(handoff, self.say, holder)
        lines, last = await self._transcript_lines(handoff)
        posted = await self._call(
            "chat_postMessage", channel=holder, text=text, blocks=blocks + transcript(lines)
        )
        await self.runtime.store.save_thread(CONSUMER, card, posted["channel"], posted["ts"], last)

    async def post_claimed_card(self, handoff: Handoff, holder: str | None) -> None:
        """The card of a handoff claimed from a queue board, with the conversation so far,
        in the claimer's DM with the app (in the channel for someone without a Slack id):
        its thread is where they talk to the customer. A DM is a channel of its own to
        Slack's limits, so a surge's claims do not queue behind one another."""
        store = self.runtime.store
        item = _delivering.get()
        if item is not None and _posted_for(await store.card_for(CONSUMER, handoff.id), item):
            return
        where = holder if holder is not None and is_user_id(holder) else self._channel(handoff)
        text, blocks = claimed_card(handoff, self.say, holder)
        lines, last = await self._transcript_lines(handoff)
        blocks += transcript(lines)
        metadata = {
            "event_type": CARD_EVENT,
            "event_payload": {"handoff_id": handoff.id, "outbox_item_id": item and item.id},
        }
        posted = await self._call(
            "chat_postMessage", channel=where, text=text, blocks=blocks, metadata=metadata
        )
        recorded = await store.save_card(
            CONSUMER, handoff.id, posted["channel"], posted["ts"], item and item.id, last
        )
        if (recorded.channel, recorded.ts) != (posted["channel"], posted["ts"]):
            await self._call("chat_delete", channel=posted["channel"], ts=posted["ts"])

    async def post_in_thread(
        self, handoff: Handoff, text: str, *, turn_taken: bool = False
    ) -> None:
        card = await self.runtime.store.card_for(CONSUMER, handoff.id)
        # Listed on a board, it has no thread yet: its card, when claimed, has it all.
        if card is not None and not on_board(card):
            channel, ts = card.thread
            await self._call(
                "chat_postMessage", turn_taken=turn_taken, channel=channel, thread_ts=ts, text=text
            )

    # ------------------------------------------------------------------ queue boards

    async def _keep_boards(self, stop: asyncio.Event) -> None:
        """Keep each channel's queue board up to date, every `board_seconds`."""
        every = self.settings.slack.limits.board_seconds
        while not stop.is_set():
            for route in ("expert", "staff"):
                try:
                    await self.refresh_board(route)
                except SlackBusy:
                    pass  # no turn for it this round: the next round shows it all
                except Exception:
                    log.exception("could not update the %s queue board in Slack", route)
            try:
                await self.refresh_stale_cards()
            except Exception:
                log.exception("could not bring stale cards in Slack up to date")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    async def refresh_board(self, route: str) -> None:
        """Show the handoffs listed on the route's board as they are now: post the board
        when the first is listed, update it when what it shows changed, delete it when
        nobody waits any more (the next surge's board is then posted at the bottom)."""
        _turn_budget.set(TURN_WAIT_SECONDS)
        channel = self._route_channel(route)
        if not await self._board_is_mine(channel):
            return  # another server process keeps it this round
        store = self.runtime.store
        waiting = await store.board_entries(CONSUMER, channel)
        board = await store.board_for(CONSUMER, channel)
        if board is None and not waiting:
            return
        if board is not None and not waiting:
            try:
                await self._call("chat_delete", channel=channel, ts=board.ts)
            except SlackApiError as error:
                if error.response.get("error") != "message_not_found":
                    raise
            await store.drop_board(CONSUMER, channel)
            return
        text, blocks = await asyncio.to_thread(board_message, waiting, route, self.say)
        shows = digest(blocks)
        if board is not None and board.digest == shows:
            return
        if board is not None:
            try:
                await self._call(
                    "chat_update", channel=channel, ts=board.ts, text=text, blocks=blocks
                )
            except SlackApiError as error:
                if error.response.get("error") != "message_not_found":
                    raise
                await store.drop_board(CONSUMER, channel)  # deleted in Slack: post anew
                return
            await store.save_board(CONSUMER, channel, board.ts, shows)
            return
        metadata = {"event_type": BOARD_EVENT, "event_payload": {"route": route}}
        posted = await self._call(
            "chat_postMessage", channel=channel, text=text, blocks=blocks, metadata=metadata
        )
        await store.save_board(CONSUMER, channel, posted["ts"], shows)

    async def _board_is_mine(self, channel: str) -> bool:
        """Whether this process updates `channel`'s board (or the stale cards) this round:
        one process does."""
        redis = self.runtime.redis
        if redis is None:
            return True
        every = self.settings.slack.limits.board_seconds
        key = f"{self.runtime.redis_prefix}:slack-board:{channel}"
        return bool(await redis.set(key, "1", nx=True, px=round(every * 900)))

    async def _turn(self, method: str, channel: str, *, max_wait: float) -> None:
        """The call's turn, its wait taken from the delivery's budget."""
        started = time.monotonic()
        await self.pacer.turn(method, channel, max_wait=max_wait)
        _turn_budget.set(max(0.0, _turn_budget.get() - (time.monotonic() - started)))

    def _channel(self, handoff: Handoff) -> str:
        return self._route_channel("staff" if handoff.route == "staff" else "expert")

    def _route_channel(self, route: str) -> str:
        slack = self.settings.slack
        channel = slack.staff_channel if route == "staff" else slack.expert_channel
        assert channel is not None  # checked when the settings were loaded
        return channel

    async def _call(self, method: str, *, turn_taken: bool = False, **arguments: Any) -> Any:
        """A Web API call in its turn (`SlackBusy` when that is further away than the
        delivery may still wait). A 429 holds the method for every process until its
        Retry-After; a short one is waited out and the call tried once more."""
        api = method.replace("_", ".", 1)  # chat_postMessage -> chat.postMessage
        channel = str(arguments.get("channel") or "")
        for last_try in (False, True):
            if not turn_taken:
                await self._turn(api, channel, max_wait=_turn_budget.get())
            turn_taken = False
            try:
                answer = await getattr(self.client, method)(**arguments)
            except SlackApiError as error:
                wait = slack_asks_to_wait(error).total_seconds()
                if error.response.status_code != 429:
                    raise
                await self.pacer.rate_limited(api, wait)
                if last_try or wait > MAX_RETRY_AFTER_SECONDS:
                    raise
                continue
            if api == POST:
                self.pacer.posted(channel, str(answer.get("channel") or channel))
            return answer
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


def _posted_for(card: ChannelCard | None, item: OutboxItem) -> bool:
    """Whether `card` was posted for `item` or a later change (items are told in order)."""
    return card is not None and card.outbox_item_id is not None and card.outbox_item_id >= item.id


def _lease_lost(item: OutboxItem) -> None:
    log.warning(
        "the lease on %s of handoff %s ran out before Slack answered: another process "
        "has taken it over",
        item.kind,
        item.handoff_id,
    )


def _retry_after(headers: Any) -> float:
    """Slack's Retry-After (seconds) from response headers, 0 when absent or unreadable."""
    for name, value in dict(headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return float(raw)
            except (TypeError, ValueError):
                return 0.0
    return 0.0


def slack_asks_to_wait(error: Exception) -> timedelta:
    """How long Slack asked us to wait (a 429's Retry-After), else nothing."""
    if isinstance(error, SlackApiError) and error.response.status_code == 429:
        return timedelta(seconds=_retry_after(error.response.headers))
    return timedelta(0)


def _transient(error: SlackApiError) -> bool:
    status = error.response.status_code
    return status == 429 or status >= 500


def _describe(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        status, code = error.response.status_code, str(error.response.get("error") or "")
        if _transient(error):
            return f"Slack answered HTTP {status} {code}".rstrip()
        fix = FIXES.get(code)
        return f"Slack said {code}" + (f": {fix}" if fix else "")
    if isinstance(error, aiohttp.ClientError | OSError | TimeoutError):
        return f"Slack could not be reached ({type(error).__name__}: {error})"
    return f"{type(error).__name__}: {error}"
