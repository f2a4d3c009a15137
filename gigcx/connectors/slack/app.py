"""Slack -> gigcx: the slack-bolt app behind /slack/events. Listeners ack first, then call
`Escalations`; no business rule lives here."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

import redis.asyncio as redis
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from gigcx.app import GigCX
from gigcx.connectors.slack.text import mention
from gigcx.escalation import ClaimRefused

DELIVERED = "white_check_mark"
KEPT_INTERNAL = "lock"


class SeenEvents(Protocol):
    async def first_sighting(self, event_id: str) -> bool:
        """True the first time `event_id` is seen, False when Slack delivers it again."""
        ...


class LocalSeenEvents:
    """The event ids this one server process has acted on (the newest few thousand)."""

    def __init__(self, keep: int = 5000) -> None:
        self.keep = keep
        self._seen: OrderedDict[str, None] = OrderedDict()

    async def first_sighting(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.keep:
            self._seen.popitem(last=False)
        return True


class RedisSeenEvents:
    """The event ids any server process has acted on in the last day: Slack may deliver an
    event again to another process."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = f"{prefix}:slack-event"

    async def first_sighting(self, event_id: str) -> bool:
        first = await self.client.set(f"{self.prefix}:{event_id}", 1, nx=True, ex=86_400)
        return bool(first)


def slack_client(runtime: GigCX) -> AsyncWebClient:
    slack = runtime.settings.slack
    assert slack.bot_token is not None
    return AsyncWebClient(token=slack.bot_token.get_secret_value(), base_url=slack.api_url)


def create_slack_app(runtime: GigCX, client: AsyncWebClient | None = None) -> AsyncApp:
    """The brand's Slack app: Claim/Release/Resolve/Hand back/Move to staff, thread replies."""
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

    @app.action("claim")
    async def claim(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        user, handoff_id = body["user"]["id"], body["actions"][0]["value"]
        expert = await store.find_expert(runtime.settings.brand, user)
        name = expert.name.split()[0] if expert is not None else None
        try:
            claimed = await escalations.claim(handoff_id, user, name)
        except ClaimRefused as refused:
            await tell(respond, f"Sorry, {refused}.")
            return
        if claimed is None:
            handoff = await store.get_handoff(handoff_id)
            holder = mention(handoff.assignee) if handoff.assignee else "someone else"
            await tell(respond, f"Already claimed by {holder}.")

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
        if await action(handoff_id, user) is None:
            await tell(respond, "Only the expert who claimed this conversation can do that.")

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
        changed = await store.set_available(
            runtime.settings.brand, command["user_id"], wanted == "available"
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
        # Slack delivers an event again when it thinks we missed it, maybe to another
        # server process: act once per event id.
        event_id = body.get("event_id")
        if event_id and not await seen.first_sighting(str(event_id)):
            return
        if event.get("bot_id") or event.get("subtype") or not event.get("thread_ts"):
            return  # our own posts (no echo), edits and joins, and messages outside threads
        handoff = await store.handoff_for_thread(event["channel"], event["thread_ts"])
        if handoff is None:
            return
        text = str(event.get("text", "")).strip()
        user = event.get("user")
        to_customer = (
            handoff.state == "assigned"
            and user == handoff.assignee
            and not text.lower().startswith("note:")
        )
        delivered = to_customer and await escalations.send_reply(handoff.id, user, text)
        if not delivered:
            await store.add_internal_note(handoff.id, str(user), text)
        await app.client.reactions_add(
            channel=event["channel"],
            timestamp=event["ts"],
            name=DELIVERED if delivered else KEPT_INTERNAL,
        )

    return app
