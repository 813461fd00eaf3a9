"""Resource figures across hosts, through a real ``limen serve``: the VMs of the default host and of a
registered host (each libvirt's test driver on a node file of its own) both fill their series, while a third
registered host hangs (a libvirtd socket that accepts and never answers): its read waits out
LIMEN_LIBVIRT_TIMEOUT (20 s here) without holding the other hosts' samples, which arrive every interval."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from limen import host_registry
from limen.db import Database
from tests.support.access import provision_admin_token
from tests.support.console import FakeDomain, driver_uri
from tests.support.hanging_libvirt import hanging_libvirt
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HUNG_TIMEOUT = 20.0  # LIMEN_LIBVIRT_TIMEOUT: how long the hung host's read is out
FILLED_WITHIN = 10.0  # seconds for three samples of each good host's VM: well inside HUNG_TIMEOUT


def test_every_hosts_vms_are_sampled_while_one_host_hangs(tmp_path: Path) -> None:
    local, second = FakeDomain("stats-on-local", None), FakeDomain("stats-on-second", None)
    with hanging_libvirt() as hung:
        hung.armed = True
        local_uri = driver_uri(tmp_path, [local])
        server = LimenProcess({"LIMEN_LIBVIRT_URI": local_uri,
                               "LIMEN_DATA_DIR": str(tmp_path / "data"), "LIMEN_LOG_DIR": str(tmp_path / "log"),
                               "LIMEN_STATS_INTERVAL": "0.5", "LIMEN_LIBVIRT_TIMEOUT": str(HUNG_TIMEOUT)},
                              tmp_path / "serve.log")
        token = provision_admin_token(server.database_url)
        db = Database(server.database_url)
        try:
            host_registry.add_host(db, "second", driver_uri(tmp_path, [second]), default_uri=local_uri)
            host_registry.add_host(db, "hung", hung.uri, default_uri=local_uri)
        finally:
            db.close()
        server.start(timeout=60)
        try:
            started = time.monotonic()
            counts: dict[str, int] = {}
            with httpx.Client(base_url=server.base_url, timeout=30,
                              headers={"Authorization": f"Bearer {token}"}) as api:
                while time.monotonic() - started < FILLED_WITHIN:
                    for vm in (local, second):
                        body = api.get(f"/api/vms/{vm.uuid}/stats").json()
                        counts[vm.name] = len(body["series"]["t"])
                    if min(counts.values()) >= 3:
                        break
                    time.sleep(0.2)
                took = time.monotonic() - started
                assert min(counts.values()) >= 3, f"samples after {took:.1f} s: {counts}"
                latest = api.get("/api/stats/vms").json()["vms"]
                assert {local.uuid, second.uuid} <= set(latest)
        finally:
            server.stop()
