"""What a period's report reads: counts grouped in the database (per UTC day), and the few
columns of each handoff and rating in the period (percentiles are taken by the caller).

Every query is bounded by the brand and `[since, until)` on an indexed creation time, so a
report over 100,000 conversations stays a handful of index range scans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Select, case, cast, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from gigcx.store.models import (
    AnswerRating,
    Conversation,
    Csat,
    DecisionTrail,
    Handoff,
    LedgerEntry,
    Message,
)
from gigcx.store.repository import Repository


def percentile(ordered: Sequence[float], percent: float) -> float | None:
    """Nearest-rank percentile of sorted values (what PostgreSQL's percentile_disc gives)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Waits:
    """How many handoffs waited for something, and the p50 and p90 of those waits (s)."""

    count: int
    p50: float | None
    p90: float | None

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Waits:
        ordered = sorted(seconds)
        return cls(len(ordered), percentile(ordered, 50), percentile(ordered, 90))


@dataclass(frozen=True)
class HandoffStats:
    """A period's handoffs: (day, reason, route, how many), and the seconds each took from
    opening to its claim, its first person's reply and (resolved ones) its resolution."""

    counts: list[tuple[date, str, str, int]]
    to_claim: Waits
    to_first_reply: Waits
    to_resolve: Waits


@dataclass(frozen=True)
class Rated:
    """Ratings given on one day with one score: thumbs (1 up, 0 down) on bot answers, or a
    1-5 CSAT of resolutions on a route."""

    day: date
    score: int
    route: str  # "bot", "expert" or "staff"
    count: int


@dataclass(frozen=True)
class ConversationLine:
    id: str
    created_at: datetime
    state: str
    answers: int
    clarifications: int
    messages: int
    first_question: str
    reason: str | None
    route: str | None


def _day(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column, on SQLite and PostgreSQL."""
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite keeps UTC wall times


def _seconds(start: Any, end: Any, dialect: str) -> ColumnElement[Any]:
    """Seconds from `start` to `end` (NULL when `end` is), on SQLite and PostgreSQL."""
    if dialect == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


class Reports(Repository):
    async def conversations_per_day(
        self, brand: str, since: datetime, until: datetime
    ) -> dict[date, int]:
        async with self._reads() as session:
            day = _day(Conversation.created_at, self.engine.dialect.name)
            rows = await session.execute(
                select(day, func.count())
                .where(
                    Conversation.brand == brand,
                    Conversation.created_at >= since,
                    Conversation.created_at < until,
                )
                .group_by(day)
            )
            return {_as_date(d): int(n) for d, n in rows.all()}

    async def decisions_per_day(
        self, brand: str, since: datetime, until: datetime
    ) -> dict[tuple[date, str], int]:
        """{(day, action): bot turns} for the bot's answers, clarifications, escalations..."""
        async with self._reads() as session:
            day = _day(DecisionTrail.created_at, self.engine.dialect.name)
            rows = await session.execute(
                select(day, DecisionTrail.action, func.count())
                .where(
                    DecisionTrail.brand == brand,
                    DecisionTrail.created_at >= since,
                    DecisionTrail.created_at < until,
                )
                .group_by(day, DecisionTrail.action)
            )
            return {(_as_date(d), str(action)): int(n) for d, action, n in rows.all()}

    async def contained_conversations(self, brand: str, since: datetime, until: datetime) -> int:
        """Conversations started in the period that the bot answered and never handed over."""
        async with self._reads() as session:
            answered = exists().where(
                DecisionTrail.conversation_id == Conversation.id, DecisionTrail.action == "answer"
            )
            handed = exists().where(Handoff.conversation_id == Conversation.id)
            count = await session.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(
                    Conversation.brand == brand,
                    Conversation.created_at >= since,
                    Conversation.created_at < until,
                    answered,
                    ~handed,
                )
            )
            return int(count or 0)

    async def handoff_stats(self, brand: str, since: datetime, until: datetime) -> HandoffStats:
        """The handoffs opened in the period: counted per day, reason and route, and how long
        each took to be claimed, replied to and resolved (seconds, computed in the database:
        only numbers cross the wire, not 30,000 rows of timestamps)."""
        dialect = self.engine.dialect.name
        day = _day(Handoff.created_at, dialect)
        scope = (
            select()
            .select_from(Handoff)
            .join(Conversation, Conversation.id == Handoff.conversation_id)
            .where(
                Conversation.brand == brand,
                Handoff.created_at >= since,
                Handoff.created_at < until,
            )
        )
        async with self._reads() as session:
            counts = await session.execute(
                scope.add_columns(day, Handoff.reason, Handoff.route, func.count()).group_by(
                    day, Handoff.reason, Handoff.route
                )
            )
            grouped = [
                (_as_date(d), str(reason), str(route), int(n)) for d, reason, route, n in counts
            ]
            waits = [
                _seconds(Handoff.created_at, Handoff.claimed_at, dialect),
                _seconds(Handoff.created_at, Handoff.first_reply_at, dialect),
                case(
                    (
                        Handoff.state == "resolved",
                        _seconds(Handoff.created_at, Handoff.closed_at, dialect),
                    ),
                    else_=None,
                ),
            ]
            if dialect == "postgresql":
                # Percentiles in the database: three rows of numbers instead of every handoff.
                summaries = []
                row = (
                    await session.execute(
                        scope.add_columns(
                            *(
                                part
                                for wait in waits
                                for part in (
                                    func.count(wait),
                                    func.percentile_disc(0.5).within_group(wait),
                                    func.percentile_disc(0.9).within_group(wait),
                                )
                            )
                        )
                    )
                ).one()
                for n in range(3):
                    count, p50, p90 = row[3 * n : 3 * n + 3]
                    summaries.append(
                        Waits(
                            int(count),
                            None if p50 is None else max(0.0, float(p50)),
                            None if p90 is None else max(0.0, float(p90)),
                        )
                    )
            else:
                columns: list[list[float]] = [[], [], []]
                for values in await session.execute(scope.add_columns(*waits)):
                    for column, value in zip(columns, values, strict=True):
                        if value is not None:
                            column.append(round(max(0.0, float(value)), 3))
                summaries = [Waits.of(column) for column in columns]
        return HandoffStats(grouped, *summaries)

    async def ratings(self, brand: str, since: datetime, until: datetime) -> list[Rated]:
        """Thumbs on bot answers (1 helpful, 0 not) and CSAT of resolutions (1-5, with the
        route of the handoff rated), given in the period."""
        dialect = self.engine.dialect.name
        async with self._reads() as session:
            thumbs_day = _day(AnswerRating.created_at, dialect)
            thumbs = await session.execute(
                select(thumbs_day, AnswerRating.helpful, func.count())
                .where(
                    AnswerRating.brand == brand,
                    AnswerRating.created_at >= since,
                    AnswerRating.created_at < until,
                )
                .group_by(thumbs_day, AnswerRating.helpful)
            )
            result = [
                Rated(_as_date(d), int(bool(helpful)), "bot", int(n))
                for d, helpful, n in thumbs.all()
            ]
            csat_day = _day(Csat.created_at, dialect)
            scores = await session.execute(
                select(csat_day, Csat.score, Handoff.route, func.count())
                .join(Handoff, Handoff.id == Csat.handoff_id)
                .join(Conversation, Conversation.id == Csat.conversation_id)
                .where(
                    Conversation.brand == brand,
                    Csat.created_at >= since,
                    Csat.created_at < until,
                )
                .group_by(csat_day, Csat.score, Handoff.route)
            )
            result += [
                Rated(_as_date(d), int(score), str(route), int(n))
                for d, score, route, n in scores.all()
            ]
            return result

    async def ledger_rows(
        self, brand: str, since: datetime, until: datetime
    ) -> list[tuple[str, int, int | None, Decimal, str]]:
        """The period's paid resolutions as plain tuples (expert, handle seconds, CSAT,
        payout, currency): the experts table reads tens of thousands, not ORM rows."""
        async with self._reads() as session:
            rows = await session.execute(
                select(
                    LedgerEntry.expert,
                    LedgerEntry.handle_seconds,
                    LedgerEntry.csat,
                    LedgerEntry.payout,
                    LedgerEntry.currency,
                ).where(
                    LedgerEntry.brand == brand,
                    LedgerEntry.resolved_at >= since,
                    LedgerEntry.resolved_at < until,
                )
            )
            return [tuple(row) for row in rows.all()]  # type: ignore[misc]

    async def open_per_assignee(self, brand: str) -> dict[str, int]:
        """{expert id: handoffs they hold now}."""
        async with self._reads() as session:
            rows = await session.execute(
                select(Handoff.assignee, func.count())
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(Conversation.brand == brand, Handoff.state == "assigned")
                .group_by(Handoff.assignee)
            )
            return {str(key): int(n) for key, n in rows.all() if key is not None}

    async def conversation_lines(
        self,
        brand: str,
        since: datetime,
        until: datetime,
        *,
        outcome: str | None = None,
        before: datetime | None = None,
        limit: int = 50,
    ) -> list[ConversationLine]:
        """The period's conversations, newest first, `limit` at a time (`before`: the
        `created_at` of the last one shown); `outcome` narrows to "escalated", "answered"
        (answered, never handed over), "clarified" (only clarified) or "no reply"."""
        answered = exists().where(
            DecisionTrail.conversation_id == Conversation.id, DecisionTrail.action == "answer"
        )
        clarified = exists().where(
            DecisionTrail.conversation_id == Conversation.id, DecisionTrail.action == "clarify"
        )
        handed = exists().where(Handoff.conversation_id == Conversation.id)
        upper = min(until, before) if before is not None else until
        where: list[ColumnElement[bool]] = [
            Conversation.brand == brand,
            Conversation.created_at >= since,
            Conversation.created_at < upper,
        ]
        narrowed = {
            "escalated": [handed],
            "answered": [answered, ~handed],
            "clarified": [clarified, ~answered, ~handed],
            "no reply": [~clarified, ~answered, ~handed],
        }
        if outcome is not None:
            where += narrowed[outcome]
        async with self._reads() as session:
            conversations = list(
                await session.scalars(
                    select(Conversation)
                    .where(*where)
                    .order_by(Conversation.created_at.desc(), Conversation.id)
                    .limit(limit)
                )
            )
            ids = [c.id for c in conversations]
            if not ids:
                return []
            actions = await _grouped(
                session,
                select(DecisionTrail.conversation_id, DecisionTrail.action, func.count())
                .where(DecisionTrail.conversation_id.in_(ids))
                .group_by(DecisionTrail.conversation_id, DecisionTrail.action),
            )
            first_seq = (
                select(Message.conversation_id, func.min(Message.seq).label("seq"))
                .where(Message.conversation_id.in_(ids), Message.author == "customer")
                .group_by(Message.conversation_id)
                .subquery()
            )
            questions = dict(
                (
                    await session.execute(
                        select(Message.conversation_id, Message.text).join(
                            first_seq,
                            (first_seq.c.conversation_id == Message.conversation_id)
                            & (first_seq.c.seq == Message.seq),
                        )
                    )
                ).all()
            )
            handoffs: dict[str, tuple[str, str]] = {}
            for conversation_id, reason, route in (
                await session.execute(
                    select(Handoff.conversation_id, Handoff.reason, Handoff.route)
                    .where(Handoff.conversation_id.in_(ids))
                    .order_by(Handoff.created_at)
                )
            ).all():
                handoffs.setdefault(conversation_id, (reason, route))
        return [
            ConversationLine(
                id=c.id,
                created_at=c.created_at,
                state=c.state,
                answers=actions.get((c.id, "answer"), 0),
                clarifications=actions.get((c.id, "clarify"), 0),
                messages=c.last_seq,
                first_question=str(questions.get(c.id, "")),
                reason=handoffs.get(c.id, (None, None))[0],
                route=handoffs.get(c.id, (None, None))[1],
            )
            for c in conversations
        ]

    async def handoffs_of(self, conversation_id: str) -> list[Handoff]:
        """The conversation's handoffs, oldest first."""
        async with self._reads() as session:
            rows = await session.scalars(
                select(Handoff)
                .where(Handoff.conversation_id == conversation_id)
                .order_by(Handoff.created_at)
            )
            return list(rows)

    async def gap_trails(
        self, brand: str, since: datetime, until: datetime, limit: int
    ) -> tuple[list[DecisionTrail], list[tuple[DecisionTrail, datetime]], dict[str, str]]:
        """What knowledge gaps are made of: the bot's escalations in the period (newest
        `limit`), the bot answers rated unhelpful in it (with the rating's time), and for
        conversations escalated on a request for a person or frustration, the last question
        the bot had searched for before ({conversation id: query})."""
        async with self._reads() as session:
            escalated = list(
                await session.scalars(
                    select(DecisionTrail)
                    .where(
                        DecisionTrail.brand == brand,
                        DecisionTrail.action == "escalate",
                        DecisionTrail.created_at >= since,
                        DecisionTrail.created_at < until,
                    )
                    .order_by(DecisionTrail.created_at.desc())
                    .limit(limit)
                )
            )
            low = (
                await session.execute(
                    select(DecisionTrail, AnswerRating.created_at)
                    .join(
                        AnswerRating,
                        (AnswerRating.conversation_id == DecisionTrail.conversation_id)
                        & (AnswerRating.seq == DecisionTrail.seq),
                    )
                    .where(
                        AnswerRating.brand == brand,
                        AnswerRating.helpful.is_(False),
                        AnswerRating.created_at >= since,
                        AnswerRating.created_at < until,
                    )
                    .order_by(AnswerRating.created_at.desc())
                    .limit(limit)
                )
            ).all()
            asked_for_person = [
                t.conversation_id
                for t in escalated
                if t.reason in ("human_requested", "frustration")
            ]
            earlier: dict[str, str] = {}
            for chunk in range(0, len(asked_for_person), 500):
                rows = await session.execute(
                    select(DecisionTrail.conversation_id, DecisionTrail.query)
                    .where(
                        DecisionTrail.conversation_id.in_(asked_for_person[chunk : chunk + 500]),
                        DecisionTrail.action.in_(("answer", "clarify")),
                    )
                    .order_by(DecisionTrail.seq)
                )
                earlier.update({cid: query for cid, query in rows.all() if query})
        return escalated, [(t, at) for t, at in low], earlier


async def _grouped(session: AsyncSession, query: Select[Any]) -> dict[tuple[str, str], int]:
    return {(str(a), str(b)): int(n) for a, b, n in (await session.execute(query)).all()}


__all__: Sequence[str] = (
    "ConversationLine",
    "HandoffStats",
    "Rated",
    "Reports",
    "Waits",
    "percentile",
)
