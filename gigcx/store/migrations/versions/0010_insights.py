"""What brand teams read (`/admin`, `gigcx report`): the bot's decision trail per turn,
customers' thumbs up/down on bot answers, knowledge drafts from expert resolutions, when a
person first replied on a handoff, and the indexes a period's report needs.

Earlier bot turns get their trail from the decision kept with the message (without the
passages, which were not kept); earlier handoffs their first reply from the messages.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 2000


def upgrade() -> None:
    op.create_table(
        "decision_trails",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("brand", sa.String(64), nullable=False),
        _conversation_id(),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(32), nullable=True),
        sa.Column("route", sa.String(16), nullable=True),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("product", sa.String(64), nullable=True),
        sa.Column("passages", sa.JSON, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_decision_trails_seq"),
    )
    op.create_index("ix_decision_trails_brand_created", "decision_trails", ["brand", "created_at"])
    op.create_table(
        "answer_ratings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("brand", sa.String(64), nullable=False),
        _conversation_id(),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("helpful", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_answer_ratings_seq"),
    )
    op.create_index("ix_answer_ratings_brand_created", "answer_ratings", ["brand", "created_at"])
    op.create_table(
        "knowledge_drafts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("brand", sa.String(64), nullable=False),
        sa.Column("handoff_id", sa.String(32), sa.ForeignKey("handoffs.id"), nullable=False),
        _conversation_id(),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("alternatives", sa.JSON, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("product", sa.String(64), nullable=True),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("expert", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("path", sa.String(512), nullable=True),
        sa.Column("decided_by", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("handoff_id", name="uq_knowledge_drafts_handoff"),
    )
    op.create_index("ix_knowledge_drafts_brand_state", "knowledge_drafts", ["brand", "state"])
    with op.batch_alter_table("handoffs") as table:
        table.add_column(sa.Column("first_reply_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_handoffs_created_at", "handoffs", ["created_at"])
    op.create_index("ix_conversations_brand_created", "conversations", ["brand", "created_at"])
    op.execute(
        "UPDATE handoffs SET first_reply_at = (SELECT min(m.created_at) FROM messages m "
        "WHERE m.conversation_id = handoffs.conversation_id AND m.author IN ('expert', 'staff') "
        "AND m.created_at >= handoffs.created_at "
        "AND (handoffs.closed_at IS NULL OR m.created_at <= handoffs.closed_at))"
    )
    _trails_from_messages()


def _conversation_id() -> sa.Column[str]:
    return sa.Column(
        "conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False
    )


def _trails_from_messages() -> None:
    """A trail row for each earlier bot message that kept its decision."""
    bind = op.get_bind()
    messages = sa.table(
        "messages",
        sa.column("id", sa.Integer),
        sa.column("conversation_id", sa.String),
        sa.column("seq", sa.Integer),
        sa.column("author", sa.String),
        sa.column("meta", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    conversations = sa.table(
        "conversations", sa.column("id", sa.String), sa.column("brand", sa.String)
    )
    trails = sa.table(
        "decision_trails",
        *(
            sa.column(name)
            for name in ("brand", "conversation_id", "seq", "action", "reason", "route")
        ),
        sa.column("confidence", sa.Float),
        sa.column("query", sa.Text),
        sa.column("product", sa.String),
        sa.column("passages", sa.JSON),
        sa.column("evidence", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(
                messages.c.id,
                messages.c.conversation_id,
                messages.c.seq,
                messages.c.meta,
                messages.c.created_at,
                conversations.c.brand,
            )
            .join(conversations, conversations.c.id == messages.c.conversation_id)
            .where(messages.c.author == "bot", messages.c.id > last_id)
            .order_by(messages.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        last_id = rows[-1].id
        values: list[dict[str, Any]] = []
        for row in rows:
            decision = (row.meta or {}).get("decision")
            if not isinstance(decision, dict) or not decision.get("action"):
                continue
            values.append(
                {
                    "brand": row.brand,
                    "conversation_id": row.conversation_id,
                    "seq": row.seq,
                    "action": str(decision["action"])[:16],
                    "reason": decision.get("reason"),
                    "route": decision.get("route"),
                    "confidence": float(decision.get("confidence") or 0.0),
                    "query": str(decision.get("query") or ""),
                    "product": decision.get("product"),
                    "passages": [],
                    "evidence": {},
                    "created_at": row.created_at,
                }
            )
        if values:
            bind.execute(trails.insert(), values)


def downgrade() -> None:
    op.drop_index("ix_conversations_brand_created", "conversations")
    op.drop_index("ix_handoffs_created_at", "handoffs")
    with op.batch_alter_table("handoffs") as table:
        table.drop_column("first_reply_at")
    op.drop_table("knowledge_drafts")
    op.drop_table("answer_ratings")
    op.drop_table("decision_trails")
