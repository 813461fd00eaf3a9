"""The console handshake as a pure state machine: stages, transitions, deadlines and frames.

No sockets, no libvirt, no clock of its own (one is injected). The I/O adapter (``session.py``) does
the work of each stage, tells the machine what happened with an :class:`Event`, and carries out the
:class:`Action` list it gets back, in order. Rules this module keeps:

* Stages run in the order of :data:`TRANSITIONS`; an event a stage does not list is a
  :class:`IllegalTransition` (a bug in the adapter), never a silent branch.
* Entering a stage starts its deadline (:class:`StageTimeouts`); :meth:`ConsoleHandshake.remaining`
  is what the adapter may wait, and :class:`TimedOut` turns the stage into its error (:data:`TIMEOUT_ERRORS`).
* Every stage with a text in :data:`STATUS_TEXTS` sends one status frame on entry, and only then.
* The kept RFB banner is the first binary frame, sent right after the last status frame.
* An error ends the session: an error frame (before the proxy stage, or in it when the client asked
  for notices), then a close with the code's close code and the code's name as the reason.
  SLOW_CLIENT sends no frame (the client does not read), only the close. A client that left gets nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from limen.console import messages
from limen.console.rfb import describe, is_banner
from limen.errors import ErrorCode, LimenError
from limen.settings import Settings


class Stage(StrEnum):
    CHECK_VM = "check_vm"
    START_VM = "start_vm"
    GET_PORT = "get_port"
    CONNECT = "connect"  # TCP connect to the VM's VNC server
    READ_BANNER = "read_banner"  # wait for its RFB banner; no status frame of its own
    PROXY = "proxy"
    ENDED = "ended"


# -- events: what the adapter reports -------------------------------------------------------------


class Event:
    """Base of everything the adapter tells the machine."""


@dataclass(frozen=True, slots=True)
class VmIsRunning(Event):
    """The VM is active (running, paused, shutting down): its VNC server should be up."""


@dataclass(frozen=True, slots=True)
class VmIsStopped(Event):
    """The VM is not active. Starts it when auto-start is on, else ends with VM_NOT_RUNNING."""

    name: str = ""


@dataclass(frozen=True, slots=True)
class VmStarted(Event):
    pass


@dataclass(frozen=True, slots=True)
class PortPending(Event):
    """libvirt reports VNC graphics but no port yet (autoport not assigned): keep waiting."""


@dataclass(frozen=True, slots=True)
class PortAssigned(Event):
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class VncConnected(Event):
    pass


@dataclass(frozen=True, slots=True)
class BannerReceived(Event):
    banner: bytes


@dataclass(frozen=True, slots=True)
class TimedOut(Event):
    """The stage's deadline passed. ``in_libvirt``: a libvirt call was still running then."""

    in_libvirt: bool = False


@dataclass(frozen=True, slots=True)
class Failed(Event):
    error: LimenError


@dataclass(frozen=True, slots=True)
class ClientLeft(Event):
    """The browser closed the WebSocket (or the connection dropped)."""


# -- actions: what the adapter must do -------------------------------------------------------------


class Action:
    """Base of everything the machine asks the adapter to do."""


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


# -- the tables -----------------------------------------------------------------------------------

# Stage → event type → next stage. Events that end a session from any live stage are in ENDING_EVENTS.
TRANSITIONS: Final[Mapping[Stage, Mapping[type[Event], Stage]]] = {
    Stage.CHECK_VM: {VmIsRunning: Stage.GET_PORT, VmIsStopped: Stage.START_VM},
    Stage.START_VM: {VmStarted: Stage.GET_PORT},
    Stage.GET_PORT: {PortPending: Stage.GET_PORT, PortAssigned: Stage.CONNECT},
    Stage.CONNECT: {VncConnected: Stage.READ_BANNER},
    Stage.READ_BANNER: {BannerReceived: Stage.PROXY},
    Stage.PROXY: {},
    Stage.ENDED: {},
}
ENDING_EVENTS: Final[frozenset[type[Event]]] = frozenset({Failed, TimedOut, ClientLeft})

# The status frame sent on entering a stage (CONNECT's text takes the port).
STATUS_TEXTS: Final[Mapping[Stage, str]] = {
    Stage.CHECK_VM: messages.STATUS_CHECKING_VM,
    Stage.START_VM: messages.STATUS_STARTING_VM,
    Stage.GET_PORT: messages.STATUS_GETTING_PORT,
    Stage.CONNECT: messages.STATUS_CONNECTING,
    Stage.PROXY: messages.STATUS_ESTABLISHED,
}

# The error a stage ends with when its deadline passes; (error when a libvirt call was the one hanging).
TIMEOUT_ERRORS: Final[Mapping[Stage, tuple[ErrorCode, ErrorCode]]] = {
    Stage.CHECK_VM: (ErrorCode.HYPERVISOR_UNAVAILABLE, ErrorCode.HYPERVISOR_UNAVAILABLE),
    Stage.START_VM: (ErrorCode.VM_START_FAILED, ErrorCode.HYPERVISOR_UNAVAILABLE),
    Stage.GET_PORT: (ErrorCode.VNC_PORT_ERROR, ErrorCode.HYPERVISOR_UNAVAILABLE),
    Stage.CONNECT: (ErrorCode.VNC_CONNECTION_FAILED, ErrorCode.VNC_CONNECTION_FAILED),
    Stage.READ_BANNER: (ErrorCode.VNC_HANDSHAKE_FAILED, ErrorCode.VNC_HANDSHAKE_FAILED),
}


@dataclass(frozen=True, slots=True)
class StageTimeouts:
    """Seconds each stage may take. The proxy stage has no deadline (the idle timeout is separate)."""

    check_vm: float = 3.0
    start_vm: float = 8.0
    get_port: float = 3.0
    connect: float = 3.0
    read_banner: float = 3.0

    @classmethod
    def from_settings(cls, settings: Settings) -> StageTimeouts:
        return cls(
            check_vm=settings.console_check_vm_timeout,
            start_vm=settings.console_start_vm_timeout,
            get_port=settings.console_get_port_timeout,
            connect=settings.console_connect_timeout,
            read_banner=settings.console_banner_timeout,
        )

    def of(self, stage: Stage) -> float | None:
        return {
            Stage.CHECK_VM: self.check_vm,
            Stage.START_VM: self.start_vm,
            Stage.GET_PORT: self.get_port,
            Stage.CONNECT: self.connect,
            Stage.READ_BANNER: self.read_banner,
        }.get(stage)

    @property
    def worst_case(self) -> float:
        return self.check_vm + self.start_vm + self.get_port + self.connect + self.read_banner


class IllegalTransition(RuntimeError):
    """The adapter reported an event the current stage does not accept: a bug, not a user error."""


class ConsoleHandshake:
    """One console session's stages. Call :meth:`start` once, right after the WebSocket upgrade."""

    def __init__(
        self,
        *,
        timeouts: StageTimeouts,
        auto_start: bool,
        clock: Callable[[], float],
        notices: bool = False,
    ) -> None:
        self.timeouts = timeouts
        self.auto_start = auto_start
        self.notices = notices
        self._clock = clock
        self.stage: Stage | None = None  # None until start()
        self.started_at = 0.0
        self.entered_at = 0.0
        self.host: str | None = None
        self.port: int | None = None
        self.banner: bytes | None = None
        self.error: LimenError | None = None  # why the session ended, when it ended with an error
        self.ended_in: Stage | None = None  # the stage the session was in when it ended
        self.history: list[tuple[Stage, int]] = []  # (stage, elapsed_ms at entry)

    # -- time ---------------------------------------------------------------------------------------

    def elapsed_ms(self) -> int:
        return round((self._clock() - self.started_at) * 1000)

    @property
    def deadline(self) -> float | None:
        """Clock time at which the current stage times out; None when it has no deadline."""
        if self.stage is None:
            return None
        limit = self.timeouts.of(self.stage)
        return None if limit is None else self.entered_at + limit

    def remaining(self) -> float | None:
        """Seconds left in the current stage (never negative); None when it has no deadline."""
        deadline = self.deadline
        return None if deadline is None else max(0.0, deadline - self._clock())

    @property
    def live(self) -> bool:
        return self.stage is not None and self.stage is not Stage.ENDED

    # -- events ---------------------------------------------------------------------------------------

    def start(self) -> list[Action]:
        if self.stage is not None:
            raise IllegalTransition("start() called twice")
        self.started_at = self._clock()
        return self._enter(Stage.CHECK_VM)

    def handle(self, event: Event) -> list[Action]:
        stage = self.stage
        if stage is None:
            raise IllegalTransition(f"{type(event).__name__} before start()")
        if type(event) in ENDING_EVENTS:
            if stage is Stage.ENDED:
                return []  # a second ending (e.g. the client left while the error was sent) changes nothing
            return self._end(event)
        target = TRANSITIONS[stage].get(type(event))
        if target is None:
            raise IllegalTransition(f"{type(event).__name__} in stage {stage.value}")
        if isinstance(event, VmIsStopped) and not self.auto_start:
            name = f"VM {event.name!r}" if event.name else "the VM"
            details = f"{name} is not running and auto-start is off"
            return self._end(Failed(LimenError(ErrorCode.VM_NOT_RUNNING, details)))
        if isinstance(event, PortAssigned):
            self.host, self.port = event.host, event.port
        if isinstance(event, BannerReceived):
            if not is_banner(event.banner):
                raise IllegalTransition(f"BannerReceived with a non-banner {describe(event.banner)}")
            self.banner = event.banner
        if target is stage:
            return []  # waiting on (PortPending): same stage, same deadline, no new frame
        return self._enter(target)

    def notice(self, code: str, message: str) -> list[Action]:
        """A notice for the user during the proxy stage; nothing unless the client asked for notices."""
        if self.stage is not Stage.PROXY or not self.notices:
            return []
        return [SendText(messages.notice_frame(code, message, stage=Stage.PROXY.value,
                                               elapsed_ms=self.elapsed_ms()))]

    # -- internals ------------------------------------------------------------------------------------

    def _enter(self, stage: Stage) -> list[Action]:
        self.stage = stage
        self.entered_at = self._clock()
        elapsed = self.elapsed_ms()
        self.history.append((stage, elapsed))
        text = STATUS_TEXTS.get(stage)
        if text is None:
            return []
        if stage is Stage.CONNECT:
            assert self.port is not None
            text = messages.connecting_text(self.port)
        actions: list[Action] = [SendText(messages.status_frame(text, stage=stage.value, elapsed_ms=elapsed))]
        if stage is Stage.PROXY:
            assert self.banner is not None
            actions.append(SendBinary(self.banner))
        return actions

    def _timeout_error(self, stage: Stage, event: TimedOut) -> LimenError:
        plain, in_libvirt = TIMEOUT_ERRORS.get(stage, (ErrorCode.INTERNAL_ERROR, ErrorCode.INTERNAL_ERROR))
        code = in_libvirt if event.in_libvirt else plain
        limit = self.timeouts.of(stage) or 0.0
        target = f"{self.host}:{self.port}"
        if event.in_libvirt or stage is Stage.CHECK_VM:
            details = f"libvirt did not answer within {limit:g} s (stage {stage.value})"
        elif stage is Stage.START_VM:
            details = f"the VM was not running within {limit:g} s"
        elif stage is Stage.GET_PORT:
            details = f"libvirt assigned no VNC port within {limit:g} s"
        elif stage is Stage.CONNECT:
            details = f"no TCP connection to {target} within {limit:g} s"
        elif stage is Stage.READ_BANNER:
            details = f"no RFB banner from {target} within {limit:g} s"
        else:
            details = f"stage {stage.value} has no deadline"
        return LimenError(code, details)

    def _end(self, event: Event) -> list[Action]:
        stage = self.stage
        assert stage is not None and stage is not Stage.ENDED
        self.ended_in = stage
        self.stage = Stage.ENDED
        if isinstance(event, ClientLeft):
            return []
        if isinstance(event, TimedOut):
            error = self._timeout_error(stage, event)
        else:
            assert isinstance(event, Failed)
            error = event.error
        self.error = error
        actions: list[Action] = []
        may_send_text = stage is not Stage.PROXY or self.notices
        if may_send_text and error.code is not ErrorCode.SLOW_CLIENT:
            actions.append(SendText(messages.error_frame(error, stage=stage.value)))
        actions.append(Close(error.code.close_code, error.code.name))
        return actions
