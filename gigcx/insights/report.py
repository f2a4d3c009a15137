"""The overview of a period for brand teams: what the bot answered, clarified and escalated,
how fast people claimed, replied and resolved, how customers rated bot and people, per day;
and per expert. Read from the store the server writes; shown by `/admin` and `gigcx report`.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from gigcx.escalation.ledger import BadMonth, month_bounds
from gigcx.store import ConversationStore
from gigcx.store.reports import Rated, Waits, percentile

MAX_DAYS = 3660
SATISFIED = 4  # a CSAT of 4 or 5 (of 5) counts as satisfied
OUTCOMES = ("answered", "clarified", "escalated", "no reply")


@dataclass(frozen=True)
class Period:
    since: datetime  # aware UTC, inclusive
    until: datetime  # exclusive
    label: str

    @classmethod
    def month(cls, value: str) -> Period:
        """`YYYY-MM`, in UTC; ValueError naming the value otherwise."""
        try:
            since, until = month_bounds(value)
        except BadMonth:
            raise ValueError(f"month {value!r} is not a month: use YYYY-MM, e.g. 2026-11") from None
        return cls(since, until, since.strftime("%B %Y"))

    @classmethod
    def last_days(cls, days: int, now: datetime | None = None) -> Period:
        """The `days` whole UTC days up to and including today."""
        if not 1 <= days <= MAX_DAYS:
            raise ValueError(f"days {days!r} is out of range: use 1 to {MAX_DAYS}")
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        until = datetime(today.year, today.month, today.day, tzinfo=UTC) + timedelta(days=1)
        return cls(until - timedelta(days=days), until, f"last {days} days")

    def days(self) -> list[date]:
        first = self.since.date()
        return [first + timedelta(days=n) for n in range((self.until - self.since).days)]


# How long handoffs waited (count, p50, p90 in seconds), e.g. to be claimed.
Durations = Waits


@dataclass(frozen=True)
class Satisfaction:
    rated: int
    satisfied: int
    average: float | None  # on 1-5 for CSAT; None for thumbs on bot answers

    @property
    def share(self) -> float | None:
        return self.satisfied / self.rated if self.rated else None


@dataclass(frozen=True)
class Day:
    day: date
    conversations: int
    bot_answers: int
    clarified: int
    escalated: int
    bot_rated: int
    bot_helpful: int
    csat_rated: int
    csat_satisfied: int


@dataclass(frozen=True)
class Overview:
    brand: str
    period: Period
    conversations: int
    bot_answers: int  # bot turns that answered
    contained: int  # conversations the bot answered and never handed over
    clarified: int  # bot turns that asked a clarifying question
    escalated: int  # handoffs opened
    by_reason: tuple[tuple[str, int], ...]
    by_route: tuple[tuple[str, int], ...]
    time_to_claim: Durations
    time_to_first_reply: Durations
    resolution_time: Durations
    csat_bot: Satisfaction
    csat_expert: Satisfaction
    csat_staff: Satisfaction
    days: tuple[Day, ...]  # every day of the period, zeros included


@dataclass(frozen=True)
class ExpertRow:
    key: str
    name: str
    tier: str
    active: bool
    available: bool
    open_handoffs: int
    resolutions: int
    handle_p50: float | None  # seconds
    csat: Satisfaction
    payout: Decimal
    currency: str


@dataclass(frozen=True)
class ConversationRow:
    id: str
    created_at: datetime
    state: str
    outcome: str  # one of OUTCOMES
    first_question: str
    messages: int
    reason: str | None
    route: str | None


def _satisfaction(ratings: Iterable[Rated], route: str) -> Satisfaction:
    rated = satisfied = total = 0
    for r in ratings:
        if r.route != route:
            continue
        rated += r.count
        total += r.score * r.count
        if (r.score >= SATISFIED) if route != "bot" else r.score == 1:
            satisfied += r.count
    average = round(total / rated, 2) if rated and route != "bot" else None
    return Satisfaction(rated, satisfied, average)


def _ranked(counter: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


async def overview(store: ConversationStore, brand: str, period: Period) -> Overview:
    since, until = period.since, period.until
    # Independent reads, side by side (each its own connection).
    per_day, decisions, contained, handoffs, ratings = await asyncio.gather(
        store.conversations_per_day(brand, since, until),
        store.decisions_per_day(brand, since, until),
        store.contained_conversations(brand, since, until),
        store.handoff_stats(brand, since, until),
        store.ratings(brand, since, until),
    )
    escalated_per_day: Counter[date] = Counter()
    by_reason: Counter[str] = Counter()
    by_route: Counter[str] = Counter()
    for day, reason, route, count in handoffs.counts:
        escalated_per_day[day] += count
        by_reason[reason] += count
        by_route[route] += count
    rated_per_day: dict[tuple[date, str], list[Rated]] = defaultdict(list)
    for r in ratings:
        rated_per_day[(r.day, "bot" if r.route == "bot" else "people")].append(r)
    days = []
    for day in period.days():
        bot = rated_per_day.get((day, "bot"), [])
        people = rated_per_day.get((day, "people"), [])
        days.append(
            Day(
                day=day,
                conversations=per_day.get(day, 0),
                bot_answers=decisions.get((day, "answer"), 0),
                clarified=decisions.get((day, "clarify"), 0),
                escalated=escalated_per_day.get(day, 0),
                bot_rated=sum(r.count for r in bot),
                bot_helpful=sum(r.count for r in bot if r.score == 1),
                csat_rated=sum(r.count for r in people),
                csat_satisfied=sum(r.count for r in people if r.score >= SATISFIED),
            )
        )
    return Overview(
        brand=brand,
        period=period,
        conversations=sum(per_day.values()),
        bot_answers=sum(n for (_, action), n in decisions.items() if action == "answer"),
        contained=contained,
        clarified=sum(n for (_, action), n in decisions.items() if action == "clarify"),
        escalated=sum(by_route.values()),
        by_reason=_ranked(by_reason),
        by_route=_ranked(by_route),
        time_to_claim=handoffs.to_claim,
        time_to_first_reply=handoffs.to_first_reply,
        resolution_time=handoffs.to_resolve,
        csat_bot=_satisfaction(ratings, "bot"),
        csat_expert=_satisfaction(ratings, "expert"),
        csat_staff=_satisfaction(ratings, "staff"),
        days=tuple(days),
    )


async def experts_report(store: ConversationStore, brand: str, period: Period) -> list[ExpertRow]:
    """Every expert of the brand (and anyone the ledger names), most resolutions first."""
    entries = await store.ledger_rows(brand, period.since, period.until)
    holding = await store.open_per_assignee(brand)
    experts = {e.key: e for e in await store.experts(brand)}
    by_expert: dict[str, list[tuple[str, int, int | None, Decimal, str]]] = defaultdict(list)
    for entry in entries:
        by_expert[entry[0]].append(entry)
    rows = []
    for key in set(experts) | set(by_expert):
        mine = by_expert.get(key, [])
        scores = [csat for _, _, csat, _, _ in mine if csat is not None]
        expert = experts.get(key)
        rows.append(
            ExpertRow(
                key=key,
                name=expert.name if expert else key,
                tier=expert.tier if expert else "gig",
                active=bool(expert and expert.active),
                available=bool(expert and expert.active and expert.available),
                open_handoffs=holding.get(key, 0),
                resolutions=len(mine),
                handle_p50=percentile(sorted(float(e[1]) for e in mine), 50),
                csat=Satisfaction(
                    len(scores),
                    sum(1 for s in scores if s >= SATISFIED),
                    round(sum(scores) / len(scores), 2) if scores else None,
                ),
                payout=sum((e[3] for e in mine), Decimal(0)),
                currency=mine[0][4] if mine else "",
            )
        )
    return sorted(rows, key=lambda r: (-r.resolutions, not r.active, r.name.lower()))


async def conversation_rows(
    store: ConversationStore,
    brand: str,
    period: Period,
    *,
    outcome: str | None = None,
    before: datetime | None = None,
    limit: int = 50,
) -> list[ConversationRow]:
    """The period's conversations, newest first; ValueError for an unknown `outcome`."""
    if outcome is not None and outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of: {', '.join(OUTCOMES)}")
    lines = await store.conversation_lines(
        brand, period.since, period.until, outcome=outcome, before=before, limit=limit
    )
    return [
        ConversationRow(
            id=line.id,
            created_at=line.created_at,
            state=line.state,
            outcome=(
                "escalated"
                if line.reason is not None
                else "answered"
                if line.answers
                else "clarified"
                if line.clarifications
                else "no reply"
            ),
            first_question=line.first_question,
            messages=line.messages,
            reason=line.reason,
            route=line.route,
        )
        for line in lines
    ]


# --- as text: `gigcx report --format md|json|csv` -------------------------------------------


def as_dict(report: Overview) -> dict[str, Any]:
    data = asdict(report)
    data["period"] = {
        "since": report.period.since.isoformat(),
        "until": report.period.until.isoformat(),
        "label": report.period.label,
    }
    data["by_reason"] = dict(report.by_reason)
    data["by_route"] = dict(report.by_route)
    for name in ("csat_bot", "csat_expert", "csat_staff"):
        data[name]["share"] = _round(getattr(report, name).share)
    data["days"] = [{**asdict(day), "day": day.day.isoformat()} for day in report.days]
    return data


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def human_duration(seconds: float | None) -> str:
    """'45 s', '4 min', '1 h 20 min', '2 d 3 h'; '-' for none."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _share(s: Satisfaction) -> str:
    share = s.share
    return "no ratings" if share is None else f"{share:.0%} satisfied of {s.rated}"


def as_markdown(report: Overview) -> str:
    def pct(n: int) -> str:
        return f" ({n / report.conversations:.0%})" if report.conversations else ""

    lines = [
        f"# {report.brand}: {report.period.label}",
        "",
        f"{report.period.since:%Y-%m-%d} to {report.period.until - timedelta(seconds=1):%Y-%m-%d}"
        " (UTC)",
        "",
        "| | |",
        "|---|---:|",
        f"| Conversations | {report.conversations} |",
        f"| Bot answers | {report.bot_answers} |",
        f"| Answered by the bot, no handover | {report.contained}{pct(report.contained)} |",
        f"| Clarifying questions | {report.clarified} |",
        f"| Escalated | {report.escalated} |",
        "",
        "## Escalations",
        "",
        "| Reason | Handoffs |",
        "|---|---:|",
        *(f"| {reason} | {n} |" for reason, n in report.by_reason),
        "",
        "| Route | Handoffs |",
        "|---|---:|",
        *(f"| {route} | {n} |" for route, n in report.by_route),
        "",
        "## Response times",
        "",
        "| | p50 | p90 | n |",
        "|---|---:|---:|---:|",
    ]
    for label, durations in (
        ("Time to claim", report.time_to_claim),
        ("Time to first reply", report.time_to_first_reply),
        ("Resolution time", report.resolution_time),
    ):
        lines.append(
            f"| {label} | {human_duration(durations.p50)} | {human_duration(durations.p90)} "
            f"| {durations.count} |"
        )
    lines += [
        "",
        "## Satisfaction",
        "",
        f"- Bot answers (thumbs): {_share(report.csat_bot)}",
        f"- Gig experts (CSAT 1-5): {_share(report.csat_expert)}"
        + (f", average {report.csat_expert.average}" if report.csat_expert.average else ""),
        f"- Staff (CSAT 1-5): {_share(report.csat_staff)}"
        + (f", average {report.csat_staff.average}" if report.csat_staff.average else ""),
        "",
        "## Per day",
        "",
        "| Day | Conversations | Bot answers | Clarified | Escalated |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {d.day} | {d.conversations} | {d.bot_answers} | {d.clarified} | {d.escalated} |"
            for d in report.days
        ),
    ]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = (
    "day",
    "conversations",
    "bot_answers",
    "clarified",
    "escalated",
    "bot_rated",
    "bot_helpful",
    "csat_rated",
    "csat_satisfied",
)


def as_csv(report: Overview) -> str:
    """One row per day, then a `total` row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in report.days:
        writer.writerow([getattr(d, column) for column in CSV_COLUMNS])
    writer.writerow(
        ["total"] + [sum(getattr(d, column) for d in report.days) for column in CSV_COLUMNS[1:]]
    )
    return out.getvalue()
