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

If a batch fails, each of its writes is tried again alone, so one bad row fails only its own caller.
Only for writes whose order relative to other callers' does not matter (each caller's own writes are
ordered by its awaiting them one after the other).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import anyio.to_thread
from sqlalchemy.sql.expression import Executable

from limen.db.database import Database

log = logging.getLogger("limen.db")

MAX_BATCH = 500

class _Write(NamedTuple):
    statement: Executable
    parameters: dict[str, Any]
    done: asyncio.Future[None]  # the caller's
    queued_at: float  # by the loop's clock


class BatchedWrites:
    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH, linger: float = 0.0) -> None:
        self.db = db
        self.max_batch = max_batch
        self.linger = linger
        self._queue: list[_Write] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed (for tests and the bench)

    async def write(self, statement: Executable, parameters: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Write(statement, parameters, done, loop.time()))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._drain())
        # The write goes on if the caller is cancelled; the caller just stops waiting for it.
        await asyncio.shield(done)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            if len(self._queue) < self.max_batch:
                wait = self._queue[0].queued_at + self.linger - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
            try:
                await anyio.to_thread.run_sync(self._write_all, batch)
            except Exception:
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
