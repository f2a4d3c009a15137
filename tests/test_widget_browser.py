"""The widget in a real browser (Debian's Chromium driven by Playwright) against a real
uvicorn server: the customer's side of every story, as they would see it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr
from sqlalchemy import text

from gigcx.config import IdentitySettings, Settings
from gigcx.escalation.roster import sync_experts
from tests.conftest import REPO
from tests.helpers.experts import ALEX, register_experts
from tests.helpers.live_server import LiveServer, live_server
from tests.helpers.widget import bubbles, open_widget, say

ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
async def server(brand_settings: Settings) -> AsyncIterator[LiveServer]:
    async with live_server(brand_settings) as live:
        yield live


async def test_a_question_gets_an_answer_with_its_source(browser: Browser, server: LiveServer):
    page = await browser.new_page()
    await open_widget(page, server)
    await say(page, "are the buds waterproof?")
    answer = bubbles(page).nth(1)
    await expect(answer).to_contain_text("IPX4")
    await expect(answer.locator(".sources")).to_contain_text("Are Kestrel headphones waterproof?")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "demo-page.png"), full_page=True)


async def test_a_person_then_a_live_expert_reply_then_reload_and_a_dropped_socket(
    browser: Browser, server: LiveServer
):
    page = await browser.new_page()
    await open_widget(page, server)
    await say(page, "how do I pair my X2?")
    await expect(bubbles(page)).to_have_count(2)

    await page.get_by_role("button", name="Talk to a person").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "Waiting for a product expert — usually under 5 minutes"
    )
    await expect(page.get_by_role("button", name="Talk to a person")).to_be_hidden()

    runtime = server.runtime
    [conversation_id] = await conversation_ids(server)
    handoff = await runtime.store.open_handoff_for(conversation_id)
    assert handoff is not None
    await register_experts(runtime)
    await runtime.escalations.claim(handoff.id, ALEX, display_name="Alex")
    await expect(page.get_by_role("status")).to_contain_text("Alex, product expert, joined")
    await runtime.escalations.send_reply(handoff.id, ALEX, "Hi, Alex here. Which phone?")
    await expect(bubbles(page).last).to_contain_text("Hi, Alex here. Which phone?")

    await page.reload()
    await page.get_by_role("button", name="Chat with us").click()
    await expect(bubbles(page)).to_have_count(4)
    seqs = await bubbles(page).evaluate_all("els => els.map(e => Number(e.dataset.seq))")
    assert seqs == [1, 2, 3, 4], "the whole history, in order, once"

    # The server drops the socket; messages sent meanwhile arrive once it reconnects.
    for _ in range(50):
        if server.drop_websockets():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the widget never opened its WebSocket")
    await runtime.escalations.send_reply(handoff.id, ALEX, "Still there?")
    await say(page, "an iPhone 15")
    await expect(bubbles(page)).to_have_count(6)
    seqs = await bubbles(page).evaluate_all("els => els.map(e => Number(e.dataset.seq))")
    assert seqs == [1, 2, 3, 4, 5, 6]
    await expect(bubbles(page).nth(4)).to_contain_text("Still there?")

    await runtime.escalations.resolve(handoff.id, ALEX)
    await expect(page.get_by_role("status")).to_contain_text("Resolved")
    await page.get_by_role("button", name="4 out of 5").click()
    await page.get_by_label("Comment (optional)").fill("Alex was quick")
    await page.get_by_role("button", name="Send rating").click()
    await expect(page.get_by_text("Thank you for your rating!")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "resolved-conversation.png"), full_page=True)
    async with runtime.store.engine.connect() as connection:
        rows = (await connection.execute(text("select score, comment from csat"))).all()
    assert [tuple(row) for row in rows] == [(4, "Alex was quick")]


async def test_html_in_a_message_is_shown_as_text_and_never_runs(
    browser: Browser, server: LiveServer
):
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await open_widget(page, server)
    attack = "<img src=x onerror=alert(1)> hello"
    await say(page, attack)
    await expect(bubbles(page).first).to_have_text(attack)
    [conversation_id] = await conversation_ids(server)
    runtime = server.runtime
    await runtime.front_line.request_person(conversation_id)
    handoff = await runtime.store.open_handoff_for(conversation_id)
    assert handoff is not None
    await register_experts(runtime)
    await runtime.escalations.claim(handoff.id, ALEX)
    await runtime.escalations.send_reply(handoff.id, ALEX, "<script>alert(2)</script>**hi**")
    await expect(bubbles(page).last).to_contain_text("<script>alert(2)</script>")
    await asyncio.sleep(0.5)
    assert dialogs == []
    assert await page.locator("[data-gigcx] img").count() == 0


async def test_keyboard_only_and_a_phone_sized_screen(browser: Browser, server: LiveServer):
    page = await browser.new_page(viewport={"width": 360, "height": 740})
    await page.goto(f"{server.url}/demo")
    launcher = page.get_by_role("button", name="Chat with us")
    await launcher.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("Your message")).to_be_focused()
    await page.keyboard.type("do you ship to canada?")
    await page.keyboard.press("Enter")
    await expect(bubbles(page)).to_have_count(2)
    box = await page.get_by_role("dialog").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_be_hidden()
    await expect(launcher).to_be_focused()
    await expect(launcher).to_have_attribute("aria-expanded", "false")


async def test_required_identity_with_a_wrong_hash_is_refused(
    browser: Browser, brand_settings: Settings
):
    settings = brand_settings.model_copy(
        update={"identity": IdentitySettings(mode="required", secret=SecretStr("s3cret"))}
    )
    async with live_server(settings) as server:
        page = await browser.new_page()
        # The brand's page for a signed-in customer, with a hash its backend did not make.
        signed_in_page = (
            '<!doctype html><title>Account</title><script src="/widget.js" '
            'data-brand="kestrel" data-key="kestrel-demo-widget-key" '
            'data-user-id="u-42" data-user-hash="forged" defer></script>'
        )
        await page.route(
            f"{server.url}/account",
            lambda route: route.fulfill(content_type="text/html", body=signed_in_page),
        )
        await page.goto(f"{server.url}/account")
        await page.get_by_role("button", name="Chat with us").click()
        await say(page, "where is my order?")
        await expect(page.get_by_role("alert").last).to_contain_text(
            "identity refused: user_hash does not match user_id"
        )
        assert await conversation_ids(server) == []


async def conversation_ids(server: LiveServer) -> list[str]:
    async with server.runtime.store.engine.connect() as connection:
        return list((await connection.scalars(text("select id from conversations"))).all())


async def test_nobody_available_offers_an_email_reply(browser: Browser, server: LiveServer):
    runtime = server.runtime
    settings = runtime.settings
    await sync_experts(runtime.store, settings.brand, settings.escalation.experts_file)
    for expert in await runtime.store.experts(settings.brand):
        await runtime.store.set_available(settings.brand, expert.key, False)
    page = await browser.new_page()
    await open_widget(page, server)
    await say(page, "hi")
    await expect(bubbles(page)).to_have_count(2)
    await page.get_by_role("button", name="Talk to a person").click()
    await expect(bubbles(page).last).to_contain_text("nobody is available right now")
    email = page.get_by_label("Your e-mail for a reply")
    await expect(email).to_be_visible()
    await email.fill("jo@example.com")
    await email.press("Enter")
    await expect(bubbles(page).last).to_contain_text("We'll answer by e-mail at jo@example.com")
    await expect(email).to_be_hidden()


async def escalated_and_claimed(page: Page, server: LiveServer) -> str:
    """The customer asks for a person in the widget and Alex claims; the handoff's id."""
    await open_widget(page, server)
    await say(page, "can I talk to a person?")
    await expect(page.get_by_role("status")).to_contain_text("Waiting for a product expert")
    [conversation_id] = await conversation_ids(server)
    handoff = await server.runtime.store.open_handoff_for(conversation_id)
    assert handoff is not None
    await register_experts(server.runtime)
    assert await server.runtime.escalations.claim(handoff.id, ALEX, "Alex") is not None
    await expect(page.get_by_role("status")).to_contain_text("Alex, product expert, joined")
    return handoff.id


async def test_a_reply_while_the_panel_is_closed_is_counted_on_the_launcher_until_opened(
    browser: Browser, server: LiveServer
):
    page = await browser.new_page()
    handoff_id = await escalated_and_claimed(page, server)
    await page.get_by_role("button", name="Close chat").click()
    launcher = page.get_by_role("button", name="Chat with us")
    badge = page.locator("[data-gigcx] .launcher .badge")
    await expect(badge).to_be_hidden()

    await server.runtime.escalations.send_reply(handoff_id, ALEX, "Hi, Alex here.")
    await expect(badge).to_have_text("1")
    await expect(launcher).to_have_attribute("aria-label", "Chat with us, 1 unread message")
    await server.runtime.escalations.send_reply(handoff_id, ALEX, "Which phone do you have?")
    await expect(badge).to_have_text("2")
    await expect(launcher).to_have_attribute("aria-label", "Chat with us, 2 unread messages")
    # Said to a screen reader politely, without a second status role for the banner's tests.
    announce = page.locator("[data-gigcx] .announce")
    await expect(announce).to_have_attribute("aria-live", "polite")
    await expect(announce).to_have_text("2 new messages in the chat")

    # A reload does not forget what the customer has not read yet.
    await page.reload()
    await expect(badge).to_have_text("2")
    await launcher.click()
    await expect(bubbles(page).last).to_contain_text("Which phone do you have?")
    await expect(badge).to_be_hidden()
    await expect(launcher).to_have_attribute("aria-label", "Chat with us")
    # Read now: closing and reloading brings no badge back.
    await page.get_by_role("button", name="Close chat").click()
    await page.reload()
    await expect(launcher).to_be_visible()
    await expect(bubbles(page)).to_have_count(4)
    await expect(badge).to_be_hidden()


async def test_after_a_reload_the_log_shows_the_newest_message_not_the_greeting(
    browser: Browser, server: LiveServer
):
    page = await browser.new_page()
    handoff_id = await escalated_and_claimed(page, server)
    for number in range(1, 13):
        await server.runtime.escalations.send_reply(handoff_id, ALEX, f"Step {number} of 12.")
    await expect(bubbles(page).last).to_contain_text("Step 12 of 12.")

    await page.reload()
    await page.get_by_role("button", name="Chat with us").click()
    newest = bubbles(page).last
    await expect(newest).to_contain_text("Step 12 of 12.")
    await expect(newest).to_be_in_viewport()
    await expect(page.locator("[data-gigcx] .log .msg").first).not_to_be_in_viewport()

    # Closed, a reply comes in; reopened, the log is at that reply.
    await page.get_by_role("button", name="Close chat").click()
    await server.runtime.escalations.send_reply(handoff_id, ALEX, "One more thing.")
    await expect(page.locator("[data-gigcx] .badge")).to_have_text("1")
    await page.get_by_role("button", name="Chat with us").click()
    await expect(bubbles(page).last).to_contain_text("One more thing.")
    await expect(bubbles(page).last).to_be_in_viewport()


async def test_an_expert_handing_back_to_the_bot_is_said_in_the_chat(
    browser: Browser, server: LiveServer
):
    page = await browser.new_page()
    handoff_id = await escalated_and_claimed(page, server)
    assert await server.runtime.escalations.hand_back(handoff_id, ALEX) is not None
    said = "Alex handed you back to the assistant. Ask it anything, or ask for a person again."
    await expect(bubbles(page).last).to_contain_text(said)
    await expect(page.get_by_role("button", name="Talk to a person")).to_be_visible()
    await expect(page.get_by_role("status")).to_be_hidden()
    # It is part of the conversation: still there after a reload.
    await page.reload()
    await page.get_by_role("button", name="Chat with us").click()
    await expect(page.locator("[data-gigcx] .log .msg.system").last).to_contain_text(said)
    # The bot answers again.
    await say(page, "are the buds waterproof?")
    await expect(bubbles(page).last).to_contain_text("IPX4")


async def test_the_rating_error_is_gone_once_the_rating_is_sent(
    browser: Browser, server: LiveServer
):
    page = await browser.new_page()
    handoff_id = await escalated_and_claimed(page, server)
    assert await server.runtime.escalations.resolve(handoff_id, ALEX) is not None
    await expect(page.get_by_role("status")).to_contain_text("Resolved")
    await page.get_by_role("button", name="Send rating").click()
    error = page.locator("[data-gigcx] .error")
    await expect(error).to_have_text("Choose a rating from 1 to 5 first.")
    await page.get_by_role("button", name="5 out of 5").click()
    await page.get_by_role("button", name="Send rating").click()
    await expect(page.get_by_text("Thank you for your rating!")).to_be_visible()
    await expect(error).to_have_text("")
    await expect(error).to_be_hidden()


async def test_a_second_resolution_is_rated_afresh_and_a_rating_sent_twice_just_thanks(
    browser: Browser, server: LiveServer
):
    page = await browser.new_page()
    first = await escalated_and_claimed(page, server)
    assert await server.runtime.escalations.resolve(first, ALEX) is not None
    await page.get_by_role("button", name="5 out of 5").click()
    await page.get_by_role("button", name="Send rating").click()
    await expect(page.get_by_text("Thank you for your rating!")).to_be_visible()

    # The customer comes back, and a second expert conversation is resolved: a new form.
    await say(page, "can I talk to a person again?")
    await expect(page.get_by_role("status")).to_contain_text("Waiting for a product expert")
    [conversation_id] = await conversation_ids(server)
    second = await server.runtime.store.open_handoff_for(conversation_id)
    assert second is not None
    assert await server.runtime.escalations.claim(second.id, ALEX, "Alex") is not None
    assert await server.runtime.escalations.resolve(second.id, ALEX) is not None
    await expect(page.get_by_role("button", name="Send rating")).to_be_visible()
    await expect(page.get_by_text("Thank you for your rating!")).to_be_hidden()
    await page.get_by_role("button", name="4 out of 5").click()
    await page.get_by_role("button", name="Send rating").click()
    await expect(page.get_by_text("Thank you for your rating!")).to_be_visible()
    # The newest message is not hidden behind the rating box.
    await expect(bubbles(page).last).to_be_in_viewport()

    # After a reload the form is offered again; sending it once more just thanks.
    await page.reload()
    await page.get_by_role("button", name="Chat with us").click()
    await page.get_by_role("button", name="3 out of 5").click()
    await page.get_by_role("button", name="Send rating").click()
    await expect(page.get_by_text("Thank you for your rating!")).to_be_visible()
    await expect(page.locator("[data-gigcx] .error")).to_be_hidden()


async def test_two_tabs_opened_before_the_first_message_share_one_conversation(
    browser: Browser, server: LiveServer
):
    context = await browser.new_context()
    first, second = await context.new_page(), await context.new_page()
    await open_widget(first, server)
    await open_widget(second, server)  # both opened before any conversation existed
    await say(first, "hello, are the buds waterproof?")
    await expect(bubbles(first).first).to_contain_text("are the buds waterproof?")
    await say(second, "and do they have a microphone?")
    await expect(bubbles(second).first).to_contain_text("are the buds waterproof?")
    assert len(await conversation_ids(server)) == 1
    await context.close()
