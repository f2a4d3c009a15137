"""The chat API through httpx against the app: a customer's story, and every bad request."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from gigcx.app import GigCX
from gigcx.connectors.web import create_app

KEY = "kestrel-demo-widget-key"


@pytest.fixture
def app(gigcx_runtime: GigCX) -> FastAPI:
    return create_app(gigcx_runtime.settings, gigcx_runtime)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def start_chat(client: httpx.AsyncClient, **extra: object) -> tuple[str, dict[str, str]]:
    response = await client.post(
        "/v1/brands/kestrel/conversations", json={"widget_key": KEY, **extra}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


async def say(client: httpx.AsyncClient, cid: str, auth: dict[str, str], text: str) -> dict:
    response = await client.post(
        f"/v1/conversations/{cid}/messages", json={"text": text}, headers=auth
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_customer_gets_a_quoted_answer_with_its_source(client: httpx.AsyncClient):
    cid, auth = await start_chat(client)
    turn = await say(client, cid, auth, "how do I pair my X2 with my phone?")
    assert turn["message"] == {**turn["message"], "seq": 1, "author": "customer"}
    [reply] = turn["replies"]
    assert reply["author"] == "bot" and reply["seq"] == 2
    assert reply["citations"][0]["path"] == "x2/pairing.md"
    assert "Pair" in reply["text"] or "pair" in reply["text"]
    assert turn["state"] == "bot"


async def test_after_an_escalation_the_bot_stays_silent(client: httpx.AsyncClient):
    cid, auth = await start_chat(client)
    turn = await say(client, cid, auth, "I want to talk to a human")
    assert turn["state"] == "waiting"
    assert "Kestrel Audio" in turn["replies"][0]["text"]
    later = await say(client, cid, auth, "how do I pair my X2 with my phone?")
    assert later["replies"] == [] and later["state"] == "waiting"
    listed = (await client.get(f"/v1/conversations/{cid}/messages?after=0", headers=auth)).json()
    assert [m["author"] for m in listed["messages"]] == ["customer", "bot", "customer"]
    assert listed["state"] == "waiting" and listed["last_seq"] == 3


async def test_reading_after_a_sequence_number_returns_only_newer_messages(
    client: httpx.AsyncClient,
):
    cid, auth = await start_chat(client)
    await say(client, cid, auth, "hi")
    await say(client, cid, auth, "do you ship to canada?")
    response = await client.get(
        f"/v1/conversations/{cid}/messages", params={"after": 2}, headers=auth
    )
    assert [m["seq"] for m in response.json()["messages"]] == [3, 4]


@pytest.mark.parametrize(
    ("brand", "key", "status", "words"),
    [
        ("acme", KEY, 404, "no brand 'acme'"),
        ("kestrel", "stolen-key", 401, "widget_key is not a valid key"),
    ],
)
async def test_unknown_brand_or_key_is_refused(
    client: httpx.AsyncClient, brand: str, key: str, status: int, words: str
):
    response = await client.post(f"/v1/brands/{brand}/conversations", json={"widget_key": key})
    assert response.status_code == status
    assert words in response.json()["detail"]


async def test_another_conversations_token_or_an_unknown_id_is_refused(client: httpx.AsyncClient):
    cid, auth = await start_chat(client)
    _other, other_auth = await start_chat(client)
    await say(client, cid, auth, "hi")
    stolen = await client.get(f"/v1/conversations/{cid}/messages", headers=other_auth)
    assert stolen.status_code == 401
    assert "token" in stolen.json()["detail"]
    missing = await client.get(f"/v1/conversations/{cid}/messages")
    assert missing.status_code == 401
    unknown = await client.post(
        "/v1/conversations/nope/messages", json={"text": "hi"}, headers=auth
    )
    assert unknown.status_code == 404
    assert "no conversation 'nope'" in unknown.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field_words"),
    [
        ({"text": "x" * 4001}, "text: must be at most 4000 characters"),
        ({"text": "   "}, "text: must not be empty"),
        # Text that shows nothing: zero-width space, word joiner, BOM, soft hyphen, ...
        ({"text": "\u200b\u2060\ufeff"}, "text: must not be empty"),
        ({"text": " \u200b\u00ad\u200c\u200d "}, "text: must not be empty"),
        # ... bidi controls, a Hangul filler and a variation selector
        ({"text": "\u202e\u2066\u2069\u200f"}, "text: must not be empty"),
        ({"text": "\u3164\ufe0f\u2800"}, "text: must not be empty"),
        # ... and combining marks with no letter to sit on
        ({"text": "\u0332\u0332\u20dd"}, "text: must not be empty"),
        ({}, "text: is required"),
        ({"text": 5}, "text: Input should be a valid string"),
        ({"text": "hi", "extra": 1}, "extra: is not a known field"),
    ],
)
async def test_bad_messages_get_422_naming_the_field_and_nothing_stored_changes(
    client: httpx.AsyncClient, body: dict, field_words: str
):
    cid, auth = await start_chat(client)
    await say(client, cid, auth, "do you ship to canada?")
    before = (await client.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
    response = await client.post(f"/v1/conversations/{cid}/messages", json=body, headers=auth)
    assert response.status_code == 422
    assert field_words in response.json()["detail"]
    after = (await client.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
    assert after == before


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"text": "hi"', id="cut short"),
        pytest.param(b'{"text": "caf\xe9"}', id="not UTF-8"),
        pytest.param(b"[" * 100_000, id="nested too deep"),
    ],
)
async def test_a_body_that_is_not_json_gets_422(client: httpx.AsyncClient, body: bytes):
    cid, auth = await start_chat(client)
    response = await client.post(
        f"/v1/conversations/{cid}/messages",
        content=body,
        headers={**auth, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "body: request body is not valid JSON" in response.json()["detail"]
    listed = (await client.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
    assert listed["messages"] == []


async def test_too_many_messages_a_minute_get_429_per_conversation_and_per_address(
    gigcx_runtime: GigCX,
):
    settings = gigcx_runtime.settings.model_copy(
        update={
            "web": gigcx_runtime.settings.web.model_copy(
                update={"messages_per_minute_per_conversation": 3, "messages_per_minute_per_ip": 6}
            )
        }
    )
    app = create_app(settings, gigcx_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        cid, auth = await start_chat(client)  # 1 of 6 for this address
        for _ in range(3):
            await say(client, cid, auth, "hi")  # 4 of 6
        limited = await client.post(
            f"/v1/conversations/{cid}/messages", json={"text": "hi"}, headers=auth
        )
        assert limited.status_code == 429
        assert "in this conversation" in limited.json()["detail"]
        assert int(limited.headers["Retry-After"]) >= 1
        other, other_auth = await start_chat(client)  # 5 of 6: the refused one did not count
        await say(client, other, other_auth, "hi")  # 6 of 6
        blocked = await client.post(
            f"/v1/conversations/{other}/messages", json={"text": "hi"}, headers=other_auth
        )
        assert blocked.status_code == 429
        assert "from this address" in blocked.json()["detail"]
        kept = (await client.get(f"/v1/conversations/{cid}/messages", headers=auth)).json()
        assert [m["author"] for m in kept["messages"]] == ["customer", "bot"] * 3


async def test_openapi_docs_are_served(client: httpx.AsyncClient):
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/conversations/{conversation_id}/messages" in spec["paths"]
