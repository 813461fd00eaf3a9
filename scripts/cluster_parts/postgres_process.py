"""A PostgreSQL server of its own: a throw-away cluster (Debian's PostgreSQL programs, from
/usr/lib/postgresql/<version>/bin) in a temporary directory, run as the ``postgres`` system user (the
server refuses root), on a free loopback port only, without fsync."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.cluster_parts.ports import free_port

SYSTEM_USER = "postgres"
START_BOUND = 30.0  # seconds until the new server must answer


def pg_tool(name: str) -> str:
    """A server program: on PATH, or where Debian's postgresql packages keep them (off PATH)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if found is None:
        raise RuntimeError(f"{name} is not installed (scripts/setup-host.sh installs postgresql)")
    return found


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *command]


def start_postgres(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Makes a cluster in ``data`` (a directory the ``postgres`` user owns) and starts its server on a free
    loopback port, in its own session (it outlives its starter: `make cluster` stops it by the PID in
    ``data/cluster/postmaster.pid``); waits until it answers. Returns the process and a SQLAlchemy URL."""
    initdb, postgres, pg_isready = pg_tool("initdb"), pg_tool("postgres"), pg_tool("pg_isready")
    port = free_port()
    subprocess.run(_as_postgres(initdb, "-D", str(data / "cluster"), "-A", "trust", "-U", "limen"),
                   check=True, capture_output=True, timeout=120)
    process = subprocess.Popen(
        _as_postgres(postgres, "-D", str(data / "cluster"), "-h", "127.0.0.1", "-p", str(port),
                     "-k", str(data), "-c", "fsync=off", "-c", "max_connections=300"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + START_BOUND
    while subprocess.run([pg_isready, "-h", "127.0.0.1", "-p", str(port)], capture_output=True,
                         check=False).returncode != 0:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_postgres(process)
            raise RuntimeError(f"postgres did not start on port {port}")
        time.sleep(0.1)
    return process, f"postgresql+psycopg://limen@127.0.0.1:{port}/postgres"


def stop_postgres(process: subprocess.Popen[bytes]) -> None:
    """Stops the server and every process of it: its session's group (runuser, the postmaster), the postmaster
    ending its children (each in a session of its own) itself. SIGINT is postgres's fast shutdown; SIGTERM
    (smart) waited for every client to leave, and once runuser had been killed after 10 s, the postmaster lived
    on as an orphan."""
    group = process.pid  # start_postgres starts it in a session of its own: its group's id is its PID
    _signal_group(group, signal.SIGINT)
    deadline = time.monotonic() + 10
    while (process.poll() is None or _signal_group(group, 0)) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(group, signal.SIGKILL)
    process.wait()


def _signal_group(group: int, signum: int) -> bool:
    """Sends ``signum`` to the process group; whether any process of it was there."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True


def postgres_data_dir() -> Path:
    """A new temporary directory for a cluster, owned by the ``postgres`` user (the server runs as it)."""
    data = Path(tempfile.mkdtemp(prefix="limen-test-pg-"))
    shutil.chown(data, SYSTEM_USER)
    return data


@contextmanager
def running_postgres() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A throw-away server (:func:`start_postgres` in a new :func:`postgres_data_dir`): its process and
    SQLAlchemy URL; stopped, and its files removed, on leaving."""
    data = postgres_data_dir()
    try:
        process, url = start_postgres(data)
        try:
            yield process, url
        finally:
            stop_postgres(process)
    finally:
        shutil.rmtree(data, ignore_errors=True)
