"""PLACEHOLDER on the e-mail branch only: helper A's 0008_channel_neutral.py replaces it.

Delete this file when merging the store split; 0009 follows A's 0008.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
