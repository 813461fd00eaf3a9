"""Hosts in the UI, in Chromium against a real ``limen serve`` with a second real libvirt host
(tests/support/extra_host.py): the details page names a VM's host, and when that host hangs (SIGSTOP of its
libvirtd) the list and the details page say "Host unavailable" without a reload, and its state again after
SIGCONT."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import save_screenshot, start_limen
from tests.support.extra_host import ExtraHost, pick_address
from tests.support.libvirt_cleanup import remove_domain
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(180)]

TIMEOUT = 3.0


@pytest.fixture
def extra_host(tmp_path: Path) -> Iterator[ExtraHost]:
    address, ports = pick_address()
    host = ExtraHost(tmp_path / "extra-host", address, ports).start()
    yield host
    host.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path / "limen", LIMEN_LIBVIRT_TIMEOUT=str(TIMEOUT))
    yield process
    process.stop()


def test_a_hung_host_shows_on_the_list_and_the_details_page(
    server: LimenProcess, extra_host: ExtraHost, signed_in_page: Callable[..., Page]
) -> None:
    name = f"limen-test-{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=server.base_url, timeout=30, headers=server.auth_headers) as api:
        assert api.post("/api/hosts", json={"name": "edge", "uri": extra_host.uri,
                                            "console_address": extra_host.address}).status_code == 201
        created = api.post("/api/vms", json={"name": name, "memory_mib": 64, "host": "edge"})
        assert created.status_code == 201, created.text
    try:
        page = signed_in_page(server)
        row = page.locator(f'tr[data-vm-name="{name}"]')
        expect(row.locator(".badge")).to_have_text("Stopped")
        expect(page.locator("#refresh-note")).to_contain_text("live")
        extra_host.pause()
        expect(row.locator(".badge")).to_have_text("Host unavailable", timeout=(TIMEOUT + 5) * 1000)
        # The list's row offers no action either (its buttons stayed enabled and each answered 503).
        row_start = row.get_by_role("button", name=f"Start {name}", exact=True)
        expect(row_start).to_be_disabled()
        expect(row.locator('[data-action="delete"]')).to_be_disabled()
        expect(row.locator('[data-action="console"]')).to_have_attribute("aria-disabled", "true")
        # Its thumbnail does not say "Stopped" beside the badge, and each disabled control says why.
        expect(row.locator(".cell-thumb")).to_have_text("Host unavailable")
        for control in (row_start, row.locator('[data-action="delete"]'), row.locator('[data-action="console"]'),
                        row.locator("summary")):
            expect(control).to_have_attribute("title", "Not now: host edge does not answer.")
        save_screenshot(page, "vm-list-host-unavailable-1280")
        details = page.context.new_page()
        details.goto(f"{server.base_url}/vms/{created.json()['uuid']}")
        expect(details.locator("#vm-state .badge")).to_have_text("Host unavailable")
        expect(details.locator("#fact-host")).to_have_text("edge — Host unavailable")
        # Every action would answer HYPERVISOR_UNAVAILABLE: none is offered (they stayed enabled).
        start = details.get_by_role("button", name=f"Start {name}", exact=True)
        expect(start).to_be_disabled()
        expect(details.locator("#settings-save")).to_be_disabled()
        # The console page says so too (its badge read "Stopped"), and its panel names the host (it spoke of
        # libvirtd on limen's own machine).
        console = page.context.new_page()
        console.goto(f"{server.base_url}/vms/{created.json()['uuid']}/console")
        expect(console.locator("#vm-state .badge")).to_have_text("Host unavailable")
        box = console.locator('#panel-extra .error-box[data-code="HYPERVISOR_UNAVAILABLE"]')
        expect(box.locator(".error-message")).to_have_text(
            "This VM's host edge does not answer, so limen cannot reach the VM. Check that libvirtd on edge runs "
            "and answers, then retry.", timeout=(TIMEOUT + 10) * 1000)
        save_screenshot(console, "console-host-unavailable-1280")
        console.close()
        extra_host.resume()
        expect(row.locator(".badge")).to_have_text("Stopped", timeout=20_000)
        expect(details.locator("#vm-state .badge")).to_have_text("Stopped", timeout=20_000)
        expect(details.locator("#fact-host")).to_have_text("edge")
        expect(start).to_be_enabled()
        expect(row_start).to_be_enabled()
        expect(row.locator('[data-action="console"]')).to_have_attribute("href", re.compile("/console$"))
        expect(row.locator(".cell-thumb")).to_have_text("Stopped")
        expect(row_start).not_to_have_attribute("title", re.compile("."))
    finally:
        extra_host.resume()
        remove_domain(extra_host.uri, name)
