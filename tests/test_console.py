"""The local expert console (a stand-in for Slack): its API, and both sides in a browser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import httpx
import pytest
from playwright.async_api import Browser, expect
from pydantic import SecretStr

from gigcx.app import GigCX
from gigcx.config import Settings
from gigcx.connectors.web import create_app
from tests.helpers.experts import ALEX, JORDAN, SAMI, register_experts
from tests.helpers.live_server import live_server
from tests.helpers.widget import bubbles, open_widget, say

TOKEN = "console-secret"
KEY = "kestrel-demo-widget-key"


def with_console(settings: Settings) -> Settings:
    web = settings.web.model_copy(update={"console_token": SecretStr(TOKEN)})
    return settings.model_copy(update={"web": web})


@pytest.fixture
async def client(gigcx_runtime: GigCX) -> AsyncIterator[httpx.AsyncClient]:
    gigcx_runtime.settings = with_console(gigcx_runtime.settings)
    app = create_app(gigcx_runtime.settings, gigcx_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def escalated_conversation(client: httpx.AsyncClient) -> str:
    created = (
        await client.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})
    ).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    cid = created["conversation_id"]
    await client.post(
        f"/v1/conversations/{cid}/messages", json={"text": "I want a human"}, headers=auth
    )
    return cid


async def test_the_console_claims_replies_and_resolves_with_one_winner(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    await register_experts(gigcx_runtime)
    cid = await escalated_conversation(client)
    expert = {"X-Console-Token": TOKEN}
    assert (await client.get("/v1/console/handoffs")).status_code == 401
    [waiting] = (await client.get("/v1/console/handoffs", headers=expert)).json()
    assert (waiting["conversation_id"], waiting["reason"]) == (cid, "human_requested")
    assert (waiting["reason_label"], waiting["route_label"]) == (
        "The customer asked for a person",
        "Gig experts",
    )
    # Read back from SQLite, which keeps no zone: still said with its offset, as UTC.
    assert datetime.fromisoformat(waiting["created_at"]).utcoffset() == timedelta(0)
    path = f"/v1/console/handoffs/{waiting['id']}"
    won = await client.post(
        f"{path}/claim", json={"expert_id": ALEX, "name": "Alex"}, headers=expert
    )
    lost = await client.post(f"{path}/claim", json={"expert_id": SAMI}, headers=expert)
    assert (won.status_code, lost.status_code) == (200, 409)
    stranger = await client.post(
        f"{path}/reply", json={"expert_id": SAMI, "text": "hi"}, headers=expert
    )
    assert stranger.status_code == 409
    sent = await client.post(
        f"{path}/reply", json={"expert_id": ALEX, "text": "Hi, Alex here"}, headers=expert
    )
    assert sent.status_code == 201 and sent.json()["author"] == "expert"
    kept = await client.post(
        f"{path}/note", json={"expert_id": ALEX, "text": "asked twice already"}, headers=expert
    )
    assert kept.status_code == 201
    detail = (await client.get(path, headers=expert)).json()
    assert [m["author"] for m in detail["messages"]] == ["customer", "bot", "expert"]
    for moment in (m["created_at"] for m in detail["messages"] + detail["internal_notes"]):
        assert datetime.fromisoformat(moment).utcoffset() == timedelta(0)
    assert [(n["author"], n["text"]) for n in detail["internal_notes"]] == [
        (ALEX, "asked twice already")
    ]
    done = await client.post(f"{path}/resolve", json={"expert_id": ALEX}, headers=expert)
    assert done.json()["state"] == "resolved"
    assert (await client.get("/v1/console/handoffs", headers=expert)).json() == []
    unknown = await client.post(f"{path}/dance", json={"expert_id": ALEX}, headers=expert)
    assert unknown.status_code == 404


async def test_the_console_refuses_an_unregistered_id_and_the_handoff_stays_waiting(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    await register_experts(gigcx_runtime)
    await escalated_conversation(client)
    expert = {"X-Console-Token": TOKEN}
    [waiting] = (await client.get("/v1/console/handoffs", headers=expert)).json()
    path = f"/v1/console/handoffs/{waiting['id']}"
    refused = await client.post(f"{path}/claim", json={"expert_id": "e1"}, headers=expert)
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith(
        "cannot claim as e1: you are not registered as an expert for Kestrel Audio."
    )
    assert "experts.yaml" in refused.json()["detail"]
    [still] = (await client.get("/v1/console/handoffs", headers=expert)).json()
    assert (still["state"], still["assignee"]) == ("waiting", None)
    resolved = await client.post(f"{path}/resolve", json={"expert_id": "e1"}, headers=expert)
    assert resolved.status_code == 409


async def test_an_expert_at_capacity_is_refused_in_the_console_and_staff_can_claim(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    await register_experts(gigcx_runtime)
    expert = {"X-Console-Token": TOKEN}
    for _ in range(3):
        await escalated_conversation(client)
    first, second, third = (await client.get("/v1/console/handoffs", headers=expert)).json()
    for handoff in (first, second):  # Sami's capacity is 2
        claimed = await client.post(
            f"/v1/console/handoffs/{handoff['id']}/claim",
            json={"expert_id": SAMI, "name": "Sami"},
            headers=expert,
        )
        assert claimed.status_code == 200
    path = f"/v1/console/handoffs/{third['id']}"
    full = await client.post(f"{path}/claim", json={"expert_id": SAMI}, headers=expert)
    assert full.status_code == 403
    assert full.json()["detail"].startswith(
        f"cannot claim as {SAMI}: you already have 2 open conversations (your capacity)."
    )
    assert (await client.get(path, headers=expert)).json()["state"] == "waiting"
    # Jordan, in-house staff registered in experts.yaml, takes it.
    staff = await client.post(
        f"{path}/claim", json={"expert_id": JORDAN, "name": "Jordan"}, headers=expert
    )
    assert staff.status_code == 200 and staff.json()["assignee"] == JORDAN


async def test_a_reply_or_note_that_shows_nothing_gets_422_and_the_customer_sees_nothing(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    await register_experts(gigcx_runtime)
    cid = await escalated_conversation(client)
    expert = {"X-Console-Token": TOKEN}
    [waiting] = (await client.get("/v1/console/handoffs", headers=expert)).json()
    path = f"/v1/console/handoffs/{waiting['id']}"
    await client.post(f"{path}/claim", json={"expert_id": ALEX}, headers=expert)
    before = await gigcx_runtime.store.messages_after(cid)
    for action in ("reply", "note"):
        for blank in ("   ", "\u200b\u2060", "\ufeff\u202e"):
            refused = await client.post(
                f"{path}/{action}", json={"expert_id": ALEX, "text": blank}, headers=expert
            )
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"] == "text: must not be empty"
    assert len(await gigcx_runtime.store.messages_after(cid)) == len(before)
    assert (await client.get(path, headers=expert)).json()["internal_notes"] == []


async def test_the_console_is_off_without_a_token(gigcx_runtime: GigCX):
    web = gigcx_runtime.settings.web.model_copy(update={"console_token": None})
    gigcx_runtime.settings = gigcx_runtime.settings.model_copy(update={"web": web})
    app = create_app(gigcx_runtime.settings, gigcx_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/v1/console/handoffs", headers={"X-Console-Token": "x"})
    assert response.status_code == 404
    assert "set web.console_token" in response.json()["detail"]


async def test_a_newcomer_plays_both_sides_in_two_browser_tabs(
    browser: Browser,
    brand_settings: Settings,
):
    async with live_server(with_console(brand_settings)) as server:
        await register_experts(server.runtime)
        customer = await browser.new_page()
        await open_widget(customer, server)
        await say(customer, "can I talk to a person?")
        await expect(customer.get_by_role("status")).to_contain_text("Waiting for a product expert")

        console = await browser.new_page()
        await console.goto(f"{server.url}/console")
        await expect(console.get_by_role("note")).to_contain_text("without Slack")
        await console.get_by_label("Console token").fill(TOKEN)
        await console.get_by_role("button", name="Show handoffs").click()
        await console.get_by_role(
            "button", name="Waiting for a gig expert just now · The customer asked for a person"
        ).click()
        await console.get_by_role("button", name="Claim").click()
        await expect(customer.get_by_role("status")).to_contain_text("Alex, product expert, joined")
        await console.get_by_label("Reply to the customer").fill("Hi! Alex here, how can I help?")
        await console.get_by_role("button", name="Send reply").click()
        await expect(bubbles(customer).last).to_contain_text("Alex here, how can I help?")
        await say(customer, "my X2 crackles")
        await expect(console.locator("#messages")).to_contain_text("my X2 crackles")
        await console.get_by_role("button", name="Resolve").click()
        await expect(customer.get_by_role("status")).to_contain_text("Resolved")
