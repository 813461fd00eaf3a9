"""/metrics follows console attempts: a successful one and failed ones, scraped before and after."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from limen.settings import Settings
from tests.support.console import (
    ConsoleServer,
    ConsoleTranscript,
    FakeDomain,
    client,
    driver_uri,
    read_console,
    read_frames,
    running_console,
)
from tests.support.fake_vnc import RfbServer, SilentServer
from tests.support.prometheus import sample as _sample

pytestmark = pytest.mark.integration


async def _scrape(server: ConsoleServer) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://127.0.0.1:{server.port}/metrics")).text


async def test_metrics_count_attempts_stages_bytes_and_ends(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with RfbServer() as vnc, SilentServer() as mute:
        domains = [FakeDomain("good", vnc.port), FakeDomain("mute", mute.port)]
        settings = make_settings(libvirt_uri=driver_uri(tmp_path, domains), console_banner_timeout=0.3)
        async with running_console(settings) as server:
            before = await _scrape(server)

            ws = await client(server.url("good"))
            transcript = ConsoleTranscript()
            await read_frames(ws, transcript, time.monotonic(), until_binary=1)
            during = await _scrape(server)
            await ws.send(b"RFB 003.008\n")
            await ws.close()
            await server.wait_idle()

            assert (await read_console(server.url("mute"))).close_reason == "VNC_HANDSHAKE_FAILED"
            assert (await read_console(server.url("missing"))).close_reason == "VM_NOT_FOUND"
            after = await _scrape(server)

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert _sample(during, "limen_console_sessions_active") == 1
    assert _sample(after, "limen_console_sessions_active") == 0
    assert delta("limen_console_attempts_total", result="OK") == 1
    assert delta("limen_console_attempts_total", result="VNC_HANDSHAKE_FAILED") == 1
    assert delta("limen_console_attempts_total", result="VM_NOT_FOUND") == 1
    assert delta("limen_console_sessions_ended_total", reason="client_closed") == 1
    assert delta("limen_console_first_status_seconds_count") == 3
    assert delta("limen_console_stage_seconds_count", stage="check_vm") == 2  # the missing VM never leaves it
    assert delta("limen_console_stage_seconds_count", stage="read_banner") == 1
    assert delta("limen_console_bytes_total", direction="to_client") >= 12  # at least the banner
    assert delta("limen_console_bytes_total", direction="to_vnc") == 12
    assert delta("limen_libvirt_call_failures_total", operation="get_vm", code="VM_NOT_FOUND") == 1
