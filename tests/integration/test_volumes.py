"""The storage pool's volumes on the real libvirtd (pool limen-test): a VM deleted with its disk kept leaves a
volume listed as used by none, which the API deletes (gone from ``virsh vol-list``); the disk of a running
VM is refused (VOLUME_IN_USE) and kept."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from limen.settings import Settings
from tests.conftest import QEMU_URI, TEST_POOL, app_client
from tests.support.access import assert_error

pytestmark = pytest.mark.integration


def pool_volumes() -> set[str]:
    listed = subprocess.run(["virsh", "-c", QEMU_URI, "vol-list", TEST_POOL], capture_output=True, text=True,
                            check=True).stdout
    return {line.split()[0] for line in listed.splitlines()[2:] if line.strip()}


def remove_volumes(*names: str) -> None:
    for name in set(names) & pool_volumes():
        subprocess.run(["virsh", "-c", QEMU_URI, "vol-delete", name, "--pool", TEST_POOL], capture_output=True,
                       check=False)


async def test_a_kept_disk_is_deleted_and_a_used_one_kept(make_settings: Callable[..., Settings],
                                                          vm_names: Callable[[], str]) -> None:
    kept_vm, running_vm = vm_names(), vm_names()
    async with app_client(make_settings(libvirt_uri=QEMU_URI)) as api:
        volumes = {}
        for name in (kept_vm, running_vm):
            created = await api.post("/api/vms", json={"name": name, "memory_mib": 64, "disk_gib": 1})
            assert created.status_code == 201, created.text
            disk = next(d for d in created.json()["disks"] if d["device"] == "disk")
            volumes[name] = Path(disk["path"]).name
        try:
            assert (await api.post(f"/api/vms/{running_vm}/start")).status_code == 200
            assert (await api.delete(f"/api/vms/{kept_vm}")).status_code == 200  # its disk kept
            listed = {volume["name"]: volume for volume in (await api.get("/api/volumes")).json()}
            assert listed[volumes[kept_vm]]["used_by"] == [] and listed[volumes[kept_vm]]["in_use"] is False
            assert [user["name"] for user in listed[volumes[running_vm]]["used_by"]] == [running_vm]
            assert volumes[kept_vm] in pool_volumes()

            answer = await api.delete(f"/api/volumes/{volumes[kept_vm]}")
            assert answer.status_code == 200, answer.text
            assert volumes[kept_vm] not in pool_volumes()

            error = assert_error(await api.delete(f"/api/volumes/{volumes[running_vm]}"), 409, "VOLUME_IN_USE")
            assert running_vm in error["details"]
            assert volumes[running_vm] in pool_volumes()
            assert (await api.get(f"/api/vms/{running_vm}")).json()["state"] == "running"
        finally:
            await api.delete(f"/api/vms/{running_vm}?delete_disks=true")
            remove_volumes(*volumes.values())
