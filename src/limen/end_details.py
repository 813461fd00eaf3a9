"""Why a console session ended (its ``end_details`` in the audit trail), in limen's own words: the VM stopped,
deleted or given away, a user disabled, a token revoked, idle, a shutdown... One place writes each wording, for
the console, the API and the command line alike, and beside it the pattern that reads it back
(:data:`PHRASES`, used by :func:`limen.action_details.end_phrases`), so that the Korean audit page can say it in
its own words. A wording changed here without its pattern fails the tests instead of silently showing English.

The stored words are the operator's log: change them only with care, never by accident. Names are quoted as
Python's repr quotes them. Pure.
"""

from __future__ import annotations

import re

# What told a console its VM ended when nothing else closed first: libvirt's lifecycle event (a suffix).
LIFECYCLE_EVENT = " (libvirt lifecycle event)"
# What closed first when a console saw its VM end (a part of its own, after the VM's end).
VNC_SERVER_CLOSED = "its VNC server closed the connection"
SERIAL_CLOSED = "its serial console closed"
SERVER_SHUTDOWN = "limen is shutting down"
TAKEN_OVER = "another client took over the serial console"
_COMMAND_LINE = "from the command line"
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
ACCESS_WITHDRAWN_UNHEARD = ("access withdrawn on another limen instance while this one could not hear it (Redis "
                            "unreachable); found when the database was read again")


def vm_ended(vm_name: str, how: str, closed: str | None = None) -> str:
    """The VM ended under its console; ``how``: the lifecycle event's kind (stopped, crashed, undefined,
    reverted, migrated); ``closed``: what closed first (:data:`VNC_SERVER_CLOSED`, :data:`SERIAL_CLOSED`), None
    when the lifecycle event told it."""
    if how == "reverted":
        ended = f"VM {vm_name!r} was reverted to a snapshot"
    elif how == "migrated":
        ended = f"VM {vm_name!r} was migrated to another host"
    else:
        ended = f"VM {vm_name!r} {how}"
    return ended + LIFECYCLE_EVENT if closed is None else f"{ended}; {closed}"


def vm_not_running(vm_name: str) -> str:
    return f"VM {vm_name!r} is not running and auto-start is off"


def vm_deleted(vm_name: str, by: str | None) -> str:
    """``by``: the user who deleted it, None from the command line."""
    return f"VM {vm_name!r} deleted {_COMMAND_LINE}" if by is None else f"VM {vm_name!r} deleted by {by!r}"


def vm_owner_changed(vm_name: str, owner: str | None, by: str) -> str:
    """The VM given to ``owner`` (None: to nobody) by the administrator ``by``."""
    given = f"VM {vm_name!r} given to {owner!r}" if owner is not None else f"VM {vm_name!r} has no owner now"
    return f"{given} (by {by!r})"


def no_longer_admin(user: str, by: str | None) -> str:
    """``by``: the administrator who changed the role, None from the command line."""
    changed = _COMMAND_LINE if by is None else f"by {by!r}"
    return f"user {user!r} is no longer an administrator (changed {changed})"


def user_disabled(user: str, by: str) -> str:
    return f"user {user!r} disabled by {by!r}"


def approval_withdrawn(user: str, by: str) -> str:
    return f"approval of user {user!r} withdrawn by {by!r}"


def user_deleted(user: str, by: str | None) -> str:
    """``by``: the administrator who deleted the user, None from the command line."""
    return f"user {user!r} deleted {_COMMAND_LINE}" if by is None else f"user {user!r} deleted by {by!r}"


def signed_out(user: str) -> str:
    return f"user {user!r} signed out"


def token_revoked(token_id: int, by: str | None) -> str:
    """``by``: the user who revoked it, None from the command line."""
    return f"API token {token_id} revoked {_COMMAND_LINE}" if by is None else f"API token {token_id} revoked by {by!r}"


def session_ended_by_admin(by: str) -> str:
    return f"an administrator ({by!r}) ended the session"


def idle(seconds: float) -> str:
    return f"no input from the browser for {seconds:g} s"


def slow_client(seconds: float) -> str:
    return f"a WebSocket write did not complete within {seconds:g} s"


def serial_taken_over(why: str) -> str:
    """``why``: how the stream ended, :data:`SERIAL_STREAM_CLOSED` or libvirt's error (its own words)."""
    return f"the serial console was taken over ({why})"


# Each part of the words above (parts are joined by "; ", as a VM's end and what closed first are) and its
# kind, the pages' ``action_detail.<kind>``. Details of other words (a libvirt error's own) stay as they are.
_NAME = r"['\"](?P<{}>.+?)['\"]"
_VM, _USER, _BY = _NAME.format("vm"), _NAME.format("user"), _NAME.format("by")
_LIFECYCLE = rf"(?P<lifecycle>{re.escape(LIFECYCLE_EVENT)})?"
_SECONDS = r"(?P<seconds>\d+(?:\.\d+)?)"
PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(pattern)) for kind, pattern in (
    ("vm_stopped", rf"VM {_VM} stopped{_LIFECYCLE}"),
    ("vm_crashed", rf"VM {_VM} crashed{_LIFECYCLE}"),
    ("vm_undefined", rf"VM {_VM} undefined{_LIFECYCLE}"),
    ("vm_reverted", rf"VM {_VM} was reverted to a snapshot{_LIFECYCLE}"),
    ("vm_migrated", rf"VM {_VM} was migrated to another host{_LIFECYCLE}"),
    ("vnc_server_closed", re.escape(VNC_SERVER_CLOSED)),
    ("serial_closed", re.escape(SERIAL_CLOSED)),
    ("vm_not_running", rf"VM {_VM} is not running and auto-start is off"),
    ("vm_deleted_by", rf"VM {_VM} deleted by {_BY}"),
    ("vm_deleted_cli", rf"VM {_VM} deleted {_COMMAND_LINE}"),
    ("vm_given", rf"VM {_VM} given to {_NAME.format('owner')} \(by {_BY}\)"),
    ("vm_unowned", rf"VM {_VM} has no owner now \(by {_BY}\)"),
    ("admin_no_longer", rf"user {_USER} is no longer an administrator \(changed by {_BY}\)"),
    ("admin_no_longer_cli", rf"user {_USER} is no longer an administrator \(changed {_COMMAND_LINE}\)"),
    ("user_disabled", rf"user {_USER} disabled by {_BY}"),
    ("approval_withdrawn", rf"approval of user {_USER} withdrawn by {_BY}"),
    ("user_deleted", rf"user {_USER} deleted by {_BY}"),
    ("user_deleted_cli", rf"user {_USER} deleted {_COMMAND_LINE}"),
    ("signed_out", rf"user {_USER} signed out"),
    ("token_revoked", rf"API token (?P<token>\d+) revoked by {_BY}"),
    ("token_revoked_cli", rf"API token (?P<token>\d+) revoked {_COMMAND_LINE}"),
    ("session_ended_by_admin", rf"an administrator \({_BY}\) ended the session"),
    ("idle", rf"no input from the browser for {_SECONDS} s"),
    ("server_shutdown", re.escape(SERVER_SHUTDOWN)),
    ("slow_client", rf"a WebSocket write did not complete within {_SECONDS} s"),
    ("taken_over", re.escape(TAKEN_OVER)),
    ("vnc_connection_closed", re.escape(VNC_CONNECTION_CLOSED)),
    ("serial_stream_ended", re.escape(SERIAL_STREAM_ENDED)),
    ("serial_migration_failed", re.escape(SERIAL_MIGRATION_FAILED)),
    ("serial_taken_over", re.escape(serial_taken_over(SERIAL_STREAM_CLOSED))),
    ("serial_taken_over_why", r"the serial console was taken over \((?P<why>.+)\)"),
    ("console_failed", re.escape(CONSOLE_FAILED)),
    ("console_work_ended_early", re.escape(CONSOLE_WORK_ENDED_EARLY)),
    ("console_not_admitted", re.escape(CONSOLE_NOT_ADMITTED)),
    ("access_withdrawn_unheard", r"access withdrawn on another limen instance while this one could not hear it "
                                 r"\(Redis unreachable\)"),
    ("found_on_reread", r"found when the database was read again"),
))
