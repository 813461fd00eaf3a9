"""The app keeps what it was built with in one typed, frozen object, and nothing else in ``app.state``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import httpx
import pytest
from fastapi import Request

from limen.api.app import create_app
from limen.api.deps import ServicesDep
from limen.api.services import Services, services_of
from limen.settings import Settings


def test_create_app_keeps_one_services_object_and_nothing_else(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    app = create_app(settings)
    services = services_of(app)
    assert isinstance(services, Services) and services.settings is settings
    assert set(app.state._state) == {"services"}
    assert all(getattr(services, field.name) is not None for field in dataclasses.fields(Services))
    with pytest.raises(dataclasses.FrozenInstanceError):
        services.settings = make_settings()  # type: ignore[misc]


async def test_routes_and_requests_reach_the_same_services(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings())
    seen: list[Services] = []

    @app.get("/test/services")
    async def probe(request: Request, services: ServicesDep) -> dict[str, bool]:
        seen.extend([services, services_of(request)])
        return {}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://limen.test") as client:
        assert (await client.get("/test/services")).status_code == 200
    assert seen == [services_of(app), services_of(app)]
