"""Helpers for access-control tests: a settable clock, a cheap password hasher, an app with access
control over libvirt's test driver, sign-in, and a redis-server of the test's own."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher, profiles
from fastapi import FastAPI
from scripts.cluster_parts.redis_process import start_redis

from limen.api.app import create_app
from limen.auth.access import Access
from limen.auth.passwords import Passwords
from limen.auth.tickets import TicketStore
from limen.auth.tokens import Tokens
from limen.auth.users import Users, find_user
from limen.db import Database, Role
from limen.settings import Settings

# Tests hash many passwords; the production parameters cost ~0.1 s each.
CHEAP_HASHER = PasswordHasher.from_parameters(profiles.CHEAPEST)
# The same parameters as limen's settings (the unit tier's environment).
CHEAP_HASHING_ENVIRONMENT = {
    "LIMEN_PASSWORD_HASH_TIME_COST": str(profiles.CHEAPEST.time_cost),
    "LIMEN_PASSWORD_HASH_MEMORY_KIB": str(profiles.CHEAPEST.memory_cost),
    "LIMEN_PASSWORD_HASH_PARALLELISM": str(profiles.CHEAPEST.parallelism),
}
BASE_URL = "http://limen.test"


class FakeClock:
    """Epoch seconds that move only when told to."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_access(settings: Settings, clock: FakeClock | None = None, tickets: TicketStore | None = None) -> Access:
    return Access(settings, clock=clock or FakeClock(), tickets=tickets, hasher=CHEAP_HASHER)


def build_app(settings: Settings, access: Access) -> FastAPI:
    """``create_app`` with ``access``."""
    return create_app(settings, access=access)


@asynccontextmanager
async def access_client(settings: Settings, access: Access) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """An in-process client of the whole app (lifespan running, access control started)."""
    app = build_app(settings, access)
    async with app.router.lifespan_context(app):
        await access.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
                yield client, app
        finally:
            await access.close()


async def sign_in(client: httpx.AsyncClient, name: str, password: str, **headers: str) -> str:
    """Signs the client in (its cookie jar keeps the session); returns the CSRF token."""
    response = await client.post("/api/login", json={"name": name, "password": password}, headers=headers)
    assert response.status_code == 200, response.text
    csrf: str = response.json()["csrf_token"]
    return csrf


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert {"error", "code", "details", "message"} <= set(body)
    assert body["code"] == code, body
    return body


@contextmanager
def redis_server(tmp_path: Path, port: int | None = None) -> Iterator[str]:
    """A redis-server on a free loopback port (or ``port``), without persistence; yields its URL, stops it
    after."""
    process, url = start_redis(tmp_path, port)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


TEST_ADMIN = "test-admin"
TEST_ADMIN_PASSWORD = "test-admin-password"


async def admin_token(access: Access) -> str:
    """An API token of an admin (created on first use) on a started ``access``."""
    if TEST_ADMIN not in [user.name for user in await access.users.list_all()]:
        await access.users.create(TEST_ADMIN, TEST_ADMIN_PASSWORD, Role.ADMIN)
    return (await access.tokens.create(TEST_ADMIN, "tests")).secret


def provision_admin_token(database_url: str) -> str:
    """The same for a ``limen serve`` process not started yet: writes straight into its database."""
    db = Database(database_url)
    try:
        db.migrate()
        users = Users(db, Passwords(CHEAP_HASHER), time.time)
        if db.run_sync(lambda session: find_user(session, TEST_ADMIN)) is None:
            users.create_sync(TEST_ADMIN, TEST_ADMIN_PASSWORD, Role.ADMIN)
        return Tokens(db, time.time).create_sync(TEST_ADMIN, "tests").secret
    finally:
        db.close()


def provision_user(database_url: str, name: str, password: str, role: Role = Role.USER) -> str:
    """A user (created if missing) and a new API token of theirs, straight into a server's database;
    returns the token's secret."""
    db = Database(database_url)
    try:
        db.migrate()
        if db.run_sync(lambda session: find_user(session, name)) is None:
            Users(db, Passwords(CHEAP_HASHER), time.time).create_sync(name, password, role)
        return Tokens(db, time.time).create_sync(name, "tests").secret
    finally:
        db.close()
