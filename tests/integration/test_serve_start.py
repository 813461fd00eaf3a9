"""`limen serve` that cannot start says why in one line, exits 1 (something to fix elsewhere) or 2 (its own
settings), and never says first that it serves. It printed "limen serving on …", then a traceback or
uvicorn's message, and exited 3."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.databases import a_migration_refuses
from tests.support.net import free_port
from tests.support.server import LIMEN_BIN

# Python processes: slow for the unit tier. No libvirtd needed (nothing gets that far).
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LIMEN_LANG": "en", "LIMEN_DATA_DIR": str(tmp_path / "data"),
                   "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_LIBVIRT_URI": "test:///default", **env}
    return subprocess.run([str(LIMEN_BIN), "serve", *args], env=environment, capture_output=True, text=True,
                          timeout=60)


def command_environment(tmp_path: Path, data: Path) -> dict[str, str]:
    return {**os.environ, "LIMEN_LANG": "en", "LIMEN_DATA_DIR": str(data), "LIMEN_LOG_DIR": str(tmp_path / "log"),
            "LIMEN_LIBVIRT_URI": "test:///default"}


def serve_and_list(tmp_path: Path, data: Path) -> tuple[subprocess.CompletedProcess[str], ...]:
    """``limen serve`` and ``limen user list`` on the database in ``data``, both expected to fail as the command
    line says an error: what, then the code's advice (two lines), with exit code 1."""
    started = serve(tmp_path, "--port", str(free_port()), LIMEN_DATA_DIR=str(data))
    listed = subprocess.run([str(LIMEN_BIN), "user", "list"], env=command_environment(tmp_path, data),
                            capture_output=True, text=True, timeout=60)
    for done in (started, listed):
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 2, done.stderr
    return started, listed


def test_a_start_that_cannot_happen_says_why_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = serve(tmp_path, "--port", str(port))
    assert in_use.returncode == 1, in_use.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in in_use.stderr

    not_here = serve(tmp_path, "--host", "192.0.2.1", "--port", str(free_port()))  # TEST-NET-1: no one's
    assert not_here.returncode == 2 and "cannot listen on 192.0.2.1" in not_here.stderr, not_here.stderr

    refused = free_port()  # nothing listens there
    no_database = serve(tmp_path, "--port", str(free_port()),
                        LIMEN_DATABASE_URL=f"postgresql://limen:secret@127.0.0.1:{refused}/limen")
    assert no_database.returncode == 1, no_database.stderr
    assert "does not answer" in no_database.stderr and "secret" not in no_database.stderr

    # What is not the database's fault is not blamed on LIMEN_DATABASE_URL: a driver that is not installed,
    # and a data directory where limen cannot keep its SQLite file.
    no_driver = serve(tmp_path, "--port", str(free_port()), LIMEN_DATABASE_URL="postgresql+pg8000://db.invalid/l")
    assert no_driver.returncode == 1 and "needs a driver that is not installed" in no_driver.stderr, no_driver.stderr
    assert 'pip install "limen[postgresql]"' in no_driver.stderr
    plain = tmp_path / "a-file"
    plain.write_text("")
    no_data_dir = serve(tmp_path, "--port", str(free_port()), LIMEN_DATA_DIR=str(plain / "data"))
    assert no_data_dir.returncode == 1, no_data_dir.stderr
    assert f"Check LIMEN_DATA_DIR ({plain / 'data'})" in no_data_dir.stderr, no_data_dir.stderr

    for done in (in_use, not_here, no_database, no_driver, no_data_dir):
        assert "serving on" not in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_database_of_a_newer_limen_is_one_line_from_serve_the_commands_and_doctor(tmp_path: Path) -> None:
    """Rolling back after an upgrade leaves a schema this limen does not know: it was Alembic's 85-line traceback
    (exit 3) from ``serve`` and every command, and ``doctor`` said the database was fine."""
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "limen.db") as made:
        made.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        made.execute("INSERT INTO alembic_version VALUES ('0099_from_the_future')")
    started, listed = serve_and_list(tmp_path, data)
    for done in (started, listed):
        assert "schema '0099_from_the_future' is newer than this limen knows" in done.stderr, done.stderr
        assert "restore a backup taken before the upgrade. [DATABASE_SCHEMA_NEWER]" in done.stderr, done.stderr
    doctor = subprocess.run([str(LIMEN_BIN), "doctor"], env=command_environment(tmp_path, data), capture_output=True,
                            text=True, timeout=120)
    assert doctor.returncode != 0
    assert "newer than this limen knows" in doctor.stdout and "restore a backup" in doctor.stdout, doctor.stdout


def test_a_migration_that_fails_is_one_line_from_serve_and_the_commands_and_leaves_the_schema(tmp_path: Path) -> None:
    """A migration the database's rows refuse (0003's unique index of pending creates, over two of one name)
    was the application's start-up traceback from ``serve``, a message blaming the data directory's
    permissions from every command, and a schema half-migrated that every later start failed on."""
    data = tmp_path / "data"
    a_migration_refuses(data / "limen.db").close()
    started, listed = serve_and_list(tmp_path, data)
    for done in (started, listed):
        assert ("could not be migrated from 0002_safety to 0009_reservation_uuids (UNIQUE constraint failed: "
                "vm_actions.vm_name); it is left at 0002_safety") in done.stderr, done.stderr
        assert "[DATABASE_MIGRATION_FAILED]" in done.stderr, done.stderr
    with sqlite3.connect(data / "limen.db") as left:
        assert left.execute("SELECT version_num FROM alembic_version").fetchall() == [("0002_safety",)]
        columns = [row[1] for row in left.execute("PRAGMA table_info(limen_instances)")]
        assert "process_key" not in columns, columns


def test_a_redis_that_does_not_answer_is_said_by_serve_and_doctor(tmp_path: Path) -> None:
    """With LIMEN_REDIS_URL on a Redis that is down, serve printed Starlette's 20-line start-up traceback (exit
    3), and doctor passed every check though nobody could sign in."""
    redis_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = serve(tmp_path, "--port", str(free_port()), LIMEN_REDIS_URL=redis_url)
    assert started.returncode == 1, started.stderr
    assert "Traceback" not in started.stderr and len(started.stderr.strip().splitlines()) == 2, started.stderr
    assert "ping failed: ConnectionError" in started.stderr and "[REDIS_UNAVAILABLE]" in started.stderr
    environment = {**os.environ, "LIMEN_LANG": "en", "LIMEN_DATA_DIR": str(tmp_path / "data"),
                   "LIMEN_LOG_DIR": str(tmp_path / "log"), "LIMEN_LIBVIRT_URI": "test:///default",
                   "LIMEN_REDIS_URL": redis_url}
    doctor = subprocess.run([str(LIMEN_BIN), "--json", "doctor"], env=environment, capture_output=True, text=True,
                            timeout=120)
    (redis,) = [check for check in json.loads(doctor.stdout)["checks"] if check["name"] == "Redis"]
    assert redis["outcome"] == "fail" and "ping failed" in redis["detail"], redis
