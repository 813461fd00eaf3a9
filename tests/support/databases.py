"""Which database the tests' limen runs on: SQLite (a file in the data dir, as a default install) or, with
``LIMEN_TEST_DATABASE=postgresql`` (``make test-postgresql``), PostgreSQL: one throw-away cluster for the
whole pytest process (:mod:`tests.support.postgres`, started on first use, stopped at the end of the
session) and a fresh database per data dir, so tests stay apart as they do with their own SQLite files.

Tests name a server's database by its data dir, :func:`database_url_for` ``(data_dir)``, and
:class:`~tests.support.server.LimenProcess` passes the same URL to ``limen serve``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, text

from tests.support.postgres import new_database, postgres_server

if TYPE_CHECKING:
    from limen.db import Database

SQLITE, POSTGRESQL = "sqlite", "postgresql"
_cluster = ExitStack()
_cluster_url: str | None = None
_databases: dict[Path, str] = {}


def chosen_database() -> str:
    chosen = os.environ.get("LIMEN_TEST_DATABASE", SQLITE).strip().lower() or SQLITE
    if chosen not in (SQLITE, POSTGRESQL):
        raise AssertionError(f"LIMEN_TEST_DATABASE={chosen!r}: use {SQLITE!r} or {POSTGRESQL!r}")
    return chosen


def on_postgresql() -> bool:
    return chosen_database() == POSTGRESQL


def database_url_for(data_dir: Path) -> str:
    """The database URL of a limen whose data dir is ``data_dir``: its SQLite file, or its own PostgreSQL
    database (the same one on every call for the same dir)."""
    if not on_postgresql():
        return f"sqlite:///{data_dir / 'limen.db'}"
    key = data_dir.resolve()
    if key not in _databases:
        _databases[key] = new_database(_server_url())
    return _databases[key]


def _server_url() -> str:
    global _cluster_url
    if _cluster_url is None:
        _cluster_url = _cluster.enter_context(postgres_server())
    return _cluster_url


def stop_cluster() -> None:
    """Stops the cluster if it was started (end of the pytest session)."""
    global _cluster_url
    _cluster.close()
    _cluster_url = None
    _databases.clear()


def cli_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a ``limen`` command: on PostgreSQL with the database of its LIMEN_DATA_DIR (as the
    server of that data dir has), unless it names one itself."""
    merged = dict(env)
    if on_postgresql() and "LIMEN_DATABASE_URL" not in merged:
        merged["LIMEN_DATABASE_URL"] = database_url_for(Path(merged.get("LIMEN_DATA_DIR", "/var/lib/limen")))
    return merged


def fetch_all(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one query on the database of ``data_dir`` (SQLite or PostgreSQL alike)."""
    engine = create_engine(database_url_for(data_dir))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        engine.dispose()


def integrity(data_dir: Path) -> str:
    """SQLite's ``PRAGMA integrity_check`` of the data dir's database ("ok"); PostgreSQL's WAL keeps its
    files whole through a killed client, so there it is "ok" when the database answers."""
    if on_postgresql():
        return "ok" if fetch_all(data_dir, "SELECT 1") == [(1,)] else "no answer"
    return str(fetch_all(data_dir, "PRAGMA integrity_check")[0][0])


def a_migration_refuses(path: Path) -> Database:
    """A SQLite database at ``path`` on schema 0002 whose rows the next migration refuses: two pending creates
    of one VM name, which 0003's unique index of pending creates does not take (after its first step added a
    column)."""
    from limen.db import Database

    database = Database(f"sqlite:///{path}")
    database.migrate("0002_safety")
    with database.engine.begin() as connection:
        for _ in range(2):
            connection.execute(text(
                "INSERT INTO vm_actions (user_name, vm_name, action, at, result_code, details) "
                "VALUES ('ada', 'web', 'create', '2026-12-01 00:00:00', 'STARTED', '')"))
    return database
