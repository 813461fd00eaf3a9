"""The console in a Korean browser against a real QEMU VM (the serial GRUB of test_console_keyboard_ui):
the page, its stages and its toolbar speak Korean, the frames stay English, and what is pasted through the
Korean toolbar arrives in the guest exactly (read back from the VM's serial log). The language menu changes
the console page's language in place: the live console and a paste being typed go on across en → ko → en."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, WebSocket, expect

from limen.console.stage_table import VNC_STAGES, VncStage
from limen.i18n import catalogue
from tests.e2e import test_console_keyboard_ui as keyboard_ui
from tests.e2e.helpers import DESKTOP, save_screenshot, sign_in
from tests.e2e.test_console_keyboard_ui import SerialVm, assert_echoed, open_console
from tests.support.server import LimenProcess

# The Korean page and keys into the guest; the database is read only at sign-in and admission.
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.same_on_any_database]

server = keyboard_ui.server
serial_iso = keyboard_ui.serial_iso
serial_vm = keyboard_ui.serial_vm

KO = catalogue("ko")
EN = catalogue("en")


@pytest.fixture
def korean(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(locale="ko-KR", viewport=DESKTOP)
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.mark.timeout(240)
def test_a_korean_console_on_a_real_vm_speaks_korean_and_types_exactly(
    server: LimenProcess, serial_vm: SerialVm, korean: BrowserContext
) -> None:
    page = korean.new_page()
    frames: list[dict[str, object]] = []

    def watch(socket: WebSocket) -> None:
        socket.on("framereceived", lambda payload: frames.append(json.loads(payload))
                  if isinstance(payload, str) and payload.startswith("{") else None)

    page.on("websocket", watch)
    sign_in(page, server.base_url)
    open_console(page, server, serial_vm)

    expect(page.locator("html")).to_have_attribute("lang", "ko")
    expect(page.locator("#btn-paste")).to_have_text(KO["console.paste"])
    expect(page.locator("#btn-connect")).to_have_text(KO["console.disconnect"])
    shown = page.locator('#stages .stage[data-source="server"] .msg').all_text_contents()
    assert KO["stage_status.check_vm"] in shown, shown
    assert KO["stage_status.proxy"] in shown, shown
    # The frames themselves keep the seed's English texts, byte for byte.
    statuses = [frame["message"] for frame in frames if frame.get("type") == "status"]
    assert statuses[0] == VNC_STAGES[VncStage.CHECK_VM].status
    assert statuses[-1] == VNC_STAGES[VncStage.PROXY].status
    save_screenshot(page, "console-korean-qemu-1280")

    # Paste through the Korean toolbar: the guest gets exactly this (Shift for the capitals and the "!").
    page.locator("#screen canvas").click()
    before = len(serial_vm.outputs())
    page.get_by_role("button", name=KO["console.paste"]).click()
    page.get_by_label(KO["console.paste_label"]).fill("echo 'Hi! Korean UI'\n")
    page.get_by_role("button", name=KO["console.type_it"], exact=True).click()
    assert_echoed(serial_vm, ["Hi! Korean UI"], before=before, timeout=90)


@pytest.mark.timeout(240)
def test_switching_the_language_keeps_the_console_and_the_paste_being_typed(
    server: LimenProcess, serial_vm: SerialVm, browser: Browser
) -> None:
    context = browser.new_context(locale="en-US", viewport=DESKTOP)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        opened: list[str] = []
        closed: list[str] = []

        def watch(socket: WebSocket) -> None:
            opened.append(socket.url)
            socket.on("close", lambda gone: closed.append(gone.url))

        page.on("websocket", watch)
        sign_in(page, server.base_url)
        open_console(page, server, serial_vm)
        page.evaluate("window.limenPageOfThisTest = true")  # gone if the page reloads
        sockets_before = len(opened)

        # A paste long enough to be still typing while the language changes twice.
        words = "the console stays across ko and en, typing on"
        page.locator("#screen canvas").click()
        before = len(serial_vm.outputs())
        page.get_by_role("button", name=EN["console.paste"]).click()
        pasted = f"echo '{words}'\n"
        page.get_by_label(EN["console.paste_label"]).fill(pasted)
        page.get_by_role("button", name=EN["console.type_it"], exact=True).click()

        page.select_option("#language-menu", "ko")
        expect(page.locator("html")).to_have_attribute("lang", "ko")
        expect(page.locator("#btn-paste")).to_have_text(KO["console.paste"])
        expect(page.locator("#tab-serial")).to_have_text(KO["console.tab_serial"])
        expect(page.locator("#btn-connect")).to_have_text(KO["console.disconnect"])
        expect(page.locator("#btn-scale")).to_have_attribute("title", KO["console.scale_title"])
        expect(page.locator("#vm-state .badge")).to_have_text(KO["state.running"])
        expect(page.locator("#language-menu")).to_have_value("ko")
        save_screenshot(page, "console-language-switched-ko-1280")

        page.select_option("#language-menu", "en")
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("#btn-paste")).to_have_text(EN["console.paste"])
        expect(page.locator("#btn-connect")).to_have_text(EN["console.disconnect"])
        expect(page.locator("#vm-state .badge")).to_have_text(EN["state.running"])

        assert_echoed(serial_vm, [words], before=before, timeout=90)
        # The paste's result stays said (it read "Connected · keys go to the VM …": the end of the typing
        # took the focus back to the screen), and the language menu the person is on keeps the focus.
        expect(page.locator("body")).to_have_attribute("data-typed", "1")
        expect(page.locator("#conn-status")).to_have_text(EN["console.typed"].format(count=len(pasted)))
        expect(page.locator("#language-menu")).to_be_focused()
        assert page.evaluate("window.limenPageOfThisTest === true"), "the page reloaded"
        assert page.locator("body").get_attribute("data-console-state") == "connected"
        assert len(opened) == sockets_before and closed == [], (opened, closed)
    finally:
        context.close()
