"""A database error as limen logs it (``log.exception`` of the request that met it) names the statement, never
its values: they are a new session's CSRF token, password hashes, token digests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from limen.db import Database


def test_a_failed_statements_values_stay_out_of_its_error(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    try:
        with database.engine.begin() as connection:
            connection.execute(text("CREATE TABLE secrets (value TEXT UNIQUE)"))
            connection.execute(text("INSERT INTO secrets VALUES (:value)"), {"value": "csrf-3f9a0c"})
            with pytest.raises(DBAPIError) as failed:
                connection.execute(text("INSERT INTO secrets VALUES (:value)"), {"value": "csrf-3f9a0c"})
    finally:
        database.engine.dispose()
    assert "UNIQUE constraint failed" in str(failed.value)
    assert "csrf-3f9a0c" not in str(failed.value)
