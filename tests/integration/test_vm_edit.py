"""Editing VMs on the real libvirtd and QEMU, through a real ``limen serve``: the CD changed and ejected
on a running VM (the live XML shows it), a guest that locks its tray, boot order and vCPUs waiting for a
restart, finish-install, growing disks running and stopped, rename, and who may do each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import libvirt
import libvirt_qemu  # type: ignore[import-untyped]
import pytest

from limen.hypervisor.domain_edit import cdrom_element
from limen.hypervisor.editing import _open_tray_through_qemu
from tests.conftest import DEMO_ISO, ISO_DIR, QEMU_URI, TEST_POOL, TEST_POOL_DIR
from tests.support.access import assert_error, provision_user
from tests.support.databases import cli_env, database_url_for
from tests.support.server import LimenProcess
from tests.support.tray_locker import build_tray_locker_iso

# Media, boot order, disks and renames live in libvirt's definition; the database holds each change's audit
# row (test_vm_lifecycle's actions write the same rows on both) and the quota check of more vCPUs, memory or
# disk (test_quota, on both).
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]
LIMEN = str(Path(sys.executable).parent / "limen")


@pytest.fixture(scope="module")
def iso_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ISO directory of these tests' own: the demo ISO (a link) and the tray-locking image."""
    base = tmp_path_factory.mktemp("vm-edit")
    directory = base / "isos"
    directory.mkdir()
    (directory / DEMO_ISO).symlink_to(ISO_DIR / DEMO_ISO)
    build_tray_locker_iso(directory / "tray-locker.iso")
    return directory


@pytest.fixture
def server(limen_server: Callable[..., LimenProcess], iso_dir: Path) -> LimenProcess:
    return limen_server(LIMEN_ISO_DIR=str(iso_dir))


@pytest.fixture
def api(server: LimenProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, headers=server.auth_headers) as client:
        yield client


def _domain_xml(name: str, *, inactive: bool = False) -> ET.Element:
    conn = libvirt.open(QEMU_URI)
    try:
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return ET.fromstring(conn.lookupByName(name).XMLDesc(flags))
    finally:
        conn.close()


def _cd_source(name: str, *, inactive: bool = False) -> str | None:
    domain = _domain_xml(name, inactive=inactive)
    cdrom = next(disk for disk in domain.iterfind("devices/disk") if disk.get("device") == "cdrom")
    source = cdrom.find("source")
    return source.get("file") if source is not None else None


def _domain_id(name: str) -> int:
    conn = libvirt.open(QEMU_URI)
    try:
        return int(conn.lookupByName(name).ID())
    finally:
        conn.close()


def _block_info(name: str) -> str:
    conn = libvirt.open(QEMU_URI)
    try:
        return str(libvirt_qemu.qemuMonitorCommand(
            conn.lookupByName(name), "info block", libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP))
    finally:
        conn.close()


def _tray_locked(name: str) -> bool:
    return "Removable device: locked" in _block_info(name)


def _create(api: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    created = api.post("/api/vms", json={"name": name, "memory_mib": 64, **fields})
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def _started(api: httpx.Client, name: str) -> dict[str, Any]:
    started = api.post(f"/api/vms/{name}/start")
    assert started.status_code == 200, started.text
    body: dict[str, Any] = started.json()
    return body


def _restart(api: httpx.Client, name: str) -> dict[str, Any]:
    assert api.post(f"/api/vms/{name}/stop?force=true").status_code == 200
    return _started(api, name)


def test_cd_is_ejected_and_inserted_on_a_running_vm(
    api: httpx.Client, vm_names: Callable[[], str], iso_dir: Path
) -> None:
    name = vm_names()
    _create(api, name, disk_gib=1, iso=DEMO_ISO)
    _started(api, name)
    qemu_id = _domain_id(name)
    assert api.get(f"/api/vms/{name}/media").json() == {"target": "hdc", "iso": DEMO_ISO}

    ejected = api.put(f"/api/vms/{name}/media", json={"iso": None})
    assert ejected.status_code == 200, ejected.text
    assert ejected.json() == {"target": "hdc", "iso": None}
    assert _cd_source(name) is None and _cd_source(name, inactive=True) is None
    vm = api.get(f"/api/vms/{name}").json()
    assert (vm["state"], vm["cdrom"], vm["pending_restart"]) == ("running", {"target": "hdc", "iso": None}, False)

    inserted = api.put(f"/api/vms/{name}/media", json={"iso": DEMO_ISO})
    assert inserted.json() == {"target": "hdc", "iso": DEMO_ISO}
    assert _cd_source(name) == _cd_source(name, inactive=True) == str(iso_dir / DEMO_ISO)
    assert _domain_id(name) == qemu_id  # the same QEMU process: no restart

    # Back to back: libvirt learns the tray's position from QEMU events that may lag one change behind.
    for _ in range(5):
        for iso in (None, DEMO_ISO):
            changed = api.put(f"/api/vms/{name}/media", json={"iso": iso})
            assert changed.status_code == 200, changed.text
            assert changed.json()["iso"] == iso
    assert _cd_source(name) == str(iso_dir / DEMO_ISO)

    assert_error(api.put(f"/api/vms/{name}/media", json={"iso": "no-such.iso"}), 422, "VALIDATION_ERROR")
    assert (_cd_source(name) or "").endswith(f"/{DEMO_ISO}")
    assert_error(api.put(f"/api/vms/{name}/media", json={"iso": "/etc/passwd"}), 422, "VALIDATION_ERROR")
    assert_error(api.put(f"/api/vms/{name}/media", json={"force": True}), 422, "VALIDATION_ERROR")


def test_opening_the_tray_through_qemu(api: httpx.Client, vm_names: Callable[[], str], iso_dir: Path) -> None:
    """What limen falls back on when libvirt's idea of the tray is stale (QEMU: "Tray … is not open")."""
    name = vm_names()
    _create(api, name, iso=DEMO_ISO)
    _started(api, name)
    # While the firmware boots from the disc it closes an open tray, unseen by libvirt (the very staleness
    # this repairs); the GRUB prompt, a second or so later, leaves the tray alone.
    time.sleep(3)
    conn = libvirt.open(QEMU_URI)
    try:
        dom = conn.lookupByName(name)
        cdrom = cdrom_element(dom.XMLDesc(0))
        assert cdrom is not None
        _open_tray_through_qemu(dom, cdrom, force=False)
    finally:
        conn.close()
    assert "tray open" in _block_info(name)
    target = _domain_xml(name).find("devices/disk/target[@dev='hdc']")
    assert target is not None and target.get("tray") == "open"  # libvirt saw it: the two are in step
    changed = api.put(f"/api/vms/{name}/media", json={"iso": None})
    assert changed.status_code == 200, changed.text
    assert _cd_source(name) is None
    assert api.put(f"/api/vms/{name}/media", json={"iso": DEMO_ISO}).json()["iso"] == DEMO_ISO
    assert _cd_source(name) == str(iso_dir / DEMO_ISO)


def test_a_vm_without_a_cdrom_drive_gets_one_while_stopped(api: httpx.Client, vm_names: Callable[[], str]) -> None:
    name = vm_names()
    assert _create(api, name, disk_gib=1)["cdrom"] is None
    _started(api, name)
    assert api.get(f"/api/vms/{name}/media").json() == {"target": None, "iso": None}
    error = assert_error(api.put(f"/api/vms/{name}/media", json={"iso": DEMO_ISO}), 409, "VM_MUST_BE_STOPPED")
    assert "stopped" in error["details"]
    assert api.post(f"/api/vms/{name}/stop?force=true").status_code == 200

    added = api.put(f"/api/vms/{name}/media", json={"iso": DEMO_ISO})
    assert added.status_code == 200, added.text
    assert added.json() == {"target": "hdc", "iso": DEMO_ISO}
    assert (_cd_source(name, inactive=True) or "").endswith(f"/{DEMO_ISO}")
    patched = api.patch(f"/api/vms/{name}", json={"boot_order": ["cdrom", "hd"]})
    assert patched.json()["boot_order"] == ["cdrom", "hd"] and not patched.json()["pending_restart"]
    _started(api, name)
    assert (_cd_source(name) or "").endswith(f"/{DEMO_ISO}")
    assert [b.get("dev") for b in _domain_xml(name).iterfind("os/boot")] == ["cdrom", "hd"]


def test_a_guest_that_locked_its_tray(api: httpx.Client, vm_names: Callable[[], str]) -> None:
    name = vm_names()
    _create(api, name, disk_gib=1, iso="tray-locker.iso")
    _started(api, name)
    deadline = time.monotonic() + 60
    while not _tray_locked(name):
        assert time.monotonic() < deadline, "the guest did not lock its tray"
        time.sleep(0.2)

    error = assert_error(api.put(f"/api/vms/{name}/media", json={"iso": None}), 409, "MEDIA_LOCKED")
    assert "force" in error["message"] and "force" in error["details"]
    assert (_cd_source(name) or "").endswith("/tray-locker.iso")
    assert_error(api.put(f"/api/vms/{name}/media", json={"iso": DEMO_ISO}), 409, "MEDIA_LOCKED")
    # finish-install ejects first: refused, it changes nothing (boot order included).
    assert_error(api.post(f"/api/vms/{name}/finish-install"), 409, "MEDIA_LOCKED")
    vm = api.get(f"/api/vms/{name}").json()
    assert (vm["cdrom"]["iso"], vm["boot_order"], vm["pending"]) == ("tray-locker.iso", ["cdrom", "hd"], {})

    forced = api.put(f"/api/vms/{name}/media", json={"iso": DEMO_ISO, "force": True})
    assert forced.status_code == 200, forced.text
    assert forced.json() == {"target": "hdc", "iso": DEMO_ISO}
    assert (_cd_source(name) or "").endswith(f"/{DEMO_ISO}")
    actions = [(a["action"], a["result_code"], a["details"]) for a in api.get("/api/vm-actions").json()
               if a["vm_name"] == name]
    assert actions[0] == ("media", "OK", f"cd tray-locker.iso → {DEMO_ISO} (forced)")
    assert actions[1] == ("finish-install", "MEDIA_LOCKED", "")


def test_boot_order_and_vcpus_wait_for_a_restart(api: httpx.Client, vm_names: Callable[[], str]) -> None:
    name = vm_names()
    _create(api, name, disk_gib=1, iso=DEMO_ISO)
    _started(api, name)
    patched = api.patch(f"/api/vms/{name}", json={"boot_order": ["hd"], "vcpus": 2, "autostart": True})
    assert patched.status_code == 200, patched.text
    for vm in (patched.json(), api.get(f"/api/vms/{name}").json(),
               next(v for v in api.get("/api/vms").json() if v["name"] == name)):
        assert (vm["boot_order"], vm["vcpus"], vm["autostart"]) == (["cdrom", "hd"], 1, True)
        assert (vm["pending_restart"], vm["pending"]) == (True, {"boot_order": ["hd"], "vcpus": 2})
    assert [b.get("dev") for b in _domain_xml(name).iterfind("os/boot")] == ["cdrom", "hd"]
    assert [b.get("dev") for b in _domain_xml(name, inactive=True).iterfind("os/boot")] == ["hd"]

    # A reset keeps the QEMU process and so the running settings.
    assert api.post(f"/api/vms/{name}/reboot?force=true").json()["pending_restart"] is True

    vm = _restart(api, name)
    assert (vm["boot_order"], vm["vcpus"], vm["pending_restart"], vm["pending"]) == (["hd"], 2, False, {})
    assert [b.get("dev") for b in _domain_xml(name).iterfind("os/boot")] == ["hd"]
    assert api.patch(f"/api/vms/{name}", json={"autostart": False}).json()["autostart"] is False


def test_finish_install_ejects_and_boots_from_disk(api: httpx.Client, vm_names: Callable[[], str]) -> None:
    name = vm_names()
    created = _create(api, name, disk_gib=1, iso=DEMO_ISO)
    assert created["boot_order"] == ["cdrom", "hd"] and created["cdrom"]["iso"] == DEMO_ISO
    _started(api, name)
    finished = api.post(f"/api/vms/{name}/finish-install")
    assert finished.status_code == 200, finished.text
    vm = finished.json()
    assert vm["cdrom"] == {"target": "hdc", "iso": None}
    assert (vm["pending_restart"], vm["pending"]) == (True, {"boot_order": ["hd"]})
    assert _cd_source(name) is None and _cd_source(name, inactive=True) is None

    vm = _restart(api, name)
    assert (vm["boot_order"], vm["cdrom"], vm["pending_restart"]) == (["hd"], {"target": "hdc", "iso": None}, False)
    again = api.post(f"/api/vms/{name}/finish-install").json()  # nothing left to do
    assert (again["boot_order"], again["cdrom"]["iso"]) == (["hd"], None)
    actions = [(a["action"], a["result_code"], a["details"]) for a in api.get("/api/vm-actions").json()
               if a["vm_name"] == name]
    assert ("finish-install", "OK", f"cd {DEMO_ISO} → ejected; boot_order cdrom,hd → hd (pending restart)") \
        in actions
    assert actions[0] == ("finish-install", "OK", "nothing changed")


def test_disks_grow_running_and_stopped_and_never_shrink(api: httpx.Client, vm_names: Callable[[], str]) -> None:
    name = vm_names()
    _create(api, name, disk_gib=1, iso=DEMO_ISO)

    def capacity(vm: dict[str, Any]) -> int:
        return int(next(d["capacity_bytes"] for d in vm["disks"] if d["target"] == "vda"))

    grown = api.post(f"/api/vms/{name}/disks/vda/resize", json={"size_gib": 2})
    assert grown.status_code == 200, grown.text
    assert capacity(grown.json()) == 2 * 2**30
    _started(api, name)
    grown = api.post(f"/api/vms/{name}/disks/vda/resize", json={"size_bytes": 3 * 2**30 + 2**20})
    assert grown.status_code == 200, grown.text
    assert capacity(grown.json()) == 3 * 2**30 + 2**20
    assert capacity(api.get(f"/api/vms/{name}").json()) == 3 * 2**30 + 2**20
    conn = libvirt.open(QEMU_URI)
    try:
        assert conn.lookupByName(name).blockInfo("vda", 0)[0] == 3 * 2**30 + 2**20  # what the guest sees
    finally:
        conn.close()

    for body in ({"size_gib": 3}, {"size_bytes": 3 * 2**30 + 2**20}, {"size_gib": 1}):
        error = assert_error(api.post(f"/api/vms/{name}/disks/vda/resize", json=body), 409, "DISK_SHRINK_REFUSED")
        assert str(3 * 2**30 + 2**20) in error["details"]
    for target in ("vdb", "hdc"):
        assert_error(api.post(f"/api/vms/{name}/disks/{target}/resize", json={"size_gib": 4}), 404, "DISK_NOT_FOUND")
    assert api.post(f"/api/vms/{name}/stop?force=true").status_code == 200
    assert_error(api.post(f"/api/vms/{name}/disks/vda/resize", json={"size_gib": 3}), 409, "DISK_SHRINK_REFUSED")
    assert capacity(api.post(f"/api/vms/{name}/disks/vda/resize", json={"size_gib": 4}).json()) == 4 * 2**30

    # A disk holding a snapshot cannot grow (QEMU's rule): said as such, stopped or running, not as QEMU's text.
    started = api.post(f"/api/vms/{name}/snapshots", json={"name": "kept"})
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 60
    while api.get(f"/api/operations/{started.json()['id']}").json()["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for running in (False, True):
        if running:
            _started(api, name)
        error = assert_error(api.post(f"/api/vms/{name}/disks/vda/resize", json={"size_gib": 5}), 409,
                             "VM_HAS_SNAPSHOTS")
        assert "snapshots" in error["details"]
    assert capacity(api.get(f"/api/vms/{name}").json()) == 4 * 2**30


def test_rename_and_access_of_a_plain_user(
    server: LimenProcess, api: httpx.Client, vm_names: Callable[[], str], tmp_path: Path
) -> None:
    database_url = database_url_for(tmp_path / 'data')
    alice = {"Authorization": f"Bearer {provision_user(database_url, 'alice', 'alice-password')}"}
    bob = {"Authorization": f"Bearer {provision_user(database_url, 'bob', 'bob-password')}"}
    name, new_name, other = vm_names(), vm_names(), vm_names()
    _create(api, other)
    with httpx.Client(base_url=server.base_url, timeout=60, headers=alice) as as_alice:
        created = _create(as_alice, name, disk_gib=1, iso=DEMO_ISO)
        assert created["owner"] == "alice"
        for method, path, body in (("PATCH", "", {"vcpus": 2}), ("GET", "/media", None),
                                   ("PUT", "/media", {"iso": None}), ("POST", "/finish-install", None),
                                   ("POST", "/disks/vda/resize", {"size_gib": 2})):
            assert_error(httpx.request(method, f"{server.base_url}/api/vms/{name}{path}", json=body, headers=bob),
                         404, "VM_NOT_FOUND")
            assert_error(as_alice.request(method, f"/api/vms/{other}{path}", json=body), 404, "VM_NOT_FOUND")
        assert _cd_source(name) is not None  # bob ejected nothing

        _started(as_alice, name)
        assert_error(as_alice.patch(f"/api/vms/{name}", json={"name": new_name}), 409, "VM_MUST_BE_STOPPED")
        assert as_alice.post(f"/api/vms/{name}/stop?force=true").status_code == 200
        assert_error(as_alice.patch(f"/api/vms/{name}", json={"name": other}), 409, "VM_ALREADY_EXISTS")
        # Another VM's name in another case is taken too (web1 beside WEB1); the VM's own, in another case, not.
        assert_error(as_alice.patch(f"/api/vms/{name}", json={"name": other.upper()}), 409, "VM_ALREADY_EXISTS")
        assert_error(as_alice.post("/api/vms", json={"name": other.upper(), "memory_mib": 64}), 409,
                     "VM_ALREADY_EXISTS")
        assert as_alice.patch(f"/api/vms/{name}", json={"name": name.upper()}).json()["name"] == name.upper()
        assert as_alice.patch(f"/api/vms/{name.upper()}", json={"name": name}).json()["name"] == name
        renamed = as_alice.patch(f"/api/vms/{name}", json={"name": new_name})
        assert renamed.status_code == 200, renamed.text
        vm = renamed.json()
        assert (vm["name"], vm["uuid"], vm["owner"]) == (new_name, created["uuid"], "alice")
        assert [d["path"] for d in vm["disks"]] == [d["path"] for d in created["disks"]]
        assert_error(as_alice.get(f"/api/vms/{name}"), 404, "VM_NOT_FOUND")
        assert _started(as_alice, new_name)["state"] == "running"  # its disk and CD still there
        actions = [(a["user"], a["action"], a["result_code"], a["details"])
                   for a in as_alice.get("/api/vm-actions").json()]
        assert ("alice", "edit", "OK", f"name {name} → {new_name}") in actions


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LIMEN, *args], env=cli_env(env), capture_output=True, text=True, timeout=90, check=False)


def test_cli_media_set_resize_and_finish_install(vm_names: Callable[[], str], tmp_path: Path) -> None:
    env = {
        **os.environ, "LIMEN_LIBVIRT_URI": QEMU_URI, "LIMEN_STORAGE_POOL": TEST_POOL,
        "LIMEN_STORAGE_POOL_DIR": str(TEST_POOL_DIR), "LIMEN_DATA_DIR": str(tmp_path), "LIMEN_VIRT_TYPE": "qemu",
        "LIMEN_ISO_DIR": str(ISO_DIR),
    }
    name = vm_names()
    assert _cli("vm", "create", name, "--memory", "64", "--disk", "1", "--iso", DEMO_ISO, env=env).returncode == 0
    assert _cli("vm", "start", name, env=env).returncode == 0
    shown = _cli("vm", "media", name, env=env)
    assert (shown.returncode, shown.stdout.strip()) == (0, f"hdc: {DEMO_ISO}")
    ejected = _cli("--json", "vm", "media", name, "--eject", env=env)
    assert ejected.returncode == 0, ejected.stderr
    assert json.loads(ejected.stdout) == {"target": "hdc", "iso": None}
    assert _cd_source(name) is None
    assert _cli("vm", "media", name, DEMO_ISO, env=env).stdout.strip() == f"hdc: {DEMO_ISO}"
    missing = _cli("vm", "media", name, "nope.iso", env=env)
    assert missing.returncode == 1 and "VALIDATION_ERROR" in missing.stderr

    set_ = _cli("vm", "set", name, "--vcpus", "2", "--boot", "hd", "--autostart", env=env)
    assert set_.returncode == 0, set_.stderr
    assert "pending restart" in set_.stdout and "vcpus 2" in set_.stdout
    renamed = _cli("vm", "set", name, "--name", vm_names(), env=env)
    assert renamed.returncode == 1 and "VM_MUST_BE_STOPPED" in renamed.stderr

    resized = _cli("--json", "vm", "resize-disk", name, "vda", "2G", env=env)
    assert resized.returncode == 0, resized.stderr
    assert next(d for d in json.loads(resized.stdout)["disks"] if d["target"] == "vda")["capacity_bytes"] == 2**31
    shrink = _cli("vm", "resize-disk", name, "vda", "1", env=env)
    assert shrink.returncode == 1 and "DISK_SHRINK_REFUSED" in shrink.stderr

    finished = _cli("--json", "vm", "finish-install", name, env=env)
    assert finished.returncode == 0, finished.stderr
    vm = json.loads(finished.stdout)
    assert vm["cdrom"] == {"target": "hdc", "iso": None} and vm["pending"] == {"boot_order": ["hd"], "vcpus": 2}
    assert _cli("vm", "set", name, "--no-autostart", env=env).returncode == 0
