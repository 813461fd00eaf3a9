"""VM screenshots for the VM list: captured through the hypervisor, turned into PNG, kept a few seconds.

A page polls every few seconds for every running VM; the cache keeps that to at most one libvirt
screenshot per VM and size per ``ttl``, and concurrent requests for the same picture share one capture.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from limen.errors import ErrorCode, LimenError
from limen.web.png import ImageFormatError, ppm_to_png

Capture = Callable[[str], Awaitable[tuple[str, bytes]]]
PPM_MIME_TYPES = ("image/x-portable-pixmap", "image/x-portable-anymap", "image/ppm")


@dataclass(frozen=True, slots=True)
class _Entry:
    taken_at: float
    png: bytes


def to_png(mime: str, data: bytes, max_width: int | None) -> bytes:
    """PNG bytes of a screenshot libvirt returned as ``mime`` (QEMU sends PPM; PNG passes through)."""
    if mime == "image/png" or data.startswith(b"\x89PNG"):
        return data
    if mime in PPM_MIME_TYPES or data.startswith(b"P6"):
        try:
            return ppm_to_png(data, max_width=max_width)
        except ImageFormatError as exc:
            raise LimenError(ErrorCode.INTERNAL_ERROR, f"unreadable screenshot: {exc}") from None
    raise LimenError(ErrorCode.INTERNAL_ERROR, f"screenshot in unsupported format {mime!r}")


class ScreenshotCache:
    """PNG screenshots keyed by (VM id as requested, max width), each kept ``ttl`` seconds."""

    def __init__(
        self,
        capture: Capture,
        *,
        ttl: float = 3.0,
        max_entries: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._capture = capture
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[tuple[str, int | None], _Entry] = {}
        self._pending: dict[tuple[str, int | None], asyncio.Task[bytes]] = {}

    async def get(self, ident: str, max_width: int | None = None) -> bytes:
        """The VM's screen as PNG; raises the hypervisor's LimenError (e.g. VM_NOT_RUNNING) uncached."""
        key = (ident, max_width)
        entry = self._entries.get(key)
        if entry is not None and self._clock() - entry.taken_at < self._ttl:
            return entry.png
        task = self._pending.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._take(key))
            self._pending[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        # A client that goes away must not cancel a capture other clients wait for.
        return await asyncio.shield(task)

    def _finished(self, key: tuple[str, int | None], task: asyncio.Task[bytes]) -> None:
        self._pending.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved here so an error nobody awaited is not reported as lost

    async def _take(self, key: tuple[str, int | None]) -> bytes:
        ident, max_width = key
        mime, data = await self._capture(ident)
        png = await asyncio.to_thread(to_png, mime, data, max_width)
        self._store(key, png)
        return png

    def _store(self, key: tuple[str, int | None], png: bytes) -> None:
        now = self._clock()
        self._entries[key] = _Entry(now, png)
        for stale in [k for k, e in self._entries.items() if now - e.taken_at >= self._ttl]:
            del self._entries[stale]
        while len(self._entries) > self._max_entries:
            del self._entries[min(self._entries, key=lambda k: self._entries[k].taken_at)]

    def __len__(self) -> int:
        return len(self._entries)
