"""The rules of one sign-in throttle key, as pure functions of its count and the time (no storage, no clock).

A key (a user name at an address, or an address) holds a :class:`Count`: decided failures, attempts in
flight (reserved, not yet decided), the end of its block, and when it last changed. An attempt is
admitted or refused *before* its password is evaluated::

    blocked (now < blocked_until)                       refused until blocked_until
    failures < limit, failures + in_flight >= limit     refused for in_flight_wait: in flight, they may reach it
    failures >= limit (block over), one in flight       refused for in_flight_wait: past the limit, one at a time
    otherwise                                           admitted: in_flight + 1

Deciding an admitted attempt turns its reservation into a failure (``failed``) or gives it back
(``released``). The failure that reaches the limit blocks the key for ``block_seconds``; each further
one doubles the block, up to ``block_max_seconds``. Reservations are dropped once the key has not
changed for ``in_flight_ttl`` (their process died mid-attempt; one count per key cannot tell them
apart), and a key is forgotten ``forget_after`` seconds after its last change or the end of its block,
whichever is later.

The Redis store runs these same rules in Lua (``throttle_store.py``); a contract test holds the two equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    block_seconds: float
    block_max_seconds: float
    forget_after: float
    # An attempt takes well under a second (one argon2 verify); a reservation this old belongs to a
    # process that died mid-attempt, and must not hold the key forever (LIMEN_LOGIN_ATTEMPT_TIMEOUT).
    in_flight_ttl: float = 60.0
    # How long a refusal for attempts in flight asks to wait: they are decided within about that. Not the
    # block they would start if they all failed: most are a person's correct password, sent from two tabs or
    # retried at once, and the page would count down minutes for a block that never comes.
    in_flight_wait: float = 1.0

    def block_for(self, failures: int, limit: int) -> float:
        """The block that the ``failures``-th failure starts (``failures >= limit``)."""
        doublings = min(failures - limit, 64)
        return min(self.block_max_seconds, self.block_seconds * 2.0**doublings)


@dataclass(frozen=True, slots=True)
class Count:
    failures: int = 0
    in_flight: int = 0
    blocked_until: float = 0.0
    updated_at: float = 0.0

    @property
    def is_empty(self) -> bool:
        return self.failures == 0 and self.in_flight == 0

    def kept_until(self, policy: ThrottlePolicy) -> float:
        """When the key can be dropped from storage if nothing happens to it meanwhile."""
        return max(self.updated_at, self.blocked_until) + max(policy.forget_after, policy.in_flight_ttl)


def current(count: Count, policy: ThrottlePolicy, now: float) -> Count:
    """``count`` as of ``now``: stale reservations dropped, old failures forgotten."""
    if count.in_flight and now - count.updated_at >= policy.in_flight_ttl:
        count = replace(count, in_flight=0)
    if not count.in_flight and now - max(count.updated_at, count.blocked_until) >= policy.forget_after:
        return Count()
    return count


def refusal(count: Count, limit: int, policy: ThrottlePolicy, now: float) -> float | None:
    """Seconds to wait before another attempt is admitted, or None if one is admitted now.

    When attempts in flight fill the limit, the wait is until they are decided (``in_flight_wait``); if they
    fail, the next attempt is refused for the block they started.
    """
    if now < count.blocked_until:
        return count.blocked_until - now
    if count.in_flight < max(1, limit - count.failures):
        return None
    return policy.in_flight_wait


def reserved(count: Count, now: float) -> Count:
    return replace(count, in_flight=count.in_flight + 1, updated_at=now)


def failed(count: Count, limit: int, policy: ThrottlePolicy, now: float) -> Count:
    failures = count.failures + 1
    blocked_until = count.blocked_until
    if failures >= limit:
        blocked_until = max(blocked_until, now + policy.block_for(failures, limit))
    return Count(failures, max(0, count.in_flight - 1), blocked_until, now)


def released(count: Count, now: float) -> Count:
    return replace(count, in_flight=max(0, count.in_flight - 1), updated_at=now)


def whole_seconds(wait: float) -> int:
    """A wait as the whole seconds ``Retry-After`` gives (rounded up, at least 1)."""
    return max(1, math.ceil(wait))
