"""Pages, the screenshot endpoint, the error-code table for scripts, and the static files.

Pages and static files need no sign-in (they hold no data); the API they call does, and the scripts
send the browser to ``/login`` when it answers 401. The screenshot needs a user who may see the VM.

Pages are Jinja2 templates on one base layout (``templates/base.html``: head, navigation, language
menu), rendered in the request's language (:func:`page_language`) with that language's catalogue embedded
for their scripts; they hold no data. Their scripts read the VM id from the address and talk to the REST
API and the console WebSocket. noVNC and uPlot (the resource graphs) are the copies bundled in limen's
package (:mod:`limen.web.npm_assets`), served from limen itself so the UI works offline.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from limen.api.console_stages import console_stage_table
from limen.api.deps import AccessibleVm
from limen.api.error_responses import http_error
from limen.api.router_inclusion import include_routes
from limen.api.services import services_of
from limen.auth.browser_sessions import COOKIE_NAME
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.hosts import DEFAULT_HOST
from limen.i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    catalogue_json,
    language_of,
    negotiate,
    script_json,
    translate,
)
from limen.settings import Settings
from limen.web.api_docs import install_api_docs
from limen.web.immutable_assets import ImmutableStaticFiles, content_digest
from limen.web.module_graph import module_graph
from limen.web.npm_assets import bundled

log = logging.getLogger("limen.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
NOVNC_URL = "/static/novnc"
# noVNC's entry module, and the one file `make web` joins it into with all it imports (web/assets.toml's
# module_to): a console then loads one module instead of 52, four levels deep.
NOVNC_ENTRY = "core/rfb.js"
NOVNC_JOINED = "limen-rfb.js"
UPLOT_URL = "/static/uplot"
# xterm.js (the console page's Serial tab) and its fit add-on: the bundled copy of the @xterm scope.
XTERM_URL = "/static/xterm"
SCREENSHOT_TTL = 3.0
_NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter()


# The main navigation of every page but the console and sign-in: (address, catalogue key).
NAV_LINKS: tuple[tuple[str, str], ...] = (
    ("/", "nav.vms"), ("/vms/new", "nav.new_vm"), ("/isos", "nav.isos"), ("/volumes", "nav.volumes"),
    ("/audit", "nav.audit"), ("/users", "nav.users"), ("/tokens", "nav.tokens"),
)
templates = Environment(
    loader=FileSystemLoader(TEMPLATE_DIR), autoescape=select_autoescape(default=True), undefined=StrictUndefined,
    trim_blocks=False, lstrip_blocks=False,
)
templates.globals["own_host"] = DEFAULT_HOST  # the host list's name for limen's own machine


def page_language(request: Request) -> str:
    """The language cookie (the menu, or the signed-in user's choice), else the browser's Accept-Language."""
    return language_of(request.cookies.get(LANGUAGE_COOKIE)) or negotiate(request.headers.get("accept-language"))


def _sign_in_first(request: Request) -> RedirectResponse | None:
    """For a browser that holds no sign-in at all (no session cookie, no token): straight to the sign-in page
    and back, instead of a page whose every request answers 401 before its script sends it there. A cookie
    that is no longer valid is the page's to find (asking the database here would cost every page)."""
    if COOKIE_NAME in request.cookies or "authorization" in request.headers:
        return None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303, headers=_NO_CACHE)


def _page(request: Request, name: str, *, scripts: tuple[str, ...], nav: str | None = None,
          prefetches: tuple[str, ...] = (), module_preloads: tuple[str, ...] = (),
          novnc_module_url: str | None = None, console_tables: str | None = None,
          status_code: int = 200) -> HTMLResponse:
    """Renders ``templates/<name>`` in the request's language. ``nav`` is the navigation entry of this page
    (None: no navigation, as on the sign-in page); ``prefetches`` are addresses of the modules of a page its
    user is likely to open next, fetched while the browser is idle (``<link rel="prefetch">``);
    ``module_preloads`` the modules this page's scripts import, asked for at once instead of one level of
    imports after another (``<link rel="modulepreload">``);
    ``novnc_module_url`` tells the page's scripts which module is noVNC (``<meta name="limen-novnc-module">``);
    ``console_tables`` is :func:`console_tables_json`'s, for the console page."""
    lang = page_language(request)

    def t(key: str, **params: object) -> str:
        return translate(lang, key, **params)

    html = templates.get_template(name).render(
        lang=lang, t=t, languages=LANGUAGES, catalogue_json=catalogue_json(lang), scripts=scripts,
        nav=nav, nav_links=NAV_LINKS, prefetches=prefetches, module_preloads=module_preloads,
        novnc_module_url=novnc_module_url, console_tables=console_tables,
    )
    headers = {**_NO_CACHE, "Content-Language": lang, "Vary": "Cookie, Accept-Language"}
    return HTMLResponse(html, status_code=status_code, headers=headers)


@router.get("/", include_in_schema=False)
async def vm_list_page(request: Request) -> Response:
    return _sign_in_first(request) or _page(request, "index.html", scripts=("vm-list.js",), nav="/")


@router.get("/login", include_in_schema=False)
async def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html", scripts=("login.js",))


@router.get("/audit", include_in_schema=False)
async def audit_page(request: Request) -> Response:
    return _sign_in_first(request) or _page(request, "audit.html", scripts=("audit.js",), nav="/audit")


@router.get("/isos", include_in_schema=False)
async def iso_library_page(request: Request) -> Response:
    return _sign_in_first(request) or _page(request, "isos.html", scripts=("isos.js",), nav="/isos")


@router.get("/volumes", include_in_schema=False)
async def volumes_page(request: Request) -> Response:
    """Administrators find the disk volumes no VM uses here; to others the page says it is not theirs."""
    return _sign_in_first(request) or _page(request, "volumes.html", scripts=("volumes.js",), nav="/volumes")


@router.get("/users", include_in_schema=False)
async def users_page(request: Request) -> Response:
    """Administrators manage users here; to others the page says it is not theirs (the API answers 403)."""
    return _sign_in_first(request) or _page(request, "users.html", scripts=("users.js",), nav="/users")


@router.get("/tokens", include_in_schema=False)
async def tokens_page(request: Request) -> Response:
    return _sign_in_first(request) or _page(request, "tokens.html", scripts=("tokens.js",), nav="/tokens")


@router.get("/vms/new", include_in_schema=False)
async def create_vm_page(request: Request) -> Response:
    return _sign_in_first(request) or _page(request, "new.html", scripts=("vm-create.js",), nav="/vms/new")


@router.get("/vms/{vm_id}", include_in_schema=False)
async def vm_details_page(vm_id: str, request: Request) -> Response:
    """The VM's details and actions. Opening it never starts the VM (only its Start buttons do)."""
    return _sign_in_first(request) or _page(request, "vm.html", scripts=("vm-details.js", "vm-graphs.js"), nav="",
                 prefetches=console_modules(novnc_dir(services_of(request).settings)))


@router.get("/vms/{vm_id}/console", include_in_schema=False)
async def console_page(vm_id: str, request: Request) -> Response:
    """The console. noVNC is at an address naming its content (:func:`novnc_address`), cached for good; the
    details page has had the browser fetch the modules ahead (:func:`console_modules`), and this page
    preloads them all."""
    signing_in = _sign_in_first(request)
    if signing_in is not None:
        return signing_in
    settings = services_of(request).settings
    novnc = novnc_dir(settings)
    novnc_url = f"{novnc_address(novnc)}/{novnc_module(novnc)}"
    # noVNC preloaded too: fetched (and parsed) beside the page's own modules, it is evaluated only when
    # console-page.js imports it after making its socket; on a cold cache over a slow link that saves its
    # download from the critical path (bench/RESULTS.md, rounds 9 and 10).
    return _page(request, "console.html", scripts=("console-page.js",),
                 module_preloads=(*console_page_imports(), novnc_url), novnc_module_url=novnc_url,
                 console_tables=console_tables_json(settings))


def console_page_imports() -> tuple[str, ...]:
    """The console page's own modules but its entry (js/console-page.js's static imports), as addresses."""
    return tuple(f"/static/js/{name}" for name in module_graph(STATIC_DIR / "js", "console-page.js")[1:])


def console_modules(novnc: Path) -> tuple[str, ...]:
    """The console page's own modules (js/console-page.js's static imports) and noVNC's (core/rfb.js's: one
    joined file, or 52 without it), as addresses."""
    own = console_page_imports()
    return own + tuple(f"{novnc_address(novnc)}/{name}" for name in module_graph(novnc, novnc_module(novnc)))


def novnc_module(novnc: Path) -> str:
    """The module a console imports noVNC from, relative to ``novnc``: the joined file where `make web` made
    it, else noVNC's own entry (a ``novnc_dir`` of the administrator's, as a distribution ships it)."""
    return NOVNC_JOINED if (novnc / NOVNC_JOINED).is_file() else NOVNC_ENTRY


def novnc_address(novnc: Path) -> str:
    """Where pages load noVNC from: an address naming its content (:mod:`limen.web.immutable_assets`)."""
    return f"{NOVNC_URL}-{content_digest(novnc)}" if (novnc / "core" / "rfb.js").is_file() else NOVNC_URL


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
    png = await services_of(request).screenshots.get(vm.uuid, max_width)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/api/error-codes", tags=["errors"])
async def error_codes() -> dict[str, dict[str, Any]]:
    """Every stable error code with its title, user message, HTTP status and WebSocket close code."""
    return error_code_table()


def error_code_table() -> dict[str, dict[str, Any]]:
    """What ``GET /api/error-codes`` answers, and what the console page carries in itself."""
    return {
        code.name: {
            "title": code.title,
            "message": code.user_message,
            "http_status": code.http_status,
            "close_code": code.close_code,
        }
        for code in ErrorCode
    }


@lru_cache(maxsize=4)  # a server has one settings object; tests make many
def console_tables_json(settings: Settings) -> str:
    """The error codes and the console stage table as the console page carries them (``<script
    id="limen-console-tables" type="application/json">``): its socket waits for neither ``GET``. Made once
    per settings (~0.4 ms), which do not change while they serve."""
    return script_json({"error_codes": error_code_table(), "console_stages": console_stage_table(settings)})


def novnc_dir(settings: Settings) -> Path:
    """Where noVNC's ``core/`` and ``vendor/`` are: the ``novnc_dir`` setting, else the bundled copy."""
    return settings.novnc_dir or bundled("novnc")


def uplot_dir(settings: Settings) -> Path:
    """Where uPlot's ``uPlot.esm.js`` and ``uPlot.min.css`` are: the ``uplot_dir`` setting, else the bundled
    copy."""
    return settings.uplot_dir or bundled("uplot") / "dist"


def _opens_a_page(request: Request) -> bool:
    """A browser opening an address outside the API (its navigation accepts HTML; scripts, curl and the
    API's clients do not ask for it)."""
    return (request.method in ("GET", "HEAD") and not request.url.path.startswith("/api/")
            and "text/html" in request.headers.get("accept", ""))


async def _not_found_page_or_error(request: Request, exc: Exception) -> Response:
    """An address with no page, opened in a browser: a page in its language that says so and leads back
    (the JSON error was English text on a blank page). Anything else: the API's JSON error."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and _opens_a_page(request):
        return _page(request, "not_found.html", scripts=(), status_code=404)
    return await http_error(request, exc)


def install_web(app: FastAPI, settings: Settings) -> None:
    """Adds the UI to ``app``: pages, screenshots, error codes, noVNC, the API docs and the UI's own
    static files."""
    include_routes(app, router)
    app.add_exception_handler(StarletteHTTPException, _not_found_page_or_error)
    novnc = novnc_dir(settings)
    if (novnc / "core" / "rfb.js").is_file():
        app.mount(novnc_address(novnc), ImmutableStaticFiles(directory=novnc), name="novnc-immutable")
        app.mount(NOVNC_URL, StaticFiles(directory=novnc), name="novnc")
    else:
        log.warning(
            "noVNC not found; the console page cannot show screens until `make web` bundles it",
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
        log.warning("uPlot not found; the VM details page cannot draw graphs until `make web` bundles it",
                    extra={"event": "uplot_missing", "path": str(uplot)})
    xterm_dir = bundled("xterm")
    if (xterm_dir / "xterm" / "lib" / "xterm.mjs").is_file():
        app.mount(XTERM_URL, StaticFiles(directory=xterm_dir), name="xterm")
    else:  # the screen still works; the Serial tab says xterm.js is missing
        log.warning("xterm.js not found; the console page's Serial tab cannot draw until `make install` bundles it",
                    extra={"event": "xterm_missing", "path": str(xterm_dir)})
    install_api_docs(app, settings)  # before /static: it mounts /static/swagger-ui
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
