"""The console's clipboard panel in Chromium, against a real ``limen serve`` whose VM (libvirt's test driver)
points its VNC graphics at a fake RFB server: GRUB has no clipboard, so the VNC server's side is played by
the fake, which sends a ServerCutText and records the ClientCutText it gets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import PHONE, save_screenshot, start_limen
from tests.support.console import FakeDomain, driver_uri
from tests.support.fake_vnc import RfbServer
from tests.support.server import LimenProcess

# Text between the page and the guest; the database is read only at sign-in and admission.
pytestmark = [pytest.mark.e2e, pytest.mark.same_on_any_database]

VM_CLIPBOARD = "copied in the VM: Grüße, 100 % sure"


class ThreadedRfbServer:
    """An :class:`RfbServer` on its own event loop in a thread, for the synchronous browser tests."""

    def __init__(self, server: RfbServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> RfbServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.__aenter__(), self._loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def vnc() -> Iterator[RfbServer]:
    fake = RfbServer(server_cut_text=VM_CLIPBOARD.encode("latin-1"), update_interval=0.1)
    with ThreadedRfbServer(fake) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, vnc: RfbServer) -> Iterator[LimenProcess]:
    tmp = tmp_path_factory.mktemp("limen-clipboard")
    process = start_limen(tmp, LIMEN_LIBVIRT_URI=driver_uri(Path(tmp), [FakeDomain("limen-test-clip", vnc=vnc.port)]))
    yield process
    process.stop()


def test_clipboard_panel_shows_the_vms_text_copies_it_and_sends_text_to_the_vm(
    server: LimenProcess, vnc: RfbServer, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    page.goto(f"{server.base_url}/vms/limen-test-clip/console")
    page.wait_for_selector('body[data-console-state="connected"]', timeout=20_000)

    # ServerCutText: the toolbar button says there is something new; the panel shows it.
    button = page.locator("#btn-clipboard")
    expect(button).to_have_text("Clipboard •")
    button.click()
    dialog = page.get_by_role("dialog", name="Clipboard")
    expect(dialog).to_be_visible()
    expect(page.get_by_role("textbox", name="From the VM")).to_have_value(VM_CLIPBOARD)
    expect(button).to_have_text("Clipboard")
    expect(page.get_by_role("button", name="Copy", exact=True)).to_be_focused()
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.locator("#clip-copy-status")).to_have_text("Copied.")
    assert page.evaluate("() => navigator.clipboard.readText()") == VM_CLIPBOARD

    # ClientCutText: the VM's clipboard gets the text; nothing is typed.
    keys_before = len(vnc.key_events)
    page.get_by_label("Text for the VM's clipboard").fill("to the VM: café")
    page.get_by_role("button", name="Send to VM clipboard").click()
    expect(page.locator("#clip-send-status")).to_have_text("Sent 15 characters to the VM's clipboard.")
    for _ in range(50):
        if vnc.cut_texts:
            break
        page.wait_for_timeout(100)
    assert vnc.cut_texts == ["to the VM: café".encode("latin-1")]
    assert len(vnc.key_events) == keys_before

    # RFB's clipboard is Latin-1 unless the server takes UTF-8 (this one does not): "한글" arrived as "??"
    # while the page said it was sent. Refused, naming what would be lost.
    page.get_by_label("Text for the VM's clipboard").fill("héllo 한글")
    page.get_by_role("button", name="Send to VM clipboard").click()
    expect(page.locator("#clip-send-status")).to_have_text(
        "Nothing was sent: this VM's VNC server takes only Latin-1 text in its clipboard, and 2 characters "
        "would arrive as “?”: 한 (U+D55C), 글 (U+AE00).")
    page.wait_for_timeout(300)
    assert vnc.cut_texts == ["to the VM: café".encode("latin-1")]

    # Over the bound, a text is refused whole and said so (the textarea's maxlength cut it silently).
    page.get_by_label("Text for the VM's clipboard").fill("y" * 100_001)
    page.get_by_role("button", name="Send to VM clipboard").click()
    expect(page.locator("#clip-send-status")).to_have_text(
        "Nothing was sent: this is 100,001 characters, and the VM's clipboard takes at most 100,000 at once.")
    expect(page.get_by_label("Text for the VM's clipboard")).to_have_attribute("aria-invalid", "true")
    page.wait_for_timeout(300)
    assert vnc.cut_texts == ["to the VM: café".encode("latin-1")]
    page.get_by_label("Text for the VM's clipboard").fill("")
    save_screenshot(page, "console-clipboard-1280")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    save_screenshot(page, "console-clipboard-phone")

    # Escape closes the panel; the toolbar is as before.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    save_screenshot(page, "console-toolbar-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.wait_for_timeout(300)
    save_screenshot(page, "console-toolbar-1280")

    # Paste as typing: a text longer than one paste may type is refused whole, nothing typed (cut before).
    keys_before = len(vnc.key_events)
    page.get_by_role("button", name="Paste as typing").click()
    page.get_by_label("Text to type").fill("echo " + "z" * 10_000)
    page.get_by_role("button", name="Type it").click()
    expect(page.locator("#paste-error")).to_have_text(
        "Nothing was typed: this is 10,005 characters, and at most 10,000 are typed at once. Paste it in parts.")
    expect(page.get_by_label("Text to type")).to_be_focused()
    page.wait_for_timeout(300)
    assert len(vnc.key_events) == keys_before
    page.get_by_role("button", name="Cancel").click()
