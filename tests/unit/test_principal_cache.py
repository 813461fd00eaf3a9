"""The principals behind tokens, cookies and ticket holders are remembered, and forgotten the moment rights
change: revoking, disabling, deleting, lowering a role, signing out, a revocation from elsewhere, the
command line's stamp. Real SQLite; the database is asked again only after such a change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from limen.auth.access import Access
from limen.auth.principal import AuthMethod, Principal
from limen.auth.principal_cache import PrincipalCache, touch_credentials_stamp
from limen.auth.revocation import Revocation
from limen.db import Role
from limen.settings import Settings
from tests.support.access import make_access


@pytest.fixture
async def access(make_settings: Callable[..., Settings]) -> AsyncIterator[Access]:
    access = make_access(make_settings())
    await access.start()
    await access.users.create("alice", "a-long-password", Role.ADMIN)
    await access.users.create("root", "a-long-password", Role.ADMIN)
    yield access
    await access.close()


class CountingReads:
    """Counts the worker-thread database reads of ``access`` (Database.run and fetch_one)."""

    def __init__(self, access: Access, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        db = access.db
        run, fetch_one = db.run, db.fetch_one

        async def counted_run(*args: Any) -> Any:
            self.count += 1
            return await run(*args)

        async def counted_fetch(*args: Any) -> Any:
            self.count += 1
            return await fetch_one(*args)

        monkeypatch.setattr(db, "run", counted_run)
        monkeypatch.setattr(db, "fetch_one", counted_fetch)


async def test_a_token_is_read_once_then_answered_from_memory(access: Access, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = (await access.tokens.create("alice", "script")).secret
    reads = CountingReads(access, monkeypatch)
    first = await access.tokens.resolve(secret)
    assert first is not None and first.name == "alice" and first.method is AuthMethod.TOKEN
    for _ in range(5):
        assert await access.tokens.resolve(secret) == first
    assert reads.count == 1


async def test_an_unknown_token_is_never_remembered(access: Access, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = CountingReads(access, monkeypatch)
    for _ in range(3):
        assert await access.tokens.resolve("limen_" + "x" * 43) is None
    assert reads.count == 3


async def test_revoking_a_remembered_token_refuses_it_at_once(access: Access) -> None:
    made = await access.tokens.create("alice", "script")
    assert await access.tokens.resolve(made.secret) is not None
    await access.tokens.revoke(made.info.id, None)
    assert await access.tokens.resolve(made.secret) is None


@pytest.mark.parametrize("change", ["disable", "delete", "role", "unapprove"])
async def test_a_user_change_refuses_their_remembered_credentials_at_once(access: Access, change: str) -> None:
    secret = (await access.tokens.create("alice", "script")).secret
    cookie = (await access.sessions.create("alice")).cookie
    assert await access.tokens.resolve(secret) is not None
    assert await access.sessions.resolve(cookie) is not None
    assert await access.users.principal("alice", AuthMethod.TICKET) is not None
    if change == "disable":
        await access.users.set_disabled("alice", True)
    elif change == "delete":
        await access.users.delete("alice", by="root")
    elif change == "role":
        await access.users.set_role("alice", Role.USER)
    else:
        await access.users.set_approved("alice", False)
    token_principal = await access.tokens.resolve(secret)
    cookie_principal = await access.sessions.resolve(cookie)
    holder = await access.users.principal("alice", AuthMethod.TICKET)
    if change == "role":  # still signed in, no longer an administrator
        assert token_principal is not None and token_principal.role is Role.USER
        assert cookie_principal is not None and cookie_principal.role is Role.USER
        assert holder is not None and holder.role is Role.USER
    else:
        assert token_principal is None and cookie_principal is None and holder is None


async def test_signing_out_refuses_the_remembered_cookie_at_once(access: Access) -> None:
    cookie = (await access.sessions.create("alice")).cookie
    assert await access.sessions.resolve(cookie) is not None
    await access.sessions.end(cookie)
    assert await access.sessions.resolve(cookie) is None


async def test_a_revocation_from_another_instance_empties_the_cache(access: Access) -> None:
    """What another instance (or the command line with a Redis) changed reaches this one over the bus only:
    a database changed behind this instance's back, then the revocation delivered."""
    secret = (await access.tokens.create("alice", "script")).secret
    assert await access.tokens.resolve(secret) is not None
    other = make_access(access.settings)  # another instance on the same database, its own cache
    await other.users.set_disabled("alice", True)
    try:
        assert other.principals is not access.principals
        assert await access.tokens.resolve(secret) is not None  # not told yet: remembered (at most MAX_AGE)
        await access.revocations.publish(Revocation.user_changed("alice", "disabled elsewhere"))
        assert await access.tokens.resolve(secret) is None
    finally:
        await other.close()


async def test_the_command_lines_stamp_empties_the_cache(access: Access) -> None:
    """Without a Redis the command line touches the credentials stamp next to the data."""
    secret = (await access.tokens.create("alice", "script")).secret
    assert await access.tokens.resolve(secret) is not None
    other = make_access(access.settings)
    await other.users.set_disabled("alice", True)
    await other.close()
    touch_credentials_stamp(access.settings.data_dir)
    assert await access.tokens.resolve(secret) is None


async def test_without_redis_a_change_on_one_instance_reaches_another_on_this_host(access: Access) -> None:
    """Two instances on one database and no Redis: the change's revocation, published on the first, stamps
    the credentials file, and the second forgets what it remembered."""
    secret = (await access.tokens.create("alice", "script")).secret
    other = make_access(access.settings)
    try:
        assert await other.tokens.resolve(secret) is not None
        await access.users.set_disabled("alice", True)
        await access.revocations.publish(Revocation.user_changed("alice", "disabled on the first instance"))
        assert await other.tokens.resolve(secret) is None
    finally:
        await other.close()


async def test_a_read_that_began_before_a_change_is_not_remembered(access: Access) -> None:
    secret = (await access.tokens.create("alice", "script")).secret
    started = asyncio.Event()
    release = asyncio.Event()
    db_run = access.db.run

    async def slow_run(work: Any) -> Any:
        answer = await db_run(work)  # read before the change...
        started.set()
        await release.wait()  # ...returned after it
        return answer

    access.db.run = slow_run  # type: ignore[method-assign]
    pending = asyncio.create_task(access.tokens.resolve(secret))
    await started.wait()
    access.db.run = db_run  # type: ignore[method-assign]
    await access.users.set_disabled("alice", True)
    release.set()
    assert await pending is not None  # the answer of its time...
    assert await access.tokens.resolve(secret) is None  # ...but not remembered past the change


def test_entries_expire_and_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = PrincipalCache(max_age=10.0)
    clock = [1000.0]
    monkeypatch.setattr("limen.auth.principal_cache.time.monotonic", lambda: clock[0])
    alice = Principal("alice", Role.USER, AuthMethod.TOKEN)
    cache.put("a", alice, cache.generation)
    assert cache.get("a") == alice
    clock[0] += 11
    assert cache.get("a") is None
    monkeypatch.setattr("limen.auth.principal_cache.MAX_ENTRIES", 3)
    for index in range(7):
        cache.put(str(index), alice, cache.generation)
    assert cache.size <= 3
