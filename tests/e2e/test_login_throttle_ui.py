"""The sign-in page when sign-in is throttled, in real Chromium against a real ``limen serve``: it shows the
server's real wait ("Try again in 4 min 56 s."), counts it down with the button off, and gives the button
back when the wait is over. The page's clock is Playwright's, turned by hand; the server's is real."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import save_screenshot, start_limen
from tests.support.access import TEST_ADMIN, TEST_ADMIN_PASSWORD
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-login-throttle"), LIMEN_LOGIN_MAX_FAILURES_PER_USER="2",
                          LIMEN_LOGIN_BLOCK_SECONDS="300", LIMEN_CONSOLE_AUTO_START="false")
    yield process
    process.stop()


def submit(page: Page, password: str) -> None:
    page.fill("#login-name", TEST_ADMIN)
    page.fill("#login-password", password)
    page.click("#login-submit")


def test_the_login_page_counts_the_real_wait_down(
    server: LimenProcess, new_page: Callable[..., Page], tmp_path: Path
) -> None:
    page = new_page()
    page.clock.install()
    page.goto(f"{server.base_url}/login")
    error = page.locator("#login-error .error-box")
    for _ in range(2):
        submit(page, "a wrong password")
        expect(error).to_have_attribute("data-code", "INVALID_CREDENTIALS")
    submit(page, TEST_ADMIN_PASSWORD)  # right, but the block comes first
    expect(error).to_have_attribute("data-code", "TOO_MANY_ATTEMPTS")
    wait = page.locator("#login-wait")
    expect(wait).to_have_text(re.compile(r"^Try again in (5 min|4 min 5\d s)\.$"))
    expect(page.locator("#login-submit")).to_be_disabled()
    page.clock.run_for(4_000)
    expect(wait).to_have_text(re.compile(r"^Try again in 4 min 5[5-6] s\.$"))
    expect(error.locator(".error-title")).to_have_text("Too many sign-in attempts")
    shot = save_screenshot(page, "login-throttled-1280")
    assert shot.stat().st_size > 0
    page.clock.run_for(60_000)
    expect(wait).to_have_text(re.compile(r"^Try again in 3 min 5[5-6] s\.$"))
    page.keyboard.press("Enter")  # nothing is sent while the wait runs
    expect(page.locator("#login-submit")).to_be_disabled()

    page.clock.run_for(240_000)
    expect(page.locator("#login-error")).to_be_empty()
    expect(page.locator("#login-submit")).to_be_enabled()

    # The server's own block (real time) still stands; an administrator lifts it, and sign-in works.
    unlocked = httpx.post(f"{server.base_url}/api/users/{TEST_ADMIN}/unlock", headers=server.auth_headers,
                          timeout=20)
    assert unlocked.status_code == 200, unlocked.text
    submit(page, TEST_ADMIN_PASSWORD)
    page.wait_for_url(f"{server.base_url}/")
