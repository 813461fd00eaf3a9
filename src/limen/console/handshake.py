"""The VNC console as a pure state machine: effects out, results in.

No sockets, no libvirt, no clock of its own (one is injected). The driver (``driver.py``) calls
:meth:`VncHandshake.start`, then carries out what it gets back, in order: frames to send
(:class:`SendText`, :class:`SendBinary`, :class:`Close`), commands it does at once (:class:`OpenWatch`),
and at most one :class:`Effect` last, whose outcome it reports with :meth:`VncHandshake.receive` as a
:class:`Result`. The driver decides nothing; every decision is here:

* which stage comes next, and when the session ends and with which error (VNC_NOT_CONFIGURED, a stopped
  VM with auto-start off, someone else starting the VM first, no VNC port yet, the VNC server closing
  because the VM stopped or not);
* which ending counts: the first one the machine receives; any later one changes nothing. The driver
  feeds the endings of its side tasks (the VM's lifecycle watch, the client leaving, the idle watch, a
  shutdown or revocation) as they happen, so there is no tie for the driver to break;
* what an effect may wait: :meth:`StageMachine.remaining` (the stage's deadline), and what a
  :class:`TimedOut` becomes (the stage's codes and details from :mod:`limen.console.stage_table`,
  the libvirt one when the pending effect was a libvirt call), and what a failed effect becomes (as it is,
  or, for a generic libvirt refusal, the stage's ``failure_code`` when its kind declares one).

Rules the generic part (:class:`StageMachine`) keeps for any console kind:

* Stages run in the order of their :class:`~limen.console.stage_table.StageList`; a result the current
  state does not expect is an :class:`IllegalTransition` (a bug in the driver), never a silent branch.
* Entering a stage starts its deadline and sends its status frame (when it has a text), and only then.
* An error ends the session: an error frame (before the last stage, or in it when the client asked for
  notices), then a close with the code's close code and the code's name as the reason. SLOW_CLIENT
  sends no frame (the client does not read), only the close. A client that left gets nothing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final

from limen import end_details
from limen.console import messages
from limen.console.rfb import describe, is_banner
from limen.console.stage_table import LIBVIRT_TIMEOUT_DETAIL, VNC_STAGES, StageList, VncStage
from limen.errors import ErrorCode, HypervisorUnavailable, LimenError, NothingListens
from limen.hypervisor.models import Vm
from limen.settings import Settings

# How often the get_port stage asks libvirt again while no port is assigned.
PORT_POLL_INTERVAL: Final = 0.1
# A refused connection to a VM's VNC port is tried again this often during this share of the connect stage's
# deadline (a QEMU still starting), then said (see VncHandshake._recovers).
CONNECT_RETRY_PAUSE: Final = 0.05
CONNECT_RETRY_SHARE: Final = 0.5
# A timeout is libvirt's (the stage's libvirt_timeout_code) when the libvirt call pending at the deadline had
# run for at least this share of the stage's limit. A poll's short call that the deadline happens to meet
# (the port poll calls libvirt every PORT_POLL_INTERVAL; under load each call takes longer) is not libvirt
# hanging: the stage's own timeout says what did not happen.
LIBVIRT_HUNG_SHARE: Final = 0.5
# After the VNC server closed: how long to wait for the VM to be reported stopped.
VNC_EOF_GRACE: Final = 3.0


# -- what the machine asks the driver to do -------------------------------------------------------


class Action:
    """Base of everything the machine asks the driver to do."""


@dataclass(frozen=True, slots=True)
class SendText(Action):
    text: str


@dataclass(frozen=True, slots=True)
class SendBinary(Action):
    data: bytes


@dataclass(frozen=True, slots=True)
class Close(Action):
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class OpenWatch(Action):
    """Start watching the VM's lifecycle: from now on an ending event means it stopped under us
    (report it with :class:`VmEnded`)."""

    uuid: str


class Effect(Action):
    """Work whose outcome the machine waits for. Always the last action of a list; at most one at a time.

    The driver bounds it by :meth:`StageMachine.remaining` (no bound when None) and reports
    :class:`TimedOut` when that passes. ``libvirt_call``: the work is a libvirt call, so a timeout means
    libvirt hung (the stage's ``libvirt_timeout_code``)."""

    libvirt_call: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class LookUpVm(Effect):
    """Read the VM from libvirt now (state, VNC endpoint, owner) → :class:`VmFound`.
    ``admit``: the first look-up, which goes through the console's admission (who is asking)."""

    libvirt_call: ClassVar[bool] = True
    ident: str
    admit: bool = False


@dataclass(frozen=True, slots=True)
class StartVm(Effect):
    """Start the VM → :class:`VmStarted` (VM_ALREADY_RUNNING comes back as :class:`EffectFailed`)."""

    uuid: str


@dataclass(frozen=True, slots=True)
class Pause(Effect):
    """Wait this long → :class:`Paused`."""

    seconds: float


@dataclass(frozen=True, slots=True)
class ConnectVnc(Effect):
    """Open the TCP connection to the VM's VNC server → :class:`VncConnected`."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class ReadBanner(Effect):
    """Read exactly the RFB banner from the connection → :class:`BannerRead`."""

    where: str


@dataclass(frozen=True, slots=True)
class RunProxy(Effect):
    """Proxy both ways until one side ends → :class:`VncClosed` (or an ending: client left, a failure)."""


@dataclass(frozen=True, slots=True)
class ExplainVncClose(Effect):
    """The VNC server closed: wait up to ``grace`` seconds for the VM to be reported stopped (lifecycle
    event, or libvirt saying it is inactive) → :class:`VncCloseExplained`."""

    uuid: str | None
    grace: float = VNC_EOF_GRACE


# -- what the driver reports ------------------------------------------------------------------------


class Result:
    """Base of everything the driver tells the machine."""


@dataclass(frozen=True, slots=True)
class VmFound(Result):
    vm: Vm


@dataclass(frozen=True, slots=True)
class VmStarted(Result):
    vm: Vm


@dataclass(frozen=True, slots=True)
class Paused(Result):
    pass


@dataclass(frozen=True, slots=True)
class VncConnected(Result):
    pass


@dataclass(frozen=True, slots=True)
class BannerRead(Result):
    banner: bytes


@dataclass(frozen=True, slots=True)
class VncClosed(Result):
    """The VNC server closed its side during the proxy stage."""


@dataclass(frozen=True, slots=True)
class VncCloseExplained(Result):
    vm_stopped: bool
    how: str = "stopped"  # the lifecycle event that ended the VM, when one did (``reverted``, ``crashed``, ...)


@dataclass(frozen=True, slots=True)
class EffectFailed(Result):
    """The pending effect (or a write to the client) failed with this error."""

    error: LimenError


@dataclass(frozen=True, slots=True)
class TimedOut(Result):
    """The stage's deadline passed while the pending effect ran."""


@dataclass(frozen=True, slots=True)
class ClientLeft(Result):
    """The browser closed the WebSocket (or the connection dropped); ``broke_protocol``: the server failed the
    connection because the browser broke the WebSocket protocol (CLIENT_PROTOCOL_ERROR), the session's end."""

    broke_protocol: LimenError | None = None


@dataclass(frozen=True, slots=True)
class VmEnded(Result):
    """The lifecycle watch saw the VM end; ``how``: the event (``stopped``, ``crashed``, ...)."""

    how: str = "stopped"


@dataclass(frozen=True, slots=True)
class EndRequested(Result):
    """Something outside ends the session (server shutdown, revocation, an administrator, idle timeout)."""

    error: LimenError


# Results that end the session from any live stage.
ENDINGS: Final[tuple[type[Result], ...]] = (TimedOut, ClientLeft, VmEnded, EndRequested)


def vm_ended_error(vm_name: str, how: str, closed: str | None = None) -> LimenError:
    """How a console ends when its VM does: with the code :data:`limen.end_details.VM_ENDS` gives ``how`` (a
    revert VM_REVERTED, a migration VM_MIGRATED, any other end VM_STOPPED) and its words. ``closed``: what
    closed first, None when the lifecycle event told it (:func:`limen.end_details.vm_ended`)."""
    return LimenError(end_details.VmEnd.of(how).code, end_details.vm_ended(vm_name, how, closed))


class IllegalTransition(RuntimeError):
    """The driver reported a result the current state does not expect: a bug, not a user error."""


# -- the generic part: stages, deadlines, frames, endings ------------------------------------------


class StageMachine(ABC):
    """The part of a console handshake common to every kind: one :class:`StageList` drives it.

    ``stage`` is None until :meth:`start`, then one of the list's names, then ``ended``."""

    ENDED: ClassVar[str] = "ended"
    vm: Vm | None = None  # the session's VM, once a kind has looked it up

    def __init__(self, *, stages: StageList, settings: Settings, clock: Callable[[], float],
                 notices: bool = False) -> None:
        self.stages = stages
        self.deadlines = stages.deadlines(settings)
        self.notices = notices
        self._clock = clock
        self._last_stage = stages.stages[-1].name
        self.stage: str | None = None
        self.started_at = 0.0
        self.entered_at = 0.0
        self.pending: Effect | None = None  # the effect whose result the machine waits for
        self.pending_since = 0.0  # when it was asked for
        self.error: LimenError | None = None  # why the session ended, when it ended with an error
        self.ended_in: str | None = None  # the stage the session was in when it ended
        self.history: list[tuple[str, int]] = []  # (stage, elapsed_ms at entry)
        self.target: str | None = None  # host:port of the peer, once known (for details)

    # -- time ---------------------------------------------------------------------------------------

    def elapsed_ms(self) -> int:
        return round((self._clock() - self.started_at) * 1000)

    @property
    def deadline(self) -> float | None:
        """Clock time at which the current stage times out; None when it has no deadline."""
        if self.stage is None or self.stage == self.ENDED:
            return None
        limit = self.deadlines.get(self.stage)
        return None if limit is None else self.entered_at + limit

    def remaining(self) -> float | None:
        """Seconds left in the current stage (never negative); None when it has no deadline."""
        deadline = self.deadline
        return None if deadline is None else max(0.0, deadline - self._clock())

    @property
    def live(self) -> bool:
        return self.stage is not None and self.stage != self.ENDED

    @property
    def in_last_stage(self) -> bool:
        return self.stage == self._last_stage

    # -- the driver's calls --------------------------------------------------------------------------

    def receive(self, result: Result) -> list[Action]:
        """The outcome of the pending effect, or an ending from outside. After the end: nothing."""
        if self.stage is None:
            raise IllegalTransition(f"{type(result).__name__} before start()")
        if self.stage == self.ENDED:
            return []  # a second ending (e.g. the client left while the error was sent) changes nothing
        if isinstance(result, ENDINGS):
            return self._end_by(result)
        if isinstance(result, EffectFailed) and not self._recovers(result.error):
            return self.end(self._stage_failure(result.error))
        pending, self.pending = self.pending, None
        if pending is None and not isinstance(result, EffectFailed):
            raise IllegalTransition(f"{type(result).__name__} with no effect pending (stage {self.stage})")
        return self._advance(pending, result)

    def notice(self, code: str, message: str, values: Mapping[str, float] | None = None) -> list[Action]:
        """A notice for the user during the last stage; nothing unless the client asked for notices."""
        if not self.in_last_stage or not self.notices or self.stage is None:
            return []
        return [SendText(messages.notice_frame(code, message, stage=self.stage, elapsed_ms=self.elapsed_ms(),
                                               values=values))]

    # -- for subclasses ---------------------------------------------------------------------------------

    @abstractmethod
    def start(self) -> list[Action]:
        """The first status frame and the first effect; call once, right after the WebSocket upgrade."""

    @abstractmethod
    def _advance(self, pending: Effect | None, result: Result) -> list[Action]:
        """What a result of the pending effect (or of a side watch) leads to, in this kind's stages."""

    def _recovers(self, error: LimenError) -> bool:
        """Whether a failed effect is a step of the handshake rather than its end (default: never)."""
        return False

    def _stage_failure(self, error: LimenError) -> LimenError:
        """A failure in the current stage as the session ends with it: a generic refusal takes the stage's
        ``failure_code`` (when its kind declares one); anything else stays as it is."""
        assert self.stage is not None
        code = self.stages[self.stage].failure(error.code)
        return error if code is error.code else LimenError(code, error.details)

    def _begin(self) -> list[Action]:
        if self.stage is not None:
            raise IllegalTransition("start() called twice")
        self.started_at = self._clock()
        return self._enter(self.stages.stages[0].name)

    def _enter(self, stage: str, **values: object) -> list[Action]:
        """Enters ``stage``: its deadline starts, its status frame (when it has a text) goes out."""
        stage = str(stage)  # a plain name, whatever enum the kind names its stages with
        self.stage = stage
        self.entered_at = self._clock()
        elapsed = self.elapsed_ms()
        self.history.append((stage, elapsed))
        text = self.stages[stage].status_text(**values)
        if text is None:
            return []
        return [SendText(messages.status_frame(text, stage=stage, elapsed_ms=elapsed))]

    def _await(self, effect: Effect) -> list[Action]:
        self.pending, self.pending_since = effect, self._clock()
        return [effect]

    def _timeout_error(self, stage: str) -> LimenError:
        spec = self.stages[stage]
        limit = self.deadlines.get(stage, 0.0)
        in_libvirt = (self.pending is not None and self.pending.libvirt_call
                      and self._clock() - self.pending_since >= LIBVIRT_HUNG_SHARE * limit)
        code = spec.libvirt_timeout_code if in_libvirt else spec.timeout_code
        template = LIBVIRT_TIMEOUT_DETAIL if in_libvirt else spec.timeout_detail
        if code is None:  # a stage without a deadline cannot time out: the driver got it wrong
            return LimenError(ErrorCode.INTERNAL_ERROR, f"stage {stage} has no deadline")
        return LimenError(code, template.format(limit=limit, stage=stage, target=self.target))

    def _end_by(self, result: Result) -> list[Action]:
        assert self.stage is not None
        if isinstance(result, ClientLeft):
            return self._finish(result.broke_protocol)  # no frame, no close: the connection is gone
        if isinstance(result, TimedOut):
            return self.end(self._timeout_error(self.stage))
        if isinstance(result, EndRequested):
            return self.end(result.error)
        assert isinstance(result, VmEnded)
        return self.end(self._vm_ended_error(result))

    @property
    @abstractmethod
    def vm_name(self) -> str:
        """The VM's name once looked up, else what the client asked for."""

    def _vm_ended_error(self, result: VmEnded) -> LimenError:
        return vm_ended_error(self.vm_name, result.how)

    def end(self, error: LimenError) -> list[Action]:
        """Ends the session with ``error``: its frame (when the client may still get one), then the close."""
        error = self._naming_the_host(error)
        stage = self.stage
        assert stage is not None and stage != self.ENDED
        actions: list[Action] = []
        may_send_text = stage != self._last_stage or self.notices
        if may_send_text and error.code is not ErrorCode.SLOW_CLIENT:
            actions.append(SendText(messages.error_frame(error, stage=stage)))
        actions.append(Close(error.code.close_code, error.code.name))
        return self._finish(error) + actions

    def _naming_the_host(self, error: LimenError) -> LimenError:
        """HYPERVISOR_UNAVAILABLE with the VM's host as its ``host`` once the VM is known, whatever made it (a
        stage's deadline, a refusal taking the stage's failure code): the page names the host from the frame."""
        host = self.vm.host if self.vm is not None else None
        if error.code is not ErrorCode.HYPERVISOR_UNAVAILABLE or host is None or getattr(error, "host", None):
            return error
        return HypervisorUnavailable(error.details, host=host)

    def _finish(self, error: LimenError | None) -> list[Action]:
        self.ended_in = self.stage
        self.stage = self.ENDED
        self.pending = None
        self.error = error
        return []


# -- the VNC console -----------------------------------------------------------------------------------


class VncHandshake(StageMachine):
    """One VNC console session: check_vm → (start_vm) → get_port → connect → read_banner → proxy.

    Call :meth:`start` once, right after the WebSocket upgrade."""

    def __init__(self, *, ident: str, settings: Settings, clock: Callable[[], float], notices: bool = False,
                 auto_start: bool | None = None) -> None:
        super().__init__(stages=VNC_STAGES, settings=settings, clock=clock, notices=notices)
        self.ident = ident
        self.auto_start = settings.console_auto_start if auto_start is None else auto_start
        self.vm: Vm | None = None
        self.host: str | None = None
        self.port: int | None = None
        self.banner: bytes | None = None
        self._watching = False

    def start(self) -> list[Action]:
        """The first status frame, then the first look-up (through the admission)."""
        return self._begin() + self._await(LookUpVm(self.ident, admit=True))

    @property
    def vm_name(self) -> str:
        return self.vm.name if self.vm is not None else self.ident

    def _recovers(self, error: LimenError) -> bool:
        # Someone else started the VM between our look-up and our start: fine, read it again.
        if (self.stage == VncStage.START_VM and isinstance(self.pending, StartVm)
                and error.code is ErrorCode.VM_ALREADY_RUNNING):
            return True
        # A VM found running may still be starting (another console started it a moment ago): its port is in
        # the live XML before its QEMU listens, and refused the third of three consoles opened at once. Tried
        # again during the first part of the stage's deadline; a port that still refuses then is said so.
        return (self.stage == VncStage.CONNECT and isinstance(self.pending, ConnectVnc)
                and isinstance(error, NothingListens)
                and self._clock() - self.entered_at + CONNECT_RETRY_PAUSE
                <= CONNECT_RETRY_SHARE * self.deadlines.get(VncStage.CONNECT, 0.0))

    def _advance(self, pending: Effect | None, result: Result) -> list[Action]:
        stage = self.stage
        if isinstance(result, EffectFailed):  # only the recoverable ones get here
            if isinstance(pending, ConnectVnc):
                return self._await(Pause(CONNECT_RETRY_PAUSE))
            assert isinstance(pending, StartVm)
            return self._await(LookUpVm(pending.uuid))
        if ((isinstance(result, VmFound) and isinstance(pending, LookUpVm))
                or (isinstance(result, VmStarted) and isinstance(pending, StartVm))):
            self.vm = result.vm
            if stage == VncStage.CHECK_VM:
                return self._checked(result.vm)
            if stage in (VncStage.START_VM, VncStage.GET_PORT):
                return self._port_of(result.vm)
        if isinstance(result, Paused) and isinstance(pending, Pause) and stage == VncStage.GET_PORT:
            assert self.vm is not None
            return self._await(LookUpVm(self.vm.uuid))
        if isinstance(result, Paused) and isinstance(pending, Pause) and stage == VncStage.CONNECT:
            assert self.host is not None and self.port is not None
            return self._await(ConnectVnc(self.host, self.port))
        if isinstance(result, VncConnected) and isinstance(pending, ConnectVnc):
            return self._enter(VncStage.READ_BANNER) + self._await(ReadBanner(self.target or ""))
        if isinstance(result, BannerRead) and isinstance(pending, ReadBanner):
            if not is_banner(result.banner):
                raise IllegalTransition(f"BannerRead with a non-banner {describe(result.banner)}")
            self.banner = result.banner
            # The last status frame, then the kept banner as the first binary frame.
            return [*self._enter(VncStage.PROXY), SendBinary(result.banner), *self._await(RunProxy())]
        if isinstance(result, VncClosed) and isinstance(pending, RunProxy):
            return self._await(ExplainVncClose(self.vm.uuid if self.vm is not None else None))
        if isinstance(result, VncCloseExplained) and isinstance(pending, ExplainVncClose):
            if result.vm_stopped:
                return self.end(vm_ended_error(self.vm_name, result.how, end_details.VNC_SERVER_CLOSED))
            return self.end(LimenError(ErrorCode.VNC_CONNECTION_FAILED, end_details.VNC_CONNECTION_CLOSED))
        raise IllegalTransition(f"{type(result).__name__} in stage {stage} (pending {type(pending).__name__})")

    def _checked(self, vm: Vm) -> list[Action]:
        if vm.vnc is None:
            return self._not_configured(vm)
        if vm.is_active:
            return self._enter_get_port(vm)
        if not self.auto_start:
            return self.end(LimenError(ErrorCode.VM_NOT_RUNNING,
                                       end_details.vm_not_running(vm.name)))
        return self._enter(VncStage.START_VM) + self._await(StartVm(vm.uuid))

    def _enter_get_port(self, vm: Vm) -> list[Action]:
        # The VM runs now, so from here on a lifecycle ending means it stopped under us.
        actions = self._enter(VncStage.GET_PORT)
        if not self._watching:
            self._watching = True
            actions.append(OpenWatch(vm.uuid))
        return actions + self._port_of(vm)

    def _port_of(self, vm: Vm) -> list[Action]:
        if self.stage == VncStage.START_VM:
            return self._enter_get_port(vm)
        if vm.vnc is None:
            return self._not_configured(vm)
        if vm.vnc.port is None:  # autoport not assigned yet: ask again shortly, same stage, same deadline
            return self._await(Pause(PORT_POLL_INTERVAL))
        self.host, self.port = vm.vnc.host, vm.vnc.port
        self.target = f"{vm.vnc.host}:{vm.vnc.port}"
        return self._enter(VncStage.CONNECT, port=vm.vnc.port) + self._await(ConnectVnc(vm.vnc.host, vm.vnc.port))

    def _not_configured(self, vm: Vm) -> list[Action]:
        return self.end(LimenError(ErrorCode.VNC_NOT_CONFIGURED, f"VM {vm.name!r} has no VNC graphics device"))

