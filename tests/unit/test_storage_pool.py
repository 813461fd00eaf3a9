"""The storage pool limen makes on a host that has none yet (:func:`limen.hypervisor.storage.ensure_pool`), on
libvirt's test driver."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import libvirt

from limen.hypervisor import storage
from tests.conftest import TEST_DRIVER_URI


def test_callers_at_once_on_a_host_without_the_pool_all_get_it(tmp_path: Path) -> None:
    """The first moves into a host without limen's pool each looked it up, found none, and defined it: 8 of 9
    moves at once failed ("storage pool is already active", "already exists with uuid"). Without the turns,
    about half of these rounds had a failure."""
    conn = libvirt.open(TEST_DRIVER_URI)
    made: list[str] = []
    try:
        for _ in range(10):
            name = f"at-once-{uuid.uuid4().hex[:8]}"
            made.append(name)
            start = threading.Barrier(9)
            failures: list[str] = []
            pools: list[str] = []

            def ensure(pool_name: str = name, barrier: threading.Barrier = start,
                       failed: list[str] = failures, got: list[str] = pools) -> None:
                barrier.wait()
                try:
                    got.append(storage.ensure_pool(conn, pool_name, tmp_path / pool_name).UUIDString())
                except libvirt.libvirtError as exc:
                    failed.append(str(exc))

            callers = [threading.Thread(target=ensure) for _ in range(9)]
            for caller in callers:
                caller.start()
            for caller in callers:
                caller.join()
            assert failures == [] and len(set(pools)) == 1 and len(pools) == 9, failures
            assert conn.storagePoolLookupByName(name).isActive()
    finally:
        for name in made:
            try:
                pool = conn.storagePoolLookupByName(name)
            except libvirt.libvirtError:
                continue
            if pool.isActive():
                pool.destroy()
            pool.undefine()
        conn.close()
