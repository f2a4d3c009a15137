"""A link from an e-mail, in a real browser: it opens the brand's chat page with the
conversation resumed in the widget; a tampered or expired link gets a page saying so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from playwright.async_api import Browser, expect

from gigcx.config import Settings
from gigcx.connectors.email import EmailChannel
from gigcx.store.models import utcnow
from tests.helpers.live_server import LiveServer, free_port, live_server
from tests.helpers.widget import bubbles
from tests.test_email import email_settings, waiting_for_alex


@pytest.fixture
async def server(brand_settings: Settings) -> AsyncIterator[tuple[LiveServer, EmailChannel]]:
    port = free_port()
    settings = email_settings(brand_settings, free_port())
    settings = settings.model_copy(
        update={
            "email": settings.email.model_copy(
                update={"public_base_url": f"http://127.0.0.1:{port}"}
            )
        }
    )
    async with live_server(settings, port=port) as live:
        from tests.helpers.experts import register_experts

        await register_experts(live.runtime)
        channel = EmailChannel(live.runtime)
        live.app.include_router(channel.router)  # what the web server does for the channel
        yield live, channel


async def test_a_link_from_an_email_resumes_the_conversation_in_the_widget(
    browser: Browser, server: tuple[LiveServer, EmailChannel]
):
    live, channel = server
    conversation_id, handoff = await waiting_for_alex(live.runtime)
    await live.runtime.escalations.send_reply(handoff.id, "U04ALEXM", "Hold the button 5 s.")
    link = channel.signer.link(conversation_id, utcnow() + timedelta(days=7))

    page = await browser.new_page()
    await page.goto(f"{live.url}/email/open?resume_token={link}")
    await expect(page.get_by_role("dialog")).to_be_visible()
    await expect(bubbles(page).last).to_contain_text("Hold the button 5 s.")
    assert "gigcx-resume" not in page.url, "the link leaves the address bar"
    await expect(bubbles(page).first).to_contain_text("my X2 won't pair")
    # Opening it counts as reading: no e-mail for what the customer has now seen.
    for _ in range(50):
        conversation = await live.runtime.store.get_conversation(conversation_id)
        if conversation.customer_read_seq == conversation.last_seq:
            break
        await page.wait_for_timeout(100)
    assert conversation.customer_read_seq == conversation.last_seq


async def test_a_tampered_or_expired_link_shows_a_page_that_says_so(
    browser: Browser, server: tuple[LiveServer, EmailChannel]
):
    live, channel = server
    conversation_id, _handoff = await waiting_for_alex(live.runtime)
    page = await browser.new_page()
    good = channel.signer.link(conversation_id, utcnow() + timedelta(days=7))
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    await page.goto(f"{live.url}/email/open?resume_token={tampered}")
    await expect(page.get_by_role("heading")).to_have_text("This link is not valid")
    expired = channel.signer.link(conversation_id, utcnow() - timedelta(minutes=1))
    await page.goto(f"{live.url}/email/open?resume_token={expired}")
    await expect(page.get_by_role("heading")).to_have_text("This link has expired")
