"""``vm_actions.vm_name`` holds a volume's whole name: a ``delete-volume`` row names the volume there, and a
63-character VM's disk (``NAME-disk0-<8 hex>.qcow2``) is longer than a VM's name may be.

Revision ID: 0008_audit_target_names
Revises: 0007_m5_serial
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_audit_target_names"
down_revision = "0007_m5_serial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("vm_actions") as batch:
        batch.alter_column("vm_name", existing_type=sa.String(64), type_=sa.String(255), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("vm_actions") as batch:
        batch.alter_column("vm_name", existing_type=sa.String(255), type_=sa.String(64), existing_nullable=False)
