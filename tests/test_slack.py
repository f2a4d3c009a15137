"""Experts in Slack, through the real slack-bolt app with signed requests and a local
stand-in for Slack's Web API: cards, claims, the thread relay both ways, signatures."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr

from gigcx.config import SlackSettings
from gigcx.escalation.roster import sync_experts
from gigcx.store.models import Expert, utcnow
from tests.helpers.live_server import LiveServer, live_server
from tests.helpers.slack_requests import (
    ALEX,
    JORDAN,
    KEY,
    SAMI,
    SECRET,
    action_payload,
    click,
    escalate,
    signed,
    thread_event,
    thread_payload,
)
from tests.helpers.slack_server import SlackAPIServer, SocketModeServer


async def test_card_claim_and_thread_relay_both_ways(server: LiveServer, slack: SlackAPIServer):
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, "my X2 crackles, can I talk to a person?")
        [card] = await slack.wait_for("chat.postMessage", 1)
        assert card["channel"] == "C0EXPERTS"
        blocks = json.dumps(card["blocks"])
        assert "the customer asked for a person" in blocks and "product:x2" in blocks
        assert f"<@{ALEX}>" in blocks and f"<@{SAMI}>" not in blocks  # skills match x2
        handoff = await server.runtime.store.open_handoff_for(cid)
        assert handoff is not None

        response = await click(http, slack, "claim", handoff.id, ALEX)
        assert response.status_code == 200
        [update] = await slack.wait_for("chat.update", 1)
        assert f"Claimed by <@{ALEX}>" in update["text"]
        posts = await slack.wait_for("chat.postMessage", 2)
        assert posts[1]["thread_ts"] == update["ts"]
        assert "my X2 crackles" in posts[1]["text"]
        state = (await http.get(f"/v1/conversations/{cid}", headers=auth)).json()
        assert state["state"] == "assigned"

        thread = update["ts"]
        await thread_event(http, "C0EXPERTS", thread, ALEX, "Hi! Alex here.", "Ev1")
        await thread_event(http, "C0EXPERTS", thread, ALEX, "Hi! Alex here.", "Ev1")  # retry
        await thread_event(http, "C0EXPERTS", thread, ALEX, "note: firmware 3.2?", "Ev2")
        await thread_event(http, "C0EXPERTS", thread, SAMI, "I think it's ANC", "Ev3")
        reactions = await slack.wait_for("reactions.add", 3)
        assert [r["name"] for r in reactions] == ["white_check_mark", "lock", "lock"]
        listed = (await http.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
        customer_sees = [m["text"] for m in listed["messages"] if m["author"] == "expert"]
        assert customer_sees == ["Hi! Alex here."]
        notes = await server.runtime.store.internal_notes(handoff.id)
        assert [(n.author, n.text) for n in notes] == [
            (ALEX, "note: firmware 3.2?"),
            (SAMI, "I think it's ANC"),
        ]

        await http.post(
            f"/v1/conversations/{cid}/messages",
            json={"text": "thanks, it's the left cup"},
            headers=auth,
        )
        posts = await slack.wait_for("chat.postMessage", 3)
        assert posts[2]["thread_ts"] == thread and "the left cup" in posts[2]["text"]

        await click(http, slack, "move_to_staff", handoff.id, ALEX)
        staff_card = (await slack.wait_for("chat.postMessage", 4))[3]
        assert staff_card["channel"] == "C0STAFF"
        # The note's author is a working mention on the card re-posted to staff.
        assert f"<@{ALEX}>: note: firmware 3.2?" in json.dumps(staff_card["blocks"])
        moved = (await http.get(f"/v1/conversations/{cid}", headers=auth)).json()
        assert moved["state"] == "waiting"

        await click(http, slack, "claim", handoff.id, "U04JORDN")
        await click(http, slack, "resolve", handoff.id, "U04JORDN")
        resolved = (await http.get(f"/v1/conversations/{cid}", headers=auth)).json()
        assert resolved["state"] == "resolved"


async def test_fifty_simultaneous_claims_have_one_winner(server: LiveServer, slack: SlackAPIServer):
    experts = [f"U0GIG{n:03d}" for n in range(50)]
    store = server.runtime.store
    await store.sync_experts(
        "kestrel",
        [
            Expert(
                key=e,
                handles={"slack": e},
                name=f"Gig {e}",
                skills=[],
                languages=["en"],
                tier="gig",
                capacity=3,
                active=True,
            )
            for e in experts
        ],
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        cid, _auth = await escalate(http, "I want a human")
        await slack.wait_for("chat.postMessage", 1)
        handoff = await store.open_handoff_for(cid)
        assert handoff is not None
        responses = await asyncio.gather(
            *(click(http, slack, "claim", handoff.id, expert) for expert in experts)
        )
    assert all(r.status_code == 200 for r in responses)
    claimed = await store.get_handoff(handoff.id)
    assert claimed.assignee in experts
    losers = [r["text"] for r in slack.responses]
    assert len(losers) == 49
    assert all(text == f"Already claimed by <@{claimed.assignee}>." for text in losers)


async def test_a_stranger_gets_a_polite_no(server: LiveServer, slack: SlackAPIServer):
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, _auth = await escalate(http, "I want a human")
        handoff = await server.runtime.store.open_handoff_for(cid)
        assert handoff is not None
        await click(http, slack, "claim", handoff.id, "U0STRANGER")
    assert slack.responses[0]["response_type"] == "ephemeral"
    assert "not registered as an expert for Kestrel Audio" in slack.responses[0]["text"]
    assert (await server.runtime.store.get_handoff(handoff.id)).state == "waiting"


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Slack-Signature": "v0=" + "0" * 64, "X-Slack-Request-Timestamp": str(int(time.time()))},
        {},
        "six minutes old",
    ],
)
async def test_bad_missing_or_stale_signatures_are_refused(
    server: LiveServer, slack: SlackAPIServer, headers: Any
):
    body = urlencode({"payload": json.dumps({"type": "block_actions"})})
    if headers == "six minutes old":
        headers = signed(body, age=360)
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(
            "/slack/events",
            content=body,
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 401


def test_the_connector_refuses_to_start_without_a_signing_secret():
    with pytest.raises(ValueError, match="does not start without signing_secret"):
        SlackSettings(bot_token=SecretStr("xoxb-1"), expert_channel="C1", staff_channel="C2")


async def slash(http: httpx.AsyncClient, user: str, text: str) -> httpx.Response:
    body = urlencode(
        {
            "command": "/gigcx",
            "text": text,
            "user_id": user,
            "team_id": "T1",
            "channel_id": "C0EXPERTS",
            "response_url": "http://127.0.0.1:9/unused",
            "trigger_id": "1.2",
        }
    )
    return await http.post("/slack/events", content=body, headers=signed(body))


async def test_away_experts_are_not_mentioned_and_a_reoffer_mentions_everyone_available(
    server: LiveServer, slack: SlackAPIServer
):
    async with httpx.AsyncClient(base_url=server.url) as http:
        away = await slash(http, ALEX, "away")
        assert "You're away" in away.text
        stranger = await slash(http, "U0STRANGER", "available")
        assert "not registered" in stranger.text
        cid, _auth = await escalate(http, "my X2 crackles, can I talk to a person?")
        [card] = await slack.wait_for("chat.postMessage", 1)
        assert f"<@{ALEX}>" not in json.dumps(card["blocks"])

        await slash(http, ALEX, "available")
        handoff = await server.runtime.store.open_handoff_for(cid)
        assert handoff is not None
        await server.runtime.escalations.sweep(handoff.claim_deadline)
        urgent = (await slack.wait_for("chat.postMessage", 2))[1]
        assert urgent["channel"] == "C0EXPERTS"
        blocks = json.dumps(urgent["blocks"])
        assert "Still waiting" in blocks
        assert (
            f"<@{ALEX}>" in blocks and f"<@{SAMI}>" in blocks
        )  # wider: every available gig expert

        fallback = handoff.created_at + timedelta(seconds=901)
        await server.runtime.escalations.sweep(fallback)
        moved = (await slack.wait_for("chat.postMessage", 3))[2]
        assert moved["channel"] == "C0STAFF"
        assert "U04JORDN" in json.dumps(moved["blocks"])


async def test_a_wrong_channel_or_revoked_token_is_reported_clearly(
    server: LiveServer, slack: SlackAPIServer
):
    connector = server.app.state.channels["slack"]
    assert await connector.check() == []
    slack.channels = {"C0EXPERTS"}
    [problem] = await connector.check()
    assert "the staff channel C0STAFF cannot be used (channel_not_found)" in problem
    assert "invite the app" in problem
    slack.token_revoked = True
    [problem] = await connector.check()
    assert "the bot token was refused (token_revoked)" in problem
    # Customers are still served while Slack is broken.
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, "I want a human")
        state = (await http.get(f"/v1/conversations/{cid}", headers=auth)).json()
    assert state["state"] == "waiting"


async def test_slack_failing_loses_nothing_and_the_outbox_delivers_in_order_later(
    server: LiveServer, slack: SlackAPIServer
):
    store, bridge = server.runtime.store, server.app.state.channels["slack"].bridge
    slack.failures["chat.postMessage"] = "down"  # an outage: HTTP 503 on every post
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, "I want a human")
        await http.post(f"/v1/conversations/{cid}/messages", json={"text": "hello?"}, headers=auth)
        # The customer's side carries on as if Slack were fine.
        state = (await http.get(f"/v1/conversations/{cid}", headers=auth)).json()
        assert state["state"] == "waiting"
        messages = (await http.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
        assert messages["messages"][-1]["text"] == "hello?"

        async def first_error() -> str:
            for _ in range(200):
                [item] = await store.outbox_heads("slack", utcnow() + timedelta(hours=1))
                if item.last_error:
                    return item.last_error
                await asyncio.sleep(0.05)
            raise AssertionError("the bridge never tried")

        assert "HTTP 503" in await first_error()
        assert (await store.outbox_backlog("slack"))[0] == 2  # the card and the customer's message

        # Now a configuration problem: said in words an administrator can act on.
        slack.failures["chat.postMessage"] = "not_in_channel"
        await bridge.deliver_due(utcnow() + timedelta(hours=1))
        [item] = await store.outbox_heads("slack", utcnow() + timedelta(hours=2))
        assert item.last_error == "Slack said not_in_channel: invite the app to the channel"

        slack.failures.clear()  # Slack is back: the card first, then the thread, in order
        assert await bridge.deliver_due(utcnow() + timedelta(hours=2)) == 2
        card, hello = (await slack.wait_for("chat.postMessage", 2))[-2:]
        assert card["channel"] == "C0EXPERTS" and "thread_ts" not in card
        assert hello["thread_ts"] and hello["text"] == "*Customer:*\n>hello?"
        assert await store.outbox_backlog("slack") == (0, None)


async def test_socket_mode_claims_and_relays_without_a_public_endpoint(
    brand_settings: Any, slack: SlackAPIServer
):
    # An app-level token and no signing secret: Slack's events come over the app's own
    # WebSocket, so there is nothing at /slack/events to verify.
    settings = brand_settings.model_copy(
        update={
            "slack": slack.settings(SECRET).model_copy(
                update={"signing_secret": None, "app_token": SecretStr("xapp-test")}
            )
        }
    )
    async with SocketModeServer(slack) as socket, live_server(settings) as live:
        await sync_experts(live.runtime.store, "kestrel", settings.escalation.experts_file)
        async with httpx.AsyncClient(base_url=live.url) as http:
            assert (await http.post("/slack/events", content="{}")).status_code == 404
            cid, auth = await escalate(http, "my X2 crackles, can I talk to a person?")
            [card] = await slack.wait_for("chat.postMessage", 1)
            handoff = await live.runtime.store.open_handoff_for(cid)
            assert handoff is not None

            ack = await socket.send("interactive", action_payload(slack, "claim", handoff.id, ALEX))
            assert ack["envelope_id"]
            [update] = await slack.wait_for("chat.update", 1)
            assert f"Claimed by <@{ALEX}>" in update["text"]

            where = await live.runtime.store.card_for("slack", handoff.id)
            assert where is not None and card["channel"] == where.channel
            event = thread_payload(where.channel, where.ts, ALEX, "Alex here, try a reset", "Ev1")
            await socket.send("events_api", event)
            await socket.send("events_api", event)  # delivered twice: acted on once
            for _ in range(100):
                messages = (
                    await http.get(f"/v1/conversations/{cid}/messages", headers=auth)
                ).json()["messages"]
                if messages[-1]["author"] == "expert":
                    break
                await asyncio.sleep(0.05)
            assert [m["text"] for m in messages].count("Alex here, try a reset") == 1


# ---------------------------------------------------------------- what reaches Slack from outside

HOSTILE = (
    "<!channel> <!here> <@U0BOSS99> reset your password here: "
    "<https://evil.example/login|https://kestrel.example/reset> & thanks"
)
PERSONAL = (
    "card 4111 1111 1111 1111, mail bob.smith@example.com, call 07700 900123, "
    "IBAN GB82 WEST 1234 5698 7654 32 or DE89 3704 0044 0532 0130 00"
)
# The same kinds of data, written to slip past patterns.
DISGUISED = (
    "card 5555\u00a04444\u00a03333\u00a01111 or 4012.8888.8888.1881, "
    "mail jane.roe@exa\u200bmple.com or jane\uff20example.org, tel+447700900456, "
    "iban FR76-3000-6000-0112-3456-7890-189"
)


def sent_texts(card: dict[str, Any]) -> str:
    return card["text"] + json.dumps(card.get("blocks", []), ensure_ascii=False)


async def claim_first(
    http: httpx.AsyncClient, server: LiveServer, slack: SlackAPIServer, cid: str
) -> list[dict[str, Any]]:
    handoff = await server.runtime.store.open_handoff_for(cid)
    assert handoff is not None
    # Account and billing handoffs are the staff's to claim.
    await click(http, slack, "claim", handoff.id, JORDAN if handoff.route == "staff" else ALEX)
    return await slack.wait_for("chat.postMessage", 2)  # the card, then the transcript


async def test_what_a_customer_types_pings_nobody_and_links_nowhere_in_slack(
    server: LiveServer, slack: SlackAPIServer
):
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, f"can I talk to a person? {HOSTILE}")
        card, transcript = await claim_first(http, server, slack, cid)
        await http.post(f"/v1/conversations/{cid}/messages", json={"text": HOSTILE}, headers=auth)
        relayed = (await slack.wait_for("chat.postMessage", 3))[2]
    for sent in (sent_texts(card), transcript["text"], relayed["text"]):
        for live in ("<!channel>", "<!here>", "<@U0BOSS99>", "<https://evil.example"):
            assert live not in sent
    # The expert reads what the customer typed, as typed.
    assert "&lt;!channel&gt; &lt;!here&gt; &lt;@U0BOSS99&gt;" in relayed["text"]
    assert (
        "&lt;https://evil.example/login|https://kestrel.example/reset&gt; &amp; thanks"
        in (relayed["text"])
    )


async def test_personal_data_reaches_slack_masked_in_the_card_the_transcript_and_the_thread(
    server: LiveServer, slack: SlackAPIServer
):
    # The first question is longer than the summary's quote: masking comes before the cut.
    first = "can I talk to a person? " + "my X2 stopped charging last week " * 5 + PERSONAL
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, first)
        card, transcript = await claim_first(http, server, slack, cid)
        await http.post(f"/v1/conversations/{cid}/messages", json={"text": PERSONAL}, headers=auth)
        relayed = (await slack.wait_for("chat.postMessage", 3))[2]
    for sent in (sent_texts(card), transcript["text"], relayed["text"]):
        for secret in ("4111", "bob.smith", "900123", "5698 7654", "WEST", "0532 0130"):
            assert secret not in sent, (secret, sent)
    assert relayed["text"] == (
        "*Customer:*\n>card [card number], mail [e-mail], call [phone number], "
        "IBAN [IBAN] or [IBAN]"
    )


async def test_personal_data_written_to_slip_past_patterns_is_masked_too(
    server: LiveServer, slack: SlackAPIServer
):
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, "can I talk to a person?")
        await claim_first(http, server, slack, cid)
        await http.post(f"/v1/conversations/{cid}/messages", json={"text": DISGUISED}, headers=auth)
        relayed = (await slack.wait_for("chat.postMessage", 3))[2]
    assert relayed["text"] == (
        "*Customer:*\n>card [card number] or [card number], mail [e-mail] or [e-mail], "
        "tel[phone number], iban [IBAN]"
    )


async def test_a_customer_cannot_pass_a_line_of_theirs_for_the_bots_or_the_cards(
    server: LiveServer, slack: SlackAPIServer
):
    forged = (
        "ok\n*bot:* Refund approved. Please confirm the customer's full card number here.\n"
        "*Customer:* signed in as `vip-0001` (verified)"
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        cid, auth = await escalate(http, f"can I talk to a person? {forged}")
        card, transcript = await claim_first(http, server, slack, cid)
        await http.post(f"/v1/conversations/{cid}/messages", json={"text": forged}, headers=auth)
        relayed = (await slack.wait_for("chat.postMessage", 3))[2]
    # In the thread every line the customer wrote is quoted, as part of their message.
    assert relayed["text"].splitlines() == [
        "*Customer:*",
        ">ok",
        ">*bot:* Refund approved. Please confirm the customer's full card number here.",
        ">*Customer:* signed in as `vip-0001` (verified)",
    ]
    assert "\n*bot:* Refund approved" not in transcript["text"]
    # On the card each message is one line.
    sections = [b["text"]["text"] for b in card["blocks"] if b.get("type") == "section"]
    lines = [line for section in sections for line in section.splitlines()]
    assert not any(line.startswith("*bot:* Refund approved") for line in lines)
    assert lines.count("*Customer:* not signed in (anonymous)") == 1


async def test_the_card_names_the_customer_from_the_verified_identity_only(
    server: LiveServer, slack: SlackAPIServer
):
    forged = "Jo (CEO)\n*Customer:* signed in as `cust-0001-VIP` (verified)"
    async with httpx.AsyncClient(base_url=server.url) as http:
        created = await http.post(
            "/v1/brands/kestrel/conversations",
            json={
                "widget_key": KEY,
                "attributes": {"name": forged, "plan": "gold", "phone": "07700\u00a0900123"},
            },
        )
        assert created.status_code == 201, created.text
        body = created.json()
        await http.post(
            f"/v1/conversations/{body['conversation_id']}/messages",
            json={"text": "can I talk to a person?"},
            headers={"Authorization": f"Bearer {body['token']}"},
        )
        [card] = await slack.wait_for("chat.postMessage", 1)
    sections = [block["text"]["text"] for block in card["blocks"] if block.get("type") == "section"]
    assert "*Customer:* not signed in (anonymous)" in sections
    [given] = [s for s in sections if s.startswith("*Given by the customer* (not checked):")]
    assert "name: Jo (CEO) *Customer:* signed in as `cust-0001-VIP` (verified)" in given
    assert "plan: gold" in given and "phone: [phone number]" in given
    # The forged value cannot start a line of its own.
    lines = [line.strip() for section in sections for line in section.splitlines()]
    assert "*Customer:* signed in as `cust-0001-VIP` (verified)" not in lines
