"""Fixtures of the browser tests: Debian's Chromium driven by Playwright; helpers are in helpers.py.

Screenshots go to ``test-artifacts/`` at the repository root (ignored by git); a failing test leaves a
``FAILED-…`` screenshot of each of its pages there.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, ViewportSize, sync_playwright

from tests.e2e.helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PLAIN_USER_PASSWORD,
    save_screenshot,
    sign_in,
)
from tests.support import volume_leaks
from tests.support.idle_guests import guests_kept_idle  # noqa: F401 (an autouse fixture, for this tier)
from tests.support.server import LimenProcess


# Module scope: Playwright's sync API keeps an event loop running in this thread while it is open,
# which would stop the asyncio tests of other modules from starting their own.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's chromium at /usr/bin/chromium (make install)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Opens pages in fresh contexts; fails the test on any uncaught script error in them."""
    contexts = []
    script_errors: list[str] = []

    def open_page(viewport: ViewportSize | None = None, locale: str | None = None) -> Page:
        context = browser.new_context(viewport=viewport or DESKTOP, locale=locale)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: script_errors.append(f"{page.url}: {exc}"))

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error" and "Failed to load resource" not in message.text:
                script_errors.append(f"{page.url}: console error: {message.text}")

        page.on("console", on_console)
        return page

    yield open_page
    failed = getattr(request.node, "rep_call", None)
    for index, context in enumerate(contexts):
        if failed is not None and failed.failed:
            for number, page in enumerate(context.pages):
                try:
                    save_screenshot(page, f"FAILED-{request.node.name}-{index}-{number}")
                except Error:
                    pass
        context.close()
    assert not [e for e in script_errors if "WebSocket" not in e], script_errors


@pytest.fixture
def admin_api(server: LimenProcess) -> Iterator[httpx.Client]:
    """The test module's ``server``'s API, as its administrator (Bearer token)."""
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as client:
        yield client


@pytest.fixture
def plain_user(admin_api: httpx.Client) -> Iterator[str]:
    """A user (role user) with password PLAIN_USER_PASSWORD on the test module's ``server``, deleted after."""
    name = f"alice-{uuid.uuid4().hex[:6]}"
    made = admin_api.post("/api/users", json={"name": name, "password": PLAIN_USER_PASSWORD})
    assert made.status_code == 201, made.text
    yield name
    admin_api.delete(f"/api/users/{name}")


@pytest.fixture
def signed_in_page(new_page: Callable[..., Page]) -> Callable[..., Page]:
    """A new page signed in to ``server`` through its login page (as the tests' admin, or ``name`` /
    ``password``; in the browser's ``locale``, which the pages' language follows): ``signed_in_page(server)``."""

    def open_signed_in(server: LimenProcess, viewport: ViewportSize | None = None, *, locale: str | None = None,
                       **who: str) -> Page:
        return sign_in(new_page(viewport, locale), server.base_url, **who)

    return open_signed_in


@pytest.fixture
def details_page(server: LimenProcess, signed_in_page: Callable[..., Page]) -> Callable[..., Page]:
    """Opens a VM's details page on the test module's ``server``, signed in: ``details_page(vm_id)``, or with
    a ``viewport`` and the browser's ``locale`` (the page's language)."""

    def open_details(vm_id: str, viewport: ViewportSize | None = None, locale: str | None = None) -> Page:
        return signed_in_page(server, viewport, locale=locale, next_path=f"/vms/{vm_id}")

    return open_details


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


def pytest_collection_finish(session: pytest.Session) -> None:
    """The last run's screenshots go before any test runs: here, in the process that collected, because a
    session fixture would run once in each forked worker (tests.support.forked_workers) and delete what
    the workers that started earlier had saved."""
    if session.config.option.collectonly or not session.items:
        return
    volume_leaks.watch(session)  # a run that leaves disk volumes in the test pool fails, naming them
    if ARTIFACTS.exists():
        for old in ARTIFACTS.glob("*.png"):
            old.unlink()
    else:
        ARTIFACTS.mkdir()
