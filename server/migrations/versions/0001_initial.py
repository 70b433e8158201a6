"""Initial schema: alerts, alert events (outbox), deliveries, zone minute aggregates.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("branch", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(64)),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("region", sa.String(64)),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("summary", sa.Text),
        sa.Column("value", sa.Float),
        sa.Column("threshold", sa.Float),
        sa.Column("last_event", sa.String(16)),
        sa.Column("escalated", sa.Boolean, nullable=False),
        sa.Column("last_notified_at", sa.Float),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_alerts_state", "alerts", ["state"])
    op.create_index("ix_alerts_branch_started", "alerts", ["branch", "started_at"])
    op.create_index("ix_alerts_started", "alerts", ["started_at"])
    op.create_table(
        "alert_events",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("alert_id", sa.String(255), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_alert_events_alert", "alert_events", ["alert_id"])
    op.create_table(
        "deliveries",
        sa.Column(
            "event_id",
            sa.String(255),
            sa.ForeignKey("alert_events.event_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("sink", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "zone_minutes",
        sa.Column("branch", sa.String(64), primary_key=True),
        sa.Column("zone", sa.String(64), primary_key=True),
        sa.Column("minute", sa.Integer, primary_key=True),
        sa.Column("samples", sa.Integer, nullable=False),
        sa.Column("queue_length_avg", sa.Float, nullable=False),
        sa.Column("queue_length_max", sa.Integer, nullable=False),
        sa.Column("predicted_wait_s_avg", sa.Float),
        sa.Column("forecast_wait_s_avg", sa.Float),
        sa.Column("realised_wait_p50_s", sa.Float),
        sa.Column("realised_wait_p90_s", sa.Float),
        sa.Column("served", sa.Integer, nullable=False),
        sa.Column("served_within_threshold", sa.Integer, nullable=False),
        sa.Column("served_within_threshold_ratio", sa.Float),
        sa.Column("threshold_s", sa.Float),
    )
    op.create_index("ix_zone_minutes_minute", "zone_minutes", ["minute"])


def downgrade() -> None:
    op.drop_table("zone_minutes")
    op.drop_table("deliveries")
    op.drop_table("alert_events")
    op.drop_table("alerts")
