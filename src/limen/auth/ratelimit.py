"""Sign-in attempts, throttled per user name at a client address and per client address.

Every attempt is reserved on two keys before its password is evaluated: the user name (as typed,
case-blind, whether or not such a user exists) at the address, and the address. Use it so::

    attempt = await limiter.begin(name, address)    # TooManyAttempts (429) at once when either key is full
    ... check the password ...
    await attempt.succeeded()  /  await attempt.failed()  /  await attempt.abandoned()

A correct password clears its user-at-address key and gives the address its place back (it does not
clear the address: one good account must not reset an address that guesses others). A wrong one counts
on both keys; past a key's limit each failure doubles its block (:mod:`limen.auth.throttle`). Failures
at one address never block the same user at another, so nobody can lock someone else out from afar;
an address that guesses at many names is blocked as a whole. The counts live in a
:class:`~limen.auth.throttle_store.ThrottleStore` shared by every instance, and an administrator clears
a user's keys with ``limen user unlock NAME`` or ``POST /api/users/{name}/unlock``, an address's with
``limen user unlock --address ADDRESS`` or ``POST /api/addresses/{address}/unlock``.
"""

from __future__ import annotations

from typing import Any

import anyio

from limen.auth.throttle import whole_seconds
from limen.auth.throttle_store import ThrottleKey, ThrottleStore, throttle_address, user_hash
from limen.clock import Clock
from limen.errors import ErrorCode, LimenError


class TooManyAttempts(LimenError):
    """Sign-in refused for ``retry_after`` seconds; the JSON body carries them as ``retry_after`` too."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(ErrorCode.TOO_MANY_ATTEMPTS, f"sign-in is refused for {retry_after} s")
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "retry_after": self.retry_after}


class LoginAttempt:
    """One reserved attempt: call exactly one of :meth:`succeeded`, :meth:`failed`, :meth:`abandoned`."""

    def __init__(self, limiter: LoginRateLimiter, user_key: ThrottleKey, address_key: ThrottleKey) -> None:
        self._limiter = limiter
        self._user_key = user_key
        self._address_key = address_key
        self._decided = False

    async def _decide(self, succeeded: bool | None) -> None:
        if self._decided:
            return
        self._decided = True
        store, now = self._limiter.store, self._limiter.clock()
        # Shielded: a request cancelled now (its client went away) must still settle its reservation.
        with anyio.CancelScope(shield=True):
            if succeeded is None:
                await store.succeed([self._user_key, self._address_key], [], now)
            elif succeeded:
                await store.succeed([self._address_key], [self._user_key], now)
            else:
                await store.fail([self._user_key, self._address_key], now)

    async def succeeded(self) -> None:
        await self._decide(True)

    async def failed(self) -> None:
        await self._decide(False)

    async def abandoned(self) -> None:
        """The password was never judged (an error on the way): give the places back, count nothing."""
        await self._decide(None)


class LoginRateLimiter:
    def __init__(self, store: ThrottleStore, *, max_per_user: int, max_per_address: int, clock: Clock) -> None:
        self.store = store
        self.max_per_user = max_per_user
        self.max_per_address = max_per_address
        self.clock = clock

    async def begin(self, user_name: str, address: str) -> LoginAttempt:
        """Reserves an attempt of ``user_name`` from ``address``; raises :class:`TooManyAttempts` instead
        when either key has no free place (then nothing is reserved and nothing is counted)."""
        where = throttle_address(address)
        user_key = ThrottleKey(where, user_hash(user_name), self.max_per_user)
        address_key = ThrottleKey(where, None, self.max_per_address)
        wait = await self.store.reserve([user_key, address_key], self.clock())
        if wait is not None:
            raise TooManyAttempts(whole_seconds(wait))
        return LoginAttempt(self, user_key, address_key)

    async def unlock(self, user_name: str) -> int:
        """Forgets the user's failures at every address; returns how many keys there were."""
        return await self.store.clear_user(user_name)

    async def unlock_address(self, address: str) -> tuple[str, int]:
        """Forgets every failure from ``address`` (an IP address): the address's own block and each user name's
        there. Returns the unit throttled (an IPv6 address's /64) and how many keys there were."""
        where = throttle_address(address)
        return where, await self.store.clear_address(where)

    async def check(self) -> None:
        await self.store.check()

    async def close(self) -> None:
        await self.store.close()
