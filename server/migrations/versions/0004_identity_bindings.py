"""Identity bindings made on first sight survive a restart.

``subject`` is ``device:<device id>`` (bound to a branch) or ``camera:<branch>/<camera>``
(bound to a device); ``owner`` is that branch or device. Without this table a
collector forgot every binding on restart, and a hostile device publishing first
afterwards could claim another's camera.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_bindings",
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("bound_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("identity_bindings")
