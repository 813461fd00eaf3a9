"""The screenshot cache: one capture per VM and size per TTL, shared by concurrent requests."""

from __future__ import annotations

import asyncio

import pytest

from limen.errors import ErrorCode, LimenError
from limen.web.screenshots import ScreenshotCache, to_png

PPM = b"P6\n2 1\n255\n" + bytes([255, 0, 0, 0, 255, 0])


class FakeCapture:
    def __init__(self, result: tuple[str, bytes] | LimenError = ("image/x-portable-pixmap", PPM)) -> None:
        self.calls: list[str] = []
        self.result = result
        self.gate: asyncio.Event | None = None

    async def __call__(self, ident: str) -> tuple[str, bytes]:
        self.calls.append(ident)
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.result, LimenError):
            raise self.result
        return self.result


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_fresh_picture_is_served_from_the_cache_until_the_ttl_passes() -> None:
    capture, clock = FakeCapture(), Clock()
    cache = ScreenshotCache(capture, ttl=3.0, clock=clock)
    first = await cache.get("vm")
    assert first.startswith(b"\x89PNG")
    clock.now += 2.9
    assert await cache.get("vm") == first
    assert capture.calls == ["vm"]
    clock.now += 0.2
    await cache.get("vm")
    assert capture.calls == ["vm", "vm"]


async def test_sizes_are_cached_apart() -> None:
    capture = FakeCapture()
    cache = ScreenshotCache(capture, clock=Clock())
    await cache.get("vm", None)
    await cache.get("vm", 100)
    assert len(capture.calls) == 2


async def test_concurrent_requests_share_one_capture() -> None:
    capture = FakeCapture()
    capture.gate = asyncio.Event()
    cache = ScreenshotCache(capture, clock=Clock())
    waiters = [asyncio.create_task(cache.get("vm")) for _ in range(5)]
    await asyncio.sleep(0)
    capture.gate.set()
    results = await asyncio.gather(*waiters)
    assert capture.calls == ["vm"]
    assert len(set(results)) == 1


async def test_a_client_going_away_does_not_cancel_the_capture_for_others() -> None:
    capture = FakeCapture()
    capture.gate = asyncio.Event()
    cache = ScreenshotCache(capture, clock=Clock())
    leaving = asyncio.create_task(cache.get("vm"))
    staying = asyncio.create_task(cache.get("vm"))
    await asyncio.sleep(0)
    leaving.cancel()
    capture.gate.set()
    assert (await staying).startswith(b"\x89PNG")


async def test_errors_are_raised_and_not_cached() -> None:
    capture = FakeCapture(LimenError(ErrorCode.VM_NOT_RUNNING, "VM 'x' is not running"))
    cache = ScreenshotCache(capture, clock=Clock())
    for _ in range(2):
        with pytest.raises(LimenError) as caught:
            await cache.get("x")
        assert caught.value.code is ErrorCode.VM_NOT_RUNNING
    assert capture.calls == ["x", "x"]
    assert len(cache) == 0


async def test_the_cache_stays_bounded() -> None:
    capture, clock = FakeCapture(), Clock()
    cache = ScreenshotCache(capture, ttl=60.0, max_entries=3, clock=clock)
    for index in range(10):
        clock.now += 1
        await cache.get(f"vm-{index}")
    assert len(cache) == 3


def test_png_passes_through_and_unknown_formats_are_internal_errors() -> None:
    png = b"\x89PNG\r\n\x1a\nrest"
    assert to_png("image/png", png, None) == png
    with pytest.raises(LimenError) as caught:
        to_png("image/bmp", b"BM....", None)
    assert caught.value.code is ErrorCode.INTERNAL_ERROR
    with pytest.raises(LimenError):
        to_png("image/x-portable-pixmap", b"P6\n9 9\n255\n", None)
