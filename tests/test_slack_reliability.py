"""The Slack edge when things fail or run slow: an expert's reply whose first relay fails
reaches the customer on Slack's retry, once; a Slack slower than the outbox lease leaves one
card, whose thread works. Real slack-bolt app, signed requests, the local Slack stand-in."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from slack_sdk.errors import SlackApiError
from sqlalchemy import text

from gigcx.connectors.slack import SlackConnector
from gigcx.connectors.slack.bridge import (
    CALL_TIMEOUT_SECONDS,
    LEASE,
    SlackBridge,
    delivery_time_bound,
)
from gigcx.connectors.slack.listeners import RedisSeenEvents, slack_client
from gigcx.store import ConversationStore
from gigcx.store.models import as_utc, utcnow
from tests.helpers.live_server import LiveServer, live_server
from tests.helpers.slack_requests import ALEX, SAMI, SECRET, click, escalate, signed, thread_payload
from tests.helpers.slack_server import SlackAPIServer
from tests.test_store import open_handoff

SHORT_LEASE = timedelta(seconds=0.5)
SLOWER_THAN_THE_LEASE = 1.5  # seconds Slack takes to answer a card post


async def deliver(http: httpx.AsyncClient, event: dict[str, Any]) -> int:
    """Slack delivering `event` (again, when called again with it): the status we answer."""
    body = json.dumps(event)
    headers = {**signed(body), "Content-Type": "application/json"}
    return (await http.post("/slack/events", content=body, headers=headers)).status_code


async def arrived(slack: SlackAPIServer, method: str, timeout: float = 10.0) -> None:
    """Wait until a call of `method` has reached the stand-in (answered or not)."""
    deadline = time.monotonic() + timeout
    while method not in slack.arrived:
        assert time.monotonic() < deadline, f"no {method} call arrived"
        await asyncio.sleep(0.02)


async def claimed_thread(
    http: httpx.AsyncClient, server: LiveServer, slack: SlackAPIServer
) -> tuple[str, dict[str, str], str, str]:
    """A customer escalates and Alex claims: the conversation, its auth, handoff and card ts."""
    cid, auth = await escalate(http, "my X2 crackles, can I talk to a person?")
    await slack.wait_for("chat.postMessage", 1)
    handoff = await server.runtime.store.open_handoff_for(cid)
    assert handoff is not None
    await click(http, slack, "claim", handoff.id, ALEX)
    await slack.wait_for("chat.update", 1)
    card = await server.runtime.store.card_for("slack", handoff.id)
    assert card is not None
    return cid, auth, handoff.id, card.ts


async def customer_sees(http: httpx.AsyncClient, cid: str, auth: dict[str, str]) -> list[str]:
    listed = (await http.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
    return [m["text"] for m in listed["messages"] if m["author"] == "expert"]


# ---------------------------------------------------------------- Slack -> customer


async def test_a_reply_whose_relay_fails_in_the_database_reaches_the_customer_on_slacks_retry(
    server: LiveServer, slack: SlackAPIServer
):
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth, _handoff, thread = await claimed_thread(http, server, slack)
        # The database refuses the expert's message once (a full disk, a failover...).
        async with server.runtime.store.engine.begin() as connection:
            await connection.execute(
                text(
                    "CREATE TRIGGER refuse_experts BEFORE INSERT ON messages "
                    "WHEN NEW.author = 'expert' BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
                )
            )
        event = thread_payload("C0EXPERTS", thread, ALEX, "Hi! Alex here.", "EvFail1")
        assert await deliver(http, event) == 500  # so Slack delivers it again
        assert await customer_sees(http, cid, auth) == []
        async with server.runtime.store.engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER refuse_experts"))

        assert await deliver(http, event) == 200  # Slack's retry
        assert await customer_sees(http, cid, auth) == ["Hi! Alex here."]
        assert await deliver(http, event) == 200  # and another one: nothing new
        assert await customer_sees(http, cid, auth) == ["Hi! Alex here."]
        assert [r["name"] for r in slack.posted("reactions.add")] == ["white_check_mark"]


async def test_a_reply_and_a_note_whose_reaction_fails_are_kept_once_across_slacks_retries(
    server: LiveServer, slack: SlackAPIServer
):
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth, handoff_id, thread = await claimed_thread(http, server, slack)
        reply = thread_payload("C0EXPERTS", thread, ALEX, "Try a reset", "EvReact1")
        note = thread_payload("C0EXPERTS", thread, SAMI, "firmware 3.2 has this bug", "EvReact2")
        slack.failures["reactions.add"] = "down"  # stored, then Slack fails to react
        assert await deliver(http, reply) == 500
        assert await deliver(http, note) == 500
        slack.failures.clear()

        for _ in range(2):  # Slack's retry, then one for an event already handled
            assert await deliver(http, reply) == 200
            assert await deliver(http, note) == 200
        assert await customer_sees(http, cid, auth) == ["Try a reset"]
        notes = await server.runtime.store.internal_notes(handoff_id)
        assert [(n.author, n.text) for n in notes] == [(SAMI, "firmware 3.2 has this bug")]
        assert sorted(name for _channel, _ts, name in slack.reactions) == [
            "lock",
            "white_check_mark",
        ]


async def test_a_rate_limited_reaction_is_left_out_and_holds_reactions_until_retry_after(
    server: LiveServer, slack: SlackAPIServer
):
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth, _handoff, thread = await claimed_thread(http, server, slack)
        slack.failures["reactions.add"] = "ratelimited"  # Retry-After: 30 (seconds)
        first = thread_payload("C0EXPERTS", thread, ALEX, "Try a reset", "EvLimit1")
        assert await deliver(http, first) == 200  # stored and relayed: no redelivery needed
        tried = slack.arrived.count("reactions.add")
        second = thread_payload("C0EXPERTS", thread, ALEX, "Then hold the button", "EvLimit2")
        assert await deliver(http, second) == 200
        # Within the Retry-After the app does not ask again; the replies reached the customer.
        assert slack.arrived.count("reactions.add") == tried == 1
        assert await customer_sees(http, cid, auth) == ["Try a reset", "Then hold the button"]


async def test_slacks_timeout_retry_arriving_while_the_first_try_still_works_relays_once(
    server: LiveServer, slack: SlackAPIServer
):
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth, _handoff, thread = await claimed_thread(http, server, slack)
        # The first try is slow past Slack's 3 seconds (here: its reaction), so Slack sends
        # the event again (x-slack-retry-reason: http_timeout) while it still works.
        slack.delays["reactions.add"] = (1.0, "before")
        event = thread_payload("C0EXPERTS", thread, ALEX, "On it!", "EvSlow1")
        first = asyncio.create_task(deliver(http, event))
        await arrived(slack, "reactions.add")
        assert await deliver(http, event) == 200
        assert await first == 200
        assert await customer_sees(http, cid, auth) == ["On it!"]
        assert len(slack.reactions) == 1


async def test_a_reaction_slack_refuses_for_good_does_not_hold_the_reply_up(
    server: LiveServer, slack: SlackAPIServer
):
    """The expert deleted their message before we reacted (or a scope is missing): the
    reply is kept and Slack is told so, rather than asked to deliver it again forever."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth, _handoff, thread = await claimed_thread(http, server, slack)
        slack.failures["reactions.add"] = "message_not_found"
        event = thread_payload("C0EXPERTS", thread, ALEX, "Back in a minute", "EvGone1")
        assert await deliver(http, event) == 200
        assert await deliver(http, event) == 200  # a redelivery all the same: nothing new
        assert await customer_sees(http, cid, auth) == ["Back in a minute"]


async def test_the_seen_events_filter_steps_aside_when_redis_is_down():
    """With Redis down the filter answers "not seen" (the store's unique keys keep a
    redelivered reply single), instead of refusing every expert reply with a 500."""
    seen = RedisSeenEvents(redis.Redis.from_url("redis://127.0.0.1:1/0"), "gigcx-test")
    assert await seen.handled("Ev1") is False
    await seen.remember("Ev1")  # does not raise


async def test_slack_too_slow_to_answer_at_start_does_not_stop_delivery(
    brand_settings: Any, slack: SlackAPIServer
):
    """Slack is slow when the server starts (its setup check times out): the server logs
    it and delivers the outbox as soon as Slack answers, instead of never."""
    slack.delays["auth.test"] = (CALL_TIMEOUT_SECONDS + 2.0, "before")
    settings = brand_settings.model_copy(update={"slack": slack.settings(SECRET)})
    async with live_server(settings) as live, httpx.AsyncClient(base_url=live.url) as http:
        await escalate(http, "my X2 crackles, can I talk to a person?")
        await slack.wait_for("chat.postMessage", 1, timeout=30)
        assert len(expert_channel_cards(slack)) == 1


# ---------------------------------------------------------------- gigcx -> Slack


async def stop_the_servers_bridge(server: LiveServer) -> None:
    """Stop the live server's own delivery loop: the test's bridges deliver instead."""
    connector: SlackConnector = server.app.state.channels["slack"]
    await connector.stop()


def expert_channel_cards(slack: SlackAPIServer) -> list[dict[str, Any]]:
    return slack.cards("C0EXPERTS")


@pytest.mark.parametrize("slow", ["answering", "posting"])
async def test_slack_slower_than_the_lease_leaves_one_card_and_its_thread_reaches_the_customer(
    server: LiveServer, slack: SlackAPIServer, slow: str
):
    """Two server processes: the first's lease runs out while Slack works on its card post,
    and the second takes the item over. Slack either posted at once and answers late
    ("answering"), or is slow to post at all ("posting")."""
    await stop_the_servers_bridge(server)
    runtime = server.runtime
    first = SlackBridge(runtime, slack_client(runtime), lease=SHORT_LEASE)
    second = SlackBridge(runtime, slack_client(runtime), lease=SHORT_LEASE)
    slack.delays["chat.postMessage"] = (
        SLOWER_THAN_THE_LEASE,
        "after" if slow == "answering" else "before",
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, "my X2 crackles, can I talk to a person?")
        handoff = await runtime.store.open_handoff_for(cid)
        assert handoff is not None

        slow_delivery = asyncio.create_task(first.deliver_due())
        await arrived(slack, "chat.postMessage")
        # Later, with the first's lease run out and its post not answered yet:
        await second.deliver_due(utcnow() + SHORT_LEASE)
        await slow_delivery
        slack.delays.clear()

        [card] = expert_channel_cards(slack)
        recorded = await runtime.store.card_for("slack", handoff.id)
        assert recorded is not None and recorded.ts == card["ts"]
        assert (await runtime.store.outbox_backlog("slack"))[0] == 0

        # The thread of that one card works both ways.
        await click(http, slack, "claim", handoff.id, ALEX)
        await first.deliver_due()
        [update] = await slack.wait_for("chat.update", 1)
        assert update["ts"] == card["ts"]
        event = thread_payload("C0EXPERTS", card["ts"], ALEX, "Alex here, try a reset", "EvL1")
        assert await deliver(http, event) == 200
        assert await customer_sees(http, cid, auth) == ["Alex here, try a reset"]
        await http.post(
            f"/v1/conversations/{cid}/messages", json={"text": "it worked"}, headers=auth
        )
        await second.deliver_due()
        in_thread = [p for p in slack.posted("chat.postMessage") if p.get("thread_ts")]
        assert in_thread[-1] == {
            "channel": "C0EXPERTS",
            "thread_ts": card["ts"],
            "text": "*Customer:*\n>it worked",
        }
        assert len(expert_channel_cards(slack)) == 1


async def test_a_card_post_that_timed_out_is_found_on_the_next_try_not_posted_again(
    server: LiveServer, slack: SlackAPIServer
):
    await stop_the_servers_bridge(server)
    runtime = server.runtime
    bridge = SlackBridge(runtime, slack_client(runtime, timeout=0.3), lease=SHORT_LEASE)
    slack.delays["chat.postMessage"] = (1.0, "after")  # posted; the answer comes too late
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, _auth = await escalate(http, "my X2 crackles, can I talk to a person?")
        handoff = await runtime.store.open_handoff_for(cid)
        assert handoff is not None
        assert await bridge.deliver_due() == 0
        [item] = await runtime.store.outbox_heads("slack", utcnow() + timedelta(hours=1))
        assert "Slack could not be reached (TimeoutError" in item.last_error

        assert await bridge.deliver_due(utcnow() + timedelta(minutes=1)) == 1
        [card] = expert_channel_cards(slack)
        recorded = await runtime.store.card_for("slack", handoff.id)
        assert recorded is not None and recorded.ts == card["ts"]
        assert len(slack.posted("chat.postMessage")) == 1


async def test_a_long_rate_limit_goes_back_to_the_outbox_until_slack_says(
    server: LiveServer, slack: SlackAPIServer
):
    await stop_the_servers_bridge(server)
    runtime = server.runtime
    bridge = SlackBridge(runtime, slack_client(runtime))
    slack.failures["chat.postMessage"] = "ratelimited"  # Retry-After: 30 (seconds)
    async with httpx.AsyncClient(base_url=server.url) as http:
        await escalate(http, "I want a human")
    before = utcnow()
    assert await bridge.deliver_due() == 0
    # Not waited out within the lease: one try, and the item is due again after 30 s.
    assert slack.arrived.count("chat.postMessage") == 1
    [item] = await runtime.store.outbox_heads("slack", before + timedelta(hours=1))
    assert item.last_error == "Slack answered HTTP 429 ratelimited"
    assert as_utc(item.due_at) >= before + timedelta(seconds=30)
    assert await runtime.store.outbox_heads("slack", before + timedelta(seconds=29)) == []

    # Every process holds its posts until then: another handoff is listed on the queue
    # board instead of waiting, and nothing reaches Slack.
    async with httpx.AsyncClient(base_url=server.url) as http:
        await escalate(http, "can I talk to a person please")
    assert await bridge.deliver_due() == 1
    assert slack.arrived.count("chat.postMessage") == 1
    [listed] = await runtime.store.board_entries("slack", "C0EXPERTS")

    # A short one is waited out within the same call, then tried once more (here the
    # board's first post, by a process that has not been told of the long one).
    slack.retry_after = 1
    fresh = SlackBridge(runtime, slack_client(runtime))
    calls = slack.arrived.count("chat.postMessage")
    started = time.perf_counter()
    with pytest.raises(SlackApiError):  # still rate-limited on the retry
        await fresh.refresh_board("expert")
    assert slack.arrived.count("chat.postMessage") == calls + 2
    assert time.perf_counter() - started >= 1.0  # not before Slack's Retry-After
    assert listed.id not in slack.first_seen


def test_one_delivery_fits_in_the_lease_with_every_call_at_its_timeout_and_retried():
    assert delivery_time_bound() < LEASE.total_seconds()


async def test_a_process_whose_lease_was_taken_over_cannot_settle_the_item(
    server: LiveServer, slack: SlackAPIServer
):
    await stop_the_servers_bridge(server)
    store = server.runtime.store
    async with httpx.AsyncClient(base_url=server.url) as http:
        await escalate(http, "I want a human")
    now = utcnow()
    [stale] = await store.take_outbox("slack", now, SHORT_LEASE)
    [current] = await store.take_outbox("slack", now + timedelta(seconds=1), SHORT_LEASE)
    assert stale.id == current.id
    # The first holder's answers come too late: neither settles the item.
    assert not await store.outbox_retry(stale, "Slack answered HTTP 503", now)
    assert not await store.outbox_delivered(stale)
    [held] = await store.outbox_heads("slack", now + timedelta(hours=1))
    assert (held.last_error, held.lease_token) == ("", current.lease_token)
    assert await store.outbox_delivered(current)
    assert (await store.outbox_backlog("slack"))[0] == 0


# ---------------------------------------------------------------- the store, on both databases


async def test_one_slack_message_is_stored_once_however_many_deliveries_race(
    store: ConversationStore,
):
    conversation = await store.create_conversation("kestrel")
    source = "slack:C0EXPERTS:1795460000.000100"
    stored = await asyncio.gather(
        *(store.add_message(conversation.id, "expert", "Hi!", source=source) for _ in range(5))
    )
    assert len({m.id for m in stored if m is not None}) == 1
    assert [m.text for m in await store.messages_after(conversation.id)] == ["Hi!"]
    assert (await store.get_conversation(conversation.id)).last_seq == 1  # no gap either

    handoff_id = await open_handoff(store, conversation.id)
    notes = await asyncio.gather(
        *(
            store.add_internal_note(handoff_id, "U1", "note: hm", source="slack:C0EXPERTS:2")
            for _ in range(5)
        )
    )
    assert len({n.id for n in notes}) == 1
    assert len(await store.internal_notes(handoff_id)) == 1


async def test_a_card_posted_for_an_older_change_never_replaces_a_newer_one(
    store: ConversationStore,
):
    conversation = await store.create_conversation("kestrel")
    handoff_id = await open_handoff(store, conversation.id)
    first = await store.save_card("slack", handoff_id, "C0EXPERTS", "1.000100", outbox_item_id=7)
    assert first.ts == "1.000100"
    # The same change posted twice: the card recorded first stays.
    assert (await store.save_card("slack", handoff_id, "C0EXPERTS", "1.000200", 7)).ts == "1.000100"
    # A newer change (re-offered) replaces it; a late answer for the older one does not.
    assert (await store.save_card("slack", handoff_id, "C0EXPERTS", "2.000100", 9)).ts == "2.000100"
    assert (await store.save_card("slack", handoff_id, "C0EXPERTS", "1.000300", 7)).ts == "2.000100"
    assert (await store.handoff_for_thread("slack", "C0EXPERTS", "2.000100")) is not None
