"""The rest of the VM details page, in Chromium against a real ``limen serve``, libvirtd and QEMU (issue #11):
the settings form on a real VM (vCPUs and memory wait for a restart, autostart at once, a rename refused
while it runs and done once stopped), a guest that locked its tray (MEDIA_LOCKED with its advice, then
"Force it"), network interfaces with their MAC and disks with path, capacity and allocation, the page's
polling while the event stream is down, and the page, its confirmation dialogs and an upload's progress
in English and Korean at 1280 px and 390 px (screenshots in ``test-artifacts/``)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from tests.conftest import DEMO_ISO, ISO_DIR, QEMU_URI
from tests.e2e.helpers import ARTIFACTS, DESKTOP, PHONE, save_screenshot, sign_in, start_limen
from tests.support.server import LimenProcess
from tests.support.tray_locker import build_tray_locker_iso

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MIB = 2**20
NIC_MAC = "52:54:00:4c:1e:11"


@pytest.fixture(scope="module")
def iso_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("details-isos")
    (directory / DEMO_ISO).symlink_to(ISO_DIR / DEMO_ISO)
    build_tray_locker_iso(directory / "tray-locker.iso")
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, iso_dir: Path) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-details-more"), LIMEN_ISO_DIR=str(iso_dir))
    yield process
    process.stop()


@pytest.fixture
def api(server: LimenProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, headers=server.auth_headers) as client:
        yield client


def virsh(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["virsh", "-c", QEMU_URI, *args], check=True, capture_output=True, text=True,
                          timeout=60, input=stdin)
    return done.stdout.strip()


def create(api: httpx.Client, name: str, **more: object) -> dict[str, object]:
    created = api.post("/api/vms", json={"name": name, "memory_mib": 128, **more})
    assert created.status_code == 201, created.text
    vm: dict[str, object] = created.json()
    return vm


def vm_json(api: httpx.Client, name: str) -> dict[str, object]:
    answer = api.get(f"/api/vms/{name}")
    assert answer.status_code == 200, answer.text
    vm: dict[str, object] = answer.json()
    return vm


def open_details(page: Page, server: LimenProcess, vm: dict[str, object]) -> None:
    page.goto(f"{server.base_url}/vms/{vm['uuid']}")
    page.wait_for_selector('body[data-events="live"]', timeout=15_000)


def test_settings_on_a_real_vm_and_a_rename_once_stopped(
    server: LimenProcess, api: httpx.Client, signed_in_page: Callable[..., Page], vm_names: Callable[[], str]
) -> None:
    name, new_name = vm_names(), vm_names()
    vm = create(api, name, disk_gib=1, iso=DEMO_ISO)
    assert api.post(f"/api/vms/{name}/start").status_code == 200
    page = signed_in_page(server)
    # Opened by its name, as the list's links and a typed address do (the reload below must find it renamed).
    open_details(page, server, {"uuid": name})
    state = page.locator("#vm-state .badge")
    expect(state).to_have_text("Running")
    status = page.locator("#settings-status")

    # A running VM cannot be renamed: the field says so, instead of a refusal (VM_MUST_BE_STOPPED) after a
    # save that also dropped the vCPU and memory changes sent with the name.
    expect(page.locator("#set-name")).to_be_disabled()
    expect(page.locator("#set-name-hint")).to_have_text("Stop the VM to rename it.")
    save_screenshot(page, "vm-details-rename-refused-1280")

    # vCPUs and memory wait for the next start (shown as pending); autostart applies at once.
    page.get_by_label("vCPUs").fill("2")
    page.get_by_label("Memory (MiB)").fill("192")
    page.get_by_label("Start with the host").check()
    page.get_by_role("button", name="Save settings").click()
    expect(status).to_contain_text("Saved")
    expect(page.locator("#pending-notice")).to_contain_text("vCPUs: 2")
    expect(page.locator("#pending-notice")).to_contain_text("memory: 192 MiB")
    # The form keeps what was saved (the values of the next start), not the running ones it showed again.
    page.wait_for_timeout(500)  # the reload that follows the save has redrawn the form
    expect(page.get_by_label("vCPUs")).to_have_value("2")
    expect(page.get_by_label("Memory (MiB)")).to_have_value("192")
    running = vm_json(api, name)
    assert (running["vcpus"], running["memory_mib"], running["autostart"]) == (1, 128, True), running
    assert running["pending"] == {"vcpus": 2, "memory_mib": 192}, running
    assert virsh("dominfo", name).count("Autostart:      enable") == 1

    # Stopped (confirmed), the settings took effect and the rename goes through: the page follows it.
    page.get_by_role("button", name=f"Force stop {name}").click()
    page.locator("#confirm-dialog").get_by_role("button", name=f"Force stop {name}").click()
    expect(state).to_have_text("Stopped")
    expect(page.locator("#pending-notice")).to_be_hidden()
    expect(page.locator("#set-name-hint")).to_be_hidden()
    page.locator("#set-name").fill(new_name)
    page.get_by_role("button", name="Save settings").click()
    expect(status).to_contain_text("Saved")
    expect(page.locator("#vm-name")).to_have_text(new_name)
    facts = page.locator("#facts")
    expect(facts).to_contain_text("192 MiB")
    renamed = vm_json(api, str(vm["uuid"]))
    assert (renamed["name"], renamed["vcpus"], renamed["memory_mib"]) == (new_name, 2, 192), renamed
    assert virsh("domstate", new_name) == "shut off"
    assert subprocess.run(["virsh", "-c", QEMU_URI, "domstate", name], capture_output=True).returncode != 0
    expect(page.locator("#action-rows")).to_contain_text(f"name {name} → {new_name}")
    # The address follows the rename (reloaded, the old name found nothing), and Start still finds the VM's
    # disk and CD.
    assert page.url == f"{server.base_url}/vms/{new_name}", page.url
    page.reload()
    page.wait_for_selector('body[data-events="live"]', timeout=15_000)
    page.get_by_role("button", name=f"Start {new_name}", exact=True).click()
    expect(state).to_have_text("Running")
    assert virsh("dominfo", new_name).count("CPU(s):         2") == 1
    virsh("autostart", "--disable", new_name)


def tray_locked(name: str) -> bool:
    return "Removable device: locked" in virsh("qemu-monitor-command", name, "--hmp", "info block")


def test_a_locked_tray_is_refused_with_advice_then_forced_from_the_page(
    server: LimenProcess, api: httpx.Client, signed_in_page: Callable[..., Page], vm_names: Callable[[], str]
) -> None:
    name = vm_names()
    vm = create(api, name, disk_gib=1, iso="tray-locker.iso")
    assert api.post(f"/api/vms/{name}/start").status_code == 200
    deadline = time.monotonic() + 60
    while not tray_locked(name):
        assert time.monotonic() < deadline, "the guest did not lock its tray"
        time.sleep(0.2)
    page = signed_in_page(server)
    open_details(page, server, vm)
    expect(page.locator("#media-current")).to_have_text("Inserted: tray-locker.iso")

    page.get_by_role("button", name="Eject").click()
    refusal = page.locator("#media-status .error-box")
    # libvirt waits some seconds for the guest to open its tray before it says the tray is locked.
    expect(refusal).to_have_attribute("data-code", "MEDIA_LOCKED", timeout=30_000)
    expect(refusal).to_contain_text("Eject the CD")
    expect(refusal).to_contain_text("force")
    save_screenshot(page, "vm-details-media-locked-1280")
    assert vm_json(api, name)["cdrom"] == {"target": "hdc", "iso": "tray-locker.iso"}

    page.get_by_role("button", name="Force it").click()
    expect(page.locator("#media-status")).to_contain_text("Ejected", timeout=30_000)
    expect(page.locator("#media-current")).to_have_text("Empty (no disc).")
    assert vm_json(api, name)["cdrom"] == {"target": "hdc", "iso": None}
    details = [a["details"] for a in api.get("/api/vm-actions", params={"vm": name}).json() if a["action"] == "media"]
    assert details[0] == "cd tray-locker.iso → ejected (forced)", details
    assert details[1:] == [""] or all("forced" not in d for d in details[1:]), details


NIC_XML = f"""<interface type='user'><mac address='{NIC_MAC}'/><model type='virtio'/></interface>"""


def test_network_interfaces_and_disk_figures(
    server: LimenProcess, api: httpx.Client, signed_in_page: Callable[..., Page], vm_names: Callable[[], str],
    tmp_path: Path,
) -> None:
    name = vm_names()
    vm = create(api, name, disk_gib=1)
    page = signed_in_page(server)
    open_details(page, server, vm)
    expect(page.locator("#nics")).to_have_text("This VM has no network interfaces.")

    nic = tmp_path / "nic.xml"
    nic.write_text(NIC_XML)
    virsh("attach-device", name, str(nic), "--config")  # outside limen: the page learns of it by itself
    page.reload()
    page.wait_for_selector('body[data-events="live"]', timeout=15_000)
    row = page.locator("#nics tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(NIC_MAC)
    expect(row).to_contain_text("virtio")

    disk = next(d for d in vm_json(api, name)["disks"] if d["device"] == "disk")  # type: ignore[attr-defined]
    cells = page.locator('#disk-rows tr[data-target="vda"] td')
    expect(cells.nth(2)).to_have_text(str(disk["path"]))
    expect(cells.nth(3)).to_have_text("1 GiB")
    allocation = cells.nth(4).inner_text()
    assert re.fullmatch(r"\d+(\.\d)? (B|KiB|MiB)", allocation), allocation  # sparse: far below its capacity
    assert isinstance(disk["allocation_bytes"], int) and disk["allocation_bytes"] < disk["capacity_bytes"]


def test_while_the_stream_is_down_the_details_page_polls(
    server: LimenProcess, api: httpx.Client, signed_in_page: Callable[..., Page], vm_names: Callable[[], str]
) -> None:
    name = vm_names()
    vm = create(api, name, iso=DEMO_ISO)
    page = signed_in_page(server)
    page.route("**/api/events", lambda route: route.fulfill(status=503, body="down"))
    page.goto(f"{server.base_url}/vms/{vm['uuid']}")
    expect(page.locator("body")).to_have_attribute("data-events", "polling")
    expect(page.locator("#live-note")).to_have_text("· refreshing every 2 s")
    expect(page.locator("#vm-state .badge")).to_have_text("Stopped")
    virsh("start", name)
    expect(page.locator("#vm-state .badge")).to_have_text("Running", timeout=5000)  # the next 2 s poll


# -- both languages at both widths -------------------------------------------------------------------

LANGUAGES = {"en": "en-US", "ko": "ko-KR"}
UPLOADED = {"en": "Uploaded {name} (1 MiB).", "ko": "{name} 이미지를 업로드했습니다 (1 MiB)."}
WIDTHS: dict[str, ViewportSize] = {"1280": DESKTOP, "390": PHONE}
# Words that would mean an English text was left on a Korean page (the VM's and the ISO's names aside).
ENGLISH_LEFT = re.compile(
    r"\b(then|Insert|Eject|Resize|Force|Delete|Cancel|Start|Stop|Saved|left|cancelled|Result|Details|When|Who)\b")


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()


def page_in(browser: Browser, contexts: list[BrowserContext], language: str, viewport: ViewportSize) -> Page:
    context = browser.new_context(locale=LANGUAGES[language], viewport=viewport)
    context.set_default_timeout(15_000)
    contexts.append(context)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


def assert_fits(page: Page, width: int, *selectors: str) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page is wider than the window"
    for selector in selectors:
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box)


def throttle_uploads(page: Page, bytes_per_second: int) -> None:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": bytes_per_second,
    })


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_details_page_dialogs_and_upload_in_both_languages_and_widths(
    server: LimenProcess, api: httpx.Client, browser: Browser, contexts: list[BrowserContext],
    vm_names: Callable[[], str], iso_dir: Path, tmp_path: Path, language: str,
) -> None:
    name = vm_names()
    vm = create(api, name, disk_gib=1, iso=DEMO_ISO)
    assert api.post(f"/api/vms/{name}/start").status_code == 200
    upload = tmp_path / f"upload-{language}.iso"
    upload.write_bytes(os.urandom(8 * MIB))
    for suffix, viewport in WIDTHS.items():
        page = page_in(browser, contexts, language, viewport)
        sign_in(page, server.base_url)
        expect(page.locator("html")).to_have_attribute("lang", language)
        open_details(page, server, vm)
        expect(page.locator("#vm-name")).to_have_text(name)
        page.wait_for_selector('#screen-box[data-shot="loaded"]', timeout=20_000)
        expect(page.locator("#media-current")).to_contain_text(DEMO_ISO)
        assert_fits(page, viewport["width"])
        page.screenshot(path=str(ARTIFACTS / f"i18n-{language}-details-{suffix}.png"), full_page=True)
        main_text = page.locator("main").inner_text()
        if language == "ko":
            left = ENGLISH_LEFT.findall(main_text.replace(name, "").replace(DEMO_ISO, ""))
            assert not left, f"English left on the Korean details page: {left}"
            # At 390 px the tables become cards whose field names come from data-label (CSS, not innerText).
            labels = page.eval_on_selector_all("main [data-label]", "els => els.map((e) => e.dataset.label)")
            assert not [label for label in labels if ENGLISH_LEFT.search(label)], labels

        dialog = page.locator("#confirm-dialog")
        for action in ("force-stop", "reset", "delete"):
            page.locator(f'#vm-actions button[data-action="{action}"]').click()
            expect(dialog).to_be_visible()
            expect(dialog.locator(".vm-ref")).to_have_text(name)  # it names the VM
            assert_fits(page, viewport["width"], "#confirm-dialog")
            overflow = page.evaluate("() => { const d = document.getElementById('confirm-dialog');"
                                     " return d.scrollWidth - d.clientWidth; }")
            assert overflow <= 0, "the dialog's content overflows it"
            if language == "ko":
                assert not ENGLISH_LEFT.findall(dialog.inner_text().replace(name, "")), dialog.inner_text()
            save_screenshot(page, f"i18n-{language}-confirm-{action}-{suffix}")
            dialog.locator("#confirm-cancel").click()
            expect(dialog).to_be_hidden()
        assert vm_json(api, name)["state"] == "running"  # every dialog was cancelled

        # An upload under way on the ISO library page: its bar, bytes, rate and time left, and Cancel.
        page.goto(f"{server.base_url}/isos")
        throttle_uploads(page, 1_000_000)
        page.set_input_files("#upload-file", str(upload))
        page.click("#upload-start")
        figures = page.locator("#upload-figures")
        expect(figures).to_contain_text(re.compile(r"iB/s"), timeout=10_000)
        expect(page.locator("#upload-cancel")).to_be_visible()
        page.wait_for_timeout(1200)  # a second of figures: a rate and a time left
        page.locator("#upload-bar").scroll_into_view_if_needed()
        assert_fits(page, viewport["width"], "#upload-bar", "#upload-figures", "#upload-cancel")
        if language == "ko":
            assert not ENGLISH_LEFT.findall(figures.inner_text()), figures.inner_text()
        save_screenshot(page, f"i18n-{language}-upload-progress-{suffix}")
        page.click("#upload-cancel")
        expect(page.locator("#upload-result .notice")).to_be_visible()
        save_screenshot(page, f"i18n-{language}-upload-cancelled-{suffix}")
        assert not (iso_dir / upload.name).exists()

        # A small upload at full speed, to its end: the notice with its checksum, in the page's language.
        throttle_uploads(page, -1)
        small = tmp_path / f"done-{language}-{suffix}.iso"
        small.write_bytes(os.urandom(MIB))
        page.set_input_files("#upload-file", str(small))
        expect(page.locator("#upload-name")).to_have_value(small.name)
        page.click("#upload-start")
        done = page.locator("#upload-result .notice.ok")
        expect(done).to_contain_text(UPLOADED[language].format(name=small.name), timeout=30_000)
        expect(done.locator("code.sha")).to_have_text(hashlib.sha256(small.read_bytes()).hexdigest())
        save_screenshot(page, f"i18n-{language}-upload-done-{suffix}")
        assert api.delete(f"/api/isos/{small.name}").status_code in (200, 204)
        assert page.errors == []  # type: ignore[attr-defined]


def focused(page: Page) -> str:
    value: str = page.evaluate("() => { const a = document.activeElement; return a === document.body ? 'BODY'"
                               " : `${a.tagName}:${a.dataset.action || a.id || ''}`; }")
    return value


def test_the_keyboard_stays_with_a_vms_actions_after_they_ran(
    server: LimenProcess, api: httpx.Client, signed_in_page: Callable[..., Page], vm_names: Callable[[], str]
) -> None:
    """Start, Stop and the list's delete disabled or removed the button they were pressed on, and the focus
    fell to <body> (the page's start, for a keyboard or screen reader user)."""
    first, second = vm_names(), vm_names()
    create(api, first)
    create(api, second)
    page = signed_in_page(server)
    page.goto(f"{server.base_url}/vms/{first}")
    page.wait_for_selector('body[data-events="live"]', timeout=10_000)
    page.get_by_role("button", name=f"Start {first}", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.locator("#vm-state .badge")).to_have_text("Running")
    page.wait_for_timeout(500)
    assert focused(page) == "A:console", focused(page)  # the console, not Stop: Enter twice must not stop it
    page.get_by_role("button", name=f"Force stop {first}", exact=True).focus()
    page.keyboard.press("Enter")
    page.locator("#confirm-ok").press("Enter")
    expect(page.locator("#vm-state .badge")).to_have_text("Stopped")
    page.wait_for_timeout(500)
    assert focused(page) != "BODY", focused(page)

    # The list: Start keeps the keyboard in its row; a deleted row hands it to the row that took its place.
    page.goto(server.base_url + "/")
    row = page.locator(f'tr[data-vm-name="{first}"]')
    row.locator('[data-action="start"]').focus()
    page.keyboard.press("Enter")
    expect(row.locator(".badge")).to_have_text("Running")
    page.wait_for_timeout(500)
    assert page.evaluate("() => document.activeElement.closest('tr')?.dataset.vmName") == first, focused(page)
    assert api.post(f"/api/vms/{first}/stop", params={"force": "true"}).status_code == 200
    doomed = first
    names_js = "() => [...document.querySelectorAll('tr[data-vm-name]')].map(row => row.dataset.vmName)"
    neighbour = page.locator(f'tr[data-vm-name="{doomed}"]').evaluate(
        "row => (row.nextElementSibling || row.previousElementSibling).dataset.vmName")
    rows_before = page.evaluate(names_js)
    page.locator(f'tr[data-vm-name="{doomed}"] summary').focus()
    page.keyboard.press("Enter")
    page.locator(f'tr[data-vm-name="{doomed}"] [data-action="delete"]').press("Enter")
    page.locator("#delete-dialog").get_by_role("button", name="Delete VM").press("Enter")
    expect(page.locator(f'tr[data-vm-name="{doomed}"]')).to_have_count(0)
    page.wait_for_timeout(500)
    now_focused = page.evaluate("() => document.activeElement.closest('tr')?.dataset.vmName")
    rows_after = page.evaluate(names_js)
    if [name for name in rows_before if name != doomed] == rows_after:
        assert now_focused == neighbour, focused(page)
    else:  # another test's VM came or went meanwhile (one libvirt for all): a row of the list, not <body>
        assert now_focused in rows_after, (focused(page), rows_before, rows_after)
