"""Quotas and self-registration: per-user quota overrides, the quota lock row, reservations of changes in
flight, and ``users.approved`` (existing users are approved).

Revision ID: 0004_m3_quota
Revises: 0003_m2_crash
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_m3_quota"
down_revision = "0003_m2_crash"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("approved", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        "user_quotas",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("max_vms", sa.Integer(), nullable=True),
        sa.Column("max_vcpus", sa.Integer(), nullable=True),
        sa.Column("max_memory_mib", sa.Integer(), nullable=True),
        sa.Column("max_disk_gib", sa.Integer(), nullable=True),
    )
    lock = op.create_table(
        "quota_lock",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(lock, [{"id": 1, "generation": 0}])
    op.create_table(
        "quota_reservations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_name", sa.String(64), nullable=True),
        sa.Column("vm_name", sa.String(64), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mib", sa.Integer(), nullable=False),
        sa.Column("disk_bytes", sa.BigInteger(), nullable=False),
        sa.Column("instance_id", sa.String(40), nullable=True, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quota_reservations")
    op.drop_table("quota_lock")
    op.drop_table("user_quotas")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("approved")
