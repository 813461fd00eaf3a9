"""The resource sampler's cost with 50 running VMs: CPU (% of one core) and memory per VM.

``python -m bench.stats_sampler`` runs limen's :class:`~limen.stats_sampler.StatsSampler` as ``limen serve``
does (its loop on asyncio, each round's libvirt call in the connection's worker thread) against libvirt's
test driver with a node file of 50 running domains, for ``--seconds`` at each ``--intervals``, and measures
the process's CPU time (user + system) over the run. The test driver runs inside this process, so its
side of the call is counted too (against libvirtd it would be the daemon's).

The test driver reports only each domain's state; a second mode (``full records``) keeps the same call but
hands the sampler 50 records shaped like QEMU's (CPU, balloon, vCPU, two disks, one interface, with
growing counters), so the parsing and the rate arithmetic of real records are measured too.

Memory: the history of 50 VMs under tracemalloc, first round (everything is allocated then) and after
1,000 more rounds (it must not grow). Writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import libvirt

from limen.hypervisor.connection import LibvirtConnection
from limen.hypervisor.stats import read_host_cpu, read_running_vms, reading_of
from limen.stats_history import StatsHistory, bytes_per_vm
from limen.stats_sampler import Round, StatsSampler

VM_COUNT = 50


def node_xml(count: int) -> str:
    """A test-driver node with ``count`` running domains (the driver starts every domain a node file defines)."""
    domains = "".join(
        f"<domain type='test'><name>{escape(f'bench-vm-{i:02d}')}</name>"
        f"<uuid>00000000-0000-4000-8000-{i:012d}</uuid><memory>131072</memory><vcpu>2</vcpu>"
        "<os><type>hvm</type></os></domain>"
        for i in range(count)
    )
    return f"<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads></cpu>{domains}</node>"


def qemu_shaped_record(i: int, tick: int) -> dict[str, Any]:
    """A bulk-stats record with the keys QEMU's driver gives (as read from a real VM), counters growing."""
    grow = tick * (i + 1)
    record: dict[str, Any] = {
        "state.state": 1, "state.reason": 1, "cpu.time": 10**9 * grow, "cpu.user": 8 * 10**8 * grow,
        "cpu.system": 2 * 10**8 * grow, "balloon.current": 131072, "balloon.maximum": 131072,
        "balloon.rss": 160000 + i, "balloon.available": 120000, "balloon.unused": 60000,
        "vcpu.current": 2, "vcpu.maximum": 2, "net.count": 1, "net.0.name": "vnet0",
        "net.0.rx.bytes": 1500 * grow, "net.0.rx.pkts": grow, "net.0.tx.bytes": 900 * grow, "net.0.tx.pkts": grow,
        "block.count": 2,
    }
    for v in range(2):
        record[f"vcpu.{v}.state"] = 1
        record[f"vcpu.{v}.time"] = 5 * 10**8 * grow
    for b, name in enumerate(("vda", "hdc")):
        record.update({
            f"block.{b}.name": name, f"block.{b}.path": f"/var/lib/limen/pool/vm{i}-{name}.qcow2",
            f"block.{b}.rd.reqs": grow, f"block.{b}.rd.bytes": 4096 * grow, f"block.{b}.rd.times": grow,
            f"block.{b}.wr.reqs": grow, f"block.{b}.wr.bytes": 8192 * grow, f"block.{b}.wr.times": grow,
            f"block.{b}.fl.reqs": 0, f"block.{b}.fl.times": 0, f"block.{b}.allocation": 5439627,
            f"block.{b}.capacity": 2**30, f"block.{b}.physical": 5267456,
        })
    return record


def full_records_reader() -> Callable[[libvirt.virConnect], Round]:
    """A round's read: the test driver's bulk call (its result dropped) and 50 QEMU-shaped records parsed."""
    ticks = [0]

    def read(conn: libvirt.virConnect) -> Round:
        read_running_vms(conn)  # the real call, so its cost stays in
        ticks[0] += 1
        readings = [reading_of(f"00000000-0000-4000-8000-{i:012d}", f"bench-vm-{i:02d}",
                               qemu_shaped_record(i, ticks[0])) for i in range(VM_COUNT)]
        return Round(readings, read_host_cpu(conn))

    return read


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_sampler(uri: str, interval: float, seconds: float, full: bool) -> dict[str, Any]:
    connection = LibvirtConnection(uri, 10.0)
    kwargs: dict[str, Any] = {"read": full_records_reader()} if full else {}
    sampler = StatsSampler(connection, interval, **kwargs)
    try:
        await sampler.sample_once()  # connect first: opening the connection is not the steady cost
        assert len(sampler.history.running()) == VM_COUNT, len(sampler.history.running())
        rounds_before = sampler.history.rounds
        began_cpu, began = cpu_seconds(), time.monotonic()
        sampler.start()
        await asyncio.sleep(seconds)
        await sampler.stop()
        used, elapsed = cpu_seconds() - began_cpu, time.monotonic() - began
        rounds = sampler.history.rounds - rounds_before
    finally:
        await connection.close()
    return {
        "mode": "full records" if full else "test driver", "interval_s": interval, "seconds": round(elapsed, 1),
        "rounds": rounds, "vms": VM_COUNT, "cpu_s": round(used, 4),
        "cpu_percent_of_one_core": round(100 * used / elapsed, 3),
        "cpu_ms_per_round": round(1000 * used / max(rounds, 1), 3),
        "failures": sampler.failures,
    }


def measure_memory() -> dict[str, Any]:
    history = StatsHistory()
    read = full_records_reader()
    conn = _NoConnection()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        history.record(read(conn).readings, at=0.0)
        first = tracemalloc.get_traced_memory()[0] - base
        for tick in range(1, 1001):
            history.record(read(conn).readings, at=tick * 5.0)
        after = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return {
        "vms": VM_COUNT, "ring_bytes_per_vm": bytes_per_vm(), "traced_bytes_per_vm_first_round": first // VM_COUNT,
        "traced_bytes_per_vm_after_1000_rounds": after // VM_COUNT, "total_kib_50_vms": round(after / 1024),
    }


class _NoConnection:
    """Stands in for a connection in the memory run: the reader's libvirt calls find nothing."""

    def getAllDomainStats(self, *_args: Any) -> list[Any]:
        return []

    def getCPUStats(self, *_args: Any) -> dict[str, int]:
        return {"idle": 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per interval and mode")
    parser.add_argument("--intervals", type=float, nargs="+", default=[5.0, 1.0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        node = Path(tmp) / "node.xml"
        node.write_text(node_xml(VM_COUNT))
        uri = f"test://{node}"
        runs = [asyncio.run(run_sampler(uri, interval, args.seconds, full))
                for full in (False, True) for interval in args.intervals]
    memory = measure_memory()
    report = {"load_average": os.getloadavg(), "cpus": os.cpu_count(), "python": platform.python_version(),
              "libvirt": libvirt.getVersion(), "runs": runs, "memory": memory}
    for run in runs:
        print(f"{run['mode']:>12}  every {run['interval_s']:g} s for {run['seconds']} s: {run['rounds']} rounds, "
              f"{run['cpu_percent_of_one_core']} % of one core ({run['cpu_ms_per_round']} ms a round)")
    print(f"memory: {memory['traced_bytes_per_vm_after_1000_rounds']} bytes per VM "
          f"(rings {memory['ring_bytes_per_vm']}), {memory['total_kib_50_vms']} KiB for {VM_COUNT} VMs")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
