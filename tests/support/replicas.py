"""limen replicas served in the test's own process (apps through httpx's ASGI transport), for tests of what
one replica's work does on another (both on one database or one Redis, as the settings given say)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from limen.api.app import create_app
from limen.api.services import Services, services_of
from limen.settings import Settings
from tests.support.access import admin_token


@asynccontextmanager
async def replica(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """A replica serving in this process: an admin's client to it, and its services (its feed of VM events:
    ``services.hypervisor.feed``). Its lifespan ends on leaving."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        services = services_of(app)
        headers = {"Authorization": f"Bearer {await admin_token(services.access)}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://limen.test",
                                     headers=headers) as client:
            yield client, services
