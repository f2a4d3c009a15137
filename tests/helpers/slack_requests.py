"""What Slack sends gigcx, signed with the app's signing secret: button clicks and thread
messages posted to /slack/events, and a customer who escalates through the chat API first.
The example brand's widget key and experts (examples/kestrel/experts.yaml) are named here."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.helpers.slack_server import SlackAPIServer

SECRET = "slack-signing-secret"
KEY = "kestrel-demo-widget-key"
ALEX, SAMI = "U04ALEXM", "U04SAMIK"
JORDAN = "U04JORDN"  # staff


def signed(body: str, secret: str = SECRET, age: int = 0) -> dict[str, str]:
    timestamp = str(int(time.time()) - age)
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def action_payload(
    slack: SlackAPIServer, action: str, handoff_id: str, user: str
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T1"},
        "api_app_id": "A1",
        "container": {"type": "message"},
        "trigger_id": "1.2",
        "response_url": slack.response_url,
        "actions": [{"action_id": action, "value": handoff_id, "type": "button"}],
    }


async def click(
    http: httpx.AsyncClient, slack: SlackAPIServer, action: str, handoff_id: str, user: str
) -> httpx.Response:
    payload = action_payload(slack, action, handoff_id, user)
    body = urlencode({"payload": json.dumps(payload)})
    return await http.post("/slack/events", content=body, headers=signed(body))


def board_payload(
    slack: SlackAPIServer, action: str, user: str, channel: str, value: str
) -> dict[str, Any]:
    """What Slack sends when `user` uses a button (`value`: a handoff id, or the route for
    "claim_next") or picks a handoff from a queue board's menu ("claim_pick") in `channel`."""
    chosen: dict[str, Any] = {"action_id": action, "type": "button", "value": value}
    if action == "claim_pick":
        option = {"text": {"type": "plain_text", "text": value[:6]}, "value": value}
        chosen = {"action_id": action, "type": "static_select", "selected_option": option}
    return {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T1"},
        "api_app_id": "A1",
        "channel": {"id": channel},
        "container": {"type": "message", "channel_id": channel},
        "trigger_id": "1.2",
        "response_url": slack.response_url,
        "actions": [chosen],
    }


async def send_action(http: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    """Post an interactive payload to /slack/events, signed as Slack signs it."""
    body = urlencode({"payload": json.dumps(payload)})
    return await http.post("/slack/events", content=body, headers=signed(body))


_MESSAGE_TS: dict[str, str] = {}


def message_ts(event_id: str) -> str:
    """The ts of the Slack message `event_id` is about: Slack's redelivery of an event is
    about the same message, so it carries the same ts."""
    if event_id not in _MESSAGE_TS:
        _MESSAGE_TS[event_id] = f"{int(time.time())}.{len(_MESSAGE_TS):06d}"
    return _MESSAGE_TS[event_id]


def thread_payload(
    channel: str, thread_ts: str, user: str, text: str, event_id: str
) -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": "T1",
        "api_app_id": "A1",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": message_ts(event_id),
            "thread_ts": thread_ts,
        },
    }


async def thread_event(
    http: httpx.AsyncClient, channel: str, thread_ts: str, user: str, text: str, event_id: str
) -> httpx.Response:
    body = json.dumps(thread_payload(channel, thread_ts, user, text, event_id))
    headers = {**signed(body), "Content-Type": "application/json"}
    return await http.post("/slack/events", content=body, headers=headers)


async def escalate(http: httpx.AsyncClient, text: str) -> tuple[str, dict[str, str]]:
    created = (await http.post("/v1/brands/kestrel/conversations", json={"widget_key": KEY})).json()
    auth = {"Authorization": f"Bearer {created['token']}"}
    await http.post(
        f"/v1/conversations/{created['conversation_id']}/messages",
        json={"text": text},
        headers=auth,
    )
    return created["conversation_id"], auth
