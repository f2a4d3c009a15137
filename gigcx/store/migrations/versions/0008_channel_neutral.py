"""Channel-neutral experts and outbox: an expert's gigcx id (`experts.key`) and a handle per
channel (`expert_handles`); handoffs, the ledger, ratings and notes name the gigcx id; every
outbox row names its consumer; Slack cards become channel cards.

Existing data: an expert's key is their Slack user id, as the experts file derives it for an
entry without `id:`, so every assignee, ledger row, rating and note that named a registered
Slack id names that expert's key already, unchanged; the Slack id also becomes their "slack"
handle. Outbox rows and cards so far were Slack's.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column) that name an expert: a Slack id before 0008, the expert's key after.
EXPERT_COLUMNS = (
    ("handoffs", "assignee"),
    ("ledger", "expert"),
    ("csat", "assignee"),
    ("internal_notes", "author"),
)


def upgrade() -> None:
    # Experts: the gigcx id, and the Slack id as a handle. The Slack ids wait in a scratch
    # table while `experts` is rebuilt (SQLite copies it, which it would refuse to do with
    # `expert_handles` already pointing at it).
    op.execute("CREATE TABLE slack_ids_0008 AS SELECT id, brand, slack_user_id FROM experts")
    op.add_column("experts", sa.Column("key", sa.String(64), nullable=True))
    op.execute("UPDATE experts SET key = slack_user_id")
    with op.batch_alter_table("experts") as table:
        table.drop_constraint("uq_experts_user", type_="unique")
        table.drop_column("slack_user_id")
        table.alter_column("key", existing_type=sa.String(64), nullable=False)
        table.create_unique_constraint("uq_experts_key", ["brand", "key"])
    op.create_table(
        "expert_handles",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("expert_id", sa.Integer, sa.ForeignKey("experts.id"), nullable=False),
        sa.Column("brand", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("handle", sa.String(128), nullable=False),
        sa.UniqueConstraint("brand", "channel", "handle", name="uq_expert_handles_handle"),
        sa.UniqueConstraint("expert_id", "channel", name="uq_expert_handles_channel"),
    )
    op.execute(
        "INSERT INTO expert_handles (expert_id, brand, channel, handle) "
        "SELECT id, brand, 'slack', slack_user_id FROM slack_ids_0008"
    )
    op.drop_table("slack_ids_0008")

    # The outbox: whose each row is. A plain ALTER on both databases (the table keeps
    # SQLite's AUTOINCREMENT from 0007).
    op.add_column(
        "outbox",
        sa.Column("consumer", sa.String(32), nullable=False, server_default="slack"),
    )
    op.drop_index("ix_outbox_handoff", "outbox")
    op.create_index("ix_outbox_consumer_handoff", "outbox", ["consumer", "handoff_id", "id"])

    # Cards: one per handoff and channel.
    op.create_table(
        "channel_cards",
        sa.Column("handoff_id", sa.String(32), sa.ForeignKey("handoffs.id"), nullable=False),
        sa.Column("consumer", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("outbox_item_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("handoff_id", "consumer", name="pk_channel_cards"),
        sa.UniqueConstraint("consumer", "channel", "ts", name="uq_channel_cards_thread"),
    )
    op.execute(
        "INSERT INTO channel_cards (handoff_id, consumer, channel, ts, outbox_item_id, created_at) "
        "SELECT handoff_id, 'slack', channel, ts, outbox_item_id, created_at FROM slack_cards"
    )
    op.drop_table("slack_cards")


def downgrade() -> None:
    op.create_table(
        "slack_cards",
        sa.Column("handoff_id", sa.String(32), sa.ForeignKey("handoffs.id"), primary_key=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outbox_item_id", sa.Integer, nullable=True),
        sa.UniqueConstraint("channel", "ts", name="uq_slack_cards_thread"),
    )
    op.execute(
        "INSERT INTO slack_cards (handoff_id, channel, ts, created_at, outbox_item_id) "
        "SELECT handoff_id, channel, ts, created_at, outbox_item_id FROM channel_cards "
        "WHERE consumer = 'slack'"
    )
    op.drop_table("channel_cards")

    op.execute("DELETE FROM outbox WHERE consumer <> 'slack'")
    op.drop_index("ix_outbox_consumer_handoff", "outbox")
    op.create_index("ix_outbox_handoff", "outbox", ["handoff_id", "id"])
    op.drop_column("outbox", "consumer")

    # Back to Slack ids: an expert without a Slack handle keeps their key in its place.
    op.add_column("experts", sa.Column("slack_user_id", sa.String(32), nullable=True))
    op.execute(
        "UPDATE experts SET slack_user_id = COALESCE((SELECT handle FROM expert_handles "
        "WHERE expert_handles.expert_id = experts.id AND channel = 'slack'), key)"
    )
    for table, column in EXPERT_COLUMNS:
        op.execute(
            f"UPDATE {table} SET {column} = (SELECT slack_user_id FROM experts "
            f"WHERE experts.key = {table}.{column} LIMIT 1) "
            f"WHERE {column} IN (SELECT key FROM experts)"
        )
    op.drop_table("expert_handles")
    with op.batch_alter_table("experts") as table:
        table.drop_constraint("uq_experts_key", type_="unique")
        table.drop_column("key")
        table.alter_column("slack_user_id", existing_type=sa.String(32), nullable=False)
        table.create_unique_constraint("uq_experts_user", ["brand", "slack_user_id"])
