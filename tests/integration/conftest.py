"""Fixtures of the integration tier (tests/conftest.py has those every tier shares)."""

from __future__ import annotations

from tests.support.idle_guests import guests_kept_idle  # noqa: F401 (an autouse fixture, for this tier)
