"""Queue boards: the one message per expert channel that lists the handoffs waiting there
when the channel is too busy for a card each (Slack's rate limits in a surge); and cards
whose update was put off for want of a turn (`stale_since`), brought up to date later; and
the last message a card's transcript shows (`shows_seq`), which is not relayed again; and
where a claimed handoff's conversation went when its channel was busy (`thread_channel`,
`thread_ts`: a message in the expert's DM with the app).

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_boards",
        sa.Column("consumer", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("ts", sa.String(32), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "channel", name="pk_channel_boards"),
    )
    with op.batch_alter_table("channel_cards") as table:
        table.add_column(sa.Column("stale_since", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("shows_seq", sa.Integer, nullable=True))
        table.add_column(sa.Column("thread_channel", sa.String(32), nullable=True))
        table.add_column(sa.Column("thread_ts", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("channel_cards") as table:
        table.drop_column("thread_ts")
        table.drop_column("thread_channel")
        table.drop_column("shows_seq")
        table.drop_column("stale_since")
    op.drop_table("channel_boards")
