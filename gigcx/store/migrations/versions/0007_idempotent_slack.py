"""Idempotent Slack edge: a Slack message relayed to the customer (or kept as an internal
note) keeps its Slack identity under a unique key, so a redelivered event is not stored
twice; outbox leases carry a token, so a process whose lease ran out cannot settle an item
another process now holds; a card remembers which outbox item posted it.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode (SQLite) copies each table; on PostgreSQL these are plain ALTER TABLEs.
    with op.batch_alter_table("messages") as table:
        table.add_column(sa.Column("source", sa.String(128), nullable=True))
        table.create_unique_constraint("uq_messages_source", ["source"])
    with op.batch_alter_table("internal_notes") as table:
        table.add_column(sa.Column("source", sa.String(128), nullable=True))
        table.create_unique_constraint("uq_internal_notes_source", ["source"])
    # A card is compared with the outbox item delivering (newer or not) by item id, so ids
    # must never be reused: SQLite reuses the highest rowid once its row is deleted unless
    # the table says AUTOINCREMENT (PostgreSQL's sequences never go back).
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "outbox",
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True} if sqlite else {},
    ) as table:
        table.add_column(sa.Column("lease_token", sa.String(32), nullable=True))
    with op.batch_alter_table("slack_cards") as table:
        table.add_column(sa.Column("outbox_item_id", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("slack_cards") as table:
        table.drop_column("outbox_item_id")
    with op.batch_alter_table("outbox") as table:
        table.drop_column("lease_token")
    with op.batch_alter_table("internal_notes") as table:
        table.drop_constraint("uq_internal_notes_source", type_="unique")
        table.drop_column("source")
    with op.batch_alter_table("messages") as table:
        table.drop_constraint("uq_messages_source", type_="unique")
        table.drop_column("source")
