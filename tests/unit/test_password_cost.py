"""argon2id's cost comes from the settings (``password_hash_*``): production keeps argon2-cffi's defaults, and a
change locks nobody out (a hash keeps its own parameters; the password is rehashed at its next sign-in)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from limen.auth.access import Access
from limen.auth.passwords import Passwords
from limen.settings import Settings, SettingsError, load_settings
from tests.support.access import FakeClock


def test_the_defaults_are_argon2_cffis(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TIME_COST", "MEMORY_KIB", "PARALLELISM"):
        monkeypatch.delenv(f"LIMEN_PASSWORD_HASH_{name}", raising=False)
    settings = load_settings(None)
    production = PasswordHasher()
    assert (settings.password_hash_time_cost, settings.password_hash_memory_kib,
            settings.password_hash_parallelism) == (production.time_cost, production.memory_cost,
                                                    production.parallelism)


def test_hashes_are_made_at_the_settings_cost(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(password_hash_time_cost=2, password_hash_memory_kib=16, password_hash_parallelism=2)
    password_hash = Passwords.of(settings).hash("a long enough password")
    assert password_hash.startswith("$argon2id$v=19$m=16,t=2,p=2$")
    assert Passwords.of(settings).verify(password_hash, "a long enough password")


def test_memory_below_8_kib_a_lane_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="password_hash_memory_kib"):
        load_settings(None, data_dir=tmp_path, password_hash_memory_kib=8, password_hash_parallelism=2)
    with pytest.raises(SettingsError, match="LIMEN_PASSWORD_HASH_TIME_COST"):
        load_settings(None, data_dir=tmp_path, password_hash_time_cost=0)


async def test_a_changed_cost_locks_nobody_out_and_rehashes_at_sign_in(
    make_settings: Callable[..., Settings],
) -> None:
    before = make_settings(password_hash_time_cost=1)
    after = make_settings(password_hash_time_cost=2)
    access = Access(before, clock=FakeClock())
    await access.start()
    try:
        await access.users.create("alice", "alice's long password")
    finally:
        await access.close()

    def stored_hash(access: Access) -> str:
        with access.db.engine.connect() as connection:
            value: str = connection.execute(text("SELECT password_hash FROM users WHERE name = 'alice'")).scalar_one()
            return value

    access = Access(after, clock=FakeClock())
    await access.start()
    try:
        assert ",t=1," in stored_hash(access)
        assert await access.users.authenticate("alice", "alice's long password") is not None
        assert ",t=2," in stored_hash(access)
        assert await access.users.authenticate("alice", "alice's long password") is not None
        assert await access.users.authenticate("alice", "not alice's password") is None
    finally:
        await access.close()
