"""Conversation store: messages numbered without gaps, state changes as guarded updates.

Every state change is one `UPDATE ... WHERE state = <expected>` in one transaction, so two
experts claiming at once gives exactly one winner and a repeated event changes nothing. A
claim's guard also holds the claimer to the brand's registry and their capacity.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute, aliased

from gigcx.store.models import (
    Author,
    Conversation,
    ConversationState,
    Csat,
    Expert,
    Handoff,
    HandoffState,
    InternalNote,
    Lease,
    LedgerEntry,
    Message,
    OutboxItem,
    Route,
    SlackCard,
    as_utc,
    utcnow,
)

T = TypeVar("T", bound=tuple[Any, ...])


class ConversationNotFound(LookupError):
    """No conversation (or handoff) with that id."""


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


def new_id() -> str:
    return uuid.uuid4().hex


def _may_be_id(value: str) -> bool:
    # Anything else is not looked up: some text (a NUL character) PostgreSQL refuses even
    # to compare, and a client chooses what it puts in a URL.
    return len(value) == 32 and all(c in "0123456789abcdef" for c in value)


class ConversationStore:
    """Reads and writes conversations, messages and handoffs; each call is one transaction.

    With `outbox`, every handoff change and every customer message during a handoff also
    leaves an outbox item in its transaction, for the Slack connector to deliver.
    """

    def __init__(self, engine: AsyncEngine, *, outbox: bool = False) -> None:
        self.engine = engine
        self.outbox = outbox
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # ------------------------------------------------------------ conversations

    async def create_conversation(
        self,
        brand: str,
        customer_id: str | None = None,
        attributes: dict[str, Any] | None = None,
        token_hash: str = "",
    ) -> Conversation:
        now = utcnow()
        conversation = Conversation(
            id=new_id(),
            brand=brand,
            customer_id=customer_id or f"anon-{new_id()[:12]}",
            token_hash=token_hash,
            customer_attributes=attributes or {},
            state="bot",
            last_seq=0,
            created_at=now,
            updated_at=now,
        )
        async with self._sessions.begin() as session:
            session.add(conversation)
        return conversation

    async def get_conversation(self, conversation_id: str) -> Conversation:
        """The conversation; ConversationNotFound if there is none with that id."""
        conversation = await self.find_conversation(conversation_id)
        if conversation is None:
            raise ConversationNotFound(f"no conversation {conversation_id!r}")
        return conversation

    async def set_contact_email(self, conversation_id: str, email: str) -> None:
        """Keep the customer's e-mail address for a reply, with their other attributes."""
        async with self._sessions.begin() as session:
            conversation = await session.get(Conversation, conversation_id, with_for_update=True)
            if conversation is None:
                raise ConversationNotFound(f"no conversation {conversation_id!r}")
            conversation.customer_attributes = {
                **conversation.customer_attributes,
                "contact_email": email,
            }

    async def find_conversation(self, conversation_id: str) -> Conversation | None:
        if not _may_be_id(conversation_id):
            return None
        async with self._sessions() as session:
            return await session.get(Conversation, conversation_id)

    # ------------------------------------------------------------ messages

    async def add_message(
        self,
        conversation_id: str,
        author: Author,
        text: str,
        *,
        citations: Sequence[dict[str, Any]] = (),
        meta: dict[str, Any] | None = None,
        only_in_state: ConversationState | None = None,
        source: str | None = None,
    ) -> Message | None:
        """Append a message with the next sequence number, committed before this returns.

        With `only_in_state`, the message is written only while the conversation is in that
        state (the bot writes with "bot", so it can never talk after a handoff); None is
        returned when it is not.

        With `source` (where a person wrote it, e.g. "slack:<channel>:<ts>"), the message is
        written once: a repeat, even one racing the first, returns the message stored first.
        """
        if source is not None:
            stored = await self.message_by_source(source)
            if stored is not None:
                return stored
        try:
            async with self._sessions.begin() as session:
                message = await _append(
                    session, conversation_id, author, text, citations, meta, only_in_state, source
                )
                if self.outbox and message is not None and author == "customer":
                    handoff_id = await session.scalar(
                        _newest_open_handoff(select(Handoff.id), conversation_id)
                    )
                    if handoff_id is not None:
                        session.add(_outbox_item(handoff_id, "customer_message", message.id))
        except IntegrityError:
            # Only the unique source can collide (sequence numbers are taken in turn): a
            # concurrent repeat committed it first.
            stored = None if source is None else await self.message_by_source(source)
            if stored is None:
                raise
            return stored
        return message

    async def message_by_source(self, source: str) -> Message | None:
        """The message written from `source` (see `add_message`), if there is one."""
        async with self._sessions() as session:
            return await session.scalar(select(Message).where(Message.source == source))

    async def messages_after(
        self, conversation_id: str, after_seq: int = 0, limit: int = 500
    ) -> list[Message]:
        """Messages with a sequence number above `after_seq`, oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.seq > after_seq)
                .order_by(Message.seq)
                .limit(limit)
            )
            return list(rows)

    # ------------------------------------------------------------ handoffs

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
            message = await _append(
                session, conversation_id, "bot", notice, (), notice_meta, only_in_state="bot"
            )
            if message is None:
                return None
            await _move(session, conversation_id, "bot", "waiting")
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
            if self.outbox:
                await session.flush()  # the handoff row first: the item refers to it
                session.add(_outbox_item(handoff.id, "requested"))
        return handoff, message

    async def find_handoff(self, handoff_id: str) -> Handoff | None:
        if not _may_be_id(handoff_id):
            return None
        async with self._sessions() as session:
            return await session.get(Handoff, handoff_id)

    async def get_handoff(self, handoff_id: str) -> Handoff:
        """The handoff; ConversationNotFound if there is none with that id."""
        handoff = await self.find_handoff(handoff_id)
        if handoff is None:
            raise ConversationNotFound(f"no handoff {handoff_id!r}")
        return handoff

    async def open_handoff_for(self, conversation_id: str) -> Handoff | None:
        """The conversation's handoff that is waiting or assigned, if any."""
        async with self._sessions() as session:
            return await session.scalar(_newest_open_handoff(select(Handoff), conversation_id))

    async def open_handoffs(self, brand: str) -> list[Handoff]:
        """The brand's handoffs that are waiting or assigned, oldest first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Handoff)
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(Conversation.brand == brand, Handoff.state.in_(("waiting", "assigned")))
                .order_by(Handoff.created_at)
            )
            return list(rows)

    async def handoff_counts(self, brand: str) -> dict[str, int]:
        """How many of the brand's handoffs are waiting and assigned now."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(Handoff.state, func.count())
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(Conversation.brand == brand, Handoff.state.in_(("waiting", "assigned")))
                .group_by(Handoff.state)
            )
            counts = {"waiting": 0, "assigned": 0}
            counts.update({state: int(count) for state, count in rows.all()})
            return counts

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")

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
        registration = and_(
            Expert.brand == brand, Expert.slack_user_id == assignee, Expert.active.is_(True)
        )
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
                    self.outbox,
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
                    notify="claimed",
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
            notify="moved_to_staff" if to_staff else "released",
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
            notify="moved_to_staff" if route == "staff" else "reoffered",
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
        async with self._sessions() as session:
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
                    False,  # its outbox item is added below, with the notice
                    handoff_id,
                    "assigned",
                    "waiting",
                    values,
                    assignee=assignee,
                    offered_again=True,
                    guard=[Handoff.resolve_deadline <= due_by],
                    notify="timed_out",
                )
                if handoff is None:
                    return None
                message = await _append(
                    session, handoff.conversation_id, "system", notice, (), notice_meta, "waiting"
                )
                assert message is not None  # moved to waiting in this transaction
                if self.outbox:
                    session.add(_outbox_item(handoff_id, "timed_out", message.id))
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
                    self.outbox,
                    handoff_id,
                    "assigned",
                    "returned",
                    {"closed_at": utcnow()},
                    assignee=assignee,
                    conversation_state="bot",
                    notify="returned",
                )
                if handoff is None:
                    return None
                message = None
                if notice is not None:
                    meta = {"kind": "handed_back", "handoff_id": handoff_id}
                    message = await _append(
                        session, handoff.conversation_id, "system", notice, (), meta, "bot"
                    )
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
            notify="resolved",
        )
        return handoff

    async def last_resolved_handoff(self, conversation_id: str) -> Handoff | None:
        async with self._sessions() as session:
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

    # ------------------------------------------------------------ slack cards

    async def save_card(
        self, handoff_id: str, channel: str, ts: str, outbox_item_id: int | None = None
    ) -> SlackCard:
        """Record the card posted (for `outbox_item_id`) as the handoff's card, and return the
        card on record afterwards.

        That is another card when one posted for the same item or a newer one is recorded
        already: a process whose outbox lease ran out posted too, or this post is older than
        the recorded one. The caller's card is then the duplicate, to be deleted.
        """
        values = {"channel": channel, "ts": ts, "outbox_item_id": outbox_item_id}
        newer_or_same = (
            SlackCard.outbox_item_id >= outbox_item_id if outbox_item_id is not None else false()
        )
        async with self._sessions.begin() as session:
            replaced = await session.scalar(
                update(SlackCard)
                .where(
                    SlackCard.handoff_id == handoff_id,
                    or_(SlackCard.outbox_item_id.is_(None), ~newer_or_same),
                )
                .values(**values, created_at=utcnow())
                .returning(SlackCard.handoff_id),
                execution_options={"synchronize_session": False},
            )
            if replaced is None:
                try:
                    async with session.begin_nested():
                        session.add(SlackCard(handoff_id=handoff_id, **values, created_at=utcnow()))
                except IntegrityError:
                    pass  # recorded by another process meanwhile: read below
        card = await self.card_for(handoff_id)
        assert card is not None  # cards are never deleted
        return card

    async def card_for(self, handoff_id: str) -> SlackCard | None:
        async with self._sessions() as session:
            return await session.get(SlackCard, handoff_id)

    async def handoff_for_thread(self, channel: str, ts: str) -> Handoff | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Handoff)
                .join(SlackCard, SlackCard.handoff_id == Handoff.id)
                .where(SlackCard.channel == channel, SlackCard.ts == ts)
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
        async with self._sessions() as session:
            return await session.scalar(select(InternalNote).where(InternalNote.source == source))

    async def internal_notes(self, handoff_id: str) -> list[InternalNote]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(InternalNote)
                .where(InternalNote.handoff_id == handoff_id)
                .order_by(InternalNote.id)
            )
            return list(rows)

    # ------------------------------------------------------------ experts and ledger

    async def sync_experts(self, brand: str, experts: list[Expert]) -> dict[str, list[str]]:
        """Make the registry match `experts` (availability is left as the experts set it).

        Experts no longer listed are deactivated, not deleted: the ledger still names them.
        """
        report: dict[str, list[str]] = {"added": [], "updated": [], "deactivated": []}
        fields = ("name", "skills", "languages", "tier", "capacity", "active")
        async with self._sessions.begin() as session:
            known = {
                e.slack_user_id: e
                for e in await session.scalars(select(Expert).where(Expert.brand == brand))
            }
            for wanted in experts:
                existing = known.pop(wanted.slack_user_id, None)
                if existing is None:
                    wanted.brand = brand
                    wanted.available = True
                    wanted.updated_at = utcnow()
                    session.add(wanted)
                    report["added"].append(wanted.slack_user_id)
                elif any(getattr(existing, f) != getattr(wanted, f) for f in fields):
                    for name in fields:
                        setattr(existing, name, getattr(wanted, name))
                    existing.updated_at = utcnow()
                    report["updated"].append(wanted.slack_user_id)
            for gone in known.values():
                if gone.active:
                    gone.active = False
                    gone.updated_at = utcnow()
                    report["deactivated"].append(gone.slack_user_id)
        return report

    async def experts(self, brand: str) -> list[Expert]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(Expert).where(Expert.brand == brand).order_by(Expert.name)
            )
            return list(rows)

    async def find_expert(self, brand: str, slack_user_id: str) -> Expert | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Expert).where(Expert.brand == brand, Expert.slack_user_id == slack_user_id)
            )

    async def set_available(self, brand: str, slack_user_id: str, available: bool) -> bool:
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Expert)
                .where(Expert.brand == brand, Expert.slack_user_id == slack_user_id)
                .values(available=available, updated_at=utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def ledger(self, brand: str, start: datetime, end: datetime) -> list[LedgerEntry]:
        """The brand's paid resolutions from `start` (inclusive) to `end` (exclusive)."""
        async with self._sessions() as session:
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

    async def reopen(self, conversation_id: str) -> bool:
        """resolved -> bot, when the customer writes again after a resolution."""
        async with self._sessions.begin() as session:
            return await _move(session, conversation_id, "resolved", "bot")

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
        notify: str,
    ) -> Handoff | None:
        try:
            async with self._sessions.begin() as session:
                return await _apply_transition(
                    session,
                    self.outbox,
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

    # ------------------------------------------------------------ outbox

    async def outbox_heads(self, now: datetime, limit: int = 50) -> list[OutboxItem]:
        """The first undelivered item of each handoff, if it is due and nobody holds it."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(OutboxItem).where(_outbox_head(now)).order_by(OutboxItem.id).limit(limit)
            )
            return list(rows)

    async def take_outbox(
        self, now: datetime, lease: timedelta, limit: int = 50
    ) -> list[OutboxItem]:
        """Hold the due heads (see `outbox_heads`) for `lease`, in one statement: of several
        server processes taking at once, each item goes to one.

        The items carry a new `lease_token`: only its holder can settle them (see
        `outbox_delivered`), even after the lease has run out.
        """
        heads = select(OutboxItem.id).where(_outbox_head(now)).order_by(OutboxItem.id).limit(limit)
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

    async def outbox_retry(self, item: OutboxItem, error: str, due_at: datetime) -> bool:
        """Let go of the item, to be tried again from `due_at`; False (and nothing changed)
        when the caller's lease has been taken over (see `outbox_delivered`)."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(OutboxItem)
                .where(_lease_of(item))
                .values(locked_until=None, lease_token=None, due_at=due_at, last_error=error[:2000])
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def outbox_backlog(self) -> tuple[int, datetime | None]:
        """How many items wait to be delivered, and since when the oldest has."""
        async with self._sessions() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(OutboxItem.created_at)).select_from(OutboxItem)
                )
            ).one()
            return int(count), None if oldest is None else as_utc(oldest)

    # ------------------------------------------------------------ across server processes

    async def hold_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take or renew the lease `name` for `ttl`; False while another holder has it."""
        now = utcnow()
        async with self._sessions.begin() as session:
            renewed = await session.scalar(
                update(Lease)
                .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
                .values(holder=holder, expires_at=now + ttl)
                .returning(Lease.name)
            )
            if renewed is not None:
                return True
            try:
                async with session.begin_nested():
                    session.add(Lease(name=name, holder=holder, expires_at=now + ttl))
            except IntegrityError:
                return False  # someone else holds it
            return True

    async def message_by_id(self, message_id: int) -> Message | None:
        async with self._sessions() as session:
            return await session.get(Message, message_id)

    # ------------------------------------------------------------ e-mail channel (0009)

    async def mark_conversation(
        self,
        conversation_id: str,
        *,
        read_seq: int | None = None,
        emailed_seq: int | None = None,
        link_token_hash: str | None = None,
    ) -> bool:
        """Record what the customer has read (a read receipt), what went out by e-mail (each
        with the time, never moving back), or the token hash a link gave; False for an
        unknown conversation or a read receipt beyond its newest message."""
        now = utcnow()
        where = [Conversation.id == conversation_id]
        values: dict[str, Any] = {}
        if read_seq is not None:
            where += [Conversation.customer_read_seq <= read_seq, Conversation.last_seq >= read_seq]
            values.update(customer_read_seq=read_seq, customer_read_at=now)
        if emailed_seq is not None:
            where.append(Conversation.emailed_seq <= emailed_seq)
            values.update(emailed_seq=emailed_seq, emailed_at=now)
        if link_token_hash is not None:
            values["link_token_hash"] = link_token_hash
        async with self._sessions.begin() as session:
            result = await session.execute(update(Conversation).where(*where).values(**values))
            return bool(result.rowcount)  # type: ignore[attr-defined]


def _newest_open_handoff(query: Select[T], conversation_id: str) -> Select[T]:
    """`query` narrowed to the conversation's newest waiting or assigned handoff."""
    return (
        query.where(
            Handoff.conversation_id == conversation_id,
            Handoff.state.in_(("waiting", "assigned")),
        )
        .order_by(Handoff.created_at.desc())
        .limit(1)
    )


def _lease_of(item: OutboxItem) -> ColumnElement[bool]:
    """The item, while the lease it was taken with is still on it."""
    if item.lease_token is None:  # not taken (`== None` would match every untaken item)
        return false()
    return and_(OutboxItem.id == item.id, OutboxItem.lease_token == item.lease_token)


def _unleased(now: datetime) -> ColumnElement[bool]:
    return or_(OutboxItem.locked_until.is_(None), OutboxItem.locked_until < now)


def _outbox_head(now: datetime) -> ColumnElement[bool]:
    earlier = aliased(OutboxItem)
    return and_(
        OutboxItem.due_at <= now,
        _unleased(now),
        ~exists().where(earlier.handoff_id == OutboxItem.handoff_id, earlier.id < OutboxItem.id),
    )


def _outbox_item(handoff_id: str, kind: str, message_id: int | None = None) -> OutboxItem:
    now = utcnow()
    return OutboxItem(
        handoff_id=handoff_id,
        kind=kind,
        message_id=message_id,
        created_at=now,
        due_at=now,
        attempts=0,
        last_error="",
    )


async def _append(
    session: AsyncSession,
    conversation_id: str,
    author: Author,
    text: str,
    citations: Sequence[dict[str, Any]],
    meta: dict[str, Any] | None,
    only_in_state: ConversationState | None,
    source: str | None = None,
) -> Message | None:
    # Bumping the counter row first locks it, so concurrent writers take turns; a failed
    # insert rolls the bump back with it: no gaps, no duplicates.
    guard = [Conversation.id == conversation_id]
    if only_in_state is not None:
        guard.append(Conversation.state == only_in_state)
    now = utcnow()
    seq = await session.scalar(
        update(Conversation)
        .where(*guard)
        .values(last_seq=Conversation.last_seq + 1, updated_at=now)
        .returning(Conversation.last_seq)
    )
    if seq is None:
        if only_in_state is None or await session.get(Conversation, conversation_id) is None:
            raise ConversationNotFound(f"no conversation {conversation_id!r}")
        return None
    message = Message(
        conversation_id=conversation_id,
        seq=seq,
        author=author,
        text=text,
        citations=list(citations),
        meta=meta or {},
        source=source,
        created_at=now,
    )
    session.add(message)
    await session.flush()
    return message


async def _apply_transition(
    session: AsyncSession,
    outbox: bool,
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
    notify: str,
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
    if not await _move(session, conversation_id, from_state, conversation_to):
        raise _ConversationMovedOn(handoff_id)
    handoff = await session.get(Handoff, handoff_id, populate_existing=True)
    if handoff is not None and ledger is not None:
        await _write_ledger(session, handoff, *ledger)
    if outbox:
        session.add(_outbox_item(handoff_id, notify))
    return handoff


async def _write_ledger(
    session: AsyncSession, handoff: Handoff, payout: Decimal, currency: str
) -> None:
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


async def _move(
    session: AsyncSession, conversation_id: str, from_state: str, to_state: str
) -> bool:
    result = await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.state == from_state)
        .values(state=to_state, updated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
