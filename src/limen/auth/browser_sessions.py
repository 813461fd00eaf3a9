"""Browser sign-ins: the ``limen_session`` cookie and the CSRF token that goes with it.

The cookie's value is a random secret; the database keeps only its SHA-256, so a copy of the database
signs nobody in. The cookie is HttpOnly and SameSite=Strict, and Secure when the page came over HTTPS.
Each session has its own CSRF token, given to the page by the sign-in answer and ``GET /api/me``; every
state-changing request authenticated by the cookie must send it back in ``X-CSRF-Token``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from limen.auth.principal import AuthMethod, Principal, browser_credential
from limen.auth.principal_cache import PrincipalCache
from limen.auth.users import find_user
from limen.clock import Clock, utc_now
from limen.db import Database
from limen.db.models import BrowserSession, Role, User
from limen.errors import ErrorCode, LimenError

COOKIE_NAME = "limen_session"
CSRF_HEADER = "X-CSRF-Token"
_MAX_COOKIE_LENGTH = 200


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSession:
    cookie: str = field(repr=False)
    csrf_token: str = field(repr=False)
    expires_at: datetime
    language: str | None  # the UI language the user chose (None: the browser's), read with the session's row


class BrowserSessions:
    def __init__(self, db: Database, clock: Clock, ttl_seconds: float, cache: PrincipalCache | None = None) -> None:
        self.db = db
        self.clock = clock
        self.ttl = timedelta(seconds=ttl_seconds)
        self.cache = cache if cache is not None else PrincipalCache()

    async def create(self, user_name: str) -> NewSession:
        """A new session for ``user_name`` (who has just proven who they are). Also drops expired ones."""
        cookie = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        now = utc_now(self.clock)

        def run(session: Session) -> NewSession:
            session.execute(delete(BrowserSession).where(BrowserSession.expires_at <= now))
            user = find_user(session, user_name)
            if user is None:  # deleted since the password was checked (argon2's time): nobody to sign in
                raise LimenError(ErrorCode.INVALID_CREDENTIALS, "no enabled user has this name and password")
            row = BrowserSession(id_hash=_hash(cookie), user_id=user.id, csrf_token=csrf_token, created_at=now,
                                 expires_at=now + self.ttl)
            session.add(row)
            return NewSession(cookie=cookie, csrf_token=csrf_token, expires_at=row.expires_at, language=user.language)

        return await self.db.run(run)

    async def resolve(self, cookie: str) -> Principal | None:
        """The signed-in user (with the session's CSRF token), or None if the session is unknown or over."""
        if not cookie or len(cookie) > _MAX_COOKIE_LENGTH:
            return None
        key = _hash(cookie)
        now = utc_now(self.clock)
        cache_key = f"session:{key}"
        cached = self.cache.get(cache_key, now)
        if cached is not None:
            return cached
        generation = self.cache.generation
        expires: list[datetime] = []

        def run(session: Session) -> Principal | None:
            row = session.execute(
                select(BrowserSession, User).join(User, BrowserSession.user_id == User.id)
                .where(BrowserSession.id_hash == key)
            ).first()
            if row is None:
                return None
            browser_session, user = row
            if browser_session.expires_at <= now or user.disabled or not user.approved:
                return None
            expires.append(browser_session.expires_at)
            return Principal(name=user.name, role=Role(user.role), method=AuthMethod.COOKIE,
                             csrf_token=browser_session.csrf_token, credential=browser_credential(key))

        principal = await self.db.run(run)
        if principal is not None:
            self.cache.put(cache_key, principal, generation, valid_until=expires[0])
        return principal

    async def in_force(self, id_hash_start: str) -> bool:
        """Whether a session whose cookie's SHA-256 starts with ``id_hash_start`` (as its credential names it:
        :func:`browser_credential`) is still signed in (read now, not remembered)."""
        if not id_hash_start or not all(char in "0123456789abcdef" for char in id_hash_start):
            return False
        now = utc_now(self.clock)
        found = await self.db.run(lambda session: session.execute(
            select(BrowserSession.id_hash).where(BrowserSession.id_hash.startswith(id_hash_start),
                                                 BrowserSession.expires_at > now).limit(1)).first())
        return found is not None

    @staticmethod
    def credential_of(cookie: str) -> str:
        """The credential name of the session behind ``cookie`` (see :func:`browser_credential`)."""
        return browser_credential(_hash(cookie))

    async def end(self, cookie: str) -> None:
        key = _hash(cookie)
        try:
            await self.db.run(
                lambda session: session.execute(delete(BrowserSession).where(BrowserSession.id_hash == key)))
        finally:
            self.cache.forget_all()

    async def end_all_of(self, user_name: str) -> None:
        """Signs the user out everywhere (after a password change, or when disabled)."""

        def run(session: Session) -> None:
            user = find_user(session, user_name)
            if user is not None:
                session.execute(delete(BrowserSession).where(BrowserSession.user_id == user.id))

        try:
            await self.db.run(run)
        finally:
            self.cache.forget_all()
