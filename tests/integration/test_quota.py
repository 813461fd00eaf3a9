"""Quotas on a running ``limen serve`` over the real libvirtd: parallel creates against the last free
slots (one server, and two servers on one database), and refusals at start, hardware edit and disk grow.

Each test's user has a unique name, so VMs other tests (or engineers) own on the shared libvirtd never
count toward it; its VMs have ``vm_names`` names and are removed after the test.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from limen.db import Database
from limen.hypervisor.models import Vm
from limen.quota import Footprint, QuotaLedger
from limen.settings import Settings
from tests.conftest import TEST_POOL_DIR
from tests.support.console import ConsoleTranscript, client, read_console, read_frames
from tests.support.databases import fetch_all, on_postgresql
from tests.support.server import LimenProcess

pytestmark = pytest.mark.integration


def new_user(server: LimenProcess, quota: dict[str, int | None]) -> dict[str, str]:
    """A plain user with ``quota`` set by the admin; returns its bearer header."""
    name = f"quota-{uuid.uuid4().hex[:8]}"
    made = httpx.post(f"{server.base_url}/api/users", json={"name": name, "password": "a long password"},
                      headers=server.auth_headers, timeout=30)
    assert made.status_code == 201, made.text
    put = httpx.put(f"{server.base_url}/api/users/{name}/quota", json=quota, headers=server.auth_headers, timeout=30)
    assert put.status_code == 200, put.text
    assert put.json()["limits"] | quota == put.json()["limits"]
    token = httpx.post(f"{server.base_url}/api/tokens", json={"name": "quota test", "user": name},
                       headers=server.auth_headers, timeout=30)
    assert token.status_code == 201, token.text
    return {"Authorization": f"Bearer {token.json()['secret']}"}


async def parallel_creates(servers: list[LimenProcess], headers: dict[str, str], names: list[str],
                           **spec: Any) -> list[httpx.Response]:
    """One POST /api/vms per name, all at once, spread over ``servers`` in turn."""
    clients = [httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=httpx.Limits(max_connections=50))
               for server in servers]
    try:
        return list(await asyncio.gather(*(
            clients[index % len(clients)].post("/api/vms", json={"name": name, "vcpus": 1, "memory_mib": 64, **spec},
                                               headers=headers)
            for index, name in enumerate(names))))
    finally:
        for client in clients:
            await client.aclose()


def assert_exactly_three(responses: list[httpx.Response]) -> None:
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 3 + [409] * 17, [response.text for response in responses if response.status_code
                                                not in (201, 409)]
    for refused in (response.json() for response in responses if response.status_code == 409):
        assert refused["code"] == "QUOTA_EXCEEDED", refused
        assert refused["quota"]["resource"] == "vms" and refused["quota"]["limit"] == 3
        assert refused["quota"]["usage"] == 3, refused  # never counted a create twice
        assert "delete a VM" in refused["details"]


def test_twenty_parallel_creates_with_room_for_three_make_exactly_three(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str]
) -> None:
    server = limen_server()
    headers = new_user(server, {"vms": 3})
    names = [vm_names() for _ in range(20)]
    responses = asyncio.run(parallel_creates([server], headers, names))
    assert_exactly_three(responses)
    listed = httpx.get(f"{server.base_url}/api/vms", headers=headers, timeout=30).json()
    assert len(listed) == 3
    mine = httpx.get(f"{server.base_url}/api/quota", headers=headers, timeout=30).json()
    assert mine["usage"]["vms"] == 3 and mine["limits"]["vms"] == 3
    # Deleting one frees its slot.
    deleted = httpx.delete(f"{server.base_url}/api/vms/{listed[0]['name']}", headers=headers, timeout=30,
                           params={"delete_disks": "true"})  # a plain user's VM goes with its disks
    assert deleted.status_code == 200, deleted.text
    again = httpx.post(f"{server.base_url}/api/vms", json={"name": vm_names(), "vcpus": 1, "memory_mib": 64},
                       headers=headers, timeout=30)
    assert again.status_code == 201, again.text


def test_parallel_creates_across_two_servers_on_one_database_make_exactly_three(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str]
) -> None:
    first = limen_server()
    second = limen_server()  # the same data dir, so the same SQLite file
    headers = new_user(first, {"vms": 3})
    responses = asyncio.run(parallel_creates([first, second], headers, [vm_names() for _ in range(20)]))
    assert_exactly_three(responses)
    assert len(httpx.get(f"{second.base_url}/api/vms", headers=headers, timeout=30).json()) == 3


@pytest.mark.runs_alone  # counts every VM on the host
def test_system_wide_cap_holds_for_admins_too(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str]
) -> None:
    server = limen_server()
    total = len(httpx.get(f"{server.base_url}/api/vms", headers=server.auth_headers, timeout=30).json())
    server.stop()
    server = limen_server(LIMEN_QUOTA_TOTAL_VMS=str(total + 2))
    responses = asyncio.run(parallel_creates([server], server.auth_headers, [vm_names() for _ in range(6)]))
    # Other engineers' VMs on the shared libvirtd may come and go meanwhile: at most two of ours are made.
    made = [response for response in responses if response.status_code == 201]
    assert 1 <= len(made) <= 2, [response.text for response in responses]
    refused = [response.json() for response in responses if response.status_code != 201]
    assert all(body["code"] == "QUOTA_EXCEEDED" and body["quota"]["scope"] == "system-wide" for body in refused)


def error(response: httpx.Response, resource: str) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == "QUOTA_EXCEEDED" and body["quota"]["resource"] == resource, body
    return body


def test_start_edit_and_disk_growth_are_checked(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str]
) -> None:
    server = limen_server()
    headers = new_user(server, {"vcpus": 1, "memory_mib": 256, "disk_gib": 2})
    api = httpx.Client(base_url=server.base_url, headers=headers, timeout=60)
    big, small = vm_names(), vm_names()
    # A VM that could never start within the quota is refused at create (the host has 2 CPUs).
    body = error(api.post("/api/vms", json={"name": big, "vcpus": 2, "memory_mib": 64}), "vcpus")
    assert "could never start" in body["details"]
    assert api.post("/api/vms", json={"name": big, "vcpus": 1, "memory_mib": 128, "disk_gib": 1}).status_code == 201
    assert api.post("/api/vms", json={"name": small, "vcpus": 1, "memory_mib": 64}).status_code == 201
    # Disk: 1 GiB of 2 in use; growing to 3 would need 2 more.
    body = error(api.post(f"/api/vms/{big}/disks/vda/resize", json={"size_gib": 3}), "disk_gib")
    assert body["quota"] == {"scope": body["quota"]["scope"], "resource": "disk_gib", "limit": 2, "usage": 1,
                             "requested": 2, "free": 1}
    grown = api.post(f"/api/vms/{big}/disks/vda/resize", json={"size_gib": 2})
    assert grown.status_code == 200, grown.text
    # A disk of a new VM counts too.
    error(api.post("/api/vms", json={"name": vm_names(), "vcpus": 1, "memory_mib": 64, "disk_gib": 1}), "disk_gib")
    # Start: the one running vCPU leaves none for the second VM.
    assert api.post(f"/api/vms/{big}/start").status_code == 200
    refused = error(api.post(f"/api/vms/{small}/start"), "vcpus")
    assert "stop a running VM" in refused["details"]
    assert api.get(f"/api/vms/{small}").json()["state"] == "stopped"
    # Edit: a running VM's new values count at once (they apply at its next start).
    error(api.patch(f"/api/vms/{big}", json={"memory_mib": 512}), "memory_mib")
    error(api.patch(f"/api/vms/{big}", json={"vcpus": 2}), "vcpus")
    # A stopped VM's must fit on their own; less is always fine.
    error(api.patch(f"/api/vms/{small}", json={"memory_mib": 512}), "memory_mib")
    assert api.patch(f"/api/vms/{small}", json={"memory_mib": 32}).status_code == 200
    assert api.post(f"/api/vms/{big}/stop", params={"force": "true"}).status_code == 200
    assert api.post(f"/api/vms/{small}/start").status_code == 200
    error(api.post(f"/api/vms/{big}/start"), "vcpus")
    usage = api.get("/api/quota").json()["usage"]
    assert usage == {"vms": 2, "vcpus": 1, "memory_mib": 32, "disk_gib": 2}
    api.post(f"/api/vms/{small}/stop", params={"force": "true"})


def test_a_disk_outside_every_storage_pool_counts_and_its_growth_is_checked(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str], tmp_path: Path
) -> None:
    """A VM defined outside limen, its disk a file no pool holds, given to a user: the disk counted as 0
    bytes, and its growth was not checked at all (a user with 6 GiB grew such a disk to 2 TB)."""
    import libvirt

    from tests.conftest import QEMU_URI

    server = limen_server()
    headers = new_user(server, {"vcpus": 1, "memory_mib": 256, "disk_gib": 2})
    api = httpx.Client(base_url=server.base_url, headers=headers, timeout=60)
    name, image = vm_names(), tmp_path / "outside-every-pool.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "1G"], check=True)
    conn = libvirt.open(QEMU_URI)
    try:
        conn.defineXML(f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
          <os><type arch='x86_64'>hvm</type></os>
          <devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
            <source file='{image}'/><target dev='vda' bus='virtio'/></disk></devices></domain>""")
    finally:
        conn.close()
    given = httpx.put(f"{server.base_url}/api/vms/{name}/owner", json={"owner": api.get("/api/me").json()["name"]},
                      headers=server.auth_headers, timeout=30)
    assert given.status_code == 200, given.text
    (disk,) = [d for d in api.get(f"/api/vms/{name}").json()["disks"] if d["device"] == "disk"]
    assert disk["capacity_bytes"] == 1 << 30, disk
    assert api.get("/api/quota").json()["usage"]["disk_gib"] == 1
    assert api.post(f"/api/vms/{name}/start").status_code == 200
    body = error(api.post(f"/api/vms/{name}/disks/vda/resize", json={"size_gib": 2000}), "disk_gib")
    assert (body["quota"]["usage"], body["quota"]["requested"]) == (1, 1999), body
    grown = api.post(f"/api/vms/{name}/disks/vda/resize", json={"size_gib": 2})
    assert grown.status_code == 200, grown.text
    assert api.get("/api/quota").json()["usage"]["disk_gib"] == 2
    api.post(f"/api/vms/{name}/stop", params={"force": "true"})


def test_the_consoles_auto_start_is_checked_too(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str]
) -> None:
    server = limen_server()
    headers = new_user(server, {"vcpus": 1})
    api = httpx.Client(base_url=server.base_url, headers=headers, timeout=60)
    running, stopped = vm_names(), vm_names()
    for name in (running, stopped):
        assert api.post("/api/vms", json={"name": name, "vcpus": 1, "memory_mib": 64}).status_code == 201
    assert api.post(f"/api/vms/{running}/start").status_code == 200
    ticket = api.post(f"/api/vms/{stopped}/console-ticket").json()["ticket"]
    transcript = asyncio.run(read_console(f"{server.ws_url}/api/vms/{stopped}/console?ticket={ticket}&notices=1"))
    assert (transcript.close_code, transcript.close_reason) == (4520, "QUOTA_EXCEEDED"), transcript
    assert transcript.errors[0]["stage"] == "start_vm" and "quota on vCPUs" in transcript.errors[0]["details"]
    assert api.get(f"/api/vms/{stopped}").json()["state"] == "stopped"
    # Once it fits, the console starts it; both starts are VM actions of the audit trail, like the API's.
    api.post(f"/api/vms/{running}/stop", params={"force": "true"})
    ticket = api.post(f"/api/vms/{stopped}/console-ticket").json()["ticket"]
    asyncio.run(console_reaches_the_stream(f"{server.ws_url}/api/vms/{stopped}/console?ticket={ticket}"))
    assert api.get(f"/api/vms/{stopped}").json()["state"] == "running"
    rows = [(row["action"], row["result_code"], row["details"])
            for row in api.get("/api/vm-actions", params={"vm": stopped}).json()]
    assert rows == [("start", "OK", "from the VNC console"),
                    ("start", "QUOTA_EXCEEDED", "from the VNC console; vCPUs quota: 2 over 1"), ("create", "OK", "")]
    api.post(f"/api/vms/{stopped}/stop", params={"force": "true"})


async def console_reaches_the_stream(url: str) -> None:
    """Opens the console and reads until the VM's first bytes (the RFB banner), then leaves."""
    async with client(url) as ws:
        transcript = ConsoleTranscript()
        await asyncio.wait_for(read_frames(ws, transcript, time.monotonic(), until_binary=1), 30)
    assert transcript.errors == [] and transcript.binary[0].startswith(b"RFB "), transcript


def test_a_create_killed_mid_way_gives_its_slot_back_at_the_restart(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str], tmp_path: Path
) -> None:
    server = limen_server()
    headers = new_user(server, {"vms": 1})
    doomed, later = vm_names(), vm_names()
    volume = TEST_POOL_DIR / f"{doomed}-disk0.qcow2"

    def post() -> None:
        try:
            httpx.post(f"{server.base_url}/api/vms", json={"name": doomed, "memory_mib": 64, "disk_gib": 1},
                       headers=headers, timeout=30)
        except httpx.HTTPError:
            pass  # the server died under it: that is the point

    try:
        thread = threading.Thread(target=post, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not volume.exists():  # the reservation is in the database by then
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.0005)
        server.kill(signal.SIGKILL)
        thread.join(timeout=30)
        assert fetch_all(tmp_path / "data", "SELECT vm_name FROM quota_reservations") == [(doomed,)]
        server.start()  # its first sweep runs before it answers: the dead instance's reservation goes
        assert fetch_all(tmp_path / "data", "SELECT count(*) FROM quota_reservations") == [(0,)]
        made = httpx.post(f"{server.base_url}/api/vms", json={"name": later, "memory_mib": 64}, headers=headers,
                          timeout=30)
        assert made.status_code == 201, made.text
    finally:
        volume.unlink(missing_ok=True)


def hold_quota_lock(settings: Settings) -> Callable[[], None]:
    """Takes what a quota check must wait for, as another process would, and returns its release: SQLite's
    write lock of the whole database, or on PostgreSQL the row lock of ``quota_lock`` (an open transaction
    that updated it)."""
    if on_postgresql():
        engine = create_engine(settings.db_url)
        connection = engine.connect()
        transaction = connection.begin()
        connection.execute(text("UPDATE quota_lock SET generation = generation + 1 WHERE id = 1"))

        def release_row() -> None:
            transaction.rollback()
            connection.close()
            engine.dispose()

        return release_row
    holder = sqlite3.connect(str(settings.data_dir / "limen.db"), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    def release_file() -> None:
        holder.rollback()
        holder.close()

    return release_file


async def test_a_check_waits_past_a_long_held_lock_for_its_turn(make_settings: Callable[..., Settings]) -> None:
    """Another process holding the quota lock longer than SQLite's busy timeout (5 s) delays the check; it
    does not fail it (on PostgreSQL the row lock waits as long)."""
    settings = make_settings()
    db = Database(settings.db_url)
    db.migrate()
    ledger = QuotaLedger(db, settings, time.time, instance_id="i")

    async def no_vms() -> list[Vm]:
        return []

    release = threading.Timer(6.5, hold_quota_lock(settings))
    release.start()
    started = time.monotonic()
    try:
        async with ledger.reserving(Footprint("vm", None, False, 1, 64, 0), no_vms):
            assert time.monotonic() - started >= 6
    finally:
        release.join()
        db.close()
