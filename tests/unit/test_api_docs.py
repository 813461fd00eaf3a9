"""/api/docs in-process: Swagger UI's page with only local URLs, its files served by limen, and a JSON
error naming the fix when they are not installed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx

from limen.api.app import create_app
from limen.settings import Settings
from limen.web.npm_assets import bundled
from tests.unit.test_web_routes import client_for
from tests.unit.test_web_routes import reading_client as reading_client  # one app for the pages only read


async def test_the_docs_page_loads_swagger_ui_from_limen_itself(reading_client: httpx.AsyncClient) -> None:
    client = reading_client
    page = await client.get("/api/docs")
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert '"validatorUrl": null' in page.text  # no call to validator.swagger.io
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
