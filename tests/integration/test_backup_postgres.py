"""`limen backup` / `limen restore` on PostgreSQL (a throw-away cluster of tests.support.postgres): the backup
holds a pg_dump of the database beside the manifest; a restore brings the rows back, keeps the replaced
database as a dump, migrates, and refuses a newer schema, a damaged dump and a SQLite backup, changing
nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from limen.backup import known_revisions
from tests.support.postgres import new_database, postgres_server
from tests.support.server import LIMEN_BIN

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def limen(tmp_path: Path, database_url: str, *args: str, stdin: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LIMEN_LIBVIRT_URI": "test:///default", "LIMEN_DATA_DIR": str(tmp_path / "data"),
           "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_DATABASE_URL": database_url}
    return subprocess.run([str(LIMEN_BIN), *args], env=env, capture_output=True, text=True, timeout=120,
                          input=stdin)


def query(database_url: str, sql: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {str(row[0]) for row in connection.execute(text(sql))}
    finally:
        engine.dispose()


def token_names(database_url: str) -> set[str]:
    return query(database_url, "SELECT name FROM api_tokens")


def make_token(tmp_path: Path, database_url: str, name: str) -> None:
    done = limen(tmp_path, database_url, "token", "create", name, "--user", "ålice")
    assert done.returncode == 0, done.stderr


def rewritten(backup: Path, out: Path, **members: bytes) -> Path:
    """``backup`` with some members' contents replaced."""
    with tarfile.open(backup) as source, tarfile.open(out, "w:gz") as target:
        for member in source:
            data = members.get(member.name.replace(".", "_"))
            if data is None:
                extracted = source.extractfile(member)
                assert extracted is not None
                data = extracted.read()
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            target.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture
def database(postgres: str, tmp_path: Path) -> str:
    url = new_database(postgres)
    done = limen(tmp_path, url, "user", "create", "ålice", "--password-stdin", stdin="correct horse battery\n")
    assert done.returncode == 0, done.stderr
    make_token(tmp_path, url, "before-backup")
    return url


def test_backup_and_restore_bring_the_rows_back(database: str, tmp_path: Path) -> None:
    out = tmp_path / "backup.limen"
    done = limen(tmp_path, database, "--json", "backup", str(out), "--no-vms")
    assert done.returncode == 0, done.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(out) as tar:
        assert sorted(tar.getnames()) == ["limen.pgdump", "manifest.json"]
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        manifest = json.loads(manifest_file.read())
    assert manifest["database"] == "postgresql"
    assert manifest["schema_revision"] == known_revisions()[-1] == json.loads(done.stdout)["schema_revision"]

    make_token(tmp_path, database, "after-backup")
    restored = limen(tmp_path, database, "restore", str(out))
    assert restored.returncode == 0, restored.stderr
    assert token_names(database) == {"before-backup"}
    assert query(database, "SELECT name FROM users") == {"ålice"}
    assert query(database, "SELECT version_num FROM alembic_version") == {known_revisions()[-1]}
    (kept,) = (tmp_path / "data").glob("limen-before-restore-*.pgdump")
    assert str(kept) in restored.stdout and oct(kept.stat().st_mode & 0o777) == "0o600"
    # The dump of the replaced database restores too: it is the way back.
    undo = rewritten(out, tmp_path / "undo.limen", limen_pgdump=kept.read_bytes())
    assert limen(tmp_path, database, "restore", str(undo)).returncode == 0
    assert token_names(database) == {"before-backup", "after-backup"}


def test_an_older_schema_is_migrated_after_the_restore(postgres: str, tmp_path: Path) -> None:
    from limen.db import Database

    old = new_database(postgres)
    first = known_revisions()[0]
    db = Database(old)
    db.migrate(first)
    db.close()
    out = tmp_path / "old.limen"
    done = limen(tmp_path, old, "backup", str(out), "--no-vms")
    assert done.returncode == 0, done.stderr
    target = new_database(postgres)
    assert limen(tmp_path, target, "restore", str(out)).returncode == 0
    assert query(target, "SELECT version_num FROM alembic_version") == {known_revisions()[-1]}


def test_a_restore_whose_migration_fails_puts_the_replaced_database_back(
    postgres: str, database: str, tmp_path: Path
) -> None:
    """An older backup whose rows a later migration refuses (two unfinished creations of one VM, against the
    third schema's unique index): the restore printed Alembic's traceback and left the backup's unmigrated
    database in place. The replaced one is restored from its dump now, in one transaction."""
    from limen.db import Database

    old = new_database(postgres)
    db = Database(old)
    db.migrate("0002_safety")
    db.close()
    engine = create_engine(old)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO vm_actions (user_name, vm_name, action, at, result_code, details) "
                                    "VALUES ('zoe', 'web', 'create', now(), 'OK', ''), "
                                    "('zoe', 'web', 'create', now(), 'OK', '')"))
    finally:
        engine.dispose()
    out = tmp_path / "old.limen"
    assert limen(tmp_path, old, "backup", str(out), "--no-vms").returncode == 0
    failed = limen(tmp_path, database, "restore", str(out))
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    (kept,) = (tmp_path / "data").glob("limen-before-restore-*.pgdump")
    assert "could not be migrated to this version's" in failed.stderr
    assert f"the database it replaced is back in place (its dump is kept at {kept})" in failed.stderr
    assert token_names(database) == {"before-backup"}
    assert query(database, "SELECT version_num FROM alembic_version") == {known_revisions()[-1]}


@pytest.mark.parametrize("damage", ["newer schema", "damaged dump", "sqlite backup"])
def test_a_refused_restore_changes_nothing(database: str, tmp_path: Path, damage: str) -> None:
    out = tmp_path / "backup.limen"
    assert limen(tmp_path, database, "backup", str(out), "--no-vms").returncode == 0
    make_token(tmp_path, database, "after-backup")
    with tarfile.open(out) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        manifest = json.loads(manifest_file.read())
    if damage == "newer schema":
        manifest["schema_revision"] = "0042_future"
        bad = rewritten(out, tmp_path / "bad.limen", manifest_json=json.dumps(manifest).encode())
        expected = "newer than this limen"
    elif damage == "damaged dump":
        bad = rewritten(out, tmp_path / "bad.limen", limen_pgdump=b"PGDMP not really a dump")
        expected = "damaged"
    else:
        manifest["database"] = "sqlite"
        with tarfile.open(tmp_path / "bad.limen", "w:gz") as target:
            for name, data in (("manifest.json", json.dumps(manifest).encode()), ("limen.db", b"")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                target.addfile(info, io.BytesIO(data))
        bad = tmp_path / "bad.limen"
        expected = "this limen uses postgresql"
    refused = limen(tmp_path, database, "restore", str(bad))
    assert refused.returncode == 1 and expected in refused.stderr, refused.stderr
    assert token_names(database) == {"before-backup", "after-backup"}
    assert not list((tmp_path / "data").glob("limen-before-restore-*"))


def test_a_restore_is_refused_while_an_instance_serves_the_database(database: str, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from limen.instances import this_process

    out = tmp_path / "backup.limen"
    assert limen(tmp_path, database, "backup", str(out), "--no-vms").returncode == 0
    make_token(tmp_path, database, "after-backup")
    # This test's own process, heartbeat now: a serving limen as the restore judges one.
    me, now = this_process(), datetime.now(UTC)
    engine = create_engine(database)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO limen_instances (id, hostname, pid, started_at, heartbeat_at, process_key) "
                "VALUES ('serving', :host, :pid, :now, :now, :key)"), {"host": me.hostname, "pid": me.pid,
                                                                     "now": now, "key": me.key})
    finally:
        engine.dispose()
    refused = limen(tmp_path, database, "restore", str(out))
    assert refused.returncode == 1 and "stop it before a restore" in refused.stderr, refused.stderr
    assert token_names(database) == {"before-backup", "after-backup"}
