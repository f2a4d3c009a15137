"""`bot.mode: rasa` against a real Rasa 3.6 server and action server (the example assistant in
examples/rasa/helpdesk, from RasaHQ's Apache-2.0 helpdesk-assistant, trained once per test
run): Rasa's answers and buttons in the widget, `human_handoff` to the expert pool with the
Rasa conversation in the packet, a form that ends in `action_gigcx_handoff` with its slots in
the staff's packet, Rasa's fallback, and Rasa down or hanging."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import text

from gigcx.app import GigCX, start
from gigcx.config import Settings
from gigcx.store import Handoff
from tests.helpers.live_server import LiveServer, live_server
from tests.helpers.processes import free_port
from tests.helpers.rasa import RasaServers, rasa_servers
from tests.helpers.widget import bubbles, open_widget, say


@pytest.fixture(scope="module")
def rasa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RasaServers]:
    with rasa_servers(tmp_path_factory.mktemp("rasa")) as servers:
        yield servers


def with_rasa(settings: Settings, url: str, **rasa: object) -> Settings:
    bot = settings.bot.model_copy(
        update={
            "mode": "rasa",
            "rasa": settings.bot.rasa.model_copy(update={"url": url, **rasa}),
        }
    )
    return settings.model_copy(update={"bot": bot})


@pytest.fixture
async def runtime(brand_settings: Settings, rasa: RasaServers) -> AsyncIterator[GigCX]:
    runtime = await start(with_rasa(brand_settings, rasa.url))
    yield runtime
    await runtime.close()


async def chat(runtime: GigCX, *texts: str) -> tuple[str, list[str]]:
    """A new conversation with `texts` from the customer: its id and every bot reply."""
    conversation = await runtime.front_line.start_conversation()
    said: list[str] = []
    for message in texts:
        turn = await runtime.front_line.handle_customer_message(conversation.id, message)
        said += [reply.text for reply in turn.replies]
    return conversation.id, said


async def handoff_of(runtime: GigCX, conversation_id: str) -> Handoff:
    handoff = await runtime.store.open_handoff_for(conversation_id)
    assert handoff is not None, "no handoff was opened"
    return handoff


async def test_rasa_answers_and_its_buttons_become_quick_replies(
    browser: Browser, brand_settings: Settings, rasa: RasaServers
):
    async with live_server(with_rasa(brand_settings, rasa.url)) as server:
        page = await browser.new_page()
        await open_widget(page, server)
        await say(page, "are you a bot?")
        await expect(bubbles(page).nth(1)).to_contain_text("I am a bot, powered by Rasa.")

        # The incident form asks for the priority with three buttons (Rasa's `buttons:`).
        await say(page, "I need to reset my password")
        await expect(bubbles(page).nth(3)).to_contain_text("What is your email address?")
        await say(page, "jane.doe@example.com")
        await expect(bubbles(page).nth(5)).to_contain_text("What is the priority of this issue?")
        suggested = page.get_by_role("group", name="Suggested replies")
        await expect(suggested.get_by_role("button")).to_have_text(["low", "medium", "high"])
        await suggested.get_by_role("button", name="high").click()
        await expect(bubbles(page).nth(6)).to_have_text("high")  # shown as the customer's
        await expect(bubbles(page).nth(7)).to_contain_text("What is the problem description")
        await expect(suggested).to_have_count(0)  # answered: the buttons are gone
        await page.screenshot(path=str(_artifacts() / "rasa-quick-replies.png"), full_page=True)

        # Rasa got the button's payload, not the title: its slot says "high".
        async with httpx.AsyncClient() as http:
            [conversation_id] = await _conversation_ids(server)
            tracker = (await http.get(f"{rasa.url}/conversations/{conversation_id}/tracker")).json()
        assert tracker["slots"]["priority"] == "high"


async def test_human_handoff_goes_to_the_expert_pool_with_the_rasa_conversation(
    runtime: GigCX,
):
    conversation_id, said = await chat(runtime, "hello", "I want to talk to a human")
    assert said[0].startswith("Hallo! I'm your IT Helpdesk Assistant.")
    # Rasa's own answer ("I can't transfer you to a human, but ... these bots") never shows.
    assert not any("transfer you to one of these bots" in text for text in said)
    assert "product expert" in said[-1]
    handoff = await handoff_of(runtime, conversation_id)
    assert (handoff.reason, handoff.route) == ("human_requested", "expert")
    assert "rasa_intent:human_handoff" in handoff.tags
    transcript = [(line["author"], line["text"]) for line in handoff.packet["transcript"]]
    assert transcript[0] == ("customer", "hello")
    assert transcript[1][0] == "bot" and "IT Helpdesk Assistant" in transcript[1][1]
    assert ("customer", "I want to talk to a human") in transcript
    assert handoff.packet["facts"]["Rasa intent"].startswith("human_handoff (")
    assert "The bot noted: Rasa intent: human_handoff" in handoff.packet["summary"]


async def test_a_form_that_ends_in_action_gigcx_handoff_hands_its_slots_to_staff(
    runtime: GigCX,
):
    conversation_id, said = await chat(
        runtime,
        "I need to reset my password",
        "jane.doe@example.com",
        "high",  # the button's title: gigcx sends Rasa its payload
        "my laptop shows an error at login since the update",
        "Yes",
    )
    assert said[:2] == ["What is your email address?", "What is the priority of this issue?"]
    assert said[3].startswith("Should I open an incident with the following details?")
    assert "support team" in said[-1]  # the handover notice names the staff route
    handoff = await handoff_of(runtime, conversation_id)
    assert (handoff.reason, handoff.route) == ("incident_report", "staff")
    facts = handoff.packet["facts"]
    assert facts["slot priority"] == "high"
    assert facts["slot problem_description"] == "my laptop shows an error at login since the update"
    assert facts["slot incident_title"] == "Problem resetting password"
    # The packet masks personal data, the slots too.
    assert "jane.doe@example.com" not in str(handoff.packet)
    assert facts["slot email"] == "[e-mail]"
    assert "gigcx_handoff_reason" not in str(facts) and "requested_slot" not in str(facts)


async def test_a_customer_cannot_type_rasa_intent_syntax(runtime: GigCX, rasa: RasaServers):
    conversation_id, _ = await chat(runtime, '/inform{"priority":"low"}')
    async with httpx.AsyncClient() as http:
        tracker = (await http.get(f"{rasa.url}/conversations/{conversation_id}/tracker")).json()
    [user] = [event for event in tracker["events"] if event["event"] == "user"]
    assert user["text"] == 'inform{"priority":"low"}', "sent as text, not as an intent"
    assert user["parse_data"]["intent"]["confidence"] < 1.0  # read by Rasa's NLU


async def test_rasa_not_understanding_hands_over_outside_a_form(runtime: GigCX):
    conversation_id, said = await chat(runtime, "xqzt blorf wub")
    assert not any("rephrase" in text for text in said), "Rasa's fallback reply is not shown"
    handoff = await handoff_of(runtime, conversation_id)
    assert handoff.reason == "rasa_fallback"


async def test_rasa_down_hands_over_as_bot_unavailable_and_readyz_names_it(
    brand_settings: Settings, caplog: pytest.LogCaptureFixture
):
    nowhere = f"http://127.0.0.1:{free_port()}"
    async with live_server(with_rasa(brand_settings, nowhere)) as server:
        runtime = server.runtime
        conversation_id, said = await chat(runtime, "are you a bot?")
        assert said and "can't answer that right now" in said[-1]
        handoff = await handoff_of(runtime, conversation_id)
        assert handoff.reason == "bot_unavailable"
        assert f"Rasa at {nowhere} cannot be reached" in caplog.text
        async with httpx.AsyncClient(base_url=server.url) as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["answerer"] == "failed: rasa not ready"
        assert f"answerer rasa not ready: Rasa at {nowhere} cannot be reached" in caplog.text


async def test_rasa_hanging_hands_over_after_its_timeout(brand_settings: Settings):
    with _silent_server() as url:
        runtime = await start(with_rasa(brand_settings, url, timeout_seconds=1.0))
        try:
            started = asyncio.get_running_loop().time()
            conversation_id, _ = await chat(runtime, "hello")
            assert asyncio.get_running_loop().time() - started < 10
            assert (await handoff_of(runtime, conversation_id)).reason == "bot_unavailable"
        finally:
            await runtime.close()


async def test_readyz_is_ready_with_rasa_up(brand_settings: Settings, rasa: RasaServers):
    async with live_server(with_rasa(brand_settings, rasa.url)) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["answerer"] == "ok"


@contextlib.contextmanager
def _silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers: a Rasa stuck in a long request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


async def _conversation_ids(server: LiveServer) -> list[str]:
    async with server.runtime.store.engine.connect() as connection:
        return list((await connection.scalars(text("select id from conversations"))).all())


def _artifacts() -> Path:
    from tests.conftest import REPO

    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
