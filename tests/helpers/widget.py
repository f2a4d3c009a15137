"""Driving the chat widget in a browser page the way a customer does."""

from __future__ import annotations

from playwright.async_api import Locator, Page, expect

from tests.helpers.live_server import LiveServer


async def open_widget(page: Page, server: LiveServer) -> None:
    await page.goto(f"{server.url}/demo")
    await page.get_by_role("button", name="Chat with us").click()
    await expect(page.get_by_role("dialog")).to_be_visible()


async def say(page: Page, text_: str) -> None:
    box = page.get_by_label("Your message")
    await box.fill(text_)
    await box.press("Enter")


def bubbles(page: Page) -> Locator:
    """The conversation's messages (the greeting is not one of them)."""
    return page.locator("[data-gigcx] .msg[data-seq]")
