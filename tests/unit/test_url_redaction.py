"""URLs as limen shows them: no password, in the user-info part or in the query (limen.url_redaction)."""

from __future__ import annotations

import pytest

from limen.db.database import Database
from limen.url_redaction import redacted_url


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://limen:hunter2@db/limen", "postgresql://limen:***@db/limen"),
    ("postgresql+psycopg://db/limen?password=hunter2", "postgresql+psycopg://db/limen?password=***"),
    ("postgresql://db/limen?sslmode=require&sslpassword=k3y&application_name=x",
     "postgresql://db/limen?sslmode=require&sslpassword=***&application_name=x"),
    ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
    ("redis://cache:6379/0?Password=s3cret", "redis://cache:6379/0?Password=***"),
    ("sqlite:////var/lib/limen/limen.db", "sqlite:////var/lib/limen/limen.db"),
    ("not a url", "not a url"),
])
def test_no_password_is_shown_wherever_the_url_holds_it(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_the_databases_own_label_hides_a_password_in_its_query() -> None:
    """``limen serve`` said 'the database postgresql://…?password=hunter2 does not answer'."""
    database = Database("postgresql+psycopg://db.invalid/limen?password=hunter2")
    try:
        assert "hunter2" not in database.redacted_url and "password=***" in database.redacted_url
    finally:
        database.close()
