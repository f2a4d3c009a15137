"""Knowledge drafts from expert answers: when a gig expert resolves a conversation, the
customer's question (with similar questions customers asked lately), the expert's answer,
product and tags become a pending draft, personal data masked. The brand team edits,
accepts (a `*.faq.yml` file in the knowledge's `drafts/` folder) or rejects it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np

from gigcx.config import Settings
from gigcx.escalation.redaction import redact
from gigcx.insights.knowledge_gaps import gap_questions
from gigcx.insights.report import Period
from gigcx.knowledge.drafts_folder import (
    DraftFileError,
    remove_entry,
    render_entry,
    slug,
    write_entry,
)
from gigcx.store import ConversationStore, Handoff
from gigcx.store.models import DecisionTrail, KnowledgeDraft, Message

log = logging.getLogger(__name__)

# Reasons whose own query is not the question ("a person please", "that didn't help"): the
# question is what the bot was asked before.
_NOT_THE_QUESTION = {"human_requested", "frustration"}
SIMILAR = 0.78  # cosine at which another customer's question counts as the same question
SIMILAR_POOL = 300  # the latest escalated questions compared with a new draft
MAX_ALTERNATIVES = 5
CATCH_UP = timedelta(days=30)
MAX_TEXT = 4000
MAX_TAGS = 3

Embed = Callable[[list[str]], list[list[float]]]


class DraftError(ValueError):
    """A draft cannot be changed as asked; the message says why (for a page or the CLI)."""


def _question(handoff: Handoff, trails: list[DecisionTrail], messages: list[Message]) -> str:
    before = [t for t in trails if t.created_at <= handoff.created_at]
    escalate = next((t for t in reversed(before) if t.action == "escalate"), None)
    if escalate is not None and escalate.reason not in _NOT_THE_QUESTION and escalate.query:
        return escalate.query
    asked = [t.query for t in before if t.action in ("answer", "clarify") and t.query]
    if asked:
        return asked[-1]
    said = [
        m.text for m in messages if m.author == "customer" and m.created_at <= handoff.created_at
    ]
    return escalate.query if escalate is not None and escalate.query else (said[0] if said else "")


def _answer(handoff: Handoff, messages: list[Message]) -> str:
    closed = handoff.closed_at or datetime.now(UTC)
    said = [
        m.text.strip()
        for m in messages
        if m.author == "expert" and handoff.created_at <= m.created_at <= closed
    ]
    return "\n\n".join(text for text in said if text)


class Drafter:
    """Makes the draft of a gig expert's resolution; `embed` finds similar questions."""

    def __init__(self, settings: Settings, store: ConversationStore, embed: Embed | None) -> None:
        self.settings = settings
        self.store = store
        self.embed = embed

    async def __call__(self, handoff: Handoff) -> KnowledgeDraft | None:
        """The draft for a resolved handoff (None for staff's, or when the expert wrote
        nothing); making it twice returns the first."""
        if handoff.route != "expert" or handoff.state != "resolved":
            return None
        messages = await self.store.messages_after(handoff.conversation_id, 0, 1000)
        trails = await self.store.decision_trails(handoff.conversation_id)
        regions = self.settings.escalation.phone_regions
        question = redact(_question(handoff, trails, messages), regions)[:MAX_TEXT].strip()
        answer = redact(_answer(handoff, messages), regions)[:MAX_TEXT].strip()
        if not question or not answer:
            return None
        escalate = next((t for t in reversed(trails) if t.action == "escalate"), None)
        tagged = [tag.split(":", 1) for tag in handoff.tags if ":" in tag]
        product = escalate.product if escalate is not None and escalate.product else None
        product = product or next((value for kind, value in tagged if kind == "product"), None)
        # The first few topics the router saw; the team edits them.
        tags = [value for kind, value in tagged if kind == "topic"][:MAX_TAGS]
        alternatives = await self._similar(question, handoff)
        return await self.store.add_draft(
            brand=self.settings.brand,
            handoff_id=handoff.id,
            conversation_id=handoff.conversation_id,
            question=question,
            alternatives=alternatives,
            answer=answer,
            product=product,
            tags=tags,
            expert=handoff.assignee or "",
        )

    async def catch_up(self) -> int:
        """Draft the resolutions of the last 30 days that have none; how many were made."""
        since = datetime.now(UTC) - CATCH_UP
        made = 0
        for handoff in await self.store.resolved_without_draft(self.settings.brand, since):
            try:
                made += await self(handoff) is not None
            except Exception:
                log.exception("could not draft knowledge from handoff %s", handoff.id)
        return made

    async def _similar(self, question: str, handoff: Handoff) -> list[str]:
        """Other customers' recent escalated questions that mean the same (masked)."""
        if self.embed is None:
            return []
        now = datetime.now(UTC)
        recent = Period(now - CATCH_UP, now + timedelta(seconds=1), "last 30 days")
        asked = await gap_questions(self.store, self.settings.brand, recent, limit=SIMILAR_POOL)
        seen = {" ".join(question.lower().split())}
        candidates = []
        for other in asked:
            key = " ".join(other.text.lower().split())
            if other.kind != "escalated" or other.conversation_id == handoff.conversation_id:
                continue
            if key not in seen and len(other.text) <= 300:
                seen.add(key)
                candidates.append(other.text)
        if not candidates:
            return []
        try:
            vectors = await asyncio.to_thread(self.embed, [question, *candidates])
        except Exception:
            log.warning("no similar questions for the draft: embedding failed", exc_info=True)
            return []
        matrix = np.asarray(vectors, dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-9
        scores = matrix[1:] @ matrix[0]
        best = np.argsort(-scores, kind="stable")[:MAX_ALTERNATIVES]
        return [candidates[i] for i in best if scores[i] >= SIMILAR]


# --- the brand team's review ----------------------------------------------------------------


async def list_drafts(
    store: ConversationStore, brand: str, state: str | None = None
) -> list[KnowledgeDraft]:
    if state is not None and state not in ("pending", "accepted", "rejected"):
        raise DraftError(f"state {state!r} is not one of: pending, accepted, rejected")
    return await store.drafts(brand, state)


async def get_draft(store: ConversationStore, brand: str, draft_id: str) -> KnowledgeDraft:
    draft = await store.find_draft(brand, draft_id)
    if draft is None:
        raise LookupError(f"no draft {draft_id!r}")
    return draft


def _clean_lines(values: list[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for value in values:
        text = " ".join(value.split())
        if text and text.lower() not in seen:
            seen.add(text.lower())
            result.append(text)
    return result


async def edit_draft(
    store: ConversationStore,
    brand: str,
    draft_id: str,
    *,
    question: str,
    alternatives: list[str],
    answer: str,
    product: str | None,
    tags: list[str],
) -> KnowledgeDraft:
    draft = await get_draft(store, brand, draft_id)
    question, answer = " ".join(question.split()), answer.strip()
    if not question:
        raise DraftError("question: write the question customers ask")
    if not answer:
        raise DraftError("answer: write the answer the bot should give")
    if len(question) > MAX_TEXT or len(answer) > MAX_TEXT:
        raise DraftError(f"question and answer: at most {MAX_TEXT} characters each")
    changed = await store.edit_draft_fields(
        draft.id,
        question=question,
        alternatives=_clean_lines(alternatives)[:50],
        answer=answer,
        product=(product or "").strip() or None,
        tags=_clean_lines(tags)[:20],
    )
    if not changed:
        raise DraftError(f"this draft was {draft.state} already; it can no longer be edited")
    return await get_draft(store, brand, draft_id)


async def accept_draft(
    store: ConversationStore, settings: Settings, draft_id: str, *, by: str
) -> KnowledgeDraft:
    """Write the draft into the knowledge's drafts folder and mark it accepted."""
    draft = await get_draft(store, settings.brand, draft_id)
    if draft.state != "pending":
        raise DraftError(f"this draft was {draft.state} already")
    entry: dict[str, object] = {"question": draft.question}
    if draft.alternatives:
        entry["alternatives"] = list(draft.alternatives)
    entry["answer"] = draft.answer
    if draft.product:
        entry["product"] = draft.product
    if draft.tags:
        entry["tags"] = list(draft.tags)
    root = settings.knowledge.path
    try:
        text = render_entry(
            entry,
            where=f"conversation {draft.conversation_id}, expert {draft.expert}",
            by=by,
            day=datetime.now(UTC).date(),
        )
        relative = await asyncio.to_thread(
            write_entry, root, f"{slug(draft.question)}-{draft.id[:6]}", text
        )
    except (DraftFileError, OSError) as error:
        raise DraftError(f"could not write the draft into {root}: {error}") from None
    if not await store.decide_draft(draft.id, "accepted", by, relative.as_posix()):
        await asyncio.to_thread(remove_entry, root, relative.as_posix())
        raise DraftError("someone else decided on this draft first")
    return await get_draft(store, settings.brand, draft_id)


async def reject_draft(
    store: ConversationStore, brand: str, draft_id: str, *, by: str
) -> KnowledgeDraft:
    draft = await get_draft(store, brand, draft_id)
    if not await store.decide_draft(draft.id, "rejected", by):
        raise DraftError(f"this draft was {draft.state} already")
    return await get_draft(store, brand, draft_id)
