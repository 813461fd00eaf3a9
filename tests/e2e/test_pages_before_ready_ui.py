"""Pages other than a VM's details, in Chromium against a real ``limen serve``, pressed before their script is
ready or while their requests run: what was chosen or typed early counts, a press while the page leaves sends
nothing more, an answer that comes late does not undo a newer one, and a row's button is off while its
request runs. Requests are held at the network (:func:`hold_requests`) so each moment is reached for sure;
some answers are the test's own, so no VM, image or disk of the shared machine is touched."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from tests.conftest import DEMO_ISO
from tests.e2e.helpers import (
    PLAIN_USER_PASSWORD,
    hold_requests,
    new_stopped_vm,
    start_limen,
    wait_for_arrival,
)
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PASSWORD = PLAIN_USER_PASSWORD
NO_LIMITS = {"vms": None, "vcpus": None, "memory_mib": None, "disk_gib": None}
NOTHING_USED = {"vms": 0, "vcpus": 0, "memory_mib": 0, "disk_gib": 0}
# GET /api/quota's answer for a user who may have 4 vCPUs running, and no other limit.
FOUR_VCPUS_AT_MOST = {"user": "root", "limits": {**NO_LIMITS, "vcpus": 4}, "usage": NOTHING_USED,
                      "system": {"limits": NO_LIMITS, "usage": NOTHING_USED}}
DEMO_IMAGE = {"name": DEMO_ISO, "size_bytes": 2**20, "modified": "2026-01-01T00:00:00Z", "sha256": "ab" * 32}
KEPT_DISK = {
    "name": "pages-kept-disk0.qcow2", "host": "local", "path": "/pool/pages-kept-disk0.qcow2", "format": "qcow2",
    "capacity_bytes": 2**30, "allocation_bytes": 200704, "used_by": [], "backing_for": [], "in_use": False,
}
SECOND_KEPT_DISK = {**KEPT_DISK, "name": "pages-kept-disk1.qcow2", "path": "/pool/pages-kept-disk1.qcow2"}
MADE_VM = {"uuid": "0f0e0d0c-0b0a-4908-8706-050403020100", "name": "pages-made"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-pages-before-ready"))
    yield process
    process.stop()


def answer(page: Page, url: str, body: object, status: int = 200) -> None:
    """Answers the page's requests to ``url`` with ``body`` (JSON) instead of the server."""
    page.route(url, lambda route: route.fulfill(status=status, content_type="application/json",
                                                body=json.dumps(body)))


def stay_on_page(page: Page, path: str) -> list[str]:
    """Answers the browser's loading of limen's page at ``path`` (not the API's address ending the same way)
    with 204 No Content, so the page that went for it stays (Playwright cannot read a page whose navigation
    is held): the addresses asked for, as they come."""
    asked: list[str] = []

    def stay(route: Route) -> None:
        asked.append(route.request.url)
        route.fulfill(status=204)

    page.route(lambda url: url.split("?")[0].endswith(path) and "/api/" not in url, stay)
    return asked


def came_back(page: Page) -> None:
    """What a browser says to a page it shows again from its back-forward cache (Playwright's Chromium keeps
    none): a page left with its button off, kept as it was, would have it off for good."""
    page.evaluate("() => window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true }))")


def answered_late(page: Page, route: Route) -> None:
    """Lets a held request go on to the server, and gives the page a moment to draw its answer."""
    with page.expect_response(route.request.url):
        route.continue_()
    page.wait_for_timeout(300)  # the answer's drawing, had it been kept, is done by now


# -- New VM ----------------------------------------------------------------------------------------


def test_a_create_held_from_before_the_script_waits_for_the_image_list(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # It was sent at once, the image select holding only "Loading images…": a VM with no boot image.
    page = signed_in_page(server)
    script = hold_requests(page, "**/static/js/vm-create.js")
    images = hold_requests(page, "**/api/isos")
    sent: list[dict[str, object]] = []

    def made(route: Route) -> None:
        # The list page signed in to may still be reading GET /api/vms after the route is set: only a
        # create counts.
        if route.request.method != "POST":
            route.fallback()
            return
        sent.append(json.loads(route.request.post_data or "{}"))
        route.fulfill(status=201, content_type="application/json", body=json.dumps(MADE_VM))

    page.route("**/api/vms", made)
    leaving = stay_on_page(page, f"/vms/{MADE_VM['uuid']}")
    page.goto(f"{server.base_url}/vms/new", wait_until="commit")
    page.fill("#name", "pages-made")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('create-form').dataset.heldSubmit !== undefined")
    wait_for_arrival(page, script)
    script[0].continue_()
    wait_for_arrival(page, images)
    page.wait_for_timeout(300)  # a create sent without the list would have been by now
    assert sent == []
    expect(page.locator("#submit")).to_be_disabled()  # taken: the press is under way
    images[0].fulfill(status=200, content_type="application/json", body=json.dumps([DEMO_IMAGE]))
    wait_for_arrival(page, leaving)
    assert len(sent) == 1 and sent[0]["iso"] == DEMO_ISO, sent


def test_vcpus_typed_before_the_script_stay_above_the_cap_flagged(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # The first quota read brought a typed 8 down to the cap of 4: typed before the script, it was not
    # counted as typed.
    page = signed_in_page(server)
    script = hold_requests(page, "**/static/js/vm-create.js")
    answer(page, "**/api/quota", FOUR_VCPUS_AT_MOST)
    page.goto(f"{server.base_url}/vms/new", wait_until="commit")
    page.fill("#vcpus", "8")
    wait_for_arrival(page, script)
    script[0].continue_()
    expect(page.locator("#vcpus-quota")).to_be_visible()
    expect(page.locator("#vcpus")).to_have_value("8")
    expect(page.locator("#vcpus-error")).to_contain_text("4")


def test_a_created_vms_button_stays_off_while_the_page_leaves(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # It came back on after the navigation began: a second press sent a second POST /api/vms, and
    # VM_ALREADY_EXISTS showed under the name as the page left.
    page = signed_in_page(server)
    answer(page, "**/api/vms", MADE_VM, status=201)
    leaving = stay_on_page(page, f"/vms/{MADE_VM['uuid']}")
    page.goto(f"{server.base_url}/vms/new")
    page.fill("#name", "pages-made")
    page.click("#submit")
    wait_for_arrival(page, leaving)
    expect(page.locator("#form-status")).to_contain_text("Created pages-made.")
    expect(page.locator("#submit")).to_be_disabled()
    came_back(page)
    expect(page.locator("#submit")).to_be_enabled()


# -- signing in ------------------------------------------------------------------------------------


def test_the_sign_in_button_stays_off_while_the_page_leaves(
    server: LimenProcess, plain_user: str, new_page: Callable[..., Page]
) -> None:
    # A second press while the next page loaded opened a second session.
    page = new_page()
    leaving = stay_on_page(page, "/tokens")
    page.goto(f"{server.base_url}/login?next=/tokens")
    page.fill("#login-name", plain_user)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    wait_for_arrival(page, leaving)
    expect(page.locator("#login-submit")).to_be_disabled()
    came_back(page)
    expect(page.locator("#login-submit")).to_be_enabled()


# -- the language menu -----------------------------------------------------------------------------


def test_a_language_chosen_before_the_menus_script_applies(server: LimenProcess, new_page: Callable[..., Page]) -> None:
    # The choice was lost and the menu said 한국어 over an English page.
    page = new_page()
    script = hold_requests(page, "**/static/js/language-menu.js")
    page.goto(f"{server.base_url}/login", wait_until="commit")
    page.select_option("#language-menu", "ko")
    wait_for_arrival(page, script)
    script[0].continue_()
    page.unroute("**/static/js/language-menu.js")  # the page in Korean loads it as usual
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    expect(page.locator("#language-menu")).to_have_value("ko")


# -- late answers ----------------------------------------------------------------------------------


def test_everyones_tokens_answered_after_yours_are_not_shown(
    server: LimenProcess, admin_api: httpx.Client, plain_user: str, signed_in_page: Callable[..., Page]
) -> None:
    # "Every user's tokens" checked and unchecked: everyone's answer, coming last, listed them all under the
    # unchecked box, without the owner column.
    theirs = f"theirs-{uuid.uuid4().hex[:6]}"
    assert admin_api.post("/api/tokens", json={"name": theirs, "user": plain_user}).status_code == 201
    page = signed_in_page(server, next_path="/tokens")
    everyones: list[Route] = []
    page.route(lambda url: url.endswith("/api/tokens?all=true"), lambda route: everyones.append(route))
    expect(page.locator("#all-toggle-row")).to_be_visible()
    page.check("#all-toggle")
    wait_for_arrival(page, everyones)
    page.uncheck("#all-toggle")
    expect(page.locator("#tokens-note")).to_contain_text("(yours)")
    answered_late(page, everyones[0])
    expect(page.locator("#token-rows")).not_to_contain_text(theirs)
    expect(page.locator("#owner-head")).to_be_hidden()
    expect(page.locator("#tokens-note")).to_contain_text("(yours)")


def fake_actions(count: int) -> list[dict[str, object]]:
    return [{"id": n, "at": "2026-01-01T00:00:00Z", "user": "root", "action": "start", "vm_name": f"pages-{n}",
             "vm_uuid": str(uuid.UUID(int=n)), "result_code": "OK", "details": ""} for n in range(count)]


def test_show_more_is_not_undone_by_the_timers_late_answer(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # The timer's refresh, asked for 100 rows and answered after "Show more"'s 200, took them away again.
    page = signed_in_page(server)
    answered: list[int] = []
    held: list[Route] = []

    def actions(route: Route) -> None:
        limit = int(route.request.url.rsplit("limit=", 1)[1])
        # The page's first ask and "Show more"'s are answered; the timer's are held, so none redraws the
        # list but the one let go below.
        if answered == [] or (limit == 200 and answered == [100]):
            answered.append(limit)
            route.fulfill(status=200, content_type="application/json", body=json.dumps(fake_actions(limit)))
        else:
            held.append(route)

    page.route("**/api/vm-actions?limit=*", actions)
    page.goto(f"{server.base_url}/audit")
    expect(page.locator("#action-rows tr")).to_have_count(100)
    wait_for_arrival(page, held)
    page.click("#actions-more")
    expect(page.locator("#action-rows tr")).to_have_count(200)
    timers = held[0]
    assert timers.request.url.endswith("limit=100"), timers.request.url
    timers.fulfill(status=200, content_type="application/json", body=json.dumps(fake_actions(100)))
    page.wait_for_timeout(300)  # the late answer's drawing, had it been kept, is done by now
    assert page.locator("#action-rows tr").count() == 200


def test_the_audit_timers_answer_is_shown_on_a_server_slower_than_the_timer(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # Only the latest read is drawn: had the timer asked again every 3 s whether or not its read was answered,
    # each read would have made the one before it stale, and on a server slower than that none was shown.
    page = signed_in_page(server)
    answered: list[Route] = []
    held: list[Route] = []

    def actions(route: Route) -> None:
        if answered:  # the timer's reads, after the page's first
            held.append(route)
            return
        answered.append(route)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(fake_actions(100)))

    page.route("**/api/vm-actions?limit=*", actions)
    page.goto(f"{server.base_url}/audit")
    expect(page.locator("#action-rows tr")).to_have_count(100)
    wait_for_arrival(page, held)
    page.wait_for_timeout(3500)  # longer than the page's 3-second timer, its read still unanswered
    held[0].fulfill(status=200, content_type="application/json", body=json.dumps(fake_actions(3)))
    expect(page.locator("#action-rows tr")).to_have_count(3)


# -- the console's toolbar -------------------------------------------------------------------------


def test_the_consoles_connect_button_is_off_until_the_page_connects(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # It read "Disconnect" and was on before the first connect: a press asked for a ticket, and the page's
    # own connect asked for a second and tore the first down.
    page = signed_in_page(server)
    with new_stopped_vm(server) as vm_id:
        script = hold_requests(page, "**/static/js/console-page.js")
        page.goto(f"{server.base_url}/vms/{vm_id}/console", wait_until="commit")
        expect(page.locator("#btn-connect")).to_be_disabled()
        wait_for_arrival(page, script)
        script[0].continue_()
        expect(page.locator("#btn-connect")).to_be_enabled()  # by the page's connect, whatever it meets
        expect(page.locator("#btn-connect")).to_have_attribute("data-action", re.compile(r"."))


# -- a row's button while its request runs ---------------------------------------------------------


def confirm_and_hold(page: Page, deleting: str, row: str, confirm: str) -> list[Route]:
    """Presses the row's button, confirms in its dialog, and holds the request that follows."""
    held: list[Route] = []
    page.route(lambda url: deleting in url,
               lambda route: held.append(route) if route.request.method == "DELETE" else route.fallback())
    page.locator(f"{row} button").click()
    page.click(confirm)
    wait_for_arrival(page, held)
    return held


def test_a_tokens_revoke_is_off_while_it_runs(
    server: LimenProcess, admin_api: httpx.Client, signed_in_page: Callable[..., Page]
) -> None:
    # A second press re-opened the dialog, and its DELETE was refused (NOT_FOUND) after the first succeeded.
    name = f"pages-{uuid.uuid4().hex[:6]}"
    made = admin_api.post("/api/tokens", json={"name": name})
    assert made.status_code == 201, made.text
    token_id = made.json()["id"]
    page = signed_in_page(server, next_path="/tokens")
    row = f"tr[data-token='{token_id}']"
    held = confirm_and_hold(page, f"/api/tokens/{token_id}", row, "#revoke-confirm")
    expect(page.locator(f"{row} button")).to_be_disabled()
    held[0].continue_()
    expect(page.locator(row)).to_have_attribute("data-revoked", "true")


def hold_first_read(page: Page, url: str) -> list[Route]:
    """Holds the page's next GET of ``url`` (a Playwright glob) at the network; those after it go on."""
    held: list[Route] = []
    page.route(url, lambda route: held.append(route)
               if route.request.method == "GET" and not held else route.fallback())
    return held


def answer_now_deliver_later(page: Page, route: Route) -> Callable[[], None]:
    """Has the server answer a held request now, and gives the page that answer only when the function
    returned is called (then waits for its drawing): a read the server answered before what the test does
    next, arriving after it."""
    answered = route.fetch()

    def deliver() -> None:
        route.fulfill(response=answered)
        page.wait_for_timeout(300)  # the answer's drawing, had it been kept, is done by now

    return deliver


def a_create_with_its_list_read_held(
    server: LimenProcess, admin_api: httpx.Client, signed_in_page: Callable[..., Page]
) -> tuple[Page, str, str, list[Route]]:
    """The tokens page listing a token of the test's, on which a second token was just created, with the list
    read that follows the create held: (the page, the first token's id, the second's name, the held read)."""
    made = admin_api.post("/api/tokens", json={"name": f"pages-{uuid.uuid4().hex[:6]}"})
    assert made.status_code == 201, made.text
    row = f"tr[data-token='{made.json()['id']}']"
    page = signed_in_page(server, next_path="/tokens")
    expect(page.locator(f"{row} button")).to_be_enabled()
    created = f"made meanwhile {uuid.uuid4().hex[:6]}"
    reads = hold_first_read(page, "**/api/tokens")
    page.fill("#token-name", created)
    page.click("#token-create")
    wait_for_arrival(page, reads)
    return page, str(made.json()["id"]), created, reads


def test_a_tokens_list_read_while_a_revoke_runs_keeps_its_button_off(
    server: LimenProcess, admin_api: httpx.Client, signed_in_page: Callable[..., Page]
) -> None:
    # Creating a token reads the list again; that read, answered while another token's revoke ran, drew the
    # row with its Revoke on again (a second press was refused: NOT_FOUND).
    page, token_id, created, reads = a_create_with_its_list_read_held(server, admin_api, signed_in_page)
    row = f"tr[data-token='{token_id}']"
    revoking = confirm_and_hold(page, f"/api/tokens/{token_id}", row, "#revoke-confirm")
    answered_late(page, reads[0])
    expect(page.locator("#token-rows")).to_contain_text(created)
    expect(page.locator(f"{row} button")).to_be_disabled()
    revoking[0].continue_()
    expect(page.locator(row)).to_have_attribute("data-revoked", "true")


def test_a_tokens_list_read_before_a_revoke_finished_does_not_bring_the_token_back(
    server: LimenProcess, admin_api: httpx.Client, signed_in_page: Callable[..., Page]
) -> None:
    page, token_id, created, reads = a_create_with_its_list_read_held(server, admin_api, signed_in_page)
    row = f"tr[data-token='{token_id}']"
    deliver = answer_now_deliver_later(page, reads[0])
    page.locator(f"{row} button").click()
    page.click("#revoke-confirm")
    expect(page.locator(row)).to_have_attribute("data-revoked", "true")
    deliver()
    expect(page.locator(row)).to_have_attribute("data-revoked", "true")
    expect(page.locator("#token-rows")).to_contain_text(created)


def create_user_holding_its_read(page: Page, name: str) -> Route:
    """Creates user ``name`` in the page's form; the list's read that follows is held: its route."""
    reads = hold_first_read(page, "**/api/users")
    page.fill("#new-name", name)
    page.fill("#new-password", PASSWORD)
    page.click("#create-submit")
    wait_for_arrival(page, reads)
    return reads[0]


def hold_change(page: Page, path: str, row: str, action: str) -> Route:
    """Presses the row's button for ``action`` (one without a dialog) and holds the PUT that follows."""
    held: list[Route] = []
    page.route(lambda url: url.endswith(path),
               lambda route: held.append(route) if route.request.method == "PUT" else route.fallback())
    page.locator(f"{row} [data-action='{action}']").click()
    wait_for_arrival(page, held)
    return held[0]


def test_a_users_list_read_while_a_change_runs_keeps_the_rows_buttons_off(
    server: LimenProcess, admin_api: httpx.Client, plain_user: str, signed_in_page: Callable[..., Page]
) -> None:
    # Creating a user reads the list again; that read, answered while a change of another user ran, gave
    # that user's row its buttons back.
    page = signed_in_page(server, next_path="/users")
    row = f"tr[data-user='{plain_user}']"
    expect(page.locator(f"{row} [data-action='disable']")).to_be_enabled()
    created = f"bob-{uuid.uuid4().hex[:6]}"
    try:
        read = create_user_holding_its_read(page, created)
        disabling = hold_change(page, f"/api/users/{plain_user}/disabled", row, "disable")
        answered_late(page, read)
        expect(page.locator(f"tr[data-user='{created}']")).to_have_count(1)
        expect(page.locator(f"{row} [data-action='unlock']")).to_be_disabled()
        disabling.continue_()
        expect(page.locator(row)).to_have_attribute("data-disabled", "true")
        expect(page.locator(f"{row} [data-action='unlock']")).to_be_enabled()
    finally:
        admin_api.delete(f"/api/users/{created}")


def test_a_users_list_read_before_a_delete_finished_does_not_bring_the_user_back(
    server: LimenProcess, admin_api: httpx.Client, plain_user: str, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server, next_path="/users")
    row = f"tr[data-user='{plain_user}']"
    expect(page.locator(f"{row} [data-action='delete']")).to_be_enabled()
    created = f"bob-{uuid.uuid4().hex[:6]}"
    try:
        deliver = answer_now_deliver_later(page, create_user_holding_its_read(page, created))
        page.locator(f"{row} [data-action='delete']").click()
        page.click("#delete-confirm")
        expect(page.locator(row)).to_have_count(0)
        deliver()
        expect(page.locator(row)).to_have_count(0)
        expect(page.locator(f"tr[data-user='{created}']")).to_have_count(1)
    finally:
        admin_api.delete(f"/api/users/{created}")


def test_an_images_delete_is_off_while_it_runs(server: LimenProcess, signed_in_page: Callable[..., Page]) -> None:
    page = signed_in_page(server)
    answer(page, "**/api/isos", [DEMO_IMAGE])
    page.goto(f"{server.base_url}/isos")
    row = f"tr[data-iso='{DEMO_ISO}']"
    held = confirm_and_hold(page, f"/api/isos/{DEMO_ISO}", row, "#iso-delete-confirm")
    expect(page.locator(f"{row} button")).to_be_disabled()
    answer(page, "**/api/isos", [])
    held[0].fulfill(status=204)
    expect(page.locator(row)).to_have_count(0)


KEPT_DISK_ROW = "#unused-rows tr"


def delete_a_kept_disk(page: Page, base_url: str) -> Route:
    """Opens the Disks page listing KEPT_DISK (the test's own answer), confirms its Delete and holds the
    request; the row's button is off meanwhile. The held DELETE."""
    answer(page, "**/api/volumes", [KEPT_DISK])
    page.goto(f"{base_url}/volumes")
    held = confirm_and_hold(page, f"/api/volumes/{KEPT_DISK['name']}", KEPT_DISK_ROW, "#volume-delete-confirm")
    expect(page.locator(f"{KEPT_DISK_ROW} button")).to_be_disabled()
    return held[0]


def test_a_kept_disks_delete_is_off_while_it_runs(server: LimenProcess, signed_in_page: Callable[..., Page]) -> None:
    page = signed_in_page(server)
    row, held = KEPT_DISK_ROW, [delete_a_kept_disk(page, server.base_url)]
    answer(page, "**/api/volumes", [])
    held[0].fulfill(status=204)
    expect(page.locator(row)).to_have_count(0)


def test_a_refused_delete_gives_the_row_its_button_back_when_the_list_cannot_be_read(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # The list drawn anew gave it back; a list that could not be read (a host down: 503) left it off for good.
    page = signed_in_page(server)
    row, held = KEPT_DISK_ROW, [delete_a_kept_disk(page, server.base_url)]
    page.unroute("**/api/volumes")
    answer(page, "**/api/volumes", {"error": "A host did not answer", "code": "HYPERVISOR_UNAVAILABLE",
                                    "details": "host local", "message": "Try again later."}, status=503)
    held[0].fulfill(status=409, content_type="application/json", body=json.dumps({
        "error": "The disk volume is in use", "code": "VOLUME_IN_USE", "details": "", "message": ""}))
    expect(page.locator("#volumes-error")).to_contain_text("HYPERVISOR_UNAVAILABLE")
    expect(page.locator(f"{row} button")).to_be_enabled()


def test_an_images_delete_stays_off_when_a_list_asked_before_it_comes_back(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # An image whose checksum is still being computed has the list read again every 4 s: one read on its way
    # when Delete was confirmed drew the row with its button on while the delete ran.
    pending = {**DEMO_IMAGE, "sha256": None}
    page = signed_in_page(server)
    answer(page, "**/api/isos", [pending])
    page.goto(f"{server.base_url}/isos")
    row = f"tr[data-iso='{DEMO_ISO}']"
    expect(page.locator(f"{row} button")).to_be_enabled()
    page.unroute("**/api/isos")
    reads = hold_requests(page, "**/api/isos")
    wait_for_arrival(page, reads)  # the checksum's timer asked again
    held = confirm_and_hold(page, f"/api/isos/{DEMO_ISO}", row, "#iso-delete-confirm")
    reads[0].fulfill(status=200, content_type="application/json", body=json.dumps([pending]))
    page.wait_for_timeout(300)  # the read's drawing is done by now
    expect(page.locator(f"{row} button")).to_be_disabled()
    page.unroute("**/api/isos")
    answer(page, "**/api/isos", [])
    held[0].fulfill(status=204)
    expect(page.locator(row)).to_have_count(0)


def test_an_images_list_read_before_its_delete_does_not_bring_it_back(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # The checksum's timer read the list; Delete was confirmed meanwhile, and that read, answered after the
    # delete's own, drew the deleted image again (until the next read).
    pending = {**DEMO_IMAGE, "sha256": None}
    page = signed_in_page(server)
    answer(page, "**/api/isos", [pending])
    page.goto(f"{server.base_url}/isos")
    row = f"tr[data-iso='{DEMO_ISO}']"
    expect(page.locator(f"{row} button")).to_be_enabled()
    page.unroute("**/api/isos")
    reads = hold_requests(page, "**/api/isos")
    wait_for_arrival(page, reads)  # the checksum's timer asked again
    held = confirm_and_hold(page, f"/api/isos/{DEMO_ISO}", row, "#iso-delete-confirm")
    page.unroute("**/api/isos")
    answer(page, "**/api/isos", [])
    held[0].fulfill(status=204)
    expect(page.locator(row)).to_have_count(0)
    reads[0].fulfill(status=200, content_type="application/json", body=json.dumps([pending]))
    page.wait_for_timeout(300)  # the late answer's drawing, had it been kept, is done by now
    # Not expect(): it would wait for the next timer's read (answered with no image), which hides the row.
    assert page.locator(row).count() == 0


def test_a_disks_delete_stays_off_when_another_deletes_read_comes_back(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # Two deletes on their way: the first one's read, answered while the second ran, drew the second disk
    # with its Delete on (a second press re-opened the dialog and was refused: VOLUME_NOT_FOUND).
    first, second = KEPT_DISK, SECOND_KEPT_DISK
    page = signed_in_page(server)
    answer(page, "**/api/volumes", [first, second])
    page.goto(f"{server.base_url}/volumes")
    first_row, row = (f"tr[data-volume='{disk['host']}/{disk['name']}']" for disk in (first, second))
    deleting_first = confirm_and_hold(page, f"/api/volumes/{first['name']}", first_row, "#volume-delete-confirm")
    deleting_second = confirm_and_hold(page, f"/api/volumes/{second['name']}", row, "#volume-delete-confirm")
    page.unroute("**/api/volumes")
    answer(page, "**/api/volumes", [second])
    deleting_first[0].fulfill(status=204)
    expect(page.locator(KEPT_DISK_ROW)).to_have_count(1)
    expect(page.locator(f"{row} button")).to_be_disabled()
    page.unroute("**/api/volumes")
    answer(page, "**/api/volumes", [])
    deleting_second[0].fulfill(status=204)
    expect(page.locator(KEPT_DISK_ROW)).to_have_count(0)


def test_a_disks_list_read_before_another_delete_finished_does_not_bring_that_disk_back(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # Two deletes on their way: the first one's read, answered after the second one's, drew the second disk
    # again, its Delete on (a press was refused: VOLUME_NOT_FOUND).
    first, second = KEPT_DISK, SECOND_KEPT_DISK
    page = signed_in_page(server)
    answer(page, "**/api/volumes", [first, second])
    page.goto(f"{server.base_url}/volumes")
    rows = [f"tr[data-volume='{disk['host']}/{disk['name']}']" for disk in (first, second)]
    deleting_first = confirm_and_hold(page, f"/api/volumes/{first['name']}", rows[0], "#volume-delete-confirm")
    deleting_second = confirm_and_hold(page, f"/api/volumes/{second['name']}", rows[1], "#volume-delete-confirm")
    page.unroute("**/api/volumes")
    reads = hold_requests(page, "**/api/volumes")
    deleting_first[0].fulfill(status=204)
    wait_for_arrival(page, reads)  # the first delete's read, asked while the second one runs
    page.unroute("**/api/volumes")
    answer(page, "**/api/volumes", [])
    deleting_second[0].fulfill(status=204)
    expect(page.locator(KEPT_DISK_ROW)).to_have_count(0)
    reads[0].fulfill(status=200, content_type="application/json", body=json.dumps([second]))
    page.wait_for_timeout(300)  # the late answer's drawing, had it been kept, is done by now
    expect(page.locator(KEPT_DISK_ROW)).to_have_count(0)


def test_a_page_that_cannot_read_who_is_signed_in_says_so_and_retries(
    server: LimenProcess, plain_user: str, signed_in_page: Callable[..., Page]
) -> None:
    # The tokens page wires its form once it knows the user: it stood at "Loading…" with Create dead.
    page = signed_in_page(server, name=plain_user, password=PASSWORD, next_path="/tokens")
    answer(page, "**/api/me", {"error": "limen's database did not answer", "code": "DATABASE_UNAVAILABLE",
                               "details": "", "message": "Try again in a moment."}, status=503)
    page.reload()
    box = page.locator("main > .page-cannot-start")
    expect(box).to_contain_text("DATABASE_UNAVAILABLE")
    # Create looked ready and did nothing: off, and looking it, until the page can work.
    expect(page.locator("#token-create")).to_be_disabled()
    expect(page.locator("#token-name")).to_be_disabled()
    expect(page.locator("#tokens-note")).to_have_text("Cannot load the tokens")  # not "Loading…" under it
    page.unroute("**/api/me")
    box.get_by_role("button", name="Retry").click()
    expect(box).to_have_count(0)
    page.fill("#token-name", "after the retry")
    page.click("#token-create")
    expect(page.locator("#secret-panel")).to_be_visible()


@pytest.mark.parametrize("path", ["/tokens", "/users", "/isos", "/volumes"])
def test_a_page_that_cannot_read_who_is_signed_in_offers_only_retry(
    server: LimenProcess, signed_in_page: Callable[..., Page], path: str
) -> None:
    page = signed_in_page(server, next_path=path)
    answer(page, "**/api/me", {"error": "limen's database did not answer", "code": "DATABASE_UNAVAILABLE",
                               "details": "", "message": "Try again in a moment."}, status=503)
    page.reload()
    expect(page.locator("main > .page-cannot-start")).to_be_visible()
    controls = page.locator("main :is(button, input, select, textarea):visible")
    expect(controls.and_(page.locator(":enabled"))).to_have_count(1)
    expect(controls.and_(page.locator(":enabled"))).to_have_text("Retry")


def test_a_failed_reread_of_the_images_keeps_the_list_and_the_image_chosen(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    # Coming back to the tab reads the images again; when that read failed the list became "None (the ISO list
    # is unavailable)" and Create made a VM without the image chosen. The error stayed after a later read
    # worked.
    page = signed_in_page(server)
    answer(page, "**/api/isos", [DEMO_IMAGE, {**DEMO_IMAGE, "name": "other.iso"}])
    page.goto(f"{server.base_url}/vms/new")
    page.locator("#iso").select_option("other.iso")
    page.unroute("**/api/isos")
    answer(page, "**/api/isos", {"error": "Internal error", "code": "INTERNAL_ERROR", "details": "held",
                                 "message": "See limen's log."}, status=500)
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # back to the tab
    expect(page.locator("#iso-error")).to_be_visible()
    expect(page.locator("#iso")).to_have_value("other.iso")
    page.unroute("**/api/isos")
    answer(page, "**/api/isos", [DEMO_IMAGE, {**DEMO_IMAGE, "name": "other.iso"}])
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(page.locator("#iso-error")).to_be_hidden()
    expect(page.locator("#iso")).to_have_value("other.iso")
