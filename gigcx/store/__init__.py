"""Persistence of conversations, messages and handoffs (SQLAlchemy 2 async, Alembic).

SQLite file by default, PostgreSQL by URL; the schema only changes through numbered
migrations in `migrations/versions`. One small repository per responsibility
(`conversations`, `handoffs`, `experts`, `cards`, `outbox`, `leases`, `reports`,
`drafts`), all sharing one
session factory; `ConversationStore` is all of them at once, what the rest of gigcx uses.
"""

from gigcx.store.cards import ChannelCards
from gigcx.store.conversations import Conversations
from gigcx.store.database import StoreUnavailable, create_engine, upgrade_database
from gigcx.store.draft_rows import Drafts
from gigcx.store.experts import Experts
from gigcx.store.handoffs import ClaimerNotEligible, Handoffs
from gigcx.store.leases import Leases
from gigcx.store.models import Conversation, Handoff, Message
from gigcx.store.outbox import EXPERT_CHANNEL_KINDS, Outbox, OutboxKind
from gigcx.store.reports import Reports
from gigcx.store.repository import ConversationNotFound


class ConversationStore(
    Conversations, Handoffs, Experts, ChannelCards, Outbox, Leases, Reports, Drafts
):
    """Every repository over one engine and session factory; each call is one transaction.

    `ConversationStore(engine, consumers={"slack": EXPERT_CHANNEL_KINDS})`: every handoff
    change and relayed message also leaves, in its transaction, one outbox row per consumer
    that wants its kind (none without consumers).
    """


__all__ = [
    "EXPERT_CHANNEL_KINDS",
    "ClaimerNotEligible",
    "Conversation",
    "ConversationNotFound",
    "ConversationStore",
    "Handoff",
    "Message",
    "OutboxKind",
    "StoreUnavailable",
    "create_engine",
    "upgrade_database",
]
