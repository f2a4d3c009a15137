"""The e-mail channel's marks on a conversation: what the customer has read in the widget
(read receipts) and when, what was sent by e-mail and when, and the hash of the token a
link in an e-mail gave the customer's browser.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as table:
        table.add_column(
            sa.Column("customer_read_seq", sa.Integer, nullable=False, server_default="0")
        )
        table.add_column(sa.Column("customer_read_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("emailed_seq", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True))
        table.add_column(
            sa.Column("link_token_hash", sa.String(64), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("conversations") as table:
        for column in (
            "link_token_hash",
            "emailed_at",
            "emailed_seq",
            "customer_read_at",
            "customer_read_seq",
        ):
            table.drop_column(column)
