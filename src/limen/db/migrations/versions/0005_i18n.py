"""Each user's language for the UI (``users.language``: ``ko``, ``en``, or NULL for the browser's choice).

Revision ID: 0005_i18n
Revises: 0004_m3_quota
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_i18n"
down_revision = "0004_m3_quota"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("language")
