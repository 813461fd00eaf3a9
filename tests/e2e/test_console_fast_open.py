"""What makes a console open fast, in Chromium against a real ``limen serve``: the details page has the
console's modules fetched before the click, and the console page asks for its ticket and makes its socket
without waiting for noVNC (imported only after). Functional checks only: what is fetched from where, and in
which order."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page, expect

from limen.web.routes import NOVNC_JOINED
from tests.e2e.helpers import hold_novnc, hold_requests, new_stopped_vm, start_limen
from tests.support.server import LimenProcess

# What is fetched in which order: the database is reached only by the sign-in and the ticket.
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.same_on_any_database]

# noVNC's modules the console page used, and how many bytes each took from the network (0: from cache).
NOVNC_TRANSFERS = """() => performance.getEntriesByType("resource")
  .filter((r) => r.name.includes("/static/novnc")).map((r) => [r.name, r.transferSize])"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    # No VM boots: without auto-start the console stops at VM_NOT_RUNNING, after noVNC and the ticket.
    process = start_limen(tmp_path_factory.mktemp("limen-fast-open"), LIMEN_CONSOLE_AUTO_START="false")
    yield process
    process.stop()


@pytest.fixture
def vm_uuid(server: LimenProcess) -> Iterator[str]:
    with new_stopped_vm(server) as uuid_:
        yield uuid_


def test_the_console_opened_from_the_details_page_fetches_no_novnc_module(
    server: LimenProcess, vm_uuid: str, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server)
    page.goto(f"{server.base_url}/vms/{vm_uuid}")
    console = page.locator('a[data-action="console"][href$="/console"]')
    console.wait_for()
    page.wait_for_load_state("networkidle")  # the prefetch is done while the user reads the page
    console.click()
    # The console page, not the details page whose body has no console state (which the test below read as
    # settled), nor the console page's document before its body is parsed (null: the check threw, CI run on
    # 6b4e335 under load).
    page.wait_for_url(f"**/vms/{vm_uuid}/console")
    page.wait_for_function("() => document.body !== null"
                           " && !['loading', 'connecting'].includes(document.body.dataset.consoleState)")
    transfers = page.evaluate(NOVNC_TRANSFERS)
    # One module, noVNC joined by `make web`, fetched ahead by the details page: nothing transferred now.
    assert [name.rsplit("/", 1)[1] for name, _ in transfers] == [NOVNC_JOINED], transfers
    assert all("/static/novnc-" in name for name, _ in transfers), transfers
    assert [name for name, size in transfers if size != 0] == []


def test_the_ticket_and_the_socket_do_not_wait_for_novnc(
    server: LimenProcess, vm_uuid: str, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server)
    held = hold_novnc(page)  # noVNC does not arrive until released
    with page.expect_websocket(lambda ws: "/console?ticket=" in ws.url):
        page.goto(f"{server.base_url}/vms/{vm_uuid}/console")
    # The ticket opened the socket and limen answered through it, noVNC still held (asked for or not yet).
    page.wait_for_selector('body[data-console-state="failed"]')
    expect(page.locator("#panel-extra .error-box")).to_have_attribute("data-code", "VM_NOT_RUNNING")
    assert len(held) <= 1
    for route in held:
        route.continue_()


def test_a_console_opened_from_another_page_of_the_tab_asks_its_ticket_before_api_me_answers(
    server: LimenProcess, vm_uuid: str, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server)
    page.goto(f"{server.base_url}/vms/{vm_uuid}")  # a page of the tab learns the CSRF token (GET /api/me)
    page.locator('a[data-action="console"][href$="/console"]').wait_for()
    page.wait_for_load_state("networkidle")
    held = hold_requests(page, "**/api/me")  # /api/me does not answer until released
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/console-ticket")) as asked:
        page.locator('a[data-action="console"][href$="/console"]').click()
    assert asked.value.headers.get("x-csrf-token")  # the tab's kept token
    for route in held:  # the page's header still asks who is signed in; it never held the ticket up
        route.continue_()
    page.unroute("**/api/me")
    page.wait_for_selector('body[data-console-state="failed"]')  # the ticket was accepted and opened the socket
    expect(page.locator("#panel-extra .error-box")).to_have_attribute("data-code", "VM_NOT_RUNNING")
