"""What each console stage is, declared once: the one table everything else about stages derives from.

A :class:`StageSpec` holds a stage's name, its label for people, the text of the status frame sent on
entering it (the seed's texts, byte for byte), the setting that holds its deadline, the error a timeout
becomes (and the error when a libvirt call was the one hanging), and the details of that error. A console
kind is one :class:`StageList`, in the order its stages run; :data:`VNC_STAGES` is the VNC console's.

Derived from it, never repeated elsewhere: the stage machine's status frames and timeout errors
(``handshake.py``), each session's deadlines and the worst case from the upgrade to a verdict
(:func:`StageList.worst_case`), ``GET /api/console-stages`` (:func:`StageList.describe`, read by the console
page), the README's stage table (:func:`StageList.readme_table`, a unit test keeps them equal) and
``limen doctor``'s idea of "the proxy stage was reached".

A second console kind is a second :class:`StageList` with its own names, texts and settings; the
machinery here needs nothing else. Pure data: no I/O, imports only the error table and the settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Final

from limen.errors import ErrorCode
from limen.settings import Settings

# The details of a timeout while a libvirt call was running (any stage): libvirt, not the stage, hung.
LIBVIRT_TIMEOUT_DETAIL: Final = "libvirt did not answer within {limit:g} s (stage {stage})"

# libvirt's refusals that say no more than "it failed" (``hypervisor/connection.py`` maps libvirt's errors
# without a code of their own to these): a stage with a ``failure_code`` names them after itself.
GENERIC_REFUSALS: Final = frozenset({ErrorCode.VM_OPERATION_FAILED, ErrorCode.INVALID_REQUEST})


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage. ``status`` may hold ``{port}`` (filled by the machine); None: no frame on entry.

    ``timeout_detail`` may use ``{limit}`` (the deadline in seconds), ``{stage}`` and ``{target}``
    (``host:port`` of the peer, once known). ``failure_code``: what a generic refusal of the stage's work
    (:data:`GENERIC_REFUSALS`) becomes; None: the refusal reaches the client as it is. A specific error
    (VM_NOT_FOUND, SERIAL_BUSY, QUOTA_EXCEEDED, ...) always does.
    """

    name: str
    label: str  # what the page says the console failed at: "Failed at: {label}"
    status: str | None
    deadline_setting: str | None  # the Settings field with its deadline in seconds; None: no deadline
    timeout_code: ErrorCode | None = None
    libvirt_timeout_code: ErrorCode | None = None  # when a libvirt call was the one hanging
    timeout_detail: str = ""
    note: str = ""  # for the README's table only (e.g. when the stage is skipped)
    failure_code: ErrorCode | None = None

    def deadline(self, settings: Settings) -> float | None:
        if self.deadline_setting is None:
            return None
        value = getattr(settings, self.deadline_setting)
        assert isinstance(value, float | int)
        return float(value)

    def status_text(self, **values: Any) -> str | None:
        return None if self.status is None else self.status.format(**values)

    def failure(self, code: ErrorCode) -> ErrorCode:
        """The code a failure of this stage's work with ``code`` ends the session with."""
        return self.failure_code if self.failure_code is not None and code in GENERIC_REFUSALS else code


class StageList:
    """One console kind's stages, in the order they run. Index it by a stage's name."""

    def __init__(self, kind: str, stages: tuple[StageSpec, ...]) -> None:
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"{kind}: a stage name appears twice: {names}")
        for stage in stages:
            if stage.deadline_setting is not None and stage.deadline_setting not in Settings.model_fields:
                raise ValueError(f"{kind}: stage {stage.name}: no setting {stage.deadline_setting!r}")
            if stage.deadline_setting is not None and stage.timeout_code is None:
                raise ValueError(f"{kind}: stage {stage.name} has a deadline but no timeout code")
        self.kind = kind
        self.stages = stages
        self._by_name = {stage.name: stage for stage in stages}

    def __getitem__(self, name: str) -> StageSpec:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[StageSpec]:
        return iter(self.stages)

    def deadlines(self, settings: Settings) -> dict[str, float]:
        """Each stage's deadline in seconds (stages without one are left out)."""
        return {stage.name: limit for stage in self.stages if (limit := stage.deadline(settings)) is not None}

    def worst_case(self, settings: Settings) -> float:
        """Seconds from the upgrade to a verdict, were every stage to use all its time."""
        return sum(self.deadlines(settings).values())

    def describe(self, settings: Settings) -> dict[str, Any]:
        """The JSON of ``GET /api/console-stages`` for this kind."""
        return {
            "worst_case_seconds": self.worst_case(settings),
            "stages": [
                {
                    "name": stage.name,
                    "label": stage.label,
                    "text": stage.status,
                    "deadline_seconds": stage.deadline(settings),
                    "deadline_setting": stage.deadline_setting,
                    "timeout_code": stage.timeout_code.name if stage.timeout_code else None,
                    "libvirt_timeout_code": stage.libvirt_timeout_code.name if stage.libvirt_timeout_code else None,
                }
                for stage in self.stages
            ],
        }

    def readme_table(self, settings: Settings) -> str:
        """The Markdown table the README carries for this kind (with the default settings)."""
        rows = [
            "| stage | status frame text on entering it | deadline setting (default) | timeout → code "
            "| libvirt call hung → code |",
            "|---|---|---|---|---|",
        ]
        for stage in self.stages:
            text = f"`{stage.status}`" if stage.status is not None else "(none)"
            if stage.note:
                text = f"{text} {stage.note}"
            limit = stage.deadline(settings)
            deadline = (f"`LIMEN_{stage.deadline_setting.upper()}` ({limit:g} s)"
                        if stage.deadline_setting is not None and limit is not None else "none")
            timeout = stage.timeout_code.name if stage.timeout_code else "—"
            libvirt = stage.libvirt_timeout_code.name if stage.libvirt_timeout_code else "—"
            rows.append(f"| `{stage.name}` | {text} | {deadline} | {timeout} | {libvirt} |")
        return "\n".join(rows)

    def failure_table(self) -> str:
        """The Markdown table of what a generic refusal of each stage's work becomes (kinds that say)."""
        rows = ["| stage | work failed → code |", "|---|---|"]
        rows += [f"| `{stage.name}` | {stage.failure_code.name} |" for stage in self.stages if stage.failure_code]
        return "\n".join(rows)


class VncStage(StrEnum):
    """The VNC console's stages, in order (names of :data:`VNC_STAGES`), and ENDED after any of them."""

    CHECK_VM = "check_vm"
    START_VM = "start_vm"
    GET_PORT = "get_port"
    CONNECT = "connect"  # TCP connect to the VM's VNC server
    READ_BANNER = "read_banner"  # wait for its RFB banner; no status frame of its own
    PROXY = "proxy"
    ENDED = "ended"


VNC_STAGES: Final = StageList("vnc", (
    StageSpec(
        name=VncStage.CHECK_VM,
        label="checking the VM",
        status="Connected, checking VM status...",
        deadline_setting="console_check_vm_timeout",
        timeout_code=ErrorCode.HYPERVISOR_UNAVAILABLE,
        libvirt_timeout_code=ErrorCode.HYPERVISOR_UNAVAILABLE,
        timeout_detail=LIBVIRT_TIMEOUT_DETAIL,
    ),
    StageSpec(
        name=VncStage.START_VM,
        label="starting the VM",
        status="Starting VM...",
        deadline_setting="console_start_vm_timeout",
        timeout_code=ErrorCode.VM_START_FAILED,
        libvirt_timeout_code=ErrorCode.HYPERVISOR_UNAVAILABLE,
        timeout_detail="the VM was not running within {limit:g} s",
        note="(stopped VM only)",
    ),
    StageSpec(
        name=VncStage.GET_PORT,
        label="getting the VNC port",
        status="Getting VNC port...",
        deadline_setting="console_get_port_timeout",
        timeout_code=ErrorCode.VNC_PORT_ERROR,
        libvirt_timeout_code=ErrorCode.HYPERVISOR_UNAVAILABLE,
        timeout_detail="libvirt assigned no VNC port within {limit:g} s",
    ),
    StageSpec(
        name=VncStage.CONNECT,
        label="connecting to the VNC server",
        status="Connecting to VNC server on port {port}...",
        deadline_setting="console_connect_timeout",
        timeout_code=ErrorCode.VNC_CONNECTION_FAILED,
        libvirt_timeout_code=ErrorCode.VNC_CONNECTION_FAILED,
        timeout_detail="no TCP connection to {target} within {limit:g} s",
    ),
    StageSpec(
        name=VncStage.READ_BANNER,
        label="reading the VNC server's banner",
        status=None,
        deadline_setting="console_banner_timeout",
        timeout_code=ErrorCode.VNC_HANDSHAKE_FAILED,
        libvirt_timeout_code=ErrorCode.VNC_HANDSHAKE_FAILED,
        timeout_detail="no RFB banner from {target} within {limit:g} s",
        note="(waits for `RFB xxx.yyy\\n`)",
    ),
    StageSpec(
        name=VncStage.PROXY,
        label="starting the screen",
        status="VNC connection established, starting proxy...",
        deadline_setting=None,
        note="then the banner as the first binary frame, then the VNC stream both ways",
    ),
))

class SerialStage(StrEnum):
    """The serial console's stages, in order (names of :data:`SERIAL_STAGES`), and ENDED after any of them."""

    CHECK_VM = "check_vm"
    START_VM = "start_vm"
    OPEN_SERIAL = "open_serial"  # libvirt's console stream (virDomainOpenConsole)
    PROXY = "proxy"
    ENDED = "ended"


SERIAL_STAGES: Final = StageList("serial", (
    # The same first stages, word for word, as the VNC console's; a generic refusal is named after them.
    replace(VNC_STAGES[VncStage.CHECK_VM], failure_code=ErrorCode.HYPERVISOR_UNAVAILABLE),
    replace(VNC_STAGES[VncStage.START_VM], failure_code=ErrorCode.VM_START_FAILED),
    StageSpec(
        name=SerialStage.OPEN_SERIAL,
        label="opening the serial port",
        status="Opening the serial port...",
        deadline_setting="console_serial_open_timeout",
        timeout_code=ErrorCode.HYPERVISOR_UNAVAILABLE,
        libvirt_timeout_code=ErrorCode.HYPERVISOR_UNAVAILABLE,
        timeout_detail=LIBVIRT_TIMEOUT_DETAIL,
        failure_code=ErrorCode.SERIAL_PORT_ERROR,
    ),
    StageSpec(
        name=SerialStage.PROXY,
        label="the serial stream",
        status="Serial console connected",
        deadline_setting=None,
        note="then the serial bytes as binary frames, both ways",
        failure_code=ErrorCode.SERIAL_PORT_ERROR,
    ),
))

# Every console kind, by the name ``GET /api/console-stages`` gives it.
CONSOLE_KINDS: Final[dict[str, StageList]] = {VNC_STAGES.kind: VNC_STAGES, SERIAL_STAGES.kind: SERIAL_STAGES}
