"""The outbox: what each channel (its consumer) must still be told about a handoff, written
in the same transaction as the change, delivered in order per consumer and handoff."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, exists, false, func, or_, select, update
from sqlalchemy.orm import aliased

from gigcx.store.models import OutboxItem, OutboxKind, as_utc, utcnow
from gigcx.store.repository import Repository, new_id

# What a channel experts work in needs: every step of a handoff and the customer's
# messages, not the experts' own replies (they wrote them there).
EXPERT_CHANNEL_KINDS = frozenset(OutboxKind) - {OutboxKind.EXPERT_MESSAGE}


def outbox_rows(
    consumers: dict[str, frozenset[OutboxKind]],
    handoff_id: str,
    kind: OutboxKind,
    message_id: int | None = None,
) -> list[OutboxItem]:
    """One row per consumer that wants `kind` (none when nobody does)."""
    now = utcnow()
    return [
        OutboxItem(
            consumer=consumer,
            handoff_id=handoff_id,
            kind=kind,
            message_id=message_id,
            created_at=now,
            due_at=now,
            attempts=0,
            last_error="",
        )
        for consumer, kinds in consumers.items()
        if kind in kinds
    ]


class Outbox(Repository):
    """Taking, settling and counting a consumer's outbox rows, leased and fenced."""

    async def outbox_heads(self, consumer: str, now: datetime, limit: int = 50) -> list[OutboxItem]:
        """The consumer's first undelivered item of each handoff, if due and nobody holds it."""
        async with self._reads() as session:
            rows = await session.scalars(
                select(OutboxItem)
                .where(_outbox_head(consumer, now))
                .order_by(OutboxItem.id)
                .limit(limit)
            )
            return list(rows)

    async def take_outbox(
        self, consumer: str, now: datetime, lease: timedelta, limit: int = 50
    ) -> list[OutboxItem]:
        """Hold the consumer's due heads (see `outbox_heads`) for `lease`, in one statement:
        of several server processes taking at once, each item goes to one.

        The items carry a new `lease_token`: only its holder can settle them (see
        `outbox_delivered`), even after the lease has run out.
        """
        heads = (
            select(OutboxItem.id)
            .where(_outbox_head(consumer, now))
            .order_by(OutboxItem.id)
            .limit(limit)
        )
        async with self._sessions.begin() as session:
            rows = await session.scalars(
                update(OutboxItem)
                .where(OutboxItem.id.in_(heads.scalar_subquery()), _unleased(now))
                .values(
                    locked_until=now + lease,
                    lease_token=new_id(),
                    attempts=OutboxItem.attempts + 1,
                )
                .returning(OutboxItem),
                execution_options={"synchronize_session": False},
            )
            return sorted(rows, key=lambda item: item.id)

    async def outbox_delivered(self, item: OutboxItem) -> bool:
        """Delete the delivered item, if its lease (taken with `take_outbox`) is still the
        caller's; False when another process has taken the item over meanwhile."""
        async with self._sessions.begin() as session:
            result = await session.execute(delete(OutboxItem).where(_lease_of(item)))
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def outbox_retry(
        self, item: OutboxItem, error: str, due_at: datetime, *, tried: bool = True
    ) -> bool:
        """Let go of the item, to be tried again from `due_at`; False (and nothing changed)
        when the caller's lease has been taken over (see `outbox_delivered`). With
        `tried=False` nothing was sent (no turn under the channel's rate limits yet): the
        take is not counted as a try."""
        values: dict[str, object] = {
            "locked_until": None,
            "lease_token": None,
            "due_at": due_at,
            "last_error": error[:2000],
        }
        if not tried:
            values["attempts"] = OutboxItem.attempts - 1
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(OutboxItem).where(_lease_of(item)).values(**values)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def outbox_backlog(self, consumer: str | None = None) -> tuple[int, datetime | None]:
        """How many items wait to be delivered (to `consumer`, or to anyone), and since when
        the oldest has."""
        query = select(func.count(), func.min(OutboxItem.created_at)).select_from(OutboxItem)
        if consumer is not None:
            query = query.where(OutboxItem.consumer == consumer)
        async with self._reads() as session:
            count, oldest = (await session.execute(query)).one()
            return int(count), None if oldest is None else as_utc(oldest)


def _lease_of(item: OutboxItem) -> ColumnElement[bool]:
    """The item, while the lease it was taken with is still on it."""
    if item.lease_token is None:  # not taken (`== None` would match every untaken item)
        return false()
    return and_(OutboxItem.id == item.id, OutboxItem.lease_token == item.lease_token)


def _unleased(now: datetime) -> ColumnElement[bool]:
    return or_(OutboxItem.locked_until.is_(None), OutboxItem.locked_until < now)


def _outbox_head(consumer: str, now: datetime) -> ColumnElement[bool]:
    earlier = aliased(OutboxItem)
    return and_(
        OutboxItem.consumer == consumer,
        OutboxItem.due_at <= now,
        _unleased(now),
        ~exists().where(
            earlier.consumer == OutboxItem.consumer,
            earlier.handoff_id == OutboxItem.handoff_id,
            earlier.id < OutboxItem.id,
        ),
    )
