"""What keeps ``tests/unit`` fast: every test here gets, without asking (package-scoped, so nothing of it
leaks into tests/integration or tests/e2e when one run takes them all),

- argon2's cheapest parameters through limen's own settings (``LIMEN_PASSWORD_HASH_*`` in the environment, so
  ``settings_in``, the CLI and every ``load_settings`` see them). Production parameters cost ~0.1 s of CPU a
  hash, and an app-client test hashes at least once (its admin).
- an already migrated schema for every new SQLite file: the migrations run once into a template (kept in
  pytest's cache for the next runs), and ``Database.migrate`` on a new, empty file copies the template's
  bytes into it (~1 ms against ~60 ms for Alembic); so does a file SQLite only opened, which holds no table
  (a command reads the host registry before its audit trail migrates). A file with a schema (a test that
  builds an older revision first, or a database in use) is migrated by Alembic as before, so the migrations
  themselves stay tested.

and, after collection, what was imported is frozen out of the garbage collector's walks (which then run less
often). Node's tests of the browser scripts run beside collection (tests/unit/test_web_js.py reads their
result).
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from limen.db import Database


@pytest.fixture(scope="package", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    from tests.support.access import CHEAP_HASHING_ENVIRONMENT

    with pytest.MonkeyPatch.context() as patch:
        for name, value in CHEAP_HASHING_ENVIRONMENT.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(autouse=True)
def _forget_finished_apps() -> Iterator[None]:
    """Lets the apps a test made be freed. Their lifespans did end, but FastAPI keeps every endpoint it has
    classified (coroutine or generator?) in module-wide lru_caches of up to 4,096 entries, and limen's endpoints
    defined in its install functions hold their app: ~125 apps (~300,000 objects) stayed alive to the end of the
    run, walked again by every full collection. One app per process, as limen serves, caches a few dozen."""
    yield
    from fastapi.dependencies import models

    for name in ("_is_gen_callable_cached", "_is_async_gen_callable_cached", "_is_coroutine_callable_cached"):
        cache = getattr(models, name, None)  # FastAPI's own names: a version without them leaves nothing here
        if cache is not None:
            cache.cache_clear()


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Iterator[object]:
    from tests.unit import test_web_js

    if _takes_in(session.config, Path(test_web_js.__file__)):
        # Collection keeps one core busy for ~2 s; node's ~0.5 s run takes the other.
        session.config.stash[test_web_js.NODE_RUN] = test_web_js.start_node_tests()
    # Collection imports limen, FastAPI, SQLAlchemy and every test module: ~1 million objects, nearly all alive
    # to the end. The collector's automatic passes over them free nothing; pytest_collection_finish below
    # freezes them.
    gc.disable()
    try:
        return (yield)
    finally:
        gc.enable()


def _takes_in(config: pytest.Config, path: Path) -> bool:
    """Whether one of the session's arguments is ``path`` or a directory holding it."""
    invocation = config.invocation_params.dir
    return any(path.is_relative_to(invocation / argument.split("::")[0]) for argument in config.args)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything imported so far (limen, FastAPI, SQLAlchemy, the test modules) lives as long as the run: out
    # of the collector's sight, each full collection walks only what the tests made (~40 % less of its time).
    gc.freeze()  # no collection first: it would take ~0.2 s, all other work waiting, to free ~20,000 objects
    # A young generation of 50,000 objects instead of 700: the tests make many short-lived objects (requests,
    # SQL statements, settings), and with the default each of ~1,700 young collections promoted survivors
    # until 13 full ones had walked the heap (~2 s of CPU in all, ~0.6 s now; the peak memory did not move).
    gc.set_threshold(50_000, 20, 10)
    from tests.unit import test_web_js

    run = session.config.stash.get(test_web_js.NODE_RUN, None)
    if run is None:
        return
    session.config.stash[test_web_js.NODE_RUN] = None
    chosen = any(isinstance(item, pytest.Function) and item.module is test_web_js for item in session.items)
    if chosen:  # read here, not in the test: a forked worker (tests/support/forked_workers.py) could not wait for it
        session.config.stash[test_web_js.NODE_RESULT] = run.finish()
    else:
        run.discard()


def pytest_sessionfinish(session: pytest.Session) -> None:
    test_web_js = sys.modules.get("tests.unit.test_web_js")  # not imported: node was not started either
    if test_web_js is not None:
        run = session.config.stash.get(test_web_js.NODE_RUN, None)  # collection did not finish
        if run is not None:
            run.discard()


def _new_sqlite_file(database: Database) -> Path | None:
    """The database's file when it is SQLite and holds no schema yet: nothing written to it, or only opened
    (a command reads the host registry before its audit trail migrates: SQLite wrote its header, WAL mode);
    else None."""
    if database.url.get_backend_name() != "sqlite" or database.url.database in (None, "", ":memory:"):
        return None
    path = Path(database.url.database)
    if not path.is_file() or (path.stat().st_size != 0 and not _schema_never_made(path)):
        return None
    # A WAL or journal with content, or another connection's shared memory: not this file's whole state.
    companions = [path.with_name(path.name + suffix) for suffix in ("-wal", "-journal", "-shm")]
    if any(companion.exists() and companion.stat().st_size != 0 for companion in companions):
        return None
    return path


def _schema_never_made(path: Path) -> bool:
    """Whether the SQLite file at ``path`` never held a table: its header's schema cookie (bytes 40-43), which
    every change of the schema increments, is still 0."""
    with path.open("rb") as file:
        header = file.read(100)
    return header.startswith(b"SQLite format 3\0") and header[40:44] == bytes(4)


@pytest.fixture(scope="package", autouse=True)
def migrated_template_database(pytestconfig: pytest.Config) -> Iterator[None]:
    from limen.db import Database

    alembic_migrate = Database.migrate
    template_bytes = _template_bytes(pytestconfig, alembic_migrate)

    def migrate(self: Database, revision: str = "head") -> list[str]:
        path = _new_sqlite_file(self) if revision == "head" else None
        if path is None:
            return alembic_migrate(self, revision)
        self.engine.dispose()  # no connection may have seen the empty file
        with path.open("r+b") as file:  # writing into the file keeps its owner-only mode
            file.write(template_bytes)
            file.truncate()
        return []

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Database, "migrate", migrate)
        yield


@pytest.fixture(scope="package", autouse=True)
def one_statement_cache() -> Iterator[None]:
    """Every SQLite engine of the tier compiles each SQL statement once, as a server's one engine does.

    SQLAlchemy keeps a statement's compiled form in its engine's cache, under the engine's dialect object; most
    tests make a new Database (~240 engines a run), and each compiled the same statements again, in worker
    threads (where cProfile does not look): 1,600 compilations, ~1 s of CPU, in a serial run; 263 and 0.1 s
    with this (~5 % of the tier's CPU). Each new SQLite engine takes one dialect, made and initialised once
    with limen's own arguments on an in-memory database (the dialect depends on the SQLite library, not on the
    file), and one cache. Its pool, connections and events stay its own."""
    from limen.db import Database

    model = Database("sqlite://")
    with model.engine.connect():
        pass  # SQLAlchemy initialises a dialect on its engine's first connection
    dialect = model.engine.dialect
    compiled: dict[object, object] = {}  # SQLAlchemy's compiled_cache option takes any mapping
    made = Database.__init__

    def init(self: Database, url: str, *, timeout: float | None = None) -> None:
        made(self, url, timeout=timeout)
        if type(self.engine.dialect) is type(dialect):
            self.engine.dialect = dialect
            self.engine.update_execution_options(compiled_cache=compiled)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Database, "__init__", init)
        yield
    model.close()


def _template_bytes(config: pytest.Config, alembic_migrate: Callable[[Database], None]) -> bytes:
    """The migrated template's bytes, kept in pytest's cache between runs (~0.3 s of CPU a process to make),
    under a key that changes with anything that could change them: the migrations, the database module, the
    models, and the versions of Alembic, SQLAlchemy and SQLite. Without the cache (``-p no:cacheprovider``)
    the template is made anew."""
    import sqlite3

    import alembic
    import sqlalchemy

    import limen.db

    cache = getattr(config, "cache", None)
    if cache is None:
        with tempfile.TemporaryDirectory() as scratch:
            return _migrated_bytes(Path(scratch) / "template.db", alembic_migrate)
    package = Path(limen.db.__file__).parent
    key = hashlib.sha256(f"{alembic.__version__} {sqlalchemy.__version__} {sqlite3.sqlite_version}".encode())
    for source in sorted(package.glob("*.py")) + sorted(package.glob("migrations/**/*.py")):
        key.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    kept = cache.mkdir("migrated-template") / f"{key.hexdigest()}.db"
    if kept.exists():
        return kept.read_bytes()
    made = kept.with_name(f"{kept.name}.{os.getpid()}")
    template = _migrated_bytes(made, alembic_migrate)
    made.replace(kept)  # whole or not at all, whichever process is first
    return template


def _migrated_bytes(path: Path, alembic_migrate: Callable[[Database], None]) -> bytes:
    """A new SQLite file at ``path`` migrated by Alembic, read back whole."""
    from limen.db import Database

    database = Database(f"sqlite:///{path}")
    try:
        alembic_migrate(database)
    finally:
        database.close()  # the last connection's close checkpoints the WAL into the file
    assert not path.with_name(path.name + "-wal").exists(), "the template's WAL was not checkpointed"
    return path.read_bytes()
