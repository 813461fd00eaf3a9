"""The one exception root of limen and the table of stable error codes.

Every failure a user can see is a :class:`LimenError` carrying an :class:`ErrorCode`. The code decides,
in one place, the HTTP status of a REST answer, the WebSocket close code of a console session, the
short title and the user-facing message (what the user can do about it). Callers add only the
technical ``details``; nobody invents a message or a status of their own.

::

    LimenError                      code: ErrorCode, details: str
    ├── HypervisorUnavailable       libvirt is down, or a call passed its timeout; names its host
    └── ValidationFailed            bad input; carries the offending field

The JSON body of every error, REST or WebSocket, has the seed's fields::

    {"error": title, "code": CODE, "details": technical detail, "message": what the user can do}

Close codes (console WebSocket) are grouped by cause: 40xx request, 41xx VM state, 42xx VNC,
43xx hypervisor, 44xx session, 45xx access, 49xx limen itself. The close reason is the code string.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, Literal, get_args


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    http_status: int
    close_code: int
    title: str
    message: str


class ErrorCode(Enum):
    """Stable error codes. The names are a public contract: add codes, never rename them."""

    # -- request ------------------------------------------------------------------------------------
    INVALID_REQUEST = ErrorSpec(
        400, 4000, "Invalid request", "Check the request against the API documentation at /api/docs."
    )
    INVALID_VM_ID = ErrorSpec(
        400, 4001, "Invalid VM ID", "Use the VM's UUID or its name as shown in the VM list."
    )
    VALIDATION_ERROR = ErrorSpec(
        422, 4002, "Invalid input", "Correct the fields named in the details and submit again."
    )
    NOT_FOUND = ErrorSpec(404, 4003, "Not found", "Check the address; the API is documented at /api/docs.")
    VM_NOT_FOUND = ErrorSpec(
        404, 4004, "VM not found", "The VM does not exist (it may have been deleted). Reload the VM list."
    )
    ISO_NOT_FOUND = ErrorSpec(
        422, 4005, "ISO not found", "Pick an ISO from the list of available ISOs (GET /api/isos)."
    )
    METHOD_NOT_ALLOWED = ErrorSpec(
        405, 4006, "Method not allowed", "Use the HTTP method the API documentation gives for this address."
    )
    VM_ALREADY_EXISTS = ErrorSpec(
        409, 4007, "VM already exists", "Choose another name, or delete the existing VM first."
    )
    PAYLOAD_TOO_LARGE = ErrorSpec(
        413, 4008, "Request too large", "Send a smaller request (body or headers); the limit is given in the details."
    )
    REQUEST_TIMEOUT = ErrorSpec(
        408, 4009, "Request too slow", "The request did not arrive in time. Retry over a better connection."
    )
    HOST_NOT_ALLOWED = ErrorSpec(
        400, 4010, "Unknown host name", "Open limen by the address its administrator configured (LIMEN_PUBLIC_URL)."
    )
    DISK_NOT_FOUND = ErrorSpec(
        404, 4011, "Disk not found", "Use a disk target shown on the VM's details page (for example vda)."
    )
    DISK_SHRINK_REFUSED = ErrorSpec(
        409, 4012, "Disks cannot shrink", "Give a size larger than the disk's current capacity."
    )
    ISO_IN_USE = ErrorSpec(
        409, 4013, "ISO in use",
        "Eject it from the VMs named in the details and delete the snapshots named there, then delete it again.",
    )
    ISO_ALREADY_EXISTS = ErrorSpec(
        409, 4014, "ISO already exists", "Choose another file name, or delete the existing ISO first."
    )
    VOLUME_NOT_FOUND = ErrorSpec(
        404, 4015, "Disk volume not found",
        "Use a volume name and host from the list of volumes (GET /api/volumes, limen volumes list).",
    )
    VOLUME_IN_USE = ErrorSpec(
        409, 4016, "Disk volume in use",
        "A VM uses this volume (the details name it): delete that VM, or its snapshots that keep the volume, first.",
    )
    WEBSOCKET_REQUIRED = ErrorSpec(
        426, 4017, "WebSocket required",
        "This address is a WebSocket: open the console from limen's pages, or connect with a WebSocket client.",
    )
    SNAPSHOT_NOT_FOUND = ErrorSpec(
        404, 4020, "Snapshot not found",
        "Use a snapshot name from the VM's list of snapshots (it may have been deleted).",
    )
    SNAPSHOT_ALREADY_EXISTS = ErrorSpec(
        409, 4021, "Snapshot already exists", "Choose another snapshot name, or delete the existing snapshot first."
    )
    OPERATION_NOT_FOUND = ErrorSpec(
        404, 4022, "Operation not found",
        "The operation is unknown, finished too long ago, or ran on another limen server. Reload the VM.",
    )
    # -- VM state -----------------------------------------------------------------------------------
    VM_NOT_RUNNING = ErrorSpec(
        409, 4100, "VM is not running", "Start the VM, then try again."
    )
    VM_START_FAILED = ErrorSpec(
        409, 4101, "Failed to start VM", "Check the VM's configuration and the hypervisor log, then retry."
    )
    VM_STOPPED = ErrorSpec(
        409, 4102, "VM stopped", "The VM stopped or crashed. Start it again and reconnect."
    )
    VM_OPERATION_FAILED = ErrorSpec(
        409, 4103, "VM operation failed", "The hypervisor refused the operation in the VM's current state."
    )
    VM_ALREADY_RUNNING = ErrorSpec(409, 4104, "VM is already running", "Nothing to do: the VM runs.")
    MEDIA_LOCKED = ErrorSpec(
        409, 4105, "CD tray locked", "The guest has locked its CD tray. Eject the disc inside the guest, or force it."
    )
    VM_MUST_BE_STOPPED = ErrorSpec(
        409, 4106, "VM must be stopped", "Stop the VM, make the change, then start it again."
    )
    VM_HAS_SNAPSHOTS = ErrorSpec(
        409, 4108, "The VM has snapshots",
        "The VM has snapshots, which this change cannot keep: delete the VM's snapshots first, then retry.",
    )
    VM_REVERTED = ErrorSpec(
        409, 4107, "VM reverted to a snapshot",
        "The VM was reverted to a snapshot: reconnect to see it as the snapshot left it.",
    )
    VM_MIGRATED = ErrorSpec(
        409, 4109, "VM moved to another host",
        "The VM was migrated to another host while its console was open: reconnecting opens it there.",
    )
    SNAPSHOT_UNSUPPORTED = ErrorSpec(
        409, 4120, "Snapshots not supported for this VM",
        "Snapshots need every disk of the VM in qcow2 format. Convert raw disks (qemu-img convert -O qcow2) "
        "with the VM stopped, or back up its disk files instead.",
    )
    VM_MOVING = ErrorSpec(
        409, 4110, "VM is moving",
        "The VM is being moved to another host. Wait until the move is done, then retry.",
    )
    SNAPSHOT_IN_PROGRESS = ErrorSpec(
        409, 4121, "Snapshot in progress",
        "A snapshot of this VM is being taken, reverted to or deleted. Wait until that is done (a snapshot being "
        "taken: see its operation), then retry.",
    )
    SNAPSHOT_ISO_MISSING = ErrorSpec(
        409, 4122, "The snapshot's ISO is missing",
        "The snapshot's CD-ROM image is gone from the ISO library: upload it again under the name in the details, "
        "or delete the snapshot.",
    )
    # -- VNC ----------------------------------------------------------------------------------------
    VNC_NOT_CONFIGURED = ErrorSpec(
        409,
        4200,
        "VNC is not configured",
        "The VM has no VNC graphics device. Add <graphics type='vnc' autoport='yes'/> to it and restart.",
    )
    VNC_PORT_ERROR = ErrorSpec(
        503,
        4201,
        "Failed to get VNC port",
        "VNC port not available yet. Please wait a moment and try again.",
    )
    VNC_CONNECTION_FAILED = ErrorSpec(
        502,
        4202,
        "Failed to connect to VNC server",
        "The VM's VNC server did not accept the connection. Check that the VM runs, then retry.",
    )
    VNC_HANDSHAKE_FAILED = ErrorSpec(
        502,
        4203,
        "VNC handshake failed",
        "The VNC server did not answer as a VNC server should. Restart the VM, then retry.",
    )
    # -- serial console -----------------------------------------------------------------------------
    SERIAL_NOT_CONFIGURED = ErrorSpec(
        409,
        4210,
        "Serial console is not configured",
        "The VM has no serial console device. Add <serial type='pty'><target port='0'/></serial> and "
        "<console type='pty'/> to it and restart.",
    )
    SERIAL_BUSY = ErrorSpec(
        409,
        4211,
        "Serial console in use",
        "Another client holds this VM's serial console. Close it there, or take it over from here.",
    )
    SERIAL_PORT_ERROR = ErrorSpec(
        502,
        4212,
        "Serial console failed",
        "libvirt could not open the VM's serial console, or it stopped answering. Check that the VM runs, then retry.",
    )
    # -- hypervisor ---------------------------------------------------------------------------------
    HYPERVISOR_UNAVAILABLE = ErrorSpec(
        503,
        4300,
        "Hypervisor unavailable",
        "limen cannot reach libvirt. Check that libvirtd runs and answers (virsh list), then retry.",
    )
    DATABASE_UNAVAILABLE = ErrorSpec(
        503,
        4305,
        "Database unavailable",
        "limen cannot reach its database (LIMEN_DATABASE_URL). Retry in a moment; if it persists, check that "
        "the database runs and answers.",
    )
    DATABASE_SCHEMA_NEWER = ErrorSpec(
        503,
        4306,
        "Database of a newer limen",
        "Run the limen version that upgraded the database, or restore a backup taken before the upgrade.",
    )
    DATABASE_MIGRATION_FAILED = ErrorSpec(
        503,
        4309,
        "Database upgrade failed",
        "The database was left as it was. Do what the details say, or restore a backup, then start limen again.",
    )
    # The command line's `limen backup` / `limen restore` (no HTTP route makes one; the status and close code
    # only keep the tables whole).
    BACKUP_FAILED = ErrorSpec(
        409, 4307, "Backup or restore refused",
        "Do what the details say (stop limen, give another file, free the data directory), then run it again.",
    )
    HOST_NOT_FOUND = ErrorSpec(
        404, 4301, "Host not found", "Use a host name from the host list (GET /api/hosts, limen host list)."
    )
    HOST_ALREADY_EXISTS = ErrorSpec(
        409, 4302, "Host already exists", "Choose another name, or remove the existing host first."
    )
    HOST_IN_USE = ErrorSpec(
        409, 4303, "Host in use", "Move or delete the VMs the details name first (the default host cannot go)."
    )
    NO_HOST_FITS = ErrorSpec(
        409, 4304, "No host has room",
        "No available host that takes new VMs has the memory asked for. Ask for less, or add or undrain a host.",
    )
    VM_ALREADY_ON_HOST = ErrorSpec(
        409, 4308, "VM already on that host",
        "The VM is on the host named already, so nothing moved. To move it, name another host.",
    )
    # -- session ------------------------------------------------------------------------------------
    SLOW_CLIENT = ErrorSpec(
        408, 4400, "Client too slow", "The browser stopped reading the console stream. Reconnect."
    )
    IDLE_TIMEOUT = ErrorSpec(
        408, 4401, "Console idle", "The console was closed after a period without input. Reconnect."
    )
    SERVER_SHUTDOWN = ErrorSpec(
        503, 4402, "Server shutting down", "limen is restarting. Reconnect in a few seconds."
    )
    SESSION_TERMINATED = ErrorSpec(
        409, 4403, "Session terminated", "An administrator ended this console session."
    )
    SERVER_LOST = ErrorSpec(
        503, 4404, "Server lost",
        "The limen server that held this console or ran this action stopped unexpectedly. "
        "Open the console again, or retry the action."
    )
    SESSION_TAKEN_OVER = ErrorSpec(
        409, 4405, "Console taken over", "Another client took over this console. Open it again to take it back."
    )
    # The server failed the WebSocket itself (close 1002, 1007 or 1009, which the browser gets instead of 4406):
    # this code is what the audit and the log record of it.
    CLIENT_PROTOCOL_ERROR = ErrorSpec(
        400, 4406, "Browser broke the WebSocket protocol",
        "The browser sent what the WebSocket protocol does not allow (the details say what), so the console was "
        "closed. Reconnect; if it happens again, update the browser or try another one.",
    )
    # -- access -------------------------------------------------------------------------------------
    UNAUTHORIZED = ErrorSpec(
        401, 4501, "Not signed in", "Sign in (or send a valid API token), then retry."
    )
    FORBIDDEN = ErrorSpec(
        403, 4503, "Not allowed", "Your account may not do this. Ask an administrator for access."
    )
    INVALID_CREDENTIALS = ErrorSpec(
        401, 4500, "Sign-in failed", "The user name or the password is wrong. Check both and try again."
    )
    TICKET_EXPIRED = ErrorSpec(
        401, 4504, "Console ticket expired", "Console tickets last a few seconds. Open the console again."
    )
    TICKET_USED = ErrorSpec(
        401, 4505, "Console ticket already used", "A ticket opens one console only. Open the console again."
    )
    ORIGIN_NOT_ALLOWED = ErrorSpec(
        403,
        4506,
        "Origin not allowed",
        "Open limen from its own address, or ask the administrator to add this site to LIMEN_ALLOWED_ORIGINS.",
    )
    CSRF_FAILED = ErrorSpec(
        403, 4507, "Missing security token", "Reload the page and try again; scripts should use an API token."
    )
    TOO_MANY_ATTEMPTS = ErrorSpec(
        429,
        4508,
        "Too many sign-in attempts",
        "Wait for the time given (retry_after, in seconds), then sign in again; an administrator can lift the "
        "block with `limen user unlock NAME` (or `--address ADDRESS`, a whole address's).",
    )
    USER_ALREADY_EXISTS = ErrorSpec(409, 4509, "User already exists", "Choose another user name.")
    USER_NOT_FOUND = ErrorSpec(404, 4510, "User not found", "Check the user name against the list of users.")
    TOKEN_NOT_FOUND = ErrorSpec(
        404, 4511, "API token not found", "Check the token's id against the list of your API tokens."
    )
    CONSOLE_SESSION_NOT_FOUND = ErrorSpec(
        404, 4512, "Console session not found", "The session has ended or never existed. Reload the list."
    )
    ACCESS_REVOKED = ErrorSpec(
        403,
        4513,
        "Access revoked",
        "Your access to this VM was withdrawn (account, role, token, sign-in or owner changed, or the VM was "
        "deleted). Sign in again or ask an administrator.",
    )
    QUOTA_EXCEEDED = ErrorSpec(
        409,
        4520,
        "Quota exceeded",
        "Free what the details name (delete or stop a VM, or give it less), or ask an administrator for a "
        "larger quota.",
    )
    # Kept disks would count toward no quota (only existing VMs' disks do) and their owner could neither attach
    # nor delete them: a plain user's VM goes with its disks.
    DISKS_MUST_BE_DELETED = ErrorSpec(
        403, 4526, "Disks must be deleted too",
        "Only an administrator may keep a deleted VM's disks. Delete the VM with its disks (delete_disks=true), "
        "or ask an administrator to delete it.",
    )
    ACCOUNT_PENDING = ErrorSpec(
        403, 4521, "Account awaiting approval", "An administrator has not approved this account yet. Try again later."
    )
    ACCOUNT_DISABLED = ErrorSpec(
        403, 4525, "Account disabled", "An administrator has disabled this account. Ask them to enable it again."
    )
    REGISTRATION_CLOSED = ErrorSpec(
        403, 4522, "Registration closed", "This limen does not take sign-ups. Ask an administrator for an account."
    )
    REDIS_UNAVAILABLE = ErrorSpec(
        503,
        4523,
        "Redis unavailable",
        "limen cannot reach the Redis of LIMEN_REDIS_URL, which holds sign-in counts, console tickets, "
        "revocations and the operations of its instances. Retry in a moment; if it persists, check that Redis "
        "runs and answers (redis-cli ping).",
    )
    LAST_ADMINISTRATOR = ErrorSpec(
        409,
        4524,
        "Last administrator",
        "limen needs an enabled administrator: make another user an administrator first, then change or "
        "delete this one.",
    )
    # -- limen itself -------------------------------------------------------------------------------
    INTERNAL_ERROR = ErrorSpec(
        500, 4900, "Internal error", "Something unexpected failed in limen. Retry; if it persists, see the log."
    )

    @property
    def http_status(self) -> int:
        return self.value.http_status

    @property
    def close_code(self) -> int:
        return self.value.close_code

    @property
    def title(self) -> str:
        return self.value.title

    @property
    def user_message(self) -> str:
        return self.value.message


# The longest ``details`` an error carries: a detail quoting what a client sent (a 900,000-character boot
# device) is cut, so an error's answer and its log line stay small whatever the request.
DETAILS_MAX = 2000


def truncate_details(details: str) -> str:
    """``details`` cut to DETAILS_MAX characters, saying how long it was."""
    if len(details) <= DETAILS_MAX:
        return details
    cut = f"… ({len(details)} characters)"
    return details[:DETAILS_MAX - len(cut)] + cut


class LimenError(Exception):
    """Root of every error limen reports. ``details`` is the technical detail; never put secrets in it."""

    # What the audit trail adds to the details of the action this error refused, in the words of
    # limen.action_details (e.g. which quota); empty: the result code says enough.
    audit_details = ""

    def __init__(self, code: ErrorCode, details: str = "", *, title: str | None = None) -> None:
        details = truncate_details(details)
        super().__init__(f"{code.name}: {details}" if details else code.name)
        self.code = code
        self.details = details
        self.title = title or code.title

    def to_dict(self) -> dict[str, Any]:
        """The seed's error fields, in the seed's order."""
        return {
            "error": self.title,
            "code": self.code.name,
            "details": self.details,
            "message": self.code.user_message,
        }


class HypervisorUnavailable(LimenError):
    """HYPERVISOR_UNAVAILABLE; ``host``, when known, names the libvirt host that does not answer as the hosts
    API does (``local`` for LIMEN_LIBVIRT_URI), and the JSON error carries it as ``host``: a client can say
    which host without asking for the VM."""

    def __init__(self, details: str, *, host: str | None = None) -> None:
        super().__init__(ErrorCode.HYPERVISOR_UNAVAILABLE, details)
        self.host = host or None

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        if self.host is not None:
            body["host"] = self.host
        return body


class NothingListens(LimenError):
    """VNC_CONNECTION_FAILED because the connection was refused: nothing listens on the port, or not yet (the
    QEMU of a VM another console started a moment ago, whose port is in its live XML before it listens)."""

    def __init__(self, details: str) -> None:
        super().__init__(ErrorCode.VNC_CONNECTION_FAILED, details)


class MigrationFailed(LimenError):
    """DATABASE_MIGRATION_FAILED; ``reason`` is the database's own word on it (a restore says it in its own
    sentence)."""

    def __init__(self, details: str, reason: str) -> None:
        super().__init__(ErrorCode.DATABASE_MIGRATION_FAILED, details)
        self.reason = reason


class CreateNotBegun(HypervisorUnavailable):
    """A create whose host did not answer before any of the create's work in libvirt began: nothing of it can
    be there, so there is nothing to look for (on a host that does not answer) or to undo."""


class Rule(StrEnum):
    """The rules a VALIDATION_ERROR names in its ``rule`` (as ``kind``, with the values it needs), for a client
    to word in its own language; the web pages have ``rule.<kind>`` (and ``rule.range.<limit>``) in their
    catalogues. ``details`` stay English."""

    VM_NAME = "vm_name"  # letters a–z, A–Z, digits, '_', '.', '-'; starts with a letter or digit; at most 63
    HOST_NAME = "host_name"  # a libvirt host's name in limen: the same characters as a VM's
    RANGE = "range"  # a number: {min, max, unit, limit}
    LENGTH = "length"  # characters: {min, max}
    NO_EDGE_SPACE = "no_edge_space"
    NO_CONTROL_CHARS = "no_control_chars"
    RESERVED_PREFIX = "reserved_prefix"  # {prefix}
    DOT_SEGMENT = "dot_segment"  # "." or "..", which an address cannot name
    FILE_NAME = "file_name"  # a plain file name, no path
    HIDDEN_NAME = "hidden_name"  # starts with a dot
    MAX_BYTES = "max_bytes"  # {max}, in UTF-8
    ISO_SUFFIX = "iso_suffix"  # .iso or .img
    WHOLE_NUMBER = "whole_number"  # 1.5 or "two" where an integer belongs
    AT_LEAST = "at_least"  # a number below its floor (``min``), e.g. a quota of -1
    AT_MOST = "at_most"  # a number above its ceiling (``max``), e.g. a quota past what the database holds
    REQUIRED = "required"  # a field the request must have and left out
    ONE_OF = "one_of"  # a value not among the ``allowed`` ones (a list), e.g. a boot device
    NO_REPEAT = "no_repeat"  # a list naming an item twice
    NOT_EMPTY = "not_empty"  # a list that must name at least one item
    ISO_MISSING = "iso_missing"  # no image of that name in the ISO directory (deleted since the form was drawn)


# What may set a range's maximum when it is not a constant (``rule.range.<limit>``).
RangeLimit = Literal["host_cpus", "host_memory"]
RANGE_LIMITS: tuple[str, ...] = get_args(RangeLimit)


def rule(kind: Rule, **values: Any) -> dict[str, Any]:
    """The ``rule`` of a VALIDATION_ERROR: its kind and the values its wording needs."""
    return {"kind": kind.value, **values}


def range_rule(minimum: int, maximum: int, *, unit: str = "", limit: RangeLimit | None = None) -> dict[str, Any]:
    """A number outside ``minimum``–``maximum`` (``unit``: "MiB", "GiB" or none); ``limit`` (one of
    RANGE_LIMITS) names what sets the maximum when it is not a constant."""
    values: dict[str, Any] = {"min": minimum, "max": maximum, "unit": unit}
    if limit is not None:
        values["limit"] = limit
    return rule(Rule.RANGE, **values)


class ValidationFailed(LimenError):
    """VALIDATION_ERROR naming its ``field``, and, when given, the :class:`Rule` broken (``rule``: see
    :func:`rule`); the JSON error carries both."""

    def __init__(self, field: str, details: str, *, rule: Mapping[str, Any] | None = None) -> None:
        super().__init__(ErrorCode.VALIDATION_ERROR, f"{field}: {details}")
        self.field = field
        self.rule = dict(rule) if rule is not None else None
        self.field_details = truncate_details(details)
        # Every field refused by the same request, this one first (see all_of).
        self.refusals: list[ValidationFailed] = [self]

    @classmethod
    def all_of(cls, refusals: Sequence[ValidationFailed]) -> ValidationFailed:
        """One error for several refused fields: the first names ``field`` and ``rule`` as a single refusal
        would; ``fields`` lists each, so a form marks them all at once rather than one per submit."""
        first = refusals[0]
        first.refusals = list(refusals)
        first.details = truncate_details("; ".join(f"{refusal.field}: {refusal.field_details}" for refusal in refusals))
        return first

    def to_dict(self) -> dict[str, Any]:
        body = {**super().to_dict(), "field": self.field}
        if self.rule is not None:
            body["rule"] = self.rule
        body["fields"] = [refusal.field_entry() for refusal in self.refusals]
        return body

    def field_entry(self) -> dict[str, Any]:
        """This refusal alone, as an entry of ``fields``: its field, its own details, its rule."""
        entry: dict[str, Any] = {"field": self.field, "details": self.field_details}
        if self.rule is not None:
            entry["rule"] = self.rule
        return entry


class Refusals:
    """The fields refused by several checks of one request, to answer them all at once::

        refusals = Refusals()
        with refusals.check():
            check_name(name)
        with refusals.check():
            check_size(size)
        refusals.raise_any()  # one VALIDATION_ERROR naming each field refused, in the checks' order
    """

    def __init__(self) -> None:
        self.found: list[ValidationFailed] = []

    @contextlib.contextmanager
    def check(self) -> Iterator[None]:
        try:
            yield
        except ValidationFailed as refusal:
            self.found.extend(refusal.refusals)

    def raise_any(self) -> None:
        if self.found:
            raise ValidationFailed.all_of(self.found)
