"""The stage table is the one source: the README, /api/console-stages, the settings' worst case and the
console page all agree with it, and a second console kind is just another stage list."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from limen.api.app import create_app
from limen.console.stage_table import CONSOLE_KINDS, VNC_STAGES, StageList, StageSpec, VncStage
from limen.errors import ErrorCode
from limen.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONSOLE_PAGE = (ROOT / "src/limen/web/static/js/console-page.js").read_text()
DEFAULTS = Settings.model_validate({})


def test_the_readme_carries_the_tables_stage_list_with_the_default_deadlines() -> None:
    assert VNC_STAGES.readme_table(DEFAULTS) in README


def test_the_readme_states_the_worst_case_the_table_gives() -> None:
    worst = VNC_STAGES.worst_case(DEFAULTS)
    assert f"Worst case from the upgrade to a verdict with the defaults: {worst:g} s." in README


def test_the_worst_case_is_the_sum_of_the_stage_deadlines_and_at_most_20_s_by_default() -> None:
    settings = Settings.model_validate({"console_check_vm_timeout": 1.5, "console_banner_timeout": 2.5})
    assert VNC_STAGES.deadlines(settings)["check_vm"] == 1.5
    assert VNC_STAGES.deadlines(settings)["read_banner"] == 2.5
    assert "proxy" not in VNC_STAGES.deadlines(settings)  # the proxy stage has no deadline
    assert VNC_STAGES.worst_case(settings) == 1.5 + 8 + 3 + 3 + 2.5
    assert VNC_STAGES.worst_case(DEFAULTS) <= 20


def test_the_seed_texts_are_exact() -> None:
    texts = {stage.name: stage.status for stage in VNC_STAGES}
    assert texts == {
        "check_vm": "Connected, checking VM status...",
        "start_vm": "Starting VM...",
        "get_port": "Getting VNC port...",
        "connect": "Connecting to VNC server on port {port}...",
        "read_banner": None,
        "proxy": "VNC connection established, starting proxy...",
    }
    assert VNC_STAGES["connect"].status_text(port=5900) == "Connecting to VNC server on port 5900..."


def test_the_stage_enum_names_the_table_in_order() -> None:
    assert [stage.name for stage in VNC_STAGES] == [s.value for s in VncStage if s is not VncStage.ENDED]


async def test_the_api_publishes_the_table_with_the_deadlines_in_force(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(console_get_port_timeout=2.5)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://limen.test") as client:
            response = await client.get("/api/console-stages")  # no credentials: it is public
    assert response.status_code == 200
    body = response.json()
    assert set(body) == set(CONSOLE_KINDS)
    vnc = body["vnc"]
    assert vnc["worst_case_seconds"] == VNC_STAGES.worst_case(settings) == 3 + 8 + 2.5 + 3 + 3
    assert [s["name"] for s in vnc["stages"]] == [s.name for s in VNC_STAGES]
    get_port = vnc["stages"][2]
    assert get_port == {
        "name": "get_port", "label": "getting the VNC port", "text": "Getting VNC port...",
        "deadline_seconds": 2.5, "deadline_setting": "console_get_port_timeout",
        "timeout_code": "VNC_PORT_ERROR", "libvirt_timeout_code": "HYPERVISOR_UNAVAILABLE",
    }
    assert vnc["stages"][-1]["deadline_seconds"] is None and vnc["stages"][-1]["timeout_code"] is None


def test_the_console_page_reads_the_stage_labels_from_the_api_and_keeps_no_copy() -> None:
    assert "/api/console-stages" in (ROOT / "src/limen/web/static/js/api.js").read_text()
    assert "loadConsoleStages" in CONSOLE_PAGE
    for stage in VNC_STAGES:
        assert stage.label not in CONSOLE_PAGE, stage.label
        if stage.status is not None:
            assert stage.status.split("{")[0] not in CONSOLE_PAGE, stage.status


def test_a_second_console_kind_is_another_stage_list() -> None:
    serial = StageList("serial", (
        StageSpec(name="check_vm", label="checking the VM", status="Connected, checking VM status...",
                  deadline_setting="console_check_vm_timeout", timeout_code=ErrorCode.HYPERVISOR_UNAVAILABLE,
                  libvirt_timeout_code=ErrorCode.HYPERVISOR_UNAVAILABLE, timeout_detail="{limit:g} s"),
        StageSpec(name="open_serial", label="opening the serial port", status="Opening the serial port...",
                  deadline_setting="console_connect_timeout", timeout_code=ErrorCode.VNC_CONNECTION_FAILED),
        StageSpec(name="stream", label="the serial console", status="Serial console connected", deadline_setting=None),
    ))
    assert serial.worst_case(DEFAULTS) == 6
    assert [s["text"] for s in serial.describe(DEFAULTS)["stages"]][-1] == "Serial console connected"
    assert "| `open_serial` | `Opening the serial port...` |" in serial.readme_table(DEFAULTS)


@pytest.mark.parametrize(("stages", "why"), [
    ((StageSpec(name="a", label="a", status=None, deadline_setting=None),) * 2, "twice"),
    ((StageSpec(name="a", label="a", status=None, deadline_setting="console_nonsense"),), "no setting"),
    ((StageSpec(name="a", label="a", status=None, deadline_setting="console_connect_timeout"),), "no timeout code"),
])
def test_a_stage_list_that_cannot_work_is_refused_when_declared(stages: tuple[StageSpec, ...], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        StageList("broken", stages)
