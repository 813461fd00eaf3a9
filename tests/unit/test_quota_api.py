"""The quota routes in-process over libvirt's test driver: who may read and set what, defaults, bad input."""

from __future__ import annotations

from collections.abc import Callable

import libvirt
import pytest

from limen.api.services import services_of
from limen.hypervisor.ownership import set_owner
from limen.settings import Settings
from tests.support.access import access_client, admin_token, assert_error, make_access


async def test_limits_defaults_and_overrides(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(quota_vms=2, quota_vcpus=4, quota_total_disk_gib=100)
    access = make_access(settings)
    async with access_client(settings, access) as (client, app):
        admin = {"Authorization": f"Bearer {await admin_token(access)}"}
        await access.users.create("Ada", "ada's long password")
        ada = {"Authorization": f"Bearer {(await access.tokens.create('Ada', 'tests')).secret}"}
        await set_owner(services_of(app).hypervisor, "test", "Ada")  # the test driver's running VM, 2 vCPUs
        try:
            mine = (await client.get("/api/quota", headers=ada)).json()
            assert mine["user"] == "Ada"
            assert mine["limits"] == {"vms": 2, "vcpus": 4, "memory_mib": None, "disk_gib": None}
            assert mine["usage"]["vms"] == 1 and mine["usage"]["vcpus"] == 2
            assert mine["system"]["limits"]["disk_gib"] == 100
            # Whole numbers are integers in the JSON (they were 2.0: a client reading integers failed on them).
            figures = [value for scope in (mine, mine["system"]) for part in ("limits", "usage")
                       for value in scope[part].values() if value is not None]
            assert figures and all(type(value) is int for value in figures), figures
            # Administrators have no per-user limits unless set for them.
            own = (await client.get("/api/quota", headers=admin)).json()
            assert own["limits"] == {"vms": None, "vcpus": None, "memory_mib": None, "disk_gib": None}

            put = await client.put("/api/users/ADA/quota", json={"vms": 5}, headers=admin)
            assert put.status_code == 200, put.text
            assert put.json()["user"] == "Ada"
            assert put.json()["override"] == {"vms": 5, "vcpus": None, "memory_mib": None, "disk_gib": None}
            assert put.json()["limits"]["vms"] == 5 and put.json()["limits"]["vcpus"] == 4  # default kept
            assert (await client.get("/api/users/ada/quota", headers=admin)).json()["limits"]["vms"] == 5

            assert_error(await client.put("/api/users/Ada/quota", json={"vms": 9}, headers=ada), 403, "FORBIDDEN")
            assert_error(await client.get("/api/users/Ada/quota", headers=ada), 403, "FORBIDDEN")
            assert_error(await client.put("/api/users/nobody/quota", json={}, headers=admin), 404, "USER_NOT_FOUND")
            for bad in ({"vms": -1}, {"vcpus": 2**40}, {"disk_gib": "many"}, {"cpus": 1}, {"vms": True}, {"vms": "3"}):
                assert_error(await client.put("/api/users/Ada/quota", json=bad, headers=admin), 422,
                             "VALIDATION_ERROR")
            # A negative limit's floor comes as a rule the Korean page words (pydantic's English showed).
            below = assert_error(await client.put("/api/users/Ada/quota", json={"vms": -1}, headers=admin), 422,
                                 "VALIDATION_ERROR")
            assert below["rule"] == {"kind": "at_least", "min": 0} and below["field"] == "vms"
            for bad in ({"autostart": "yes"}, {"vcpus": True}, {"memory_mib": "96"}):  # strict, as on create
                assert_error(await client.patch("/api/vms/test", json=bad, headers=ada), 422, "VALIDATION_ERROR")
            # Beyond the host, never a server error (the quota is not asked about nonsense).
            assert_error(await client.patch("/api/vms/test", json={"vcpus": 2**63}, headers=ada), 422,
                         "VALIDATION_ERROR")
            # Ada's running VM with 2 vCPUs: growing it to 8 at its next start does not fit 4.
            body = assert_error(await client.patch("/api/vms/test", json={"vcpus": 8}, headers=ada), 409,
                                "QUOTA_EXCEEDED")
            assert body["quota"]["resource"] == "vcpus" and body["quota"]["limit"] == 4
            assert (await client.get("/api/vms/test", headers=ada)).json()["vcpus"] == 2  # nothing changed
        finally:
            await set_owner(services_of(app).hypervisor, "test", None)


async def test_a_refused_create_or_start_records_which_quota_refused_it(
        make_settings: Callable[..., Settings]) -> None:
    """Their audit rows had empty details: the audit page did not say which quota was hit."""
    settings = make_settings(quota_vms=2, quota_memory_mib=768)
    access = make_access(settings)
    async with access_client(settings, access) as (client, _app):
        await access.users.create("Ada", "ada's long password")
        ada = {"Authorization": f"Bearer {(await access.tokens.create('Ada', 'tests')).secret}"}
        for name in ("q-small", "q-other"):
            created = await client.post("/api/vms", json={"name": name, "memory_mib": 512}, headers=ada)
            assert created.status_code == 201, created.text
        assert (await client.post("/api/vms/q-small/start", headers=ada)).status_code == 200
        assert_error(await client.post("/api/vms/q-other/start", headers=ada), 409, "QUOTA_EXCEEDED")
        assert_error(await client.post("/api/vms", json={"name": "q-third", "memory_mib": 64}, headers=ada), 409,
                     "QUOTA_EXCEEDED")

        actions = (await client.get("/api/vm-actions", headers=ada)).json()
        rows = {(row["action"], row["vm_name"]): row for row in actions if row["result_code"] == "QUOTA_EXCEEDED"}
        start, create = rows["start", "q-other"], rows["create", "q-third"]
        assert start["details"] == "memory quota: 1024 MiB over 768 MiB"
        assert start["details_phrases"] == [
            {"kind": "quota", "resource": "memory", "needed": "1024", "unit": " MiB", "limit": "768"}]
        assert create["details"] == "VMs quota: 3 over 2"
        assert create["details_phrases"] == [
            {"kind": "quota", "resource": "VMs", "needed": "3", "unit": "", "limit": "2"}]


async def test_a_vm_set_to_start_with_the_host_counts_as_running(make_settings: Callable[..., Settings]) -> None:
    # libvirt starts autostart VMs when the host starts, past every check: a user kept stopped VMs within the
    # quota, set autostart on all of them, and after a reboot ran them all (8 of 4 vCPUs here).
    settings = make_settings(quota_vcpus=4)
    access = make_access(settings)
    async with access_client(settings, access) as (client, _app):
        await access.users.create("ada", "ada's long password")
        ada = {"Authorization": f"Bearer {(await access.tokens.create('ada', 'tests')).secret}"}
        for name in ("a", "b"):
            made = await client.post("/api/vms", json={"name": name, "vcpus": 4, "memory_mib": 64}, headers=ada)
            assert made.status_code == 201, made.text
        assert (await client.get("/api/quota", headers=ada)).json()["usage"]["vcpus"] == 0
        assert (await client.patch("/api/vms/a", json={"autostart": True}, headers=ada)).status_code == 200
        assert (await client.get("/api/quota", headers=ada)).json()["usage"]["vcpus"] == 4
        refused = assert_error(await client.patch("/api/vms/b", json={"autostart": True}, headers=ada), 409,
                               "QUOTA_EXCEEDED")
        assert refused["quota"]["resource"] == "vcpus" and "autostart" in refused["details"]
        assert_error(await client.post("/api/vms/b/start", headers=ada), 409, "QUOTA_EXCEEDED")
        assert (await client.post("/api/vms/a/start", headers=ada)).status_code == 200  # already counted
        assert (await client.post("/api/vms/a/stop?force=true", headers=ada)).status_code == 200
        assert (await client.patch("/api/vms/a", json={"autostart": False}, headers=ada)).status_code == 200
        assert (await client.patch("/api/vms/b", json={"autostart": True}, headers=ada)).status_code == 200


async def test_a_disk_no_pool_holds_counts_and_its_growth_is_checked(
        make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    """The test driver's VM's disk is a file no storage pool holds (a VM defined outside limen): it counted
    as 0 bytes and its growth was not checked, so a user grew such a disk past any limit. Its size now comes
    from the image (libvirt's block info); one libvirt cannot say counts as 0 bytes, and a growth is checked
    for the disk's whole new size."""
    settings = make_settings()
    access = make_access(settings)
    async with access_client(settings, access) as (client, app):
        admin = {"Authorization": f"Bearer {await admin_token(access)}"}
        await access.users.create("Ada", "ada's long password")
        ada = {"Authorization": f"Bearer {(await access.tokens.create('Ada', 'tests')).secret}"}
        await set_owner(services_of(app).hypervisor, "test", "Ada")
        try:
            assert (await client.put("/api/users/Ada/quota", json={"disk_gib": 1030}, headers=admin)).status_code == 200
            (disk,) = [d for d in (await client.get("/api/vms/test", headers=ada)).json()["disks"]
                       if d["device"] == "disk"]
            assert disk["capacity_bytes"] == 1099506450432, disk  # the test driver's figure: 1023.995 GiB
            usage = (await client.get("/api/quota", headers=ada)).json()["usage"]
            assert usage["disk_gib"] == 1024 and type(usage["disk_gib"]) is int, usage
            grow = {"size_gib": 1040}
            body = assert_error(await client.post("/api/vms/test/disks/vda/resize", json=grow, headers=ada), 409,
                                "QUOTA_EXCEEDED")
            assert (body["quota"]["resource"], body["quota"]["usage"]) == ("disk_gib", 1024), body

            def unknown(*_args: object) -> None:
                raise libvirt.libvirtError("block info unavailable")

            monkeypatch.setattr(libvirt.virDomain, "blockInfo", unknown)
            (disk,) = [d for d in (await client.get("/api/vms/test", headers=ada)).json()["disks"]
                       if d["device"] == "disk"]
            assert disk["capacity_bytes"] is None, disk
            body = assert_error(await client.post("/api/vms/test/disks/vda/resize", json=grow, headers=ada), 409,
                                "QUOTA_EXCEEDED")
            assert (body["quota"]["usage"], body["quota"]["requested"]) == (0, 1040), body
        finally:
            await set_owner(services_of(app).hypervisor, "test", None)
