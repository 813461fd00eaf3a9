"""Revocation reaches live consoles: against real ``limen serve`` processes, with consoles in the proxy
stage to real QEMU VMs (TCG, 64 MiB, the demo GRUB ISO) under the system libvirtd.

For each change that takes away the right to a VM's console (a user disabled or deleted, a role lowered,
a VM given to someone else or deleted, an API token revoked, a browser signed out) the affected consoles
end within :data:`BOUND` (plus :data:`SLACK` for a loaded machine) with the error frame (``?notices=1``)
and close code 4513 ``ACCESS_REVOKED`` (a deleted VM's: 4004 ``VM_NOT_FOUND``), their audit rows say why,
and the consoles of other users and other credentials stay open (they still speak RFB with QEMU
afterwards). Then the same across two instances on one SQLite database and a real redis-server: a change
made on one ends a console the other holds.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from limen.db import Role
from limen.errors import ErrorCode
from tests.conftest import DEMO_ISO
from tests.support.access import provision_user, redis_server
from tests.support.console import ConsoleTranscript, read_console, read_frames
from tests.support.databases import cli_env, database_url_for
from tests.support.server import LIMEN_BIN, LimenProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180), pytest.mark.runs_quiet]  # BOUND, below

BOUND = 1.0  # seconds from the change to the console's close, as promised
SLACK = 0.5  # for a 2-core machine shared with other test runs
PROXY_STATUS = "VNC connection established, starting proxy..."
PASSWORDS = {"bob": "bob-password-1", "carol": "carol-password-1"}


@dataclass
class Console:
    """An open console in the proxy stage, and what it had received when it got there."""

    ws: ClientConnection
    transcript: ConsoleTranscript
    session_id: str = ""
    watcher: asyncio.Task[float] | None = None  # reads until the error frame; its seconds since the change


@dataclass
class World:
    server: LimenProcess
    database_url: str
    vms: dict[str, str]  # name → uuid; "bobs" is bob's, "spare" is carol's
    tokens: dict[str, str] = field(default_factory=dict)  # user → an API token's secret
    consoles: list[Console] = field(default_factory=list)

    def api(self, token: str | None = None, **headers: str) -> httpx.AsyncClient:
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.server.base_url, headers={**auth, **headers}, timeout=30)

    def admin(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.base_url, headers=self.server.auth_headers, timeout=30)

    def url(self, vm: str, query: str = "notices=1") -> str:
        return f"{self.server.ws_url}/api/vms/{self.vms[vm]}/console?{query}"

    async def open(self, vm: str, *, token: str | None = None, ticket: str | None = None,
                   cookie: str | None = None, notices: bool = True) -> Console:
        """Opens a console with exactly one credential and reads up to the VNC banner."""
        headers: dict[str, str] = {}
        query = "notices=1" if notices else "notices=0"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if ticket is not None:
            query += f"&ticket={ticket}"
        if cookie is not None:
            headers["Cookie"] = f"limen_session={cookie}"
        ws = await connect(self.url(vm, query), additional_headers=headers, origin=self.server.base_url,  # type: ignore[arg-type]
                           open_timeout=10, close_timeout=2, ping_interval=None, max_size=None, compression=None)
        transcript = ConsoleTranscript()
        await asyncio.wait_for(read_frames(ws, transcript, time.monotonic(), until_binary=1), 20)
        assert transcript.statuses[-1] == PROXY_STATUS, transcript
        assert transcript.binary[0].startswith(b"RFB 003.")
        console = Console(ws, transcript)
        self.consoles.append(console)
        return console

    async def ticket(self, vm: str, *, token: str | None = None, cookie: str | None = None,
                     csrf: str | None = None) -> str:
        headers = {"Origin": self.server.base_url}
        if cookie is not None:
            headers |= {"Cookie": f"limen_session={cookie}", "X-CSRF-Token": csrf or ""}
        async with self.api(token, **headers) as api:
            answer = await api.post(f"/api/vms/{self.vms[vm]}/console-ticket")
        assert answer.status_code == 200, answer.text
        ticket: str = answer.json()["ticket"]
        return ticket

    async def sign_in(self, user: str) -> tuple[str, str]:
        """A new browser sign-in of ``user``: (its cookie, its CSRF token)."""
        async with self.api(Origin=self.server.base_url) as browser:
            answer = await browser.post("/api/login", json={"name": user, "password": PASSWORDS[user]})
            assert answer.status_code == 200, answer.text
            return browser.cookies["limen_session"], answer.json()["csrf_token"]

    async def live_rows(self, expected: int) -> list[dict[str, Any]]:
        """The live audit rows, once there are ``expected`` of them (inserted just after admission)."""
        deadline = time.monotonic() + 5
        async with self.admin() as api:
            while True:
                rows: list[dict[str, Any]] = (await api.get("/api/console-sessions?live=true")).json()
                if len(rows) >= expected or time.monotonic() > deadline:
                    assert len(rows) == expected, rows
                    return rows
                await asyncio.sleep(0.05)

    async def row(self, session_id: str, *, ended: bool = True) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        async with self.admin() as api:
            while True:
                rows = [r for r in (await api.get("/api/console-sessions")).json() if r["id"] == session_id]
                if rows and (rows[0]["ended_at"] is not None) == ended:
                    return dict(rows[0])
                assert time.monotonic() < deadline, rows
                await asyncio.sleep(0.05)


async def open_all(world: World, *openers: Callable[[], Any]) -> list[Console]:
    """Opens the consoles one after the other; each one's session id is that of the live row it added."""
    consoles: list[Console] = []
    known = {row["id"] for row in await world.live_rows(len(world.consoles))}
    for opener in openers:
        console = await opener()
        consoles.append(console)
        (new,) = [row for row in await world.live_rows(len(known) + 1) if row["id"] not in known]
        console.session_id = new["id"]
        known.add(new["id"])
    return consoles


async def error_frame_after(console: Console, since: float, *, patience: float = BOUND + SLACK + 5) -> float:
    """Reads until the error frame, then waits for the close frame; returns the seconds from ``since`` to the
    close frame's arrival (the TCP close comes after: the server first releases the VNC socket and writes
    the audit row). ``patience`` is how long a read may wait: longer when the change is made by a command
    that first has to start (the bound is then asserted from its exit, not from ``since``)."""
    while not console.transcript.errors:
        await asyncio.wait_for(read_frames(console.ws, console.transcript, since,
                                           until_frames=len(console.transcript.order) + 1), patience)
        assert console.ws.close_code is None or console.transcript.errors, console.transcript
    # The close frame right behind it: websockets notes it at once, and raises only at the TCP close.
    for _ in range(int(patience / 0.005)):
        if console.ws.protocol.close_rcvd is not None:
            break
        await asyncio.sleep(0.005)
    close = console.ws.protocol.close_rcvd
    assert close is not None and close.reason in ("ACCESS_REVOKED", "VM_NOT_FOUND"), close  # asserted after
    return time.monotonic() - since


async def ends_with_access_revoked(console: Console, since: float, *, made_after: float = 0.0,
                                   code: ErrorCode = ErrorCode.ACCESS_REVOKED) -> float:
    """Reads the error frame and the close frame, then until the connection is gone; asserts both (``code``:
    ACCESS_REVOKED, or VM_NOT_FOUND for a deleted VM), and that the close frame came within the bound of the
    change (made ``made_after`` seconds after ``since``); returns the seconds from ``since`` to the close frame."""
    took = await (console.watcher if console.watcher is not None else error_frame_after(console, since))
    await asyncio.wait_for(read_frames(console.ws, console.transcript, since), 10)
    (error,) = console.transcript.errors
    assert (error["code"], error["stage"]) == (code.name, "proxy"), error
    assert error["message"] == code.user_message
    assert (console.transcript.close_code, console.transcript.close_reason) == (code.close_code, code.name)
    assert took - made_after < BOUND + SLACK, f"the console ended {took - made_after:.2f} s after the change"
    return took


async def still_streams(console: Console) -> None:
    """The console is open and both directions work: QEMU answers the client's RFB version with its
    security types."""
    assert console.ws.close_code is None
    await console.ws.send(b"RFB 003.008\n")
    answer = await asyncio.wait_for(console.ws.recv(), 10)
    assert isinstance(answer, bytes) and len(answer) >= 2, answer


async def changed(request: Any, *watched: Console) -> float:
    """Makes the change (an awaitable HTTP request) while the ``watched`` consoles are read (a change can
    take longer than the bound to answer: a VM's deletion waits for libvirt), checks it succeeded; returns
    when it was sent."""
    sent = time.monotonic()
    for console in watched:
        console.watcher = asyncio.create_task(error_frame_after(console, sent))
    answer = await request
    assert answer.status_code in (200, 202, 204), answer.text
    return sent


async def audited(world: World, console: Console, *, credential: str, because: str,
                  code: ErrorCode = ErrorCode.ACCESS_REVOKED) -> None:
    row = await world.row(console.session_id)
    assert row["end_code"] == code.name, row
    assert row["end_details"] == because, row
    assert row["credential"] == credential, row


def token_id_of(world: World, secret: str) -> int:
    """The id of the token whose secret is ``secret`` (its prefix is listed; the secret never is)."""
    from limen.auth.tokens import SHOWN_PREFIX_LENGTH, Tokens
    from limen.db import Database

    db = Database(world.database_url)
    try:
        tokens = db.run_sync(lambda session: Tokens.list_in(session))
    finally:
        db.close()
    (found,) = [token.id for token in tokens if token.prefix == secret[:SHOWN_PREFIX_LENGTH]]
    return found


# -- the world -------------------------------------------------------------------------------------------


async def make_vms(server: LimenProcess, names: dict[str, str], owners: dict[str, str | None]) -> dict[str, str]:
    """Creates and starts one VM per key of ``names`` (key → a vm_names name), gives each to its owner."""
    vms: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.auth_headers, timeout=60) as api:
        for key, name in names.items():
            created = await api.post("/api/vms", json={"name": name, "memory_mib": 64, "iso": DEMO_ISO})
            assert created.status_code == 201, created.text
            vms[key] = created.json()["uuid"]
            started = await api.post(f"/api/vms/{vms[key]}/start")
            assert started.status_code == 200, started.text
            given = await api.put(f"/api/vms/{vms[key]}/owner", json={"owner": owners[key]})
            assert given.status_code == 200, given.text
    return vms


def provision(database_url: str) -> dict[str, str]:
    return {
        "bob": provision_user(database_url, "bob", PASSWORDS["bob"]),
        "carol": provision_user(database_url, "carol", PASSWORDS["carol"]),
    }


@pytest.fixture
async def world(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str], tmp_path: Path
) -> AsyncIterator[World]:
    """One server; VM "bobs" owned by bob, VM "spare" owned by carol; both running."""
    database_url = database_url_for(tmp_path / 'data')
    server = limen_server()
    tokens = provision(database_url)
    vms = await make_vms(server, {"bobs": vm_names(), "spare": vm_names()}, {"bobs": "bob", "spare": "carol"})
    made = World(server, database_url, vms, tokens)
    try:
        yield made
    finally:
        for console in made.consoles:
            await console.ws.close()


def admin_token(world: World) -> str:
    return world.server.auth_headers["Authorization"].removeprefix("Bearer ")


# -- each cause -------------------------------------------------------------------------------------------


async def test_a_disabled_user_loses_every_console_at_once(world: World) -> None:
    bob = world.tokens["bob"]
    by_token, by_ticket, admins = await open_all(
        world,
        lambda: world.open("bobs", token=bob),
        lambda: ticket_console(world, "bobs", bob),
        lambda: world.open("bobs", token=admin_token(world)),
    )
    async with world.admin() as api:
        since = await changed(api.put("/api/users/bob/disabled", json={"disabled": True}), by_token, by_ticket)
    for console in (by_token, by_ticket):
        await ends_with_access_revoked(console, since)
    bob_token = f"token:{token_id_of(world, bob)}"
    for console in (by_token, by_ticket):
        await audited(world, console, credential=bob_token, because="user 'bob' disabled by 'test-admin'")
    await still_streams(admins)  # the same VM, another user


async def ticket_console(world: World, vm: str, token: str) -> Console:
    return await world.open(vm, ticket=await world.ticket(vm, token=token))


async def test_a_deleted_user_loses_every_console(world: World) -> None:
    bob, carol = world.tokens["bob"], world.tokens["carol"]
    bobs, carols = await open_all(world, lambda: world.open("bobs", token=bob),
                                  lambda: world.open("spare", token=carol))
    bob_token = f"token:{token_id_of(world, bob)}"
    async with world.admin() as api:
        since = await changed(api.delete("/api/users/bob"), bobs)
    await ends_with_access_revoked(bobs, since)
    await audited(world, bobs, credential=bob_token, because="user 'bob' deleted by 'test-admin'")
    await still_streams(carols)


async def test_a_lowered_role_ends_the_consoles_of_vms_not_owned(world: World) -> None:
    provision_user(world.database_url, "dave", "dave-password-1", Role.ADMIN)
    async with world.admin() as api:
        assert (await api.put("/api/users/dave/role", json={"role": "admin"})).status_code == 200
        given = await api.put(f"/api/vms/{world.vms['spare']}/owner", json={"owner": "dave"})
        assert given.status_code == 200
    dave = provision_user(world.database_url, "dave", "dave-password-1")
    on_bobs, on_own = await open_all(world, lambda: world.open("bobs", token=dave),
                                     lambda: world.open("spare", token=dave))
    async with world.admin() as api:
        since = await changed(api.put("/api/users/dave/role", json={"role": "user"}), on_bobs)
    await ends_with_access_revoked(on_bobs, since)
    await audited(world, on_bobs, credential=f"token:{token_id_of(world, dave)}",
                  because="user 'dave' is no longer an administrator (changed by 'test-admin')")
    await still_streams(on_own)  # dave owns it


async def test_a_vm_given_to_another_owner_ends_the_consoles_of_those_who_lost_it(world: World) -> None:
    bob = world.tokens["bob"]
    bobs, quiet, admins = await open_all(world, lambda: world.open("bobs", token=bob),
                                         lambda: world.open("bobs", token=bob, notices=False),
                                         lambda: world.open("bobs", token=admin_token(world)))
    async with world.admin() as api:
        since = await changed(api.put(f"/api/vms/{world.vms['bobs']}/owner", json={"owner": "carol"}), bobs)
    await ends_with_access_revoked(bobs, since)
    # Without notices: no error frame in the proxy stage, the close code and reason all the same.
    await asyncio.wait_for(read_frames(quiet.ws, quiet.transcript, since), BOUND + SLACK + 5)
    assert not quiet.transcript.errors
    assert (quiet.transcript.close_code, quiet.transcript.close_reason) == (4513, "ACCESS_REVOKED")
    vm_name = (await world.row(bobs.session_id))["vm_name"]
    await audited(world, bobs, credential=f"token:{token_id_of(world, bob)}",
                  because=f"VM {vm_name!r} given to 'carol' (by 'test-admin')")
    await still_streams(admins)


async def test_a_revoked_token_ends_what_it_opened_and_what_its_tickets_opened(world: World) -> None:
    revoked = world.tokens["bob"]
    kept = provision_user(world.database_url, "bob", PASSWORDS["bob"])  # bob's second token
    by_token, by_ticket, by_other_token = await open_all(
        world,
        lambda: world.open("bobs", token=revoked),
        lambda: ticket_console(world, "bobs", revoked),
        lambda: world.open("bobs", token=kept),
    )
    unused_ticket = await world.ticket("bobs", token=revoked)
    token_id = token_id_of(world, revoked)
    async with world.api(kept) as api:  # bob revokes it himself, with his other token
        since = await changed(api.delete(f"/api/tokens/{token_id}"), by_token, by_ticket)
    for console in (by_token, by_ticket):
        await ends_with_access_revoked(console, since)
        await audited(world, console, credential=f"token:{token_id}", because=f"API token {token_id} revoked by 'bob'")
    await still_streams(by_other_token)
    # A ticket the token asked for before it was revoked opens nothing now.
    late = await read_console(world.url("bobs", f"notices=1&ticket={unused_ticket}"), timeout=20)
    (error,) = late.errors
    assert error["code"] == "ACCESS_REVOKED" and error["details"] == f"API token {token_id} revoked by 'bob'"
    assert (late.close_code, late.close_reason) == (4513, "ACCESS_REVOKED")


async def test_consoles_opening_while_their_token_is_revoked_do_not_survive(world: World) -> None:
    """Consoles opened with a token just before, while and just after it is revoked: each one is refused
    (UNAUTHORIZED) or ends with ACCESS_REVOKED; none keeps streaming, whatever stage it was in."""
    token = provision_user(world.database_url, "bob", PASSWORDS["bob"])
    token_id = token_id_of(world, token)
    url = world.url("bobs")

    async def attempt(delay: float) -> ConsoleTranscript:
        await asyncio.sleep(delay)
        transcript = ConsoleTranscript()
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10,
                           close_timeout=2, ping_interval=None, max_size=None) as ws:
            await asyncio.wait_for(read_frames(ws, transcript, time.monotonic()), 15)
        return transcript

    attempts = [asyncio.create_task(attempt(0.03 * number)) for number in range(12)]
    await asyncio.sleep(0.15)
    async with world.api(token) as api:
        assert (await api.delete(f"/api/tokens/{token_id}")).status_code == 200
    outcomes = await asyncio.gather(*attempts)
    ends = sorted((t.close_code, t.close_reason) for t in outcomes)
    # Which of the two each one gets depends on the machine's timing; that none streams on does not.
    assert set(ends) <= {(4501, "UNAUTHORIZED"), (4513, "ACCESS_REVOKED")}, ends


async def test_signing_out_ends_the_consoles_that_browser_opened(world: World) -> None:
    first_cookie, first_csrf = await world.sign_in("bob")
    second_cookie, _ = await world.sign_in("bob")
    by_cookie, by_ticket, other_browser = await open_all(
        world,
        lambda: world.open("bobs", cookie=first_cookie),
        lambda: cookie_ticket_console(world, first_cookie, first_csrf),
        lambda: world.open("bobs", cookie=second_cookie),
    )
    credential = (await world.row(by_cookie.session_id, ended=False))["credential"]
    assert credential.startswith("session:") and len(credential) == len("session:") + 16
    async with world.api(Origin=world.server.base_url, Cookie=f"limen_session={first_cookie}",
                         **{"X-CSRF-Token": first_csrf}) as browser:
        since = await changed(browser.post("/api/logout"), by_cookie, by_ticket)
    for console in (by_cookie, by_ticket):
        await ends_with_access_revoked(console, since)
        await audited(world, console, credential=credential, because="user 'bob' signed out")
    other = await world.row(other_browser.session_id, ended=False)
    assert other["credential"] != credential
    await still_streams(other_browser)


async def cookie_ticket_console(world: World, cookie: str, csrf: str) -> Console:
    return await world.open("bobs", ticket=await world.ticket("bobs", cookie=cookie, csrf=csrf))


async def test_a_deleted_vm_ends_its_consoles_with_vm_not_found_before_it_goes(world: World) -> None:
    """VM_NOT_FOUND, whose advice fits (it was ACCESS_REVOKED: "sign in again or ask an administrator")."""
    carol = world.tokens["carol"]
    on_bobs, on_spare = await open_all(world, lambda: world.open("bobs", token=admin_token(world)),
                                       lambda: world.open("spare", token=carol))
    vm_name = (await world.row(on_bobs.session_id, ended=False))["vm_name"]
    async with world.admin() as api:
        since = await changed(api.delete(f"/api/vms/{world.vms['bobs']}"), on_bobs)
    # Not VM_STOPPED: the console was ended, saying why, before the VM was destroyed.
    await ends_with_access_revoked(on_bobs, since, code=ErrorCode.VM_NOT_FOUND)
    await audited(world, on_bobs, credential=f"token:{token_id_of(world, admin_token(world))}",
                  because=f"VM {vm_name!r} deleted by 'test-admin'", code=ErrorCode.VM_NOT_FOUND)
    await still_streams(on_spare)


# -- across instances ---------------------------------------------------------------------------------------


async def test_a_change_on_one_instance_ends_a_console_held_by_another(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str], tmp_path: Path
) -> None:
    """Two servers on one SQLite database and one redis-server: bob's consoles are held by B; the admin
    disables bob on A, ends carol's session (held by B) from A, and revokes carol's other token with the
    command line."""
    with redis_server(tmp_path) as redis_url:
        database_url = database_url_for(tmp_path / 'data')
        a = limen_server(LIMEN_REDIS_URL=redis_url)
        b = limen_server(LIMEN_REDIS_URL=redis_url, LIMEN_LOG_DIR=str(tmp_path / "log-b"))
        tokens = provision(database_url)
        carols_script = provision_user(database_url, "carol", PASSWORDS["carol"])
        vms = await make_vms(a, {"bobs": vm_names(), "spare": vm_names()}, {"bobs": "bob", "spare": "carol"})
        on_a = World(a, database_url, vms, tokens)
        on_b = World(b, database_url, vms, tokens)
        b.auth_headers = a.auth_headers
        try:
            bobs, by_ticket, carols, admins = await open_all(
                on_b,
                lambda: on_b.open("bobs", token=tokens["bob"]),
                # A ticket minted on A, redeemed on B (tickets live in Redis).
                lambda: ticket_from(on_a, on_b, tokens["bob"]),
                lambda: on_b.open("spare", token=tokens["carol"]),
                lambda: on_b.open("spare", token=admin_token(on_b)),
            )
            (by_script,) = await open_all(on_b, lambda: on_b.open("spare", token=carols_script))
            async with on_a.admin() as api:
                since = await changed(api.put("/api/users/bob/disabled", json={"disabled": True}), bobs, by_ticket)
            for console in (bobs, by_ticket):
                await ends_with_access_revoked(console, since)
                await audited(on_a, console, credential=f"token:{token_id_of(on_a, tokens['bob'])}",
                              because="user 'bob' disabled by 'test-admin'")
            await still_streams(admins)

            async with on_a.admin() as api:
                since = await changed(api.delete(f"/api/console-sessions/{carols.session_id}"))
                # A does not hold it; B ends it.
            await asyncio.wait_for(read_frames(carols.ws, carols.transcript, since), BOUND + SLACK + 5)
            assert time.monotonic() - since < BOUND + SLACK
            assert (carols.transcript.close_code, carols.transcript.close_reason) == (4403, "SESSION_TERMINATED")
            row = await on_a.row(carols.session_id)
            assert (row["end_code"], row["terminated_by"]) == ("SESSION_TERMINATED", "test-admin")

            # `limen token revoke` on this machine, with the same database and Redis: B's console ends.
            token_id = token_id_of(on_a, carols_script)
            since = time.monotonic()
            # The command's start (Python, imports, migrations) takes seconds on a loaded machine: the watcher
            # waits for it; the bound is asserted from the command's exit.
            by_script.watcher = asyncio.create_task(error_frame_after(by_script, since, patience=90))
            command = await asyncio.create_subprocess_exec(
                str(LIMEN_BIN), "token", "revoke", str(token_id),
                env=cli_env({**os.environ, "LIMEN_DATA_DIR": str(tmp_path / "data"), "LIMEN_REDIS_URL": redis_url,
                     "LIMEN_LOG_DIR": str(tmp_path / "log-cli")}),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            _, err = await command.communicate()
            assert command.returncode == 0, err
            exited = time.monotonic() - since  # the revocation goes out just before the command exits
            await ends_with_access_revoked(by_script, since, made_after=exited)
            await audited(on_a, by_script, credential=f"token:{token_id}",
                          because=f"API token {token_id} revoked from the command line")
            await still_streams(admins)
        finally:
            for console in on_a.consoles + on_b.consoles:
                await console.ws.close()


async def ticket_from(issuer: World, holder: World, token: str) -> Console:
    return await holder.open("bobs", ticket=await issuer.ticket("bobs", token=token))


async def run_limen(tmp_path: Path, redis_url: str, *args: str, stdin: bytes | None = None) -> float:
    """Runs a ``limen`` command on the server's data dir and Redis (``stdin`` its input); returns how long it
    took (the revocation goes out just before it exits)."""
    from tests.conftest import QEMU_URI, TEST_POOL, TEST_POOL_DIR

    started = time.monotonic()
    command = await asyncio.create_subprocess_exec(
        str(LIMEN_BIN), *args,
        env=cli_env({**os.environ, "LIMEN_DATA_DIR": str(tmp_path / "data"), "LIMEN_REDIS_URL": redis_url,
                     "LIMEN_LOG_DIR": str(tmp_path / "log-cli"), "LIMEN_LIBVIRT_URI": QEMU_URI,
                     "LIMEN_STORAGE_POOL": TEST_POOL, "LIMEN_STORAGE_POOL_DIR": str(TEST_POOL_DIR),
                     "LIMEN_VIRT_TYPE": "qemu"}),
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await command.communicate(stdin)
    assert command.returncode == 0, err
    return time.monotonic() - started


async def test_the_command_lines_changes_end_the_consoles_of_a_running_server(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str], tmp_path: Path
) -> None:
    """`limen user passwd`, `limen user set-role`, `limen user delete` and `limen vm delete`, run beside a
    server that shares their database and Redis: each ends the consoles it took the right from, within the
    bound of the command's exit, with ACCESS_REVOKED and its reason (a deleted VM's before it is destroyed).
    A password set ends the consoles of the user's browser sign-ins, not those of their API tokens."""
    with redis_server(tmp_path) as redis_url:
        database_url = database_url_for(tmp_path / "data")
        server = limen_server(LIMEN_REDIS_URL=redis_url)
        tokens = provision(database_url)
        dave = provision_user(database_url, "dave", "dave-password-1", Role.ADMIN)
        vms = await make_vms(server, {"bobs": vm_names(), "spare": vm_names()}, {"bobs": "bob", "spare": "carol"})
        world = World(server, database_url, vms, tokens)
        carols_cookie, _ = await world.sign_in("carol")
        try:
            carols_browser, daves, bobs, carols, admins_spare, admins = await open_all(
                world,
                lambda: world.open("spare", cookie=carols_cookie),
                lambda: world.open("bobs", token=dave),
                lambda: world.open("bobs", token=tokens["bob"]),
                lambda: world.open("spare", token=tokens["carol"]),
                lambda: world.open("spare", token=admin_token(world)),
                lambda: world.open("bobs", token=admin_token(world)),
            )
            spare_name = (await world.row(carols.session_id, ended=False))["vm_name"]
            revoked, gone = ErrorCode.ACCESS_REVOKED, ErrorCode.VM_NOT_FOUND
            steps: list[tuple[tuple[str, ...], list[Console], str, ErrorCode]] = [
                (("user", "passwd", "carol", "--password-stdin"), [carols_browser],
                 "the password of user 'carol' was set from the command line", revoked),
                (("user", "set-role", "dave", "user"), [daves],
                 "user 'dave' is no longer an administrator (changed from the command line)", revoked),
                (("user", "delete", "bob"), [bobs], "user 'bob' deleted from the command line", revoked),
                (("vm", "delete", vms["spare"]), [carols, admins_spare],
                 f"VM {spare_name!r} deleted from the command line", gone),
            ]
            for args, ended, because, code in steps:
                since = time.monotonic()
                for console in ended:  # the command's start takes seconds on a loaded machine: see above
                    console.watcher = asyncio.create_task(error_frame_after(console, since, patience=90))
                took = await run_limen(tmp_path, redis_url, *args, stdin=b"carols-new-password\n")
                for console in ended:
                    await ends_with_access_revoked(console, since, made_after=took, code=code)
                    row = await world.row(console.session_id)
                    assert (row["end_code"], row["end_details"]) == (code.name, because), row
                assert admins.ws.close_code is None
                if "passwd" in args:
                    assert carols.ws.close_code is None  # her API token's console
            await still_streams(admins)  # once: its RFB handshake can be begun only once
        finally:
            for console in world.consoles:
                await console.ws.close()
