"""Pages, the screenshot endpoint, the error-code table for scripts, and the static files.

Pages and static files need no sign-in (they hold no data); the API they call does, and the scripts
send the browser to ``/login`` when it answers 401. The screenshot needs a user who may see the VM.

Pages are static HTML; their scripts read the VM id from the address and talk to the REST API and
the console WebSocket. noVNC comes from ``web/node_modules/@novnc/novnc`` and uPlot (the resource graphs)
from ``web/node_modules/uplot/dist`` (``npm ci`` in ``web/``, run by ``make install``), served from limen
itself so the UI works offline.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from limen.auth.deps import AccessibleVm
from limen.errors import ErrorCode, LimenError
from limen.settings import Settings
from limen.web.api_docs import install_api_docs
from limen.web.screenshots import ScreenshotCache

log = logging.getLogger("limen.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
# src/limen/web/routes.py -> the repository root, where `make install` runs `npm ci` in web/.
REPO_NOVNC_DIR = Path(__file__).resolve().parents[3] / "web" / "node_modules" / "@novnc" / "novnc"
NOVNC_URL = "/static/novnc"
REPO_UPLOT_DIR = Path(__file__).resolve().parents[3] / "web" / "node_modules" / "uplot" / "dist"
UPLOT_URL = "/static/uplot"
# xterm.js (the console page's Serial tab) and its fit add-on, from web/node_modules/@xterm (npm ci).
REPO_XTERM_DIR = Path(__file__).resolve().parents[3] / "web" / "node_modules" / "@xterm"
XTERM_URL = "/static/xterm"
SCREENSHOT_TTL = 3.0
_NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter()


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html", headers=_NO_CACHE)


@router.get("/", include_in_schema=False)
async def vm_list_page() -> FileResponse:
    return _page("index.html")


@router.get("/login", include_in_schema=False)
async def login_page() -> FileResponse:
    return _page("login.html")


@router.get("/audit", include_in_schema=False)
async def audit_page() -> FileResponse:
    return _page("audit.html")


@router.get("/isos", include_in_schema=False)
async def iso_library_page() -> FileResponse:
    return _page("isos.html")


@router.get("/users", include_in_schema=False)
async def users_page() -> FileResponse:
    """Administrators manage users here; to others the page says it is not theirs (the API answers 403)."""
    return _page("users.html")


@router.get("/tokens", include_in_schema=False)
async def tokens_page() -> FileResponse:
    return _page("tokens.html")


@router.get("/vms/new", include_in_schema=False)
async def create_vm_page() -> FileResponse:
    return _page("new.html")


@router.get("/vms/{vm_id}", include_in_schema=False)
async def vm_details_page(vm_id: str) -> FileResponse:
    """The VM's details and actions. Opening it never starts the VM (only its Start buttons do)."""
    return _page("vm.html")


@router.get("/vms/{vm_id}/console", include_in_schema=False)
async def console_page(vm_id: str) -> FileResponse:
    return _page("console.html")


@router.get("/console/{vm_id}", include_in_schema=False)
async def old_console_address(vm_id: str, request: Request) -> RedirectResponse:
    """The console's address before it moved under the VM's details; bookmarks keep working."""
    target = f"/vms/{quote(vm_id, safe='')}/console"
    if request.url.query:
        target += f"?{request.url.query}"
    return RedirectResponse(target, status_code=308)


@router.get(
    "/api/vms/{vm_id}/screenshot",
    tags=["vms"],
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The VM's screen as PNG"}},
)
async def vm_screenshot(
    vm: AccessibleVm,
    request: Request,
    max_width: int | None = Query(None, ge=16, le=8192, description="Shrink wider screens to at most this"),
) -> Response:
    """The VM's screen as PNG, at most a few seconds old. 409 VM_NOT_RUNNING when the VM is not running."""
    cache: ScreenshotCache = request.app.state.screenshots
    png = await cache.get(vm.uuid, max_width)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/api/error-codes", tags=["errors"])
async def error_codes() -> dict[str, dict[str, Any]]:
    """Every stable error code with its title, user message, HTTP status and WebSocket close code."""
    return {
        code.name: {
            "title": code.title,
            "message": code.user_message,
            "http_status": code.http_status,
            "close_code": code.close_code,
        }
        for code in ErrorCode
    }


def novnc_dir(settings: Settings) -> Path:
    """Where noVNC's ``core/`` and ``vendor/`` are: the ``novnc_dir`` setting, else the repository's."""
    return settings.novnc_dir or REPO_NOVNC_DIR


def uplot_dir(settings: Settings) -> Path:
    """Where uPlot's ``uPlot.esm.js`` and ``uPlot.min.css`` are: the ``uplot_dir`` setting, else the repository's."""
    return settings.uplot_dir or REPO_UPLOT_DIR


def install_web(app: FastAPI, settings: Settings) -> None:
    """Adds the UI to ``app``: pages, screenshots, error codes, noVNC, the API docs and the UI's own
    static files."""
    hypervisor = app.state.hypervisor
    app.state.screenshots = ScreenshotCache(hypervisor.screenshot, ttl=SCREENSHOT_TTL)
    app.include_router(router)
    novnc = novnc_dir(settings)
    if (novnc / "core" / "rfb.js").is_file():
        app.mount(NOVNC_URL, StaticFiles(directory=novnc), name="novnc")
    else:
        log.warning(
            "noVNC not found; the console page cannot show screens until `make install` runs npm ci",
            extra={"event": "novnc_missing", "path": str(novnc)},
        )
        missing = LimenError(ErrorCode.INTERNAL_ERROR, f"noVNC is not installed at {novnc}; run `make install`")

        async def novnc_missing(path: str) -> JSONResponse:
            return JSONResponse(missing.to_dict(), status_code=503)

        app.add_api_route(NOVNC_URL + "/{path:path}", novnc_missing, include_in_schema=False)
    uplot = uplot_dir(settings)
    if (uplot / "uPlot.esm.js").is_file():
        app.mount(UPLOT_URL, StaticFiles(directory=uplot), name="uplot")
    else:  # the pages still work; the details page says its graphs are missing
        log.warning("uPlot not found; the VM details page cannot draw graphs until `make install` runs npm ci",
                    extra={"event": "uplot_missing", "path": str(uplot)})
    if (REPO_XTERM_DIR / "xterm" / "lib" / "xterm.mjs").is_file():
        app.mount(XTERM_URL, StaticFiles(directory=REPO_XTERM_DIR), name="xterm")
    else:  # the screen still works; the Serial tab says xterm.js is missing
        log.warning("xterm.js not found; the console page's Serial tab cannot draw until `make install` runs npm ci",
                    extra={"event": "xterm_missing", "path": str(REPO_XTERM_DIR)})
    install_api_docs(app, settings)  # before /static: it mounts /static/swagger-ui
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
