"""The sampler's loop over libvirt's test driver: it samples every interval until stopped, a failed read
loses only its round (the history stays), and an interval of 0 starts nothing."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import libvirt

from limen.hypervisor.connection import LibvirtConnection
from limen.stats_history import Reading
from limen.stats_sampler import Round, StatsSampler, read_round

TEST_DRIVER = "test:///default"


async def test_samples_every_interval_until_stopped() -> None:
    connection = LibvirtConnection(TEST_DRIVER, 5.0)
    clock = itertools.count(1000.0, 0.05)
    sampler = StatsSampler(connection, 0.05, clock=lambda: next(clock))
    try:
        sampler.start()
        for _ in range(100):
            if sampler.history.rounds >= 3:
                break
            await asyncio.sleep(0.02)
        await sampler.stop()
        rounds = sampler.history.rounds
        assert rounds >= 3
        # test:///default is one driver per process: other tests may have left running domains in it.
        assert sorted(vm.name for vm in sampler.history.running()) == _running_domains()
        await asyncio.sleep(0.15)
        assert sampler.history.rounds == rounds  # stopped means stopped
    finally:
        await connection.close()


def _running_domains() -> list[str]:
    conn = libvirt.open(TEST_DRIVER)
    try:
        return sorted(domain.name() for domain in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
    finally:
        conn.close()


async def test_a_failed_read_loses_only_its_round() -> None:
    connection = LibvirtConnection(TEST_DRIVER, 5.0)
    failing = [False]

    def read(conn: libvirt.virConnect) -> Round:
        if failing[0]:
            raise libvirt.libvirtError("libvirtd went away")
        real = read_round(conn)
        return Round([Reading(r.uuid, r.name, 1, 10**9) for r in real.readings], real.host_cpu)

    sampler = StatsSampler(connection, 5.0, read=read)
    try:
        await sampler.sample_once()
        failing[0] = True
        await sampler.sample_once()
        assert sampler.failures == 1
        # The VMs keep their history; their figures are stale until the next read (not served as current).
        assert sampler.history.rounds == 1 and len(sampler.history.vms) == len(_running_domains())
        assert sampler.history.running() == []
        failing[0] = False
        await sampler.sample_once()
        assert sampler.history.rounds == 2 and len(sampler.history.running()) == len(_running_domains())
    finally:
        await connection.close()


async def test_interval_zero_starts_nothing() -> None:
    connection = LibvirtConnection(TEST_DRIVER, 5.0)
    sampler = StatsSampler(connection, 0)
    sampler.start()
    assert not sampler.enabled
    await asyncio.sleep(0.05)
    assert sampler.history.rounds == 0
    await sampler.stop()
    await connection.close()


class _CountingConnection:
    """A libvirt connection that counts the bulk-stats calls and records the thread they run in."""

    def __init__(self, conn: libvirt.virConnect) -> None:
        self._conn = conn
        self.bulk_calls: list[int] = []

    def getAllDomainStats(self, *args: object) -> object:
        self.bulk_calls.append(threading.get_ident())
        time.sleep(0.2)  # a slow libvirtd: the event loop must not wait for it
        return self._conn.getAllDomainStats(*args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


async def test_a_round_is_one_bulk_call_made_off_the_event_loop() -> None:
    connection = LibvirtConnection(TEST_DRIVER, 5.0)
    counting: list[_CountingConnection] = []

    def read(conn: libvirt.virConnect) -> Round:
        counting.append(_CountingConnection(conn))
        return read_round(counting[-1])  # type: ignore[arg-type]

    sampler = StatsSampler(connection, 5.0, read=read)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    try:
        await sampler.sample_once()
    finally:
        ticker.cancel()
        await connection.close()
    assert len(counting) == 1 and len(counting[0].bulk_calls) == 1  # every VM in one call
    assert counting[0].bulk_calls[0] != threading.get_ident()  # in the connection's worker thread
    assert ticks >= 5, ticks  # the loop ran on while libvirt answered (≈ 20 ticks in 0.2 s)
    assert sampler.history.rounds == 1


async def test_a_rate_counts_the_time_between_reads_as_libvirt_made_them() -> None:
    """A VM at a steady 50 % of one core, and one read that its host took 2.6 s to answer, its counters
    taken halfway through. Timed when the answer came back, the rates around it read 14 % and 376 %."""
    connection = LibvirtConnection(TEST_DRIVER, 5.0)
    steady = [100.0]

    def read(conn: libvirt.virConnect) -> Round:
        slow = 1.3 if len(cpu) == 2 else 0.0
        steady[0] += slow
        cpu.append(Reading("u-1", "vm", 1, int(steady[0] * 0.5e9)))
        steady[0] += slow
        return Round([cpu[-1]], None)

    cpu: list[Reading] = []
    sampler = StatsSampler(connection, 1.0, read=read, clock=lambda: steady[0], steady_clock=lambda: steady[0])
    try:
        for _ in range(5):
            await sampler.sample_once()
            steady[0] += 1.0  # the interval
    finally:
        await connection.close()
    vm = sampler.history.get("u-1")
    assert vm is not None
    assert vm.fine.since(0)["cpu_percent"] == [None, 50.0, 50.0, 50.0, 50.0]
