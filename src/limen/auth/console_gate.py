"""What the console WebSocket must pass before it proxies a byte: Origin, then credentials, then the VM.

The endpoint accepts the upgrade first (so a refusal is a proper error frame and close code, never a bare
1006), then calls :func:`admit_console`. Order, and what each step can refuse with::

    0. Host names this server                  HOST_NOT_ALLOWED (:class:`~limen.auth.site.Site`)
    1. Origin allowed                          ORIGIN_NOT_ALLOWED
    2. some credential present: ?ticket=, the session cookie, or Authorization: Bearer
                                               UNAUTHORIZED
    3. cookie or bearer valid                  UNAUTHORIZED
    4. the VM exists                           VM_NOT_FOUND (an unknown ticket is FORBIDDEN instead,
                                               so a made-up ticket learns nothing about VM names)
    5. ticket redeemed for this VM             FORBIDDEN, TICKET_USED, TICKET_EXPIRED; a genuine ticket
                                               for another VM gets VM_NOT_FOUND when its user may not
                                               see this one (as for a VM that does not exist)
    6. the user (still) exists and is enabled  FORBIDDEN
    7. the user may access the VM              VM_NOT_FOUND, exactly as for a VM that does not exist

With a ticket, the user it names (a :meth:`~limen.auth.tickets.TicketStore.peek`, which spends nothing)
is looked up while the VM is read, so the two worker-thread waits overlap; the verdicts and their order
stay as above: the user's state is that read beside the VM, and only the redemption decides whose it is.

A ticket wins over a cookie: the page asked for it for exactly this console. No secret ever appears in
an error's details.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from starlette.requests import HTTPConnection

from limen.auth.access import Access
from limen.auth.browser_sessions import COOKIE_NAME
from limen.auth.credentials import authenticate
from limen.auth.principal import AuthMethod, Principal, require_vm_access
from limen.auth.tickets import TicketForAnotherVm
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import Vm
from limen.hypervisor.service import vm_not_found

T = TypeVar("T")

TICKET_PARAMETER = "ticket"
# The share of the check_vm stage's deadline the ticket store (Redis) may take to redeem a ticket: a hung
# Redis then fails as REDIS_UNAVAILABLE, before the stage's own deadline would blame libvirt.
TICKET_STORE_SHARE = 0.6


def _bearer(conn: HTTPConnection) -> str | None:
    scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


async def admit_console(access: Access, conn: HTTPConnection, find_vm: Callable[[], Awaitable[Vm]]) -> tuple[
    Principal, Vm
]:
    """Runs the checks above; returns who opens the console of which VM. ``find_vm`` looks the VM up
    (bounded in time by the caller's stage deadline) and raises VM_NOT_FOUND if it does not exist."""
    access.check_host(conn)
    access.check_origin(conn)
    ticket = conn.query_params.get(TICKET_PARAMETER)
    cookie = conn.cookies.get(COOKIE_NAME)
    bearer = _bearer(conn)
    if not ticket and not cookie and not bearer:
        raise LimenError(ErrorCode.UNAUTHORIZED, "no console ticket, session cookie or API token")

    if not ticket:
        principal = await authenticate(access, bearer=bearer, cookie=cookie)
        vm = await find_vm()
        require_vm_access(principal, _requested(conn, vm), vm.owner)
        return principal, vm

    # The user is looked up while the VM is read (two worker threads at once instead of one after the
    # other), for the user the ticket names now; only the redemption below decides, in the order above.
    early = asyncio.get_running_loop().create_task(_holder_of(access, ticket))
    try:
        try:
            vm = await find_vm()
        except LimenError as exc:
            if exc.code is not ErrorCode.VM_NOT_FOUND:
                raise
            try:
                await access.tickets.redeem(ticket, "")  # spends it; unknown/used/expired say so
            except TicketForAnotherVm:
                raise exc from None  # a genuine ticket, for a VM that is gone
            raise  # unreachable: redeem("") never succeeds
        try:
            redeemed = await _bounded(access.tickets.redeem(ticket, vm.uuid), _ticket_budget(access))
        except TicketForAnotherVm as another:
            # A missing VM answers VM_NOT_FOUND to a genuine ticket (above); a VM its user may not see too.
            # The ticket's user, as the redemption says: the early peek may have come after the ticket was spent.
            peeked, holder = await early
            if peeked != another.user:
                holder = await access.users.principal(another.user, AuthMethod.TICKET)
            if holder is None or not holder.may_access(vm.owner):
                raise vm_not_found(_requested(conn, vm)) from None
            raise
        peeked, holder = await early
        if peeked != redeemed.user:  # the peek saw nothing (or, in theory, another user): look it up now
            holder = await access.users.principal(redeemed.user, AuthMethod.TICKET)
    finally:
        _drop(early)
    if holder is None:
        raise LimenError(ErrorCode.FORBIDDEN, "the ticket's user no longer exists or is disabled")
    # The console is the ticket's, but it was opened on the strength of whatever asked for the ticket.
    holder = replace(holder, credential=redeemed.credential)
    require_vm_access(holder, _requested(conn, vm), vm.owner)
    return holder, vm


def _requested(conn: HTTPConnection, vm: Vm) -> str:
    """The VM's UUID or name as the console's path gave it (the endpoint's ``vm_id``)."""
    vm_id: str = conn.path_params.get("vm_id") or vm.name
    return vm_id


async def _holder_of(access: Access, ticket: str) -> tuple[str | None, Principal | None]:
    """(the user the ticket names now, that user as a principal now); (None, None) if the peek saw none."""
    try:  # a hint only: a ticket store slow to answer counts as "saw none"
        async with asyncio.timeout(_ticket_budget(access)):
            user = await access.tickets.peek(ticket)
    except TimeoutError:
        user = None
    if user is None:
        return None, None
    return user, await access.users.principal(user, AuthMethod.TICKET)


def _ticket_budget(access: Access) -> float:
    return access.settings.console_check_vm_timeout * TICKET_STORE_SHARE


async def _bounded(work: Awaitable[T], seconds: float) -> T:
    """``work`` (a ticket store call), or REDIS_UNAVAILABLE once ``seconds`` pass (only Redis can be slow)."""
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError:
        raise LimenError(ErrorCode.REDIS_UNAVAILABLE,
                         f"the console ticket store did not answer within {seconds:.1f} s") from None


def _drop(task: asyncio.Task[Any]) -> None:
    """Cancels the early lookup if it is still running; marks an exception of it as seen."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()
