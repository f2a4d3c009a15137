"""The Slack edge: experts claim and answer handoffs from cards and threads in Slack.

`SlackConnector` joins the bolt app (Slack -> gigcx, at POST /slack/events) and the bridge
(gigcx events -> Slack) for one running brand.
"""

from __future__ import annotations

import asyncio

from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_sdk.web.async_client import AsyncWebClient

from gigcx.app import GigCX
from gigcx.connectors.slack.app import create_slack_app, slack_client
from gigcx.connectors.slack.bridge import SlackBridge


class SlackConnector:
    def __init__(self, runtime: GigCX, client: AsyncWebClient | None = None) -> None:
        self.client = client or slack_client(runtime)
        self.app = create_slack_app(runtime, self.client)
        self.handler = AsyncSlackRequestHandler(self.app)
        self.bridge = SlackBridge(runtime, self.client)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start bringing events to Slack (in the background)."""
        self._task = asyncio.create_task(self.bridge.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


__all__ = ["SlackConnector"]
