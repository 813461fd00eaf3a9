"""The behaviour every :class:`~limen.auth.tickets.TicketStore` must have; a test module supplies
``store`` (a store on the ``clock`` fixture) and subclasses :class:`TicketStoreContract`."""

from __future__ import annotations

import asyncio

import pytest

from limen.auth.tickets import RETAIN_SECONDS, TicketHolder, TicketStore
from limen.errors import ErrorCode, LimenError
from tests.support.access import FakeClock

VM_A = "11111111-1111-1111-1111-111111111111"
VM_B = "22222222-2222-2222-2222-222222222222"
TTL = 30.0


async def refused(store: TicketStore, ticket: str, vm: str) -> ErrorCode:
    with pytest.raises(LimenError) as caught:
        await store.redeem(ticket, vm)
    if len(ticket) > 3:
        assert ticket not in str(caught.value) and ticket not in caught.value.details
    return caught.value.code


class TicketStoreContract:
    async def test_a_ticket_opens_its_vm_once(self, store: TicketStore) -> None:
        ticket = await store.issue("alice", VM_A)
        assert len(ticket) >= 40 and store.ttl == TTL
        assert (await store.redeem(ticket, VM_A)).user == "alice"
        assert await refused(store, ticket, VM_A) is ErrorCode.TICKET_USED

    async def test_tickets_are_distinct(self, store: TicketStore) -> None:
        tickets = {await store.issue("alice", VM_A) for _ in range(20)}
        assert len(tickets) == 20

    async def test_expired_ticket(self, store: TicketStore, clock: FakeClock) -> None:
        ticket = await store.issue("alice", VM_A)
        clock.advance(TTL - 0.5)
        fresh = await store.issue("alice", VM_A)
        clock.advance(1)
        assert await refused(store, ticket, VM_A) is ErrorCode.TICKET_EXPIRED
        assert (await store.redeem(fresh, VM_A)).user == "alice"

    async def test_an_expired_ticket_is_spent_too(self, store: TicketStore, clock: FakeClock) -> None:
        ticket = await store.issue("alice", VM_A)
        clock.advance(TTL + 1)
        assert await refused(store, ticket, VM_A) is ErrorCode.TICKET_EXPIRED
        assert await refused(store, ticket, VM_A) is ErrorCode.TICKET_USED

    async def test_another_vm_is_forbidden_and_spends_the_ticket(self, store: TicketStore) -> None:
        ticket = await store.issue("alice", VM_A)
        assert await refused(store, ticket, VM_B) is ErrorCode.FORBIDDEN
        assert await refused(store, ticket, VM_A) is ErrorCode.TICKET_USED

    @pytest.mark.parametrize("ticket", ["", "x", "not a ticket at all!", "A" * 43, "é" * 43, "A" * 5000])
    async def test_unknown_or_malformed_ticket_is_forbidden(self, store: TicketStore, ticket: str) -> None:
        assert await refused(store, ticket, VM_A) is ErrorCode.FORBIDDEN

    async def test_forgotten_after_the_retention(self, store: TicketStore, clock: FakeClock) -> None:
        ticket = await store.issue("alice", VM_A)
        clock.advance(TTL + RETAIN_SECONDS + 1)
        await store.issue("bob", VM_B)  # lets the memory store purge
        assert await refused(store, ticket, VM_A) in (ErrorCode.FORBIDDEN, ErrorCode.TICKET_EXPIRED)

    async def test_concurrent_redemption_has_one_winner(self, store: TicketStore) -> None:
        ticket = await store.issue("alice", VM_A)
        results = await asyncio.gather(*(store.redeem(ticket, VM_A) for _ in range(10)), return_exceptions=True)
        assert [r.user for r in results if isinstance(r, TicketHolder)] == ["alice"]
        assert {r.code for r in results if isinstance(r, LimenError)} == {ErrorCode.TICKET_USED}

    async def test_the_credential_that_asked_is_kept_with_the_user(self, store: TicketStore) -> None:
        """So that revoking it ends the console the ticket opened (limen.auth.revocation)."""
        by_token = await store.issue("alice", VM_A, "token:12")
        by_browser = await store.issue("alice", VM_A, "session:0123456789abcdef")
        anonymous = await store.issue("alice", VM_A)
        assert await store.redeem(by_token, VM_A) == TicketHolder("alice", "token:12")
        assert await store.redeem(by_browser, VM_A) == TicketHolder("alice", "session:0123456789abcdef")
        assert await store.redeem(anonymous, VM_A) == TicketHolder("alice", None)

    async def test_names_are_kept_exactly(self, store: TicketStore) -> None:
        name = "O'Brien\"; DROP TABLE users;-- <script>alert(1)</script> Ωμέγα 🐧"
        assert (await store.redeem(await store.issue(name, VM_A), VM_A)).user == name

    async def test_peek_names_the_user_without_spending_the_ticket(self, store: TicketStore) -> None:
        ticket = await store.issue("alice", VM_A)
        assert await store.peek(ticket) == "alice"
        assert await store.peek(ticket) == "alice"
        assert (await store.redeem(ticket, VM_A)).user == "alice"  # still unspent after the peeks
        assert await store.peek(ticket) is None  # spent

    async def test_peek_sees_nothing_in_expired_unknown_or_malformed_tickets(
        self, store: TicketStore, clock: FakeClock
    ) -> None:
        ticket = await store.issue("alice", VM_A)
        clock.advance(TTL + 1)
        assert await store.peek(ticket) is None
        assert await refused(store, ticket, VM_A) is ErrorCode.TICKET_EXPIRED  # the peek changed nothing
        for made_up in ("", "x", "A" * 43, "é" * 43, "A" * 5000):
            assert await store.peek(made_up) is None
