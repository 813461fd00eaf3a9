"""One started app for a whole test module, put back before each test as it was when the module set it up
(unit tier). An app's start-up (a new database, the lifespan: libvirt, host sync, crash recovery) costs
~30 ms of CPU; putting it back costs a few.

What a test can change, and what :meth:`SharedApp.reset` puts back:

- every table's rows (but this instance's own ``limen_instances`` row, which its heartbeat keeps writing)
  as they were at :meth:`SharedApp.keep_as_start`: users made there come back with their password hashes,
  everything made since (tokens, browser sessions, sign-in throttle counts, audit rows, quotas) is gone;
- the in-memory state over them: the principal cache, the console tickets, the throttle store's pruning
  time, the revocation bus's subscribers (a test's own go), the console registry's remembered revocations;
- the test clock (now again), the client's cookie jar.

Not reset: libvirt's ``test:///default`` (one per process, shared by a module's tests; it is put back as
fresh after each module: tests.support.test_driver_state), the app's Prometheus counters and the stats
sampler's history (a module whose tests read them keeps an app per test, or clears what it reads itself).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Table, delete, insert, select

from limen.api.services import services_of
from limen.auth.access import Access
from limen.auth.revocation_bus import LocalRevocationBus
from limen.auth.throttle_store import DatabaseThrottleStore
from limen.auth.tickets import MemoryTicketStore
from limen.db import Role
from limen.db.models import Base
from limen.settings import Settings
from tests.support.access import FakeClock, access_client, admin_token, make_access

# The running instance's heartbeat row: written by its own task all along, and what recovery reads as "me".
KEPT_TABLES = frozenset({"limen_instances"})


class SharedApp:
    def __init__(self, client: httpx.AsyncClient, app: FastAPI, access: Access, clock: FakeClock) -> None:
        self.client = client
        self.app = app
        self.access = access
        self.clock = clock
        self._tables: list[Table] = [t for t in Base.metadata.sorted_tables if t.name not in KEPT_TABLES]
        self._rows: dict[str, list[dict[str, Any]]] = {}
        bus = access.revocations
        self._handlers = list(bus._handlers) if isinstance(bus, LocalRevocationBus) else []

    async def users_with_tokens(self, users: dict[str, Role], password: str) -> dict[str, dict[str, str]]:
        """Makes these users (name → role), each with an API token: each one's ``Authorization`` header."""
        headers = {}
        for name, role in users.items():
            await self.access.users.create(name, password, role)
            headers[name] = {"Authorization": f"Bearer {(await self.access.tokens.create(name, 'tests')).secret}"}
        return headers

    def keep_as_start(self) -> None:
        """What :meth:`reset` puts back from now on: the rows of every table as they are now."""
        with self.access.db.engine.connect() as connection:
            self._rows = {table.name: [dict(row._mapping) for row in connection.execute(select(table))]
                          for table in self._tables}

    async def reset(self) -> None:
        with self.access.db.engine.begin() as connection:  # one transaction: no request sees half of it
            for table in reversed(self._tables):  # rows pointing at others go first
                connection.execute(delete(table))
            for table in self._tables:
                if self._rows.get(table.name):
                    connection.execute(insert(table), self._rows[table.name])
        self.access.principals.forget_all()
        tickets = self.access.tickets
        if isinstance(tickets, MemoryTicketStore):
            await tickets.close()  # it forgets every ticket and stays usable
        store = self.access.login_limiter.store
        if isinstance(store, DatabaseThrottleStore):
            store._next_prune = 0.0  # pruning is due at once, as in a new store
        bus = self.access.revocations
        if isinstance(bus, LocalRevocationBus):
            bus._handlers[:] = self._handlers
        consoles = services_of(self.app).console_sessions
        assert len(consoles) == 0, "a test left a console running"
        consoles._recent.clear()  # revocations it remembers for tickets: ids of deleted rows come again
        self.clock.now = time.time()
        self.client.cookies.clear()


@asynccontextmanager
async def shared_app(settings: Settings) -> AsyncIterator[SharedApp]:
    """A started app on a fake clock; call :meth:`SharedApp.keep_as_start` once its users are made."""
    clock = FakeClock()
    access = make_access(settings, clock)
    async with access_client(settings, access) as (client, app):
        yield SharedApp(client, app, access, clock)


@asynccontextmanager
async def admin_shared_app(settings: Settings) -> AsyncIterator[SharedApp]:
    """:func:`shared_app` whose client is signed in as an administrator (an API token in every request), kept
    as it starts: what most modules of API tests share."""
    async with shared_app(settings) as shared:
        shared.client.headers["Authorization"] = f"Bearer {await admin_token(shared.access)}"
        shared.keep_as_start()
        yield shared
