"""The rules of how long a client may take to send a request, with the time given by the test."""

from __future__ import annotations

from limen.request_reading import BODY_PROGRESS_BYTES, ReadPhase, RequestReading

TIMEOUT = 10.0


def reading() -> RequestReading:
    return RequestReading(TIMEOUT, max_head_bytes=1000)


def test_the_head_must_be_complete_within_the_timeout_of_the_connection_however_it_trickles() -> None:
    r = reading()
    assert r.deadline is None  # nothing asked yet
    r.request_started(100.0)
    for second in range(1, 10):
        r.request_started(100.0 + second)  # a byte a second: the next "start" changes nothing
        assert r.head_received(1)
    assert r.phase is ReadPhase.HEAD and r.deadline == 110.0
    assert not r.overdue(109.9) and r.overdue(110.0)


def test_a_head_over_its_size_is_reported() -> None:
    r = reading()
    r.request_started(0.0)
    assert r.head_received(1000)
    assert not r.head_received(1)


def test_the_body_gets_the_timeout_again_for_each_progress_step() -> None:
    r = reading()
    r.request_started(0.0)
    r.head_done(5.0)
    assert r.phase is ReadPhase.BODY and r.deadline == 15.0
    r.body_received(BODY_PROGRESS_BYTES - 1, 9.0)
    assert r.deadline == 15.0  # not enough yet
    r.body_received(1, 14.0)
    assert r.deadline == 24.0
    for second in range(15, 24):
        r.body_received(1, float(second))  # a trickle buys nothing
    assert r.overdue(24.0)


def test_an_upload_that_keeps_coming_is_never_overdue() -> None:
    r = reading()
    r.request_started(0.0)
    r.head_done(0.0)
    for second in range(1, 3600):
        r.body_received(BODY_PROGRESS_BYTES, float(second))
        assert not r.overdue(float(second) + 1)


def test_no_deadline_while_the_server_does_not_read_and_a_fresh_one_after() -> None:
    r = reading()
    r.request_started(0.0)
    r.head_done(1.0)
    r.reading_paused()
    assert r.deadline is None and not r.overdue(1000.0)
    r.reading_resumed(1000.0)
    assert r.deadline == 1010.0
    r.reading_resumed(1005.0)  # not paused: nothing changes
    assert r.deadline == 1010.0


def test_between_requests_there_is_no_deadline_until_the_next_one_begins() -> None:
    r = reading()
    r.request_started(0.0)
    r.head_done(1.0)
    r.request_done()
    assert r.phase is ReadPhase.WAITING and r.deadline is None
    r.request_started(50.0)
    assert {r.phase} == {ReadPhase.HEAD} and r.head_bytes == 0 and r.deadline == 60.0
