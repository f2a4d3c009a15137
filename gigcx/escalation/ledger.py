"""What each expert is owed: the ledger of paid resolutions, summed per expert per month."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from gigcx.store import ConversationStore
from gigcx.store.models import LedgerEntry

MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


class BadMonth(ValueError):
    """A month that is not YYYY-MM."""


@dataclass(frozen=True)
class ExpertStatement:
    expert: str
    name: str
    resolutions: int
    payout: Decimal
    currency: str
    average_handle_minutes: float
    average_csat: float | None
    rated: int


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """The first instant of `month` (YYYY-MM, UTC) and of the month after."""
    match = MONTH.match(month)
    if match is None:
        raise BadMonth(f"--month {month!r} is not a month: use YYYY-MM, e.g. 2026-11")
    year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end


async def ledger_for_month(store: ConversationStore, brand: str, month: str) -> list[LedgerEntry]:
    start, end = month_bounds(month)
    return await store.ledger(brand, start, end)


async def statements(store: ConversationStore, brand: str, month: str) -> list[ExpertStatement]:
    """One line per expert who resolved something in `month`: count, payout, handle time, CSAT."""
    entries = await ledger_for_month(store, brand, month)
    names = {e.key: e.name for e in await store.experts(brand)}
    by_expert: dict[str, list[LedgerEntry]] = {}
    for entry in entries:
        by_expert.setdefault(entry.expert, []).append(entry)
    result = []
    for expert, rows in sorted(by_expert.items()):
        rated = [row.csat for row in rows if row.csat is not None]
        result.append(
            ExpertStatement(
                expert=expert,
                name=names.get(expert, expert),
                resolutions=len(rows),
                payout=sum((row.payout for row in rows), Decimal(0)),
                currency=rows[0].currency,
                average_handle_minutes=round(
                    sum(row.handle_seconds for row in rows) / len(rows) / 60, 1
                ),
                average_csat=round(sum(rated) / len(rated), 2) if rated else None,
                rated=len(rated),
            )
        )
    return result
