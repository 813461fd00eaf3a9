"""Users and roles, in the database. Sign-in answers never tell whether a user exists.

A user's name is kept as it was first written (``Sec``) and is unique regardless of case (``users.name_key``):
there is no second ``sec``. Sign-in and every lookup by name (admins' role, disable and password changes,
tokens made for a user, VM owners) find the user whatever the case typed, and carry on with the name as
kept, so sessions, tokens and owners always name the one spelling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.orm import Session

from limen.auth.names import COMMAND_LINE_PREFIX, clean_name, name_key
from limen.auth.passwords import Passwords, validate_password
from limen.auth.principal import AuthMethod, Principal, browser_credential
from limen.auth.principal_cache import PrincipalCache
from limen.clock import Clock, utc_now
from limen.db import Database
from limen.db.models import NAME_MAX, ApiToken, BrowserSession, Role, User
from limen.errors import ErrorCode, LimenError, Refusals, Rule, ValidationFailed, rule

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    role: Role
    created_at: datetime
    disabled: bool
    approved: bool = True

    @classmethod
    def of(cls, user: User) -> UserInfo:
        return cls(name=user.name, role=Role(user.role), created_at=user.created_at, disabled=user.disabled,
                   approved=user.approved)


# Dot segments: browsers and HTTP clients remove them from an address before sending it (even written
# %2E%2E), so /api/users/../quota would reach another route (the asker's own /api/quota) instead of the user.
DOT_SEGMENTS = frozenset({".", ".."})


def clean_user_name(name: str) -> str:
    """A new user's name, checked; names starting with ``cli:`` (any case) are the command line's in the
    audit trail, and ``.`` and ``..`` cannot be named in an address (/api/users/{name}/…)."""
    cleaned = clean_name("name", name, NAME_MAX)
    if cleaned in DOT_SEGMENTS:
        raise ValidationFailed("name", f"must not be {cleaned!r}: an address cannot name it",
                               rule=rule(Rule.DOT_SEGMENT))
    if name_key(cleaned).startswith(COMMAND_LINE_PREFIX):
        raise ValidationFailed("name", f"must not start with {COMMAND_LINE_PREFIX!r}: the audit trail names the "
                                       "command line so", rule=rule(Rule.RESERVED_PREFIX, prefix=COMMAND_LINE_PREFIX))
    return cleaned


def find_user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def find_user_by_key(session: Session, name: str) -> User | None:
    """The user whose name is ``name`` regardless of case (``Sec`` finds ``sec``)."""
    return session.scalar(select(User).where(User.name_key == name_key(name)))


def lookup_user(session: Session, name: str) -> User | None:
    """The user a typed ``name`` means: the one kept with exactly that name, else the one whose name it is
    in another case. (Only a database upgraded from before case-blind names can hold two spellings of
    one name; there the exact spelling reaches each of them.)"""
    return find_user(session, name) or find_user_by_key(session, name)


_PRINCIPAL_OF = select(User.name, User.role, User.disabled, User.approved).where(User.name == bindparam("name"))


@dataclass(frozen=True, slots=True)
class _SignInFacts:
    """What a sign-in needs of a user, read in one short transaction."""

    id: int
    name: str
    role: str
    password_hash: str
    disabled: bool
    approved: bool

    @classmethod
    def of(cls, user: User | None) -> _SignInFacts | None:
        if user is None:
            return None
        return cls(id=user.id, name=user.name, role=user.role, password_hash=user.password_hash,
                   disabled=user.disabled, approved=user.approved)


def _replace_hash(session: Session, found: _SignInFacts, rehashed: str) -> None:
    """A hash made at today's cost, unless the password changed since it was read."""
    user = session.get(User, found.id)
    if user is not None and user.password_hash == found.password_hash:
        user.password_hash = rehashed


def _require_user(session: Session, name: str) -> User:
    user = lookup_user(session, name)
    if user is None:
        raise LimenError(ErrorCode.USER_NOT_FOUND, f"no user named {name!r}")
    return user


def user_to_change(session: Session, name: str) -> User:
    """The user ``name`` for a change to them or to a row about them (a token, a quota): read once every
    change to users already under way has committed (USER_NOT_FOUND if one deleted them), holding off the next
    until this transaction ends. So what the change checks next (the last enabled administrator) counts what
    is committed, two changes at once cannot both pass the check (two administrators demoting each other at
    once left none), and no row is written pointing at a user deleted meanwhile.

    SQLite: pysqlite begins a transaction only at its first write, so the reads before it saw no snapshot of
    their own; a first write (the user's row, unchanged) takes the database's one write lock, waiting out
    the writer before it. PostgreSQL: the rows of the user and of every enabled administrator, locked in one
    order (so two such changes never wait for each other's locks), with FOR NO KEY UPDATE: a deletion's own
    lock waits for it, while a sign-in's new session or a new token, whose reference to the user takes a key
    share, does not (taking the stronger lock first made them wait in the opposite order to a deletion)."""
    user = _require_user(session, name)
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(User).where(User.id == user.id).values(name=User.name)
                        .execution_options(synchronize_session=False))
    else:
        session.execute(select(User.id).where(or_(
            User.id == user.id, and_(User.role == Role.ADMIN.value, User.disabled.is_(False)),
        )).order_by(User.id).with_for_update(key_share=True))  # NO KEY UPDATE: rows pointing at them may still be added
    try:
        session.refresh(user)  # as the change that committed first left them
    except InvalidRequestError:  # that change deleted them
        raise LimenError(ErrorCode.USER_NOT_FOUND, f"no user named {name!r}") from None
    return user


class AccountNotUsable(LimenError):
    """The right password for an account that cannot sign in: said only to whoever proved it is theirs."""


class AccountPending(AccountNotUsable):
    def __init__(self, name: str) -> None:
        super().__init__(ErrorCode.ACCOUNT_PENDING, f"the account {name!r} waits for an administrator's approval")


class AccountDisabled(AccountNotUsable):
    def __init__(self, name: str) -> None:
        super().__init__(ErrorCode.ACCOUNT_DISABLED, f"the account {name!r} is disabled")



def check_name_and_password(name: str | None, password: str | None) -> None:
    """VALIDATION_ERROR naming the name and the password at once when both are wrong (None: not checked)."""
    refusals = Refusals()
    with refusals.check():
        if name is not None:
            clean_user_name(name)
    with refusals.check():
        if password is not None:
            validate_password(password)
    refusals.raise_any()


def _checked_name_and_password(name: str, password: str) -> str:
    """The cleaned name; VALIDATION_ERROR naming the name and the password at once when both are wrong."""
    check_name_and_password(name, password)
    return clean_user_name(name)

class Users:
    """The user directory. Every method is async; database and hashing work run in worker threads."""

    def __init__(self, db: Database, passwords: Passwords, clock: Clock, cache: PrincipalCache | None = None) -> None:
        self.db = db
        self.passwords = passwords
        self.clock = clock
        self.cache = cache if cache is not None else PrincipalCache()

    async def _changing(self, work: Callable[[Session], T]) -> T:
        """``work`` in a transaction that may take rights away: the cached principals go once it is over."""
        try:
            return await self.db.run(work)
        finally:
            self.cache.forget_all()

    async def create(self, name: str, password: str, role: Role = Role.USER, *, approved: bool = True) -> UserInfo:
        """``approved`` False: a self-registered account that cannot sign in until an administrator approves it."""
        name = _checked_name_and_password(name, password)
        password_hash = await self.passwords.hash_async(password)
        return await self.db.run(lambda session: self._insert(session, name, password_hash, role, approved))

    def create_sync(self, name: str, password: str, role: Role = Role.USER) -> UserInfo:
        """For the command line, which has no event loop."""
        name = _checked_name_and_password(name, password)
        password_hash = self.passwords.hash(password)
        return self.db.run_sync(lambda session: self._insert(session, name, password_hash, role))

    def _insert(self, session: Session, name: str, password_hash: str, role: Role,
                approved: bool = True) -> UserInfo:
        existing = find_user_by_key(session, name)
        if existing is not None:
            raise LimenError(ErrorCode.USER_ALREADY_EXISTS, f"a user named {existing.name!r} exists")
        user = User(name=name, name_key=name_key(name), password_hash=password_hash, role=role.value,
                    created_at=utc_now(self.clock), disabled=False, approved=approved)
        session.add(user)
        try:
            session.flush()
        except IntegrityError:  # created by someone else since the check above
            raise LimenError(ErrorCode.USER_ALREADY_EXISTS, f"a user named {name!r} exists") from None
        return UserInfo.of(user)

    async def list_all(self) -> list[UserInfo]:
        return await self.db.run(self.list_in)

    @staticmethod
    def list_in(session: Session) -> list[UserInfo]:
        return [UserInfo.of(user) for user in session.scalars(select(User).order_by(User.name))]

    async def get(self, name: str) -> UserInfo:
        """The user named ``name`` in any case (USER_NOT_FOUND otherwise), with the name as kept."""
        return await self.db.run(lambda session: UserInfo.of(_require_user(session, name)))

    def get_sync(self, name: str) -> UserInfo:
        return self.db.run_sync(lambda session: UserInfo.of(_require_user(session, name)))

    @staticmethod
    def _keep_an_admin_in(session: Session, user: User) -> None:
        """LAST_ADMINISTRATOR when ``user`` is the last enabled administrator, whom a change is about to take
        away (a demotion, a disabling, a deletion). Counted in the changing transaction, from the API and the
        command line alike, once the change holds the users (:func:`user_to_change`): two demotions at once
        cannot both pass, nor can a command line go round it."""
        if user.role == Role.ADMIN.value and not user.disabled:
            others = session.scalar(select(func.count()).select_from(User).where(
                User.role == Role.ADMIN.value, User.disabled.is_(False), User.id != user.id))
            if not others:
                raise LimenError(ErrorCode.LAST_ADMINISTRATOR,
                                 f"{user.name!r} is the last enabled administrator; make another one first")

    @staticmethod
    def _set_role(session: Session, name: str, role: Role) -> UserInfo:
        user = user_to_change(session, name)
        if role is not Role.ADMIN:
            Users._keep_an_admin_in(session, user)
        user.role = role.value
        return UserInfo.of(user)

    async def set_role(self, name: str, role: Role) -> UserInfo:
        return await self._changing(lambda session: self._set_role(session, name, role))

    def set_role_sync(self, name: str, role: Role) -> UserInfo:
        return self.db.run_sync(lambda session: self._set_role(session, name, role))

    async def set_disabled(self, name: str, disabled: bool) -> UserInfo:
        def run(session: Session) -> UserInfo:
            user = user_to_change(session, name)
            if disabled:
                self._keep_an_admin_in(session, user)
            user.disabled = disabled
            return UserInfo.of(user)

        return await self._changing(run)

    async def language(self, name: str) -> str | None:
        """The UI language ``name`` chose, or None (the browser's); USER_NOT_FOUND for no such user."""
        return await self.db.run(lambda session: _require_user(session, name).language)

    async def set_language(self, name: str, language: str | None) -> None:
        """Keeps ``language`` (validated by the caller) as ``name``'s UI language; None forgets the choice."""
        def run(session: Session) -> None:
            user_to_change(session, name).language = language

        await self.db.run(run)

    async def set_approved(self, name: str, approved: bool) -> UserInfo:
        def run(session: Session) -> UserInfo:
            user = user_to_change(session, name)
            if not approved:
                self._keep_an_admin_in(session, user)
            user.approved = approved
            return UserInfo.of(user)

        return await self._changing(run)

    @staticmethod
    def deletable_in(session: Session, name: str, *, by: str | None) -> User:
        """The user ``name``, if they may be deleted (``by`` None is the command line): FORBIDDEN for
        yourself, LAST_ADMINISTRATOR for the last enabled administrator."""
        user = _require_user(session, name)
        Users._check_deletable(session, user, by=by)
        return user

    @staticmethod
    def _check_deletable(session: Session, user: User, *, by: str | None) -> None:
        if by is not None and by == user.name:
            raise LimenError(ErrorCode.FORBIDDEN, "you cannot delete yourself; ask another administrator")
        Users._keep_an_admin_in(session, user)

    async def check_deletable(self, name: str, *, by: str | None) -> UserInfo:
        """What :meth:`delete` would refuse, asked before anything else changes (their VMs' owner)."""
        return await self.db.run(lambda session: UserInfo.of(self.deletable_in(session, name, by=by)))

    @staticmethod
    def delete_in(session: Session, name: str, *, by: str | None) -> UserInfo:
        """Deletes the user with their API tokens and sign-ins (audit rows keep their name). ``by`` None is
        the command line. Refuses deleting yourself (FORBIDDEN) or the last enabled administrator
        (LAST_ADMINISTRATOR); the count is taken in the deleting transaction."""
        user = user_to_change(session, name)
        Users._check_deletable(session, user, by=by)
        info = UserInfo.of(user)
        # Explicitly, not only by ON DELETE CASCADE: a database without foreign keys enforced keeps nothing.
        session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
        session.execute(delete(BrowserSession).where(BrowserSession.user_id == user.id))
        session.delete(user)
        return info

    async def delete(self, name: str, *, by: str | None) -> UserInfo:
        return await self._changing(lambda session: self.delete_in(session, name, by=by))

    def set_password_sync(self, name: str, password: str) -> tuple[str, list[str]]:
        """Sets the user's password and signs them out everywhere (a password is reset because it may be
        known to someone else, whose browser was signed in with it): their name as kept, and the credentials
        of the browser sessions ended, for the consoles those opened. API tokens stay: each is its own secret.
        """
        validate_password(password)
        password_hash = self.passwords.hash(password)

        def run(session: Session) -> tuple[str, list[str]]:
            user = user_to_change(session, name)
            user.password_hash = password_hash
            ended = session.scalars(select(BrowserSession.id_hash).where(BrowserSession.user_id == user.id)).all()
            session.execute(delete(BrowserSession).where(BrowserSession.user_id == user.id))
            return user.name, [browser_credential(id_hash) for id_hash in ended]

        try:
            return self.db.run_sync(run)
        finally:
            self.cache.forget_all()

    @staticmethod
    def admin_exists_in(session: Session) -> bool:
        count = session.scalar(
            select(func.count()).select_from(User).where(User.role == Role.ADMIN.value, User.disabled.is_(False))
        )
        return bool(count)

    async def principal(self, name: str, method: AuthMethod) -> Principal | None:
        """The user as a principal now (its current role), or None if it is gone, disabled or not approved."""

        key = f"user:{method.value}:{name}"
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        generation = self.cache.generation
        # Core, not the ORM: this runs on every console's set-up (Database.fetch_one).
        row = await self.db.fetch_one(_PRINCIPAL_OF, {"name": name})
        if row is None or row.disabled or not row.approved:
            return None
        principal = Principal(name=row.name, role=Role(row.role), method=method)
        self.cache.put(key, principal, generation)
        return principal

    async def authenticate(self, name: str, password: str) -> Principal | None:
        """The user if ``password`` is theirs and the account is enabled; else None, after the same work.
        An account awaiting approval raises ACCOUNT_PENDING, a disabled one ACCOUNT_DISABLED, but only once the
        password proved it is theirs (told "wrong password", they would try again into the throttle)."""
        if len(password) > 1024 or len(name) > 4 * NAME_MAX:
            return None  # no sane account has these; do not spend argon2 time on them
        # Read, then verify with no database connection held (the verify waits its turn: passwords.py).
        found = await self.db.run(lambda session: _SignInFacts.of(lookup_user(session, name)))
        if found is None:
            await self.passwords.verify_nobody_async(password)
            return None
        if not await self.passwords.verify_async(found.password_hash, password):
            return None
        if found.disabled:
            raise AccountDisabled(found.name)
        if self.passwords.needs_rehash(found.password_hash):
            rehashed = await self.passwords.hash_async(password)
            await self.db.run(lambda session: _replace_hash(session, found, rehashed))
        if not found.approved:
            raise AccountPending(found.name)
        return Principal(name=found.name, role=Role(found.role), method=AuthMethod.COOKIE)
