"""remember who each sent Message-ID went to, so a copy's References names only mail its reader has

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 21:10:00

Rows sent before this revision keep no recipient; later mail leaves them out of References (the
thread still anchors on the customer's first mail).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("email_ids", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient", sa.String(length=320), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("email_ids", schema=None) as batch_op:
        batch_op.drop_column("recipient")
