"""The database: migrations at start-up, the schema they make, and what is (not) stored."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from limen.auth.access import Access
from limen.auth.principal import AuthMethod
from limen.auth.users import AccountDisabled
from limen.db import Base, Database, Role
from limen.errors import ErrorCode, LimenError, ValidationFailed
from limen.settings import Settings
from tests.support.access import FakeClock, make_access
from tests.support.databases import a_migration_refuses

NASTY = "O'Brien \"q\" <script>alert(1)</script>; DROP TABLE users;-- Ωμ🐧"


@pytest.fixture
async def access(make_settings: Callable[..., Settings]) -> AsyncIterator[Access]:
    access = make_access(make_settings())
    await access.start()
    yield access
    await access.close()


def test_default_database_is_sqlite_in_the_data_dir(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    assert settings.db_url == f"sqlite:///{settings.data_dir / 'limen.db'}"


def test_migrations_make_the_models_schema_and_rerun_as_no_ops(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'sub' / 'limen.db'}")
    db.migrate()
    db.migrate()
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        tables = set(inspect(connection).get_table_names())
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0009_reservation_uuids"
    assert {"users", "api_tokens", "browser_sessions", "console_sessions", "vm_actions"} <= tables
    db.close()


def test_a_migration_that_fails_leaves_the_schema_as_it_was_and_can_be_run_again(tmp_path: Path) -> None:
    """SQLite runs each statement of its own without an explicit transaction (Python's driver begins one only
    before INSERT, UPDATE and DELETE): a migration that failed, or was killed, half-way had committed its
    first steps, so that every start after it failed on them ("duplicate column name: process_key") and
    only a repair by hand brought the database back. Here 0003's unique index of pending creates fails on
    two pending creates of one name, after its first step added a column."""
    path = tmp_path / "limen.db"
    db = a_migration_refuses(path)

    def schema() -> list[tuple[str, str]]:
        with db.engine.connect() as connection:
            rows = connection.execute(text("SELECT name, sql FROM sqlite_master"))
            return sorted((row.name, row.sql) for row in rows)

    before = schema()
    with pytest.raises(LimenError) as failed:
        db.migrate()
    assert failed.value.code is ErrorCode.DATABASE_MIGRATION_FAILED
    assert str(failed.value.details).startswith(
        f"the schema of sqlite:///{path} could not be migrated from 0002_safety to 0009_reservation_uuids "
        "(UNIQUE constraint failed: vm_actions.vm_name); it is left at 0002_safety"), failed.value.details
    assert schema() == before
    assert db._revisions() == ["0002_safety"]
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM vm_actions WHERE id = 2"))
    db.migrate()
    assert db._revisions() == ["0009_reservation_uuids"]
    db.close()


async def test_names_are_stored_and_returned_exactly(access: Access) -> None:
    user = await access.users.create(NASTY, "a-long-password", Role.USER)
    assert user.name == NASTY and user.created_at.tzinfo is UTC
    assert [u.name for u in await access.users.list_all()] == [NASTY]
    principal = await access.users.authenticate(NASTY, "a-long-password")
    assert principal is not None and principal.name == NASTY
    token = await access.tokens.create(NASTY, NASTY)
    assert (await access.tokens.list_all(NASTY))[0].name == NASTY
    resolved = await access.tokens.resolve(token.secret)
    assert resolved is not None and resolved.name == NASTY and resolved.method is AuthMethod.TOKEN


async def test_duplicate_user(access: Access) -> None:
    await access.users.create("alice", "a-long-password")
    with pytest.raises(LimenError) as caught:
        await access.users.create("alice", "another-password")
    assert caught.value.code is ErrorCode.USER_ALREADY_EXISTS


@pytest.mark.parametrize("password", ["", "short", "x" * 1025])
async def test_weak_passwords_are_refused(access: Access, password: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await access.users.create("alice", password)
    assert caught.value.field == "password"


async def test_wrong_password_unknown_user_and_disabled_user_look_the_same(access: Access) -> None:
    await access.users.create("alice", "a-long-password")
    await access.users.create("carol", "a-long-password")
    await access.users.set_disabled("carol", True)
    assert await access.users.authenticate("alice", "wrong-password") is None
    assert await access.users.authenticate("nobody", "a-long-password") is None
    assert await access.users.authenticate("carol", "wrong-password") is None
    assert await access.users.authenticate("alice", "a-long-password") is not None
    # Only the account's own password learns that it is disabled (as a pending one learns it waits).
    with pytest.raises(AccountDisabled):
        await access.users.authenticate("carol", "a-long-password")


def database_bytes(access: Access) -> bytes:
    """The SQLite file and its write-ahead log, as bytes."""
    path = Path(access.db.url.database or "")
    return b"".join(part.read_bytes() for part in [path, *path.parent.glob("*.db-wal")])


async def test_only_hashes_of_secrets_reach_the_database(access: Access) -> None:
    await access.users.create("alice", "the-password-itself")
    token = await access.tokens.create("alice", "script")
    session = await access.sessions.create("alice")
    raw = database_bytes(access)
    assert b"alice" in raw  # the check can see the data at all
    for secret in ("the-password-itself", token.secret, session.cookie):
        assert secret.encode() not in raw
    assert token.secret not in repr(token) and session.cookie not in repr(session)


async def test_revoked_token_and_disabled_user_are_refused(access: Access) -> None:
    await access.users.create("alice", "a-long-password")
    first, second = await access.tokens.create("alice", "one"), await access.tokens.create("alice", "two")
    await access.tokens.revoke(first.info.id, None)
    assert await access.tokens.resolve(first.secret) is None
    assert await access.tokens.resolve(second.secret) is not None
    await access.users.set_disabled("alice", True)
    assert await access.tokens.resolve(second.secret) is None


async def test_a_credential_is_in_force_until_revoked_signed_out_or_expired(
    make_settings: Callable[..., Settings]
) -> None:
    # What a console's re-check reads while another instance's revocations cannot be heard (Redis down).
    clock = FakeClock()
    access = make_access(make_settings(session_ttl=60), clock)
    await access.start()
    try:
        await access.users.create("alice", "a-long-password")
        token = await access.tokens.create("alice", "script")
        signed_out, expiring = await access.sessions.create("alice"), await access.sessions.create("alice")
        token_credential = f"token:{token.info.id}"
        out_credential = access.sessions.credential_of(signed_out.cookie)
        expiring_credential = access.sessions.credential_of(expiring.cookie)
        for credential in (token_credential, out_credential, expiring_credential):
            assert await access.credential_in_force(credential), credential
        await access.tokens.revoke(token.info.id, None)
        await access.sessions.end(signed_out.cookie)
        assert not await access.credential_in_force(token_credential)
        assert not await access.credential_in_force(out_credential)
        assert await access.credential_in_force(expiring_credential)
        clock.advance(61)
        assert not await access.credential_in_force(expiring_credential)
        for nonsense in ("token:999", "token:²", "token:", f"token:{2**70}", "session:", "session:%", "other:1", ""):
            assert not await access.credential_in_force(nonsense), nonsense
    finally:
        await access.close()


async def test_token_last_use_is_recorded(make_settings: Callable[..., Settings]) -> None:
    clock = FakeClock()
    access = make_access(make_settings(), clock)
    await access.start()
    try:
        await access.users.create("alice", "a-long-password")
        token = await access.tokens.create("alice", "script")
        assert (await access.tokens.list_all("alice"))[0].last_used_at is None
        await access.tokens.resolve(token.secret)
        used = (await access.tokens.list_all("alice"))[0].last_used_at
        assert used is not None and abs(used.timestamp() - clock.now) < 1
    finally:
        await access.close()


async def test_browser_sessions_expire(make_settings: Callable[..., Settings]) -> None:
    clock = FakeClock()
    access = make_access(make_settings(session_ttl=60), clock)
    await access.start()
    try:
        await access.users.create("alice", "a-long-password")
        session = await access.sessions.create("alice")
        principal = await access.sessions.resolve(session.cookie)
        assert principal is not None and principal.csrf_token == session.csrf_token
        assert session.csrf_token not in repr(principal)
        clock.advance(61)
        assert await access.sessions.resolve(session.cookie) is None
        assert await access.sessions.resolve("made-up") is None
    finally:
        await access.close()


async def test_audit_rows(access: Access) -> None:
    await access.audit.console_started("s1", user=NASTY, vm_uuid="u-1", vm_name="vm1", client_address="192.0.2.1")
    await access.audit.console_ended("s1", bytes_to_client=123, bytes_from_client=45, end_code="VM_STOPPED")
    await access.audit.console_ended("s1", bytes_to_client=999, bytes_from_client=999, end_code="OK")  # no-op
    [row] = await access.audit.console_sessions(user=NASTY)
    assert (row.user, row.bytes_to_client, row.bytes_from_client, row.end_code) == (NASTY, 123, 45, "VM_STOPPED")
    assert row.ended_at is not None and not row.live

    async def failing_start() -> None:
        async with access.audit.recording("bob", "start", "vm1") as target:
            target.vm_uuid = "u-1"
            raise LimenError(ErrorCode.VM_ALREADY_RUNNING, "running")

    with pytest.raises(LimenError):
        await failing_start()
    async with access.audit.recording("bob", "stop", "vm1"):
        pass
    actions = await access.audit.vm_actions(user="bob")
    assert [(a.action, a.result_code, a.vm_uuid) for a in actions] == [
        ("stop", "OK", None), ("start", "VM_ALREADY_RUNNING", "u-1")
    ]

    # The VM and the details known before the work are in the row while it runs: a process killed then leaves
    # a row that still says which VM and what (the sweep completes it; the VM's page finds it by UUID).
    async with access.audit.recording("bob", "snapshot", "vm1", vm_uuid="u-1", details="before-upgrade"):
        (running, *_) = await access.audit.vm_actions(user="bob")
        assert (running.action, running.result_code, running.vm_uuid, running.details) == (
            "snapshot", "STARTED", "u-1", "before-upgrade")
