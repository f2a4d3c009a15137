"""The questions knowledge gaps are made of, read from the store: what the bot escalated and
the answers customers rated unhelpful in a period; grouped by meaning in `gaps.find_gaps`."""

from __future__ import annotations

import asyncio

from gigcx.escalation.redaction import redact
from gigcx.insights.gaps import GapCluster, GapQuestion, find_gaps
from gigcx.insights.report import Period
from gigcx.knowledge.embeddings import Embedder
from gigcx.store import ConversationStore
from gigcx.store.models import DecisionTrail

MAX_QUESTIONS = 20_000  # the newest escalations (and as many low ratings) a period groups
_FOR_A_PERSON = ("human_requested", "frustration")


def _titles(trail: DecisionTrail) -> tuple[str, ...]:
    titles = []
    for passage in trail.passages or []:
        if isinstance(passage, dict) and passage.get("title"):
            section = passage.get("section") or ""
            title = str(passage["title"])
            titles.append(f"{title} > {section}" if section and section != title else title)
    return tuple(dict.fromkeys(titles))


async def gap_questions(
    store: ConversationStore, brand: str, period: Period, *, limit: int = MAX_QUESTIONS
) -> list[GapQuestion]:
    """Escalated questions (for "a person please", the question asked before it; skipped if
    there was none) and low-rated answers' questions, personal data masked."""
    escalated, low, earlier = await store.gap_trails(brand, period.since, period.until, limit)
    questions = []
    for trail in escalated:
        text = trail.query
        if trail.reason in _FOR_A_PERSON:
            text = earlier.get(trail.conversation_id, "")
        if text.strip():
            questions.append(
                GapQuestion(
                    text=redact(text.strip()),
                    conversation_id=trail.conversation_id,
                    created_at=trail.created_at,
                    kind="escalated",
                    reason=trail.reason,
                    route=trail.route,
                    product=trail.product,
                    passages=_titles(trail),
                )
            )
    for trail, rated_at in low:
        if trail.query.strip():
            questions.append(
                GapQuestion(
                    text=redact(trail.query.strip()),
                    conversation_id=trail.conversation_id,
                    created_at=rated_at,
                    kind="low_rated",
                    reason="rated_unhelpful",
                    route=None,
                    product=trail.product,
                    passages=_titles(trail),
                )
            )
    return questions


async def knowledge_gaps(
    store: ConversationStore, embedder: Embedder, brand: str, period: Period, *, limit: int = 30
) -> list[GapCluster]:
    """The period's gaps, largest first; embedding and grouping run off the event loop."""
    questions = await gap_questions(store, brand, period)
    return await asyncio.to_thread(find_gaps, questions, embedder.embed_documents, limit=limit)
