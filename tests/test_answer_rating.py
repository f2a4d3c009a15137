"""A customer rates the bot's answers, thumbs up or down: through the chat API, in the store
under a race, and in the widget in a real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, expect
from sqlalchemy import text

from gigcx.app import GigCX
from gigcx.config import Settings
from gigcx.connectors.web import create_app
from gigcx.store import ConversationStore
from tests.conftest import REPO
from tests.helpers.live_server import LiveServer, live_server
from tests.helpers.widget import bubbles, open_widget, say

KEY = "kestrel-demo-widget-key"
ARTIFACTS = REPO / "test-artifacts"
QUESTION = "are the buds waterproof?"  # the kestrel example answers it (IPX4)

Auth = dict[str, str]


@pytest.fixture
def app(gigcx_runtime: GigCX) -> FastAPI:
    return create_app(gigcx_runtime.settings, gigcx_runtime)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def start_chat(client: httpx.AsyncClient) -> tuple[str, Auth]:
    response = await client.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


async def ask(client: httpx.AsyncClient, cid: str, auth: Auth, question: str) -> dict:
    response = await client.post(
        f"/v1/conversations/{cid}/messages", json={"text": question}, headers=auth
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def rate(
    client: httpx.AsyncClient, cid: str, auth: Auth, seq: int | str, body: object
) -> httpx.Response:
    return await client.put(
        f"/v1/conversations/{cid}/messages/{seq}/rating", json=body, headers=auth
    )


async def messages(client: httpx.AsyncClient, cid: str, auth: Auth) -> list[dict]:
    response = await client.get(f"/v1/conversations/{cid}/messages", headers=auth)
    assert response.status_code == 200, response.text
    return response.json()["messages"]  # type: ignore[no-any-return]


async def answered(client: httpx.AsyncClient) -> tuple[str, Auth, int]:
    """A new conversation whose customer asked a question the bot answered; the answer's seq."""
    cid, auth = await start_chat(client)
    turn = await ask(client, cid, auth, QUESTION)
    [reply] = turn["replies"]
    assert "IPX4" in reply["text"]
    assert reply["rateable"] is True and reply["rating"] is None
    assert turn["message"]["rateable"] is False
    return cid, auth, reply["seq"]


# ------------------------------------------------------------------ the API


async def test_a_customer_rates_an_answer_and_changes_their_mind(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    cid, auth, seq = await answered(client)
    shown = {m["seq"]: m for m in await messages(client, cid, auth)}
    assert shown[seq]["rating"] is None

    response = await rate(client, cid, auth, seq, {"helpful": False})
    assert response.status_code == 204 and response.content == b""
    assert await gigcx_runtime.store.answer_ratings(cid) == {seq: False}
    shown = {m["seq"]: m for m in await messages(client, cid, auth)}
    assert shown[seq]["rating"] is False
    assert shown[seq - 1]["rating"] is None  # the customer's own question has none

    # Thumbs up after all: the vote is replaced, not added.
    assert (await rate(client, cid, auth, seq, {"helpful": True})).status_code == 204
    assert await gigcx_runtime.store.answer_ratings(cid) == {seq: True}
    async with gigcx_runtime.store.engine.connect() as connection:
        count = await connection.scalar(text("select count(*) from answer_ratings"))
    assert count == 1
    shown = {m["seq"]: m for m in await messages(client, cid, auth)}
    assert shown[seq]["rating"] is True


async def test_only_a_bot_answer_can_be_rated(client: httpx.AsyncClient, gigcx_runtime: GigCX):
    cid, auth, answer = await answered(client)
    handoff = await client.post(f"/v1/conversations/{cid}/handoff", headers=auth)
    assert handoff.status_code == 200, handoff.text
    [notice] = handoff.json()["replies"]
    assert notice["author"] == "bot" and notice["rateable"] is False

    for seq, what in [(answer - 1, "the customer's message"), (notice["seq"], "the notice")]:
        response = await rate(client, cid, auth, seq, {"helpful": True})
        assert response.status_code == 404, what
        assert (
            f"message {seq} of this conversation is not a bot answer" in (response.json()["detail"])
        )
    assert (await rate(client, cid, auth, 999, {"helpful": True})).status_code == 404
    assert (await rate(client, cid, auth, 0, {"helpful": True})).status_code == 404
    assert await gigcx_runtime.store.answer_ratings(cid) == {}


async def test_a_rating_needs_the_conversations_own_token(
    client: httpx.AsyncClient, gigcx_runtime: GigCX
):
    cid, auth, seq = await answered(client)
    other_cid, other_auth, other_seq = await answered(client)
    assert (await rate(client, cid, {}, seq, {"helpful": False})).status_code == 401
    wrong = await rate(client, cid, other_auth, seq, {"helpful": False})
    assert wrong.status_code == 401
    assert "conversation token" in wrong.json()["detail"]
    # Another conversation's answer, through this conversation's token: not one of its answers.
    assert (await rate(client, other_cid, auth, other_seq, {"helpful": False})).status_code == 401
    assert await gigcx_runtime.store.answer_ratings(cid) == {}
    assert await gigcx_runtime.store.answer_ratings(other_cid) == {}


@pytest.mark.parametrize(
    "body",
    [{}, {"helpful": "yes"}, {"helpful": 1}, {"helpful": None}, {"helpful": True, "score": 5}],
)
async def test_a_bad_rating_body_is_refused_by_name(client: httpx.AsyncClient, body: object):
    cid, auth, seq = await answered(client)
    response = await rate(client, cid, auth, seq, body)
    assert response.status_code == 422, response.text
    assert "helpful" in response.text or "score" in response.text


async def test_a_bad_seq_is_refused(client: httpx.AsyncClient):
    cid, auth, _ = await answered(client)
    for seq in ("two", -1, 2**31):
        response = await rate(client, cid, auth, seq, {"helpful": True})
        assert response.status_code == 422, seq
        assert "seq" in response.text


async def test_ratings_are_rate_limited_like_messages(gigcx_runtime: GigCX):
    web = gigcx_runtime.settings.web.model_copy(update={"messages_per_minute_per_conversation": 3})
    settings = gigcx_runtime.settings.model_copy(update={"web": web})
    app = create_app(settings, gigcx_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        cid, auth, seq = await answered(client)
        statuses = [
            (await rate(client, cid, auth, seq, {"helpful": n % 2 == 0})).status_code
            for n in range(4)
        ]
        assert statuses == [204, 204, 204, 429]
        refused = await rate(client, cid, auth, seq, {"helpful": True})
        assert "too many ratings in this conversation" in refused.json()["detail"]
        assert refused.headers["Retry-After"]


async def test_two_ratings_at_once_both_succeed(client: httpx.AsyncClient, gigcx_runtime: GigCX):
    cid, auth, seq = await answered(client)
    responses = await asyncio.gather(
        *(rate(client, cid, auth, seq, {"helpful": True}) for _ in range(2))
    )
    assert [r.status_code for r in responses] == [204, 204]
    assert await gigcx_runtime.store.answer_ratings(cid) == {seq: True}


async def test_a_rating_race_in_the_store_keeps_one_rating(store: ConversationStore):
    """Many first votes on one answer at once (two tabs, a double click): none fails, one
    row is kept. Run on SQLite and PostgreSQL (the `store` fixture)."""
    for _ in range(5):  # a race is not certain on every try
        fresh = await store.create_conversation("kestrel")
        await store.add_message(fresh.id, "customer", QUESTION)
        bot = await store.add_message(
            fresh.id, "bot", "Yes, IPX4.", meta={"decision": {"action": "answer"}}
        )
        assert bot is not None
        votes = [n % 2 == 0 for n in range(8)]
        results = await asyncio.gather(*(store.rate_answer(fresh.id, bot.seq, v) for v in votes))
        assert results == [True] * len(votes)
        ratings = await store.answer_ratings(fresh.id)
        assert list(ratings) == [bot.seq]


# ------------------------------------------------------------------ the widget


@pytest.fixture
async def server(brand_settings: Settings) -> AsyncIterator[LiveServer]:
    async with live_server(brand_settings) as live:
        yield live


async def test_a_customer_rates_an_answer_in_the_widget_and_sees_it_after_a_reload(
    browser: Browser, server: LiveServer
):
    page = await browser.new_page()
    await open_widget(page, server)
    await say(page, QUESTION)
    answer = bubbles(page).nth(1)
    await expect(answer).to_contain_text("IPX4")
    up = answer.get_by_role("button", name="Helpful", exact=True)
    down = answer.get_by_role("button", name="Not helpful")
    await expect(up).to_have_attribute("aria-pressed", "false")
    await expect(down).to_have_attribute("aria-pressed", "false")
    # The customer's own message offers no vote.
    await expect(bubbles(page).first.get_by_role("button")).to_have_count(0)

    await down.click()
    await expect(down).to_have_attribute("aria-pressed", "true")
    await expect(up).to_have_attribute("aria-pressed", "false")
    await expect(answer.locator(".rate-note")).to_have_text("Thanks!")
    [conversation_id] = await conversation_ids(server)
    seq = int(await answer.get_attribute("data-seq") or 0)
    assert await server.runtime.store.answer_ratings(conversation_id) == {seq: False}
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "widget-rating.png"))

    await page.reload()
    await page.get_by_role("button", name="Chat with us").click()
    answer = bubbles(page).nth(1)
    await expect(answer).to_contain_text("IPX4")
    down = answer.get_by_role("button", name="Not helpful")
    up = answer.get_by_role("button", name="Helpful", exact=True)
    await expect(down).to_have_attribute("aria-pressed", "true")
    await expect(up).to_have_attribute("aria-pressed", "false")

    # With the keyboard: the customer changes their mind to a thumbs up.
    await up.focus()
    await page.keyboard.press("Enter")
    await expect(up).to_have_attribute("aria-pressed", "true")
    await expect(down).to_have_attribute("aria-pressed", "false")
    for _ in range(50):
        if await server.runtime.store.answer_ratings(conversation_id) == {seq: True}:
            break
        await asyncio.sleep(0.1)
    assert await server.runtime.store.answer_ratings(conversation_id) == {seq: True}


async def test_a_failed_rating_says_so_quietly_and_restores_the_vote(
    browser: Browser, server: LiveServer
):
    page = await browser.new_page()
    await open_widget(page, server)
    await say(page, QUESTION)
    answer = bubbles(page).nth(1)
    await expect(answer).to_contain_text("IPX4")
    up = answer.get_by_role("button", name="Helpful", exact=True)
    down = answer.get_by_role("button", name="Not helpful")
    await up.click()
    await expect(up).to_have_attribute("aria-pressed", "true")

    # The server refuses the next vote: the thumbs up stays pressed, the error is in the row.
    await page.route(
        "**/rating",
        lambda route: route.fulfill(
            status=503, content_type="application/json", body='{"detail": "down for a moment"}'
        ),
    )
    await down.click()
    note = answer.locator(".rate-note")
    await expect(note).to_have_text("Couldn't save your rating. Try again.")
    await expect(up).to_have_attribute("aria-pressed", "true")
    await expect(down).to_have_attribute("aria-pressed", "false")
    [conversation_id] = await conversation_ids(server)
    assert list((await server.runtime.store.answer_ratings(conversation_id)).values()) == [True]


async def conversation_ids(server: LiveServer) -> list[str]:
    async with server.runtime.store.engine.connect() as connection:
        return list((await connection.scalars(text("select id from conversations"))).all())
