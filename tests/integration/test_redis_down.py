"""A running ``limen serve`` whose Redis (LIMEN_REDIS_URL) goes away: sign-in, console tickets and unlocking
answer 503 REDIS_UNAVAILABLE within a bound, revocations are still made here, and nothing answers 500 or
hangs, whether Redis refuses connections (stopped) or accepts them and never answers (hung)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from limen.auth.tickets import new_ticket
from limen.redis_client import BOUND
from tests.support.access import redis_server
from tests.support.console import FakeDomain, driver_uri, read_console
from tests.support.server import LimenProcess

pytestmark = pytest.mark.integration

VM = "limen-test-redis-down"
USER, PASSWORD = "redis-user", "a password that is long enough"
# The functional bound: every call gives up within BOUND seconds; some slack for a loaded 2-core machine.
ANSWER_WITHIN = BOUND + 6


def sign_in(server: LimenProcess, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(f"{server.base_url}/api/login", json={"name": USER, "password": password}, timeout=60)


async def timed(server: LimenProcess, method: str, path: str, **kwargs: object) -> tuple[httpx.Response, float]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as client:
        started = time.monotonic()
        response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
        return response, time.monotonic() - started


def assert_redis_unavailable(response: httpx.Response, took: float) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["code"] == "REDIS_UNAVAILABLE", body
    assert set(body) >= {"error", "code", "details", "message"}
    assert "Redis" in body["details"] and "redis://" not in body["details"]
    assert took < ANSWER_WITHIN, f"answered after {took:.1f} s"


async def the_redis_paths(server: LimenProcess) -> None:
    """Sign-in (twice at once), a console ticket and an unlock, in parallel: each a 503 within the bound."""
    admin = server.auth_headers
    answers = await asyncio.gather(
        timed(server, "POST", "/api/login", json={"name": USER, "password": PASSWORD}),
        timed(server, "POST", "/api/login", json={"name": USER, "password": "wrong"}),
        timed(server, "POST", f"/api/vms/{VM}/console-ticket", headers=admin),
        timed(server, "POST", f"/api/users/{USER}/unlock", headers=admin),
    )
    for response, took in answers:
        assert_redis_unavailable(response, took)

    # The console WebSocket redeems its ticket in Redis: it closes with REDIS_UNAVAILABLE, in time.
    started = time.monotonic()
    ws_base = server.base_url.replace("http://", "ws://")
    transcript = await read_console(f"{ws_base}/api/vms/{VM}/console?ticket={new_ticket()}", timeout=ANSWER_WITHIN + 5)
    assert (transcript.close_code, transcript.close_reason) == (4523, "REDIS_UNAVAILABLE"), transcript
    assert time.monotonic() - started < ANSWER_WITHIN


def test_sign_in_tickets_and_revocations_answer_503_when_redis_is_down_or_hung(
    limen_server: Callable[..., LimenProcess], tmp_path: Path
) -> None:
    (tmp_path / "redis").mkdir()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server(tmp_path / "redis"))
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        server = limen_server(LIMEN_REDIS_URL=url,
                              LIMEN_LIBVIRT_URI=driver_uri(tmp_path, [FakeDomain(VM, vnc=5999)]))
        made = httpx.post(f"{server.base_url}/api/users", json={"name": USER, "password": PASSWORD},
                          headers=server.auth_headers, timeout=30)
        assert made.status_code == 201, made.text
        assert sign_in(server).status_code == 200
        stack.close()  # Redis stops: connections are refused

    asyncio.run(the_redis_paths(server))

    # A hung Redis: something accepts on its port and never says a byte.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hung:
        hung.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hung.bind(("127.0.0.1", port))
        hung.listen(64)
        asyncio.run(the_redis_paths(server))

        # Revocations are made here even when other instances cannot be told: deleting a user works.
        response, took = asyncio.run(timed(server, "DELETE", f"/api/users/{USER}", headers=server.auth_headers))
        assert response.status_code == 200, response.text
        assert took < ANSWER_WITHIN, f"answered after {took:.1f} s"

    # The server still answers what needs no Redis, and reports Redis in its readiness check.
    assert httpx.get(f"{server.base_url}/api/vms", headers=server.auth_headers, timeout=30).status_code == 200
    assert "Traceback" not in server.output()
    assert " 500 " not in server.output()
