"""The database throttle store on a real SQLite file: the store contract, several processes' worth of
connections at once, and pruning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from limen.auth.throttle_store import DatabaseThrottleStore
from limen.db import Database
from limen.db.models import LoginThrottle
from tests.support.throttle_contract import NOW, POLICY, USER_LIMIT, ThrottleStoreContract, fail, keys


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def store(database: Database) -> DatabaseThrottleStore:
    return DatabaseThrottleStore(database, POLICY)


class TestDatabaseThrottleStore(ThrottleStoreContract):
    pass


def rows(db: Database) -> int:
    return int(db.fetch_one_sync(select(func.count()).select_from(LoginThrottle))[0])  # type: ignore[index]


async def test_two_instances_on_one_database_share_the_counts(tmp_path: Path, database: Database) -> None:
    other_db = Database(f"sqlite:///{tmp_path / 'limen.db'}")  # another engine: as another process would
    try:
        first, second = DatabaseThrottleStore(database, POLICY), DatabaseThrottleStore(other_db, POLICY)
        await fail(first, "alice", NOW)
        await fail(second, "alice", NOW)
        assert await first.reserve(keys("alice"), NOW) is None
        assert await second.reserve(keys("alice"), NOW) == POLICY.in_flight_wait  # the first's is in flight
        assert await second.clear_user("alice") == 1
        assert await first.reserve(keys("alice"), NOW) is None
    finally:
        other_db.close()


async def test_forgotten_rows_are_pruned(database: Database, store: DatabaseThrottleStore) -> None:
    for index in range(50):
        await fail(store, f"guess{index}", NOW, f"192.0.2.{index}")
    assert rows(database) == 100
    await fail(store, "alice", NOW + 30)  # within the prune interval: nothing pruned yet
    assert rows(database) == 101
    await fail(store, "alice", NOW + POLICY.forget_after + 1)
    assert rows(database) == 2  # alice's two keys are all that is left
    assert USER_LIMIT > 2
