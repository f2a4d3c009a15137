"""Conversations and their messages, numbered without gaps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Select, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gigcx.store.models import (
    AnswerRating,
    Author,
    Conversation,
    ConversationState,
    DecisionTrail,
    Handoff,
    Message,
    utcnow,
)
from gigcx.store.outbox import OutboxKind, outbox_rows
from gigcx.store.repository import ConversationNotFound, Repository, may_be_id, new_id

T = TypeVar("T", bound=tuple[Any, ...])

# The tables the hot path writes with table statements (see `append_message`).
_CONVERSATIONS: Table = Conversation.__table__  # type: ignore[assignment]
_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_TRAILS: Table = DecisionTrail.__table__  # type: ignore[assignment]
# Built once: building a statement and its cache key took a fifth of the time of a write.
_CONVERSATION_BY_ID = select(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("id"))
# The next sequence number (bumping the counter locks the row: writers take turns).
_BUMP = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
    .values(last_seq=_CONVERSATIONS.c.last_seq + 1, updated_at=bindparam("now"))
    .returning(_CONVERSATIONS.c.last_seq, _CONVERSATIONS.c.brand, _CONVERSATIONS.c.state)
)
_BUMP_IN_STATE = _BUMP.where(_CONVERSATIONS.c.state == bindparam("only_in_state"))
_INSERT_CONVERSATION = insert(_CONVERSATIONS).returning(*_CONVERSATIONS.c)
_INSERT_MESSAGE = insert(_MESSAGES).returning(_MESSAGES.c.id)
_INSERT_TRAIL = insert(_TRAILS)

# A message by one of these, added while a handoff is open, leaves an outbox row of its kind.
_RELAYED: dict[str, OutboxKind] = {
    "customer": OutboxKind.CUSTOMER_MESSAGE,
    "expert": OutboxKind.EXPERT_MESSAGE,
    "staff": OutboxKind.EXPERT_MESSAGE,
}


class Conversations(Repository):
    async def create_conversation(
        self,
        brand: str,
        customer_id: str | None = None,
        attributes: dict[str, Any] | None = None,
        token_hash: str = "",
    ) -> Conversation:
        now = utcnow()
        row: dict[str, Any] = {
            "id": new_id(),
            "brand": brand,
            "customer_id": customer_id or f"anon-{new_id()[:12]}",
            "token_hash": token_hash,
            "customer_attributes": attributes or {},
            "state": "bot",
            "last_seq": 0,
            "created_at": now,
            "updated_at": now,
        }

        async def write(session: AsyncSession) -> Conversation:
            # The row as stored, with the columns' defaults.
            stored = (await session.execute(_INSERT_CONVERSATION, row)).one()
            return Conversation(**stored._mapping)

        return await self._write(write)

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
        if not may_be_id(conversation_id):
            return None
        # A table statement on a connection, not the session: every request reads its
        # conversation, and the session's identity map and loading cost half as much again.
        async with self._reading.connect() as connection:
            found = await connection.execute(_CONVERSATION_BY_ID, {"id": conversation_id})
            row = found.first()
        return None if row is None else Conversation(**row._mapping)

    async def reopen(self, conversation_id: str) -> bool:
        """resolved -> bot, when the customer writes again after a resolution."""
        async with self._sessions.begin() as session:
            return await move_conversation(session, conversation_id, "resolved", "bot")

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

        A customer's message during a handoff leaves a `customer_message` outbox row, a
        person's reply an `expert_message` row, for the consumers that want them.
        """
        if source is not None:
            stored = await self.message_by_source(source)
            if stored is not None:
                return stored
        try:
            written = await self._write_message(
                conversation_id, author, text, citations, meta, only_in_state, source
            )
        except IntegrityError:
            # Only the unique source can collide (sequence numbers are taken in turn): a
            # concurrent repeat committed it first.
            stored = None if source is None else await self.message_by_source(source)
            if stored is None:
                raise
            return stored
        return None if written is None else written.message

    async def add_customer_message(self, conversation_id: str, text: str) -> Appended:
        """The customer's message, committed, and the conversation's state as it was
        committed: the front line needs no second read to know whether the bot has it."""
        written = await self._write_message(conversation_id, "customer", text, (), None, None)
        assert written is not None  # only a write guarded by a state can be refused
        return written

    async def _write_message(
        self,
        conversation_id: str,
        author: Author,
        text: str,
        citations: Sequence[dict[str, Any]],
        meta: dict[str, Any] | None,
        only_in_state: ConversationState | None,
        source: str | None = None,
    ) -> Appended | None:
        relayed = _RELAYED.get(author)

        async def write(session: AsyncSession) -> Appended | None:
            written = await append_message(
                session, conversation_id, author, text, citations, meta, only_in_state, source
            )
            if written is None:
                return None
            message = written.message
            person = author in ("expert", "staff")
            if relayed is not None and (self.wants(relayed) or person):
                handoff_id = await session.scalar(
                    newest_open_handoff(select(Handoff.id), conversation_id)
                )
                if handoff_id is not None and self.wants(relayed):
                    session.add_all(outbox_rows(self.consumers, handoff_id, relayed, message.id))
                if handoff_id is not None and person:
                    await session.execute(
                        update(Handoff)
                        .where(Handoff.id == handoff_id, Handoff.first_reply_at.is_(None))
                        .values(first_reply_at=message.created_at)
                    )
            return written

        return await self._write(write)

    async def rate_answer(self, conversation_id: str, seq: int, helpful: bool) -> bool:
        """The customer's thumbs up (`helpful`) or down on the bot answer `seq`; rating it
        again replaces the rating. False when `seq` is not a bot answer of the conversation."""
        try:
            async with self._sessions.begin() as session:
                trail = await session.scalar(
                    select(DecisionTrail).where(
                        DecisionTrail.conversation_id == conversation_id,
                        DecisionTrail.seq == seq,
                        DecisionTrail.action == "answer",
                    )
                )
                if trail is None:
                    return False
                rating = await session.scalar(
                    select(AnswerRating)
                    .where(AnswerRating.conversation_id == conversation_id, AnswerRating.seq == seq)
                    .with_for_update()
                )
                if rating is None:
                    session.add(
                        AnswerRating(
                            brand=trail.brand,
                            conversation_id=conversation_id,
                            seq=seq,
                            helpful=helpful,
                            created_at=utcnow(),
                        )
                    )
                else:
                    rating.helpful = helpful
                    rating.created_at = utcnow()
        except IntegrityError:
            # Another first vote on this answer (a second tab, a double click) was inserted
            # between our look and our insert; it is committed now, so this one replaces it.
            async with self._sessions.begin() as session:
                await session.execute(
                    update(AnswerRating)
                    .where(AnswerRating.conversation_id == conversation_id, AnswerRating.seq == seq)
                    .values(helpful=helpful, created_at=utcnow())
                )
        return True

    async def answer_ratings(self, conversation_id: str) -> dict[int, bool]:
        """{seq: helpful} of the conversation's rated bot answers."""
        async with self._reads() as session:
            rows = await session.execute(
                select(AnswerRating.seq, AnswerRating.helpful).where(
                    AnswerRating.conversation_id == conversation_id
                )
            )
            return {seq: helpful for seq, helpful in rows}

    async def decision_trails(self, conversation_id: str) -> list[DecisionTrail]:
        """The bot's decisions in the conversation, oldest first."""
        async with self._reads() as session:
            rows = await session.scalars(
                select(DecisionTrail)
                .where(DecisionTrail.conversation_id == conversation_id)
                .order_by(DecisionTrail.seq)
            )
            return list(rows)

    async def message_by_source(self, source: str) -> Message | None:
        """The message written from `source` (see `add_message`), if there is one."""
        async with self._reads() as session:
            return await session.scalar(select(Message).where(Message.source == source))

    async def message_by_id(self, message_id: int) -> Message | None:
        async with self._reads() as session:
            return await session.get(Message, message_id)

    async def messages_after(
        self, conversation_id: str, after_seq: int = 0, limit: int = 500
    ) -> list[Message]:
        """Messages with a sequence number above `after_seq`, oldest first."""
        async with self._reads() as session:
            rows = await session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.seq > after_seq)
                .order_by(Message.seq)
                .limit(limit)
            )
            return list(rows)

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


def newest_open_handoff(query: Select[T], conversation_id: str) -> Select[T]:
    """`query` narrowed to the conversation's newest waiting or assigned handoff."""
    return (
        query.where(
            Handoff.conversation_id == conversation_id,
            Handoff.state.in_(("waiting", "assigned")),
        )
        .order_by(Handoff.created_at.desc())
        .limit(1)
    )


class Appended(NamedTuple):
    """A message just added, and the state of its conversation when it was written."""

    message: Message
    state: ConversationState


async def append_message(
    session: AsyncSession,
    conversation_id: str,
    author: Author,
    text: str,
    citations: Sequence[dict[str, Any]],
    meta: dict[str, Any] | None,
    only_in_state: ConversationState | None,
    source: str | None = None,
) -> Appended | None:
    """The next message of the conversation, in the caller's transaction.

    The rows are written with table statements, not through the session's unit of work: a
    surge writes every message this way, and the ORM's flush took as much CPU again as the
    statements themselves. The message returned is not in the session (its id is known).
    """
    # Bumping the counter row first locks it, so concurrent writers take turns; a failed
    # insert rolls the bump back with it: no gaps, no duplicates.
    now = utcnow()
    params: dict[str, Any] = {"conversation_id": conversation_id, "now": now}
    if only_in_state is not None:
        params["only_in_state"] = only_in_state
    bump = _BUMP if only_in_state is None else _BUMP_IN_STATE
    bumped = (await session.execute(bump, params)).first()
    if bumped is None:
        if only_in_state is None or await session.get(Conversation, conversation_id) is None:
            raise ConversationNotFound(f"no conversation {conversation_id!r}")
        return None
    seq, brand, state = bumped
    row: dict[str, Any] = {
        "conversation_id": conversation_id,
        "seq": seq,
        "author": author,
        "text": text,
        "citations": list(citations),
        "meta": meta or {},
        "source": source,
        "created_at": now,
    }
    message_id = await session.scalar(_INSERT_MESSAGE, row)
    trail = decision_trail(brand, conversation_id, seq, now, meta) if author == "bot" else None
    if trail is not None:
        await session.execute(_INSERT_TRAIL, trail)
    return Appended(Message(id=message_id, **row), state)


def decision_trail(
    brand: str, conversation_id: str, seq: int, at: datetime, meta: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The `decision_trails` row of a bot message that carries the bot's decision
    (`meta["decision"]`, see `gigcx.bot.decision.Decision.summary`); None for any other
    message."""
    decision = (meta or {}).get("decision")
    if not isinstance(decision, dict) or not decision.get("action"):
        return None
    return {
        "brand": brand,
        "conversation_id": conversation_id,
        "seq": seq,
        "action": str(decision["action"])[:16],
        "reason": decision.get("reason"),
        "route": decision.get("route"),
        "confidence": float(decision.get("confidence") or 0.0),
        "query": str(decision.get("query") or ""),
        "product": decision.get("product"),
        "passages": list(decision.get("passages") or []),
        "evidence": dict(decision.get("evidence") or {}),
        "created_at": at,
    }


async def move_conversation(
    session: AsyncSession, conversation_id: str, from_state: str, to_state: str
) -> bool:
    """from_state -> to_state, in the caller's transaction; False if it was not in from_state."""
    result = await session.execute(
        update(_CONVERSATIONS)
        .where(_CONVERSATIONS.c.id == conversation_id, _CONVERSATIONS.c.state == from_state)
        .values(state=to_state, updated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
