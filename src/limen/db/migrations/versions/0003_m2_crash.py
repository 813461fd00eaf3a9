"""Crash recovery: which process an instance is (so a dead one on this host is recognised at once), and at
most one pending create per VM name (so a lost create's leftovers are provably its own), and partial
indexes for the sweeps' queries (live sessions, pending actions).

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
_LIVE_SESSION = sa.text("ended_at IS NULL")
_PENDING_ACTION = sa.text("finished_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("limen_instances") as batch:
        batch.add_column(sa.Column("process_key", sa.String(160), nullable=True))
    op.create_index(
        "uq_vm_actions_pending_create", "vm_actions", ["vm_name"], unique=True,
        sqlite_where=_PENDING_CREATE, postgresql_where=_PENDING_CREATE,
    )
    # Every sweep (each heartbeat) looks for live sessions and pending actions: these stay small.
    op.create_index("ix_console_sessions_live", "console_sessions", ["instance_id"],
                    sqlite_where=_LIVE_SESSION, postgresql_where=_LIVE_SESSION)
    op.create_index("ix_vm_actions_pending", "vm_actions", ["instance_id"],
                    sqlite_where=_PENDING_ACTION, postgresql_where=_PENDING_ACTION)


def downgrade() -> None:
    op.drop_index("ix_vm_actions_pending", "vm_actions")
    op.drop_index("ix_console_sessions_live", "console_sessions")
    op.drop_index("uq_vm_actions_pending_create", "vm_actions")
    with op.batch_alter_table("limen_instances") as batch:
        batch.drop_column("process_key")
