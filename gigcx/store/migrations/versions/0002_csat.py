"""CSAT: the customer's 1-5 rating and comment after a resolution; the assignee's shown name.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "csat",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "conversation_id", sa.String(32), sa.ForeignKey("conversations.id"), nullable=False
        ),
        sa.Column("handoff_id", sa.String(32), sa.ForeignKey("handoffs.id"), nullable=False),
        sa.Column("assignee", sa.String(128), nullable=True),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("handoff_id", name="uq_csat_handoff"),
    )
    op.create_index("ix_csat_conversation_id", "csat", ["conversation_id"])
    with op.batch_alter_table("handoffs") as batch:
        batch.add_column(sa.Column("assignee_name", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("assignee_name")
    op.drop_table("csat")
