"""`limen backup` / `limen restore` on a real `limen serve` (real SQLite, real libvirtd): a backup made while
the server serves and writes is consistent; a restore is refused while limen serves and for a newer schema,
puts the backed-up rows back (tokens work again), keeps the replaced database, and `--vms` re-defines a VM
that was removed from libvirt."""

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
from tests.support.libvirt_cleanup import domain_exists, remove_domain
from tests.support.server import LIMEN_BIN, LimenProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment of the limen_server fixture's server, for the CLI."""
    return {**os.environ, "LIMEN_LIBVIRT_URI": QEMU_URI, "LIMEN_ISO_DIR": str(ISO_DIR),
            "LIMEN_DATA_DIR": str(tmp_path / "data"), "LIMEN_LOG_DIR": str(tmp_path / "log")}


def limen(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LIMEN_BIN), *args], env=cli_env(tmp_path), capture_output=True, text=True,
                          timeout=120)


def token_names(db_file: Path) -> set[str]:
    with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT name FROM api_tokens")}


def backup_members(file: Path, work: Path) -> tuple[dict[str, object], Path]:
    with tarfile.open(file) as tar:
        tar.extractall(work, filter="data")
    return json.loads((work / "manifest.json").read_text()), work / "limen.db"


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
        manifest, db_file = backup_members(out, tmp_path / f"x{number}")
        assert manifest["schema_revision"] == known_revisions()[-1]
        with sqlite3.connect(db_file) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = token_names(db_file)
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

    server.stop()
    restored = limen(tmp_path, "restore", str(out))
    assert restored.returncode == 0, restored.stderr
    db_file = tmp_path / "data" / "limen.db"
    assert "after-backup" not in token_names(db_file)
    set_aside = list((tmp_path / "data").glob("limen.db.before-restore-*"))
    assert len(set_aside) == 1 and "after-backup" in token_names(set_aside[0])
    assert oct(db_file.stat().st_mode & 0o777) == "0o600"

    server.start()
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        me = client.get("/api/me", headers={"Authorization": f"Bearer {kept}"})
        assert me.status_code == 200, me.text


def test_a_backup_of_a_newer_schema_is_refused_and_changes_nothing(
    limen_server: Callable[..., LimenProcess], tmp_path: Path
) -> None:
    server = limen_server()
    out = tmp_path / "backup.limen"
    assert limen(tmp_path, "backup", str(out), "--no-vms").returncode == 0
    server.stop()
    # The same backup as a future limen would write it: its database and manifest at an unknown revision.
    manifest, db_file = backup_members(out, tmp_path / "x")
    with sqlite3.connect(db_file) as db:
        db.execute("UPDATE alembic_version SET version_num = '0042_future'")
    manifest["schema_revision"] = "0042_future"
    (tmp_path / "x" / "manifest.json").write_text(json.dumps(manifest))
    future = tmp_path / "future.limen"
    with tarfile.open(future, "w:gz") as tar:
        tar.add(tmp_path / "x" / "manifest.json", "manifest.json")
        tar.add(db_file, "limen.db")
    before = (tmp_path / "data" / "limen.db").read_bytes()
    refused = limen(tmp_path, "restore", str(future))
    assert refused.returncode == 1
    assert "'0042_future'" in refused.stderr and "newer" in refused.stderr, refused.stderr
    assert (tmp_path / "data" / "limen.db").read_bytes() == before
    assert list((tmp_path / "data").glob("limen.db.before-restore-*")) == []
    garbage = tmp_path / "garbage.limen"
    garbage.write_bytes(b"not a tar file at all")
    unreadable = limen(tmp_path, "restore", str(garbage))
    assert unreadable.returncode == 1 and "not a readable limen backup" in unreadable.stderr


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
    restored = limen(tmp_path, "restore", str(out), "--vms", "--vm", name)
    assert restored.returncode == 0, restored.stderr
    assert f"defined VMs: {name}" in restored.stdout
    assert domain_exists(QEMU_URI, name)
    again = limen(tmp_path, "restore", str(out), "--vms", "--vm", name)
    assert "defined VMs: none missing" in again.stdout, again.stderr
