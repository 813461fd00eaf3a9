"""No page of limen loads anything from another host: every page (read from limen's routes, so new
pages are covered) is opened in Chromium, and any request or WebSocket to a host other than the
server's fails the test. ``/api/docs`` renders its operations from limen's own copy of Swagger UI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.e2e.helpers import new_stopped_vm, save_screenshot, sign_in, start_limen
from tests.e2e.pages import page_paths
from tests.support.server import LimenProcess

# What a page fetches from where: each page's reads of the database are the API's, tested on both elsewhere.
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.same_on_any_database]

# Time for a page's scripts to ask for what they ask for after "load" (thumbnails, error codes, …).
SETTLE_MS = 1500


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    # Without auto-start the console page stops at VM_NOT_RUNNING: every page, no VM booted.
    process = start_limen(tmp_path_factory.mktemp("limen-offline"), LIMEN_CONSOLE_AUTO_START="false")
    yield process
    process.stop()


@pytest.fixture
def vm_uuid(server: LimenProcess) -> Iterator[str]:
    with new_stopped_vm(server) as uuid_:
        yield uuid_


def watch_for_outside_requests(page: Page, server: LimenProcess) -> list[str]:
    """Refuses (and records) every request and WebSocket of ``page`` to another host than the server's."""
    own = urlsplit(server.base_url).netloc
    outside: list[str] = []

    def is_local(url: str) -> bool:
        parts = urlsplit(url)
        return parts.scheme in ("data", "blob") or parts.netloc == own

    def check(route: Route) -> None:
        if is_local(route.request.url):
            route.continue_()
        else:
            outside.append(f"{page.url} → {route.request.url}")
            route.abort()

    page.route("**/*", check)
    page.on("websocket", lambda ws: None if is_local(ws.url) else outside.append(f"{page.url} → {ws.url}"))
    return outside


def test_no_page_requests_anything_outside_the_server(
    server: LimenProcess, new_page: Callable[..., Page], vm_uuid: str
) -> None:
    paths = page_paths(vm_id=vm_uuid)
    assert {"/login", "/", "/vms/new", f"/vms/{vm_uuid}", f"/vms/{vm_uuid}/console", "/isos", "/audit",
            "/api/docs"} <= set(paths)

    # The sign-in page as a stranger sees it, then every page signed in.
    stranger = new_page()
    outside = watch_for_outside_requests(stranger, server)
    stranger.goto(f"{server.base_url}/login")
    expect(stranger.locator("#login-form")).to_be_visible()
    stranger.wait_for_timeout(SETTLE_MS)

    page = new_page()
    outside += watch_for_outside_requests(page, server)
    sign_in(page, server.base_url)
    for path in paths:
        page.goto(f"{server.base_url}{path}")
        page.wait_for_load_state("load")
        if path == "/api/docs":
            # Swagger UI, from limen's own files, has read the schema and lists the operations.
            page.wait_for_selector(".opblock", timeout=15_000)
            expect(page.locator(".opblock-summary-path", has_text="/api/vms/{vm_id}/start").first).to_be_visible()
            save_screenshot(page, "api-docs-offline-1280")
        page.wait_for_timeout(SETTLE_MS)
    assert outside == [], "pages asked for something outside the server"
