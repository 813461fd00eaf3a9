"""Owner-only modes for limen's database, logs and their directories (real files, real SQLite)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from limen.cli import _data_dir_modes
from limen.db import Database
from limen.logs import RotatingJsonLines
from limen.private_files import (
    create_private_file,
    open_private_append,
    private_dir,
    private_file,
    traversable_dir,
)
from limen.settings import Settings
from tests.conftest import settings_in


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """The loosest umask a careless service manager might give: nothing is taken away by it."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_a_new_directory_is_owner_only_and_a_loose_one_is_tightened(tmp_path: Path) -> None:
    made = tmp_path / "a" / "data"
    assert private_dir(made) is None
    assert mode(made) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    change = private_dir(loose)
    assert change is not None and (change.was, change.now) == (0o777, 0o700)
    assert change.log_fields() == {"event": "file_mode_tightened", "path": str(loose), "was": "0777", "now": "0700"}
    assert mode(loose) == 0o700
    assert private_dir(loose) is None  # nothing to do the second time


def test_files_are_created_owner_only_and_loose_ones_tightened(tmp_path: Path) -> None:
    new = tmp_path / "new.db"
    assert create_private_file(new) is None
    assert mode(new) == 0o600
    loose = tmp_path / "loose.db"
    loose.write_text("x")
    loose.chmod(0o664)
    change = create_private_file(loose)
    assert change is not None and change.now == 0o600 and loose.read_text() == "x"  # kept, only tightened
    assert private_file(tmp_path / "missing") is None
    appended = tmp_path / "log"
    with open_private_append(appended, "utf-8") as stream:
        stream.write("line\n")
    assert mode(appended) == 0o600
    appended.chmod(0o644)
    with open_private_append(appended, "utf-8") as stream:
        stream.write("more\n")
    assert mode(appended) == 0o600 and appended.read_text() == "line\nmore\n"


def test_log_files_stay_owner_only_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "limen.log"
    handler = RotatingJsonLines(path, max_bytes=4096, backups=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        for number in range(200):
            handler.emit(logging.LogRecord("limen", logging.INFO, "", 0, f"line {number} " + "x" * 60, (), None))
    finally:
        handler.close()
    files = sorted(tmp_path.glob("limen.log*"))
    assert [file.name for file in files] == ["limen.log", "limen.log.1", "limen.log.2"]
    assert {file.name: mode(file) for file in files} == {file.name: 0o600 for file in files}


def test_the_sqlite_database_and_its_wal_and_shm_are_owner_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'limen.db'}"
    db = Database(url)
    try:
        db.migrate()
        with db.engine.connect() as connection:  # an open connection keeps -wal and -shm in place
            connection.execute(text("SELECT 1"))
            files = {path.name: mode(path) for path in (tmp_path / "data").iterdir()}
    finally:
        db.close()
    assert files == {"limen.db": 0o600, "limen.db-wal": 0o600, "limen.db-shm": 0o600}
    assert mode(tmp_path / "data") == 0o700


def test_an_existing_loose_database_is_tightened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "limen.db"
    Database(f"sqlite:///{path}").close()
    path.chmod(0o644)
    wal = tmp_path / "limen.db-wal"
    wal.touch(mode=0o666)  # an empty WAL, as a crashed writer may leave behind
    caplog.set_level(logging.WARNING, logger="limen.db")
    db = Database(f"sqlite:///{path}")
    try:
        db.migrate()
    finally:
        db.close()
    assert mode(path) == 0o600 and (not wal.exists() or mode(wal) == 0o600)
    tightened = {record.path: (record.was, record.now) for record in caplog.records  # type: ignore[attr-defined]
                 if getattr(record, "event", None) == "file_mode_tightened"}
    assert tightened == {str(path): ("0644", "0600"), str(wal): ("0666", "0600")}


def test_a_directory_qemu_passes_is_searchable_by_all_and_listable_by_its_owner_only(tmp_path: Path) -> None:
    os.umask(0o077)  # the service's: the search bits are set despite it
    made = tmp_path / "new" / "data"
    assert traversable_dir(made) is None  # made, not changed: nothing to log
    assert mode(made) == 0o711 and mode(tmp_path / "new") == 0o700
    private, loose = tmp_path / "private", tmp_path / "loose"
    private.mkdir(mode=0o700)
    loose.mkdir()
    loose.chmod(0o777)
    assert (traversable_dir(private), traversable_dir(loose)) == (0o700, 0o777)
    assert mode(private) == mode(loose) == 0o711
    assert traversable_dir(private) is None


def _packaged_settings(tmp_path: Path, **more: object) -> Settings:
    """The packaged layout: the pool and the ISO library under the data dir."""
    layout: dict[str, object] = {"data_dir": tmp_path / "lib", "iso_dir": tmp_path / "lib" / "isos",
                                 "storage_pool_dir": None}
    return settings_in(tmp_path, **{**layout, **more})


def test_serve_opens_the_data_dir_and_iso_library_to_qemu_when_the_pool_or_isos_are_in_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """QEMU runs as libvirt-qemu on a stock Debian host; a 0700 /var/lib/limen kept it from every disk and ISO
    in /var/lib/limen/{pool,isos} (an install made before stays 0700 until limen serve opens it)."""
    settings = _packaged_settings(tmp_path)
    (tmp_path / "lib" / "isos").mkdir(parents=True, mode=0o700)
    (tmp_path / "lib").chmod(0o700)
    with caplog.at_level(logging.WARNING, logger="limen"):
        _data_dir_modes(settings)
    assert mode(tmp_path / "lib") == mode(tmp_path / "lib" / "isos") == 0o711
    changed = {record.path: (record.was, record.now) for record in caplog.records
               if getattr(record, "event", None) == "file_mode_changed"}
    assert changed == {str(tmp_path / "lib"): ("0700", "0711"), str(tmp_path / "lib" / "isos"): ("0700", "0711")}


def test_serve_keeps_the_data_dir_owner_only_when_qemu_has_nothing_in_it(tmp_path: Path) -> None:
    settings = _packaged_settings(tmp_path, iso_dir=tmp_path / "isos", storage_pool_dir=tmp_path / "pool")
    (tmp_path / "lib").mkdir(mode=0o755)
    _data_dir_modes(settings)
    assert mode(tmp_path / "lib") == 0o700
