"""index the intake queue by lane, so claiming stays cheap with a backlog

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_items", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_items_lane", ["lane", "state", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inbound_items", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_items_lane")
