"""The VNC console machine on its own: effects out, results in; no socket, no libvirt, a clock the test moves."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from limen.console.handshake import (
    CONNECT_RETRY_PAUSE,
    LIBVIRT_HUNG_SHARE,
    PORT_POLL_INTERVAL,
    Action,
    BannerRead,
    ClientLeft,
    Close,
    ConnectVnc,
    Effect,
    EffectFailed,
    EndRequested,
    ExplainVncClose,
    IllegalTransition,
    LookUpVm,
    OpenWatch,
    Pause,
    Paused,
    ReadBanner,
    Result,
    RunProxy,
    SendBinary,
    SendText,
    StageMachine,
    StartVm,
    TimedOut,
    VmEnded,
    VmFound,
    VmStarted,
    VncClosed,
    VncCloseExplained,
    VncConnected,
    VncHandshake,
)
from limen.console.stage_table import StageList, StageSpec, VncStage
from limen.errors import ErrorCode, HypervisorUnavailable, LimenError, NothingListens
from limen.hypervisor.models import Vm, VmState, VncEndpoint
from limen.settings import Settings

BANNER = b"RFB 003.008\n"
SETTINGS = Settings.model_validate({
    "console_check_vm_timeout": 1, "console_start_vm_timeout": 2, "console_get_port_timeout": 3,
    "console_connect_timeout": 4, "console_banner_timeout": 5,
})
UUID = "6f1c2e55-0000-4000-8000-000000000001"


def vm(*, state: VmState = VmState.RUNNING, port: int | None = 5901, vnc: bool = True, name: str = "web") -> Vm:
    return Vm(UUID, name, state, 1, 256, vnc=VncEndpoint("127.0.0.1", port) if vnc else None)


RUNNING = vm()
STOPPED = vm(state=VmState.STOPPED, port=None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def machine(*, auto_start: bool = True, notices: bool = False) -> tuple[VncHandshake, FakeClock]:
    clock = FakeClock()
    return VncHandshake(ident="web", settings=SETTINGS, clock=clock, notices=notices, auto_start=auto_start), clock


def texts(actions: list[Action]) -> list[dict[str, object]]:
    return [json.loads(action.text) for action in actions if isinstance(action, SendText)]


def effect_of(actions: list[Action]) -> Effect:
    """The one effect of an action list, always its last action."""
    effects = [action for action in actions if isinstance(action, Effect)]
    assert len(effects) == 1 and actions[-1] is effects[0], actions
    return effects[0]


def run_to_proxy(m: VncHandshake, clock: FakeClock, *, stopped: bool = False) -> list[Action]:
    actions = step = m.start()
    assert effect_of(step) == LookUpVm("web", admit=True)
    clock.advance(0.010)
    if stopped:
        actions += (step := m.receive(VmFound(STOPPED)))
        assert effect_of(step) == StartVm(UUID)
        clock.advance(0.5)
        actions += (step := m.receive(VmStarted(RUNNING)))
    else:
        actions += (step := m.receive(VmFound(RUNNING)))
    assert effect_of(step) == ConnectVnc("127.0.0.1", 5901)
    clock.advance(0.003)
    actions += (step := m.receive(VncConnected()))
    assert effect_of(step) == ReadBanner("127.0.0.1:5901")
    clock.advance(0.002)
    actions += (step := m.receive(BannerRead(BANNER)))
    assert effect_of(step) == RunProxy()
    return actions


def test_running_vm_gets_the_four_seed_status_frames_then_the_banner() -> None:
    m, clock = machine()
    actions = [a for a in run_to_proxy(m, clock) if not isinstance(a, Effect | OpenWatch)]
    assert [type(a) for a in actions] == [SendText, SendText, SendText, SendText, SendBinary]
    assert [a.text for a in actions if isinstance(a, SendText)] == [
        '{"type":"status","message":"Connected, checking VM status...","stage":"check_vm","elapsed_ms":0}',
        '{"type":"status","message":"Getting VNC port...","stage":"get_port","elapsed_ms":10}',
        '{"type":"status","message":"Connecting to VNC server on port 5901...","stage":"connect","elapsed_ms":10}',
        '{"type":"status","message":"VNC connection established, starting proxy...","stage":"proxy",'
        '"elapsed_ms":15}',
    ]
    assert actions[-1] == SendBinary(BANNER)
    assert m.stage == VncStage.PROXY
    assert m.remaining() is None  # the proxy stage has no deadline


def test_a_refused_port_of_a_vm_still_starting_is_tried_again_then_said() -> None:
    """Three consoles opened at once on a stopped VM: one started it, and the third found it running with its
    port in the live XML before QEMU listened: VNC_CONNECTION_FAILED (refused) at once."""
    m, clock = machine()
    m.start()
    clock.advance(0.010)
    assert effect_of(m.receive(VmFound(RUNNING))) == ConnectVnc("127.0.0.1", 5901)
    refused = NothingListens("cannot connect to 127.0.0.1:5901: Connection refused")
    assert m.receive(EffectFailed(refused)) == [Pause(CONNECT_RETRY_PAUSE)]
    clock.advance(CONNECT_RETRY_PAUSE)
    assert m.receive(Paused()) == [ConnectVnc("127.0.0.1", 5901)]
    assert m.stage == VncStage.CONNECT  # the same stage and deadline: no second status frame
    assert effect_of(m.receive(VncConnected())) == ReadBanner("127.0.0.1:5901")

    # A port that still refuses once half the connect deadline (4 s here) has gone is said as it is.
    m, clock = machine()
    m.start()
    m.receive(VmFound(RUNNING))
    tries = 1
    while m.receive(EffectFailed(refused)) == [Pause(CONNECT_RETRY_PAUSE)]:
        clock.advance(CONNECT_RETRY_PAUSE)
        assert m.receive(Paused()) == [ConnectVnc("127.0.0.1", 5901)]
        tries += 1
    assert m.error is not None and m.error.code is ErrorCode.VNC_CONNECTION_FAILED
    assert "refused" in m.error.details and 40 <= tries <= 41  # the first try, then one every 50 ms for 2 s
    # Any other failure to connect (no route, reset) is not tried again.
    m, clock = machine()
    m.start()
    m.receive(VmFound(RUNNING))
    m.receive(EffectFailed(LimenError(ErrorCode.VNC_CONNECTION_FAILED, "No route to host")))
    assert m.stage == VncHandshake.ENDED


def test_the_vm_watch_opens_once_on_entering_get_port() -> None:
    m, clock = machine()
    actions = run_to_proxy(m, clock, stopped=True)
    assert [a for a in actions if isinstance(a, OpenWatch)] == [OpenWatch(UUID)]
    watch_at = actions.index(OpenWatch(UUID))
    assert json.loads(actions[watch_at - 1].text)["stage"] == "get_port"  # type: ignore[attr-defined]


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
    assert [stage for stage, _ in m.history] == ["check_vm", "start_vm", "get_port", "connect", "read_banner", "proxy"]


def test_stopped_vm_without_auto_start_ends_with_vm_not_running() -> None:
    m, _ = machine(auto_start=False)
    m.start()
    actions = m.receive(VmFound(STOPPED))
    assert m.stage == "ended" and m.ended_in == "check_vm"
    (frame,) = texts(actions)
    assert frame["code"] == "VM_NOT_RUNNING" and frame["stage"] == "check_vm"
    assert "'web'" in str(frame["details"])
    assert actions[-1] == Close(4100, "VM_NOT_RUNNING")


def test_a_vm_without_vnc_graphics_ends_with_vnc_not_configured_in_check_vm() -> None:
    m, _ = machine()
    m.start()
    actions = m.receive(VmFound(vm(vnc=False)))
    (frame,) = texts(actions)
    assert (frame["code"], frame["stage"]) == ("VNC_NOT_CONFIGURED", "check_vm")
    assert actions[-1] == Close(4200, "VNC_NOT_CONFIGURED")


def test_a_vm_that_loses_its_vnc_device_while_starting_ends_in_get_port() -> None:
    m, _ = machine()
    m.start()
    m.receive(VmFound(STOPPED))
    actions = m.receive(VmStarted(vm(vnc=False)))
    (frame,) = texts([a for a in actions if isinstance(a, SendText) and '"error"' in a.text])
    assert (frame["code"], frame["stage"]) == ("VNC_NOT_CONFIGURED", "get_port")


def test_someone_else_starting_the_vm_first_is_fine_the_machine_reads_it_again() -> None:
    m, _ = machine()
    m.start()
    m.receive(VmFound(STOPPED))
    actions = m.receive(EffectFailed(LimenError(ErrorCode.VM_ALREADY_RUNNING, "already")))
    assert actions == [LookUpVm(UUID)] and m.stage == "start_vm"
    actions = m.receive(VmFound(RUNNING))
    assert [f["stage"] for f in texts(actions)] == ["get_port", "connect"]


def test_a_start_that_fails_otherwise_ends_the_session_with_its_code() -> None:
    m, _ = machine()
    m.start()
    m.receive(VmFound(STOPPED))
    actions = m.receive(EffectFailed(LimenError(ErrorCode.QUOTA_EXCEEDED, "no room")))
    (frame,) = texts(actions)
    assert (frame["code"], frame["stage"]) == ("QUOTA_EXCEEDED", "start_vm")


def test_vm_already_running_outside_start_vm_is_an_ending() -> None:
    m, _ = machine()
    m.start()
    m.receive(EffectFailed(LimenError(ErrorCode.VM_ALREADY_RUNNING, "?")))
    assert m.error is not None and m.error.code is ErrorCode.VM_ALREADY_RUNNING


def test_waiting_for_a_port_polls_in_the_same_stage_with_the_same_deadline_and_sends_nothing() -> None:
    m, clock = machine()
    m.start()
    assert m.receive(VmFound(vm(port=None)))[-1] == Pause(PORT_POLL_INTERVAL)
    deadline = m.deadline
    for _ in range(5):
        clock.advance(0.1)
        assert m.receive(Paused()) == [LookUpVm(UUID)]
        assert m.receive(VmFound(vm(port=None))) == [Pause(PORT_POLL_INTERVAL)]
        assert m.stage == "get_port" and m.deadline == deadline
    assert m.remaining() == pytest.approx(3 - 0.5)
    m.receive(Paused())
    assert texts(m.receive(VmFound(RUNNING)))[0]["message"] == "Connecting to VNC server on port 5901..."


def test_remaining_counts_down_and_never_goes_negative() -> None:
    m, clock = machine()
    m.start()
    assert m.remaining() == pytest.approx(1.0)
    clock.advance(0.75)
    assert m.remaining() == pytest.approx(0.25)
    clock.advance(5)
    assert m.remaining() == 0.0


# Results that bring a fresh machine to a stage, with the effect then pending.
TO_START_VM: list[Result] = [VmFound(STOPPED)]
TO_START_VM_RELOOK: list[Result] = [VmFound(STOPPED), EffectFailed(LimenError(ErrorCode.VM_ALREADY_RUNNING))]
TO_GET_PORT_PAUSE: list[Result] = [VmFound(vm(port=None))]
TO_GET_PORT_LOOKUP: list[Result] = [VmFound(vm(port=None)), Paused()]
TO_CONNECT: list[Result] = [VmFound(RUNNING)]
TO_READ_BANNER: list[Result] = [VmFound(RUNNING), VncConnected()]


@pytest.mark.parametrize(
    ("steps", "code", "close_code", "stage", "details"),
    [
        ([], "HYPERVISOR_UNAVAILABLE", 4300, "check_vm", "libvirt did not answer within 1 s (stage check_vm)"),
        (TO_START_VM, "VM_START_FAILED", 4101, "start_vm", "the VM was not running within 2 s"),
        (TO_START_VM_RELOOK, "HYPERVISOR_UNAVAILABLE", 4300, "start_vm",
         "libvirt did not answer within 2 s (stage start_vm)"),
        (TO_GET_PORT_PAUSE, "VNC_PORT_ERROR", 4201, "get_port", "libvirt assigned no VNC port within 3 s"),
        (TO_GET_PORT_LOOKUP, "HYPERVISOR_UNAVAILABLE", 4300, "get_port",
         "libvirt did not answer within 3 s (stage get_port)"),
        (TO_CONNECT, "VNC_CONNECTION_FAILED", 4202, "connect", "no TCP connection to 127.0.0.1:5901 within 4 s"),
        (TO_READ_BANNER, "VNC_HANDSHAKE_FAILED", 4203, "read_banner", "no RFB banner from 127.0.0.1:5901 within 5 s"),
    ],
)
def test_each_stage_times_out_into_its_own_error(
    steps: list[Result], code: str, close_code: int, stage: str, details: str
) -> None:
    m, clock = machine()
    m.start()
    for step in steps:
        m.receive(step)
    remaining = m.remaining()
    assert remaining is not None
    clock.advance(remaining)  # the effect pending since the step before runs into the stage's deadline
    actions = m.receive(TimedOut())
    (frame,) = texts(actions)
    assert list(frame) == ["type", "error", "code", "details", "message", "stage"]
    assert (frame["type"], frame["code"], frame["stage"], frame["details"]) == ("error", code, stage, details)
    assert frame["message"] == ErrorCode[code].user_message
    assert actions[-1] == Close(close_code, code)


def test_hypervisor_unavailable_names_the_vms_host_in_the_error_frame() -> None:
    # A VM found on host "edge" whose libvirt then hangs: the frame says which host, as a field of its own.
    m, clock = machine()
    m.start()
    for step in TO_GET_PORT_LOOKUP:
        m.receive(replace(step, vm=replace(step.vm, host="edge")) if isinstance(step, VmFound) else step)
    clock.advance(m.remaining() or 0.0)
    (frame,) = texts(m.receive(TimedOut()))
    assert list(frame) == ["type", "error", "code", "details", "message", "host", "stage"]
    assert (frame["code"], frame["host"]) == ("HYPERVISOR_UNAVAILABLE", "edge")
    # Before the VM is known, the host the failing call went to (from the libvirt connection) is kept.
    m, _ = machine()
    m.start()
    (frame,) = texts(m.receive(EffectFailed(HypervisorUnavailable("lookup: no answer", host="far"))))
    assert (frame["code"], frame["host"]) == ("HYPERVISOR_UNAVAILABLE", "far")


def test_a_port_poll_the_deadline_meets_is_not_libvirt_hanging() -> None:
    """get_port looks the VM up every PORT_POLL_INTERVAL. A look-up asked just before the deadline (a slow
    one, under load) is not libvirt hanging: the stage's own timeout says the port never came. One that ran
    for LIBVIRT_HUNG_SHARE of the stage or more is."""
    for ran_for, code in ((0.2, "VNC_PORT_ERROR"), (LIBVIRT_HUNG_SHARE * 3.0, "HYPERVISOR_UNAVAILABLE")):
        m, clock = machine()
        m.start()
        m.receive(VmFound(vm(port=None)))  # get_port (3 s here), a pause pending
        clock.advance(3.0 - ran_for)
        assert isinstance(m.receive(Paused())[-1], LookUpVm)
        clock.advance(ran_for)
        (frame,) = texts(m.receive(TimedOut()))
        assert (frame["code"], frame["stage"]) == (code, "get_port"), ran_for
    assert m.error is not None and m.error.code is ErrorCode[code]


def test_a_failure_sends_the_error_frame_then_closes_with_its_code() -> None:
    m, _ = machine()
    m.start()
    error = LimenError(ErrorCode.VM_NOT_FOUND, "no VM with name 'x'")
    actions = m.receive(EffectFailed(error))
    assert actions == [
        SendText('{"type":"error","error":"VM not found","code":"VM_NOT_FOUND","details":"no VM with name \'x\'",'
                 f'"message":{json.dumps(ErrorCode.VM_NOT_FOUND.user_message)},"stage":"check_vm"}}'),
        Close(4004, "VM_NOT_FOUND"),
    ]


def test_the_vnc_server_closing_because_the_vm_stopped_is_vm_stopped() -> None:
    m, clock = machine()
    run_to_proxy(m, clock)
    assert m.receive(VncClosed()) == [ExplainVncClose(UUID)]
    assert m.receive(VncCloseExplained(vm_stopped=True)) == [Close(4102, "VM_STOPPED")]
    assert m.error is not None and m.error.details == "VM 'web' stopped; its VNC server closed the connection"


def test_a_revert_says_so_whether_the_event_or_the_vnc_server_comes_first() -> None:
    m, clock = machine(notices=True)
    run_to_proxy(m, clock)
    (frame,) = texts(m.receive(VmEnded("reverted")))
    assert (frame["code"], frame["stage"]) == ("VM_REVERTED", "proxy")
    assert frame["details"] == "VM 'web' was reverted to a snapshot (libvirt lifecycle event)"
    m, clock = machine()
    run_to_proxy(m, clock)
    m.receive(VncClosed())
    assert m.receive(VncCloseExplained(vm_stopped=True, how="reverted")) == [Close(4107, "VM_REVERTED")]


def test_the_vnc_server_closing_on_its_own_is_a_connection_failure() -> None:
    m, clock = machine()
    run_to_proxy(m, clock)
    m.receive(VncClosed())
    assert m.receive(VncCloseExplained(vm_stopped=False)) == [Close(4202, "VNC_CONNECTION_FAILED")]


def test_a_lifecycle_event_ends_any_stage_with_vm_stopped_naming_the_vm() -> None:
    m, _ = machine()
    m.start()
    m.receive(VmFound(RUNNING))
    (frame,) = texts(m.receive(VmEnded("crashed")))
    assert (frame["code"], frame["stage"]) == ("VM_STOPPED", "connect")
    assert frame["details"] == "VM 'web' crashed (libvirt lifecycle event)"


def test_in_the_proxy_stage_errors_travel_in_the_close_frame_only() -> None:
    m, clock = machine(notices=False)
    run_to_proxy(m, clock)
    assert m.receive(VmEnded()) == [Close(4102, "VM_STOPPED")]


def test_in_the_proxy_stage_a_client_asking_for_notices_gets_the_error_frame_too() -> None:
    m, clock = machine(notices=True)
    run_to_proxy(m, clock)
    actions = m.receive(VmEnded())
    (frame,) = texts(actions)
    assert (frame["code"], frame["stage"]) == ("VM_STOPPED", "proxy")
    assert actions[-1] == Close(4102, "VM_STOPPED")


def test_notices_only_in_the_proxy_stage_and_only_when_asked() -> None:
    m, clock = machine(notices=True)
    m.start()
    assert m.notice("IDLE_WARNING", "soon") == []
    for result in (VmFound(RUNNING), VncConnected(), BannerRead(BANNER)):
        m.receive(result)
    (frame,) = texts(m.notice("IDLE_WARNING", "soon"))
    assert (frame["type"], frame["code"], frame["message"]) == ("notice", "IDLE_WARNING", "soon")
    assert frame["stage"] == "proxy"
    quiet, clock = machine(notices=False)
    run_to_proxy(quiet, clock)
    assert quiet.notice("IDLE_WARNING", "soon") == []


def test_a_slow_client_gets_no_frame_only_the_close() -> None:
    m, _ = machine()
    m.start()
    error = LimenError(ErrorCode.SLOW_CLIENT, "write took too long")
    assert m.receive(EffectFailed(error)) == [Close(4400, "SLOW_CLIENT")]


def test_a_client_that_left_gets_nothing() -> None:
    m, _ = machine()
    m.start()
    m.receive(VmFound(vm(port=None)))
    assert m.receive(ClientLeft()) == []
    assert m.stage == "ended" and m.ended_in == "get_port" and m.error is None


def test_the_first_ending_counts_and_a_second_changes_nothing() -> None:
    m, _ = machine()
    m.start()
    assert m.receive(EndRequested(LimenError(ErrorCode.SERVER_SHUTDOWN)))[-1] == Close(4402, "SERVER_SHUTDOWN")
    for later in (ClientLeft(), TimedOut(), VmEnded(), VmFound(RUNNING),
                  EffectFailed(LimenError(ErrorCode.INTERNAL_ERROR))):
        assert m.receive(later) == []
    assert m.error is not None and m.error.code is ErrorCode.SERVER_SHUTDOWN
    assert m.pending is None


@pytest.mark.parametrize(
    ("steps", "result"),
    [
        ([], VmStarted(RUNNING)),
        ([], VncConnected()),
        ([], Paused()),
        (TO_CONNECT, VmFound(RUNNING)),
        (TO_CONNECT, BannerRead(BANNER)),
        (TO_READ_BANNER, VncConnected()),
        (TO_GET_PORT_PAUSE, VmFound(RUNNING)),
        ([*TO_READ_BANNER, BannerRead(BANNER)], VncConnected()),
        ([*TO_READ_BANNER, BannerRead(BANNER)], VncCloseExplained(vm_stopped=True)),
    ],
)
def test_a_result_the_pending_effect_cannot_give_is_an_illegal_transition(
    steps: list[Result], result: Result
) -> None:
    m, _ = machine()
    m.start()
    for step in steps:
        m.receive(step)
    with pytest.raises(IllegalTransition):
        m.receive(result)


def test_results_before_start_and_start_twice_are_illegal() -> None:
    m, _ = machine()
    with pytest.raises(IllegalTransition):
        m.receive(VmFound(RUNNING))
    m.start()
    with pytest.raises(IllegalTransition):
        m.start()


def test_a_banner_that_is_not_one_is_refused() -> None:
    m, _ = machine()
    m.start()
    for result in TO_READ_BANNER:
        m.receive(result)
    with pytest.raises(IllegalTransition):
        m.receive(BannerRead(b"HTTP/1.1 400"))


def test_only_libvirt_calls_are_marked_as_such() -> None:
    assert LookUpVm("x").libvirt_call
    for effect in (StartVm("x"), Pause(1), ConnectVnc("h", 1), ReadBanner("h:1"), RunProxy(), ExplainVncClose("x")):
        assert not effect.libvirt_call, effect


# -- the generic part on another stage list (how a second console kind plugs in) -------------------------

SERIAL_LIKE = StageList("serial-like", (
    StageSpec(name="check_vm", label="checking the VM", status="Connected, checking VM status...",
              deadline_setting="console_check_vm_timeout", timeout_code=ErrorCode.HYPERVISOR_UNAVAILABLE,
              libvirt_timeout_code=ErrorCode.HYPERVISOR_UNAVAILABLE, timeout_detail="libvirt: {limit:g} s"),
    StageSpec(name="open_port", label="opening the serial port", status="Opening the serial port...",
              deadline_setting="console_connect_timeout", timeout_code=ErrorCode.VNC_CONNECTION_FAILED,
              timeout_detail="no serial port within {limit:g} s"),
    StageSpec(name="stream", label="the serial console", status="Serial console connected", deadline_setting=None),
))


class SerialLike(StageMachine):
    """A second kind in a dozen lines: its stage list, and what each result leads to."""

    @property
    def vm_name(self) -> str:
        return "web"

    def start(self) -> list[Action]:
        return self._begin() + self._await(LookUpVm("web"))

    def _advance(self, pending: Effect | None, result: Result) -> list[Action]:
        if isinstance(result, VmFound):
            return self._enter("open_port") + self._await(Pause(0))
        if isinstance(result, Paused) and self.stage == "open_port":
            return self._enter("stream") + self._await(RunProxy())
        raise IllegalTransition(type(result).__name__)


def test_the_generic_machine_runs_any_stage_list() -> None:
    clock = FakeClock()
    m = SerialLike(stages=SERIAL_LIKE, settings=SETTINGS, clock=clock)
    actions = m.start() + m.receive(VmFound(RUNNING)) + m.receive(Paused())
    assert [f["message"] for f in texts(actions)] == [
        "Connected, checking VM status...", "Opening the serial port...", "Serial console connected"]
    assert m.in_last_stage and m.remaining() is None
    assert m.receive(VmEnded()) == [Close(4102, "VM_STOPPED")]  # the last stage: close frame only


def test_the_generic_machine_times_out_with_the_lists_codes_and_details() -> None:
    clock = FakeClock()
    m = SerialLike(stages=SERIAL_LIKE, settings=SETTINGS, clock=clock)
    m.start()
    m.receive(VmFound(RUNNING))
    assert m.remaining() == pytest.approx(4)  # console_connect_timeout in SETTINGS
    (frame,) = texts(m.receive(TimedOut()))
    assert (frame["code"], frame["stage"], frame["details"]) == (
        "VNC_CONNECTION_FAILED", "open_port", "no serial port within 4 s")
