"""Time as limen's access code and audit trail see it: injectable, so expiry is tested without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

# Seconds since the epoch, like time.time.
Clock = Callable[[], float]

system_clock: Clock = time.time


def utc_now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock(), UTC)
