"""The rules of one throttle key (limen.auth.throttle), as numbers: no store, no clock."""

from __future__ import annotations

from limen.auth.throttle import Count, ThrottlePolicy, current, failed, refusal, released, reserved, whole_seconds

POLICY = ThrottlePolicy(block_seconds=60, block_max_seconds=500, forget_after=300, in_flight_ttl=30)
LIMIT = 3


def fail_times(count: Count, times: int, now: float) -> Count:
    for _ in range(times):
        assert refusal(count, LIMIT, POLICY, now) is None
        count = failed(reserved(count, now), LIMIT, POLICY, now)
    return count


def test_attempts_in_flight_take_places_before_they_are_decided() -> None:
    count = Count()
    for _ in range(LIMIT):
        assert refusal(count, LIMIT, POLICY, 0) is None
        count = reserved(count, 0)
    # Full: a fourth is refused at once, until the three are decided (not for the block they would start if
    # they all failed: they may be one person's correct password from three tabs).
    assert refusal(count, LIMIT, POLICY, 0) == POLICY.in_flight_wait == 1
    count = released(count, 1)
    assert refusal(count, LIMIT, POLICY, 1) is None


def test_the_limit_blocks_and_each_further_failure_doubles_the_block_up_to_the_cap() -> None:
    count = fail_times(Count(), LIMIT, now=0)
    assert count.blocked_until == 60
    assert refusal(count, LIMIT, POLICY, 10) == 50
    blocks = []
    now = 60.0
    for _ in range(5):
        count = current(count, POLICY, now)
        assert refusal(count, LIMIT, POLICY, now) is None  # the block is over: one attempt
        count = reserved(count, now)
        assert refusal(count, LIMIT, POLICY, now) == POLICY.in_flight_wait  # one at a time
        count = failed(count, LIMIT, POLICY, now)
        blocks.append(count.blocked_until - now)
        now = count.blocked_until
    assert blocks == [120, 240, 480, 500, 500]


def test_failures_are_forgotten_after_the_window_from_the_last_failure_or_block() -> None:
    count = fail_times(Count(), LIMIT - 1, now=0)
    assert current(count, POLICY, 299) == count
    assert current(count, POLICY, 300) == Count()
    blocked = fail_times(Count(), LIMIT, now=0)  # blocked until 60: forgotten at 60 + 300
    assert current(blocked, POLICY, 359).failures == LIMIT
    assert current(blocked, POLICY, 360) == Count()


def test_reservations_of_a_dead_process_expire() -> None:
    count = reserved(reserved(reserved(Count(), 0), 0), 0)
    assert refusal(current(count, POLICY, 29), LIMIT, POLICY, 29) is not None
    assert current(count, POLICY, 30).in_flight == 0
    assert refusal(current(count, POLICY, 30), LIMIT, POLICY, 30) is None
    # A late decision of an expired reservation does not go below zero.
    assert released(current(count, POLICY, 30), 30).in_flight == 0


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [whole_seconds(wait) for wait in (0.001, 1.0, 1.2, 295.5)] == [1, 1, 2, 296]
