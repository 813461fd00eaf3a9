"""Hypervisor hosts: the libvirt hosts limen manages besides the default one (LIMEN_LIBVIRT_URI).

Revision ID: 0006_hosts
Revises: 0005_i18n
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_hosts"
down_revision = "0005_i18n"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hypervisor_hosts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("uri", sa.String(1000), nullable=False),
        sa.Column("console_address", sa.String(255), nullable=True),
        sa.Column("draining", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("hypervisor_hosts")
