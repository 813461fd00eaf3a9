"""The serial console as a pure state machine: effects out, results in, on the generic :class:`StageMachine`.

Its stages, texts, deadlines and codes are :data:`~limen.console.stage_table.SERIAL_STAGES`; this module adds
only its effects and results and what each result leads to. The driver (``serial_session.py``) performs the
effects and reports their results; every decision is here:

* check_vm: look the VM up (through the admission), then whether it has a serial device at all
  (SERIAL_NOT_CONFIGURED before any start: a VM without one stays off), then whether it runs (VM_NOT_RUNNING
  when auto-start is off);
* start_vm: someone else starting it first (VM_ALREADY_RUNNING) is fine: read it again;
* open_serial: one session per VM's serial port. When another limen session holds it, a second one is
  refused with SERIAL_BUSY, or with ``force`` ends that one (it gets SESSION_TAKEN_OVER) and waits until it
  let go; then the port opens, with libvirt's force flag when asked (which also cuts off a client outside
  limen, e.g. ``virsh console``; without it libvirt's own refusal is SERIAL_BUSY too);
* proxy: when the stream ends, why: limen released it for a live migration of the VM, which moved it
  (VM_MIGRATED: the page opens it again there) or failed (SERIAL_PORT_ERROR); else the VM stopped
  (VM_STOPPED), libvirt aborted it while the VM runs (another client forced the port: SESSION_TAKEN_OVER),
  or neither (SERIAL_PORT_ERROR).

Unlike the VNC console's, the serial page reads text frames in every stage, so an error in the proxy
stage sends its frame too (the machine runs with ``notices``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final

from limen import end_details
from limen.console.handshake import (
    Action,
    Effect,
    EffectFailed,
    IllegalTransition,
    LookUpVm,
    OpenWatch,
    Result,
    StageMachine,
    StartVm,
    VmFound,
    VmStarted,
    vm_ended_error,
)
from limen.console.stage_table import SERIAL_STAGES, SerialStage
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import LifecycleKind, StreamRelease, Vm
from limen.settings import Settings

# After the serial stream ended: how long to wait for the VM to be reported stopped.
STREAM_END_GRACE: Final = 3.0


# -- what the machine asks the driver to do -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckSerialDevice(Effect):
    """Whether the VM declares a device libvirt's console stream can open → :class:`SerialDeviceChecked`."""

    libvirt_call: ClassVar[bool] = True
    uuid: str


@dataclass(frozen=True, slots=True)
class FindPortHolder(Effect):
    """Whether another limen session holds the VM's serial port → :class:`PortHolder`."""

    uuid: str


@dataclass(frozen=True, slots=True)
class TakeOverPort(Effect):
    """End the session holding the VM's serial port with SESSION_TAKEN_OVER and wait until it let go
    → :class:`PortTakenOver`."""

    uuid: str


@dataclass(frozen=True, slots=True)
class OpenSerial(Effect):
    """Open the VM's console stream (``virDomainOpenConsole``; ``force``: libvirt's force flag) and hold the
    port for this session → :class:`SerialOpened` (SERIAL_BUSY comes back as :class:`EffectFailed`)."""

    libvirt_call: ClassVar[bool] = True
    uuid: str
    force: bool


@dataclass(frozen=True, slots=True)
class RunSerialProxy(Effect):
    """Move bytes both ways until the stream ends → :class:`SerialStreamEnded` (or an ending: the client
    left, a failure, the VM's lifecycle event)."""


@dataclass(frozen=True, slots=True)
class ExplainStreamEnd(Effect):
    """The stream ended: wait up to ``grace`` seconds for the VM to be reported stopped (lifecycle event, or
    libvirt saying it is inactive) → :class:`StreamEndExplained`."""

    uuid: str
    grace: float = STREAM_END_GRACE


# -- what the driver reports ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SerialDeviceChecked(Result):
    present: bool


@dataclass(frozen=True, slots=True)
class PortHolder(Result):
    held_by_another: bool


@dataclass(frozen=True, slots=True)
class PortTakenOver(Result):
    pass


@dataclass(frozen=True, slots=True)
class SerialOpened(Result):
    pass


@dataclass(frozen=True, slots=True)
class SerialStreamEnded(Result):
    """The stream gave its end; ``ended_by``: libvirt's words when it aborted it (None: a plain end of file);
    ``released_for``: what limen released it for, and how that went (None: limen did not)."""

    ended_by: str | None = None
    released_for: StreamRelease | None = None


@dataclass(frozen=True, slots=True)
class StreamEndExplained(Result):
    vm_stopped: bool
    how: str = "stopped"  # the lifecycle event that ended the VM, when one did (``reverted``, ``crashed``, ...)


# -- the machine ----------------------------------------------------------------------------------------------


class SerialHandshake(StageMachine):
    """One serial console session: check_vm → (start_vm) → open_serial → proxy.

    Call :meth:`start` once, right after the WebSocket upgrade."""

    def __init__(self, *, ident: str, settings: Settings, clock: Callable[[], float], force: bool = False,
                 auto_start: bool | None = None) -> None:
        super().__init__(stages=SERIAL_STAGES, settings=settings, clock=clock, notices=True)
        self.ident = ident
        self.force = force
        self.auto_start = settings.console_auto_start if auto_start is None else auto_start
        self.vm: Vm | None = None
        self.stream_ended_by: str | None = None
        self.stream_end_grace = STREAM_END_GRACE

    def start(self) -> list[Action]:
        """The first status frame, then the first look-up (through the admission)."""
        return self._begin() + self._await(LookUpVm(self.ident, admit=True))

    @property
    def vm_name(self) -> str:
        return self.vm.name if self.vm is not None else self.ident

    @property
    def _uuid(self) -> str:
        assert self.vm is not None
        return self.vm.uuid

    def _recovers(self, error: LimenError) -> bool:
        # Someone else started the VM between our look-up and our start: fine, read it again.
        return (self.stage == SerialStage.START_VM and isinstance(self.pending, StartVm)
                and error.code is ErrorCode.VM_ALREADY_RUNNING)

    def _advance(self, pending: Effect | None, result: Result) -> list[Action]:
        stage = self.stage
        if isinstance(result, EffectFailed):  # only the recoverable one gets here
            assert isinstance(pending, StartVm)
            return self._await(LookUpVm(pending.uuid))
        if isinstance(result, VmFound) and isinstance(pending, LookUpVm):
            self.vm = result.vm
            if stage == SerialStage.CHECK_VM:
                return self._await(CheckSerialDevice(result.vm.uuid))
            if stage == SerialStage.START_VM:
                return self._enter_open_serial()
        if isinstance(result, SerialDeviceChecked) and isinstance(pending, CheckSerialDevice):
            return self._checked(result.present)
        if isinstance(result, VmStarted) and isinstance(pending, StartVm):
            self.vm = result.vm
            return self._enter_open_serial()
        if isinstance(result, PortHolder) and isinstance(pending, FindPortHolder):
            if not result.held_by_another:
                return self._await(OpenSerial(pending.uuid, self.force))
            if not self.force:
                return self.end(LimenError(ErrorCode.SERIAL_BUSY,  # the page's "Take over" asks with force
                                           "another limen session holds this VM's serial console "
                                           "(?force=1 takes it over)"))
            return self._await(TakeOverPort(pending.uuid))
        if isinstance(result, PortTakenOver) and isinstance(pending, TakeOverPort):
            return self._await(OpenSerial(pending.uuid, self.force))
        if isinstance(result, SerialOpened) and isinstance(pending, OpenSerial):
            return self._enter(SerialStage.PROXY) + self._await(RunSerialProxy())
        if isinstance(result, SerialStreamEnded) and isinstance(pending, RunSerialProxy):
            if result.released_for is not None:
                return self.end(self._release_error(result.released_for))
            self.stream_ended_by = result.ended_by
            return self._await(ExplainStreamEnd(self._uuid, self.stream_end_grace))
        if isinstance(result, StreamEndExplained) and isinstance(pending, ExplainStreamEnd):
            return self.end(self._stream_end_error(result))
        raise IllegalTransition(f"{type(result).__name__} in stage {stage} (pending {type(pending).__name__})")

    def _checked(self, has_serial: bool) -> list[Action]:
        assert self.vm is not None
        vm = self.vm
        if not has_serial:
            return self.end(LimenError(ErrorCode.SERIAL_NOT_CONFIGURED, f"VM {vm.name!r} has no serial console device"))
        if vm.is_active:
            return self._enter_open_serial()
        if not self.auto_start:
            return self.end(LimenError(ErrorCode.VM_NOT_RUNNING,
                                       end_details.vm_not_running(vm.name)))
        return self._enter(SerialStage.START_VM) + self._await(StartVm(vm.uuid))

    def _enter_open_serial(self) -> list[Action]:
        # The VM runs now, so from here on a lifecycle ending means it stopped under us.
        uuid = self._uuid
        return [OpenWatch(uuid), *self._enter(SerialStage.OPEN_SERIAL), *self._await(FindPortHolder(uuid))]

    def _release_error(self, released_for: StreamRelease) -> LimenError:
        if released_for is StreamRelease.MIGRATED:
            return vm_ended_error(self.vm_name, LifecycleKind.MIGRATED, end_details.SERIAL_CLOSED)
        return LimenError(ErrorCode.SERIAL_PORT_ERROR, end_details.SERIAL_MIGRATION_FAILED)

    def _stream_end_error(self, explained: StreamEndExplained) -> LimenError:
        if explained.vm_stopped:
            return vm_ended_error(self.vm_name, explained.how, end_details.SERIAL_CLOSED)
        if self.stream_ended_by is not None:  # libvirt aborted the stream while the VM runs: another client forced it
            return LimenError(ErrorCode.SESSION_TAKEN_OVER, end_details.serial_taken_over(self.stream_ended_by))
        return LimenError(ErrorCode.SERIAL_PORT_ERROR, end_details.SERIAL_STREAM_ENDED)

