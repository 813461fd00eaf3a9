"""The resource sampler: every ``stats_interval`` seconds, one bulk libvirt read of every running VM (and
the host's CPU times) on each host, in that host's worker threads through its bounded connection call,
recorded into one :class:`~limen.stats_history.StatsHistory`. Started and stopped by the app's lifespan.

Hosts are sampled apart: each tick starts a read on every host that has none in flight, and each read is
recorded when it comes back. A hung host holds only its own read (until its connection's timeout), never
the other hosts' rounds; it is not asked again while that read is out. A host the host pool has marked
unavailable is skipped (the pool's prober brings it back); its VMs keep their history meanwhile.

A failed read (libvirt down, past its timeout) loses that host's round only; the VMs keep their history and
the next round starts their rates afresh where a counter went backwards. Until a host is read again (its
read failed, it is unavailable, or its read has been out for two ticks), its VMs' figures are stale: kept, but
neither in /metrics nor among the running VMs' latest figures.
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
from limen.hypervisor.hosts import DEFAULT_HOST, HostPool
from limen.hypervisor.stats import HostCpuTimes, host_cpu_percent, read_host_cpu, read_running_vms
from limen.stats_history import Reading, StatsHistory

log = logging.getLogger("limen.stats")
STOP_WAIT = 5.0  # seconds shutdown waits for the reads in flight (see StatsSampler.stop)


@dataclass(frozen=True, slots=True)
class Round:
    """What one libvirt call brings back."""

    readings: list[Reading]
    host_cpu: HostCpuTimes | None


@dataclass(frozen=True, slots=True)
class _TimedRound:
    """A round and when libvirt read it: the middle of the call, on the wall clock and on the steady one."""

    round: Round
    at: float
    steady: float


def read_round(conn: libvirt.virConnect) -> Round:
    """Runs in a worker thread: the bulk VM stats call and the host's CPU times."""
    return Round(read_running_vms(conn), read_host_cpu(conn))


class StatsSampler:
    """Samples every ``interval`` seconds while started: ``hosts``' every available host (or the one
    connection given). ``clock`` gives wall time (the series' times), ``steady_clock`` the seconds between
    readings (the rates' divisor: it never steps)."""

    def __init__(self, hosts: HostPool | LibvirtConnection, interval: float, *, history: StatsHistory | None = None,
                 clock: Callable[[], float] = time.time, steady_clock: Callable[[], float] = time.monotonic,
                 read: Callable[[libvirt.virConnect], Round] = read_round) -> None:
        self.hosts = hosts
        self.interval = interval
        self.history = history or StatsHistory()
        # The busy share of each host's CPUs over its last interval (None before two reads), by host name.
        self.host_cpu_percents: dict[str, float | None] = {}
        self.failures = 0
        self._clock = clock
        self._steady_clock = steady_clock
        self._read = read
        self._host_cpu: dict[str, HostCpuTimes | None] = {}
        self._task: asyncio.Task[None] | None = None
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._ticks_waited: dict[str, int] = {}  # ticks a host's read has been out past its own

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    @property
    def host_cpu_percent(self) -> float | None:
        """The default host's CPU % (``GET /api/host/stats``)."""
        return self.host_cpu_percents.get(DEFAULT_HOST)

    @property
    def in_flight(self) -> set[str]:
        """The hosts whose read has not come back yet."""
        return {name for name, task in self._in_flight.items() if not task.done()}

    def _targets(self) -> list[tuple[str, LibvirtConnection]]:
        """The hosts to read now: every available one (the default host always, as its calls are never
        refused for being unavailable)."""
        if isinstance(self.hosts, LibvirtConnection):
            return [(DEFAULT_HOST, self.hosts)]
        return [(link.name, link.connection) for link in self.hosts.links
                if link.available or link.name == DEFAULT_HOST]

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="limen-stats-sampler")

    async def stop(self) -> None:
        tasks = [task for task in (self._task, *self._in_flight.values()) if task is not None]
        self._task = None
        self._in_flight.clear()
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        # A read blocked in libvirt holds its worker thread, which cancelling cannot interrupt: shutdown
        # waits a bounded time for it and leaves the thread to finish on its own.
        done, pending = await asyncio.wait(tasks, timeout=STOP_WAIT)
        if pending:
            log.warning("resource sampling did not stop within %s s", STOP_WAIT,
                        extra={"event": "stats_stop_slow"})
        for task in done:
            if not task.cancelled():
                with contextlib.suppress(Exception):
                    task.result()

    def _launch(self) -> list[asyncio.Task[None]]:
        """Starts a read on every host to read that has none in flight; returns the reads started. The VMs
        of a host no longer in the pool (removed) count as stopped from then on."""
        if isinstance(self.hosts, HostPool):
            known = {link.name for link in self.hosts.links}
            for gone in self.history.hosts() - known:
                self.history.host_gone(gone, self._clock())
        started = []
        targets = self._targets()
        read = {name for name, _ in targets}
        for unavailable in self.history.hosts() - read:
            self.history.host_unread(unavailable)
        for name, connection in targets:
            if name in self.in_flight:
                # Still waiting on the last one (a slow or hung host): not a second thread on it. A read one
                # tick late is a slow host; two, and its VMs' figures are no longer current.
                self._ticks_waited[name] = waited = self._ticks_waited.get(name, 0) + 1
                if waited >= 2:
                    self.history.host_unread(name)
                continue
            self._ticks_waited.pop(name, None)
            task = asyncio.create_task(self._sample_host(name, connection), name=f"limen-stats-{name}")
            self._in_flight[name] = task
            started.append(task)
        return started

    async def sample_once(self) -> None:
        """One round: a read on every host (those with a read in flight excepted), each recorded as it comes
        back; returns when they all have. A libvirt failure is logged and counted, never raised."""
        started = self._launch()
        if started:
            await asyncio.gather(*started, return_exceptions=True)

    async def _sample_host(self, name: str, connection: LibvirtConnection) -> None:
        try:
            timed = await connection.call("sample_stats", self._timed_read)
        except LimenError as exc:
            self.failures += 1
            self.history.host_unread(name)
            log.warning("resource sampling of host %s failed: %s", name, exc,
                        extra={"event": "stats_sample_failed", "host": name})
            return
        except Exception:  # a bug in one read must not end sampling for the life of the server
            self.failures += 1
            self.history.host_unread(name)
            log.exception("resource sampling of host %s failed", name,
                          extra={"event": "stats_sample_failed", "host": name})
            return
        self.history.record(timed.round.readings, timed.at, host=name, steady=timed.steady)
        self.host_cpu_percents[name] = host_cpu_percent(self._host_cpu.get(name), timed.round.host_cpu)
        self._host_cpu[name] = timed.round.host_cpu

    def _timed_read(self, conn: libvirt.virConnect) -> _TimedRound:
        """Runs in the host's worker thread: the read, timed where it happens. Timed when the event loop got
        the answer back, a read slowed by its host (a busy QEMU monitor) or a wait for the loop counted
        against the rates around it: 50 % read as 14 % and then 376 %."""
        wall, steady = self._clock(), self._steady_clock()
        round_ = self._read(conn)
        return _TimedRound(round_, (wall + self._clock()) / 2, (steady + self._steady_clock()) / 2)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self._launch()
            next_at += self.interval
            # A tick that overran (a slow event loop) skips the ticks it missed rather than bursting.
            now = loop.time()
            if next_at < now:
                next_at = now + self.interval
            await asyncio.sleep(next_at - now)
