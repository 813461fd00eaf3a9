"""Requests with a body are authenticated before their body is read: the whole app in-process (libvirt's
test driver, SQLite), driven by a client that counts how much of its body the app took."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message

from limen.auth.access import Access
from limen.auth.principal import Principal
from limen.db import Role
from tests.conftest import settings_in
from tests.support.access import sign_in
from tests.support.shared_app import SharedApp, shared_app

ALICE, PASSWORD = "alice", "alice-password-1"
CHUNK = b'{"name": "' + b"x" * 4000


class BodyClient:
    """Sends one request straight into the ASGI app; counts the body bytes the app took."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def request(
        self, method: str, path: str, headers: dict[str, str], chunks: list[bytes]
    ) -> tuple[int, dict[bytes, bytes], Any, int]:
        pending = list(chunks)
        taken = 0
        sent: list[Message] = []

        async def receive() -> Message:
            nonlocal taken
            if not pending:
                return {"type": "http.disconnect"}
            chunk = pending.pop(0)
            taken += len(chunk)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"limen.test")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80), "state": {},
        }
        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], dict(start["headers"]), json.loads(body) if body else None, taken


class World:
    def __init__(self, client: httpx.AsyncClient, app: FastAPI, access: Access) -> None:
        self.client = client
        self.raw = BodyClient(app)
        self.access = access
        self.resolved = 0
        resolve = access.tokens.resolve

        async def counting_resolve(secret: str) -> Principal | None:
            self.resolved += 1
            return await resolve(secret)

        access.tokens.resolve = counting_resolve  # type: ignore[method-assign]


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[SharedApp, World]]:
    """One app for the module, alice made once; each test gets it back as it was then."""
    async with shared_app(settings_in(tmp_path_factory.mktemp("authenticate-first"))) as shared:
        await shared.access.users.create(ALICE, PASSWORD, Role.USER)
        shared.keep_as_start()
        yield shared, World(shared.client, shared.app, shared.access)  # counts resolve() from now on


@pytest.fixture
async def world(shared: tuple[SharedApp, World]) -> World:
    app, world = shared
    await app.reset()
    world.resolved = 0
    return world


def chunked(count: int) -> tuple[dict[str, str], list[bytes]]:
    return {"transfer-encoding": "chunked", "content-type": "application/json"}, [CHUNK] * count


async def test_an_anonymous_chunked_body_gets_401_and_not_a_byte_is_read(world: World) -> None:
    headers, chunks = chunked(200)  # 800 KB offered: under the body limit, so only authentication stops it
    status, response_headers, body, taken = await world.raw.request("POST", "/api/vms", headers, chunks)
    assert status == 401 and body["code"] == "UNAUTHORIZED" and taken == 0
    assert response_headers[b"connection"] == b"close"


async def test_an_anonymous_sized_body_gets_401_and_not_a_byte_is_read(world: World) -> None:
    status, _, body, taken = await world.raw.request(
        "POST", "/api/tokens", {"content-length": "4010", "content-type": "application/json"}, [CHUNK]
    )
    assert status == 401 and body["code"] == "UNAUTHORIZED" and taken == 0


async def test_a_revoked_token_is_refused_before_the_body(world: World) -> None:
    made = await world.access.tokens.create(ALICE, "script")
    await world.access.tokens.revoke(made.info.id, await world.access.tokens.resolve(made.secret))  # type: ignore[arg-type]
    headers, chunks = chunked(3)
    status, _, body, taken = await world.raw.request(
        "POST", "/api/tokens", {**headers, "authorization": f"Bearer {made.secret}"}, chunks
    )
    assert status == 401 and body["code"] == "UNAUTHORIZED" and taken == 0


async def test_a_cookie_request_without_its_csrf_token_is_refused_before_the_body(world: World) -> None:
    await sign_in(world.client, ALICE, PASSWORD)
    cookie = "; ".join(f"{name}={value}" for name, value in world.client.cookies.items())
    headers, chunks = chunked(3)
    status, _, body, taken = await world.raw.request("POST", "/api/tokens", {**headers, "cookie": cookie}, chunks)
    assert status == 403 and body["code"] == "CSRF_FAILED" and taken == 0


async def test_an_authenticated_body_is_read_and_the_request_authenticated_once(world: World) -> None:
    secret = (await world.access.tokens.create(ALICE, "script")).secret
    world.resolved = 0
    body = json.dumps({"name": "made by a big-body test"}).encode()
    status, _, answer, taken = await world.raw.request(
        "POST", "/api/tokens",
        {"authorization": f"Bearer {secret}", "content-type": "application/json", "content-length": str(len(body))},
        [body],
    )
    assert status == 201, answer
    assert answer["owner"] == ALICE and taken == len(body)
    assert world.resolved == 1  # the dependency took the principal the middleware found


async def test_a_cookie_request_with_its_csrf_token_passes(world: World) -> None:
    csrf = await sign_in(world.client, ALICE, PASSWORD)
    response = await world.client.post("/api/tokens", json={"name": "from the page"}, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 201, response.text


async def test_sign_in_needs_no_user_and_reads_its_small_body(world: World) -> None:
    body = json.dumps({"name": ALICE, "password": "wrong"}).encode()
    status, _, answer, taken = await world.raw.request(
        "POST", "/api/login", {"content-type": "application/json", "content-length": str(len(body))}, [body]
    )
    assert status == 401 and answer["code"] == "INVALID_CREDENTIALS" and taken == len(body)


async def test_requests_without_a_body_are_authenticated_by_the_dependency_once(world: World) -> None:
    secret = (await world.access.tokens.create(ALICE, "script")).secret
    world.resolved = 0
    response = await world.client.get("/api/me", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200 and response.json()["name"] == ALICE
    assert world.resolved == 1
    assert (await world.client.get("/api/me")).status_code == 401
