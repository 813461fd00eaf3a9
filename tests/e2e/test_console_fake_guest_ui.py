"""The console page's keyboard paths in Chromium against a real ``limen serve`` whose VM (libvirt's test
driver) points its VNC graphics at a fake RFB server that records the key events it gets; the Serial tab's
WebSocket is played in the page by a fake that records what the terminal sends. No guest runs: what is
checked is what the page sends, key by key."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.helpers import PHONE, save_screenshot, sign_in, start_limen
from tests.e2e.test_console_clipboard_ui import ThreadedRfbServer
from tests.support.console import FakeDomain, driver_uri
from tests.support.fake_vnc import RfbServer
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.same_on_any_database]

VM = "limen-test-keys"

# The serial console's WebSocket, played in the page: it says "connected" as the server does and keeps what
# the terminal sends in window.serialSent. Every other WebSocket (the screen's) is the browser's own.
FAKE_SERIAL_SOCKET = """
(() => {
  const Real = window.WebSocket;
  window.serialSent = [];
  class FakeSerial extends EventTarget {
    constructor(url) {
      super();
      this.url = url;
      this.readyState = 0;
      this.binaryType = "arraybuffer";
      setTimeout(() => {
        this.readyState = 1;
        this.dispatchEvent(new Event("open"));
        const frame = { type: "status", message: "Serial console connected", stage: "proxy" };
        this.dispatchEvent(new MessageEvent("message", { data: JSON.stringify(frame) }));
      }, 50);
    }
    send(data) { window.serialSent.push(String(data)); }
    close() { this.readyState = 3; }
  }
  window.WebSocket = function WebSocket(url, protocols) {
    return String(url).includes("/serial") ? new FakeSerial(url) : new Real(url, protocols);
  };
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();
"""


@pytest.fixture(scope="module")
def vnc() -> Iterator[RfbServer]:
    with ThreadedRfbServer(RfbServer(update_interval=0.1)) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, vnc: RfbServer) -> Iterator[LimenProcess]:
    tmp = tmp_path_factory.mktemp("limen-fake-guest")
    process = start_limen(tmp, LIMEN_LIBVIRT_URI=driver_uri(Path(tmp), [FakeDomain(VM, vnc=vnc.port)]))
    yield process
    process.stop()


def open_console(page: Page, server: LimenProcess, query: str = "") -> None:
    page.goto(f"{server.base_url}/vms/{VM}/console{query}")
    page.wait_for_selector('body[data-console-state="connected"]', timeout=20_000)


def serial_sent(page: Page) -> str:
    return "".join(page.evaluate("window.serialSent"))


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


def test_ctrl_shift_v_in_the_serial_tab_pastes_once(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # xterm's key handler returning false did not cancel the browser's own "paste as plain text": the
    # terminal got a native paste and the page's paste sent the clipboard again, so the guest got it twice.
    page = signed_in_page(server)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    page.add_init_script(FAKE_SERIAL_SOCKET)
    open_console(page, server)
    page.click("#tab-serial")
    expect(page.locator("#serial-status")).to_contain_text("Serial console connected", timeout=20_000)
    page.evaluate("navigator.clipboard.writeText('echo once')")
    page.locator("#serial-term .xterm-helper-textarea").focus()
    page.keyboard.press("Control+Shift+V")
    wait_until(lambda: "echo once" in serial_sent(page), "the pasted text")
    page.wait_for_timeout(500)  # a second copy would come right after
    assert serial_sent(page) == "echo once"


def keysym_state(vnc: RfbServer, keysym: int) -> bool | None:
    """Whether the guest last got ``keysym`` pressed (True) or released (False); None: never."""
    events = [down for down, key in list(vnc.key_events) if key == keysym]
    return events[-1] if events else None


def test_a_key_held_while_a_toolbar_button_takes_the_focus_is_released(
    server: LimenProcess, vnc: RfbServer, signed_in_page: Callable[..., Page]
) -> None:
    # noVNC releases held keys only when the window loses the focus: a click on the toolbar with a key held
    # (Shift, an arrow) left it pressed in the guest, which then repeated it or typed capitals.
    page = signed_in_page(server)
    open_console(page, server)
    page.locator("#screen canvas").click()
    page.keyboard.down("Shift")
    page.keyboard.down("ArrowRight")
    wait_until(lambda: keysym_state(vnc, 0xFF53) is True, "ArrowRight pressed")  # XK_Right
    assert keysym_state(vnc, 0xFFE1) is True  # XK_Shift_L
    page.locator("#btn-scale").click()
    wait_until(lambda: keysym_state(vnc, 0xFF53) is False, "ArrowRight released", timeout=3.0)
    assert keysym_state(vnc, 0xFFE1) is False
    page.keyboard.up("ArrowRight")
    page.keyboard.up("Shift")


XK_SHIFT_L = 0xFFE1


def test_paste_as_typing_follows_the_guests_caps_lock(
    server: LimenProcess, vnc: RfbServer, signed_in_page: Callable[..., Page]
) -> None:
    # With the guest's Caps Lock LED on, "Hi!" typed as Shift+H, i, Shift+1 arrived as "hI!": the guest
    # applies Caps Lock to letters. Now letters take Shift the other way round while QEMU says it is on.
    vnc.led_state = 4  # Caps Lock on
    try:
        page = signed_in_page(server)
        open_console(page, server)
        page.wait_for_timeout(500)  # a few updates: the LED state has come
        before = len(vnc.key_events)
        page.get_by_role("button", name="Paste as typing").click()
        page.get_by_label("Text to type").fill("Hi!")
        page.get_by_role("button", name="Type it").click()
        expect(page.locator("#conn-status")).to_have_text("Connected · typed 3 characters", timeout=10_000)
        wait_until(lambda: len(vnc.key_events) >= before + 10, "the keys at the VNC server", timeout=5.0)
        page.wait_for_timeout(200)
        assert vnc.key_events[before:] == [
            (True, ord("H")), (False, ord("H")),
            (True, XK_SHIFT_L), (True, ord("i")), (False, ord("i")), (False, XK_SHIFT_L),
            (True, XK_SHIFT_L), (True, ord("!")), (False, ord("!")), (False, XK_SHIFT_L),
        ]
    finally:
        vnc.led_state = 0


def typed_xs(vnc: RfbServer, since: int) -> int:
    return sum(1 for down, key in list(vnc.key_events)[since:] if down and key == ord("x"))


def start_typing(page: Page, text: str) -> None:
    page.get_by_role("button", name="Paste as typing").click()
    page.get_by_label("Text to type").fill(text)
    page.get_by_role("button", name="Type it").click()


def test_a_paste_being_typed_can_be_stopped_and_an_end_says_how_far_it_got(
    server: LimenProcess, vnc: RfbServer, signed_in_page: Callable[..., Page]
) -> None:
    # Only a newer paste or the console's end stopped a paste, and silently: 10,000 characters into a prompt
    # that echoes nothing ran for most of an hour. While it types, "Paste as typing" is its Stop.
    page = signed_in_page(server)
    open_console(page, server)
    before = len(vnc.key_events)
    start_typing(page, "x" * 200)
    stop = page.get_by_role("button", name="Stop typing")
    expect(stop).to_be_visible()
    wait_until(lambda: typed_xs(vnc, before) >= 5, "five keys typed")
    stop.click()
    status = page.locator("#conn-status")
    expect(status).to_have_text(re.compile(r"^Connected · typing stopped after \d+ of 200 characters$"))
    page.wait_for_timeout(1000)  # a key on its way arrives; none after it
    sent = int(re.findall(r"\d+", status.inner_text())[0])
    assert 5 <= sent < 200
    assert typed_xs(vnc, before) == sent
    expect(page.get_by_role("button", name="Paste as typing")).to_have_attribute("aria-haspopup", "dialog")

    # Cut short by the console's end (here the Disconnect button): the panel the end shows says so.
    before = len(vnc.key_events)
    start_typing(page, "x" * 150)
    wait_until(lambda: typed_xs(vnc, before) >= 3, "three keys typed")
    page.locator("#btn-connect").click()
    cut = page.locator("#typing-cut")
    expect(cut).to_have_text(re.compile(r"^Typing stopped after \d+ of 150 characters: the rest was not typed\.$"))
    page.wait_for_timeout(500)
    # The count is what the page sent; the last key, sent as Disconnect was pressed, may not reach the VNC
    # server (the session's proxy ends with the browser's close).
    sent = int(re.findall(r"\d+", cut.inner_text())[0])
    assert sent - 1 <= typed_xs(vnc, before) <= sent
    expect(page.locator("#btn-paste")).to_have_text("Paste as typing")


def test_a_touch_device_has_a_keyboard_button_whose_input_goes_to_the_vm(
    server: LimenProcess, vnc: RfbServer, browser: Browser, signed_in_page: Callable[..., Page]
) -> None:
    # Tapping the screen focuses noVNC's canvas, which opens no on-screen keyboard: a phone could not type.
    desktop = signed_in_page(server)
    open_console(desktop, server)
    expect(desktop.locator("#btn-keyboard")).to_be_hidden()
    desktop.close()

    context = browser.new_context(viewport=PHONE, has_touch=True, is_mobile=True)
    try:
        page = sign_in(context.new_page(), server.base_url)
        open_console(page, server)
        keyboard = page.get_by_role("button", name="Keyboard", exact=True)
        expect(keyboard).to_be_visible()
        save_screenshot(page, "console-touch-keyboard-phone")
        before = len(vnc.key_events)
        keyboard.tap()
        expect(page.locator("#touch-input")).to_be_focused()
        page.keyboard.type("Hi")
        page.keyboard.press("Backspace")
        page.keyboard.press("Enter")
        wait_until(lambda: len(vnc.key_events) >= before + 10, "the keys at the VNC server", timeout=5.0)
        page.wait_for_timeout(300)
        assert vnc.key_events[before:] == [
            (True, XK_SHIFT_L), (True, ord("H")), (False, ord("H")), (False, XK_SHIFT_L),
            (True, ord("i")), (False, ord("i")),
            (True, 0xFF08), (False, 0xFF08),  # XK_BackSpace
            (True, 0xFF0D), (False, 0xFF0D),  # XK_Return
        ]
        # What no US key types is not sent, and said so.
        page.keyboard.insert_text("é")
        expect(page.locator("#conn-status")).to_have_text("Not sent: é (U+00E9) (no key on a US keyboard types it)")
    finally:
        context.close()
