"""Two users on one server each see and act on only their own VMs; admins on all; every action audited.

In-process over libvirt's test driver.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import httpx
import libvirt
import pytest

from limen.api.services import services_of
from limen.db import Role
from tests.conftest import settings_in
from tests.support.access import assert_error
from tests.support.console import FakeDomain, domain_xml
from tests.support.shared_app import SharedApp, shared_app

PASSWORD = "a-long-password"
ATTEMPTS = 20  # tickets asked for until one's read is kept with no libvirt event after it
Headers = dict[str, dict[str, str]]  # each user's Authorization header


class Users:
    def __init__(self, client: httpx.AsyncClient, headers: Headers) -> None:
        self.client = client
        self.headers = headers

    async def as_(self, user: str, method: str, path: str, **kwargs: object) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers[user], **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[SharedApp, Headers]]:
    """One app for the module, its users and their tokens made once; each test gets it back as it was then."""
    async with shared_app(settings_in(tmp_path_factory.mktemp("auth-vms"))) as shared:
        headers = await shared.users_with_tokens({"root": Role.ADMIN, "alice": Role.USER, "bob": Role.USER}, PASSWORD)
        shared.keep_as_start()
        yield shared, headers


@pytest.fixture
async def users(shared: tuple[SharedApp, Headers]) -> Users:
    app, headers = shared
    await app.reset()
    return Users(app.client, headers)


async def test_a_ticket_reads_the_vm_as_its_console_will_and_an_owner_change_counts_at_once(
        users: Users, shared: tuple[SharedApp, Headers]) -> None:
    """The ticket's read of a running VM is the one its WebSocket's admission uses next (no second libvirt
    read); giving the VM to someone else forgets it, so the former owner's next ticket is refused."""
    cache = services_of(shared[0].app).hypervisor.console_cache
    name = f"auth-ticket-{uuid.uuid4().hex[:8]}"
    other = libvirt.open("test:///default")  # defined and started behind limen's back, as with virsh
    dom = other.defineXML(domain_xml(FakeDomain(name, 5977)))
    try:
        dom.create()
        assert (await users.as_("root", "PUT", f"/api/vms/{name}/owner", json={"owner": "bob"})).status_code == 200
        for _ in range(ATTEMPTS):
            # libvirt's events of the start and the owner change reach limen in its event thread, and may come
            # after the ticket's read: each rightly forgets what was read (the epoch moves), and the read is
            # tried again. A cache that never keeps fails below after ATTEMPTS tries.
            epoch = cache.epoch
            ticket = await users.as_("bob", "POST", f"/api/vms/{name}/console-ticket")
            assert ticket.status_code == 200, ticket.text
            kept = cache.get(ticket.json()["vm_uuid"]) or cache.get(name)
            if kept is not None or cache.epoch == epoch:
                break
            await asyncio.sleep(0.01)
        assert kept is not None and kept.owner == "bob"
        assert (await users.as_("root", "PUT", f"/api/vms/{name}/owner", json={"owner": "alice"})).status_code == 200
        assert_error(await users.as_("bob", "POST", f"/api/vms/{name}/console-ticket"), 404, "VM_NOT_FOUND")
        assert (await users.as_("alice", "POST", f"/api/vms/{name}/console-ticket")).status_code == 200
    finally:
        dom.destroy()
        dom.undefine()
        other.close()


async def test_each_user_sees_and_acts_on_only_their_own_vms(users: Users) -> None:
    name = f"auth-{uuid.uuid4().hex[:8]}"
    created = await users.as_("alice", "POST", "/api/vms", json={"name": name, "memory_mib": 64})
    assert created.status_code == 201, created.text
    vm_uuid = created.json()["uuid"]
    assert created.json()["owner"] == "alice"
    try:
        assert name in [vm["name"] for vm in (await users.as_("alice", "GET", "/api/vms")).json()]
        assert name not in [vm["name"] for vm in (await users.as_("bob", "GET", "/api/vms")).json()]
        assert "test" not in [vm["name"] for vm in (await users.as_("alice", "GET", "/api/vms")).json()]  # unowned
        assert {name, "test"} <= {vm["name"] for vm in (await users.as_("root", "GET", "/api/vms")).json()}

        for method, path in (("GET", ""), ("POST", "/start"), ("POST", "/stop"), ("POST", "/reboot"),
                             ("DELETE", ""), ("POST", "/console-ticket")):
            for ident in (name, vm_uuid):
                assert_error(await users.as_("bob", method, f"/api/vms/{ident}{path}"), 404, "VM_NOT_FOUND")
        assert (await users.as_("alice", "POST", f"/api/vms/{name}/start")).json()["state"] == "running"
        assert (await users.as_("root", "POST", f"/api/vms/{vm_uuid}/stop?force=true")).json()["state"] == "stopped"
        assert_error(await users.as_("alice", "POST", f"/api/vms/{name}/stop"), 409, "VM_NOT_RUNNING")
    finally:
        assert (await users.as_("alice", "DELETE", f"/api/vms/{name}?delete_disks=true")).status_code == 200

    actions = [(a["user"], a["action"], a["result_code"], a["vm_uuid"])
               for a in (await users.as_("root", "GET", "/api/vm-actions")).json()]
    assert actions[:5] == [
        ("alice", "delete", "OK", vm_uuid), ("alice", "stop", "VM_NOT_RUNNING", vm_uuid),
        ("root", "stop", "OK", vm_uuid), ("alice", "start", "OK", vm_uuid), ("alice", "create", "OK", vm_uuid),
    ]
    assert {a["user"] for a in (await users.as_("alice", "GET", "/api/vm-actions")).json()} == {"alice"}


async def test_only_an_administrator_keeps_a_deleted_vms_disks(users: Users) -> None:
    """A kept volume counts toward no quota and its owner can neither attach nor delete it: create, write,
    delete filled the pool past any disk quota. A plain user's delete without delete_disks=true is refused
    and deletes nothing; an administrator's keeps the disks, as before."""
    names = [f"auth-disks-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        created = await users.as_("alice", "POST", "/api/vms", json={"name": name, "memory_mib": 64, "disk_gib": 1})
        assert created.status_code == 201, created.text
    try:
        for keeping in ("", "?delete_disks=false"):
            refused = await users.as_("alice", "DELETE", f"/api/vms/{names[0]}{keeping}")
            assert "delete_disks=true" in assert_error(refused, 403, "DISKS_MUST_BE_DELETED")["details"]
        still = await users.as_("alice", "GET", f"/api/vms/{names[0]}")
        assert still.status_code == 200 and [d for d in still.json()["disks"] if d["device"] == "disk"]

        with_disks = await users.as_("alice", "DELETE", f"/api/vms/{names[0]}?delete_disks=true")
        assert with_disks.status_code == 200 and len(with_disks.json()["deleted_volumes"]) == 1
        by_admin = await users.as_("root", "DELETE", f"/api/vms/{names[1]}")
        assert by_admin.status_code == 200 and by_admin.json()["deleted_volumes"] == []
    finally:
        for name in names:
            await users.as_("root", "DELETE", f"/api/vms/{name}?delete_disks=true")


async def test_anonymous_vm_routes_are_unauthorized(users: Users) -> None:
    for method, path in (("GET", "/api/vms"), ("POST", "/api/vms"), ("GET", "/api/vms/test"),
                         ("POST", "/api/vms/test/start"), ("DELETE", "/api/vms/test")):
        assert_error(await users.client.request(method, path), 401, "UNAUTHORIZED")


async def test_admin_gives_a_vm_to_a_user(users: Users) -> None:
    assert_error(await users.as_("bob", "GET", "/api/vms/test"), 404, "VM_NOT_FOUND")
    given = await users.as_("root", "PUT", "/api/vms/test/owner", json={"owner": "bob"})
    assert given.status_code == 200
    try:
        assert (await users.as_("bob", "GET", "/api/vms/test")).json()["name"] == "test"
        assert "test" in [vm["name"] for vm in (await users.as_("bob", "GET", "/api/vms")).json()]
    finally:
        await users.as_("root", "PUT", "/api/vms/test/owner", json={"owner": None})


async def test_access_routes_log_at_info_without_clashing_with_log_record_fields(
    users: Users, caplog: pytest.LogCaptureFixture
) -> None:
    """A log field named like a LogRecord attribute ("created", "name", …) fails only when INFO is on."""
    caplog.set_level(logging.INFO, logger="limen")
    created = await users.as_("root", "POST", "/api/users", json={"name": "carol", "password": PASSWORD})
    assert created.status_code == 201, created.text
    assert any(getattr(record, "new_user", None) == "carol" for record in caplog.records)


async def test_vm_actions_filtered_by_one_vm(users: Users) -> None:
    names = [f"auth-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    uuids = []
    for name in names:
        created = await users.as_("alice", "POST", "/api/vms", json={"name": name, "memory_mib": 64})
        uuids.append(created.json()["uuid"])
    try:
        await users.as_("alice", "POST", f"/api/vms/{names[0]}/start")
        by_uuid = (await users.as_("alice", "GET", f"/api/vm-actions?vm={uuids[0]}")).json()
        assert [(a["action"], a["vm_name"]) for a in by_uuid] == [("start", names[0]), ("create", names[0])]
        by_name = (await users.as_("root", "GET", f"/api/vm-actions?vm={names[1]}")).json()
        assert [(a["action"], a["vm_uuid"]) for a in by_name] == [("create", uuids[1])]
        assert (await users.as_("bob", "GET", f"/api/vm-actions?vm={uuids[0]}")).json() == []
        # As long as a volume's name may be (a delete-volume row names one), not longer.
        assert_error(await users.as_("alice", "GET", "/api/vm-actions?vm=" + "x" * 256), 422, "VALIDATION_ERROR")
    finally:
        for name in names:
            await users.as_("alice", "DELETE", f"/api/vms/{name}?delete_disks=true")
