"""The resource sampler: every ``stats_interval`` seconds, one bulk libvirt read of every running VM (and
the host's CPU times), in a worker thread through the bounded connection call, recorded into a
:class:`~limen.stats_history.StatsHistory`. Started and stopped by the app's lifespan.

A failed read (libvirt down, past its timeout) loses that round only; the VMs keep their history and the
next round starts their rates afresh where a counter went backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from limen.errors import LimenError
from limen.hypervisor.connection import LibvirtConnection
from limen.hypervisor.stats import HostCpuTimes, host_cpu_percent, read_host_cpu, read_running_vms
from limen.stats_history import Reading, StatsHistory

log = logging.getLogger("limen.stats")
STOP_WAIT = 5.0  # seconds shutdown waits for a sampling round (see StatsSampler.stop)


@dataclass(frozen=True, slots=True)
class Round:
    """What one libvirt call brings back."""

    readings: list[Reading]
    host_cpu: HostCpuTimes | None


def read_round(conn: libvirt.virConnect) -> Round:
    """Runs in a worker thread: the bulk VM stats call and the host's CPU times."""
    return Round(read_running_vms(conn), read_host_cpu(conn))


class StatsSampler:
    """Samples every ``interval`` seconds while started. ``clock`` gives wall time (the series' times)."""

    def __init__(self, connection: LibvirtConnection, interval: float, *, history: StatsHistory | None = None,
                 clock: Callable[[], float] = time.time,
                 read: Callable[[libvirt.virConnect], Round] = read_round) -> None:
        self.connection = connection
        self.interval = interval
        self.history = history or StatsHistory()
        self.host_cpu_percent: float | None = None
        self.failures = 0
        self._clock = clock
        self._read = read
        self._host_cpu: HostCpuTimes | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="limen-stats-sampler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # A round blocked in libvirt holds its worker thread, which cancelling cannot interrupt: shutdown
            # waits a bounded time for it and leaves the thread to finish on its own.
            done, _ = await asyncio.wait({task}, timeout=STOP_WAIT)
            if not done:
                log.warning("resource sampling did not stop within %s s", STOP_WAIT,
                            extra={"event": "stats_stop_slow"})
            elif not task.cancelled():
                with contextlib.suppress(Exception):
                    task.result()

    async def sample_once(self) -> None:
        """One round: read and record. A libvirt failure is logged and counted, never raised."""
        try:
            round_ = await self.connection.call("sample_stats", self._read)
        except LimenError as exc:
            self.failures += 1
            log.warning("resource sampling failed: %s", exc, extra={"event": "stats_sample_failed"})
            return
        self.history.record(round_.readings, self._clock())
        self.host_cpu_percent = host_cpu_percent(self._host_cpu, round_.host_cpu)
        self._host_cpu = round_.host_cpu

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.sample_once()
            except Exception:  # a bug in one round must not end sampling for the life of the server
                self.failures += 1
                log.exception("resource sampling round failed", extra={"event": "stats_sample_failed"})
            next_at += self.interval
            # A round that overran (a slow libvirt) skips the ticks it missed rather than bursting.
            now = loop.time()
            if next_at < now:
                next_at = now + self.interval
            await asyncio.sleep(next_at - now)
