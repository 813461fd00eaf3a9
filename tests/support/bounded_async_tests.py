"""A pytest plugin that ends a hung async test of the slow tiers inside its event loop, before pytest-timeout.

pytest-timeout (the ``timeout`` mark, 120 s by default) interrupts a test with a signal: the exception leaves
``run_until_complete`` from wherever the loop was, and the test's task stays pending in the loop. The loop is
shared by the whole process (``asyncio_default_test_loop_scope = "session"``), so whatever that test had
started (in-process limen apps with their heartbeats, Redis readers retrying, consoles) kept running under the
tests that came after it in the same worker: they then failed their leak checks for sockets and threads they
never made, and the run's log blamed them instead of the test that hung.

Here an async test of tests/integration or tests/e2e runs under ``asyncio.timeout`` of a budget a little under its
pytest-timeout: a test that waits past it is cancelled where it waits, its ``async with`` blocks unwind (apps
stop, servers close), and it fails with a TimeoutError whose traceback shows where it waited. pytest-timeout
stays the last resort for a test whose loop is blocked. The unit tier is left alone: tests/unit/fast_forward
runs on a loop whose clock jumps ahead.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import pytest

SLOW_TIERS = ("tests/integration/", "tests/e2e/")
MARGIN = 10.0  # seconds left to pytest-timeout after the budget: for the unwinding itself


def budget(item: pytest.Item) -> float | None:
    """Seconds the test may take before it is cancelled in its loop; None when it has no pytest-timeout."""
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        limit = float(marker.args[0])
    else:
        configured = item.config.getini("timeout")
        limit = float(configured) if configured else 0.0
    if limit <= 0:
        return None
    return max(limit - MARGIN, limit * 0.75)


def bounded(test: Callable[..., Coroutine[Any, Any, Any]], seconds: float) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(test)
    async def within_budget(*args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(seconds) as deadline:
                result = await test(*args, **kwargs)
        except TimeoutError as exc:
            raise TimeoutError(f"the test did not end within {seconds:g} s: cancelled where it waited "
                               "(the traceback's innermost calls)") from exc
        if deadline.expired():  # it ended only because its cancellation was taken for the end of a wait
            raise TimeoutError(f"the test did not end within {seconds:g} s, and its cancellation then was "
                               "swallowed on the way (a suppress(CancelledError) around a wait that hung?)")
        return result

    return within_budget


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    test = getattr(item, "obj", None)
    seconds = budget(item)
    slow_tier = item.nodeid.startswith(SLOW_TIERS)
    if test is None or seconds is None or not slow_tier or not inspect.iscoroutinefunction(test):
        return (yield)
    item.obj = bounded(test, seconds)  # type: ignore[attr-defined]
    try:
        return (yield)
    finally:
        item.obj = test  # type: ignore[attr-defined]
