"""`limen backup` / `limen restore` on a real `limen serve` (real SQLite or PostgreSQL, real libvirtd): a backup
made while the server serves and writes is consistent; a restore is refused while limen serves and for a newer
schema, puts the backed-up rows back (tokens work again), keeps the replaced database, and `--vms` re-defines a
VM that was removed from libvirt. (tests/integration/test_backup_postgres.py has PostgreSQL's own refusals.)"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from limen.backup import known_revisions
from tests.conftest import DEMO_ISO, ISO_DIR, QEMU_URI
from tests.support import databases
from tests.support.libvirt_cleanup import domain_exists, remove_domain
from tests.support.postgres import pg_tool
from tests.support.server import LIMEN_BIN, LimenProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def cli_env(tmp_path: Path, data: str = "data") -> dict[str, str]:
    """The environment of the limen_server fixture's server (its database too), for the CLI."""
    return databases.cli_env({**os.environ, "LIMEN_LIBVIRT_URI": QEMU_URI, "LIMEN_ISO_DIR": str(ISO_DIR),
                              "LIMEN_DATA_DIR": str(tmp_path / data), "LIMEN_LOG_DIR": str(tmp_path / "log")})


def limen(tmp_path: Path, *args: str, data: str = "data") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LIMEN_BIN), *args], env=cli_env(tmp_path, data), capture_output=True, text=True,
                          timeout=120)


def token_names(db_file: Path) -> set[str]:
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT name FROM api_tokens")}


def live_token_names(data_dir: Path) -> set[str]:
    """The token names in the database of ``data_dir`` now."""
    return {str(row[0]) for row in databases.fetch_all(data_dir, "SELECT name FROM api_tokens")}


def backup_members(file: Path, work: Path) -> tuple[dict[str, object], Path]:
    """The manifest and the database member (``limen.db`` or ``limen.pgdump``) of a backup."""
    work.mkdir()
    with tarfile.open(file) as tar:  # each member by name: extraction filters are not in every Python 3.11
        for member in tar.getmembers():
            content = tar.extractfile(member)
            assert member.isfile() and "/" not in member.name and content is not None, member.name
            (work / member.name).write_bytes(content.read())
    database = "limen.pgdump" if databases.on_postgresql() else "limen.db"
    return json.loads((work / "manifest.json").read_text()), work / database


def backed_up_token_names(tmp_path: Path, backup: Path, number: int) -> set[str]:
    """The token names a backup holds, once its database is checked whole: SQLite's integrity check of the
    file; on PostgreSQL the dump restored by `limen restore` into a new, empty database."""
    manifest, database = backup_members(backup, tmp_path / f"x{number}")
    assert manifest["schema_revision"] == known_revisions()[-1]
    if not databases.on_postgresql():
        with sqlite3.connect(database) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return token_names(database)
    restored = limen(tmp_path, "restore", str(backup), data=f"restored-{number}")
    assert restored.returncode == 0, restored.stderr
    return live_token_names(tmp_path / f"restored-{number}")


def dumped_text(dump: Path) -> str:
    """A PostgreSQL dump as SQL text, its rows included."""
    return subprocess.run([pg_tool("pg_restore"), "-f", "-", str(dump)], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_backup_while_serving_and_writing_is_consistent(
    limen_server: Callable[..., LimenProcess], tmp_path: Path
) -> None:
    server = limen_server()
    stop = threading.Event()
    made: list[str] = []

    def write_tokens() -> None:  # a token per request: rows keep arriving during the backups
        with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as client:
            while not stop.is_set():
                name = f"tök-{len(made)}"
                if client.post("/api/tokens", json={"name": name}).status_code == 201:
                    made.append(name)

    writers = [threading.Thread(target=write_tokens) for _ in range(2)]
    for writer in writers:
        writer.start()
    try:
        results = []
        for number in range(3):
            out = tmp_path / f"backup-{number}.limen"
            done = limen(tmp_path, "backup", str(out), "--no-vms")
            assert done.returncode == 0, done.stderr
            results.append(out)
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert len(made) > 5, "the writers wrote nothing during the backups"
    previous: set[str] = set()
    for number, out in enumerate(results):
        assert oct(out.stat().st_mode & 0o777) == "0o600"
        names = backed_up_token_names(tmp_path, out, number)
        assert previous <= names <= {*made, "tests"}  # each later backup holds what the earlier one held
        previous = names


def test_restore_is_refused_while_serving_then_brings_back_the_rows(
    limen_server: Callable[..., LimenProcess], tmp_path: Path
) -> None:
    server = limen_server()
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as client:
        kept = client.post("/api/tokens", json={"name": "kept-by-backup"}).json()["secret"]
        out = tmp_path / "backup.limen"
        assert limen(tmp_path, "backup", str(out), "--no-vms").returncode == 0
        # After the backup: a token revoked and another made; the restore must undo both.
        token_id = next(t["id"] for t in client.get("/api/tokens").json() if t["name"] == "kept-by-backup")
        assert client.delete(f"/api/tokens/{token_id}").status_code == 200
        assert client.post("/api/tokens", json={"name": "after-backup"}).status_code == 201

    refused = limen(tmp_path, "restore", str(out))
    assert refused.returncode == 1 and "stop it before a restore" in refused.stderr, refused.stderr
    # Into another data dir while the server serves on, twice in a row: the copy holds the server's instance
    # row, but the server serves the original; the second restore was refused, naming it, for 15 s.
    for _ in range(2):
        copied = limen(tmp_path, "restore", str(out), data="copy")
        assert copied.returncode == 0, copied.stderr

    server.stop()
    restored = limen(tmp_path, "restore", str(out))
    assert restored.returncode == 0, restored.stderr
    assert "after-backup" not in live_token_names(tmp_path / "data")
    if databases.on_postgresql():  # the replaced database is kept as a dump
        set_aside = list((tmp_path / "data").glob("limen-before-restore-*.pgdump"))
        assert len(set_aside) == 1 and "after-backup" in dumped_text(set_aside[0])
        assert oct(set_aside[0].stat().st_mode & 0o777) == "0o600"
    else:
        db_file = tmp_path / "data" / "limen.db"
        set_aside = list((tmp_path / "data").glob("limen.db.before-restore-*"))
        assert len(set_aside) == 1 and "after-backup" in token_names(set_aside[0])
        assert oct(db_file.stat().st_mode & 0o777) == "0o600"

    server.start()
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        me = client.get("/api/me", headers={"Authorization": f"Bearer {kept}"})
        assert me.status_code == 200, me.text


def database_state(data_dir: Path) -> object:
    """What a refused restore must leave as it was: the SQLite file's bytes, or PostgreSQL's rows that tell."""
    if databases.on_postgresql():
        return [databases.fetch_all(data_dir, sql) for sql in (
            "SELECT version_num FROM alembic_version", "SELECT id, name, revoked_at FROM api_tokens ORDER BY id",
            "SELECT id, name FROM users ORDER BY id")]
    return (data_dir / "limen.db").read_bytes()


def test_a_backup_of_a_newer_schema_is_refused_and_changes_nothing(
    limen_server: Callable[..., LimenProcess], tmp_path: Path
) -> None:
    server = limen_server()
    out = tmp_path / "backup.limen"
    assert limen(tmp_path, "backup", str(out), "--no-vms").returncode == 0
    server.stop()
    # The same backup as a future limen would write it: its database and manifest at an unknown revision.
    manifest, db_file = backup_members(out, tmp_path / "x")
    if not databases.on_postgresql():  # a dump's revision is only read once the manifest's is known
        with sqlite3.connect(db_file) as db:
            db.execute("UPDATE alembic_version SET version_num = '0042_future'")
    manifest["schema_revision"] = "0042_future"
    (tmp_path / "x" / "manifest.json").write_text(json.dumps(manifest))
    future = tmp_path / "future.limen"
    with tarfile.open(future, "w:gz") as tar:
        tar.add(tmp_path / "x" / "manifest.json", "manifest.json")
        tar.add(db_file, db_file.name)
    before = database_state(tmp_path / "data")
    refused = limen(tmp_path, "restore", str(future))
    assert refused.returncode == 1
    assert "'0042_future'" in refused.stderr and "newer" in refused.stderr, refused.stderr
    assert database_state(tmp_path / "data") == before
    assert list((tmp_path / "data").glob("limen*before-restore-*")) == []
    garbage = tmp_path / "garbage.limen"
    garbage.write_bytes(b"not a tar file at all")
    unreadable = limen(tmp_path, "restore", str(garbage))
    assert unreadable.returncode == 1 and "not a readable limen backup" in unreadable.stderr
    # A real backup whose compressed stream is damaged at its first block: zlib's error was a traceback.
    flipped = tmp_path / "flipped.limen"
    data = bytearray(out.read_bytes())
    start = 10  # past gzip's fixed header, and its file name when one is there (RFC 1952)
    if data[3] & 0x08:
        start = data.index(0, start) + 1
    data[start] = 0xFF  # block type 3: reserved, "invalid block type"
    flipped.write_bytes(bytes(data))
    for broken in (garbage, flipped):
        refused = limen(tmp_path, "restore", str(broken))
        assert refused.returncode == 1 and "not a readable limen backup" in refused.stderr, refused.stderr
        # The progress line, then the error as the command line says errors (title: details, then the advice).
        assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) <= 3, refused.stderr
        assert "[BACKUP_FAILED]" in refused.stderr
    assert database_state(tmp_path / "data") == before


def test_restore_vms_defines_a_vm_libvirt_lost(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str], tmp_path: Path
) -> None:
    server = limen_server()
    name = vm_names()
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=60) as client:
        created = client.post("/api/vms", json={"name": name, "memory_mib": 64, "iso": DEMO_ISO})
        assert created.status_code == 201, created.text
    out = tmp_path / "backup.limen"
    done = limen(tmp_path, "--json", "backup", str(out))
    assert done.returncode == 0, done.stderr
    assert name in [vm["name"] for vm in json.loads(done.stdout)["vms"]]
    server.stop()
    remove_domain(QEMU_URI, name)
    assert not domain_exists(QEMU_URI, name)
    # A typo in --vm is said before anything changes (it defined nothing and replaced the database quietly).
    typo = limen(tmp_path, "restore", str(out), "--vm", f"{name}x")
    assert typo.returncode == 1 and f"holds no VM named '{name}x'" in typo.stderr, typo.stderr
    assert list((tmp_path / "data").glob("limen*before-restore-*")) == []
    restored = limen(tmp_path, "restore", str(out), "--vm", name)  # --vm alone implies --vms
    assert restored.returncode == 0, restored.stderr
    assert f"defined VMs: {name}" in restored.stdout
    assert domain_exists(QEMU_URI, name)
    again = limen(tmp_path, "restore", str(out), "--vms", "--vm", name)
    assert "defined VMs: none missing" in again.stdout, again.stderr
