"""The unit tier's migrated template (tests/unit/conftest.py) takes every SQLite file that holds no schema yet,
Alembic only the ones that hold one: a command on a fresh data directory opens its database to read the host
registry before its audit trail migrates it, and each such command ran every migration (~0.1 s of CPU)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from limen.db import Database
from limen.db.database import SCHEMA_HEAD


def refuse_alembic(monkeypatch: pytest.MonkeyPatch) -> None:
    def upgrade(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("Alembic ran where the template would do")

    monkeypatch.setattr(command, "upgrade", upgrade)


def test_a_file_sqlite_only_opened_gets_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'limen.db'}"
    opened = sqlite3.connect(tmp_path / "limen.db")  # as any SQLite client leaves it: the file's header, no table
    opened.execute("PRAGMA journal_mode=WAL")
    opened.close()
    assert (tmp_path / "limen.db").stat().st_size != 0
    refuse_alembic(monkeypatch)
    database = Database(url)
    try:
        assert database.migrate() == []
        assert database._at_head()
    finally:
        database.close()


def test_a_file_with_a_schema_is_migrated_by_alembic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    try:
        database.migrate("0001_access")
        upgrades: list[str] = []
        upgrade = command.upgrade

        def counted(config: Any, revision: str) -> None:
            upgrades.append(revision)
            upgrade(config, revision)

        monkeypatch.setattr(command, "upgrade", counted)
        assert database.migrate() == ["0001_access"]
        assert upgrades == ["head"] and database._revisions() == [SCHEMA_HEAD]
    finally:
        database.close()
