"""What the bot says: a quoted knowledge passage with its source (the default, no LLM),
small talk, and the notice that tells the customer what happens after an escalation.
"""

from __future__ import annotations

import re
from typing import Any

from gigcx.bot.decision import Decision
from gigcx.config import Settings
from gigcx.knowledge import SearchHit

QUOTE_LIMIT = 700  # characters of a quoted passage; the source link leads to the rest


def citation(hit: SearchHit) -> dict[str, Any]:
    """A source as shown to the customer under an answer."""
    return {
        "path": hit.path,
        "title": hit.title,
        "section": hit.section,
        "url": hit.url,
        "score": round(hit.score, 4),
    }


def quote_answer(decision: Decision) -> tuple[str, list[dict[str, Any]]]:
    """The best passage, quoted under its title, and its source."""
    best = decision.best
    if best is None:
        raise ValueError("an answer needs at least one passage")
    heading = best.title
    if best.section and best.section != best.title:
        heading = f"{best.title} \u203a {best.section}"
    return f"**{heading}**\n\n{trim_passage(best.text, best.section)}", [citation(best)]


def trim_passage(text: str, section: str = "", limit: int = QUOTE_LIMIT) -> str:
    """The passage's first section without its heading, cut at a paragraph end near `limit`."""
    paragraphs = [unwrap(p.strip()) for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if paragraphs and paragraphs[0].lstrip("#").strip() == section.strip():
        paragraphs = paragraphs[1:] or paragraphs
    kept: list[str] = []
    for paragraph in paragraphs:
        if kept and paragraph.startswith("#"):
            break  # the next section answers another question
        if kept and len("\n\n".join([*kept, paragraph])) > limit:
            kept.append("…")
            break
        kept.append(paragraph)
    return "\n\n".join(kept)


def clarifying_question(decision: Decision, settings: Settings) -> str:
    """Asks which of the products the customer has, naming each."""
    names = []
    for option in decision.options:
        product = settings.product(option)
        names.append(f"the {product.name}" if product is not None else option)
    if len(names) == 2:
        choice = f"{names[0]} or {names[1]}"
    else:
        choice = ", ".join(names[:-1]) + f" or {names[-1]}"
    return f"The answer depends on the model. Which one do you have: {choice}?"


_BLOCK_START = re.compile(r"^\s*(?:[-*+]\s|\d+[.)]\s|#|>|\||```|~~~)")


def unwrap(paragraph: str) -> str:
    """Joins lines a writer wrapped by hand, so the chat shows flowing text; list items,
    headings, quotes, tables and code keep their own lines."""
    if "```" in paragraph or "~~~" in paragraph:
        return paragraph
    lines: list[str] = []
    for line in paragraph.splitlines():
        if lines and line.strip() and not _BLOCK_START.match(line) and not lines[-1].endswith("  "):
            lines[-1] = f"{lines[-1].rstrip()} {line.strip()}"
        else:
            lines.append(line.rstrip() if not line.endswith("  ") else line)
    return "\n".join(lines)


def small_talk_reply(kind: str | None, brand: str) -> str:
    if kind == "thanks":
        return "You're welcome! Anything else I can help with?"
    return f"Hi! I'm the {brand} assistant. What can I help you with?"


_LEADS = {
    "human_requested": "Of course, I'll get a person for you.",
    "frustration": "Sorry that didn't help.",
    "staff_topic": "That needs someone who can look at your account.",
    "low_confidence": "I'm not sure I understood that well enough to answer.",
    "expert_needed": "I don't have a good answer to that in our help articles.",
    "llm_escalated": "I'd rather not guess on this one.",
    "bot_error": "Sorry, I can't look that up right now.",
    "bot_unavailable": "Sorry, I can't answer that right now.",
    "rasa_fallback": "I'm not sure I understood that well enough to answer.",
}


def handover_notice(decision: Decision, brand: str, nobody_available: bool = False) -> str:
    """Tells the customer who takes over and what happens next (honestly, when nobody can)."""
    lead = _LEADS.get(decision.reason or "", "")
    who = f"the {brand} support team" if decision.route == "staff" else f"a {brand} product expert"
    if nobody_available:
        return (
            f"{lead} I'm passing our conversation to {who}, but nobody is available right "
            "now. Leave your e-mail address and we'll answer by e-mail; your conversation is "
            "kept, and if someone comes online first they'll reply right here."
        ).strip()
    return (
        f"{lead} I'm passing our conversation to {who}, so you won't need to repeat yourself. "
        "They'll reply right here in this chat, usually within a few minutes; you can keep "
        "this window open or come back to it later."
    ).strip()
