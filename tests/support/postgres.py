"""A PostgreSQL server of the test's own (scripts/cluster_parts/postgres_process.py: a throw-away cluster in a
temporary directory, on a free loopback port, without fsync). :func:`postgres_server` yields a
SQLAlchemy URL; :func:`new_database` makes a fresh, empty database on it (one per test keeps tests apart
on one cluster, which the ``LIMEN_TEST_DATABASE=postgresql`` run of the suite starts once)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from scripts.cluster_parts.postgres_process import pg_tool, running_postgres
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

__all__ = ["new_database", "pg_tool", "postgres_server"]

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
