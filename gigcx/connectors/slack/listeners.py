"""Slack -> gigcx: the slack-bolt app and its listeners, behind /slack/events (or a Socket
Mode connection). Listeners call `Escalations`; no business rule lives here.

Why the app answers Slack only after the work (`process_before_response=True`), on a
long-running server too: Slack's redelivery is what makes an expert's thread reply safe.
Slack sends an event again when it does not get a 2xx within 3 seconds; bolt answers 500
when a listener raises (in Socket Mode it sends no ack then, to the same effect). Acking
first (bolt's default, or lazy listeners) would tell Slack "done" before the reply is
stored, so a database or Slack failure after the ack would lose the reply for good, unless
we kept an inbox of our own. So the work is made idempotent instead, in the store: a
relayed reply or note keeps its Slack identity (`slack:<channel>:<ts>`) under a unique key,
so a redelivery after the work committed finds it and adds nothing, a redelivery after a
failure does the work, and a redelivery racing a slow first try (`x-slack-retry-reason:
http_timeout`) adds nothing either (one of the two inserts wins; a second reaction is
refused as `already_reacted`). The seen-events set is only a cheap first filter, written
once the work has committed.

Buttons and `/gigcx` are answered after their work too (a guarded database update or two,
well within the 3 seconds); Slack never redelivers those, and a repeated click changes
nothing.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Protocol

import redis.asyncio as redis
from redis.exceptions import RedisError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gigcx.app import GigCX
from gigcx.connectors.slack.bridge import (
    CALL_TIMEOUT_SECONDS,
    CONSUMER,
    slack_asks_to_wait,
    slack_pacer,
    slack_retry_handlers,
)
from gigcx.connectors.slack.pacing import SlackBusy, SlackPacer
from gigcx.connectors.slack.text import mention
from gigcx.escalation import ClaimRefused
from gigcx.store import Handoff
from gigcx.store.models import Expert, on_board

log = logging.getLogger(__name__)
DELIVERED = "white_check_mark"
KEPT_INTERNAL = "lock"
# The reaction on a relayed reply is a courtesy: under Slack's rate limits (reactions.add is
# Tier 3, shared by the workspace) it is left out rather than hold up Slack's 3 s.
REACTION_WAIT_SECONDS = 0.5
CLAIM_NEXT_TRIES = 5  # waiting handoffs "Claim the oldest" tries, should others win them


class SeenEvents(Protocol):
    """Events whose work has committed: a cheap filter for Slack's redeliveries (the store's
    unique keys are what make a repeat harmless)."""

    async def handled(self, event_id: str) -> bool:
        """True when the work for `event_id` has been done (see `remember`)."""
        ...

    async def remember(self, event_id: str) -> None:
        """Note that the work for `event_id` is done; called only once it has committed."""
        ...


class LocalSeenEvents:
    """The event ids this one server process has handled (the newest few thousand)."""

    def __init__(self, keep: int = 5000) -> None:
        self.keep = keep
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def handled(self, event_id: str) -> bool:
        return event_id in self._seen

    async def remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        if len(self._seen) > self.keep:
            self._seen.popitem(last=False)


class RedisSeenEvents:
    """The event ids any server process has handled in the last day: Slack may deliver an
    event again to another process."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = f"{prefix}:slack-event"

    async def handled(self, event_id: str) -> bool:
        # Only a first filter: with Redis down, the store's unique keys still keep a
        # redelivered reply from being added twice, so the reply is not refused.
        try:
            return bool(await self.client.exists(f"{self.prefix}:{event_id}"))
        except (RedisError, OSError) as error:
            log.warning("Slack events seen: Redis unavailable (%s)", error)
            return False

    async def remember(self, event_id: str) -> None:
        try:
            await self.client.set(f"{self.prefix}:{event_id}", 1, ex=86_400)
        except (RedisError, OSError) as error:
            log.warning("Slack events seen: Redis unavailable (%s)", error)


def slack_client(runtime: GigCX, timeout: float = CALL_TIMEOUT_SECONDS) -> AsyncWebClient:
    """A Web API client whose calls give up after `timeout` seconds, retried once by
    slack_sdk's handlers: an outbox delivery stays well within its lease."""
    slack = runtime.settings.slack
    assert slack.bot_token is not None
    return AsyncWebClient(
        token=slack.bot_token.get_secret_value(),
        base_url=slack.api_url,
        timeout=timeout,  # type: ignore[arg-type]  # seconds; aiohttp takes a float
        retry_handlers=slack_retry_handlers(),
    )


def create_slack_app(
    runtime: GigCX, client: AsyncWebClient | None = None, pacer: SlackPacer | None = None
) -> AsyncApp:
    """The brand's Slack app: Claim (a card's button, or from a queue board: the oldest, or
    one picked from its list), Release/Resolve/Hand back/Move to staff, thread replies."""
    pacer = pacer or slack_pacer(runtime)
    slack = runtime.settings.slack
    # Over HTTP every request is verified (the settings refuse a token without a signing
    # secret); in Socket Mode, Slack's events come over a connection the app opened itself.
    secret = slack.signing_secret
    assert secret is not None or slack.socket_mode
    app = AsyncApp(
        client=client or slack_client(runtime),
        signing_secret=secret.get_secret_value() if secret is not None else "",
        request_verification_enabled=secret is not None and not slack.socket_mode,
        process_before_response=True,
    )
    escalations, store = runtime.escalations, runtime.store
    seen: SeenEvents = (
        RedisSeenEvents(runtime.redis, runtime.redis_prefix)
        if runtime.redis is not None
        else LocalSeenEvents()
    )
    brand_name = runtime.settings.display_name

    async def tell(respond: AsyncRespond, text: str) -> None:
        await respond(text=text, response_type="ephemeral", replace_original=False)

    async def expert_of(user: str) -> Expert | None:
        return await store.find_expert_by_handle(runtime.settings.brand, CONSUMER, user)

    async def key_of(user: str) -> str:
        """The gigcx id of the Slack user; their Slack id when they are not registered (a
        claim with it is refused, a note keeps it as its author)."""
        expert = await expert_of(user)
        return expert.key if expert is not None else user

    async def claim_for(
        user: str, handoff_id: str, respond: AsyncRespond, *, quiet_if_taken: bool = False
    ) -> bool | None:
        """Claim `handoff_id` for the Slack `user`: True when they have it; False when they
        may not claim (told why); None when someone else has it (told so, unless quiet)."""
        expert = await expert_of(user)
        name = expert.name.split()[0] if expert is not None else None
        from_board = on_board(await store.card_for(CONSUMER, handoff_id))
        try:
            claimed = await escalations.claim(handoff_id, expert.key if expert else user, name)
        except ClaimRefused as refused:
            await tell(respond, f"Sorry, {refused}.")
            return False
        if claimed is None:
            if not quiet_if_taken:
                handoff = await store.get_handoff(handoff_id)
                await tell(respond, f"Already claimed by {await holder_mention(handoff.assignee)}.")
            return None
        if from_board:
            await tell(
                respond,
                f"It's yours (`{handoff_id[:6]}`): its card, with the conversation so far, is "
                "on its way to your messages with this app. Reply in its thread.",
            )
        return True

    @app.action("claim")
    async def claim(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await claim_for(body["user"]["id"], body["actions"][0]["value"], respond)

    @app.action("claim_pick")
    async def claim_pick(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        """One handoff picked from a queue board's list."""
        await ack()
        picked = body["actions"][0]["selected_option"]["value"]
        await claim_for(body["user"]["id"], picked, respond)

    @app.action("claim_next")
    async def claim_next(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        """The oldest handoff on the queue board the button is on."""
        await ack()
        user, channel = body["user"]["id"], body["channel"]["id"]
        for handoff in await store.board_entries(CONSUMER, channel, limit=CLAIM_NEXT_TRIES):
            claimed = await claim_for(user, handoff.id, respond, quiet_if_taken=True)
            if claimed is not None:
                return  # theirs, or they may not claim (told why)
        await tell(respond, "Nobody is waiting on this board now.")

    async def holder_action(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, step: str
    ) -> None:
        await ack()
        user, handoff_id = body["user"]["id"], body["actions"][0]["value"]
        action = {
            "resolve": escalations.resolve,
            "release": escalations.release,
            "handback": escalations.hand_back,
            "move_to_staff": escalations.move_to_staff,
        }[step]
        if await action(handoff_id, await key_of(user)) is None:
            handoff = await store.get_handoff(handoff_id)
            if handoff.state in ("resolved", "returned"):
                # A card not yet brought up to date (its update waits for a turn).
                await tell(respond, "This conversation is closed already.")
            else:
                await tell(respond, "Only the expert who claimed this conversation can do that.")

    async def holder_mention(key: str | None) -> str:
        if key is None:
            return "someone else"
        holder = await store.find_expert(runtime.settings.brand, key)
        return mention(holder.handles.get(CONSUMER, holder.name) if holder else key)

    def holder_listener(step: str) -> Any:
        # bolt passes listeners only the arguments it knows by name, so `step` is closed over.
        async def listener(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
            await holder_action(ack, body, respond, step)

        return listener

    for step in ("resolve", "release", "handback", "move_to_staff"):
        app.action(step)(holder_listener(step))

    @app.command("/gigcx")
    async def availability(ack: AsyncAck, command: dict[str, Any]) -> None:
        """`/gigcx available` or `/gigcx away`: whether to be pinged for new handoffs."""
        wanted = str(command.get("text", "")).strip().lower()
        if wanted not in ("available", "away"):
            await ack(text="Use `/gigcx available` or `/gigcx away`.")
            return
        expert = await expert_of(command["user_id"])
        changed = expert is not None and await store.set_available(
            runtime.settings.brand, expert.key, wanted == "available"
        )
        if not changed:
            await ack(text=f"You are not registered as an expert for {brand_name}.")
            return
        await ack(
            text="You're available: new handoffs that match your skills will mention you."
            if wanted == "available"
            else "You're away: you won't be mentioned until you're available again."
        )

    @app.event("message")
    async def thread_message(body: dict[str, Any], event: dict[str, Any]) -> None:
        # Raising here makes bolt answer 500, and Slack delivers the event again: see the
        # module docstring. Slack may deliver it again to another server process, too.
        if event.get("bot_id") or event.get("subtype") or not event.get("thread_ts"):
            return  # our own posts (no echo), edits and joins, and messages outside threads
        event_id = str(body.get("event_id") or "")
        if event_id and await seen.handled(event_id):
            return
        handoff = await store.handoff_for_thread(CONSUMER, event["channel"], event["thread_ts"])
        if handoff is None:
            return
        delivered = await relay(handoff, event)
        try:
            await pacer.turn("reactions.add", max_wait=REACTION_WAIT_SECONDS)
            await app.client.reactions_add(
                channel=event["channel"],
                timestamp=event["ts"],
                name=DELIVERED if delivered else KEPT_INTERNAL,
            )
        except SlackBusy:
            log.info("Slack: no turn for the reaction on %s (rate limits): left out", event["ts"])
        except SlackApiError as error:
            # The reply is stored: only a failure that may pass (Slack down) is worth Slack's
            # redelivery. A rate limit holds reactions for every process and leaves this one
            # out; an earlier try's reaction, a message deleted since, a missing scope would
            # fail on every redelivery, so they are logged instead.
            status = error.response.status_code
            if status >= 500:
                raise
            if status == 429:
                wait = slack_asks_to_wait(error).total_seconds()
                await pacer.rate_limited("reactions.add", wait)
                log.info("Slack: rate-limited the reaction on %s: left out", event["ts"])
            elif error.response.get("error") != "already_reacted":
                log.warning("Slack: could not react to %s: %s", event["ts"], error)
        if event_id:
            await seen.remember(event_id)

    async def relay(handoff: Handoff, event: dict[str, Any]) -> bool:
        """Store a thread message once, for the customer or as an internal note; whether
        it went to the customer (also when an earlier try of this event stored it)."""
        source = f"slack:{event['channel']}:{event['ts']}"
        stored = await store.message_by_source(source)
        if stored is not None:
            # Said again: the try that stored it may have died before telling the widget
            # (which drops a sequence number it has shown already).
            await escalations.announce(stored)
            return True
        if await store.note_by_source(source) is not None:
            return False
        text = str(event.get("text", "")).strip()
        user = await key_of(str(event.get("user")))
        to_customer = (
            handoff.state == "assigned"
            and user == handoff.assignee
            and not text.lower().startswith("note:")
        )
        if to_customer:
            sent = await escalations.send_reply(handoff.id, user, text, source=source)
            if sent is not None:
                return True
        await store.add_internal_note(handoff.id, user, text, source=source)
        return False

    return app
