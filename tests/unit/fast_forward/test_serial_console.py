"""The serial console without sockets or libvirt: its stage table, its machine's special paths, and the session
(the generic driver with the serial effects) driven through its Protocol interfaces (client channel,
hypervisor, serial ports, admission) by fakes, in milliseconds.

Each stage × {timeout, libvirt failure, success} of the machine is in test_console_transitions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from limen.console.client_protocol import PROTOCOL_ERROR_EXTENSION, WHAT_THE_CLIENT_DID, client_protocol_error
from limen.console.handshake import (
    Close,
    EffectFailed,
    EndRequested,
    IllegalTransition,
    LookUpVm,
    OpenWatch,
    SendText,
    StartVm,
    VmEnded,
    VmFound,
    VmStarted,
)
from limen.console.serial_handshake import (
    CheckSerialDevice,
    ExplainStreamEnd,
    FindPortHolder,
    OpenSerial,
    PortHolder,
    PortTakenOver,
    RunSerialProxy,
    SerialDeviceChecked,
    SerialHandshake,
    SerialOpened,
    SerialStreamEnded,
    StreamEndExplained,
    TakeOverPort,
)
from limen.console.serial_session import SerialHolders, SerialSession
from limen.console.stage_table import SERIAL_STAGES, SerialStage
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.domain_xml import DomainPlan, build_domain_xml, parse_domain_xml
from limen.hypervisor.models import StreamRelease, Vm, VmState
from limen.hypervisor.serial_stream import SerialPort
from limen.settings import Settings

README = (Path(__file__).resolve().parents[3] / "README.md").read_text()
UUID = "6f1c2a9e-0000-4000-8000-000000000001"
RUNNING = Vm(uuid=UUID, name="web-1", state=VmState.RUNNING, vcpus=1, memory_mib=64)
STOPPED = replace(RUNNING, state=VmState.STOPPED)
WAIT = 2.0  # a bound for the test itself, far above what any of these sessions takes
# The deadline of the stage a test makes fail: a hang there ends this soon. The fakes answer without waiting,
# so a stage that does not hang cannot lose to it.
FAILING_STAGE_DEADLINE = 0.05
HANG = object()


def settings(**overrides: Any) -> Settings:
    fast = {"console_check_vm_timeout": 0.2, "console_start_vm_timeout": 0.2, "console_serial_open_timeout": 0.2,
            "console_write_timeout": 0.2}
    return Settings.model_validate({**fast, **overrides})


# -- the table ------------------------------------------------------------------------------------------


def test_readme_tables_equal_the_stage_table() -> None:
    section = README[README.index("## The serial console"):]
    section = section[:section.index("\n## ", 1)]
    assert SERIAL_STAGES.readme_table(Settings.model_validate({})) in section
    assert SERIAL_STAGES.failure_table() in section
    assert SERIAL_STAGES.failure_table().count("\n") == len(SERIAL_STAGES.stages) + 1  # every stage has a row


def test_worst_case_is_the_sum_of_the_deadlines() -> None:
    s = settings()
    assert SERIAL_STAGES.worst_case(s) == pytest.approx(
        s.console_check_vm_timeout + s.console_start_vm_timeout + s.console_serial_open_timeout)


def test_the_first_stages_are_the_vnc_consoles_word_for_word() -> None:
    assert [stage.status for stage in SERIAL_STAGES] == [
        "Connected, checking VM status...", "Starting VM...", "Opening the serial port...", "Serial console connected"]
    assert [stage.value for stage in SerialStage if stage is not SerialStage.ENDED] == [
        stage.name for stage in SERIAL_STAGES]


def test_new_vms_get_a_serial_console() -> None:
    xml = build_domain_xml(DomainPlan(name="web-1", virt_type="qemu", vcpus=1, memory_mib=64, vnc_listen="127.0.0.1",
                                      created_at=datetime(2026, 1, 1, tzinfo=UTC), disk_path=None, iso_path=None,
                                      boot_order=("cdrom",)))
    devices = ET.fromstring(xml).find("devices")
    assert devices is not None
    serial, console = devices.find("serial"), devices.find("console")
    assert serial is not None and serial.get("type") == "pty" and serial.find("target").get("port") == "0"  # type: ignore[union-attr]
    assert console is not None and console.get("type") == "pty"
    assert parse_domain_xml(xml).serial_console
    assert not parse_domain_xml("<domain><devices><graphics type='vnc'/></devices></domain>").serial_console
    assert parse_domain_xml("<domain><devices><serial type='pty'/></devices></domain>").serial_console


# -- the machine's special paths ---------------------------------------------------------------------------


def machine(*, force: bool = False, auto_start: bool = True) -> SerialHandshake:
    return SerialHandshake(ident="web-1", settings=settings(), clock=lambda: 5.0, force=force, auto_start=auto_start)


def frames(actions: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(action.text) for action in actions if isinstance(action, SendText)]


def test_a_running_vm_goes_check_open_proxy_and_the_watch_opens_before_open_serial() -> None:
    m = machine()
    actions = m.start() + m.receive(VmFound(RUNNING))
    assert actions[-1] == CheckSerialDevice(UUID)
    actions = m.receive(SerialDeviceChecked(True))
    assert actions[0] == OpenWatch(UUID) and actions[-1] == FindPortHolder(UUID)
    assert m.receive(PortHolder(held_by_another=False)) == [OpenSerial(UUID, force=False)]
    actions = m.receive(SerialOpened())
    assert [f["message"] for f in frames(actions)] == ["Serial console connected"] and actions[-1] == RunSerialProxy()
    assert [stage for stage, _ in m.history] == ["check_vm", "open_serial", "proxy"]


def test_no_serial_device_ends_in_check_vm_before_any_start() -> None:
    m = machine()
    m.start()
    m.receive(VmFound(STOPPED))
    actions = m.receive(SerialDeviceChecked(False))
    (frame,) = frames(actions)
    assert (frame["code"], frame["stage"]) == ("SERIAL_NOT_CONFIGURED", "check_vm")
    assert frame["details"] == "VM 'web-1' has no serial console device"
    assert actions[-1] == Close(ErrorCode.SERIAL_NOT_CONFIGURED.close_code, "SERIAL_NOT_CONFIGURED")
    assert not any(isinstance(action, StartVm) for action in actions)


def test_a_stopped_vm_without_auto_start_is_vm_not_running() -> None:
    m = machine(auto_start=False)
    m.start()
    m.receive(VmFound(STOPPED))
    (frame,) = frames(m.receive(SerialDeviceChecked(True)))
    assert (frame["code"], frame["stage"]) == ("VM_NOT_RUNNING", "check_vm")


def test_someone_else_starting_the_vm_first_is_fine_the_machine_reads_it_again() -> None:
    m = machine()
    m.start()
    m.receive(VmFound(STOPPED))
    assert m.receive(SerialDeviceChecked(True))[-1] == StartVm(UUID)
    assert m.receive(EffectFailed(LimenError(ErrorCode.VM_ALREADY_RUNNING, "already"))) == [LookUpVm(UUID)]
    actions = m.receive(VmFound(RUNNING))
    assert [f["stage"] for f in frames(actions)] == ["open_serial"] and actions[-1] == FindPortHolder(UUID)


def test_vm_already_running_outside_start_vm_ends_the_session() -> None:
    m = machine()
    m.start()
    m.receive(EffectFailed(LimenError(ErrorCode.VM_ALREADY_RUNNING, "?")))
    assert m.error is not None and m.error.code is ErrorCode.VM_ALREADY_RUNNING


def test_a_held_port_is_busy_without_force() -> None:
    m = machine()
    m.start()
    m.receive(VmFound(RUNNING))
    m.receive(SerialDeviceChecked(True))
    actions = m.receive(PortHolder(held_by_another=True))
    (frame,) = frames(actions)
    assert (frame["code"], frame["stage"]) == ("SERIAL_BUSY", "open_serial")
    assert not any(isinstance(action, OpenSerial | TakeOverPort) for action in actions)


def test_a_held_port_is_taken_over_with_force_then_opened_with_libvirts_force_flag() -> None:
    m = machine(force=True)
    m.start()
    m.receive(VmFound(RUNNING))
    m.receive(SerialDeviceChecked(True))
    assert m.receive(PortHolder(held_by_another=True)) == [TakeOverPort(UUID)]
    assert m.receive(PortTakenOver()) == [OpenSerial(UUID, force=True)]
    free = machine(force=True)
    free.start()
    free.receive(VmFound(RUNNING))
    free.receive(SerialDeviceChecked(True))
    assert free.receive(PortHolder(held_by_another=False)) == [OpenSerial(UUID, force=True)]


def in_proxy(m: SerialHandshake) -> None:
    for result in (VmFound(RUNNING), SerialDeviceChecked(True), PortHolder(False), SerialOpened()):
        m.receive(result)


@pytest.mark.parametrize(("vm_stopped", "ended_by", "code", "details"), [
    (True, None, ErrorCode.VM_STOPPED, "VM 'web-1' stopped; its serial console closed"),
    ("reverted", None, ErrorCode.VM_REVERTED, "VM 'web-1' was reverted to a snapshot; its serial console closed"),
    (True, "libvirt closed the console stream", ErrorCode.VM_STOPPED, "VM 'web-1' stopped; its serial console closed"),
    (False, "libvirt console stream: aborted", ErrorCode.SESSION_TAKEN_OVER,
     "the serial console was taken over (libvirt console stream: aborted)"),
    (False, None, ErrorCode.SERIAL_PORT_ERROR, "the serial console stream ended while the VM runs"),
])
def test_the_end_of_the_stream_is_told_apart(vm_stopped: bool | str, ended_by: str | None, code: ErrorCode,
                                             details: str) -> None:
    # vm_stopped: whether the VM ended, or how (the lifecycle event the watch saw).
    m = machine()
    m.start()
    in_proxy(m)
    assert m.receive(SerialStreamEnded(ended_by)) == [ExplainStreamEnd(UUID, m.stream_end_grace)]
    how = vm_stopped if isinstance(vm_stopped, str) else "stopped"
    actions = m.receive(StreamEndExplained(vm_stopped=bool(vm_stopped), how=how))
    (frame,) = frames(actions)  # the serial page reads text frames in the proxy stage too
    assert (frame["code"], frame["stage"], frame["details"]) == (code.name, "proxy", details)
    assert actions[-1] == Close(code.close_code, code.name)


@pytest.mark.parametrize(("released_for", "code", "details"), [
    (StreamRelease.MIGRATED, ErrorCode.VM_MIGRATED,
     "VM 'web-1' was migrated to another host; its serial console closed"),
    (StreamRelease.MIGRATION_FAILED, ErrorCode.SERIAL_PORT_ERROR,
     "the serial console was closed for a migration of the VM, which failed: it runs on where it was"),
])
def test_a_stream_released_for_a_migration_ends_saying_how_the_migration_went(
    released_for: StreamRelease, code: ErrorCode, details: str
) -> None:
    # limen releases the stream before a live migration (libvirt deadlocks when a console stream's abort meets
    # its end), and the port tells the end once the migration is over: nothing is left to explain.
    m = machine()
    m.start()
    in_proxy(m)
    actions = m.receive(SerialStreamEnded(None, released_for))
    (frame,) = frames(actions)
    assert (frame["code"], frame["stage"], frame["details"]) == (code.name, "proxy", details)
    assert actions[-1] == Close(code.close_code, code.name)


def test_a_lifecycle_event_in_any_stage_is_vm_stopped_naming_the_vm() -> None:
    m = machine()
    m.start()
    in_proxy(m)
    (frame,) = frames(m.receive(VmEnded("crashed")))
    assert (frame["code"], frame["stage"], frame["details"]) == (
        "VM_STOPPED", "proxy", "VM 'web-1' crashed (libvirt lifecycle event)")


def test_the_first_ending_counts() -> None:
    m = machine()
    m.start()
    taken = ErrorCode.SESSION_TAKEN_OVER
    assert m.receive(EndRequested(LimenError(taken)))[-1] == Close(taken.close_code, taken.name)
    assert m.receive(VmEnded()) == [] and m.receive(SerialOpened()) == []
    assert m.error is not None and m.error.code is ErrorCode.SESSION_TAKEN_OVER


@pytest.mark.parametrize(("steps", "result"), [
    ((), SerialDeviceChecked(True)),
    ((), VmStarted(RUNNING)),
    ((VmFound(RUNNING),), PortHolder(False)),
    ((VmFound(RUNNING), SerialDeviceChecked(True)), SerialOpened()),
    ((VmFound(RUNNING), SerialDeviceChecked(True)), PortTakenOver()),
    ((VmFound(RUNNING), SerialDeviceChecked(True), PortHolder(False)), StreamEndExplained(vm_stopped=True)),
    ((VmFound(RUNNING), SerialDeviceChecked(True), PortHolder(False), SerialOpened()), SerialOpened()),
])
def test_a_result_the_pending_effect_cannot_give_is_an_illegal_transition(steps: tuple[Any, ...], result: Any) -> None:
    m = machine()
    m.start()
    for step in steps:
        m.receive(step)
    with pytest.raises(IllegalTransition):
        m.receive(result)


def test_only_libvirt_calls_are_marked_as_such() -> None:
    assert CheckSerialDevice("x").libvirt_call and OpenSerial("x", force=False).libvirt_call
    for effect in (FindPortHolder("x"), TakeOverPort("x"), RunSerialProxy(), ExplainStreamEnd("x")):
        assert not effect.libvirt_call, effect


# -- the session, with fakes behind its Protocol interfaces ---------------------------------------------------


class FakeClient:
    """The browser's side (a ClientChannel); ``stall_writes``: a browser that stopped reading."""

    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None
        self.inbox: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self.stall_writes = False
        self.broke_protocol: LimenError | None = None  # the server failed the connection for the browser's fault

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        if self.stall_writes:
            await asyncio.Event().wait()
        self.sent.append(data)

    async def receive(self) -> bytes | str | None:
        return await self.inbox.get()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def protocol_error(self) -> LimenError | None:
        return self.broke_protocol

    @property
    def texts(self) -> list[dict[str, Any]]:
        return [json.loads(frame) for frame in self.sent if isinstance(frame, str)]

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(f["code"], f["stage"]) for f in self.texts if f["type"] == "error"]


@dataclass
class FakeWatch:
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    last: Any = None


async def answer(value: Any) -> Any:
    if value is HANG:
        await asyncio.Event().wait()
    if isinstance(value, asyncio.Event):  # a gate the test opens
        await value.wait()
        return None
    if isinstance(value, LimenError):
        raise value
    return value


class FakeHypervisor:
    """``console_vm`` answers ``look`` (after the first: ``later`` when set); ``start`` answers start_vm."""

    def __init__(self, look: Any, *, start: Any = RUNNING, later: Any = None) -> None:
        self.look = look
        self.later = later
        self.start = start
        self.calls: list[str] = []
        self.watches: list[FakeWatch] = []
        self.watching = 0

    async def get_vm(self, ident: str) -> Vm:
        raise AssertionError("a console reads VMs with console_vm")

    async def console_vm(self, ident: str) -> Vm:
        self.calls.append("console_vm")
        first = self.calls.count("console_vm") == 1
        vm: Vm = await answer(self.look if first or self.later is None else self.later)
        return vm

    async def console_vm_recent(self, ident: str) -> Vm:
        return await self.console_vm(ident)  # no cache here: the admission's read is a read like the others

    async def start_vm(self, ident: str) -> Vm:
        self.calls.append("start_vm")
        vm: Vm = await answer(self.start)
        return vm

    @contextlib.contextmanager
    def watch(self, uuid: str) -> Iterator[FakeWatch]:
        watch = FakeWatch()
        self.watches.append(watch)
        self.watching += 1
        try:
            yield watch
        finally:
            self.watching -= 1


class FakePort:
    def __init__(self) -> None:
        self.output: asyncio.Queue[bytes] = asyncio.Queue()
        self.written = bytearray()
        self.closed = False
        self.ended_by_value: str | None = None
        self.released_for_value: StreamRelease | None = None
        self.write_error: LimenError | None = None

    async def read(self) -> bytes:
        return await self.output.get()

    async def write(self, data: bytes, *, timeout: float) -> None:
        if self.write_error is not None:
            raise self.write_error
        self.written += data

    @property
    def ended_by(self) -> str | None:
        return self.ended_by_value

    @property
    def released_for(self) -> StreamRelease | None:
        return self.released_for_value

    async def close(self) -> None:
        self.closed = True


class FakePorts:
    """``serial``: the device check's answer; ``opening``: the open's (None: a fresh FakePort)."""

    def __init__(self, *, serial: Any = True, opening: Any = None) -> None:
        self.serial = serial
        self.opening = opening
        self.opened: list[tuple[FakePort, bool]] = []
        self.checked = 0

    async def has_serial(self, vm_uuid: str) -> bool:
        self.checked += 1
        present: bool = await answer(self.serial)
        return present

    async def open(self, vm_uuid: str, *, force: bool) -> SerialPort:
        await answer(self.opening)
        port = FakePort()
        self.opened.append((port, force))
        return port


@dataclass
class Run:
    session: SerialSession
    client: FakeClient
    hv: FakeHypervisor
    ports: FakePorts
    task: asyncio.Task[None]

    @property
    def port(self) -> FakePort:
        return self.ports.opened[-1][0]

    async def until(self, check: Callable[[], bool]) -> None:
        """Lets the session run until ``check`` holds (the fakes have no event to wait on for most checks)."""
        async with asyncio.timeout(WAIT):
            for _ in iter(lambda: check(), True):
                await asyncio.sleep(0.001)

    async def in_proxy(self) -> Run:
        await self.until(lambda: self.session.reached_proxy)
        return self

    async def ended(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.task


def start(hv: FakeHypervisor, ports: FakePorts | None = None, *, holders: SerialHolders | None = None,
          force: bool = False, admission: Any = None, **overrides: Any) -> Run:
    client, ports = FakeClient(), ports or FakePorts()
    session = SerialSession(ident="web-1", client=client, hypervisor=hv, ports=ports,
                            holders=holders or SerialHolders(), settings=settings(**overrides), force=force,
                            admission=admission, clock=asyncio.get_running_loop().time)
    return Run(session, client, hv, ports, asyncio.create_task(session.run()))


async def test_bytes_flow_both_ways_then_the_client_leaves() -> None:
    run = await start(FakeHypervisor(RUNNING)).in_proxy()
    assert run.ports.opened[0][1] is False
    await run.port.output.put(b"grub> ")
    await run.client.inbox.put("echo limen\r")  # xterm.js sends text
    await run.client.inbox.put(b"\x03")
    await run.until(lambda: bytes(run.port.written) == b"echo limen\r\x03" and b"grub> " in run.client.sent)
    await run.client.inbox.put(None)
    await run.ended()
    assert [f["stage"] for f in run.client.texts] == ["check_vm", "open_serial", "proxy"]
    assert run.client.closed is None and run.session.end_reason == "client_closed" and run.port.closed
    assert (run.session.traffic.to_client, run.session.traffic.to_vnc) == (6, 12)
    assert run.hv.watching == 0 and run.session.port_released.is_set()


async def test_input_before_the_port_opens_is_held_then_delivered_first() -> None:
    gate = asyncio.Event()
    run = start(FakeHypervisor(RUNNING), FakePorts(opening=gate), console_serial_open_timeout=5)
    await run.client.inbox.put("early")
    await run.client.inbox.put("later")
    await run.until(lambda: run.session.stage == "open_serial" and run.client.inbox.qsize() == 1)
    await asyncio.sleep(0.01)
    assert run.client.inbox.qsize() == 1  # one message held; nothing more read until there is a port
    gate.set()
    await run.in_proxy()
    await run.until(lambda: bytes(run.port.written) == b"earlylater")
    await run.client.inbox.put(None)
    await run.ended()


async def test_a_stopped_vm_is_started_first() -> None:
    run = await start(FakeHypervisor(STOPPED)).in_proxy()
    assert run.hv.calls == ["console_vm", "start_vm"]
    assert [f["message"] for f in run.client.texts] == [stage.status for stage in SERIAL_STAGES]
    await run.client.inbox.put(None)
    await run.ended()


async def test_someone_else_starting_the_vm_first_is_fine() -> None:
    hv = FakeHypervisor(STOPPED, start=LimenError(ErrorCode.VM_ALREADY_RUNNING, "already"), later=RUNNING)
    run = await start(hv).in_proxy()
    assert hv.calls == ["console_vm", "start_vm", "console_vm"]
    assert [f["stage"] for f in run.client.texts] == ["check_vm", "start_vm", "open_serial", "proxy"]
    await run.client.inbox.put(None)
    await run.ended()


GENERIC = LimenError(ErrorCode.VM_OPERATION_FAILED, "call: operation failed: nope")


# Each stage's work hanging, or failing with a generic libvirt refusal, through the fakes' Protocol interfaces.
@pytest.mark.parametrize(("hv", "ports", "code", "stage"), [
    (FakeHypervisor(HANG), None, ErrorCode.HYPERVISOR_UNAVAILABLE, "check_vm"),
    (FakeHypervisor(GENERIC), None, ErrorCode.HYPERVISOR_UNAVAILABLE, "check_vm"),
    (FakeHypervisor(LimenError(ErrorCode.VM_NOT_FOUND, "no VM 'web-1'")), None, ErrorCode.VM_NOT_FOUND, "check_vm"),
    (FakeHypervisor(RUNNING), FakePorts(serial=HANG), ErrorCode.HYPERVISOR_UNAVAILABLE, "check_vm"),
    (FakeHypervisor(RUNNING), FakePorts(serial=GENERIC), ErrorCode.HYPERVISOR_UNAVAILABLE, "check_vm"),
    (FakeHypervisor(RUNNING), FakePorts(serial=False), ErrorCode.SERIAL_NOT_CONFIGURED, "check_vm"),
    (FakeHypervisor(STOPPED, start=HANG), None, ErrorCode.VM_START_FAILED, "start_vm"),
    (FakeHypervisor(STOPPED, start=GENERIC), None, ErrorCode.VM_START_FAILED, "start_vm"),
    (FakeHypervisor(STOPPED, start=LimenError(ErrorCode.QUOTA_EXCEEDED, "no room")), None, ErrorCode.QUOTA_EXCEEDED,
     "start_vm"),
    (FakeHypervisor(STOPPED, start=LimenError(ErrorCode.VM_ALREADY_RUNNING), later=HANG), None,
     ErrorCode.HYPERVISOR_UNAVAILABLE, "start_vm"),
    (FakeHypervisor(RUNNING), FakePorts(opening=HANG), ErrorCode.HYPERVISOR_UNAVAILABLE, "open_serial"),
    (FakeHypervisor(RUNNING), FakePorts(opening=GENERIC), ErrorCode.SERIAL_PORT_ERROR, "open_serial"),
    (FakeHypervisor(RUNNING), FakePorts(opening=LimenError(ErrorCode.SERIAL_BUSY, "virsh console holds it")),
     ErrorCode.SERIAL_BUSY, "open_serial"),
])
async def test_every_stage_failure_ends_with_its_error_frame_and_close_code(
    hv: FakeHypervisor, ports: FakePorts | None, code: ErrorCode, stage: str
) -> None:
    deadline_setting = SERIAL_STAGES[stage].deadline_setting
    assert deadline_setting is not None
    run = start(hv, ports, **{deadline_setting: FAILING_STAGE_DEADLINE})
    await run.ended()
    assert run.client.errors == [(code.name, stage)]
    assert run.client.closed == (code.close_code, code.name)
    assert run.session.end_reason == code.name and run.hv.watching == 0
    assert not any(isinstance(frame, bytes) for frame in run.client.sent)
    if code is ErrorCode.SERIAL_NOT_CONFIGURED:
        assert "start_vm" not in hv.calls and not run.ports.opened


async def test_a_hung_start_times_out_with_the_tables_details() -> None:
    run = start(FakeHypervisor(STOPPED, start=HANG), console_start_vm_timeout=FAILING_STAGE_DEADLINE)
    await run.ended()
    assert run.client.texts[-1]["details"] == "the VM was not running within 0.05 s"


async def test_an_admission_refusal_ends_in_check_vm_before_any_libvirt_call() -> None:
    async def refuse(find_vm: Callable[[], Awaitable[Vm]]) -> Vm:
        raise LimenError(ErrorCode.UNAUTHORIZED, "no credential")

    run = start(FakeHypervisor(RUNNING), admission=refuse)
    await run.ended()
    assert run.client.errors == [("UNAUTHORIZED", "check_vm")]
    assert run.hv.calls == [] and run.ports.checked == 0


async def test_one_session_per_port_busy_or_taken_over() -> None:
    holders = SerialHolders()
    first = await start(FakeHypervisor(RUNNING), holders=holders).in_proxy()
    refused = start(FakeHypervisor(RUNNING), holders=holders)
    await refused.ended()
    assert refused.client.closed == (ErrorCode.SERIAL_BUSY.close_code, "SERIAL_BUSY") and not refused.ports.opened
    assert refused.client.errors == [("SERIAL_BUSY", "open_serial")]
    assert first.client.closed is None and holders.holder(UUID) is first.session
    second = await start(FakeHypervisor(RUNNING), holders=holders, force=True).in_proxy()
    await first.ended()
    assert first.client.closed == (ErrorCode.SESSION_TAKEN_OVER.close_code, "SESSION_TAKEN_OVER")
    assert first.client.errors == [("SESSION_TAKEN_OVER", "proxy")] and first.port.closed
    assert second.ports.opened[0][1] is True  # libvirt's force flag: cuts off clients outside limen too
    assert holders.holder(UUID) is second.session
    await second.client.inbox.put(None)
    await second.ended()
    assert holders.holder(UUID) is None


async def test_a_holder_that_does_not_let_go_in_time_ends_the_taker_at_the_stage_deadline() -> None:
    holders = SerialHolders()
    first = await start(FakeHypervisor(RUNNING), holders=holders).in_proxy()

    async def never_closes() -> None:
        await asyncio.Event().wait()

    first.port.close = never_closes  # type: ignore[method-assign]
    second = start(FakeHypervisor(RUNNING), holders=holders, force=True,
                   console_serial_open_timeout=FAILING_STAGE_DEADLINE)
    await second.ended()
    assert second.client.errors == [("HYPERVISOR_UNAVAILABLE", "open_serial")]
    assert second.client.texts[-1]["details"] == "libvirt did not answer within 0.05 s (stage open_serial)"
    assert first.client.closed == (ErrorCode.SESSION_TAKEN_OVER.close_code, "SESSION_TAKEN_OVER")
    first.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first.task


async def test_vm_stop_mid_session_ends_with_vm_stopped_and_its_frame() -> None:
    run = await start(FakeHypervisor(RUNNING)).in_proxy()
    run.hv.watches[0].ended.set()
    await run.ended()
    assert run.client.closed == (ErrorCode.VM_STOPPED.close_code, "VM_STOPPED")
    assert run.client.errors == [("VM_STOPPED", "proxy")]
    assert run.client.texts[-1]["details"] == "VM 'web-1' stopped (libvirt lifecycle event)"
    assert run.port.closed and run.hv.watching == 0


@pytest.mark.parametrize(("vm_runs", "ended_by", "code"), [
    (False, None, ErrorCode.VM_STOPPED),
    (True, "libvirt console stream: aborted", ErrorCode.SESSION_TAKEN_OVER),
    (True, None, ErrorCode.SERIAL_PORT_ERROR),
])
async def test_the_session_reports_how_the_stream_ended(vm_runs: bool, ended_by: str | None, code: ErrorCode) -> None:
    hv = FakeHypervisor(RUNNING)
    run = await start(hv).in_proxy()
    run.session.machine.stream_end_grace = 0.05
    run.port.ended_by_value = ended_by
    if not vm_runs:
        hv.look = STOPPED
    await run.port.output.put(b"")
    await run.ended()
    assert run.client.closed == (code.close_code, code.name)
    assert run.client.errors == [(code.name, "proxy")]


async def test_a_stream_that_ends_while_the_vm_runs_on_another_host_ends_with_vm_migrated() -> None:
    # A migration this process did not hold the stream for (another limen's): the pty hangs up, and libvirt
    # reports the VM running on another host before the source's lifecycle event arrives, if it ever does.
    hv = FakeHypervisor(replace(RUNNING, host="local"), later=replace(RUNNING, host="extra"))
    run = await start(hv).in_proxy()
    run.session.machine.stream_end_grace = 0.05
    await run.port.output.put(b"")
    await run.ended()
    assert run.client.closed == (ErrorCode.VM_MIGRATED.close_code, "VM_MIGRATED")
    assert run.client.texts[-1]["details"] == "VM 'web-1' was migrated to another host; its serial console closed"

async def test_a_stream_released_for_a_migration_that_moved_the_vm_ends_the_session_with_vm_migrated() -> None:
    run = await start(FakeHypervisor(RUNNING)).in_proxy()
    run.port.released_for_value = StreamRelease.MIGRATED
    await run.port.output.put(b"")
    await run.ended()
    assert run.client.closed == (ErrorCode.VM_MIGRATED.close_code, "VM_MIGRATED")  # the page reconnects there
    assert run.client.errors == [("VM_MIGRATED", "proxy")]


async def test_input_the_guest_does_not_take_ends_with_serial_port_error() -> None:
    run = await start(FakeHypervisor(RUNNING)).in_proxy()
    run.port.write_error = LimenError(ErrorCode.SERIAL_PORT_ERROR, "the VM's serial port accepted no input for 0.2 s")
    await run.client.inbox.put("x")
    await run.ended()
    assert run.client.closed == (ErrorCode.SERIAL_PORT_ERROR.close_code, "SERIAL_PORT_ERROR")


async def test_a_client_that_does_not_read_is_dropped_with_slow_client_and_no_frame() -> None:
    run = await start(FakeHypervisor(RUNNING), console_write_timeout=FAILING_STAGE_DEADLINE).in_proxy()
    run.client.stall_writes = True
    await run.port.output.put(b"x" * 1000)
    await run.ended()
    assert run.session.end_reason == "SLOW_CLIENT" and run.client.closed == (4400, "SLOW_CLIENT")
    assert run.client.errors == [] and run.port.closed


async def test_a_client_that_leaves_mid_handshake_ends_the_session_quietly() -> None:
    run = start(FakeHypervisor(RUNNING), FakePorts(opening=HANG), console_serial_open_timeout=5)
    await run.until(lambda: run.session.stage == "open_serial")
    await run.client.inbox.put(None)
    await run.ended()
    assert run.client.closed is None and run.session.end_reason == "client_closed"
    assert run.hv.watching == 0 and run.session.port_released.is_set()


@pytest.mark.parametrize("close_code", sorted(WHAT_THE_CLIENT_DID))
@pytest.mark.parametrize("in_proxy", [True, False], ids=["proxy", "handshake"])
async def test_a_client_that_broke_the_websocket_protocol_ends_with_client_protocol_error(
    close_code: int, in_proxy: bool,
) -> None:
    run = start(FakeHypervisor(RUNNING), FakePorts(opening=None if in_proxy else HANG), console_serial_open_timeout=5)
    await run.until(lambda: run.session.stage == ("proxy" if in_proxy else "open_serial"))
    run.client.broke_protocol = client_protocol_error(
        {"extensions": {PROTOCOL_ERROR_EXTENSION: {"code": close_code, "reason": "what websockets said"}}})
    await run.client.inbox.put(None)
    await run.ended()
    assert run.session.end_reason == "CLIENT_PROTOCOL_ERROR"
    assert run.session.machine.error is not None
    assert f"closed the WebSocket with {close_code}: what websockets said" in run.session.machine.error.details
    assert run.client.closed is None and run.client.errors == []  # the server closed it already
    assert run.session.port_released.is_set()


async def test_an_end_requested_before_the_session_runs_still_sends_the_first_frame_then_the_end() -> None:
    client, hv = FakeClient(), FakeHypervisor(RUNNING)
    session = SerialSession(ident="web-1", client=client, hypervisor=hv, ports=FakePorts(), holders=SerialHolders(),
                            settings=settings())
    session.request_end(LimenError(ErrorCode.SERVER_SHUTDOWN, "stopping"))
    async with asyncio.timeout(WAIT):
        await session.run()
    assert [f["message"] for f in client.texts if f["type"] == "status"] == ["Connected, checking VM status..."]
    assert client.closed == (4402, "SERVER_SHUTDOWN") and hv.calls == []


async def test_request_end_in_the_proxy_stage_wins() -> None:
    run = await start(FakeHypervisor(RUNNING)).in_proxy()
    run.session.request_end(LimenError(ErrorCode.ACCESS_REVOKED, "token revoked"))
    await run.ended()
    assert run.client.closed == (ErrorCode.ACCESS_REVOKED.close_code, "ACCESS_REVOKED")
