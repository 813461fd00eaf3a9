"""A PostgreSQL server of the test's own (scripts/cluster_parts/postgres_process.py: a throw-away cluster in a
temporary directory, on a free loopback port, without fsync). :func:`postgres_server` yields a
SQLAlchemy URL; :func:`new_database` makes a fresh, empty database on it (one per test keeps tests apart
on one cluster, which the ``LIMEN_TEST_DATABASE=postgresql`` run of the suite starts once)."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.cluster_parts.postgres_process import pg_tool, running_postgres
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = ["hung", "new_database", "pg_tool", "postgres_server", "running_postgres"]

@contextmanager
def postgres_server() -> Iterator[str]:
    with running_postgres() as (_process, url):
        yield url


def new_database(server_url: str) -> str:
    """A new, empty database on the server of ``server_url``; returns its URL. Left for the cluster's
    removal to take away (dropping it would wait for every process still connected)."""
    name = f"limen_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the task ended meanwhile
            pass
    return children


def _signal_tree(root: int, sig: signal.Signals) -> None:
    """``sig`` to ``root`` first (a stopped postmaster forks no more backends), then to its descendants. Not to
    the server's process group: each process the postmaster forks calls setsid() (a session and group of its
    own), so a SIGSTOP of the group stops runuser and the postmaster only, and the backends of pooled
    connections answer on."""
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
        pending += _children(pid)


@contextmanager
def hung(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """The server of ``process`` (:func:`running_postgres`'s) stopped, not refusing, as a frozen host: SIGSTOP
    of every process of it; SIGCONT on leaving, whatever happened."""
    try:
        _signal_tree(process.pid, signal.SIGSTOP)
        yield
    finally:
        _signal_tree(process.pid, signal.SIGCONT)
