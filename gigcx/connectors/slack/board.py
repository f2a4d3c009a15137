"""Block Kit for an expert channel's queue board: the one message that lists the handoffs
waiting there when the channel is too busy for a card each (Slack posts about one message a
second into a channel; a surge escalates several). Experts claim the oldest with one
button, or pick one from the list next to it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from gigcx.connectors.slack.blocks import waited
from gigcx.connectors.slack.text import SlackText
from gigcx.store import Handoff

BOARD_EVENT = "gigcx_queue_board"
PER_SECTION = 20  # handoffs per section (each with a menu of them: Slack allows 100)
MAX_SECTIONS = 45  # Slack allows 50 blocks in a message; the rest are the head and buttons
LINE = 140  # characters of one handoff's line (a section holds 3,000)
OPTION = 75  # Slack's limit on a menu option's text


def short_id(handoff: Handoff) -> str:
    return handoff.id[:6]


def board_message(
    waiting: Sequence[Handoff], route: str, say: SlackText
) -> tuple[str, list[dict[str, Any]]]:
    """The board's fallback text and blocks for the handoffs `waiting` (oldest first)."""
    if not waiting:
        text = "No one is waiting: new handoffs get a card of their own again."
        return text, [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    text = f"{len(waiting)} waiting for an expert · the oldest for {waited(waiting[0])}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f":hourglass: *Queue* · {text}"}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "claim_next",
                    "text": {"type": "plain_text", "text": "Claim the oldest"},
                    "value": route,
                    "style": "primary",
                }
            ],
        },
    ]
    shown = waiting[: PER_SECTION * MAX_SECTIONS]
    for start in range(0, len(shown), PER_SECTION):
        part = shown[start : start + PER_SECTION]
        lines = [_line(handoff, say) for handoff in part]
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2990]},
                "accessory": {
                    "type": "static_select",
                    "action_id": "claim_pick",
                    "placeholder": {"type": "plain_text", "text": "Claim one of these"},
                    "options": [_option(handoff, say) for handoff in part],
                },
            }
        )
    if len(waiting) > len(shown):
        more = len(waiting) - len(shown)
        more_text = f"+{more} more waiting: the button claims the oldest."
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": more_text}],
            }
        )
    return text, blocks


def digest(blocks: list[dict[str, Any]]) -> str:
    """What a board shows, in 64 characters: an update that would not change it is skipped."""
    return hashlib.sha256(json.dumps(blocks, sort_keys=True).encode()).hexdigest()


def _summary(handoff: Handoff) -> str:
    return str(handoff.packet.get("summary") or handoff.reason)


def _line(handoff: Handoff, say: SlackText) -> str:
    tags = " ".join(handoff.tags[:2])
    line = f"`{short_id(handoff)}` {waited(handoff)} · {say.inline(tags, 40)} · "
    return line + say.inline(_summary(handoff), max(20, LINE - len(line)))


def _option(handoff: Handoff, say: SlackText) -> dict[str, Any]:
    label = say.inline(f"{short_id(handoff)} · {_summary(handoff)}", OPTION - 5)
    return {"text": {"type": "plain_text", "text": label[:OPTION]}, "value": handoff.id}
