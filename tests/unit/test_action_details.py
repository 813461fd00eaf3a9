"""The audit trail's VM action details, in words."""

from __future__ import annotations

import pytest

from limen.action_details import (
    PHRASE_KINDS,
    cd_drive_added_details,
    change_details,
    console_start_details,
    delete_details,
    edit_details,
    end_phrases,
    media_details,
    migrate_details,
    owner_deleted_details,
    owner_details,
    phrases,
    power_details,
    readable,
    resize_details,
    resized_details,
)
from limen.console.handshake import vm_ended_error
from limen.hypervisor.models import LifecycleKind
from limen.i18n import catalogue


def test_new_details_are_words() -> None:
    assert power_details(True) == "forced"
    assert power_details(False) == ""
    assert delete_details(True) == "disks deleted too"
    assert delete_details(False) == "disks kept"
    assert owner_details("Ünï") == "given to Ünï"
    assert owner_details(None) == "no owner"
    assert media_details("debian.iso", True) == "cd → debian.iso (forced)"
    assert media_details(None, False) == "cd → ejected"
    assert edit_details({"vcpus": 2, "boot_order": ["cdrom", "hd"], "autostart": True}) == (
        "vcpus → 2; boot_order → cdrom,hd; autostart → true")


@pytest.mark.parametrize(("old", "words"), [
    ("force=True", "forced"),
    ("force=False", ""),
    ("delete_disks=True", "disks deleted too"),
    ("delete_disks=False", "disks kept"),
    ("owner='bob'", "given to bob"),
    ("owner=None", "no owner"),
    ("iso='grub demo.iso' force=False", "cd → grub demo.iso"),
    ("iso=None force=True", "cd → ejected (forced)"),
    ('{"vcpus":2,"memory_mib":1024}', "vcpus → 2; memory_mib → 1024"),
])
def test_rows_written_in_the_old_form_read_as_words(old: str, words: str) -> None:
    assert readable(old) == words


@pytest.mark.parametrize("kept", [
    "", "forced", "vcpus 1 → 2", "s1", "vda 1073741824 → 2147483648 bytes", "force=maybe", "{not json}",
    "note: force=True and more",
])
def test_details_already_in_words_stay(kept: str) -> None:
    assert readable(kept) == kept


@pytest.mark.parametrize(("action", "details", "read"), [
    ("stop", power_details(True), [{"kind": "forced"}]),
    ("delete", delete_details(True), [{"kind": "disks_deleted"}]),
    ("delete", delete_details(False), [{"kind": "disks_kept"}]),
    ("set_owner", owner_details("Ünï x"), [{"kind": "given_to", "owner": "Ünï x"}]),
    ("set_owner", owner_details(None), [{"kind": "no_owner"}]),
    ("set_owner", owner_deleted_details("bob"), [{"kind": "owner_deleted", "owner": "bob"}]),
    ("start", console_start_details("serial"), [{"kind": "from_console", "console": "serial"}]),
    ("media", media_details(None, True), [{"kind": "change", "field": "cd", "new": "ejected", "forced": "true"}]),
    ("media", change_details("cd", "empty", "grub demo.iso"),
     [{"kind": "change", "field": "cd", "old": "empty", "new": "grub demo.iso"}]),
    ("media", cd_drive_added_details("a.iso"), [{"kind": "cd_drive_added", "iso": "a.iso"}]),
    ("edit", edit_details({"vcpus": 2, "boot_order": ["cdrom", "hd"]}),
     [{"kind": "change", "field": "vcpus", "new": "2"}, {"kind": "change", "field": "boot_order", "new": "cdrom,hd"}]),
    ("edit", edit_details({}), [{"kind": "nothing_asked"}]),
    ("edit", "; ".join([change_details("vcpus", 1, 2, pending=True), change_details("autostart", "false", "true")]),
     [{"kind": "change", "field": "vcpus", "old": "1", "new": "2", "pending": "true"},
      {"kind": "change", "field": "autostart", "old": "false", "new": "true"}]),
    ("finish-install", change_details("boot_order", "-", "hd"),
     [{"kind": "change", "field": "boot_order", "old": "-", "new": "hd"}]),
    ("resize-disk", resize_details("vda", 2**31), [{"kind": "resize_asked", "target": "vda", "bytes": str(2**31)}]),
    ("resize-disk", resized_details("vda", 2**30, 2**31),
     [{"kind": "resized", "target": "vda", "old": str(2**30), "new": str(2**31)}]),
    ("migrate", migrate_details("a", "b.example"), [{"kind": "migrate", "source": "a", "target": "b.example"}]),
])
def test_every_writers_words_read_back_as_phrases(action: str, details: str, read: list[dict[str, str]]) -> None:
    """What the pages word in their own language (``details_phrases``): each writer's words, read back."""
    assert phrases(action, details) == read


@pytest.mark.parametrize(("action", "details"), [
    ("snapshot", "forced"),  # a snapshot's name, which may read like a phrase
    ("edit", "weird words"),
    ("edit", "vcpus 1 → 2; and more"),  # one part unknown: the whole shows as it is
    ("start", ""),
])
def test_details_that_are_not_phrases_read_as_none(action: str, details: str) -> None:
    assert phrases(action, details) is None


# A console session's end_details as limen's own errors word them (the revocations' reasons as limen.api and the
# command line write them), and the phrases the Korean audit page words them from.
@pytest.mark.parametrize(("code", "details", "read"), [
    ("VM_STOPPED", vm_ended_error("web", LifecycleKind.STOPPED, " (libvirt lifecycle event)").details,
     [{"kind": "vm_stopped", "vm": "web", "lifecycle": "true"}]),
    ("VM_STOPPED", vm_ended_error("web", LifecycleKind.CRASHED, "; its VNC server closed the connection").details,
     [{"kind": "vm_crashed", "vm": "web"}, {"kind": "vnc_server_closed"}]),
    ("VM_STOPPED", vm_ended_error("web", LifecycleKind.UNDEFINED, "; its serial console closed").details,
     [{"kind": "vm_undefined", "vm": "web"}, {"kind": "serial_closed"}]),
    ("VM_REVERTED", vm_ended_error("web", LifecycleKind.REVERTED, " (libvirt lifecycle event)").details,
     [{"kind": "vm_reverted", "vm": "web", "lifecycle": "true"}]),
    ("VM_MIGRATED", vm_ended_error("web", LifecycleKind.MIGRATED, "; its serial console closed").details,
     [{"kind": "vm_migrated", "vm": "web"}, {"kind": "serial_closed"}]),
    ("VM_NOT_RUNNING", "VM 'web' is not running and auto-start is off", [{"kind": "vm_not_running", "vm": "web"}]),
    ("VM_NOT_FOUND", "VM 'web' deleted by 'admin'", [{"kind": "vm_deleted_by", "vm": "web", "by": "admin"}]),
    ("VM_NOT_FOUND", "VM 'web' deleted from the command line", [{"kind": "vm_deleted_cli", "vm": "web"}]),
    ("ACCESS_REVOKED", "VM 'web' given to 'Bøb' (by 'admin')",
     [{"kind": "vm_given", "vm": "web", "owner": "Bøb", "by": "admin"}]),
    ("ACCESS_REVOKED", "VM 'web' has no owner now (by 'admin')", [{"kind": "vm_unowned", "vm": "web", "by": "admin"}]),
    ("ACCESS_REVOKED", "user 'dave' is no longer an administrator (changed by 'admin')",
     [{"kind": "admin_no_longer", "user": "dave", "by": "admin"}]),
    ("ACCESS_REVOKED", "user 'dave' is no longer an administrator (changed from the command line)",
     [{"kind": "admin_no_longer_cli", "user": "dave"}]),
    ("ACCESS_REVOKED", "user \"o'neil\" disabled by 'admin'",  # repr quotes a name holding ' with "
     [{"kind": "user_disabled", "user": "o'neil", "by": "admin"}]),
    ("ACCESS_REVOKED", "approval of user 'eve' withdrawn by 'admin'",
     [{"kind": "approval_withdrawn", "user": "eve", "by": "admin"}]),
    ("ACCESS_REVOKED", "user 'bob' deleted by 'admin'", [{"kind": "user_deleted", "user": "bob", "by": "admin"}]),
    ("ACCESS_REVOKED", "user 'bob' deleted from the command line", [{"kind": "user_deleted_cli", "user": "bob"}]),
    ("ACCESS_REVOKED", "user 'bob' signed out", [{"kind": "signed_out", "user": "bob"}]),
    ("ACCESS_REVOKED", "API token 12 revoked by 'bob'", [{"kind": "token_revoked", "token": "12", "by": "bob"}]),
    ("ACCESS_REVOKED", "API token 12 revoked from the command line", [{"kind": "token_revoked_cli", "token": "12"}]),
    ("SESSION_TERMINATED", "an administrator ('admin') ended the session",
     [{"kind": "session_ended_by_admin", "by": "admin"}]),
    ("IDLE_TIMEOUT", "no input from the browser for 600 s", [{"kind": "idle", "seconds": "600"}]),
    ("SERVER_SHUTDOWN", "limen is shutting down", [{"kind": "server_shutdown"}]),
    ("SLOW_CLIENT", "a WebSocket write did not complete within 2.5 s", [{"kind": "slow_client", "seconds": "2.5"}]),
    ("SESSION_TAKEN_OVER", "another client took over the serial console", [{"kind": "taken_over"}]),
])
def test_a_console_sessions_end_reads_back_as_phrases(code: str, details: str, read: list[dict[str, str]]) -> None:
    """The Korean audit page showed these in English beside actions already in Korean."""
    assert end_phrases(code, details) == read


def test_other_end_details_stay_as_they_are() -> None:
    assert end_phrases("HYPERVISOR_UNAVAILABLE", "libvirt: cannot connect to the monitor") is None
    assert end_phrases("VM_STOPPED", "VM 'web' stopped; and something new") is None  # one part unknown
    assert end_phrases("OK", None) is None


@pytest.mark.parametrize("language", ["en", "ko"])
def test_every_phrase_has_words_in_each_language(language: str) -> None:
    words = catalogue(language)
    assert {kind for kind in PHRASE_KINDS if kind != "change" and f"action_detail.{kind}" not in words} == set()
