"""The Snapshots section of the VM details page, in Chromium against a real ``limen serve`` and a real QEMU
VM: take snapshots (progress, then the tree), revert and delete after confirmations that name the snapshot
and the VM, a refused name shown at its field, and the VM's delete confirmation saying its snapshots go too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import DEMO_ISO, QEMU_URI
from tests.e2e.helpers import DESKTOP, PHONE, new_running_vm, save_screenshot, start_limen
from tests.support.libvirt_cleanup import remove_domain
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    process = start_limen(Path(tmp_path_factory.mktemp("limen-snapshots")))
    yield process
    process.stop()


@pytest.fixture
def api(server: LimenProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, headers=server.auth_headers) as client:
        yield client


@pytest.fixture
def running_vm(server: LimenProcess) -> Iterator[str]:
    with new_running_vm(server, disk_gib=1) as name:  # a snapshot needs a disk
        yield name


def _take(page: Page, name: str, description: str = "") -> None:
    page.locator("#snapshot-name").fill(name)
    page.locator("#snapshot-description").fill(description)
    page.get_by_role("button", name="Take snapshot").click()
    expect(page.locator("#snapshot-status")).to_contain_text(f"Snapshot {name} taken", timeout=60_000)
    expect(page.locator(f'#snapshot-tree li[data-snapshot="{name}"]')).to_be_visible()


def test_snapshots_section_take_revert_delete(
    server: LimenProcess, api: httpx.Client, signed_in_page: Callable[..., Page], running_vm: str
) -> None:
    page = signed_in_page(server)
    page.goto(f"{server.base_url}/vms/{running_vm}")
    page.wait_for_selector('body[data-events="live"]', timeout=10_000)
    expect(page.locator("#no-snapshots")).to_be_visible()

    page.locator("#snapshot-name").fill("bad name")
    page.get_by_role("button", name="Take snapshot").click()
    expect(page.locator("#snapshot-name-error")).to_contain_text("letters a–z, A–Z, digits")
    expect(page.locator("#snapshot-name")).to_have_attribute("aria-invalid", "true")
    # A description over 1,000 characters is refused at its field, kept whole (maxlength cut it silently).
    page.locator("#snapshot-name").fill("long-description")
    page.locator("#snapshot-description").fill("d" * 1001)
    page.get_by_role("button", name="Take snapshot").click()
    expect(page.locator("#snapshot-description-error")).to_have_text("at most 1000 characters")
    expect(page.locator("#snapshot-description")).to_be_focused()
    expect(page.locator("#snapshot-description")).to_have_value("d" * 1001)
    expect(page.locator("#snapshot-name")).not_to_have_attribute("aria-invalid", "true")
    page.locator("#snapshot-description").fill("")

    _take(page, "base", "the GRUB prompt")
    _take(page, "second")
    api.post(f"/api/vms/{running_vm}/snapshots/base/revert").raise_for_status()
    _take(page, "branch", "taken after a revert to base")
    # A name taken already is said at the field, which has the focus back (only the box said it).
    page.locator("#snapshot-name").fill("second")
    page.get_by_role("button", name="Take snapshot").click()
    expect(page.locator("#snapshot-name-error")).to_have_text(
        "This VM already has a snapshot named second: choose another name.")
    expect(page.locator("#snapshot-name")).to_be_focused()
    page.locator("#snapshot-name").fill("")
    tree = page.locator("#snapshot-tree")
    expect(tree.locator('li[data-snapshot="base"] > ul > li')).to_have_count(2)  # second and branch, under base
    expect(tree.locator('li[data-snapshot="branch"]')).to_have_class("current")
    expect(tree.locator('li[data-snapshot="base"] .snapshot-kind').first).to_have_text("with memory")

    page.locator("#snapshot-name").fill("base")  # taken: the error in the schema's words, the tree unchanged
    page.get_by_role("button", name="Take snapshot").click()
    expect(page.locator("#snapshot-status")).to_contain_text("Snapshot already exists")
    expect(tree.locator("li")).to_have_count(3)
    page.get_by_role("button", name="Dismiss").click()
    save_screenshot(page, "vm-snapshots-tree-1280")
    page.locator("#snapshots").screenshot(path=str(Path(save_screenshot(page, "vm-snapshots-page-1280")).parent
                                                   / "vm-snapshots-section-1280.png"))

    dialog = page.locator("#snapshot-dialog")
    page.get_by_role("button", name=f"Revert {running_vm} to snapshot second").click()
    expect(dialog).to_be_visible()
    expect(dialog.locator(".vm-ref")).to_have_text(running_vm)
    expect(dialog.locator(".snapshot-ref")).to_have_text("second")
    expect(dialog).to_contain_text("running from that moment")
    save_screenshot(page, "vm-snapshots-confirm-revert-1280")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert not next(s for s in api.get(f"/api/vms/{running_vm}/snapshots").json() if s["name"] == "second")["current"]

    page.get_by_role("button", name=f"Revert {running_vm} to snapshot second").click()
    dialog.get_by_role("button", name="Revert").click()
    expect(page.locator("#snapshot-status")).to_contain_text("Reverted to second")
    expect(tree.locator('li[data-snapshot="second"]')).to_have_class("current")
    # The list was drawn anew: the keyboard is back on that snapshot's Revert, not at the page's top.
    expect(tree.locator('li[data-snapshot="second"] [data-action="revert"]')).to_be_focused()

    page.get_by_role("button", name="Delete snapshot branch").click()
    expect(dialog.locator(".snapshot-ref")).to_have_text("branch")
    dialog.get_by_role("button", name="Delete snapshot").click()
    expect(page.locator("#snapshot-status")).to_contain_text("Snapshot branch deleted")
    expect(tree.locator("li")).to_have_count(2)
    expect(tree.locator(":focus")).to_have_count(1)  # on a neighbour's button, not lost to <body>
    assert [s["name"] for s in api.get(f"/api/vms/{running_vm}/snapshots").json()] == ["base", "second"]
    actions = [a["action"] for a in api.get("/api/vm-actions", params={"vm": running_vm}).json()]
    assert actions[:2] == ["snapshot-delete", "revert"]

    page.get_by_role("button", name=f"Delete {running_vm}").click()
    expect(page.locator("#confirm-dialog")).to_contain_text("Its 2 snapshots are deleted with it.")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    save_screenshot(page, "vm-snapshots-confirm-vm-delete-phone")
    page.locator("#confirm-dialog").get_by_role("button", name="Cancel").click()
    page.locator("#snapshots").scroll_into_view_if_needed()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "the page is wider than a phone"
    save_screenshot(page, "vm-snapshots-phone")

    # The VM list's delete dialog says so too; a VM without snapshots says nothing of them.
    page.set_viewport_size(DESKTOP)
    page.goto(server.base_url + "/")
    row = page.locator(f'tr[data-vm-name="{running_vm}"]')
    row.get_by_label(f"More actions for {running_vm}").click()
    row.get_by_role("button", name=f"Delete {running_vm}").click()
    list_dialog = page.locator("#delete-dialog")
    expect(list_dialog.locator("#delete-snapshots")).to_have_text(" Its 2 snapshots are deleted with it.")
    save_screenshot(page, "vm-list-delete-dialog-snapshots-1280")
    list_dialog.get_by_role("button", name="Cancel").click()
    bare = f"{running_vm}-b"
    assert api.post("/api/vms", json={"name": bare, "memory_mib": 64}).status_code == 201
    try:
        page.reload()
        bare_row = page.locator(f'tr[data-vm-name="{bare}"]')
        bare_row.get_by_label(f"More actions for {bare}").click()
        bare_row.get_by_role("button", name=f"Delete {bare}").click()
        expect(list_dialog).to_contain_text(bare)
        page.wait_for_load_state("networkidle")
        expect(list_dialog.locator("#delete-snapshots")).to_have_text("")
        list_dialog.get_by_role("button", name="Cancel").click()
    finally:
        remove_domain(QEMU_URI, bare)


def test_a_vm_without_a_disk_is_told_it_cannot_have_snapshots(
    server: LimenProcess, api: httpx.Client, signed_in_page: Callable[..., Page], vm_names: Callable[[], str]
) -> None:
    """The form was offered, and taking a snapshot answered SNAPSHOT_UNSUPPORTED with advice about converting
    raw disks to qcow2, on a page that said the VM has no disk."""
    name = vm_names()
    created = api.post("/api/vms", json={"name": name, "memory_mib": 64, "iso": DEMO_ISO})
    assert created.status_code == 201, created.text
    page = signed_in_page(server, PHONE)
    page.context.add_cookies([{"name": "limen_lang", "value": "ko", "url": server.base_url}])
    page.goto(f"{server.base_url}/vms/{name}")
    expect(page.locator("#snapshot-hint")).to_have_text(
        "이 가상 머신에는 디스크가 없어 스냅샷을 만들 수 없습니다. 스냅샷은 qcow2 디스크에 저장됩니다.")
    expect(page.locator("#snapshot-form")).to_be_hidden()
    save_screenshot(page, "snapshots-no-disk-ko-phone")
