"""The ASGI application: routes, error handlers, access control, and the lifespan that opens and closes
libvirt and the access database.

Every route needs a signed-in user except ``/healthz``, ``/readyz``, ``/metrics`` (its own token rule),
``/api/login``, ``/api/error-codes``, the pages and the static files (the pages ask the API, which
answers 401, and the scripts then go to ``/login``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from limen.api import events, health, isos, vms
from limen.api.access import install_access
from limen.api.errors import install_error_handlers
from limen.api.middleware import RequestContextMiddleware
from limen.auth.access import Access
from limen.console.endpoint import ConsoleRoute
from limen.console.endpoint import router as console_router
from limen.console.sessions import ConsoleSessions
from limen.hypervisor import Hypervisor
from limen.metrics import Metrics
from limen.settings import Settings
from limen.web import install_web


def create_app(
    settings: Settings, hypervisor: Hypervisor | None = None, access: Access | None = None
) -> FastAPI:
    """Builds the app. ``hypervisor`` defaults to one over ``settings.libvirt_uri``, opened at start-up;
    ``access`` (users, tokens, tickets, audit) to one over ``settings.db_url``, migrated at start-up."""
    hv = hypervisor or Hypervisor(settings)
    guard = access or Access(settings)
    metrics = Metrics()
    hv.connection.observers.append(metrics.observe_libvirt_call)
    metrics.event_streams_active.set_function(lambda: hv.feed.subscriber_count)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await guard.start()  # a database that cannot be migrated stops limen here, before it serves
        try:
            await hv.open()
            try:
                yield
            finally:
                await hv.close()
        finally:
            await guard.close()

    app = FastAPI(
        title="limen",
        summary="A VM manager over libvirt whose browser console never hangs",
        version="0.1.0",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.hypervisor = hv
    app.state.metrics = metrics
    app.state.console_sessions = ConsoleSessions()
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.add_middleware(ConsoleRoute)  # outermost of ours: the console's WebSocket skips the router
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(vms.router)
    app.include_router(isos.router)
    app.include_router(events.router)
    app.include_router(console_router)
    install_access(app, guard)
    install_web(app, settings)  # last: it mounts /static
    return app
