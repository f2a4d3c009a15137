"""A local stand-in for Slack's Web API (https://slack.com/api/<method>) that answers with
Slack's response shapes and records every call, plus the response_url that interactive
payloads carry for ephemeral replies. It keeps the channels' top-level messages (for
conversations.history and chat.delete), and can be made slow or failing per method.

With `limits` (a SlackRateLimits) it enforces Slack's documented rate limits with token
buckets, answering HTTP 429 with Retry-After as Slack does, and records the calls it
limited and the ones that ignored a Retry-After (`rate_limited`, `violations`). A post to
a user id goes to the app's direct message with that user (`dm_channel`). `first_seen`
says when each button value (a handoff's) first became visible, for benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from pydantic import SecretStr

from gigcx.config import SlackSettings
from tests.helpers.local_server import JSONHandler, LocalServer


def _default_tier_per_minute() -> dict[int, float]:
    return {1: 1.0, 2: 20.0, 3: 50.0, 4: 100.0}


def _default_method_tiers() -> dict[str, int]:
    return {
        "chat.update": 3,
        "chat.delete": 3,
        "conversations.history": 3,
        "conversations.info": 3,
        "reactions.add": 3,
        "chat.postEphemeral": 4,
        "auth.test": 4,
        "apps.connections.open": 1,
        "conversations.open": 3,
    }


@dataclass(frozen=True)
class SlackRateLimits:
    """Slack's documented limits (api.slack.com/apis/rate-limits): chat.postMessage about
    one message a second per channel with short bursts, and several hundred a minute per
    workspace; other methods by tier, per minute per workspace."""

    post_per_channel_per_second: float = 1.0
    post_channel_burst: int = 3
    post_workspace_per_minute: float = 300.0
    tier_per_minute: dict[int, float] = field(default_factory=_default_tier_per_minute)
    tier_burst_seconds: float = 6.0  # a tier bucket holds per_minute * this / 60 calls (>= 1)
    method_tiers: dict[str, int] = field(default_factory=_default_method_tiers)


Scope = tuple[str, str]
"""What a 429 covers: (method, channel) for one channel's posts, (method, "*") for all."""


@dataclass(frozen=True)
class RateLimitedCall:
    """A call the stand-in answered with HTTP 429 because of its rate limits."""

    method: str
    channel: str | None
    scope: Scope
    at: float  # time.perf_counter() when it arrived
    retry_after: int  # the Retry-After it was given, in seconds


@dataclass
class _TokenBucket:
    """Holds up to `capacity` tokens, refilled continuously at `rate` tokens a second."""

    capacity: float
    rate: float
    tokens: float
    updated: float  # time.monotonic() of the last refill

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait(self) -> float:
        """Seconds until the bucket holds a whole token (0 when it holds one now)."""
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else math.inf


def dm_channel(user_id: str) -> str:
    """The id of the app's direct message with a user ("U123" -> "D123"), stable per user."""
    return "D" + user_id[1:]


def _conversation(channel: str) -> str:
    """Where a post to `channel` lands: a user id means the DM with that user."""
    return dm_channel(channel) if channel[:1] in ("U", "W") else channel


def _retry_seconds(wait: float) -> int:
    """A Retry-After header's whole seconds for a wait (at least 1)."""
    return max(1, math.ceil(wait)) if math.isfinite(wait) else 3600


def _button_values(node: Any, found: list[str]) -> None:
    """Every string under a key named "value" in Block Kit blocks (buttons, select options)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "value" and isinstance(value, str):
                found.append(value)
            else:
                _button_values(value, found)
    elif isinstance(node, list):
        for item in node:
            _button_values(item, found)


class SlackAPIServer(LocalServer):
    """`with SlackAPIServer() as slack:`; `slack.api_url` goes into the settings.

    `SlackAPIServer(limits=SlackRateLimits())` enforces Slack's rate limits; `None` (the
    default) answers every call at once. `slack.limits` can be changed at any time."""

    def __init__(self, limits: SlackRateLimits | None = None) -> None:
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
        # Rate limits (see SlackRateLimits): the buckets by scope, and until when (monotonic)
        # each scope was told to wait by a 429.
        self._limits = limits
        self._buckets: dict[Scope, _TokenBucket] = {}
        self.blocked_until: dict[Scope, float] = {}
        self.rate_limited: list[RateLimitedCall] = []  # every 429 the limits answered
        self.violations: list[RateLimitedCall] = []  # those that came inside a Retry-After
        # When each button value / handoff id first became visible (time.perf_counter()),
        # and the channel it appeared in.
        self.first_seen: dict[str, float] = {}
        self.seen_in: dict[str, str] = {}
        self._succeeded: Counter[str] = Counter()  # successful calls per method
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
                    return self.send_ratelimited(outer.retry_after)
                limited = outer._admit(method, body)
                if limited is not None:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        self.send_ratelimited(limited)
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
                    if answer.get("ok"):
                        outer._succeeded[method] += 1
                        outer._note_seen(method, body, answer)
                if when == "after":
                    time.sleep(delay)
                # A client that gave up waiting (its timeout) is gone: Slack acted all the same.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_json(200, answer)

            def do_GET(self) -> None:  # some read methods (conversations.info) use GET
                self.do_POST()

            def send_ratelimited(self, retry_after: int) -> None:
                """Slack's answer to a call over a rate limit: HTTP 429 with Retry-After."""
                raw = json.dumps({"ok": False, "error": "ratelimited"}).encode()
                self.send_response(429)
                self.send_header("Retry-After", str(retry_after))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        super().__init__(Handler)

    @property
    def limits(self) -> SlackRateLimits | None:
        """The rate limits enforced, or None for none."""
        return self._limits

    @limits.setter
    def limits(self, limits: SlackRateLimits | None) -> None:
        """New limits start with full buckets and no scope waiting."""
        with self._lock:
            self._limits = limits
            self._buckets.clear()
            self.blocked_until.clear()

    def _bucket(self, scope: Scope, capacity: float, rate: float, now: float) -> _TokenBucket:
        """The bucket of `scope` (full when first used), refilled up to `now`."""
        bucket = self._buckets.get(scope)
        if bucket is None:
            bucket = self._buckets[scope] = _TokenBucket(capacity, rate, capacity, now)
        bucket.refill(now)
        return bucket

    def _admit(self, method: str, body: dict[str, Any]) -> int | None:
        """Apply the rate limits to a call: None when it may go on (its tokens taken), or
        the Retry-After seconds to answer with HTTP 429 (the call is recorded as limited)."""
        limits = self._limits
        if limits is None:
            return None
        now = time.monotonic()
        channel = body.get("channel")
        channel = _conversation(channel) if isinstance(channel, str) else None
        with self._lock:
            if method == "chat.postMessage":
                scopes: list[Scope] = [(method, channel or ""), (method, "*")]
            elif method in limits.method_tiers:
                scopes = [(method, "*")]
            else:
                return None
            # A call inside a Retry-After it was given is a violation: answered 429 again.
            for scope in scopes:
                until = self.blocked_until.get(scope, 0.0)
                if now < until:
                    retry_after = _retry_seconds(until - now)
                    call = RateLimitedCall(method, channel, scope, time.perf_counter(), retry_after)
                    self.rate_limited.append(call)
                    self.violations.append(call)
                    return retry_after
            if method == "chat.postMessage":
                workspace_rate = limits.post_workspace_per_minute / 60
                buckets = [
                    self._bucket(
                        scopes[0],
                        float(limits.post_channel_burst),
                        limits.post_per_channel_per_second,
                        now,
                    ),
                    self._bucket(
                        scopes[1],
                        max(1.0, limits.post_workspace_per_minute / 10),
                        workspace_rate,
                        now,
                    ),
                ]
            else:
                per_minute = limits.tier_per_minute.get(limits.method_tiers[method])
                if per_minute is None:  # a tier without a rate: unlimited
                    return None
                capacity = max(1.0, per_minute * limits.tier_burst_seconds / 60)
                buckets = [self._bucket(scopes[0], capacity, per_minute / 60, now)]
            waits = [bucket.wait() for bucket in buckets]
            if max(waits) == 0.0:
                for bucket in buckets:
                    bucket.tokens -= 1.0
                return None
            # Empty: the scope is the bucket that keeps the call waiting longest.
            longest = waits.index(max(waits))
            scope = scopes[longest]
            retry_after = _retry_seconds(waits[longest])
            self.blocked_until[scope] = now + retry_after
            call = RateLimitedCall(method, channel, scope, time.perf_counter(), retry_after)
            self.rate_limited.append(call)
            return retry_after

    def _note_seen(self, method: str, body: dict[str, Any], answer: dict[str, Any]) -> None:
        """Record when the button values (and handoff id) of a posted or updated message
        first became visible. Called under the lock."""
        if method not in ("chat.postMessage", "chat.update"):
            return
        values: list[str] = []
        blocks = body.get("blocks")
        if isinstance(blocks, str):  # a form-encoded call sends it as JSON text
            blocks = json.loads(blocks)
        _button_values(blocks, values)
        metadata = body.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if isinstance(metadata, dict):
            payload = metadata.get("event_payload")
            if isinstance(payload, dict) and isinstance(payload.get("handoff_id"), str):
                values.append(payload["handoff_id"])
        now = time.perf_counter()
        channel = str(answer.get("channel") or body.get("channel") or "")
        for value in values:
            if value not in self.first_seen:
                self.first_seen[value] = now
                self.seen_in[value] = channel

    def method_counts(self) -> dict[str, int]:
        """How many calls of each method succeeded (answered ok), for benchmarks."""
        with self._lock:
            return dict(self._succeeded)

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
            channel = _conversation(body["channel"])
            message = {"text": body.get("text", ""), "ts": ts, "bot_id": "BBOT"}
            metadata = body.get("metadata")
            if isinstance(metadata, str):  # a form-encoded call sends it as JSON text
                metadata = json.loads(metadata)
            if metadata:
                message["metadata"] = metadata
            if not body.get("thread_ts"):
                self.history.setdefault(channel, []).append(message)
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
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
