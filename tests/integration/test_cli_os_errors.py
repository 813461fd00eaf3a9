"""What the machine refuses a command (a directory it cannot make, a file where a directory should be) is one
line and exit 1, not a traceback; a backup aimed at a directory, a pipe, a link or a device is refused before
anything is copied."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.server import LIMEN_BIN

# Python processes: slow for the unit tier. No libvirtd needed.
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]


def limen(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LIMEN_LANG": "en", "LIMEN_DATA_DIR": str(tmp_path / "data"),
                   "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_LIBVIRT_URI": "test:///default", **env}
    environment.pop("LIMEN_DATABASE_URL", None)  # the data dir's own SQLite file: the one that cannot be made
    return subprocess.run([str(LIMEN_BIN), *args], env=environment, capture_output=True, text=True, timeout=60)


def test_a_data_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    plain = tmp_path / "a-file"
    plain.write_text("")
    done = limen(tmp_path, "user", "list", LIMEN_DATA_DIR=str(plain / "data"))
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("limen: Not a directory") and str(plain) in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_backup_aimed_at_a_directory_is_refused_first(tmp_path: Path) -> None:
    target = tmp_path / "backups"
    target.mkdir()
    done = limen(tmp_path, "backup", str(target), "--no-vms")
    assert done.returncode == 1 and "is a directory: give the backup file's name" in done.stderr, done.stderr
    assert list(target.iterdir()) == []


def test_a_backup_aimed_at_a_pipe_a_link_or_a_device_replaces_none_of_them(tmp_path: Path) -> None:
    """``limen backup`` renamed its file over whatever the path named: a FIFO and a symbolic link became
    ordinary files, and as root ``limen backup /dev/full`` replaced the device node."""
    pipe = tmp_path / "pipe.limen"
    os.mkfifo(pipe)
    link = tmp_path / "link.limen"
    link.symlink_to(tmp_path / "elsewhere.txt")
    for target, said in ((pipe, "is a named pipe"), (link, "is a symbolic link"),
                         (Path("/dev/full"), "is a device")):
        done = limen(tmp_path, "backup", str(target), "--no-vms")
        assert done.returncode == 1 and said in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert stat.S_ISFIFO(pipe.lstat().st_mode) and link.is_symlink()
    assert stat.S_ISCHR(Path("/dev/full").lstat().st_mode)


def test_a_restore_whose_database_cannot_be_written_is_one_line_and_replaces_nothing(tmp_path: Path) -> None:
    assert limen(tmp_path, "user", "list").returncode == 0  # the database, made and migrated
    made = limen(tmp_path, "backup", str(tmp_path / "b.limen"), "--no-vms")
    assert made.returncode == 0, made.stderr
    # SQLite cannot open the file it restores into (here a directory holds its name; a read-only or full
    # file system does the same): sqlite3's OperationalError came out as a traceback.
    (tmp_path / "data" / ".limen.db.restoring").mkdir()
    before = (tmp_path / "data" / "limen.db").read_bytes()
    done = limen(tmp_path, "restore", str(tmp_path / "b.limen"))
    assert done.returncode == 1, done.stderr
    assert "cannot write the database at" in done.stderr and "LIMEN_DATA_DIR" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 3, done.stderr
    assert (tmp_path / "data" / "limen.db").read_bytes() == before


def test_a_refused_backup_is_said_as_every_command_says_errors(tmp_path: Path) -> None:
    """Under --json and in Korean, backup and restore errors were plain English lines (BACKUP_FAILED now)."""
    target = tmp_path / "backups"
    target.mkdir()
    as_json = limen(tmp_path, "--json", "backup", str(target), "--no-vms")
    assert as_json.returncode == 1, as_json.stderr
    error = json.loads(as_json.stderr.strip().splitlines()[-1])
    assert error["code"] == "BACKUP_FAILED" and "is a directory" in error["details"]
    korean = limen(tmp_path, "backup", str(target), "--no-vms", LIMEN_LANG="ko")
    assert korean.returncode == 1 and "백업 또는 복원 거부됨" in korean.stderr and "[BACKUP_FAILED]" in korean.stderr
