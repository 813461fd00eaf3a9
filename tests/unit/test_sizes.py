"""A size in bytes reads the same in the command line and on the web pages: limen.sizes.format_size and the
pages' formatSize (web/static/js/stats-series.js) are checked against the same sizes and texts,
web/tests/size-texts.json (web/tests/stats-series.test.mjs reads it too). The Disks page said "1.0 GiB"
where ``limen volumes list`` said "1 GiB" for the same volume, and "1024.0 MiB" beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limen.sizes import format_size

SIZE_TEXTS = Path(__file__).resolve().parents[2] / "web" / "tests" / "size-texts.json"


@pytest.mark.parametrize(("size_bytes", "text"), json.loads(SIZE_TEXTS.read_text()))
def test_a_size_reads_as_the_pages_say_it(size_bytes: float, text: str) -> None:
    assert format_size(size_bytes) == text
