"""Conversation store: messages numbered without gaps, state changes as guarded updates.

Every state change is one `UPDATE ... WHERE state = <expected>` in one transaction, so two
experts claiming at once gives exactly one winner and a repeated event changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gigcx.store.models import (
    Author,
    Conversation,
    ConversationState,
    Csat,
    Handoff,
    Message,
    Route,
    utcnow,
)


class ConversationNotFound(LookupError):
    """No conversation (or handoff) with that id."""


def new_id() -> str:
    return uuid.uuid4().hex


class ConversationStore:
    """Reads and writes conversations, messages and handoffs; each call is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
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

    async def find_conversation(self, conversation_id: str) -> Conversation | None:
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
    ) -> Message | None:
        """Append a message with the next sequence number, committed before this returns.

        With `only_in_state`, the message is written only while the conversation is in that
        state (the bot writes with "bot", so it can never talk after a handoff); None is
        returned when it is not.
        """
        async with self._sessions.begin() as session:
            message = await _append(
                session, conversation_id, author, text, citations, meta, only_in_state
            )
        return message

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
        return handoff, message

    async def find_handoff(self, handoff_id: str) -> Handoff | None:
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
            return await session.scalar(
                select(Handoff)
                .where(
                    Handoff.conversation_id == conversation_id,
                    Handoff.state.in_(("waiting", "assigned")),
                )
                .order_by(Handoff.created_at.desc())
                .limit(1)
            )

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

    async def claim_handoff(
        self,
        handoff_id: str,
        assignee: str,
        resolve_timeout: timedelta,
        assignee_name: str | None = None,
    ) -> Handoff | None:
        """waiting -> assigned for exactly one claimer; None for everyone else."""
        now = utcnow()
        return await self._transition(
            handoff_id,
            "waiting",
            "assigned",
            {
                "assignee": assignee,
                "assignee_name": assignee_name or assignee,
                "claimed_at": now,
                "resolve_deadline": now + resolve_timeout,
            },
        )

    async def release_handoff(
        self, handoff_id: str, assignee: str, claim_timeout: timedelta
    ) -> Handoff | None:
        """assigned -> waiting, by the expert who holds it."""
        return await self._transition(
            handoff_id,
            "assigned",
            "waiting",
            {
                "assignee": None,
                "assignee_name": None,
                "claimed_at": None,
                "claim_deadline": utcnow() + claim_timeout,
            },
            assignee=assignee,
            offered_again=True,
        )

    async def reoffer_handoff(
        self, handoff_id: str, claim_timeout: timedelta, route: Route | None = None
    ) -> Handoff | None:
        """waiting -> waiting: offered again after the claim timeout, or moved to staff."""
        values: dict[str, Any] = {"claim_deadline": utcnow() + claim_timeout}
        if route is not None:
            values["route"] = route
        return await self._transition(handoff_id, "waiting", "waiting", values, offered_again=True)

    async def hand_back(self, handoff_id: str, assignee: str) -> Handoff | None:
        """assigned -> bot: the expert gives the conversation back to the bot."""
        return await self._transition(
            handoff_id,
            "assigned",
            "returned",
            {"closed_at": utcnow()},
            assignee=assignee,
            conversation_state="bot",
        )

    async def resolve_handoff(self, handoff_id: str, assignee: str) -> Handoff | None:
        """assigned -> resolved, by the expert who holds it."""
        return await self._transition(
            handoff_id,
            "assigned",
            "resolved",
            {"closed_at": utcnow()},
            assignee=assignee,
            conversation_state="resolved",
        )

    async def last_resolved_handoff(self, conversation_id: str) -> Handoff | None:
        async with self._sessions() as session:
            return await session.scalar(
                select(Handoff)
                .where(Handoff.conversation_id == conversation_id, Handoff.state == "resolved")
                .order_by(Handoff.closed_at.desc())
                .limit(1)
            )

    async def record_csat(self, handoff: Handoff, score: int, comment: str) -> Csat | None:
        """The rating of a resolved handoff; None if it was already rated."""
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
        except IntegrityError:
            return None
        return csat

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
    ) -> Handoff | None:
        conversation_to = conversation_state or ("waiting" if to_state == "waiting" else to_state)
        guard = [Handoff.id == handoff_id, Handoff.state == from_state]
        if assignee is not None:
            guard.append(Handoff.assignee == assignee)
        changes = {"state": to_state, **values}
        if offered_again:
            changes["offers"] = Handoff.offers + 1
        async with self._sessions.begin() as session:
            conversation_id = await session.scalar(
                update(Handoff).where(*guard).values(**changes).returning(Handoff.conversation_id)
            )
            if conversation_id is None:
                return None
            if not await _move(session, conversation_id, from_state, conversation_to):
                # The conversation is not where its handoff says: change neither.
                await session.rollback()
                return None
            return await session.get(Handoff, handoff_id, populate_existing=True)


async def _append(
    session: AsyncSession,
    conversation_id: str,
    author: Author,
    text: str,
    citations: Sequence[dict[str, Any]],
    meta: dict[str, Any] | None,
    only_in_state: ConversationState | None,
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
        created_at=now,
    )
    session.add(message)
    await session.flush()
    return message


async def _move(
    session: AsyncSession, conversation_id: str, from_state: str, to_state: str
) -> bool:
    result = await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.state == from_state)
        .values(state=to_state, updated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
