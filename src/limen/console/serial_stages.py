"""The serial console's handshake: the pure machine that walks its stages.

The stages themselves (name, status text, deadline setting, timeout code) are declared once, in the
console's stage table (:data:`limen.console.stage_table.SERIAL_STAGES`); this module adds only what a
failure of each stage's work becomes (:class:`SerialStageSpec`).

No sockets, no libvirt, no clock of its own: :class:`SerialHandshake` gets the time injected, is told
which stage the adapter (``serial_session.py``) enters and how the session ends, and returns the frames
to send. Order is enforced: entering a stage that does not follow the current one is an
:class:`~limen.console.handshake.IllegalTransition` (a bug in the adapter).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from limen.console import messages
from limen.console.handshake import Action, Close, IllegalTransition, SendText
from limen.console.stage_table import SERIAL_STAGES as TABLE
from limen.console.stage_table import SerialStage as SerialStage
from limen.errors import ErrorCode, LimenError
from limen.settings import Settings


@dataclass(frozen=True, slots=True)
class SerialStageSpec:
    """One serial stage as the machine uses it: its entry in the stage table (text, deadline, timeout code)
    and the code a failure of its work becomes."""

    stage: SerialStage
    text: str
    deadline_setting: str | None
    timeout_code: ErrorCode
    failure_code: ErrorCode

    def deadline(self, settings: Settings) -> float | None:
        return TABLE[self.stage].deadline(settings)


# What a failure of each stage's work becomes (the stage table holds the rest).
_FAILURE_CODES: Final[Mapping[SerialStage, ErrorCode]] = {
    SerialStage.CHECK_VM: ErrorCode.HYPERVISOR_UNAVAILABLE,
    SerialStage.START_VM: ErrorCode.VM_START_FAILED,
    SerialStage.OPEN_SERIAL: ErrorCode.SERIAL_PORT_ERROR,
    SerialStage.PROXY: ErrorCode.SERIAL_PORT_ERROR,
}

SERIAL_STAGES: Final[tuple[SerialStageSpec, ...]] = tuple(
    SerialStageSpec(SerialStage(spec.name), spec.status or "", spec.deadline_setting,
                    spec.timeout_code or ErrorCode.INTERNAL_ERROR, _FAILURE_CODES[SerialStage(spec.name)])
    for spec in TABLE
)
SPEC_OF: Final[Mapping[SerialStage, SerialStageSpec]] = {spec.stage: spec for spec in SERIAL_STAGES}

# Which stage may follow which (START_VM only for a stopped VM).
NEXT: Final[Mapping[SerialStage | None, frozenset[SerialStage]]] = {
    None: frozenset({SerialStage.CHECK_VM}),
    SerialStage.CHECK_VM: frozenset({SerialStage.START_VM, SerialStage.OPEN_SERIAL}),
    SerialStage.START_VM: frozenset({SerialStage.OPEN_SERIAL}),
    SerialStage.OPEN_SERIAL: frozenset({SerialStage.PROXY}),
    SerialStage.PROXY: frozenset(),
    SerialStage.ENDED: frozenset(),
}


def handshake_bound(settings: Settings) -> float:
    """Worst case from the upgrade to the verdict, were every stage to use all its time."""
    return TABLE.worst_case(settings)


class SerialHandshake:
    """One serial session's stages. :meth:`enter` each stage in order; :meth:`end` once."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self.stage: SerialStage | None = None
        self.started_at = 0.0
        self.entered_at = 0.0
        self.error: LimenError | None = None
        self.ended_in: SerialStage | None = None

    def elapsed_ms(self) -> int:
        return round((self._clock() - self.started_at) * 1000)

    @property
    def live(self) -> bool:
        return self.stage is not None and self.stage is not SerialStage.ENDED

    def remaining(self) -> float | None:
        """Seconds left in the current stage; None when it has no deadline."""
        if self.stage is None or self.stage is SerialStage.ENDED:
            return None
        limit = SPEC_OF[self.stage].deadline(self._settings)
        return None if limit is None else max(0.0, self.entered_at + limit - self._clock())

    def enter(self, stage: SerialStage) -> list[Action]:
        if stage not in NEXT[self.stage]:
            raise IllegalTransition(f"{stage.value} after {self.stage.value if self.stage else 'nothing'}")
        now = self._clock()
        if self.stage is None:
            self.started_at = now
        self.stage, self.entered_at = stage, now
        return [SendText(messages.status_frame(SPEC_OF[stage].text, stage=stage.value, elapsed_ms=self.elapsed_ms()))]

    def timeout_error(self) -> LimenError:
        """The error the current stage's deadline passing becomes."""
        assert self.stage is not None and self.stage is not SerialStage.ENDED
        spec = SPEC_OF[self.stage]
        limit = spec.deadline(self._settings) or 0.0
        return LimenError(spec.timeout_code, f"libvirt did not answer within {limit:g} s (stage {spec.stage.value})")

    def libvirt_failure(self, error: LimenError) -> LimenError:
        """What a libvirt call's failure in the current stage becomes: a generic refusal (libvirt's
        "operation failed", mapped to VM_OPERATION_FAILED or INVALID_REQUEST) takes the stage's failure code;
        a specific one (VM_NOT_FOUND, SERIAL_BUSY, HYPERVISOR_UNAVAILABLE, …) stays as it is."""
        if self.stage is None or self.stage is SerialStage.ENDED:
            return error
        if error.code in (ErrorCode.VM_OPERATION_FAILED, ErrorCode.INVALID_REQUEST):
            return LimenError(SPEC_OF[self.stage].failure_code, error.details)
        return error

    def end(self, error: LimenError | None) -> list[Action]:
        """Ends the session: with ``error``, its frame (none for SLOW_CLIENT) and close; None: the client left."""
        if not self.live:
            return []
        assert self.stage is not None
        self.ended_in, self.stage = self.stage, SerialStage.ENDED
        if error is None:
            return []
        self.error = error
        actions: list[Action] = []
        if error.code is not ErrorCode.SLOW_CLIENT:
            actions.append(SendText(messages.error_frame(error, stage=self.ended_in.value)))
        actions.append(Close(error.code.close_code, error.code.name))
        return actions
