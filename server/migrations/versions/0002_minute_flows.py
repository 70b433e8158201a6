"""Minute aggregates of waiting zones: arrivals, service starts and walk-outs.

The arrival forecast learns each waiting zone's weekday x time-of-day profile from
the arrivals per minute; service starts and walk-outs (sent by edges that classify
exits) give the walk-out rate, a KPI banks track. Nullable: rows written before
this revision, other zone kinds and older edges have none.

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


def upgrade() -> None:
    with op.batch_alter_table("zone_minutes") as batch:
        batch.add_column(sa.Column("arrivals", sa.Integer))
        batch.add_column(sa.Column("service_starts", sa.Integer))
        batch.add_column(sa.Column("walk_outs", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("zone_minutes") as batch:
        batch.drop_column("walk_outs")
        batch.drop_column("service_starts")
        batch.drop_column("arrivals")
