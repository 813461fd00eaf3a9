"""The console against real QEMU VMs (TCG, 64 MiB, the demo GRUB ISO) under the system libvirtd.

The seed's own test: create a VM, open its console WebSocket, see each status message, then a live
VNC stream (a full RFB handshake, security None, and a FramebufferUpdate).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import libvirt
import pytest

from limen.console.stage_table import VNC_STAGES
from limen.errors import ErrorCode
from limen.hypervisor import Hypervisor, Vm, VmSpec
from limen.hypervisor.snapshots import revert_snapshot
from limen.settings import Settings
from tests.conftest import DEMO_ISO, QEMU_URI
from tests.support.console import (
    ConsoleServer,
    ConsoleTranscript,
    client,
    read_console,
    read_frames,
    running_console,
    running_vm_with_a_stopped_snapshot,
)
from tests.support.rfb_client import RfbStream, handshake, request_full_update

# Real QEMU behind the staged console; the database is read only at admission, as in every console test.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(90), pytest.mark.usefixtures("no_leaks"),
              pytest.mark.same_on_any_database]

CHECKING = "Connected, checking VM status..."
ESTABLISHED = "VNC connection established, starting proxy..."



@pytest.fixture
async def qemu_console(make_settings: Callable[..., Settings]) -> AsyncIterator[ConsoleServer]:
    settings = make_settings(libvirt_uri=QEMU_URI, console_write_timeout=2.0)
    async with running_console(settings) as server:
        yield server


async def demo_vm(hv: Hypervisor, name: str) -> Vm:
    return await hv.create_vm(VmSpec(name=name, vcpus=1, memory_mib=64, iso=DEMO_ISO))


async def open_live_console(server: ConsoleServer, vm: Vm) -> tuple[ConsoleTranscript, float, Vm]:
    """Opens the console, checks the statuses, runs an RFB handshake and receives a framebuffer update."""
    async with client(server.url(vm.uuid)) as ws:
        t = ConsoleTranscript()
        started = time.monotonic()
        await read_frames(ws, t, started, until_binary=1)
        established = time.monotonic() - started
        assert t.order[-1] == "binary" and set(t.order[:-1]) == {"text"}  # no binary before the last status
        stream = RfbStream(ws, t.binary[0])
        init = await asyncio.wait_for(handshake(stream), 10)
        assert init.width > 0 and init.height > 0
        update = await asyncio.wait_for(request_full_update(stream, init), 10)
        assert update.rectangles >= 1
        x, y, width, height, _encoding = update.first
        assert x + width <= init.width and y + height <= init.height
    running = await server.hypervisor.get_vm(vm.uuid)
    return t, established, running


async def test_stopped_vm_auto_starts_then_streams(
    qemu_console: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    vm = await demo_vm(qemu_console.hypervisor, vm_names())
    assert not vm.is_active
    t, established, running = await open_live_console(qemu_console, vm)
    assert running.vnc is not None and running.vnc.port is not None
    assert t.statuses == [
        CHECKING,
        "Starting VM...",
        "Getting VNC port...",
        f"Connecting to VNC server on port {running.vnc.port}...",
        ESTABLISHED,
    ]
    assert [frame["stage"] for frame in t.texts] == ["check_vm", "start_vm", "get_port", "connect", "proxy"]
    assert established < VNC_STAGES.worst_case(qemu_console.settings)
    elapsed = [frame["elapsed_ms"] for frame in t.texts]
    assert elapsed == sorted(elapsed)


async def test_running_vm_gets_the_four_statuses_then_streams(
    qemu_console: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    hv = qemu_console.hypervisor
    vm = await hv.start_vm((await demo_vm(hv, vm_names())).uuid)
    t, _, running = await open_live_console(qemu_console, vm)
    assert running.vnc is not None
    assert t.statuses == [
        CHECKING,
        "Getting VNC port...",
        f"Connecting to VNC server on port {running.vnc.port}...",
        ESTABLISHED,
    ]


async def test_vm_destroyed_mid_session_closes_with_vm_stopped(
    qemu_console: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    hv = qemu_console.hypervisor
    vm = await hv.start_vm((await demo_vm(hv, vm_names())).uuid)
    async with client(qemu_console.url(vm.name, query="notices=1")) as ws:
        t = ConsoleTranscript()
        await read_frames(ws, t, time.monotonic(), until_binary=1)
        destroyed = time.monotonic()
        await hv.stop_vm(vm.uuid, force=True)
        await read_frames(ws, t, time.monotonic())
        verdict = time.monotonic() - destroyed
    assert (t.close_code, t.close_reason) == (ErrorCode.VM_STOPPED.close_code, "VM_STOPPED")
    (error,) = t.errors
    assert (error["code"], error["stage"]) == ("VM_STOPPED", "proxy")
    assert verdict < 5.0  # libvirt's destroy of a TCG guest itself takes about 2 s here


async def test_start_that_fails(qemu_console: ConsoleServer, vm_names: Callable[[], str]) -> None:
    name = vm_names()
    xml = f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
      <os><type arch='x86_64'>hvm</type></os>
      <devices>
        <disk type='file' device='disk'><source file='/nonexistent/limen-test/{name}.qcow2'/>
          <target dev='vda' bus='virtio'/></disk>
        <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
      </devices></domain>"""
    conn = libvirt.open(QEMU_URI)
    try:
        conn.defineXML(xml)
    finally:
        conn.close()
    t = await read_console(qemu_console.url(name))
    assert t.statuses == [CHECKING, "Starting VM..."]
    (error,) = t.errors
    assert (error["code"], error["stage"]) == ("VM_START_FAILED", "start_vm")
    assert "nonexistent" in error["details"]
    assert (t.close_code, t.close_reason) == (ErrorCode.VM_START_FAILED.close_code, "VM_START_FAILED")
    assert t.closed_after is not None
    assert t.closed_after <= qemu_console.settings.console_start_vm_timeout + 1


@pytest.mark.runs_quiet  # freed within 1 s
async def test_client_that_leaves_while_the_vm_starts(
    qemu_console: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    vm = await demo_vm(qemu_console.hypervisor, vm_names())
    async with client(qemu_console.url(vm.uuid)) as ws:
        t = ConsoleTranscript()
        while "Starting VM..." not in t.statuses:
            await read_frames(ws, t, time.monotonic(), until_frames=len(t.order) + 1)
    left = time.monotonic()
    await qemu_console.wait_idle(timeout=5)
    assert time.monotonic() - left < 1.0


async def test_a_revert_under_an_open_console_ends_it_with_vm_reverted(
    qemu_console: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    # A running VM reverted to a snapshot of it stopped: libvirt stops it "from snapshot". The console says so
    # (VM_REVERTED, "reconnect"), not VM_STOPPED's "start it again" (a revert to a running snapshot whose QEMU
    # must be restarted starts it again at once).
    hv = qemu_console.hypervisor
    vm = await running_vm_with_a_stopped_snapshot(hv, vm_names(), DEMO_ISO)
    async with client(qemu_console.url(vm.name, query="notices=1")) as ws:
        t = ConsoleTranscript()
        await read_frames(ws, t, time.monotonic(), until_binary=1)
        await revert_snapshot(hv, vm.uuid, "off")
        await read_frames(ws, t, time.monotonic())
    assert (t.close_code, t.close_reason) == (ErrorCode.VM_REVERTED.close_code, "VM_REVERTED")
    (error,) = t.errors
    assert (error["code"], error["stage"]) == ("VM_REVERTED", "proxy")
    assert "reverted to a snapshot" in error["details"]
