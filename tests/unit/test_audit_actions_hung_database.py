"""A VM action's start row on a database that hangs: the request gets DATABASE_UNAVAILABLE at the deadline
and the action does not run, but the row may still be committed when the database answers. Only creates were
swept while this instance lives: any other such row stayed ``STARTED``. Real SQLite, with its calls bounded
as a PostgreSQL database's are under a server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, select

from limen.audit import AuditLog
from limen.db import Database
from limen.db.database import POOL_OVERFLOW, POOL_SIZE
from limen.db.models import VmAction
from limen.db.workers import DatabaseWorkers, database_hung
from limen.errors import ErrorCode, LimenError

T = TypeVar("T")
DEADLINE = 0.2


def _bounded_db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    db.migrate()
    db.timeout = DEADLINE
    db._workers = DatabaseWorkers(POOL_SIZE + POOL_OVERFLOW, DEADLINE)
    return db


def _actions(db: Database) -> list[tuple[str, str, bool]]:
    with db.engine.connect() as connection:
        rows = connection.execute(select(VmAction.action, VmAction.result_code, VmAction.finished_at)).all()
    return [(row.action, row.result_code, row.finished_at is not None) for row in rows]


async def test_a_start_row_committed_after_its_deadline_is_completed_and_its_action_never_runs(
    tmp_path: Path,
) -> None:
    db = _bounded_db(tmp_path)
    audit = AuditLog(db, time.time, instance_id="this-instance")
    database = threading.Event()

    def hang_the_insert(connection: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO vm_actions"):
            database.wait()

    event.listen(db.engine, "before_cursor_execute", hang_the_insert)
    ran: list[str] = []
    try:
        with pytest.raises(LimenError) as raised:
            async with audit.recording("bob", "stop", "vm1", vm_uuid="u-1"):
                ran.append("stop")
        assert raised.value.code is ErrorCode.DATABASE_UNAVAILABLE and ran == []
        database.set()  # the database answers: the insert commits now
        for _ in range(1000):  # a bound on the test itself, not a measurement
            if db._workers is not None and db._workers.running == 0:
                break
            await asyncio.sleep(0.01)
        assert _actions(db) == [("stop", "DATABASE_UNAVAILABLE", True)]
    finally:
        database.set()
        db.close()


async def test_a_start_row_answered_just_after_its_caller_gave_up_is_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread committed and handed back the id, but the deadline passed before the caller read it."""
    db = _bounded_db(tmp_path)
    audit = AuditLog(db, time.time, instance_id="this-instance")
    in_thread = db.in_thread
    calls: list[str] = []

    async def answered_too_late(work: Callable[[], T], *, wait: bool = False) -> T:
        calls.append("call")
        if len(calls) == 1:
            await asyncio.to_thread(work)
            raise database_hung(DEADLINE)
        return await in_thread(work, wait=wait)

    monkeypatch.setattr(db, "in_thread", answered_too_late)
    try:
        with pytest.raises(LimenError) as raised:
            await audit.action_started(user="bob", action="reboot", vm_name="vm1")
        assert raised.value.code is ErrorCode.DATABASE_UNAVAILABLE
        assert _actions(db) == [("reboot", "DATABASE_UNAVAILABLE", True)]
    finally:
        db.close()
