"""A VM's details page between its HTML appearing and the VM being loaded, and while its requests run, in
Chromium against a real ``limen serve`` and VMs defined in real QEMU (never started): no control acts before
the page knows the VM (a press sent the markup's default boot order, removed the VM's owner, or failed on the
missing VM and left every control dead), and a card's buttons wait for the answer to their request (a second
press sent the change twice). The CD card's list of images is read again when the user comes back to the page."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Page, Request, Route, expect

from tests.conftest import DEMO_ISO, QEMU_URI
from tests.e2e.helpers import hold_requests, start_limen, wait_for_arrival
from tests.support.libvirt_cleanup import remove_domain
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# Long enough for a wrong request to leave the page after a press; nothing waits on it being short.
SETTLE_MS = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-details-before-ready"))
    yield process
    process.stop()


@pytest.fixture
def api(server: LimenProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, headers=server.auth_headers) as client:
        yield client


@pytest.fixture
def new_vm(api: httpx.Client) -> Iterator[Callable[..., dict[str, object]]]:
    """Defines ``limen-test-…`` VMs (64 MiB, the demo ISO in the CD-ROM, a 1 GiB disk unless told); each is
    removed with its disks after the test."""
    made: list[str] = []

    def make(**more: object) -> dict[str, object]:
        name = f"limen-test-{uuid.uuid4().hex[:10]}"
        made.append(name)
        created = api.post("/api/vms", json={"name": name, "memory_mib": 64, "iso": DEMO_ISO, "disk_gib": 1, **more})
        assert created.status_code == 201, created.text
        vm: dict[str, object] = created.json()
        return vm

    yield make
    for name in made:
        remove_domain(QEMU_URI, name)


def changes_sent(page: Page, vm_uuid: str) -> list[tuple[str, str]]:
    """Every request but a GET the page sends about the VM, as (method, path after the VM's id), as it goes."""
    sent: list[tuple[str, str]] = []

    def note(request: Request) -> None:
        if request.method != "GET" and vm_uuid in request.url:
            sent.append((request.method, request.url.split(vm_uuid, 1)[1]))

    page.on("request", note)
    return sent


def open_before_the_vm(page: Page, base_url: str, vm_uuid: str) -> list[Route]:
    """Opens the VM's page with its first GET /api/vms/{id} held; returns once the page's script runs (its
    action buttons are made) and that request waits."""
    held = hold_requests(page, f"**/api/vms/{vm_uuid}")
    page.goto(f"{base_url}/vms/{vm_uuid}", wait_until="domcontentloaded")
    expect(page.locator("#vm-actions button[data-action=start]")).to_be_attached()
    wait_for_arrival(page, held)
    return held


def release(page: Page, url: str, held: list[Route]) -> None:
    """Sends the requests held at ``url`` and lets the next ones go (unroute sends those that came meanwhile)."""
    for route in list(held):
        route.continue_()
    page.unroute(url)


def let_the_vm_load(page: Page, vm_uuid: str, held: list[Route]) -> None:
    release(page, f"**/api/vms/{vm_uuid}", held)


def test_no_action_before_the_vm_is_known_and_all_work_once_it_is(
    server: LimenProcess, new_vm: Callable[..., dict[str, object]], signed_in_page: Callable[..., Page]
) -> None:
    """Start pressed while the VM loaded threw on the missing VM and left every control disabled until a reload;
    the Console link and the screen (href="#") jumped to the top of the page."""
    vm = new_vm()
    page = signed_in_page(server)
    sent = changes_sent(page, str(vm["uuid"]))
    held = open_before_the_vm(page, server.base_url, str(vm["uuid"]))

    for action in ("start", "start-console", "stop", "reboot", "force-stop", "reset", "delete"):
        expect(page.locator(f"#vm-actions button[data-action={action}]")).to_be_disabled()
    for link in ("#vm-actions a[data-action=console]", "#screen-box"):
        expect(page.locator(link)).not_to_have_attribute("href", "#")
        page.locator(link).click(force=True)
    page.locator("#vm-actions button[data-action=start]").click(force=True)
    page.wait_for_timeout(SETTLE_MS)
    assert sent == []
    assert page.url == f"{server.base_url}/vms/{vm['uuid']}", page.url
    expect(page.locator("#confirm-dialog")).not_to_be_visible()

    let_the_vm_load(page, str(vm["uuid"]), held)
    expect(page.locator("#vm-name")).to_have_text(str(vm["name"]))
    console = f"/vms/{vm['uuid']}/console"
    expect(page.locator("#vm-actions a[data-action=console]")).to_have_attribute("href", console)
    expect(page.locator("#screen-box")).to_have_attribute("href", console)
    expect(page.locator("#vm-actions button[data-action=start]")).to_be_enabled()
    expect(page.locator("#vm-actions button[data-action=stop]")).to_be_disabled()  # as a stopped VM's is
    page.locator("#vm-actions button[data-action=delete]").click()
    expect(page.locator("#confirm-text")).to_contain_text(str(vm["name"]))
    page.locator("#confirm-cancel").click()
    assert sent == []


def test_the_page_of_a_vm_that_is_not_there_has_no_live_control(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    """The first load failing (VM_NOT_FOUND) left every button live, each throwing on the missing VM."""
    page = signed_in_page(server)
    page.goto(f"{server.base_url}/vms/limen-test-never-there")
    expect(page.locator("body")).to_have_attribute("data-state", "missing")
    expect(page.locator("#vm-actions button")).not_to_have_count(0)
    expect(page.locator("main :is(button, select):enabled")).to_have_count(0)
    expect(page.locator("#settings-form :enabled")).to_have_count(0)
    expect(page.locator("main a[href='#']")).to_have_count(0)
    expect(page.locator("#load-error a[href='/']")).to_be_attached()


def test_the_cd_boot_and_settings_controls_wait_for_the_vm(
    server: LimenProcess, api: httpx.Client, new_vm: Callable[..., dict[str, object]],
    signed_in_page: Callable[..., Page]
) -> None:
    """Boot order's Save pressed while the VM loaded sent the markup's default ("cdrom,hd") over the VM's own;
    Eject ejected blindly; Save settings threw and the form was then filled over what was typed."""
    vm = new_vm()
    assert api.patch(f"/api/vms/{vm['uuid']}", json={"boot_order": ["hd"]}).status_code == 200
    page = signed_in_page(server)
    sent = changes_sent(page, str(vm["uuid"]))
    held = open_before_the_vm(page, server.base_url, str(vm["uuid"]))

    for control in ("#iso-select", "#media-insert", "#media-eject", "#boot-select", "#boot-save",
                    "#set-name", "#set-vcpus", "#set-memory", "#set-autostart", "#settings-save"):
        expect(page.locator(control)).to_be_disabled()
    for button in ("#boot-save", "#media-eject"):
        page.locator(button).click(force=True)
    page.locator("#settings-form").evaluate("(form) => form.requestSubmit()")  # as takeForm() sends a held press
    page.wait_for_timeout(SETTLE_MS)
    assert sent == []
    expect(page.locator("#settings-status")).to_be_empty()

    let_the_vm_load(page, str(vm["uuid"]), held)
    expect(page.locator("#boot-select")).to_have_value("hd")
    expect(page.locator("#set-name")).to_have_value(str(vm["name"]))
    for control in ("#iso-select", "#media-insert", "#media-eject", "#boot-select", "#boot-save", "#settings-save"):
        expect(page.locator(control)).to_be_enabled()
    assert api.get(f"/api/vms/{vm['uuid']}").json()["boot_order"] == ["hd"]
    assert sent == []


def test_take_snapshot_waits_for_the_vm_and_a_vm_without_a_disk_never_offers_it(
    server: LimenProcess, new_vm: Callable[..., dict[str, object]], signed_in_page: Callable[..., Page]
) -> None:
    """Pressed while the VM loaded, "Take snapshot" threw on the missing VM ("Taking a snapshot failed … reload");
    the form showed for a VM without a disk until the VM came."""
    with_disk, diskless = new_vm(), new_vm(disk_gib=None)
    page = signed_in_page(server)
    sent = changes_sent(page, str(with_disk["uuid"]))
    held = open_before_the_vm(page, server.base_url, str(with_disk["uuid"]))
    expect(page.locator("#snapshot-create")).to_be_disabled()
    expect(page.locator("#snapshot-form")).to_be_hidden()
    # As dom.js's takeForm() sends a press held before the script took the form.
    page.locator("#snapshot-name").evaluate("(name) => { name.value = 'too-early'; name.form.requestSubmit(); }")
    page.wait_for_timeout(SETTLE_MS)
    assert sent == []
    expect(page.locator("#snapshot-status")).to_be_empty()
    let_the_vm_load(page, str(with_disk["uuid"]), held)
    expect(page.locator("#snapshot-form")).to_be_visible()
    expect(page.locator("#snapshot-create")).to_be_enabled()

    held = open_before_the_vm(page, server.base_url, str(diskless["uuid"]))
    expect(page.locator("#snapshot-form")).to_be_hidden()
    let_the_vm_load(page, str(diskless["uuid"]), held)
    expect(page.locator("#snapshot-hint")).to_contain_text("no disk")
    expect(page.locator("#snapshot-form")).to_be_hidden()


def test_set_owner_waits_for_the_users(
    server: LimenProcess, api: httpx.Client, new_vm: Callable[..., dict[str, object]],
    signed_in_page: Callable[..., Page]
) -> None:
    """While the users loaded, "Set owner" was enabled with an empty select: pressed, it removed the VM's owner."""
    user = f"bora-{uuid.uuid4().hex[:6]}"
    assert api.post("/api/users", json={"name": user, "password": "a password of the user"}).status_code == 201
    try:
        vm = new_vm()
        assert api.put(f"/api/vms/{vm['uuid']}/owner", json={"owner": user}).status_code == 200
        page = signed_in_page(server)
        sent = changes_sent(page, str(vm["uuid"]))
        held = hold_requests(page, "**/api/users")
        page.goto(f"{server.base_url}/vms/{vm['uuid']}")
        expect(page.locator("#vm-name")).to_have_text(str(vm["name"]))
        expect(page.locator("#owner-save")).to_be_visible()
        wait_for_arrival(page, held)
        expect(page.locator("#owner-save")).to_be_disabled()
        expect(page.locator("#owner-select")).to_be_disabled()
        page.locator("#owner-save").click(force=True)
        page.wait_for_timeout(SETTLE_MS)
        assert sent == []
        release(page, "**/api/users", held)
        expect(page.locator("#owner-select")).to_have_value(user)
        expect(page.locator("#owner-select")).to_be_enabled()
        expect(page.locator("#owner-save")).to_be_disabled()  # nothing chosen yet
        assert api.get(f"/api/vms/{vm['uuid']}").json()["owner"] == user
    finally:
        api.delete(f"/api/users/{user}")


def test_a_cards_buttons_wait_for_the_answer_to_their_request(
    server: LimenProcess, new_vm: Callable[..., dict[str, object]], signed_in_page: Callable[..., Page]
) -> None:
    """Eject, Save settings and Resize stayed enabled while their request ran: a second press sent it twice,
    and Resize pressed again before the page had the VM anew proposed a size from the old capacity."""
    vm = new_vm()
    vm_uuid = str(vm["uuid"])
    page = signed_in_page(server, next_path=f"/vms/{vm_uuid}")
    sent = changes_sent(page, vm_uuid)
    expect(page.locator("#media-eject")).to_be_enabled()

    held = hold_requests(page, f"**/api/vms/{vm_uuid}/media")
    page.locator("#media-eject").click()
    wait_for_arrival(page, held)
    for control in ("#media-eject", "#media-insert", "#boot-save", "#iso-select"):
        expect(page.locator(control)).to_be_disabled()
    page.locator("#media-eject").click(force=True)
    page.wait_for_timeout(SETTLE_MS)
    release(page, f"**/api/vms/{vm_uuid}/media", held)
    expect(page.locator("#media-status")).to_contain_text("Ejected")
    expect(page.locator("#media-insert")).to_be_enabled()
    expect(page.locator("#iso-select")).to_be_focused()  # Eject, disabled with no disc left, dropped it
    assert sent == [("PUT", "/media")]

    held = hold_requests(page, f"**/api/vms/{vm_uuid}")
    page.locator("#set-vcpus").fill("2")
    page.locator("#settings-save").click()
    while not any(route.request.method == "PATCH" for route in held):
        page.wait_for_timeout(50)
    expect(page.locator("#settings-save")).to_be_disabled()
    page.locator("#settings-save").click(force=True)
    page.wait_for_timeout(SETTLE_MS)
    release(page, f"**/api/vms/{vm_uuid}", held)
    expect(page.locator("#settings-status")).to_contain_text("Saved")
    expect(page.locator("#settings-save")).to_be_enabled()
    expect(page.locator("#settings-save")).to_be_focused()  # back where it was before the wait
    assert sent == [("PUT", "/media"), ("PATCH", "")]

    resize = page.get_by_role("button", name="Resize disk vda")
    held = hold_requests(page, f"**/api/vms/{vm_uuid}/disks/vda/resize")
    resize.click()
    page.get_by_label("New size (GiB)").fill("2")
    page.get_by_role("button", name="Resize", exact=True).click()
    wait_for_arrival(page, held)
    expect(resize).to_be_disabled()
    # Until the page has the VM as the resize left it: the reload after the answer waits here.
    reloads = hold_requests(page, f"**/api/vms/{vm_uuid}")
    release(page, f"**/api/vms/{vm_uuid}/disks/vda/resize", held)
    expect(page.locator("#disk-status")).to_contain_text("vda is now 2 GiB")
    wait_for_arrival(page, reloads)
    expect(resize).to_be_disabled()
    release(page, f"**/api/vms/{vm_uuid}", reloads)
    expect(resize).to_be_enabled()
    resize.click()
    expect(page.get_by_label("New size (GiB)")).to_have_value("3")
    page.locator("#resize-cancel").click()
    assert sent == [("PUT", "/media"), ("PATCH", ""), ("POST", "/disks/vda/resize")]


def test_a_vm_deleted_while_a_cards_request_runs_keeps_its_console_link_off(
    server: LimenProcess, api: httpx.Client, new_vm: Callable[..., dict[str, object]],
    signed_in_page: Callable[..., Page],
) -> None:
    """The card's request ending after the VM was deleted drew the actions again, and gave the Console link its
    address back: it opened a console page that said VM_NOT_FOUND."""
    vm = new_vm()
    vm_uuid = str(vm["uuid"])
    page = signed_in_page(server, next_path=f"/vms/{vm_uuid}")
    console_link = page.locator("#vm-actions a[data-action=console]")
    expect(console_link).to_have_attribute("href", f"/vms/{vm_uuid}/console")
    held = hold_requests(page, f"**/api/vms/{vm_uuid}/media")
    page.locator("#media-eject").click()
    wait_for_arrival(page, held)
    assert api.delete(f"/api/vms/{vm_uuid}", params={"delete_disks": "true"}).status_code in (200, 204)
    expect(page.locator("body")).to_have_attribute("data-state", "deleted")
    expect(console_link).not_to_have_attribute("href", re.compile("."))
    release(page, f"**/api/vms/{vm_uuid}/media", held)  # answered VM_NOT_FOUND: the VM is gone
    expect(page.locator("#media-status")).to_contain_text("VM_NOT_FOUND")
    expect(console_link).not_to_have_attribute("href", re.compile("."))
    expect(console_link).to_have_attribute("aria-disabled", "true")


def hold_gets(page: Page, url: str, answering: list[object] | None = None) -> list[Route]:
    """Holds the page's GETs to ``url`` (a Playwright glob) as :func:`hold_requests` does; other methods go on.
    While ``answering`` holds a body, GETs are answered with it (JSON) instead: the test empties it to hold."""
    held: list[Route] = []

    def route(route: Route) -> None:
        if route.request.method != "GET":
            route.fallback()
        elif answering:
            fulfil_json(route, answering[0])
        else:
            held.append(route)

    page.route(url, route)
    return held


def wait_for_count(page: Page, arrived: list[Route], count: int) -> None:
    """Waits until ``count`` requests held by :func:`hold_gets` have arrived."""
    while len(arrived) < count:
        page.wait_for_timeout(50)


def fulfil_json(route: Route, body: object) -> None:
    route.fulfill(status=200, content_type="application/json", body=json.dumps(body))


def page_comes_back(page: Page) -> None:
    """What the browser says when the tab is shown again: the page reads the VM anew."""
    page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")


def test_an_older_read_of_the_vm_does_not_show_it_running_again_after_a_stop(
    server: LimenProcess, api: httpx.Client, new_vm: Callable[..., dict[str, object]],
    signed_in_page: Callable[..., Page]
) -> None:
    """Stop's reload and its follow-up (a look, a while later, whether the guest ignored the shutdown) were
    both on their way when the VM stopped; answered after the read that showed it stopped, each drew it
    running again, Stop on, and the follow-up said it still ran and offered Force stop."""
    vm_uuid = str(new_vm()["uuid"])
    shown = api.get(f"/api/vms/{vm_uuid}").json()
    running, stopped = {**shown, "state": "running"}, {**shown, "state": "stopped"}
    page = signed_in_page(server)
    answering: list[object] = [running]
    reads = hold_gets(page, f"**/api/vms/{vm_uuid}", answering)
    page.route(f"**/api/vms/{vm_uuid}/stop", lambda route: fulfil_json(route, running))  # the guest goes on
    page.goto(f"{server.base_url}/vms/{vm_uuid}?stop_follow_up=1")
    page.wait_for_selector('body[data-events="live"]')
    expect(page.locator("#fact-state")).to_have_text("running")
    answering.clear()
    page.locator("#vm-actions button[data-action=stop]").click()
    wait_for_count(page, reads, 2)  # Stop's reload, then its follow-up a second later
    page_comes_back(page)
    wait_for_count(page, reads, 3)
    fulfil_json(reads[2], stopped)  # the guest shut down after all
    expect(page.locator("#fact-state")).to_have_text("stopped")
    expect(page.locator("#vm-actions button[data-action=stop]")).to_be_disabled()
    fulfil_json(reads[1], running)
    fulfil_json(reads[0], running)
    page.wait_for_timeout(SETTLE_MS)  # the late answers' drawing, had it been kept, is done by now
    expect(page.locator("#fact-state")).to_have_text("stopped")
    expect(page.locator("#vm-actions button[data-action=stop]")).to_be_disabled()
    expect(page.locator("[data-follow-up=stop]")).to_have_count(0)


def test_an_older_read_of_the_actions_does_not_take_the_newest_off(
    server: LimenProcess, api: httpx.Client, new_vm: Callable[..., dict[str, object]],
    signed_in_page: Callable[..., Page]
) -> None:
    """A read of the VM's recent actions asked before a change was recorded, answered after the read that
    shows it, took the change off the list again."""
    vm_uuid = str(new_vm()["uuid"])
    page = signed_in_page(server, next_path=f"/vms/{vm_uuid}")
    page.wait_for_selector('body[data-events="live"]')
    before = len(api.get("/api/vm-actions", params={"vm": vm_uuid}).json())
    expect(page.locator("#action-rows tr")).to_have_count(before)
    reads = hold_gets(page, "**/api/vm-actions?*")
    page_comes_back(page)
    wait_for_count(page, reads, 1)
    older = reads[0].fetch()  # the list as it was when asked
    assert api.patch(f"/api/vms/{vm_uuid}", json={"autostart": True}).status_code == 200  # in another tab
    page_comes_back(page)
    wait_for_count(page, reads, 2)
    for newer in reads[1:]:
        newer.continue_()
    expect(page.locator("#action-rows tr")).to_have_count(before + 1)
    reads[0].fulfill(response=older)
    page.wait_for_timeout(SETTLE_MS)  # the late answer's drawing, had it been kept, is done by now
    expect(page.locator("#action-rows tr")).to_have_count(before + 1)


def test_an_older_read_of_the_snapshots_does_not_bring_a_deleted_one_back(
    server: LimenProcess, api: httpx.Client, new_vm: Callable[..., dict[str, object]],
    signed_in_page: Callable[..., Page]
) -> None:
    """A snapshot taken in another tab had the list read again while Delete was confirmed here; that read,
    answered after the delete's own, drew the deleted snapshot again with its buttons on."""
    vm_uuid = str(new_vm()["uuid"])
    doomed = {"name": "doomed", "parent": None, "description": "", "created_at": "2026-01-02T03:04:05Z",
              "vm_state": "shutoff", "with_memory": False, "current": True}
    page = signed_in_page(server)
    answering: list[object] = [[doomed]]
    lists = hold_gets(page, f"**/api/vms/{vm_uuid}/snapshots", answering)
    page.route(f"**/api/vms/{vm_uuid}/snapshots/doomed", lambda route: route.fulfill(status=204))
    page.goto(f"{server.base_url}/vms/{vm_uuid}")
    page.wait_for_selector('body[data-events="live"]')
    row = "#snapshot-tree li[data-snapshot=doomed]"
    expect(page.locator(f"{row} button[data-action=delete]")).to_be_enabled()
    answering.clear()
    taken = api.post(f"/api/vms/{vm_uuid}/snapshots", json={"name": "elsewhere"})  # its end is an event here
    assert taken.status_code == 202, taken.text
    wait_for_count(page, lists, 1)
    page.locator(f"{row} button[data-action=delete]").click()
    page.locator("#snapshot-dialog-ok").click()
    wait_for_count(page, lists, 2)
    fulfil_json(lists[1], [])
    expect(page.locator(row)).to_have_count(0)
    fulfil_json(lists[0], [doomed])
    page.wait_for_timeout(SETTLE_MS)  # the late answer's drawing, had it been kept, is done by now
    expect(page.locator(row)).to_have_count(0)


def test_the_cd_list_is_read_again_when_the_user_comes_back_and_keeps_their_pick(
    server: LimenProcess, api: httpx.Client, new_vm: Callable[..., dict[str, object]],
    signed_in_page: Callable[..., Page]
) -> None:
    """The image list was read once, with the page: an image uploaded in another tab was not offered until the
    page was loaded again."""
    picked, uploaded_later = (f"limen-test-{uuid.uuid4().hex[:8]}.iso" for _ in range(2))
    try:
        assert api.post("/api/isos", params={"name": picked}, content=b"\x02" * 4096).status_code == 201
        vm = new_vm()
        page = signed_in_page(server, next_path=f"/vms/{vm['uuid']}")
        select = page.locator("#iso-select")
        expect(select).to_be_enabled()
        expect(select).to_have_value(DEMO_ISO)  # the VM's own medium
        select.select_option(picked)
        assert api.post("/api/isos", params={"name": uploaded_later}, content=b"\x02" * 4096).status_code == 201
        # The user comes back to the tab (the browser tells the page so).
        page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
        expect(select.locator(f"option[value='{uploaded_later}']")).to_be_attached()
        expect(select).to_have_value(picked)
        assert api.delete(f"/api/isos/{uploaded_later}").status_code == 200
        page.evaluate("() => window.dispatchEvent(new Event('focus'))")
        expect(select.locator(f"option[value='{uploaded_later}']")).to_have_count(0)
        expect(select).to_have_value(picked)
    finally:
        for name in (picked, uploaded_later):
            api.delete(f"/api/isos/{name}")
