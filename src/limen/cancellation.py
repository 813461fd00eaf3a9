"""Stopping background tasks: whether the running task was asked to stop when a library reported that as an
error of its own, and a bounded wait for a cancelled task's end.

redis-py may turn a task's cancellation that lands in the middle of a command into a ConnectionError or a
TimeoutError of its own (it disconnects on the way out). A loop that retries on such errors would then go on
for ever, and whoever cancelled it and waits for its end (limen stopping) waits with it: a test run saw a
replica's shutdown wait until the test's own deadline. ``Task.cancelling()`` keeps the request even when the
CancelledError itself was swallowed. Every loop that retries on Redis's errors asks this first: the stream's
reader, the VM-event relay's sender, the revocation bus's resender. Whoever stops such a task waits for it
through :func:`cancel_and_wait`, which bounds the wait.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("limen")


def stop_requested() -> bool:
    """True when the running task was cancelled and has not taken the cancellation back (``uncancel``)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# How long a cancelled background task gets to end before whoever stops it goes on without it (seconds).
STOP_WAIT = 5.0


async def cancel_and_wait(task: asyncio.Task[Any], what: str, timeout: float = STOP_WAIT) -> None:
    """Cancels ``task`` and waits for its end, at most ``timeout``.

    Why not ``task.cancel()`` then ``with suppress(CancelledError): await task``: a task that swallowed its
    cancellation (above) held whoever stopped it for ever, and the ``suppress`` also swallowed the stopper's
    own cancellation (a test's deadline, a second Ctrl-C), so the hang could not even be ended from outside. Here
    a task still running after ``timeout`` is logged by name (``task_not_stopped``) and left behind; a
    cancellation of the caller while it waits goes through; the task's own failure, if it ended with one, is
    logged rather than raised (stopping goes on).
    """
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.warning("%s did not stop within %g s of being cancelled; going on without it", what, timeout,
                    extra={"event": "task_not_stopped", "task": what})
        return
    if not task.cancelled() and (failure := task.exception()) is not None:
        log.warning("%s failed as it stopped: %s", what, failure, exc_info=failure,
                    extra={"event": "task_failed_stopping", "task": what})
