"""argon2id's cost comes from the settings (``password_hash_*``): production keeps argon2-cffi's defaults, and a
change locks nobody out (a hash keeps its own parameters; the password is rehashed at its next sign-in)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from argon2 import PasswordHasher, profiles
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


class GatedHasher(PasswordHasher):
    """argon2 at the cheapest cost, each verify held until ``release`` is set, counting how many run at once."""

    def __init__(self) -> None:
        cheapest = profiles.CHEAPEST
        super().__init__(time_cost=cheapest.time_cost, memory_cost=cheapest.memory_cost,
                         parallelism=cheapest.parallelism)
        self.release = threading.Event()
        self.running = self.peak = self.started = 0
        self.awaited = 1  # ``turns_taken`` is set once this many verifies have started
        self.turns_taken = threading.Event()
        self._lock = threading.Lock()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        with self._lock:
            self.running += 1
            self.started += 1
            self.peak = max(self.peak, self.running)
            if self.started >= self.awaited:
                self.turns_taken.set()
        try:
            self.release.wait(30)
            return super().verify(hash, password)
        finally:
            with self._lock:
                self.running -= 1


async def test_sign_ins_take_turns_and_hold_no_database_connection(make_settings: Callable[..., Settings]) -> None:
    """40 wrong passwords at once (from many addresses, each within its throttle) ran 40 verifies of 64 MiB
    each, every one holding a database connection: the process grew 1.1 GB and other requests waited ~20 s
    for the database. Now one verify a core runs, the rest wait their turn holding nothing."""
    hasher = GatedHasher()
    access = Access(make_settings(), clock=FakeClock(), hasher=hasher)
    await access.start()
    try:
        await access.users.create("alice", "correct horse battery")
        names = ["alice" if index % 2 else f"nobody{index}" for index in range(40)]
        attempts = [asyncio.create_task(access.users.authenticate(name, "wrong password")) for name in names]
        hasher.awaited = access.passwords.slots
        assert await anyio.to_thread.run_sync(hasher.turns_taken.wait, 10)
        await asyncio.sleep(0.2)  # time for more to start, were they let
        assert hasher.running == access.passwords.slots
        # Meanwhile the database answers at once: no waiting verify holds a connection or a worker thread.
        with anyio.fail_after(10):
            assert await access.db.run(lambda session: session.scalar(text("SELECT 1"))) == 1
        hasher.release.set()
        assert await asyncio.gather(*attempts) == [None] * 40
        assert hasher.peak == access.passwords.slots and hasher.started == 40
    finally:
        hasher.release.set()
        await access.close()
