"""Resource history of running VMs: rates from counter readings, and bounded ring buffers. Pure: no
libvirt, no clock of its own (every call is given the time), so it is tested with numbers alone.

A VM's history is two rings of :data:`FIELDS` (float32 values, float64 times), allocated in full when the VM
is first seen, so its memory is fixed: ``(FINE_POINTS + COARSE_POINTS) * (8 + 4 * len(FIELDS))`` bytes
(:func:`bytes_per_vm`: 95,040 bytes, about 93 KiB, for 720 fine and 1440 coarse points) plus about 4 KB
of bookkeeping (measured: 98,900 bytes a VM in all). A VM that stops keeps its history for
:data:`STOPPED_RETENTION` seconds, and at most :data:`MAX_VMS` histories are kept (the longest-stopped go
first), so the whole is bounded.

Rates come from two readings of monotonic counters: ``(counter now - counter before) / seconds between``,
each counter against its own last reading: libvirt leaves out what a VM busy with a job (a screenshot)
cannot answer at once, and the rate after such a gap spans it. A counter that went backwards (the VM
restarted) or a first reading gives no rate (NaN; ``null`` in JSON), as does a reading from another host
than the last one: during a live move the VM runs on the source while its incoming copy is listed on the
target, and their counters, alternating, gave the source's lifetime total over one interval (36,000 %).
The seconds between come from a steady clock (one that never steps), the series' times from the wall clock;
a wall clock set back starts the VM's series afresh (its points stay in order, as the pages need).
"""

from __future__ import annotations

import logging
import math
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

log = logging.getLogger("limen.stats")

# The series kept per VM, in the order of the rings' columns.
FIELDS = (
    "cpu_percent",       # % of one host core (200 = two cores busy)
    "cpu_vcpu_percent",  # % of the VM's vCPUs together (100 = every vCPU busy)
    "memory_bytes",      # memory the VM has now (balloon.current)
    "memory_used_bytes",  # memory the guest uses (balloon.available - balloon.unused), if it reports it
    "rss_bytes",         # host memory the VM's process holds (balloon.rss)
    "disk_read_bps",     # bytes/s, all disks
    "disk_write_bps",
    "net_rx_bps",        # bytes/s, all interfaces
    "net_tx_bps",
)
FINE_POINTS = 720        # 1 hour at the default 5 s
COARSE_POINTS = 1440     # 24 hours at 1 min
COARSE_STEP = 60.0       # seconds per coarse point
STOPPED_RETENTION = 600.0  # seconds a stopped (or vanished) VM's history is kept
MAX_VMS = 2048
NAN = float("nan")
# The monotonic counters of a Reading, whose rates are figures.
COUNTERS = ("cpu_time_ns", "disk_read_bytes", "disk_write_bytes", "net_rx_bytes", "net_tx_bytes")
# A counter's last reading, as (value, steady time).
Known = Mapping[str, tuple[int, float]]


def bytes_per_vm(fine_points: int = FINE_POINTS, coarse_points: int = COARSE_POINTS) -> int:
    """The ring buffers' size for one VM: a float64 time and a float32 per field, for every point."""
    return (fine_points + coarse_points) * (8 + 4 * len(FIELDS))


@dataclass(frozen=True, slots=True)
class Reading:
    """One VM's counters at one moment, as libvirt's bulk stats give them (None: not reported)."""

    uuid: str
    name: str
    vcpus: int
    cpu_time_ns: int | None
    memory_kib: int | None = None      # balloon.current
    available_kib: int | None = None   # balloon.available (needs the guest's balloon driver)
    unused_kib: int | None = None      # balloon.unused
    rss_kib: int | None = None         # balloon.rss
    disk_read_bytes: int | None = None
    disk_write_bytes: int | None = None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None


def rate(before: int | None, now: int | None, seconds: float) -> float:
    """Per-second increase of a counter; NaN without both readings, with no time between, or on a reset."""
    if before is None or now is None or seconds <= 0 or now < before:
        return NAN
    return (now - before) / seconds


def _kib(value: int | None) -> float:
    return NAN if value is None else value * 1024.0


def known_counters(reading: Reading, at: float, known: Known | None = None) -> dict[str, tuple[int, float]]:
    """``known`` updated with the counters ``reading`` (taken at steady time ``at``) has."""
    updated = dict(known or {})
    for counter in COUNTERS:
        value = getattr(reading, counter)
        if value is not None:
            updated[counter] = (value, at)
    return updated


def sample_values(known: Known, now: Reading, at: float) -> tuple[float, ...]:
    """The :data:`FIELDS` of ``now`` (read at steady time ``at``), each rate against its counter's reading in
    ``known``."""

    def per_second(counter: str) -> float:
        before = known.get(counter)
        if before is None:
            return NAN
        return rate(before[0], getattr(now, counter), at - before[1])

    cpu_cores = per_second("cpu_time_ns") / 1e9  # NaN propagates
    cpu_percent = cpu_cores * 100.0
    cpu_vcpu_percent = cpu_percent / now.vcpus if now.vcpus > 0 else NAN
    used = NAN
    if now.available_kib is not None and now.unused_kib is not None:
        used = max(0.0, (now.available_kib - now.unused_kib) * 1024.0)
    return (
        cpu_percent,
        cpu_vcpu_percent,
        _kib(now.memory_kib),
        used,
        _kib(now.rss_kib),
        per_second("disk_read_bytes"),
        per_second("disk_write_bytes"),
        per_second("net_rx_bytes"),
        per_second("net_tx_bytes"),
    )


class Ring:
    """The last ``capacity`` points of :data:`FIELDS`, oldest overwritten first. Fixed memory."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._times = array("d", [0.0]) * capacity  # repetition allocates exactly; bytes() would over-allocate
        self._columns = [array("f", [0.0]) * capacity for _ in FIELDS]
        self._next = 0   # where the next point goes
        self.count = 0   # points held

    def append(self, at: float, values: tuple[float, ...]) -> None:
        i = self._next
        self._times[i] = at
        for column, value in zip(self._columns, values, strict=True):
            column[i] = value
        self._next = (i + 1) % self.capacity
        self.count = min(self.count + 1, self.capacity)

    def _order(self) -> range:
        start = (self._next - self.count) % self.capacity
        return range(start, start + self.count)

    @property
    def newest(self) -> float | None:
        return self._times[(self._next - 1) % self.capacity] if self.count else None

    def latest(self) -> tuple[float, tuple[float, ...]] | None:
        if not self.count:
            return None
        i = (self._next - 1) % self.capacity
        return self._times[i], tuple(column[i] for column in self._columns)

    def since(self, after: float) -> dict[str, list[float | None]]:
        """Columns ``t`` and every field, oldest first, of the points later than ``after``; NaN as None."""
        indexes = [i % self.capacity for i in self._order() if self._times[i % self.capacity] > after]
        series: dict[str, list[float | None]] = {"t": [self._times[i] for i in indexes]}
        for name, column in zip(FIELDS, self._columns, strict=True):
            series[name] = [None if math.isnan(v := column[i]) else round(v, 3) for i in indexes]
        return series

    @property
    def oldest(self) -> float | None:
        return self._times[self._order()[0]] if self.count else None


class _Average:
    """Sums one coarse step's fine points, field by field, ignoring NaN."""

    def __init__(self) -> None:
        self.step: float | None = None
        self.sums = [0.0] * len(FIELDS)
        self.counts = [0] * len(FIELDS)

    def add(self, values: tuple[float, ...]) -> None:
        for k, value in enumerate(values):
            if not math.isnan(value):
                self.sums[k] += value
                self.counts[k] += 1

    def values(self) -> tuple[float, ...]:
        return tuple(s / n if n else NAN for s, n in zip(self.sums, self.counts, strict=True))


class VmHistory:
    """One VM: its last reading, a fine ring (every sample) and a coarse ring (one average per step)."""

    def __init__(self, uuid: str, name: str, *, fine_points: int = FINE_POINTS,
                 coarse_points: int = COARSE_POINTS, coarse_step: float = COARSE_STEP) -> None:
        self.uuid = uuid
        self.name = name
        self.vcpus = 0
        self._ring_sizes = (fine_points, coarse_points)
        self.fine = Ring(fine_points)
        self.coarse = Ring(coarse_points)
        self.coarse_step = coarse_step
        self.running = False
        # Its host's rounds have failed or been missing since its last reading (libvirt down, the host
        # unavailable or hung): its figures are its last, not current ones.
        self.stale = False
        self.last_seen = 0.0  # wall time of the last reading
        self.host = ""  # the host whose round read it last (a migrated VM moves with its readings)
        self._known: Known = {}
        self._last_steady = -math.inf  # the steady time of the last reading recorded
        self._average = _Average()

    def record(self, reading: Reading, at: float, *, host: str = "", steady: float | None = None) -> None:
        """``reading``, read by ``host``'s round at wall time ``at`` and steady time ``steady`` (``at`` if
        not given)."""
        steady = at if steady is None else steady
        newest = self.fine.newest
        if newest is not None and at < newest:
            if steady <= self._last_steady:
                # A late reading, not a clock set back: one host's slow round came back after another host's
                # later one (a live move lists the VM on both). Taken as a clock step, it wiped the history.
                return
            self._start_series_afresh()  # the wall clock was set back
        self._last_steady = steady
        # A VM that was stopped, or read by another host than last time, starts its rates afresh.
        known = self._known if self.running and host == self.host else {}
        values = sample_values(known, reading, steady)
        self._known = known_counters(reading, steady, known)
        self.name, self.vcpus, self.running, self.last_seen = reading.name, reading.vcpus, True, at
        self.host, self.stale = host, False
        self.fine.append(at, values)
        step = math.floor(at / self.coarse_step) * self.coarse_step
        if self._average.step is not None and step != self._average.step:
            self.coarse.append(self._average.step + self.coarse_step, self._average.values())
            self._average = _Average()
        self._average.step = step
        self._average.add(values)

    def _start_series_afresh(self) -> None:
        fine_points, coarse_points = self._ring_sizes
        self.fine, self.coarse = Ring(fine_points), Ring(coarse_points)
        self._average = _Average()

    def stopped(self) -> None:
        self.running = False


class StatsHistory:
    """Every VM's history, keyed by UUID. :meth:`record` takes one host's round of readings (its running
    VMs); ``rounds`` counts those rounds, every host's."""

    def __init__(self, *, fine_points: int = FINE_POINTS, coarse_points: int = COARSE_POINTS,
                 coarse_step: float = COARSE_STEP, stopped_retention: float = STOPPED_RETENTION,
                 max_vms: int = MAX_VMS) -> None:
        self._ring_sizes = (fine_points, coarse_points, coarse_step)
        self.stopped_retention = stopped_retention
        self.max_vms = max_vms
        self.vms: dict[str, VmHistory] = {}
        self.full = False  # a VM went without history for want of room (said once in the log)
        self.rounds = 0
        self.last_round: float | None = None

    def record(self, readings: Iterable[Reading], at: float, *, host: str = "", steady: float | None = None) -> None:
        """One host's round: its running VMs, read at wall time ``at`` and steady time ``steady``. Only VMs
        last seen on ``host`` and missing from ``readings`` count as stopped (another host's VMs are that
        host's round's business)."""
        seen: set[str] = set()
        for reading in readings:
            seen.add(reading.uuid)
            history = self.vms.get(reading.uuid) or self._new_history(reading)
            if history is not None:
                history.record(reading, at, host=host, steady=steady)
        self._stop_missing(host, seen, at)
        self.rounds += 1
        self.last_round = at

    def _new_history(self, reading: Reading) -> VmHistory | None:
        """A history for a VM first seen, in place of the longest-stopped one when :attr:`max_vms` are kept;
        None when every one kept is running. A running VM is never dropped for a new one: with more running
        VMs than the limit, each round dropped some (those of equal age first seen) and took them back the
        next, so every VM's history was wiped in turn."""
        if len(self.vms) >= self.max_vms:
            stopped = [history for history in self.vms.values() if not history.running]
            if not stopped:
                if not self.full:
                    self.full = True
                    log.warning("resource history is kept for %d running VMs at most; VMs started later have "
                                "none", self.max_vms, extra={"event": "stats_history_full", "max_vms": self.max_vms})
                return None
            del self.vms[min(stopped, key=lambda history: history.last_seen).uuid]
        fine, coarse, step = self._ring_sizes
        history = self.vms[reading.uuid] = VmHistory(
            reading.uuid, reading.name, fine_points=fine, coarse_points=coarse, coarse_step=step)
        return history

    def _stop_missing(self, host: str, seen: set[str], at: float) -> None:
        for uuid, history in list(self.vms.items()):
            if uuid not in seen and history.host == host:
                history.stopped()
                if at - history.last_seen > self.stopped_retention:
                    del self.vms[uuid]

    def hosts(self) -> set[str]:
        """The hosts whose rounds read the VMs kept."""
        return {history.host for history in self.vms.values()}

    def host_unread(self, host: str) -> None:
        """``host``'s round failed or was not made: its VMs keep their history, their figures are stale
        until it reads them again. Not a round."""
        for history in self.vms.values():
            if history.host == host:
                history.stale = True

    def host_gone(self, host: str, at: float) -> None:
        """``host`` is no longer sampled (removed from the registry): its VMs count as stopped, and go after
        the retention like any stopped VM's. Not a round."""
        self._stop_missing(host, set(), at)

    def get(self, uuid: str) -> VmHistory | None:
        return self.vms.get(uuid)

    def running(self) -> list[VmHistory]:
        """The VMs running at their host's last round, their figures current (stale ones left out: their
        host's last figures were served as current, and /metrics alerts on absent or stuck series missed it)."""
        return [history for history in self.vms.values() if history.running and not history.stale]
