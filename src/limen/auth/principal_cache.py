"""The principals behind API tokens, session cookies and user names, remembered between requests.

Every console set-up and API request resolves its credential; without this, each one is a database read in
a worker thread (a thread hop, and ORM work that shares the GIL with the event loop). Only valid answers
are kept (a refusal is always read again, so a grant shows at once), and every entry is dropped when
rights may have been taken away, before the change can be used:

* in this process, by the code that changed them (a token revoked, a browser signed out, a user's role,
  disabled, approved flag or deletion: :meth:`PrincipalCache.forget_all` right after the commit), and by
  every :class:`~limen.auth.revocation.Revocation` of a user or a credential on the revocation bus, which
  also carries the changes other instances and the command line make when they share a Redis;
* without a Redis, by the *credentials stamp* file next to the data, which the command line and every
  instance's revocations touch (:func:`touch_credentials_stamp`) and whose modification time is compared
  on every look-up (one ``stat``): other instances on this host and the command line reach it too;
* a read that started before a change never stores its answer after it (a generation number), and an entry
  lives at most ``MAX_AGE`` seconds (so a token's ``last_used_at`` is still written about once a minute)
  and never past its browser session's expiry.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from limen.auth.principal import Principal

MAX_AGE = 30.0  # seconds an entry is used without reading the database again
MAX_ENTRIES = 10_000  # bounded memory: beyond it the cache starts over
STAMP_NAME = "credentials-changed"


def credentials_stamp_path(data_dir: Path) -> Path:
    return data_dir / STAMP_NAME


def touch_credentials_stamp(data_dir: Path) -> None:
    """Tells running servers on this host (without a Redis to tell them) that rights were taken away."""
    path = credentials_stamp_path(data_dir)
    with contextlib.suppress(OSError):
        path.touch()
        os.utime(path)


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    stored_at: float  # monotonic
    valid_until: datetime | None  # a browser session's expiry


class PrincipalCache:
    def __init__(self, stamp: Path | None = None, *, max_age: float = MAX_AGE) -> None:
        self._entries: dict[str, _Entry] = {}
        self._generation = 0
        self._stamp = stamp
        self._stamp_seen = self._stamp_time()
        self.max_age = max_age

    def _stamp_time(self) -> int:
        if self._stamp is None:
            return 0
        try:
            return self._stamp.stat().st_mtime_ns
        except OSError:
            return 0

    @property
    def generation(self) -> int:
        """Take it before reading the database; pass it to :meth:`put`."""
        return self._generation

    def get(self, key: str, now: datetime | None = None) -> Principal | None:
        stamp = self._stamp_time()
        if stamp != self._stamp_seen:
            self._stamp_seen = stamp
            self.forget_all()
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.stored_at > self.max_age or (
                entry.valid_until is not None and now is not None and now >= entry.valid_until):
            self._entries.pop(key, None)
            return None
        return entry.principal

    def put(self, key: str, principal: Principal, generation: int, *, valid_until: datetime | None = None) -> None:
        """Keeps ``principal`` unless rights changed since ``generation`` was taken."""
        if generation != self._generation:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = _Entry(principal, time.monotonic(), valid_until)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def forget_all(self) -> None:
        self._generation += 1
        self._entries.clear()

    @property
    def size(self) -> int:
        return len(self._entries)
