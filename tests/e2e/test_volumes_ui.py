"""The Disks page in Chromium against a real ``limen serve``. Its list of volumes is answered by the test
(the shared test pool holds other tests' disks), so what the page shows is known."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, Route, expect

from tests.e2e.helpers import PHONE, start_limen
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.same_on_any_database]

KEPT_DISK = {
    "name": "gone-disk0.qcow2", "host": "local", "path": "/pool/gone-disk0.qcow2", "format": "qcow2",
    "capacity_bytes": 2**30, "allocation_bytes": 200704, "used_by": [], "backing_for": [], "in_use": False,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-volumes-ui"))
    yield process
    process.stop()


def answer_volumes(page: Page, volumes: list[dict[str, object]]) -> None:
    def fulfil(route: Route) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(volumes))

    page.route("**/api/volumes", fulfil)


@pytest.mark.parametrize(("locale", "says"), [("en-US", "No VM uses a disk of the storage pool."),
                                              ("ko-KR", "스토리지 풀의 디스크를 쓰는 가상 머신이 없습니다.")])
def test_the_disks_in_use_say_so_when_no_vm_uses_one(
    server: LimenProcess, signed_in_page: Callable[..., Page], locale: str, says: str
) -> None:
    # Its table stood with its header alone: an empty card under "Disks in use".
    page = signed_in_page(server, PHONE, locale=locale)
    answer_volumes(page, [KEPT_DISK])
    page.goto(f"{server.base_url}/volumes")
    expect(page.locator("#unused-rows tr")).to_have_count(1)
    expect(page.locator("#used-empty")).to_have_text(says)
    expect(page.locator("#unused-empty")).to_be_hidden()


def test_the_disks_in_use_have_no_such_line_when_a_vm_uses_one(
    server: LimenProcess, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server)
    used = {**KEPT_DISK, "name": "web-disk0.qcow2", "in_use": True, "used_by": [{"uuid": "u-1", "name": "web"}]}
    answer_volumes(page, [used])
    page.goto(f"{server.base_url}/volumes")
    expect(page.locator("#used-rows tr")).to_have_count(1)
    expect(page.locator("#used-empty")).to_be_hidden()
    expect(page.locator("#unused-empty")).to_be_visible()


def test_an_empty_pool_says_it_has_no_disks(server: LimenProcess, signed_in_page: Callable[..., Page]) -> None:
    # It said "Every disk volume belongs to a VM." above "No VM uses a disk": there was none at all.
    page = signed_in_page(server, locale="ko-KR")
    answer_volumes(page, [])
    page.goto(f"{server.base_url}/volumes")
    expect(page.locator("#unused-empty")).to_have_text("스토리지 풀에 디스크 볼륨이 없습니다.")
    expect(page.locator("#used-empty")).to_be_visible()


@pytest.mark.parametrize(("locale", "label"), [("en-US", "Delete…"), ("ko-KR", "삭제…")])
def test_a_kept_disks_delete_says_it_asks_first(
    server: LimenProcess, signed_in_page: Callable[..., Page], locale: str, label: str
) -> None:
    # It read "Delete" where every other delete that asks first (VMs, users, snapshots) reads "Delete…".
    page = signed_in_page(server, locale=locale)
    answer_volumes(page, [KEPT_DISK])
    page.goto(f"{server.base_url}/volumes")
    button = page.locator("#unused-rows [data-action='delete']")
    expect(button).to_have_text(label)
    button.click()
    expect(page.locator("dialog[open]")).to_have_count(1)
