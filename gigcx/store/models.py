"""The conversation as rows: conversations, their numbered messages, and handoffs to people."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ConversationState = Literal["bot", "waiting", "assigned", "resolved"]
HandoffState = Literal["waiting", "assigned", "resolved", "returned"]
Author = Literal["customer", "bot", "expert", "staff", "system"]
Route = Literal["expert", "staff"]

AUTHORS: tuple[Author, ...] = ("customer", "bot", "expert", "staff", "system")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """`moment` with its zone: a naive time is taken as UTC (what SQLite held before the store
    returned aware times; see UTCDateTime)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC datetime, in and out, on every database.

    SQLite keeps no zone, so without this a message read back serialises without `+00:00`
    while the same message fresh from Python has it. The column type stays
    `DateTime(timezone=True)`, so no migration is needed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        # A naive value is taken as UTC; an aware one in another zone is converted, so
        # SQLite (which stores the wall time as given) never holds a non-UTC time.
        return None if value is None else as_utc(value).astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_utc(value).astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_brand_created", "brand", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    brand: Mapped[str] = mapped_column(String(64), index=True)
    customer_id: Mapped[str] = mapped_column(String(128))
    # SHA-256 of the secret the customer's widget holds to read and write this conversation.
    token_hash: Mapped[str] = mapped_column(String(64), default="")
    customer_attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="bot")
    # The sequence number of the newest message; bumped in the same transaction as the insert.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # For the e-mail channel (0009): the newest message the customer has had in front of them
    # (the widget's read receipt) and when; the newest sent by e-mail and when; the hash of
    # the token a link from an e-mail gave (a second key beside `token_hash`).
    customer_read_seq: Mapped[int] = mapped_column(Integer, default=0)
    customer_read_at: Mapped[datetime | None] = mapped_column(nullable=True)
    emailed_seq: Mapped[int] = mapped_column(Integer, default=0)
    emailed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    link_token_hash: Mapped[str] = mapped_column(String(64), default="")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_messages_seq"),
        UniqueConstraint("source", name="uq_messages_source"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    seq: Mapped[int] = mapped_column(Integer)
    author: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # What produced the message: the bot's decision, the expert's id, a Slack marker...
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Where a person wrote it, when that place can deliver it again ("slack:<channel>:<ts>"):
    # unique, so a redelivery finds the message instead of adding it twice.
    source: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def to_dict(self) -> dict[str, Any]:
        decision = (self.meta or {}).get("decision")
        return {
            "seq": self.seq,
            "author": self.author,
            "text": self.text,
            "citations": self.citations,
            "created_at": self.created_at.isoformat(),
            # Only the titles: a payload is the answerer's business (e.g. Rasa's `/affirm`).
            "quick_replies": [
                str(item.get("title", "")) if isinstance(item, dict) else str(item)
                for item in (self.meta or {}).get("quick_replies") or []
            ],
            # A bot answer (not a clarifying question, small talk or handover notice) may get
            # the customer's thumbs up or down: what `rate_answer` accepts.
            "rateable": self.author == "bot"
            and isinstance(decision, dict)
            and decision.get("action") == "answer",
        }


class Handoff(Base):
    __tablename__ = "handoffs"
    __table_args__ = (
        Index("ix_handoffs_state_deadline", "state", "claim_deadline"),
        Index("ix_handoffs_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    route: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    packet: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    # The expert's gigcx id (`Expert.key`).
    assignee: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # How the customer sees the assignee ("Alex"); the id above is what experts act with.
    assignee_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    offers: Mapped[int] = mapped_column(Integer, default=1)
    claim_deadline: Mapped[datetime] = mapped_column()
    resolve_deadline: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The first message a person (expert or staff) sent the customer on it (0010).
    first_reply_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Csat(Base):
    """The customer's rating (1-5) of a resolved conversation, one per resolution."""

    __tablename__ = "csat"
    __table_args__ = (UniqueConstraint("handoff_id", name="uq_csat_handoff"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"))
    assignee: Mapped[str | None] = mapped_column(String(128), nullable=True)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Expert(Base):
    """A gig expert or staff member who can take handoffs, from `experts.yaml`.

    `key` is their gigcx id (a slug like "alex", unique per brand): what handoffs, the
    ledger, ratings and notes name. How each channel knows them (their Slack user id) is a
    handle, kept in `expert_handles`.
    """

    __tablename__ = "experts"
    __table_args__ = (UniqueConstraint("brand", "key", name="uq_experts_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    brand: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    tier: Mapped[str] = mapped_column(String(8))  # gig | staff
    capacity: Mapped[int] = mapped_column(Integer, default=3)
    # Managed by the file: an expert removed from it stays (the ledger names them), inactive.
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Managed by the expert (available / away); never touched by a sync.
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Loaded with the expert (a few rows each), so a caller can read `handles` afterwards.
    handle_rows: Mapped[list[ExpertHandle]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="ExpertHandle.channel"
    )

    @property
    def handles(self) -> dict[str, str]:
        """How each channel knows the expert: {"slack": "U04ALEX"}."""
        return {row.channel: row.handle for row in self.handle_rows}

    @handles.setter
    def handles(self, handles: dict[str, str]) -> None:
        self.handle_rows = [
            ExpertHandle(channel=channel, handle=handle) for channel, handle in handles.items()
        ]


class ExpertHandle(Base):
    """The id one channel knows an expert by: one expert per handle and brand."""

    __tablename__ = "expert_handles"
    __table_args__ = (
        UniqueConstraint("brand", "channel", "handle", name="uq_expert_handles_handle"),
        UniqueConstraint("expert_id", "channel", name="uq_expert_handles_channel"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    expert_id: Mapped[int] = mapped_column(ForeignKey("experts.id"))
    brand: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    handle: Mapped[str] = mapped_column(String(128))


class LedgerEntry(Base):
    """One paid resolution: who resolved which conversation, how fast, rated how, paid what."""

    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("conversation_id", name="uq_ledger_conversation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    brand: Mapped[str] = mapped_column(String(64), index=True)
    expert: Mapped[str] = mapped_column(String(128), index=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"))
    claimed_at: Mapped[datetime] = mapped_column()
    resolved_at: Mapped[datetime] = mapped_column(index=True)
    handle_seconds: Mapped[int] = mapped_column(Integer)
    csat: Mapped[int | None] = mapped_column(Integer, nullable=True)
    payout: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    currency: Mapped[str] = mapped_column(String(3))


class ChannelCard(Base):
    """Where a handoff's card (and so its thread) is in an expert channel (`consumer`, the
    channel's outbox name: "slack"); `channel` and `ts` are that channel's own ids."""

    __tablename__ = "channel_cards"
    __table_args__ = (
        UniqueConstraint("consumer", "channel", "ts", name="uq_channel_cards_thread"),
    )

    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"), primary_key=True)
    consumer: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    # The outbox item whose delivery posted this card (None for cards from before 0007): of
    # two processes posting for one item, the first to record wins; a card posted for an
    # older item never replaces a newer one.
    outbox_item_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Since when the card shows an older state of its handoff than the handoff is in: its
    # update waits for a turn under the channel's rate limits (0011). None: up to date.
    stale_since: Mapped[datetime | None] = mapped_column(nullable=True)
    # The last message of the conversation shown with the card (its transcript, 0011): a
    # customer's message up to it has reached the expert and is not relayed again.
    shows_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Where the conversation with the customer is, when not in the card's own thread: a
    # message in the claimer's DM with the app, for a claim made while the channel was too
    # busy for a thread of its own (0011).
    thread_channel: Mapped[str | None] = mapped_column(String(32), nullable=True)
    thread_ts: Mapped[str | None] = mapped_column(String(32), nullable=True)

    @property
    def thread(self) -> tuple[str, str]:
        """(channel, ts) of the message whose thread holds the conversation."""
        if self.thread_channel is not None and self.thread_ts is not None:
            return self.thread_channel, self.thread_ts
        return self.channel, self.ts


class ChannelBoard(Base):
    """The queue board `consumer` keeps in an expert channel: one message listing the
    handoffs waiting there without a card of their own (a handoff's `ChannelCard` then
    names `board_channel(channel)`). `digest` is what it shows now, to skip updates that
    would change nothing."""

    __tablename__ = "channel_boards"

    consumer: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32), primary_key=True)
    ts: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


BOARD_PREFIX = "board:"


def board_channel(channel: str) -> str:
    """The `ChannelCard.channel` of a handoff listed on `channel`'s queue board."""
    return BOARD_PREFIX + channel


def on_board(card: ChannelCard | None) -> bool:
    """Whether the handoff is listed on a queue board, not on a card of its own."""
    return card is not None and card.channel.startswith(BOARD_PREFIX)


class InternalNote(Base):
    """Said in a handoff's thread but kept from the customer (`note:` or not the assignee);
    `author` is the expert's gigcx id (a channel's own id for someone not registered). A
    separate table, so no query for the customer's messages can return it."""

    __tablename__ = "internal_notes"
    __table_args__ = (UniqueConstraint("source", name="uq_internal_notes_source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"), index=True)
    author: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(128), nullable=True)  # as Message.source
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxKind(StrEnum):
    """What changed: a handoff's step, or a message someone must be given."""

    REQUESTED = "requested"
    REOFFERED = "reoffered"
    MOVED_TO_STAFF = "moved_to_staff"
    CLAIMED = "claimed"
    RELEASED = "released"
    RESOLVED = "resolved"
    RETURNED = "returned"
    TIMED_OUT = "timed_out"
    # The customer wrote while a handoff was open: for the people on it.
    CUSTOMER_MESSAGE = "customer_message"
    # An expert (or staff) replied while a handoff was open: for a customer channel that
    # delivers replies when the customer is away (e-mail).
    EXPERT_MESSAGE = "expert_message"


class OutboxItem(Base):
    """Something a channel (`consumer`, e.g. "slack") must still be told about a handoff,
    written in the same transaction as the change itself, so it is never lost to a crash or
    the channel's outage.

    Items of one consumer and handoff are delivered in order; a delivered item is deleted.
    `locked_until` is the lease of the server process delivering it, so only one does, and
    `lease_token` fences it: a process whose lease ran out (a slow Slack call) can no longer
    mark the item delivered or due again once another process has taken it over.
    """

    __tablename__ = "outbox"
    # Ids are never reused (AUTOINCREMENT on SQLite): a card records the item that posted it.
    __table_args__ = (
        Index("ix_outbox_consumer_handoff", "consumer", "handoff_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(32))
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"))
    kind: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")


class Lease(Base):
    """A job only one server process may run at a time (the claim-timeout sweeper), held by
    `holder` until `expires_at` and renewed while it runs."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column()


class DecisionTrail(Base):
    """What the bot did with one customer message and why (0010): the action, the reason and
    route of an escalation, the passages it retrieved with their scores, the signals it read.
    Written in the transaction of the bot's message (`seq`): an answer, a clarifying question
    or the handover notice. What `/admin` counts and shows."""

    __tablename__ = "decision_trails"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_decision_trails_seq"),
        Index("ix_decision_trails_brand_created", "brand", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    brand: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # answer | clarify | escalate | small_talk
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    route: Mapped[str | None] = mapped_column(String(16), nullable=True)
    confidence: Mapped[float] = mapped_column(default=0.0)
    query: Mapped[str] = mapped_column(Text, default="")
    product: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # [{title, section, path, score, product}], best first
    passages: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # {signal: value}: what the answerability model and the signal readers saw
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnswerRating(Base):
    """The customer's thumbs up or down on one bot answer (0010); rating again replaces it."""

    __tablename__ = "answer_ratings"
    __table_args__ = (
        UniqueConstraint("conversation_id", "seq", name="uq_answer_ratings_seq"),
        Index("ix_answer_ratings_brand_created", "brand", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    brand: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    seq: Mapped[int] = mapped_column(Integer)
    helpful: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


DraftState = Literal["pending", "accepted", "rejected"]


class KnowledgeDraft(Base):
    """A knowledge entry drafted from a gig expert's resolution (0010), for the brand team
    to edit, accept (written as a `*.faq.yml` entry into the knowledge's drafts folder) or
    reject. Personal data is masked before it is stored."""

    __tablename__ = "knowledge_drafts"
    __table_args__ = (
        UniqueConstraint("handoff_id", name="uq_knowledge_drafts_handoff"),
        Index("ix_knowledge_drafts_brand_state", "brand", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    brand: Mapped[str] = mapped_column(String(64))
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"))
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"))
    question: Mapped[str] = mapped_column(Text)
    alternatives: Mapped[list[str]] = mapped_column(JSON, default=list)
    answer: Mapped[str] = mapped_column(Text)
    product: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    expert: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    # Where an accepted draft was written, relative to the knowledge folder.
    path: Mapped[str | None] = mapped_column(String(512), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
