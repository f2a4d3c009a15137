"""Block Kit for a handoff's card in the experts' (or staff's) channel: what an expert needs
to decide to claim it, and the buttons for each state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gigcx.connectors.slack.text import SlackText, mention
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


def waited(handoff: Handoff, now: datetime | None = None) -> str:
    minutes = int(((now or utcnow()) - as_utc(handoff.created_at)).total_seconds() // 60)
    return "just now" if minutes < 1 else f"{minutes} min"


def handoff_card(
    handoff: Handoff,
    mentions: list[str],
    say: SlackText,
    *,
    urgent: bool = False,
    notes: Sequence[tuple[str, str]] = (),
) -> tuple[str, list[dict[str, Any]]]:
    """The card for a waiting handoff: fallback text and blocks (with the notes experts
    left in its thread, as (author, text), when it moves on)."""
    packet = handoff.packet
    summary = str(packet.get("summary", ""))
    tags = " ".join(f"`{say.inline(tag, 60)}`" for tag in handoff.tags) or "_no tags_"
    head = ":rotating_light: *Still waiting*" if urgent else ":raising_hand: *New handoff*"
    reason = say.inline(packet.get("reason_text", handoff.reason))
    blocks: list[dict[str, Any]] = [
        _section(f"{head} · {reason} · waiting {waited(handoff)}"),
        _section(say.plain(summary)),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": tags}]},
        _section(_who(packet, say)),
    ]
    given = {
        key: value
        for key, value in (packet.get("customer_attributes") or {}).items()
        if key != "verified"  # set by the server from the identity check, shown above
    }
    if given:
        shown = " · ".join(
            f"{say.inline(key, 40)}: {say.inline(value, 120)}" for key, value in given.items()
        )
        blocks.append(_section(f"*Given by the customer* (not checked): {shown}"))
    lines = packet.get("transcript", [])[-LAST_MESSAGES:]
    if lines:
        blocks.append(
            _section(
                "\n".join(
                    f"*{say.inline(line['author'], 20)}:* {say.inline(line['text'], 300)}"
                    for line in lines
                )
            )
        )
    passages = packet.get("retrieved", [])[:PASSAGES]
    if passages:
        blocks.append(
            _section(
                "*The bot used:* "
                + "; ".join(
                    f"{say.inline(p['title'], 100)} ({say.inline(p['path'], 100)}, {p['score']})"
                    for p in passages
                )
            )
        )
    if notes:
        blocks.append(
            _section(
                "*Notes from the thread:*\n"
                + "\n".join(f"{mention(author)}: {say.inline(text, 300)}" for author, text in notes)
            )
        )
    if mentions:
        blocks.append(_section(" ".join(mention(user) for user in mentions)))
    blocks.append(
        {"type": "actions", "elements": [_button("claim", "Claim", handoff.id, "primary")]}
    )
    return f"Handoff: {say.inline(summary or handoff.reason, 150)}", blocks


def _who(packet: dict[str, Any], say: SlackText) -> str:
    """Who the customer is, from the verified identity only."""
    attributes = packet.get("customer_attributes") or {}
    if attributes.get("verified") is True:
        return (
            f"*Customer:* signed in as `{say.inline(packet.get('customer_id', ''), 80)}` (verified)"
        )
    return "*Customer:* not signed in (anonymous)"


def claimed_card(
    handoff: Handoff, say: SlackText, holder: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The card once claimed: who has it (`holder`, their Slack id), and what they can do."""
    who = mention(holder or handoff.assignee)
    blocks = [
        _section(f":white_check_mark: *Claimed by {who}* · {say.inline(handoff.reason)}"),
        _section(say.plain(handoff.packet.get("summary", ""))),
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


TRANSCRIPT_SECTIONS = 40  # of a claimed card's 50 blocks (Slack's limit)


def transcript(lines: Sequence[str]) -> list[dict[str, Any]]:
    """The conversation so far as sections under a card, the newest kept when it is long."""
    sections: list[str] = []
    for line in reversed(lines):
        line = line[:2800]
        if sections and len(sections[-1]) + len(line) + 1 <= 2800:
            sections[-1] = line + "\n" + sections[-1]
        elif len(sections) < TRANSCRIPT_SECTIONS - 1:
            sections.append(line)
        else:
            sections.append("_Earlier messages are in the console._")
            break
    head = "*Conversation so far* (reply in this card's thread to answer the customer):"
    return [_section(head)] + [_section(text) for text in reversed(sections)]


def closed_card(
    handoff: Handoff, how: str, say: SlackText, holder: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """The card once closed: `how`, and by whom (`holder`, their Slack id)."""
    who = holder or handoff.assignee
    text = f"{how} by {mention(who)}" if who else how
    summary = say.plain(handoff.packet.get("summary", ""))
    return text, [_section(f":lock: *{text}* · {summary}")]
