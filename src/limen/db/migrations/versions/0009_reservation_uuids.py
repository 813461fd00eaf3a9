"""``quota_reservations.vm_uuid``: a reservation is its VM's by UUID, whatever the VM is named by the time it is
counted (a start checked under a VM's old name and a rename to more vCPUs at once counted as two VMs).

Revision ID: 0009_reservation_uuids
Revises: 0008_audit_target_names
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_reservation_uuids"
down_revision = "0008_audit_target_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows written by an older limen still running beside this one (an upgrade of one replica at a
    # time) have none and count by name, as they did.
    with op.batch_alter_table("quota_reservations") as batch:
        batch.add_column(sa.Column("vm_uuid", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("quota_reservations") as batch:
        batch.drop_column("vm_uuid")
