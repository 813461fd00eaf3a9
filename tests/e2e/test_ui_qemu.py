"""The web UI against a real ``limen serve`` and real QEMU VMs booting the demo GRUB ISO."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.conftest import DEMO_ISO, QEMU_URI
from tests.e2e.helpers import COUNT_DRAWN_PIXELS, PHONE, save_screenshot, start_limen, wait_for_stable_screen
from tests.support.libvirt_cleanup import remove_domain, volume_exists
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

UUID_PATH = re.compile(r"/vms/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STATUS_MESSAGES: list[str | re.Pattern[str]] = [
    "Connected, checking VM status...",
    "Starting VM...",
    "Getting VNC port...",
    re.compile(r"Connecting to VNC server on port \d+\.\.\."),
    "VNC connection established, starting proxy...",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-ui"))
    yield process
    process.stop()


@pytest.fixture
def api(server: LimenProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=20, headers=server.auth_headers) as client:
        yield client


@pytest.fixture
def vm_name() -> Iterator[Callable[[], str]]:
    """``limen-test-…`` names; every VM so named is removed (with its disks) after the test, pass or fail."""
    made: list[str] = []

    def make() -> str:
        made.append(f"limen-test-{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield make
    for name in made:
        remove_domain(QEMU_URI, name)


def drawn_pixels(page: Page) -> int:
    count: int = page.evaluate(COUNT_DRAWN_PIXELS)
    return count


def stage_messages(page: Page) -> list[str]:
    return page.locator('#stages .stage[data-source="server"] .msg').all_text_contents()


def assert_messages(actual: list[str], expected: list[str | re.Pattern[str]]) -> None:
    assert len(actual) == len(expected), actual
    for got, want in zip(actual, expected, strict=True):
        if isinstance(want, str):
            assert got == want
        else:
            assert want.fullmatch(got), got


def create_through_form(page: Page, base_url: str, name: str) -> None:
    page.goto(f"{base_url}/vms/new")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Memory (MiB)").fill("128")
    expect(page.locator(f'#iso option[value="{DEMO_ISO}"]')).to_be_attached()
    page.get_by_label("Boot ISO").select_option(DEMO_ISO)
    page.get_by_role("button", name="Create VM").click()


def test_create_start_console_type_and_vm_stopped(
    server: LimenProcess, api: httpx.Client, signed_in_page: Callable[..., Page], vm_name: Callable[[], str]
) -> None:
    name = vm_name()
    page = signed_in_page(server)
    create_through_form(page, server.base_url, name)

    # After create the page goes to the VM's details, which never start it. Its console does (auto-start is
    # on); the details page's "Start and open console" is tested in test_vm_details_ui.py.
    page.wait_for_url(UUID_PATH)
    expect(page.locator("#vm-state .badge")).to_have_text("Stopped")
    assert api.get(f"/api/vms/{name}").json()["state"] == "stopped"
    page.goto(f"{page.url}/console")
    page.wait_for_selector('body[data-console-state="connected"]', timeout=30_000)
    assert_messages(stage_messages(page), STATUS_MESSAGES)
    vm = api.get(f"/api/vms/{name}").json()
    assert vm["state"] == "running"
    assert stage_messages(page)[3] == f"Connecting to VNC server on port {vm['vnc']['port']}..."
    assert page.locator("#stages .stage.done").count() == len(STATUS_MESSAGES) + 1  # + the client's own
    assert page.locator(".spinner").count() == 0
    expect(page.locator("#overlay")).to_be_hidden()
    expect(page.locator("#vm-state .badge")).to_have_text("Running")

    before = wait_for_stable_screen(page, minimum=500, vm=name)
    save_screenshot(page, "console-grub-1280")

    page.locator("#screen canvas").click()
    page.keyboard.type("echo limen")
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 10
    after = before
    while time.monotonic() < deadline and after < before + 250:
        page.wait_for_timeout(300)
        after = drawn_pixels(page)
    # "echo limen", the echoed "limen" and a new prompt: far more than a blinking cursor draws.
    assert after >= before + 250, (before, after)
    save_screenshot(page, "console-typed-1280")

    # Paste as typing: the text is typed into GRUB key by key.
    before = wait_for_stable_screen(page, minimum=1, vm=name)
    page.get_by_role("button", name="Paste as typing").click()
    page.get_by_label("Text to type").fill("echo pasted\n")
    page.get_by_role("button", name="Type it").click()
    page.wait_for_function(
        f"() => ({COUNT_DRAWN_PIXELS})() >= {before + 250}", timeout=10_000
    )
    expect(page.locator("#conn-status")).to_contain_text("Connected")

    # Disconnect, then connect again: the four stages of a running VM.
    page.get_by_role("button", name="Disconnect").click()
    page.wait_for_selector('body[data-console-state="ended"]')
    expect(page.locator("#panel-title")).to_have_text("Disconnected")
    page.get_by_role("button", name="Connect", exact=True).first.click()
    page.wait_for_selector('body[data-console-state="connected"]', timeout=20_000)
    assert_messages(stage_messages(page), [m for m in STATUS_MESSAGES if m != "Starting VM..."])
    scale = page.get_by_role("button", name="Scale to fit")
    expect(scale).to_have_attribute("aria-pressed", "true")
    scale.click()
    expect(scale).to_have_attribute("aria-pressed", "false")
    scale.click()

    # The list shows the VM running, with a screenshot of its screen.
    listing = signed_in_page(server)
    listing.goto(server.base_url)
    row = listing.locator(f'tr[data-vm-name="{name}"]')
    expect(row.locator(".badge")).to_have_text("Running")
    listing.wait_for_function(
        "name => { const img = document.querySelector(`tr[data-vm-name=\"${name}\"] .thumb img`);"
        " return img && img.naturalWidth > 0; }",
        arg=name,
    )
    save_screenshot(listing, "vm-list-1280")
    listing.set_viewport_size(PHONE)
    listing.wait_for_timeout(300)
    save_screenshot(listing, "vm-list-phone")
    png = api.get(f"/api/vms/{name}/screenshot")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

    # The VM is destroyed while its console is open: the page says so and offers to start it and reconnect
    # (one button that says it starts the VM: a "Reconnect" started it unsaid, the console's auto-start).
    assert api.post(f"/api/vms/{name}/stop", params={"force": "true"}).status_code == 200
    page.wait_for_selector('body[data-console-state="ended"]', timeout=10_000)
    box = page.locator("#panel-extra .error-box")
    expect(box).to_have_attribute("data-code", "VM_STOPPED")
    expect(box.locator(".error-title")).to_have_text("VM stopped")
    expect(page.locator("#panel-extra .btn.primary")).to_have_text("Start VM and connect")
    expect(page.get_by_role("button", name="Reconnect", exact=True)).to_have_count(0)
    assert page.locator(".spinner").count() == 0
    save_screenshot(page, "console-vm-stopped-1280")

    # "Start VM and connect" starts it, then the console opens again (no start stage this time).
    page.locator("#panel-extra").get_by_role("button", name="Start VM and connect").click()
    page.wait_for_selector('body[data-console-state="connected"]', timeout=30_000)
    assert_messages(stage_messages(page), [m for m in STATUS_MESSAGES if m != "Starting VM..."])
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(500)
    save_screenshot(page, "console-grub-phone")


def test_list_actions_show_progress_results_and_errors(
    server: LimenProcess, api: httpx.Client, signed_in_page: Callable[..., Page], vm_name: Callable[[], str]
) -> None:
    name = vm_name()
    created = api.post("/api/vms", json={"name": name, "memory_mib": 128, "iso": DEMO_ISO, "disk_gib": 1})
    assert created.status_code == 201, created.text
    disk = next(d["path"] for d in created.json()["disks"] if d["device"] == "disk")
    page = signed_in_page(server)
    page.goto(server.base_url)
    row = page.locator(f'tr[data-vm-name="{name}"]')
    expect(row.locator(".badge")).to_have_text("Stopped")

    row.get_by_role("button", name=f"Start {name}").click()
    expect(row.locator(".row-status")).to_contain_text("Started")
    expect(row.locator(".badge")).to_have_text("Running")

    row.get_by_label(f"More actions for {name}").click()
    row.get_by_role("button", name=f"Force stop {name}").click()
    # Asked first, naming the VM, as on its page; Cancel (focused) leaves it running.
    force = page.locator("#force-dialog")
    expect(force).to_contain_text(name)
    expect(force.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Escape")
    expect(force).to_be_hidden()
    expect(row.locator(".badge")).to_have_text("Running")
    row.get_by_label(f"More actions for {name}").click()
    row.get_by_role("button", name=f"Force stop {name}").click()
    force.get_by_role("button", name=f"Force stop {name}").click()
    expect(row.locator(".row-status")).to_contain_text("Powered off")
    # The menu closes when the keyboard leaves it (left open, it covered the next row's buttons).
    row.get_by_label(f"More actions for {name}").click()
    expect(row.locator("details.more")).to_have_attribute("open", "")
    page.keyboard.press("Shift+Tab")
    expect(row.locator("details.more")).not_to_have_attribute("open", "")
    expect(row.locator(".badge")).to_have_text("Stopped")

    # A real error from the server: the VM gets started behind the page's back just before its Start.
    def start_elsewhere_first(route: Route) -> None:
        api.post(f"/api/vms/{name}/start")
        route.continue_()

    page.route("**/api/vms/*/start", start_elsewhere_first)
    row.get_by_role("button", name=f"Start {name}").click()
    error = row.locator(".row-status .error-box")
    expect(error).to_have_attribute("data-code", "VM_ALREADY_RUNNING")
    expect(error).to_contain_text("VM is already running")
    expect(error).to_contain_text("Nothing to do: the VM runs.")
    save_screenshot(page, "vm-list-action-error-1280")
    page.unroute("**/api/vms/*/start")
    row.get_by_role("button", name=f"Dismiss the error of {name}").click()
    expect(error).to_have_count(0)

    # Delete asks first; Cancel keeps the VM.
    row.get_by_label(f"More actions for {name}").click()
    row.get_by_role("button", name=f"Delete {name}").click()
    dialog = page.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(name)
    save_screenshot(page, "vm-list-delete-dialog-1280")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(row).to_have_count(1)

    row.get_by_label(f"More actions for {name}").click()
    row.get_by_role("button", name=f"Delete {name}").click()
    dialog.get_by_label("Also delete its disk volumes", exact=False).check()
    dialog.get_by_role("button", name="Delete VM").click()
    expect(row).to_have_count(0)
    assert api.get(f"/api/vms/{name}").json()["code"] == "VM_NOT_FOUND"
    assert not volume_exists(QEMU_URI, disk)


def test_form_shows_the_apis_validation_messages_inline(
    server: LimenProcess, api: httpx.Client, signed_in_page: Callable[..., Page], vm_name: Callable[[], str]
) -> None:
    page = signed_in_page(server)
    page.goto(f"{server.base_url}/vms/new")

    page.get_by_label("Name", exact=True).fill("bad name!")
    page.get_by_role("button", name="Create VM").click()
    expected = api.post("/api/vms", json={"name": "bad name!", "vcpus": 1, "memory_mib": 256}).json()
    assert expected["field"] == "name"
    name_error = page.locator("#name-error")
    # The API's own words, less the request id it appends for the log.
    expect(name_error).to_have_text(re.sub(r" \[request_id=\w+\]$", "", expected["details"].removeprefix("name: ")))
    expect(page.get_by_label("Name", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#form-error")).to_contain_text(expected["message"])
    save_screenshot(page, "create-form-invalid-name-1280")

    page.get_by_label("Name", exact=True).fill(vm_name())
    page.get_by_label("vCPUs").fill("9999")
    page.get_by_role("button", name="Create VM").click()
    expect(page.locator("#vcpus-error")).to_contain_text("must be between 1 and")
    expect(name_error).to_be_hidden()

    # A name that exists: the API's 409 lands on the name field too.
    taken = vm_name()
    assert api.post("/api/vms", json={"name": taken, "memory_mib": 128}).status_code == 201
    page.get_by_label("Name", exact=True).fill(taken)
    page.get_by_label("vCPUs").fill("1")
    page.get_by_role("button", name="Create VM").click()
    expect(name_error).to_contain_text(taken)
    expect(page.locator("#form-error")).to_contain_text("VM already exists")
    page.set_viewport_size(PHONE)
    save_screenshot(page, "create-form-taken-name-phone")
    assert page.url.endswith("/vms/new")


def test_screenshot_of_a_stopped_vm_is_a_409_error(
    api: httpx.Client, vm_name: Callable[[], str], tmp_path: Path
) -> None:
    name = vm_name()
    assert api.post("/api/vms", json={"name": name, "memory_mib": 128}).status_code == 201
    response = api.get(f"/api/vms/{name}/screenshot")
    assert response.status_code == 409
    assert response.json()["code"] == "VM_NOT_RUNNING"


def test_server_restart_ends_the_session_and_the_page_reconnects_with_backoff(
    tmp_path: Path, signed_in_page: Callable[..., Page], vm_name: Callable[[], str]
) -> None:
    own = start_limen(tmp_path / "restarting")
    try:
        name = vm_name()
        with httpx.Client(base_url=own.base_url, timeout=20, headers=own.auth_headers) as client:
            created = client.post("/api/vms", json={"name": name, "memory_mib": 128, "iso": DEMO_ISO})
            assert created.status_code == 201, created.text
        page = signed_in_page(own)
        page.goto(f"{own.base_url}/vms/{name}/console")
        page.wait_for_selector('body[data-console-state="connected"]', timeout=30_000)

        own.stop()  # limen closes every console with SERVER_SHUTDOWN before it exits
        expect(page.locator("#panel-extra .error-box")).to_have_attribute("data-code", "SERVER_SHUTDOWN")
        backoff = page.locator("#panel-extra .backoff")
        expect(backoff).to_contain_text("Reconnecting in 1 s (attempt 1 of 6)")
        # limen is down: the next attempt fails too and the wait grows, visibly.
        expect(backoff).to_contain_text("(attempt 2 of 6)", timeout=10_000)
        expect(page.locator("#panel-extra .error-box")).to_have_attribute("data-code", "CONNECTION_FAILED")
        save_screenshot(page, "console-reconnect-backoff-1280")

        own.start()
        page.wait_for_selector('body[data-console-state="connected"]', timeout=30_000)
        assert_messages(stage_messages(page), [m for m in STATUS_MESSAGES if m != "Starting VM..."])
    finally:
        own.stop()
