"""The outbox: what Slack must still be told about each handoff, kept until it is delivered.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("handoff_id", sa.String(32), sa.ForeignKey("handoffs.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=False),
    )
    op.create_index("ix_outbox_handoff", "outbox", ["handoff_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_handoff", "outbox")
    op.drop_table("outbox")
