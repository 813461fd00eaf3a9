"""The behaviour every :class:`~limen.auth.throttle_store.ThrottleStore` must have; a test module supplies
``store`` (a store with :data:`POLICY`) and subclasses :class:`ThrottleStoreContract`. Time is passed in."""

from __future__ import annotations

import asyncio

from limen.auth.throttle import ThrottlePolicy
from limen.auth.throttle_store import ThrottleKey, ThrottleStore, user_hash

POLICY = ThrottlePolicy(block_seconds=60, block_max_seconds=500, forget_after=300, in_flight_ttl=30)
NOW = 1_800_000_000.0
USER_LIMIT, ADDRESS_LIMIT = 3, 6


def keys(name: str, address: str = "192.0.2.1") -> list[ThrottleKey]:
    return [ThrottleKey(address, user_hash(name), USER_LIMIT), ThrottleKey(address, None, ADDRESS_LIMIT)]


async def fail(store: ThrottleStore, name: str, now: float, address: str = "192.0.2.1") -> None:
    assert await store.reserve(keys(name, address), now) is None
    await store.fail(keys(name, address), now)


class ThrottleStoreContract:
    async def test_failures_block_at_the_limit_and_double_after(self, store: ThrottleStore) -> None:
        for _ in range(USER_LIMIT):
            await fail(store, "alice", NOW)
        assert await store.reserve(keys("alice"), NOW + 10) == 50
        await fail(store, "alice", NOW + 60)
        assert await store.reserve(keys("alice"), NOW + 60) == 120
        await fail(store, "alice", NOW + 180)
        assert await store.reserve(keys("alice"), NOW + 180) == 240

    async def test_parallel_attempts_cannot_pass_the_limit(self, store: ThrottleStore) -> None:
        answers = await asyncio.gather(*(store.reserve(keys("alice"), NOW) for _ in range(61)))
        assert sum(answer is None for answer in answers) == USER_LIMIT
        # Refused until the three in flight are decided, not for the block they start only if they fail.
        assert {answer for answer in answers if answer is not None} == {POLICY.in_flight_wait}

    async def test_a_refusal_reserves_nothing_on_the_other_key(self, store: ThrottleStore) -> None:
        for _ in range(USER_LIMIT):
            await fail(store, "alice", NOW)
        for _ in range(20):
            assert await store.reserve(keys("alice"), NOW) is not None
        # The address holds alice's 3 failures only: 3 more names get through before it is full.
        for index in range(ADDRESS_LIMIT - USER_LIMIT):
            await fail(store, f"guess{index}", NOW)
        assert await store.reserve(keys("bob"), NOW) == 60

    async def test_another_address_is_not_blocked(self, store: ThrottleStore) -> None:
        for _ in range(USER_LIMIT):
            await fail(store, "alice", NOW)
        assert await store.reserve(keys("alice"), NOW) is not None
        assert await store.reserve(keys("ALICE", "198.51.100.9"), NOW) is None

    async def test_success_clears_the_user_and_releases_the_address(self, store: ThrottleStore) -> None:
        for _ in range(USER_LIMIT - 1):
            await fail(store, "alice", NOW)
        for index in range(ADDRESS_LIMIT - USER_LIMIT):
            await fail(store, f"guess{index}", NOW)
        assert await store.reserve(keys("Alice"), NOW) is None
        alice_key, address_key = keys("alice")
        await store.succeed([address_key], [alice_key], NOW)
        # alice starts again from 0; the address keeps its 5 failures: one place left.
        assert await store.reserve(keys("alice"), NOW) is None
        assert await store.reserve(keys("alice"), NOW) == POLICY.in_flight_wait  # until that one is decided

    async def test_a_released_attempt_counts_nothing(self, store: ThrottleStore) -> None:
        for _ in range(10):
            assert await store.reserve(keys("alice"), NOW) is None
            await store.succeed(keys("alice"), [], NOW)
        for _ in range(USER_LIMIT):
            await fail(store, "alice", NOW)
        assert await store.reserve(keys("alice"), NOW) == 60

    async def test_reservations_of_a_dead_process_expire(self, store: ThrottleStore) -> None:
        for _ in range(USER_LIMIT):
            assert await store.reserve(keys("alice"), NOW) is None  # never decided
        assert await store.reserve(keys("alice"), NOW + 29) is not None
        assert await store.reserve(keys("alice"), NOW + POLICY.in_flight_ttl) is None

    async def test_failures_are_forgotten_after_the_window(self, store: ThrottleStore) -> None:
        for _ in range(USER_LIMIT):
            await fail(store, "alice", NOW)
        assert await store.reserve(keys("alice"), NOW + 60 + 299) is None  # the block is over: one attempt
        await store.succeed(keys("alice"), [], NOW + 60 + 299)
        later = NOW + 60 + 299 + 300
        for _ in range(USER_LIMIT):
            await fail(store, "alice", later)  # three again, not one

    async def test_unlocking_an_address_clears_it_and_every_name_there_and_nothing_elsewhere(
        self, store: ThrottleStore
    ) -> None:
        blocked, other = "192.0.2.1", "192.0.2.10"  # 192.0.2.1 is a prefix of 192.0.2.10: it must not match
        for index in range(ADDRESS_LIMIT):
            await fail(store, f"guess{index}", NOW, blocked)
        await fail(store, "alice", NOW, other)
        assert await store.reserve(keys("bob", blocked), NOW) == 60  # the address is blocked as a whole
        assert await store.clear_address(blocked) == ADDRESS_LIMIT + 1  # its own key and one per name
        assert await store.reserve(keys("bob", blocked), NOW) is None
        assert await store.clear_address(other) == 2  # alice's there, and the address's: left alone before
        assert await store.clear_address("2001:db8::/64") == 0

    async def test_unlock_clears_the_user_at_every_address_and_nobody_else(self, store: ThrottleStore) -> None:
        for address in ("192.0.2.1", "192.0.2.2", "2001:db8::1"):
            for _ in range(USER_LIMIT):
                await fail(store, "Alice", NOW, address)
            await fail(store, "bob", NOW, address)
        assert await store.clear_user("ALICE") == 3
        for address in ("192.0.2.1", "192.0.2.2", "2001:db8::1"):
            assert await store.reserve(keys("alice", address), NOW) is None
        assert await store.clear_user("alice") == 3  # the reservations just made
        assert await store.clear_user("nobody") == 0
        assert await store.clear_user("bob") == 3  # bob's keys were left alone
