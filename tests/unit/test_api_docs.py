"""/api/docs in-process: Swagger UI's page with only local URLs, its files served by limen, and a JSON
error naming the fix when they are not installed."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase

from limen.api.app import create_app
from limen.api.deps import needs_user
from limen.auth.browser_sessions import COOKIE_NAME
from limen.settings import Settings
from limen.web.npm_assets import bundled
from tests.conftest import settings_in
from tests.unit.test_web_routes import client_for


@pytest.fixture(scope="module")
def docs_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """One app for the tests that only read its pages, its routes and its document: the document (~70 ms of
    CPU) is made once for them all (it was four times)."""
    return create_app(settings_in(tmp_path_factory.mktemp("api-docs")))


@pytest.fixture(scope="module")
async def docs_client(docs_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(docs_app) as client:
        yield client


async def test_the_docs_page_loads_swagger_ui_from_limen_itself(docs_client: httpx.AsyncClient) -> None:
    client = docs_client
    page = await client.get("/api/docs")
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert '"validatorUrl": null' in page.text  # no call to validator.swagger.io
    # A language for screen readers (it had none), and a way back to limen's pages (it had none either).
    assert '<html lang="en">' in page.text and '<a href="/"' in page.text
    # In the user's colour scheme from the first paint (it stayed white at night): limen's stylesheet and
    # the script that follows prefers-color-scheme, in <head>.
    head = page.text.split("</head>", 1)[0]
    assert '"/static/css/api-docs.css"' in head and '<script src="/static/js/api-docs-scheme.js">' in head
    for url in urls:
        assert (await client.get(url)).status_code == 200, url
    # The package's example page (it loads petstore.swagger.io) is not served.
    example = await client.get("/static/swagger-ui/index.html")
    assert (example.status_code, example.json()["code"]) == (404, "NOT_FOUND")
    assert (bundled("swagger-ui") / "swagger-ui-bundle.js").is_file(), "Swagger UI is missing: `make web` bundles it"


async def test_missing_swagger_ui_is_a_json_error_naming_the_fix(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with client_for(create_app(make_settings(swagger_ui_dir=tmp_path / "nowhere"))) as client:
        response = await client.get("/api/docs")
        assert (await client.get("/api/openapi.json")).status_code == 200
    assert response.status_code == 503
    assert response.json()["code"] == "INTERNAL_ERROR"
    assert "make install" in response.json()["details"]


async def test_the_document_says_how_to_sign_in_to_each_route_that_needs_a_user(
        docs_app: FastAPI, docs_client: httpx.AsyncClient) -> None:
    app = docs_app
    document = (await docs_client.get("/api/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert (schemes["HTTPBearer"]["type"], schemes["HTTPBearer"]["scheme"]) == ("http", "bearer")
    assert "limen token create" in schemes["HTTPBearer"]["description"]
    assert (schemes["APIKeyCookie"]["type"], schemes["APIKeyCookie"]["in"]) == ("apiKey", "cookie")
    assert schemes["APIKeyCookie"]["name"] == COOKIE_NAME
    either = [{"HTTPBearer": []}, {"APIKeyCookie": []}]
    public = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in route.methods:
                operation = document["paths"][route.path_format][method.lower()]
                assert operation.get("security") == (either if needs_user(route.dependant) else None), route.path
                if not needs_user(route.dependant):
                    public.add(f"{method} {route.path_format}")
    assert document["paths"]["/api/vms/{vm_id}/console-ticket"]["post"]["security"] == either
    assert {"POST /api/login", "GET /healthz", "GET /api/console-stages"} <= public


def test_no_route_runs_the_credential_schemes_on_its_requests(docs_app: FastAPI) -> None:
    """The schemes are only declared in the document (limen.api.deps.CREDENTIAL_SCHEMES): as dependencies,
    FastAPI would walk and run them on every request to read what limen's authentication reads anyway."""

    def calls(dependant: Dependant) -> list[object]:
        return [dependant.call, *(call for sub in dependant.dependencies for call in calls(sub))]

    routes = [route for route in docs_app.routes if isinstance(route, APIRoute)]
    assert routes
    for route in routes:
        assert not any(isinstance(call, SecurityBase) for call in calls(route.dependant)), route.path
    # The ticket a browser asks for before each console: FastAPI walks its whole tree on every request (a
    # branch solved already included), so the leaves read the services off the request themselves.
    ticket = next(route for route in routes if route.path == "/api/vms/{vm_id}/console-ticket")
    assert [getattr(call, "__name__", call) for call in calls(ticket.dependant)] == [
        "console_ticket", "console_vm", "current_user", "current_user"]


def test_every_json_body_refuses_fields_it_does_not_know(docs_app: FastAPI) -> None:
    """A misspelled field is a VALIDATION_ERROR, never dropped: {"drain": false} once drained a host (its
    ``draining`` defaults to true), and a misspelled ``console_address`` vanished without a word."""
    document = docs_app.openapi()
    schemas = document["components"]["schemas"]
    bodies = 0
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            schema = content["schema"]
            reference = schema.get("$ref") or next(
                (option["$ref"] for option in schema.get("anyOf", []) if "$ref" in option), None)
            assert reference, f"{method.upper()} {path}: {schema}"
            body = schemas[reference.rsplit("/", 1)[-1]]
            assert body.get("additionalProperties") is False, f"{method.upper()} {path} takes unknown fields"
            bodies += 1
    assert bodies >= 15  # the walk found the bodies (18 today)
