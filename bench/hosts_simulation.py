"""Scale by simulation (issue 15, item 6): one real ``limen serve`` with N hosts of libvirt's test driver,
each its own ``test:///…/host-K.xml`` node of 50 VMs, and the merged VM list (``GET /api/vms``) timed at
1, 10 and 100 hosts; then 100 such hosts plus 5 hung ones (a TCP listener that accepts and never answers,
registered as ``qemu+tcp://127.0.0.1:PORT/system``): how long until limen marks them unavailable, and the
list's time meanwhile and after. At 100 hosts it also times a console to a VM on the 100th host (its VNC
graphics point at a listener that sends an RFB banner): a ticket, the WebSocket, until the banner arrives.

    make bench-hosts        (PYTHONPATH=. .venv/bin/python -m bench.hosts_simulation --out bench/out/hosts.json)

The first host is the server's ``LIMEN_LIBVIRT_URI``; the others are written into its database (the host
registry) before it starts. The test driver runs inside the server process, so its cost is limen's here.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from tests.support.access import provision_admin_token
from tests.support.console import FakeDomain, node_xml
from tests.support.server import LimenProcess
from websockets.sync.client import connect
from websockets.typing import Origin

from limen import host_registry
from limen.db import Database

VMS_PER_HOST = 50
TIMEOUT = 3.0  # LIMEN_LIBVIRT_TIMEOUT of the server


class HungListener:
    """Accepts TCP connections and never says a word (a libvirtd stopped dead, as far as a client sees)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()


class BannerListener(HungListener):
    """A VNC server as far as the console's first step goes: it sends the RFB banner, then holds on."""

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            connection.sendall(b"RFB 003.008\n")
            self.held.append(connection)


def _timed_consoles(server: LimenProcess, token: str, vm: str, rounds: int) -> dict[str, float]:
    """A browser's way in: a ticket (POST), then the WebSocket with it, until QEMU's banner is through."""
    times = []
    headers = {"Authorization": f"Bearer {token}", "Origin": server.base_url}
    for _ in range(rounds):
        started = time.perf_counter()
        ticket = httpx.post(f"{server.base_url}/api/vms/{vm}/console-ticket", headers=headers, timeout=30)
        assert ticket.status_code == 200, ticket.text
        with connect(f"{server.ws_url}/api/vms/{vm}/console?notices=1&ticket={ticket.json()['ticket']}",
                     origin=Origin(server.base_url), open_timeout=30, compression=None) as ws:
            while not isinstance(frame := ws.recv(timeout=30), bytes):
                pass
            assert frame.startswith(b"RFB 003."), frame
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1), "rounds": rounds}


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def _timed_lists(api: httpx.Client, rounds: int, expected: int) -> dict[str, float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        answer = api.get("/api/vms")
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()) == expected, len(answer.json())
    return {"p50_ms": round(statistics.median(times), 1), "p99_ms": round(_percentile(times, 0.99), 1),
            "max_ms": round(max(times), 1), "rounds": rounds}


def run(hosts: int, hung: int, rounds: int, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True)
    uris = []
    vnc = BannerListener()  # the VNC server of the last host's first VM
    for index in range(hosts):
        node = work / f"host-{index}.xml"
        node.write_text(node_xml([FakeDomain(f"h{index}-vm{number}",
                                             vnc.port if (index, number) == (hosts - 1, 0) else None)
                                  for number in range(VMS_PER_HOST)]))
        uris.append(f"test://{node}")
    listeners = [HungListener() for _ in range(hung)]
    data = work / "data"
    database_url = f"sqlite:///{data / 'limen.db'}"
    data.mkdir()
    token = provision_admin_token(database_url)
    db = Database(database_url)
    try:
        for index, uri in enumerate(uris[1:], start=1):
            host_registry.add_host(db, f"sim-{index}", uri)
        for index, listener in enumerate(listeners):
            host_registry.add_host(db, f"hung-{index}", f"qemu+tcp://127.0.0.1:{listener.port}/system")
    finally:
        db.close()
    server = LimenProcess({"LIMEN_LIBVIRT_URI": uris[0], "LIMEN_DATA_DIR": str(data),
                           "LIMEN_LOG_DIR": str(work / "log"), "LIMEN_LIBVIRT_TIMEOUT": str(TIMEOUT),
                           "LIMEN_DATABASE_URL": database_url}, work / "serve.log")
    result: dict[str, Any] = {"hosts": hosts, "hung_hosts": hung, "vms": hosts * VMS_PER_HOST}
    try:
        server.start(timeout=120)
        ready = time.monotonic()
        with httpx.Client(base_url=server.base_url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as api:
            if hung:
                # The first list while the hung hosts are not yet marked: it waits for them up to the timeout.
                started = time.perf_counter()
                answer = api.get("/api/vms")
                result["first_list_ms"] = round((time.perf_counter() - started) * 1000, 1)
                assert answer.status_code == 200, answer.text
                while True:
                    listed = api.get("/api/hosts").json()
                    down = [host["name"] for host in listed if not host["available"]]
                    if sorted(down) == sorted(f"hung-{index}" for index in range(hung)):
                        result["all_hung_marked_after_s"] = round(time.monotonic() - ready, 2)
                        break
                    if time.monotonic() - ready > 60:
                        raise RuntimeError(f"hung hosts not marked within 60 s: {down}")
                    time.sleep(0.1)
            else:
                while not all(host["available"] for host in api.get("/api/hosts").json()):
                    time.sleep(0.1)
            _timed_lists(api, 3, hosts * VMS_PER_HOST)  # warm: each host's first list fills its caches
            result["list"] = _timed_lists(api, rounds, hosts * VMS_PER_HOST)
        if hosts == 100 and not hung:
            result["console_on_last_host"] = _timed_consoles(server, token, f"h{hosts - 1}-vm0", 10)
    finally:
        server.stop()
        vnc.close()
        for listener in listeners:
            listener.close()
    return result


def _uptime() -> str:
    """The machine's load (other work on it moves these figures)."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("bench/out/hosts.json"))
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    results: dict[str, Any] = {"uptime_before": _uptime(), "nproc": os.cpu_count(), "runs": runs}
    with tempfile.TemporaryDirectory(prefix="limen-bench-hosts-") as scratch:
        for hosts, hung in ((1, 0), (10, 0), (100, 0), (100, 5)):
            result = run(hosts, hung, args.rounds, Path(scratch) / f"{hosts}-{hung}")
            print(json.dumps(result), flush=True)
            runs.append(result)
    results["uptime_after"] = _uptime()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(results["uptime_before"], "/", results["uptime_after"])


if __name__ == "__main__":
    main()
