"""API tokens for scripts: ``Authorization: Bearer limen_…``.

A token's secret is shown once, when it is made. Only its SHA-256 is stored (the secret holds 256 random
bits, so a plain hash is enough and lets a request find its token by index). Tokens are revoked, not
deleted, so the list keeps showing what existed; a revoked token, or one whose user is disabled, is refused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from limen.auth.names import clean_name
from limen.auth.principal import AuthMethod, Principal, token_credential
from limen.auth.principal_cache import PrincipalCache
from limen.auth.users import lookup_user, user_to_change
from limen.clock import Clock, utc_now
from limen.db import Database
from limen.db.models import TOKEN_NAME_MAX, ApiToken, Role, User
from limen.errors import ErrorCode, LimenError

TOKEN_PREFIX = "limen_"
SHOWN_PREFIX_LENGTH = len(TOKEN_PREFIX) + 6
_SECRET_SHAPE = re.compile(r"^limen_[A-Za-z0-9_-]{20,100}$")
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Ids are 64-bit signed integers in SQLite and PostgreSQL alike: a larger one names no token.
LARGEST_ID = 2**63 - 1


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    owner: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewToken:
    info: TokenInfo
    secret: str  # shown once; never stored, never logged

    def __repr__(self) -> str:
        return f"NewToken(info={self.info!r}, secret=<hidden>)"


def clean_token_name(name: str) -> str:
    """The token name as stored; VALIDATION_ERROR (field ``name``) for one that is empty, too long, edged with
    white space or holding control characters."""
    return clean_name("name", name, TOKEN_NAME_MAX)


def _info(token: ApiToken, owner: str) -> TokenInfo:
    return TokenInfo(
        id=token.id, name=token.name, owner=owner, prefix=token.prefix, created_at=token.created_at,
        last_used_at=token.last_used_at, revoked_at=token.revoked_at,
    )


class Tokens:
    def __init__(self, db: Database, clock: Clock, cache: PrincipalCache | None = None) -> None:
        self.db = db
        self.clock = clock
        self.cache = cache if cache is not None else PrincipalCache()

    def _create(self, session: Session, owner: str, name: str) -> NewToken:
        name = clean_token_name(name)
        user = user_to_change(session, owner)  # USER_NOT_FOUND, also for one deleted as this runs
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = ApiToken(
            user_id=user.id, name=name, prefix=secret[:SHOWN_PREFIX_LENGTH], secret_hash=secret_hash(secret),
            created_at=utc_now(self.clock),
        )
        session.add(token)
        session.flush()
        return NewToken(info=_info(token, user.name), secret=secret)

    async def create(self, owner: str, name: str) -> NewToken:
        return await self.db.run(lambda session: self._create(session, owner, name))

    def create_sync(self, owner: str, name: str) -> NewToken:
        return self.db.run_sync(lambda session: self._create(session, owner, name))

    @staticmethod
    def list_in(session: Session, owner: str | None = None) -> list[TokenInfo]:
        query = select(ApiToken, User.name).join(User, ApiToken.user_id == User.id).order_by(ApiToken.id)
        if owner is not None:
            user = lookup_user(session, owner)  # any case finds the user
            if user is None:  # a typo would else read as a user without tokens
                raise LimenError(ErrorCode.USER_NOT_FOUND, f"no user named {owner[:80]!r}")
            query = query.where(User.id == user.id)
        return [_info(token, user_name) for token, user_name in session.execute(query)]

    async def list_all(self, owner: str | None = None) -> list[TokenInfo]:
        """Every token (``owner`` None) or one user's, without their secrets."""
        return await self.db.run(lambda session: self.list_in(session, owner))

    def revoke_in(self, session: Session, token_id: int, by: Principal | None) -> TokenInfo:
        """Revokes; ``by`` None is the command line (an operator). Users may revoke only their own tokens."""
        if not 0 < token_id <= LARGEST_ID:  # the database cannot even be asked about it
            raise LimenError(ErrorCode.TOKEN_NOT_FOUND, f"no API token with id {token_id}")
        row = session.execute(
            select(ApiToken, User.name).join(User, ApiToken.user_id == User.id).where(ApiToken.id == token_id)
        ).first()
        if row is None or (by is not None and not by.is_admin and row[1] != by.name):
            # Another user's token is reported as missing: its id tells nothing about it.
            raise LimenError(ErrorCode.TOKEN_NOT_FOUND, f"no API token with id {token_id}")
        token, owner = row
        if token.revoked_at is None:
            token.revoked_at = utc_now(self.clock)
        return _info(token, owner)

    async def revoke(self, token_id: int, by: Principal | None) -> TokenInfo:
        try:
            return await self.db.run(lambda session: self.revoke_in(session, token_id, by))
        finally:
            self.cache.forget_all()

    async def in_force(self, token_id: int) -> bool:
        """Whether the token ``token_id`` exists and is not revoked (read now, not remembered)."""
        if not 0 < token_id <= LARGEST_ID:
            return False
        revoked = await self.db.run(lambda session: session.execute(
            select(ApiToken.revoked_at).where(ApiToken.id == token_id)).first())
        return revoked is not None and revoked[0] is None

    async def resolve(self, secret: str) -> Principal | None:
        """The principal a bearer secret stands for, or None (unknown, revoked, or its user disabled)."""
        if not _SECRET_SHAPE.fullmatch(secret):
            return None
        digest = secret_hash(secret)
        now = utc_now(self.clock)
        key = f"token:{digest}"
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        generation = self.cache.generation

        def run(session: Session) -> Principal | None:
            row = session.execute(
                select(ApiToken, User).join(User, ApiToken.user_id == User.id).where(ApiToken.secret_hash == digest)
            ).first()
            if row is None:
                return None
            token, user = row
            if token.revoked_at is not None or user.disabled or not user.approved:
                return None
            if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
                token.last_used_at = now
            return Principal(name=user.name, role=Role(user.role), method=AuthMethod.TOKEN,
                             credential=token_credential(token.id))

        principal = await self.db.run(run)
        if principal is not None:
            self.cache.put(key, principal, generation)
        return principal
