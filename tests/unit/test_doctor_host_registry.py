"""``limen doctor`` reads the host registry from the database: within LIMEN_DATABASE_TIMEOUT, as the database
check asks it, not within libvirt's bound (a registry that answered slower than libvirt's bound was called
unreadable, and ``limen doctor VM`` then looked for the VM on the default host only)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from limen import doctor
from limen.hypervisor.hosts import HostConfig, HostPool
from limen.settings import Settings

# Slower than libvirt's bound below, well within the database's.
LIBVIRT_TIMEOUT = 0.01
READ_SECONDS = 0.2


def slow_registry(hosts: list[HostConfig]) -> Callable[[str], list[HostConfig]]:
    def read(_db_url: str) -> list[HostConfig]:
        time.sleep(READ_SECONDS)
        return hosts

    return read


@pytest.mark.parametrize("vm_id", [None, "s41x-some-vm"], ids=["host checks", "VM checks"])
async def test_the_doctor_reads_the_registry_within_the_database_timeout(
    vm_id: str | None, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = HostConfig(name="host-2", uri="test:///default")
    synced: list[list[HostConfig]] = []

    async def record_sync(_pool: HostPool, hosts: list[HostConfig]) -> None:
        synced.append(hosts)

    async def no_checks(*_args: Any, **_kwargs: Any) -> list[doctor.CheckResult]:  # the registry read only
        return []

    monkeypatch.setattr(doctor, "read_registered_hosts", slow_registry([host]))
    monkeypatch.setattr(doctor, "sync_pool", record_sync)
    monkeypatch.setattr(doctor, "run_checks", no_checks)
    settings = make_settings(libvirt_timeout=LIBVIRT_TIMEOUT, database_timeout=60)
    await doctor.diagnose(settings, vm_id, server_url="http://127.0.0.1:1", timeout=60)
    assert synced == [[host]]  # read, not given up on after libvirt's bound


def test_a_registry_read_that_hangs_leaves_nothing_for_the_closing_loop_to_wait_for(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``limen doctor VM`` on a hung PostgreSQL gave up on the registry, then never ended: ``asyncio.run``
    joined the executor's thread that was still connecting."""
    hung = threading.Event()

    def no_answer(_db_url: str) -> list[HostConfig]:
        hung.wait()
        return []

    async def no_checks(*_args: Any, **_kwargs: Any) -> list[doctor.CheckResult]:
        return []

    monkeypatch.setattr(doctor, "read_registered_hosts", no_answer)
    monkeypatch.setattr(doctor, "run_checks", no_checks)
    settings = make_settings(database_timeout=0.1)
    ended: list[bool] = []

    def run() -> None:  # as `limen doctor VM` runs: one asyncio.run, closed at the end
        asyncio.run(doctor.diagnose(settings, "s41x-some-vm", server_url="http://127.0.0.1:1", timeout=60))
        ended.append(True)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(30)  # a bound on the test itself, not a measurement
    try:
        assert ended == [True], "closing the loop waited for the registry read that hangs"
    finally:
        hung.set()
        runner.join(10)
