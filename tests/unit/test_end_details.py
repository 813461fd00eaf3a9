"""Why a console session ended, in limen's own words: each written by one builder, stored as it always was,
and read back as the phrases the Korean audit page words it from."""

from __future__ import annotations

import inspect
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import pytest

from limen import end_details
from limen.action_details import end_phrases
from limen.auth.revocation import Revocation
from limen.console.endpoint import QuotaCheckedStarts
from limen.console.handshake import vm_ended_error
from limen.errors import LimenError
from limen.hypervisor.models import LifecycleKind

# Each builder's words (a builder with its values), exactly as the audit trail stores them, and read back.
_WORDINGS: list[tuple[partial[str], str, list[dict[str, str]]]] = [
    (partial(end_details.vm_ended, "web", LifecycleKind.STOPPED), "VM 'web' stopped (libvirt lifecycle event)",
     [{"kind": "vm_stopped", "vm": "web", "lifecycle": "true"}]),
    (partial(end_details.vm_ended, "web", LifecycleKind.CRASHED, end_details.VNC_SERVER_CLOSED),
     "VM 'web' crashed; its VNC server closed the connection", [{"kind": "vm_crashed", "vm": "web"},
                                                                {"kind": "vnc_server_closed"}]),
    (partial(end_details.vm_ended, "web", LifecycleKind.UNDEFINED, end_details.SERIAL_CLOSED),
     "VM 'web' undefined; its serial console closed", [{"kind": "vm_undefined", "vm": "web"},
                                                       {"kind": "serial_closed"}]),
    (partial(end_details.vm_ended, "web", LifecycleKind.REVERTED),
     "VM 'web' was reverted to a snapshot (libvirt lifecycle event)",
     [{"kind": "vm_reverted", "vm": "web", "lifecycle": "true"}]),
    (partial(end_details.vm_ended, "web", LifecycleKind.MIGRATED, end_details.SERIAL_CLOSED),
     "VM 'web' was migrated to another host; its serial console closed",
     [{"kind": "vm_migrated", "vm": "web"}, {"kind": "serial_closed"}]),
    (partial(end_details.vm_not_running, "web"), "VM 'web' is not running and auto-start is off",
     [{"kind": "vm_not_running", "vm": "web"}]),
    (partial(end_details.vm_deleted, "web", "admin"), "VM 'web' deleted by 'admin'",
     [{"kind": "vm_deleted_by", "vm": "web", "by": "admin"}]),
    (partial(end_details.vm_deleted, "web", None), "VM 'web' deleted from the command line",
     [{"kind": "vm_deleted_cli", "vm": "web"}]),
    (partial(end_details.vm_owner_changed, "web", "Bøb", "admin"), "VM 'web' given to 'Bøb' (by 'admin')",
     [{"kind": "vm_given", "vm": "web", "owner": "Bøb", "by": "admin"}]),
    (partial(end_details.vm_owner_changed, "web", None, "admin"), "VM 'web' has no owner now (by 'admin')",
     [{"kind": "vm_unowned", "vm": "web", "by": "admin"}]),
    (partial(end_details.no_longer_admin, "dave", "admin"),
     "user 'dave' is no longer an administrator (changed by 'admin')",
     [{"kind": "admin_no_longer", "user": "dave", "by": "admin"}]),
    (partial(end_details.no_longer_admin, "dave", None),
     "user 'dave' is no longer an administrator (changed from the command line)",
     [{"kind": "admin_no_longer_cli", "user": "dave"}]),
    (partial(end_details.user_disabled, "o'neil", "admin"), "user \"o'neil\" disabled by 'admin'",  # repr's "
     [{"kind": "user_disabled", "user": "o'neil", "by": "admin"}]),
    (partial(end_details.approval_withdrawn, "eve", "admin"), "approval of user 'eve' withdrawn by 'admin'",
     [{"kind": "approval_withdrawn", "user": "eve", "by": "admin"}]),
    (partial(end_details.user_deleted, "bob", "admin"), "user 'bob' deleted by 'admin'",
     [{"kind": "user_deleted", "user": "bob", "by": "admin"}]),
    (partial(end_details.user_deleted, "bob", None), "user 'bob' deleted from the command line",
     [{"kind": "user_deleted_cli", "user": "bob"}]),
    (partial(end_details.signed_out, "bob"), "user 'bob' signed out", [{"kind": "signed_out", "user": "bob"}]),
    (partial(end_details.password_reset_cli, "bob"), "the password of user 'bob' was set from the command line",
     [{"kind": "password_reset_cli", "user": "bob"}]),
    (partial(end_details.token_revoked, 12, "bob"), "API token 12 revoked by 'bob'",
     [{"kind": "token_revoked", "token": "12", "by": "bob"}]),
    (partial(end_details.token_revoked, 12, None), "API token 12 revoked from the command line",
     [{"kind": "token_revoked_cli", "token": "12"}]),
    (partial(end_details.session_ended_by_admin, "admin"), "an administrator ('admin') ended the session",
     [{"kind": "session_ended_by_admin", "by": "admin"}]),
    (partial(end_details.idle, 600.0), "no input from the browser for 600 s", [{"kind": "idle", "seconds": "600"}]),
    (partial(end_details.slow_client, 2.5), "a WebSocket write did not complete within 2.5 s",
     [{"kind": "slow_client", "seconds": "2.5"}]),
    (partial(str, end_details.SERVER_SHUTDOWN), "limen is shutting down", [{"kind": "server_shutdown"}]),
    (partial(str, end_details.TAKEN_OVER), "another client took over the serial console", [{"kind": "taken_over"}]),
    (partial(str, end_details.VNC_CONNECTION_CLOSED), "the VNC server closed the connection",
     [{"kind": "vnc_connection_closed"}]),
    (partial(str, end_details.SERIAL_STREAM_ENDED), "the serial console stream ended while the VM runs",
     [{"kind": "serial_stream_ended"}]),
    (partial(str, end_details.SERIAL_MIGRATION_FAILED),
     "the serial console was closed for a migration of the VM, which failed: it runs on where it was",
     [{"kind": "serial_migration_failed"}]),
    (partial(end_details.serial_taken_over, end_details.SERIAL_STREAM_CLOSED),
     "the serial console was taken over (libvirt closed the console stream)", [{"kind": "serial_taken_over"}]),
    (partial(end_details.serial_taken_over, "libvirt console stream: aborted"),  # libvirt's words, as they came
     "the serial console was taken over (libvirt console stream: aborted)",
     [{"kind": "serial_taken_over_why", "why": "libvirt console stream: aborted"}]),
    (partial(str, end_details.CONSOLE_FAILED), "unexpected failure in the console", [{"kind": "console_failed"}]),
    (partial(str, end_details.CONSOLE_WORK_ENDED_EARLY), "the console's work ended early",
     [{"kind": "console_work_ended_early"}]),
    (partial(str, end_details.CONSOLE_NOT_ADMITTED), "the console was not admitted",
     [{"kind": "console_not_admitted"}]),
    (partial(str, end_details.ACCESS_WITHDRAWN_UNHEARD),
     "access withdrawn on another limen instance while this one could not hear it (Redis unreachable); "
     "found when the database was read again", [{"kind": "access_withdrawn_unheard"}, {"kind": "found_on_reread"}]),
]


@pytest.mark.parametrize(("build", "stored", "read"), _WORDINGS)
def test_each_wording_is_stored_as_before_and_reads_back_as_its_phrases(
    build: partial[str], stored: str, read: list[dict[str, str]]
) -> None:
    """A wording changed without its pattern (or the other way round) showed English on the Korean page."""
    written = build()
    assert written == stored  # the operator's log keeps its words
    assert end_phrases("ACCESS_REVOKED", written) == read


def test_every_builder_and_every_phrase_is_checked_above() -> None:
    builders = {function for _, function in inspect.getmembers(end_details, inspect.isfunction)
                if function.__module__ == end_details.__name__}
    assert builders - {build.func for build, _, _ in _WORDINGS} == set()
    assert {kind for kind, _ in end_details.PHRASES} == {phrase["kind"] for *_, read in _WORDINGS for phrase in read}


@pytest.mark.parametrize(("how", "code"), [
    (LifecycleKind.STOPPED, "VM_STOPPED"), (LifecycleKind.CRASHED, "VM_STOPPED"),
    (LifecycleKind.REVERTED, "VM_REVERTED"), (LifecycleKind.MIGRATED, "VM_MIGRATED"),
])
def test_a_console_ended_by_its_vm_says_so_in_the_builders_words(how: LifecycleKind, code: str) -> None:
    error = vm_ended_error("web", how, end_details.VNC_SERVER_CLOSED)
    assert (error.code.name, error.details) == (code, end_details.vm_ended("web", how, end_details.VNC_SERVER_CLOSED))


def test_a_console_ended_by_an_unheard_revocation_says_so_in_the_builders_words() -> None:
    error = Revocation.unheard().error()
    assert (error.code.name, error.details) == ("ACCESS_REVOKED", end_details.ACCESS_WITHDRAWN_UNHEARD)


async def test_a_start_asked_by_a_console_not_yet_admitted_is_refused_in_the_builders_words() -> None:
    nobody = SimpleNamespace(principal=None)  # not admitted: nothing else is asked
    starts = QuotaCheckedStarts(cast(Any, None), cast(Any, None), nobody, cast(Any, None), console="VNC")
    with pytest.raises(LimenError) as refused:
        await starts.start_vm("web")
    assert (refused.value.code.name, refused.value.details) == ("FORBIDDEN", end_details.CONSOLE_NOT_ADMITTED)
