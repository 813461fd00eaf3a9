"""Two limen replicas on one database whose Redis stops for a while (an operator's test): what is revoked on
one holds on the other without waiting for Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from limen.auth.revocation_bus import UNHEARD_RECHECK_INTERVAL
from limen.db import Role
from tests.support.access import provision_user, redis_server
from tests.support.console import ConsoleTranscript, FakeDomain, driver_uri, read_frames
from tests.support.databases import database_url_for
from tests.support.fake_vnc import RfbServer
from tests.support.server import LimenProcess
from tests.support.sse import SseStream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PROXY_STATUS = "VNC connection established, starting proxy..."
# From the change on one replica to its effect on the other while Redis is down: the other found Redis gone at
# once (it refuses connections), then re-checks every UNHEARD_RECHECK_INTERVAL; slack for a loaded machine.
BOUND = UNHEARD_RECHECK_INTERVAL + 3


async def _until(answer: Callable[[], bool], within: float) -> float:
    """Seconds until ``answer()`` is true (checked every 0.1 s); fails after ``within``."""
    started = time.monotonic()
    while not answer():
        assert time.monotonic() - started < within, f"not within {within} s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_a_token_revoked_on_one_replica_while_redis_is_down_stops_working_on_the_other(
    limen_server: Callable[..., LimenProcess], tmp_path: Path
) -> None:
    # Redis stopped, a token revoked on replica A: on replica B the token still answered for up to 30 s (B's
    # remembered principal), and B's event stream and console of it stayed open until Redis came back.
    database_url = database_url_for(tmp_path / "shared")
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(tmp_path))
        async with RfbServer() as vnc:
            node = driver_uri(tmp_path, [FakeDomain("unheard", vnc=vnc.port)])
            common = {"LIMEN_REDIS_URL": redis_url, "LIMEN_LIBVIRT_URI": node, "LIMEN_DATABASE_URL": database_url}
            a = await asyncio.to_thread(limen_server, LIMEN_DATA_DIR=str(tmp_path / "a"), **common)
            b = await asyncio.to_thread(limen_server, LIMEN_DATA_DIR=str(tmp_path / "b"), **common)
            secret = provision_user(database_url, "s41r-bob", "s41r-bob-password", Role.ADMIN)
            bob = {"Authorization": f"Bearer {secret}"}
            async with httpx.AsyncClient(base_url=b.base_url, headers=bob, timeout=30) as on_b:
                assert (await on_b.get("/api/vms")).status_code == 200  # B now remembers who the token is
                tokens = (await on_b.get("/api/tokens")).json()
                ticket = (await on_b.post("/api/vms/unheard/console-ticket",
                                          headers={"Origin": b.base_url})).json()["ticket"]
            events = SseStream(f"{b.base_url}/api/events", headers=bob).start()
            stack.callback(events.close)
            assert events.next(event="ready").json == {"user": "s41r-bob"}
            ws = await connect(f"{b.ws_url}/api/vms/unheard/console?notices=1&ticket={ticket}",
                               origin=b.base_url, open_timeout=10, close_timeout=2,  # type: ignore[arg-type]
                               ping_interval=None, max_size=None, compression=None)
            transcript = ConsoleTranscript()
            await asyncio.wait_for(read_frames(ws, transcript, time.monotonic(), until_binary=1), 20)
            assert transcript.statuses[-1] == PROXY_STATUS, transcript
            console = asyncio.create_task(read_frames(ws, transcript, time.monotonic()))

            stack.close()  # Redis stops (and refuses connections)
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(base_url=a.base_url, headers=a.auth_headers, timeout=30) as on_a:
                (token,) = tokens
                revoked = await on_a.delete(f"/api/tokens/{token['id']}")
            assert revoked.status_code == 200, revoked.text
            changed = time.monotonic()

            async with httpx.AsyncClient(base_url=b.base_url, headers=bob, timeout=30) as on_b:
                answers: list[int] = []

                async def refused() -> bool:
                    answers.append((await on_b.get("/api/vms")).status_code)
                    return answers[-1] == 401

                while not await refused():
                    assert time.monotonic() - changed < BOUND, answers
                    await asyncio.sleep(0.1)
            ended = events.next(timeout=max(0.1, BOUND - (time.monotonic() - changed)), event="ended")
            assert ended.json["code"] == "ACCESS_REVOKED", ended.json
            await asyncio.wait_for(console, max(0.1, BOUND - (time.monotonic() - changed)))
            assert (transcript.close_code, transcript.close_reason) == (4513, "ACCESS_REVOKED"), transcript
            assert transcript.errors[-1]["code"] == "ACCESS_REVOKED", transcript.errors
    assert "Traceback" not in b.output()
