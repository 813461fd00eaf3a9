"""A database that does not answer the console rows' batched writes (PostgreSQL stopped, say), for unit tests
on SQLite: each batch waits in its worker thread until the test lets the database answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from limen.db.batch import BatchedWrites


@contextmanager
def hung_batch_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """``(hung, release)``: ``hung`` is set once a batch reached the database and waits there; setting
    ``release`` lets every batch through, and leaving releases them too (a writer thread left waiting would
    hold the database's close). The writes stay patched until the test's end, as ``monkeypatch`` does."""
    hung, release = threading.Event(), threading.Event()
    write_all = BatchedWrites._write_all

    def hanging_write_all(self: BatchedWrites, batch: Sequence[Any]) -> None:
        hung.set()
        release.wait()
        write_all(self, batch)

    monkeypatch.setattr(BatchedWrites, "_write_all", hanging_write_all)
    try:
        yield hung, release
    finally:
        release.set()
