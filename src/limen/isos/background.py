"""Checksums of ISOs that arrived without one (copied into the directory by hand), computed in the
background: one file at a time, in a worker thread, a chunk at a time, each version of a file once."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from limen.isos.checksums import hash_file, write_checksum
from limen.isos.library import IsoImage

log = logging.getLogger("limen.isos")

# What identifies a version of an image: its path, size and modification time.
_Version = tuple[Path, int, float]


class BackgroundChecksums:
    """Call :meth:`request` with listed images (those without a checksum are queued) from the event loop;
    :meth:`close` stops the work (the file being hashed is dropped, to be done by the next start)."""

    def __init__(self) -> None:
        self._queue: list[Path] = []
        self._tried: set[_Version] = set()
        self._stop = threading.Event()
        self._task: asyncio.Task[None] | None = None

    def request(self, images: Iterable[IsoImage]) -> None:
        for image in images:
            version = (image.path, image.size_bytes, image.modified.timestamp())
            if image.sha256 is None and version not in self._tried and not self._stop.is_set():
                self._tried.add(version)
                self._queue.append(image.path)
        if self._queue and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._work(), name="iso-checksums")

    async def _work(self) -> None:
        while self._queue and not self._stop.is_set():
            path = self._queue.pop(0)
            try:
                await asyncio.to_thread(self._compute, path)
            except OSError as exc:
                log.warning("ISO checksum failed", extra={"event": "iso_checksum_failed", "iso": path.name,
                                                          "error": str(exc)})

    def _compute(self, path: Path) -> None:
        before = path.stat()
        digest = hash_file(path, self._stop)
        if digest is None:
            return
        after = path.stat()
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            return  # changed while being read: its new version will be queued by the next listing
        write_checksum(path, digest)
        log.info("ISO checksum computed", extra={"event": "iso_checksum", "iso": path.name})

    async def wait_idle(self) -> None:
        """Returns when the queue is done."""
        while self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
