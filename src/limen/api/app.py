"""The ASGI application: routes, error handlers, access control, and the lifespan that opens and closes
libvirt and the access database and runs this instance's crash recovery (:mod:`limen.recovery`).

Every route needs a signed-in user except ``/healthz``, ``/readyz``, ``/metrics`` (its own token rule),
``/api/login``, ``/api/register``, ``/api/registration``, ``/api/error-codes``, ``/api/console-stages``,
the API's description (``/api/openapi.json``, ``/api/docs``: the same for every copy of limen), the pages and
the static files (the pages ask the API, which answers 401, and the scripts then go to ``/login``)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from limen.api import (
    console_stages,
    events,
    health,
    hypervisor_hosts,
    isos,
    operations,
    quota,
    registration,
    stats,
    tickets,
    vm_disks,
    vm_media,
    vm_snapshots,
    vms,
    volumes,
)
from limen.api.access import install_access
from limen.api.authenticate_first import AuthenticateFirst
from limen.api.body_limit import BodyLimit
from limen.api.browser_security import BrowserSecurityHeaders
from limen.api.deps import document_credentials
from limen.api.error_responses import install_error_handlers
from limen.api.hosts import HostCheck
from limen.api.isos import start_iso_library
from limen.api.middleware import RequestContextMiddleware
from limen.api.router_inclusion import include_routes
from limen.api.services import Services
from limen.api.tickets import ConsoleTicketRoute
from limen.api.transport_security import StrictTransportSecurity
from limen.auth.access import Access
from limen.auth.revocation import CurrentRights
from limen.console.endpoint import ConsoleRoute
from limen.console.endpoint import router as console_router
from limen.console.registry import ConsoleSessions
from limen.console.serial_endpoint import router as serial_console_router
from limen.console.serial_session import SerialHolders
from limen.host_registry import HostSync
from limen.hypervisor import Hypervisor
from limen.hypervisor.serial_stream import LibvirtSerialPorts
from limen.isos.background import BackgroundChecksums
from limen.metrics import Metrics
from limen.quota import QuotaLedger
from limen.recovery import Recovery
from limen.settings import Settings
from limen.stats_sampler import StatsSampler
from limen.vm_event_relay import VmEventRelay
from limen.web.routes import SCREENSHOT_TTL, install_web
from limen.web.screenshots import ScreenshotCache


class LimenApp(FastAPI):
    """FastAPI with the console's WebSocket route (:class:`ConsoleRoute`) outside every middleware: each of them
    passes a WebSocket through untouched, and would be one more coroutine frame that every console keeps, and
    resumes through, for as long as it lives."""

    def build_middleware_stack(self) -> ASGIApp:
        return ConsoleRoute(super().build_middleware_stack())


def create_app(
    settings: Settings, hypervisor: Hypervisor | None = None, access: Access | None = None
) -> FastAPI:
    """Builds the app. ``hypervisor`` defaults to one over ``settings.libvirt_uri``, opened at start-up;
    ``access`` (users, tokens, tickets, audit) to one over ``settings.db_url``, migrated at start-up."""
    hv = hypervisor or Hypervisor(settings)
    guard = access or Access(settings)
    metrics = Metrics()
    iso_checksums = BackgroundChecksums()
    hv.connection.observers.append(metrics.observe_libvirt_call)
    quota_ledger = QuotaLedger(guard.db, settings, guard.clock, instance_id=guard.instances.id)
    recovery = Recovery(guard.instances, guard.audit, hv, quota=quota_ledger)
    metrics.event_streams_active.set_function(lambda: hv.feed.subscriber_count)
    sampler = StatsSampler(hv.hosts, settings.stats_interval)  # every available host's VMs
    host_sync = HostSync(guard.db, hv.hosts)
    # A migration's or a snapshot's progress reaches the browsers of every replica, not only of the one doing it.
    relay = (VmEventRelay(hv.feed, hv.operations, settings.redis_url, instance_id=guard.instances.id)
             if settings.redis_url else None)
    metrics.watch_vm_stats(sampler.history)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await guard.start()  # a database that cannot be migrated stops limen here, before it serves
        try:
            await hv.open()
            await host_sync.start()
            if relay is not None:
                await relay.start()
            try:
                await start_iso_library(settings, iso_checksums)
                await recovery.start()  # this instance's heartbeat; what lost instances held is closed
                sampler.start()
                try:
                    yield
                finally:
                    await sampler.stop()
                    await recovery.stop()
            finally:
                if relay is not None:
                    await relay.close()
                await host_sync.stop()
                await iso_checksums.close()
                await hv.close()
        finally:
            await guard.close()

    app = LimenApp(
        title="limen",
        summary="A VM manager over libvirt whose browser console never hangs",
        version="0.1.0",
        openapi_url="/api/openapi.json",
        docs_url=None,  # /api/docs is limen.web.api_docs: Swagger UI from limen's own files, not a CDN
        redoc_url=None,
        lifespan=lifespan,
        # A path with one slash too many is not found (JSON), as any other: Starlette's redirect was an empty
        # 307 to an absolute http:// address, and DELETE /api/isos/a.iso%2F would have deleted a.iso.
        redirect_slashes=False,
        # limen's own metrics (/metrics) and JSON logs are its telemetry; FastAPI's native OpenTelemetry would
        # otherwise look up the global providers on every request and every console set-up.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.openapi = functools.partial(_openapi_document, app)  # type: ignore[method-assign]
    # Remembers revocations as long as a console ticket lives: a ticket asked for by a since-revoked
    # credential must not open a console.
    console_sessions = ConsoleSessions(CurrentRights(guard.users, hv.console_vm, guard.credential_in_force),
                                       remember=settings.console_ticket_ttl + 5)
    guard.revocations.subscribe(console_sessions.revoke)  # revocations, from here or another instance
    hv.hosts.availability_listeners.append(console_sessions.host_changed)  # a host gone ends its consoles
    app.state.services = Services(
        settings=settings,
        hypervisor=hv,
        access=guard,
        metrics=metrics,
        recovery=recovery,
        quota=quota_ledger,
        stats_sampler=sampler,
        console_sessions=console_sessions,
        iso_checksums=iso_checksums,
        screenshots=ScreenshotCache(hv.screenshot, ttl=SCREENSHOT_TTL),
        serial_ports=LibvirtSerialPorts(hv.connection),
        serial_holders=SerialHolders(),
        host_sync=host_sync,
    )
    # Innermost first. A request meets (after the console's shortcut, LimenApp): its request id, the Host check,
    # the body limit, then authentication of requests with a body (before anything reads it), the console
    # ticket's shortcut, then the routes.
    app.add_middleware(ConsoleTicketRoute)
    app.add_middleware(AuthenticateFirst)
    app.add_middleware(BodyLimit, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(HostCheck, site=guard.site)  # inside the request context: its errors carry the id
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.add_middleware(StrictTransportSecurity)  # HSTS on answers over limen's own TLS (not to localhost)
    app.add_middleware(BrowserSecurityHeaders)  # CSP, no framing, no-store on the API: every HTTP answer
    install_error_handlers(app)
    include_routes(
        app,
        # First: the ticket a browser asks for right before every console. Starlette tries the routes in
        # order, a few microseconds each, and no other route's path can match this one's.
        tickets.router,
        health.router,
        vms.router,
        hypervisor_hosts.router,
        vm_media.router,
        vm_disks.router,
        vm_snapshots.router,
        operations.router,
        isos.router,
        volumes.router,
        events.router,
        stats.router,
        quota.router,
        registration.router,
        console_router,
        serial_console_router,
        console_stages.router,
    )
    install_access(app)
    install_web(app, settings)  # last: it mounts /static
    return app


def _openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document of ``app`` (made once, then kept), with the credentials its routes take."""
    document = app.openapi_schema
    if document is None:
        document = FastAPI.openapi(app)  # which keeps it as app.openapi_schema
        document_credentials(document, app.routes)
    return document
