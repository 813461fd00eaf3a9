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
    migrate_target,
    owner_deleted_details,
    owner_details,
    phrases,
    power_details,
    readable,
    resize_details,
    resized_details,
)
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


@pytest.mark.parametrize(("source", "target"), [("a", "b.example"), ("node-1", "10.0.0.7"), ("h", "from-x-to-y")])
def test_a_moves_target_reads_back(source: str, target: str) -> None:
    assert migrate_target(migrate_details(source, target)) == target


@pytest.mark.parametrize("details", ["", "forced", "on host b", "from a", "from a to b; forced", "from a to b c"])
def test_other_words_name_no_moves_target(details: str) -> None:
    assert migrate_target(details) is None


@pytest.mark.parametrize(("action", "details"), [
    ("snapshot", "forced"),  # a snapshot's name, which may read like a phrase
    ("edit", "weird words"),
    ("edit", "vcpus 1 → 2; and more"),  # one part unknown: the whole shows as it is
    ("start", ""),
])
def test_details_that_are_not_phrases_read_as_none(action: str, details: str) -> None:
    assert phrases(action, details) is None


def test_other_end_details_stay_as_they_are() -> None:
    assert end_phrases("HYPERVISOR_UNAVAILABLE", "libvirt: cannot connect to the monitor") is None
    assert end_phrases("VM_STOPPED", "VM 'web' stopped; and something new") is None  # one part unknown
    assert end_phrases("OK", None) is None


@pytest.mark.parametrize("language", ["en", "ko"])
def test_every_phrase_has_words_in_each_language(language: str) -> None:
    words = catalogue(language)
    assert {kind for kind in PHRASE_KINDS if kind != "change" and f"action_detail.{kind}" not in words} == set()
