"""Blocking database calls in a bounded set of threads of their own, each awaited with a deadline.

A database that hangs (PostgreSQL stopped without refusing: SIGSTOP, a frozen host) holds every call made to
it until it answers again, and a thread cannot be cancelled. So, for a server on such a database:

- at most ``threads`` calls run at once, in daemon threads of this pool's own: hung calls never hold the
  threads other work needs (anyio's default ones: files, screenshots), never pile up past that number, and
  never keep the process from exiting;
- a caller waits at most ``deadline`` seconds, its wait for a free thread included, then gets
  DATABASE_UNAVAILABLE. A call that had not started by then never starts; one that had runs on and may
  still complete when the database answers again (its outcome is unknown to the caller);
- once every thread holds a call that has run past the deadline, the database is taken as hung: new calls
  fail at once instead of waiting for a thread that will not come free, until one of those calls returns.

A caller's cancellation does not cut its wait short (as anyio's ``to_thread.run_sync``, which this
replaces there): the work it started is waited for, within the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import functools
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

from limen.errors import ErrorCode, LimenError

T = TypeVar("T")


class _State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    ABANDONED = "abandoned"  # its caller gave up before a thread took it: it never runs
    DONE = "done"


def answer_from_this_thread(
    answer: asyncio.Future[T], work: Callable[[], T], *, before_answering: Callable[[], None] | None = None
) -> None:
    """Runs ``work()`` in the calling thread (never the loop's) and sets its result or error on ``answer`` in
    ``answer``'s loop; ``before_answering`` runs between the two, here. The answer is dropped when nobody
    waits for it any more: ``answer`` is done by then (its caller gave up) or the loop has closed."""
    result: T | None = None
    error: BaseException | None = None
    try:
        result = work()
    except BaseException as exc:  # handed to the caller, whatever it is: this thread has nobody else to tell
        error = exc
    if before_answering is not None:
        before_answering()
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
        answer.get_loop().call_soon_threadsafe(_settle, answer, result, error)


def _settle(answer: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if answer.done():  # its caller stopped waiting
        return
    if error is None:
        answer.set_result(result)  # type: ignore[arg-type]  # None only with an error
    else:
        answer.set_exception(error)


class _Call(Generic[T]):
    def __init__(self, work: Callable[[], T], loop: asyncio.AbstractEventLoop) -> None:
        self.work = work
        self.context = contextvars.copy_context()  # the request's log fields, as anyio's threads have them
        self.answer: asyncio.Future[T] = loop.create_future()
        self.state = _State.QUEUED
        self.started_at = 0.0  # time.monotonic() when a thread took it
        # Its caller gave up at the deadline while it ran. Its own clock may say less: a thread takes a call
        # a moment after it was asked, and the caller's deadline counts from the asking.
        self.overdue = False


def database_hung(deadline: float) -> LimenError:
    return LimenError(ErrorCode.DATABASE_UNAVAILABLE,
                      f"the database did not answer within {deadline:g} s (a write may still complete when "
                      "it answers again)")


class DatabaseWorkers:
    def __init__(self, threads: int, deadline: float, *, name: str = "limen-database") -> None:
        self.threads = threads
        self.deadline = deadline
        self._name = name
        self._queue: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()  # None: a thread's stop
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0
        self._running: set[_Call[Any]] = set()

    @property
    def running(self) -> int:
        """How many calls hold a thread now (those past their deadline included)."""
        return len(self._running)

    def hung(self) -> bool:
        """Every thread holds a call that has run past the deadline, or whose caller gave up at it."""
        if len(self._running) < self.threads:
            return False
        overdue_before = time.monotonic() - self.deadline
        return all(call.overdue or call.started_at < overdue_before for call in self._running)

    async def call(self, work: Callable[[], T], *, wait: bool = False) -> T:
        """``work()`` in one of the threads; DATABASE_UNAVAILABLE past the deadline (see the module docstring).
        ``wait``: the caller waits as long as the work takes (a writer that must keep its writes in order
        bounds its callers' waits itself); the work still gets no thread while the database is hung."""
        with self._lock:
            if self.hung():
                raise database_hung(self.deadline)
            call = _Call(work, asyncio.get_running_loop())
            self._submit(call)
        try:
            with anyio.CancelScope(shield=True):
                if wait:
                    return await call.answer
                with anyio.move_on_after(self.deadline):
                    return await call.answer
        except asyncio.CancelledError:  # cancelled by asyncio itself (anyio's cancellation waits, above)
            self._give_up(call, overdue=False)
            raise
        self._give_up(call, overdue=True)
        raise database_hung(self.deadline)

    def _give_up(self, call: _Call[Any], *, overdue: bool) -> None:
        with self._lock:
            if call.state is _State.QUEUED:
                call.state = _State.ABANDONED
            elif call.state is _State.RUNNING:
                call.overdue = overdue
        call.answer.cancel()

    def _submit(self, call: _Call[Any]) -> None:
        """Under the lock: queues the call and starts a thread for it if none is idle."""
        self._queue.put(call)
        if self._idle > 0:
            self._idle -= 1
        elif self._started < self.threads:
            self._started += 1
            threading.Thread(target=self._serve, name=f"{self._name}-{self._started}", daemon=True).start()

    def close(self) -> None:
        """Ends the threads that wait for work (the database is closed: its server stops, or a test's app does).
        One that holds a call ends when it returns; a call asked afterwards starts a thread again."""
        with self._lock:
            for _ in range(self._idle):
                self._queue.put(None)
            self._started -= self._idle
            self._idle = 0

    def _serve(self) -> None:
        while True:
            call = self._queue.get()
            if call is None:
                return
            with self._lock:
                if call.state is _State.ABANDONED:
                    self._idle += 1
                    continue
                call.state, call.started_at = _State.RUNNING, time.monotonic()
                self._running.add(call)
            answer_from_this_thread(call.answer, functools.partial(call.context.run, call.work),
                                    before_answering=functools.partial(self._finished, call))

    def _finished(self, call: _Call[Any]) -> None:
        """The thread is free again before its caller hears: the caller's next call may take it."""
        with self._lock:
            call.state = _State.DONE
            self._running.discard(call)
            self._idle += 1
