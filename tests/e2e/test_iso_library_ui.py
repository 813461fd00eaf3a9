"""The ISO library page in real Chromium: an upload with its progress bar (bytes, rate, time left), a
cancelled upload that leaves nothing, deleting (refused while a VM holds the image), and the page as a
plain user sees it, on a desktop and at 390 px."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import PHONE, save_screenshot, sign_in, start_limen
from tests.support.server import LimenProcess

# The ISO library's page: its images are files, the database is reached only by the sign-in.
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.same_on_any_database]

MIB = 2**20
VIEWER = "iso-viewer"
VIEWER_PASSWORD = "a viewer's long password"


@pytest.fixture(scope="module")
def iso_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("e2e-isos")
    (directory / "installer.iso").write_bytes(b"\x11" * (3 * MIB))
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, iso_dir: Path) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-iso-ui"), LIMEN_ISO_DIR=str(iso_dir))
    with httpx.Client(base_url=process.base_url, headers=process.auth_headers, timeout=20) as admin:
        made = admin.post("/api/users", json={"name": VIEWER, "password": VIEWER_PASSWORD})
        assert made.status_code == 201, made.text
    yield process
    process.stop()


def throttle_uploads(page: Page, bytes_per_second: int) -> None:
    """Chromium's network emulation: uploads from this page go at most this fast."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": bytes_per_second,
    })


def temp_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if ".upload-" in name]


def test_upload_with_progress_then_cancel_another(
    server: LimenProcess, new_page: Callable[..., Page], iso_dir: Path, tmp_path: Path
) -> None:
    page = sign_in(new_page(), server.base_url, next_path="/isos")
    expect(page.locator("tr[data-iso='installer.iso']")).to_be_visible()
    expect(page.locator("#upload-limit")).to_have_text("At most 16 GiB.")
    throttle_uploads(page, 1_500_000)

    source = tmp_path / "debian-netinst.iso"
    source.write_bytes(os.urandom(6 * MIB))
    page.set_input_files("#upload-file", str(source))
    expect(page.locator("#upload-name")).to_have_value("debian-netinst.iso")
    page.click("#upload-start")
    expect(page.locator("#upload-cancel")).to_be_visible()
    expect(page.locator("#upload-figures")).to_contain_text("MiB/s", timeout=10_000)
    expect(page.locator("#upload-figures")).to_contain_text("left")
    assert page.locator("#upload-bar").evaluate("bar => bar.value") > 0
    save_screenshot(page, "isos-uploading-1280")
    done = page.locator("#upload-result .notice.ok")
    expect(done).to_contain_text("Uploaded debian-netinst.iso", timeout=30_000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    expect(done.locator("code.sha")).to_have_text(digest)
    expect(page.locator("tr[data-iso='debian-netinst.iso'] code.sha")).to_have_text(digest)
    save_screenshot(page, "isos-uploaded-1280")
    assert (iso_dir / "debian-netinst.iso").read_bytes() == source.read_bytes()

    big = tmp_path / "too-slow.iso"
    big.write_bytes(os.urandom(24 * MIB))
    page.set_input_files("#upload-file", str(big))
    page.click("#upload-start")
    expect(page.locator("#upload-figures")).to_contain_text("MiB/s", timeout=10_000)
    assert temp_files(iso_dir), "the upload should be under way on the server"
    page.click("#upload-cancel")
    expect(page.locator("#upload-result .notice")).to_have_text("Upload of too-slow.iso cancelled; nothing was kept.")
    save_screenshot(page, "isos-cancelled-1280")
    deadline = time.monotonic() + 3
    while temp_files(iso_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_files(iso_dir) == []
    assert not (iso_dir / "too-slow.iso").exists()
    expect(page.locator("tr[data-iso='too-slow.iso']")).to_have_count(0)

    # An empty file: said as such, not as the API's INVALID_REQUEST ("check the request against /api/docs").
    empty = tmp_path / "empty.iso"
    empty.write_bytes(b"")
    page.set_input_files("#upload-file", str(empty))
    page.click("#upload-start")
    expect(page.locator("#upload-result .error-box")).to_contain_text("empty.iso has 0 bytes")
    assert not (iso_dir / "empty.iso").exists()


def test_delete_refused_while_a_vm_holds_the_image(
    server: LimenProcess, new_page: Callable[..., Page], iso_dir: Path, vm_names: Callable[[], str]
) -> None:
    (iso_dir / "held.iso").write_bytes(b"\0" * 4096)
    (iso_dir / "spare.iso").write_bytes(b"\1" * 4096)
    vm = vm_names()
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=20) as admin:
        made = admin.post("/api/vms", json={"name": vm, "memory_mib": 64, "iso": "held.iso"})
        assert made.status_code == 201, made.text
    page = sign_in(new_page(), server.base_url, next_path="/isos")

    page.click("tr[data-iso='held.iso'] [data-action='delete']")
    expect(page.locator("#iso-delete-dialog")).to_be_visible()
    page.click("#iso-delete-confirm")
    refusal = page.locator("#iso-error .error-box")
    expect(refusal).to_have_attribute("data-code", "ISO_IN_USE")
    expect(refusal).to_contain_text(f"then delete it again. In use by: {vm}.")
    refusal.locator("summary").click()
    expect(refusal.locator("pre")).to_contain_text(vm)
    save_screenshot(page, "isos-delete-refused-1280")
    assert (iso_dir / "held.iso").exists()

    page.click("tr[data-iso='spare.iso'] [data-action='delete']")
    page.click("#iso-delete-confirm")
    expect(page.locator("tr[data-iso='spare.iso']")).to_have_count(0)
    # The row went; the keyboard is on a neighbour's Delete, not lost to <body> at the page's top.
    expect(page.locator("#iso-rows [data-action='delete']:focus")).to_have_count(1)
    assert not (iso_dir / "spare.iso").exists()


def test_the_page_at_390_px_for_admins_and_users(server: LimenProcess, new_page: Callable[..., Page]) -> None:
    admin = sign_in(new_page(PHONE), server.base_url, next_path="/isos")
    expect(admin.locator("#upload-form")).to_be_visible()
    expect(admin.locator("tr[data-iso='installer.iso'] code.sha")).to_have_text(
        hashlib.sha256(b"\x11" * (3 * MIB)).hexdigest(), timeout=15_000  # computed in the background
    )
    # "Delete…", as every delete that asks first reads (it read "Delete").
    expect(admin.locator("tr[data-iso='installer.iso'] [data-action='delete']")).to_have_text("Delete…")
    save_screenshot(admin, "isos-admin-390")
    assert admin.evaluate("document.documentElement.scrollWidth") <= 390

    viewer = sign_in(new_page(PHONE), server.base_url, name=VIEWER, password=VIEWER_PASSWORD, next_path="/isos")
    expect(viewer.locator("tr[data-iso='installer.iso']")).to_be_visible()
    expect(viewer.locator("#upload-form")).to_be_hidden()
    expect(viewer.locator("[data-action='delete']")).to_have_count(0)
    save_screenshot(viewer, "isos-user-390")
    viewer.click("nav a[href='/']")
    viewer.wait_for_url(f"{server.base_url}/")


def test_upload_progress_at_390_px(server: LimenProcess, new_page: Callable[..., Page], iso_dir: Path,
                                   tmp_path: Path) -> None:
    page = sign_in(new_page(PHONE), server.base_url, next_path="/isos")
    throttle_uploads(page, 1_000_000)
    source = tmp_path / "phone-upload.iso"
    source.write_bytes(os.urandom(8 * MIB))
    page.set_input_files("#upload-file", str(source))
    page.click("#upload-start")
    expect(page.locator("#upload-figures")).to_contain_text(re.compile(r"iB/s · \d+ s left"), timeout=10_000)
    expect(page.locator("#upload-cancel")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "wider than a phone"
    for part in ("#upload-bar", "#upload-figures", "#upload-cancel"):
        box = page.locator(part).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (part, box)
    page.locator("#upload-bar").scroll_into_view_if_needed()
    save_screenshot(page, "isos-uploading-390")
    page.click("#upload-cancel")
    expect(page.locator("#upload-result .notice")).to_contain_text("cancelled")
    assert not (iso_dir / "phone-upload.iso").exists()


def test_a_refused_name_is_said_plainly_and_a_later_attempt_clears_the_earlier_error(
    server: LimenProcess, new_page: Callable[..., Page], tmp_path: Path
) -> None:
    """English pages showed the server's raw details under the field ("name: … [request_id=…]"), and an error
    box of an earlier attempt stayed under the next attempt's own message."""
    page = sign_in(new_page(), server.base_url, next_path="/isos")
    expect(page.locator("tr[data-iso='installer.iso']")).to_be_visible()
    source = tmp_path / "small.iso"
    source.write_bytes(b"\0" * 4096)
    page.set_input_files("#upload-file", str(source))
    page.fill("#upload-name", "a/b.iso")
    page.click("#upload-start")
    field = page.locator("#upload-name-error")
    expect(field).to_have_text("'a/b.iso' is not a file name inside the ISO directory")
    expect(page.locator("#upload-result .error-box")).to_be_visible()
    expect(page.locator("#upload-name")).to_be_focused()  # disabled during the upload, it lost the focus
    page.fill("#upload-name", "installer.iso")  # taken: the page says so itself
    page.click("#upload-start")
    expect(field).to_contain_text("installer.iso")
    expect(page.locator("#upload-result")).to_be_empty()
    save_screenshot(page, "isos-name-refused-1280")
