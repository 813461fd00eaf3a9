"""Access control of the console, against a running ``limen serve``: who may open which console, tickets,
Origin, the audit trail of a session, an admin ending a session, and secrets kept out of the log.

Each server runs over libvirt's test driver; its VMs' VNC graphics point at a small echo server (it sends
the RFB banner, then returns every byte it gets), so the bytes each way are known exactly. One server
keeps tickets in memory and believes X-Forwarded-For from loopback; the other keeps them in a real
redis-server started here, and believes no proxy. Tickets live 1 s on both, so expiry is quick to test.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.support.access import TEST_ADMIN, provision_admin_token, provision_user, redis_server
from tests.support.console import ConsoleTranscript, FakeDomain, driver_uri, read_console, read_frames
from tests.support.databases import database_url_for
from tests.support.server import LimenProcess

pytestmark = pytest.mark.integration

BANNER = b"RFB 003.008\n"
PROXY_STATUS = "VNC connection established, starting proxy..."
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}
TICKET_TTL = 1.0


class EchoVnc:
    """A VNC server stand-in on a thread: the banner, then an echo of whatever comes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(BANNER)
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@dataclass
class World:
    """A running server, its users' tokens, its VMs (name → uuid) and every secret it was given."""

    server: LimenProcess
    tokens: dict[str, str]
    vms: dict[str, str]
    log_path: Path
    secrets: set[str] = field(default_factory=set)

    def headers(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def api(self, user: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.base_url, headers=self.headers(user), timeout=10)

    async def ticket(self, user: str, vm: str) -> str:
        async with self.api(user) as api:
            response = await api.post(f"/api/vms/{vm}/console-ticket")
        assert response.status_code == 200, response.text
        ticket: str = response.json()["ticket"]
        self.secrets.add(ticket)
        return ticket

    def url(self, vm: str, query: str = "") -> str:
        return f"{self.server.ws_url}/api/vms/{vm}/console{'?' + query if query else ''}"


def _start_world(tmp: Path, vnc: EchoVnc, **env: str) -> World:
    tmp.mkdir(parents=True, exist_ok=True)
    domains = [FakeDomain(name, vnc.port) for name in ("alice-vm", "bob-vm", "spare-vm")]
    data = tmp / "data"
    database_url = database_url_for(data)
    tokens = {TEST_ADMIN: provision_admin_token(database_url)}
    for name, password in PASSWORDS.items():
        tokens[name] = provision_user(database_url, name, password)
    server = LimenProcess({
        "LIMEN_LIBVIRT_URI": driver_uri(tmp, domains), "LIMEN_DATA_DIR": str(data), "LIMEN_LOG_DIR": str(tmp / "log"),
        "LIMEN_ISO_DIR": str(tmp), "LIMEN_CONSOLE_TICKET_TTL": str(TICKET_TTL), **env,
    }, tmp / "serve.log").start()
    world = World(server, tokens, {d.name: d.uuid for d in domains}, tmp / "log" / "limen.log",
                  secrets={*tokens.values(), *PASSWORDS.values()})
    with httpx.Client(base_url=server.base_url, headers=world.headers(TEST_ADMIN), timeout=10) as api:
        for owner in ("alice", "bob"):
            given = api.put(f"/api/vms/{owner}-vm/owner", json={"owner": owner})
            assert given.status_code == 200, given.text
    return world


@pytest.fixture(scope="module")
def echo_vnc() -> Iterator[EchoVnc]:
    vnc = EchoVnc()
    yield vnc
    vnc.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, echo_vnc: EchoVnc) -> Iterator[World]:
    """Tickets in memory; X-Forwarded-For believed from loopback."""
    made = _start_world(tmp_path_factory.mktemp("auth-console"), echo_vnc, LIMEN_TRUSTED_PROXIES="127.0.0.1/32")
    yield made
    made.server.stop()


@pytest.fixture(scope="module")
def redis_world(tmp_path_factory: pytest.TempPathFactory, echo_vnc: EchoVnc) -> Iterator[World]:
    """Tickets in a real redis-server; no trusted proxies."""
    tmp = tmp_path_factory.mktemp("auth-console-redis")
    with ExitStack() as stack:
        url = stack.enter_context(redis_server(tmp))
        made = _start_world(tmp / "limen", echo_vnc, LIMEN_REDIS_URL=url)
        stack.callback(made.server.stop)
        yield made


@pytest.fixture(params=["memory", "redis"])
def any_world(request: pytest.FixtureRequest) -> World:
    """Each ticket test runs against both ticket stores, through the server."""
    made: World = request.getfixturevalue("world" if request.param == "memory" else "redis_world")
    return made


def assert_refused(transcript: ConsoleTranscript, code: str, close_code: int) -> None:
    """A status frame first, then the error frame, then the close with the code and its name."""
    assert transcript.texts[0]["type"] == "status", transcript.texts
    assert transcript.texts[0]["stage"] == "check_vm"
    (error,) = transcript.errors
    assert error["code"] == code, error
    assert {"error", "details", "message", "stage"} <= set(error)
    assert (transcript.close_code, transcript.close_reason) == (close_code, code)
    assert not transcript.binary


async def open_proxy(url: str, **kwargs: Any) -> Any:
    """Opens the console and reads up to the banner (the first binary frame); returns the connection."""
    ws = await connect(url, open_timeout=5, close_timeout=2, ping_interval=None, max_size=None, **kwargs)
    transcript = ConsoleTranscript()
    await asyncio.wait_for(read_frames(ws, transcript, time.monotonic(), until_binary=1), 10)
    assert transcript.statuses[-1] == PROXY_STATUS, transcript
    assert transcript.binary == [BANNER]
    return ws


async def audit_row(
    world: World, user: str, session_filter: Any, *, ended: bool, timeout: float = 5.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with world.api(user) as api:
        while True:
            rows = [row for row in (await api.get("/api/console-sessions")).json() if session_filter(row)]
            if rows and (rows[0]["ended_at"] is not None) == ended:
                return dict(rows[0])
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.05)


# -- who may open a console -------------------------------------------------------------------------


async def test_anonymous_console_is_refused_with_a_frame_and_a_close_code(world: World) -> None:
    assert_refused(await read_console(world.url("alice-vm")), "UNAUTHORIZED", 4501)
    bogus = {"Authorization": "Bearer limen_not-a-real-token-at-all"}
    assert_refused(await read_console(world.url("alice-vm"), additional_headers=bogus), "UNAUTHORIZED", 4501)


async def test_a_user_cannot_open_another_users_console(world: World) -> None:
    # Refused exactly as a VM that does not exist would be: nothing says that it exists, or whose it is.
    refused = await read_console(world.url("alice-vm"), additional_headers=world.headers("bob"))
    assert_refused(refused, "VM_NOT_FOUND", 4004)
    assert_refused(await read_console(world.url(world.vms["alice-vm"]), additional_headers=world.headers("bob")),
                   "VM_NOT_FOUND", 4004)
    async with world.api("bob") as api:
        assert (await api.post("/api/vms/alice-vm/console-ticket")).json()["code"] == "VM_NOT_FOUND"
        assert [vm["name"] for vm in (await api.get("/api/vms")).json()] == ["bob-vm"]
    # Her own console, with her token: the proxy stage.
    ws = await open_proxy(world.url("alice-vm"), additional_headers=world.headers("alice"))
    await ws.close()


async def test_a_ticket_opens_one_console_once(any_world: World) -> None:
    ticket = await any_world.ticket("alice", "alice-vm")
    ws = await open_proxy(any_world.url("alice-vm", f"ticket={ticket}"))
    await ws.close()
    assert_refused(await read_console(any_world.url("alice-vm", f"ticket={ticket}")), "TICKET_USED", 4505)


async def test_a_ticket_expires(any_world: World) -> None:
    ticket = await any_world.ticket("alice", "alice-vm")
    await asyncio.sleep(TICKET_TTL + 0.3)
    assert_refused(await read_console(any_world.url("alice-vm", f"ticket={ticket}")), "TICKET_EXPIRED", 4504)


async def test_a_ticket_is_for_its_vm_and_its_user_only(any_world: World) -> None:
    # Another VM: refused (as a missing VM, since alice may not see bob-vm), and the ticket is spent.
    ticket = await any_world.ticket("alice", "alice-vm")
    assert_refused(await read_console(any_world.url("bob-vm", f"ticket={ticket}")), "VM_NOT_FOUND", 4004)
    assert_refused(await read_console(any_world.url("alice-vm", f"ticket={ticket}")), "TICKET_USED", 4505)
    # Its user lost the VM between asking and using: refused as a VM she cannot see (the ticket is alice's,
    # whoever holds it).
    ticket = await any_world.ticket("alice", "alice-vm")
    async with any_world.api(TEST_ADMIN) as api:
        assert (await api.put("/api/vms/alice-vm/owner", json={"owner": "bob"})).status_code == 200
        try:
            assert_refused(await read_console(any_world.url("alice-vm", f"ticket={ticket}"),
                                              additional_headers=any_world.headers("bob")), "VM_NOT_FOUND", 4004)
        finally:
            assert (await api.put("/api/vms/alice-vm/owner", json={"owner": "alice"})).status_code == 200
    # Made-up tickets: refused without telling anything.
    assert_refused(await read_console(any_world.url("alice-vm", "ticket=" + "x" * 43)), "FORBIDDEN", 4503)


async def test_a_foreign_origin_is_refused(world: World) -> None:
    refused = await read_console(world.url("alice-vm"), additional_headers=world.headers("alice"),
                                 origin="http://evil.example")  # type: ignore[arg-type]
    assert_refused(refused, "ORIGIN_NOT_ALLOWED", 4506)
    ticket = await world.ticket("alice", "alice-vm")
    refused = await read_console(world.url("alice-vm", f"ticket={ticket}"),
                                 origin="https://127.0.0.1.evil.example")  # type: ignore[arg-type]
    assert_refused(refused, "ORIGIN_NOT_ALLOWED", 4506)
    # The page's own origin passes.
    ws = await open_proxy(world.url("alice-vm"), additional_headers=world.headers("alice"),
                          origin=world.server.base_url)
    await ws.close()


# -- the audit trail ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("world_name", "address"), [("world", "203.0.113.7"), ("redis_world", "127.0.0.1")])
async def test_the_audit_row_of_a_session_has_its_bytes_and_end_code(
    request: pytest.FixtureRequest, world_name: str, address: str
) -> None:
    """X-Forwarded-For names the client only on the server that trusts the loopback proxy."""
    world: World = request.getfixturevalue(world_name)
    ticket = await world.ticket("alice", "alice-vm")
    ws = await open_proxy(world.url("alice-vm", f"ticket={ticket}"),
                          additional_headers={"X-Forwarded-For": "203.0.113.7"})
    echoed = b""
    for chunk in (b"RFB 003.008\n", b"\x01", b"x" * 1000):
        await ws.send(chunk)
        while len(echoed) < len(chunk):
            echoed += await asyncio.wait_for(ws.recv(), 5)
        assert echoed == chunk
        echoed = b""
    live = await audit_row(world, "alice", lambda row: row["client_address"] == address and row["live"],
                           ended=False)
    assert (live["user"], live["vm_name"], live["vm_uuid"]) == ("alice", "alice-vm", world.vms["alice-vm"])
    await ws.close()

    sent = 12 + 1 + 1000
    row = await audit_row(world, "alice", lambda r: r["id"] == live["id"], ended=True)
    assert row["end_code"] == "OK"
    assert row["bytes_from_client"] == sent
    assert row["bytes_to_client"] == len(BANNER) + sent
    assert row["terminated_by"] is None
    async with world.api("bob") as api:  # users see their own sessions only
        assert live["id"] not in [r["id"] for r in (await api.get("/api/console-sessions")).json()]


async def test_an_admin_ends_a_live_session(world: World) -> None:
    ticket = await world.ticket("alice", "alice-vm")
    ws = await open_proxy(world.url("alice-vm", f"ticket={ticket}&notices=1"))
    live = await audit_row(world, TEST_ADMIN, lambda row: row["user"] == "alice" and row["live"], ended=False)
    async with world.api("alice") as api:  # not an admin
        assert (await api.delete(f"/api/console-sessions/{live['id']}")).json()["code"] == "FORBIDDEN"
    async with world.api(TEST_ADMIN) as api:
        ended = await api.delete(f"/api/console-sessions/{live['id']}")
        assert ended.status_code == 202, ended.text
        assert ended.json()["ending"] is True

    transcript = ConsoleTranscript()
    await asyncio.wait_for(read_frames(ws, transcript, time.monotonic()), 10)
    (error,) = transcript.errors
    assert error["code"] == "SESSION_TERMINATED"
    assert (transcript.close_code, transcript.close_reason) == (4403, "SESSION_TERMINATED")
    row = await audit_row(world, TEST_ADMIN, lambda r: r["id"] == live["id"], ended=True)
    assert (row["end_code"], row["terminated_by"]) == ("SESSION_TERMINATED", TEST_ADMIN)
    async with world.api(TEST_ADMIN) as api:
        again = await api.delete(f"/api/console-sessions/{live['id']}")
        assert again.json()["code"] == "CONSOLE_SESSION_NOT_FOUND"


async def test_without_notices_the_terminated_client_still_gets_the_close_code(world: World) -> None:
    ws = await open_proxy(world.url("bob-vm"), additional_headers=world.headers("bob"))
    live = await audit_row(world, "bob", lambda row: row["live"], ended=False)
    async with world.api(TEST_ADMIN) as api:
        assert (await api.delete(f"/api/console-sessions/{live['id']}")).status_code == 202
    transcript = ConsoleTranscript()
    await asyncio.wait_for(read_frames(ws, transcript, time.monotonic()), 10)
    assert not transcript.errors
    assert (transcript.close_code, transcript.close_reason) == (4403, "SESSION_TERMINATED")


# -- secrets ------------------------------------------------------------------------------------------


async def test_a_browser_session_opens_the_console_and_no_secret_reaches_the_log(world: World) -> None:
    """Last in this module: it also checks every ticket, token and password the tests above used."""
    async with httpx.AsyncClient(base_url=world.server.base_url, timeout=10) as browser:
        signed_in = await browser.post("/api/login", json={"name": "alice", "password": PASSWORDS["alice"]},
                                 headers={"Origin": world.server.base_url})
        assert signed_in.status_code == 200, signed_in.text
        cookie = browser.cookies["limen_session"]
        failed = await browser.post("/api/login", json={"name": "alice", "password": "a-wrong-password"})
        assert failed.json()["code"] == "INVALID_CREDENTIALS"
    world.secrets |= {cookie, signed_in.json()["csrf_token"], "a-wrong-password"}
    headers = {"Cookie": f"limen_session={cookie}"}
    ws = await open_proxy(world.url("alice-vm"), additional_headers=headers, origin=world.server.base_url)
    await ws.close()
    assert_refused(await read_console(world.url("bob-vm"), additional_headers=headers,
                                      origin=world.server.base_url), "VM_NOT_FOUND", 4004)
    refused_ticket = "y" * 43
    world.secrets.add(refused_ticket)
    assert_refused(await read_console(world.url("alice-vm", f"ticket={refused_ticket}")), "FORBIDDEN", 4503)

    await asyncio.sleep(0.2)  # the log handler writes as records come; give the last ones a moment
    lines = world.log_path.read_text().splitlines()
    console_lines = [line for line in lines if "console" in json.loads(line).get("event", "")]
    assert len(console_lines) > 20
    for secret in world.secrets:
        leaked = [line for line in lines if secret in line]
        assert not leaked, f"a secret is in limen.log: {leaked[:2]}"
    assert not [line for line in lines if "ticket=" in line]
