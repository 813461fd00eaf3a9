"""``/api/docs``: Swagger UI from limen's own files, so the API's documentation works offline.

FastAPI's built-in page loads Swagger UI from a CDN (a blank page without Internet); this one is the
same page with every URL local. Swagger UI is the copy bundled in limen's package
(:mod:`limen.web.npm_assets`), or the ``swagger_ui_dir`` setting.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from limen.api.browser_security import content_security_policy
from limen.errors import ErrorCode, LimenError
from limen.settings import Settings
from limen.web.npm_assets import bundled

log = logging.getLogger("limen.web")

API_DOCS_URL = "/api/docs"
SWAGGER_UI_URL = "/static/swagger-ui"

# No call to validator.swagger.io (Swagger UI's default): nothing on the page leaves the server.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None, "deepLinking": True, "defaultModelsExpandDepth": 0}
# Only what the page uses: the package's own index.html would load the Petstore example from the Internet.
SWAGGER_UI_FILES = frozenset(
    {"swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-bundle.js.map", "swagger-ui.css.map"}
)


def swagger_ui_dir(settings: Settings) -> Path:
    """Where Swagger UI's ``swagger-ui-bundle.js`` is: the ``swagger_ui_dir`` setting, else the bundled copy."""
    return settings.swagger_ui_dir or bundled("swagger-ui")


# The way back to limen's pages, above Swagger UI (FastAPI's page has none: every page links here).
WAY_BACK = '<nav class="way-back"><a href="/">← limen</a></nav>'
# limen's own stylesheet for the page's parts that are limen's, and the script that puts the page in the
# user's colour scheme (Swagger UI's dark colours apply under <html class="dark-mode">); in <head>, after
# Swagger UI's stylesheet, so the page is drawn in its scheme from the first paint.
PAGE_HEAD = ('<link rel="stylesheet" href="/static/css/api-docs.css">\n'
             '<script src="/static/js/api-docs-scheme.js"></script>\n')


def limen_docs_page(page: str) -> str:
    """FastAPI's Swagger UI page with ``<html lang="en">`` (the API's descriptions are English; it had no
    ``lang``, which screen readers need to pick a voice), in the user's colour scheme, and with a link back
    to limen's pages."""
    return (page.replace("<html>", '<html lang="en">', 1).replace("</head>", f"{PAGE_HEAD}</head>", 1)
            .replace("<body>", f"<body>\n{WAY_BACK}", 1))


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def docs_page_policy(page: str) -> str:
    """limen's Content Security Policy, letting the page's inline scripts run by their hashes: Swagger UI
    is started by one that FastAPI writes, and the rest of limen's pages allow none."""
    hashes = [base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
              for script in _INLINE_SCRIPT.findall(page)]
    return content_security_policy(" ".join(["'self'", *(f"'sha256-{digest}'" for digest in hashes)]))


def install_api_docs(app: FastAPI, settings: Settings) -> None:
    """Serves the page at ``/api/docs`` and the Swagger UI files it uses under ``/static/swagger-ui``.

    Call before ``/static`` is mounted (a mount answers every path below it). Without Swagger UI's
    files the page answers 503 with the one error schema, naming the fix, instead of a blank page."""
    directory = swagger_ui_dir(settings)
    if not (directory / "swagger-ui-bundle.js").is_file():
        log.warning(
            "Swagger UI not found; /api/docs answers 503 until it is bundled (`make web`)",
            extra={"event": "swagger_ui_missing", "path": str(directory)},
        )
        missing = LimenError(ErrorCode.INTERNAL_ERROR,
                             f"Swagger UI is not installed at {directory}; run `make install`")

        async def api_docs_missing() -> Response:
            return JSONResponse(missing.to_dict(), status_code=503)

        app.add_api_route(API_DOCS_URL, api_docs_missing, include_in_schema=False)
        return

    async def swagger_ui_file(name: str) -> FileResponse:
        if name not in SWAGGER_UI_FILES:
            raise LimenError(ErrorCode.NOT_FOUND, f"{SWAGGER_UI_URL}/{name} is not one of Swagger UI's files")
        return FileResponse(directory / name)

    app.add_api_route(SWAGGER_UI_URL + "/{name}", swagger_ui_file, include_in_schema=False)
    openapi_url = app.openapi_url or "/api/openapi.json"

    async def api_docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{SWAGGER_UI_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI_URL}/swagger-ui.css",
            swagger_favicon_url="/static/img/limen-32.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
        html = limen_docs_page(bytes(page.body).decode())
        return HTMLResponse(html, headers={"Content-Security-Policy": docs_page_policy(html)})

    app.add_api_route(API_DOCS_URL, api_docs, include_in_schema=False, response_class=HTMLResponse)
