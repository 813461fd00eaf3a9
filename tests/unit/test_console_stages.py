"""The console stage machine on its own: no socket, no libvirt, a clock the test moves."""

from __future__ import annotations

import json

import pytest

from limen.console import messages
from limen.console.stages import (
    STATUS_TEXTS,
    TRANSITIONS,
    Action,
    BannerReceived,
    ClientLeft,
    Close,
    ConsoleHandshake,
    Failed,
    IllegalTransition,
    PortAssigned,
    PortPending,
    SendBinary,
    SendText,
    Stage,
    StageTimeouts,
    TimedOut,
    VmIsRunning,
    VmIsStopped,
    VmStarted,
    VncConnected,
)
from limen.errors import ErrorCode, LimenError
from limen.settings import Settings

BANNER = b"RFB 003.008\n"
TIMEOUTS = StageTimeouts(check_vm=1, start_vm=2, get_port=3, connect=4, read_banner=5)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def machine(*, auto_start: bool = True, notices: bool = False) -> tuple[ConsoleHandshake, FakeClock]:
    clock = FakeClock()
    return ConsoleHandshake(timeouts=TIMEOUTS, auto_start=auto_start, clock=clock, notices=notices), clock


def texts(actions: list[Action]) -> list[dict[str, object]]:
    return [json.loads(action.text) for action in actions if isinstance(action, SendText)]


def run_to_proxy(m: ConsoleHandshake, clock: FakeClock, *, stopped: bool = False) -> list[Action]:
    actions = m.start()
    clock.advance(0.010)
    if stopped:
        actions += m.handle(VmIsStopped("web"))
        clock.advance(0.5)
        actions += m.handle(VmStarted())
    else:
        actions += m.handle(VmIsRunning())
    clock.advance(0.020)
    actions += m.handle(PortAssigned("127.0.0.1", 5901))
    clock.advance(0.003)
    actions += m.handle(VncConnected())
    clock.advance(0.002)
    actions += m.handle(BannerReceived(BANNER))
    return actions


def test_running_vm_gets_the_four_seed_status_frames_then_the_banner() -> None:
    m, clock = machine()
    actions = run_to_proxy(m, clock)
    assert [type(a) for a in actions] == [SendText, SendText, SendText, SendText, SendBinary]
    assert [a.text for a in actions if isinstance(a, SendText)] == [
        '{"type":"status","message":"Connected, checking VM status...","stage":"check_vm","elapsed_ms":0}',
        '{"type":"status","message":"Getting VNC port...","stage":"get_port","elapsed_ms":10}',
        '{"type":"status","message":"Connecting to VNC server on port 5901...","stage":"connect","elapsed_ms":30}',
        '{"type":"status","message":"VNC connection established, starting proxy...","stage":"proxy",'
        '"elapsed_ms":35}',
    ]
    assert actions[-1] == SendBinary(BANNER)
    assert m.stage is Stage.PROXY
    assert m.remaining() is None  # the proxy stage has no deadline


def test_stopped_vm_with_auto_start_gets_five_status_frames() -> None:
    m, clock = machine(auto_start=True)
    statuses = [frame["message"] for frame in texts(run_to_proxy(m, clock, stopped=True))]
    assert statuses == [
        "Connected, checking VM status...",
        "Starting VM...",
        "Getting VNC port...",
        "Connecting to VNC server on port 5901...",
        "VNC connection established, starting proxy...",
    ]
    assert [stage for stage, _ in m.history] == [
        Stage.CHECK_VM, Stage.START_VM, Stage.GET_PORT, Stage.CONNECT, Stage.READ_BANNER, Stage.PROXY
    ]


def test_stopped_vm_without_auto_start_ends_with_vm_not_running() -> None:
    m, _ = machine(auto_start=False)
    m.start()
    actions = m.handle(VmIsStopped("web"))
    assert m.stage is Stage.ENDED and m.ended_in is Stage.CHECK_VM
    (frame,) = texts(actions)
    assert frame["code"] == "VM_NOT_RUNNING" and frame["stage"] == "check_vm"
    assert "'web'" in str(frame["details"])
    assert actions[-1] == Close(4100, "VM_NOT_RUNNING")


def test_the_seed_texts_are_exact() -> None:
    assert STATUS_TEXTS[Stage.CHECK_VM] == "Connected, checking VM status..."
    assert STATUS_TEXTS[Stage.START_VM] == "Starting VM..."
    assert STATUS_TEXTS[Stage.GET_PORT] == "Getting VNC port..."
    assert messages.connecting_text(5900) == "Connecting to VNC server on port 5900..."
    assert STATUS_TEXTS[Stage.PROXY] == "VNC connection established, starting proxy..."


def test_no_binary_frame_before_the_last_status_frame() -> None:
    for stopped in (False, True):
        m, clock = machine()
        kinds = [type(a) for a in run_to_proxy(m, clock, stopped=stopped)]
        assert SendBinary not in kinds[: kinds.index(SendBinary)]
        assert kinds.index(SendBinary) == len(kinds) - 1
        assert kinds[-2] is SendText


def test_waiting_for_a_port_keeps_the_stage_and_its_deadline_and_sends_nothing() -> None:
    m, clock = machine()
    m.start()
    m.handle(VmIsRunning())
    deadline = m.deadline
    for _ in range(5):
        clock.advance(0.1)
        assert m.handle(PortPending()) == []
        assert m.stage is Stage.GET_PORT and m.deadline == deadline
    assert m.remaining() == pytest.approx(TIMEOUTS.get_port - 0.5)


def test_remaining_counts_down_and_never_goes_negative() -> None:
    m, clock = machine()
    m.start()
    assert m.remaining() == pytest.approx(1.0)
    clock.advance(0.75)
    assert m.remaining() == pytest.approx(0.25)
    clock.advance(5)
    assert m.remaining() == 0.0


@pytest.mark.parametrize(
    ("steps", "in_libvirt", "code", "close_code", "stage"),
    [
        ([], True, "HYPERVISOR_UNAVAILABLE", 4300, "check_vm"),
        ([], False, "HYPERVISOR_UNAVAILABLE", 4300, "check_vm"),
        ([VmIsStopped()], False, "VM_START_FAILED", 4101, "start_vm"),
        ([VmIsRunning()], False, "VNC_PORT_ERROR", 4201, "get_port"),
        ([VmIsRunning()], True, "HYPERVISOR_UNAVAILABLE", 4300, "get_port"),
        ([VmIsRunning(), PortAssigned("127.0.0.1", 5901)], False, "VNC_CONNECTION_FAILED", 4202, "connect"),
        ([VmIsRunning(), PortAssigned("127.0.0.1", 5901), VncConnected()], False, "VNC_HANDSHAKE_FAILED", 4203,
         "read_banner"),
    ],
)
def test_each_stage_times_out_into_its_own_error(
    steps: list[object], in_libvirt: bool, code: str, close_code: int, stage: str
) -> None:
    m, _ = machine()
    m.start()
    for step in steps:
        m.handle(step)  # type: ignore[arg-type]
    actions = m.handle(TimedOut(in_libvirt=in_libvirt))
    (frame,) = texts(actions)
    assert list(frame) == ["type", "error", "code", "details", "message", "stage"]
    assert (frame["type"], frame["code"], frame["stage"]) == ("error", code, stage)
    assert frame["message"] == ErrorCode[code].user_message
    assert actions[-1] == Close(close_code, code)
    assert m.error is not None and m.error.code is ErrorCode[code]


def test_timeout_details_name_the_limit_and_the_target() -> None:
    m, _ = machine()
    m.start()
    m.handle(VmIsRunning())
    m.handle(PortAssigned("127.0.0.1", 5901))
    m.handle(VncConnected())
    m.handle(TimedOut())
    assert m.error is not None
    assert m.error.details == "no RFB banner from 127.0.0.1:5901 within 5 s"


def test_a_failure_sends_the_error_frame_then_closes_with_its_code() -> None:
    m, _ = machine()
    m.start()
    error = LimenError(ErrorCode.VM_NOT_FOUND, "no VM with name 'x'")
    actions = m.handle(Failed(error))
    assert actions == [
        SendText('{"type":"error","error":"VM not found","code":"VM_NOT_FOUND","details":"no VM with name \'x\'",'
                 f'"message":{json.dumps(ErrorCode.VM_NOT_FOUND.user_message)},"stage":"check_vm"}}'),
        Close(4004, "VM_NOT_FOUND"),
    ]


def test_in_the_proxy_stage_errors_travel_in_the_close_frame_only() -> None:
    m, clock = machine(notices=False)
    run_to_proxy(m, clock)
    assert m.handle(Failed(LimenError(ErrorCode.VM_STOPPED, "destroyed"))) == [Close(4102, "VM_STOPPED")]


def test_in_the_proxy_stage_a_client_asking_for_notices_gets_the_error_frame_too() -> None:
    m, clock = machine(notices=True)
    run_to_proxy(m, clock)
    actions = m.handle(Failed(LimenError(ErrorCode.VM_STOPPED, "destroyed")))
    (frame,) = texts(actions)
    assert (frame["code"], frame["stage"]) == ("VM_STOPPED", "proxy")
    assert actions[-1] == Close(4102, "VM_STOPPED")


def test_notices_only_in_the_proxy_stage_and_only_when_asked() -> None:
    m, clock = machine(notices=True)
    m.start()
    assert m.notice("IDLE_WARNING", "soon") == []
    run_to_proxy_rest = [VmIsRunning(), PortAssigned("127.0.0.1", 1), VncConnected(), BannerReceived(BANNER)]
    for event in run_to_proxy_rest:
        m.handle(event)
    (frame,) = texts(m.notice("IDLE_WARNING", "soon"))
    assert (frame["type"], frame["code"], frame["message"]) == ("notice", "IDLE_WARNING", "soon")
    assert frame["stage"] == "proxy"
    quiet, clock = machine(notices=False)
    run_to_proxy(quiet, clock)
    assert quiet.notice("IDLE_WARNING", "soon") == []


def test_a_slow_client_gets_no_frame_only_the_close() -> None:
    m, _ = machine()
    m.start()
    assert m.handle(Failed(LimenError(ErrorCode.SLOW_CLIENT, "write took too long"))) == [Close(4400, "SLOW_CLIENT")]


def test_a_client_that_left_gets_nothing() -> None:
    m, _ = machine()
    m.start()
    m.handle(VmIsRunning())
    assert m.handle(ClientLeft()) == []
    assert m.stage is Stage.ENDED and m.ended_in is Stage.GET_PORT and m.error is None


def test_a_second_ending_changes_nothing() -> None:
    m, _ = machine()
    m.start()
    m.handle(Failed(LimenError(ErrorCode.SERVER_SHUTDOWN)))
    assert m.handle(ClientLeft()) == []
    assert m.handle(TimedOut()) == []
    assert m.error is not None and m.error.code is ErrorCode.SERVER_SHUTDOWN


@pytest.mark.parametrize(
    ("steps", "event"),
    [
        ([], VmStarted()),
        ([], PortAssigned("127.0.0.1", 5901)),
        ([VmIsRunning()], VmIsRunning()),
        ([VmIsRunning()], BannerReceived(BANNER)),
        ([VmIsRunning(), PortAssigned("h", 1)], PortPending()),
        ([VmIsRunning(), PortAssigned("h", 1), VncConnected(), BannerReceived(BANNER)], VncConnected()),
    ],
)
def test_an_event_the_stage_does_not_list_is_an_illegal_transition(steps: list[object], event: object) -> None:
    m, _ = machine()
    m.start()
    for step in steps:
        m.handle(step)  # type: ignore[arg-type]
    with pytest.raises(IllegalTransition):
        m.handle(event)  # type: ignore[arg-type]


def test_events_before_start_and_start_twice_are_illegal() -> None:
    m, _ = machine()
    with pytest.raises(IllegalTransition):
        m.handle(VmIsRunning())
    m.start()
    with pytest.raises(IllegalTransition):
        m.start()


def test_a_banner_that_is_not_one_is_refused() -> None:
    m, _ = machine()
    m.start()
    for event in (VmIsRunning(), PortAssigned("h", 1), VncConnected()):
        m.handle(event)
    with pytest.raises(IllegalTransition):
        m.handle(BannerReceived(b"HTTP/1.1 400"))


def test_the_table_reaches_every_stage_from_check_vm() -> None:
    seen = {Stage.CHECK_VM}
    frontier = [Stage.CHECK_VM]
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen | {Stage.ENDED} == set(Stage)


def test_stage_timeouts_come_from_settings_and_default_to_at_most_20_s() -> None:
    settings = Settings.model_validate({"console_check_vm_timeout": 1.5, "console_banner_timeout": 2.5})
    timeouts = StageTimeouts.from_settings(settings)
    assert (timeouts.check_vm, timeouts.read_banner) == (1.5, 2.5)
    assert StageTimeouts.from_settings(Settings.model_validate({})).worst_case <= 20
    assert timeouts.of(Stage.PROXY) is None and timeouts.of(Stage.ENDED) is None
