"""The local expert console in Chromium, as an expert sees it: the real state of a handoff,
only the buttons that can work, errors that stay until read, the bot's Markdown rendered
safely, human labels and local times."""

from __future__ import annotations

from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from gigcx.config import Settings
from tests.conftest import REPO
from tests.helpers.experts import ALEX, JORDAN, register_experts
from tests.helpers.live_server import LiveServer, live_server
from tests.test_console import KEY, TOKEN, with_console

ARTIFACTS = REPO / "test-artifacts"
ACTIONS = ("Claim", "Send reply", "Resolve", "Hand back to the bot", "Release", "Move to staff")


@pytest.fixture
async def server(brand_settings: Settings) -> AsyncIterator[LiveServer]:
    async with live_server(with_console(brand_settings)) as live:
        await register_experts(live.runtime)
        yield live


async def escalate(server: LiveServer, text: str = "can I talk to a person?") -> str:
    """A customer asks for a person through the chat API; the handoff's id."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        created = (
            await client.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})
        ).json()
        await client.post(
            f"/v1/conversations/{created['conversation_id']}/messages",
            json={"text": text},
            headers={"Authorization": f"Bearer {created['token']}"},
        )
    handoff = await server.runtime.store.open_handoff_for(created["conversation_id"])
    assert handoff is not None
    return handoff.id


async def sign_in(page: Page, server: LiveServer, expert_id: str = ALEX) -> None:
    await page.goto(f"{server.url}/console")
    await page.get_by_label("Console token").fill(TOKEN)
    await page.get_by_label("Your expert id").fill(expert_id)
    await page.get_by_role("button", name="Show handoffs").click()


async def enabled_actions(page: Page) -> list[str]:
    """The action buttons an expert can press now, by their labels."""
    enabled = []
    for label in (*ACTIONS, "Keep as internal note"):
        if await page.get_by_role("button", name=label, exact=True).is_enabled():
            enabled.append(label)
    return enabled


def state_line(page: Page) -> Locator:
    return page.locator("#state")


async def test_after_resolve_and_hand_back_the_console_says_so_and_offers_no_dead_buttons(
    browser: Browser, server: LiveServer
):
    await escalate(server)
    page = await browser.new_page()
    await sign_in(page, server)
    await page.get_by_role("button", name="Waiting for a gig expert").click()
    await expect(state_line(page)).to_have_text("Waiting for a gig expert")
    await expect(page.get_by_role("button", name="Claim", exact=True)).to_be_enabled()
    assert await enabled_actions(page) == ["Claim", "Keep as internal note"]
    await expect(page.locator("#hint")).to_have_text("Claim it to reply to the customer.")

    await page.get_by_role("button", name="Claim", exact=True).click()
    await expect(state_line(page)).to_have_text("Claimed by you (Alex)")
    assert await enabled_actions(page) == [
        "Send reply",
        "Resolve",
        "Hand back to the bot",
        "Release",
        "Move to staff",
        "Keep as internal note",
    ]
    await page.get_by_role("button", name="Resolve").click()
    await expect(state_line(page)).to_have_text("Resolved by Alex")
    for label in ACTIONS:
        await expect(page.get_by_role("button", name=label, exact=True)).to_be_disabled()
    await expect(page.locator("#hint")).to_contain_text("Resolved: nothing more to do.")
    await expect(page.locator("#queue")).to_have_text("Nothing waiting.")

    # A second customer; this time the expert gives the conversation back to the bot.
    await escalate(server, "I want a human please")
    await page.get_by_role("button", name="Waiting for a gig expert").click()
    await page.get_by_role("button", name="Claim", exact=True).click()
    await expect(state_line(page)).to_have_text("Claimed by you (Alex)")
    await page.get_by_role("button", name="Hand back to the bot").click()
    await expect(state_line(page)).to_have_text("Handed back to the bot by Alex")
    for label in ACTIONS:
        await expect(page.get_by_role("button", name=label, exact=True)).to_be_disabled()
    await expect(page.locator("#hint")).to_contain_text("The bot answers this customer again.")
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "console-handed-back.png"), full_page=True)


async def test_release_move_to_staff_and_another_experts_claim_as_each_expert_sees_them(
    browser: Browser, server: LiveServer
):
    handoff_id = await escalate(server)
    page = await browser.new_page()
    await sign_in(page, server)
    await page.get_by_role("button", name="Waiting for a gig expert").click()
    await page.get_by_role("button", name="Claim", exact=True).click()
    await expect(state_line(page)).to_have_text("Claimed by you (Alex)")
    await page.get_by_role("button", name="Release").click()
    await expect(state_line(page)).to_have_text("Released — waiting for a gig expert")
    assert await enabled_actions(page) == ["Claim", "Keep as internal note"]

    await page.get_by_role("button", name="Claim", exact=True).click()
    await expect(state_line(page)).to_have_text("Claimed by you (Alex)")
    await page.get_by_role("button", name="Move to staff").click()
    await expect(state_line(page)).to_have_text("Moved to staff — waiting for staff")
    await expect(page.locator("#queue")).to_contain_text("Staff")

    # Alex, a gig expert, cannot take it back: it is the staff's now.
    await page.get_by_role("button", name="Claim", exact=True).click()
    await expect(page.get_by_role("alert")).to_contain_text("this conversation is for staff")
    await page.get_by_role("button", name="Dismiss error").click()
    # Jordan (staff) claims it elsewhere (in Slack, say): Alex's console shows who, and
    # nothing to press.
    assert await server.runtime.escalations.claim(handoff_id, JORDAN, "Jordan") is not None
    await expect(state_line(page)).to_have_text("Claimed by Jordan")
    assert await enabled_actions(page) == ["Keep as internal note"]
    await expect(page.locator("#hint")).to_contain_text("only they can reply")
    # The same page as Jordan: their buttons (staff already, so no move to staff).
    await page.get_by_label("Your expert id").fill(JORDAN)
    await expect(state_line(page)).to_have_text("Claimed by you (Jordan)")
    assert await enabled_actions(page) == [
        "Send reply",
        "Resolve",
        "Hand back to the bot",
        "Release",
        "Keep as internal note",
    ]


async def test_an_actions_error_stays_through_the_refreshes_until_dismissed(
    browser: Browser, server: LiveServer
):
    await escalate(server)
    page = await browser.new_page()
    await sign_in(page, server, expert_id="not-an-expert")
    await page.get_by_role("button", name="Waiting for a gig expert").click()
    await page.get_by_role("button", name="Claim", exact=True).click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("cannot claim as not-an-expert")
    # Two refreshes of the queue later, the expert can still read it.
    for _ in range(2):
        async with page.expect_response(lambda r: r.url.endswith("/v1/console/handoffs")):
            pass
    await expect(alert).to_contain_text("cannot claim as not-an-expert")
    await expect(state_line(page)).to_have_text("Waiting for a gig expert")
    await page.get_by_role("button", name="Dismiss error").click()
    await expect(alert).to_be_hidden()

    # The next action clears an old error as it starts.
    await page.get_by_role("button", name="Claim", exact=True).click()
    await expect(alert).to_contain_text("cannot claim as not-an-expert")
    await page.get_by_label("Your expert id").fill(ALEX)
    await page.get_by_role("button", name="Claim", exact=True).click()
    await expect(state_line(page)).to_have_text("Claimed by you (Alex)")
    await expect(alert).to_be_hidden()


async def test_markdown_is_rendered_and_markup_in_a_message_stays_text(
    browser: Browser, server: LiveServer
):
    handoff_id = await escalate(server)
    escalations = server.runtime.escalations
    assert await escalations.claim(handoff_id, ALEX, "Alex") is not None
    handoff = await server.runtime.store.get_handoff(handoff_id)
    # The bot's answers quote the brand's Markdown knowledge.
    await server.runtime.store.add_message(
        handoff.conversation_id,
        "bot",
        "**Pairing** takes _a minute_: see [the guide](https://example.com/pair) or "
        "[this](javascript:alert(1)).\n- hold the button\n- pick X2\n"
        "<script>alert(2)</script><img src=x onerror=alert(3)>",
    )
    await server.runtime.store.add_message(
        handoff.conversation_id, "customer", "It says **[Your order #123](https://evil.example)**"
    )
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await sign_in(page, server)
    await page.get_by_role("button", name="Claimed by you (Alex)").click()
    # A customer's text is shown as typed: no link that could pass for a trusted one.
    said = page.locator("#messages .line.customer").last
    await expect(said).to_contain_text("It says **[Your order #123](https://evil.example)**")
    assert await said.get_by_role("link").count() == 0
    # A long unbroken word wraps instead of pushing the page (and its buttons) off screen.
    await server.runtime.store.add_message(handoff.conversation_id, "customer", "W" * 3000)
    await expect(page.locator("#messages .line.customer").last).to_contain_text("WWWW")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    reply = page.locator("#messages .line.bot").last
    await expect(reply.locator("strong")).to_have_text("Pairing")
    await expect(reply.locator("em")).to_have_text("a minute")
    await expect(reply.get_by_role("link", name="the guide")).to_have_attribute(
        "href", "https://example.com/pair"
    )
    await expect(reply.get_by_role("listitem")).to_have_text(["hold the button", "pick X2"])
    await expect(reply).to_contain_text("[this](javascript:alert(1))")
    await expect(reply).to_contain_text("<script>alert(2)</script><img src=x onerror=alert(3)>")
    assert await reply.get_by_role("link").count() == 1
    assert await page.locator("#messages script, #messages img").count() == 0
    await expect(reply).not_to_contain_text("**")
    assert dialogs == []


async def test_labels_not_codes_and_times_in_the_experts_own_zone(
    browser: Browser, server: LiveServer
):
    handoff_id = await escalate(server)
    handoff = await server.runtime.store.find_handoff(handoff_id)
    assert handoff is not None
    [first, *_] = await server.runtime.store.messages_after(handoff.conversation_id)
    context = await browser.new_context(timezone_id="Asia/Kolkata", locale="en-GB")
    page = await context.new_page()
    await sign_in(page, server)
    item = page.locator("#queue button").first
    await expect(item).to_contain_text("The customer asked for a person · Gig experts")
    await expect(item).to_contain_text("just now")
    await expect(item).not_to_contain_text("human_requested")
    await item.click()
    await expect(page.locator("#facts")).to_contain_text(
        "The customer asked for a person · Gig experts"
    )
    sent = first.created_at.replace(tzinfo=first.created_at.tzinfo or ZoneInfo("UTC"))
    local = sent.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%H:%M")
    await expect(page.locator("#messages .line.customer time").first).to_have_text(local)
    await expect(page.locator("#facts")).to_contain_text(f"Asked for help just now ({local})")
    await context.close()


async def test_the_banner_says_what_is_true_about_slack(browser: Browser, server: LiveServer):
    page = await browser.new_page()
    await page.goto(f"{server.url}/console")
    banner = page.get_by_role("note")
    await expect(banner).to_contain_text("work handoffs on this machine, without Slack")
    await expect(banner).to_contain_text("Where the Slack connector is configured")
    await expect(banner).not_to_contain_text("being built")
