"""The Slack edge: experts claim and answer handoffs from cards and threads in Slack.

`SlackConnector` joins the bolt app (Slack -> gigcx, at POST /slack/events, or over a
Socket Mode connection when an app-level token is set) and the bridge (gigcx -> Slack, from
the store's outbox) for one running brand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from gigcx.app import GigCX
from gigcx.connectors.slack.bridge import SlackBridge
from gigcx.connectors.slack.listeners import create_slack_app, slack_client

log = logging.getLogger(__name__)


class SlackConnector:
    def __init__(self, runtime: GigCX, client: AsyncWebClient | None = None) -> None:
        self.client = client or slack_client(runtime)
        self.app = create_slack_app(runtime, self.client)
        self.handler = AsyncSlackRequestHandler(self.app)
        self.bridge = SlackBridge(runtime, self.client)
        app_token = runtime.settings.slack.app_token
        self.socket_mode = (
            AsyncSocketModeHandler(self.app, app_token.get_secret_value(), web_client=self.client)
            if app_token is not None
            else None
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._socket_task: asyncio.Task[None] | None = None

    def start(self) -> None:
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


__all__ = ["SlackConnector"]
