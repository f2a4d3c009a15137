"""The Slack edge: experts claim and answer handoffs from cards and threads in Slack.

`SlackConnector` joins the bolt app (Slack -> gigcx, at POST /slack/events, or over a
Socket Mode connection when an app-level token is set) and the bridge (gigcx -> Slack, from
the store's outbox) for one running brand. It is the `slack` expert channel (`channel`, the
`gigcx.channels` entry point), on when `slack.bot_token` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gigcx.app import GigCX
from gigcx.config import Settings
from gigcx.connectors.slack.bridge import SlackBridge, slack_pacer
from gigcx.connectors.slack.listeners import create_slack_app, slack_client
from gigcx.store import EXPERT_CHANNEL_KINDS

log = logging.getLogger(__name__)
# What Slack is told about: every change of a handoff, and the customer's messages for its
# thread (not the experts' own replies, which come from Slack).
OUTBOX_KINDS: frozenset[str] = EXPERT_CHANNEL_KINDS


class SlackConnector:
    """The `slack` channel of one running brand."""

    outbox_kinds = OUTBOX_KINDS

    def __init__(self, runtime: GigCX, client: AsyncWebClient | None = None) -> None:
        self.client = client or slack_client(runtime)
        # One set of turns under Slack's rate limits for everything this process sends.
        self.pacer = slack_pacer(runtime)
        self.app = create_slack_app(runtime, self.client, self.pacer)
        self.handler = AsyncSlackRequestHandler(self.app)
        self.bridge = SlackBridge(runtime, self.client, pacer=self.pacer)
        app_token = runtime.settings.slack.app_token
        self.socket_mode = (
            AsyncSocketModeHandler(self.app, app_token.get_secret_value(), web_client=self.client)
            if app_token is not None
            else None
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._socket_task: asyncio.Task[None] | None = None
        self.router: APIRouter | None = None
        if self.socket_mode is None:
            self.router = APIRouter(include_in_schema=False)
            self.router.add_api_route("/slack/events", self._events, methods=["POST"])

    async def _events(self, request: Request) -> Response:
        """Slack's Events API and interactivity, verified by the signing secret."""
        return await self.handler.handle(request)  # type: ignore[no-any-return]

    async def start(self) -> None:
        """Check the Slack setup and start bringing events to Slack (in the background)."""
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            problems = await self.check()
        except Exception as error:  # Slack unreachable or slow at start: deliver anyway
            problems = [f"could not check the setup ({type(error).__name__}: {error})"]
        for problem in problems:
            # Customers are still served and handoffs kept; Slack just can't see them yet,
            # and the outbox goes on trying.
            log.error("Slack: %s", problem)
        if self.socket_mode is not None:
            # Connects, and keeps reconnecting, in the background (slack_sdk logs failures).
            self._socket_task = asyncio.create_task(self.socket_mode.connect_async())
        await self.bridge.run(self._stop)

    async def check(self) -> list[str]:
        """What is wrong with the token or channels, in words an admin can act on."""
        slack = self.bridge.settings.slack
        try:
            await self.client.auth_test()
        except SlackApiError as error:
            return [
                f"the bot token was refused ({error.response.get('error')}): check "
                "GIGCX_SLACK__BOT_TOKEN and that the app is installed in the workspace"
            ]
        problems = []
        for route, channel in (("expert", slack.expert_channel), ("staff", slack.staff_channel)):
            try:
                await self.client.conversations_info(channel=channel)
            except SlackApiError as error:
                problems.append(
                    f"the {route} channel {channel} cannot be used "
                    f"({error.response.get('error')}): check slack.{route}_channel and invite "
                    "the app to it"
                )
        return problems

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self.socket_mode is not None:
            await self.socket_mode.close_async()
        if self._socket_task is not None:
            self._socket_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._socket_task


class SlackChannel:
    """The `gigcx.channels` entry point `slack`: experts work handoffs in Slack. Its
    settings are gigcx's own `slack:` section."""

    name = "slack"
    kind = "expert"
    description = "cards, claims and threads in a Slack workspace"
    settings_model = None
    settings_section = "slack"
    outbox_kinds = OUTBOX_KINDS

    def enabled(self, settings: Settings) -> bool:
        return settings.slack.enabled

    def create(self, runtime: GigCX, plugin_settings: Any) -> SlackConnector:
        return SlackConnector(runtime)


channel = SlackChannel()

__all__ = ["SlackChannel", "SlackConnector", "channel"]
