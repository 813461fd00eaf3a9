"""Two ``limen serve`` replicas on one PostgreSQL database and one Redis, behind HAProxy with the shipped
``deploy/haproxy.cfg``: real processes all of them (a throw-away PostgreSQL cluster, redis-server, haproxy),
consoles to real QEMU VMs (TCG, 64 MiB, the demo GRUB ISO) under the system libvirtd.

* A console ticket issued by replica A opens a console on replica B, once: a second use is TICKET_USED on
  either replica.
* Disabling a user on A ends that user's console held by B within 1 s (ACCESS_REVOKED); the live-session
  list of either replica shows the consoles both hold.
* SIGTERM to the replica holding a console (opened through HAProxy): /readyz answers 503 until the replica
  is gone, the console gets SERVER_SHUTDOWN, the replica exits within its bound, and a reconnect through
  HAProxy (a new ticket, a new WebSocket) reaches the other replica and is live (QEMU's RFB banner) within
  3 s of the close.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect

from limen.api.services import services_of
from limen.db import Database
from limen.db.models import ConsoleSessionRecord, LimenInstance
from limen.settings import Settings
from tests.conftest import ISO_DIR, QEMU_URI, TEST_POOL, TEST_POOL_DIR, app_client
from tests.integration.test_revocation import (
    PROXY_STATUS,
    Console,
    World,
    changed,
    ends_with_access_revoked,
    make_vms,
    open_all,
    provision,
    still_streams,
)
from tests.support.access import provision_admin_token, redis_server
from tests.support.console import ConsoleTranscript, read_console, read_frames
from tests.support.haproxy import Proxy, haproxy
from tests.support.net import free_port
from tests.support.postgres import new_database, postgres_server
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RECONNECT_BOUND = 3.0  # seconds from SERVER_SHUTDOWN to a live console through the other replica
SLACK = 1.0  # for a 2-core machine shared with other test runs
EXIT_BOUND = 12.0  # SIGTERM to exit: 5 s for consoles, 5 s of uvicorn's graceful shutdown, the lifespan


@dataclass
class Cluster:
    a: LimenProcess
    b: LimenProcess
    proxy: Proxy
    database_url: str
    on_a: World
    on_b: World

    def by_pid(self, pid: int) -> LimenProcess:
        (found,) = [replica for replica in (self.a, self.b) if replica.pid == pid]
        return found


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture
async def cluster(postgres: str, tmp_path: Path, vm_names: Callable[[], str]) -> AsyncIterator[Cluster]:
    database_url = new_database(postgres)
    port_a, port_b, port_proxy = free_port(), free_port(), free_port()
    # Browsers come through the proxy; the tests also talk to each replica directly, as the same site.
    origins = ",".join(f"http://127.0.0.1:{port}" for port in (port_proxy, port_a, port_b))
    with ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(tmp_path))
        replicas = []
        for name, port in (("a", port_a), ("b", port_b)):
            env = {
                "LIMEN_LIBVIRT_URI": QEMU_URI, "LIMEN_ISO_DIR": str(ISO_DIR),
                "LIMEN_DATA_DIR": str(tmp_path / f"data-{name}"), "LIMEN_LOG_DIR": str(tmp_path / f"log-{name}"),
                "LIMEN_STORAGE_POOL": TEST_POOL, "LIMEN_STORAGE_POOL_DIR": str(TEST_POOL_DIR),
                "LIMEN_VIRT_TYPE": "qemu", "LIMEN_DATABASE_URL": database_url, "LIMEN_REDIS_URL": redis_url,
                "LIMEN_ALLOWED_ORIGINS": origins, "LIMEN_TRUSTED_PROXIES": "127.0.0.1/32",
            }
            replica = LimenProcess(env, tmp_path / f"serve-{name}.log", port=port)
            replicas.append(replica)
            stack.callback(replica.stop)
        a, b = replicas
        # Both start at once: one migrates the new database, the other waits on the advisory lock.
        await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
        a.auth_headers = b.auth_headers = {"Authorization": f"Bearer {provision_admin_token(database_url)}"}
        proxy = stack.enter_context(haproxy([f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"],
                                            tmp_path / "haproxy.log", port=port_proxy))
        tokens = provision(database_url)
        vms = await make_vms(a, {"bobs": vm_names(), "spare": vm_names()}, {"bobs": "bob", "spare": "carol"})
        on_a, on_b = World(a, database_url, vms, tokens), World(b, database_url, vms, tokens)
        try:
            yield Cluster(a, b, proxy, database_url, on_a, on_b)
        finally:
            for console in on_a.consoles + on_b.consoles:
                await console.ws.close()


def test_replicas_starting_together_migrate_once(postgres: str) -> None:
    """Six processes' worth of migrations at once on a new database: each waits on the advisory lock, one
    creates the schema, the others find it at head (without the lock they collide creating tables)."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text

    url = new_database(postgres)
    databases = [Database(url) for _ in range(6)]
    try:
        with ThreadPoolExecutor(len(databases)) as pool:
            list(pool.map(lambda db: db.migrate(), databases))
        row = databases[0].fetch_one_sync(text("SELECT count(*), min(version_num) FROM alembic_version"))
        assert row is not None
        count, head = list(row)
        assert count == 1
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        from limen.db.database import MIGRATIONS_DIR

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        assert head == ScriptDirectory.from_config(config).get_current_head()
    finally:
        for db in databases:
            db.close()


def holder_pid(database_url: str, session_id: str) -> int:
    """The PID of the replica that holds the console session ``session_id`` (its row names its instance)."""
    db = Database(database_url)
    try:
        row = db.fetch_one_sync(select(LimenInstance.pid).join(
            ConsoleSessionRecord, ConsoleSessionRecord.instance_id == LimenInstance.id
        ).where(ConsoleSessionRecord.id == session_id))
    finally:
        db.close()
    assert row is not None, session_id
    return int(row[0])


async def test_a_ticket_issued_on_one_replica_opens_a_console_on_the_other_once(cluster: Cluster) -> None:
    ticket = await cluster.on_a.ticket("bobs", token=cluster.on_a.tokens["bob"])
    (console,) = await open_all(cluster.on_b, lambda: cluster.on_b.open("bobs", ticket=ticket))
    assert cluster.by_pid(holder_pid(cluster.database_url, console.session_id)) is cluster.b
    await still_streams(console)
    for world in (cluster.on_b, cluster.on_a):
        again = await read_console(world.url("bobs", f"ticket={ticket}"), additional_headers={},
                                   origin=world.server.base_url)
        (error,) = again.errors
        assert error["code"] == "TICKET_USED", again.texts
        assert (again.close_code, again.close_reason) == (4505, "TICKET_USED")
        assert not again.binary
    await still_streams(console)


async def test_disabling_a_user_on_one_replica_ends_their_console_on_the_other(cluster: Cluster) -> None:
    on_a, on_b = cluster.on_a, cluster.on_b
    (bobs,) = await open_all(on_b, lambda: on_b.open("bobs", token=on_b.tokens["bob"]))
    carols = await on_a.open("spare", token=on_a.tokens["carol"])
    (carols.session_id,) = {row["id"] for row in await on_a.live_rows(2)} - {bobs.session_id}
    assert cluster.by_pid(holder_pid(cluster.database_url, bobs.session_id)) is cluster.b
    assert cluster.by_pid(holder_pid(cluster.database_url, carols.session_id)) is cluster.a
    # The live list is the database's: either replica lists the consoles both hold.
    for world in (on_a, on_b):
        assert {row["id"] for row in await world.live_rows(2)} == {bobs.session_id, carols.session_id}

    async with on_a.admin() as api:
        since = await changed(api.put("/api/users/bob/disabled", json={"disabled": True}), bobs)
    took = await ends_with_access_revoked(bobs, since)
    print(f"bob disabled on A: his console on B ended after {took:.3f} s")
    row = await on_a.row(bobs.session_id)
    assert (row["end_code"], row["end_details"]) == ("ACCESS_REVOKED", "user 'bob' disabled by 'test-admin'")
    await still_streams(carols)
    assert [row["id"] for row in await on_b.live_rows(1)] == [carols.session_id]


async def proxied_console(cluster: Cluster, token: str) -> tuple[Console, float]:
    """A browser's way in through HAProxy: a ticket (POST), then the WebSocket with it, read up to QEMU's
    RFB banner; returns the console and the seconds that took."""
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}", "Origin": cluster.proxy.base_url}
    async with httpx.AsyncClient(base_url=cluster.proxy.base_url, headers=headers, timeout=10) as api:
        answer = await api.post(f"/api/vms/{cluster.on_a.vms['bobs']}/console-ticket")
    assert answer.status_code == 200, answer.text
    vm, ticket = cluster.on_a.vms["bobs"], answer.json()["ticket"]
    url = f"{cluster.proxy.ws_url}/api/vms/{vm}/console?notices=1&ticket={ticket}"
    ws = await connect(url, origin=cluster.proxy.base_url, open_timeout=10, close_timeout=2,  # type: ignore[arg-type]
                       ping_interval=None, max_size=None, compression=None)
    transcript = ConsoleTranscript()
    await asyncio.wait_for(read_frames(ws, transcript, started, until_binary=1), 20)
    assert transcript.statuses[-1] == PROXY_STATUS, transcript
    assert transcript.binary[0].startswith(b"RFB 003."), transcript.binary
    return Console(ws, transcript), time.monotonic() - started


async def test_sigterm_moves_a_console_to_the_other_replica_through_haproxy(cluster: Cluster) -> None:
    bob = cluster.on_a.tokens["bob"]
    console, _ = await proxied_console(cluster, bob)
    (row,) = await cluster.on_a.live_rows(1)
    holder = cluster.by_pid(holder_pid(cluster.database_url, row["id"]))
    other = cluster.b if holder is cluster.a else cluster.a

    process = holder._proc
    assert process is not None
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(read_frames(console.ws, console.transcript, signalled), 15)
    closed = time.monotonic()
    (error,) = console.transcript.errors
    assert error["code"] == "SERVER_SHUTDOWN", error
    assert (console.transcript.close_code, console.transcript.close_reason) == (4402, "SERVER_SHUTDOWN")
    # It stopped accepting before it told its consoles: a reconnect cannot land on it again.
    async with httpx.AsyncClient(base_url=holder.base_url, timeout=2) as direct:
        with pytest.raises(httpx.ConnectError):
            await direct.get("/readyz")

    # What the browser does on SERVER_SHUTDOWN: reconnect (a new ticket) through the same address.
    moved, took = await proxied_console(cluster, bob)
    since_close = time.monotonic() - closed
    print(f"SIGTERM: SERVER_SHUTDOWN {closed - signalled:.3f} s after the signal; live again through the other "
          f"replica {since_close:.3f} s after the close (the reconnect itself {took:.3f} s)")
    live = await cluster.on_a.live_rows(1) if other is cluster.a else await cluster.on_b.live_rows(1)
    assert cluster.by_pid(holder_pid(cluster.database_url, live[0]["id"])) is other
    assert since_close < RECONNECT_BOUND + SLACK, f"live again {since_close:.2f} s after SERVER_SHUTDOWN"
    await still_streams(moved)
    cluster.on_a.consoles.append(moved)

    exited = await asyncio.to_thread(process.wait, EXIT_BOUND + 5)
    # uvicorn ends a clean shutdown by raising the signal it caught again: exit "by SIGTERM" is the clean one.
    assert exited in (0, -signal.SIGTERM), holder.output()
    log = (Path(holder._env["LIMEN_LOG_DIR"]) / "limen.log").read_text()
    assert '"shutdown_started"' in log and '"shutdown_slow"' not in log
    assert time.monotonic() - signalled < EXIT_BOUND, f"exited {time.monotonic() - signalled:.1f} s after SIGTERM"
    holder._proc = None  # it is gone; the fixture has nothing to stop


async def test_parallel_creates_on_postgresql_stay_within_the_system_wide_quota(
    postgres: str, make_settings: Callable[..., Settings]
) -> None:
    """The quota check on PostgreSQL: a create that is done deletes its reservation while another check
    holds the lock (SQLite's write lock never let it), so the check must read the reservations before it
    lists libvirt's VMs, or a VM made meanwhile is counted nowhere and one create too many passes."""
    import uuid

    prefix = f"limen-test-q{uuid.uuid4().hex[:6]}"
    settings = make_settings(libvirt_uri="test:///default", database_url=new_database(postgres))
    async with app_client(settings) as probe:
        existing = len((await probe.get("/api/vms")).json())
    settings = make_settings(libvirt_uri="test:///default", database_url=str(settings.database_url),
                             quota_total_vms=existing + 2)
    names = [f"{prefix}-{index}" for index in range(6)]
    async with app_client(settings) as api:
        hypervisor = services_of(api._transport.app).hypervisor  # type: ignore[attr-defined]
        listed = hypervisor.list_vms

        async def slow_list() -> list[Any]:
            # A slow libvirt: the checks waiting behind this one hold reservations whose creates finish
            # (and delete them) while this check lists.
            vms: list[Any] = await listed()
            await asyncio.sleep(0.3)
            return vms

        hypervisor.list_vms = slow_list  # type: ignore[method-assign]
        try:
            answers = await asyncio.gather(*(api.post("/api/vms", json={"name": name, "memory_mib": 64})
                                             for name in names))
            made = [answer for answer in answers if answer.status_code == 201]
            assert len(made) == 2, [answer.text[:120] for answer in answers]
            assert all(answer.json()["code"] == "QUOTA_EXCEEDED" for answer in answers if answer not in made)
        finally:
            hypervisor.list_vms = listed  # type: ignore[method-assign]
            for name in names:
                await api.delete(f"/api/vms/{name}")


def test_twenty_parallel_creates_over_two_replicas_on_postgresql_make_exactly_three(
    postgres: str, tmp_path: Path, vm_names: Callable[[], str]
) -> None:
    """Two real ``limen serve`` processes on one PostgreSQL database over the real libvirtd: the quota check
    holds across them by the database's row lock, not by anything either process holds in memory."""
    from tests.integration.test_quota import assert_exactly_three, new_user, parallel_creates

    database_url = new_database(postgres)
    replicas = []
    with ExitStack() as stack:
        for name in ("a", "b"):
            env = {
                "LIMEN_LIBVIRT_URI": QEMU_URI, "LIMEN_ISO_DIR": str(ISO_DIR),
                "LIMEN_DATA_DIR": str(tmp_path / f"data-{name}"), "LIMEN_LOG_DIR": str(tmp_path / f"log-{name}"),
                "LIMEN_STORAGE_POOL": TEST_POOL, "LIMEN_STORAGE_POOL_DIR": str(TEST_POOL_DIR),
                "LIMEN_VIRT_TYPE": "qemu", "LIMEN_DATABASE_URL": database_url,
            }
            replica = LimenProcess(env, tmp_path / f"serve-{name}.log", port=free_port())
            stack.callback(replica.stop)
            replica.start()
            replicas.append(replica)
        headers = {"Authorization": f"Bearer {provision_admin_token(database_url)}"}
        for replica in replicas:
            replica.auth_headers = headers
        user = new_user(replicas[0], {"vms": 3})
        responses = asyncio.run(parallel_creates(replicas, user, [vm_names() for _ in range(20)]))
        assert_exactly_three(responses)
        for replica in replicas:
            assert len(httpx.get(f"{replica.base_url}/api/vms", headers=user, timeout=30).json()) == 3
