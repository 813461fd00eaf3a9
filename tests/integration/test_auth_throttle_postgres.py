"""The database throttle store on a real PostgreSQL server the test starts (and stops): the same contract
as on SQLite, here with row locks instead of SQLite's one writer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from limen.auth.throttle_store import DatabaseThrottleStore
from limen.db import Database
from limen.db.models import LoginThrottle
from tests.support.postgres import postgres_server
from tests.support.throttle_contract import POLICY, ThrottleStoreContract

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database() -> Iterator[Database]:
    with postgres_server() as url:
        db = Database(url)
        db.migrate()
        yield db
        db.close()


@pytest.fixture
def store(database: Database) -> DatabaseThrottleStore:
    database.execute_sync(delete(LoginThrottle))
    return DatabaseThrottleStore(database, POLICY)


class TestPostgresThrottleStore(ThrottleStoreContract):
    pass
