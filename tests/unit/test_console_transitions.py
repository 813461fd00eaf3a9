"""Every transition of both console machines, table-driven: each stage's every piece of work × {timeout,
libvirt failure, success}, with the expected codes and details read from the stage table. Pure: no socket,
no libvirt, a clock the test holds still.

And the guard against drift: walking each machine with work that always succeeds must enter every stage of
its kind's table, so a stage added to the table without the machine handling it fails here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from limen.console.handshake import (
    Action,
    BannerRead,
    Close,
    ConnectVnc,
    Effect,
    EffectFailed,
    ExplainVncClose,
    LookUpVm,
    Pause,
    Paused,
    ReadBanner,
    Result,
    RunProxy,
    SendText,
    StageMachine,
    StartVm,
    TimedOut,
    VmFound,
    VmStarted,
    VncClosed,
    VncCloseExplained,
    VncConnected,
    VncHandshake,
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
from limen.console.stage_table import CONSOLE_KINDS, LIBVIRT_TIMEOUT_DETAIL, SERIAL_STAGES, VNC_STAGES, StageList
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import Vm, VmState, VncEndpoint
from limen.settings import Settings
from tests.support.access import FakeClock

SETTINGS = Settings.model_validate({
    "console_check_vm_timeout": 1, "console_start_vm_timeout": 2, "console_get_port_timeout": 3,
    "console_connect_timeout": 4, "console_banner_timeout": 5, "console_serial_open_timeout": 6,
})
UUID = "6f1c2e55-0000-4000-8000-0000000000aa"
BANNER = b"RFB 003.008\n"
RUNNING = Vm(UUID, "web", VmState.RUNNING, 1, 64, vnc=VncEndpoint("127.0.0.1", 5901))
NO_PORT = replace(RUNNING, vnc=VncEndpoint("127.0.0.1", None))
STOPPED = replace(RUNNING, state=VmState.STOPPED, vnc=VncEndpoint("127.0.0.1", None))
ALREADY = EffectFailed(LimenError(ErrorCode.VM_ALREADY_RUNNING, "already running"))
REFUSAL = LimenError(ErrorCode.VM_OPERATION_FAILED, "call: operation failed: nope")


def vnc(*, force: bool = False, clock: Callable[[], float] = lambda: 100.0) -> StageMachine:
    return VncHandshake(ident="web", settings=SETTINGS, clock=clock)


def serial(*, force: bool = False, clock: Callable[[], float] = lambda: 100.0) -> StageMachine:
    return SerialHandshake(ident="web", settings=SETTINGS, clock=clock, force=force)


@dataclass(frozen=True)
class Work:
    """One piece of a stage's work: how a fresh machine gets there, the effect then pending, and what its
    success leads to (the stage then and the effect then pending; None: the session ends)."""

    kind: str
    stage: str
    path: tuple[Result, ...]
    effect: Effect
    success: Result
    then: tuple[str, type[Effect] | None]
    force: bool = False

    def machine(self, clock: Callable[[], float] = lambda: 100.0) -> StageMachine:
        m = (vnc if self.kind == "vnc" else serial)(force=self.force, clock=clock)
        actions = m.start()
        for result in self.path:
            actions = m.receive(result)
        assert (m.stage, actions[-1]) == (self.stage, self.effect), (m.stage, actions)
        return m

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.stage}-{type(self.effect).__name__}{'-force' if self.force else ''}"


TO_SERIAL_OPEN = (VmFound(RUNNING), SerialDeviceChecked(True))
WORK: tuple[Work, ...] = (
    # the VNC console
    Work("vnc", "check_vm", (), LookUpVm("web", admit=True), VmFound(STOPPED), ("start_vm", StartVm)),
    Work("vnc", "start_vm", (VmFound(STOPPED),), StartVm(UUID), VmStarted(NO_PORT), ("get_port", Pause)),
    Work("vnc", "start_vm", (VmFound(STOPPED), ALREADY), LookUpVm(UUID), VmFound(RUNNING), ("connect", ConnectVnc)),
    Work("vnc", "get_port", (VmFound(NO_PORT),), Pause(0.1), Paused(), ("get_port", LookUpVm)),
    Work("vnc", "get_port", (VmFound(NO_PORT), Paused()), LookUpVm(UUID), VmFound(RUNNING), ("connect", ConnectVnc)),
    Work("vnc", "connect", (VmFound(RUNNING),), ConnectVnc("127.0.0.1", 5901), VncConnected(),
         ("read_banner", ReadBanner)),
    Work("vnc", "read_banner", (VmFound(RUNNING), VncConnected()), ReadBanner("127.0.0.1:5901"), BannerRead(BANNER),
         ("proxy", RunProxy)),
    Work("vnc", "proxy", (VmFound(RUNNING), VncConnected(), BannerRead(BANNER)), RunProxy(), VncClosed(),
         ("proxy", ExplainVncClose)),
    Work("vnc", "proxy", (VmFound(RUNNING), VncConnected(), BannerRead(BANNER), VncClosed()), ExplainVncClose(UUID),
         VncCloseExplained(vm_stopped=True), ("ended", None)),
    # the serial console
    Work("serial", "check_vm", (), LookUpVm("web", admit=True), VmFound(STOPPED), ("check_vm", CheckSerialDevice)),
    Work("serial", "check_vm", (VmFound(STOPPED),), CheckSerialDevice(UUID), SerialDeviceChecked(True),
         ("start_vm", StartVm)),
    Work("serial", "start_vm", (VmFound(STOPPED), SerialDeviceChecked(True)), StartVm(UUID), VmStarted(RUNNING),
         ("open_serial", FindPortHolder)),
    Work("serial", "start_vm", (VmFound(STOPPED), SerialDeviceChecked(True), ALREADY), LookUpVm(UUID),
         VmFound(RUNNING), ("open_serial", FindPortHolder)),
    Work("serial", "open_serial", TO_SERIAL_OPEN, FindPortHolder(UUID), PortHolder(held_by_another=False),
         ("open_serial", OpenSerial)),
    Work("serial", "open_serial", (*TO_SERIAL_OPEN, PortHolder(True)), TakeOverPort(UUID), PortTakenOver(),
         ("open_serial", OpenSerial), force=True),
    Work("serial", "open_serial", (*TO_SERIAL_OPEN, PortHolder(False)), OpenSerial(UUID, force=False), SerialOpened(),
         ("proxy", RunSerialProxy)),
    Work("serial", "proxy", (*TO_SERIAL_OPEN, PortHolder(False), SerialOpened()), RunSerialProxy(),
         SerialStreamEnded(), ("proxy", ExplainStreamEnd)),
    Work("serial", "proxy", (*TO_SERIAL_OPEN, PortHolder(False), SerialOpened(), SerialStreamEnded()),
         ExplainStreamEnd(UUID), StreamEndExplained(vm_stopped=True), ("ended", None)),
)
IDS = [work.id for work in WORK]


def texts(actions: list[Action]) -> list[dict[str, Any]]:
    return [json.loads(action.text) for action in actions if isinstance(action, SendText)]


def assert_ended_with(m: StageMachine, actions: list[Action], stage: str, code: ErrorCode, details: str) -> None:
    assert m.stage == "ended" and m.ended_in == stage
    assert m.error is not None and (m.error.code, m.error.details) == (code, details)
    assert actions[-1] == Close(code.close_code, code.name)
    frames = texts(actions)
    if m.notices or stage != m.stages.stages[-1].name:  # the VNC console's proxy stage: the close frame only
        (frame,) = frames
        assert (frame["type"], frame["code"], frame["stage"], frame["details"]) == ("error", code.name, stage, details)
    else:
        assert frames == []


@pytest.mark.parametrize("work", WORK, ids=IDS)
def test_timeout(work: Work) -> None:
    clock = FakeClock(100.0)
    m = work.machine(clock)
    spec = m.stages[work.stage]
    limit = spec.deadline(SETTINGS)
    if limit is None:  # a stage without a deadline: the driver bounds its work by nothing (the peers do)
        assert m.remaining() is None and m.deadline is None
        return
    assert m.remaining() == limit
    clock.advance(limit)  # the effect, asked for now, is still pending at the stage's deadline
    actions = m.receive(TimedOut())
    if work.effect.libvirt_call:
        code, template = spec.libvirt_timeout_code, LIBVIRT_TIMEOUT_DETAIL
    else:
        code, template = spec.timeout_code, spec.timeout_detail
    assert code is not None
    details = template.format(limit=limit, stage=work.stage, target="127.0.0.1:5901")
    assert_ended_with(m, actions, work.stage, code, details)


@pytest.mark.parametrize("work", WORK, ids=IDS)
def test_libvirt_failure(work: Work) -> None:
    m = work.machine()
    actions = m.receive(EffectFailed(REFUSAL))
    expected = m.stages[work.stage].failure_code or REFUSAL.code  # the kind's name for it, or as it is
    assert_ended_with(m, actions, work.stage, expected, REFUSAL.details)


@pytest.mark.parametrize("work", WORK, ids=IDS)
def test_a_specific_failure_reaches_the_client_as_it_is(work: Work) -> None:
    m = work.machine()
    error = LimenError(ErrorCode.HYPERVISOR_UNAVAILABLE, "libvirt: connection reset")
    assert_ended_with(m, m.receive(EffectFailed(error)), work.stage, error.code, error.details)


@pytest.mark.parametrize("work", WORK, ids=IDS)
def test_success(work: Work) -> None:
    m = work.machine()
    before = len(m.history)
    actions = m.receive(work.success)
    stage, effect = work.then
    assert m.stage == stage
    if effect is None:
        assert not any(isinstance(action, Effect) for action in actions) and m.pending is None
    else:
        assert isinstance(actions[-1], Effect) and type(actions[-1]) is effect and m.pending is actions[-1]
    # A status frame exactly when a stage with a text was entered, and it is the table's text.
    entered = [name for name, _ in m.history[before:]]
    statuses = [frame for frame in texts(actions) if frame["type"] == "status"]
    assert [frame["stage"] for frame in statuses] == [s for s in entered if m.stages[s].status is not None]
    for frame in statuses:
        assert frame["message"] == m.stages[frame["stage"]].status_text(port=5901)


def test_every_piece_of_work_of_every_stage_is_in_the_tables_above() -> None:
    for kind, stages in CONSOLE_KINDS.items():
        assert {work.stage for work in WORK if work.kind == kind} == {stage.name for stage in stages}, kind


# -- a stage in the table the machine never enters fails here ---------------------------------------------

SUCCEEDS: dict[type[Effect], Callable[[Effect, Vm], Result]] = {
    LookUpVm: lambda effect, vm: VmFound(vm),
    StartVm: lambda effect, vm: VmStarted(RUNNING),
    Pause: lambda effect, vm: Paused(),
    ConnectVnc: lambda effect, vm: VncConnected(),
    ReadBanner: lambda effect, vm: BannerRead(BANNER),
    CheckSerialDevice: lambda effect, vm: SerialDeviceChecked(True),
    FindPortHolder: lambda effect, vm: PortHolder(held_by_another=False),
    TakeOverPort: lambda effect, vm: PortTakenOver(),
    OpenSerial: lambda effect, vm: SerialOpened(),
}
LAST_EFFECT = (RunProxy, RunSerialProxy)  # the stream: the walk is over


def walk(m: StageMachine, first: Vm) -> list[str]:
    """The stages a machine enters when every effect succeeds (the VM as ``first`` at the first look-up)."""
    actions = m.start()
    vm = first
    for _ in range(50):
        effect = actions[-1]
        assert isinstance(effect, Effect), actions
        if isinstance(effect, LAST_EFFECT):
            return [stage for stage, _ in m.history]
        assert type(effect) in SUCCEEDS, f"{type(m).__name__} asks for {effect!r}, which no walk knows"
        actions = m.receive(SUCCEEDS[type(effect)](effect, vm))
        vm = RUNNING
    raise AssertionError(f"{type(m).__name__} never reached its stream: {m.history}")


@pytest.mark.parametrize(("make", "stages"), [(vnc, VNC_STAGES), (serial, SERIAL_STAGES)], ids=["vnc", "serial"])
def test_walking_the_machine_enters_every_stage_of_its_table_in_order(
    make: Callable[..., StageMachine], stages: StageList
) -> None:
    seen: set[str] = set()
    for first in (RUNNING, STOPPED, NO_PORT):
        entered = walk(make(), first)
        order = [stage.name for stage in stages]
        assert entered == sorted(set(entered), key=order.index), "stages out of the table's order"
        seen.update(entered)
    assert seen == {stage.name for stage in stages}, "a stage of the table that the machine never enters"


def test_the_walk_would_catch_a_stage_added_to_the_table_only() -> None:
    extra = replace(SERIAL_STAGES.stages[-1], name="resize_terminal")
    widened = StageList("serial", (*SERIAL_STAGES.stages[:-1], extra, SERIAL_STAGES.stages[-1]))

    class Widened(SerialHandshake):
        def __init__(self) -> None:
            super().__init__(ident="web", settings=SETTINGS, clock=lambda: 100.0)
            self.stages = widened

    seen = set(walk(Widened(), RUNNING)) | set(walk(Widened(), STOPPED))
    assert seen != {stage.name for stage in widened}
