"""The resource history with numbers alone: rates and percentages from counters, the ring buffers, the
one-minute averages, and how long stopped VMs are kept (times given, no clock)."""

from __future__ import annotations

import math
import sys
import tracemalloc

from limen.hypervisor.stats import HostCpuTimes, host_cpu_percent, reading_of
from limen.stats_history import (
    COARSE_POINTS,
    FIELDS,
    FINE_POINTS,
    Reading,
    Ring,
    StatsHistory,
    bytes_per_vm,
    known_counters,
    rate,
    sample_values,
)

GIB_KIB = 2**20


def reading(cpu_s: float, *, vcpus: int = 2, rd: int = 0, wr: int = 0, rx: int = 0, tx: int = 0,
            uuid: str = "u-1", name: str = "vm") -> Reading:
    return Reading(uuid, name, vcpus, int(cpu_s * 1e9), memory_kib=GIB_KIB, available_kib=GIB_KIB,
                   unused_kib=GIB_KIB // 4, rss_kib=GIB_KIB // 2, disk_read_bytes=rd, disk_write_bytes=wr,
                   net_rx_bytes=rx, net_tx_bytes=tx)


def figures(values: tuple[float, ...]) -> dict[str, float]:
    return dict(zip(FIELDS, values, strict=True))


def test_rate_needs_two_readings_time_between_and_no_reset() -> None:
    assert rate(100, 600, 5.0) == 100.0
    assert math.isnan(rate(None, 600, 5.0))
    assert math.isnan(rate(100, None, 5.0))
    assert math.isnan(rate(100, 600, 0.0))
    assert math.isnan(rate(600, 100, 5.0))  # the VM restarted: its counters began again


def test_cpu_percent_of_one_core_and_of_the_vcpus() -> None:
    # 7.5 s of CPU in 5 s: one and a half cores busy; of 2 vCPUs, 75 %.
    known = known_counters(reading(10.0), 100.0)
    got = figures(sample_values(known, reading(17.5, rd=5000, wr=10_000, rx=2500, tx=50), 105.0))
    assert got["cpu_percent"] == 150.0
    assert got["cpu_vcpu_percent"] == 75.0
    assert (got["disk_read_bps"], got["disk_write_bps"], got["net_rx_bps"], got["net_tx_bps"]) == (
        1000.0, 2000.0, 500.0, 10.0)
    assert got["memory_bytes"] == 2**30
    assert got["memory_used_bytes"] == 3 * 2**28  # available - unused
    assert got["rss_bytes"] == 2**29


def test_first_reading_has_figures_but_no_rates() -> None:
    got = figures(sample_values({}, reading(10.0), 100.0))
    assert math.isnan(got["cpu_percent"]) and math.isnan(got["disk_read_bps"])
    assert got["memory_bytes"] == 2**30


def test_missing_guest_figures_stay_unknown() -> None:
    bare = Reading("u", "vm", 0, None)
    got = figures(sample_values(known_counters(bare, 100.0), bare, 105.0))
    assert all(math.isnan(value) for value in got.values())


def test_a_rate_after_a_reading_without_the_counter_spans_the_gap() -> None:
    history = StatsHistory()
    history.record([reading(0.0, rd=0)], at=100.0)
    busy = Reading("u-1", "vm", 2, 1_000_000_000)  # a VM busy with a job: no disk figures this round
    history.record([busy], at=105.0)
    history.record([reading(2.0, rd=10_000)], at=110.0)
    vm = history.get("u-1")
    assert vm is not None
    series = vm.fine.since(0)
    assert series["disk_read_bps"] == [None, None, 1000.0]  # 10,000 bytes over the 10 s since its last reading
    assert series["cpu_percent"] == [None, 20.0, 20.0]


def test_ring_keeps_the_last_points_in_order() -> None:
    ring = Ring(3)
    for t in range(1, 6):
        ring.append(float(t), tuple(float(t) for _ in FIELDS))
    series = ring.since(0)
    assert series["t"] == [3.0, 4.0, 5.0]
    assert series["cpu_percent"] == [3.0, 4.0, 5.0]
    assert ring.since(4.0)["t"] == [5.0]
    assert ring.oldest == 3.0
    assert ring.latest() == (5.0, tuple(5.0 for _ in FIELDS))


def test_history_rates_between_samples_and_afresh_after_a_stop() -> None:
    history = StatsHistory()
    history.record([reading(0.0)], at=1000.0)
    history.record([reading(2.5)], at=1005.0)
    vm = history.get("u-1")
    assert vm is not None and vm.running and vm.vcpus == 2
    assert vm.fine.since(0)["cpu_percent"] == [None, 50.0]
    history.record([], at=1010.0)  # stopped
    assert not vm.running and history.running() == []
    history.record([reading(0.1)], at=1015.0)  # started again: counters began anew
    assert vm.fine.since(1010.0)["cpu_percent"] == [None]
    history.record([reading(0.6)], at=1020.0)
    assert vm.fine.since(1015.0)["cpu_percent"] == [10.0]


def test_coarse_ring_averages_each_minute() -> None:
    history = StatsHistory(coarse_step=60.0)
    cpu = 0.0
    for step in range(25):  # 5 s samples from t=0 to t=120; 10 % then 30 %
        cpu += 0.5 if step <= 12 else 1.5
        history.record([reading(cpu)], at=step * 5.0)
    vm = history.get("u-1")
    assert vm is not None
    coarse = vm.coarse.since(0)
    assert coarse["t"] == [60.0, 120.0]
    assert coarse["cpu_percent"][0] == 10.0  # the first point had no rate and is not averaged in
    assert coarse["cpu_percent"][1] == round((10.0 + 11 * 30.0) / 12, 3)


def test_stopped_vms_are_dropped_after_the_retention_and_the_count_is_capped() -> None:
    history = StatsHistory(stopped_retention=60.0, max_vms=3, fine_points=4, coarse_points=4)
    history.record([reading(0, uuid=f"u-{i}") for i in range(3)], at=0.0)
    history.record([reading(1, uuid="u-0")], at=30.0)
    assert set(history.vms) == {"u-0", "u-1", "u-2"}  # stopped, still within the retention
    history.record([reading(2, uuid="u-0")], at=61.0)
    assert set(history.vms) == {"u-0"}
    history.record([reading(0, uuid=f"n-{i}") for i in range(5)], at=62.0)
    assert len(history.vms) == 3  # never more than max_vms


def test_memory_per_vm_is_fixed_and_stated() -> None:
    assert bytes_per_vm() == (FINE_POINTS + COARSE_POINTS) * (8 + 4 * len(FIELDS)) == 95_040
    history = StatsHistory()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20):
            history.record([reading(float(i), uuid=f"u-{k}") for k in range(10)], at=i * 5.0)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_vm = grown / 10
    assert bytes_per_vm() <= per_vm < bytes_per_vm() + 8192, per_vm
    assert sys.getsizeof(history.get("u-0")) < 1024


def test_reading_of_a_bulk_stats_record_sums_devices() -> None:
    record = {
        "state.state": 1, "cpu.time": 5_620_000_000, "vcpu.current": 2, "balloon.current": 65536,
        "balloon.rss": 168396, "block.count": 2, "block.0.rd.bytes": 100, "block.0.wr.bytes": 7,
        "block.1.rd.bytes": 50, "net.count": 1, "net.0.rx.bytes": 9, "net.0.tx.bytes": 4,
    }
    got = reading_of("u", "vm", record)
    assert (got.cpu_time_ns, got.vcpus, got.memory_kib, got.rss_kib) == (5_620_000_000, 2, 65536, 168396)
    assert (got.disk_read_bytes, got.disk_write_bytes, got.net_rx_bytes, got.net_tx_bytes) == (150, 7, 9, 4)
    assert got.available_kib is None
    empty = reading_of("u", "vm", {"state.state": 1})
    assert (empty.cpu_time_ns, empty.disk_read_bytes, empty.net_rx_bytes) == (None, None, None)


def test_host_cpu_percent() -> None:
    assert host_cpu_percent(HostCpuTimes(100, 1000), HostCpuTimes(400, 2000)) == 30.0
    assert host_cpu_percent(None, HostCpuTimes(400, 2000)) is None
    assert host_cpu_percent(HostCpuTimes(100, 1000), HostCpuTimes(100, 1000)) is None


def test_one_hosts_round_stops_only_that_hosts_vms() -> None:
    history = StatsHistory()
    history.record([reading(0.0, uuid="a-1", name="on-a")], at=1000.0, host="a")
    history.record([reading(0.0, uuid="b-1", name="on-b")], at=1000.5, host="b")
    history.record([reading(1.0, uuid="a-1", name="on-a")], at=1005.0, host="a")  # b's VM is not a's business
    assert sorted(vm.name for vm in history.running()) == ["on-a", "on-b"]
    history.record([], at=1010.5, host="b")
    assert [vm.name for vm in history.running()] == ["on-a"]
    # Migrated from a to b: b's round takes it over, and a's next round no longer stops it.
    history.record([reading(2.0, uuid="a-1", name="on-a")], at=1011.0, host="b")
    history.record([], at=1012.0, host="a")
    vm = history.get("a-1")
    assert vm is not None and vm.running and vm.host == "b"
    assert history.rounds == 6


def test_a_vm_read_by_two_hosts_at_once_gets_no_rate_across_them() -> None:
    """A live move: the VM runs on the source while its incoming copy is listed on the target, and the
    two hosts' rounds alternate. Each host's counters against the other's gave the source's lifetime CPU
    time over one interval (36,000 %)."""
    history = StatsHistory()
    source_cpu, target_cpu = 5000.0, 0.0
    for round_ in range(6):
        at = 1000.0 + round_ * 5.0
        source_cpu += 2.5  # 50 % of one core on the source
        history.record([reading(source_cpu)], at=at, host="source")
        history.record([reading(target_cpu)], at=at + 0.01, host="target")
    vm = history.get("u-1")
    assert vm is not None
    assert all(value is None or value <= 100.0 * vm.vcpus for value in vm.fine.since(0)["cpu_percent"])
    # Once only the target reads it (the move is over), its rates come back.
    history.record([reading(target_cpu + 1.0)], at=1040.0, host="target")
    history.record([reading(target_cpu + 2.0)], at=1045.0, host="target")
    assert vm.fine.since(1040.0)["cpu_percent"] == [20.0]


def test_rates_divide_by_the_steady_clock_and_a_clock_set_back_starts_the_series_afresh() -> None:
    history = StatsHistory()
    # The wall clock jumps forward 100 s between two reads 5 steady seconds apart: still 50 %.
    history.record([reading(0.0)], at=1000.0, steady=10.0)
    history.record([reading(2.5)], at=1105.0, steady=15.0)
    vm = history.get("u-1")
    assert vm is not None and vm.fine.since(0)["cpu_percent"] == [None, 50.0]
    # Then set back 300 s: the points stay in time order (the page asks for those after its newest).
    history.record([reading(5.0)], at=805.0, steady=20.0)
    history.record([reading(7.5)], at=810.0, steady=25.0)
    series = vm.fine.since(0)
    assert series["t"] == [805.0, 810.0]
    assert series["cpu_percent"] == [50.0, 50.0]  # the rates carry on: the steady clock did not step
    assert vm.coarse.since(0)["t"] == sorted(vm.coarse.since(0)["t"])


def test_running_vms_past_the_limit_keep_theirs_and_the_later_ones_get_none() -> None:
    """With more running VMs than the limit, each round dropped some running VMs (those first seen
    earliest of an equal age) to take new ones and took them back the next: every history was wiped in
    turn. The longest-stopped still make room."""
    history = StatsHistory(max_vms=4, fine_points=16, coarse_points=4)
    uuids = [f"u-{i}" for i in range(5)]
    for round_ in range(10):
        history.record([reading(round_ * 0.5, uuid=uuid) for uuid in uuids], at=1000.0 + round_ * 5.0)
    kept = sorted(history.vms)
    assert kept == uuids[:4] and history.full
    assert all(history.vms[uuid].fine.count == 10 for uuid in kept)
    # u-0 stops (missing from a round, after which its room is the longest-stopped's): u-4 takes it.
    for at in (1050.0, 1055.0):
        history.record([reading(5.0, uuid=uuid) for uuid in uuids[1:]], at=at)
    assert sorted(history.vms) == uuids[1:]


def test_a_late_reading_from_a_slower_hosts_round_is_dropped_not_taken_for_a_clock_set_back() -> None:
    """During a live move both hosts read the VM; the source's slow round came back after the target's next
    one, with an earlier time: taken for a clock set back, it wiped an hour of history."""
    history = StatsHistory()
    for i in range(600):
        history.record([reading(i * 0.25)], at=1000.0 + i * 5, host="a", steady=1000.0 + i * 5)
    history.record([reading(0.0)], at=4000.05, host="b", steady=4000.05)
    history.record([reading(150.0)], at=3999.5, host="a", steady=3999.5)  # read before b's, answered after
    vm = history.get("u-1")
    assert vm is not None and vm.fine.count == 601 and vm.host == "b"
