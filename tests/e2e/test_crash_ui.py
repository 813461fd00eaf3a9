"""The audit page in real Chromium after a server was killed with a console open: "End session" on the
row the dead server held closes it at once, and says why."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from tests.e2e.helpers import new_running_vm, save_screenshot, sign_in, start_limen
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PROXY_STATUS = "VNC connection established, starting proxy..."
# Sweeps an hour apart: the dead server's row stays live until someone ends it.
QUIET = {"LIMEN_INSTANCE_HEARTBEAT": "3600"}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[LimenProcess, LimenProcess]]:
    doomed = start_limen(tmp_path, **QUIET)
    survivor = start_limen(tmp_path, **QUIET)
    yield doomed, survivor
    for process in (doomed, survivor):
        process.stop()


@pytest.fixture
def running_vm(servers: tuple[LimenProcess, LimenProcess]) -> Iterator[str]:
    with new_running_vm(servers[0]) as name:
        yield name


def live_row(server: LimenProcess, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=10) as api:
        while not api.get("/api/console-sessions?live=true").json():
            assert time.monotonic() < deadline, "the console's audit row never appeared"
            time.sleep(0.05)


def test_end_session_on_a_dead_servers_console_closes_it_and_says_so(
    servers: tuple[LimenProcess, LimenProcess], running_vm: str, new_page: Callable[..., Page]
) -> None:
    doomed, survivor = servers
    with connect(f"{doomed.ws_url}/api/vms/{running_vm}/console", additional_headers=doomed.auth_headers) as ws:
        statuses = []
        while isinstance(frame := ws.recv(timeout=30), str):
            statuses.append(json.loads(frame)["message"])
        assert statuses[-1] == PROXY_STATUS and frame.startswith(b"RFB")
        live_row(survivor)  # written a moment after admission; kill once it is there
        doomed.kill(signal.SIGKILL)

    page = sign_in(new_page(), survivor.base_url, next_path="/audit")
    row = page.locator('#session-rows tr[data-live="true"]', has_text=running_vm)
    expect(row).to_have_count(1)
    row.locator('button[data-action="terminate"]').click()
    page.click("#end-confirm")
    expect(page.locator("#audit-toast")).to_contain_text("was lost: its record is closed")
    ended = page.locator("#session-rows tr", has_text=running_vm)
    expect(ended).to_have_attribute("data-live", "false")
    code = ended.locator(".end-code code")
    expect(code).to_have_text("SERVER_LOST")
    lost = re.compile(r"^limen instance \w+ \(host .+, pid \d+\) was lost: its process ended$")
    # On hover over the end in words and its code (ffaca58 put the words beside the code, in one span).
    expect(code.locator("xpath=..")).to_have_attribute("title", lost)
    save_screenshot(page, "audit-server-lost-1280")
