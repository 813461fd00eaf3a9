"""The REST API in-process over libvirt's test driver: shapes, validation, errors, never a 5xx."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from opentelemetry import trace

import limen
from limen.api import vm_snapshots
from limen.api.services import services_of
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.snapshots import SnapshotInfo
from tests.conftest import DEMO_ISO, settings_in
from tests.support.access import admin_token
from tests.support.shared_app import SharedApp, shared_app

ERROR_FIELDS = {"error", "code", "details", "message"}


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SharedApp]:
    """One app for the module, its client signed in as an admin (an API token in every request), as
    ``app_client`` makes; each test gets it back as it was then."""
    async with shared_app(settings_in(tmp_path_factory.mktemp("api"))) as shared:
        shared.client.headers["Authorization"] = f"Bearer {await admin_token(shared.access)}"
        shared.keep_as_start()
        yield shared


@pytest.fixture
async def client(shared: SharedApp) -> httpx.AsyncClient:
    await shared.reset()
    return shared.client


@pytest.fixture
async def refusing_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The client of the tests that only send input the app must refuse: each checks that nothing stays."""
    return client


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= ERROR_FIELDS
    assert body["code"] == code
    assert body["message"]
    return body


async def test_healthz_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "version": limen.__version__}
    spec = (await client.get("/api/openapi.json")).json()
    assert "/api/vms/{vm_id}/start" in spec["paths"]
    assert (await client.get("/api/docs")).status_code == 200


async def test_the_console_ticket_is_matched_first_and_fastapis_own_telemetry_is_off(
        shared: SharedApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """The route a browser asks for before every console is tried before limen's others (Starlette tries them
    in order); limen's telemetry is its own /metrics and logs, so FastAPI's OpenTelemetry stays off even
    where a tracer provider is configured (it would look the providers up on every request)."""
    routes = [route for route in shared.app.router.routes if isinstance(route, APIRoute)]
    assert routes[0].path == "/api/vms/{vm_id}/console-ticket"

    class ConfiguredTracing(trace.NoOpTracerProvider):  # what an SDK's provider looks like to FastAPI
        pass

    monkeypatch.setattr(trace, "get_tracer_provider", ConfiguredTracing)
    assert not shared.app._native_telemetry.enabled()
    assert FastAPI(telemetry={"metrics": False, "logs": False})._native_telemetry.enabled()  # the check bites


async def test_create_show_act_delete(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/api/vms", json={"name": "api-1", "vcpus": 1, "memory_mib": 64, "disk_gib": 1, "iso": DEMO_ISO}
    )
    assert created.status_code == 201, created.text
    vm = created.json()
    assert vm["state"] == "stopped" and vm["iso"].endswith(DEMO_ISO)
    assert vm["vnc"] == {"host": "127.0.0.1", "port": None}
    assert (await client.get(f"/api/vms/{vm['uuid']}")).json()["name"] == "api-1"
    assert "api-1" in [v["name"] for v in (await client.get("/api/vms")).json()]

    assert (await client.post("/api/vms/api-1/start")).json()["state"] == "running"
    assert_error(await client.post("/api/vms/api-1/start"), 409, "VM_ALREADY_RUNNING")
    assert (await client.post("/api/vms/api-1/reboot?force=true")).status_code == 200
    assert (await client.post("/api/vms/api-1/stop?force=true")).json()["state"] == "stopped"
    assert_error(await client.post("/api/vms/api-1/stop"), 409, "VM_NOT_RUNNING")
    assert_error(await client.post("/api/vms/api-1/reboot"), 409, "VM_NOT_RUNNING")

    deleted = (await client.delete("/api/vms/api-1?delete_disks=true")).json()
    assert deleted["deleted"] == "api-1" and len(deleted["deleted_volumes"]) == 1
    assert_error(await client.get("/api/vms/api-1"), 404, "VM_NOT_FOUND")


async def test_a_snapshot_asked_while_its_vm_is_being_deleted_is_not_taken(
        client: httpx.AsyncClient, shared: SharedApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """A VM's deletion (its snapshots deleted, then the VM undefined) and a snapshot asked meanwhile: the
    snapshot (and a revert) waits for the deletion and finds the VM gone. It was accepted (202) and taken
    into the disk the deletion keeps, after that deletion had cleared it: a snapshot nobody could list or
    delete any more."""
    created = await client.post("/api/vms", json={"name": "snap-del", "memory_mib": 64, "disk_gib": 1})
    assert created.status_code == 201, created.text
    hypervisor = services_of(shared.app).hypervisor
    deleting, go_on = asyncio.Event(), asyncio.Event()
    delete_vm = hypervisor.delete_vm

    async def held_delete(ident: str, *, delete_disks: bool = False) -> list[str]:
        deleting.set()
        await go_on.wait()
        return await delete_vm(ident, delete_disks=delete_disks)

    monkeypatch.setattr(hypervisor, "delete_vm", held_delete)
    delete = asyncio.create_task(client.delete("/api/vms/snap-del"))
    await deleting.wait()
    deletion = hypervisor.operations.running_for_ident("snap-del")
    assert deletion is not None and not deletion.ended.is_set()
    deletion.ended = ended = WaitersCounted()  # nothing waits for it yet
    snapshot = asyncio.create_task(client.post("/api/vms/snap-del/snapshots", json={"name": "late"}))
    # A revert waits as well: it went on beside the deletion, and answered for the snapshot, not the VM.
    revert = asyncio.create_task(client.post("/api/vms/snap-del/snapshots/early/revert"))
    # The deletion goes on once both wait for its end, or once either answered without waiting (refused below).
    both_wait = asyncio.create_task(ended.waited_by(2))
    await asyncio.wait({snapshot, revert, both_wait}, return_when=asyncio.FIRST_COMPLETED)
    both_wait.cancel()
    go_on.set()
    deleted = await delete
    assert deleted.status_code == 200, deleted.text
    assert_error(await snapshot, 404, "VM_NOT_FOUND")
    assert_error(await revert, 404, "VM_NOT_FOUND")


class WaitersCounted(asyncio.Event):
    """An event that counts the calls waiting for it: :meth:`waited_by` returns once that many have begun to."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters_count = 0
        self._counted = asyncio.Condition()

    async def wait(self) -> Literal[True]:
        async with self._counted:
            self._waiters_count += 1
            self._counted.notify_all()
        return await super().wait()

    async def waited_by(self, count: int) -> None:
        async with self._counted:
            await self._counted.wait_for(lambda: self._waiters_count >= count)


class HeldSnapshotWork:
    """A snapshot's revert or deletion (``vm_snapshots``' call of it, the snapshot found as asked) held inside
    libvirt: :attr:`began` once it runs, and it ends at :meth:`release`, raising ``failure`` if given one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, call: str) -> None:
        self.began, self._released = asyncio.Event(), asyncio.Event()
        self._failure: LimenError | None = None

        async def found(_hypervisor: Any, _vm_uuid: str, name: str) -> SnapshotInfo:
            return SnapshotInfo(name=name, description="", parent=None, created_at=datetime.now(UTC),
                                vm_state="shutoff", with_memory=False, current=False)

        async def held(hypervisor: Any, vm_uuid: str, name: str) -> SnapshotInfo:
            self.began.set()
            await self._released.wait()
            if self._failure is not None:
                raise self._failure
            return await found(hypervisor, vm_uuid, name)

        monkeypatch.setattr(vm_snapshots, "find_snapshot", found)
        monkeypatch.setattr(vm_snapshots, call, held)

    def release(self, failure: LimenError | None = None) -> None:
        self._failure = failure
        self._released.set()


async def _vm_actions(client: httpx.AsyncClient, vm_name: str) -> set[tuple[str, str, str]]:
    return {(a["action"], a["result_code"], a["details"]) for a in (await client.get("/api/vm-actions")).json()
            if a["vm_name"] == vm_name}


@pytest.mark.parametrize(("call", "method", "path"), [
    ("revert_snapshot", "POST", "/api/vms/held/snapshots/before/revert"),
    ("delete_snapshot", "DELETE", "/api/vms/held/snapshots/before"),
])
async def test_what_meets_a_snapshots_revert_or_deletion_is_refused_and_it_answers_as_alone(
        client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, call: str, method: str, path: str) -> None:
    """A revert and a snapshot's deletion are operations of their VM: the VM's deletion, a snapshot, a revert
    or a snapshot's deletion asked meanwhile is SNAPSHOT_IN_PROGRESS, recorded, and the first answers as it
    would alone. They went on beside it: a DELETE of the VM deleted it under the revert, two reverts raced."""
    assert (await client.post("/api/vms", json={"name": "held", "memory_mib": 64})).status_code == 201
    work = HeldSnapshotWork(monkeypatch, call)
    first = asyncio.create_task(client.request(method, path))
    await work.began.wait()
    try:
        assert_error(await client.delete("/api/vms/held?delete_disks=true"), 409, "SNAPSHOT_IN_PROGRESS")
        for refused in (await client.post("/api/vms/held/snapshots/before/revert"),
                        await client.delete("/api/vms/held/snapshots/before"),
                        await client.post("/api/vms/held/snapshots", json={"name": "during"})):
            error = assert_error(refused, 409, "SNAPSHOT_IN_PROGRESS")
            assert "'before' still runs on VM 'held'" in error["details"]
    finally:
        work.release()
    answer = await first
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"deleted": "before"} if method == "DELETE" else answer.json()["name"] == "before"
    assert (await client.get("/api/vms/held")).status_code == 200
    action = "revert" if method == "POST" else "snapshot-delete"
    assert await _vm_actions(client, "held") >= {
        (action, "OK", "before"), ("delete", "SNAPSHOT_IN_PROGRESS", ""), ("revert", "SNAPSHOT_IN_PROGRESS", "before"),
        ("snapshot-delete", "SNAPSHOT_IN_PROGRESS", "before"), ("snapshot", "SNAPSHOT_IN_PROGRESS", "during")}
    assert (await client.delete("/api/vms/held")).status_code == 200


async def test_a_revert_that_fails_or_is_cancelled_leaves_its_vm_idle(
        client: httpx.AsyncClient, shared: SharedApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of a revert stays registered once it ends badly: a libvirt error is its answer, and a request
    cancelled (its client gone, limen stopping) holds the VM no longer; the next revert runs."""
    assert (await client.post("/api/vms", json={"name": "held", "memory_mib": 64})).status_code == 201
    operations = services_of(shared.app).hypervisor.operations
    work = HeldSnapshotWork(monkeypatch, "revert_snapshot")
    failing = asyncio.create_task(client.post("/api/vms/held/snapshots/before/revert"))
    await work.began.wait()
    work.release(LimenError(ErrorCode.VM_OPERATION_FAILED, "libvirt: revert failed"))
    assert_error(await failing, 409, "VM_OPERATION_FAILED")
    assert operations.running_for_ident("held") is None

    work = HeldSnapshotWork(monkeypatch, "revert_snapshot")
    cancelled = asyncio.create_task(client.post("/api/vms/held/snapshots/before/revert"))
    await work.began.wait()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert operations.running_for_ident("held") is None

    work = HeldSnapshotWork(monkeypatch, "revert_snapshot")
    work.release()
    assert (await client.post("/api/vms/held/snapshots/before/revert")).status_code == 200
    assert (await client.delete("/api/vms/held")).status_code == 200


async def test_duplicate_name(client: httpx.AsyncClient) -> None:
    assert_error(await client.post("/api/vms", json={"name": "test", "memory_mib": 64}), 409, "VM_ALREADY_EXISTS")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "has space"}, "name"),
        ({"name": "_leading"}, "name"),
        ({"name": "n" * 64}, "name"),
        ({"name": "ok", "vcpus": 0}, "vcpus"),
        ({"name": "ok", "vcpus": 100000}, "vcpus"),
        ({"name": "ok", "vcpus": "two"}, "vcpus"),
        ({"name": "ok", "memory_mib": 16}, "memory_mib"),
        ({"name": "ok", "memory_mib": 10**12}, "memory_mib"),
        ({"name": "ok", "memory_mib": 64.5}, "memory_mib"),
        ({"name": "ok", "vcpus": True}, "vcpus"),  # strict: true was 1 vCPU, "64" was 64 MiB
        ({"name": "ok", "memory_mib": "64"}, "memory_mib"),
        ({"name": "ok", "disk_gib": 1.0}, "disk_gib"),
        ({"name": "ok", "disk_gib": 0}, "disk_gib"),
        ({"name": "ok", "disk_gib": 4096}, "disk_gib"),
        ({"name": "ok", "iso": "../../../etc/passwd"}, "iso"),
        ({"name": "ok", "iso": "/etc/passwd"}, "iso"),
        ({"name": "ok", "iso": "missing.iso"}, "iso"),
        ({"name": "ok", "boot_order": ["network"]}, "boot_order"),
        ({"name": "ok", "colour": "blue"}, "colour"),
        ({}, "name"),
        ({"name": None}, "name"),
    ],
)
async def test_every_validation_rule(refusing_client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    client = refusing_client
    error = assert_error(await client.post("/api/vms", json=body), 422, "VALIDATION_ERROR")
    assert error["field"] == field
    names = [vm["name"] for vm in (await client.get("/api/vms")).json()]
    assert names == ["test"]  # nothing half-created


async def test_limens_own_rules_come_with_the_rule_broken_for_the_page_to_word(
    shared: SharedApp, refusing_client: httpx.AsyncClient,
) -> None:
    """Besides the English details: what a Korean page shows at the field (``ruleText`` in i18n.js)."""
    async def rule(body: dict[str, Any]) -> Any:
        return assert_error(await refusing_client.post("/api/vms", json=body), 422, "VALIDATION_ERROR").get("rule")

    host_cpus, host_memory = await services_of(shared.app).hypervisor.host_info()
    assert await rule({"name": "가상머신"}) == {"kind": "vm_name"}
    assert await rule({"name": "ok", "vcpus": 100000}) == {
        "kind": "range", "min": 1, "max": host_cpus, "unit": "", "limit": "host_cpus"}
    assert await rule({"name": "ok", "memory_mib": 16}) == {
        "kind": "range", "min": 32, "max": host_memory, "unit": "MiB", "limit": "host_memory"}
    assert await rule({"name": "ok", "disk_gib": 4096}) == {"kind": "range", "min": 1, "max": 2048, "unit": "GiB"}
    # A number that is not a whole one: its own rule (the pages said pydantic's English "valid integer").
    assert await rule({"name": "ok", "vcpus": "two"}) == {"kind": "whole_number"}
    assert await rule({"name": "ok", "memory_mib": 64.5}) == {"kind": "whole_number"}
    assert await rule({"name": 5}) is None  # another type error: pydantic's words only
    assert await rule({}) == {"kind": "required"}  # pydantic's English "Field required" on a Korean page
    # The boot order and the ISO (an image deleted while the New VM form was open) spoke English only.
    assert await rule({"name": "ok", "boot_order": ["floppy"]}) == {"kind": "one_of", "allowed": ["cdrom", "hd"]}
    assert await rule({"name": "ok", "boot_order": ["hd", "hd"]}) == {"kind": "no_repeat"}
    assert await rule({"name": "ok", "iso": "gone-meanwhile.iso"}) == {"kind": "iso_missing"}
    assert await rule({"name": "ok", "iso": "../etc/passwd.iso"}) == {"kind": "file_name"}


async def test_unknown_and_invalid_ids(client: httpx.AsyncClient) -> None:
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/start"), ("POST", "/stop"), ("POST", "/reboot")]:
        assert_error(await client.request(method, f"/api/vms/missing{path}"), 404, "VM_NOT_FOUND")
        assert_error(
            await client.request(method, f"/api/vms/00000000-0000-0000-0000-000000000001{path}"), 404, "VM_NOT_FOUND"
        )
        assert_error(await client.request(method, f"/api/vms/bad%20id{path}"), 400, "INVALID_VM_ID")


async def test_every_field_refused_is_named_at_once_in_the_forms_order(
    shared: SharedApp, refusing_client: httpx.AsyncClient,
) -> None:
    """Four wrong fields took four submits, each naming one: ``fields`` names them all, ``field`` the first."""
    host_cpus, _ = await services_of(shared.app).hypervisor.host_info()
    body = {"name": "-bad", "vcpus": host_cpus + 1, "memory_mib": 16, "disk_gib": 0, "iso": "missing.iso",
            "boot_order": ["floppy"]}
    error = assert_error(await refusing_client.post("/api/vms", json=body), 422, "VALIDATION_ERROR")
    assert [entry["field"] for entry in error["fields"]] == [
        "name", "vcpus", "memory_mib", "disk_gib", "iso", "boot_order"]
    assert error["field"] == "name" and error["rule"] == error["fields"][0]["rule"] == {"kind": "vm_name"}
    assert error["fields"][2] == {"field": "memory_mib", "details": error["fields"][2]["details"],
                                  "rule": error["fields"][2]["rule"]}
    assert error["fields"][2]["details"].startswith("must be between 32 and ")  # its own, no field name
    assert error["fields"][5]["rule"] == {"kind": "one_of", "allowed": ["cdrom", "hd"]}
    for entry in error["fields"]:  # each is said in the details too, once
        assert error["details"].count(f"{entry['field']}: {entry['details']}") == 1
    # One field wrong: the same shape, a list of one. Pydantic's refusals come in the same list.
    one = assert_error(await refusing_client.post("/api/vms", json={"name": "ok", "disk_gib": 0}), 422,
                       "VALIDATION_ERROR")
    assert [entry["field"] for entry in one["fields"]] == ["disk_gib"]
    typed = assert_error(await refusing_client.post("/api/vms", json={"name": 5, "vcpus": "two"}), 422,
                         "VALIDATION_ERROR")
    assert [entry["field"] for entry in typed["fields"]] == ["name", "vcpus"]
    assert typed["fields"][1]["rule"] == {"kind": "whole_number"} and "rule" not in typed["fields"][0]
    # A settings edit too: name and memory at once.
    edit = assert_error(await refusing_client.patch("/api/vms/test", json={"name": "-bad", "memory_mib": 16}),
                        422, "VALIDATION_ERROR")
    assert [entry["field"] for entry in edit["fields"]] == ["name", "memory_mib"]
    assert [vm["name"] for vm in (await refusing_client.get("/api/vms")).json()] == ["test"]


@pytest.mark.parametrize(("method", "path", "body", "rules"), [
    # A type error in one field, limen's rules broken in others: every one in the first answer, in form order.
    ("POST", "/api/vms", {"name": "v" * 64, "memory_mib": "abc", "boot_order": ["floppy"]},
     {"name": "vm_name", "memory_mib": "whole_number", "boot_order": "one_of"}),
    ("POST", "/api/vms", {"name": "-bad", "vcpus": 10**6, "memory_mib": "abc", "colour": "red"},
     {"name": "vm_name", "vcpus": "range", "memory_mib": "whole_number", "colour": None}),
    ("PATCH", "/api/vms/test", {"name": "-bad", "vcpus": "two", "boot_order": ["hd", "hd"]},
     {"name": "vm_name", "vcpus": "whole_number", "boot_order": "no_repeat"}),
    ("POST", "/api/users", {"name": "a\u0007b", "password": 12345678}, {"name": "no_control_chars", "password": None}),
    ("POST", "/api/users", {"name": 5, "password": "short"}, {"name": None, "password": "length"}),
    ("POST", "/api/vms/test/snapshots", {"name": "-bad", "description": 5}, {"name": "vm_name", "description": None}),
    # pydantic alone checks a quota: it names every field itself, its ceiling too.
    ("PUT", "/api/users/admin/quota", {"vms": "x", "vcpus": -1, "memory_mib": 10**30},
     {"vms": "whole_number", "vcpus": "at_least", "memory_mib": "at_most"}),
    # A null beside a type error: each named, not one refusal of the whole body.
    ("PATCH", "/api/vms/test", {"name": None, "vcpus": "x"}, {"name": None, "vcpus": "whole_number"}),
    # Every other route whose body has rules of limen's own.
    ("POST", "/api/tokens", {"name": "x" * 101, "bogus": 1}, {"name": "length", "bogus": None}),
    ("POST", "/api/hosts", {"name": "-x", "uri": 5}, {"name": "host_name", "uri": None}),
    ("POST", "/api/hosts", {"name": "h1", "uri": "http://h1/", "console_address": "a b", "bogus": 1},
     {"uri": None, "console_address": None, "bogus": None}),
    ("POST", "/api/vms/test/disks/vda/resize", {"size_gib": 0, "x": 1}, {"size_gib": "range", "x": None}),
    ("POST", "/api/vms/test/disks/vda/resize", {"size_gib": "x", "size_bytes": 513},
     {"size_gib": "whole_number", "size_bytes": None}),
    ("PUT", "/api/vms/test/media", {"iso": "../x", "force": "yes"}, {"iso": "file_name", "force": None}),
    ("PUT", "/api/vms/test/media", {"iso": "gone.iso", "force": "yes"}, {"iso": "iso_missing", "force": None}),
])
async def test_type_errors_and_rule_refusals_come_in_one_answer(
    refusing_client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], rules: dict[str, str | None],
) -> None:
    error = assert_error(await refusing_client.request(method, path, json=body), 422, "VALIDATION_ERROR")
    assert {entry["field"]: entry.get("rule", {}).get("kind") for entry in error["fields"]} == rules
    assert [entry["field"] for entry in error["fields"]] == list(rules)
    assert error["field"] == next(iter(rules))
    for entry in error["fields"]:
        assert f"{entry['field']}: {entry['details']}" in error["details"]
    assert [vm["name"] for vm in (await refusing_client.get("/api/vms")).json()] == ["test"]


@pytest.mark.parametrize(("iso", "kind"), [
    ("nope.iso", "iso_missing"), ("../x.iso", "file_name"), ("x" * 300 + ".iso", "max_bytes"),
    ("a\u0007.iso", "no_control_chars"),
])
async def test_a_cd_is_refused_as_a_create_refuses_it(
    refusing_client: httpx.AsyncClient, shared: SharedApp, iso: str, kind: str,
) -> None:
    created = assert_error(await refusing_client.post("/api/vms", json={"name": "ok", "iso": iso}), 422,
                           "VALIDATION_ERROR")
    changed = assert_error(await refusing_client.put("/api/vms/test/media", json={"iso": iso}), 422,
                           "VALIDATION_ERROR")
    iso_dir = str(services_of(shared.app).hypervisor.settings.iso_dir)
    for error in (created, changed):
        assert (error["field"], error["rule"]["kind"]) == ("iso", kind)
        assert iso_dir not in error["details"]  # the name alone: the host's directory is not every user's to see
    assert created["fields"] == changed["fields"]


async def test_a_host_name_has_its_rule(refusing_client: httpx.AsyncClient) -> None:
    error = assert_error(await refusing_client.post("/api/hosts", json={"name": "-x", "uri": "test:///default"}),
                         422, "VALIDATION_ERROR")
    assert (error["field"], error["rule"]) == ("name", {"kind": "host_name"})
    assert [host["name"] for host in (await refusing_client.get("/api/hosts")).json()] == ["local"]


async def test_a_host_uri_that_is_no_uri_is_refused(refusing_client: httpx.AsyncClient) -> None:
    # An unclosed IPv6 address: urlsplit raises, and the host was answered INTERNAL_ERROR.
    error = assert_error(await refusing_client.post("/api/hosts", json={"name": "h1", "uri": "qemu+tcp://[h/system"}),
                         422, "VALIDATION_ERROR")
    assert error["field"] == "uri"


async def test_rules_that_cannot_run_beside_a_refused_body_are_skipped(refusing_client: httpx.AsyncClient) -> None:
    """A body refused as a whole (not an object, no field given) names no field that passed: pydantic's alone."""
    for body in (["-bad"], {}):
        error = assert_error(await refusing_client.patch("/api/vms/test", json=body), 422, "VALIDATION_ERROR")
        assert [entry["field"] for entry in error["fields"]] == ["body"]


async def test_a_body_with_thousands_of_problems_gets_a_short_answer(refusing_client: httpx.AsyncClient) -> None:
    # 60,000 unknown keys made a 2.4 MB answer naming each one.
    body = {"name": "ok", **{f"extra{number}": "x" * 50 for number in range(5000)}}
    refused = await refusing_client.post("/api/vms", json=body)
    error = assert_error(refused, 422, "VALIDATION_ERROR")
    assert len(refused.content) < 5000 and "and 4990 more" in error["details"], len(refused.content)


async def test_routing_errors_are_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/nothing"), 404, "NOT_FOUND")
    assert_error(await client.put("/api/vms"), 405, "METHOD_NOT_ALLOWED")
    # One slash too many is not found: no empty 307 to the path without it (DELETE …/a.iso%2F is not a.iso).
    for method, path in (("POST", "/api/vms/test/start/"), ("GET", "/api/vms/"), ("DELETE", "/api/isos/a.iso%2F")):
        assert_error(await client.request(method, path), 404, "NOT_FOUND")
    assert_error(
        await client.post("/api/vms", content=b"{not json", headers={"content-type": "application/json"}),
        400, "INVALID_REQUEST",
    )


async def no_bytes() -> AsyncIterator[bytes]:
    return
    yield b""


async def test_isos_are_listed(client: httpx.AsyncClient) -> None:
    names = [iso["name"] for iso in (await client.get("/api/isos")).json()]
    # Invalid UTF-8 in the name (%ff) decodes to U+FFFD: the file would have been stored under another name.
    garbled = await client.post("/api/isos?name=h1%ff.iso", content=b"\0" * 512)
    assert "not valid UTF-8" in assert_error(garbled, 422, "VALIDATION_ERROR")["details"]
    name = f"empty-{uuid.uuid4().hex[:8]}.iso"  # the ISO directory is the host's: a name no run left there
    for chunked in (False, True):  # an empty body, declared (Content-Length: 0) or not
        empty = await client.post(f"/api/isos?name={name}", content=no_bytes() if chunked else b"")
        assert "empty" in assert_error(empty, 400, "INVALID_REQUEST")["details"]
    assert name not in [iso["name"] for iso in (await client.get("/api/isos")).json()]
    assert DEMO_ISO in names


STRANGE_VALUES: list[Any] = [
    None, True, -1, 0, 2**63, -(2**63), 1e308, 1.5, "", " ", "\x00", "é" * 300,
    "'; DROP TABLE vms; --", "<script>alert(1)</script>", "../" * 20, [], {}, [1, 2], {"a": {"b": []}},
]


@pytest.mark.parametrize("value", STRANGE_VALUES, ids=range(len(STRANGE_VALUES)))
async def test_no_input_yields_a_server_error(refusing_client: httpx.AsyncClient, value: Any) -> None:
    client = refusing_client
    for field in ("name", "vcpus", "memory_mib", "disk_gib", "iso", "boot_order"):
        body = {"name": "fuzz", "memory_mib": 64, field: value}
        response = await client.post("/api/vms", json=body)
        assert response.status_code < 500, (field, value, response.text)
        if response.status_code == 201:
            await client.delete("/api/vms/fuzz?delete_disks=true")


async def test_no_path_or_query_yields_a_server_error(refusing_client: httpx.AsyncClient) -> None:
    client = refusing_client
    for path in ("/api/vms/", "/api/vms/%2e%2e", "/api/vms/" + "x" * 5000, "/api/vms/%ff%fe", "/api/vms/a?force=x"):
        for method in ("GET", "POST", "DELETE"):
            response = await client.request(method, path)
            assert response.status_code < 500, (method, path, response.text)
    response = await client.post("/api/vms/test/stop?force=notabool")
    assert_error(response, 422, "VALIDATION_ERROR")
