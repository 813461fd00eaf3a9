"""The storage pool's volumes over the API, in-process over libvirt's test driver: a disk kept when its VM
was deleted is listed as used by none and can be deleted; one a VM uses (its disk, or the disk a create of
another limen is making) is refused with VOLUME_IN_USE and kept; admins only; each deletion is audited.
The same on real libvirtd: tests/integration/test_volumes.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import libvirt
import pytest

from limen.action_details import migrate_details
from limen.db import Role
from limen.hypervisor import volumes as volumes_module
from limen.hypervisor.leftovers import CreateMark
from tests.conftest import settings_in
from tests.support.access import assert_error
from tests.support.shared_app import SharedApp, shared_app

PASSWORD = "a-long-password"


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[SharedApp, dict[str, Any]]]:
    async with shared_app(settings_in(tmp_path_factory.mktemp("volumes"))) as shared:
        headers = await shared.users_with_tokens({"root": Role.ADMIN, "alice": Role.USER}, PASSWORD)
        shared.keep_as_start()
        yield shared, headers


class Admin:
    def __init__(self, app: SharedApp, headers: dict[str, Any]) -> None:
        self.app, self.client, self.headers = app, app.client, headers

    async def as_(self, user: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers[user], **kwargs)

    async def vm(self, *, keep_disk_of: bool = False, name: str | None = None) -> dict[str, Any]:
        name = name or f"vol-{uuid.uuid4().hex[:8]}"
        created = await self.as_("root", "POST", "/api/vms", json={"name": name, "memory_mib": 64, "disk_gib": 1})
        assert created.status_code == 201, created.text
        return dict(created.json())

    async def volumes(self) -> dict[str, dict[str, Any]]:
        answer = await self.as_("root", "GET", "/api/volumes")
        assert answer.status_code == 200, answer.text
        return {volume["name"]: volume for volume in answer.json()}


@pytest.fixture
async def admin(shared: tuple[SharedApp, dict[str, Any]]) -> AsyncIterator[Admin]:
    app, headers = shared
    await app.reset()
    admin = Admin(app, headers)
    yield admin
    for vm in (await admin.as_("root", "GET", "/api/vms")).json():
        if vm["name"].startswith("vol-"):
            await admin.as_("root", "DELETE", f"/api/vms/{vm['uuid']}?delete_disks=true")
    for name, volume in (await admin.volumes()).items():
        if name.startswith("vol-") and not volume["in_use"]:
            await admin.as_("root", "DELETE", f"/api/volumes/{name}")


def disk_volume(vm: dict[str, Any]) -> str:
    path = next(disk["path"] for disk in vm["disks"] if disk["device"] == "disk")
    return str(path).rsplit("/", 1)[-1]


async def test_a_kept_disk_is_listed_unused_and_deleted(admin: Admin) -> None:
    vm = await admin.vm()
    volume = disk_volume(vm)
    listed = (await admin.volumes())[volume]
    assert listed["used_by"] == [{"uuid": vm["uuid"], "name": vm["name"]}] and listed["in_use"] is True
    assert (listed["host"], listed["format"], listed["capacity_bytes"]) == ("local", "qcow2", 2**30)
    deleted = await admin.as_("root", "DELETE", f"/api/vms/{vm['uuid']}")  # the disk kept
    assert deleted.status_code == 200 and deleted.json()["deleted_volumes"] == []
    kept = (await admin.volumes())[volume]
    assert (kept["used_by"], kept["in_use"]) == ([], False)

    answer = await admin.as_("root", "DELETE", f"/api/volumes/{volume}")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"deleted": volume, "host": "local", "capacity_bytes": 2**30}
    assert volume not in await admin.volumes()
    assert_error(await admin.as_("root", "DELETE", f"/api/volumes/{volume}"), 404, "VOLUME_NOT_FOUND")

    rows = (await admin.as_("root", "GET", f"/api/vm-actions?vm={volume}")).json()
    assert [(row["action"], row["result_code"], row["details"]) for row in rows] == [
        ("delete-volume", "VOLUME_NOT_FOUND", "on host local"),
        ("delete-volume", "OK", f"on host local, {2**30} bytes"),
    ]


async def test_a_deletion_reads_the_hosts_vms_once(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading which VMs use a file reads every VM's definitions and snapshots: the look for the volume before
    the claims check needs the pool alone, only the check under the lock reads the VMs."""
    vm = await admin.vm()
    volume = disk_volume(vm)
    assert (await admin.as_("root", "DELETE", f"/api/vms/{vm['uuid']}")).status_code == 200
    reads: list[str] = []
    real = volumes_module.users_by_path

    def counted(conn: libvirt.virConnect) -> dict[str, set[volumes_module.VolumeUser]]:
        reads.append("vms")
        return real(conn)

    monkeypatch.setattr(volumes_module, "users_by_path", counted)
    assert (await admin.as_("root", "DELETE", f"/api/volumes/{volume}")).status_code == 200
    assert reads == ["vms"]


async def test_the_audit_trail_names_a_long_volume_whole(admin: Admin) -> None:
    # A 63-character VM's disk has a 75-character name: its delete-volume row kept the first 64, which cut
    # off the part that tells one such disk from another ("-disk0-<8 hex>.qcow2").
    name = f"vol-{uuid.uuid4().hex[:8]}-" + "w" * 50
    assert len(name) == 63
    vm = await admin.vm(name=name)
    volume = disk_volume(vm)
    assert (await admin.as_("root", "DELETE", f"/api/vms/{vm['uuid']}")).status_code == 200  # the disk kept
    assert (await admin.as_("root", "DELETE", f"/api/volumes/{volume}")).status_code == 200
    rows = (await admin.as_("root", "GET", f"/api/vm-actions?vm={volume}")).json()
    assert [(row["action"], row["vm_name"], row["result_code"]) for row in rows] == [
        ("delete-volume", volume, "OK")]


async def test_a_volume_a_vm_uses_is_refused_and_kept(admin: Admin) -> None:
    vm = await admin.vm()
    volume = disk_volume(vm)
    error = assert_error(await admin.as_("root", "DELETE", f"/api/volumes/{volume}"), 409, "VOLUME_IN_USE")
    assert vm["name"] in error["details"] and vm["uuid"] in error["details"]
    assert (await admin.volumes())[volume]["used_by"] == [{"uuid": vm["uuid"], "name": vm["name"]}]
    assert (await admin.as_("root", "GET", f"/api/vms/{vm['uuid']}")).status_code == 200


async def test_a_volume_a_pending_create_names_is_refused(admin: Admin) -> None:
    """A create of another limen instance has made its volume and not yet defined its VM: its pending row
    names the volume, and the deletion keeps away from it."""
    vm = await admin.vm()
    volume = disk_volume(vm)
    assert (await admin.as_("root", "DELETE", f"/api/vms/{vm['uuid']}")).status_code == 200
    mark = CreateMark(token=uuid.uuid4().hex, with_disk=True, volume=volume)
    row = await admin.app.access.audit.action_started(user="root", action="create", vm_name="vol-elsewhere",
                                                      details=mark.as_details())
    error = assert_error(await admin.as_("root", "DELETE", f"/api/volumes/{volume}"), 409, "VOLUME_IN_USE")
    assert "vol-elsewhere" in error["details"]
    assert volume in await admin.volumes()
    await admin.app.access.audit.action_finished(row, result_code="OK")
    assert (await admin.as_("root", "DELETE", f"/api/volumes/{volume}")).status_code == 200


async def test_a_volume_on_the_host_a_pending_move_goes_to_is_refused(admin: Admin) -> None:
    """A move of another limen instance makes its VM's volumes on the target host before the VM arrives:
    while its row is pending, no volume of that host is deleted."""
    vm = await admin.vm()
    volume = disk_volume(vm)
    assert (await admin.as_("root", "DELETE", f"/api/vms/{vm['uuid']}")).status_code == 200
    host = (await admin.volumes())[volume]["host"]
    row = await admin.app.access.audit.action_started(user="root", action="migrate", vm_name="vol-moving",
                                                      details=migrate_details("elsewhere", host))
    error = assert_error(await admin.as_("root", "DELETE", f"/api/volumes/{volume}"), 409, "VOLUME_IN_USE")
    assert "vol-moving" in error["details"]
    assert volume in await admin.volumes()
    await admin.app.access.audit.action_finished(row, result_code="OK")
    assert (await admin.as_("root", "DELETE", f"/api/volumes/{volume}")).status_code == 200


async def test_admins_only_and_bad_requests(admin: Admin) -> None:
    assert_error(await admin.as_("alice", "GET", "/api/volumes"), 403, "FORBIDDEN")
    assert_error(await admin.as_("alice", "DELETE", "/api/volumes/x.qcow2"), 403, "FORBIDDEN")
    assert_error(await admin.client.get("/api/volumes"), 401, "UNAUTHORIZED")
    assert_error(await admin.as_("root", "DELETE", "/api/volumes/no-such.qcow2"), 404, "VOLUME_NOT_FOUND")
    assert_error(await admin.as_("root", "DELETE", "/api/volumes/x.qcow2?host=nowhere"), 404, "HOST_NOT_FOUND")
    assert_error(await admin.as_("root", "GET", "/api/volumes?host=nowhere"), 404, "HOST_NOT_FOUND")
