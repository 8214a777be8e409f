"""remember which Slack edit a message holds, so an older edit arriving late does not undo a newer one

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 05:10:00

Messages edited before this revision hold no edit time: the next edit to arrive is taken, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slack_edit_ts", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("slack_edit_ts")
