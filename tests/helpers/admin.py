"""The brand team's side in tests: /admin turned on with a known token, and signing in."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gigcx.config import Settings
from gigcx.store import ConversationStore
from gigcx.store.models import (
    AnswerRating,
    Conversation,
    Csat,
    DecisionTrail,
    Handoff,
    LedgerEntry,
    Message,
)
from tests.helpers.experts import ALEX, JORDAN

ADMIN_TOKEN = "admin-secret-for-the-kestrel-team"


def with_admin(settings: Settings, token: str | None = ADMIN_TOKEN) -> Settings:
    web = settings.web.model_copy(
        update={"admin_token": SecretStr(token) if token is not None else None}
    )
    return settings.model_copy(update={"web": web})


async def sign_in(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    """Signs `client` in through the login form; the response (a 303 when right)."""
    return await client.post("/admin/login", data={"token": token, "next": "/admin"})


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def backdate(store: ConversationStore, conversation_id: str, days: int) -> None:
    """Moves everything of a conversation `days` into the past, as if it happened then."""
    shift = timedelta(days=days)
    tables = (Conversation, Message, DecisionTrail, Handoff, AnswerRating, Csat, LedgerEntry)
    async with AsyncSession(store.engine) as session, session.begin():
        for table in tables:
            column = table.id if table is Conversation else table.conversation_id
            for row in await session.scalars(select(table).where(column == conversation_id)):
                for name in TIME_COLUMNS:
                    if getattr(row, name, None) is not None:
                        setattr(row, name, getattr(row, name) - shift)


async def opened_earlier(store: ConversationStore, conversation_id: str, wait: timedelta) -> None:
    """The conversation's handoffs opened `wait` before they were claimed, as if the
    customer had waited (so the page's times to claim, reply and resolve are not zero)."""
    async with AsyncSession(store.engine) as session, session.begin():
        query = select(Handoff).where(Handoff.conversation_id == conversation_id)
        for handoff in await session.scalars(query):
            handoff.created_at -= wait


TIME_COLUMNS = (
    "created_at",
    "updated_at",
    "claimed_at",
    "first_reply_at",
    "closed_at",
    "resolved_at",
    "claim_deadline",
)


async def seed_history(store: ConversationStore, days: int = 20) -> int:
    """A few weeks of conversations written to the store (the bot's answers, clarifying
    questions, escalations that people resolved and customers rated); how many."""
    from tests.test_report import answered, escalated

    made = 0
    for day in range(1, days + 1):
        ids = [await answered(store, helpful=day % 3 != 0) for _ in range(2 + day % 4)]
        if day % 2:
            ids.append(await escalated(store, "expert_needed", "expert", ALEX, 4 + day % 2))
        if day % 5 == 0:
            ids.append(await escalated(store, "staff_topic", "staff", JORDAN, 3))
        for conversation_id in ids:
            await backdate(store, conversation_id, day)
            await opened_earlier(store, conversation_id, timedelta(minutes=3 + 7 * (day % 4)))
        made += len(ids)
    return made
