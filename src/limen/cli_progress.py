"""Feedback while a command works: a spinner with the seconds so far on a terminal, one plain line otherwise
(logs, pipes), nothing with ``--json`` (stdout is the result; stderr stays quiet for scripts).

Work made of steps (``doctor``'s checks) names each with :meth:`Working.step`: beside the spinner on a
terminal, a plain line of its own otherwise, nothing with ``--json``."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.status import Status


class Working:
    """The handle ``working`` yields; :meth:`step` says which part of the work runs now."""

    def __init__(self, label: str, *, as_json: bool, status: Status | None) -> None:
        self._label, self._as_json, self._status = label, as_json, status
        self._began = time.monotonic()
        self._step = ""
        self._lock = threading.Lock()

    def step(self, text: str) -> None:
        if self._as_json:
            return
        if self._status is None:
            typer.echo(f"  {text}…", err=True)
            return
        with self._lock:
            self._step = text
        self.redraw()

    def redraw(self) -> None:
        if self._status is None:
            return
        with self._lock:
            seconds = int(time.monotonic() - self._began)
            shown = f"{self._label}: {self._step}" if self._step else self._label
            self._status.update(f"{shown} ({seconds} s)" if seconds else shown)


@contextmanager
def working(label: str, *, as_json: bool) -> Iterator[Working]:
    if as_json:
        yield Working(label, as_json=True, status=None)
        return
    if not sys.stderr.isatty():
        typer.echo(f"{label}…", err=True)
        yield Working(label, as_json=False, status=None)
        return
    done = threading.Event()
    with Console(stderr=True).status(label) as status:
        handle = Working(label, as_json=False, status=status)

        def tick() -> None:  # rich redraws the spinner itself; this only counts the seconds
            while not done.wait(1.0):
                handle.redraw()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield handle
        finally:
            done.set()
            ticker.join()
