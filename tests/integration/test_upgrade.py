"""Upgrades keep data: a database of the first released schema (0001_access) gets rows in every table, then
each later migration runs in turn — every row must survive each step unchanged — and a real `limen serve`
of today's code on the upgraded database lets the old users sign in (including one with a non-ASCII name),
accepts the old API token and browser session, and lists the old audit rows. A new migration is walked by
this test without being named in it."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from limen.auth.passwords import Passwords
from limen.backup import known_revisions
from limen.db.database import SCHEMA_HEAD, Database
from tests.conftest import ISO_DIR, QEMU_URI
from tests.support.databases import database_url_for
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FIRST = "0001_access"
WHEN = "2025-01-02 03:04:05.000000"
LATER = "2099-01-01 00:00:00.000000"
ADMIN, ADMIN_PASSWORD = "Åsa", "old-admin-password-1"
USER, USER_PASSWORD = "bob", "old-user-password-1"
TOKEN = "limen_" + "t" * 43
COOKIE = "c" * 43
CSRF = "x" * 43


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# The first release's rows, table by table, in its own columns.
FIRST_ROWS: dict[str, list[dict[str, Any]]] = {
    "users": [
        {"id": 1, "name": ADMIN, "role": "admin", "created_at": WHEN, "disabled": False},
        {"id": 2, "name": USER, "role": "user", "created_at": WHEN, "disabled": False},
    ],
    "api_tokens": [
        {"id": 1, "user_id": 1, "name": "backup script", "prefix": TOKEN[:12], "secret_hash": sha256(TOKEN),
         "created_at": WHEN, "last_used_at": None, "revoked_at": None},
    ],
    "browser_sessions": [
        {"id_hash": sha256(COOKIE), "user_id": 2, "csrf_token": CSRF, "created_at": WHEN, "expires_at": LATER},
    ],
    "console_sessions": [
        {"id": "s-old-1", "user_name": USER, "vm_uuid": "0b7c6a2e-5a41-4f0e-9a55-111111111111",
         "vm_name": "old-vm", "client_address": "192.0.2.7", "started_at": WHEN, "ended_at": WHEN,
         "bytes_to_client": 12345, "bytes_from_client": 678, "end_code": "CLIENT_CLOSED", "terminated_by": None},
    ],
    "vm_actions": [
        {"id": 1, "user_name": ADMIN, "vm_uuid": "0b7c6a2e-5a41-4f0e-9a55-111111111111", "vm_name": "old-vm",
         "action": "start", "at": WHEN, "result_code": "OK", "details": "started"},
    ],
}


def insert_first_rows(db: Database) -> None:
    passwords = Passwords(PasswordHasher())  # the parameters the first release hashed with
    hashes = {ADMIN: passwords.hash(ADMIN_PASSWORD), USER: passwords.hash(USER_PASSWORD)}
    with db.engine.begin() as connection:
        for table, rows in FIRST_ROWS.items():
            for row in rows:
                values = {**row, "password_hash": hashes[row["name"]]} if table == "users" else row
                columns = ", ".join(values)
                connection.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES "
                                           f"({', '.join(':' + c for c in values)})"), values)
        if connection.dialect.name == "postgresql":
            # The first release's rows took their ids from the tables' sequences; these were given theirs,
            # so the sequences are moved past them as that release would have left them.
            for table, rows in FIRST_ROWS.items():
                if isinstance(rows[0].get("id"), int):
                    connection.execute(sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))


def first_rows_now(db: Database) -> dict[str, list[dict[str, Any]]]:
    """The first release's columns of every row, read back as they are now."""
    found = {}
    with db.engine.connect() as connection:
        for table, rows in FIRST_ROWS.items():
            columns = ", ".join(rows[0])
            result = connection.execute(sa.text(f"SELECT {columns} FROM {table} ORDER BY 1"))
            found[table] = [dict(row._mapping) for row in result]
    return found


def test_every_migration_keeps_the_first_releases_rows_and_todays_limen_reads_them(tmp_path: Path) -> None:
    revisions = known_revisions()
    assert revisions[0] == FIRST and len(revisions) > 1
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    db = Database(database_url_for(data))
    try:
        db.migrate(FIRST)
        insert_first_rows(db)
        expected = first_rows_now(db)
        for revision in revisions[1:]:
            db.migrate(revision)
            assert first_rows_now(db) == expected, f"rows changed by migration {revision}"
        # The pool's connections enforce foreign keys again (SQLite's migrations switch them off meanwhile).
        with pytest.raises(sa.exc.IntegrityError), db.engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO api_tokens (user_id, name, prefix, secret_hash, created_at) "
                                       "VALUES (999, 'orphan', 'limen_orphan', 'x', :at)"), {"at": WHEN})
    finally:
        db.close()

    env = {"LIMEN_LIBVIRT_URI": QEMU_URI, "LIMEN_ISO_DIR": str(ISO_DIR), "LIMEN_DATA_DIR": str(data),
           "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_STATS_INTERVAL": "0"}
    server = LimenProcess({**os.environ, **env}, tmp_path / "serve.log").start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            # The old token, as a script would use it.
            token = {"Authorization": f"Bearer {TOKEN}"}
            me = client.get("/api/me", headers=token)
            assert me.status_code == 200 and me.json()["name"] == ADMIN, me.text
            # The old browser session, as the browser still holds it.
            with httpx.Client(base_url=server.base_url, timeout=30, cookies={"limen_session": COOKIE}) as browser:
                old = browser.get("/api/me")
            assert old.status_code == 200 and old.json()["name"] == USER, old.text
            # Both old users sign in with their old passwords; the name matches case-blind since 0002.
            for name, password in ((ADMIN, ADMIN_PASSWORD), (USER.upper(), USER_PASSWORD)):
                signed = client.post("/api/login", json={"name": name, "password": password},
                                     headers={"Origin": server.base_url})
                assert signed.status_code == 200, signed.text
            users = {u["name"]: u for u in client.get("/api/users", headers=token).json()}
            assert set(users) == {ADMIN, USER} and users[ADMIN]["role"] == "admin"
            sessions = client.get("/api/console-sessions", headers=token).json()
            assert [(s["id"], s["bytes_to_client"], s["end_code"]) for s in sessions] == [
                ("s-old-1", 12345, "CLIENT_CLOSED")]
            actions = client.get("/api/vm-actions", headers=token).json()
            assert [(a["vm_name"], a["action"], a["result_code"]) for a in actions] == [("old-vm", "start", "OK")]
            tokens = client.get("/api/tokens", headers=token).json()
            assert [t["name"] for t in tokens] == ["backup script"]
            assert secrets.compare_digest(tokens[0]["prefix"], TOKEN[:12])
    finally:
        server.stop()


def _migrate_in_a_new_process(url: str, revision: str = "head") -> tuple[bool, str]:
    """``Database(url).migrate(revision)`` in a fresh interpreter, as a command or a server starts: whether
    Alembic got loaded, and the revision the database is at after it."""
    script = (
        "import sys\n"
        "from sqlalchemy import text\n"
        "from limen.db.database import Database\n"
        f"db = Database({url!r})\n"
        f"db.migrate({revision!r})\n"
        "with db.engine.connect() as connection:\n"
        "    revision = connection.execute(text('SELECT version_num FROM alembic_version')).scalar_one()\n"
        "print('alembic' in sys.modules, revision)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded, now_at = done.stdout.split()
    return loaded == "True", now_at


def test_a_database_at_head_opens_without_alembic_and_an_older_one_is_upgraded(tmp_path: Path) -> None:
    """Every command and every start opens the database: at the newest revision that is one read, and
    Alembic (~0.16 s to import) stays unloaded; a new or older database is migrated by Alembic as before."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    url = database_url_for(data)
    assert _migrate_in_a_new_process(url, FIRST) == (True, FIRST)
    assert _migrate_in_a_new_process(url) == (True, SCHEMA_HEAD)
    assert _migrate_in_a_new_process(url) == (False, SCHEMA_HEAD)


def test_a_migration_is_logged_from_and_to_which_revision(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An upgraded limen migrated an older database without a word in its log."""
    database = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    try:
        with caplog.at_level(logging.INFO, logger="limen.db"):
            database.migrate("0001_access")
            database.migrate()
            database.migrate()  # at head: nothing to say
        events = [(r.getMessage(), r.from_revision, r.to_revision)
                  for r in caplog.records if getattr(r, "event", None) == "schema_migrated"]
        assert events == [("database schema created", None, "0001_access"),
                          ("database schema migrated", "0001_access", SCHEMA_HEAD)]
    finally:
        database.engine.dispose()
