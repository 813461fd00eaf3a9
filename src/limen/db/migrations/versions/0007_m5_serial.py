"""Serial consoles: ``console_sessions.kind`` says which console a row is ("vnc", the rows before it, or
"serial").

Revision ID: 0007_m5_serial
Revises: 0006_hosts
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_m5_serial"
down_revision = "0006_hosts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("console_sessions") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="vnc"))


def downgrade() -> None:
    with op.batch_alter_table("console_sessions") as batch:
        batch.drop_column("kind")
