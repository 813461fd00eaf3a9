"""Fixtures of the integration tier (tests/conftest.py has those every tier shares)."""

from __future__ import annotations

import pytest

from tests.support import volume_leaks
from tests.support.idle_guests import guests_kept_idle  # noqa: F401 (an autouse fixture, for this tier)


def pytest_collection_finish(session: pytest.Session) -> None:
    volume_leaks.watch(session)  # a run that leaves disk volumes in the test pool fails, naming them
