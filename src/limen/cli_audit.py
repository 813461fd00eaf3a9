"""The command line's VM actions in the audit trail (``vm_actions``), as the API writes its own.

The actor is ``cli:<login name>`` (the operating-system account that ran ``limen``); user names starting
with ``cli:`` are refused (:func:`limen.auth.users.clean_user_name`), so no user can pass for the command
line or read its rows as their own. Each action is written once it is over, with its result (``OK`` or the
error code) and its details in words (:mod:`limen.action_details`); a Ctrl-C while the row is written waits
for it (:func:`interrupts_held`). A command killed half-way leaves no row, where the API would leave one
completed as SERVER_LOST; this keeps a running server's sweep of lost actions away from a command that is
still working. A failure to write the row is reported on stderr and does not fail the command, whose work
is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import typer

from limen.audit import OK, ActionTarget, AuditLog
from limen.auth.names import COMMAND_LINE_PREFIX
from limen.clock import system_clock
from limen.db import Database
from limen.errors import LimenError
from limen.hypervisor import Hypervisor
from limen.settings import Settings

T = TypeVar("T")


def command_line_actor() -> str:
    """Who the audit trail names for this command: ``cli:`` and the login name (``cli:root``)."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        login = "unknown"
    return f"{COMMAND_LINE_PREFIX}{login}"


def run_audited(
    runner: Callable[[Settings, Callable[[Hypervisor], Awaitable[T]]], T],
    settings: Settings,
    action: str,
    vm_id: str,
    work: Callable[[Hypervisor, ActionTarget], Awaitable[T]],
) -> T:
    """``runner(settings, operation)`` (the command's own: it opens the hypervisor and prints a LimenError),
    with the action written to the audit trail once it is over. ``work`` names the VM in its target once
    it knows it and may set the details."""
    target = ActionTarget(vm_name=vm_id)
    result = "INTERNAL_ERROR"

    async def operation(hypervisor: Hypervisor) -> T:
        nonlocal result
        try:
            value = await work(hypervisor, target)
        except LimenError as exc:
            result = exc.code.name
            raise
        result = OK
        return value

    try:
        return runner(settings, operation)
    finally:
        record(settings, action, target, result)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) waits for the block: the action is done in libvirt, and its row must say so (a Ctrl-C
    in the write left a VM created with no row). Raised as KeyboardInterrupt once the block is over. Only the
    main thread can handle signals: elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, _frame: pressed.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


def record(settings: Settings, action: str, target: ActionTarget, result_code: str) -> None:
    """Writes the finished action's row (a Ctrl-C waits for it); says so on stderr if it cannot."""
    with interrupts_held():
        _write_row(settings, action, target, result_code)


def _write_row(settings: Settings, action: str, target: ActionTarget, result_code: str) -> None:
    try:
        with audit_log(settings) as audit:
            asyncio.run(audit.vm_action(
                user=command_line_actor(), action=action, vm_name=target.vm_name, vm_uuid=target.vm_uuid,
                result_code=result_code, details=target.details or "",
            ))
    except Exception as exc:  # the VM action is done; its record is second
        typer.echo(f"limen: warning: the {action} was not written to the audit trail: {type(exc).__name__}: {exc}",
                   err=True)


@contextlib.contextmanager
def audit_log(settings: Settings) -> Iterator[AuditLog]:
    """The audit trail of ``settings``' database for one command: its tables made first (a first command on a
    fresh data directory), the database closed after."""
    db = Database(settings.db_url)
    try:
        db.migrate()
        yield AuditLog(db, system_clock)
    finally:
        db.close()
