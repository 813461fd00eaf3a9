"""One-time console tickets.

``POST /api/vms/{id}/console-ticket`` issues a ticket bound to a user and a VM; the console WebSocket
redeems it (``?ticket=``). A ticket is valid for ``console_ticket_ttl`` seconds and opens one console:
redeeming is atomic, so of two concurrent attempts exactly one wins. Redeeming decides, in this order::

    never issued (or long gone)    FORBIDDEN
    already redeemed               TICKET_USED
    past its expiry                TICKET_EXPIRED   (the ticket is spent all the same)
    issued for another VM          FORBIDDEN        (spent all the same: a ticket is tried once)
    otherwise                      the user it was issued to, and the credential that asked for it

A ticket keeps the credential of the request that minted it (``token:<id>``, ``session:<hash prefix>``),
so a console opened with the ticket ends when that credential is revoked (:mod:`limen.auth.revocation`).

Redeemed and expired tickets are remembered for :data:`RETAIN_SECONDS` so the answer can say which it
was. Stores key tickets by their SHA-256, so a store's contents cannot be replayed as tickets.
Time comes from an injectable clock; Redis's own key expiry only cleans up afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Protocol

from limen.clock import Clock
from limen.errors import ErrorCode, LimenError
from limen.redis_client import RedisStore

RETAIN_SECONDS = 600.0
_TICKET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,128}$")


class TicketForAnotherVm(LimenError):
    """A valid ticket presented for a VM it was not issued for (now spent); ``user``: whom it was issued to."""

    def __init__(self, user: str) -> None:
        super().__init__(ErrorCode.FORBIDDEN, "the console ticket was issued for another VM")
        self.user = user


def _unknown() -> LimenError:
    return LimenError(ErrorCode.FORBIDDEN, "unknown console ticket")


def _key(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def new_ticket() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class TicketHolder:
    """Whom a redeemed ticket was issued to, and the credential of the request that asked for it."""

    user: str
    credential: str | None = None


class TicketStore(Protocol):
    """Where tickets live between issue and redemption. Implementations must redeem atomically."""

    @property
    def ttl(self) -> float: ...

    async def issue(self, user: str, vm_uuid: str, credential: str | None = None) -> str:
        """A new ticket for ``user`` to open the console of ``vm_uuid``, valid for ``ttl`` seconds;
        ``credential`` names what the asking request was authenticated with."""
        ...

    async def redeem(self, ticket: str, vm_uuid: str) -> TicketHolder:
        """Whom the ticket was issued to; raises as the module docstring says. Spends the ticket."""
        ...

    async def peek(self, ticket: str) -> str | None:
        """The user of a ticket that could still be redeemed (known, unspent, unexpired), without spending
        it; None otherwise, and on any failure. A hint only (the console looks the user up while it reads
        the VM): :meth:`redeem` alone decides."""
        ...

    async def check(self) -> None:
        """Raises if the store cannot be reached (at start-up and for readiness)."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Entry:
    user: str
    vm_uuid: str
    expires_at: float
    credential: str | None = None
    used: bool = False


def _judge(holder: TicketHolder, vm_uuid: str, expires_at: float, wanted_vm: str, now: float) -> TicketHolder:
    if now >= expires_at:
        raise LimenError(ErrorCode.TICKET_EXPIRED, "the console ticket expired")
    if vm_uuid != wanted_vm:
        raise TicketForAnotherVm(holder.user)
    return holder


class MemoryTicketStore:
    """Tickets in this process: enough for one limen instance. Not thread-safe; use from one event loop."""

    def __init__(self, ttl: float, clock: Clock) -> None:
        self._ttl = ttl
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    @property
    def ttl(self) -> float:
        return self._ttl

    def _purge(self, now: float) -> None:
        # Entries are kept in issue order, which is expiry order (one ttl for all), so the ones to drop are
        # at the front: stop at the first that is still kept (amortised O(1) per issue, not a full scan).
        entries = self._entries
        while entries:
            key = next(iter(entries))
            if entries[key].expires_at + RETAIN_SECONDS > now:
                return
            del entries[key]

    async def issue(self, user: str, vm_uuid: str, credential: str | None = None) -> str:
        now = self.clock()
        self._purge(now)
        ticket = new_ticket()
        self._entries[_key(ticket)] = _Entry(user=user, vm_uuid=vm_uuid, expires_at=now + self._ttl,
                                             credential=credential)
        return ticket

    async def redeem(self, ticket: str, vm_uuid: str) -> TicketHolder:
        # No await between the lookup and marking it used: atomic on the event loop.
        if not _TICKET_SHAPE.fullmatch(ticket):
            raise _unknown()
        now = self.clock()
        entry = self._entries.get(_key(ticket))
        if entry is None or entry.expires_at + RETAIN_SECONDS <= now:
            raise _unknown()
        if entry.used:
            raise LimenError(ErrorCode.TICKET_USED, "the console ticket was already used")
        entry.used = True
        return _judge(TicketHolder(entry.user, entry.credential), entry.vm_uuid, entry.expires_at, vm_uuid, now)

    async def peek(self, ticket: str) -> str | None:
        if not _TICKET_SHAPE.fullmatch(ticket):
            return None
        entry = self._entries.get(_key(ticket))
        if entry is None or entry.used or self.clock() >= entry.expires_at:
            return None
        return entry.user

    async def check(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()


# KEYS[1] the ticket, KEYS[2] its "used" marker; ARGV[1] how long to keep the marker (ms).
# Takes the ticket and leaves the marker in one step, so a ticket can be taken once only.
_REDEEM_SCRIPT = """
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
  return value
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return '!used'
end
return false
"""


class RedisTicketStore(RedisStore):
    """Tickets in Redis, shared by every limen instance that uses the same ``redis_url``."""

    what = "console ticket store"

    def __init__(self, url: str, ttl: float, clock: Clock, *, namespace: str = "limen") -> None:
        super().__init__(url)
        self._ttl = ttl
        self.clock = clock
        self.namespace = namespace
        self._redeem = self._redis.register_script(_REDEEM_SCRIPT)

    @property
    def ttl(self) -> float:
        return self._ttl

    def _keys(self, ticket: str) -> list[str]:
        # The {hash tag} keeps both keys in one slot, as a Redis Cluster script requires.
        key = _key(ticket)
        return [f"{self.namespace}:ticket:{{{key}}}", f"{self.namespace}:ticket-used:{{{key}}}"]

    async def issue(self, user: str, vm_uuid: str, credential: str | None = None) -> str:
        ticket = new_ticket()
        expires_at = self.clock() + self._ttl
        value = json.dumps({"user": user, "vm": vm_uuid, "expires_at": expires_at, "credential": credential})
        async with self._errors("issue"):
            await self._redis.set(self._keys(ticket)[0], value, px=int((self._ttl + RETAIN_SECONDS) * 1000))
        return ticket

    async def redeem(self, ticket: str, vm_uuid: str) -> TicketHolder:
        if not _TICKET_SHAPE.fullmatch(ticket):
            raise _unknown()
        async with self._errors("redeem"):
            raw = await self._redeem(keys=self._keys(ticket), args=[int(RETAIN_SECONDS * 1000)])
        if raw is None:
            raise _unknown()
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if text == "!used":
            raise LimenError(ErrorCode.TICKET_USED, "the console ticket was already used")
        entry = json.loads(text)
        credential = entry.get("credential")
        holder = TicketHolder(str(entry["user"]), str(credential) if credential is not None else None)
        return _judge(holder, str(entry["vm"]), float(entry["expires_at"]), vm_uuid, self.clock())

    async def peek(self, ticket: str) -> str | None:
        if not _TICKET_SHAPE.fullmatch(ticket):
            return None
        try:
            async with self._errors("peek"):
                raw = await self._redis.get(self._keys(ticket)[0])
            if raw is None:
                return None
            entry = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
            if self.clock() >= float(entry["expires_at"]):
                return None
            return str(entry["user"])
        except (LimenError, ValueError, KeyError, TypeError):
            return None  # a hint only: redeem reports what is wrong


def make_ticket_store(redis_url: str | None, ttl: float, clock: Clock) -> TicketStore:
    if redis_url:
        return RedisTicketStore(redis_url, ttl, clock)
    return MemoryTicketStore(ttl, clock)
