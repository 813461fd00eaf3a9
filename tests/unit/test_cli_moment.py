"""How the command line's tables show a time (``cli_output.moment``): this machine's local time to the minute."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from limen.cli_output import moment


@pytest.fixture
def seoul(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Seoul")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_time_is_shown_in_local_time_to_the_minute(seoul: None) -> None:
    assert moment(datetime(2026, 12, 7, 16, 9, 43, 983004, tzinfo=UTC)) == "2026-12-08 01:09"
    assert moment(datetime(2026, 12, 7, 16, 9, tzinfo=timezone(timedelta(hours=-5)))) == "2026-12-08 06:09"


def test_a_time_without_a_zone_is_utc_as_limen_writes_them(seoul: None) -> None:
    assert moment(datetime(2026, 12, 7, 16, 9)) == "2026-12-08 01:09"


def test_a_time_local_time_cannot_show_is_shown_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert moment(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01 00:00 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()
