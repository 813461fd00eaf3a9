"""A running limen whose PostgreSQL hangs (stopped, not refusing: SIGSTOP of its processes, a frozen host).

Before, every request that needed the database waited for the whole outage (behind HAProxy, its HTML
``504 Gateway Time-out`` after 30 s). Now each answers DATABASE_UNAVAILABLE, limen's JSON error, within
LIMEN_DATABASE_TIMEOUT, however many come; what needs no database (``/healthz``, a static page) answers
as ever; and once PostgreSQL resumes (SIGCONT) requests succeed again, without a restart."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.access import assert_error
from tests.support.postgres import hung, new_database, running_postgres
from tests.support.server import LimenProcess

pytestmark = pytest.mark.integration

DEADLINE = "2"  # LIMEN_DATABASE_TIMEOUT, seconds
# A bound on each request of the test: far more than the deadline, far less than "the whole outage" (which
# never ends while the database is stopped). Not a measurement.
CLIENT_TIMEOUT = 20
PARALLEL = 30  # more requests at once than the database's threads and connections (15)


def test_requests_answer_database_unavailable_within_the_deadline_while_postgresql_hangs(
    limen_server: Callable[..., LimenProcess],
) -> None:
    with running_postgres() as (postgres, server_url):
        server = limen_server(LIMEN_DATABASE_URL=new_database(server_url), LIMEN_DATABASE_TIMEOUT=DEADLINE)
        with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=CLIENT_TIMEOUT) as api:
            assert api.get("/api/users").status_code == 200
            made = api.post("/api/tokens", json={"name": "looked-up-during-the-hang"})
            assert made.status_code == 201, made.text
            unused = made.json()["secret"]
            with hung(postgres):
                with ThreadPoolExecutor(PARALLEL) as pool:
                    answers = list(pool.map(lambda _: api.get("/api/users"), range(PARALLEL)))
                for response in answers:
                    error = assert_error(response, 503, "DATABASE_UNAVAILABLE")
                    assert error["details"].startswith("the database did not answer"), error
                for response in (api.get("/api/vm-actions"),
                                 api.post("/api/login", json={"name": "test-admin", "password": "whatever"})):
                    assert_error(response, 503, "DATABASE_UNAVAILABLE")
                # Readiness waits for the database as requests do: LIMEN_DATABASE_TIMEOUT, not libvirt's bound.
                ready = api.get("/readyz")
                assert ready.status_code == 503 and ready.json()["failing"] == ["database"], ready.text
                assert ready.json()["checks"]["database"].endswith(f"within {DEADLINE} s"), ready.text
                # What needs no database answers as ever, with the hung calls' threads still held.
                assert api.get("/healthz").json()["status"] == "ok"
                assert api.get("/login").status_code == 200
                # A console whose token is looked up only now: its error frame and close code say so.
                with connect(f"{server.ws_url}/api/vms/any-vm/console", open_timeout=CLIENT_TIMEOUT,
                             additional_headers={"Authorization": f"Bearer {unused}"}) as ws:
                    frames = []
                    with contextlib.suppress(ConnectionClosed):
                        for frame in ws:
                            frames.append(json.loads(frame))
                assert frames[-1]["code"] == "DATABASE_UNAVAILABLE", frames
                assert ws.close_code == 4305
            # PostgreSQL resumed: limen answers again by itself (the hung calls return first).
            stop = time.monotonic() + CLIENT_TIMEOUT
            while (answer := api.get("/api/users")).status_code != 200 and time.monotonic() < stop:
                time.sleep(0.2)
            assert answer.status_code == 200, answer.text
            assert api.post("/api/tokens", json={"name": "after-the-hang"}).status_code == 201
        assert server.running
