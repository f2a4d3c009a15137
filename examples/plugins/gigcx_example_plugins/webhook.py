"""The `handoff_webhook` expert channel: each change of a handoff (requested, claimed,
resolved, ...) is posted as JSON to a URL, e.g. a brand's own on-call tool.

It consumes the store's outbox like gigcx's Slack channel: what to post is written in the
same transaction as the change, taken under a lease by one server process, deleted once the
URL answered 2xx, and tried again with backoff otherwise, in order per handoff. The post
carries ids, the route, reason and tags, never what the customer wrote. With `secret` set,
`X-Gigcx-Signature: sha256=<HMAC-SHA256 of the body>` lets the receiver check the sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr

from gigcx.config import Settings

# gigcx loads every installed channel at each command's start (`gigcx experts list` too):
# the HTTP client and fastapi are imported when the channel is created, not here.
if TYPE_CHECKING:
    from gigcx.plugins import Runtime

log = logging.getLogger(__name__)
NAME = "handoff_webhook"
KINDS = frozenset(
    {
        "requested",
        "reoffered",
        "moved_to_staff",
        "claimed",
        "released",
        "resolved",
        "returned",
        "timed_out",
    }
)
LEASE = timedelta(seconds=30)


class WebhookSettings(BaseModel):
    """`plugins.handoff_webhook` in gigcx.yaml."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="Where each handoff change is posted (JSON).")
    secret: SecretStr | None = Field(None, description="Signs each post (HMAC-SHA256).")
    timeout_seconds: float = Field(5.0, gt=0, le=25, description="One post's time limit.")
    poll_seconds: float = Field(2.0, gt=0, le=60, description="How often the outbox is read.")


class HandoffWebhook:
    """The running channel of one brand."""

    outbox_kinds = KINDS

    def __init__(self, runtime: Runtime, settings: WebhookSettings) -> None:
        import httpx
        from fastapi import APIRouter

        self.runtime = runtime
        self.settings = settings
        self.client = httpx.AsyncClient(timeout=settings.timeout_seconds)
        self.delivered = 0
        self.last_error = ""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.router = APIRouter(prefix=f"/plugins/{NAME}", include_in_schema=False)
        self.router.add_api_route("/status", self.status, methods=["GET"])

    async def status(self) -> dict[str, Any]:
        """How the deliveries go (no URL or secret in it: the endpoint is public)."""
        return {
            "running": self._task is not None and not self._task.done(),
            "delivered": self.delivered,
            "last_error": self.last_error,
        }

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.client.aclose()

    async def check(self) -> list[str]:
        return [f"last post failed: {self.last_error}"] if self.last_error else []

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.deliver_due()
            except Exception as error:  # the store is down: try again on the next round
                log.warning("%s: could not read the outbox: %s", NAME, error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.poll_seconds)

    async def deliver_due(self) -> int:
        """Post what is due now; how many were delivered."""
        import httpx

        store = self.runtime.store
        delivered = 0
        for item in await store.take_outbox(NAME, datetime.now(UTC), LEASE):
            try:
                await self._post(item)
            except (httpx.HTTPError, OSError) as error:
                self.last_error = f"{type(error).__name__}: {error}"[:300]
                wait = timedelta(seconds=min(300, 5 * 2 ** min(item.attempts, 6)))
                await store.outbox_retry(item, self.last_error, datetime.now(UTC) + wait)
                continue
            if await store.outbox_delivered(item):
                delivered += 1
                self.last_error = ""
        self.delivered += delivered
        return delivered

    async def _post(self, item: Any) -> None:
        handoff = await self.runtime.store.get_handoff(item.handoff_id)
        body = json.dumps(
            {
                "brand": self.runtime.settings.brand,
                "change": str(item.kind),
                "handoff_id": handoff.id,
                "conversation_id": handoff.conversation_id,
                "state": handoff.state,
                "route": handoff.route,
                "reason": handoff.reason,
                "tags": list(handoff.tags or []),
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.settings.secret is not None:
            key = self.settings.secret.get_secret_value().encode()
            headers["X-Gigcx-Signature"] = (
                "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
            )
        response = await self.client.post(str(self.settings.url), content=body, headers=headers)
        response.raise_for_status()


class HandoffWebhookPlugin:
    """The object the `gigcx.channels` entry point `handoff_webhook` names."""

    name = NAME
    kind = "expert"
    description = "posts each handoff change as JSON to a URL"
    settings_model = WebhookSettings
    outbox_kinds = KINDS

    def enabled(self, settings: Settings) -> bool:
        return NAME in settings.plugins  # on once gigcx.yaml has its section

    def create(self, runtime: Runtime, plugin_settings: WebhookSettings) -> HandoffWebhook:
        return HandoffWebhook(runtime, plugin_settings)


plugin = HandoffWebhookPlugin()
