"""The console page's Serial tab (xterm.js) against a real ``limen serve`` and a real QEMU VM whose GRUB
talks on the serial port: the prompt shows, typing reaches GRUB, the terminal follows the window's size,
and the screen's VNC console keeps running beside it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import httpx
import libvirt
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import DEMO_ISO, QEMU_URI
from tests.e2e.helpers import PHONE, delete_through_limen, save_screenshot, start_limen
from tests.support.serial import serial_demo_iso_dir
from tests.support.server import LimenProcess

# The serial transport in the browser: the database is reached only by the sign-in, the ticket and the row.
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.same_on_any_database]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-serial-ui"), LIMEN_ISO_DIR=str(serial_demo_iso_dir()))
    yield process
    process.stop()


@pytest.fixture
def vm_uuid(server: LimenProcess) -> Iterator[str]:
    name = f"limen-test-{uuid.uuid4().hex[:10]}"
    try:
        with httpx.Client(base_url=server.base_url, timeout=30, headers=server.auth_headers) as api:
            created = api.post("/api/vms", json={"name": name, "vcpus": 1, "memory_mib": 64, "iso": DEMO_ISO})
            assert created.status_code == 201, created.text
            yield created.json()["uuid"]
    finally:
        delete_through_limen(server, name)


def terminal_rows(page: Page) -> list[str]:
    rows: list[str] = page.locator("#serial-term .xterm-rows > div").all_text_contents()
    return [row.replace("\xa0", " ").rstrip() for row in rows]


def wait_for_row(page: Page, wanted: Callable[[str], bool], timeout_ms: int = 30_000) -> None:
    waited = 0
    while not any(wanted(row) for row in terminal_rows(page)):
        assert waited < timeout_ms, f"no such row in {terminal_rows(page)}"
        page.wait_for_timeout(200)
        waited += 200


def test_serial_tab_shows_grub_and_echoes_what_is_typed(
    server: LimenProcess, signed_in_page: Callable[..., Page], vm_uuid: str
) -> None:
    page = signed_in_page(server)
    page.goto(f"{server.base_url}/vms/{vm_uuid}/console")
    page.wait_for_selector('body[data-console-state="connected"]', timeout=40_000)  # the screen, auto-started
    page.click("#tab-serial")
    # "connected", or the hint below if GRUB had said all it says before the session opened
    expect(page.locator("#serial-status")).to_contain_text("Serial console connected", timeout=20_000)
    expect(page.locator("#screen-wrap")).to_be_hidden()
    page.locator("#serial-term .xterm-helper-textarea").focus()
    page.keyboard.press("Enter")  # GRUB redraws its prompt on the serial port
    wait_for_row(page, lambda row: row.startswith("grub>"))
    expect(page.locator("#serial-status")).to_have_text("Serial console connected")
    page.keyboard.type("echo limen")
    page.keyboard.press("Enter")
    wait_for_row(page, lambda row: row == "limen")
    save_screenshot(page, "console-serial-1280")
    # Ctrl+Alt+Shift leaves the terminal as it leaves the screen: Tab and Esc are the guest's, and without it
    # the keyboard was trapped in the terminal. Tab goes on from the Serial tab; the guest got no key of it.
    for key in ("Control", "Alt", "Shift"):
        page.keyboard.down(key)
    expect(page.locator("#tab-serial")).to_be_focused()
    for key in ("Shift", "Alt", "Control"):
        page.keyboard.up(key)
    page.keyboard.press("Tab")
    expect(page.locator("#serial-term .xterm-helper-textarea")).not_to_be_focused()
    page.locator("#serial-term .xterm-helper-textarea").focus()

    # Copy: the selection goes to the clipboard; Paste: the clipboard goes in as typed.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    page.evaluate("navigator.clipboard.writeText('echo pasted')")
    page.click("#serial-paste")
    expect(page.locator("#serial-term .xterm-helper-textarea")).to_be_focused()  # Enter goes to the guest
    page.keyboard.press("Enter")
    wait_for_row(page, lambda row: row == "pasted")
    page.evaluate("navigator.clipboard.writeText('')")
    # xterm's own selection: a double click on the row GRUB printed for `echo limen` selects its word (not
    # GRUB's banner: it may have been printed before this session opened)
    row = page.locator("#serial-term .xterm-rows > div", has_text=re.compile(r"^\s*limen\s*$")).first.bounding_box()
    assert row is not None
    page.mouse.dblclick(row["x"] + 12, row["y"] + row["height"] / 2)
    page.keyboard.press("Control+Shift+C")
    page.wait_for_timeout(300)
    assert page.evaluate("navigator.clipboard.readText()") == "limen"

    # The terminal follows the window (the fit add-on): a smaller window, fewer columns and rows.
    screen = page.locator("#serial-term .xterm-screen")
    before = screen.bounding_box()
    rows_before = page.locator("#serial-term .xterm-rows > div").count()
    page.set_viewport_size({"width": 700, "height": 500})
    page.wait_for_timeout(500)
    after = screen.bounding_box()
    assert before is not None and after is not None and after["width"] < before["width"] <= 1280
    assert page.locator("#serial-term .xterm-rows > div").count() < rows_before
    assert after["width"] <= 700

    # The screen's console stayed connected all along.
    page.click("#tab-screen")
    expect(page.locator("#screen-wrap")).to_be_visible()
    assert page.locator("body").get_attribute("data-console-state") == "connected"

    # A second window takes the serial port over (one reader at a time). GRUB, idle at its prompt, sends
    # nothing: the black terminal says why instead of looking hung, until the guest's first byte.
    other = signed_in_page(server)
    other.goto(f"{server.base_url}/vms/{vm_uuid}/console?tab=serial")
    expect(other.locator("#serial-reconnect")).to_have_text("Take over", timeout=20_000)
    other.click("#serial-reconnect")
    expect(other.locator("#serial-status")).to_have_text(
        "Serial console connected · nothing from the VM yet: press Enter for a prompt", timeout=20_000)
    save_screenshot(other, "console-serial-quiet-1280")
    other.locator("#serial-term .xterm-helper-textarea").focus()
    other.keyboard.press("Enter")
    wait_for_row(other, lambda row: row.startswith("grub>"))
    expect(other.locator("#serial-status")).to_have_text("Serial console connected")

    # The audit page tells the serial session from the screen's.
    page.goto(f"{server.base_url}/audit")
    expect(page.locator("tr", has_text="· serial").first).to_be_visible(timeout=10_000)

    # Stopped by other hands: the serial tab's way back says it starts the VM, and showing the tab again does
    # not (it reconnected, and connecting started the VM unsaid), nor does the toolbar's button.
    stopped = httpx.post(f"{server.base_url}/api/vms/{vm_uuid}/stop", params={"force": "true"},
                         headers=server.auth_headers, timeout=30)
    assert stopped.status_code == 200, stopped.text
    expect(other.locator("#serial-reconnect")).to_have_text("Start VM and connect", timeout=20_000)
    expect(other.locator("#btn-connect")).to_have_text("Start VM and connect", timeout=20_000)
    other.click("#tab-screen")
    other.click("#tab-serial")
    other.wait_for_timeout(1500)
    state = httpx.get(f"{server.base_url}/api/vms/{vm_uuid}", headers=server.auth_headers, timeout=30).json()
    assert state["state"] == "stopped", state
    expect(other.locator("#serial-reconnect")).to_have_text("Start VM and connect")


def test_a_vm_without_graphics_is_reached_through_its_serial_console(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # Servers and cloud images often have a serial console and no screen: their Console links open the Serial
    # tab (they were disabled: "no graphical console"), and the Screen tab points there instead of to "Retry".
    name = f"limen-test-{uuid.uuid4().hex[:10]}"
    conn = libvirt.open(QEMU_URI)
    try:
        conn.defineXML(f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='cdrom'/></os>
  <devices>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='{serial_demo_iso_dir() / DEMO_ISO}'/><target dev='hdc' bus='ide'/><readonly/></disk>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <video><model type='none'/></video>
  </devices>
</domain>""").create()
    finally:
        conn.close()
    try:
        page = signed_in_page(server)
        page.goto(f"{server.base_url}/")
        link = page.locator(f'tr[data-vm-name="{name}"] [data-action="console"]')
        expect(link).to_have_attribute("title", "No graphical console: this opens its serial console")
        expect(link).not_to_have_attribute("aria-disabled", "true")
        link.click()
        page.wait_for_url(re.compile(r"/console\?tab=serial$"))
        expect(page.locator("#serial-status")).to_contain_text("Serial console connected", timeout=20_000)
        page.locator("#serial-term .xterm-helper-textarea").focus()
        page.keyboard.press("Enter")
        wait_for_row(page, lambda row: row.startswith("grub>"))
        save_screenshot(page, "console-serial-only-1280")

        # The console page opened without the tab asked for: the Serial tab all the same; the Screen tab says
        # there is no screen, and its one way on is the serial console.
        page.goto(f"{server.base_url}/vms/{name}/console")
        expect(page.locator("body")).to_have_attribute("data-console-tab", "serial", timeout=10_000)
        page.click("#tab-screen")
        box = page.locator("#panel-extra .error-box")
        expect(box).to_have_attribute("data-code", "VNC_NOT_CONFIGURED", timeout=20_000)
        expect(page.get_by_role("button", name="Retry", exact=True)).to_have_count(0)
        page.get_by_role("button", name="Open the serial console").click()
        expect(page.locator("body")).to_have_attribute("data-console-tab", "serial")
    finally:
        delete_through_limen(server, name)


def test_the_screen_and_serial_tabs_move_with_the_arrow_keys(
    server: LimenProcess, signed_in_page: Callable[..., Page], vm_uuid: str
) -> None:
    """WAI-ARIA's tabs pattern: Left/Right (round) and Home/End select the tab they reach and keep the focus
    on it; only the selected tab is in the Tab order, so one Tab goes on to the toolbar."""
    page = signed_in_page(server)
    page.goto(f"{server.base_url}/vms/{vm_uuid}/console")
    page.wait_for_selector('body[data-console-state="connected"]', timeout=40_000)
    screen, serial = page.locator("#tab-screen"), page.locator("#tab-serial")
    expect(serial).to_have_attribute("tabindex", "-1")
    screen.focus()
    page.keyboard.press("ArrowRight")
    expect(serial).to_be_focused()
    expect(serial).to_have_attribute("aria-selected", "true")
    expect(screen).to_have_attribute("aria-selected", "false")
    expect(page.locator("#serial-wrap")).to_be_visible()
    expect(page.locator("#serial-status")).to_contain_text("Serial console connected", timeout=20_000)
    expect(serial).to_be_focused()  # the terminal, once connected, did not take the focus from the tab
    expect(serial).to_have_attribute("tabindex", "0")
    expect(screen).to_have_attribute("tabindex", "-1")
    page.keyboard.press("ArrowRight")  # round the end
    expect(screen).to_be_focused()
    expect(page.locator("#screen-wrap")).to_be_visible()
    page.keyboard.press("End")
    expect(serial).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Home")
    expect(screen).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowLeft")
    expect(serial).to_be_focused()
    page.keyboard.press("Tab")  # past the other tab, to the toolbar
    expect(page.locator(".toolbar :focus")).to_have_count(1)
    page.keyboard.press("Shift+Tab")
    save_screenshot(page, "console-tabs-keyboard-1280")
    phone = signed_in_page(server, PHONE)
    phone.context.add_cookies([{"name": "limen_lang", "value": "ko", "url": server.base_url}])
    phone.goto(f"{server.base_url}/vms/{vm_uuid}/console")
    phone.wait_for_selector('body[data-console-state="connected"]', timeout=40_000)
    phone.locator("#tab-screen").focus()
    phone.keyboard.press("End")
    expect(phone.get_by_role("tab", name="시리얼", exact=False)).to_have_attribute("aria-selected", "true")
    save_screenshot(phone, "console-tabs-keyboard-ko-390")


def test_the_serial_terminal_shows_underscores(server: LimenProcess, new_page: Callable[..., Page]) -> None:
    """`_` sits below the baseline: a row only as tall as xterm.js measures the font cut it off at 14 px on a
    display of scale 1, so `a_b` looked exactly like `a b`. The page's own terminal options draw a row of
    each; their pictures must differ."""
    page = new_page()
    page.goto(f"{server.base_url}/login")
    page.evaluate(
        """async () => {
          const css = document.createElement("link");
          css.rel = "stylesheet";
          css.href = "/static/xterm/xterm/css/xterm.css";
          document.head.append(css);
          await new Promise((resolve) => css.addEventListener("load", resolve));
          const { Terminal } = await import("/static/xterm/xterm/lib/xterm.mjs");
          const { TERMINAL_OPTIONS } = await import("/static/js/serial-console.js");
          for (const [id, text] of [["with-underscore", "a_b"], ["with-space", "a b"]]) {
            const box = Object.assign(document.createElement("div"), { id });
            box.style.cssText = "width: 200px; margin: 8px";
            document.body.append(box);
            const term = new Terminal({ ...TERMINAL_OPTIONS, rows: 2, cols: 10, cursorBlink: false });
            term.open(box);
            await new Promise((resolve) => term.write(`${text}\\r\\n${text}`, resolve));
          }
          await new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
        }"""
    )
    rows = page.locator("#with-underscore .xterm-rows"), page.locator("#with-space .xterm-rows")
    expect(rows[0]).to_have_text("a_ba_b")
    assert rows[0].screenshot() != rows[1].screenshot()
