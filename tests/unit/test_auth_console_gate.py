"""What the console WebSocket checks before proxying: Origin, credentials, ticket, ownership.

Driven with a WebSocket scope and no socket: :func:`admit_console` needs only the connection's headers,
query and peer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlencode

import pytest
from starlette.requests import HTTPConnection

from limen.auth.access import Access
from limen.auth.console_gate import admit_console
from limen.auth.principal import AuthMethod, Principal
from limen.auth.tickets import TicketHolder
from limen.db import Role
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import Hypervisor
from limen.hypervisor.models import Vm
from limen.hypervisor.ownership import set_owner
from limen.settings import Settings
from tests.support.access import FakeClock, make_access


class Gate:
    def __init__(self, access: Access, hypervisor: Hypervisor, clock: FakeClock) -> None:
        self.access = access
        self.hypervisor = hypervisor
        self.clock = clock

    def connection(
        self, *, ticket: str | None = None, cookie: str | None = None, bearer: str | None = None,
        origin: str | None = "http://limen.test", vm_id: str = "test",
    ) -> HTTPConnection:
        headers = [(b"host", b"limen.test")]
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        if cookie is not None:
            headers.append((b"cookie", f"limen_session={cookie}".encode()))
        if bearer is not None:
            headers.append((b"authorization", f"Bearer {bearer}".encode()))
        query = urlencode({"ticket": ticket}) if ticket is not None else ""
        return HTTPConnection({
            "type": "websocket", "scheme": "ws", "path": f"/api/vms/{vm_id}/console", "query_string": query.encode(),
            "headers": headers, "client": ("127.0.0.1", 50000), "server": ("limen.test", 80),
            "path_params": {"vm_id": vm_id},
        })

    async def admit(self, vm_id: str = "test", **credentials: str | None) -> tuple[str, AuthMethod, Vm]:
        principal, vm = await admit_console(self.access, self.connection(vm_id=vm_id, **credentials),
                                            lambda: self.hypervisor.get_vm(vm_id))
        return principal.name, principal.method, vm

    async def refusal(self, vm_id: str = "test", **credentials: str | None) -> LimenError:
        with pytest.raises(LimenError) as caught:
            await self.admit(vm_id, **credentials)
        for key in ("ticket", "cookie", "bearer"):
            secret = credentials.get(key)
            if secret:
                assert secret not in str(caught.value)
        return caught.value

    async def refused(self, vm_id: str = "test", **credentials: str | None) -> ErrorCode:
        return (await self.refusal(vm_id, **credentials)).code


@pytest.fixture
async def gate(make_settings: Callable[..., Settings], test_hypervisor: Hypervisor) -> AsyncIterator[Gate]:
    clock = FakeClock()
    access = make_access(make_settings(public_url="http://limen.test"), clock)
    await access.start()
    await access.users.create("alice", "alice-password")
    await access.users.create("bob", "bob-password")
    await access.users.create("root", "root-password", Role.ADMIN)
    await set_owner(test_hypervisor, "test", "alice")
    yield Gate(access, test_hypervisor, clock)
    await set_owner(test_hypervisor, "test", None)
    await access.close()


async def test_a_ticket_admits_once(gate: Gate) -> None:
    vm = await gate.hypervisor.get_vm("test")
    ticket = await gate.access.tickets.issue("alice", vm.uuid)
    assert await gate.admit(ticket=ticket) == ("alice", AuthMethod.TICKET, vm)
    assert await gate.refused(ticket=ticket) is ErrorCode.TICKET_USED


async def test_an_expired_ticket(gate: Gate) -> None:
    vm = await gate.hypervisor.get_vm("test")
    ticket = await gate.access.tickets.issue("alice", vm.uuid)
    gate.clock.advance(31)
    assert await gate.refused(ticket=ticket) is ErrorCode.TICKET_EXPIRED


async def test_a_ticket_for_another_vm(gate: Gate) -> None:
    ticket = await gate.access.tickets.issue("alice", "00000000-0000-0000-0000-000000000001")
    assert await gate.refused(ticket=ticket) is ErrorCode.FORBIDDEN


async def test_a_ticket_for_another_vm_its_user_may_see_is_forbidden_however_late_the_peek(gate: Gate) -> None:
    # The early peek at the ticket's user can come after the redemption spent it (it then sees no ticket): the
    # verdict is still FORBIDDEN (a ticket for another VM), never VM_NOT_FOUND for a VM this admin may see.
    tickets = gate.access.tickets
    peek, redeem = tickets.peek, tickets.redeem
    spent = asyncio.Event()

    async def late_peek(ticket: str) -> str | None:
        await spent.wait()
        return await peek(ticket)

    async def redeem_then_tell(ticket: str, vm_uuid: str) -> TicketHolder:
        try:
            return await redeem(ticket, vm_uuid)
        finally:
            spent.set()

    tickets.peek, tickets.redeem = late_peek, redeem_then_tell  # type: ignore[method-assign]
    try:
        ticket = await tickets.issue("root", "00000000-0000-0000-0000-000000000001")
        assert await gate.refused(ticket=ticket) is ErrorCode.FORBIDDEN
    finally:
        del tickets.peek, tickets.redeem  # type: ignore[method-assign]


async def test_a_ticket_of_a_user_who_lost_the_vm(gate: Gate) -> None:
    vm = await gate.hypervisor.get_vm("test")
    ticket = await gate.access.tickets.issue("alice", vm.uuid)
    await set_owner(gate.hypervisor, "test", "bob")
    assert await gate.refused(ticket=ticket) is ErrorCode.VM_NOT_FOUND  # now a VM she cannot see


async def test_a_made_up_ticket_tells_nothing_about_vm_names(gate: Gate) -> None:
    assert await gate.refused(ticket="x" * 43) is ErrorCode.FORBIDDEN
    assert await gate.refused("no-such-vm", ticket="x" * 43) is ErrorCode.FORBIDDEN


async def test_a_genuine_ticket_for_a_vanished_vm_says_so(gate: Gate) -> None:
    ticket = await gate.access.tickets.issue("alice", "00000000-0000-0000-0000-000000000001")
    assert await gate.refused("no-such-vm", ticket=ticket) is ErrorCode.VM_NOT_FOUND


async def test_no_credentials(gate: Gate) -> None:
    assert await gate.refused() is ErrorCode.UNAUTHORIZED
    assert await gate.refused(cookie="made-up-cookie-value") is ErrorCode.UNAUTHORIZED
    assert await gate.refused(bearer="limen_made-up-token-0000000000000000") is ErrorCode.UNAUTHORIZED


async def test_foreign_origin_is_refused_before_anything_else(gate: Gate) -> None:
    vm = await gate.hypervisor.get_vm("test")
    ticket = await gate.access.tickets.issue("alice", vm.uuid)
    assert await gate.refused(ticket=ticket, origin="https://evil.example") is ErrorCode.ORIGIN_NOT_ALLOWED
    assert await gate.admit(ticket=ticket) == ("alice", AuthMethod.TICKET, vm)  # not spent by the refusal


async def test_session_cookie_and_token_follow_ownership(gate: Gate) -> None:
    alice = await gate.access.sessions.create("alice")
    bob = await gate.access.sessions.create("bob")
    root = await gate.access.tokens.create("root", "script")
    assert (await gate.admit(cookie=alice.cookie))[:2] == ("alice", AuthMethod.COOKIE)
    assert await gate.refused(cookie=bob.cookie) is ErrorCode.VM_NOT_FOUND
    assert (await gate.admit(bearer=root.secret))[:2] == ("root", AuthMethod.TOKEN)
    assert (await gate.admit(origin=None, cookie=alice.cookie))[0] == "alice"  # no Origin: not a browser


async def test_a_ticket_beats_a_cookie(gate: Gate) -> None:
    vm = await gate.hypervisor.get_vm("test")
    bob = await gate.access.sessions.create("bob")
    ticket = await gate.access.tickets.issue("alice", vm.uuid)
    assert (await gate.admit(ticket=ticket, cookie=bob.cookie))[0] == "alice"


async def test_a_tickets_user_is_looked_up_while_the_vm_is_read(gate: Gate) -> None:
    # find_vm does not return until the user's lookup has begun: both run at once.
    vm = await gate.hypervisor.get_vm("test")
    ticket = await gate.access.tickets.issue("alice", vm.uuid)
    looking_up = asyncio.Event()
    users = gate.access.users
    principal = users.principal

    async def watched_principal(name: str, method: AuthMethod) -> Principal | None:
        looking_up.set()
        return await principal(name, method)

    async def find_vm() -> Vm:
        await asyncio.wait_for(looking_up.wait(), 5)
        return vm

    users.principal = watched_principal  # type: ignore[method-assign]
    try:
        found, _ = await admit_console(gate.access, gate.connection(ticket=ticket), find_vm)
    finally:
        del users.principal  # type: ignore[method-assign]
    assert (found.name, found.method) == ("alice", AuthMethod.TICKET)


async def test_the_early_lookup_never_changes_the_verdict(gate: Gate) -> None:
    vm = await gate.hypervisor.get_vm("test")
    # A disabled user: refused after the redemption, as before (the ticket is spent).
    ticket = await gate.access.tickets.issue("alice", vm.uuid)
    await gate.access.users.set_disabled("alice", True)
    assert await gate.refused(ticket=ticket) is ErrorCode.FORBIDDEN
    await gate.access.users.set_disabled("alice", False)
    assert await gate.refused(ticket=ticket) is ErrorCode.TICKET_USED
    # A VM that cannot be read: that error, and the ticket is not spent by the early lookup.
    ticket = await gate.access.tickets.issue("alice", vm.uuid)

    async def unavailable() -> Vm:
        raise LimenError(ErrorCode.HYPERVISOR_UNAVAILABLE, "no answer")

    with pytest.raises(LimenError) as caught:
        await admit_console(gate.access, gate.connection(ticket=ticket), unavailable)
    assert caught.value.code is ErrorCode.HYPERVISOR_UNAVAILABLE
    assert await gate.admit(ticket=ticket) == ("alice", AuthMethod.TICKET, vm)


async def test_a_vm_one_may_not_see_is_refused_exactly_like_a_missing_one(gate: Gate) -> None:
    """Whether by cookie, token or a genuine ticket for another VM, by name or by UUID: the same error."""
    vm = await gate.hypervisor.get_vm("test")  # alice's
    missing_uuid = "00000000-0000-0000-0000-0000000000ff"
    bob = await gate.access.sessions.create("bob")
    bob_token = await gate.access.tokens.create("bob", "script")
    for hidden, missing in (("test", "no-such-vm"), (vm.uuid, missing_uuid)):
        credentials: list[dict[str, str | None]] = [{"cookie": bob.cookie}, {"bearer": bob_token.secret}]
        for given in credentials:
            shown = (await gate.refusal(hidden, **given)).to_dict()
            absent = (await gate.refusal(missing, **given)).to_dict()
            assert shown["code"] == "VM_NOT_FOUND"
            assert shown == {**absent, "details": absent["details"].replace(missing, hidden)}
        # bob's genuine ticket for a VM of his own, tried on alice's VM and on a missing one
        hidden_ticket = await gate.access.tickets.issue("bob", "00000000-0000-0000-0000-000000000002")
        missing_ticket = await gate.access.tickets.issue("bob", "00000000-0000-0000-0000-000000000002")
        shown = (await gate.refusal(hidden, ticket=hidden_ticket)).to_dict()
        absent = (await gate.refusal(missing, ticket=missing_ticket)).to_dict()
        assert shown["code"] == "VM_NOT_FOUND"
        assert shown == {**absent, "details": absent["details"].replace(missing, hidden)}
        assert "alice" not in str(shown)
