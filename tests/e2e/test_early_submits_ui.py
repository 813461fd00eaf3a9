"""A form pressed before its page's script has wired it, in Chromium against a real ``limen serve``: the browser
never sends it itself (that reloaded the page with what was typed, a password too, in the address bar and the
server's log, and lost it from the form); the press is held and sent once the page's script takes the form.
CI found it on the tokens page, which wires its form only after asking who is signed in."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import PLAIN_USER_PASSWORD, hold_requests, start_limen, wait_for_arrival
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = PLAIN_USER_PASSWORD


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-early-submits"))
    yield process
    process.stop()


def test_signing_in_before_the_script_is_ready_keeps_the_password_out_of_the_address(
    server: LimenProcess, plain_user: str, new_page: Callable[..., Page]
) -> None:
    page = new_page()
    held = hold_requests(page, "**/static/js/login.js")
    page.goto(f"{server.base_url}/login?next=/tokens", wait_until="commit")
    page.fill("#login-name", plain_user)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_timeout(300)  # a native submit would have left by now
    assert "password" not in page.url and PASSWORD.split()[0] not in page.url, page.url
    expect(page.locator("#login-password")).to_have_value(PASSWORD)
    wait_for_arrival(page, held)
    held[0].continue_()
    page.wait_for_url(f"{server.base_url}/tokens")
    expect(page.locator("h1")).to_have_text("API tokens")


def test_a_token_asked_for_before_the_page_knows_its_user_is_made_once_it_does(
    server: LimenProcess, plain_user: str, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server, name=plain_user, password=PASSWORD, next_path="/tokens")
    held = hold_requests(page, "**/api/me")
    page.goto(f"{server.base_url}/tokens", wait_until="domcontentloaded")
    page.fill("#token-name", "made before the page was ready")
    page.click("#token-create")
    page.wait_for_timeout(300)
    assert page.url == f"{server.base_url}/tokens", page.url
    expect(page.locator("#token-name")).to_have_value("made before the page was ready")
    expect(page.locator("#secret-panel")).to_be_hidden()
    wait_for_arrival(page, held)
    for route in held:
        route.continue_()
    page.unroute("**/api/me")
    expect(page.locator("#secret-panel")).to_be_visible()
    expect(page.locator("#secret-token-name")).to_contain_text("made before the page was ready")
    expect(page.locator("#token-rows tr")).to_have_count(1)


def test_without_the_pages_scripts_a_sign_in_sends_no_password_in_the_address(
    server: LimenProcess, plain_user: str, new_page: Callable[..., Page]
) -> None:
    page = new_page()
    page.route("**/static/js/*.js", lambda route: route.abort())
    page.goto(f"{server.base_url}/login?next=/tokens")
    page.fill("#login-name", plain_user)
    page.fill("#login-password", PASSWORD)
    with page.expect_request(lambda request: request.url.startswith(f"{server.base_url}/login")) as sent:
        page.click("#login-submit")
    assert sent.value.method == "POST"
    assert "password" not in sent.value.url and PASSWORD.split()[0] not in page.url, sent.value.url
