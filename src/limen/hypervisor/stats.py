"""Reading resource figures from libvirt: every running VM's counters in one bulk call
(``virConnectGetAllDomainStats``), and the host's CPU times, memory and storage pool space.

Functions here run in a worker thread (through :meth:`LibvirtConnection.call`); turning counters into
rates is :mod:`limen.stats_history`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import libvirt

from limen.stats_history import Reading

STATS_FLAGS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)
# Running VMs only; NOWAIT: a VM busy with a job (a migration, a hung QEMU monitor) reports what libvirt has
# without waiting for it, so one stuck VM does not hold every VM's figures.
LIST_FLAGS = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | getattr(
    libvirt, "VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT", 0)


def _int(record: dict[str, Any], key: str) -> int | None:
    value = record.get(key)
    return int(value) if isinstance(value, int | float) else None


def _total(record: dict[str, Any], prefix: str, key: str) -> int | None:
    """The sum of ``<prefix>.<i>.<key>`` over ``<prefix>.count`` devices; None when none reports it."""
    count = _int(record, f"{prefix}.count") or 0
    values = [v for i in range(count) if (v := _int(record, f"{prefix}.{i}.{key}")) is not None]
    return sum(values) if values else None


def reading_of(uuid: str, name: str, record: dict[str, Any]) -> Reading:
    """One VM's counters from its bulk-stats record (the dict libvirt returns for it)."""
    vcpus = _int(record, "vcpu.current") or 0
    return Reading(
        uuid=uuid,
        name=name,
        vcpus=vcpus,
        cpu_time_ns=_int(record, "cpu.time"),
        memory_kib=_int(record, "balloon.current"),
        available_kib=_int(record, "balloon.available"),
        unused_kib=_int(record, "balloon.unused"),
        rss_kib=_int(record, "balloon.rss"),
        disk_read_bytes=_total(record, "block", "rd.bytes"),
        disk_write_bytes=_total(record, "block", "wr.bytes"),
        net_rx_bytes=_total(record, "net", "rx.bytes"),
        net_tx_bytes=_total(record, "net", "tx.bytes"),
    )


def read_running_vms(conn: libvirt.virConnect) -> list[Reading]:
    """Every running VM's counters, in one libvirt call."""
    readings = []
    for dom, record in conn.getAllDomainStats(STATS_FLAGS, LIST_FLAGS):
        try:
            readings.append(reading_of(dom.UUIDString(), dom.name(), record))
        except libvirt.libvirtError:
            continue  # undefined between the call and now (UUIDString/name are local, but be safe)
    return readings


@dataclass(frozen=True, slots=True)
class HostCpuTimes:
    """Cumulative host CPU nanoseconds, all CPUs together (libvirt's getCPUStats(-1))."""

    busy_ns: int
    total_ns: int


def read_host_cpu(conn: libvirt.virConnect) -> HostCpuTimes | None:
    try:
        times = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS, 0)
    except libvirt.libvirtError:
        return None
    idle = int(times.get("idle", 0)) + int(times.get("iowait", 0))
    total = sum(int(value) for value in times.values())
    return HostCpuTimes(busy_ns=total - idle, total_ns=total)


def host_cpu_percent(before: HostCpuTimes | None, now: HostCpuTimes | None) -> float | None:
    """Busy share of all host CPUs between two readings, 0-100; None without two usable readings."""
    if before is None or now is None or now.total_ns <= before.total_ns or now.busy_ns < before.busy_ns:
        return None
    return round(100.0 * (now.busy_ns - before.busy_ns) / (now.total_ns - before.total_ns), 2)


@dataclass(frozen=True, slots=True)
class HostFigures:
    cpus: int
    memory_total_bytes: int
    memory_available_bytes: int | None  # free + buffers + cached; None where libvirt cannot say
    pool_name: str
    pool_capacity_bytes: int | None     # None: the pool is missing or not running
    pool_allocation_bytes: int | None
    pool_available_bytes: int | None


def read_host(conn: libvirt.virConnect, pool_name: str) -> HostFigures:
    info = conn.getInfo()
    cpus, memory_total = int(info[2]), int(info[1]) * 2**20
    available: int | None = None
    try:
        memory = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
        memory_total = int(memory.get("total", memory_total // 1024)) * 1024
        available = sum(int(memory.get(key, 0)) for key in ("free", "buffers", "cached")) * 1024
    except libvirt.libvirtError:
        pass  # the test driver, for one, does not report it
    capacity = allocation = pool_available = None
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        if pool.isActive():
            _state, capacity, allocation, pool_available = (int(v) for v in pool.info())
    except libvirt.libvirtError:
        pass
    return HostFigures(cpus, memory_total, available, pool_name, capacity, allocation, pool_available)
