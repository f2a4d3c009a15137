"""Handoffs to people and the customer's rating (CSAT) of their resolution.

Every state change is one `UPDATE ... WHERE state = <expected>` in one transaction, with the
conversation's state, its outbox rows and (on resolution) its ledger row, so two experts
claiming at once gives exactly one winner and a repeated event changes nothing. A claim's
guard also holds the claimer to the brand's registry and their capacity.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from gigcx.store.conversations import append_message, move_conversation, newest_open_handoff
from gigcx.store.experts import write_ledger
from gigcx.store.models import (
    Conversation,
    ConversationState,
    Csat,
    Expert,
    Handoff,
    HandoffState,
    LedgerEntry,
    Message,
    Route,
    utcnow,
)
from gigcx.store.outbox import OutboxKind, outbox_rows
from gigcx.store.repository import ConversationNotFound, Repository, may_be_id, new_id


class _ConversationMovedOn(Exception):
    """A handoff's conversation is not in the state the handoff says: neither is changed."""


class ClaimerNotEligible(Exception):
    """Who tried to claim is not an active expert of the brand ("unregistered"), already
    holds as many of its handoffs as their capacity ("full"), or is a gig expert claiming a
    handoff routed to staff ("not_staff")."""

    def __init__(
        self, reason: Literal["unregistered", "full", "not_staff"], capacity: int = 0
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.capacity = capacity


class Handoffs(Repository):
    async def open_handoff(
        self,
        conversation_id: str,
        *,
        reason: str,
        route: Route,
        tags: Sequence[str],
        packet: dict[str, Any],
        notice: str,
        notice_meta: dict[str, Any],
        claim_timeout: timedelta,
    ) -> tuple[Handoff, Message] | None:
        """bot -> waiting: the bot's notice to the customer, the state and the handoff at once.

        None when the conversation is no longer with the bot (already escalated).
        """
        now = utcnow()
        async with self._sessions.begin() as session:
            appended = await append_message(
                session, conversation_id, "bot", notice, (), notice_meta, only_in_state="bot"
            )
            if appended is None:
                return None
            message = appended.message
            await move_conversation(session, conversation_id, "bot", "waiting")
            handoff = Handoff(
                id=new_id(),
                conversation_id=conversation_id,
                reason=reason,
                route=route,
                tags=list(tags),
                packet=packet,
                state="waiting",
                offers=1,
                claim_deadline=now + claim_timeout,
                created_at=now,
            )
            session.add(handoff)
            if self.wants(OutboxKind.REQUESTED):
                await session.flush()  # the handoff row first: the item refers to it
                session.add_all(outbox_rows(self.consumers, handoff.id, OutboxKind.REQUESTED))
        return handoff, message

    async def find_handoff(self, handoff_id: str) -> Handoff | None:
        if not may_be_id(handoff_id):
            return None
        async with self._reads() as session:
            return await session.get(Handoff, handoff_id)

    async def get_handoff(self, handoff_id: str) -> Handoff:
        """The handoff; ConversationNotFound if there is none with that id."""
        handoff = await self.find_handoff(handoff_id)
        if handoff is None:
            raise ConversationNotFound(f"no handoff {handoff_id!r}")
        return handoff

    async def open_handoff_for(self, conversation_id: str) -> Handoff | None:
        """The conversation's handoff that is waiting or assigned, if any."""
        async with self._reads() as session:
            return await session.scalar(newest_open_handoff(select(Handoff), conversation_id))

    async def open_handoffs(self, brand: str) -> list[Handoff]:
        """The brand's handoffs that are waiting or assigned, oldest first."""
        async with self._reads() as session:
            rows = await session.scalars(
                select(Handoff)
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(Conversation.brand == brand, Handoff.state.in_(("waiting", "assigned")))
                .order_by(Handoff.created_at)
            )
            return list(rows)

    async def handoff_counts(self, brand: str) -> dict[str, int]:
        """How many of the brand's handoffs are waiting and assigned now."""
        async with self._reads() as session:
            rows = await session.execute(
                select(Handoff.state, func.count())
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(Conversation.brand == brand, Handoff.state.in_(("waiting", "assigned")))
                .group_by(Handoff.state)
            )
            counts = {"waiting": 0, "assigned": 0}
            counts.update({state: int(count) for state, count in rows.all()})
            return counts

    async def claim_handoff(
        self,
        brand: str,
        handoff_id: str,
        assignee: str,
        resolve_timeout: timedelta,
        assignee_name: str | None = None,
    ) -> Handoff | None:
        """waiting -> assigned for exactly one claimer; None for everyone else.

        Only an active expert of the brand's registry, holding fewer of its handoffs than
        their capacity, may claim: ClaimerNotEligible says which of the two they are not.
        """
        now = utcnow()
        registration = and_(Expert.brand == brand, Expert.key == assignee, Expert.active.is_(True))
        held = aliased(Handoff)
        held_count = (
            select(func.count())
            .select_from(held)
            .join(Conversation, Conversation.id == held.conversation_id)
            .where(held.assignee == assignee, held.state == "assigned", Conversation.brand == brand)
            .scalar_subquery()
        )
        capacity = select(Expert.capacity).where(registration).scalar_subquery()
        tier = select(Expert.tier).where(registration).scalar_subquery()
        of_brand = select(Conversation.id).where(Conversation.brand == brand)
        try:
            async with self._sessions.begin() as session:
                if self.engine.dialect.name == "postgresql":
                    # Under READ COMMITTED each statement reads what was committed when it began,
                    # so two claims by one expert (on different handoffs: no row in common) would
                    # both count the same held handoffs. Locking the expert's row makes their
                    # claims take turns; the update below starts after the lock is ours, so its
                    # count includes the claim committed by the one before.
                    await session.execute(select(Expert.id).where(registration).with_for_update())
                # On SQLite this update is the transaction's first statement, so it holds the
                # database's write lock while it counts: claims take turns there too.
                handoff = await _apply_transition(
                    session,
                    self.consumers,
                    handoff_id,
                    "waiting",
                    "assigned",
                    {
                        "assignee": assignee,
                        "assignee_name": assignee_name or assignee,
                        "claimed_at": now,
                        "resolve_deadline": now + resolve_timeout,
                    },
                    # No registration: capacity is NULL and the comparison is not true.
                    # Handoffs routed to staff (accounts, billing) are for staff only.
                    guard=[
                        Handoff.conversation_id.in_(of_brand),
                        held_count < capacity,
                        or_(Handoff.route != "staff", tier == "staff"),
                    ],
                    notify=OutboxKind.CLAIMED,
                )
                if handoff is not None:
                    return handoff
                expert = await session.scalar(select(Expert).where(registration))
                if expert is None:
                    raise ClaimerNotEligible("unregistered")
                if (await session.scalar(select(held_count)) or 0) >= expert.capacity:
                    raise ClaimerNotEligible("full", expert.capacity)
                wanted = await session.get(Handoff, handoff_id)
                if (
                    wanted is not None
                    and wanted.state == "waiting"
                    and wanted.route == "staff"
                    and expert.tier != "staff"
                ):
                    raise ClaimerNotEligible("not_staff")
                return None  # claimed by someone else, or no longer waiting
        except _ConversationMovedOn:
            return None

    async def release_handoff(
        self, handoff_id: str, assignee: str, claim_timeout: timedelta, *, to_staff: bool = False
    ) -> Handoff | None:
        """assigned -> waiting, by the expert who holds it: offered again on its route, or
        (`to_staff`) moved to the staff route in the same step."""
        values: dict[str, Any] = {
            "assignee": None,
            "assignee_name": None,
            "claimed_at": None,
            "claim_deadline": utcnow() + claim_timeout,
        }
        if to_staff:
            values["route"] = "staff"
        return await self._transition(
            handoff_id,
            "assigned",
            "waiting",
            values,
            assignee=assignee,
            offered_again=True,
            notify=OutboxKind.MOVED_TO_STAFF if to_staff else OutboxKind.RELEASED,
        )

    async def reoffer_handoff(
        self,
        handoff_id: str,
        claim_timeout: timedelta,
        route: Route | None = None,
        *,
        due_by: datetime | None = None,
    ) -> Handoff | None:
        """waiting -> waiting: offered again after the claim timeout, or moved to staff.

        With `due_by`, only if its claim deadline had passed by then, so of several server
        processes sweeping at once exactly one re-offers it.
        """
        now = due_by or utcnow()
        values: dict[str, Any] = {"claim_deadline": now + claim_timeout}
        if route is not None:
            values["route"] = route
        return await self._transition(
            handoff_id,
            "waiting",
            "waiting",
            values,
            offered_again=True,
            due_by=due_by,
            notify=OutboxKind.MOVED_TO_STAFF if route == "staff" else OutboxKind.REOFFERED,
        )

    async def due_handoffs(self, brand: str, now: datetime) -> list[Handoff]:
        """The brand's waiting handoffs whose claim deadline has passed, oldest first."""
        return await self._past_deadline(brand, "waiting", Handoff.claim_deadline, now)

    async def overdue_handoffs(self, brand: str, now: datetime) -> list[Handoff]:
        """The brand's assigned handoffs whose resolve deadline has passed, oldest first."""
        return await self._past_deadline(brand, "assigned", Handoff.resolve_deadline, now)

    async def _past_deadline(
        self,
        brand: str,
        state: HandoffState,
        deadline: InstrumentedAttribute[datetime] | InstrumentedAttribute[datetime | None],
        now: datetime,
    ) -> list[Handoff]:
        async with self._reads() as session:
            rows = await session.scalars(
                select(Handoff)
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(Conversation.brand == brand, Handoff.state == state, deadline <= now)
                .order_by(Handoff.created_at)
            )
            return list(rows)

    async def time_out_handoff(
        self,
        handoff_id: str,
        assignee: str,
        claim_timeout: timedelta,
        *,
        due_by: datetime,
        notice: str,
        notice_meta: dict[str, Any],
    ) -> tuple[Handoff, Message] | None:
        """assigned -> waiting when `assignee` has not resolved it by its resolve deadline
        (passed by `due_by`): offered again, with `notice` to the customer, at once.

        None when it was resolved, released or taken by someone else meanwhile, or another
        server process timed it out first. The outbox item ("timed_out") points at the
        notice, whose meta names the expert to tell.
        """
        values: dict[str, Any] = {
            "assignee": None,
            "assignee_name": None,
            "claimed_at": None,
            "claim_deadline": due_by + claim_timeout,
            "resolve_deadline": None,
        }
        try:
            async with self._sessions.begin() as session:
                handoff = await _apply_transition(
                    session,
                    {},  # its outbox rows are added below, with the notice
                    handoff_id,
                    "assigned",
                    "waiting",
                    values,
                    assignee=assignee,
                    offered_again=True,
                    guard=[Handoff.resolve_deadline <= due_by],
                    notify=OutboxKind.TIMED_OUT,
                )
                if handoff is None:
                    return None
                appended = await append_message(
                    session, handoff.conversation_id, "system", notice, (), notice_meta, "waiting"
                )
                assert appended is not None  # moved to waiting in this transaction
                message = appended.message
                session.add_all(
                    outbox_rows(self.consumers, handoff_id, OutboxKind.TIMED_OUT, message.id)
                )
        except _ConversationMovedOn:
            return None
        return handoff, message

    async def hand_back(
        self, handoff_id: str, assignee: str, notice: str | None = None
    ) -> tuple[Handoff, Message | None] | None:
        """assigned -> bot: the expert gives the conversation back to the bot, with `notice`
        (a system message saying so) in the same transaction.

        None unless `assignee` holds it.
        """
        try:
            async with self._sessions.begin() as session:
                handoff = await _apply_transition(
                    session,
                    self.consumers,
                    handoff_id,
                    "assigned",
                    "returned",
                    {"closed_at": utcnow()},
                    assignee=assignee,
                    conversation_state="bot",
                    notify=OutboxKind.RETURNED,
                )
                if handoff is None:
                    return None
                message = None
                if notice is not None:
                    meta = {"kind": "handed_back", "handoff_id": handoff_id}
                    appended = await append_message(
                        session, handoff.conversation_id, "system", notice, (), meta, "bot"
                    )
                    message = None if appended is None else appended.message
        except _ConversationMovedOn:
            return None
        return handoff, message

    async def resolve_handoff(
        self, handoff_id: str, assignee: str, payout: Decimal = Decimal(0), currency: str = "EUR"
    ) -> Handoff | None:
        """assigned -> resolved, by the expert who holds it, with its ledger row at once.

        A conversation pays at most once: a later resolution of it gets no second row.
        """
        now = utcnow()
        handoff = await self._transition(
            handoff_id,
            "assigned",
            "resolved",
            {"closed_at": now},
            assignee=assignee,
            conversation_state="resolved",
            ledger=(payout, currency),
            notify=OutboxKind.RESOLVED,
        )
        return handoff

    async def last_resolved_handoff(self, conversation_id: str) -> Handoff | None:
        async with self._reads() as session:
            return await session.scalar(
                select(Handoff)
                .where(Handoff.conversation_id == conversation_id, Handoff.state == "resolved")
                .order_by(Handoff.closed_at.desc())
                .limit(1)
            )

    async def record_csat(self, handoff: Handoff, score: int, comment: str) -> Csat | None:
        """The rating of a resolved handoff (also on its ledger row); None if already rated."""
        csat = Csat(
            conversation_id=handoff.conversation_id,
            handoff_id=handoff.id,
            assignee=handoff.assignee,
            score=score,
            comment=comment,
            created_at=utcnow(),
        )
        try:
            async with self._sessions.begin() as session:
                session.add(csat)
                await session.execute(
                    update(LedgerEntry)
                    .where(LedgerEntry.handoff_id == handoff.id)
                    .values(csat=score)
                )
        except IntegrityError:
            return None
        return csat

    async def _transition(
        self,
        handoff_id: str,
        from_state: str,
        to_state: str,
        values: dict[str, Any],
        *,
        assignee: str | None = None,
        conversation_state: ConversationState | None = None,
        offered_again: bool = False,
        ledger: tuple[Decimal, str] | None = None,
        due_by: datetime | None = None,
        notify: OutboxKind,
    ) -> Handoff | None:
        try:
            async with self._sessions.begin() as session:
                return await _apply_transition(
                    session,
                    self.consumers,
                    handoff_id,
                    from_state,
                    to_state,
                    values,
                    assignee=assignee,
                    conversation_state=conversation_state,
                    offered_again=offered_again,
                    ledger=ledger,
                    due_by=due_by,
                    notify=notify,
                )
        except _ConversationMovedOn:
            return None


async def _apply_transition(
    session: AsyncSession,
    consumers: dict[str, frozenset[OutboxKind]],
    handoff_id: str,
    from_state: str,
    to_state: str,
    values: dict[str, Any],
    *,
    assignee: str | None = None,
    conversation_state: ConversationState | None = None,
    offered_again: bool = False,
    ledger: tuple[Decimal, str] | None = None,
    due_by: datetime | None = None,
    guard: Sequence[ColumnElement[bool]] = (),
    notify: OutboxKind,
) -> Handoff | None:
    """One guarded `UPDATE handoffs ... WHERE state = from_state` and the conversation's
    state with it; None (and nothing changed) when the guard does not hold."""
    conversation_to = conversation_state or ("waiting" if to_state == "waiting" else to_state)
    where = [Handoff.id == handoff_id, Handoff.state == from_state, *guard]
    if due_by is not None:
        where.append(Handoff.claim_deadline <= due_by)
    if assignee is not None:
        where.append(Handoff.assignee == assignee)
    changes = {"state": to_state, **values}
    if offered_again:
        changes["offers"] = Handoff.offers + 1
    conversation_id = await session.scalar(
        update(Handoff).where(*where).values(**changes).returning(Handoff.conversation_id)
    )
    if conversation_id is None:
        return None
    if not await move_conversation(session, conversation_id, from_state, conversation_to):
        raise _ConversationMovedOn(handoff_id)
    handoff = await session.get(Handoff, handoff_id, populate_existing=True)
    if handoff is not None and ledger is not None:
        await write_ledger(session, handoff, *ledger)
    session.add_all(outbox_rows(consumers, handoff_id, notify))
    return handoff
