"""Crash recovery: which process an instance is (so a dead one on this host is recognised at once), and at
most one pending create per VM name (so a lost create's leftovers are provably its own).

Revision ID: 0003_m2_crash
Revises: 0002_safety
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_m2_crash"
down_revision = "0002_safety"
branch_labels = None
depends_on = None

_PENDING_CREATE = sa.text("action = 'create' AND finished_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("limen_instances") as batch:
        batch.add_column(sa.Column("process_key", sa.String(160), nullable=True))
    op.create_index(
        "uq_vm_actions_pending_create", "vm_actions", ["vm_name"], unique=True,
        sqlite_where=_PENDING_CREATE, postgresql_where=_PENDING_CREATE,
    )


def downgrade() -> None:
    op.drop_index("uq_vm_actions_pending_create", "vm_actions")
    with op.batch_alter_table("limen_instances") as batch:
        batch.drop_column("process_key")
