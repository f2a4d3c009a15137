"""Persistence of conversations, messages and handoffs (SQLAlchemy 2 async, Alembic).

SQLite file by default, PostgreSQL by URL; the schema only changes through numbered
migrations in `migrations/versions`.
"""

from gigcx.store.conversations import ClaimerNotEligible, ConversationNotFound, ConversationStore
from gigcx.store.database import StoreUnavailable, create_engine, upgrade_database
from gigcx.store.models import Conversation, Handoff, Message

__all__ = [
    "ClaimerNotEligible",
    "Conversation",
    "ConversationNotFound",
    "ConversationStore",
    "Handoff",
    "Message",
    "StoreUnavailable",
    "create_engine",
    "upgrade_database",
]
