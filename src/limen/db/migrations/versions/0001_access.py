"""Users, API tokens, browser sessions, and the console-session and VM-action audit trail.

Revision ID: 0001_access
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_access"
down_revision = None
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'user')", name="ck_users_role"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("last_used_at", UTC_TIME, nullable=True),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "browser_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=False),
    )
    op.create_index("ix_browser_sessions_user_id", "browser_sessions", ["user_id"])
    op.create_index("ix_browser_sessions_expires_at", "browser_sessions", ["expires_at"])
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("vm_uuid", sa.String(36), nullable=False),
        sa.Column("vm_name", sa.String(64), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("ended_at", UTC_TIME, nullable=True),
        sa.Column("bytes_to_client", sa.BigInteger(), nullable=False),
        sa.Column("bytes_from_client", sa.BigInteger(), nullable=False),
        sa.Column("end_code", sa.String(40), nullable=True),
        sa.Column("terminated_by", sa.String(64), nullable=True),
    )
    op.create_index("ix_console_sessions_user_name", "console_sessions", ["user_name"])
    op.create_index("ix_console_sessions_vm_uuid", "console_sessions", ["vm_uuid"])
    op.create_index("ix_console_sessions_started_at", "console_sessions", ["started_at"])
    op.create_table(
        "vm_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("vm_uuid", sa.String(36), nullable=True),
        sa.Column("vm_name", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("result_code", sa.String(40), nullable=False),
        sa.Column("details", sa.String(200), nullable=False),
    )
    op.create_index("ix_vm_actions_user_name", "vm_actions", ["user_name"])
    op.create_index("ix_vm_actions_vm_uuid", "vm_actions", ["vm_uuid"])
    op.create_index("ix_vm_actions_at", "vm_actions", ["at"])


def downgrade() -> None:
    for table in ("vm_actions", "console_sessions", "browser_sessions", "api_tokens", "users"):
        op.drop_table(table)
