"""Signing in and the audit page in real Chromium, with a user whose name is made of quotes, markup, SQL
and unicode: it is stored as given and shown as text everywhere, and no script of it runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from limen.audit import AuditLog
from limen.clock import system_clock
from limen.db import Database
from tests.conftest import QEMU_URI
from tests.e2e.helpers import save_screenshot, sign_in, start_limen
from tests.support.access import TEST_ADMIN_PASSWORD
from tests.support.libvirt_cleanup import remove_domain
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

NASTY = "\"'><script>window.__pwned=1</script>'; DROP TABLE users;-- Ünï 🙂"
PASSWORD = "a nasty user's password"
NOT_RUN = "() => window.__pwned === undefined && !document.querySelector('main script, header script')"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    # Without auto-start the console ends at VM_NOT_RUNNING, after the access checks: a real audit row
    # without booting a VM.
    process = start_limen(tmp_path_factory.mktemp("limen-access-ui"), LIMEN_CONSOLE_AUTO_START="false")
    yield process
    process.stop()


@pytest.fixture
def nasty_vm(server: LimenProcess) -> Iterator[str]:
    """A stopped VM owned by the user NASTY (created, with an API token of theirs in ``.token``)."""
    name = f"limen-test-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=20) as admin:
        made = admin.post("/api/users", json={"name": NASTY, "password": PASSWORD})
        assert made.status_code in (201, 409), made.text
        assert admin.post("/api/vms", json={"name": name, "memory_mib": 64}).status_code == 201
        assert admin.put(f"/api/vms/{name}/owner", json={"owner": NASTY}).status_code == 200
    try:
        yield name
    finally:
        remove_domain(QEMU_URI, name)


def nasty_token(server: LimenProcess) -> str:
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=20) as admin:
        made = admin.post("/api/tokens", json={"name": NASTY, "user": NASTY})
        assert made.status_code == 201, made.text
        secret: str = made.json()["secret"]
        return secret


def test_unsigned_pages_go_to_login_and_back(server: LimenProcess, new_page: Callable[..., Page]) -> None:
    page = new_page()
    page.goto(f"{server.base_url}/vms/new")
    page.wait_for_url(f"{server.base_url}/login?next=%2Fvms%2Fnew")
    expect(page.locator("#login-ended")).to_have_count(0)  # nobody was signed in: nothing ended
    page.fill("#login-name", "test-admin")
    page.fill("#login-password", "wrong password")
    page.click("#login-submit")
    expect(page.locator("#login-error .error-box")).to_have_attribute("data-code", "INVALID_CREDENTIALS")
    save_screenshot(page, "login-failed-1280")
    sign_in(page, server.base_url, next_path="/vms/new")
    expect(page.locator("#user-name")).to_have_text("test-admin")
    other_tab = page.context.new_page()
    other_tab.goto(f"{server.base_url}/vms/new")
    expect(other_tab.locator("#user-name")).to_have_text("test-admin")
    page.click("#sign-out")
    page.wait_for_url(f"{server.base_url}/login")
    # The other tab's next request finds the sign-in gone: the sign-in page says why it is there (it said
    # nothing, as if the page had never been signed in), and signing in goes back to the page.
    other_tab.fill("#name", "limen-test-never-made")
    other_tab.click("#submit")
    other_tab.wait_for_url(f"{server.base_url}/login?next=%2Fvms%2Fnew&ended=1")
    expect(other_tab.locator("#login-ended")).to_contain_text("Your sign-in ended while the page was open")
    other_tab.fill("#login-name", "test-admin")
    other_tab.fill("#login-password", TEST_ADMIN_PASSWORD)
    other_tab.click("#login-submit")
    other_tab.wait_for_url(f"{server.base_url}/vms/new")
    other_tab.close()
    page.goto(f"{server.base_url}/")  # signed in again (the same browser)
    page.click("#sign-out")
    page.wait_for_url(f"{server.base_url}/login")
    page.goto(f"{server.base_url}/")
    page.wait_for_url(f"{server.base_url}/login?next=%2F")
    # A `next` the browser's URL parser reads as another site ("/<tab>/host" is "//host" to it) stays here.
    page.goto(f"{server.base_url}/login?next=/%09/evil.example")
    page.fill("#login-name", "test-admin")
    page.fill("#login-password", TEST_ADMIN_PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"{server.base_url}/")
    expect(page.locator("#user-name")).to_have_text("test-admin")


def test_names_full_of_markup_sql_and_unicode_are_shown_as_text(
    server: LimenProcess, new_page: Callable[..., Page], nasty_vm: str, tmp_path: Path
) -> None:
    # The nasty user opens their console: admitted, audited, then VM_NOT_RUNNING (auto-start is off).
    with connect(f"{server.ws_url}/api/vms/{nasty_vm}/console",
                 additional_headers={"Authorization": f"Bearer {nasty_token(server)}"}) as ws:
        frames = []
        with contextlib.suppress(ConnectionClosed):
            for frame in ws:
                frames.append(json.loads(frame))
    assert frames[-1]["code"] == "VM_NOT_RUNNING"

    # They sign in with their name as typed, and see it, and their VM, as text.
    own = sign_in(new_page(), server.base_url, name=NASTY, password=PASSWORD)
    expect(own.locator("#user-name")).to_have_text(NASTY)
    expect(own.locator(f'tr[data-vm-name="{nasty_vm}"]')).to_have_count(1)
    assert own.evaluate(NOT_RUN)
    own.goto(f"{server.base_url}/audit")
    expect(own.locator("#session-rows tr")).to_have_count(1)
    expect(own.locator("#session-rows tr td").first).to_have_text(NASTY)

    # The admin's audit page: the session and the owner change, with the name as text.
    page = sign_in(new_page(), server.base_url, next_path="/audit")
    row = page.locator("#session-rows tr", has_text=nasty_vm).first
    expect(row.locator("td").first).to_have_text(NASTY)
    expect(row.locator(".end-code code")).to_have_text("VM_NOT_RUNNING")
    action = page.locator('#action-rows tr[data-action="set_owner"]', has_text=nasty_vm).first
    expect(action.locator("td").last).to_have_text(f"given to {NASTY}")
    assert page.evaluate(NOT_RUN)
    assert page.locator("#session-rows script, #action-rows script").count() == 0
    save_screenshot(page, "audit-nasty-names-1280")


def test_the_audit_page_says_when_it_shows_only_the_latest_rows_and_shows_more(
    tmp_path: Path, signed_in_page: Callable[..., Page]
) -> None:
    """With more actions than the page asks for, it said nothing: the oldest were silently missing. It says
    that only the latest are shown, and "Show more" asks for twice as many."""
    own = start_limen(tmp_path / "busy-audit", LIMEN_CONSOLE_AUTO_START="false")
    try:
        database = Database(own.database_url)
        try:
            audit = AuditLog(database, system_clock)

            async def write_rows() -> None:  # as the API writes a refused action's row
                for index in range(130):
                    await audit.vm_action(user="test-admin", action="start", vm_name=f"vm-{index:03}", vm_uuid=None,
                                          result_code="VM_NOT_FOUND")

            with ThreadPoolExecutor(1) as elsewhere:  # Playwright's loop runs in this thread
                elsewhere.submit(asyncio.run, write_rows()).result()
        finally:
            database.close()
        page = signed_in_page(own, next_path="/audit")
        cut = page.locator("#actions-cut")
        expect(page.locator("#action-rows tr")).to_have_count(100)
        expect(cut).to_be_visible()
        expect(cut).to_contain_text("The latest 100 are shown.")
        expect(page.locator("#sessions-cut")).to_be_hidden()  # no console session at all, and it says so
        expect(page.locator("#session-rows")).to_have_text("No console sessions yet.")
        cut.scroll_into_view_if_needed()
        save_screenshot(page, "audit-latest-shown-1280")
        page.click("#actions-more")
        expect(page.locator("#action-rows tr")).to_have_count(130)
        expect(cut).to_be_hidden()
        expect(page.locator("#action-rows tr").last).to_contain_text("vm-000")
    finally:
        own.stop()


def test_open_pages_follow_a_role_taken_away(server: LimenProcess, new_page: Callable[..., Page]) -> None:
    """The VM changes' stream ends with ACCESS_REVOKED when its user's role changes: the list and the create
    form, open meanwhile, read who is signed in again, so the header no longer says "administrator" and the
    Users link (for administrators) goes, without a reload."""
    name = f"limen-test-demoted-{uuid.uuid4().hex[:6]}"
    password = "a demoted admin's password"
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=20) as admin:
        made = admin.post("/api/users", json={"name": name, "password": password, "role": "admin"})
        assert made.status_code == 201, made.text
        pages = []
        for path in ("/", "/vms/new"):
            page = new_page()
            sign_in(page, server.base_url, name, password, next_path=path)
            expect(page.locator("#user-who")).to_contain_text("administrator")
            expect(page.locator('nav a[href="/users"]')).to_be_visible()
            pages.append(page)
        assert admin.put(f"/api/users/{name}/role", json={"role": "user"}).status_code == 200
        for page in pages:
            expect(page.locator("#user-who")).to_contain_text("· user", timeout=5_000)
            expect(page.locator('nav a[href="/users"]')).to_be_hidden()
        admin.delete(f"/api/users/{name}")
