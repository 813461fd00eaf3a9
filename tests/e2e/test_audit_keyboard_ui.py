"""The audit page in real Chromium, by keyboard: its rows are drawn anew every 3 s and after "End session";
the focus stays on the row's button across the redraws, and after the session ended (its button gone) it
goes to the nearest row's control or the table, not to <body> (the top of the page for a keyboard user)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from tests.e2e.helpers import hold_requests, new_running_vm, save_screenshot, sign_in, start_limen, wait_for_arrival
from tests.support.access import TEST_ADMIN
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REFRESH_S = 3.0  # audit.js REFRESH_MS


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path)
    yield process
    process.stop()


@pytest.fixture
def running_vm(server: LimenProcess) -> Iterator[str]:
    with new_running_vm(server) as name:
        yield name


@contextmanager
def live_console(server: LimenProcess, vm: str) -> Iterator[None]:
    """A console of ``vm`` open (past its status frames: its first screen bytes came) for the block."""
    with connect(f"{server.ws_url}/api/vms/{vm}/console", additional_headers=server.auth_headers) as ws:
        while isinstance(frame := ws.recv(timeout=30), str):
            json.loads(frame)
        yield


def focused(page: Page) -> str:
    return str(page.evaluate("document.activeElement === document.body ? 'BODY' : "
                             "(document.activeElement.id || document.activeElement.dataset.action || "
                             "document.activeElement.tagName)"))


def test_the_keyboard_keeps_its_place_across_the_refresh_and_after_end_session(
    server: LimenProcess, running_vm: str, new_page: Callable[..., Page]
) -> None:
    with live_console(server, running_vm):
        page = sign_in(new_page(), server.base_url, next_path="/audit")
        button = page.locator('#session-rows tr[data-live="true"] button[data-action="terminate"]')
        expect(button).to_have_count(1)
        button.focus()
        page.wait_for_timeout(REFRESH_S * 1000 * 1.5)  # at least one redraw of the rows
        assert focused(page) == "terminate"
        # Asked first, as Force stop, delete and revoke are (it ended the console at once); Escape keeps it,
        # and the focus comes back to the button although a redraw replaced it meanwhile.
        page.keyboard.press("Enter")
        dialog = page.locator("#end-dialog")
        expect(dialog).to_be_visible()
        expect(page.locator("#end-text")).to_have_text(
            f"End the console session of {TEST_ADMIN} on {running_vm}? Their console closes at once.")
        save_screenshot(page, "audit-end-session-dialog-1280")
        page.wait_for_timeout(REFRESH_S * 1000 * 1.2)
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        assert focused(page) == "terminate"
        page.wait_for_timeout(REFRESH_S * 1000 * 1.2)
        expect(page.locator("#session-rows tr", has_text=running_vm)).to_have_attribute("data-live", "true")
        assert focused(page) == "terminate"
        page.keyboard.press("Enter")
        expect(page.locator("#end-cancel")).to_be_focused()  # the safe choice first
        page.keyboard.press("Tab")
        expect(page.locator("#end-confirm")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#session-rows tr", has_text=running_vm)).to_have_attribute("data-live", "false")
        page.wait_for_timeout(REFRESH_S * 1000 * 1.2)
        assert focused(page) == "session-table"  # no other row has a control: the table, named by its caption


def test_end_session_stays_pressed_while_on_its_way_and_its_failure_stays_on_screen(
    server: LimenProcess, running_vm: str, new_page: Callable[..., Page]
) -> None:
    # The rows are drawn anew every 3 s: the button came back enabled while the request was on its way (a
    # second press sent a second one), and a failure, written in the lists' error box, was emptied by the
    # read right after it.
    with live_console(server, running_vm):
        page = sign_in(new_page(), server.base_url, next_path="/audit")
        held = hold_requests(page, "**/api/console-sessions/*")
        button = page.locator('#session-rows tr[data-live="true"] button[data-action="terminate"]')
        button.click()
        page.locator("#end-confirm").click()
        wait_for_arrival(page, held)
        page.wait_for_timeout(REFRESH_S * 1000 * 1.5)  # at least one redraw while it is on its way
        expect(button).to_be_disabled()
        held[0].fulfill(status=503, content_type="application/json", body=json.dumps({
            "error": "Database unavailable", "code": "DATABASE_UNAVAILABLE", "details": "held by the test",
            "message": "Try again in a moment."}))
        failure = page.locator("#audit-action-error .error-box")
        expect(failure).to_have_attribute("data-code", "DATABASE_UNAVAILABLE")
        page.wait_for_timeout(REFRESH_S * 1000 * 1.5)
        expect(failure).to_be_visible()
        expect(button).to_be_enabled()  # the session is still live: it may be asked again
        failure.get_by_role("button", name="Dismiss").click()
        expect(failure).to_have_count(0)
