"""The surge's experts working in Slack (`benchmarks/surge.py --slack limited`): the local
Slack stand-in, with Slack's documented rate limits enforced or not, and simulated experts
who claim only what Slack shows them, by the buttons and menus Slack would send gigcx.

Experts claim up to 3 handoffs a second (the surge's figure), oldest first among those
visible in Slack (a card or a line on the queue board), and resolve each 5 s later with the
card's button. When a claim goes through, the customer writes once more ("are you there?"),
and that message is timed until it reaches the expert's thread in Slack.

Figures: escalation -> visible in Slack (p50/p99), escalation -> claimed, customer message
-> in Slack's thread (p50/p99, and any never relayed), Slack calls per handoff by method,
429s answered, and calls sent during a Retry-After (must be 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from benchmarks.loadgen import percentile
from tests.helpers.slack_requests import SECRET, board_payload, send_action
from tests.helpers.slack_server import SlackAPIServer, SlackRateLimits

EXPERT_CHANNEL, STAFF_CHANNEL = "C0EXPERTS", "C0STAFF"
RESOLVE_AFTER = 5.0  # seconds an expert holds a conversation


def slack_server(mode: str) -> SlackAPIServer:
    """The stand-in: "limited" enforces Slack's documented limits, "unlimited" answers all."""
    return SlackAPIServer(limits=SlackRateLimits() if mode == "limited" else None)


def slack_env(slack: SlackAPIServer) -> dict[str, str]:
    """The workers' settings for Slack, as a deployment sets them."""
    return {
        "GIGCX_SLACK__BOT_TOKEN": "xoxb-bench",
        "GIGCX_SLACK__SIGNING_SECRET": SECRET,
        "GIGCX_SLACK__EXPERT_CHANNEL": EXPERT_CHANNEL,
        "GIGCX_SLACK__STAFF_CHANNEL": STAFF_CHANNEL,
        "GIGCX_SLACK__API_URL": slack.api_url,
    }


@dataclass
class SlackRun:
    """What the experts saw of Slack during one surge."""

    mode: str
    clock: float = field(default_factory=lambda: time.time() - time.perf_counter())
    # handoff -> (the customer's follow-up, when sent); no text when it was not acknowledged
    followed_up: dict[str, tuple[str, float]] = field(default_factory=dict)
    claims_tried: int = 0
    not_shown: list[str] = field(default_factory=list)  # handoffs whose follow-up never showed

    def figures(self, slack: SlackAPIServer, handoffs: list[dict[str, Any]]) -> dict[str, Any]:
        """`handoffs`: every handoff of the run (id, created_at, claimed_at, as the store
        has them)."""
        visible, claimed, never_seen = [], [], 0
        for handoff in handoffs:
            created = _epoch(handoff["created_at"])
            seen = slack.first_seen.get(handoff["id"])
            if seen is None:
                never_seen += 1
            else:
                visible.append(seen + self.clock - created)
            if handoff["claimed_at"] is not None:
                claimed.append(_epoch(handoff["claimed_at"]) - created)
        relays, missing = self._relays(slack)
        counts = slack.method_counts()
        escalated = max(1, len(handoffs))
        return {
            "slack": self.mode,
            "handoffs": len(handoffs),
            "visible_p50_s": percentile(visible, 0.5),
            "visible_p99_s": percentile(visible, 0.99),
            "never_visible": never_seen,
            "claimed": len(claimed),
            "claim_p50_s": percentile(claimed, 0.5),
            "claim_p99_s": percentile(claimed, 0.99),
            "relayed": len(relays),
            "relay_p50_s": percentile(relays, 0.5),
            "relay_p99_s": percentile(relays, 0.99),
            "relays_missing": missing,
            "calls_per_handoff": sum(counts.values()) / escalated,
            "calls": counts,
            "rate_limited": len(slack.rate_limited),
            "violations": len(slack.violations),
        }

    def _relays(self, slack: SlackAPIServer) -> tuple[list[float], int]:
        """How long each follow-up took to show in Slack: relayed in the thread, or in the
        transcript of a card posted after it (the relay is then left out)."""
        with slack._lock:
            calls = list(zip(slack.calls, slack.received_at, strict=True))
        posted = [
            (json.dumps(body), at) for (method, body), at in calls if method == "chat.postMessage"
        ]
        waits = []
        self.not_shown = []
        for handoff_id, (text, sent) in self.followed_up.items():
            if not text:
                continue  # the server did not acknowledge it (overloaded): not the relay's
            found = next((at for shown, at in posted if text in shown and at >= sent), None)
            if found is None:
                self.not_shown.append(handoff_id)
            else:
                waits.append(found - sent)
        return waits, len(self.not_shown)


def backlog_in_slack(
    slack: SlackAPIServer, run: SlackRun, handoffs: list[dict[str, Any]], started: float
) -> list[tuple[float, int]]:
    """Handoffs escalated but not yet visible in Slack, each second since `started` (a
    time.perf_counter() reading): Slack's backlog, as the experts feel it."""
    spans = []
    for handoff in handoffs:
        created = _epoch(handoff["created_at"]) - run.clock - started
        seen = slack.first_seen.get(handoff["id"])
        spans.append((created, float("inf") if seen is None else seen - started))
    end = max((s for _, s in spans if s != float("inf")), default=0.0)
    return [(float(t), sum(1 for a, b in spans if a <= t < b)) for t in range(int(end) + 2)]


async def experts_in_slack(
    url: str,
    console_token: str,
    slack: SlackAPIServer,
    experts: dict[str, list[str]],
    tokens: dict[str, str],
    run: SlackRun,
    stop: asyncio.Event,
    per_second: int = 3,
) -> None:
    """Claim the oldest handoffs Slack shows, up to `per_second`; resolve each 5 s later."""
    turns = {tier: itertools.cycle(ids) for tier, ids in experts.items()}
    held: dict[str, tuple[float, str]] = {}  # handoff id -> (resolve at, expert)
    tried: dict[str, str] = {}  # handoff id -> the expert who clicked claim
    console = {"X-Console-Token": console_token}
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while not stop.is_set():
            now = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                for handoff_id, (due, expert) in list(held.items()):
                    if due <= now:
                        await _click(http, slack, "resolve", handoff_id, expert)
                        del held[handoff_id]
                listed = (await http.get("/v1/console/handoffs", headers=console)).json()
                for handoff in listed:
                    expert = tried.get(handoff["id"])
                    if handoff["state"] == "assigned" and expert and handoff["id"] not in held:
                        held[handoff["id"]] = (now + RESOLVE_AFTER, expert)
                        await _follow_up(http, handoff, tokens, run)
                waiting = [
                    h for h in listed if h["state"] == "waiting" and h["id"] in slack.first_seen
                ]
                for handoff in waiting[:per_second]:
                    expert = next(turns["staff" if handoff["route"] == "staff" else "gig"])
                    tried[handoff["id"]] = expert
                    run.claims_tried += 1
                    on_board = slack.seen_in.get(handoff["id"]) is not None and not _has_card(
                        slack, handoff["id"]
                    )
                    action = "claim_pick" if on_board else "claim"
                    channel = STAFF_CHANNEL if handoff["route"] == "staff" else EXPERT_CHANNEL
                    await _click(http, slack, action, handoff["id"], expert, channel)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def _has_card(slack: SlackAPIServer, handoff_id: str) -> bool:
    """Whether a card of its own was posted for the handoff (not only a board line)."""
    with slack._lock:
        calls = list(slack.calls)
    for method, body in calls:
        metadata = body.get("metadata")
        if method == "chat.postMessage" and metadata:
            payload = (json.loads(metadata) if isinstance(metadata, str) else metadata).get(
                "event_payload", {}
            )
            if payload.get("handoff_id") == handoff_id:
                return True
    return False


async def _follow_up(
    http: httpx.AsyncClient, handoff: dict[str, Any], tokens: dict[str, str], run: SlackRun
) -> None:
    """The customer writes again once an expert has them; timed until it is in Slack."""
    token = tokens.get(handoff["conversation_id"])
    if token is None or handoff["id"] in run.followed_up:
        return
    # Letters only: a run of digits would be masked in Slack as a phone number.
    marker = "".join(chr(ord("a") + int(digit, 16)) for digit in handoff["id"][:12])
    text = f"are you there? ({marker})"
    sent = time.perf_counter()
    run.followed_up[handoff["id"]] = ("", sent)  # asked once, whatever the answer
    stored = await http.post(
        f"/v1/conversations/{handoff['conversation_id']}/messages",
        json={"text": text},
        headers={"Authorization": f"Bearer {token}"},
    )
    # Acknowledged while the expert has the conversation: it must reach them. (Under load
    # the expert may have resolved it before the message was stored; the bot has it then.)
    if stored.status_code == 201 and stored.json().get("state") == "assigned":
        run.followed_up[handoff["id"]] = (text, sent)


async def _click(
    http: httpx.AsyncClient,
    slack: SlackAPIServer,
    action: str,
    handoff_id: str,
    user: str,
    channel: str = EXPERT_CHANNEL,
) -> None:
    """What Slack sends gigcx when `user` clicks `action` for the handoff."""
    await send_action(http, board_payload(slack, action, user, channel, handoff_id))


def _epoch(when: str | datetime) -> float:
    if isinstance(when, datetime):
        return when.timestamp()
    return datetime.fromisoformat(when).timestamp()
