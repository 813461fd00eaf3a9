"""Whether the running task was asked to stop, when a library reported that request as an error of its own.

redis-py may turn a task's cancellation that lands in the middle of a command into a ConnectionError or a
TimeoutError of its own (it disconnects on the way out). A loop that retries on such errors would then go on
for ever, and whoever cancelled it and waits for its end (limen stopping) waits with it: a test run saw a
replica's shutdown wait until the test's own deadline. ``Task.cancelling()`` keeps the request even when the
CancelledError itself was swallowed. Every loop that retries on Redis's errors asks this first: the stream's
reader, the VM-event relay's sender, the revocation bus's resender.
"""

from __future__ import annotations

import asyncio


def stop_requested() -> bool:
    """True when the running task was cancelled and has not taken the cancellation back (``uncancel``)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
