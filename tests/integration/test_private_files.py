"""``limen serve`` keeps its database, logs and their directories owner-only, from the first start and
also when they exist with looser modes (tightened at start, and logged). The data dir, which holds the
storage pool's directory by default, is 0711: QEMU (libvirt-qemu) passes through it, and cannot list it."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.access import provision_admin_token
from tests.support.server import LimenProcess

pytestmark = pytest.mark.integration


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """limen serve inherits it: with umask 0 nothing but limen's own care keeps files private."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def _serve(tmp_path: Path) -> LimenProcess:
    # The SQLite file and its companions are what is checked here, so SQLite also in the PostgreSQL run.
    return LimenProcess({
        "LIMEN_LIBVIRT_URI": "test:///default", "LIMEN_DATA_DIR": str(tmp_path / "data"),
        "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_ISO_DIR": str(tmp_path),
        "LIMEN_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'limen.db'}",
    }, tmp_path / "serve.log")


def test_a_first_start_makes_everything_owner_only(tmp_path: Path) -> None:
    server = _serve(tmp_path).start()
    try:
        data = {path.name: mode(path) for path in (tmp_path / "data").iterdir()}
        logs = {path.name: mode(path) for path in (tmp_path / "log").iterdir()}
    finally:
        server.stop()
    assert mode(tmp_path / "data") == 0o711 and mode(tmp_path / "log") == 0o700
    assert data["limen.db"] == 0o600 and set(data.values()) == {0o600}, data  # -wal, -shm alike
    assert logs == {"limen.log": 0o600}


def test_loose_files_from_before_are_tightened_at_start_and_logged(tmp_path: Path) -> None:
    data, log_dir = tmp_path / "data", tmp_path / "log"
    provision_admin_token(f"sqlite:///{data / 'limen.db'}")  # a database from an earlier run
    log_dir.mkdir(mode=0o777)
    (log_dir / "limen.log").write_text("")
    (log_dir / "limen.log.1").write_text('{"msg": "an old line"}\n')
    data.chmod(0o755)
    (data / "limen.db").chmod(0o644)
    for path in log_dir.iterdir():
        path.chmod(0o666)

    server = _serve(tmp_path).start()
    server.stop()

    assert (mode(data), mode(log_dir)) == (0o711, 0o700)
    assert {path.name: mode(path) for path in [*data.iterdir(), *log_dir.iterdir()]} == {
        path.name: 0o600 for path in [*data.iterdir(), *log_dir.iterdir()]}
    lines = [json.loads(line) for line in (log_dir / "limen.log").read_text().splitlines()]
    tightened = {line["path"]: (line["was"], line["now"])
                 for line in lines if line.get("event") == "file_mode_tightened"}
    assert tightened == {
        str(log_dir): ("0777", "0700"), str(log_dir / "limen.log"): ("0666", "0600"),
        str(log_dir / "limen.log.1"): ("0666", "0600"), str(data / "limen.db"): ("0644", "0600"),
    }
    assert [(line["path"], line["was"], line["now"]) for line in lines
            if line.get("event") == "file_mode_changed"] == [(str(data), "0755", "0711")]
