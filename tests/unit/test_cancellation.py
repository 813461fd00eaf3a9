"""Stopping a background task: the wait is bounded, a task that will not stop is named, and the stopper's own
cancellation is never swallowed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from limen.cancellation import cancel_and_wait, stop_requested


async def swallows_its_cancellation(released: asyncio.Event) -> None:
    """As a Redis loop whose cancellation came back as a ConnectionError and was retried (until the test
    releases it)."""
    while not released.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]


async def test_a_task_that_stops_is_waited_for() -> None:
    stopped = asyncio.Event()

    async def loop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.set()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await cancel_and_wait(task, "a loop")
    assert task.cancelled() and stopped.is_set()


async def test_a_task_that_will_not_stop_is_named_and_left_after_the_bound(caplog: pytest.LogCaptureFixture) -> None:
    released = asyncio.Event()
    task = asyncio.create_task(swallows_its_cancellation(released))
    await asyncio.sleep(0)
    try:
        with caplog.at_level(logging.WARNING, logger="limen"):
            async with asyncio.timeout(2):
                await cancel_and_wait(task, "the stubborn loop", timeout=0.1)
        (record,) = [r for r in caplog.records if getattr(r, "event", None) == "task_not_stopped"]
        assert record.__dict__["task"] == "the stubborn loop" and not task.done()
    finally:
        released.set()
        await task


async def test_the_stoppers_own_cancellation_goes_through() -> None:
    """``with suppress(CancelledError): await task`` took the stopper's cancellation for the task's end."""
    released = asyncio.Event()
    stubborn = asyncio.create_task(swallows_its_cancellation(released))
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait(stubborn, "the stubborn loop", timeout=60))
    await asyncio.sleep(0.05)
    stopper.cancel()
    try:
        async with asyncio.timeout(2):
            with pytest.raises(asyncio.CancelledError):
                await stopper
    finally:
        released.set()
        await stubborn


async def test_a_failure_on_the_way_out_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ConnectionError("Redis went away") from None

    task = asyncio.create_task(fails_when_cancelled())
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="limen"):
        await cancel_and_wait(task, "a reader")
    assert [getattr(r, "event", None) for r in caplog.records] == ["task_failed_stopping"]


async def test_stop_requested_outlives_a_swallowed_cancellation() -> None:
    seen: list[bool] = []

    async def loop() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass  # swallowed, as a library may
        seen.append(stop_requested())

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task})
    assert seen == [True]
