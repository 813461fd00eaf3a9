"""The serial console without sockets or libvirt: its stage table and machine, and the session driven
through its Protocol interfaces (client, hypervisor, serial ports) by fakes, in milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from limen.console import serial_session
from limen.console.handshake import Close, IllegalTransition, SendText
from limen.console.serial_session import SerialHolders, SerialSession
from limen.console.serial_stages import SERIAL_STAGES, SerialHandshake, SerialStage, handshake_bound
from limen.console.stage_table import SERIAL_STAGES as TABLE
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.domain_xml import DomainPlan, build_domain_xml
from limen.hypervisor.models import Vm, VmState
from limen.hypervisor.serial_stream import SerialPort, declares_serial_console
from limen.settings import Settings, load_settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
UUID = "6f1c2a9e-0000-4000-8000-000000000001"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, data_dir=tmp_path / "data", log_dir=tmp_path / "log", console_write_timeout=0.2,
                         console_check_vm_timeout=0.2, console_serial_open_timeout=0.2)


# -- the table and the machine ------------------------------------------------------------------------


def test_readme_table_equals_the_stage_table() -> None:
    section = README[README.index("## The serial console"):]
    section = section[:section.index("\n## ", 1)]
    assert TABLE.readme_table(Settings.model_validate({})) in section
    for spec in SERIAL_STAGES:
        assert f"| `{spec.stage.value}` | {spec.failure_code.name} |" in section


def test_worst_case_is_the_sum_of_the_deadlines(settings: Settings) -> None:
    assert handshake_bound(settings) == pytest.approx(
        settings.console_check_vm_timeout + settings.console_start_vm_timeout + settings.console_serial_open_timeout)


def test_machine_walks_the_stages_in_order_and_sends_one_status_each(settings: Settings) -> None:
    now = [10.0]
    machine = SerialHandshake(settings, clock=lambda: now[0])
    frames = []
    for stage in (SerialStage.CHECK_VM, SerialStage.START_VM, SerialStage.OPEN_SERIAL, SerialStage.PROXY):
        (action,) = machine.enter(stage)
        assert isinstance(action, SendText)
        frames.append(json.loads(action.text))
        now[0] += 0.25
    assert [f["stage"] for f in frames] == ["check_vm", "start_vm", "open_serial", "proxy"]
    assert [f["message"] for f in frames] == [spec.text for spec in SERIAL_STAGES]
    assert [f["elapsed_ms"] for f in frames] == [0, 250, 500, 750]
    assert machine.remaining() is None  # the proxy stage has no deadline


@pytest.mark.parametrize(("before", "stage"), [
    (None, SerialStage.OPEN_SERIAL), (SerialStage.CHECK_VM, SerialStage.PROXY),
    (SerialStage.OPEN_SERIAL, SerialStage.START_VM),
])
def test_a_stage_out_of_order_is_an_adapter_bug(settings: Settings, before: SerialStage | None,
                                                stage: SerialStage) -> None:
    machine = SerialHandshake(settings, clock=lambda: 0.0)
    if before is not None:
        for step in (SerialStage.CHECK_VM, SerialStage.OPEN_SERIAL)[: 1 if before is SerialStage.CHECK_VM else 2]:
            machine.enter(step)
    with pytest.raises(IllegalTransition):
        machine.enter(stage)


@pytest.mark.parametrize(("stage", "code"), [
    (SerialStage.CHECK_VM, ErrorCode.HYPERVISOR_UNAVAILABLE), (SerialStage.START_VM, ErrorCode.VM_START_FAILED),
    (SerialStage.OPEN_SERIAL, ErrorCode.HYPERVISOR_UNAVAILABLE),
])
def test_each_deadline_becomes_its_code(settings: Settings, stage: SerialStage, code: ErrorCode) -> None:
    machine = SerialHandshake(settings, clock=lambda: 0.0)
    machine.enter(SerialStage.CHECK_VM)
    if stage is not SerialStage.CHECK_VM:
        if stage is SerialStage.START_VM:
            machine.enter(SerialStage.START_VM)
        else:
            machine.enter(SerialStage.OPEN_SERIAL)
    assert machine.timeout_error().code is code


def test_an_error_sends_its_frame_then_the_close_and_slow_client_only_the_close(settings: Settings) -> None:
    machine = SerialHandshake(settings, clock=lambda: 0.0)
    machine.enter(SerialStage.CHECK_VM)
    frame, close = machine.end(LimenError(ErrorCode.SERIAL_NOT_CONFIGURED, "no device"))
    assert isinstance(frame, SendText) and json.loads(frame.text)["code"] == "SERIAL_NOT_CONFIGURED"
    assert close == Close(4210, "SERIAL_NOT_CONFIGURED")
    assert machine.end(LimenError(ErrorCode.INTERNAL_ERROR, "twice")) == []  # one ending only
    slow = SerialHandshake(settings, clock=lambda: 0.0)
    slow.enter(SerialStage.CHECK_VM)
    assert slow.end(LimenError(ErrorCode.SLOW_CLIENT, "x")) == [Close(4400, "SLOW_CLIENT")]
    gone = SerialHandshake(settings, clock=lambda: 0.0)
    gone.enter(SerialStage.CHECK_VM)
    assert gone.end(None) == [] and gone.error is None


# -- the domain XML ------------------------------------------------------------------------------------


def test_new_vms_get_a_serial_console() -> None:
    xml = build_domain_xml(DomainPlan(name="web-1", virt_type="qemu", vcpus=1, memory_mib=64, vnc_listen="127.0.0.1",
                                      created_at=datetime(2026, 1, 1, tzinfo=UTC), disk_path=None, iso_path=None,
                                      boot_order=("cdrom",)))
    devices = ET.fromstring(xml).find("devices")
    assert devices is not None
    serial, console = devices.find("serial"), devices.find("console")
    assert serial is not None and serial.get("type") == "pty" and serial.find("target").get("port") == "0"  # type: ignore[union-attr]
    assert console is not None and console.get("type") == "pty"
    assert declares_serial_console(xml)
    assert not declares_serial_console("<domain><devices><graphics type='vnc'/></devices></domain>")


# -- the session, with fakes ------------------------------------------------------------------------------


class FakeClient:
    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None
        self.inbox: asyncio.Queue[bytes | str | None] = asyncio.Queue()

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def receive(self) -> bytes | str | None:
        return await self.inbox.get()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    @property
    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(frame) for frame in self.sent if isinstance(frame, str)]


class FakeWatch:
    def __init__(self) -> None:
        self.ended = asyncio.Event()


class FakeHypervisor:
    def __init__(self, vm: Vm | None) -> None:
        self.vm = vm
        self.watches: list[FakeWatch] = []
        self.started = 0

    async def get_vm(self, ident: str) -> Vm:
        return await self.console_vm(ident)

    async def console_vm(self, ident: str) -> Vm:
        if self.vm is None:
            raise LimenError(ErrorCode.VM_NOT_FOUND, ident)
        return self.vm

    async def start_vm(self, ident: str) -> Vm:
        assert self.vm is not None
        self.started += 1
        self.vm = Vm(uuid=self.vm.uuid, name=self.vm.name, state=VmState.RUNNING, vcpus=1, memory_mib=64)
        return self.vm

    @contextlib.contextmanager
    def watch(self, uuid: str) -> Iterator[FakeWatch]:
        watch = FakeWatch()
        self.watches.append(watch)
        yield watch


class FakePort:
    def __init__(self) -> None:
        self.output: asyncio.Queue[bytes] = asyncio.Queue()
        self.written = bytearray()
        self.closed = False
        self._ended_by: str | None = None

    async def read(self) -> bytes:
        return await self.output.get()

    async def write(self, data: bytes, *, timeout: float) -> None:
        self.written += data

    @property
    def ended_by(self) -> str | None:
        return self._ended_by

    async def close(self) -> None:
        self.closed = True


class FakePorts:
    def __init__(self, *, serial: bool = True) -> None:
        self.serial = serial
        self.opened: list[tuple[FakePort, bool]] = []

    async def has_serial(self, vm_uuid: str) -> bool:
        return self.serial

    async def open(self, vm_uuid: str, *, force: bool) -> SerialPort:
        port = FakePort()
        self.opened.append((port, force))
        return port


def running(state: VmState = VmState.RUNNING) -> Vm:
    return Vm(uuid=UUID, name="web-1", state=state, vcpus=1, memory_mib=64)


def session_of(settings: Settings, vm: Vm | None, *, ports: FakePorts | None = None,
               holders: SerialHolders | None = None, force: bool = False,
               ) -> tuple[SerialSession, FakeClient, FakeHypervisor, FakePorts]:
    client, hv, ports = FakeClient(), FakeHypervisor(vm), ports or FakePorts()
    session = SerialSession(ident="web-1", client=client, hypervisor=hv, ports=ports,
                            holders=holders or SerialHolders(), settings=settings, force=force)
    return session, client, hv, ports


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):  # the fakes answer at once: a few loop turns are enough
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not met")


async def in_proxy(session: SerialSession) -> asyncio.Task[None]:
    task = asyncio.create_task(session.run())
    await until(lambda: session.stage is SerialStage.PROXY)
    return task


async def test_bytes_flow_both_ways_then_the_client_leaves(settings: Settings) -> None:
    session, client, _, ports = session_of(settings, running())
    task = await in_proxy(session)
    port, force = ports.opened[0]
    assert not force
    await port.output.put(b"grub> ")
    await client.inbox.put("echo limen\r")  # xterm.js sends text
    await client.inbox.put(b"\x03")
    await until(lambda: bytes(port.written) == b"echo limen\r\x03" and b"grub> " in client.sent)
    await client.inbox.put(None)
    await task
    assert [f["stage"] for f in client.texts] == ["check_vm", "open_serial", "proxy"]
    assert client.closed is None and session.end_reason == "client_closed" and port.closed
    assert (session.traffic.to_client, session.traffic.to_vnc) == (6, 12)


@pytest.mark.parametrize(("vm", "serial", "auto_start", "code"), [
    (None, True, True, ErrorCode.VM_NOT_FOUND),
    (running(), False, True, ErrorCode.SERIAL_NOT_CONFIGURED),
    (running(VmState.STOPPED), True, False, ErrorCode.VM_NOT_RUNNING),
])
async def test_check_vm_failures(tmp_path: Path, vm: Vm | None, serial: bool, auto_start: bool,
                                 code: ErrorCode) -> None:
    settings = load_settings(None, data_dir=tmp_path / "d", log_dir=tmp_path / "l", console_auto_start=auto_start)
    session, client, hv, ports = session_of(settings, vm, ports=FakePorts(serial=serial))
    await session.run()
    assert client.closed == (code.close_code, code.name)
    assert [(e["code"], e["stage"]) for e in client.texts if e["type"] == "error"] == [(code.name, "check_vm")]
    assert not ports.opened and hv.started == 0  # a VM without a serial device is not started


async def test_a_stopped_vm_is_started_first(settings: Settings) -> None:
    session, client, hv, _ = session_of(settings, running(VmState.STOPPED))
    task = await in_proxy(session)
    assert hv.started == 1
    assert [f["message"] for f in client.texts] == [spec.text for spec in SERIAL_STAGES]
    await client.inbox.put(None)
    await task


async def test_a_hung_open_ends_with_its_stage_timeout(settings: Settings) -> None:
    class Hanging(FakePorts):
        async def open(self, vm_uuid: str, *, force: bool) -> SerialPort:
            await asyncio.Event().wait()
            raise AssertionError

    session, client, _, _ = session_of(settings, running(), ports=Hanging())
    await session.run()
    assert client.closed == (ErrorCode.HYPERVISOR_UNAVAILABLE.close_code, "HYPERVISOR_UNAVAILABLE")
    assert client.texts[-1]["stage"] == "open_serial"


async def test_a_libvirt_refusal_opening_the_port_is_serial_port_error(settings: Settings) -> None:
    class Refusing(FakePorts):
        async def open(self, vm_uuid: str, *, force: bool) -> SerialPort:
            raise LimenError(ErrorCode.VM_OPERATION_FAILED, "open_console: operation failed: no console")

    session, client, _, _ = session_of(settings, running(), ports=Refusing())
    await session.run()
    assert client.closed == (ErrorCode.SERIAL_PORT_ERROR.close_code, "SERIAL_PORT_ERROR")
    assert client.texts[-1]["details"] == "open_console: operation failed: no console"


async def test_one_session_per_port_busy_or_taken_over(settings: Settings) -> None:
    holders = SerialHolders()
    first, first_client, _, _ = session_of(settings, running(), holders=holders)
    first_task = await in_proxy(first)
    refused, refused_client, _, refused_ports = session_of(settings, running(), holders=holders)
    await refused.run()
    assert refused_client.closed == (ErrorCode.SERIAL_BUSY.close_code, "SERIAL_BUSY") and not refused_ports.opened
    second, second_client, _, second_ports = session_of(settings, running(), holders=holders, force=True)
    second_task = await in_proxy(second)
    await first_task
    assert first_client.closed == (ErrorCode.SESSION_TAKEN_OVER.close_code, "SESSION_TAKEN_OVER")
    assert second_ports.opened[0][1] is True  # libvirt's force flag: cuts off clients outside limen too
    assert holders.holder(UUID) is second
    await second_client.inbox.put(None)
    await second_task
    assert holders.holder(UUID) is None


async def test_vm_stop_ends_with_vm_stopped(settings: Settings) -> None:
    session, client, hv, _ = session_of(settings, running())
    task = await in_proxy(session)
    hv.watches[0].ended.set()
    await task
    assert client.closed == (ErrorCode.VM_STOPPED.close_code, "VM_STOPPED")
    assert client.texts[-1]["stage"] == "proxy"


@pytest.mark.parametrize(("vm_runs", "ended_by", "code"), [
    (False, None, ErrorCode.VM_STOPPED),
    (True, "libvirt console stream: aborted", ErrorCode.SESSION_TAKEN_OVER),
    (True, None, ErrorCode.SERIAL_PORT_ERROR),
])
async def test_stream_end_is_told_apart(settings: Settings, monkeypatch: pytest.MonkeyPatch, vm_runs: bool,
                                        ended_by: str | None, code: ErrorCode) -> None:
    monkeypatch.setattr(serial_session, "STREAM_END_GRACE", 0.05)
    session, client, hv, ports = session_of(settings, running())
    task = await in_proxy(session)
    port = ports.opened[0][0]
    port._ended_by = ended_by
    if not vm_runs:
        hv.vm = running(VmState.STOPPED)
    await port.output.put(b"")
    await task
    assert client.closed == (code.close_code, code.name)


async def test_a_client_that_does_not_read_is_dropped_with_slow_client(settings: Settings) -> None:
    class Stuck(FakeClient):
        async def send_bytes(self, data: bytes) -> None:
            await asyncio.Event().wait()

    client, hv, ports = Stuck(), FakeHypervisor(running()), FakePorts()
    session = SerialSession(ident="web-1", client=client, hypervisor=hv, ports=ports, holders=SerialHolders(),
                            settings=settings)
    task = await in_proxy(session)
    await ports.opened[0][0].output.put(b"x" * 1000)
    await task
    assert session.end_reason == "SLOW_CLIENT" and client.closed == (4400, "SLOW_CLIENT")
    assert ports.opened[0][0].closed


async def test_request_end_wins(settings: Settings) -> None:
    session, client, _, _ = session_of(settings, running())
    task = await in_proxy(session)
    session.request_end(LimenError(ErrorCode.ACCESS_REVOKED, "token revoked"))
    await task
    assert client.closed == (ErrorCode.ACCESS_REVOKED.close_code, "ACCESS_REVOKED")

