"""deploy/limen.service and what it relies on: `systemd-analyze verify` finds nothing to say about the unit
(run against this machine's `limen`, since verify checks that ExecStart's program exists), and a real
`limen serve` stops on SIGTERM well within the unit's TimeoutStopSec, closing its consoles with
SERVER_SHUTDOWN and ending its event streams."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import DEMO_ISO
from tests.support.console import ConsoleTranscript, read_frames
from tests.support.server import LIMEN_BIN, LimenProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "limen.service"
SHIPPED_EXEC = "/opt/limen/bin/limen"
PROXY_STATUS = "VNC connection established, starting proxy..."


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
    return found


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd)")
    return subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert text.count(SHIPPED_EXEC) == 1
    unit = tmp_path / "limen.service"
    unit.write_text(text.replace(SHIPPED_EXEC, str(LIMEN_BIN)))
    result = verify(unit)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    # verify does speak up in this environment (no systemd as PID 1): a misspelt key is reported.
    (tmp_path / "typo.service").write_text(text.replace("Restart=on-failure", "Restartt=on-failure"))
    assert "Unknown key" in verify(tmp_path / "typo.service").stderr


def test_the_unit_runs_limen_as_its_own_user_restarts_it_and_stops_it_in_time() -> None:
    found = directives(UNIT.read_text())
    assert found["User"] == ["limen"] and found["SupplementaryGroups"] == ["libvirt"]
    assert found["Restart"] == ["on-failure"]
    assert found["ExecStart"][0].endswith(" serve")
    assert found["ProtectSystem"] == ["strict"] and found["NoNewPrivileges"] == ["yes"]
    assert found["StateDirectory"] == ["limen limen/isos"] and found["LogsDirectory"] == ["limen"]
    assert "ExecReload" not in found  # limen reads its settings once; the unit says to restart instead
    assert int(found["TimeoutStopSec"][0]) >= 2 * STOP_BOUND


STOP_BOUND = 12.0  # seconds: sessions get 5 s to close, uvicorn 5 s of graceful shutdown, and some slack


async def open_console(server: LimenProcess, vm: str) -> tuple[ClientConnection, ConsoleTranscript]:
    ws = await connect(f"{server.ws_url}/api/vms/{vm}/console", additional_headers=server.auth_headers,
                       open_timeout=10, close_timeout=2, ping_interval=None, max_size=None)
    transcript = ConsoleTranscript()
    await asyncio.wait_for(read_frames(ws, transcript, time.monotonic(), until_binary=1), 30)
    assert transcript.statuses[-1] == PROXY_STATUS, transcript
    return ws, transcript


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
async def test_sigterm_closes_consoles_with_server_shutdown_and_exits_in_time(
    limen_server: Callable[..., LimenProcess], vm_names: Callable[[], str], stop: signal.Signals
) -> None:
    """SIGHUP (a closed terminal, `kill -HUP`) too: it ended the process at once, the consoles without a
    close frame."""
    server = limen_server()
    name = vm_names()
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.auth_headers, timeout=60) as client:
        created = await client.post("/api/vms", json={"name": name, "memory_mib": 64, "iso": DEMO_ISO})
        assert created.status_code == 201, created.text
        assert (await client.post(f"/api/vms/{name}/start")).status_code == 200
    consoles = [await open_console(server, name) for _ in range(2)]
    events = httpx.AsyncClient(base_url=server.base_url, headers=server.auth_headers, timeout=30)
    async with events.stream("GET", "/api/events") as stream:
        asked = time.monotonic()
        pid = server.pid
        stopping = asyncio.get_running_loop().run_in_executor(None, server.kill, stop)
        for ws, transcript in consoles:
            await asyncio.wait_for(read_frames(ws, transcript, time.monotonic()), STOP_BOUND)
            assert (transcript.close_code, transcript.close_reason) == (4402, "SERVER_SHUTDOWN"), transcript
        # The stream ends (does not hang) when the server stops: with its last chunk, or cut when uvicorn
        # closes what is left after its graceful wait; both end it.
        with contextlib.suppress(httpx.RemoteProtocolError):
            async for _ in stream.aiter_bytes():
                pass
        code = await asyncio.wait_for(stopping, STOP_BOUND)
    await events.aclose()
    # uvicorn re-raises the signal once it has shut down: the process ends by SIGTERM, which systemd counts
    # as a clean stop (no Restart=on-failure) like exit code 0.
    assert code in (0, -stop), f"limen serve (pid {pid}) exited with {code}: {server.output()}"
    assert time.monotonic() - asked < STOP_BOUND


def test_limen_admin_runs_a_command_on_the_services_settings(tmp_path: Path) -> None:
    """`limen user ensure-admin` run by hand, without the unit's environment file and --config, made an
    administrator in a SQLite file the server (on the settings file's database) never reads. The shipped
    deploy/limen-admin runs commands with what the unit gives limen serve."""
    etc = tmp_path / "etc"
    etc.mkdir()
    # A "$" is a character of the value, as systemd's EnvironmentFile= reads it (sourced by sh, "pg$ecret"
    # stopped the script: "ecret: parameter not set"); quotes around a value are removed, comments skipped.
    (etc / "limen.env").write_text(f"# the service's\nLIMEN_DATA_DIR={tmp_path / 'data'}\n"
                                   f"LIMEN_LOG_DIR=\"{tmp_path / 'log'}\"\nLIMEN_METRICS_TOKEN=pg$ecret-1\n")
    server_db = tmp_path / "server.db"
    (etc / "limen.toml").write_text(f'database_url = "sqlite:///{server_db}"\n')
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LIMEN": str(LIMEN_BIN), "LIMEN_ETC": str(etc),
                   "LIMEN_USER": subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()}
    admin = UNIT.parent / "limen-admin"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(admin), *args], env=environment, capture_output=True, text=True, timeout=60)

    shown = json.loads(run("--json", "config", "show").stdout)
    assert shown["data_dir"] == {"value": str(tmp_path / "data"), "source": "env"}
    assert shown["log_dir"]["value"] == str(tmp_path / "log")
    assert shown["metrics_token"]["source"] == "env"  # read (its value is never shown)
    assert shown["iso_dir"]["value"] == "/var/lib/limen/isos"  # the unit's default, not limen's own
    made = run("user", "ensure-admin")
    assert made.returncode == 0, made.stderr
    assert server_db.exists() and not (tmp_path / "data" / "limen.db").exists()


def test_limen_admin_reads_the_environment_file_as_systemd_does(tmp_path: Path) -> None:
    """systemd's EnvironmentFile= trims blanks around the = and the value, skips indentation, ends a line at
    its \\r (CRLF files) and removes quotes; limen-admin dropped "KEY = value" and indented lines and kept
    the \\r, so LIMEN_DATABASE_URL reached the service and not `limen-admin user ensure-admin`, which made
    the administrator in a SQLite file the server never reads."""
    etc = tmp_path / "etc"
    etc.mkdir()
    server_db, log = tmp_path / "server.db", tmp_path / "log"
    (etc / "limen.env").write_bytes(
        ("# the service's, written on Windows\r\n"
         f"LIMEN_DATABASE_URL = sqlite:///{server_db}  \r\n"
         f"    LIMEN_DATA_DIR={tmp_path / 'data'}\r\n"
         f'\tLIMEN_LOG_DIR = "{log} \\"x\\""\r\n'  # systemd's escapes in double quotes
         f"; LIMEN_PORT=1\r\nLIMEN_ISO_DIR='{tmp_path / 'iso dir'}'\r\nLIMEN_METRICS_TOKEN=pg$ecret-1\r\n").encode())
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LIMEN": str(LIMEN_BIN), "LIMEN_ETC": str(etc),
                   "LIMEN_USER": subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()}
    admin = UNIT.parent / "limen-admin"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(admin), *args], env=environment, capture_output=True, text=True, timeout=60)

    shown = run("--json", "config", "show")
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["database_url"] == {"value": f"sqlite:///{server_db}", "source": "env"}
    assert settings["data_dir"] == {"value": str(tmp_path / "data"), "source": "env"}
    assert settings["log_dir"]["value"] == f'{log} "x"'
    assert settings["iso_dir"]["value"] == str(tmp_path / "iso dir")
    assert settings["port"]["source"] == "default"  # a comment
    assert settings["metrics_token"]["source"] == "env"
    made = run("user", "ensure-admin")
    assert made.returncode == 0, made.stderr
    assert server_db.exists() and not (tmp_path / "data" / "limen.db").exists()
