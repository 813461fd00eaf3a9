"""Fullscreen and the pop-out console in Chromium against a real QEMU VM (the serial GRUB of
test_console_keyboard_ui): the thin toolbar's send-keys and paste reach the guest in fullscreen, and the
pop-out window takes the size of the VM's screen and types into it. What GRUB prints is read back from the
VM's serial log."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e import test_console_keyboard_ui as keyboard_ui
from tests.e2e.helpers import PHONE, save_screenshot, sign_in
from tests.e2e.test_console_keyboard_ui import SerialVm, assert_echoed, focused_id, open_console, paste, press_typed
from tests.support.server import LimenProcess

# The page's layout and keys into the guest; the database is read only at sign-in and admission.
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.same_on_any_database]

# The keyboard tests' fixtures: their limen, and a running QEMU VM whose GRUB mirrors itself to a serial log.
server = keyboard_ui.server
serial_iso = keyboard_ui.serial_iso
serial_vm = keyboard_ui.serial_vm

SCREEN_AND_BAR = """() => {
  const canvas = document.querySelector('#screen canvas');
  const bar = document.querySelector('.console-bar');
  return { screen: [canvas.width, canvas.height], bar: bar.offsetHeight,
           inner: [window.innerWidth, window.innerHeight] };
}"""


def enter_fullscreen(page: Page) -> None:
    page.get_by_role("button", name="Fullscreen", exact=True).click()
    page.wait_for_function("() => document.fullscreenElement === document.documentElement")
    expect(page.locator("body")).to_have_attribute("data-fullscreen", "on")


def test_fullscreen_keeps_a_thin_toolbar_whose_keys_and_paste_reach_the_guest(
    server: LimenProcess, serial_vm: SerialVm, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server)
    open_console(page, server, serial_vm)
    page.locator("#screen canvas").click()
    normal_bar = page.locator(".console-bar").bounding_box()
    assert normal_bar is not None

    enter_fullscreen(page)
    exit_button = page.get_by_role("button", name="Exit fullscreen")
    expect(exit_button).to_be_visible()
    expect(exit_button).to_have_attribute("aria-pressed", "true")
    for name in ("Send keys", "Paste as typing", "Clipboard"):
        expect(page.get_by_role("button", name=name)).to_be_visible()
    expect(page.locator("#vm-name")).to_be_hidden()
    expect(page.locator("#btn-popout")).to_be_hidden()
    bar = page.locator(".console-bar").bounding_box()
    assert bar is not None and bar["height"] <= 40 and bar["height"] < normal_bar["height"], bar
    save_screenshot(page, "console-fullscreen-1280")

    # The keyboard way out lands on the thin toolbar; Tab goes back to the screen.
    page.locator("#screen canvas").click()
    for key in ("Control", "Alt", "Shift"):
        page.keyboard.down(key)
    assert focused_id(page) == "btn-keys"
    for key in ("Shift", "Alt", "Control"):
        page.keyboard.up(key)
    assert page.evaluate("() => Boolean(document.fullscreenElement)"), "leaving the screen left fullscreen"

    # Send keys from the thin toolbar: "ech" + Tab completes GRUB's echo.
    page.locator("#screen canvas").click()
    before = len(serial_vm.outputs())
    press_typed(page, "ech")
    page.get_by_role("button", name="Send keys").click()
    expect(page.get_by_role("menu", name="Send keys")).to_be_visible()
    save_screenshot(page, "console-fullscreen-send-keys-1280")
    page.get_by_role("menuitem", name="Tab", exact=True).click()
    assert focused_id(page) == "CANVAS"
    press_typed(page, "tabbed\n")
    assert_echoed(serial_vm, ["tabbed"], before=before, timeout=30)

    # Paste as typing from the thin toolbar; the dialog shows over the fullscreen page.
    before = len(serial_vm.outputs())
    paste(page, "echo 'Full screen: Hi!'\n")
    assert_echoed(serial_vm, ["Full screen: Hi!"], before=before, timeout=60)
    assert page.evaluate("() => Boolean(document.fullscreenElement)")

    exit_button.click()
    page.wait_for_function("() => document.fullscreenElement === null")
    expect(page.get_by_role("button", name="Fullscreen", exact=True)).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#vm-name")).to_be_visible()
    expect(page.locator("#btn-popout")).to_be_visible()


def test_fullscreen_on_a_phone_keeps_every_button_of_the_thin_toolbar_on_screen(
    server: LimenProcess, serial_vm: SerialVm, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server, PHONE)
    open_console(page, server, serial_vm)
    enter_fullscreen(page)
    width = page.evaluate("() => window.innerWidth")
    for name in ("Send keys", "Paste as typing", "Clipboard", "Exit fullscreen"):
        box = page.get_by_role("button", name=name).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (name, box)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    save_screenshot(page, "console-fullscreen-phone")
    page.get_by_role("button", name="Exit fullscreen").click()
    page.wait_for_function("() => document.fullscreenElement === null")


@pytest.fixture
def window_context(browser: Browser) -> Iterator[BrowserContext]:
    """A context whose pages are real windows (no emulated viewport), so a pop-out has the size it asks for."""
    context = browser.new_context(no_viewport=True)
    context.set_default_timeout(15_000)
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    yield context
    context.close()
    assert not errors, errors


def test_the_pop_out_takes_the_size_of_the_vms_screen_and_types_into_it(
    server: LimenProcess, serial_vm: SerialVm, window_context: BrowserContext
) -> None:
    page = sign_in(window_context.new_page(), server.base_url)
    open_console(page, server, serial_vm)

    with window_context.expect_page() as opened:
        page.get_by_role("button", name="Pop out").click()
    popout = opened.value
    popout.wait_for_selector('body[data-console-state="connected"]', timeout=30_000)
    assert popout.url.endswith(f"/vms/{serial_vm.name}/console?popout=1")
    # The window shows the VM's screen at 1:1 under the thin toolbar.
    popout.wait_for_function(
        """() => {
          const canvas = document.querySelector('#screen canvas');
          const bar = document.querySelector('.console-bar');
          return canvas && canvas.width > 0 && window.innerWidth === canvas.width
            && window.innerHeight === canvas.height + bar.offsetHeight;
        }""",
        timeout=10_000,
    )
    sizes = popout.evaluate(SCREEN_AND_BAR)
    assert sizes["bar"] <= 40, sizes
    expect(popout.locator("#btn-popout")).to_be_hidden()
    save_screenshot(popout, "console-popout")

    # The main page hands the console over and offers to reopen it.
    expect(page.locator("#panel-title")).to_have_text("The console is open in its own window")
    expect(page.locator("body")).to_have_attribute("data-console-state", "popped-out")
    expect(page.get_by_role("button", name="Reopen the pop-out")).to_be_visible()
    save_screenshot(page, "console-popped-out-main")

    # Keys typed into the pop-out reach the guest; so does its paste as typing.
    popout.locator("#screen canvas").click()
    before = len(serial_vm.outputs())
    press_typed(popout, "echo 'Popped out!'\n")
    assert_echoed(serial_vm, ["Popped out!"], before=before, timeout=30)
    before = len(serial_vm.outputs())
    paste(popout, "echo 'Pasted out: 42'\n")
    assert_echoed(serial_vm, ["Pasted out: 42"], before=before, timeout=60)

    # Closing the pop-out is noticed; reopening gives a new one; "Show it here" brings it back.
    popout.close()
    expect(page.locator("#panel-sub")).to_have_text(
        "The VM keeps running: show the console here, or reopen the pop-out.")
    # The title and the status say it too (they still said the console was open in its own window).
    expect(page.locator("#panel-title")).to_have_text("The pop-out window is closed")
    expect(page.locator("#conn-status")).to_have_text("Pop-out closed")
    with window_context.expect_page() as reopened:
        page.get_by_role("button", name="Reopen the pop-out").click()
    again = reopened.value
    again.wait_for_selector('body[data-console-state="connected"]', timeout=30_000)
    page.get_by_role("button", name="Show it here").click()
    page.wait_for_selector('body[data-console-state="connected"]', timeout=30_000)
    if not again.is_closed():
        again.wait_for_event("close", timeout=5_000)
    page.locator("#screen canvas").click()
    before = len(serial_vm.outputs())
    press_typed(page, "echo 'Back here'\n")
    assert_echoed(serial_vm, ["Back here"], before=before, timeout=30)
