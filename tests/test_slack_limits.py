"""Slack's rate limits, enforced by the local stand-in: gigcx takes turns for its calls
(shared by every process through Redis), never calls again before a 429's Retry-After, and
when a channel cannot take a card per handoff lists them on one queue board that experts
claim from; a handoff claimed there gets its card, with the conversation, in the claimer's
DM, where the thread relay works both ways."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from gigcx.config import Settings, SlackLimits
from gigcx.connectors.slack import SlackConnector
from gigcx.connectors.slack.board import board_message
from gigcx.connectors.slack.pacing import Bucket, LocalTurns, RedisTurns, SlackBusy, SlackPacer
from gigcx.connectors.slack.text import SlackText
from gigcx.escalation.roster import sync_experts
from gigcx.store.models import Handoff, utcnow
from tests.helpers.live_server import LiveServer, live_server
from tests.helpers.slack_requests import (
    ALEX,
    SAMI,
    SECRET,
    board_payload,
    escalate,
    send_action,
    thread_event,
)
from tests.helpers.slack_server import SlackAPIServer, SlackRateLimits, dm_channel

REDIS_URL = "redis://127.0.0.1:6379/0"
FAST = SlackLimits(posts_per_channel_per_second=10, posts_per_minute=6000, tier3_per_minute=600)


@pytest.fixture(params=["local", "redis"])
async def turns(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Where turns are kept: a factory, so that two pacers share them as two processes do."""
    if request.param == "local":
        shared = LocalTurns()
        yield lambda: shared
        return
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield lambda: RedisTurns(client, prefix)
    await client.aclose()


async def test_turns_space_posts_into_one_channel_after_a_short_burst(turns: Any):
    pacer = SlackPacer(FAST, turns())
    started = time.monotonic()
    for _ in range(6):
        await pacer.turn("chat.postMessage", "C1", max_wait=5)
    # Two at once (the burst), then one every 0.1 s.
    assert 0.38 <= time.monotonic() - started < 1.5
    other = time.monotonic()
    await pacer.turn("chat.postMessage", "C2", max_wait=5)  # another channel: no wait
    assert time.monotonic() - other < 0.05


async def test_two_processes_share_the_turns(turns: Any):
    first, second = SlackPacer(FAST, turns()), SlackPacer(FAST, turns())
    started = time.monotonic()
    for pacer in (first, second) * 3:
        await pacer.turn("chat.update", max_wait=5)
    # chat.update at 600 a minute: 3 at once, then one every 0.1 s, whichever process asks.
    assert 0.28 <= time.monotonic() - started < 1.5


async def test_a_429_holds_the_method_everywhere_until_its_retry_after(turns: Any):
    told, other = SlackPacer(FAST, turns()), SlackPacer(FAST, turns())
    await told.rate_limited("chat.postMessage", 2.0)
    with pytest.raises(SlackBusy) as busy:
        await other.turn("chat.postMessage", "C9", max_wait=0.5)  # any channel, any process
    assert 1.5 <= busy.value.seconds <= 2.0
    await other.turn("chat.update", max_wait=0)  # another method is not held
    started = time.monotonic()
    await other.turn("chat.postMessage", "C9", max_wait=3)
    assert time.monotonic() - started >= 1.5


async def test_a_turn_too_far_away_reserves_nothing(turns: Any):
    limits = SlackLimits(posts_per_channel_per_second=1, posts_per_minute=6000)
    pacer = SlackPacer(limits, turns())
    for _ in range(2):  # the burst
        await pacer.turn("chat.postMessage", "C1", max_wait=0)
    for _ in range(3):  # refused, and refusing took no slot
        with pytest.raises(SlackBusy):
            await pacer.turn("chat.postMessage", "C1", max_wait=0.5)
    started = time.monotonic()
    await pacer.turn("chat.postMessage", "C1", max_wait=2)
    assert time.monotonic() - started <= 1.05


# ------------------------------------------------------------ a surge in one channel


@pytest.fixture
async def limited_slack() -> AsyncIterator[SlackAPIServer]:
    """Slack with its documented limits (a post a second per channel, bursts of 3)."""
    with SlackAPIServer(limits=SlackRateLimits()) as server:
        yield server


@pytest.fixture
async def busy_server(
    brand_settings: Settings, limited_slack: SlackAPIServer
) -> AsyncIterator[LiveServer]:
    slack = limited_slack.settings(SECRET).model_copy(
        update={"limits": SlackLimits(board_seconds=1, card_wait_seconds=1)}
    )
    async with live_server(brand_settings.model_copy(update={"slack": slack})) as live:
        await sync_experts(live.runtime.store, "kestrel", brand_settings.escalation.experts_file)
        yield live


def board_now(slack: SlackAPIServer, channel: str = "C0EXPERTS") -> list[dict[str, Any]]:
    """The blocks the channel's queue board shows now (its post, or its latest update)."""
    [board] = [c for c in slack.cards(channel) if "waiting for an expert" in c["text"]]
    updates = [u for u in slack.posted("chat.update") if u["ts"] == board["ts"]]
    shown = (
        updates[-1]
        if updates
        else next(
            p for p in slack.posted("chat.postMessage") if "waiting for an expert" in p["text"]
        )
    )
    blocks = shown["blocks"]
    return json.loads(blocks) if isinstance(blocks, str) else blocks


async def relayed_both_ways(
    http: httpx.AsyncClient,
    slack: SlackAPIServer,
    thread: tuple[str, str],
    cid: str,
    auth: dict[str, str],
    reply: str,
) -> None:
    """Alex's `reply` in the thread reaches the customer, and the customer's "the left
    cup" reaches the thread."""
    channel, ts = thread
    await thread_event(http, channel, ts, ALEX, reply, f"Ev-{ts}")
    listed = (await http.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
    assert reply in [m["text"] for m in listed["messages"]]
    await http.post(
        f"/v1/conversations/{cid}/messages", json={"text": "the left cup"}, headers=auth
    )
    await until(
        lambda: any(
            p.get("thread_ts") == ts and "left cup" in p.get("text", "")
            for p in slack.posted("chat.postMessage")
        )
    )


async def until(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_burst_of_handoffs_is_shown_on_a_board_within_slacks_limits(
    busy_server: LiveServer, limited_slack: SlackAPIServer
):
    slack, store = limited_slack, busy_server.runtime.store
    async with httpx.AsyncClient(base_url=busy_server.url, timeout=30) as http:
        asked = [
            f"my X2 headphones won't pair, can I talk to a person? (customer {n})" for n in range(8)
        ]
        started = await asyncio.gather(*(escalate(http, text) for text in asked))
        handoffs = [await store.open_handoff_for(cid) for cid, _ in started]
        ids = [h.id for h in handoffs if h is not None]
        assert len(ids) == 8

        # Every handoff is visible in Slack within a few seconds: a card, or a board line.
        await until(lambda: all(i in slack.first_seen for i in ids))
        cards = [c for c in slack.cards("C0EXPERTS") if "metadata" in c]
        board = [c for c in slack.posted("chat.postMessage") if "Queue" in json.dumps(c)]
        listed = await store.board_entries("slack", "C0EXPERTS")
        assert len(board) == 1 and 2 <= len(listed) <= 6
        await asyncio.sleep(1.5)  # the board's next round has shown every one listed
        own_cards = [c for c in cards if c["metadata"]["event_type"] == "gigcx_handoff_card"]
        assert len(own_cards) + len(listed) == 8
        # The board lists the waiting ones oldest first, each in a menu to claim it.
        board_blocks = json.dumps(board_now(slack))
        for handoff in listed:
            assert handoff.id in board_blocks
        assert "Claim the oldest" in board_blocks

        # An expert claims the oldest from the board: its card, with the conversation,
        # arrives in their DM with the app, and they are told so.
        oldest = listed[0]
        response = await send_action(
            http, board_payload(slack, "claim_next", ALEX, "C0EXPERTS", "expert")
        )
        assert response.status_code == 200
        await until(lambda: any("It's yours" in r.get("text", "") for r in slack.responses))
        dm = dm_channel(ALEX)
        await until(lambda: bool(slack.cards(dm)))
        [claimed] = slack.cards(dm)
        card_text = json.dumps(claimed["metadata"]) + json.dumps(
            [b for name, b in slack.calls if name == "chat.postMessage" and b["channel"] == ALEX]
        )
        assert oldest.id in card_text and "Conversation so far" in card_text
        assert "won't pair" in card_text
        cid, auth = oldest.conversation_id, dict(started)[oldest.conversation_id]

        await relayed_both_ways(http, slack, (dm, claimed["ts"]), cid, auth, "Hi, Alex here!")

        # Another expert picks two from the board's menu: theirs, in their DM, and gone
        # from the board at its next update.
        picked = (await store.board_entries("slack", "C0EXPERTS"))[:2]
        for handoff in picked:
            payload = board_payload(slack, "claim_pick", SAMI, "C0EXPERTS", handoff.id)
            assert (await send_action(http, payload)).status_code == 200
        await until(lambda: len(slack.cards(dm_channel(SAMI))) == len(picked))
        await until(lambda: all(h.id not in json.dumps(board_now(slack)) for h in picked))

    # Nothing went over Slack's limits, so nothing was refused or sent during a Retry-After.
    assert slack.rate_limited == [] and slack.violations == []


async def test_the_board_is_deleted_once_nobody_waits(
    busy_server: LiveServer, limited_slack: SlackAPIServer
):
    slack, store = limited_slack, busy_server.runtime.store
    async with httpx.AsyncClient(base_url=busy_server.url, timeout=30) as http:
        asked = [f"can I talk to a person about my X1? (customer {n})" for n in range(5)]
        await asyncio.gather(*(escalate(http, text) for text in asked))
        await until(
            lambda: bool(slack.posted("chat.postMessage")) and bool(slack.cards("C0EXPERTS"))
        )
        await until(
            lambda: any("waiting for an expert" in c["text"] for c in slack.cards("C0EXPERTS"))
        )
        listed = await store.board_entries("slack", "C0EXPERTS")
        assert listed
        alex = await store.find_expert_by_handle("kestrel", "slack", ALEX)
        assert alex is not None
        escalations = busy_server.runtime.escalations
        for handoff in listed:  # each one claimed (in the console, say) and resolved
            assert await escalations.claim(handoff.id, alex.key, "Alex")
            assert await escalations.resolve(handoff.id, alex.key)
        await until(
            lambda: not any("waiting for an expert" in c["text"] for c in slack.cards("C0EXPERTS"))
        )
        # Forgotten in the store too, once Slack has answered the delete.
        deadline = time.monotonic() + 15
        while await store.board_for("slack", "C0EXPERTS") is not None:
            assert time.monotonic() < deadline, "the board deleted in Slack is still stored"
            await asyncio.sleep(0.05)
    assert slack.violations == []


def test_the_pacer_names_each_methods_buckets():
    pacer = SlackPacer(SlackLimits(), LocalTurns())
    post = pacer.buckets("chat.postMessage", "C1")
    assert [b.key for b in post] == ["post:C1", "post:*"]
    assert post[0].interval == 1.0 and post[1].interval == 0.2
    assert [b.key for b in pacer.buckets("chat.update")] == ["chat.update"]
    assert pacer.buckets("auth.test") == []
    pacer.posted("U04ALEXM", "D04ALEXM")  # a DM posted by user id is limited as its channel
    assert pacer.buckets("chat.postMessage", "U04ALEXM")[0].key == "post:D04ALEXM"


@pytest.fixture
async def quick_posts_slack() -> AsyncIterator[SlackAPIServer]:
    """Slack's limits, but 20 posts a second into a channel."""
    limits = SlackRateLimits(post_per_channel_per_second=20, post_channel_burst=20)
    with SlackAPIServer(limits=limits) as server:
        yield server


@pytest.fixture
async def slow_updates_server(
    brand_settings: Settings, quick_posts_slack: SlackAPIServer
) -> AsyncIterator[LiveServer]:
    """Cards post at once, but chat.update has a turn only every 2 s after a burst of 3."""
    limits = SlackLimits(posts_per_channel_per_second=20, tier3_per_minute=30, board_seconds=1)
    slack = quick_posts_slack.settings(SECRET).model_copy(update={"limits": limits})
    async with live_server(brand_settings.model_copy(update={"slack": slack})) as live:
        await sync_experts(live.runtime.store, "kestrel", brand_settings.escalation.experts_file)
        yield live


async def test_card_updates_without_a_turn_are_coalesced_into_one_later(
    slow_updates_server: LiveServer, quick_posts_slack: SlackAPIServer
):
    slack, runtime = quick_posts_slack, slow_updates_server.runtime
    connector: SlackConnector = slow_updates_server.app.state.channels["slack"]
    async with httpx.AsyncClient(base_url=slow_updates_server.url, timeout=30) as http:
        asked = [f"can I talk to a person about my X2? (customer {n})" for n in range(5)]
        started = await asyncio.gather(*(escalate(http, text) for text in asked))
    handoffs = [await runtime.store.open_handoff_for(cid) for cid, _ in started]
    await until(lambda: len(slack.cards("C0EXPERTS")) == 5)
    # Other updates have taken chat.update's turns for the next 16 s or so.
    taken = [Bucket("chat.update", 20.0, 1)]
    assert (await connector.pacer.turns.reserve(taken, max_wait=5))[0]
    alex = await runtime.store.find_expert_by_handle("kestrel", "slack", ALEX)
    assert alex is not None
    for handoff in handoffs:  # claimed and resolved: two changes each
        assert handoff is not None
        assert await runtime.escalations.claim(handoff.id, alex.key, "Alex")
        assert await runtime.escalations.resolve(handoff.id, alex.key)

    async def told() -> bool:
        return (await runtime.store.outbox_backlog("slack"))[0] == 0

    deadline = time.monotonic() + 15
    while not await told():  # every change delivered: the cards' updates put off
        assert time.monotonic() < deadline, "the outbox did not empty"
        await asyncio.sleep(0.1)
    assert slack.posted("chat.update") == []
    assert len(await runtime.store.stale_cards("slack")) == 5

    cards = slack.cards("C0EXPERTS")
    await until(lambda: len(slack.posted("chat.update")) >= len(cards), timeout=40)
    await asyncio.sleep(2.5)  # a turn more: no further update comes
    # One update a card, showing the last change: ten changes, five updates.
    updates = slack.posted("chat.update")
    assert sorted(u["ts"] for u in updates) == sorted(c["ts"] for c in cards)
    assert all(u["text"].startswith("Resolved") for u in updates)
    assert slack.rate_limited == [] and slack.violations == []
    assert await runtime.store.stale_cards("slack") == []


async def test_a_claim_while_the_channel_is_busy_moves_the_conversation_to_the_claimers_dm(
    busy_server: LiveServer, limited_slack: SlackAPIServer
):
    slack, runtime = limited_slack, busy_server.runtime
    connector: SlackConnector = busy_server.app.state.channels["slack"]
    async with httpx.AsyncClient(base_url=busy_server.url, timeout=30) as http:
        cid, auth = await escalate(http, "my X2 crackles, can I talk to a person?")
        await until(lambda: len(slack.cards("C0EXPERTS")) == 1)
        [card] = slack.cards("C0EXPERTS")
        handoff = await runtime.store.open_handoff_for(cid)
        assert handoff is not None
        # The channel's posts are taken for the next 30 s (other cards and threads, say).
        taken = [Bucket("post:C0EXPERTS", 30.0, 1)]
        assert (await connector.pacer.turns.reserve(taken, max_wait=5))[0]

        response = await send_action(
            http, board_payload(slack, "claim", ALEX, "C0EXPERTS", handoff.id)
        )
        assert response.status_code == 200
        dm = dm_channel(ALEX)
        await until(lambda: bool(slack.cards(dm)))
        [conversation] = slack.cards(dm)
        # Nothing went into the busy channel's thread; the card there is the handoff's still.
        assert not [p for p in slack.posted("chat.postMessage") if p.get("thread_ts")]
        recorded = await runtime.store.card_for("slack", handoff.id)
        assert recorded is not None and recorded.ts == card["ts"]
        assert recorded.thread == (dm, conversation["ts"])

        thread = (dm, conversation["ts"])
        await relayed_both_ways(http, slack, thread, cid, auth, "Alex here, in a DM")

        # Alex lets it go and Sami claims it: Sami gets the conversation, with all of it,
        # in a DM of their own; Alex's old thread no longer reaches the customer.
        release = board_payload(slack, "release", ALEX, dm, handoff.id)
        assert (await send_action(http, release)).status_code == 200
        claim = board_payload(slack, "claim", SAMI, "C0EXPERTS", handoff.id)
        assert (await send_action(http, claim)).status_code == 200
        sami_dm = dm_channel(SAMI)
        await until(lambda: bool(slack.cards(sami_dm)))
        handed = json.dumps(
            [b for name, b in slack.calls if name == "chat.postMessage" and b["channel"] == SAMI]
        )
        assert "left cup" in handed and "Alex here, in a DM" in handed
        await thread_event(http, dm, conversation["ts"], ALEX, "still me", "EvDM3")
        listed = (await http.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
        assert "still me" not in [m["text"] for m in listed["messages"]]
    assert slack.violations == []


def test_a_board_of_a_thousand_stays_within_block_kits_limits():
    long = "my order <@U0BOSS> & the X2 won't pair " * 40  # long, with Slack's markup
    waiting = [
        Handoff(
            id=f"{n:032x}",
            reason="human_requested",
            tags=["product:x2", "topic:pairing"],
            packet={"summary": f"{long} {n}"},
            created_at=utcnow() - timedelta(minutes=n),
        )
        for n in range(1000)
    ]
    text, blocks = board_message(waiting, "expert", SlackText(True, ["US"]))
    assert text.startswith("1000 waiting")
    assert len(blocks) <= 50  # Slack refuses more
    menus = [b["accessory"] for b in blocks if "accessory" in b]
    listed = [o["value"] for menu in menus for o in menu["options"]]
    assert len(listed) == 900 and listed == [h.id for h in waiting[:900]]  # oldest first
    assert all(len(menu["options"]) <= 100 for menu in menus)
    assert all(len(o["text"]["text"]) <= 75 for menu in menus for o in menu["options"])
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(section) <= 3000 for section in sections)
    assert "<@U0BOSS>" not in json.dumps(blocks)  # nobody is pinged from a summary
    assert "+100 more waiting" in json.dumps(blocks)
