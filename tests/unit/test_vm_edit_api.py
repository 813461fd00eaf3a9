"""The VM editing routes in-process over libvirt's test driver: who may call them, bad input in the one
JSON error schema, refusals, pending changes in the answers, and the audit trail. What needs real QEMU
(CD changes, growing disks) is in tests/integration/test_vm_edit.py."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from limen.db import Role
from tests.conftest import DEMO_ISO, settings_in
from tests.support.access import assert_error
from tests.support.shared_app import SharedApp, shared_app

PASSWORD = "a-long-password"
Headers = dict[str, dict[str, str]]  # each user's Authorization header


class Users:
    def __init__(self, client: httpx.AsyncClient, headers: Headers) -> None:
        self.client = client
        self.headers = headers

    async def as_(self, user: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers[user], **kwargs)


@asynccontextmanager
async def vm_of_alice(users: Users) -> AsyncIterator[str]:
    name = f"api-{uuid.uuid4().hex[:8]}"
    created = await users.as_("alice", "POST", "/api/vms",
                              json={"name": name, "memory_mib": 64, "disk_gib": 1, "iso": DEMO_ISO})
    assert created.status_code == 201, created.text
    yield name
    for vm in (await users.as_("root", "GET", "/api/vms")).json():
        if vm["name"].startswith(name):
            await users.as_("root", "DELETE", f"/api/vms/{vm['uuid']}")


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[SharedApp, Headers]]:
    """One app for the module, its users and their tokens made once; each test gets it back as it was then
    (its VMs live in libvirt, owners included: each test's fixture removes its own)."""
    async with shared_app(settings_in(tmp_path_factory.mktemp("vm-edit"))) as shared:
        headers = await shared.users_with_tokens({"root": Role.ADMIN, "alice": Role.USER, "bob": Role.USER}, PASSWORD)
        shared.keep_as_start()
        yield shared, headers


@pytest.fixture
async def users(shared: tuple[SharedApp, Headers]) -> Users:
    app, headers = shared
    await app.reset()
    return Users(app.client, headers)


@pytest.fixture
async def alices_vm(users: Users) -> AsyncIterator[str]:
    async with vm_of_alice(users) as name:
        yield name


@pytest.fixture
async def refusing_users(users: Users) -> Users:
    """The users of the tests whose requests must all be refused (a refusal changes nothing)."""
    return users


@pytest.fixture(scope="module")
async def refusing_vm(shared: tuple[SharedApp, Headers]) -> AsyncIterator[str]:
    """One VM of alice's for all of them."""
    app, headers = shared
    async with vm_of_alice(Users(app.client, headers)) as name:
        yield name


EDIT_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PATCH", "", {"vcpus": 2}),
    ("GET", "/media", None),
    ("PUT", "/media", {"iso": None}),
    ("POST", "/finish-install", None),
    ("POST", "/disks/vda/resize", {"size_gib": 2}),
]


async def test_only_owners_and_admins(users: Users, alices_vm: str) -> None:
    for method, path, body in EDIT_ROUTES:
        assert_error(await users.as_("bob", method, f"/api/vms/{alices_vm}{path}", json=body), 404, "VM_NOT_FOUND")
        assert_error(await users.client.request(method, f"/api/vms/{alices_vm}{path}", json=body),
                     401, "UNAUTHORIZED")
        assert_error(await users.as_("root", method, f"/api/vms/no-such-vm{path}", json=body), 404, "VM_NOT_FOUND")
    assert (await users.as_("bob", "GET", f"/api/vms/{alices_vm}")).status_code == 404
    vm = (await users.as_("alice", "GET", f"/api/vms/{alices_vm}")).json()
    assert vm["vcpus"] == 1  # bob changed nothing
    assert (await users.as_("alice", "PATCH", f"/api/vms/{alices_vm}", json={"vcpus": 2})).json()["vcpus"] == 2
    assert (await users.as_("root", "PATCH", f"/api/vms/{alices_vm}", json={"vcpus": 1})).json()["vcpus"] == 1


async def test_vm_answer_has_the_details_page_fields(users: Users, alices_vm: str) -> None:
    vm = (await users.as_("alice", "GET", f"/api/vms/{alices_vm}")).json()
    assert vm["cdrom"] == {"target": "hdc", "iso": DEMO_ISO}
    assert vm["nics"] == []
    assert (vm["pending_restart"], vm["pending"]) == (False, {})
    disk = next(d for d in vm["disks"] if d["device"] == "disk")
    assert (disk["bus"], disk["capacity_bytes"]) == ("virtio", 2**30)
    assert isinstance(disk["allocation_bytes"], int)
    assert next(d for d in vm["disks"] if d["device"] == "cdrom")["bus"] == "ide"
    assert (await users.as_("alice", "GET", f"/api/vms/{alices_vm}/media")).json() == {"target": "hdc", "iso": DEMO_ISO}


@pytest.mark.parametrize(("body", "field"), [
    ({}, "body"), ({"vcpus": None}, "vcpus"), ({"colour": "red"}, "colour"), ({"vcpus": "many"}, "vcpus"),
    ({"vcpus": 0}, "vcpus"), ({"memory_mib": 1}, "memory_mib"), ({"boot_order": ["net"]}, "boot_order"),
    ({"boot_order": []}, "boot_order"), ({"boot_order": "hd"}, "boot_order"), ({"name": "bad name"}, "name"),
    ({"name": "x" * 64}, "name"), ({"autostart": "perhaps"}, "autostart"), ({"name": "Ωμέγα"}, "name"),
])
async def test_patch_bad_input(refusing_users: Users, refusing_vm: str, body: dict[str, Any], field: str) -> None:
    error = assert_error(await refusing_users.as_("alice", "PATCH", f"/api/vms/{refusing_vm}", json=body), 422,
                         "VALIDATION_ERROR")
    assert error["field"] == field


async def test_patch_running_vm_shows_pending_restart(users: Users, alices_vm: str) -> None:
    assert (await users.as_("alice", "POST", f"/api/vms/{alices_vm}/start")).status_code == 200
    answer = await users.as_("alice", "PATCH", f"/api/vms/{alices_vm}",
                             json={"vcpus": 2, "boot_order": ["hd"], "autostart": True})
    assert answer.status_code == 200, answer.text
    for vm in (answer.json(), (await users.as_("alice", "GET", f"/api/vms/{alices_vm}")).json()):
        assert (vm["vcpus"], vm["boot_order"], vm["autostart"]) == (1, ["cdrom", "hd"], True)
        assert vm["pending_restart"] is True
        assert vm["pending"] == {"vcpus": 2, "boot_order": ["hd"]}
    error = assert_error(await users.as_("alice", "PATCH", f"/api/vms/{alices_vm}", json={"name": "renamed"}),
                         409, "VM_MUST_BE_STOPPED")
    assert "stop" in error["message"].lower()
    assert (await users.as_("alice", "POST", f"/api/vms/{alices_vm}/stop?force=true")).status_code == 200
    assert (await users.as_("alice", "POST", f"/api/vms/{alices_vm}/start")).status_code == 200
    vm = (await users.as_("alice", "GET", f"/api/vms/{alices_vm}")).json()
    assert (vm["vcpus"], vm["boot_order"], vm["pending_restart"], vm["pending"]) == (2, ["hd"], False, {})


async def test_rename_through_the_api(users: Users, alices_vm: str) -> None:
    assert_error(await users.as_("alice", "PATCH", f"/api/vms/{alices_vm}", json={"name": "test"}),
                 409, "VM_ALREADY_EXISTS")
    renamed = await users.as_("alice", "PATCH", f"/api/vms/{alices_vm}", json={"name": f"{alices_vm}-2"})
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["owner"]) == (f"{alices_vm}-2", "alice")
    assert (await users.as_("alice", "GET", f"/api/vms/{alices_vm}-2")).status_code == 200
    assert_error(await users.as_("alice", "GET", f"/api/vms/{alices_vm}"), 404, "VM_NOT_FOUND")


@pytest.mark.parametrize(("body", "status", "code"), [
    ({}, 422, "VALIDATION_ERROR"), ({"iso": 5}, 422, "VALIDATION_ERROR"),
    ({"iso": None, "force": "yes please"}, 422, "VALIDATION_ERROR"), ({"iso": "x" * 300}, 422, "VALIDATION_ERROR"),
    ({"iso": "missing.iso"}, 422, "VALIDATION_ERROR"), ({"iso": "../../etc/passwd"}, 422, "VALIDATION_ERROR"),
    ({"iso": "ÄÖ ü.iso"}, 422, "VALIDATION_ERROR"),
])
async def test_media_bad_input(
    refusing_users: Users, refusing_vm: str, body: dict[str, Any], status: int, code: str
) -> None:
    assert_error(await refusing_users.as_("alice", "PUT", f"/api/vms/{refusing_vm}/media", json=body), status, code)


@pytest.mark.parametrize(("target", "body", "status", "code"), [
    ("vda", {}, 422, "VALIDATION_ERROR"), ("vda", {"size_gib": 2, "size_bytes": 2**31}, 422, "VALIDATION_ERROR"),
    ("vda", {"size_gib": 0}, 422, "VALIDATION_ERROR"), ("vda", {"size_gib": 4096}, 422, "VALIDATION_ERROR"),
    ("vda", {"size_bytes": 2**31 + 1}, 422, "VALIDATION_ERROR"), ("vda", {"size_gib": "big"}, 422, "VALIDATION_ERROR"),
    ("vda", {"size_gib": 1}, 409, "DISK_SHRINK_REFUSED"), ("vda", {"size_bytes": 2**29}, 409, "DISK_SHRINK_REFUSED"),
    ("vdb", {"size_gib": 2}, 404, "DISK_NOT_FOUND"), ("hdc", {"size_gib": 2}, 404, "DISK_NOT_FOUND"),
    ("ωω", {"size_gib": 2}, 404, "DISK_NOT_FOUND"),
])
async def test_resize_refusals(
    refusing_users: Users, refusing_vm: str, target: str, body: dict[str, Any], status: int, code: str
) -> None:
    path = f"/api/vms/{refusing_vm}/disks/{target}/resize"
    assert_error(await refusing_users.as_("alice", "POST", path, json=body), status, code)


async def test_finish_install_needs_a_disk(users: Users) -> None:
    name = f"api-{uuid.uuid4().hex[:8]}"
    assert (await users.as_("alice", "POST", "/api/vms", json={"name": name, "memory_mib": 64})).status_code == 201
    try:
        assert_error(await users.as_("alice", "POST", f"/api/vms/{name}/finish-install"), 404, "DISK_NOT_FOUND")
        media = await users.as_("alice", "GET", f"/api/vms/{name}/media")
        assert media.json() == {"target": None, "iso": None}
        assert (await users.as_("alice", "POST", f"/api/vms/{name}/start")).status_code == 200
        assert_error(await users.as_("alice", "PUT", f"/api/vms/{name}/media", json={"iso": DEMO_ISO}),
                     409, "VM_MUST_BE_STOPPED")
    finally:
        await users.as_("alice", "DELETE", f"/api/vms/{name}?delete_disks=true")


async def test_every_action_is_audited_with_what_changed(users: Users, alices_vm: str) -> None:
    await users.as_("alice", "PATCH", f"/api/vms/{alices_vm}", json={"vcpus": 2, "autostart": True})
    await users.as_("alice", "PUT", f"/api/vms/{alices_vm}/media", json={"iso": "missing.iso"})
    await users.as_("alice", "POST", f"/api/vms/{alices_vm}/disks/vda/resize", json={"size_gib": 1})
    await users.as_("alice", "POST", f"/api/vms/{alices_vm}/disks/vdq/resize", json={"size_gib": 2})
    await users.as_("bob", "PATCH", f"/api/vms/{alices_vm}", json={"vcpus": 1})  # refused before any action
    await users.as_("alice", "POST", f"/api/vms/{alices_vm}/start")
    await users.as_("alice", "PATCH", f"/api/vms/{alices_vm}", json={"name": "elsewhere"})
    actions = [(a["user"], a["action"], a["result_code"], a["details"])
               for a in (await users.as_("root", "GET", "/api/vm-actions")).json() if a["vm_name"] == alices_vm]
    assert actions[:6] == [
        ("alice", "edit", "VM_MUST_BE_STOPPED", "name → elsewhere"),
        ("alice", "start", "OK", ""),
        ("alice", "resize-disk", "DISK_NOT_FOUND", f"vdq to {2 * 2**30} bytes"),
        ("alice", "resize-disk", "DISK_SHRINK_REFUSED", f"vda to {2**30} bytes"),
        ("alice", "media", "VALIDATION_ERROR", "cd → missing.iso"),
        ("alice", "edit", "OK", "vcpus 1 → 2; autostart false → true"),
    ]


async def test_every_actions_details_read_back_as_phrases_for_the_pages(users: Users, alices_vm: str) -> None:
    """A Korean page words an action's details from ``details_phrases``: a writer whose words the reader does
    not know would show its English there (as every one did before)."""
    vm = f"/api/vms/{alices_vm}"
    await users.as_("alice", "PATCH", vm, json={"vcpus": 2, "autostart": True, "boot_order": ["hd", "cdrom"]})
    await users.as_("alice", "PUT", f"{vm}/media", json={"iso": None})
    await users.as_("alice", "PUT", f"{vm}/media", json={"iso": DEMO_ISO})
    await users.as_("alice", "POST", f"{vm}/disks/vda/resize", json={"size_gib": 2})
    await users.as_("alice", "POST", f"{vm}/start")
    await users.as_("alice", "PATCH", vm, json={"memory_mib": 96})
    await users.as_("alice", "POST", f"{vm}/finish-install", params={"force": "true"})
    await users.as_("alice", "POST", f"{vm}/stop", params={"force": "true"})
    await users.as_("root", "PUT", f"{vm}/owner", json={"owner": "bob"})
    rows = [a for a in (await users.as_("root", "GET", "/api/vm-actions")).json() if a["vm_name"] == alices_vm]
    unread = [(a["action"], a["details"]) for a in rows if a["details"] and a["details_phrases"] is None]
    assert unread == []
    kinds = {phrase["kind"] for a in rows for phrase in a["details_phrases"] or []}
    assert kinds >= {"change", "resize_asked", "forced", "given_to"}, [(a["action"], a["details"]) for a in rows]
    memory = next(a for a in rows if a["action"] == "edit" and "memory_mib" in a["details"])
    assert memory["details_phrases"] == [
        {"kind": "change", "field": "memory_mib", "old": "64", "new": "96", "pending": "true"}]



async def test_a_lone_surrogate_in_a_body_is_refused_before_any_work(users: Users, alices_vm: str) -> None:
    """json.dumps writes "\\ud800" as it is; such a string reached argon2, SQLite or libvirt as a 500 (an owner
    change left its audit row STARTED). Refused whole, as a body that is not JSON, before a route runs."""
    vm = f"/api/vms/{alices_vm}"
    bodies = [
        ("POST", "/api/users", {"name": "surrogate", "password": "\ud800abcdefgh"}, "body.password"),
        ("PUT", f"{vm}/owner", {"owner": "bob\ud800"}, "body.owner"),
        ("POST", "/api/tokens", {"name": "tok", "user": "bob\ud800"}, "body.user"),
        ("POST", f"{vm}/snapshots", {"name": "snap1\udfff"}, "body.name"),
        ("POST", f"{vm}/snapshots", {"name": "snapx", "description": "d\ud800"}, "body.description"),
        ("POST", f"{vm}/migrate", {"host": "x\ud800"}, "body.host"),
        ("PATCH", vm, {"boot_order": ["hd", "\udc00"]}, "body.boot_order.1"),
        ("PATCH", vm, {"\udc00": 1}, "body"),  # a key
    ]
    headers = {**users.headers["root"], "Content-Type": "application/json"}
    for method, path, body, where in bodies:
        answer = await users.client.request(method, path, headers=headers, content=json.dumps(body).encode())
        error = assert_error(answer, 400, "INVALID_REQUEST")
        assert f"{where} holds a lone UTF-16 surrogate" in error["details"], (path, error)
    # A pair spelled in escapes is one character, and welcome.
    paired = await users.client.request("PUT", f"{vm}/owner", headers=headers,
                                        content=json.dumps({"owner": "\ud83d\ude00"}).encode())
    assert_error(paired, 404, "USER_NOT_FOUND")
    rows = [a for a in (await users.as_("root", "GET", "/api/vm-actions")).json() if a["vm_name"] == alices_vm]
    assert [a for a in rows if a["result_code"] == "STARTED"] == []
    assert [a["action"] for a in rows if a["action"] != "create"] == ["set_owner"]  # the pair's refusal only


async def test_a_body_that_is_not_utf8_is_refused_not_altered(users: Users, alices_vm: str) -> None:
    """Latin-1's "café" (caf\\xe9) was decoded with a replacement character and kept as "caf\ufffd": the
    snapshot's description changed without a word. Refused whole, naming the byte."""
    headers = {**users.headers["root"], "Content-Type": "application/json"}
    body = b'{"name": "latin1", "description": "caf\xe9"}'
    answer = await users.client.request("POST", f"/api/vms/{alices_vm}/snapshots", headers=headers, content=body)
    error = assert_error(answer, 400, "INVALID_REQUEST")
    assert "the byte at offset 38 (0xe9) is not UTF-8" in error["details"], error
    listed = (await users.as_("root", "GET", f"/api/vms/{alices_vm}/snapshots")).json()
    assert [s for s in listed if s["name"] == "latin1"] == []
    # The same text in UTF-8 is welcome, and kept as sent.
    body = '{"name": "utf8", "description": "café 카페"}'.encode()
    answer = await users.client.request("POST", f"/api/vms/{alices_vm}/snapshots", headers=headers, content=body)
    assert answer.status_code == 202, answer.text
    for _ in range(200):
        operation = (await users.as_("root", "GET", f"/api/operations/{answer.json()['id']}")).json()
        if operation["state"] != "running":
            break
        await asyncio.sleep(0.05)
    assert operation["state"] == "done", operation
    listed = (await users.as_("root", "GET", f"/api/vms/{alices_vm}/snapshots")).json()
    assert [s["description"] for s in listed if s["name"] == "utf8"] == ["café 카페"], listed


async def test_a_key_given_twice_in_a_body_is_refused_before_any_work(users: Users, alices_vm: str) -> None:
    """Python's json keeps the last of two: {"name": "a", "name": "b"} made VM b, while a proxy or filter in
    front of limen that reads the first would have checked a."""
    headers = {**users.headers["root"], "Content-Type": "application/json"}
    bodies = [
        ("POST", "/api/vms", '{"name": "twice-a", "name": "twice-b", "memory_mib": 64}', "name"),
        ("PATCH", f"/api/vms/{alices_vm}", '{"memory_mib": 96, "memory_mib": 128}', "memory_mib"),
        ("POST", "/api/tokens", '{"name": "t", "user": {"name": "bob", "name": "root"}}', "name"),  # nested
    ]
    for method, path, body, key in bodies:
        answer = await users.client.request(method, path, headers=headers, content=body.encode())
        error = assert_error(answer, 400, "INVALID_REQUEST")
        assert f"the key '{key}' is given twice in one object" in error["details"], (path, error)
    listed = (await users.as_("root", "GET", "/api/vms")).json()
    assert not {"twice-a", "twice-b"} & {vm["name"] for vm in listed}
    assert (await users.as_("root", "GET", f"/api/vms/{alices_vm}")).json()["memory_mib"] == 64
    rows = [a for a in (await users.as_("root", "GET", "/api/vm-actions")).json() if a["vm_name"] == alices_vm]
    assert [a["action"] for a in rows] == ["create"]


async def test_a_vm_deleted_without_its_disks_leaves_its_name_free_for_a_new_one(users: Users) -> None:
    """The kept disk held NAME-disk0.qcow2, and a new VM of the name was refused (VM_ALREADY_EXISTS, though
    none existed, with a virsh command a user cannot run) for as long as the disk stayed."""
    async with vm_of_alice(users) as name:
        assert (await users.as_("root", "DELETE", f"/api/vms/{name}")).status_code == 200  # disks kept
        again = await users.as_("alice", "POST", "/api/vms", json={"name": name, "memory_mib": 64, "disk_gib": 1})
        assert again.status_code == 201, again.text
        (disk,) = [d for d in again.json()["disks"] if d["device"] == "disk"]
        assert re.search(rf"/{name}-disk0-[0-9a-f]{{8}}\.qcow2$", disk["path"]), disk
        (row,) = [a for a in (await users.as_("alice", "GET", "/api/vm-actions")).json()
                  if a["action"] == "create" and a["vm_uuid"] == again.json()["uuid"]]
        assert row["result_code"] == "OK"
