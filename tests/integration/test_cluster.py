"""The cluster of `make cluster`, started by the same script (scripts/cluster.py) in a temporary directory on
loopback addresses of its own: two libvirt hosts (each a libvirtd in its own mount namespace, qemu+tcp),
PostgreSQL, Redis, two ``limen serve`` replicas and HAProxy, all real.

* cluster.json says where everything is; each host has a running demo VM.
* VMs created through HAProxy (placement left to limen) land on both hosts.
* A console of a VM on each host opens through HAProxy (a ticket, then the WebSocket) and reaches the proxy
  stage with QEMU's RFB banner, from that host's VNC address.
* ``down`` leaves no process it started and none of its directories.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.integration.test_revocation import PROXY_STATUS
from tests.support.console import ConsoleTranscript, read_frames
from tests.support.extra_host import pick_address

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "cluster.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=150, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("cluster") / "state"
    first = pick_address()[0]
    second = first
    while second == first:
        second = pick_address()[0]
    started = _run("up", "--dir", str(state), "--addresses", f"{first},{second}")
    assert started.returncode == 0, started.stderr[-4000:]
    made: dict[str, Any] = json.loads((state / "cluster.json").read_text())
    assert f"open {made['url']}/" in started.stdout and made["admin"]["password"] in started.stdout
    pids = [host["pid"] for host in made["hosts"]] + [replica["pid"] for replica in made["replicas"]] + [
        made["haproxy"]["pid"], made["redis"]["pid"], made["postgres"]["pid"]]
    pid_files = [Path(host["state_dir"]) / "run" / "qemu" for host in made["hosts"]]
    try:
        yield made
    finally:
        qemus = [int(pid_file.read_text()) for directory in pid_files if directory.exists()
                 for pid_file in directory.glob("*.pid")]
        stopped = _run("down", "--dir", str(state))
    assert stopped.returncode == 0, stopped.stderr
    assert qemus, "the cluster ran no QEMU"
    deadline = time.monotonic() + 5  # a killed process is gone once its parent has reaped it
    while any(_alive(pid) for pid in pids + qemus) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids + qemus if _alive(pid)] == []
    assert not state.exists() and not Path(made["postgres"]["data_dir"]).exists()


def test_cluster_json_and_the_demo_vms(cluster: dict[str, Any]) -> None:
    assert [host["name"] for host in cluster["hosts"]] == ["local", "host-2"]
    assert all(host["uri"] == f"qemu+tcp://{host['console_address']}/system" for host in cluster["hosts"])
    assert len(cluster["replicas"]) == 2
    with httpx.Client(base_url=cluster["url"], timeout=30,
                      headers={"Authorization": f"Bearer {cluster['admin_token']}"}) as api:
        hosts = {host["name"]: host for host in api.get("/api/hosts").json()}
        assert {name: host["available"] for name, host in hosts.items()} == {"local": True, "host-2": True}
        vms = {vm["name"]: vm for vm in api.get("/api/vms").json()}
        assert {name: (vm["host"], vm["state"]) for name, vm in vms.items()} == {
            "demo-local": ("local", "running"), "demo-host-2": ("host-2", "running")}
        # Each VNC server listens on its own host's address.
        addresses = {host["name"]: host["console_address"] for host in cluster["hosts"]}
        assert {vm["host"]: vm["vnc"]["host"] for vm in vms.values()} == addresses
    # The admin's password signs in through HAProxy.
    signed_in = httpx.post(f"{cluster['url']}/api/login", timeout=30, headers={"Origin": cluster["url"]},
                           json={"name": cluster["admin"]["name"], "password": cluster["admin"]["password"]})
    assert signed_in.status_code == 200, signed_in.text


def test_vms_created_through_haproxy_land_on_both_hosts(cluster: dict[str, Any]) -> None:
    with httpx.Client(base_url=cluster["url"], timeout=60,
                      headers={"Authorization": f"Bearer {cluster['admin_token']}"}) as api:
        placed = []
        for index in range(2):
            created = api.post("/api/vms", json={"name": f"placed-{index}", "vcpus": 1, "memory_mib": 64})
            assert created.status_code == 201, created.text
            placed.append(created.json()["host"])
        assert sorted(placed) == ["host-2", "local"]
        listed = {vm["name"]: vm["host"] for vm in api.get("/api/vms").json()}
        assert {name: listed[name] for name in ("placed-0", "placed-1")} == {"placed-0": placed[0],
                                                                               "placed-1": placed[1]}


async def _console_through_haproxy(cluster: dict[str, Any], vm: str) -> ConsoleTranscript:
    url, ws_url = cluster["url"], cluster["url"].replace("http://", "ws://")
    headers = {"Authorization": f"Bearer {cluster['admin_token']}", "Origin": url}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:
        answer = await api.post(f"/api/vms/{vm}/console-ticket")
    assert answer.status_code == 200, answer.text
    ticket = answer.json()["ticket"]
    transcript = ConsoleTranscript()
    async with connect(f"{ws_url}/api/vms/{vm}/console?notices=1&ticket={ticket}", origin=url,  # type: ignore[arg-type]
                       open_timeout=10, close_timeout=2, ping_interval=None, max_size=None,
                       compression=None) as ws:
        await asyncio.wait_for(read_frames(ws, transcript, time.monotonic(), until_binary=1), 30)
    return transcript


async def test_a_console_opens_to_a_vm_on_each_host_through_haproxy(cluster: dict[str, Any]) -> None:
    ports = {}
    async with httpx.AsyncClient(base_url=cluster["url"], timeout=30,
                                 headers={"Authorization": f"Bearer {cluster['admin_token']}"}) as api:
        for vm in cluster["vms"]:
            ports[vm["name"]] = (await api.get(f"/api/vms/{vm['uuid']}")).json()["vnc"]["port"]
    transcripts = await asyncio.gather(*(_console_through_haproxy(cluster, vm["uuid"]) for vm in cluster["vms"]))
    for vm, transcript in zip(cluster["vms"], transcripts, strict=True):
        assert f"Connecting to VNC server on port {ports[vm['name']]}..." in transcript.statuses, transcript
        assert transcript.statuses[-1] == PROXY_STATUS, transcript
        assert transcript.binary[0].startswith(b"RFB 003."), (vm, transcript.binary)
