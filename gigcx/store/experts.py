"""The expert registry (who may take handoffs, and how each channel knows them) and the
ledger of paid resolutions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gigcx.store.models import (
    Conversation,
    Csat,
    Expert,
    ExpertHandle,
    Handoff,
    InternalNote,
    LedgerEntry,
    as_utc,
    utcnow,
)
from gigcx.store.repository import Repository

_FIELDS = ("name", "skills", "languages", "tier", "capacity", "active")


class Experts(Repository):
    async def sync_experts(self, brand: str, experts: list[Expert]) -> dict[str, list[str]]:
        """Make the registry match `experts`, by gigcx id (`key`), handles included
        (availability is left as the experts set it); returns the ids added, updated and
        deactivated.

        Experts no longer listed are deactivated, not deleted: the ledger still names them.
        A handle listed for one expert is taken from whoever had it before.
        """
        report: dict[str, list[str]] = {"added": [], "updated": [], "deactivated": []}
        wanted_handles = {
            (channel, handle): wanted.key
            for wanted in experts
            for channel, handle in wanted.handles.items()
        }
        async with self._sessions.begin() as session:
            known = {
                e.key: e for e in await session.scalars(select(Expert).where(Expert.brand == brand))
            }
            await _keep_history_under_new_ids(session, brand, known, experts)
            moved = False
            for expert in known.values():
                keep = [
                    row
                    for row in expert.handle_rows
                    if wanted_handles.get((row.channel, row.handle), expert.key) == expert.key
                ]
                if len(keep) != len(expert.handle_rows):
                    expert.handle_rows = keep
                    moved = True
            if moved:
                await session.flush()  # a handle leaves its old expert before it is added
            for wanted in experts:
                existing = known.pop(wanted.key, None)
                if existing is None:
                    wanted.brand = brand
                    wanted.available = True
                    wanted.updated_at = utcnow()
                    for row in wanted.handle_rows:
                        row.brand = brand
                    session.add(wanted)
                    report["added"].append(wanted.key)
                    continue
                changed = any(getattr(existing, f) != getattr(wanted, f) for f in _FIELDS)
                if existing.handles != wanted.handles:
                    # A changed handle is updated in place: one row per expert and channel.
                    by_channel = {row.channel: row for row in existing.handle_rows}
                    rows = []
                    for channel, handle in wanted.handles.items():
                        row = by_channel.get(channel) or ExpertHandle(brand=brand, channel=channel)
                        row.handle = handle
                        rows.append(row)
                    existing.handle_rows = rows
                    changed = True
                if changed:
                    for name in _FIELDS:
                        setattr(existing, name, getattr(wanted, name))
                    existing.updated_at = utcnow()
                    report["updated"].append(wanted.key)
            for gone in known.values():
                if gone.active:
                    gone.active = False
                    gone.updated_at = utcnow()
                    report["deactivated"].append(gone.key)
        return report

    async def experts(self, brand: str) -> list[Expert]:
        async with self._reads() as session:
            rows = await session.scalars(
                select(Expert).where(Expert.brand == brand).order_by(Expert.name)
            )
            return list(rows)

    async def availability(self, brand: str, tier: str) -> tuple[int, int]:
        """How many of the brand's experts of `tier` are active, and how many of those are
        available: one count on every escalation, not every expert and their handles."""
        query = select(func.count(), func.count().filter(Expert.available)).where(
            Expert.brand == brand, Expert.tier == tier, Expert.active
        )
        async with self._reading.connect() as connection:
            active, available = (await connection.execute(query)).one()
        return int(active), int(available)

    async def find_expert(self, brand: str, key: str) -> Expert | None:
        """The brand's expert with gigcx id `key`."""
        async with self._reads() as session:
            return await session.scalar(
                select(Expert).where(Expert.brand == brand, Expert.key == key)
            )

    async def find_expert_by_handle(self, brand: str, channel: str, handle: str) -> Expert | None:
        """The brand's expert whom `channel` knows as `handle` (a Slack user id, say)."""
        async with self._reads() as session:
            return await session.scalar(
                select(Expert)
                .join(ExpertHandle, ExpertHandle.expert_id == Expert.id)
                .where(
                    ExpertHandle.brand == brand,
                    ExpertHandle.channel == channel,
                    ExpertHandle.handle == handle,
                )
            )

    async def set_available(self, brand: str, key: str, available: bool) -> bool:
        """The expert's own "available / away"; False when there is no such expert."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Expert)
                .where(Expert.brand == brand, Expert.key == key)
                .values(available=available, updated_at=utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def ledger(self, brand: str, start: datetime, end: datetime) -> list[LedgerEntry]:
        """The brand's paid resolutions from `start` (inclusive) to `end` (exclusive)."""
        async with self._reads() as session:
            rows = await session.scalars(
                select(LedgerEntry)
                .where(
                    LedgerEntry.brand == brand,
                    LedgerEntry.resolved_at >= start,
                    LedgerEntry.resolved_at < end,
                )
                .order_by(LedgerEntry.resolved_at)
            )
            return list(rows)


async def write_ledger(
    session: AsyncSession, handoff: Handoff, payout: Decimal, currency: str
) -> None:
    """The ledger row of a resolved handoff, in the resolution's transaction (once per
    conversation: a later resolution of it is not paid again)."""
    conversation = await session.get(Conversation, handoff.conversation_id)
    claimed_at = handoff.claimed_at or handoff.created_at
    resolved_at = handoff.closed_at or utcnow()
    entry = LedgerEntry(
        brand=conversation.brand if conversation is not None else "",
        expert=handoff.assignee or "",
        conversation_id=handoff.conversation_id,
        handoff_id=handoff.id,
        claimed_at=claimed_at,
        resolved_at=resolved_at,
        handle_seconds=max(0, int((as_utc(resolved_at) - as_utc(claimed_at)).total_seconds())),
        payout=payout,
        currency=currency,
    )
    try:
        async with session.begin_nested():
            session.add(entry)
    except IntegrityError:
        pass  # this conversation has been paid for already


async def _keep_history_under_new_ids(
    session: AsyncSession, brand: str, known: dict[str, Expert], experts: list[Expert]
) -> None:
    """An expert the file now gives a new gigcx id (an entry that had only `slack_user_id:`,
    whose id was derived from it, gains `id: alex`) is the same person: the registered
    expert holding one of their handles takes the new id, and so do their handoffs, ledger
    rows, ratings and notes, so a handoff they hold stays theirs and the ledger names one
    person once. Updates `known` in place."""
    wanted_keys = {wanted.key for wanted in experts}
    for wanted in experts:
        if wanted.key in known:
            continue
        previous = next(
            (
                expert
                for expert in known.values()
                if expert.key not in wanted_keys
                and any(wanted.handles.get(row.channel) == row.handle for row in expert.handle_rows)
            ),
            None,
        )
        if previous is None:
            continue
        old, new = previous.key, wanted.key
        of_brand = select(Conversation.id).where(Conversation.brand == brand)
        await session.execute(
            update(Handoff)
            .where(Handoff.assignee == old, Handoff.conversation_id.in_(of_brand))
            .values(assignee=new)
        )
        await session.execute(
            update(Csat)
            .where(Csat.assignee == old, Csat.conversation_id.in_(of_brand))
            .values(assignee=new)
        )
        await session.execute(
            update(LedgerEntry)
            .where(LedgerEntry.expert == old, LedgerEntry.brand == brand)
            .values(expert=new)
        )
        handoffs_of_brand = select(Handoff.id).where(Handoff.conversation_id.in_(of_brand))
        await session.execute(
            update(InternalNote)
            .where(InternalNote.author == old, InternalNote.handoff_id.in_(handoffs_of_brand))
            .values(author=new)
        )
        previous.key = new
        known[new] = known.pop(old)
    await session.flush()
