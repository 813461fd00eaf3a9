"""Resource graphs in Chromium against a real ``limen serve`` and a real QEMU VM: the details page draws its
four uPlot graphs and they grow live; the VM list shows the running VM's CPU and memory; screenshots at
1280 and 390 px wide (test-artifacts/stats-*.png)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import DEMO_ISO
from tests.e2e.helpers import DESKTOP, PHONE, new_running_vm, save_screenshot, start_limen
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

GRAPHS = ("cpu", "memory", "disk", "net")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path, LIMEN_STATS_INTERVAL="1")
    yield process
    process.stop()


@pytest.fixture
def running_vm(server: LimenProcess) -> Iterator[str]:
    with new_running_vm(server, memory_mib=128) as name:
        yield name


def points(page: Page) -> int:
    return int(page.locator("#resource-graphs").get_attribute("data-points") or 0)


def test_graphs_draw_and_update_live(
    server: LimenProcess, details_page: Callable[..., Page], running_vm: str
) -> None:
    for viewport, label in ((DESKTOP, "1280"), (PHONE, "390")):
        page = details_page(running_vm, viewport)
        page.wait_for_selector('#resource-graphs[data-running="true"]', timeout=20_000)
        for graph in GRAPHS:
            expect(page.locator(f'.graph[data-graph="{graph}"] canvas')).to_have_count(1)
        # Live: more points arrive without reloading the page.
        page.wait_for_function("() => Number(document.querySelector('#resource-graphs').dataset.points) >= 3",
                               timeout=20_000)
        before = points(page)
        page.wait_for_function(
            f"() => Number(document.querySelector('#resource-graphs').dataset.points) > {before}", timeout=20_000)
        expect(page.locator('.graph[data-graph="cpu"] .graph-figure')).to_contain_text("%")
        expect(page.locator('.graph[data-graph="memory"] .graph-figure')).to_contain_text("128 MiB assigned")
        expect(page.locator("#graphs-note")).to_contain_text("Live")
        # No graph wider than the page (the phone's layout stacks them).
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, overflow
        page.locator("#resource-graphs").scroll_into_view_if_needed()
        save_screenshot(page, f"stats-details-{label}")

        page.goto(server.base_url + "/")
        figures = page.locator(f'tr[data-vm-name="{running_vm}"] .vm-figures')
        expect(figures).to_contain_text("CPU", timeout=20_000)
        expect(figures).to_contain_text("MiB")
        save_screenshot(page, f"stats-list-{label}")
        page.close()


def test_graphs_opened_by_name_follow_a_rename(server: LimenProcess, details_page: Callable[..., Page],
                                               vm_names: Callable[[], str]) -> None:
    """A page opened by the VM's name follows a rename; its graphs asked for the old name's figures, got
    VM_NOT_FOUND and stopped for good (empty until a reload)."""
    name = vm_names()
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as client:
        created = client.post("/api/vms", json={"name": name, "memory_mib": 64, "iso": DEMO_ISO})
        assert created.status_code == 201, created.text
        uuid = created.json()["uuid"]
        page = details_page(name)
        page.wait_for_selector('body[data-events="live"]', timeout=10_000)
        renamed = f"{name}-b"
        assert client.patch(f"/api/vms/{uuid}", json={"name": renamed}).status_code == 200
        page.wait_for_url(f"**/vms/{renamed}", timeout=10_000)
        assert client.post(f"/api/vms/{uuid}/start").status_code == 200
        page.wait_for_selector('#resource-graphs[data-running="true"]', timeout=20_000)
        page.wait_for_function("() => Number(document.querySelector('#resource-graphs').dataset.points) >= 2",
                               timeout=20_000)
