"""SCHEMA_HEAD: a database found at the newest migration is recognised by one read, without Alembic
(tests/integration/test_upgrade.py runs it in a fresh process on either database)."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import text

from limen.db.database import MIGRATIONS_DIR, SCHEMA_HEAD, Database


def test_schema_head_is_the_migrations_one_head() -> None:
    # Adding a migration without moving SCHEMA_HEAD would make every start run Alembic to find nothing to do.
    assert ScriptDirectory(str(MIGRATIONS_DIR)).get_heads() == [SCHEMA_HEAD]


def test_only_a_database_at_schema_head_counts_as_at_head(tmp_path: Path) -> None:
    never_migrated = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    at_head = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    try:
        assert not never_migrated._at_head()  # no alembic_version table at all
        at_head.migrate()
        assert at_head._at_head()
        at_head.execute_sync(text("UPDATE alembic_version SET version_num = '0006_hosts'"))
        assert not at_head._at_head()
    finally:
        never_migrated.engine.dispose()
        at_head.engine.dispose()

