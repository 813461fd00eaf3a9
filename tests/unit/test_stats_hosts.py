"""The sampler over several hosts (libvirt's test driver, a node file each): every available host's VMs
are read, each host on its own, so a host whose read hangs holds neither the other hosts' rounds nor a
second worker of its own; a host marked unavailable is not asked (its VMs keep their figures); a removed
host's VMs stop counting as running."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import libvirt
import pytest

from limen.hypervisor.hosts import DEFAULT_HOST, HostConfig, HostPool
from limen.stats_sampler import Round, StatsSampler, read_round
from tests.support.console import FakeDomain, driver_uri


@pytest.fixture
def pool(tmp_path: Path) -> HostPool:
    hosts = HostPool(driver_uri(tmp_path, [FakeDomain("on-local", None)]), 5.0, lambda conn, ident: False)
    hosts.add(HostConfig("second", driver_uri(tmp_path, [FakeDomain("on-second", None)])))
    return hosts


def running_names(sampler: StatsSampler) -> dict[str, str]:
    return {vm.name: vm.host for vm in sampler.history.running()}


async def test_every_available_host_is_sampled(pool: HostPool) -> None:
    sampler = StatsSampler(pool, 5.0)
    try:
        await sampler.sample_once()
        assert running_names(sampler) == {"on-local": DEFAULT_HOST, "on-second": "second"}
        assert set(sampler.host_cpu_percents) == {DEFAULT_HOST, "second"}
        # Unavailable (the prober's verdict): not asked, and its VMs keep their history, their figures stale
        # (not among the running VMs' current ones) until it is read again.
        pool.get("second").available = False
        before = sampler.history.rounds
        await sampler.sample_once()
        assert sampler.history.rounds == before + 1
        assert running_names(sampler) == {"on-local": DEFAULT_HOST}
        on_second = next(vm for vm in sampler.history.vms.values() if vm.name == "on-second")
        assert on_second.running and on_second.stale and on_second.fine.count == 1
        pool.get("second").available = True
        await sampler.sample_once()
        assert running_names(sampler) == {"on-local": DEFAULT_HOST, "on-second": "second"}
        assert on_second.fine.count == 2
        # Removed from the registry: its VMs stop counting as running.
        await pool.discard("second")
        await sampler.sample_once()
        assert running_names(sampler) == {"on-local": DEFAULT_HOST}
    finally:
        await pool.close()


async def test_a_hung_host_holds_neither_the_others_nor_a_second_worker(pool: HostPool) -> None:
    release = threading.Event()
    second_reads = []
    second_uri = pool.get("second").config.uri

    def read(conn: libvirt.virConnect) -> Round:
        if conn.getURI() == second_uri:
            second_reads.append(1)
            release.wait(60)  # the hung host: its read does not come back until released
        return read_round(conn)

    sampler = StatsSampler(pool, 0.02, read=read)
    try:
        sampler.start()
        # Generous waits: a loaded machine runs the sampler's thread late, and nothing here is a timing.
        for _ in range(1000):
            if sampler.history.rounds >= 5:
                break
            await asyncio.sleep(0.02)
        assert sampler.history.rounds >= 5, "the local host was not sampled on while the second hung"
        assert running_names(sampler) == {"on-local": DEFAULT_HOST}
        # The local host's own read may be under way at this instant too (a round every 0.02 s).
        assert "second" in sampler.in_flight and second_reads == [1]
        release.set()
        for _ in range(1000):
            if "on-second" in running_names(sampler):
                break
            await asyncio.sleep(0.02)
        assert running_names(sampler) == {"on-local": DEFAULT_HOST, "on-second": "second"}
    finally:
        release.set()
        await sampler.stop()
        await pool.close()


async def test_a_host_that_hangs_after_answering_has_its_vms_figures_stale_until_it_answers(pool: HostPool) -> None:
    """Its VMs' last figures were served as current for as long as it hung: in /metrics (absent-series
    alerts never fired) and in the VM list's figures."""
    release = threading.Event()
    second_uri = pool.get("second").config.uri
    second_reads: list[int] = []

    def read(conn: libvirt.virConnect) -> Round:
        if conn.getURI() == second_uri:
            second_reads.append(1)
            if len(second_reads) > 1:
                release.wait(60)
        return read_round(conn)

    sampler = StatsSampler(pool, 5.0, read=read)
    try:
        await sampler.sample_once()
        assert running_names(sampler) == {"on-local": DEFAULT_HOST, "on-second": "second"}
        reads = {task.get_name(): task for task in sampler._launch()}  # the second host's read now hangs
        await reads[f"limen-stats-{DEFAULT_HOST}"]
        await sampler.sample_once()  # one tick late: a slow host, its figures still current
        assert "on-second" in running_names(sampler)
        await sampler.sample_once()  # two: stale
        assert running_names(sampler) == {"on-local": DEFAULT_HOST}
        release.set()
        await asyncio.wait_for(reads["limen-stats-second"], 10)
        assert running_names(sampler) == {"on-local": DEFAULT_HOST, "on-second": "second"}
    finally:
        release.set()
        await sampler.stop()
        await pool.close()
