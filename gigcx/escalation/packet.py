"""The handover packet: everything an expert needs to pick a conversation up without asking
the customer to repeat themselves. Personal data is masked by default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from gigcx.escalation.redaction import DEFAULT_REGIONS, redact
from gigcx.store import Conversation, Message

if TYPE_CHECKING:  # only a type here: `gigcx experts sync` need not load the index's chromadb
    from gigcx.knowledge import SearchHit

QUOTE_CHARS = 200
REASON_TEXT: dict[str, str] = {
    "low_confidence": "the knowledge base has nothing close to the question",
    "human_requested": "the customer asked for a person",
    "frustration": "the customer says the answers did not help, or asked again",
    "staff_topic": "it needs the customer's records (orders, refunds, billing, account)",
    "expert_needed": "a product question the knowledge base does not answer",
    "llm_escalated": "the language model judged the passages not enough to answer",
    "bot_error": "the bot could not search the knowledge base (see the server log)",
    "bot_unavailable": "the answerer's backend could not answer (see the server log)",
    "rasa_fallback": "the Rasa assistant did not understand the message (its fallback)",
    "rasa_handoff": "the Rasa assistant handed the conversation over",
    "rasa_no_reply": "the Rasa assistant had nothing to say to the message",
}


def reason_text(reason: str) -> str:
    """Why, in words; an answerer plugin's own code is shown as written (`not_in_stock`)."""
    return REASON_TEXT.get(reason) or f"of {reason.replace('_', ' ')}"


class PacketPassage(BaseModel):
    path: str
    title: str
    section: str
    score: float
    snippet: str
    audience: str


class PacketLine(BaseModel):
    seq: int
    author: str
    text: str


class HandoffPacket(BaseModel):
    reason: str
    reason_text: str
    route: str
    tags: list[str]
    summary: str
    transcript: list[PacketLine]
    retrieved: list[PacketPassage]
    # Internal knowledge that matches: for the expert's eyes only, never sent to the customer.
    expert_notes: list[PacketPassage]
    bot_said: list[str]
    # What the answerer's backend learned (Rasa's intent, a form's slots), label: value.
    facts: dict[str, str] = {}
    customer_id: str
    customer_attributes: dict[str, Any]
    redacted: bool


def _passage(hit: SearchHit) -> PacketPassage:
    return PacketPassage(
        path=hit.path,
        title=hit.title,
        section=hit.section,
        score=round(hit.score, 4),
        snippet=hit.snippet,
        audience=hit.audience,
    )


# The summary quotes the customer in “…”: their own quotation marks become plain ones, so a
# message cannot close the quote and go on as if the summary said it.
_QUOTES = str.maketrans(dict.fromkeys("\u201c\u201d\u201e\u201f\u00ab\u00bb\u2039\u203a", '"'))


def _clip(text: str) -> str:
    flat = " ".join(text.translate(_QUOTES).split())
    return flat if len(flat) <= QUOTE_CHARS else flat[: QUOTE_CHARS - 3].rstrip() + "..."


def _clarifications(messages: Sequence[Message], texts: Sequence[str]) -> list[str]:
    """The bot's questions back ("which model do you have?") and what the customer said
    (`texts`: the messages' texts as the packet shows them)."""
    lines = []
    for number, message in enumerate(messages):
        if message.author != "bot":
            continue
        decision = message.meta.get("decision") or {}
        if decision.get("action") != "clarify":
            continue
        reply = next(
            (
                texts[later]
                for later in range(number + 1, len(messages))
                if messages[later].author == "customer"
            ),
            None,
        )
        options = " or ".join(str(option) for option in decision.get("options") or [])
        said = f" and the customer said “{_clip(reply)}”" if reply else ""
        lines.append(f"The bot asked which one they have ({options}){said}.")
    return lines


def build_packet(
    *,
    reason: str,
    route: str,
    tags: Sequence[str],
    hits: Sequence[SearchHit],
    conversation: Conversation,
    messages: Sequence[Message],
    question: str | None = None,
    internal_hits: Sequence[SearchHit] = (),
    facts: Mapping[str, str] | None = None,
    redact_personal_data: bool = True,
    phone_regions: Sequence[str] = DEFAULT_REGIONS,
) -> HandoffPacket:
    """The packet for an escalation over the conversation so far (`messages`, oldest first).

    `question` is the customer's first real question (not a greeting), for the summary. Every
    text is masked before it is cut, so a cut never leaves half an address or card number.
    """
    mask: Callable[[str], str] = (
        (lambda text: redact(text, phone_regions)) if redact_personal_data else (lambda t: t)
    )
    texts = [mask(m.text) for m in messages]
    customer_turns = [
        text for m, text in zip(messages, texts, strict=True) if m.author == "customer"
    ]
    bot_turns = [m for m in messages if m.author == "bot"]
    parts = []
    question = mask(question) if question else (customer_turns[0] if customer_turns else None)
    if question:
        parts.append(f"Customer asked: “{_clip(question)}”.")
    if customer_turns and customer_turns[-1] != question:
        parts.append(f"Latest: “{_clip(customer_turns[-1])}”.")
    parts.extend(_clarifications(messages, texts))
    answered = sorted({str(c["title"]) for m in bot_turns for c in m.citations if "title" in c})
    if answered:
        parts.append(f"The bot answered from: {', '.join(answered)}.")
    else:
        parts.append("The bot did not answer.")
    parts.append(f"Escalated because {reason_text(reason)}.")
    noted = {mask(str(label)): mask(str(value)) for label, value in (facts or {}).items()}
    if noted:
        listed = "; ".join(f"{label}: {_clip(value)}" for label, value in noted.items())
        parts.append(f"The bot noted: {listed}.")
    return HandoffPacket(
        reason=reason,
        reason_text=reason_text(reason),
        route=route,
        tags=list(tags),
        summary=" ".join(parts),
        transcript=[
            PacketLine(seq=m.seq, author=m.author, text=text)
            for m, text in zip(messages, texts, strict=True)
        ],
        retrieved=[_passage(hit) for hit in hits[:5]],
        expert_notes=[_passage(hit) for hit in internal_hits if hit.audience == "internal"],
        bot_said=[text for m, text in zip(messages, texts, strict=True) if m.author == "bot"],
        facts=noted,
        customer_id=conversation.customer_id,
        customer_attributes=_masked(conversation.customer_attributes, mask),
        redacted=redact_personal_data,
    )


def _masked(value: Any, mask: Callable[[str], str]) -> Any:
    """`value` with every string in it masked, keys included, however deeply nested."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(str(key)): _masked(item, mask) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item, mask) for item in value]
    return value
