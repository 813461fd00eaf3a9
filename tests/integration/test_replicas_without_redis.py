"""Two limen replicas on one database whose Redis stops for a while (an operator's test): what is revoked on
one holds on the other without waiting for Redis, a snapshot started on one while Redis was down can be
read on the other once Redis is back (restarted, empty), and so can the end of one that ended meanwhile."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from scripts.cluster_parts.ports import free_port
from websockets.asyncio.client import connect

from limen.api import vm_snapshots
from limen.api.services import Services
from limen.auth.revocation_bus import UNHEARD_RECHECK_INTERVAL
from limen.db import Role
from tests.conftest import settings_in
from tests.support.access import provision_user, redis_server
from tests.support.console import ConsoleTranscript, FakeDomain, driver_uri, node_with_a_qcow2_vm, read_frames
from tests.support.databases import database_url_for
from tests.support.fake_vnc import RfbServer
from tests.support.replicas import replica
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
        redis_running = stack.enter_context(ExitStack())  # Redis alone: stopped midway
        redis_url = redis_running.enter_context(redis_server(tmp_path))
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

            # Redis stops (and refuses connections). Stopped with the whole stack, the event stream watched
            # below was closed first, by this test, and its `ended` was then sometimes never read.
            redis_running.close()
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


SHARED_NODE_VM = "s41r-pictured"


@dataclass
class SnapshotScene:
    """Two replicas on one Redis, and a snapshot taken on the first whose work waits for ``release``."""

    taker: httpx.AsyncClient
    watcher: httpx.AsyncClient
    watcher_services: Services
    release: asyncio.Event
    stop_redis: Callable[[], None]
    start_redis_empty: Callable[[], None]  # where it was


@asynccontextmanager
async def snapshot_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         caplog: pytest.LogCaptureFixture) -> AsyncIterator[SnapshotScene]:
    release = asyncio.Event()

    async def until_released(*_args: object, **_kwargs: object) -> SimpleNamespace:
        await release.wait()
        return SimpleNamespace(name="first", with_memory=False)  # as the snapshot taken

    monkeypatch.setattr(vm_snapshots, "take_snapshot", until_released)
    caplog.set_level(logging.WARNING, logger="limen.events")
    redis_port = free_port()  # Redis comes back where it was
    (tmp_path / "redis-1").mkdir()
    (tmp_path / "redis-2").mkdir()
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(tmp_path / "redis-1", redis_port))
        taking = settings_in(tmp_path / "taking", libvirt_uri=node_with_a_qcow2_vm(tmp_path, SHARED_NODE_VM),
                             redis_url=redis_url)
        watching = settings_in(tmp_path / "watching", redis_url=redis_url)
        async with replica(taking) as (taker, _taker), replica(watching) as (watcher, watcher_services):
            try:
                yield SnapshotScene(
                    taker, watcher, watcher_services, release, stop_redis=stack.close,
                    start_redis_empty=lambda: stack.enter_context(redis_server(tmp_path / "redis-2", redis_port)))
            finally:
                release.set()  # the snapshot's work ends, whatever the test found


def relay_failed(caplog: pytest.LogCaptureFixture) -> bool:
    """An event was dropped, as Redis did not take it."""
    return any(getattr(record, "event", None) == "vm_event_relay_failed" for record in caplog.records)


async def test_a_snapshot_started_while_redis_is_down_is_found_on_another_replica_once_redis_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Its start was never on the board of operations: once Redis was back (restarted, empty), the other
    # replica answered OPERATION_NOT_FOUND for it until it ended, and the page said it had lost track of it.
    async with snapshot_scene(tmp_path, monkeypatch, caplog) as scene:
        scene.stop_redis()
        started = await scene.taker.post(f"/api/vms/{SHARED_NODE_VM}/snapshots", json={"name": "first"})
        assert started.status_code == 202, started.text
        path = f"/api/operations/{started.json()['id']}"
        # Its first event is dropped too (else the watcher would hear of it).
        await _until(lambda: relay_failed(caplog), 10)
        scene.start_redis_empty()
        answers: list[httpx.Response] = []

        async def found() -> bool:
            answers.append(await scene.watcher.get(path))
            return answers[-1].status_code == 200

        waited = time.monotonic()
        while not await found():
            assert time.monotonic() - waited < 10, [answer.text for answer in answers[-3:]]
            await asyncio.sleep(0.1)
    assert answers[-1].json()["state"] == "running" and answers[-1].json()["vm_name"] == SHARED_NODE_VM
    assert {answer.json()["code"] for answer in answers[:-1]} <= {"REDIS_UNAVAILABLE", "OPERATION_NOT_FOUND"}


async def test_a_snapshot_that_ends_while_redis_is_down_is_answered_ended_on_another_replica_once_it_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Its end's event was dropped: the other replica, which had heard it start, answered "running" for an
    # hour, though its end was left on the board of operations again once Redis was back.
    async with snapshot_scene(tmp_path, monkeypatch, caplog) as scene:
        started = await scene.taker.post(f"/api/vms/{SHARED_NODE_VM}/snapshots", json={"name": "first"})
        assert started.status_code == 202, started.text
        operation_id = started.json()["id"]
        path = f"/api/operations/{operation_id}"
        operations = scene.watcher_services.hypervisor.operations
        await _until(lambda: operations.get(operation_id) is not None, 10)  # heard
        scene.stop_redis()
        scene.release.set()
        ended = await scene.taker.get(path)
        while ended.json()["state"] == "running":
            await asyncio.sleep(0.1)
            ended = await scene.taker.get(path)
        await _until(lambda: relay_failed(caplog), 10)  # its end's event was dropped
        assert (await scene.watcher.get(path)).json()["state"] == "running"
        scene.start_redis_empty()
        answers: list[httpx.Response] = []
        waited = time.monotonic()
        while (answer := await scene.watcher.get(path)).json()["state"] == "running":
            answers.append(answer)
            assert time.monotonic() - waited < 10, f"still running after {len(answers)} polls"
            await asyncio.sleep(0.1)
    assert answer.status_code == 200 and answer.json()["state"] == "done", answer.text
