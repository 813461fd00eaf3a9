"""Reading a backup file takes only the members a backup has: other names (a path climbing out, a link, a
VM file that is not a UUID) are ignored, nothing is written outside the work directory, and a file that is
no backup is refused with a message."""

from __future__ import annotations

import io
import os
import sqlite3
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from limen import __version__
from limen.backup import BACKUP_FORMAT, BackupError, Manifest, VmRecord, check_restorable, open_backup

UUID = "0b7c6a2e-5a41-4f0e-9a55-111111111111"


def _member(tar: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.type = len(data), kind
    if kind == tarfile.SYMTYPE:
        info.size, info.linkname = 0, "/etc/passwd"
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _backup(path: Path, tmp: Path, revision: str | None = None, extra: Sequence[tuple[str, bytes]] = ()) -> None:
    db = tmp / "source.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num TEXT)")
        if revision:
            connection.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    connection.close()
    manifest = Manifest(BACKUP_FORMAT, __version__, revision, "2026-01-01T00:00:00+00:00", "sqlite", None,
                        [VmRecord(UUID, "vm")])
    with tarfile.open(path, "w:gz") as tar:
        _member(tar, "manifest.json", manifest.to_json().encode())
        _member(tar, "limen.db", db.read_bytes())
        _member(tar, f"vms/{UUID}.xml", b"<domain/>")
        for name, data in extra:
            _member(tar, name, data)
        _member(tar, "vms/link.xml", b"", tarfile.SYMTYPE)


def test_only_a_backups_members_are_read(tmp_path: Path) -> None:
    file, work = tmp_path / "b.limen", tmp_path / "work"
    work.mkdir()
    _backup(file, tmp_path, "0001_access", [("../escaped", b"x"), ("vms/../../x.xml", b"x"),
                                            ("vms/not-a-uuid.xml", b"x"), ("/etc/limen-test", b"x")])
    backup = open_backup(file, work)
    assert backup.vm_xml == {UUID: "<domain/>"}
    assert sorted(p.name for p in work.iterdir()) == ["limen.db"]
    assert not (tmp_path / "escaped").exists() and not Path("/etc/limen-test").exists()
    check_restorable(backup)


def test_a_newer_schema_an_empty_database_and_a_non_backup_are_refused(tmp_path: Path) -> None:
    file, work = tmp_path / "b.limen", tmp_path / "work"
    work.mkdir()
    _backup(file, tmp_path, "0042_future")
    with pytest.raises(BackupError, match=r"'0042_future'.*newer"):
        check_restorable(open_backup(file, work))
    # An older limen's backup of an empty file (no schema): restored, it replaced the real database.
    (tmp_path / "empty").mkdir()
    _backup(file, tmp_path / "empty", None)
    with pytest.raises(BackupError, match=r"holds no limen database"):
        check_restorable(open_backup(file, work))
    (tmp_path / "junk").write_bytes(b"\x00" * 1000)
    with pytest.raises(BackupError, match=r"not a (readable )?limen backup"):
        open_backup(tmp_path / "junk", work)


@pytest.mark.parametrize("manifest", [
    b"[" * 100_000 + b"]" * 100_000,  # deeper than Python's json reads: a RecursionError's traceback
    b'{"format": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"format": 1, "limen_version": "x", "schema_revision": null, "created_at": "x", "database": "sqlite", '
    b'"vms": [1, 2]}',
    b'{"format": 1, "vms": 5}',
    b"\xff\xfe",
    b'{"format": NaN}',
])
def test_a_manifest_limen_cannot_read_is_refused_with_a_message(tmp_path: Path, manifest: bytes) -> None:
    file, work = tmp_path / "b.limen", tmp_path / "work"
    work.mkdir()
    with tarfile.open(file, "w:gz") as tar:
        _member(tar, "manifest.json", manifest)
        _member(tar, "limen.db", b"x")
    with pytest.raises(BackupError, match=r"limen backup|manifest"):
        open_backup(file, work)


def test_a_device_a_pipe_or_a_directory_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """Read as an archive, /dev/zero never ended; a named pipe cannot be read as one."""
    work = tmp_path / "work"
    work.mkdir()
    pipe = tmp_path / "backup.limen"
    os.mkfifo(pipe)
    for file, kind in ((Path("/dev/zero"), "a device"), (pipe, "a named pipe"), (tmp_path, "a directory")):
        with pytest.raises(BackupError, match=rf"is {kind}: a backup is read from an ordinary file"):
            open_backup(file, work)
    assert list(work.iterdir()) == []
