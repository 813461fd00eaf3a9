"""Users and API tokens in the web UI, in Chromium against a real ``limen serve`` (real SQLite, real
QEMU for the VM whose owner is set): an administrator creates a user with a 63-character non-ASCII
name, changes the role, disables and enables, unlocks the sign-in, deletes after a dialog naming the
user; a user creates a token, sees its secret once, copies it (Clipboard API, and the fallback of the
selected text), uses it, revokes it and is refused; an administrator gives a VM to a user from its
details page and the user then sees it; a user who is not an administrator gets no user data.
Screenshots of each page at 1280 and 390 px go to test-artifacts/."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Locator, Page, Route, expect

from tests.e2e.helpers import PHONE, PLAIN_USER_PASSWORD, save_screenshot, sign_in, start_limen
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = PLAIN_USER_PASSWORD
NO_SIDEWAYS_SCROLL = "() => document.documentElement.scrollWidth <= window.innerWidth"
# Saves the real clipboard for the test to read, then takes it away from the page: Copy must fall back
# to selecting the secret and the browser's copy command.
NO_CLIPBOARD_API = """
  window.__clipboard = navigator.clipboard;
  Object.defineProperty(Navigator.prototype, 'clipboard', { get: () => undefined, configurable: true });
"""


def long_name(prefix: str) -> str:
    """63 characters without a space, non-ASCII included: the widest name a test should throw at a table."""
    name = f"{prefix}-Ünï-{uuid.uuid4().hex[:8]}-"
    return name + "w" * (63 - len(name))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    # Two failures block a user at an address: the unlock test needs a block without many attempts.
    process = start_limen(tmp_path_factory.mktemp("limen-users-ui"), LIMEN_LOGIN_MAX_FAILURES_PER_USER="2")
    yield process
    process.stop()


def user_row(page: Page, name: str) -> Locator:
    return page.locator("#user-rows tr").filter(has=page.locator(f'span.user-ref[title="{name}"]'))


def assert_fits(page: Page) -> None:
    assert page.evaluate(NO_SIDEWAYS_SCROLL), f"{page.url} scrolls sideways at {page.viewport_size}"


def login_status(server: LimenProcess, name: str, password: str) -> int:
    response = httpx.post(f"{server.base_url}/api/login", json={"name": name, "password": password}, timeout=30)
    return response.status_code


def test_admin_creates_changes_disables_unlocks_and_deletes_a_user(
    server: LimenProcess, admin_api: httpx.Client, signed_in_page: Callable[..., Page], new_page: Callable[..., Page]
) -> None:
    name = long_name("bob")
    page = signed_in_page(server)
    page.goto(f"{server.base_url}/users")
    expect(page.locator("#users-admin")).to_be_visible()

    # A name only the server refuses and a short password: both told at once (the name's refusal came on the
    # submit after the password's), the focus back on the first (not on <body>, the button being disabled).
    page.fill("#new-name", f" {name}")
    page.fill("#new-password", "short")
    page.click("#create-submit")
    expect(page.locator("#new-password-error")).to_have_text("must be at least 8 characters")
    expect(page.locator("#new-name-error")).to_contain_text("white space")
    expect(page.locator("#new-name")).to_be_focused()
    page.fill("#new-name", name)
    page.fill("#new-password", PASSWORD)
    page.click("#create-submit")
    row = user_row(page, name)
    expect(row).to_have_attribute("data-role", "user")
    expect(page.locator("#create-result")).to_contain_text("was created")
    assert login_status(server, name, PASSWORD) == 200
    # The same name in another case is the same user: the form says so under the name.
    page.fill("#new-name", name.upper())
    page.fill("#new-password", PASSWORD)
    page.click("#create-submit")
    expect(page.locator("#new-name-error")).to_be_visible()

    # The name is cut in the table, never wider than its column; hover shows it all, focus unfolds it.
    ref = row.locator("span.user-ref")
    expect(ref).to_have_attribute("title", name)
    assert ref.evaluate("el => el.scrollWidth > el.clientWidth"), "a 63-character name should be cut with …"
    ref.focus()
    assert ref.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), "focus should show the whole name"
    page.locator("#create-submit").focus()
    save_screenshot(page, "users-1280")

    # A key on the focused menu chooses; only the button beside it changes the role (an arrow key once made
    # a user an administrator on the spot).
    row.locator("select.role-select").focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_timeout(500)
    assert {u["name"]: u["role"] for u in admin_api.get("/api/users").json()}[name] == "user"
    row.locator("select.role-select").select_option("admin")
    row.locator("button[data-action=apply-role]").click()
    expect(row).to_have_attribute("data-role", "admin")
    expect(row.locator(".row-status")).to_contain_text("Role changed to administrator")
    assert {u["name"]: u["role"] for u in admin_api.get("/api/users").json()}[name] == "admin"
    expect(row.locator("select.role-select")).to_be_focused()  # not lost to <body> when the list is redrawn
    expect(row.locator("button[data-action=apply-role]")).to_be_hidden()
    row.locator("select.role-select").select_option("user")
    row.locator("button[data-action=apply-role]").click()
    expect(row).to_have_attribute("data-role", "user")

    row.locator("button[data-action=disable]").click()
    expect(row).to_have_attribute("data-disabled", "true")
    expect(row.locator("[data-state=disabled]")).to_be_visible()
    assert login_status(server, name, PASSWORD) == 403  # ACCOUNT_DISABLED, told to whoever has the password
    row.locator("button[data-action=enable]").click()
    expect(row).to_have_attribute("data-disabled", "false")
    assert login_status(server, name, PASSWORD) == 200

    # Two failures block the name at this address, right password or not; Unlock lifts it.
    assert [login_status(server, name, "wrong password") for _ in range(2)] == [401, 401]
    assert login_status(server, name, PASSWORD) == 429
    row.locator("button[data-action=unlock]").click()
    expect(row.locator(".row-status")).to_contain_text("Sign-in unlocked (1 block lifted)")
    assert login_status(server, name, PASSWORD) == 200

    # Signed in under the long name, the top bar cuts it and no page scrolls sideways.
    for viewport, label in ((None, "1280"), (PHONE, "390")):
        theirs = signed_in_page(server, viewport, name=name, password=PASSWORD, next_path="/tokens")
        expect(theirs.locator("#user-name")).to_have_attribute("title", name)
        theirs.fill("#token-name", "x" * 100)
        theirs.click("#token-create")
        expect(theirs.locator("#secret-panel")).to_be_visible()
        assert_fits(theirs)
        save_screenshot(theirs, f"tokens-long-names-{label}")

    phone = signed_in_page(server, PHONE, next_path="/users")
    expect(user_row(phone, name)).to_be_visible()
    assert_fits(phone)
    save_screenshot(phone, "users-390")

    # Delete asks first, naming the user; Cancel keeps them.
    row.locator("button[data-action=delete]").click()
    dialog = page.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#delete-text")).to_contain_text(name)
    save_screenshot(page, "users-delete-dialog-1280")
    page.click("#delete-cancel")
    expect(dialog).to_be_hidden()
    expect(row).to_be_visible()
    row.locator("button[data-action=delete]").click()
    page.click("#delete-confirm")
    expect(row).to_have_count(0)
    # The row went; the keyboard is on a neighbouring row, not lost to <body> at the page's top.
    expect(page.locator("#user-rows :focus")).to_have_count(1)
    assert name not in [u["name"] for u in admin_api.get("/api/users").json()]
    assert login_status(server, name, PASSWORD) == 401


def test_deleting_yourself_is_not_offered(server: LimenProcess, signed_in_page: Callable[..., Page]) -> None:
    """The button opened the dialog, and the server's refusal (FORBIDDEN) said "ask an administrator for
    access" to an administrator; the button is off, saying why."""
    page = signed_in_page(server, next_path="/users")
    row = user_row(page, "test-admin")
    expect(row.locator(".you-tag")).to_be_visible()
    delete = row.locator("button[data-action=delete]")
    expect(delete).to_be_disabled()
    expect(delete).to_have_attribute("title", "You cannot delete yourself: another administrator can.")


def test_names_with_slashes_and_markup_reach_the_right_user(
    server: LimenProcess, admin_api: httpx.Client, signed_in_page: Callable[..., Page]
) -> None:
    """The page puts names into addresses (/api/users/{name}/…): a '/', '?', '#' or '%' in one must not
    send the change to another user or another route."""
    name = f"o'neil/ops?#1 %2e <b>{uuid.uuid4().hex[:4]}</b>"
    assert admin_api.post("/api/users", json={"name": name, "password": PASSWORD}).status_code == 201
    try:
        page = signed_in_page(server, next_path="/users")
        row = user_row(page, name)
        row.locator("button[data-action=disable]").click()
        expect(row).to_have_attribute("data-disabled", "true")
        row.locator("select.role-select").select_option("admin")
        row.locator("button[data-action=apply-role]").click()
        expect(row).to_have_attribute("data-role", "admin")
        listed = {u["name"]: u for u in admin_api.get("/api/users").json()}
        assert listed[name]["disabled"] is True and listed[name]["role"] == "admin"
        assert listed["test-admin"]["disabled"] is False
        row.locator("button[data-action=delete]").click()
        expect(page.locator("#delete-text")).to_contain_text(name)
        page.click("#delete-confirm")
        expect(row).to_have_count(0)
        assert name not in [u["name"] for u in admin_api.get("/api/users").json()]
    finally:
        admin_api.delete(f"/api/users/{name.replace('%', '%25').replace('?', '%3F').replace('#', '%23')}")


def test_a_user_is_told_users_are_for_administrators(
    server: LimenProcess, plain_user: str, signed_in_page: Callable[..., Page]
) -> None:
    login = httpx.post(f"{server.base_url}/api/login", json={"name": plain_user, "password": PASSWORD}, timeout=30)
    assert httpx.get(f"{server.base_url}/api/users", cookies=login.cookies, timeout=30).status_code == 403
    page = signed_in_page(server, name=plain_user, password=PASSWORD, next_path="/users")
    expect(page.locator("#users-error")).to_contain_text("Only administrators manage users")
    expect(page.locator("#users-admin")).to_be_hidden()
    assert page.locator("#user-rows tr").count() == 0
    save_screenshot(page, "users-forbidden-1280")


def test_a_token_is_shown_once_copied_used_and_revoked(
    server: LimenProcess, plain_user: str, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server, name=plain_user, password=PASSWORD, next_path="/tokens")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    expect(page.locator("#all-toggle-row")).to_be_hidden()
    page.fill("#token-name", "backup script — nightly")
    page.click("#token-create")
    panel = page.locator("#secret-panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("shown once")
    secret = page.input_value("#secret-value")
    assert secret.startswith("limen_")
    page.click("#secret-copy")
    expect(page.locator("#secret-copy-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    save_screenshot(page, "tokens-secret-1280")

    me = httpx.get(f"{server.base_url}/api/me", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert me.status_code == 200 and me.json()["name"] == plain_user

    page.click("#secret-done")
    expect(panel).to_be_hidden()
    assert page.input_value("#secret-value") == ""
    page.reload()
    row = page.locator("#token-rows tr").first
    expect(row).to_contain_text("backup script — nightly")
    expect(row).to_contain_text(secret[:12])
    expect(row.locator("td[data-label='Last used']")).not_to_have_text("never")
    assert secret not in page.content()
    save_screenshot(page, "tokens-1280")

    row.locator("button[data-action=revoke]").click()
    expect(page.locator("#revoke-text")).to_contain_text("backup script — nightly")
    # One full stop after the prefix (it read "Prefix limen_PZdKLn….").
    expect(page.locator("#revoke-text")).to_contain_text(f"Its prefix is {secret[:12]}. Scripts using it")
    save_screenshot(page, "tokens-revoke-dialog-1280")
    page.click("#revoke-cancel")
    expect(row).to_have_attribute("data-revoked", "false")
    row.locator("button[data-action=revoke]").click()
    page.click("#revoke-confirm")
    expect(row).to_have_attribute("data-revoked", "true")
    # Its button went; the keyboard is on another token's Revoke or the tokens' table, not on <body>.
    expect(page.locator("#token-rows :focus, #token-table:focus")).to_have_count(1)
    refused = httpx.get(f"{server.base_url}/api/me", headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    assert refused.status_code == 401

    phone = signed_in_page(server, PHONE, name=plain_user, password=PASSWORD, next_path="/tokens")
    phone.fill("#token-name", "phone")
    phone.click("#token-create")
    expect(phone.locator("#secret-panel")).to_be_visible()
    assert_fits(phone)
    save_screenshot(phone, "tokens-390")


def test_revoking_keeps_the_keyboard_among_the_tokens(
    server: LimenProcess, plain_user: str, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server, name=plain_user, password=PASSWORD, next_path="/tokens")
    for name in ("alpha", "bravo", "charlie", "delta"):  # listed newest first: delta, charlie, bravo, alpha
        page.fill("#token-name", name)
        page.click("#token-create")
        page.click("#secret-done")
    expect(page.locator("#token-rows tr")).to_have_count(4)

    def revoke(name: str) -> None:
        row = page.locator("#token-rows tr", has_text=name)
        row.locator("button[data-action=revoke]").focus()
        page.keyboard.press("Enter")
        page.click("#revoke-confirm")
        expect(row).to_have_attribute("data-revoked", "true")

    revoke("charlie")
    revoke("bravo")
    # alpha's neighbour is revoked (no button): the next token that has one, not the page's heading.
    revoke("alpha")
    expect(page.get_by_role("button", name="Revoke the token delta", exact=True)).to_be_focused()
    save_screenshot(page, "tokens-revoked-focus-next-1280")
    # None left to revoke: the tokens' table, not the top of the page.
    revoke("delta")
    expect(page.locator("#token-table")).to_be_focused()
    save_screenshot(page, "tokens-revoked-focus-table-1280")


def test_copy_falls_back_to_the_selected_secret(
    server: LimenProcess, plain_user: str, new_page: Callable[..., Page]
) -> None:
    page = new_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    page.add_init_script(NO_CLIPBOARD_API)
    sign_in(page, server.base_url, name=plain_user, password=PASSWORD, next_path="/tokens")
    page.fill("#token-name", "no clipboard API")
    page.click("#token-create")
    expect(page.locator("#secret-panel")).to_be_visible()
    secret = page.input_value("#secret-value")
    page.click("#secret-copy")
    status = page.locator("#secret-copy-status")
    expect(status).to_have_attribute("data-copied", "true")
    selected = page.evaluate("() => { const el = document.activeElement;"
                             " return el.value.slice(el.selectionStart, el.selectionEnd); }")
    assert selected == secret
    assert page.evaluate("window.__clipboard.readText()") == secret


def test_admin_lists_every_users_tokens(
    server: LimenProcess, plain_user: str, admin_api: httpx.Client, signed_in_page: Callable[..., Page]
) -> None:
    made = admin_api.post("/api/tokens", json={"name": "theirs", "user": plain_user})
    assert made.status_code == 201
    page = signed_in_page(server, next_path="/tokens")
    theirs = page.locator(f"#token-rows tr[data-token='{made.json()['id']}']")
    expect(page.locator("#token-rows tr").first).to_be_visible()
    expect(theirs).to_have_count(0)
    page.check("#all-toggle")
    expect(theirs).to_be_visible()
    expect(page.locator("#owner-head")).to_be_visible()
    expect(theirs.locator(".token-owner")).to_have_text(plain_user)
    theirs.locator("button[data-action=revoke]").click()
    expect(page.locator("#revoke-text")).to_contain_text(plain_user)
    page.click("#revoke-confirm")
    expect(theirs).to_have_attribute("data-revoked", "true")


def test_admin_sets_a_vms_owner_and_the_user_sees_it(
    server: LimenProcess, plain_user: str, admin_api: httpx.Client, signed_in_page: Callable[..., Page],
    vm_names: Callable[[], str],
) -> None:
    name = vm_names()
    assert admin_api.post("/api/vms", json={"name": name, "memory_mib": 64}).status_code == 201
    theirs = signed_in_page(server, name=plain_user, password=PASSWORD)
    expect(theirs.locator("body")).not_to_contain_text(name)

    page = signed_in_page(server, next_path=f"/vms/{name}")
    select = page.locator("#owner-select")
    expect(select).to_be_visible()
    expect(page.locator("#owner-save")).to_be_disabled()
    select.select_option(plain_user)
    page.click("#owner-save")
    expect(page.locator("#owner-status")).to_contain_text(f"{plain_user} owns this VM now")
    expect(page.locator("#facts")).to_contain_text(plain_user)
    assert admin_api.get(f"/api/vms/{name}").json()["owner"] == plain_user
    save_screenshot(page, "vm-owner-1280")

    theirs.reload()
    expect(theirs.locator(f"a[href='/vms/{admin_api.get(f'/api/vms/{name}').json()['uuid']}']").first).to_be_visible()
    theirs.goto(f"{server.base_url}/vms/{name}")
    expect(theirs.locator("#vm-name")).to_have_text(name)
    expect(theirs.locator("#owner-control")).to_be_hidden()

    phone = signed_in_page(server, PHONE, next_path=f"/vms/{name}")
    expect(phone.locator("#owner-select")).to_have_value(plain_user)
    assert_fits(phone)
    phone.locator("#owner-control").scroll_into_view_if_needed()
    save_screenshot(phone, "vm-owner-390")

    select.select_option("")
    page.click("#owner-save")
    expect(page.locator("#owner-status")).to_contain_text("no owner now")
    assert admin_api.get(f"/api/vms/{name}").json()["owner"] is None


def test_admin_sets_a_users_quota_in_its_dialog(
    server: LimenProcess, plain_user: str, admin_api: httpx.Client, signed_in_page: Callable[..., Page],
    vm_names: Callable[[], str],
) -> None:
    """The real quota routes: the dialog shows what applies and what is in use, refuses what is not a whole
    number in the form, saves the overrides, and the user is held to them at once."""
    page = signed_in_page(server, next_path="/users")
    row = user_row(page, plain_user)
    expect(row).to_be_visible()
    # Approved users (all here: registration is off) are never offered an approval.
    expect(page.locator("[data-state=awaiting-approval]")).to_have_count(0)
    expect(page.locator("button[data-action=approve]")).to_have_count(0)

    row.locator("button[data-action=quota]").click()
    dialog = page.locator("#quota-dialog")
    expect(dialog).to_be_visible()
    expect(page.locator("#quota-text")).to_contain_text(plain_user)
    for resource in ("vms", "vcpus", "memory_mib", "disk_gib"):
        expect(page.locator(f"#quota-{resource}")).to_have_value("")  # no override: the default applies
        expect(page.locator(f"#quota-{resource}-hint")).to_contain_text("Applies now: no limit. In use: 0.")
    page.fill("#quota-vms", "2.5")
    page.click("#quota-save")
    expect(page.locator("#quota-error")).to_contain_text("whole number")
    expect(dialog).to_be_visible()
    page.fill("#quota-vms", "1")
    page.fill("#quota-vcpus", "8")
    save_screenshot(page, "users-quota-dialog-1280")
    page.click("#quota-save")
    expect(dialog).to_be_hidden()
    expect(row.locator(".row-status")).to_contain_text("Quota saved.")
    # The keyboard is back on the row's Quota button (the row was redrawn; it fell to <body>), and after an
    # Esc too.
    expect(row.locator("button[data-action=quota]")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(row.locator("button[data-action=quota]")).to_be_focused()
    saved = admin_api.get(f"/api/users/{plain_user}/quota").json()
    assert saved["override"] == {"vms": 1, "vcpus": 8, "memory_mib": None, "disk_gib": None}

    # The user is held to it: one VM, then QUOTA_EXCEEDED naming the limit.
    token = admin_api.post("/api/tokens", json={"name": "quota", "user": plain_user}).json()["secret"]
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as theirs:
        assert theirs.post("/api/vms", json={"name": vm_names(), "memory_mib": 64}).status_code == 201
        refused = theirs.post("/api/vms", json={"name": vm_names(), "memory_mib": 64})
        assert refused.status_code == 409 and refused.json()["code"] == "QUOTA_EXCEEDED", refused.text
        assert refused.json()["quota"]["limit"] == 1

    # Reopened, the dialog shows the overrides and the usage; emptied, the default applies again.
    page.reload()
    row.locator("button[data-action=quota]").click()
    expect(page.locator("#quota-vms")).to_have_value("1")
    expect(page.locator("#quota-vms-hint")).to_contain_text("Applies now: 1. In use: 1.")
    # Text the browser cannot read as a number reads as "" to a script: it removed the limit.
    page.fill("#quota-vms", "")
    page.locator("#quota-vms").press_sequentially("3e")
    page.click("#quota-save")
    expect(page.locator("#quota-error")).to_contain_text("whole number")
    assert admin_api.get(f"/api/users/{plain_user}/quota").json()["override"]["vms"] == 1
    page.fill("#quota-vms", "")
    page.fill("#quota-vcpus", "")
    page.click("#quota-save")
    expect(row.locator(".row-status")).to_contain_text("Quota saved.")
    assert admin_api.get(f"/api/users/{plain_user}/quota").json()["override"]["vms"] is None

    phone = signed_in_page(server, PHONE, next_path="/users")
    user_row(phone, plain_user).locator("button[data-action=quota]").click()
    expect(phone.locator("#quota-dialog")).to_be_visible()
    assert_fits(phone)
    save_screenshot(phone, "users-quota-dialog-390")


def test_a_quota_save_is_sent_once_and_its_failure_after_escape_is_said_in_the_row(
    server: LimenProcess, plain_user: str, signed_in_page: Callable[..., Page]
) -> None:
    # Save stayed enabled while its PUT was on its way (a second press sent a second), and a failure that came
    # after Escape closed the dialog was written into the closed dialog, never seen.
    page = signed_in_page(server, next_path="/users")
    row = user_row(page, plain_user)
    held: list[Route] = []
    page.route("**/quota", lambda route: held.append(route) if route.request.method == "PUT" else route.fallback())
    row.locator("button[data-action=quota]").click()
    page.fill("#quota-vms", "4")
    page.click("#quota-save")
    page.wait_for_function("() => document.getElementById('quota-save').disabled")
    while not held:
        page.wait_for_timeout(50)
    page.keyboard.press("Escape")
    expect(page.locator("#quota-dialog")).to_be_hidden()
    held[0].fulfill(status=503, content_type="application/json", body=json.dumps({
        "error": "Database unavailable", "code": "DATABASE_UNAVAILABLE", "details": "held by the test",
        "message": "Try again in a moment."}))
    expect(row.locator(".error-box")).to_have_attribute("data-code", "DATABASE_UNAVAILABLE")
    assert len(held) == 1
    row.locator("button[data-action=quota]").click()
    expect(page.locator("#quota-save")).to_be_enabled()
