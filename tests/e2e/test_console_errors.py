"""The console page's error paths against a real ``limen serve`` on libvirt's test driver.

The test driver's domains point their VNC graphics at listeners the test owns, so every fault is
real: a VM that is stopped (auto-start off), a VNC server that accepts and stays silent, and a
server that never answers the WebSocket upgrade at all.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import PHONE, save_screenshot, silent_listener, start_limen
from tests.support.console import FakeDomain, driver_uri
from tests.support.server import LimenProcess

# The page's error paths: the database is reached only by the sign-in, the ticket and the session's row.
pytestmark = [pytest.mark.e2e, pytest.mark.same_on_any_database]

BANNER_TIMEOUT = 2.0
WATCHDOG_SECONDS = 2


@pytest.fixture(scope="module")
def silent_vnc() -> Iterator[socket.socket]:
    listener = silent_listener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def driver_server(tmp_path_factory: pytest.TempPathFactory, silent_vnc: socket.socket) -> Iterator[LimenProcess]:
    tmp = tmp_path_factory.mktemp("limen-driver")
    domains = [
        FakeDomain("limen-test-stopped", vnc=silent_vnc.getsockname()[1], running=False),
        FakeDomain("limen-test-silent-vnc", vnc=silent_vnc.getsockname()[1]),
    ]
    process = start_limen(
        tmp,
        LIMEN_LIBVIRT_URI=driver_uri(Path(tmp), domains),
        LIMEN_CONSOLE_AUTO_START="false",
        LIMEN_CONSOLE_BANNER_TIMEOUT=str(BANNER_TIMEOUT),
    )
    yield process
    process.stop()


def failed_panel(page: Page, code: str, *, timeout: float) -> None:
    page.wait_for_selector('body[data-console-state="failed"]', timeout=timeout * 1000)
    expect(page.locator("#panel-extra .error-box")).to_have_attribute("data-code", code)
    assert page.locator(".spinner").count() == 0, "a spinner stayed after the error"
    if code != "VM_NOT_RUNNING":  # a VM that does not run is started, by a button that says so (below)
        expect(page.get_by_role("button", name="Retry", exact=True)).to_be_visible()


def test_stopped_vm_with_auto_start_off_shows_vm_not_running(
    driver_server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(driver_server)
    page.goto(f"{driver_server.base_url}/vms/limen-test-stopped/console")
    failed_panel(page, "VM_NOT_RUNNING", timeout=10)
    box = page.locator("#panel-extra .error-box")
    expect(box.locator(".error-title")).to_have_text("VM is not running")
    expect(box.locator(".error-message")).to_have_text("Start the VM, then try again.")
    expect(page.locator("#stages .stage.failed .msg")).to_have_text("Connected, checking VM status...")
    # The stage's label comes from the server's stage table (GET /api/console-stages), not a copy in the page.
    expect(page.locator("#panel-sub")).to_have_text("Failed at: checking the VM (stage check_vm).")
    # The way on starts the VM, and says so: no "Retry" that would start it (with auto-start on) unsaid.
    expect(page.locator("#panel-extra .btn.primary")).to_have_text("Start VM and connect")
    expect(page.get_by_role("button", name="Retry", exact=True)).to_have_count(0)
    expect(page.locator("#conn-status")).to_have_text("VM is not running")
    # The toolbar's button too: a plain "Connect" there started the VM unsaid.
    expect(page.locator("#btn-connect")).to_have_text("Start VM and connect")
    save_screenshot(page, "console-vm-not-running-1280")
    page.set_viewport_size(PHONE)
    save_screenshot(page, "console-vm-not-running-phone")


def test_silent_vnc_server_shows_vnc_handshake_failed_within_the_bound(
    driver_server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(driver_server)
    started = time.monotonic()
    page.goto(f"{driver_server.base_url}/vms/limen-test-silent-vnc/console")
    failed_panel(page, "VNC_HANDSHAKE_FAILED", timeout=BANNER_TIMEOUT + 5)
    elapsed = time.monotonic() - started
    assert elapsed < BANNER_TIMEOUT + 2.5, elapsed
    expect(page.locator("#panel-extra .error-title")).to_have_text("VNC handshake failed")
    expect(page.locator("#panel-sub")).to_have_text("Failed at: reading the VNC server's banner (stage read_banner).")
    expect(page.locator("#stages .stage.failed .msg")).to_have_text(
        f"Connecting to VNC server on port {driver_server_port(page)}..."
    )
    details = page.locator("#panel-extra details")
    expect(details.locator("pre")).to_be_hidden()
    details.locator("summary").click()
    expect(details.locator("pre")).to_be_visible()
    save_screenshot(page, "console-vnc-handshake-failed-1280")


def driver_server_port(page: Page) -> str:
    text = page.locator("#stages .stage.failed .msg").text_content() or ""
    return text.removeprefix("Connecting to VNC server on port ").removesuffix("...")


class StallingProxy:
    """Serves limen's pages from its own port, but never answers a WebSocket upgrade (holds it open)."""

    def __init__(self, upstream: str, auth_headers: dict[str, str]) -> None:
        release = self.release = threading.Event()
        client = self.client = httpx.Client(base_url=upstream, timeout=10, headers=auth_headers)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    release.wait(30)  # the upgrade request is read; no answer ever comes
                    self.close_connection = True
                    return
                self._forward("GET")

            def do_POST(self) -> None:  # the console ticket
                self._forward("POST")

            def _forward(self, method: str) -> None:
                answer = client.request(method, self.path)
                self.send_response(answer.status_code)
                for header in ("content-type", "cache-control"):
                    if header in answer.headers:
                        self.send_header(header, answer.headers[header])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StallingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
        self.client.close()


def test_server_that_never_answers_the_upgrade_trips_the_watchdog(
    driver_server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    with StallingProxy(driver_server.base_url, driver_server.auth_headers) as proxy:
        page = signed_in_page(driver_server)  # the proxy adds a token to what it forwards
        page.goto(f"{proxy.origin}/vms/limen-test-silent-vnc/console?watchdog={WATCHDOG_SECONDS}")
        page.wait_for_selector('body[data-console-state="connecting"]')
        started = time.monotonic()
        failed_panel(page, "WATCHDOG_TIMEOUT", timeout=WATCHDOG_SECONDS + 5)
        assert time.monotonic() - started < WATCHDOG_SECONDS + 1.5
        expect(page.locator("#panel-extra .error-title")).to_have_text("Server not responding")
        expect(page.locator("#stages .stage.failed .msg")).to_have_text("Opening the console connection...")
        save_screenshot(page, "console-watchdog-1280")
