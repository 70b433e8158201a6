"""Deliveries gain a claim: ``sending_at`` is committed before a send starts.

A pending delivery with ``sending_at`` set was handed to its sink by a collector
that did not live (or could not write) to record the outcome: the sink may or may
not have it ("in doubt"). The next sender re-sends it marked as a redelivery with
the same idempotency key, so receivers can drop it; one without a claim was never
attempted and goes out unmarked. Nullable: rows from before the migration were
never claimed.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("sending_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("sending_at")
