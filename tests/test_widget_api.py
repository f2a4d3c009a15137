"""The API calls the widget needs: its config, signed-in customers, the "Talk to a person"
button, CSAT after a resolution, and the brand's allowed origins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from gigcx.app import GigCX
from gigcx.config import IdentitySettings, Settings
from gigcx.connectors.web import create_app
from gigcx.connectors.web.identity import user_hash
from gigcx.escalation.roster import sync_experts
from tests.helpers.experts import ALEX, register_experts

KEY = "kestrel-demo-widget-key"
SECRET = "brand-backend-secret"


def client_for(runtime: GigCX, **changes: Any) -> httpx.AsyncClient:
    settings: Settings = runtime.settings.model_copy(update=changes)
    runtime.settings = settings
    app = create_app(settings, runtime)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client(gigcx_runtime: GigCX) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(gigcx_runtime) as client:
        yield client


async def start(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY, **body})


async def test_the_widget_config_comes_from_the_brand(client: httpx.AsyncClient):
    config = (await client.get("/v1/brands/kestrel/widget", params={"key": KEY})).json()
    assert (config["title"], config["color"]) == ("Kestrel Audio help", "#0f766e")
    assert config["greeting"].startswith("Hi! I can answer questions about the X2")
    assert config["identity_required"] is False
    wrong = await client.get("/v1/brands/kestrel/widget", params={"key": "nope"})
    assert wrong.status_code == 401


async def test_required_identity_refuses_a_wrong_hash_and_creates_nothing(
    gigcx_runtime: GigCX,
):
    identity = IdentitySettings(mode="required", secret=SecretStr(SECRET))
    async with client_for(gigcx_runtime, identity=identity) as client:
        anonymous = await start(client)
        assert anonymous.status_code == 401
        assert "requires a signed-in customer" in anonymous.json()["detail"]
        forged = await start(client, user_id="u-42", user_hash=user_hash("u-43", SECRET))
        assert forged.status_code == 401
        assert "user_hash does not match user_id" in forged.json()["detail"]
        async with gigcx_runtime.store.engine.connect() as connection:
            count = await connection.scalar(text("select count(*) from conversations"))
        assert count == 0

        signed = await start(
            client,
            user_id="u-42",
            user_hash=user_hash("u-42", SECRET),
            attributes={"name": "Jo", "email": "jo@example.com", "plan": "gold"},
        )
        assert signed.status_code == 201
        cid = signed.json()["conversation_id"]
        conversation = await gigcx_runtime.store.get_conversation(cid)
        assert conversation.customer_id == "u-42"
        assert conversation.customer_attributes["verified"] is True
        await gigcx_runtime.front_line.request_person(cid)
        handoff = await gigcx_runtime.store.open_handoff_for(cid)
        assert handoff is not None
        packet = handoff.packet
        assert packet["customer_id"] == "u-42"
        assert packet["customer_attributes"] == {
            "name": "Jo",
            "email": "[e-mail]",  # masked by default (escalation.redact_personal_data)
            "plan": "gold",
            "verified": True,
        }


async def test_the_person_button_escalates_and_a_second_press_changes_nothing(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    created = (await start(client)).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    cid = created["conversation_id"]
    await client.post(f"/v1/conversations/{cid}/messages", json={"text": "hi"}, headers=auth)
    pressed = await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)
    assert pressed.status_code == 200
    assert pressed.json()["state"] == "waiting"
    assert "product expert" in pressed.json()["replies"][0]["text"]
    again = await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)
    assert again.json() == {"replies": [], "state": "waiting"}
    handoff = await gigcx_runtime.store.open_handoff_for(cid)
    assert handoff is not None and handoff.reason == "human_requested"


async def test_csat_is_stored_once_after_a_resolution(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    created = (await start(client)).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    cid = created["conversation_id"]
    early = await client.post(f"/v1/conversations/{cid}/csat", json={"score": 5}, headers=auth)
    assert early.status_code == 409
    await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)
    handoff = await gigcx_runtime.store.open_handoff_for(cid)
    assert handoff is not None
    await register_experts(gigcx_runtime)
    await gigcx_runtime.escalations.claim(handoff.id, ALEX, "Alex")
    await gigcx_runtime.escalations.resolve(handoff.id, ALEX)
    bad = await client.post(f"/v1/conversations/{cid}/csat", json={"score": 9}, headers=auth)
    assert bad.status_code == 422 and "score" in bad.json()["detail"]
    rated = await client.post(
        f"/v1/conversations/{cid}/csat", json={"score": 4, "comment": " quick! "}, headers=auth
    )
    assert rated.status_code == 201
    twice = await client.post(f"/v1/conversations/{cid}/csat", json={"score": 1}, headers=auth)
    assert twice.status_code == 409
    async with gigcx_runtime.store.engine.connect() as connection:
        rows = (await connection.execute(text("select score, comment, assignee from csat"))).all()
    assert [tuple(row) for row in rows] == [(4, "quick!", ALEX)]


async def test_only_the_brands_sites_may_embed_its_widget(gigcx_runtime: GigCX):
    web = gigcx_runtime.settings.web.model_copy(
        update={"allowed_origins": ["https://kestrel-audio.example"]}
    )
    async with client_for(gigcx_runtime, web=web) as client:
        ok = await client.post(
            "/v1/brands/kestrel/conversations",
            json={"widget_key": KEY},
            headers={"Origin": "https://kestrel-audio.example"},
        )
        assert ok.status_code == 201
        assert ok.headers["access-control-allow-origin"] == "https://kestrel-audio.example"
        other = await client.post(
            "/v1/brands/kestrel/conversations",
            json={"widget_key": KEY},
            headers={"Origin": "https://copycat.example"},
        )
        assert other.status_code == 403
        assert "'https://copycat.example' may not embed" in other.json()["detail"]


async def test_when_nobody_is_available_the_customer_is_told_and_can_leave_an_email(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    settings = gigcx_runtime.settings
    await sync_experts(gigcx_runtime.store, settings.brand, settings.escalation.experts_file)
    for expert in await gigcx_runtime.store.experts(settings.brand):
        await gigcx_runtime.store.set_available(settings.brand, expert.key, False)
    created = (await start(client)).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    cid = created["conversation_id"]
    pressed = (await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)).json()
    assert "nobody is available right now" in pressed["replies"][0]["text"]
    assert "Leave your e-mail address" in pressed["replies"][0]["text"]
    bad = await client.post(
        f"/v1/conversations/{cid}/contact", json={"email": "nope"}, headers=auth
    )
    assert bad.status_code == 422
    assert "email: 'nope' is not in the expected format" in bad.json()["detail"]
    left = await client.post(
        f"/v1/conversations/{cid}/contact", json={"email": "jo@example.com"}, headers=auth
    )
    assert left.status_code == 201 and "jo@example.com" in left.json()["text"]
    conversation = await gigcx_runtime.store.get_conversation(cid)
    assert conversation.customer_attributes["contact_email"] == "jo@example.com"
    assert conversation.state == "waiting"  # an expert who comes online can still take it


async def test_someone_available_means_the_usual_promise(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    settings = gigcx_runtime.settings
    await sync_experts(gigcx_runtime.store, settings.brand, settings.escalation.experts_file)
    created = (await start(client)).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    pressed = (
        await client.post(f"/v1/conversations/{created['conversation_id']}/handoff", headers=auth)
    ).json()
    assert "They'll reply right here" in pressed["replies"][0]["text"]
