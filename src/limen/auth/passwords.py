"""Password hashing with argon2id (its cost from the settings; argon2-cffi's defaults unless changed), and the
rules a new password must meet.

A hash or a verify costs ~0.1 s of a core and ``password_hash_memory_kib`` (64 MiB by default) while it runs.
The server runs at most one a core at a time (:meth:`Passwords.verify_async` and the other ``_async`` methods
wait their turn, in order, without holding a thread or a database connection): wrong passwords from many
addresses at once grew the process by 64 MiB each (1.1 GB measured) and held the database's connections for
as long, stalling every request that needed one."""

from __future__ import annotations

import os
import secrets

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from limen.errors import Rule, ValidationFailed, rule
from limen.settings import Settings

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # argon2 would take any length; a bound keeps requests small


def validate_password(password: str) -> None:
    length = rule(Rule.LENGTH, min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed("password", f"must be at least {MIN_PASSWORD_LENGTH} characters", rule=length)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed("password", f"must be at most {MAX_PASSWORD_LENGTH} characters", rule=length)


def generate_password() -> str:
    """A random password for ``limen user ensure-admin``: 24 URL-safe characters (144 bits)."""
    return secrets.token_urlsafe(18)


def hashing_slots() -> int:
    """How many hashes or verifies the server runs at once: one a core (more only queue for the same cores)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class Passwords:
    """Hashes and verifies. Both are CPU work of ~0.1 s: the plain methods are for the command line (or a
    worker thread); the server calls the ``_async`` ones, which take turns (at most ``slots`` at once)."""

    def __init__(self, hasher: PasswordHasher, slots: int | None = None) -> None:
        self._hasher = hasher
        self._dummy_hash: str | None = None
        self._slots = slots or hashing_slots()
        self._limiter: anyio.CapacityLimiter | None = None  # made in the event loop that uses it

    @property
    def slots(self) -> int:
        return self._slots

    def _turns(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._slots)
        return self._limiter

    async def hash_async(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.hash, password, limiter=self._turns())

    async def verify_async(self, password_hash: str, password: str) -> bool:
        return await anyio.to_thread.run_sync(self.verify, password_hash, password, limiter=self._turns())

    async def verify_nobody_async(self, password: str) -> None:
        await anyio.to_thread.run_sync(self.verify_nobody, password, limiter=self._turns())

    @classmethod
    def of(cls, settings: Settings) -> Passwords:
        """Hashing at the cost ``settings`` name (``password_hash_*``)."""
        return cls(PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        ))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_nobody(self, password: str) -> None:
        """Spends the time of a real verify, so an unknown user name cannot be told by the answer's delay."""
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
        self.verify(self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return False
