"""Helpers of the browser tests: artifacts, pixel counting, misbehaving listeners, limen processes."""

from __future__ import annotations

import base64
import contextlib
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import libvirt
from playwright.sync_api import Page, Route, ViewportSize

from limen.web.routes import NOVNC_JOINED
from tests.conftest import DEMO_ISO, ISO_DIR, QEMU_URI, TEST_POOL, TEST_POOL_DIR
from tests.support.access import TEST_ADMIN, TEST_ADMIN_PASSWORD, provision_admin_token
from tests.support.libvirt_cleanup import remove_domain
from tests.support.server import LimenProcess

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
# No downloaded browser: Debian's, without the background traffic this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

# Counts the pixels of a canvas that differ from its most common colour (the background).
COUNT_OFF_BACKGROUND = """(canvas) => {
  if (!canvas || !canvas.width || !canvas.height) return -1;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const counts = new Map();
  for (let i = 0; i < data.length; i += 4) {
    const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  let most = 0;
  for (const n of counts.values()) if (n > most) most = n;
  return data.length / 4 - most;
}"""
# The same count on noVNC's canvas.
COUNT_DRAWN_PIXELS = f"() => ({COUNT_OFF_BACKGROUND})(document.querySelector('#screen canvas'))"
# The same count on an image (a data: URL) drawn into a canvas of its own.
COUNT_IMAGE_PIXELS = f"""async (url) => {{
  const image = new Image();
  image.src = url;
  await image.decode();
  const canvas = document.createElement('canvas');
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  canvas.getContext('2d').drawImage(image, 0, 0);
  return ({COUNT_OFF_BACKGROUND})(canvas);
}}"""


def guest_drawn_pixels(page: Page, vm: str) -> int:
    """The drawn pixels of the guest's own screen: libvirt's screenshot (not the console), counted in ``page``."""
    connection = libvirt.open(QEMU_URI)
    try:
        domain = connection.lookupByName(vm)
        stream = connection.newStream(0)
        mime = domain.screenshot(stream, 0, 0)
        image = bytearray()
        while chunk := stream.recv(256 * 1024):
            image += chunk
        stream.finish()
    finally:
        connection.close()
    count: int = page.evaluate(COUNT_IMAGE_PIXELS, f"data:{mime};base64,{base64.b64encode(image).decode()}")
    return count


def wait_for_stable_screen(page: Page, *, minimum: int, vm: str, timeout: float = 20.0) -> int:
    """The console canvas's drawn-pixel count once it stops changing (GRUB finished drawing its prompt).

    A guest can keep its screen blank past the bound on a loaded machine (TCG at a fraction of a core): while
    libvirt's own screenshot is blank too, the wait goes on up to 60 s more. A guest that drew while the canvas
    stayed blank is the console's fault and fails at once, with both counts."""
    deadline = time.monotonic() + timeout
    extended = False
    previous = -1
    while True:
        count: int = page.evaluate(COUNT_DRAWN_PIXELS)
        if count >= minimum and count == previous:
            return count
        previous = count
        if time.monotonic() >= deadline:
            guest = guest_drawn_pixels(page, vm)
            if extended or guest >= minimum:
                state = page.evaluate("document.body.dataset.consoleState")
                raise AssertionError(
                    f"the console did not settle with at least {minimum} drawn pixels (last {previous}; "
                    f"the guest's own screen: {guest}; console state {state!r})"
                )
            deadline, extended = time.monotonic() + 60, True
        page.wait_for_timeout(400)


def save_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def silent_listener() -> socket.socket:
    """A TCP listener on a free loopback port that completes handshakes and never says a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def limen_env(data: Path, **more: str) -> dict[str, str]:
    return {
        "LIMEN_LIBVIRT_URI": QEMU_URI,
        "LIMEN_ISO_DIR": str(ISO_DIR),
        "LIMEN_DATA_DIR": str(data / "data"),
        "LIMEN_LOG_DIR": str(data / "log"),
        "LIMEN_STORAGE_POOL": TEST_POOL,
        "LIMEN_STORAGE_POOL_DIR": str(TEST_POOL_DIR),
        "LIMEN_VIRT_TYPE": "qemu",
        **more,
    }


def start_limen(tmp: Path, **env: str) -> LimenProcess:
    """A ``limen serve`` with an admin (TEST_ADMIN / TEST_ADMIN_PASSWORD) whose API token is in
    ``auth_headers`` (for httpx); pages sign in through the login page (:func:`sign_in`)."""
    tmp.mkdir(parents=True, exist_ok=True)
    process = LimenProcess(limen_env(tmp, **env), tmp / "serve.log")
    process.auth_headers = {"Authorization": f"Bearer {provision_admin_token(process.database_url)}"}
    return process.start()


# The password of the plain user the tests make (conftest.py's plain_user).
PLAIN_USER_PASSWORD = "a password of the user"


def sign_in(page: Page, base_url: str, name: str = TEST_ADMIN, password: str = TEST_ADMIN_PASSWORD,
            next_path: str = "/") -> Page:
    """Signs ``page`` in through the login page, then waits for the page it returns to."""
    page.goto(f"{base_url}/login?next={next_path}")
    page.fill("#login-name", name)
    page.fill("#login-password", password)
    page.click("#login-submit")
    page.wait_for_url(f"{base_url}{next_path}")
    # Pages wire their controls once they know who is signed in (the header's menu shows it): a test that
    # clicked before that clicked a button nothing listened to yet.
    page.wait_for_function("() => !document.getElementById('user-menu') || document.getElementById('sign-out')")
    return page


def hold_requests(page: Page, url: str) -> list[Route]:
    """Holds the page's requests to ``url`` (a Playwright glob) at the network until the test continues
    (or fulfils) them: the routes, as they come."""
    held: list[Route] = []
    page.route(url, lambda route: held.append(route))
    return held


def wait_for_arrival(page: Page, arrived: Sequence[object]) -> None:
    """Waits until a request held by :func:`hold_requests` (or anything a route records) has arrived: the
    page keeps running meanwhile, and the test's own timeout bounds the wait."""
    while not arrived:
        page.wait_for_timeout(50)


def hold_novnc(page: Page) -> list[Route]:
    """Holds the page's requests for noVNC's joined module (:func:`hold_requests`)."""
    return hold_requests(page, f"**/static/novnc*/{NOVNC_JOINED}")


def delete_through_limen(server: LimenProcess, name: str) -> None:
    """Deletes the VM through limen, which ends its consoles and releases the serial console stream it may
    still hold before the undefine (libvirt 9.0 deadlocks when a console stream's abort meets the undefine of
    its domain: a page that showed the serial console, then a plain destroy and undefine, stopped a CI run's
    libvirtd), then removes whatever is left (a server that no longer answers)."""
    with contextlib.suppress(httpx.HTTPError), httpx.Client(
        base_url=server.base_url, timeout=60, headers=server.auth_headers
    ) as api:
        api.delete(f"/api/vms/{name}", params={"delete_disks": "true"})
    remove_domain(QEMU_URI, name)


@contextmanager
def new_stopped_vm(server: LimenProcess) -> Iterator[str]:
    """A 64 MiB VM made through ``server``'s API and never started; yields its UUID, removed after."""
    name = f"limen-test-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as admin:
        created = admin.post("/api/vms", json={"name": name, "memory_mib": 64})
        assert created.status_code == 201, created.text
    try:
        yield str(created.json()["uuid"])
    finally:
        delete_through_limen(server, name)


@contextmanager
def new_running_vm(
    server: LimenProcess, name: str | None = None, *, memory_mib: int = 64, disk_gib: int | None = None
) -> Iterator[str]:
    """A VM booting the GRUB demo ISO (64 MiB and no disk unless told), made and started through ``server``'s
    API; yields its name (a fresh ``limen-test-…`` one unless given), removed after (also when it would not
    start)."""
    name = name or f"limen-test-{uuid.uuid4().hex[:10]}"
    spec = {"name": name, "memory_mib": memory_mib, "disk_gib": disk_gib, "iso": DEMO_ISO}
    try:
        with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as admin:
            created = admin.post("/api/vms", json=spec)
            assert created.status_code == 201, created.text
            started = admin.post(f"/api/vms/{name}/start")
            assert started.status_code == 200, started.text
        yield name
    finally:
        delete_through_limen(server, name)
