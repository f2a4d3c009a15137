"""Channel cards (where a handoff's card and thread are in an expert channel) and the
internal notes people leave there, kept from the customer."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, delete, false, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from gigcx.store.models import (
    ChannelBoard,
    ChannelCard,
    Handoff,
    InternalNote,
    board_channel,
    utcnow,
)
from gigcx.store.repository import Repository


class ChannelCards(Repository):
    async def save_card(
        self,
        consumer: str,
        handoff_id: str,
        channel: str,
        ts: str,
        outbox_item_id: int | None = None,
        shows_seq: int | None = None,
    ) -> ChannelCard:
        """Record the card `consumer` posted (for `outbox_item_id`) as the handoff's card
        there, and return the card on record afterwards.

        That is another card when one posted for the same item or a newer one is recorded
        already: a process whose outbox lease ran out posted too, or this post is older than
        the recorded one. The caller's card is then the duplicate, to be deleted.
        """
        values = {
            "channel": channel,
            "ts": ts,
            "outbox_item_id": outbox_item_id,
            "stale_since": None,  # a new card shows the handoff as it is
            "shows_seq": shows_seq,
            "thread_channel": None,  # a new card holds the conversation in its own thread
            "thread_ts": None,
        }
        newer_or_same = (
            ChannelCard.outbox_item_id >= outbox_item_id if outbox_item_id is not None else false()
        )
        async with self._sessions.begin() as session:
            replaced = await session.scalar(
                update(ChannelCard)
                .where(
                    ChannelCard.consumer == consumer,
                    ChannelCard.handoff_id == handoff_id,
                    or_(ChannelCard.outbox_item_id.is_(None), ~newer_or_same),
                )
                .values(**values, created_at=utcnow())
                .returning(ChannelCard.handoff_id),
                execution_options={"synchronize_session": False},
            )
            if replaced is None:
                card = ChannelCard(
                    consumer=consumer, handoff_id=handoff_id, **values, created_at=utcnow()
                )
                try:
                    async with session.begin_nested():
                        session.add(card)
                except IntegrityError:
                    pass  # recorded by another process meanwhile: read below
        recorded = await self.card_for(consumer, handoff_id)
        assert recorded is not None  # cards are never deleted
        return recorded

    async def card_for(self, consumer: str, handoff_id: str) -> ChannelCard | None:
        async with self._reads() as session:
            return await session.get(ChannelCard, (handoff_id, consumer))

    async def handoff_for_thread(self, consumer: str, channel: str, ts: str) -> Handoff | None:
        """The handoff whose card `consumer` posted at `channel`/`ts`, or whose conversation
        went on in the thread of that message (`save_thread`)."""
        async with self._reads() as session:
            return await session.scalar(
                select(Handoff)
                .join(ChannelCard, ChannelCard.handoff_id == Handoff.id)
                .where(
                    ChannelCard.consumer == consumer,
                    or_(
                        and_(ChannelCard.channel == channel, ChannelCard.ts == ts),
                        and_(ChannelCard.thread_channel == channel, ChannelCard.thread_ts == ts),
                    ),
                )
                .limit(1)
            )

    async def save_thread(
        self, consumer: str, card: ChannelCard, channel: str, ts: str, shows_seq: int
    ) -> None:
        """The conversation of `card`'s handoff goes on in the thread of `channel`/`ts`,
        which shows it up to message `shows_seq`."""
        await self._update_card(
            consumer, card, thread_channel=channel, thread_ts=ts, shows_seq=shows_seq
        )

    async def drop_thread(self, consumer: str, handoff_id: str) -> None:
        """The conversation leaves the thread it went on in (the expert let it go): its next
        claimer gets a thread of their own."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(ChannelCard)
                .where(ChannelCard.consumer == consumer, ChannelCard.handoff_id == handoff_id)
                .values(thread_channel=None, thread_ts=None)
            )

    async def card_shows(self, consumer: str, card: ChannelCard, seq: int) -> None:
        """`card`'s thread now shows the conversation up to message `seq`."""
        shows_less = or_(ChannelCard.shows_seq.is_(None), ChannelCard.shows_seq < seq)
        await self._update_card(consumer, card, shows_less, shows_seq=seq)

    async def mark_card_stale(self, consumer: str, handoff_id: str) -> None:
        """The handoff's card no longer shows its state; its update waits for a turn. Marked
        again, a stale card is marked anew: a refresh that read the older state does not
        count as bringing it up to date (see `card_refreshed`)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(ChannelCard)
                .where(ChannelCard.consumer == consumer, ChannelCard.handoff_id == handoff_id)
                .values(stale_since=utcnow())
            )

    async def stale_cards(self, consumer: str, limit: int = 20) -> list[ChannelCard]:
        """Cards waiting to be brought up to date, the longest-waiting first."""
        async with self._reads() as session:
            found = await session.scalars(
                select(ChannelCard)
                .where(ChannelCard.consumer == consumer, ChannelCard.stale_since.is_not(None))
                .order_by(ChannelCard.stale_since)
                .limit(limit)
            )
            return list(found)

    async def card_refreshed(self, card: ChannelCard) -> None:
        """`card` (as read by `stale_cards`) now shows its handoff's state: up to date,
        unless it went stale again (a newer change) or was replaced meanwhile."""
        unchanged = ChannelCard.stale_since == card.stale_since
        await self._update_card(card.consumer, card, unchanged, stale_since=None)

    async def _update_card(
        self, consumer: str, card: ChannelCard, *conditions: ColumnElement[bool], **values: object
    ) -> None:
        """Set `values` on `card`'s row while it is still that card (and `conditions` hold)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(ChannelCard)
                .where(
                    ChannelCard.consumer == consumer,
                    ChannelCard.handoff_id == card.handoff_id,
                    ChannelCard.ts == card.ts,
                    *conditions,
                )
                .values(**values)
            )

    async def board_entries(
        self, consumer: str, channel: str, limit: int | None = None
    ) -> list[Handoff]:
        """The handoffs waiting on `channel`'s queue board, oldest first (the first `limit`)."""
        async with self._reads() as session:
            found = await session.scalars(
                select(Handoff)
                .join(ChannelCard, ChannelCard.handoff_id == Handoff.id)
                .where(*_listed_on(consumer, channel))
                .order_by(Handoff.created_at, Handoff.id)
                .limit(limit)
            )
            return list(found)

    async def board_in_use(self, consumer: str, channel: str) -> bool:
        """Whether `channel`'s queue board lists anyone waiting (one row read, not all)."""
        async with self._reads() as session:
            found = await session.scalar(
                select(ChannelCard.handoff_id)
                .join(Handoff, ChannelCard.handoff_id == Handoff.id)
                .where(*_listed_on(consumer, channel))
                .limit(1)
            )
            return found is not None

    async def board_for(self, consumer: str, channel: str) -> ChannelBoard | None:
        async with self._reads() as session:
            return await session.get(ChannelBoard, (consumer, channel))

    async def save_board(self, consumer: str, channel: str, ts: str, digest: str) -> None:
        """Record the board message `consumer` shows in `channel`, and what it shows."""
        values = {"ts": ts, "digest": digest, "updated_at": utcnow()}
        async with self._sessions.begin() as session:
            insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
            await session.execute(
                insert(ChannelBoard)
                .values(consumer=consumer, channel=channel, **values)
                .on_conflict_do_update(index_elements=["consumer", "channel"], set_=values)
            )

    async def drop_board(self, consumer: str, channel: str) -> None:
        """Forget `channel`'s board message (deleted, or gone from Slack)."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(ChannelBoard).where(
                    ChannelBoard.consumer == consumer, ChannelBoard.channel == channel
                )
            )

    async def add_internal_note(
        self, handoff_id: str, author: str, text: str, *, source: str | None = None
    ) -> InternalNote:
        """Keep a note for the people on the handoff; with `source`, once (as `add_message`)."""
        if source is not None:
            stored = await self.note_by_source(source)
            if stored is not None:
                return stored
        note = InternalNote(
            handoff_id=handoff_id, author=author, text=text, source=source, created_at=utcnow()
        )
        try:
            async with self._sessions.begin() as session:
                session.add(note)
        except IntegrityError:
            stored = None if source is None else await self.note_by_source(source)
            if stored is None:
                raise
            return stored
        return note

    async def note_by_source(self, source: str) -> InternalNote | None:
        async with self._reads() as session:
            return await session.scalar(select(InternalNote).where(InternalNote.source == source))

    async def internal_notes(self, handoff_id: str) -> list[InternalNote]:
        async with self._reads() as session:
            rows = await session.scalars(
                select(InternalNote)
                .where(InternalNote.handoff_id == handoff_id)
                .order_by(InternalNote.id)
            )
            return list(rows)


def _listed_on(consumer: str, channel: str) -> tuple[ColumnElement[bool], ...]:
    """A handoff waiting on `channel`'s queue board (its card row names the board)."""
    return (
        ChannelCard.consumer == consumer,
        ChannelCard.channel == board_channel(channel),
        Handoff.state == "waiting",
    )
