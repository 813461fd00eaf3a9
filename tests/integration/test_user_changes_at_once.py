"""Changes to users made at the same moment, on the database the run uses (SQLite, or PostgreSQL in the
PostgreSQL pass): each is checked against what the other committed, never against what both read first.

Two administrators demoting, disabling or deleting each other at once both passed the last-administrator
check (each counted the other) and left limen with none; a change to a user another request deleted at the
same moment failed with a 500 (its UPDATE matched no row), as did a token or a quota written for a user
deleted after it was looked up (the row's reference to the user). The threads are made to meet where the race
was: both have read what they change before either writes."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from limen.auth import users as users_module
from limen.auth.passwords import Passwords
from limen.auth.tokens import Tokens
from limen.auth.users import Users
from limen.db import Database, Role
from limen.db.models import User
from limen.errors import ErrorCode, LimenError
from limen.quota import Limits, QuotaLedger
from tests.conftest import settings_in
from tests.support.databases import database_url_for

PASSWORD = "correct horse battery staple"
# How long a thread that has read waits for the other to read too: with the changes serialized, the other
# waits for the first one's commit instead, and the first goes on after this.
MEETING = 0.5


@pytest.fixture
def users(tmp_path: Path) -> Iterator[Users]:
    db = Database(database_url_for(tmp_path / "data"))
    db.migrate()
    try:
        yield Users(db, Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)), time.time)
    finally:
        db.close()


def meet_after(barrier: threading.Barrier) -> None:
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass  # the other thread waits for this one's commit (as it should now) or has finished


def run_both(changes: dict[str, Callable[[], object]]) -> dict[str, object]:
    """Each change in a thread of its own; what each returned, or the error code it was refused with."""
    outcomes: dict[str, object] = {}

    def run(name: str, change: Callable[[], object]) -> None:
        try:
            outcomes[name] = change()
        except LimenError as exc:
            outcomes[name] = exc.code
        except Exception as exc:  # the outcome under test: a 500 in the API
            outcomes[name] = exc

    threads = [threading.Thread(target=run, args=item, name=item[0]) for item in changes.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def enabled_admins(users: Users) -> list[str]:
    return users.db.run_sync(lambda session: list(session.scalars(
        select(User.name).where(User.role == Role.ADMIN.value, User.disabled.is_(False)))))


CHANGES: dict[str, Callable[[Users, str], object]] = {
    "demote": lambda users, name: users.set_role_sync(name, Role.USER),
    "disable": lambda users, name: asyncio.run(users.set_disabled(name, True)),
    "delete": lambda users, name: users.db.run_sync(lambda session: Users.delete_in(session, name, by=None)),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_two_administrators_taken_away_at_once_leave_one(
        users: Users, change: str, monkeypatch: pytest.MonkeyPatch) -> None:
    users.create_sync("ann", PASSWORD, Role.ADMIN)
    users.create_sync("ben", PASSWORD, Role.ADMIN)
    barrier = threading.Barrier(2, timeout=MEETING)
    counted = Users._keep_an_admin_in

    def count_then_meet(session: object, user: User) -> None:
        counted(session, user)  # type: ignore[arg-type]
        meet_after(barrier)

    monkeypatch.setattr(Users, "_keep_an_admin_in", staticmethod(count_then_meet))
    outcomes = run_both({name: (lambda name=name: CHANGES[change](users, name)) for name in ("ann", "ben")})
    refused = [name for name, outcome in outcomes.items() if outcome is ErrorCode.LAST_ADMINISTRATOR]
    assert len(refused) == 1, outcomes
    assert enabled_admins(users) == refused


def test_a_change_to_a_user_deleted_at_the_same_moment_finds_them_gone(
        users: Users, monkeypatch: pytest.MonkeyPatch) -> None:
    users.create_sync("ann", PASSWORD, Role.ADMIN)
    users.create_sync("carol", PASSWORD, Role.USER)
    both_read = threading.Barrier(2, timeout=5)
    deleted = threading.Event()
    read = users_module._require_user

    def read_then_meet(session: object, name: str) -> User:
        user = read(session, name)  # type: ignore[arg-type]
        if name == "carol":
            meet_after(both_read)
            if threading.current_thread().name == "promote":
                deleted.wait(timeout=5)  # the delete commits between this one's read and its write
        return user

    monkeypatch.setattr(users_module, "_require_user", read_then_meet)

    def delete() -> object:
        try:
            return users.db.run_sync(lambda session: Users.delete_in(session, "carol", by=None))
        finally:
            deleted.set()

    outcomes = run_both({"delete": delete, "promote": lambda: users.set_role_sync("carol", Role.ADMIN)})
    assert outcomes["promote"] is ErrorCode.USER_NOT_FOUND, outcomes
    assert not isinstance(outcomes["delete"], Exception | ErrorCode), outcomes
    assert enabled_admins(users) == ["ann"]


def test_a_token_or_a_quota_for_a_user_deleted_meanwhile_is_user_not_found(
        users: Users, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both found the user, then wrote a row pointing at them: a user deleted in between made that write
    fail on the reference (a 500)."""
    read = users_module._require_user
    deleting: list[str] = []

    def read_then_deleted(session: object, name: str) -> User:
        user = read(session, name)  # type: ignore[arg-type]
        if name == "carol" and not deleting:  # another request's deletion, committed (not this one's own read)
            deleting.append(name)
            users.db.run_sync(lambda other: Users.delete_in(other, name, by=None))
        return user

    monkeypatch.setattr(users_module, "_require_user", read_then_deleted)
    users.create_sync("carol", PASSWORD, Role.USER)
    with pytest.raises(LimenError) as refused:
        Tokens(users.db, time.time).create_sync("carol", "laptop")
    assert refused.value.code is ErrorCode.USER_NOT_FOUND

    # The quota: the same, between finding the user and writing their override.
    users.create_sync("carol", PASSWORD, Role.USER)
    deleting.clear()
    ledger = QuotaLedger(users.db, settings_in(tmp_path), time.time, instance_id="test")
    with pytest.raises(LimenError) as refused:
        asyncio.run(ledger.set_override("carol", Limits(vms=1)))
    assert refused.value.code is ErrorCode.USER_NOT_FOUND
