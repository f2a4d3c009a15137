"""An expert claims a conversation and goes quiet: once the resolve timeout has passed, the
sweep gives the conversation back to the queue. The customer is told in the widget, the
expert in the card's thread, and the handoff is offered again on a new card."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gigcx.config import Settings
from gigcx.escalation.roster import sync_experts
from gigcx.store import EXPERT_CHANNEL_KINDS, ConversationStore
from gigcx.store.models import Expert, OutboxItem, as_utc
from tests.helpers.live_server import LiveServer, live_server
from tests.helpers.slack_requests import ALEX, SAMI, SECRET, click, escalate
from tests.helpers.slack_server import SlackAPIServer
from tests.test_web_live import receive

RESOLVE_TIMEOUT = 4 * 3600


@pytest.fixture
async def server(brand_settings: Settings, slack: SlackAPIServer) -> AsyncIterator[LiveServer]:
    escalation = brand_settings.escalation.model_copy(
        update={"resolve_timeout_seconds": RESOLVE_TIMEOUT}
    )
    settings = brand_settings.model_copy(
        update={"slack": slack.settings(SECRET), "escalation": escalation}
    )
    async with live_server(settings) as live:
        await sync_experts(live.runtime.store, "kestrel", settings.escalation.experts_file)
        yield live


async def test_an_abandoned_conversation_goes_back_to_the_queue_and_everyone_is_told(
    server: LiveServer, slack: SlackAPIServer
):
    store, escalations = server.runtime.store, server.runtime.escalations
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, "my X2 crackles, can I talk to a person?")
        await slack.wait_for("chat.postMessage", 1)
        handoff = await store.open_handoff_for(cid)
        assert handoff is not None
        assert (await click(http, slack, "claim", handoff.id, ALEX)).status_code == 200
        await slack.wait_for("chat.postMessage", 2)  # the transcript in the card's thread
        [claimed_card] = await slack.wait_for("chat.update", 1)
        thread = claimed_card["ts"]
        claimed = await store.get_handoff(handoff.id)
        assert claimed.resolve_deadline is not None
        deadline = as_utc(claimed.resolve_deadline)
        assert deadline - as_utc(claimed.claimed_at or deadline) == timedelta(
            seconds=RESOLVE_TIMEOUT
        )

        token = auth["Authorization"].removeprefix("Bearer ")
        last_seq = (await http.get(f"/v1/conversations/{cid}", headers=auth)).json()["last_seq"]
        async with websockets.connect(
            f"ws://{server.address}/v1/conversations/{cid}/ws?after={last_seq}",
            subprotocols=["gigcx.v1", f"token.{token}"],
        ) as widget:
            [state] = await receive(widget, 1)
            assert state["state"] == "assigned"

            # Not yet due: nothing happens.
            assert await escalations.sweep(deadline - timedelta(seconds=1)) == []
            # Two server processes sweep at the same moment: it is timed out once.
            results = await asyncio.gather(escalations.sweep(deadline), escalations.sweep(deadline))
            assert sum(len(r) for r in results) == 1

            # The customer is told, and the widget shows the conversation waiting again.
            notice, waiting = await receive(widget, 2)
            assert notice["type"] == "message.created"
            assert notice["message"]["author"] == "system"
            assert notice["message"]["text"].startswith("Sorry, Alex is no longer available.")
            assert (waiting["type"], waiting["state"], waiting["route"]) == (
                "conversation.state",
                "waiting",
                "expert",
            )
        seen = (await http.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
        assert seen["state"] == "waiting"
        assert seen["messages"][-1]["text"] == notice["message"]["text"]

        # Alex is told in the thread he had; the old card is closed, a new one offers it.
        posts = await slack.wait_for("chat.postMessage", 4)
        told, card = posts[2], posts[3]
        assert told["thread_ts"] == thread and f"<@{ALEX}>" in told["text"]
        assert "not resolved within 4 h" in told["text"]
        closed = (await slack.wait_for("chat.update", 2))[1]
        assert closed["ts"] == thread and "Timed out" in closed["text"]
        assert card["channel"] == "C0EXPERTS" and "thread_ts" not in card
        assert "Still waiting" in json.dumps(card["blocks"])

        released = await store.get_handoff(handoff.id)
        assert (released.state, released.assignee, released.offers) == ("waiting", None, 2)
        # Another expert claims it from the new card; the sweep leaves it with them.
        assert (await click(http, slack, "claim", handoff.id, SAMI)).status_code == 200
        taken = await store.get_handoff(handoff.id)
        assert taken.assignee == SAMI and taken.resolve_deadline is not None
        assert await escalations.sweep(as_utc(taken.resolve_deadline) - timedelta(seconds=1)) == []
        state = (await http.get(f"/v1/conversations/{cid}", headers=auth)).json()
        assert state["state"] == "assigned"


async def test_a_conversation_resolved_in_time_is_left_alone(
    server: LiveServer, slack: SlackAPIServer
):
    store, escalations = server.runtime.store, server.runtime.escalations
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, "I want a human")
        await slack.wait_for("chat.postMessage", 1)
        handoff = await store.open_handoff_for(cid)
        assert handoff is not None
        await click(http, slack, "claim", handoff.id, ALEX)
        claimed = await store.get_handoff(handoff.id)
        assert claimed.resolve_deadline is not None
        await click(http, slack, "resolve", handoff.id, ALEX)

        assert await escalations.sweep(as_utc(claimed.resolve_deadline)) == []
        state = (await http.get(f"/v1/conversations/{cid}", headers=auth)).json()
        assert state["state"] == "resolved"
        messages = (await http.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
        assert all(m["author"] != "system" for m in messages["messages"])


async def test_a_time_out_is_one_guarded_update_on_either_database(store: ConversationStore):
    outboxed = ConversationStore(
        store.engine, consumers={"slack": EXPERT_CHANNEL_KINDS}
    )  # as with Slack configured
    alex = Expert(
        key=ALEX,
        handles={"slack": ALEX},
        name="Alex",
        skills=[],
        languages=["en"],
        tier="gig",
        capacity=1,
    )
    await outboxed.sync_experts("kestrel", [alex])
    conversation = await outboxed.create_conversation("kestrel")
    opened = await outboxed.open_handoff(
        conversation.id,
        reason="human_requested",
        route="expert",
        tags=[],
        packet={},
        notice="A person will help.",
        notice_meta={},
        claim_timeout=timedelta(minutes=5),
    )
    assert opened is not None
    handoff_id = opened[0].id
    claimed = await outboxed.claim_handoff("kestrel", handoff_id, ALEX, timedelta(hours=4))
    assert claimed is not None and claimed.resolve_deadline is not None
    deadline = as_utc(claimed.resolve_deadline)

    def time_out(due_by: Any, expert: str = ALEX) -> Any:
        return outboxed.time_out_handoff(
            handoff_id,
            expert,
            timedelta(minutes=5),
            due_by=due_by,
            notice="Sorry, Alex is no longer available.",
            notice_meta={"expert": expert},
        )

    assert await time_out(deadline - timedelta(seconds=1)) is None  # not due yet
    assert await time_out(deadline, SAMI) is None  # not Sami's
    # Two server processes at once: one of them times it out.
    results = await asyncio.gather(time_out(deadline), time_out(deadline))
    [(handoff, notice)] = [result for result in results if result is not None]
    assert (handoff.state, handoff.assignee, handoff.offers) == ("waiting", None, 2)
    assert as_utc(handoff.claim_deadline) == deadline + timedelta(minutes=5)
    assert (notice.seq, notice.author) == (2, "system")
    assert (await outboxed.get_conversation(conversation.id)).state == "waiting"
    async with AsyncSession(store.engine) as session:
        items = list(
            await session.scalars(
                select(OutboxItem)
                .where(OutboxItem.handoff_id == handoff_id)
                .order_by(OutboxItem.id)
            )
        )
    assert [(i.kind, i.message_id) for i in items] == [
        ("requested", None),
        ("claimed", None),
        ("timed_out", notice.id),
    ]
    # Alex's capacity (one) is free again: he may claim it back.
    again = await outboxed.claim_handoff("kestrel", handoff_id, ALEX, timedelta(hours=4))
    assert again is not None and again.assignee == ALEX
