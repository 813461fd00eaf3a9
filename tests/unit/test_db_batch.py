"""Console audit rows are written in batches: many sessions' rows in one transaction, each caller still
awaiting its own row, one bad row failing only its caller. Real SQLite."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select
from sqlalchemy.exc import OperationalError

from limen.audit import AuditLog
from limen.db import Database
from limen.db.batch import BatchedWrites
from limen.db.database import POOL_OVERFLOW, POOL_SIZE
from limen.db.models import ConsoleSessionRecord
from limen.db.workers import DatabaseWorkers
from limen.errors import ErrorCode, LimenError
from tests.support.hung_batch_writes import hung_batch_writes


def _db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    db.migrate()
    return db


def _rows(db: Database, *, live: bool = False) -> int:
    query = select(func.count()).select_from(ConsoleSessionRecord)
    if live:
        query = query.where(ConsoleSessionRecord.ended_at.is_(None))
    row = db.fetch_one_sync(query)
    assert row is not None
    return int(row[0])


async def test_many_sessions_rows_go_in_few_transactions_and_every_one_is_written(tmp_path: Path) -> None:
    db = _db(tmp_path)
    audit = AuditLog(db, time.time, instance_id=None)
    try:
        count = 300
        await asyncio.gather(*(audit.console_started(
            f"s{index}", user="alice", vm_uuid="u", vm_name="vm", client_address="127.0.0.1")
            for index in range(count)))
        assert _rows(db, live=True) == count  # each awaited its own row: all there once gather returns
        assert audit.console_writes.batches < count / 10
        before = audit.console_writes.batches
        await asyncio.gather(*(audit.console_ended(
            f"s{index}", bytes_to_client=index, bytes_from_client=1, end_code="OK") for index in range(count)))
        assert _rows(db, live=True) == 0 and _rows(db) == count
        assert audit.console_writes.batches - before < count / 10
        ended = await audit.console_session("s7")
        assert ended is not None and ended.bytes_to_client == 7 and ended.end_code == "OK"
        # The end is recorded once: a second end changes nothing.
        await audit.console_ended("s7", bytes_to_client=99, bytes_from_client=99, end_code="INTERNAL_ERROR")
        again = await audit.console_session("s7")
        assert again is not None and again.bytes_to_client == 7 and again.end_code == "OK"
    finally:
        db.close()


async def test_a_bad_row_fails_only_its_own_caller(tmp_path: Path) -> None:
    db = _db(tmp_path)
    writes = BatchedWrites(db)
    statement = insert(ConsoleSessionRecord)

    def row(session_id: str) -> dict[str, object]:
        from datetime import UTC, datetime
        return {"id": session_id, "user_name": "alice", "vm_uuid": "u", "vm_name": "vm", "client_address": "::1",
                "started_at": datetime.now(UTC), "bytes_to_client": 0, "bytes_from_client": 0, "kind": "vnc"}

    try:
        await writes.write(statement, row("taken"))
        results = await asyncio.gather(
            *(writes.write(statement, row(f"ok{index}")) for index in range(20)),
            writes.write(statement, row("taken")),  # the same id again: its insert fails
            return_exceptions=True)
        failures = [result for result in results if isinstance(result, Exception)]
        assert len(failures) == 1 and results[-1] is failures[0]
        assert _rows(db) == 21
    finally:
        db.close()


async def test_a_cancelled_caller_s_row_is_still_written(tmp_path: Path) -> None:
    db = _db(tmp_path)
    audit = AuditLog(db, time.time)
    try:
        task = asyncio.create_task(audit.console_started(
            "gone", user="alice", vm_uuid="u", vm_name="vm", client_address="127.0.0.1"))
        await asyncio.sleep(0)
        task.cancel()
        await audit.console_writes.flush()
        assert _rows(db) == 1
    finally:
        db.close()


def test_sqlite_runs_in_wal_mode_with_normal_sync(tmp_path: Path) -> None:
    db = _db(tmp_path)
    try:
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        db.close()


async def test_writes_a_few_milliseconds_apart_share_the_lingering_first_ones_transaction(tmp_path: Path) -> None:
    """Consoles opened one after another: without the linger, each row was a transaction of its own."""
    db = _db(tmp_path)
    audit = AuditLog(db, time.time, instance_id=None)
    audit.console_writes.linger = 0.3  # far longer than the writes' spread, however loaded the machine

    async def one_console(index: int) -> None:
        await asyncio.sleep(index * 0.005)
        await audit.console_started(f"s{index}", user="alice", vm_uuid="u", vm_name="vm",
                                    client_address="127.0.0.1")

    try:
        began = time.monotonic()
        await asyncio.gather(*(one_console(index) for index in range(5)))
        assert _rows(db, live=True) == 5 and audit.console_writes.batches == 1
        assert time.monotonic() - began >= 0.3  # the first one waited for the others
        # A write after the batch is a new quiet period: it lingers again, in a transaction of its own.
        await audit.console_ended("s0", bytes_to_client=1, bytes_from_client=1, end_code="OK")
        assert audit.console_writes.batches == 2 and _rows(db, live=True) == 4
    finally:
        db.close()


async def test_writes_that_come_while_a_slow_batch_commits_linger_too_instead_of_a_commit_each(
        tmp_path: Path) -> None:
    """Consoles opened one after another on a database whose commit takes longer than the consoles' spacing
    (PostgreSQL's round trips on a busy machine): the next batch waits for more writes too. Before, only a
    quiet period's first batch lingered, and from then on each commit took the one or two writes that had
    come during the last: about a commit a write."""
    db = _db(tmp_path)
    audit = AuditLog(db, time.time, instance_id=None)
    audit.console_writes.linger = 0.15
    event.listen(db.engine, "commit", lambda connection: time.sleep(0.03))  # in the writer's thread

    async def one_console(index: int) -> None:
        await asyncio.sleep(index * 0.004)
        await audit.console_started(f"s{index}", user="alice", vm_uuid="u", vm_name="vm",
                                    client_address="127.0.0.1")

    try:
        count = 100
        await asyncio.gather(*(one_console(index) for index in range(count)))
        assert _rows(db, live=True) == count
        # ~0.4 s of writes: about three batches of a 0.15-s linger each (nine without: a commit a few writes).
        assert audit.console_writes.batches <= 5
    finally:
        db.close()


def test_console_rows_linger_a_little() -> None:
    db = Database("sqlite://")
    try:
        assert 0 < AuditLog(db, time.time).console_writes.linger <= 0.05
    finally:
        db.close()


async def test_a_batchs_writes_of_one_statement_are_one_executemany_whatever_their_order(tmp_path: Path) -> None:
    """Consoles opening and closing in turn queue inserts and updates alternately: each kind is still one
    statement sent to the driver."""
    db = _db(tmp_path)
    audit = AuditLog(db, time.time, instance_id=None)
    executions: list[tuple[str, bool]] = []

    def count(conn: object, cursor: object, statement: str, parameters: object, context: object,
              executemany: bool) -> None:
        executions.append((statement.split()[0], executemany))

    try:
        await asyncio.gather(*(audit.console_started(f"s{index}", user="alice", vm_uuid="u", vm_name="vm",
                                                     client_address="127.0.0.1") for index in range(6)))
        event.listen(db.engine, "before_cursor_execute", count)
        writes = []
        for index in range(6):  # an end, a start, an end, a start...
            writes.append(audit.console_ended(f"s{index}", bytes_to_client=index, bytes_from_client=0,
                                              end_code="OK"))
            writes.append(audit.console_started(f"n{index}", user="bob", vm_uuid="u", vm_name="vm",
                                                client_address="127.0.0.1"))
        before = audit.console_writes.batches
        await asyncio.gather(*writes)
        assert audit.console_writes.batches == before + 1
        assert sorted(executions) == [("INSERT", True), ("UPDATE", True)]
        assert _rows(db) == 12 and _rows(db, live=True) == 6
    finally:
        db.close()


def _bounded(db: Database, deadline: float) -> Database:
    """``db`` with its calls bounded as a PostgreSQL database's are under a server (SQLite's never are)."""
    db.timeout = deadline
    db._workers = DatabaseWorkers(POOL_SIZE + POOL_OVERFLOW, deadline)
    return db


async def test_a_hung_batch_answers_its_callers_at_the_deadline_and_a_later_end_still_follows_its_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A console's start row in a batch the database does not answer (PostgreSQL stopped): the console gets
    DATABASE_UNAVAILABLE at the deadline, not after the whole hang, and the session's end, written after it,
    is committed after the start once the database answers: no row left live for a console that ended."""
    db = _bounded(_db(tmp_path), 0.2)
    audit = AuditLog(db, time.time, instance_id=None)
    try:
        with hung_batch_writes(monkeypatch) as (_hung, release):
            with pytest.raises(LimenError) as raised:
                await asyncio.wait_for(audit.console_started(
                    "s1", user="alice", vm_uuid="u", vm_name="vm", client_address="127.0.0.1"), 10)
            assert raised.value.code is ErrorCode.DATABASE_UNAVAILABLE
            with pytest.raises(LimenError):
                await audit.console_ended("s1", bytes_to_client=1, bytes_from_client=1, end_code="DATABASE_UNAVAILABLE")
            release.set()
            await asyncio.wait_for(audit.console_writes.flush(), 10)
            assert _rows(db) == 1 and _rows(db, live=False) == 1 and _rows(db, live=True) == 0
    finally:
        db.close()


async def test_a_batch_the_database_did_not_answer_fails_every_write_at_once(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Not each write tried again alone (each waited as long again: a batch of 500 on a database that does not
    answer new connections held its last caller 500 connect timeouts)."""
    db = _db(tmp_path)
    writes = BatchedWrites(db)
    tries: list[int] = []

    def refused(self: BatchedWrites, batch: Any) -> None:
        tries.append(len(batch))
        raise OperationalError("connect", {}, Exception("connection timeout expired"))

    monkeypatch.setattr(BatchedWrites, "_write_all", refused)
    monkeypatch.setattr(db, "execute", _never_called)
    try:
        results = await asyncio.gather(*(writes.write(insert(ConsoleSessionRecord), {"id": f"s{index}"})
                                         for index in range(5)), return_exceptions=True)
        assert [getattr(result, "code", result) for result in results] == [ErrorCode.DATABASE_UNAVAILABLE] * 5
        assert tries == [5]
    finally:
        db.close()


async def _never_called(*_: object) -> None:
    raise AssertionError("a write tried again alone")


async def test_writes_past_the_cap_are_backlogged_yet_every_one_is_kept(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A database that hangs: the writer says it is backlogged once ``max_waiting`` writes wait (so that new
    consoles are refused), but takes every write (a console let in has its rows) and commits them all once the
    database answers."""
    db = _db(tmp_path)
    audit = AuditLog(db, time.time, instance_id=None)
    writes = audit.console_writes
    writes.max_waiting = 2

    def start(index: int) -> asyncio.Future[None]:
        return asyncio.ensure_future(audit.console_started(
            f"s{index}", user="alice", vm_uuid="u", vm_name="vm", client_address="127.0.0.1"))

    try:
        with hung_batch_writes(monkeypatch) as (hung, release):
            first = start(0)
            await asyncio.wait_for(asyncio.to_thread(hung.wait), 10)  # its batch holds the writer
            later = [start(index) for index in range(1, 5)]
            await asyncio.sleep(0)
            assert (writes.waiting, writes.backlogged) == (4, True)
            release.set()
            await asyncio.wait_for(asyncio.gather(first, *later), 10)
            assert _rows(db) == 5 and not writes.backlogged
    finally:
        db.close()
