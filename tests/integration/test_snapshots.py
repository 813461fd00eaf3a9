"""Snapshots on the real libvirtd and QEMU, through a real ``limen serve``: a running VM's screen comes back
pixel for pixel after a revert, a stopped VM's disk data comes back (written and read with ``qemu-io``),
the refusals in the one error schema, the operation and its events, deletion of a VM with snapshots, and
the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import libvirt
import libvirt_qemu  # type: ignore[import-untyped]
import pytest

from limen.web.png import parse_ppm
from tests.conftest import DEMO_ISO, ISO_DIR, QEMU_URI, TEST_POOL, TEST_POOL_DIR
from tests.support.access import assert_error, provision_user
from tests.support.databases import cli_env
from tests.support.libvirt_cleanup import domain_exists
from tests.support.qemu_process import qemu_pid
from tests.support.server import LimenProcess
from tests.support.sse import SseStream

# Snapshots live in libvirt; the database holds each one's audit row, pending while it is taken and completed
# as SERVER_LOST by the sweep after a kill: the rows and the sweep that test_vm_lifecycle and
# test_crash_recovery run on both.
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]
LIMEN = str(Path(sys.executable).parent / "limen")

# Linux input key codes (what libvirt's send-key takes) of the characters these tests type.
_KEYS = {**{char: code for code, char in enumerate("qwertyuiop", 16)},
         **{char: code for code, char in enumerate("asdfghjkl", 30)},
         **{char: code for code, char in enumerate("zxcvbnm", 44)}, " ": 57, "\n": 28}


@pytest.fixture
def server(limen_server: Callable[..., LimenProcess]) -> LimenProcess:
    return limen_server()


@pytest.fixture
def api(server: LimenProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, headers=server.auth_headers) as client:
        yield client


def _database_url(server: LimenProcess) -> str:
    return server.database_url


def _create(api: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    created = api.post("/api/vms", json={"name": name, "memory_mib": 64, **fields})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _wait_operation(api: httpx.Client, operation: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while operation["state"] == "running":
        assert time.monotonic() < deadline, operation
        time.sleep(0.1)
        answer = api.get(f"/api/operations/{operation['id']}")
        assert answer.status_code == 200, answer.text
        operation = answer.json()
    return operation


def _snapshot(api: httpx.Client, vm: str, name: str, description: str = "") -> dict[str, Any]:
    started = api.post(f"/api/vms/{vm}/snapshots", json={"name": name, "description": description})
    assert started.status_code == 202, started.text
    assert started.json()["state"] == "running"  # the answer does not wait for the work
    done = _wait_operation(api, started.json())
    assert done["state"] == "done", done
    return done


class _Domain:
    """Straight libvirt access to a test VM: keys, the screen, the XML."""

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.conn = libvirt.open(QEMU_URI)
        self.name = name
        self.tmp_path = tmp_path
        self.shots = 0

    @property
    def dom(self) -> libvirt.virDomain:
        return self.conn.lookupByName(self.name)

    def type_text(self, text: str) -> None:
        for char in text:
            self.dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 30, [_KEYS[char]], 1, 0)
            time.sleep(0.03)

    def screen(self) -> tuple[int, int, bytes]:
        """The screen's pixels, as QEMU dumps them (PPM, read back to RGB)."""
        self.shots += 1
        path = self.tmp_path / f"screen-{self.shots}.ppm"
        command = json.dumps({"execute": "screendump", "arguments": {"filename": str(path)}})
        libvirt_qemu.qemuMonitorCommand(self.dom, command, 0)
        pixels = parse_ppm(path.read_bytes())
        path.unlink()
        return pixels

    def frames(self, seconds: float = 1.5) -> set[tuple[int, int, bytes]]:
        """Every distinct picture shown over ``seconds``: the text cursor blinks, so a still screen is
        one or two of them."""
        seen = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen.add(self.screen())
            time.sleep(0.05)
        return seen

    def wait_still(self, timeout: float = 90) -> set[tuple[int, int, bytes]]:
        """The frames of the screen once it stops changing (GRUB's prompt is up, or the text typed shows)."""
        deadline = time.monotonic() + timeout
        last = self.frames()
        while True:
            now = self.frames()
            if now == last and any(any(pixels) for _w, _h, pixels in now):
                return now
            assert time.monotonic() < deadline, "the screen did not settle"
            last = now

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def domain(tmp_path: Path) -> Iterator[Callable[[str], _Domain]]:
    opened: list[_Domain] = []

    def open_(name: str) -> _Domain:
        opened.append(_Domain(name, tmp_path))
        return opened[-1]

    yield open_
    for each in opened:
        each.close()


def test_revert_brings_back_a_running_vms_screen(
    api: httpx.Client, vm_names: Callable[[], str], domain: Callable[[str], _Domain], server: LimenProcess
) -> None:
    name = vm_names()
    _create(api, name, disk_gib=1, iso=DEMO_ISO)
    assert api.post(f"/api/vms/{name}/start").status_code == 200
    vm = domain(name)
    vm.wait_still()  # the grub> prompt
    vm.type_text("echo before\n")
    before = vm.wait_still()

    events = SseStream(f"{server.base_url}/api/events", server.auth_headers).start()
    try:
        events.next(event="ready")
        operation = _snapshot(api, name, "at-prompt", "grub> after echo before")
        done = events.next(event="vm").json
        while done["type"] != "snapshot_done":
            done = events.next(event="vm").json
    finally:
        events.close()
    assert done["operation"]["id"] == operation["id"]
    assert done["operation"]["state"] == "done" and done["state"] == "running"
    assert operation["progress"] == 100 and operation["kind"] == "snapshot" and operation["subject"] == "at-prompt"
    assert vm.wait_still() == before  # the VM ran on: a snapshot does not stop it

    vm.type_text("echo after\n")
    after = vm.wait_still()
    assert after.isdisjoint(before)

    listed = api.get(f"/api/vms/{name}/snapshots").json()
    assert [(s["name"], s["vm_state"], s["with_memory"], s["current"], s["parent"]) for s in listed] == [
        ("at-prompt", "running", True, True, None)]
    assert listed[0]["description"] == "grub> after echo before"

    reverted = api.post(f"/api/vms/{name}/snapshots/at-prompt/revert")
    assert reverted.status_code == 200, reverted.text
    assert api.get(f"/api/vms/{name}").json()["state"] == "running"
    assert vm.wait_still() == before  # pixel for pixel, the screen as it was at the snapshot

    actions = [(a["action"], a["result_code"], a["details"]) for a in api.get("/api/vm-actions").json()
               if a["vm_name"] == name]
    assert actions[:2] == [("revert", "OK", "at-prompt"), ("snapshot", "OK", "at-prompt")]


def _disk_path(api: httpx.Client, name: str) -> str:
    disks = [disk for disk in api.get(f"/api/vms/{name}").json()["disks"] if disk["device"] == "disk"]
    path: str = disks[0]["path"]
    return path


def _qemu_io(path: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, path], capture_output=True, text=True,
                          timeout=60)


def test_a_stopped_vms_disk_comes_back(api: httpx.Client, vm_names: Callable[[], str]) -> None:
    name = vm_names()
    _create(api, name, disk_gib=1)
    path = _disk_path(api, name)
    written = _qemu_io(path, "write -P 0xab 0 64k")
    assert written.returncode == 0, written.stderr

    _snapshot(api, name, "pattern", "naïve — 日本語\nsecond line")
    assert _qemu_io(path, "write -P 0xcd 0 64k").returncode == 0
    assert "Pattern verification failed" in _qemu_io(path, "read -P 0xab 0 64k").stdout

    reverted = api.post(f"/api/vms/{name}/snapshots/pattern/revert")
    assert reverted.status_code == 200, reverted.text
    assert reverted.json()["vm_state"] == "shutoff" and not reverted.json()["with_memory"]
    assert reverted.json()["description"] == "naïve — 日本語\nsecond line"
    read = _qemu_io(path, "read -P 0xab 0 64k")
    assert read.returncode == 0 and "Pattern verification failed" not in read.stdout, read.stdout
    assert api.get(f"/api/vms/{name}").json()["state"] == "stopped"
    snapshots = subprocess.run(["qemu-img", "snapshot", "-l", path], capture_output=True, text=True, check=True)
    assert "pattern" in snapshots.stdout


def test_snapshots_form_a_tree_and_deleting_one_keeps_its_children(
    api: httpx.Client, vm_names: Callable[[], str]
) -> None:
    name = vm_names()
    _create(api, name, disk_gib=1)
    _snapshot(api, name, "a")
    _snapshot(api, name, "b")
    assert api.post(f"/api/vms/{name}/snapshots/a/revert").status_code == 200
    _snapshot(api, name, "c")
    _snapshot(api, name, "d")
    tree = [(s["name"], s["parent"], s["current"]) for s in api.get(f"/api/vms/{name}/snapshots").json()]
    assert tree == [("a", None, False), ("b", "a", False), ("c", "a", False), ("d", "c", True)]

    deleted = api.delete(f"/api/vms/{name}/snapshots/c")
    assert deleted.status_code == 200, deleted.text
    pairs = [(s["name"], s["parent"]) for s in api.get(f"/api/vms/{name}/snapshots").json()]
    assert pairs == [("a", None), ("b", "a"), ("d", "a")]
    assert "c" not in subprocess.run(["qemu-img", "snapshot", "-l", _disk_path(api, name)], capture_output=True,
                                     text=True, check=True).stdout.split()

    # A renamed VM keeps its snapshots.
    renamed = vm_names()
    assert api.patch(f"/api/vms/{name}", json={"name": renamed}).status_code == 200
    assert [s["name"] for s in api.get(f"/api/vms/{renamed}/snapshots").json()] == ["a", "b", "d"]
    assert api.post(f"/api/vms/{renamed}/snapshots/b/revert").status_code == 200


def test_refusals_are_json_errors(api: httpx.Client, vm_names: Callable[[], str], server: LimenProcess,
                                  tmp_path: Path) -> None:
    name = vm_names()
    _create(api, name, disk_gib=1)
    _snapshot(api, name, "first")
    assert_error(api.post(f"/api/vms/{name}/snapshots", json={"name": "first"}), 409, "SNAPSHOT_ALREADY_EXISTS")
    for bad in ("", "-x", "a b", "x" * 64, "é", "../x"):
        error = assert_error(api.post(f"/api/vms/{name}/snapshots", json={"name": bad}), 422, "VALIDATION_ERROR")
        assert error["field"] == "name"
    assert _snapshot(api, name, "y" * 63)["subject"] == "y" * 63  # the longest name there is
    assert_error(api.post(f"/api/vms/{name}/snapshots", json={"name": "d", "description": "x" * 1001}),
                 422, "VALIDATION_ERROR")
    assert_error(api.post(f"/api/vms/{name}/snapshots", json={"name": "d", "extra": 1}), 422, "VALIDATION_ERROR")
    assert_error(api.post(f"/api/vms/{name}/snapshots/nope/revert"), 404, "SNAPSHOT_NOT_FOUND")
    assert_error(api.delete(f"/api/vms/{name}/snapshots/nope"), 404, "SNAPSHOT_NOT_FOUND")
    assert_error(api.get("/api/operations/0123456789abcdef"), 404, "OPERATION_NOT_FOUND")
    assert_error(api.get("/api/vms/limen-test-none/snapshots"), 404, "VM_NOT_FOUND")

    # A VM without a disk, and one with a raw disk: nothing QEMU can keep an internal snapshot in.
    diskless = vm_names()
    _create(api, diskless, iso=DEMO_ISO)
    error = assert_error(api.post(f"/api/vms/{diskless}/snapshots", json={"name": "s"}), 409, "SNAPSHOT_UNSUPPORTED")
    assert "no disk" in error["details"]
    raw = vm_names()
    raw_path = TEST_POOL_DIR / f"{raw}-raw.img"
    subprocess.run(["qemu-img", "create", "-f", "raw", str(raw_path), "16M"], check=True, capture_output=True)
    try:
        _define_with_raw_disk(raw, raw_path)
        error = assert_error(api.post(f"/api/vms/{raw}/snapshots", json={"name": "s"}), 409, "SNAPSHOT_UNSUPPORTED")
        assert "vda is raw" in error["details"] and "qcow2" in error["message"]
        assert api.get(f"/api/vms/{raw}/snapshots").json() == []
    finally:
        raw_path.unlink(missing_ok=True)

    # Someone else's VM is not there, for every snapshot route; their own VM works.
    bob = {"Authorization": f"Bearer {provision_user(_database_url(server), 'bob', 'bob-password')}"}
    with httpx.Client(base_url=server.base_url, timeout=60, headers=bob) as as_bob:
        assert_error(as_bob.get(f"/api/vms/{name}/snapshots"), 404, "VM_NOT_FOUND")
        assert_error(as_bob.post(f"/api/vms/{name}/snapshots", json={"name": "x"}), 404, "VM_NOT_FOUND")
        assert_error(as_bob.post(f"/api/vms/{name}/snapshots/first/revert"), 404, "VM_NOT_FOUND")
        assert_error(as_bob.delete(f"/api/vms/{name}/snapshots/first"), 404, "VM_NOT_FOUND")
        others = api.post(f"/api/vms/{name}/snapshots", json={"name": "admins"}).json()
        assert_error(as_bob.get(f"/api/operations/{others['id']}"), 404, "OPERATION_NOT_FOUND")
        _wait_operation(api, others)
        own = vm_names()
        assert as_bob.post("/api/vms", json={"name": own, "memory_mib": 64, "disk_gib": 1}).status_code == 201
        _snapshot(as_bob, own, "mine")
        assert [s["name"] for s in as_bob.get(f"/api/vms/{own}/snapshots").json()] == ["mine"]
    failed = [(a["action"], a["result_code"]) for a in api.get("/api/vm-actions").json() if a["vm_name"] == raw]
    assert failed == [("snapshot", "SNAPSHOT_UNSUPPORTED")]


def _define_with_raw_disk(name: str, path: Path) -> None:
    domain = ET.Element("domain", type="qemu")
    ET.SubElement(domain, "name").text = name
    ET.SubElement(domain, "memory", unit="MiB").text = "64"
    os_ = ET.SubElement(domain, "os")
    ET.SubElement(os_, "type").text = "hvm"
    devices = ET.SubElement(domain, "devices")
    disk = ET.SubElement(devices, "disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    ET.SubElement(disk, "source", file=str(path))
    ET.SubElement(disk, "target", dev="vda", bus="virtio")
    conn = libvirt.open(QEMU_URI)
    try:
        conn.defineXML(ET.tostring(domain, encoding="unicode"))
    finally:
        conn.close()


def test_parallel_snapshots_of_one_vm(api: httpx.Client, vm_names: Callable[[], str]) -> None:
    """Two requests at once for one name: one snapshot, the other refused; never two of one name."""
    import concurrent.futures

    name = vm_names()
    _create(api, name, disk_gib=1)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(
            lambda i: api.post(f"/api/vms/{name}/snapshots", json={"name": "same"}), range(4)))
    accepted = [answer for answer in answers if answer.status_code == 202]
    assert accepted and all(answer.status_code in (202, 409) for answer in answers)
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["code"] in ("SNAPSHOT_IN_PROGRESS", "SNAPSHOT_ALREADY_EXISTS")
    outcomes = [_wait_operation(api, answer.json())["state"] for answer in accepted]
    assert outcomes.count("done") == 1
    assert [s["name"] for s in api.get(f"/api/vms/{name}/snapshots").json()] == ["same"]


def test_a_snapshot_in_progress_holds_other_changes_of_its_vm(
    api: httpx.Client, vm_names: Callable[[], str], domain: Callable[[str], _Domain]
) -> None:
    """QEMU stopped (SIGSTOP) holds ``savevm`` as a long memory save would: the request answers at once, the
    operation runs, and every other snapshot change, the VM's deletion, a start and an edit are refused until
    it ends."""
    name = vm_names()
    _create(api, name, disk_gib=1, iso=DEMO_ISO)
    assert api.post(f"/api/vms/{name}/start").status_code == 200
    domain(name).wait_still()
    _snapshot(api, name, "earlier")
    qemu = qemu_pid(name)
    os.kill(qemu, signal.SIGSTOP)
    try:
        began = time.monotonic()
        started = api.post(f"/api/vms/{name}/snapshots", json={"name": "slow"})
        assert started.status_code == 202, started.text
        assert time.monotonic() - began < 5  # not a request that hangs (a generous bound for a busy host)
        operation = started.json()
        time.sleep(1)
        polled = api.get(f"/api/operations/{operation['id']}").json()
        assert (polled["state"], polled["progress"], polled["finished_at"]) == ("running", None, None)
        for refused in (api.post(f"/api/vms/{name}/snapshots", json={"name": "other"}),
                        api.post(f"/api/vms/{name}/snapshots/earlier/revert"),
                        api.delete(f"/api/vms/{name}/snapshots/earlier"),
                        api.delete(f"/api/vms/{name}"),
                        api.post(f"/api/vms/{name}/start"),
                        api.patch(f"/api/vms/{name}", json={"memory_mib": 96})):
            error = assert_error(refused, 409, "SNAPSHOT_IN_PROGRESS")
            assert operation["id"] in error["details"]
    finally:
        os.kill(qemu, signal.SIGCONT)
    assert _wait_operation(api, operation)["state"] == "done"
    assert [s["name"] for s in api.get(f"/api/vms/{name}/snapshots").json()] == ["earlier", "slow"]
    actions = [(a["action"], a["result_code"], a["details"]) for a in api.get("/api/vm-actions").json()
               if a["vm_name"] == name]
    # The refusals are in the audit trail too, newest first, then the snapshot's own row (written when it
    # began, completed when it ended).
    assert actions[:7] == [("edit", "SNAPSHOT_IN_PROGRESS", ""),
                           ("start", "SNAPSHOT_IN_PROGRESS", ""),
                           ("delete", "SNAPSHOT_IN_PROGRESS", ""),
                           ("snapshot-delete", "SNAPSHOT_IN_PROGRESS", "earlier"),
                           ("revert", "SNAPSHOT_IN_PROGRESS", "earlier"),
                           ("snapshot", "SNAPSHOT_IN_PROGRESS", "other"),  # the name it asked for (was "")
                           ("snapshot", "OK", "slow")]


def _busy_libvirtd_workers() -> int:
    """How many of libvirtd's worker threads are inside a call now (``virt-admin srv-threadpool-info``)."""
    shown = subprocess.run(["virt-admin", "srv-threadpool-info", "libvirtd"], capture_output=True, text=True,
                           check=True, timeout=30).stdout
    fields = {key.strip(): int(value) for key, value in (line.split(":") for line in shown.strip().splitlines())}
    return fields["nWorkers"] - fields["freeWorkers"]


def _wait_for_a_held_libvirtd_worker() -> None:
    """Returns once a libvirtd worker has stayed inside a call for a whole second: with QEMU stopped, a call
    that needs its monitor stays there, while the server's other libvirt calls come back at once."""
    deadline = time.monotonic() + 60
    held_since: float | None = None
    while held_since is None or time.monotonic() - held_since < 1:
        assert time.monotonic() < deadline, "no libvirtd worker stayed inside a call"
        busy = _busy_libvirtd_workers() > 0
        held_since = (held_since or time.monotonic()) if busy else None
        time.sleep(0.1)


# It reads libvirtd's busy workers, the whole daemon's: another test's long call would count as this one's.
@pytest.mark.runs_alone
def test_a_server_killed_while_it_takes_a_snapshot(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str], domain: Callable[[str], _Domain]
) -> None:
    """kill -9 mid-snapshot: libvirt finishes the snapshot; the next server knows nothing of the operation
    (OPERATION_NOT_FOUND), lists the snapshot, and its audit row ends as SERVER_LOST."""
    # No resource sampler: its stats read would also wait on the stopped QEMU and hold a libvirtd worker.
    first = limen_server(LIMEN_STATS_INTERVAL="0")
    with httpx.Client(base_url=first.base_url, timeout=60, headers=first.auth_headers) as api:
        name = vm_names()
        _create(api, name, disk_gib=1, iso=DEMO_ISO)
        assert api.post(f"/api/vms/{name}/start").status_code == 200
        domain(name).wait_still()
        qemu = qemu_pid(name)
        os.kill(qemu, signal.SIGSTOP)
        try:
            # The checks before the 202 ask libvirt within LIMEN_LIBVIRT_TIMEOUT; once in CI (a loaded host,
            # QEMU stopped) that bound passed and the answer was a clear HYPERVISOR_UNAVAILABLE. That answer
            # is right, but this test is about the kill that follows, so it asks again.
            deadline = time.monotonic() + 30
            while (started := api.post(f"/api/vms/{name}/snapshots", json={"name": "orphan"})).status_code == 503:
                assert started.json()["code"] == "HYPERVISOR_UNAVAILABLE", started.text
                assert time.monotonic() < deadline, started.text
            assert started.status_code == 202, started.text
            # Killed only once the snapshot call is inside libvirtd (a sleep here once lost the race on a loaded
            # host: limen died before sending it, and libvirt had nothing to finish).
            _wait_for_a_held_libvirtd_worker()
            first.kill()
        finally:
            os.kill(qemu, signal.SIGCONT)
    second = limen_server()
    with httpx.Client(base_url=second.base_url, timeout=60, headers=second.auth_headers) as api:
        assert_error(api.get(f"/api/operations/{started.json()['id']}"), 404, "OPERATION_NOT_FOUND")
        deadline = time.monotonic() + 30
        while [s["name"] for s in api.get(f"/api/vms/{name}/snapshots").json()] != ["orphan"]:
            assert time.monotonic() < deadline, "libvirt did not finish the snapshot"
            time.sleep(0.2)
        row = next(a for a in api.get("/api/vm-actions").json() if a["vm_name"] == name and a["action"] == "snapshot")
        assert row["result_code"] == "SERVER_LOST", row
        # The row written before the work names the VM and the snapshot, and does not claim a failure.
        assert row["vm_uuid"] == api.get(f"/api/vms/{name}").json()["uuid"], row
        assert row["details"].startswith("orphan; ") and row["details"].endswith("the VM's state shows it"), row
        assert api.post(f"/api/vms/{name}/snapshots/orphan/revert").status_code == 200  # a snapshot like any


def test_deleting_a_vm_deletes_its_snapshots(api: httpx.Client, vm_names: Callable[[], str]) -> None:
    name = vm_names()
    _create(api, name, disk_gib=1, iso=DEMO_ISO)
    _snapshot(api, name, "stopped")
    assert api.post(f"/api/vms/{name}/start").status_code == 200
    _snapshot(api, name, "running")
    # Across states: to the stopped VM's snapshot the VM stops, to the running one's it runs again.
    assert api.post(f"/api/vms/{name}/snapshots/stopped/revert").status_code == 200
    assert api.get(f"/api/vms/{name}").json()["state"] == "stopped"
    assert api.post(f"/api/vms/{name}/snapshots/running/revert").status_code == 200
    assert api.get(f"/api/vms/{name}").json()["state"] == "running"
    path = _disk_path(api, name)
    deleted = api.delete(f"/api/vms/{name}")  # the disk stays: the snapshots inside it go
    assert deleted.status_code == 200, deleted.text
    assert not domain_exists(QEMU_URI, name)
    listed = subprocess.run(["qemu-img", "snapshot", "-l", path], capture_output=True, text=True, check=True)
    assert "stopped" not in listed.stdout and "running" not in listed.stdout
    os.unlink(path)

    other = vm_names()
    _create(api, other, disk_gib=1)
    _snapshot(api, other, "s")
    assert api.delete(f"/api/vms/{other}?delete_disks=true").status_code == 200
    assert not domain_exists(QEMU_URI, other)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LIMEN, *args], capture_output=True, text=True, timeout=120, env=cli_env(env), check=False)


def test_cli_snapshot_commands(vm_names: Callable[[], str], tmp_path: Path) -> None:
    server = {
        **os.environ, "LIMEN_LIBVIRT_URI": QEMU_URI, "LIMEN_STORAGE_POOL": TEST_POOL,
        "LIMEN_STORAGE_POOL_DIR": str(TEST_POOL_DIR), "LIMEN_DATA_DIR": str(tmp_path), "LIMEN_VIRT_TYPE": "qemu",
    }
    name = vm_names()
    assert _cli(server, "vm", "create", name, "--memory", "64", "--disk", "1").returncode == 0
    created = _cli(server, "vm", "snapshot", "create", name, "one", "--description", "first one")
    assert created.returncode == 0, created.stderr
    assert "one" in created.stdout
    assert _cli(server, "vm", "snapshot", "create", name, "two").returncode == 0
    listed = _cli(server, "--json", "vm", "snapshot", "list", name)
    assert listed.returncode == 0, listed.stderr
    assert [(s["name"], s["parent"]) for s in json.loads(listed.stdout)] == [("one", None), ("two", "one")]
    text = _cli(server, "vm", "snapshot", "list", name).stdout
    assert "one" in text and "  two" in text and "first one" in text
    duplicate = _cli(server, "vm", "snapshot", "create", name, "one")
    assert duplicate.returncode == 1 and "SNAPSHOT_ALREADY_EXISTS" in duplicate.stderr + duplicate.stdout
    assert _cli(server, "vm", "snapshot", "revert", name, "one").returncode == 0
    assert _cli(server, "vm", "snapshot", "delete", name, "two").returncode == 0
    missing = _cli(server, "vm", "snapshot", "delete", name, "two")
    assert missing.returncode == 1 and "SNAPSHOT_NOT_FOUND" in missing.stderr + missing.stdout
    assert [s["name"] for s in json.loads(_cli(server, "--json", "vm", "snapshot", "list", name).stdout)] == ["one"]


def test_an_iso_a_snapshot_keeps_is_held_and_a_revert_without_it_leaves_the_vm_alone(
    api: httpx.Client, vm_names: Callable[[], str]
) -> None:
    # A snapshot's saved definition names its CD: a revert puts that disc back in the drive. Deleting the ISO
    # while only a snapshot holds it made the VM unbootable after the revert (and a running VM's revert stopped
    # it, answering HYPERVISOR_UNAVAILABLE).
    iso = f"held-{uuid.uuid4().hex[:8]}.iso"
    uploaded = api.post("/api/isos", params={"name": iso}, content=(ISO_DIR / DEMO_ISO).read_bytes())
    assert uploaded.status_code == 201, uploaded.text
    name = vm_names()
    _create(api, name, disk_gib=1, iso=iso)
    cdrom = next(disk["path"] for disk in api.get(f"/api/vms/{name}").json()["disks"] if disk["device"] == "cdrom")
    _snapshot(api, name, "with-cd")
    assert api.put(f"/api/vms/{name}/media", json={"iso": None}).status_code == 200
    held = assert_error(api.delete(f"/api/isos/{iso}"), 409, "ISO_IN_USE")
    assert (held["vms"], held["snapshots"]) == ([], [{"vm": name, "snapshot": "with-cd"}])
    assert Path(cdrom).exists()

    os.unlink(cdrom)  # gone anyway: deleted outside limen
    assert api.post(f"/api/vms/{name}/start").status_code == 200
    missing = assert_error(api.post(f"/api/vms/{name}/snapshots/with-cd/revert"), 409, "SNAPSHOT_ISO_MISSING")
    assert iso in missing["details"]
    assert api.get(f"/api/vms/{name}").json()["state"] == "running"  # left alone
    assert api.get("/api/isos").status_code == 200
    assert not (Path(cdrom).parent / f".{iso}.sha256").exists()  # the listing took the checksum of the image rm'd


def test_a_running_vms_snapshot_taken_with_another_disc_says_how_to_delete_it(
    api: httpx.Client, vm_names: Callable[[], str]
) -> None:
    """libvirt deletes a running VM's snapshot only with the disc it saved in the drive; limen said only
    VM_OPERATION_FAILED, the reason in English under the technical details."""
    name = vm_names()
    _create(api, name, disk_gib=1, iso=DEMO_ISO)
    assert api.post(f"/api/vms/{name}/start").status_code == 200
    _snapshot(api, name, "with-cd")
    assert api.put(f"/api/vms/{name}/media", json={"iso": None, "force": True}).status_code == 200
    refused = assert_error(api.delete(f"/api/vms/{name}/snapshots/with-cd"), 409, "VM_MUST_BE_STOPPED")
    assert DEMO_ISO in refused["details"] and "put it back, or stop the VM" in refused["details"]
    assert [s["name"] for s in api.get(f"/api/vms/{name}/snapshots").json()] == ["with-cd"]  # nothing changed
    assert api.put(f"/api/vms/{name}/media", json={"iso": DEMO_ISO, "force": True}).status_code == 200
    deleted = api.delete(f"/api/vms/{name}/snapshots/with-cd")
    assert deleted.status_code == 200, deleted.text
    assert api.get(f"/api/vms/{name}/snapshots").json() == []


def _user_with_token(api: httpx.Client, name: str, **quota: int) -> dict[str, str]:
    made = api.post("/api/users", json={"name": name, "password": "long enough password"})
    assert made.status_code == 201, made.text
    if quota:
        assert api.put(f"/api/users/{name}/quota", json=quota).status_code == 200
    token = api.post("/api/tokens", json={"name": "revert", "user": name})
    assert token.status_code == 201, token.text
    return {"Authorization": f"Bearer {token.json()['secret']}"}


def test_a_revert_keeps_the_vms_owner_of_now(api: httpx.Client, vm_names: Callable[[], str]) -> None:
    """The snapshot's saved definition held the owner of its moment: a VM given to bob went back to alice on
    bob's own revert (bob then lost it), and a deleted user's VM went back to their name."""
    name, alice, bob = vm_names(), f"alice{uuid.uuid4().hex[:6]}", f"bob{uuid.uuid4().hex[:6]}"
    _create(api, name, disk_gib=1)
    _user_with_token(api, alice)
    bob_headers = _user_with_token(api, bob)
    assert api.put(f"/api/vms/{name}/owner", json={"owner": alice}).status_code == 200
    _snapshot(api, name, "alices")
    assert api.put(f"/api/vms/{name}/owner", json={"owner": bob}).status_code == 200
    reverted = api.post(f"/api/vms/{name}/snapshots/alices/revert", headers=bob_headers)
    assert reverted.status_code == 200, reverted.text
    assert api.get(f"/api/vms/{name}").json()["owner"] == bob
    assert api.get(f"/api/vms/{name}", headers=bob_headers).status_code == 200
    # Its owner deleted (the VM becomes unowned), an administrator's revert does not give it back to the name.
    assert api.delete(f"/api/users/{bob}").status_code == 200
    assert api.get(f"/api/vms/{name}").json()["owner"] is None
    assert api.post(f"/api/vms/{name}/snapshots/alices/revert").status_code == 200
    assert api.get(f"/api/vms/{name}").json()["owner"] is None


def test_a_revert_that_leaves_the_vm_running_is_held_to_the_quota(
    api: httpx.Client, vm_names: Callable[[], str]
) -> None:
    """A snapshot of a running VM resumes it: bob, at his vCPU limit, ran one more VM by reverting to one."""
    running, other = vm_names(), vm_names()
    bob = f"bob{uuid.uuid4().hex[:6]}"
    headers = _user_with_token(api, bob, vcpus=1, memory_mib=256)
    for name in (running, other):
        _create(api, name, disk_gib=1)
        assert api.put(f"/api/vms/{name}/owner", json={"owner": bob}).status_code == 200
    assert api.post(f"/api/vms/{running}/start", headers=headers).status_code == 200
    snapshot = _snapshot(api, running, "live")
    assert api.get(f"/api/vms/{running}/snapshots").json()[0]["with_memory"], snapshot
    assert api.post(f"/api/vms/{running}/stop", params={"force": "true"}).status_code == 200
    assert api.post(f"/api/vms/{other}/start", headers=headers).status_code == 200  # bob's one vCPU in use
    refused = api.post(f"/api/vms/{running}/snapshots/live/revert", headers=headers)
    assert refused.status_code == 409 and refused.json()["code"] == "QUOTA_EXCEEDED", refused.text
    assert api.get(f"/api/vms/{running}").json()["state"] == "stopped"
    assert api.post(f"/api/vms/{other}/stop", params={"force": "true"}).status_code == 200
    resumed = api.post(f"/api/vms/{running}/snapshots/live/revert", headers=headers)
    assert resumed.status_code == 200, resumed.text
    assert api.get(f"/api/vms/{running}").json()["state"] == "running"
