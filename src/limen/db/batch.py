"""Small writes from many callers, committed together: one transaction (and one worker-thread hop) for all
the writes that arrived while the previous batch was being written or its linger lasted.

Each caller awaits its own write: :meth:`BatchedWrites.write` returns once the transaction holding it has
committed, or raises what that write raised. A storm of writes (thousands of console sessions opening or
closing together) becomes a few transactions of up to ``max_batch`` rows instead of one commit, one fsync
and one thread hop per row. A batch's writes of one statement go to the driver as one ``executemany``
(one multi-row ``INSERT``): their order among other statements' writes is free, since a caller awaits each
write before its next, so no batch holds two of one caller's writes.

A batch is written once its oldest write is ``linger`` seconds old (0: at once), so that others join its
transaction. Without it, writes that come one at a time, a few milliseconds apart (consoles opened one
after another), are a transaction each: on PostgreSQL two commits a console whose driver and server work
shared the machine with the next console's set-up. Every batch lingers, not only a quiet period's first:
when writes come about as often as a transaction takes (PostgreSQL's round trips, a loaded machine), the
next batch would otherwise start with the one or two writes that came during the last, and the writer
would commit about once a write again. In a storm the oldest write has waited for the batch before it
already, so full batches go at once.

If a batch fails, each of its writes is tried again alone, so one bad row fails only its own caller; a
batch the database did not answer fails all its writes at once (alone, each would wait as long again).
Only for writes whose order relative to other callers' does not matter (each caller's own writes are
ordered by its awaiting them one after the other).

On a database whose calls are bounded (:attr:`Database.timeout`), a caller waits for its write at most that
long, then gets DATABASE_UNAVAILABLE; its write stays queued or in its batch and may still be committed
once the database answers. The writer itself waits for each batch as long as it takes, one at a time: a
caller's next write (a console's end after its start) is never committed before the last.

So while the database hangs, writes pile up. They are never dropped (a console let in has its rows);
instead :attr:`BatchedWrites.backlogged` says when more wait than a healthy writer ever holds, and a caller
that can refuse new work (a console's admission) asks it first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy.sql.expression import Executable

from limen.db.database import Database, database_unavailable
from limen.db.workers import database_hung
from limen.errors import LimenError

log = logging.getLogger("limen.db")

MAX_BATCH = 500
# Writes waiting for a batch past which the database is taken as not answering. A healthy writer never
# holds that many: a console's end is queued only once its start was written, so at most one row of each
# open console waits, and the most consoles the benchmark opens or closes at once (9,000 in its storms, on
# SQLite and PostgreSQL) are 18 batches. 40 batches is more than twice that. While a hang lasts, the
# consoles let in before it was reached add at most their ends: about 2 x 20,000 rows of about 1 KB.
MAX_WAITING = 40 * MAX_BATCH

class _Write(NamedTuple):
    statement: Executable
    parameters: dict[str, Any]
    done: asyncio.Future[None]  # the caller's
    queued_at: float  # by the loop's clock


class BatchedWrites:
    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH, linger: float = 0.0,
                 max_waiting: int = MAX_WAITING) -> None:
        self.db = db
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.linger = linger
        self._queue: list[_Write] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed (for tests and the bench)

    @property
    def waiting(self) -> int:
        """Writes queued for a batch not yet begun."""
        return len(self._queue)

    @property
    def backlogged(self) -> bool:
        """At least ``max_waiting`` writes wait: more than a healthy writer ever holds (:data:`MAX_WAITING`),
        so its database does not answer. :meth:`write` still takes every write."""
        return len(self._queue) >= self.max_waiting

    async def write(self, statement: Executable, parameters: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Write(statement, parameters, done, loop.time()))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._drain())
        # The write goes on if the caller is cancelled or gives up; the caller just stops waiting for it.
        if self.db.timeout is None:
            await asyncio.shield(done)
            return
        try:
            async with asyncio.timeout(self.db.timeout):
                await asyncio.shield(done)
        except TimeoutError:
            raise database_hung(self.db.timeout) from None

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            if len(self._queue) < self.max_batch:
                wait = self._queue[0].queued_at + self.linger - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            try:
                await self.db.in_thread(functools.partial(self._write_all, batch), wait=True)
            except Exception as exc:
                unavailable = database_unavailable(exc)
                if unavailable is not None:
                    log.warning("a batch of %d writes failed: %s", len(batch), unavailable.details,
                                extra={"event": "db_batch_failed", "writes": len(batch)})
                    for write in batch:
                        _settle(write.done, LimenError(unavailable.code, unavailable.details))
                    continue
                log.warning("a batch of %d writes failed; writing each alone", len(batch),
                            extra={"event": "db_batch_failed", "writes": len(batch)})
                for statement, parameters, done, _ in batch:
                    try:
                        await self.db.execute(statement, parameters)
                    except Exception as exc:
                        _settle(done, exc)
                    else:
                        _settle(done, None)
            else:
                self.batches += 1
                for write in batch:
                    _settle(write.done, None)

    def _write_all(self, batch: Sequence[_Write]) -> None:
        by_statement: dict[Executable, list[dict[str, Any]]] = {}
        for write in batch:
            by_statement.setdefault(write.statement, []).append(write.parameters)
        with self.db.engine.begin() as connection:
            for statement, rows in by_statement.items():
                connection.execute(statement, rows if len(rows) > 1 else rows[0])

    async def flush(self) -> None:
        """Until every write queued so far is committed (or failed)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
