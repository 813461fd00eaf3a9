"""Failed sign-ins, counted per user name and per client address over a sliding window.

When either count reaches its limit, sign-in is refused (TOO_MANY_ATTEMPTS, 429 with ``Retry-After``)
until the oldest failure in the window ages out, whatever the password: a correct password does not
get through a lock. The user name is counted as typed, whether or not such a user exists, so the answers
tell nothing about which users exist. Counts live in this process (several limen instances each count
their own), and the table is bounded so a flood of names cannot exhaust memory.
"""

from __future__ import annotations

import math
import unicodedata
from collections import deque

from limen.auth.clock import Clock
from limen.errors import ErrorCode, LimenError

MAX_TRACKED_KEYS = 50_000


class TooManyAttempts(LimenError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(ErrorCode.TOO_MANY_ATTEMPTS, f"sign-in is locked for {retry_after} s")
        self.retry_after = retry_after


class _Window:
    """Failure times per key, oldest first, each key holding at most ``limit`` of them."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def retry_after(self, key: str, now: float) -> float | None:
        times = self._recent(key, now)
        if times is None or len(times) < self.limit:
            return None
        return times[0] + self.window - now

    def add(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times is None:
            if len(self._failures) >= MAX_TRACKED_KEYS:
                self._evict(now)
            times = self._failures[key] = deque(maxlen=self.limit)
        times.append(now)

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)

    def _evict(self, now: float) -> None:
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) >= MAX_TRACKED_KEYS:  # all still fresh: forget the oldest-tracked
            del self._failures[next(iter(self._failures))]


def _user_key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()[:256]


class LoginRateLimiter:
    def __init__(self, *, max_per_user: int, max_per_address: int, window: float, clock: Clock) -> None:
        self._users = _Window(max_per_user, window)
        self._addresses = _Window(max_per_address, window)
        self.clock = clock

    def check(self, user_name: str, address: str) -> None:
        """Raises :class:`TooManyAttempts` while the user name or the address is locked."""
        now = self.clock()
        waits = [
            wait for wait in (self._users.retry_after(_user_key(user_name), now),
                              self._addresses.retry_after(address, now))
            if wait is not None
        ]
        if waits:
            raise TooManyAttempts(max(1, math.ceil(max(waits))))

    def failed(self, user_name: str, address: str) -> None:
        now = self.clock()
        self._users.add(_user_key(user_name), now)
        self._addresses.add(address, now)

    def succeeded(self, user_name: str) -> None:
        """A correct sign-in clears the user's count (not the address's: one good account must not
        reset the count of an address that is guessing others)."""
        self._users.clear(_user_key(user_name))
