"""A running limen whose PostgreSQL stops: requests that need the database answer 503 DATABASE_UNAVAILABLE,
the JSON error every other failure has, never 500 INTERNAL_ERROR ("something unexpected failed in limen":
the operator would look for a bug in limen instead of at the database). Its own PostgreSQL, stopped by the test."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.access import assert_error
from tests.support.postgres import new_database, postgres_server
from tests.support.server import LimenProcess

pytestmark = pytest.mark.integration


def test_requests_answer_503_database_unavailable_while_postgresql_is_down(
    limen_server: Callable[..., LimenProcess],
) -> None:
    with postgres_server() as server_url:
        server = limen_server(LIMEN_DATABASE_URL=new_database(server_url))
        with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as api:
            assert api.get("/api/users").status_code == 200
            made = api.post("/api/tokens", json={"name": "unused-till-now"})  # not looked up yet: not cached
            assert made.status_code == 201, made.text
            unused = made.json()["secret"]
    # PostgreSQL is stopped now; limen runs on.
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as api:
        for response in (api.get("/api/users"), api.get("/api/vm-actions"),
                         api.post("/api/login", json={"name": "test-admin", "password": "whatever it is"})):
            error = assert_error(response, 503, "DATABASE_UNAVAILABLE")
            assert error["details"].startswith("the database did not answer"), error
        ready = api.get("/readyz")
        assert ready.status_code == 503 and "database" in ready.text

    # A console opened with a token looked up only now: the error frame and close say the database, not
    # INTERNAL_ERROR (4900) with psycopg's text.
    with connect(f"{server.ws_url}/api/vms/any-vm/console",
                 additional_headers={"Authorization": f"Bearer {unused}"}) as ws:
        frames = []
        with contextlib.suppress(ConnectionClosed):
            for frame in ws:
                frames.append(json.loads(frame))
    assert frames[-1]["code"] == "DATABASE_UNAVAILABLE", frames
    assert ws.close_code == 4305
