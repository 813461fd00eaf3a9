"""Where sign-in throttle counts live: Redis when ``redis_url`` is set, else limen's database.

Both are shared by every limen instance that uses them, and both let ``limen user unlock`` (another
process) clear a user's keys. Each operation is atomic over all the keys it names, so two attempts in
parallel can never both take the last free place (:mod:`limen.auth.throttle` has the rules):

- Redis: one Lua script per call (Redis runs a script alone). The keys of one call share the address
  as their hash tag, so they sit in one slot, as Redis Cluster wants. Keys expire when the rules would
  forget them.
- Database (table ``login_throttle``): one transaction that first inserts the missing rows (``INSERT …
  ON CONFLICT DO NOTHING``), then reads them ``FOR UPDATE``. On SQLite the insert takes the database's
  write lock before anything is read, so transactions run one after another; on PostgreSQL the row
  locks do (taken in key order, so two calls cannot deadlock). Forgotten rows are deleted once a minute.

Why not the ``limits`` library: its windows count hits, but an attempt here is reserved before the
password is checked and given back on success, and blocks double past the limit; neither fits its
``hit``/``test`` model.

Time is the caller's clock, passed in as ``now`` (Redis's own expiry only cleans up afterwards).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, and_, delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from limen.auth.names import name_key
from limen.auth.throttle import Count, ThrottlePolicy, current, failed, refusal, released, reserved
from limen.db import Database
from limen.db.models import LoginThrottle
from limen.redis_client import RedisStore

T = TypeVar("T")
PRUNE_INTERVAL = 60.0


def throttle_address(address: str) -> str:
    """The unit an address is throttled as: an IPv6 address's /64 (one subscriber holds a whole /64)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def user_hash(name: str) -> str:
    """A user name as throttle keys hold it: hashed, because people type passwords into the name field,
    and case-blind, like the names themselves."""
    return hashlib.sha256(name_key(name).encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ThrottleKey:
    """One throttle key: a user name at an address (``user`` is its :func:`user_hash`), or an address."""

    address: str
    user: str | None
    limit: int

    @property
    def text(self) -> str:
        return f"user:{self.user}@{self.address}" if self.user else f"address:{self.address}"


def user_prefix(name: str) -> str:
    """What every database key of the user ``name`` (at any address) starts with."""
    return f"user:{user_hash(name)}@"


class ThrottleStore(Protocol):
    """Counts of throttle keys. Every call is atomic over the keys it is given."""

    async def reserve(self, keys: Sequence[ThrottleKey], now: float) -> float | None:
        """Reserves an attempt on every key, or on none: returns None if reserved, else the seconds to wait."""
        ...

    async def fail(self, keys: Sequence[ThrottleKey], now: float) -> None:
        """Turns a reservation on every key into a failure."""
        ...

    async def succeed(self, release: Sequence[ThrottleKey], clear: Sequence[ThrottleKey], now: float) -> None:
        """Gives back a reservation on the keys of ``release``; forgets the keys of ``clear`` altogether."""
        ...

    async def clear_user(self, name: str) -> int:
        """Forgets every key of the user ``name`` (all addresses); returns how many there were."""
        ...

    async def clear_address(self, address: str) -> int:
        """Forgets every key at ``address`` (a :func:`throttle_address`): the address's and those of each user
        name at it; returns how many there were."""
        ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...


# -- the database ----------------------------------------------------------------------------------------


def _row_count(row: Any) -> Count:
    return Count(row.failures, row.in_flight, row.blocked_until, row.updated_at)


class DatabaseThrottleStore:
    def __init__(self, db: Database, policy: ThrottlePolicy) -> None:
        self.db = db
        self.policy = policy
        self._next_prune = 0.0

    async def _run(self, work: Callable[[Connection], T]) -> T:
        def in_transaction() -> T:
            with self.db.engine.begin() as connection:
                return work(connection)

        return await self.db.in_thread(in_transaction)

    def _insert_missing(self, connection: Connection, keys: Sequence[str]) -> None:
        rows = [{"key": key, "failures": 0, "in_flight": 0, "blocked_until": 0.0, "updated_at": 0.0} for key in keys]
        dialect = connection.dialect.name
        if dialect == "sqlite":
            connection.execute(sqlite_insert(LoginThrottle).on_conflict_do_nothing(index_elements=["key"]), rows)
        elif dialect == "postgresql":
            connection.execute(postgresql_insert(LoginThrottle).on_conflict_do_nothing(index_elements=["key"]), rows)
        else:  # another database: one savepoint per row
            for row in rows:
                try:
                    with connection.begin_nested():
                        connection.execute(insert(LoginThrottle), row)
                except IntegrityError:
                    pass

    def _locked(self, connection: Connection, keys: Sequence[ThrottleKey], now: float) -> dict[str, Count]:
        texts = sorted({key.text for key in keys})
        self._insert_missing(connection, texts)
        rows = connection.execute(
            select(LoginThrottle.key, LoginThrottle.failures, LoginThrottle.in_flight, LoginThrottle.blocked_until,
                   LoginThrottle.updated_at)
            .where(LoginThrottle.key.in_(texts)).order_by(LoginThrottle.key).with_for_update()
        ).all()
        return {row.key: current(_row_count(row), self.policy, now) for row in rows}

    @staticmethod
    def _write(connection: Connection, key: str, count: Count) -> None:
        if count.is_empty:
            connection.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
            return
        connection.execute(update(LoginThrottle).where(LoginThrottle.key == key).values(
            failures=count.failures, in_flight=count.in_flight, blocked_until=count.blocked_until,
            updated_at=count.updated_at,
        ))

    def _prune(self, connection: Connection, now: float) -> None:
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_INTERVAL
        horizon = now - max(self.policy.forget_after, self.policy.in_flight_ttl)
        connection.execute(delete(LoginThrottle).where(
            LoginThrottle.updated_at < horizon, LoginThrottle.blocked_until < horizon
        ))

    async def reserve(self, keys: Sequence[ThrottleKey], now: float) -> float | None:
        def work(connection: Connection) -> float | None:
            self._prune(connection, now)
            counts = self._locked(connection, keys, now)
            waits = [wait for key in keys
                     if (wait := refusal(counts[key.text], key.limit, self.policy, now)) is not None]
            if waits:
                for key in keys:  # rows inserted just now, or forgotten, go again
                    self._write(connection, key.text, counts[key.text])
                return max(waits)
            for key in keys:
                self._write(connection, key.text, reserved(counts[key.text], now))
            return None

        return await self._run(work)

    async def fail(self, keys: Sequence[ThrottleKey], now: float) -> None:
        def work(connection: Connection) -> None:
            counts = self._locked(connection, keys, now)
            for key in keys:
                self._write(connection, key.text, failed(counts[key.text], key.limit, self.policy, now))

        await self._run(work)

    async def succeed(self, release: Sequence[ThrottleKey], clear: Sequence[ThrottleKey], now: float) -> None:
        def work(connection: Connection) -> None:
            counts = self._locked(connection, release, now) if release else {}
            for key in release:
                self._write(connection, key.text, released(counts[key.text], now))
            for key in clear:
                connection.execute(delete(LoginThrottle).where(LoginThrottle.key == key.text))

        await self._run(work)

    async def clear_user(self, name: str) -> int:
        prefix = user_prefix(name)  # hex and '@' only: nothing LIKE would read as a wildcard

        def work(connection: Connection) -> int:
            result = connection.execute(delete(LoginThrottle).where(LoginThrottle.key.startswith(prefix)))
            return int(result.rowcount)

        return await self._run(work)

    async def clear_address(self, address: str) -> int:
        keys = LoginThrottle.key
        at_address = or_(keys == ThrottleKey(address, None, 0).text,
                         and_(keys.startswith("user:"), keys.endswith(f"@{address}", autoescape=True)))

        def work(connection: Connection) -> int:
            return int(connection.execute(delete(LoginThrottle).where(at_address)).rowcount)

        return await self._run(work)

    async def check(self) -> None:
        return None  # the database is checked at start-up, by its migration

    async def close(self) -> None:
        return None  # the database belongs to its owner


# -- Redis -----------------------------------------------------------------------------------------------

# KEYS: the throttle keys. ARGV: operation, now, block_seconds, block_max_seconds, forget_after,
# in_flight_ttl, in_flight_wait, then one value per key: its limit (reserve, fail) or 'clear'/'release' (succeed).
# The rules of limen.auth.throttle, line for line; numbers are stored and returned as text, since Redis
# turns a Lua number into an integer.
_THROTTLE_SCRIPT = """
local op, now = ARGV[1], tonumber(ARGV[2])
local block, block_max = tonumber(ARGV[3]), tonumber(ARGV[4])
local forget, ttl, in_flight_wait = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

local function load(key)
  local v = redis.call('HMGET', key, 'f', 'i', 'b', 'u')
  local c = {f = tonumber(v[1]) or 0, i = tonumber(v[2]) or 0, b = tonumber(v[3]) or 0, u = tonumber(v[4]) or 0}
  if c.i > 0 and now - c.u >= ttl then c.i = 0 end
  if c.i == 0 and now - math.max(c.u, c.b) >= forget then c = {f = 0, i = 0, b = 0, u = 0} end
  return c
end

local function block_for(failures, limit)
  return math.min(block_max, block * 2 ^ math.min(failures - limit, 64))
end

local function save(key, c)
  if c.f == 0 and c.i == 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'f', c.f, 'i', c.i, 'b', string.format('%.6f', c.b), 'u', string.format('%.6f', c.u))
  local keep = math.max(c.u, c.b) + math.max(forget, ttl) - now
  redis.call('PEXPIRE', key, math.max(1000, math.ceil(keep * 1000)))
end

local counts = {}
for n = 1, #KEYS do counts[n] = load(KEYS[n]) end

if op == 'reserve' then
  local worst = nil
  for n = 1, #KEYS do
    local c, limit = counts[n], tonumber(ARGV[7 + n])
    local wait = nil
    if now < c.b then
      wait = c.b - now
    elseif c.i >= math.max(1, limit - c.f) then
      wait = in_flight_wait
    end
    if wait and (worst == nil or wait > worst) then worst = wait end
  end
  if worst then return string.format('%.6f', worst) end
  for n = 1, #KEYS do
    counts[n].i = counts[n].i + 1
    counts[n].u = now
    save(KEYS[n], counts[n])
  end
elseif op == 'fail' then
  for n = 1, #KEYS do
    local c, limit = counts[n], tonumber(ARGV[7 + n])
    c.f = c.f + 1
    c.i = math.max(0, c.i - 1)
    if c.f >= limit then c.b = math.max(c.b, now + block_for(c.f, limit)) end
    c.u = now
    save(KEYS[n], c)
  end
elseif op == 'succeed' then
  for n = 1, #KEYS do
    if ARGV[7 + n] == 'clear' then
      redis.call('DEL', KEYS[n])
    else
      counts[n].i = math.max(0, counts[n].i - 1)
      counts[n].u = now
      save(KEYS[n], counts[n])
    end
  end
end
return false
"""

_GLOB_SPECIAL = str.maketrans({char: f"\\{char}" for char in "\\*?[]^-{}"})


class RedisThrottleStore(RedisStore):
    what = "sign-in throttle"

    def __init__(self, url: str, policy: ThrottlePolicy, *, namespace: str = "limen") -> None:
        super().__init__(url)
        self.policy = policy
        self.namespace = namespace
        self._script = self._redis.register_script(_THROTTLE_SCRIPT)

    def redis_key(self, key: ThrottleKey) -> str:
        # The address is the {hash tag}: the keys of one attempt share it, and so one Cluster slot.
        what = f"user:{key.user}" if key.user else "address"
        return f"{self.namespace}:throttle:{{{key.address}}}:{what}"

    async def _call(self, operation: str, keys: Sequence[ThrottleKey], values: Sequence[str | int],
                    now: float) -> Any:
        policy = self.policy
        args = [operation, repr(now), repr(policy.block_seconds), repr(policy.block_max_seconds),
                repr(policy.forget_after), repr(policy.in_flight_ttl), repr(policy.in_flight_wait), *values]
        async with self._errors(operation):
            return await self._script(keys=[self.redis_key(key) for key in keys], args=args)

    async def reserve(self, keys: Sequence[ThrottleKey], now: float) -> float | None:
        raw = await self._call("reserve", keys, [key.limit for key in keys], now)
        return None if raw is None else float(raw)

    async def fail(self, keys: Sequence[ThrottleKey], now: float) -> None:
        await self._call("fail", keys, [key.limit for key in keys], now)

    async def succeed(self, release: Sequence[ThrottleKey], clear: Sequence[ThrottleKey], now: float) -> None:
        await self._call("succeed", [*release, *clear], ["release"] * len(release) + ["clear"] * len(clear), now)

    async def clear_user(self, name: str) -> int:
        return await self._delete_matching(f"{{*}}:user:{user_hash(name)}")

    async def clear_address(self, address: str) -> int:
        # The address is each key's hash tag: its keys share a prefix.
        return await self._delete_matching(f"{{{address.translate(_GLOB_SPECIAL)}}}:*")

    async def _delete_matching(self, pattern: str) -> int:
        """Deletes the throttle keys that ``pattern`` (a SCAN glob after the namespace's ``:throttle:``) matches.
        Rare (an administrator's unlock), so a SCAN over the keyspace is fine."""
        match = f"{self.namespace.translate(_GLOB_SPECIAL)}:throttle:{pattern}"
        cleared = 0
        async with self._errors("unlock"):
            async for key in self._redis.scan_iter(match=match, count=1000):
                cleared += int(await self._redis.delete(key))
        return cleared

def make_throttle_store(redis_url: str | None, db: Database, policy: ThrottlePolicy) -> ThrottleStore:
    if redis_url:
        return RedisThrottleStore(redis_url, policy)
    return DatabaseThrottleStore(db, policy)
