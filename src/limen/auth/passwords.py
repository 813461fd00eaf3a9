"""Password hashing with argon2id (its cost from the settings; argon2-cffi's defaults unless changed), and the
rules a new password must meet."""

from __future__ import annotations

import secrets

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


class Passwords:
    """Hashes and verifies. Both are CPU work of ~0.1 s: call them from a worker thread."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self._hasher = hasher
        self._dummy_hash: str | None = None

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
