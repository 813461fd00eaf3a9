"""The serial console's fault matrix, end to end: uvicorn, the app, libvirt's test driver, and at the stream
boundary (libvirt's console stream, which the test driver lacks) fakes that hang or flood.

Each case asserts the code, the stage, the close, that the verdict came within its bound (+ slack for a
loaded machine), and (``running_console``, ``no_leaks``) that no session, connection, task or stream is left.
Real QEMU cases (VM stopped or killed mid-session, take-over) are in test_serial_qemu.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from limen.api.services import services_of
from limen.auth.revocation import Revocation
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.serial_stream import LibvirtSerialPorts, SerialPort
from limen.settings import Settings
from tests.support.console import ConsoleServer, FakeDomain, Records, client, node_xml, running_console
from tests.support.hanging_libvirt import HangingLibvirt
from tests.support.serial import SerialReader, serial_url

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60), pytest.mark.usefixtures("no_leaks")]

FAST = {"console_check_vm_timeout": 1.0, "console_serial_open_timeout": 1.0, "console_write_timeout": 1.0,
        "libvirt_timeout": 5.0}
SLACK = 1.0
CHUNK = 16 * 1024


def serial_node_uri(tmp_path: Path, with_serial: list[FakeDomain], without: list[FakeDomain]) -> str:
    xml = node_xml([*with_serial, *without])
    for dom in with_serial:  # the test driver keeps the device; LibvirtSerialPorts.has_serial reads it
        xml = xml.replace(f"<uuid>{dom.uuid}</uuid><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
                          "<devices>",
                          f"<uuid>{dom.uuid}</uuid><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
                          "<devices><serial type='pty'><target port='0'/></serial>")
    path = tmp_path / "serial-node.xml"
    path.write_text(xml)
    return f"test://{path}"


class HangingOpen(SerialPort):
    """libvirt that never answers ``virDomainOpenConsole``."""

    async def read(self) -> bytes:
        raise AssertionError("never opened")

    async def write(self, data: bytes, *, timeout: float) -> None:
        raise AssertionError("never opened")

    @property
    def ended_by(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


class FloodingPort(HangingOpen):
    """A guest that writes without end; counts what the session took from it."""

    def __init__(self) -> None:
        self.taken = 0
        self.closed = False

    async def read(self) -> bytes:
        await asyncio.sleep(0)
        self.taken += CHUNK
        return b"x" * CHUNK

    async def close(self) -> None:
        self.closed = True


class FakePorts:
    """The real device check (test driver XML); ``open`` from the test."""

    def __init__(self, real: LibvirtSerialPorts, open_port: Callable[[], Any]) -> None:
        self._real = real
        self._open = open_port
        self.opened: list[SerialPort] = []

    async def has_serial(self, vm_uuid: str) -> bool:
        return await self._real.has_serial(vm_uuid)

    async def open(self, vm_uuid: str, *, force: bool) -> SerialPort:
        port: SerialPort = await self._open()
        self.opened.append(port)
        return port


@pytest.fixture
def domains() -> tuple[FakeDomain, FakeDomain]:
    return FakeDomain("serial-vm", vnc=None), FakeDomain("no-serial-vm", vnc=None)


@pytest.fixture
async def server(
    tmp_path: Path, make_settings: Callable[..., Settings], domains: tuple[FakeDomain, FakeDomain]
) -> AsyncIterator[ConsoleServer]:
    with_serial, without = domains
    settings = make_settings(libvirt_uri=serial_node_uri(tmp_path, [with_serial], [without]), **FAST)
    async with running_console(settings) as running:
        yield running


def use_ports(server: ConsoleServer, open_port: Callable[[], Any]) -> FakePorts:
    ports = FakePorts(LibvirtSerialPorts(server.hypervisor.connection), open_port)
    # The services are frozen: the app gets a copy with these ports (endpoints read app.state each time).
    server.app.state.services = dataclasses.replace(services_of(server.app), serial_ports=ports)
    return ports


async def verdict(
    server: ConsoleServer, vm: str, timeout: float = 10.0
) -> tuple[SerialReader, float, tuple[int | None, str]]:
    async with client(serial_url(server.url(vm))) as ws:
        reader = SerialReader(ws)
        started = time.monotonic()
        close = await reader.until_closed(timeout)
        return reader, time.monotonic() - started, close


async def test_vm_missing(server: ConsoleServer) -> None:
    reader, took, close = await verdict(server, "no-such-vm")
    assert close == (ErrorCode.VM_NOT_FOUND.close_code, "VM_NOT_FOUND")
    assert [e["stage"] for e in reader.errors] == ["check_vm"]
    assert took < 1.0 + SLACK


async def test_vm_without_a_serial_device(server: ConsoleServer) -> None:
    reader, took, close = await verdict(server, "no-serial-vm")
    assert close == (ErrorCode.SERIAL_NOT_CONFIGURED.close_code, "SERIAL_NOT_CONFIGURED")
    (error,) = reader.errors
    assert error["stage"] == "check_vm" and "no serial console device" in error["details"]
    assert reader.statuses == ["Connected, checking VM status..."]
    assert took < 1.0 + SLACK


async def test_libvirt_hung_opening_the_port(server: ConsoleServer) -> None:
    never = asyncio.Event()

    async def hang() -> SerialPort:
        await never.wait()
        return HangingOpen()

    use_ports(server, hang)
    reader, took, close = await verdict(server, "serial-vm")
    assert close == (ErrorCode.HYPERVISOR_UNAVAILABLE.close_code, "HYPERVISOR_UNAVAILABLE")
    (error,) = reader.errors
    assert error["stage"] == "open_serial" and "within 1 s" in error["details"]
    assert reader.statuses == ["Connected, checking VM status...", "Opening the serial port..."]
    assert took < 2 * 1.0 + SLACK  # check_vm's and open_serial's deadlines at most


async def test_libvirt_failure_opening_the_port(server: ConsoleServer) -> None:
    async def refuse() -> SerialPort:
        raise LimenError(ErrorCode.SERIAL_BUSY, "another client holds this VM's serial console")

    use_ports(server, refuse)
    reader, _, close = await verdict(server, "serial-vm")
    assert close == (ErrorCode.SERIAL_BUSY.close_code, "SERIAL_BUSY")
    assert [e["stage"] for e in reader.errors] == ["open_serial"]


async def test_client_that_never_reads_is_dropped_with_bounded_memory(
    server: ConsoleServer, console_log: Records
) -> None:
    port = FloodingPort()

    async def flood() -> SerialPort:
        return port

    use_ports(server, flood)
    async with client(serial_url(server.url("serial-vm")), max_queue=1) as ws:
        reader = SerialReader(ws)
        await reader.until_status("Serial console connected", 5)
        ws.transport.pause_reading()  # the browser stops reading
        started = time.monotonic()
        while not port.closed:
            assert time.monotonic() - started < 1.0 + 2 * SLACK, "no SLOW_CLIENT within the write deadline"
            await asyncio.sleep(0.05)
        took = time.monotonic() - started
        ws.transport.resume_reading()
        await reader.until_closed(5)  # the close frame may sit behind the unread data: 4400 or 1006
    (end,) = console_log.events("console_end")
    assert (end["reason"], end["stage"], end["kind"]) == ("SLOW_CLIENT", "proxy", "serial")
    assert not reader.errors  # no frame for a client that does not read, only the close
    assert took < 1.0 + 2 * SLACK
    # What the session took from the guest is what the socket buffers held, not an unbounded queue.
    assert port.taken < 32 * 1024 * 1024


async def test_revocation_ends_a_serial_session(server: ConsoleServer, domains: tuple[FakeDomain, FakeDomain]) -> None:
    port = FloodingPort()
    slow = asyncio.Event()

    async def quiet() -> SerialPort:
        class Quiet(FloodingPort):
            async def read(self) -> bytes:
                await slow.wait()
                return b""

        return Quiet()

    use_ports(server, quiet)
    async with client(serial_url(server.url("serial-vm"))) as ws:
        reader = SerialReader(ws)
        await reader.until_status("Serial console connected", 5)
        server.sessions.revoke(Revocation.vm_deleted(domains[0].uuid, "VM deleted by a test"))
        close = await reader.until_closed(5)
    assert close == (ErrorCode.VM_NOT_FOUND.close_code, "VM_NOT_FOUND")
    del port


async def test_libvirt_daemon_that_never_answers(
    make_settings: Callable[..., Settings], libvirt_hangs: HangingLibvirt
) -> None:
    # libvirt's own timeout is longer than the stage's: the stage deadline is what must end it.
    settings = make_settings(libvirt_uri=libvirt_hangs.uri, **{**FAST, "libvirt_timeout": 10.0})
    async with running_console(settings) as hung:
        libvirt_hangs.armed = True
        reader, took, close = await verdict(hung, "any-vm")
        assert close == (ErrorCode.HYPERVISOR_UNAVAILABLE.close_code, "HYPERVISOR_UNAVAILABLE")
        (error,) = reader.errors
        assert error["stage"] == "check_vm" and "libvirt did not answer within 1 s" in error["details"]
        assert took < 1.0 + SLACK
        libvirt_hangs.close()  # ends the hung call, so its thread and socket go before the leak checks


async def test_stopped_vm_with_auto_start_off(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    stopped = FakeDomain("off-vm", vnc=None, running=False)
    settings = make_settings(libvirt_uri=serial_node_uri(tmp_path, [stopped], []), console_auto_start=False, **FAST)
    async with running_console(settings) as off:
        reader, took, close = await verdict(off, "off-vm")
    assert close == (ErrorCode.VM_NOT_RUNNING.close_code, "VM_NOT_RUNNING")
    assert [e["stage"] for e in reader.errors] == ["check_vm"]
    assert reader.statuses == ["Connected, checking VM status..."]
    assert took < 1.0 + SLACK


@pytest.mark.runs_quiet  # freed within 1 s
async def test_client_that_leaves_while_libvirt_hangs_opening_the_port(
    server: ConsoleServer, console_log: Records
) -> None:
    never = asyncio.Event()

    async def hang() -> SerialPort:
        await never.wait()
        return HangingOpen()

    use_ports(server, hang)
    async with client(serial_url(server.url("serial-vm"))) as ws:
        await SerialReader(ws).until_status("Opening the serial port...", 5)
    left = time.monotonic()
    await server.wait_idle(timeout=2)
    assert time.monotonic() - left < 1.0
    (end,) = console_log.events("console_end")
    assert (end["reason"], end["stage"], end["kind"]) == ("client_closed", "open_serial", "serial")


async def test_server_shutdown_mid_session(
    tmp_path: Path, make_settings: Callable[..., Settings], domains: tuple[FakeDomain, FakeDomain]
) -> None:
    settings = make_settings(libvirt_uri=serial_node_uri(tmp_path, [domains[0]], []), **FAST)
    server = await ConsoleServer(settings).start()
    quiet = asyncio.Event()

    class Quiet(FloodingPort):
        async def read(self) -> bytes:
            await quiet.wait()
            return b""

    async def open_quiet() -> SerialPort:
        return port

    port = Quiet()
    use_ports(server, open_quiet)
    try:
        async with client(serial_url(server.url("serial-vm"))) as ws:
            reader = SerialReader(ws)
            await reader.until_status("Serial console connected", 5)
            asked = time.monotonic()
            stopping = asyncio.create_task(server.stop())
            close = await reader.until_closed(5)
            await stopping
    finally:
        await server.stop()
    assert close == (ErrorCode.SERVER_SHUTDOWN.close_code, "SERVER_SHUTDOWN")
    assert [(e["code"], e["stage"]) for e in reader.errors] == [("SERVER_SHUTDOWN", "proxy")]
    assert time.monotonic() - asked < 3
    assert len(server.sessions) == 0 and port.closed


async def test_one_log_line_for_the_stages_one_per_error_and_one_per_end(
        server: ConsoleServer, console_log: Records) -> None:
    quiet = asyncio.Event()

    class Quiet(FloodingPort):
        async def read(self) -> bytes:
            await quiet.wait()
            return b""

        async def write(self, data: bytes, *, timeout: float) -> None:
            return None  # the guest takes it

    async def open_quiet() -> SerialPort:
        return Quiet()

    use_ports(server, open_quiet)
    async with client(serial_url(server.url("serial-vm"))) as ws:
        await SerialReader(ws).until_status("Serial console connected", 5)
        await ws.send("echo limen\r")
    await server.wait_idle(timeout=2)
    _, _, close = await verdict(server, "no-serial-vm")
    assert close[1] == "SERIAL_NOT_CONFIGURED"
    stages = console_log.events("console_stages")
    (serial_stages,) = [line for line in stages if line["vm"] == "serial-vm"]
    assert [stage for stage, _ in serial_stages["stages"]] == ["check_vm", "open_serial", "proxy"]
    ends = console_log.events("console_end")
    assert [(end["vm"], end["reason"], end["kind"]) for end in ends] == [
        ("serial-vm", "client_closed", "serial"), ("no-serial-vm", "SERIAL_NOT_CONFIGURED", "serial")]
    assert ends[0]["vm_name"] == "serial-vm" and ends[0]["vm_uuid"] and ends[0]["bytes_to_vnc"] == len("echo limen\r")
    (error,) = console_log.events("console_error")
    assert (error["code"], error["stage"], error["vm"]) == ("SERIAL_NOT_CONFIGURED", "check_vm", "no-serial-vm")
    assert all("serial" in record.getMessage().lower() for record in console_log.records
               if getattr(record, "event", None) in {"console_stages", "console_error", "console_end"})
    assert len({line["session"] for line in stages + ends}) == 2


async def test_idle_timeout_warns_then_closes_a_serial_session(
    tmp_path: Path, make_settings: Callable[..., Settings], domains: tuple[FakeDomain, FakeDomain]
) -> None:
    # A guest that prints nothing and a user who types nothing: the idle timeout ends the session as it
    # ends a VNC one (guest output is not input; only the user's keys keep a console alive).
    idle = {"console_idle_timeout": 1.0, "console_idle_warning": 0.5}
    settings = make_settings(libvirt_uri=serial_node_uri(tmp_path, [domains[0]], []), **FAST, **idle)
    chatty = asyncio.Event()

    class Chatty(FloodingPort):
        async def read(self) -> bytes:
            await asyncio.sleep(0.1)
            return b"." if not chatty.is_set() else b""

    async def open_chatty() -> SerialPort:
        return Chatty()

    async with running_console(settings) as running:
        use_ports(running, open_chatty)
        async with client(serial_url(running.url("serial-vm", query="notices=1"))) as ws:
            reader = SerialReader(ws)
            await reader.until_status("Serial console connected", 5)
            connected = time.monotonic()
            close = await reader.until_closed(5)
            idle_for = time.monotonic() - connected
    assert close == (ErrorCode.IDLE_TIMEOUT.close_code, "IDLE_TIMEOUT")
    notices = [frame["code"] for frame in reader.texts if frame["type"] == "notice"]
    assert notices == ["IDLE_WARNING"]
    assert [(e["code"], e["stage"]) for e in reader.errors] == [("IDLE_TIMEOUT", "proxy")]
    assert reader.output  # the guest's output flowed all along and kept nothing alive
    assert 0.8 <= idle_for <= 2.0 + SLACK
