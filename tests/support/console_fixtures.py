"""Fixtures for console tests: captured console log records, and a check that no descriptor leaks.

Import them into a test module (``from tests.support.console_fixtures import console_log, no_fd_leak``);
they could move to ``tests/conftest.py`` unchanged. tests/conftest.py loads them as a plugin, before any
argument is looked at: limen and the console support are imported where used (see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import libvirt
import pytest

from tests.support.hanging_libvirt import HangingLibvirt, hanging_libvirt

if TYPE_CHECKING:
    from tests.support.console import Records


@pytest.fixture
def console_log() -> Iterator[Records]:
    from tests.support.console import Records

    logger = logging.getLogger("limen.console")
    handler = Records()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


_warmed_up = False


def _warm_up_libvirt() -> None:
    """Makes libvirt create its process-wide, created-once resources (its event loop's descriptors) now,
    so the first test that happens to trigger them is not blamed for a leak."""
    global _warmed_up
    if _warmed_up:
        return
    from limen.hypervisor.events import ensure_event_thread

    ensure_event_thread()
    conn = libvirt.open("test:///default")
    try:
        callback = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lambda *_: None, None)
        dom = conn.lookupByName("test")
        dom.destroy()
        dom.create()
        time.sleep(0.2)  # let the event be dispatched through libvirt's loop
        conn.domainEventDeregisterAny(callback)
    finally:
        conn.close()
    # The remote driver (what qemu:///system and qemu+unix use) has process-wide state of its own.
    try:
        remote = libvirt.open("qemu:///system")
    except libvirt.libvirtError:
        pass
    else:
        remote.close()
    _warmed_up = True


def _threads() -> set[threading.Thread]:
    # libvirt's event thread is process-wide; asyncio_N are the test loop's executor, closed with the loop.
    return {thread for thread in threading.enumerate()
            if thread.name != "libvirt-events" and not thread.name.startswith("asyncio_")}


@contextmanager
def _recording_thread_starts() -> Iterator[dict[int, str]]:
    """While in it, where each thread was started (by the thread's id()): a leaked thread's current frame (an
    idle worker waiting on its queue) seldom says whose it is."""
    started_at: dict[int, str] = {}
    start = threading.Thread.start

    def recorded_start(thread: threading.Thread) -> None:
        started_at[id(thread)] = "".join(traceback.format_stack()[-9:-1])
        start(thread)

    threading.Thread.start = recorded_start  # type: ignore[method-assign]
    try:
        yield started_at
    finally:
        threading.Thread.start = start  # type: ignore[method-assign]


def _stacks(threads: set[threading.Thread], started_at: dict[int, str]) -> dict[str, str]:
    """Each thread's name → where it was started and where it is now (its innermost calls)."""
    frames = sys._current_frames()
    stacks = {}
    for thread in threads:
        frame = frames.get(thread.ident) if thread.ident is not None else None
        now = "".join(traceback.format_stack(frame)[-6:]) if frame is not None else "(ended)"
        stacks[f"{thread.name} ({thread.ident})"] = f"started at:\n{started_at.get(id(thread), '?')}now at:\n{now}"
    return stacks


@pytest.fixture
async def no_leaks(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After the test the process holds no more file descriptors, asyncio tasks or threads than before.

    Measured inside the test's loop, so the loop's own descriptors count on both sides. libvirt's
    event thread is process-wide and started once, before the first measure.

    A test that uses the ``libvirt_hangs`` fixture (it makes libvirt calls hang on a fake daemon) may leave one GLib
    eventfd: libvirt's remote client keeps the GMainContext of a connection that failed while its
    first RPC was pending. That is libvirt's, not the console's; sockets are still counted strictly.
    """
    from tests.support.console import describe_fds, open_fds

    ignore_eventfds = "libvirt_hangs" in request.fixturenames
    _warm_up_libvirt()
    fds, tasks, threads = open_fds(), asyncio.all_tasks(), _threads()
    with _recording_thread_starts() as started_at:
        yield
    deadline = time.monotonic() + 5
    while True:
        # libvirt objects caught in reference cycles (exceptions keep frames alive) hold their sockets
        # until the cycle collector runs; collect, so only what is really still referenced counts.
        gc.collect()
        leaked_fds = open_fds() - fds
        if ignore_eventfds:
            leaked_fds = {fd for fd, what in describe_fds(leaked_fds).items() if what != "anon_inode:[eventfd]"}
        leaked_tasks = {task for task in asyncio.all_tasks() - tasks if task is not asyncio.current_task()}
        leaked_threads = {thread for thread in _threads() - threads if thread.is_alive()}
        if not (leaked_fds or leaked_tasks or leaked_threads) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert not leaked_fds, f"file descriptors left open: {describe_fds(leaked_fds)}"
    assert not leaked_tasks, f"tasks left running: {leaked_tasks}"
    assert not leaked_threads, f"threads left running: {_stacks(leaked_threads, started_at)}"



@pytest.fixture
def libvirt_hangs() -> Iterator[HangingLibvirt]:
    """A fake libvirtd on which every call hangs once it is ``armed`` (see HangingLibvirt)."""
    with hanging_libvirt() as fake:
        yield fake
