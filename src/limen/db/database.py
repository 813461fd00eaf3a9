"""The database handle: one engine, schema migrations at start-up, and transactions off the event loop.

SQLAlchemy here is synchronous. Async code calls :meth:`Database.run`, which runs the work in a worker
thread inside one transaction, so a slow disk or a remote PostgreSQL never blocks the event loop.
The code is dialect-neutral: SQLite by default (a file in the data dir), PostgreSQL by URL.

Given a ``timeout`` (the server's LIMEN_DATABASE_TIMEOUT), a network database's calls are bounded: each
async call answers DATABASE_UNAVAILABLE once it passes, in threads of their own that a hung database cannot
multiply (:mod:`limen.db.workers`); a new connection gives up as soon (``connect_timeout``), a pooled one
whose peer vanished is dropped by TCP (keepalives, ``tcp_user_timeout``), and a wait for a free connection
of the pool is as long. SQLite keeps anyio's threads and no deadline: a local file does not hang that way,
its locks wait at most its busy timeout, and its calls (a console's audit rows) cost nothing more.

A SQLite file holds password, token and session hashes: it is created ``0600`` before SQLite opens it
(SQLite gives its ``-wal`` and ``-shm`` files the database's mode), a missing directory for it ``0700``,
and an existing file, ``-wal`` or ``-shm`` with looser modes is tightened (and logged).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, Row, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.expression import Executable

from limen.db.workers import DatabaseWorkers, answer_from_this_thread
from limen.errors import ErrorCode, LimenError, MigrationFailed
from limen.private_files import Tightened, create_private_file, private_dir, private_file
from limen.settings import data_dir_database_url
from limen.url_redaction import redacted_url

if TYPE_CHECKING:
    from alembic.config import Config

T = TypeVar("T")
log = logging.getLogger("limen.db")
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The newest revision of the migrations: what ``alembic_version`` holds in a database at head. Written here
# so that finding a database at head (every command and every start) reads one row and loads no Alembic,
# ~0.16 s of each command's start; tests/unit/test_schema_head.py fails if a migration is added without it.
SCHEMA_HEAD = "0009_reservation_uuids"
# PostgreSQL advisory-lock key of schema migrations (any 64-bit number; this one spells "limenmig").
MIGRATION_LOCK_KEY = int.from_bytes(b"limenmig", "big") & 0x7FFF_FFFF_FFFF_FFFF
# A bounded network database's pool (SQLAlchemy's defaults, written out): as many worker threads as
# connections, so a call in a worker never waits for a connection another worker holds.
POOL_SIZE = 5
POOL_OVERFLOW = 10


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not wait for the writer
        # With WAL, NORMAL syncs at checkpoints instead of at every commit: a commit survives a crash of limen
        # (it is in the WAL, in the OS's cache); only a power loss can undo the last ones, never corrupt.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()


def _private_sqlite_file(path: Path) -> None:
    """The database file (and its companions) owner-only before SQLite opens it; see the module docstring."""
    changes: list[Tightened | None] = []
    if not path.parent.exists():
        changes.append(private_dir(path.parent))  # a directory of limen's own; an existing one is left alone
    changes.append(create_private_file(path))
    changes += [private_file(path.with_name(path.name + suffix)) for suffix in SQLITE_COMPANIONS]
    for change in filter(None, changes):
        log.warning("database file was readable by others; made owner-only", extra=change.log_fields())


def _alembic_config() -> Config:
    """Alembic's configuration for limen's migrations (imports Alembic: only when a migration runs)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def known_revisions() -> list[str]:
    """This limen's schema revisions, oldest first (imports Alembic)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]



def missing_sqlite_file(url: str) -> Path | None:
    """The file of SQLite database ``url`` when it does not exist yet but could be made (opening it would make
    an empty one), else None: it exists, it cannot be made where it is named (a file stands where a directory
    above it should: opening it says what is wrong), or the database is not a SQLite file."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    path = Path(parsed.database)
    if path.exists():
        return None
    above = next((parent for parent in path.parents if parent.exists()), None)
    return path if above is not None and above.is_dir() else None


def database_unavailable(exc: BaseException) -> LimenError | None:
    """DATABASE_UNAVAILABLE (503) when ``exc`` says the database did not answer (PostgreSQL stopped, its
    connection dropped, SQLite busy past its timeout, no connection of the pool free in time: nothing of the
    work was done, and it may be retried; or a call's deadline passed, which says so itself); None for any
    other exception."""
    if isinstance(exc, LimenError):
        return exc if exc.code is ErrorCode.DATABASE_UNAVAILABLE else None
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return LimenError(ErrorCode.DATABASE_UNAVAILABLE,
                          f"the database did not answer ({type(getattr(exc, 'orig', None) or exc).__name__})")
    return None

class DatabaseFault(StrEnum):
    """Whose the fault is when the database cannot be opened: what a message should ask the user to fix."""

    DRIVER_MISSING = "driver_missing"  # the URL's driver is not installed (psycopg: limen[postgresql])
    DATA_DIR = "data_dir"  # the SQLite file limen keeps under LIMEN_DATA_DIR cannot be opened or written
    DATABASE = "database"  # the database LIMEN_DATABASE_URL names refuses or does not answer


def database_fault(url: str, data_dir: Path, exc: BaseException) -> DatabaseFault:
    """Which setting to blame for ``exc``, raised opening the database of ``url``: a missing driver is not the
    URL's fault, nor is an unusable data directory when the URL is the one limen derives from it."""
    if isinstance(exc, ModuleNotFoundError):
        return DatabaseFault.DRIVER_MISSING
    if url == data_dir_database_url(data_dir):
        return DatabaseFault.DATA_DIR
    return DatabaseFault.DATABASE


def postgresql_bounds(timeout: float) -> dict[str, Any]:
    """libpq's connection parameters that bound, by ``timeout`` seconds, what the database's silence holds: a
    new connection's start (whole seconds, at least 2: libpq's rule), and a connection whose peer is gone
    without a word (a frozen host: unacknowledged data, or an idle connection's keepalives unanswered).
    A stopped server's kernel still acknowledges, so only the call's own deadline bounds that."""
    seconds = max(2, math.ceil(timeout))
    return {"connect_timeout": seconds, "tcp_user_timeout": seconds * 1000, "keepalives": 1,
            "keepalives_idle": seconds, "keepalives_interval": max(1, seconds // 3), "keepalives_count": 3}


class Database:
    """Owns the engine. Call :meth:`migrate` (or ``await migrate_async()``) once before anything else."""

    def __init__(self, url: str, *, timeout: float | None = None) -> None:
        """``timeout``: the deadline of each async call on a network database, seconds (see the module
        docstring); None leaves them unbounded (the command line's own calls)."""
        self.url: URL = make_url(url)
        backend = self.url.get_backend_name()
        # The deadline of each async call, None when they are not bounded.
        self.timeout = timeout if backend != "sqlite" else None
        connect_args: dict[str, Any] = {}
        pool_args: dict[str, Any] = {}
        if backend == "sqlite":
            if self.url.database and self.url.database != ":memory:":
                _private_sqlite_file(Path(self.url.database))
            connect_args = {"check_same_thread": False}
        elif self.timeout is not None:
            pool_args = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW, "pool_timeout": self.timeout}
            if backend == "postgresql":
                connect_args = postgresql_bounds(self.timeout)
        self.engine: Engine = create_engine(
            self.url, connect_args=connect_args, pool_pre_ping=True, hide_parameters=True, **pool_args
        )
        self._workers = (DatabaseWorkers(POOL_SIZE + POOL_OVERFLOW, self.timeout)
                         if self.timeout is not None else None)
        if self.url.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def redacted_url(self) -> str:
        """The URL without its password, for logs and messages."""
        return redacted_url(self.url.render_as_string(hide_password=False))

    def migrate(self, revision: str = "head") -> list[str]:
        """Brings the schema to the newest revision (Alembic ``upgrade head``; tests walk older ``revision``s
        too); a no-op when it is there (one read of ``alembic_version``: every CLI command opens the database).
        Returns the revisions an existing schema was migrated from ([] when nothing was, or it was new)."""
        before = self._revisions()
        if revision == "head" and before == [SCHEMA_HEAD]:
            return []
        self.check_schema_known()
        from alembic import command

        config = _alembic_config()
        sqlite = self.url.get_backend_name() == "sqlite"
        with self.engine.connect() as connection:
            driver: Any = None
            if sqlite:
                # SQLite's batch migrations copy a table, drop the old one and rename the copy; with foreign
                # keys on, that drop cascades to every row pointing at it (copying `users` deleted every API
                # token and browser session). Off for the migration (outside any transaction, or SQLite
                # ignores it), checked after, on again for the pool.
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                connection.commit()
                # Python's sqlite3 begins a transaction only before INSERT, UPDATE and DELETE: each CREATE,
                # ALTER and DROP committed on its own, and a migration that failed or was killed half-way left
                # its first steps behind an unchanged alembic_version, which every start then failed on. With
                # the driver's own handling off, the BEGIN below holds the whole upgrade (SQLite's DDL is
                # transactional); commit() and rollback() still end it.
                driver = connection.connection.driver_connection
                legacy_isolation = driver.isolation_level
                driver.isolation_level = None
            try:
                with connection.begin():
                    if sqlite:
                        connection.exec_driver_sql("BEGIN IMMEDIATE")  # the writer's lock now, not mid-way
                    if self.url.get_backend_name() == "postgresql":
                        # Replicas starting together migrate one at a time: a transaction-scoped advisory
                        # lock (released at commit or rollback, also when the process dies); the others
                        # wait, then find the schema at head. PostgreSQL's DDL is transactional.
                        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    config.attributes["connection"] = connection
                    try:
                        command.upgrade(config, revision)
                    except (IntegrityError, ProgrammingError) as exc:  # what the rows or schema hold, not access
                        raise self._migration_failed(before, revision, str(exc.orig).strip()) from exc
                    if sqlite:
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise self._migration_failed(before, revision,
                                                         f"it left rows pointing at nothing: {broken[:5]}")
            finally:
                if sqlite:
                    driver.isolation_level = legacy_isolation
                    connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                    connection.commit()
        after = self._revisions()
        if after != before:  # an upgrade changes the schema behind the operator's back otherwise
            log.info("database schema %s", "created" if not before else "migrated", extra={
                "event": "schema_migrated", "from_revision": ", ".join(before) or None,
                "to_revision": ", ".join(after), "database": self.redacted_url})
        return before if before and after != before else []

    def _migration_failed(self, before: list[str], revision: str, reason: str) -> MigrationFailed:
        """DATABASE_MIGRATION_FAILED, raised inside the migration's transaction, which rolls it back whole: it
        was worded as a data directory to fix (its owner, its permissions), which it is not."""
        was = ", ".join(before) or "no schema"
        target = SCHEMA_HEAD if revision == "head" else revision
        first_line = reason.splitlines()[0] if reason else "no reason given"
        return MigrationFailed(
            f"the schema of {self.redacted_url} could not be migrated from {was} to {target} ({first_line}); "
            f"it is left at {was}", first_line)

    def _revisions(self) -> list[str]:
        try:
            with self.engine.connect() as connection:
                return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all())
        except DBAPIError:  # no such table: a database never migrated
            return []

    def _at_head(self) -> bool:
        return self._revisions() == [SCHEMA_HEAD]

    def check_schema_known(self) -> None:
        """DATABASE_SCHEMA_NEWER when the schema is a newer limen's (a rollback after an upgrade): this limen
        can neither migrate nor use it, and says so in one line instead of Alembic's traceback."""
        known = known_revisions()
        for revision in self._revisions():
            if revision not in known:
                raise LimenError(ErrorCode.DATABASE_SCHEMA_NEWER, (
                    f"the database's schema {revision!r} is newer than this limen knows (its newest is "
                    f"{SCHEMA_HEAD!r})"))

    async def migrate_async(self) -> None:
        await anyio.to_thread.run_sync(self.migrate)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back if it raises."""
        with self._sessions.begin() as session:
            yield session

    def run_sync(self, work: Callable[[Session], T]) -> T:
        with self.transaction() as session:
            return work(session)

    def execute_sync(self, statement: Executable, parameters: dict[str, Any] | None = None) -> None:
        with self.engine.begin() as connection:
            connection.execute(statement, parameters)

    async def in_thread(self, work: Callable[[], T], *, wait: bool = False) -> T:
        """``work()``, blocking database work, in a worker thread: bounded by :attr:`timeout` (then
        DATABASE_UNAVAILABLE; see the module docstring), or as long as it takes with ``wait`` (a writer that
        bounds its callers' waits itself) or without a timeout."""
        if self._workers is None:
            return await anyio.to_thread.run_sync(work)
        return await self._workers.call(work, wait=wait)

    async def execute(self, statement: Executable, parameters: dict[str, Any] | None = None) -> None:
        """Runs one Core statement in its own transaction in a worker thread, on a connection without an ORM
        session: about a third of the CPU of a session's flush and commit (measured on an INSERT), which
        matters to writes that run while a console sets up (the worker thread holds the GIL meanwhile)."""
        await self.in_thread(functools.partial(self.execute_sync, statement, parameters))

    def fetch_one_sync(self, statement: Executable, parameters: dict[str, Any] | None = None) -> Row[Any] | None:
        with self.engine.connect() as connection:
            return connection.execute(statement, parameters).first()

    async def fetch_one(self, statement: Executable, parameters: dict[str, Any] | None = None) -> Row[Any] | None:
        """The first row of one Core query, read in a worker thread on a connection without an ORM session
        (cheaper, as :meth:`execute`); None if there is none."""
        return await self.in_thread(functools.partial(self.fetch_one_sync, statement, parameters))

    async def run(self, work: Callable[[Session], T]) -> T:
        """Runs ``work(session)`` in a worker thread, in one transaction (bounded as :meth:`in_thread`)."""
        return await self.in_thread(functools.partial(self.run_sync, work))

    async def ping(self, timeout: float) -> None:
        """Raises if the database does not answer ``SELECT 1`` within ``timeout`` seconds (TimeoutError), in a
        thread left behind if the database hangs (:func:`in_daemon_thread`). A new connection's own bound
        (libpq's ``connect_timeout``, :func:`postgresql_bounds`: never shorter than the server's deadline) is
        the same silence: when it ends first, that is a TimeoutError too, not the driver's error (/readyz
        said the one or the other of a hung PostgreSQL, as the two bounds of 2 s came); so is a pool whose every
        connection stays held for its ``pool_timeout``, the same bound."""
        try:
            await in_daemon_thread(self.check_answers, timeout, name="limen-database-ping")
        except DBAPIError as exc:
            if _connection_start_timed_out(exc):
                raise TimeoutError(f"no answer from {self.redacted_url} while connecting") from exc
            raise
        except PoolTimeout as exc:
            # Every connection of the pool held (by calls a hung database does not answer) for its pool_timeout,
            # the same bound as the ping's own: the same silence, whichever ended first.
            raise TimeoutError(f"no connection to {self.redacted_url} came free in time") from exc

    def check_answers(self) -> None:
        """Raises if the database does not answer ``SELECT 1`` (however long that takes to find out)."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
        self.engine.dispose()


def _connection_start_timed_out(exc: DBAPIError) -> bool:
    """The driver gave up on a new connection's start after its ``connect_timeout`` (psycopg's
    ConnectionTimeout; psycopg is only imported when a PostgreSQL URL is used)."""
    errors = sys.modules.get("psycopg.errors")
    return errors is not None and isinstance(exc.orig, errors.ConnectionTimeout)


async def in_daemon_thread(work: Callable[[], T], timeout: float, *, name: str) -> T:
    """``work()``'s result, or TimeoutError after ``timeout`` seconds. For a command's one-off question to a
    database that may hang (stopped, not refusing: a connection's start waits as long): it runs in a daemon
    thread of its own, left behind then. A thread of the loop's default executor would be joined when the
    loop closes, and ``limen doctor`` then hung, printing nothing, past its ``--timeout``."""
    answered: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    threading.Thread(target=answer_from_this_thread, args=(answered, work), name=name, daemon=True).start()
    async with asyncio.timeout(timeout):
        return await answered
