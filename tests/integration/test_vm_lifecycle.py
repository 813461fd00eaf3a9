"""VM lifecycle on the real libvirtd and QEMU, through a real ``limen serve`` process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from limen.errors import ErrorCode, LimenError, ValidationFailed
from limen.hypervisor import Hypervisor, VmSpec, editing
from limen.hypervisor.connection import LibvirtConnection
from limen.settings import Settings
from tests.conftest import DEMO_ISO, QEMU_URI, TEST_POOL, TEST_POOL_DIR
from tests.support.databases import cli_env
from tests.support.libvirt_cleanup import domain_exists, volume_exists
from tests.support.net import read_banner
from tests.support.server import LimenProcess
from tests.support.unix_relay import UnixRelay

pytestmark = pytest.mark.integration
LIMEN = str(Path(sys.executable).parent / "limen")


def test_create_start_vnc_stop_delete_through_the_api(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str]
) -> None:
    server = limen_server()
    name = vm_names()
    with httpx.Client(base_url=server.base_url, timeout=30, headers=server.auth_headers) as api:
        created = api.post("/api/vms", json={"name": name, "memory_mib": 64, "disk_gib": 1, "iso": DEMO_ISO})
        assert created.status_code == 201, created.text
        vm = created.json()
        disk_path = next(d["path"] for d in vm["disks"] if d["device"] == "disk")
        assert volume_exists(QEMU_URI, disk_path)

        started = api.post(f"/api/vms/{vm['uuid']}/start")
        assert started.status_code == 200, started.text
        assert started.json()["state"] == "running"
        vnc = api.get(f"/api/vms/{name}").json()["vnc"]
        assert vnc["host"] == "127.0.0.1" and vnc["port"] >= 5900
        banner = read_banner(vnc["host"], vnc["port"])
        assert banner.startswith(b"RFB 003.00") and banner.endswith(b"\n")

        listed = {v["name"]: v for v in api.get("/api/vms").json()}
        assert listed[name]["state"] == "running"
        assert listed[name]["uptime_seconds"] is not None

        assert api.post(f"/api/vms/{name}/stop?force=true").json()["state"] == "stopped"
        deleted = api.delete(f"/api/vms/{name}?delete_disks=true")
        assert deleted.json() == {"deleted": name, "deleted_volumes": [disk_path]}
    assert not domain_exists(QEMU_URI, name)
    assert not volume_exists(QEMU_URI, disk_path)


async def test_failed_create_mid_way_leaves_nothing(
    qemu_hypervisor: Hypervisor, vm_names: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The volume exists when defining the domain fails: both must be gone afterwards."""
    name = vm_names()
    monkeypatch.setattr(
        "limen.hypervisor.service.build_domain_xml",
        lambda plan: f"<domain type='qemu'><name>{plan.name}</name><memory>-5</memory></domain>",
    )
    with pytest.raises(LimenError):
        await qemu_hypervisor.create_vm(VmSpec(name=name, memory_mib=64, disk_gib=1))
    assert not domain_exists(QEMU_URI, name)
    assert not (TEST_POOL_DIR / f"{name}-disk0.qcow2").exists()


async def test_start_failure_on_real_qemu_is_vm_start_failed(
    qemu_hypervisor: Hypervisor, vm_names: Callable[[], str], tmp_path: Path
) -> None:
    name = vm_names()
    iso = tmp_path / "vanishing.iso"
    iso.write_bytes(b"\0" * 2048)
    vm = await qemu_hypervisor.create_vm(VmSpec(name=name, memory_mib=64))
    # Point the CD-ROM at a file, then remove it: QEMU cannot start.
    await qemu_hypervisor.connection.call(
        "attach", lambda conn: conn.defineXML(
            conn.lookupByName(name).XMLDesc(0).replace(
                "</devices>",
                f"<disk type='file' device='cdrom'><source file='{iso}'/><target dev='hdc' bus='ide'/>"
                "<readonly/></disk></devices>",
            )
        ),
    )
    iso.unlink()
    with pytest.raises(LimenError) as caught:
        await qemu_hypervisor.start_vm(vm.uuid)
    assert caught.value.code is ErrorCode.VM_START_FAILED
    assert "vanishing.iso" in caught.value.details


async def test_libvirt_going_away_and_coming_back(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    relay = UnixRelay(tmp_path / "libvirt.sock").start()
    hv = Hypervisor(make_settings(libvirt_uri=relay.uri, libvirt_timeout=2.0))
    await hv.open()
    try:
        assert isinstance(await hv.list_vms(), list)

        relay.cut()
        with pytest.raises(LimenError) as caught:
            await hv.list_vms()
        assert caught.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE

        relay.stalled = True
        relay.start()
        began = time.monotonic()
        with pytest.raises(LimenError) as caught:
            await hv.list_vms()
        assert caught.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE
        assert "within 2 s" in caught.value.details
        assert time.monotonic() - began < 3.0

        relay.cut()
        relay.stalled = False
        relay.start()
        assert isinstance(await hv.list_vms(), list)  # re-opened by itself
    finally:
        relay.stop()
        await hv.close()


async def test_closing_while_a_call_opens_the_connection_leaves_no_connection_open(tmp_path: Path) -> None:
    """A server stopping while a call waits for a slow libvirtd to open the connection: the connection that
    opens after the close is closed at once and the call fails, instead of outliving the hypervisor."""
    relay = UnixRelay(tmp_path / "libvirt.sock").start()
    relay.holding = True  # the daemon answers late: the call's worker waits in libvirt.open
    connection = LibvirtConnection(relay.uri, timeout=10.0)
    call = asyncio.ensure_future(connection.call("hostname", lambda conn: conn.getHostname()))
    try:
        for _ in range(200):
            if relay.held:
                break
            await asyncio.sleep(0.01)
        assert relay.held, "the call never reached the daemon"
        await connection.close()
        relay.release_held()
        with pytest.raises(LimenError) as caught:
            await call
        assert caught.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE
        assert "shutting down" in caught.value.details
        for _ in range(200):
            if relay.relayed == 0:
                break
            await asyncio.sleep(0.01)
        assert relay.relayed == 0, "the connection opened after close() is still open"
    finally:
        relay.release_held()
        relay.stop()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LIMEN, *args], env=cli_env(env), capture_output=True, text=True, timeout=60, check=False)


def test_cli_lifecycle_and_exit_codes(vm_names: Callable[[], str], tmp_path: Path) -> None:
    import os

    env = {
        **os.environ, "LIMEN_LIBVIRT_URI": QEMU_URI, "LIMEN_STORAGE_POOL": TEST_POOL,
        "LIMEN_STORAGE_POOL_DIR": str(TEST_POOL_DIR), "LIMEN_DATA_DIR": str(tmp_path), "LIMEN_VIRT_TYPE": "qemu",
    }
    name = vm_names()
    created = _cli("--json", "vm", "create", name, "--memory", "64", "--iso", DEMO_ISO, env=env)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["state"] == "stopped"
    assert json.loads(_cli("--json", "vm", "start", name, env=env).stdout)["state"] == "running"
    table = _cli("vm", "list", env=env)
    assert table.returncode == 0 and name in table.stdout and "running" in table.stdout
    shown = _cli("vm", "show", name, env=env).stdout
    assert "vnc" in shown and "127.0.0.1:59" in shown
    assert _cli("vm", "reboot", name, "--force", env=env).returncode == 0
    assert _cli("vm", "stop", name, "--force", env=env).returncode == 0
    assert _cli("vm", "delete", name, "--delete-disks", env=env).returncode == 0
    assert not domain_exists(QEMU_URI, name)

    missing = _cli("vm", "show", name, env=env)
    assert missing.returncode == 1 and "VM_NOT_FOUND" in missing.stderr
    bad = _cli("vm", "create", "no spaces allowed", env=env)
    assert bad.returncode == 1 and "name" in bad.stderr
    misconfigured = _cli("vm", "list", env={**env, "LIMEN_LIBVIRT_TIMEOUT": "soon"})
    assert misconfigured.returncode == 2 and "LIMEN_LIBVIRT_TIMEOUT" in misconfigured.stderr
    isos = _cli("--json", "iso", "list", env=env)
    assert DEMO_ISO in [iso["name"] for iso in json.loads(isos.stdout)]


def test_parallel_deletes_of_a_running_vm_one_wins_the_rest_find_it_gone(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str]
) -> None:
    # Each delete destroys a running VM first: the losers' destroy met "domain is not running" and answered
    # VM_OPERATION_FAILED (audited as a failed delete) for a VM that was in fact gone.
    server = limen_server()
    name = vm_names()
    with httpx.Client(base_url=server.base_url, timeout=60, headers=server.auth_headers) as api:
        assert api.post("/api/vms", json={"name": name, "memory_mib": 64, "iso": DEMO_ISO}).status_code == 201
        assert api.post(f"/api/vms/{name}/start").status_code == 200

        def delete(_: int) -> httpx.Response:
            return api.delete(f"/api/vms/{name}?delete_disks=true")

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(delete, range(10)))
    codes = sorted(answer.json().get("code", "OK") for answer in answers)
    assert codes == ["OK"] + ["VM_NOT_FOUND"] * 9, [answer.text for answer in answers]
    assert not domain_exists(QEMU_URI, name)


async def test_a_disc_deleted_as_it_goes_in_is_taken_out_again(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    vm_names: Callable[[], str]
) -> None:
    """The image's delete read the CD-ROMs after this change checked the image and before it put it in the
    drive: both answered success, and the drive named a deleted file."""
    iso_dir = tmp_path / "raced-isos"
    iso_dir.mkdir()
    for image in ("first.iso", "raced.iso"):
        (iso_dir / image).write_bytes(b"image")
    raced_images = Hypervisor(make_settings(libvirt_uri=QEMU_URI, iso_dir=iso_dir))
    await raced_images.open()
    try:
        await _a_disc_deleted_as_it_goes_in(raced_images, monkeypatch, vm_names())
    finally:
        await raced_images.close()


async def _a_disc_deleted_as_it_goes_in(raced_images: Hypervisor, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    vm = await raced_images.create_vm(VmSpec(name=name, memory_mib=64, iso="first.iso"))
    real = editing.with_disc

    def deleted_meanwhile(cdrom: ET.Element, iso_path: str | None) -> str:
        if iso_path is not None and iso_path.endswith("raced.iso"):
            Path(iso_path).unlink(missing_ok=True)
        return real(cdrom, iso_path)

    monkeypatch.setattr(editing, "with_disc", deleted_meanwhile)
    with pytest.raises(ValidationFailed) as caught:
        await editing.change_media(raced_images, vm.uuid, "raced.iso")
    assert caught.value.field == "iso"
    assert Path((await raced_images.get_vm(vm.uuid)).iso_path or "").name == "first.iso"
