"""Minute aggregates gain flows: arrivals, service starts, walk-outs, unseen departures.

Nullable: rows written before this migration have none, and the departure classes
stay null for zones whose edge does not classify departures (protocol v1 optional
fields ``service_starts_total``, ``walk_outs_total``, ``departures_unseen_total``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = ("arrivals", "service_starts", "walk_outs", "departures_unseen")


def upgrade() -> None:
    # batch mode: SQLite alters a table by copying it (env.py renders batches for it)
    with op.batch_alter_table("zone_minutes") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("zone_minutes") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
