"""Knowledge drafts made from expert resolutions, and the brand team's decision on each."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError

from gigcx.store.models import Conversation, Handoff, KnowledgeDraft, utcnow
from gigcx.store.repository import Repository, may_be_id, new_id


class Drafts(Repository):
    async def add_draft(self, **fields: Any) -> KnowledgeDraft:
        """A new pending draft; the one already made for the same handoff if there is one
        (resolving is announced to every worker; each may try)."""
        now = utcnow()
        draft = KnowledgeDraft(
            id=new_id(), state="pending", created_at=now, updated_at=now, **fields
        )
        try:
            async with self._sessions.begin() as session:
                session.add(draft)
        except IntegrityError:
            async with self._reads() as session:
                stored = await session.scalar(
                    select(KnowledgeDraft).where(KnowledgeDraft.handoff_id == fields["handoff_id"])
                )
            if stored is None:
                raise
            return stored
        return draft

    async def has_draft(self, handoff_id: str) -> bool:
        async with self._reads() as session:
            found = await session.scalar(
                select(KnowledgeDraft.id).where(KnowledgeDraft.handoff_id == handoff_id)
            )
            return found is not None

    async def drafts(self, brand: str, state: str | None = None) -> list[KnowledgeDraft]:
        """The brand's drafts, pending first, newest first within a state."""
        query = select(KnowledgeDraft).where(KnowledgeDraft.brand == brand)
        if state is not None:
            query = query.where(KnowledgeDraft.state == state)
        async with self._reads() as session:
            rows = list(await session.scalars(query.order_by(KnowledgeDraft.created_at.desc())))
        order = {"pending": 0, "accepted": 1, "rejected": 2}
        return sorted(rows, key=lambda d: order.get(d.state, 3))

    async def find_draft(self, brand: str, draft_id: str) -> KnowledgeDraft | None:
        if not may_be_id(draft_id):
            return None
        async with self._reads() as session:
            draft = await session.get(KnowledgeDraft, draft_id)
        return draft if draft is not None and draft.brand == brand else None

    async def edit_draft_fields(self, draft_id: str, **fields: Any) -> bool:
        """Change a pending draft's text; False if it is no longer pending."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(KnowledgeDraft)
                .where(KnowledgeDraft.id == draft_id, KnowledgeDraft.state == "pending")
                .values(updated_at=utcnow(), **fields)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def decide_draft(
        self,
        draft_id: str,
        state: str,
        by: str,
        path: str | None = None,
        *,
        from_state: str = "pending",
    ) -> bool:
        """from_state -> `state` (accepted or rejected, or back to pending when writing the
        file failed); False if the draft was not in `from_state` (someone else decided)."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(KnowledgeDraft)
                .where(KnowledgeDraft.id == draft_id, KnowledgeDraft.state == from_state)
                .values(state=state, decided_by=by, path=path, updated_at=utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def resolved_without_draft(self, brand: str, since: datetime) -> list[Handoff]:
        """Gig experts' resolutions since `since` that have no draft yet (a crash between the
        resolution and its draft, or resolutions from before drafts existed)."""
        drafted = exists().where(KnowledgeDraft.handoff_id == Handoff.id)
        async with self._reads() as session:
            rows = await session.scalars(
                select(Handoff)
                .join(Conversation, Conversation.id == Handoff.conversation_id)
                .where(
                    Conversation.brand == brand,
                    Handoff.state == "resolved",
                    Handoff.route == "expert",
                    Handoff.closed_at >= since,
                    ~drafted,
                )
                .order_by(Handoff.closed_at)
            )
            return list(rows)
