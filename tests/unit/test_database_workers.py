"""Database calls bounded against a database that hangs (PostgreSQL stopped, not refusing: SIGSTOP, a frozen
host): each caller answered DATABASE_UNAVAILABLE at its deadline instead of waiting for the whole outage (behind
HAProxy: its HTML 504 after 30 s), the threads a hang holds bounded, work that never started never run, and
every call answered again once the database is back. ``threading.Event`` stands for the database."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest

import limen.db.workers as workers_module
from limen.db import Database
from limen.db.database import POOL_OVERFLOW, POOL_SIZE, postgresql_bounds
from limen.db.workers import DatabaseWorkers, answer_from_this_thread
from limen.errors import ErrorCode, LimenError

DEADLINE = 0.2
BOUND = 10.0  # a bound on the test itself (a call that would wait for the whole hang), not a measurement


async def until(condition: Callable[[], bool]) -> None:
    """Until ``condition`` holds: a hung call returns in its own thread some moment after the database does."""
    for _ in range(int(BOUND / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the hung calls never returned")


def hanging(database: threading.Event, done: list[str], name: str) -> Callable[[], str]:
    def work() -> str:
        database.wait()
        done.append(name)
        return name

    return work


async def test_a_call_past_its_deadline_answers_database_unavailable_and_its_work_may_still_complete() -> None:
    workers = DatabaseWorkers(threads=2, deadline=DEADLINE)
    database, done = threading.Event(), []
    try:
        with pytest.raises(LimenError) as raised:
            await asyncio.wait_for(workers.call(hanging(database, done, "write")), BOUND)
        assert raised.value.code is ErrorCode.DATABASE_UNAVAILABLE
        assert "did not answer within 0.2 s" in raised.value.details
    finally:
        database.set()
    await until(lambda: done == ["write"] and not workers.running)
    assert await workers.call(lambda: "answered") == "answered"  # back by itself
    assert done == ["write"]  # the work already running went on: its outcome was unknown, not undone


async def test_work_still_waiting_for_a_thread_at_its_deadline_never_runs() -> None:
    workers = DatabaseWorkers(threads=1, deadline=DEADLINE)
    database, done = threading.Event(), []
    try:
        results = await asyncio.gather(workers.call(hanging(database, done, "running")),
                                       workers.call(hanging(database, done, "queued")), return_exceptions=True)
        assert all(isinstance(result, LimenError) for result in results), results
    finally:
        database.set()
    await until(lambda: done == ["running"] and not workers.running)
    assert await workers.call(lambda: "next") == "next"
    assert done == ["running"]


async def _overdue_on_every_thread_then_refused(workers: DatabaseWorkers, database: threading.Event,
                                                 done: list[str]) -> None:
    """Two calls that hang past the deadline hold both threads; then even a caller that would wait as long as
    the work takes is refused at once: no thread would come free."""
    for name in ("first", "second"):
        with pytest.raises(LimenError):
            await workers.call(hanging(database, done, name))
    with pytest.raises(LimenError) as raised:
        await asyncio.wait_for(workers.call(hanging(database, done, "third"), wait=True), BOUND)
    assert raised.value.code is ErrorCode.DATABASE_UNAVAILABLE


async def test_once_every_thread_holds_an_overdue_call_new_calls_fail_at_once_until_one_returns() -> None:
    workers = DatabaseWorkers(threads=2, deadline=DEADLINE)
    database, done = threading.Event(), []
    try:
        await _overdue_on_every_thread_then_refused(workers, database, done)
        assert threading.active_count() < 50  # nothing piled up
    finally:
        database.set()
    await until(lambda: len(done) == 2 and not workers.running)
    assert await workers.call(lambda: "again") == "again"
    assert sorted(done) == ["first", "second"]


async def test_a_cancelled_caller_still_gets_its_started_work_waited_for() -> None:
    """As anyio's to_thread.run_sync, which this replaces: a request cancelled (its client gone) does not cut
    short a transaction it started, within the deadline."""
    workers = DatabaseWorkers(threads=1, deadline=BOUND)
    database, done = threading.Event(), []
    with anyio.CancelScope() as scope:
        asyncio.get_running_loop().call_later(0.05, scope.cancel)
        asyncio.get_running_loop().call_later(0.1, database.set)
        assert await workers.call(hanging(database, done, "write")) == "write"
    assert done == ["write"]


def test_a_network_database_gets_bounds_and_sqlite_keeps_its_path(tmp_path: Path) -> None:
    sqlite = Database(f"sqlite:///{tmp_path / 'limen.db'}", timeout=3)
    try:
        assert sqlite.timeout is None and sqlite._workers is None
    finally:
        sqlite.close()
    postgres = Database("postgresql+psycopg://limen@127.0.0.1:9/limen", timeout=3)
    try:
        assert postgres.timeout == 3
        assert postgres.engine.pool.size() == POOL_SIZE  # type: ignore[attr-defined]
        assert postgres._workers is not None and postgres._workers.threads == POOL_SIZE + POOL_OVERFLOW
    finally:
        postgres.close()
    assert postgresql_bounds(0.5)["connect_timeout"] == 2  # libpq's least
    assert postgresql_bounds(10)["tcp_user_timeout"] == 10_000


async def test_calls_whose_callers_gave_up_at_the_deadline_count_as_overdue_however_late_their_thread_took_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread takes a call a moment after it was asked, so by the call's own clock it had not run for the
    whole deadline when its caller gave up: a full CI run found every thread held yet new calls queued behind
    them. Here the threads' clock stands still, as if each had taken its call at the very end."""
    monkeypatch.setattr(workers_module, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    workers = DatabaseWorkers(threads=2, deadline=DEADLINE)
    database, done = threading.Event(), []
    try:
        await _overdue_on_every_thread_then_refused(workers, database, done)
    finally:
        database.set()
    await until(lambda: len(done) == 2 and not workers.running)


async def test_closing_ends_the_waiting_threads_and_a_later_call_starts_one_again() -> None:
    """The threads outlived their database: every test of an app on PostgreSQL left them running."""
    workers = DatabaseWorkers(threads=3, deadline=BOUND, name="closing")
    await asyncio.gather(*(workers.call(lambda: time.sleep(0.05)) for _ in range(3)))
    assert {t.name for t in threading.enumerate()} >= {"closing-1", "closing-2", "closing-3"}
    workers.close()
    await until(lambda: not any(t.name.startswith("closing-") for t in threading.enumerate()))
    assert await workers.call(lambda: "again") == "again"
    workers.close()
    await until(lambda: not any(t.name.startswith("closing-") for t in threading.enumerate()))


def _in_a_thread(answer: asyncio.Future[object], work: Callable[[], object], **hooks: Callable[[], None]) -> None:
    thread = threading.Thread(target=answer_from_this_thread, args=(answer, work), kwargs=hooks)
    thread.start()
    thread.join(BOUND)


async def test_a_thread_hands_its_result_or_error_back_unless_nobody_waits_any_more() -> None:
    """How the workers and a command's one-off question to the database (in_daemon_thread) both answer."""
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: loop_errors.append(context))
    try:
        answered: asyncio.Future[object] = loop.create_future()
        done_when_finished: list[bool] = []
        _in_a_thread(answered, lambda: "yes", before_answering=lambda: done_when_finished.append(answered.done()))
        assert await answered == "yes"
        assert done_when_finished == [False]  # the thread's own bookkeeping comes before its caller hears

        failed: asyncio.Future[object] = loop.create_future()
        _in_a_thread(failed, lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            await failed

        given_up: asyncio.Future[object] = loop.create_future()
        given_up.cancel()
        _in_a_thread(given_up, lambda: "too late")
        await asyncio.sleep(0.01)  # the hand-back's turn in the loop
        assert loop_errors == []  # dropped, not set on a future that is done

        closed_loop = asyncio.new_event_loop()
        orphan: asyncio.Future[object] = closed_loop.create_future()
        closed_loop.close()
        answer_from_this_thread(orphan, lambda: "nobody asks")  # no error: the loop that asked is gone
        assert not orphan.done()
    finally:
        loop.set_exception_handler(None)
