"""Feedback while a command works: a spinner with the seconds so far on a terminal, one plain line otherwise
(logs, pipes), nothing with ``--json`` (stdout is the result; stderr stays quiet for scripts)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console


@contextmanager
def working(label: str, *, as_json: bool) -> Iterator[None]:
    if as_json:
        yield
        return
    if not sys.stderr.isatty():
        typer.echo(f"{label}…", err=True)
        yield
        return
    began = time.monotonic()
    done = threading.Event()
    with Console(stderr=True).status(label) as status:

        def tick() -> None:  # rich redraws the spinner itself; this only counts the seconds
            while not done.wait(1.0):
                status.update(f"{label} ({time.monotonic() - began:.0f} s)")

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()
