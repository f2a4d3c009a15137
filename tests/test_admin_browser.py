"""/admin in Chromium, as the brand team sees it: the period's numbers and charts drawn with
data, who helped and what they are owed, the questions the knowledge lacks grouped by
meaning, a conversation with the bot's reasons and the handover packet, and an expert's
answer accepted into the knowledge. Customer text is shown as text on every page."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from gigcx.config import Settings
from gigcx.insights.report import Period, experts_report, human_duration, overview
from tests.conftest import REPO
from tests.helpers.admin import ADMIN_TOKEN, seed_history, with_admin
from tests.helpers.experts import ALEX, register_experts
from tests.helpers.live_server import LiveServer, live_server
from tests.test_console import KEY, TOKEN, with_console

ARTIFACTS = REPO / "test-artifacts"
XSS = "<img src=x onerror=alert(1)><script>alert(2)</script>"
EXPERT = {"X-Console-Token": TOKEN}
# Two ways of asking one thing the example knowledge does not answer (the bot escalates one
# and tries a wrong answer to the other, rated unhelpful): one gap.
SIDETONE = (
    "is there sidetone on the X2 headset when I'm on a call",
    "does my X2 let me hear my own voice during phone calls (sidetone)?",
)


@dataclass
class Story:
    server: LiveServer
    knowledge: Path
    xss_conversation: str
    answered_conversation: str


async def ask(http: httpx.AsyncClient, *texts: str) -> dict[str, Any]:
    """A new customer says `texts` in turn; the conversation's id and its last turn."""
    created = (await http.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    turn: dict[str, Any] = {}
    for text in texts:
        posted = await http.post(
            f"/v1/conversations/{created['conversation_id']}/messages",
            json={"text": text},
            headers=auth,
        )
        assert posted.status_code in (200, 201), posted.text
        turn = posted.json()
    return {"id": created["conversation_id"], "auth": auth, **turn}


async def thumbs(
    http: httpx.AsyncClient, conversation: dict[str, Any], seq: int, *, helpful: bool
) -> None:
    """The customer's thumbs on a bot answer, as the widget sends it."""
    rated = await http.put(
        f"/v1/conversations/{conversation['id']}/messages/{seq}/rating",
        json={"helpful": helpful},
        headers=conversation["auth"],
    )
    assert rated.status_code in (200, 201, 204), rated.text


async def expert_resolves(http: httpx.AsyncClient, conversation_id: str, answer: str) -> None:
    """Alex claims the conversation's handoff in the console, answers and resolves."""
    handoffs = (await http.get("/v1/console/handoffs", headers=EXPERT)).json()
    [handoff] = [h for h in handoffs if h["conversation_id"] == conversation_id]
    path = f"/v1/console/handoffs/{handoff['id']}"
    for step, body in (
        ("claim", {"expert_id": ALEX, "name": "Alex"}),
        ("reply", {"expert_id": ALEX, "text": answer}),
        ("resolve", {"expert_id": ALEX}),
    ):
        done = await http.post(f"{path}/{step}", json=body, headers=EXPERT)
        assert done.status_code in (200, 201), (step, done.text)


@pytest.fixture
async def story(brand_settings: Settings, tmp_path: Path) -> AsyncIterator[Story]:
    """Three weeks of history in the store, then today through the real APIs: an answer
    rated helpful, a customer who writes markup and asks for a person, and a question the
    knowledge lacks asked twice, answered by a gig expert and rated."""
    knowledge = tmp_path / "knowledge"  # accepting a draft writes here, not in the shared copy
    shutil.copytree(brand_settings.knowledge.path, knowledge)
    settings = with_admin(with_console(brand_settings))
    settings = settings.model_copy(
        update={"knowledge": settings.knowledge.model_copy(update={"path": knowledge})}
    )
    async with live_server(settings) as server:
        store = server.runtime.store
        await register_experts(server.runtime)
        await seed_history(store)
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            answered = await ask(http, "how do I pair my x2 with my phone")
            [reply] = [m for m in answered["replies"] if m["author"] == "bot"]
            await thumbs(http, answered, reply["seq"], helpful=True)
            marked_up = await ask(http, XSS, "can I talk to a person?")
            await expert_resolves(http, marked_up["id"], "Sorry about that; here is how it works.")
            first = await ask(http, SIDETONE[0])
            second = await ask(http, SIDETONE[1])
            assert first["state"] == "waiting", first
            if second["state"] == "bot":  # the bot tried an answer the customer thumbs down
                [wrong] = [m for m in second["replies"] if m["author"] == "bot"]
                await thumbs(http, second, wrong["seq"], helpful=False)
            await expert_resolves(
                http, first["id"], "Yes: in the Kestrel Connect app open Calls > Sidetone."
            )
            rated = await http.post(
                f"/v1/conversations/{first['id']}/csat", json={"score": 5}, headers=first["auth"]
            )
            assert rated.status_code == 201, rated.text
        yield Story(server, knowledge, marked_up["id"], answered["id"])


async def signed_in_page(browser: Browser, story: Story) -> tuple[Page, list[str]]:
    """A page signed in through the login form; the list of any dialogs a script opened."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []

    async def refuse(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", refuse)
    await page.goto(f"{story.server.url}/admin")
    await expect(page.get_by_role("heading", name="Sign in to Kestrel Audio admin")).to_be_visible()
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    return page, dialogs


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"admin-{name}.png"), full_page=True)


async def bar_heights(page: Page, chart: int = 0) -> list[float]:
    bars = page.locator("svg.chart").nth(chart).locator("rect.bar")
    return [float(await bar.get_attribute("height") or 0) for bar in await bars.all()]


async def test_the_overview_shows_the_periods_numbers_and_charts_drawn_with_data(
    browser: Browser, story: Story
):
    page, dialogs = await signed_in_page(browser, story)
    truth = await overview(story.server.runtime.store, "kestrel", Period.last_days(30))
    assert truth.conversations >= 60 and truth.escalated >= 12  # the history and today
    for name in ("conversations", "bot_answers", "contained", "clarified", "escalated"):
        await expect(page.locator(f'[data-name="{name}"]')).to_have_text(str(getattr(truth, name)))
    main = page.locator("main")
    await expect(main).to_contain_text("Last 30 days")
    for label in ("The customer asked for a person", "The bot had no answer", "Gig experts"):
        await expect(main.get_by_role("cell", name=label, exact=True)).to_be_visible()
    claim = truth.time_to_claim
    await expect(main.get_by_role("row", name="Time to claim")).to_contain_text(
        f"{human_duration(claim.p50)}{human_duration(claim.p90)}{claim.count}"
    )
    assert human_duration(claim.p50).endswith("min")  # people waited minutes, in words
    share = f"{truth.csat_bot.share:.0%}"
    await expect(main.get_by_role("row", name="Bot answers (thumbs up)")).to_contain_text(share)
    # The per-day chart: titled, with a legend and many bars of real height.
    volume = page.locator("svg.chart").first
    await expect(volume.locator("title").first).to_contain_text("per day")
    await expect(volume).to_contain_text("Answered")
    await expect(volume).to_contain_text("Escalated")
    heights = await bar_heights(page)
    assert len([h for h in heights if h > 0]) >= 20, heights
    assert await page.locator("svg.chart").nth(1).locator("circle.dot").count() >= 10
    await shot(page, "overview")

    await page.get_by_role("link", name="Last 7 days").click()
    await expect(main).to_contain_text("Last 7 days")
    week = await overview(story.server.runtime.store, "kestrel", Period.last_days(7))
    await expect(page.locator('[data-name="conversations"]')).to_have_text(str(week.conversations))
    await page.goto(f"{story.server.url}/admin?month=2026-13")
    await expect(page.get_by_role("alert")).to_contain_text("month '2026-13' is not a month")
    assert dialogs == []


async def test_the_experts_page_shows_resolutions_satisfaction_and_payout(
    browser: Browser, story: Story
):
    page, _ = await signed_in_page(browser, story)
    await page.get_by_role("link", name="Experts").click()
    rows = {
        r.key: r
        for r in await experts_report(story.server.runtime.store, "kestrel", Period.last_days(30))
    }
    alex = page.get_by_role("row", name="Alex")
    await expect(alex).to_contain_text(str(rows[ALEX].resolutions))
    await expect(alex).to_contain_text(f"{rows[ALEX].payout:,.2f}")
    await expect(alex).to_contain_text("Available")
    await expect(page.locator("main")).to_contain_text("Payout due")
    await shot(page, "experts")
    # On a phone the table scrolls inside its card; the page itself does not.
    await page.set_viewport_size({"width": 390, "height": 844})
    await page.get_by_role("link", name="Overview").click()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    await shot(page, "overview-phone")


async def test_a_conversation_shows_transcript_decisions_and_packet_with_markup_as_text(
    browser: Browser, story: Story
):
    page, dialogs = await signed_in_page(browser, story)
    await page.get_by_role("link", name="Conversations").click()
    await page.get_by_role("link", name="Escalated", exact=True).click()
    link = page.get_by_role("link", name=XSS)
    await expect(link).to_be_visible()  # the list shows the customer's text as text
    await expect(page.get_by_role("row", name=XSS)).to_contain_text(
        "The customer asked for a person"
    )
    await shot(page, "conversations")
    await link.click()
    transcript = page.locator(".transcript")
    await expect(transcript.get_by_text(XSS, exact=True).first).to_be_visible()
    assert await page.locator("main img").count() == 0
    await expect(transcript).to_contain_text("Gig expert")
    await expect(transcript).to_contain_text("Sorry about that; here is how it works.")
    handoff = page.locator("article.handoff")
    await expect(handoff).to_contain_text("Handover packet")
    await expect(handoff).to_contain_text("resolved")
    await expect(handoff).to_contain_text("Alex")
    await page.locator(".trail summary").first.click()
    await expect(page.locator(".trail").first).to_contain_text("Searched for")
    await shot(page, "conversation")

    # A bot answer: its thumbs, its citations and the passages it retrieved with scores.
    await page.goto(f"{story.server.url}/admin/conversations/{story.answered_conversation}")
    await expect(page.locator(".msg.bot .badge")).to_have_text("👍 Helpful")
    await page.locator(".trail summary").first.click()
    await expect(page.locator(".trail").first).to_contain_text("Passage retrieved")
    await expect(page.locator(".trail").first).to_contain_text("answered")
    assert dialogs == []


async def test_knowledge_gaps_group_the_questions_the_bot_could_not_answer(
    browser: Browser, story: Story
):
    page, dialogs = await signed_in_page(browser, story)
    await page.get_by_role("link", name="Knowledge gaps").click()
    await expect(page.locator("main")).to_contain_text("may take a few seconds")
    clusters = page.locator("section.cluster")
    await expect(clusters.first).to_be_visible()
    sidetone = clusters.filter(has_text="sidetone")
    await expect(sidetone.first).to_contain_text("2 conversations")
    for question in SIDETONE:
        await expect(sidetone.first.get_by_role("link", name=question)).to_be_visible()
    await expect(page.get_by_role("link", name=XSS).first).to_be_visible()
    assert await page.locator("main img").count() == 0
    await shot(page, "gaps")
    assert dialogs == []


async def test_a_draft_from_an_experts_answer_is_edited_and_accepted(
    browser: Browser, story: Story
):
    page, dialogs = await signed_in_page(browser, story)
    await page.get_by_role("link", name="Drafts").click()
    await expect(page.locator("main")).to_contain_text("Pending")
    # The marked-up question is listed as text, never as markup.
    await expect(page.get_by_role("link", name=XSS)).to_be_visible()
    await page.get_by_role("link", name=SIDETONE[0]).click()
    question = page.get_by_label("Question customers ask")
    await expect(question).to_have_value(SIDETONE[0])
    await page.get_by_label("Other ways to ask it").fill(SIDETONE[1])
    answer = page.get_by_label("Answer the bot will quote")
    await answer.fill("   ")  # not empty to the browser; the server says what is missing
    await page.get_by_role("button", name="Accept into knowledge").click()
    await expect(page.get_by_role("alert")).to_contain_text("answer: write the answer")
    await answer.fill("Yes: in the Kestrel Connect app open Calls > Sidetone (Low to High).")
    await page.get_by_role("button", name="Accept into knowledge").click()
    status = page.get_by_role("status")
    await expect(status).to_contain_text("Accepted")
    await expect(status).to_contain_text("gigcx knowledge sync")
    path = await page.locator("code.path").text_content()
    assert path and path.startswith("drafts/"), path
    written = (story.knowledge / path).read_text(encoding="utf-8")
    assert "Calls > Sidetone (Low to High)" in written and SIDETONE[1] in written
    await shot(page, "draft-accepted")

    await page.get_by_role("link", name="Knowledge drafts").click()
    await page.get_by_role("link", name=XSS).click()
    await expect(page.get_by_label("Question customers ask")).to_have_value(XSS)
    await page.get_by_role("button", name="Reject").click()
    await expect(page.get_by_role("status")).to_contain_text("Rejected")
    assert dialogs == []


async def test_a_wrong_token_is_refused_and_sign_out_ends_the_session(
    browser: Browser, story: Story
):
    page = await browser.new_page()
    await page.goto(f"{story.server.url}/admin/drafts")
    await page.get_by_label("Admin token").fill(TOKEN)  # the console's token opens nothing here
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("That token is not right")
    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Knowledge drafts")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto(f"{story.server.url}/admin")
    await expect(page.get_by_label("Admin token")).to_be_visible()
    await shot(page, "signed-out")
