"""Two real libvirt hosts under one ``limen serve``: the machine's libvirtd (qemu:///system, the default host)
and a second libvirtd in its own mount namespace on a loopback address of its own (tests/support/extra_host.py),
reached over qemu+tcp.

Placement spreads VMs over both, the list merges them, a hung host (SIGSTOP of its libvirtd) shows its VMs as
"host unavailable" within LIMEN_LIBVIRT_TIMEOUT while the other host's VMs keep working, and SIGCONT brings it
back without restarting limen. A console of a VM on the second host types into GRUB through its VNC on the
host's console address, and ends with HYPERVISOR_UNAVAILABLE when that host hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import libvirt
import libvirt_qemu  # type: ignore[import-untyped]
import pytest

from limen.errors import ErrorCode
from limen.web.png import parse_ppm
from tests.conftest import DEMO_ISO, QEMU_URI
from tests.support.access import provision_user
from tests.support.console import ConsoleTranscript, client, read_frames
from tests.support.extra_host import ExtraHost, pick_address
from tests.support.libvirt_cleanup import domain_exists, remove_domain, volume_exists
from tests.support.rfb_client import RfbStream, handshake, request_full_update
from tests.support.serial import SerialReader
from tests.support.server import LimenProcess
from tests.support.sse import SseStream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TIMEOUT = 3.0  # LIMEN_LIBVIRT_TIMEOUT of the servers here
SLACK = 3.0  # a loaded 2-core machine; the prober asks every second
EXTRA = "extra"
SERIAL_CONNECTED = "Serial console connected"


@pytest.fixture(scope="module")
def extra_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExtraHost]:
    address, ports = pick_address()
    host = ExtraHost(tmp_path_factory.mktemp("extra-host"), address, ports).start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture
def server(limen_server: Callable[..., LimenProcess], extra_host: ExtraHost) -> Iterator[LimenProcess]:
    process = limen_server(LIMEN_LIBVIRT_TIMEOUT=str(TIMEOUT))
    yield process
    extra_host.resume()  # whatever the test did to it


@pytest.fixture
def api(server: LimenProcess, extra_host: ExtraHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, headers=server.auth_headers) as client_:
        added = client_.post("/api/hosts", json={"name": EXTRA, "uri": extra_host.uri,
                                                 "console_address": extra_host.address})
        assert added.status_code == 201, added.text
        yield client_


@pytest.fixture
def names(vm_names: Callable[[], str], extra_host: ExtraHost) -> Iterator[Callable[[], str]]:
    """vm_names, whose VMs are also removed from the extra host."""
    made: list[str] = []

    def make() -> str:
        made.append(vm_names())
        return made[-1]

    yield make
    extra_host.resume()
    for name in made:
        remove_domain(extra_host.uri, name)


def _create(api: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/vms", json={"name": name, "vcpus": 1, "memory_mib": 64, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _free(api: httpx.Client) -> dict[str, int]:
    hosts = api.get("/api/hosts").json()
    assert {host["name"] for host in hosts} == {"local", EXTRA}
    assert all(host["available"] for host in hosts), hosts
    return {host["name"]: host["free_memory_mib"] for host in hosts}


def test_placement_puts_vms_on_both_hosts_and_the_list_merges_them(api: httpx.Client,
                                                                    names: Callable[[], str]) -> None:
    free = _free(api)
    roomiest, other = sorted(free, key=lambda host: (-free[host], host))  # ties: by name, as placement
    # The first VM takes so much of the roomiest host's room that the other host has more afterwards, by a
    # margin larger than what other tests on the shared libvirtd define meanwhile.
    margin = min(4096, free[other] // 2)
    first = _create(api, names(), memory_mib=free[roomiest] - free[other] + margin)
    second = _create(api, names())
    assert (first["host"], second["host"]) == (roomiest, other)
    both = {first["name"], second["name"]}

    listed = {vm["name"]: vm for vm in api.get("/api/vms").json() if vm["name"] in both}
    assert {name: (vm["host"], vm["host_available"]) for name, vm in listed.items()} == {
        first["name"]: (roomiest, True), second["name"]: (other, True)}
    # Found by name and by UUID wherever it is; names are unique across hosts.
    on_extra = first if roomiest == EXTRA else second
    assert api.get(f"/api/vms/{on_extra['uuid']}").json()["host"] == EXTRA
    assert api.get(f"/api/vms/{on_extra['name']}").json()["host"] == EXTRA
    taken = api.post("/api/vms", json={"name": on_extra["name"], "host": "local"})
    assert taken.status_code == 409 and taken.json()["code"] == "VM_ALREADY_EXISTS"
    # One name asked for on both hosts at once: one create wins.
    racing = names()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda host: api.post("/api/vms", json={"name": racing, "memory_mib": 64,
                                                                         "host": host}),
                                ["local", EXTRA, "local", EXTRA]))
    assert sorted(answer.status_code for answer in answers) == [201, 409, 409, 409], [a.text for a in answers]
    assert [vm["name"] for vm in api.get("/api/vms").json()].count(racing) == 1
    # Asked for explicitly, and actions go to the VM's own host.
    third = _create(api, names(), host=EXTRA, iso=DEMO_ISO)
    assert third["host"] == EXTRA
    started = api.post(f"/api/vms/{third['name']}/start")
    assert started.status_code == 200 and started.json()["state"] == "running"
    consoles = {host["name"]: host["console_address"] for host in api.get("/api/hosts").json()}
    assert started.json()["vnc"]["host"] == consoles[EXTRA]
    assert api.delete(f"/api/vms/{third['name']}").status_code == 200
    assert api.get(f"/api/vms/{third['name']}").json()["code"] == "VM_NOT_FOUND"


def test_a_vm_started_while_it_moves_cold_is_not_moved_and_keeps_its_disk(
        api: httpx.Client, names: Callable[[], str], extra_host: ExtraHost, server: LimenProcess) -> None:
    """Nothing holds a stopped VM while limen streams its disks to another host: started meanwhile (here with
    libvirt, as another limen or virsh would), its copy was torn, yet the move went on and removed the
    source's disk from under the running VM, leaving it defined on both hosts. Now limen's own start, delete
    and snapshot are refused meanwhile (VM_MOVING), and so is the target host's removal; a start by other
    means fails the move, saying so, the target's copy is removed, and the VM runs on where it was with its
    disk."""
    vm = _create(api, names(), host="local", disk_gib=1)
    disk = vm["disks"][0]["path"]
    # Data to stream, so that the copy lasts long enough to start the VM during it.
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 768M", disk], check=True,
                   capture_output=True, timeout=120)
    volume_name = Path(disk).name

    def copying() -> bool:
        conn = libvirt.open(extra_host.uri)
        try:
            active = conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE)  # others list none
            return any(volume.name() == volume_name for pool in active for volume in pool.listAllVolumes())
        finally:
            conn.close()

    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=server.base_url, timeout=120,
                                                     headers=server.auth_headers) as mover:
        moving = pool.submit(mover.post, f"/api/vms/{vm['name']}/migrate", json={"host": EXTRA})
        deadline = time.monotonic() + 60
        while not copying():
            assert time.monotonic() < deadline and not moving.done(), "the target's volume never came"
            time.sleep(0.05)
        # limen's own changes are refused while it moves (an operation of the VM).
        for refused in (api.post(f"/api/vms/{vm['name']}/start"), api.delete(f"/api/vms/{vm['name']}"),
                        api.post(f"/api/vms/{vm['name']}/snapshots", json={"name": "meanwhile"})):
            assert refused.status_code == 409 and refused.json()["code"] == "VM_MOVING", refused.text
            assert f"migrate '{EXTRA}' still runs on VM" in refused.json()["details"], refused.text
        # Nor may its target host go (it was removed, and the VM arrived there listed nowhere).
        kept = api.delete(f"/api/hosts/{EXTRA}")
        assert kept.status_code == 409 and kept.json()["code"] == "HOST_IN_USE", kept.text
        assert f"is moving from local to {EXTRA}: retry once it is done" in kept.json()["details"], kept.text
        source = libvirt.open(QEMU_URI)
        try:
            source.lookupByName(vm["name"]).create()
        finally:
            source.close()
        answer = moving.result(timeout=120)
    assert answer.status_code == 409, answer.text
    error = answer.json()
    assert error["code"] == "VM_OPERATION_FAILED", error
    assert "changed while its disks were copied (it was started" in error["details"], error
    assert not domain_exists(extra_host.uri, vm["name"]) and not copying()
    there = api.get(f"/api/vms/{vm['name']}").json()
    assert (there["host"], there["state"]) == ("local", "running"), there
    assert volume_exists(QEMU_URI, disk)
    api.post(f"/api/vms/{vm['name']}/stop", params={"force": "true"})


def test_host_errors(api: httpx.Client, extra_host: ExtraHost, tmp_path: Path, server: LimenProcess) -> None:
    token = provision_user(server.database_url, "plain-user", "pw-plain-123")
    plain = {"Authorization": f"Bearer {token}"}
    for method, path in (("GET", "/api/hosts"), ("POST", "/api/hosts"), ("DELETE", f"/api/hosts/{EXTRA}"),
                         ("POST", f"/api/hosts/{EXTRA}/drain")):
        refused = httpx.request(method, f"{server.base_url}{path}", headers=plain,
                                json={"name": "x", "uri": "test:///default"})
        assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN", (method, path, refused.text)
    again = api.post("/api/hosts", json={"name": EXTRA, "uri": extra_host.uri})
    assert again.status_code == 409 and again.json()["code"] == "HOST_ALREADY_EXISTS"
    bad = api.post("/api/hosts", json={"name": "x", "uri": "http://example.com/"})
    assert bad.status_code == 422 and bad.json()["code"] == "VALIDATION_ERROR"
    assert api.delete("/api/hosts/local").json()["code"] == "HOST_IN_USE"
    assert api.delete("/api/hosts/nope").json()["code"] == "HOST_NOT_FOUND"
    unknown = api.post("/api/vms", json={"name": "limen-test-nohost", "host": "nope"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "HOST_NOT_FOUND"
    assert api.post(f"/api/hosts/{EXTRA}/drain", json={"draining": True}).json()["draining"] is True
    drained = api.post("/api/vms", json={"name": "limen-test-drained", "host": EXTRA})
    assert drained.status_code == 409 and drained.json()["code"] == "NO_HOST_FITS"


def _extra_vm_states(api: httpx.Client, name: str) -> bool:
    vm = next(vm for vm in api.get("/api/vms").json() if vm["name"] == name)
    available: bool = vm["host_available"]
    return available


def test_a_hung_host_shows_unavailable_while_the_other_works_and_comes_back(
    api: httpx.Client, names: Callable[[], str], extra_host: ExtraHost, server: LimenProcess
) -> None:
    remote = _create(api, names(), host=EXTRA)
    local = _create(api, names(), host="local", iso=DEMO_ISO)
    pid = server.pid
    assert _extra_vm_states(api, remote["name"])  # listed once: its host's list is remembered
    events = SseStream(f"{server.base_url}/api/events", server.auth_headers).start()
    try:
        events.next(event="ready")
        extra_host.pause()
        began = time.monotonic()
        # Its VMs are announced as changed when the host is marked, so pages reload them.
        announced = events.next(event="vm", timeout=TIMEOUT + SLACK).json
        while announced["uuid"] != remote["uuid"]:
            announced = events.next(event="vm", timeout=TIMEOUT + SLACK).json
        assert announced["type"] == "changed"
    finally:
        events.close()
    while _extra_vm_states(api, remote["name"]):
        assert time.monotonic() - began < TIMEOUT + SLACK, "the hung host's VMs still show as available"
        time.sleep(0.2)
    marked_after = time.monotonic() - began
    listed = {vm["name"]: vm for vm in api.get("/api/vms").json()}
    assert listed[remote["name"]]["host"] == EXTRA and listed[remote["name"]]["host_available"] is False
    assert listed[local["name"]]["host_available"] is True
    assert {host["name"]: host["available"] for host in api.get("/api/hosts").json()} == {"local": True, EXTRA: False}

    # The other host's VMs keep working, at their usual speed.
    for action in ("start", "stop?force=true"):
        asked = time.monotonic()
        answer = api.post(f"/api/vms/{local['name']}/{action}")
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - asked < TIMEOUT, f"{action} of a VM on the working host waited on the hung one"
    asked = time.monotonic()
    assert api.get("/api/vms").status_code == 200
    assert time.monotonic() - asked < TIMEOUT, "the merged list waits on a host known to be down"
    # The hung host's VM answers at once: as its host last listed it, marked; acting on it says why.
    stale = api.get(f"/api/vms/{remote['name']}")
    assert stale.status_code == 200 and (stale.json()["host"], stale.json()["host_available"]) == (EXTRA, False)
    gone = api.post(f"/api/vms/{remote['name']}/start")
    assert gone.status_code == 503 and gone.json()["code"] == "HYPERVISOR_UNAVAILABLE"
    assert EXTRA in gone.json()["details"]

    extra_host.resume()
    began = time.monotonic()
    while not _extra_vm_states(api, remote["name"]):
        assert time.monotonic() - began < 20, "the host did not come back after SIGCONT"
        time.sleep(0.3)
    assert api.get(f"/api/vms/{remote['name']}").json()["host"] == EXTRA
    assert server.pid == pid  # no restart
    print(f"marked unavailable after {marked_after:.1f} s")


class _Screen:
    """The screen of a VM on the extra host, read with QEMU's screendump through that host's libvirt."""

    def __init__(self, uri: str, name: str, tmp_path: Path) -> None:
        self.conn = libvirt.open(uri)
        self.dom = self.conn.lookupByName(name)
        self.tmp_path = tmp_path
        self.shots = 0

    def shot(self) -> tuple[int, int, bytes]:
        self.shots += 1
        path = self.tmp_path / f"screen-{self.shots}.ppm"
        command = json.dumps({"execute": "screendump", "arguments": {"filename": str(path)}})
        libvirt_qemu.qemuMonitorCommand(self.dom, command, 0)
        pixels = parse_ppm(path.read_bytes())
        path.unlink()
        return pixels

    def frames(self, seconds: float = 1.5) -> set[tuple[int, int, bytes]]:
        seen = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen.add(self.shot())
            time.sleep(0.05)
        return seen

    def still(self, timeout: float = 90) -> set[tuple[int, int, bytes]]:
        deadline = time.monotonic() + timeout
        last = self.frames()
        while True:
            now = self.frames()
            if now == last and any(any(pixels) for _w, _h, pixels in now):
                return now
            assert time.monotonic() < deadline, "the screen did not settle"
            last = now

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()


async def _type(stream: RfbStream, text: str) -> None:
    for char in text:
        keysym = 0xFF0D if char == "\n" else ord(char)
        await stream.write(struct.pack("!BBxxI", 4, 1, keysym))
        await stream.write(struct.pack("!BBxxI", 4, 0, keysym))
        await asyncio.sleep(0.03)


async def test_a_console_to_a_vm_on_the_other_host_types_into_grub_and_ends_when_the_host_hangs(
    api: httpx.Client, names: Callable[[], str], extra_host: ExtraHost, server: LimenProcess, tmp_path: Path
) -> None:
    vm = _create(api, names(), host=EXTRA, iso=DEMO_ISO)
    assert (await asyncio.to_thread(api.post, f"/api/vms/{vm['name']}/start")).status_code == 200
    vnc = (await asyncio.to_thread(api.get, f"/api/vms/{vm['name']}")).json()["vnc"]
    assert vnc["host"] == extra_host.address and extra_host.vnc_ports[0] <= vnc["port"] <= extra_host.vnc_ports[1]
    screen = _Screen(extra_host.uri, vm["name"], tmp_path)
    try:
        before = await asyncio.to_thread(screen.still)  # the grub> prompt
        url = f"{server.ws_url}/api/vms/{vm['uuid']}/console"
        async with client(url, additional_headers=server.auth_headers) as ws:
            transcript = ConsoleTranscript()
            started = time.monotonic()
            await read_frames(ws, transcript, started, until_binary=1)
            # The seed's status texts, byte for byte, with the port on the other host.
            assert f"Connecting to VNC server on port {vnc['port']}..." in transcript.statuses
            stream = RfbStream(ws, transcript.binary[0])
            init = await asyncio.wait_for(handshake(stream), 10)
            await asyncio.wait_for(request_full_update(stream, init), 10)
            await _type(stream, "echo limen\n")
            after = await asyncio.to_thread(screen.still)
            assert after.isdisjoint(before), "what was typed did not reach GRUB"

            # The host hangs: the console ends with HYPERVISOR_UNAVAILABLE within the bound, naming the host.
            extra_host.pause()
            hung = time.monotonic()
            closing = ConsoleTranscript()
            await asyncio.wait_for(read_frames(ws, closing, hung), TIMEOUT + SLACK + 5)
            ended_after = time.monotonic() - hung
        assert closing.close_code == 4300 and closing.close_reason == "HYPERVISOR_UNAVAILABLE"
        assert ended_after < TIMEOUT + SLACK, f"the console ended {ended_after:.1f} s after its host hung"
        # A live console's close carries only the code; the details, naming the host, are in the log.
        log_lines = (tmp_path / "log" / "limen.log").read_text().splitlines()
        ended = [line for line in log_lines if "console_error" in line and "HYPERVISOR" in line]
        assert ended and f"host '{EXTRA}'" in ended[-1] and f'"host": "{EXTRA}"' in ended[-1], ended
    finally:
        extra_host.resume()
        screen.close()


async def test_a_console_of_a_vm_migrated_live_ends_saying_so_and_opens_again_there(
    api: httpx.Client, names: Callable[[], str], extra_host: ExtraHost, server: LimenProcess
) -> None:
    """An open console of a VM migrated away ended with VM_STOPPED ("stopped or crashed"; the page offered
    "Start VM and connect" beside a Running badge). It ends with VM_MIGRATED, and a new one opens on the host
    the VM runs on now."""
    vm = _create(api, names(), host="local", iso=DEMO_ISO, disk_gib=1)
    assert (await asyncio.to_thread(api.post, f"/api/vms/{vm['name']}/start")).status_code == 200
    url = f"{server.ws_url}/api/vms/{vm['uuid']}/console"
    async with client(url, additional_headers=server.auth_headers) as ws:
        await read_frames(ws, ConsoleTranscript(), time.monotonic(), until_binary=1)
        moved = await asyncio.to_thread(api.post, f"/api/vms/{vm['uuid']}/migrate", json={"host": EXTRA})
        assert moved.status_code == 200, moved.text
        closing = ConsoleTranscript()
        await asyncio.wait_for(read_frames(ws, closing, time.monotonic()), 30)
    assert (closing.close_code, closing.close_reason) == (4109, "VM_MIGRATED")
    async with client(url, additional_headers=server.auth_headers) as ws:
        transcript = ConsoleTranscript()
        await read_frames(ws, transcript, time.monotonic(), until_binary=1)
    port = moved.json()["vnc"]["port"]
    assert f"Connecting to VNC server on port {port}..." in transcript.statuses, transcript.statuses


async def test_a_serial_console_of_a_vm_migrated_live_ends_saying_so_and_opens_again_there(
    api: httpx.Client, names: Callable[[], str], extra_host: ExtraHost, server: LimenProcess
) -> None:
    """The VM's serial stream is released before the live migration (libvirt 9.0 deadlocks when a console
    stream's abort meets the source's domain being freed at the migration's end): the session ends with
    VM_MIGRATED once the VM runs on the target, where a new one opens, and the source host still answers.
    From the private host to the machine's, so a deadlock would hang the private libvirtd only."""
    vm = _create(api, names(), host=EXTRA, iso=DEMO_ISO, disk_gib=1)
    try:
        assert (await asyncio.to_thread(api.post, f"/api/vms/{vm['name']}/start")).status_code == 200
        url = f"{server.ws_url}/api/vms/{vm['uuid']}/serial"
        async with client(url, additional_headers=server.auth_headers) as ws:
            reader = SerialReader(ws)
            await reader.until_status(SERIAL_CONNECTED, 20)
            moved = await asyncio.to_thread(api.post, f"/api/vms/{vm['uuid']}/migrate", json={"host": "local"})
            assert moved.status_code == 200, moved.text
            assert await reader.until_closed(30) == (ErrorCode.VM_MIGRATED.close_code, "VM_MIGRATED")
        async with client(url, additional_headers=server.auth_headers) as ws:
            await SerialReader(ws).until_status(SERIAL_CONNECTED, 20)
        hosts = {host["name"]: host for host in (await asyncio.to_thread(api.get, "/api/hosts")).json()}
        assert hosts[EXTRA]["available"] and hosts[EXTRA]["vm_count"] is not None, hosts[EXTRA]
    finally:
        # Through limen, which releases the serial stream it may still hold before the undefine; with its disk,
        # which the clean-up of ``names`` cannot find once the VM is gone (it reads a VM's definition).
        await asyncio.to_thread(api.delete, f"/api/vms/{vm['name']}", params={"delete_disks": "true"})


def test_migration_live_both_ways_and_cold(api: httpx.Client, names: Callable[[], str],
                                           extra_host: ExtraHost, server: LimenProcess) -> None:
    # Running, from the default host to the other: peer to peer (qemu+tcp target), its disk copied live.
    vm = _create(api, names(), host="local", iso=DEMO_ISO, disk_gib=1)
    assert api.post(f"/api/vms/{vm['name']}/start").status_code == 200
    # Set to start with its host, wherever that is (libvirt's migration and define dropped it).
    assert api.patch(f"/api/vms/{vm['name']}", json={"autostart": True}).json()["autostart"] is True
    old_disk = vm["disks"][0]["path"]
    events = SseStream(f"{server.base_url}/api/events", server.auth_headers).start()
    try:
        events.next(event="ready")
        moved = api.post(f"/api/vms/{vm['uuid']}/migrate", json={"host": EXTRA})
        assert moved.status_code == 200, moved.text
        # Its progress is in the event stream, then its end.
        operations: list[dict[str, Any]] = []
        while not operations or operations[-1]["state"] == "running":
            event = events.next(event="vm").json
            if event["uuid"] == vm["uuid"] and (event.get("operation") or {}).get("kind") == "migrate":
                operations.append(event["operation"])
    finally:
        events.close()
    assert operations[-1] == {"kind": "migrate", "state": "done", "progress": 100, "from_host": "local",
                              "to_host": EXTRA, "error": None}
    assert all(op["progress"] is None or 0 <= op["progress"] <= 99 for op in operations[:-1])
    there = moved.json()
    assert (there["host"], there["state"], there["uuid"], there["autostart"]) == (EXTRA, "running", vm["uuid"], True)
    assert there["vnc"]["host"] == extra_host.address
    assert not domain_exists(QEMU_URI, vm["name"]) and not volume_exists(QEMU_URI, old_disk)
    assert domain_exists(extra_host.uri, vm["name"])
    # And back, running, to the default host (qemu:///system, which the other daemon cannot dial: limen
    # holds both connections).
    back = api.post(f"/api/vms/{vm['name']}/migrate", json={"host": "local"})
    assert back.status_code == 200, back.text
    assert (back.json()["host"], back.json()["state"]) == ("local", "running")
    assert not domain_exists(extra_host.uri, vm["name"])
    again = api.post(f"/api/vms/{vm['name']}/migrate", json={"host": "local"})
    assert again.status_code == 409 and again.json()["code"] == "VM_ALREADY_ON_HOST"

    # Stopped: cold, its disk streamed through limen.
    cold = _create(api, names(), host=EXTRA, disk_gib=1)
    assert api.patch(f"/api/vms/{cold['name']}", json={"autostart": True}).json()["autostart"] is True
    moved = api.post(f"/api/vms/{cold['name']}/migrate", json={"host": "local"})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["host"], moved.json()["state"], moved.json()["autostart"]) == ("local", "stopped", True)
    assert volume_exists(QEMU_URI, moved.json()["disks"][0]["path"])
    assert not domain_exists(extra_host.uri, cold["name"])
    assert api.get(f"/api/vms/{cold['name']}").json()["host"] == "local"
