"""Block Kit for a handoff's card in the experts' (or staff's) channel: what an expert needs
to decide to claim it, and the buttons for each state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gigcx.store import Handoff
from gigcx.store.models import as_utc, utcnow

LAST_MESSAGES = 4
PASSAGES = 3


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}


def _button(action: str, label: str, handoff_id: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action,
        "text": {"type": "plain_text", "text": label},
        "value": handoff_id,
    }
    if style:
        button["style"] = style
    return button


def _escape(text: str) -> str:
    # Slack's mrkdwn: these three are the only characters that must be escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def waited(handoff: Handoff, now: datetime | None = None) -> str:
    minutes = int(((now or utcnow()) - as_utc(handoff.created_at)).total_seconds() // 60)
    return "just now" if minutes < 1 else f"{minutes} min"


def handoff_card(
    handoff: Handoff, mentions: list[str], *, urgent: bool = False, notes: Sequence[str] = ()
) -> tuple[str, list[dict[str, Any]]]:
    """The card for a waiting handoff: fallback text and blocks (with the notes experts
    left in its thread, when it moves on)."""
    packet = handoff.packet
    tags = " ".join(f"`{tag}`" for tag in handoff.tags) or "_no tags_"
    head = ":rotating_light: *Still waiting*" if urgent else ":raising_hand: *New handoff*"
    blocks: list[dict[str, Any]] = [
        _section(
            f"{head} · {packet.get('reason_text', handoff.reason)} · waiting {waited(handoff)}"
        ),
        _section(_escape(str(packet.get("summary", "")))),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": tags}]},
    ]
    attributes = packet.get("customer_attributes") or {}
    if attributes:
        shown = ", ".join(f"{k}: {_escape(str(v))}" for k, v in attributes.items())
        blocks.append(_section(f"*Customer* {shown}"))
    lines = packet.get("transcript", [])[-LAST_MESSAGES:]
    if lines:
        blocks.append(
            _section(
                "\n".join(f"*{line['author']}:* {_escape(line['text'][:300])}" for line in lines)
            )
        )
    passages = packet.get("retrieved", [])[:PASSAGES]
    if passages:
        blocks.append(
            _section(
                "*The bot used:* "
                + "; ".join(f"{_escape(p['title'])} ({p['path']}, {p['score']})" for p in passages)
            )
        )
    if notes:
        blocks.append(_section("*Notes from the thread:*\n" + "\n".join(_escape(n) for n in notes)))
    if mentions:
        blocks.append(_section(" ".join(f"<@{user}>" for user in mentions)))
    blocks.append(
        {"type": "actions", "elements": [_button("claim", "Claim", handoff.id, "primary")]}
    )
    return f"Handoff: {packet.get('summary', handoff.reason)}", blocks


def claimed_card(handoff: Handoff) -> tuple[str, list[dict[str, Any]]]:
    """The card once claimed: who has it, and what they can do."""
    who = f"<@{handoff.assignee}>"
    blocks = [
        _section(f":white_check_mark: *Claimed by {who}* · {handoff.reason}"),
        _section(_escape(str(handoff.packet.get("summary", "")))),
        {
            "type": "actions",
            "elements": [
                _button("resolve", "Resolve", handoff.id, "primary"),
                _button("release", "Release", handoff.id),
                _button("handback", "Hand back to bot", handoff.id),
                _button("move_to_staff", "Move to staff", handoff.id),
            ],
        },
    ]
    return f"Claimed by {who}", blocks


def closed_card(handoff: Handoff, how: str) -> tuple[str, list[dict[str, Any]]]:
    text = f"{how} by <@{handoff.assignee}>" if handoff.assignee else how
    return text, [_section(f":lock: *{text}* · {_escape(str(handoff.packet.get('summary', '')))}")]
