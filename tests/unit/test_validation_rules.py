"""Each of limen's own validation rules names itself in the error (``rule``: limen.errors.Rule), for the
web pages to say it in their language at the field; the details stay as they were, in English."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from limen.auth.names import clean_name
from limen.auth.passwords import validate_password
from limen.auth.users import clean_user_name
from limen.errors import RANGE_LIMITS, Rule, ValidationFailed
from limen.host_registry import check_host
from limen.hypervisor.service import check_name
from limen.hypervisor.snapshots import check_description, check_snapshot_name
from limen.i18n import LANGUAGE_CODES, catalogue
from limen.isos import check_new_name


@pytest.mark.parametrize(("check", "field", "rule", "details"), [
    (lambda: clean_name("name", "", 64), "name", {"kind": "length", "min": 1, "max": 64}, "must not be empty"),
    (lambda: clean_name("name", "n" * 65, 64), "name", {"kind": "length", "min": 1, "max": 64}, "at most 64"),
    (lambda: clean_name("name", " bob", 64), "name", {"kind": "no_edge_space"}, "white space"),
    (lambda: clean_name("name", "bo\u200bb", 64), "name", {"kind": "no_control_chars"}, "invisible"),
    (lambda: clean_user_name("CLI:bob"), "name", {"kind": "reserved_prefix", "prefix": "cli:"}, "'cli:'"),
    # A browser removes dot segments from /api/users/../quota: such a user could not be managed from the pages.
    (lambda: clean_user_name(".."), "name", {"kind": "dot_segment"}, "'..'"),
    (lambda: clean_user_name("."), "name", {"kind": "dot_segment"}, "'.'"),
    (lambda: validate_password("short"), "password", {"kind": "length", "min": 8, "max": 1024}, "at least 8"),
    # "Letters" alone would admit Hangul to an English reader: the English text says which ones.
    (lambda: check_snapshot_name("스냅샷"), "name", {"kind": "vm_name"}, "letters a–z, A–Z, digits"),
    (lambda: check_name("웹-1"), "name", {"kind": "vm_name"}, "letters a–z, A–Z, digits"),
    (lambda: check_host("호스트", None, None), "name", {"kind": "host_name"}, "letters a–z, A–Z, digits"),
    (lambda: check_description("x" * 5000), "description", {"kind": "length", "min": 0, "max": 1000}, "at most"),
    (lambda: check_description("a\x07b"), "description", {"kind": "no_control_chars"}, "control"),
    (lambda: check_new_name("../x.iso"), "name", {"kind": "file_name"}, "not a file name"),
    (lambda: check_new_name("a\x01.iso"), "name", {"kind": "no_control_chars"}, "control"),
    (lambda: check_new_name(".x.iso"), "name", {"kind": "hidden_name"}, "dot"),
    (lambda: check_new_name("가" * 70 + ".iso"), "name", {"kind": "max_bytes", "max": 200}, "200 bytes"),
    (lambda: check_new_name("notes.txt"), "name", {"kind": "iso_suffix"}, ".iso or .img"),
])
def test_the_rule_broken_comes_with_the_error(
    check: Callable[[], Any], field: str, rule: dict[str, Any], details: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check()
    body = refused.value.to_dict()
    assert (body["field"], body["rule"]) == (field, rule)
    assert details in body["details"]


def test_every_rule_has_words_in_both_languages() -> None:
    keys = [f"rule.{kind.value}" for kind in Rule] + [f"rule.range.{limit}" for limit in RANGE_LIMITS]
    for lang in LANGUAGE_CODES:
        assert [key for key in keys if key not in catalogue(lang)] == [], lang
