"""Why a console session ended (its ``end_details`` in the audit trail), in limen's own words: the VM stopped,
deleted or given away, a user disabled, a token revoked, idle, a shutdown... One table holds each wording's template
(:data:`WORDINGS`, and :data:`VM_ENDS` for a VM's end), for the console, the API and the command line alike: the
builders below format it, and the pattern that reads it back (:data:`PHRASES`, used by
:func:`limen.action_details.end_phrases`, so that the Korean audit page can say it in its own words) is made from
the same template, so the two cannot drift apart.

The stored words are the operator's log: change them only with care, never by accident. Names are quoted as
Python's repr quotes them. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from limen.errors import ErrorCode

# What told a console its VM ended when nothing else closed first: libvirt's lifecycle event (a suffix).
LIFECYCLE_EVENT = " (libvirt lifecycle event)"
# What closed first when a console saw its VM end (a part of its own, after the VM's end).
VNC_SERVER_CLOSED = "its VNC server closed the connection"
SERIAL_CLOSED = "its serial console closed"
SERVER_SHUTDOWN = "limen is shutting down"
TAKEN_OVER = "another client took over the serial console"
# A console whose VM runs on: what ended it.
VNC_CONNECTION_CLOSED = "the VNC server closed the connection"
SERIAL_STREAM_ENDED = "the serial console stream ended while the VM runs"
SERIAL_MIGRATION_FAILED = ("the serial console was closed for a migration of the VM, which failed: it runs on where "
                           "it was")
# How libvirt ended a serial console's stream when another client forced it open (:func:`serial_taken_over`).
SERIAL_STREAM_CLOSED = "libvirt closed the console stream"
# A console that failed in limen itself (a bug: the log has its traceback) or whose work stopped without an
# end (a bug in one of its tasks), and a VM start asked by a console before its admission said for whom.
CONSOLE_FAILED = "unexpected failure in the console"
CONSOLE_WORK_ENDED_EARLY = "the console's work ended early"
CONSOLE_NOT_ADMITTED = "the console was not admitted"
# Every console re-checked after Redis was unreachable: one whose right went meanwhile (two parts).
_WITHDRAWN_UNHEARD = ("access withdrawn on another limen instance while this one could not hear it (Redis "
                      "unreachable)")
_FOUND_ON_REREAD = "found when the database was read again"
ACCESS_WITHDRAWN_UNHEARD = f"{_WITHDRAWN_UNHEARD}; {_FOUND_ON_REREAD}"
_TAKEN_OVER_WHY = "the serial console was taken over ({why})"


class VmEnd(NamedTuple):
    """How a console tells that its VM ended: the error that ends the console, and its words (a template of the
    VM's name, ``vm``)."""

    code: ErrorCode
    template: str

    @classmethod
    def of(cls, how: str) -> VmEnd:
        """``how``'s (a lifecycle event's kind); a kind without one (none ends a console today) stops the
        console as VM_STOPPED, in the event's own word."""
        return VM_ENDS.get(how) or cls(ErrorCode.VM_STOPPED, "VM {vm!r} " + how.replace("{", "{{").replace("}", "}}"))


# A VM that ended under its console, by the lifecycle event's kind: a revert to a snapshot (the VM may run on
# from it, and a reconnect shows it) and a migration (it runs on on its new host: the page reconnects by itself)
# have codes of their own. Their phrases' kinds are ``vm_<how>``, each with the lifecycle event's suffix.
VM_ENDS: Mapping[str, VmEnd] = {
    "stopped": VmEnd(ErrorCode.VM_STOPPED, "VM {vm!r} stopped"),
    "crashed": VmEnd(ErrorCode.VM_STOPPED, "VM {vm!r} crashed"),
    "undefined": VmEnd(ErrorCode.VM_STOPPED, "VM {vm!r} undefined"),
    "reverted": VmEnd(ErrorCode.VM_REVERTED, "VM {vm!r} was reverted to a snapshot"),
    "migrated": VmEnd(ErrorCode.VM_MIGRATED, "VM {vm!r} was migrated to another host"),
}

# Each other part of the words (parts are joined by "; ", as a VM's end and what closed first are) by its kind,
# the pages' ``action_detail.<kind>``, in the order they are read back (the first that matches a part is its
# kind). Fields: a name as Python's repr quotes it ``{x!r}``, seconds ``{seconds:g}``, a number ``{x:d}``,
# anything else (libvirt's own words) ``{x}``.
WORDINGS: Mapping[str, str] = {
    "vnc_server_closed": VNC_SERVER_CLOSED,
    "serial_closed": SERIAL_CLOSED,
    "vm_not_running": "VM {vm!r} is not running and auto-start is off",
    "vm_deleted_by": "VM {vm!r} deleted by {by!r}",
    "vm_deleted_cli": "VM {vm!r} deleted from the command line",
    "vm_given": "VM {vm!r} given to {owner!r} (by {by!r})",
    "vm_unowned": "VM {vm!r} has no owner now (by {by!r})",
    "admin_no_longer": "user {user!r} is no longer an administrator (changed by {by!r})",
    "admin_no_longer_cli": "user {user!r} is no longer an administrator (changed from the command line)",
    "user_disabled": "user {user!r} disabled by {by!r}",
    "approval_withdrawn": "approval of user {user!r} withdrawn by {by!r}",
    "user_deleted": "user {user!r} deleted by {by!r}",
    "user_deleted_cli": "user {user!r} deleted from the command line",
    "signed_out": "user {user!r} signed out",
    "password_reset_cli": "the password of user {user!r} was set from the command line",
    "token_revoked": "API token {token:d} revoked by {by!r}",
    "token_revoked_cli": "API token {token:d} revoked from the command line",
    "session_ended_by_admin": "an administrator ({by!r}) ended the session",
    "idle": "no input from the browser for {seconds:g} s",
    "server_shutdown": SERVER_SHUTDOWN,
    "slow_client": "a WebSocket write did not complete within {seconds:g} s",
    "taken_over": TAKEN_OVER,
    "vnc_connection_closed": VNC_CONNECTION_CLOSED,
    "serial_stream_ended": SERIAL_STREAM_ENDED,
    "serial_migration_failed": SERIAL_MIGRATION_FAILED,
    "serial_taken_over": _TAKEN_OVER_WHY.format(why=SERIAL_STREAM_CLOSED),
    "serial_taken_over_why": _TAKEN_OVER_WHY,
    "console_failed": CONSOLE_FAILED,
    "console_work_ended_early": CONSOLE_WORK_ENDED_EARLY,
    "console_not_admitted": CONSOLE_NOT_ADMITTED,
    "access_withdrawn_unheard": _WITHDRAWN_UNHEARD,
    "found_on_reread": _FOUND_ON_REREAD,
}


def vm_ended(vm_name: str, how: str, closed: str | None = None) -> str:
    """The VM ended under its console; ``how``: the lifecycle event's kind (stopped, crashed, undefined,
    reverted, migrated: :data:`VM_ENDS`); ``closed``: what closed first (:data:`VNC_SERVER_CLOSED`,
    :data:`SERIAL_CLOSED`), None when the lifecycle event told it."""
    ended = VmEnd.of(how).template.format(vm=vm_name)
    return ended + LIFECYCLE_EVENT if closed is None else f"{ended}; {closed}"


def vm_not_running(vm_name: str) -> str:
    return WORDINGS["vm_not_running"].format(vm=vm_name)


def vm_deleted(vm_name: str, by: str | None) -> str:
    """``by``: the user who deleted it, None from the command line."""
    if by is None:
        return WORDINGS["vm_deleted_cli"].format(vm=vm_name)
    return WORDINGS["vm_deleted_by"].format(vm=vm_name, by=by)


def vm_owner_changed(vm_name: str, owner: str | None, by: str) -> str:
    """The VM given to ``owner`` (None: to nobody) by the administrator ``by``."""
    if owner is None:
        return WORDINGS["vm_unowned"].format(vm=vm_name, by=by)
    return WORDINGS["vm_given"].format(vm=vm_name, owner=owner, by=by)


def no_longer_admin(user: str, by: str | None) -> str:
    """``by``: the administrator who changed the role, None from the command line."""
    if by is None:
        return WORDINGS["admin_no_longer_cli"].format(user=user)
    return WORDINGS["admin_no_longer"].format(user=user, by=by)


def user_disabled(user: str, by: str) -> str:
    return WORDINGS["user_disabled"].format(user=user, by=by)


def approval_withdrawn(user: str, by: str) -> str:
    return WORDINGS["approval_withdrawn"].format(user=user, by=by)


def user_deleted(user: str, by: str | None) -> str:
    """``by``: the administrator who deleted the user, None from the command line."""
    if by is None:
        return WORDINGS["user_deleted_cli"].format(user=user)
    return WORDINGS["user_deleted"].format(user=user, by=by)


def signed_out(user: str) -> str:
    return WORDINGS["signed_out"].format(user=user)


def password_reset_cli(user: str) -> str:
    return WORDINGS["password_reset_cli"].format(user=user)


def token_revoked(token_id: int, by: str | None) -> str:
    """``by``: the user who revoked it, None from the command line."""
    if by is None:
        return WORDINGS["token_revoked_cli"].format(token=token_id)
    return WORDINGS["token_revoked"].format(token=token_id, by=by)


def session_ended_by_admin(by: str) -> str:
    return WORDINGS["session_ended_by_admin"].format(by=by)


def idle(seconds: float) -> str:
    return WORDINGS["idle"].format(seconds=seconds)


def slow_client(seconds: float) -> str:
    return WORDINGS["slow_client"].format(seconds=seconds)


def serial_taken_over(why: str) -> str:
    """``why``: how the stream ended, :data:`SERIAL_STREAM_CLOSED` or libvirt's error (its own words)."""
    return WORDINGS["serial_taken_over_why"].format(why=why)


# Each part of the words above and its kind, read back (a detail of other words, a libvirt error's own, stays
# as it is): the template escaped, each field in it the group that reads it (named as the field), a VM's end with
# the lifecycle event's suffix when that told it.
_FIELD = re.compile(r"\\\{(?P<name>\w+)(?P<form>!r|:g|:d)?\\\}")  # a field, as re.escape leaves it
_FIELD_GROUPS = {
    "!r": r"['\"](?P<{}>.+?)['\"]",
    ":g": r"(?P<{}>\d+(?:\.\d+)?)",
    ":d": r"(?P<{}>\d+)",
    None: r"(?P<{}>.+)",
}
_LIFECYCLE = rf"(?P<lifecycle>{re.escape(LIFECYCLE_EVENT)})?"
PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(_FIELD.sub(lambda field: _FIELD_GROUPS[field["form"]].format(field["name"]), re.escape(template))
                      + suffix))
    for kind, template, suffix in (
        *((f"vm_{how}", end.template, _LIFECYCLE) for how, end in VM_ENDS.items()),
        *((kind, template, "") for kind, template in WORDINGS.items()),
    )
)
