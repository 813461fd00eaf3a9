"""Everything access control needs, built once from the settings (an app keeps it in its services).

Call :meth:`Access.start` before serving (it migrates the database, checks the ticket store and starts
the revocation bus) and :meth:`Access.close` after.
"""

from __future__ import annotations

import logging

from argon2 import PasswordHasher
from starlette.requests import HTTPConnection

from limen.audit import AuditLog
from limen.auth import http
from limen.auth.browser_sessions import BrowserSessions
from limen.auth.passwords import Passwords
from limen.auth.principal import parse_credential
from limen.auth.principal_cache import PrincipalCache, credentials_stamp_path, touch_credentials_stamp
from limen.auth.ratelimit import LoginRateLimiter
from limen.auth.revocation import Revocation, Scope
from limen.auth.revocation_bus import RevocationBus, make_revocation_bus
from limen.auth.site import Site
from limen.auth.throttle import ThrottlePolicy
from limen.auth.throttle_store import make_throttle_store
from limen.auth.tickets import TicketStore, make_ticket_store
from limen.auth.tokens import Tokens
from limen.auth.users import Users
from limen.clock import Clock, system_clock
from limen.db import Database
from limen.instances import InstanceRegistry
from limen.settings import Settings

log = logging.getLogger("limen.auth")


def login_throttle_policy(settings: Settings) -> ThrottlePolicy:
    return ThrottlePolicy(
        block_seconds=settings.login_block_seconds,
        block_max_seconds=max(settings.login_block_seconds, settings.login_block_max_seconds),
        forget_after=settings.login_failure_window,
        in_flight_ttl=settings.login_attempt_timeout,
    )


class Access:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        tickets: TicketStore | None = None,
        hasher: PasswordHasher | None = None,
        revocations: RevocationBus | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.db = Database(settings.db_url, timeout=settings.database_timeout)
        self.passwords = Passwords(hasher) if hasher is not None else Passwords.of(settings)
        # Principals behind tokens, cookies and ticket holders, remembered between requests; every change of
        # rights empties it (limen.auth.principal_cache).
        self.principals = PrincipalCache(credentials_stamp_path(settings.data_dir))
        self.users = Users(self.db, self.passwords, clock, self.principals)
        self.tokens = Tokens(self.db, clock, self.principals)
        self.sessions = BrowserSessions(self.db, clock, settings.session_ttl, self.principals)
        self.login_limiter = LoginRateLimiter(
            make_throttle_store(settings.redis_url, self.db, login_throttle_policy(settings)),
            max_per_user=settings.login_max_failures_per_user,
            max_per_address=settings.login_max_failures_per_address,
            clock=clock,
        )
        self.tickets = tickets or make_ticket_store(settings.redis_url, settings.console_ticket_ttl, clock)
        # This process among the instances on the database; limen.recovery registers it when serving.
        self.instances = InstanceRegistry(self.db, clock, settings.instance_heartbeat)
        self.audit = AuditLog(self.db, clock, instance_id=self.instances.id)
        # Changes that take away a console's right are published here; each instance's console registry
        # subscribes (limen.console.registry). Across instances through Redis when LIMEN_REDIS_URL is set.
        self.revocations: RevocationBus = revocations or make_revocation_bus(settings.redis_url)
        self.revocations.subscribe(self._forget_principals)
        self.trusted_proxies = http.parse_networks(settings.trusted_proxies)
        self.site = Site.of(settings)
        self.started = False

    def _forget_principals(self, revocation: Revocation) -> None:
        """A user's rights or a credential changed, here, on another instance or on the command line, or may
        have changed unheard (Redis unreachable: every few seconds until it is back, and once then). Without
        a Redis to carry it, the change is also stamped for the other instances on this host."""
        if revocation.scope in (Scope.USER, Scope.CREDENTIAL, Scope.UNHEARD):
            self.principals.forget_all()
            if not self.settings.redis_url:
                touch_credentials_stamp(self.settings.data_dir)

    async def credential_in_force(self, credential: str) -> bool:
        """Whether the credential named ``credential`` (:func:`~limen.auth.principal.token_credential`,
        :func:`~limen.auth.principal.browser_credential`) still signs in, read from the database now."""
        kind, rest = parse_credential(credential)
        if kind == "token" and rest.isascii() and rest.isdigit():
            return await self.tokens.in_force(int(rest))
        if kind == "session":
            return await self.sessions.in_force(rest)
        return False

    async def start(self) -> None:
        """Migrates the database and checks the ticket store; a no-op once done."""
        if self.started:
            return
        await self.db.migrate_async()
        await self.tickets.check()
        await self.login_limiter.check()
        await self.revocations.start()
        self.started = True
        log.info("access control ready", extra={
            "event": "access_ready", "database": self.db.redacted_url,
            "ticket_store": "redis" if self.settings.redis_url else "memory",
            "login_throttle_store": "redis" if self.settings.redis_url else "database",
            "own_origins": sorted(self.site.origins), "host_check": self.site.hosts is not None,
        })
        if self.site.hosts is not None and not self.site.loopback_listen and self.settings.public_url is None:
            log.warning("limen listens beyond loopback without LIMEN_PUBLIC_URL: it answers only to the listen "
                        "address's names; set LIMEN_PUBLIC_URL to the address users open", extra={
                            "event": "public_url_missing", "hosts": sorted(self.site.hosts)})

    async def close(self) -> None:
        await self.revocations.close()
        await self.tickets.close()
        await self.login_limiter.close()
        self.db.close()
        self.started = False

    # -- facts about a request ---------------------------------------------------------------------

    def client_address(self, conn: HTTPConnection) -> str:
        peer = conn.client.host if conn.client else None
        return http.client_address(peer, conn.headers.get("x-forwarded-for"), self.trusted_proxies)

    def is_local_client(self, conn: HTTPConnection) -> bool:
        peer = conn.client.host if conn.client else None
        return http.is_local_client(peer, conn.headers.get("x-forwarded-for"), conn.headers.get("forwarded"),
                                    self.trusted_proxies)

    def is_https(self, conn: HTTPConnection) -> bool:
        peer = conn.client.host if conn.client else None
        return http.is_https(conn.url.scheme, peer, conn.headers.get("x-forwarded-proto"), self.trusted_proxies)

    def check_host(self, conn: HTTPConnection) -> None:
        """HOST_NOT_ALLOWED unless the request's Host names this server; see :class:`Site`."""
        self.site.check_host_headers(conn.headers.getlist("host"))

    def check_origin(self, conn: HTTPConnection) -> None:
        """ORIGIN_NOT_ALLOWED unless the request's Origin (if any) is allowed; see :func:`http.check_origin`."""
        http.check_origin(conn.headers.get("origin"), own=self.site.origins, allowed=self.settings.allowed_origins)

    def cookie_secure(self, conn: HTTPConnection) -> bool:
        mode = self.settings.cookie_secure
        return mode == "always" or (mode == "auto" and self.is_https(conn))
