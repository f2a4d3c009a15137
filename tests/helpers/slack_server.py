"""A local stand-in for Slack's Web API (https://slack.com/api/<method>) that answers with
Slack's response shapes and records every call, plus the response_url that interactive
payloads carry for ephemeral replies. It keeps the channels' top-level messages (for
conversations.history and chat.delete), and can be made slow or failing per method."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from pydantic import SecretStr

from gigcx.config import SlackSettings
from tests.helpers.local_server import JSONHandler, LocalServer


class SlackAPIServer(LocalServer):
    """`with SlackAPIServer() as slack:`; `slack.api_url` goes into the settings."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.received_at: list[float] = []  # time.perf_counter() of each call, for benchmarks
        self.responses: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._ts = time.time()  # message ts are Slack's: seconds since the epoch, unique
        self.token_revoked = False
        # Make a method fail: method -> Slack error code ("channel_not_found"), "down" for
        # an HTTP 503 (Slack having an outage), or "ratelimited" for an HTTP 429 asking to
        # wait `retry_after` seconds.
        self.failures: dict[str, str] = {}
        self.retry_after = 30
        # Make a method slow: method -> (seconds, when). "before" holds the call before Slack
        # acts on it; "after" acts at once and holds only the answer (the post is visible).
        self.delays: dict[str, tuple[float, str]] = {}
        self.arrived: list[str] = []  # every method called, in order, as it arrives
        # The top-level messages of each channel, oldest first (deleted ones removed).
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.reactions: set[tuple[str, str, str]] = set()  # (channel, message ts, name)
        self.socket_url: str | None = None  # where apps.connections.open sends Socket Mode
        self.channels = {"C0EXPERTS", "C0STAFF"}
        outer = self

        class Handler(JSONHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                if "json" in (self.headers.get("Content-Type") or ""):
                    body = json.loads(raw or "{}")
                else:
                    body = {k: v[0] for k, v in parse_qs(raw).items()}
                if self.path.startswith("/response/"):
                    outer.responses.append(body)
                    return self.send_json(200, {"ok": True})
                path, _, query = self.path.partition("?")
                # Some methods send their arguments in the query string, as Slack allows.
                body = {**{k: v[0] for k, v in parse_qs(query).items()}, **body}
                method = path.removeprefix("/api/")
                with outer._lock:
                    outer.arrived.append(method)
                if outer.failures.get(method) == "down":
                    return self.send_json(503, {"ok": False, "error": "service_unavailable"})
                if outer.failures.get(method) == "ratelimited":
                    raw = json.dumps({"ok": False, "error": "ratelimited"}).encode()
                    self.send_response(429)
                    self.send_header("Retry-After", str(outer.retry_after))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                    return None
                delay, when = outer.delays.get(method, (0.0, ""))
                if when == "before":
                    time.sleep(delay)
                with outer._lock:
                    outer.calls.append((method, body))
                    outer.received_at.append(time.perf_counter())
                    outer._ts = max(outer._ts + 0.0001, time.time())
                    ts = f"{outer._ts:.6f}"
                    answer = outer.answer(method, body, ts)
                if when == "after":
                    time.sleep(delay)
                # A client that gave up waiting (its timeout) is gone: Slack acted all the same.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_json(200, answer)

            def do_GET(self) -> None:  # some read methods (conversations.info) use GET
                self.do_POST()

        super().__init__(Handler)

    @property
    def api_url(self) -> str:
        return self.base_url.removesuffix("/v1") + "/api/"

    @property
    def response_url(self) -> str:
        return self.base_url.removesuffix("/v1") + "/response/1"

    def settings(self, signing_secret: str) -> SlackSettings:
        """The Slack connector's settings, pointed at this server."""
        return SlackSettings(
            bot_token=SecretStr("xoxb-test"),
            signing_secret=SecretStr(signing_secret),
            expert_channel="C0EXPERTS",
            staff_channel="C0STAFF",
            api_url=self.api_url,
        )

    def answer(self, method: str, body: dict[str, Any], ts: str) -> dict[str, Any]:
        if method in self.failures:
            return {"ok": False, "error": self.failures[method]}
        if method == "apps.connections.open":
            if self.socket_url is None:
                return {"ok": False, "error": "invalid_auth"}
            return {"ok": True, "url": self.socket_url}
        if method == "auth.test":
            if self.token_revoked:
                return {"ok": False, "error": "token_revoked"}
            return {"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T1"}
        if method == "conversations.info":
            if body.get("channel") not in self.channels:
                return {"ok": False, "error": "channel_not_found"}
            return {"ok": True, "channel": {"id": body["channel"], "is_member": True}}
        if method == "chat.postMessage":
            message = {"text": body.get("text", ""), "ts": ts, "bot_id": "BBOT"}
            metadata = body.get("metadata")
            if isinstance(metadata, str):  # a form-encoded call sends it as JSON text
                metadata = json.loads(metadata)
            if metadata:
                message["metadata"] = metadata
            if not body.get("thread_ts"):
                self.history.setdefault(body["channel"], []).append(message)
            return {"ok": True, "channel": body["channel"], "ts": ts, "message": message}
        if method == "chat.delete":
            kept = self.history.get(body["channel"], [])
            if not any(m["ts"] == body["ts"] for m in kept):
                return {"ok": False, "error": "message_not_found"}
            self.history[body["channel"]] = [m for m in kept if m["ts"] != body["ts"]]
            return {"ok": True, "channel": body["channel"], "ts": body["ts"]}
        if method == "conversations.history":
            oldest = float(body.get("oldest") or 0)
            found = [m for m in self.history.get(body["channel"], []) if float(m["ts"]) > oldest]
            newest_first = found[::-1][: int(body.get("limit") or 100)]
            if str(body.get("include_all_metadata")).lower() not in ("1", "true"):
                newest_first = [
                    {k: v for k, v in m.items() if k != "metadata"} for m in newest_first
                ]
            return {"ok": True, "messages": newest_first, "has_more": False}
        if method == "chat.update":
            return {"ok": True, "channel": body["channel"], "ts": body["ts"], "text": body["text"]}
        if method == "reactions.add":
            reaction = (body["channel"], body["timestamp"], body["name"])
            if reaction in self.reactions:
                return {"ok": False, "error": "already_reacted"}
            self.reactions.add(reaction)
            return {"ok": True}
        if method == "chat.postEphemeral":
            return {"ok": True}
        return {"ok": False, "error": "unknown_method"}

    def posted(self, method: str) -> list[dict[str, Any]]:
        return [body for name, body in self.calls if name == method]

    def cards(self, channel: str) -> list[dict[str, Any]]:
        """The top-level messages a person sees in `channel` now (deleted ones gone)."""
        with self._lock:
            return list(self.history.get(channel, []))

    async def wait_for(
        self, method: str, count: int, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        """The calls of `method` once there are `count` of them (the server runs meanwhile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.posted(method)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {count} {method} calls; calls: {self.calls}")


class SocketModeServer:
    """Slack's side of Socket Mode: the WebSocket an app opens with the URL from
    apps.connections.open. It greets with "hello", sends envelopes, and waits for acks.

    `async with SocketModeServer(slack) as socket:`; `await socket.send("interactive", ...)`.
    """

    def __init__(self, slack: SlackAPIServer) -> None:
        self.slack = slack
        self.connected = asyncio.Event()
        self.acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._connection: Any = None
        self._server: Any = None
        self._envelopes = 0

    async def __aenter__(self) -> SocketModeServer:
        from websockets.asyncio.server import serve

        self._server = await serve(self._serve, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.slack.socket_url = f"ws://127.0.0.1:{port}/link"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, connection: Any) -> None:
        self._connection = connection
        await connection.send(json.dumps({"type": "hello", "num_connections": 1}))
        self.connected.set()
        async for raw in connection:
            ack = json.loads(raw)
            future = self.acks.get(ack.get("envelope_id", ""))
            if future is not None and not future.done():
                future.set_result(ack)

    async def send(self, kind: str, payload: dict[str, Any], timeout: float = 10.0) -> dict:
        """Deliver one envelope (events_api, interactive or slash_commands); the app's ack."""
        await asyncio.wait_for(self.connected.wait(), timeout)
        self._envelopes += 1
        envelope_id = f"envelope-{self._envelopes}"
        self.acks[envelope_id] = asyncio.get_running_loop().create_future()
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
        }
        await self._connection.send(json.dumps(envelope))
        return await asyncio.wait_for(self.acks[envelope_id], timeout)
