"""What the machine refuses a command (a directory it cannot make, a file where a directory should be) is one
line and exit 1, not a traceback; a backup aimed at a directory is refused before anything is copied."""

from __future__ import annotations

import os
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
