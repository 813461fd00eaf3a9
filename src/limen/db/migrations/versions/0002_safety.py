"""Crash safety and revocation: limen instances with heartbeats, which instance and credential hold each
console session and why it ended, VM actions recorded before their work, case-blind user names, and the
sign-in throttle shared by every instance on one database.

Revision ID: 0002_safety
Revises: 0001_access
Create Date: 2026-12-01
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0002_safety"
down_revision = "0001_access"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


_COLLISION_SEPARATOR = "\u2063"  # INVISIBLE SEPARATOR (category Cf)


def _name_key(name: str) -> str:
    # Kept equal to limen.auth.names.name_key; a migration must not import the code it migrates.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def upgrade() -> None:
    op.create_table(
        "limen_instances",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("heartbeat_at", UTC_TIME, nullable=False),
        sa.Column("stopped_at", UTC_TIME, nullable=True),
    )
    op.create_index("ix_limen_instances_heartbeat_at", "limen_instances", ["heartbeat_at"])
    with op.batch_alter_table("console_sessions") as batch:
        batch.add_column(sa.Column("instance_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("credential", sa.String(80), nullable=True))
        batch.add_column(sa.Column("end_details", sa.String(200), nullable=True))
        batch.create_index("ix_console_sessions_instance_id", ["instance_id"])
    with op.batch_alter_table("vm_actions") as batch:
        batch.add_column(sa.Column("instance_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("finished_at", UTC_TIME, nullable=True))
    # Actions recorded before this revision were written when they finished.
    op.execute("UPDATE vm_actions SET finished_at = at")

    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("name_key", sa.String(256), nullable=True))
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("name", sa.String()),
                     sa.column("name_key", sa.String()))
    connection = op.get_bind()
    taken: set[str] = set()
    for user_id, name in connection.execute(sa.select(users.c.id, users.c.name).order_by(users.c.id)).all():
        key = _name_key(name)
        if key in taken:
            # Two spellings from before (``Sec`` and ``sec``): the older keeps the name in any case; this
            # one is kept too (no account is lost), reachable by its exact name only. The separator is a
            # format character, which no user name may contain, so no new name can ever take this key.
            key = f"{key}{_COLLISION_SEPARATOR}{user_id}"
        taken.add(key)
        connection.execute(users.update().where(users.c.id == user_id).values(name_key=key))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("name_key", existing_type=sa.String(256), nullable=False)
        batch.create_unique_constraint("uq_users_name_key", ["name_key"])

    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_name_key", type_="unique")
        batch.drop_column("name_key")
    with op.batch_alter_table("vm_actions") as batch:
        batch.drop_column("finished_at")
        batch.drop_column("instance_id")
    with op.batch_alter_table("console_sessions") as batch:
        batch.drop_index("ix_console_sessions_instance_id")
        batch.drop_column("end_details")
        batch.drop_column("credential")
        batch.drop_column("instance_id")
    op.drop_index("ix_limen_instances_heartbeat_at", "limen_instances")
    op.drop_table("limen_instances")
