"""The UI's routes in-process, on libvirt's test driver: pages, static files, screenshots, error codes."""

from __future__ import annotations

import re
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import httpx
import libvirt
import pytest
from fastapi import FastAPI

from limen.api.app import create_app
from limen.api.services import services_of
from limen.errors import ErrorCode
from limen.settings import Settings
from limen.web.npm_assets import bundled
from limen.web.routes import TEMPLATE_DIR
from tests.conftest import settings_in
from tests.support.access import admin_token


def web_app(settings: Settings) -> FastAPI:
    return create_app(settings)


@asynccontextmanager
async def client_for(settings_or_app: Settings | FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    app = settings_or_app if isinstance(settings_or_app, FastAPI) else web_app(settings_or_app)
    async with app.router.lifespan_context(app):
        # The pages need no credentials; the API does.
        headers = {"Authorization": f"Bearer {await admin_token(services_of(app).access)}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://limen.test", headers=headers) as client:
            yield client


@pytest.fixture(scope="module")
async def reading_client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    """One app for the tests that only read pages, redirects, static files and the error codes (nothing of theirs
    changes the app)."""
    async with client_for(settings_in(tmp_path_factory.mktemp("web-routes"))) as client:
        yield client


@pytest.mark.parametrize(("path", "script"), [
    ("/", "vm-list.js"), ("/vms/new", "vm-create.js"), ("/isos", "isos.js"), ("/vms/test", "vm-details.js"),
    ("/vms/test/console", "console-page.js"),
])
async def test_pages_are_html(reading_client: httpx.AsyncClient, path: str, script: str) -> None:
    response = await reading_client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<!doctype html>" in response.text
    assert f"/static/js/{script}" in response.text


@pytest.mark.parametrize("path", ["/", "/vms/new", "/isos", "/audit", "/users", "/tokens", "/vms/test",
                                  "/vms/test/console?watchdog=3"])
async def test_a_browser_without_a_sign_in_goes_to_the_sign_in_page_at_once(
    reading_client: httpx.AsyncClient, path: str
) -> None:
    # The page was served, then its every request answered 401 (errors in the browser's console) before its
    # script sent it to the sign-in page.
    bearer = reading_client.headers.pop("Authorization")  # the client's own token, taken away for this test
    try:
        response = await reading_client.get(path, headers={"Cookie": "limen_lang=ko"})
    finally:
        reading_client.headers["Authorization"] = bearer
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={quote(path, safe='')}"
    assert (await reading_client.get("/login")).status_code == 200


@pytest.mark.parametrize(("old", "new"), [
    ("/console/test", "/vms/test/console"),
    ("/console/test?watchdog=3", "/vms/test/console?watchdog=3"),
    ("/console/a%3Fb%20c", "/vms/a%3Fb%20c/console"),
])
async def test_the_old_console_address_redirects_to_the_new_one(
    reading_client: httpx.AsyncClient, old: str, new: str
) -> None:
    response = await reading_client.get(old)
    assert response.status_code == 308
    assert response.headers["location"] == new


async def test_opening_the_details_page_does_not_start_the_vm(make_settings: Callable[..., Settings]) -> None:
    async with client_for(make_settings()) as client:
        assert (await client.post("/api/vms/test/stop", params={"force": "true"})).status_code == 200
        assert (await client.get("/vms/test")).status_code == 200
        assert (await client.get("/api/vms/test")).json()["state"] == "stopped"
    _test_domain_running()


async def test_static_files_and_novnc_are_served(reading_client: httpx.AsyncClient) -> None:
    client = reading_client
    assert (await client.get("/static/js/console-page.js")).status_code == 200
    assert (await client.get("/static/css/limen.css")).status_code == 200
    novnc = await client.get("/static/novnc/core/rfb.js")
    assert (bundled("novnc") / "core" / "rfb.js").is_file(), "noVNC is missing: `make web` bundles it"
    assert novnc.status_code == 200
    assert "javascript" in novnc.headers["content-type"]


class _Elements(HTMLParser):
    """Each element's attributes and tag by its id, the page's main landmarks, and the ids inside them."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.tag_of: dict[str, str] = {}
        self.main_landmarks = 0
        self.inside_main: set[str] = set()
        self._open_mains = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "main" or attributes.get("role") == "main":
            self.main_landmarks += 1
        if attributes.get("id"):
            element_id = str(attributes["id"])
            self.by_id[element_id] = attributes
            self.tag_of[element_id] = tag
            if self._open_mains:
                self.inside_main.add(element_id)
        if tag == "main":
            self._open_mains += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "main":
            self._open_mains -= 1


async def test_each_console_tab_controls_a_tabpanel_labelled_by_it(reading_client: httpx.AsyncClient) -> None:
    # The console's Screen tab pointed at a plain <main> (the Serial panel had its role and label).
    elements = _Elements()
    elements.feed((await reading_client.get("/vms/test/console")).text)
    tabs = {name: attributes for name, attributes in elements.by_id.items() if attributes.get("role") == "tab"}
    assert set(tabs) == {"tab-screen", "tab-serial"}
    for name, tab in tabs.items():
        panel = elements.by_id[str(tab["aria-controls"])]
        assert (panel.get("role"), panel.get("aria-labelledby")) == ("tabpanel", name), name


async def test_the_console_page_has_one_main_landmark_holding_both_tabpanels(
    reading_client: httpx.AsyncClient,
) -> None:
    # The Screen tab's panel was the page's <main>: while the Serial tab showed, the page had no main landmark.
    elements = _Elements()
    elements.feed((await reading_client.get("/vms/test/console")).text)
    assert elements.main_landmarks == 1
    assert {"screen-wrap", "serial-wrap"} <= elements.inside_main
    assert elements.tag_of["screen-wrap"] != "main"


# Each page's confirm dialogs: (page, template, the dialog's id, the part its pieces are named by, the confirm
# button's id, the dialog's returnValue on confirm). The pages' scripts and the e2e tests find them by these.
CONFIRM_DIALOGS = (
    ("/audit", "audit.html", "end-dialog", "end", "end-confirm", "end"),
    ("/users", "users.html", "delete-dialog", "delete", "delete-confirm", "delete"),
    ("/tokens", "tokens.html", "revoke-dialog", "revoke", "revoke-confirm", "revoke"),
    ("/vms/test", "vm.html", "confirm-dialog", "confirm", "confirm-ok", "confirm"),
    ("/vms/test", "vm.html", "snapshot-dialog", "snapshot-dialog", "snapshot-dialog-ok", "confirm"),
    ("/", "index.html", "delete-dialog", "delete", "delete-confirm", "delete"),
    ("/", "index.html", "force-dialog", "force", "force-ok", "confirm"),
    ("/isos", "isos.html", "iso-delete-dialog", "iso-delete", "iso-delete-confirm", "delete"),
)


@pytest.mark.parametrize(("path", "template", "dialog_id", "part", "confirm_id", "value"), CONFIRM_DIALOGS)
async def test_confirm_dialogs_are_drawn_by_one_macro(
    reading_client: httpx.AsyncClient, path: str, template: str, dialog_id: str, part: str, confirm_id: str,
    value: str,
) -> None:
    # The same <dialog> was written out by hand in each page; one macro (templates/_macros.html) draws them.
    source = (TEMPLATE_DIR / template).read_text()
    assert f'<dialog id="{dialog_id}"' not in source
    assert re.search(rf"confirm_dialog\(\s*'{dialog_id}'", source)
    elements = _Elements()
    elements.feed((await reading_client.get(path)).text)
    dialog = elements.by_id[dialog_id]
    assert (elements.tag_of[dialog_id], dialog["aria-labelledby"], dialog["aria-describedby"]) == (
        "dialog", f"{part}-title", f"{part}-text")
    assert (elements.tag_of[f"{part}-title"], elements.tag_of[f"{part}-text"]) == ("h2", "p")
    assert elements.by_id[f"{part}-cancel"]["type"] == "button"
    confirm = elements.by_id[confirm_id]
    assert (confirm["type"], confirm["value"]) == ("submit", value)


@pytest.mark.parametrize("path", ["/", "/login", "/vms/test", "/vms/test/console", "/api/docs"])
async def test_every_page_names_a_png_icon_the_server_serves(reading_client: httpx.AsyncClient, path: str) -> None:
    # Chromium decodes a favicon on the page's main thread; an SVG one costs a whole SVG document, 2-10 ms
    # right before the console page's DOMContentLoaded (bench/RESULTS.md, round 11), a PNG a tenth of a ms.
    page = (await reading_client.get(path)).text
    icons = re.findall(r'<link rel="(?:shortcut )?icon"[^>]*href="([^"]+)"', page)
    assert icons == ["/static/img/limen-32.png"], icons
    icon = await reading_client.get(icons[0])
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/png"
    assert icon.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", icon.content[16:24]) == (32, 32)  # IHDR's width and height


async def test_missing_novnc_is_a_json_error_not_a_hang(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(novnc_dir=tmp_path / "nowhere")
    async with client_for(settings) as client:
        response = await client.get("/static/novnc/core/rfb.js")
    assert response.status_code == 503
    assert "make install" in response.json()["details"]


def _test_domain_running() -> None:
    """test:///default is one driver per process; an earlier test may have left its domain stopped."""
    conn = libvirt.open("test:///default")
    try:
        domain = conn.lookupByName("test")
        if not domain.isActive():
            domain.create()
    finally:
        conn.close()


async def test_screenshot_of_a_running_vm_is_a_png(make_settings: Callable[..., Settings]) -> None:
    _test_domain_running()
    async with client_for(make_settings()) as client:
        response = await client.get("/api/vms/test/screenshot")  # the test driver's running domain
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.content.startswith(b"\x89PNG")
        assert (await client.get("/api/vms/test/screenshot")).content == response.content  # cached


async def test_screenshot_errors_are_the_apis_json_errors(make_settings: Callable[..., Settings]) -> None:
    _test_domain_running()
    async with client_for(make_settings()) as client:
        assert (await client.post("/api/vms/test/stop", params={"force": "true"})).status_code == 200
        stopped = await client.get("/api/vms/test/screenshot")
        missing = await client.get("/api/vms/no-such-vm/screenshot")
        invalid = await client.get("/api/vms/bad%20id!/screenshot")
    _test_domain_running()  # as the tests after it in this process expect it
    assert (stopped.status_code, stopped.json()["code"]) == (409, "VM_NOT_RUNNING")
    assert (missing.status_code, missing.json()["code"]) == (404, "VM_NOT_FOUND")
    assert (invalid.status_code, invalid.json()["code"]) == (400, "INVALID_VM_ID")


async def test_error_codes_table_matches_errors_py(reading_client: httpx.AsyncClient) -> None:
    table = (await reading_client.get("/api/error-codes")).json()
    assert set(table) == {code.name for code in ErrorCode}
    assert table["VM_STOPPED"] == {
        "title": "VM stopped",
        "message": ErrorCode.VM_STOPPED.user_message,
        "http_status": 409,
        "close_code": 4102,
    }


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_a_browser_opening_an_address_with_no_page_gets_a_page_in_its_language(
    reading_client: httpx.AsyncClient,
) -> None:
    # It got the API's JSON error: English text on a blank page, no way back.
    response = await reading_client.get("/no-such-page", headers={"Accept": BROWSER_ACCEPT, "Accept-Language": "ko"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>페이지를 찾을 수 없습니다 — limen</title>" in response.text
    assert '<a class="btn primary" href="/">가상 머신 목록으로</a>' in response.text
    english = await reading_client.get("/no-such-page", headers={"Accept": BROWSER_ACCEPT, "Accept-Language": "en"})
    assert english.status_code == 404 and "Page not found" in english.text
    # What is not a browser opening a page keeps the one error schema.
    for path, accept in (("/no-such-page", "*/*"), ("/api/no-such-route", BROWSER_ACCEPT)):
        response = await reading_client.get(path, headers={"Accept": accept})
        assert response.status_code == 404 and response.json()["code"] == ErrorCode.NOT_FOUND.name
    refused = await reading_client.post("/no-such-page", headers={"Accept": BROWSER_ACCEPT})
    assert refused.status_code == 404 and refused.json()["code"] == ErrorCode.NOT_FOUND.name
