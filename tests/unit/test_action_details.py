"""The audit trail's VM action details, in words."""

from __future__ import annotations

import pytest

from limen.action_details import (
    delete_details,
    edit_details,
    media_details,
    owner_details,
    power_details,
    readable,
)


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
