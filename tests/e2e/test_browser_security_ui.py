"""limen's Content Security Policy in Chromium: every page works under it (a running VM's console with its
tools, the serial console, the details page's graphs and screenshot, an ISO upload, /api/docs) without one
violation or console error, and a page of another origin on the same host cannot frame limen's pages."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import DEMO_ISO, ISO_DIR
from tests.e2e.helpers import DESKTOP, new_running_vm, sign_in, start_limen
from tests.e2e.pages import page_paths
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.same_on_any_database]

# Every violation of the policy, reported to the page's document (the browser's console says it too).
RECORD_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (event) => {
  window.limenViolation(`${event.violatedDirective} blocked ${event.blockedURI || 'inline'}`
    + ` at ${event.sourceFile}:${event.lineNumber}`);
});
"""
SETTLE_MS = 1500


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    # Its own ISO library, so that the upload below leaves nothing in the shared one.
    iso_dir = tmp_path_factory.mktemp("csp-isos")
    shutil.copyfile(ISO_DIR / DEMO_ISO, iso_dir / DEMO_ISO)
    process = start_limen(tmp_path_factory.mktemp("limen-csp"), LIMEN_ISO_DIR=str(iso_dir))
    yield process
    process.stop()


def watch(page: Page, violations: list[str]) -> None:
    """Records into ``violations`` the policy's violations on every page of ``page``'s context (the console's
    pop-out window too)."""
    page.context.expose_binding(
        "limenViolation", lambda source, text: violations.append(f"{source['frame'].url}: {text}"))
    page.context.add_init_script(RECORD_VIOLATIONS)


def test_every_page_works_under_the_policy(
    server: LimenProcess, new_page: Callable[..., Page], tmp_path: Path
) -> None:
    with new_running_vm(server) as name:
        vm_id = httpx.get(f"{server.base_url}/api/vms/{name}", headers=server.auth_headers).json()["uuid"]
        violations: list[str] = []
        stranger = new_page()
        watch(stranger, violations)
        stranger.goto(f"{server.base_url}/login")
        expect(stranger.locator("#login-form")).to_be_visible()
        stranger.wait_for_timeout(SETTLE_MS)

        page = new_page()
        watch(page, violations)
        sign_in(page, server.base_url)
        for path in page_paths(vm_id=vm_id):
            if path.endswith("/console"):
                continue  # below, with its tools
            answer = page.goto(f"{server.base_url}{path}")
            assert answer is not None and "frame-ancestors 'none'" in answer.headers["content-security-policy"]
            page.wait_for_load_state("load")
            if path == "/api/docs":
                page.wait_for_selector(".opblock", timeout=15_000)
            if path == f"/vms/{vm_id}":
                expect(page.locator("#graphs .uplot").first).to_be_visible(timeout=15_000)
            page.wait_for_timeout(SETTLE_MS)

        # The ISO library's upload.
        page.goto(f"{server.base_url}/isos")
        upload = tmp_path / "csp-upload.iso"
        upload.write_bytes(b"\x22" * 65536)
        page.set_input_files("#upload-file", str(upload))
        page.click("#upload-start")
        expect(page.locator("#upload-result .notice.ok")).to_contain_text("Uploaded csp-upload.iso", timeout=30_000)

        # The VNC console (noVNC) with its tools, then the serial console (xterm.js).
        page.goto(f"{server.base_url}/vms/{vm_id}/console")
        page.wait_for_selector('body[data-console-state="connected"]', timeout=60_000)
        page.get_by_role("button", name="Send keys").click()
        page.get_by_role("menuitem", name="Tab", exact=True).click()
        page.get_by_role("button", name="Paste as typing").click()
        page.get_by_label("Text to type").fill("echo csp\n")
        page.get_by_role("button", name="Type it").click()
        page.get_by_role("button", name="Fullscreen", exact=True).click()
        page.wait_for_function("() => document.fullscreenElement === document.documentElement")
        page.get_by_role("button", name="Exit fullscreen").click()
        with page.context.expect_page() as opened:
            page.get_by_role("button", name="Pop out").click()
        popout = opened.value
        popout.wait_for_selector('body[data-console-state="connected"]', timeout=30_000)
        popout.close()
        page.goto(f"{server.base_url}/vms/{vm_id}/console")
        page.click("#tab-serial")
        expect(page.locator("#serial-term .xterm-rows")).to_be_attached(timeout=20_000)
        page.wait_for_timeout(SETTLE_MS)
    assert violations == []


@pytest.fixture
def framing_site(server: LimenProcess, tmp_path: Path) -> Iterator[str]:
    """A page on the same host, another port (same-site: SameSite=Strict lets the signed-in cookie go
    along), that frames limen's VM list; yields its address."""
    (tmp_path / "framer.html").write_text(f'<iframe src="{server.base_url}/" width="800" height="600"></iframe>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serving = threading.Thread(target=site.serve_forever, daemon=True)
    serving.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}/framer.html"
    finally:
        site.shutdown()
        site.server_close()
        serving.join()


def test_a_page_of_another_origin_cannot_frame_limen(
    server: LimenProcess, browser: Browser, framing_site: str
) -> None:
    # Its own context, not new_page's: Chromium's "Refused to frame" console error is what is wanted here.
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = sign_in(context.new_page(), server.base_url)
        page.goto(framing_site, wait_until="load")
        page.wait_for_timeout(SETTLE_MS)
        framed = [frame for frame in page.frames if frame != page.main_frame]
        assert len(framed) == 1
        assert not framed[0].url.startswith(server.base_url), framed[0].url
        assert framed[0].locator(".brand").count() == 0
    finally:
        context.close()
