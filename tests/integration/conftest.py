"""Fixtures of the integration tier (tests/conftest.py has those every tier shares)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _test_guests_idle() -> None:
    from tests.support.idle_guests import keep_test_guests_idle

    keep_test_guests_idle()
