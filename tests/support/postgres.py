"""A PostgreSQL server of the test's own: a throw-away cluster run as the ``postgres`` system user
(the server refuses root), on a free loopback port, without fsync. Yields a SQLAlchemy URL."""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.net import free_port

SYSTEM_USER = "postgres"


def _tool(name: str) -> str:
    """A server program: on PATH, or where Debian's postgresql packages keep them (off PATH)."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                       None)
    if found is None:
        raise AssertionError(f"{name} is not installed (scripts/setup-host.sh installs postgresql)")
    return found


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *command]


@contextmanager
def postgres_server() -> Iterator[str]:
    initdb, postgres, pg_isready = _tool("initdb"), _tool("postgres"), _tool("pg_isready")
    # Not under pytest's tmp_path: that is root's alone, and the server runs as another user.
    data = Path(tempfile.mkdtemp(prefix="limen-test-pg-"))
    shutil.chown(data, SYSTEM_USER)
    port = free_port()
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(_as_postgres(initdb, "-D", str(data / "cluster"), "-A", "trust", "-U", "limen"),
                       check=True, capture_output=True, timeout=120)
        process = subprocess.Popen(
            _as_postgres(postgres, "-D", str(data / "cluster"), "-h", "127.0.0.1", "-p", str(port),
                         "-k", str(data), "-c", "fsync=off", "-c", "max_connections=120"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while subprocess.run([pg_isready, "-h", "127.0.0.1", "-p", str(port)], capture_output=True,
                             check=False).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"postgres did not start on port {port}")
            time.sleep(0.1)
        yield f"postgresql+psycopg://limen@127.0.0.1:{port}/postgres"
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(data, ignore_errors=True)
