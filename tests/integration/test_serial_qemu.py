"""The serial console against real QEMU VMs (TCG, 64 MiB, the demo GRUB ISO with GRUB on the serial port).

Each test opens ``/api/vms/{id}/serial`` on a ConsoleServer (uvicorn in the test's loop, the system libvirtd)
and talks to GRUB through libvirt's console stream; ``no_leaks`` and :data:`OPEN_STREAMS` check that no
socket, task, thread or libvirt stream is left.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from limen.errors import ErrorCode
from limen.hypervisor import Hypervisor, Vm, VmSpec
from limen.hypervisor.serial_stream import OPEN_STREAMS, SERIAL_READ_SIZE, LibvirtSerialPort, LibvirtSerialPorts
from limen.hypervisor.snapshots import revert_snapshot
from limen.settings import Settings
from tests.conftest import DEMO_ISO, QEMU_URI
from tests.support.console import (
    ConsoleServer,
    ConsoleTranscript,
    client,
    read_frames,
    running_console,
    running_vm_with_a_stopped_snapshot,
)
from tests.support.garbage import cyclic_garbage
from tests.support.qemu_process import qemu_pid
from tests.support.serial import SerialReader, serial_demo_iso_dir, serial_url

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120), pytest.mark.usefixtures("no_leaks")]

CHECKING = "Connected, checking VM status..."
OPENING = "Opening the serial port..."
CONNECTED = "Serial console connected"
GRUB_WAIT = 30.0  # TCG on a machine shared by eight test runs: GRUB takes ~1 s alone, far more when loaded


@pytest.fixture
async def serial_server(make_settings: Callable[..., Settings]) -> AsyncIterator[ConsoleServer]:
    settings = make_settings(libvirt_uri=QEMU_URI, iso_dir=serial_demo_iso_dir(), console_write_timeout=2.0)
    async with running_console(settings) as server:
        yield server
    await wait_streams_released()


async def wait_streams_released(timeout: float = 10.0) -> None:
    for _ in range(round(timeout / 0.05)):  # released by threads: polled
        if not OPEN_STREAMS:
            break
        await asyncio.sleep(0.05)
    assert not OPEN_STREAMS, f"{len(OPEN_STREAMS)} libvirt console streams left open"


async def demo_vm(hv: Hypervisor, name: str) -> Vm:
    return await hv.create_vm(VmSpec(name=name, vcpus=1, memory_mib=64, iso=DEMO_ISO))


async def grub_prompt(reader: SerialReader) -> None:
    """Until GRUB's prompt is on the serial console; Enter redraws it if it came before the port opened."""
    try:
        await reader.until_output(b"grub>", 8.0)
    except TimeoutError:
        await reader.ws.send("\r")
        await reader.until_output(b"grub>", GRUB_WAIT)


async def echo_limen(reader: SerialReader) -> None:
    mark = len(reader.output)
    await reader.ws.send("echo limen\r")
    await reader.until_output(b"\rlimen", GRUB_WAIT, after=mark)  # GRUB ends lines with \n\r


async def test_stopped_demo_vm_starts_shows_grub_and_echoes(
    serial_server: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    vm = await demo_vm(serial_server.hypervisor, vm_names())
    async with client(serial_url(serial_server.url(vm.uuid))) as ws:
        reader = SerialReader(ws)
        await reader.until_status(CONNECTED, 20)
        assert reader.statuses == [CHECKING, "Starting VM...", OPENING, CONNECTED]
        assert [frame["stage"] for frame in reader.texts] == ["check_vm", "start_vm", "open_serial", "proxy"]
        await grub_prompt(reader)
        await echo_limen(reader)
    rows = await serial_server.access.audit.console_sessions()
    (row,) = [row for row in rows if row.vm_uuid == vm.uuid]
    assert row.kind == "serial"
    deadline = time.monotonic() + 5
    ended = await serial_server.access.audit.console_session(row.id)
    while ended is not None and ended.live:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
        ended = await serial_server.access.audit.console_session(row.id)
    assert ended is not None and ended.end_code == "OK"
    assert ended.bytes_from_client >= len("echo limen\r") and ended.bytes_to_client > 0


async def test_serial_session_survives_the_vnc_console(
    serial_server: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    hv = serial_server.hypervisor
    vm = await hv.start_vm((await demo_vm(hv, vm_names())).uuid)
    with cyclic_garbage() as found:
        async with client(serial_url(serial_server.url(vm.uuid))) as serial_ws:
            reader = SerialReader(serial_ws)
            await reader.until_status(CONNECTED, 20)
            await grub_prompt(reader)
            async with client(serial_server.url(vm.uuid)) as vnc_ws:  # the screen opens beside it
                screen = ConsoleTranscript()
                await asyncio.wait_for(read_frames(vnc_ws, screen, time.monotonic(), until_binary=1), 20)
                assert screen.binary[0].startswith(b"RFB ")
                await echo_limen(reader)  # the serial console still works while the screen is open
            await echo_limen(reader)  # and after it closed
            assert serial_ws.close_code is None
        await serial_server.wait_idle()
        await wait_streams_released()
    # Both kinds of console, their stream and their connections were freed by reference counting when they
    # ended, not left to the cyclic collector (test_console_garbage.py has why).
    assert found == Counter()


async def test_vm_stop_ends_the_serial_session_with_vm_stopped(
    serial_server: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    hv = serial_server.hypervisor
    vm = await hv.start_vm((await demo_vm(hv, vm_names())).uuid)
    async with client(serial_url(serial_server.url(vm.name))) as ws:
        reader = SerialReader(ws)
        await reader.until_status(CONNECTED, 20)
        stopped = time.monotonic()
        await hv.stop_vm(vm.uuid, force=True)
        close = await reader.until_closed(10)
        verdict = time.monotonic() - stopped
    assert close == (ErrorCode.VM_STOPPED.close_code, "VM_STOPPED")
    (error,) = reader.errors
    assert (error["code"], error["stage"]) == ("VM_STOPPED", "proxy")
    assert verdict < 6.0  # libvirt's destroy of a TCG guest itself takes about 2 s here


async def test_deleting_a_vm_ends_its_serial_session_and_releases_the_stream_first(
    serial_server: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    """The delete destroys the VM, releases its console stream, then undefines it (libvirt 9.0 deadlocks when
    an abort meets the undefine): the session ends with VM_STOPPED and libvirtd still answers."""
    hv = serial_server.hypervisor
    vm = await hv.start_vm((await demo_vm(hv, vm_names())).uuid)
    async with client(serial_url(serial_server.url(vm.uuid))) as ws:
        reader = SerialReader(ws)
        await reader.until_status(CONNECTED, 20)
        await hv.delete_vm(vm.uuid)
        close = await reader.until_closed(10)
    assert close == (ErrorCode.VM_STOPPED.close_code, "VM_STOPPED")
    assert not OPEN_STREAMS
    assert vm.name not in [listed.name for listed in await hv.list_vms()]


async def test_vm_killed_mid_session_ends_with_vm_stopped(
    serial_server: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    hv = serial_server.hypervisor
    vm = await hv.start_vm((await demo_vm(hv, vm_names())).uuid)
    async with client(serial_url(serial_server.url(vm.uuid))) as ws:
        reader = SerialReader(ws)
        await reader.until_status(CONNECTED, 20)
        pid = qemu_pid(vm.name)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        close = await reader.until_closed(10)
        verdict = time.monotonic() - killed
    assert close == (ErrorCode.VM_STOPPED.close_code, "VM_STOPPED")
    assert verdict < 5.0


async def test_second_session_is_refused_or_takes_over_with_force(
    serial_server: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    hv = serial_server.hypervisor
    vm = await hv.start_vm((await demo_vm(hv, vm_names())).uuid)
    url = serial_url(serial_server.url(vm.uuid))
    async with client(url) as first_ws:
        first = SerialReader(first_ws)
        await first.until_status(CONNECTED, 20)
        async with client(url) as refused_ws:
            refused = SerialReader(refused_ws)
            assert await refused.until_closed(10) == (ErrorCode.SERIAL_BUSY.close_code, "SERIAL_BUSY")
            assert [error["stage"] for error in refused.errors] == ["open_serial"]
        assert first_ws.close_code is None  # the refusal changed nothing for the holder
        async with client(url + "?force=1") as second_ws:
            second = SerialReader(second_ws)
            await second.until_status(CONNECTED, 20)
            assert await first.until_closed(10) == (ErrorCode.SESSION_TAKEN_OVER.close_code, "SESSION_TAKEN_OVER")
            await second.ws.send("\r")
            await grub_prompt(second)
            await echo_limen(second)


async def test_a_flooding_guest_is_held_back_when_nobody_reads(
    serial_server: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    """GRUB prints without end. While nothing reads the port, the bridge stops reading libvirt's stream at
    its high-water mark (the guest then waits on its serial port); reading again resumes the flow. A small
    mark here, so that the slow emulated serial port reaches it in seconds."""
    hv = serial_server.hypervisor
    vm = await hv.start_vm((await demo_vm(hv, vm_names())).uuid)
    ports = LibvirtSerialPorts(hv.connection, read_high=4096, read_low=1024)
    port = await ports.open(vm.uuid, force=False)
    assert isinstance(port, LibvirtSerialPort)
    try:
        seen = bytearray()
        await port.write(b"\r", timeout=5)
        async with asyncio.timeout(GRUB_WAIT):
            while b"grub>" not in seen:
                seen += await port.read()
        await port.write(b"while true; do echo 0123456789abcdefghijklmnopqrstuvwxyz0123456789; done\r", timeout=5)
        largest = 0
        async with asyncio.timeout(GRUB_WAIT):  # nobody reads: the buffer fills up to the mark, then pauses
            while not port.buffered[1]:
                largest = max(largest, port.buffered[0])
                await asyncio.sleep(0.01)
        for _ in range(100):  # a second more: it stays put
            largest = max(largest, port.buffered[0])
            await asyncio.sleep(0.01)
        assert largest <= 4096 + SERIAL_READ_SIZE
        held = port.buffered[0]
        flowed = 0
        async with asyncio.timeout(GRUB_WAIT):  # reading again resumes the flow past what was held
            while flowed <= held + 4096:
                flowed += len(await port.read())
    finally:
        await port.close()


async def test_a_revert_under_an_open_serial_console_ends_it_with_vm_reverted(
    serial_server: ConsoleServer, vm_names: Callable[[], str]
) -> None:
    hv = serial_server.hypervisor
    vm = await running_vm_with_a_stopped_snapshot(hv, vm_names(), DEMO_ISO)
    async with client(serial_url(serial_server.url(vm.uuid))) as ws:
        reader = SerialReader(ws)
        await reader.until_status(CONNECTED, 20)
        await revert_snapshot(hv, vm.uuid, "off")
        close = await reader.until_closed(10)
    assert close == (ErrorCode.VM_REVERTED.close_code, "VM_REVERTED")
    (error,) = reader.errors
    assert (error["code"], error["stage"]) == ("VM_REVERTED", "proxy")
