"""Consoles per second through HAProxy with one ``limen serve`` replica behind it, then two (issue 15's
"consoles per second through two replicas against one"), on PostgreSQL and Redis as `make cluster` runs.

Each console is a browser's way in: a ticket (``POST /api/vms/{id}/console-ticket``, through HAProxy), then
the WebSocket with it (through HAProxy), read until the VNC server's RFB banner is through, then closed.
``--clients`` of them run back to back at once for ``--seconds`` after a warm-up; consoles are spread over
the VMs. The two set-ups (two HAProxies, both up all along) take turns, ``--repeats`` times per level.
The VMs are libvirt's test driver (one node XML that every replica loads), their VNC graphics a listener
that sends the banner and closes when the client does, so the figure is limen's (and HAProxy's,
PostgreSQL's, Redis's) and not QEMU's. One replica: both ``server`` lines of deploy/haproxy.cfg name the
same replica (the other stays idle).

    make bench-replicas     (PYTHONPATH=. .venv/bin/python -m bench.replica_consoles --out bench/out/replicas.json)

The load client is one asyncio process on the same machine; with two cores shared by everything, the
replicas, HAProxy, PostgreSQL, Redis and the client all compete for them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from scripts.cluster_parts.haproxy_process import start_haproxy, stop_haproxy
from scripts.cluster_parts.limen_process import LimenProcess
from scripts.cluster_parts.ports import free_port
from scripts.cluster_parts.postgres_process import postgres_data_dir, start_postgres, stop_postgres
from scripts.cluster_parts.redis_process import start_redis
from tests.support.access import provision_admin_token
from tests.support.console import FakeDomain, node_xml
from websockets.asyncio.client import connect

VMS = 20


class BannerServer:
    """A VNC server as far as a console's set-up goes: sends the RFB banner on accept, closes its end when
    the other end closes (so finished consoles hold no descriptors). One selector thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ)
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped:
            for key, _ in self._selector.select(timeout=0.2):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if sock is self.sock:
                    try:
                        connection, _ = self.sock.accept()
                    except OSError:
                        continue
                    connection.setblocking(False)
                    try:
                        connection.send(b"RFB 003.008\n")
                    except OSError:
                        connection.close()
                        continue
                    self._selector.register(connection, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self._selector.unregister(sock)
                    sock.close()

    def close(self) -> None:
        self._stopped = True
        self._thread.join(timeout=2)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


async def _one_console(api: httpx.AsyncClient, ws_base: str, origin: str, vm: str) -> float:
    started = time.perf_counter()
    answer = await api.post(f"/api/vms/{vm}/console-ticket")
    if answer.status_code != 200:
        raise RuntimeError(f"ticket: {answer.status_code} {answer.text}")
    url = f"{ws_base}/api/vms/{vm}/console?notices=1&ticket={answer.json()['ticket']}"
    async with connect(url, origin=origin, open_timeout=30, close_timeout=5,  # type: ignore[arg-type]
                       ping_interval=None, compression=None) as ws:
        while True:
            frame = await asyncio.wait_for(ws.recv(), 30)
            if isinstance(frame, bytes):
                if not frame.startswith(b"RFB 003."):
                    raise RuntimeError(f"not a banner: {frame!r}")
                break
            if '"type":"error"' in frame.replace(" ", ""):
                raise RuntimeError(f"console error: {frame}")
    return (time.perf_counter() - started) * 1000


async def _load(base_url: str, token: str, vms: list[str], clients: int, seconds: float,
                warm_up: float) -> dict[str, Any]:
    ws_base = base_url.replace("http://", "ws://")
    headers = {"Authorization": f"Bearer {token}", "Origin": base_url}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    times: list[float] = []
    failures: list[str] = []
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + warm_up
    measure_until = measure_from + seconds

    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as api:
        async def client(index: int) -> None:
            turn = index
            while loop.time() < measure_until:
                began = loop.time()
                try:
                    took = await _one_console(api, ws_base, base_url, vms[turn % len(vms)])
                except Exception as exc:  # counted and reported; the run goes on
                    if began >= measure_from:
                        failures.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                finally:
                    turn += clients
                if began >= measure_from and loop.time() <= measure_until:
                    times.append(took)

        await asyncio.gather(*(client(index) for index in range(clients)))
    return {
        "clients": clients, "seconds": seconds, "consoles": len(times),
        "consoles_per_s": round(len(times) / seconds, 1),
        "p50_ms": round(statistics.median(times), 1) if times else None,
        "p99_ms": round(sorted(times)[min(len(times) - 1, round(0.99 * (len(times) - 1)))], 1) if times else None,
        "failures": len(failures), "failure_samples": failures[:5],
    }


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def _summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per set-up and level: the median, lowest and highest consoles per second over the repeats."""
    rows = []
    for label in ("one replica", "two replicas"):
        for count in sorted({run["clients"] for run in runs}):
            rates = [run["consoles_per_s"] for run in runs if run["behind"] == label and run["clients"] == count]
            p50s = [run["p50_ms"] for run in runs if run["behind"] == label and run["clients"] == count]
            rows.append({"behind": label, "clients": count, "consoles_per_s_median": statistics.median(rates),
                         "consoles_per_s_range": [min(rates), max(rates)],
                         "p50_ms_median": statistics.median(p for p in p50s if p is not None)})
    return rows


def run(work: Path, clients: list[int], seconds: float, warm_up: float, repeats: int) -> dict[str, Any]:
    vnc = BannerServer()
    node = work / "node.xml"
    names = [f"bench-vm-{index}" for index in range(VMS)]
    node.write_text(node_xml([FakeDomain(name, vnc.port) for name in names]))
    pg_data = postgres_data_dir()
    pg_process, database_url = start_postgres(pg_data)
    redis_process, redis_url = start_redis(work)
    replicas: list[LimenProcess] = []
    proxies: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    results: dict[str, Any] = {"vms": VMS, "runs": []}
    try:
        token = provision_admin_token(database_url)
        proxy_ports = {"one replica": free_port(), "two replicas": free_port()}
        origins = ",".join(f"http://127.0.0.1:{port}" for port in proxy_ports.values())
        for index in (1, 2):
            env = {"LIMEN_LIBVIRT_URI": f"test://{node}", "LIMEN_DATABASE_URL": database_url,
                   "LIMEN_REDIS_URL": redis_url, "LIMEN_DATA_DIR": str(work / f"data-{index}"),
                   "LIMEN_LOG_DIR": str(work / f"log-{index}"), "LIMEN_TRUSTED_PROXIES": "127.0.0.1/32",
                   "LIMEN_ALLOWED_ORIGINS": origins}
            replicas.append(LimenProcess(env, work / f"serve-{index}.log"))
        for replica in replicas:
            replica.start(timeout=60)
        behind = {"one replica": [f"127.0.0.1:{replicas[0].port}"] * 2,
                  "two replicas": [f"127.0.0.1:{replica.port}" for replica in replicas]}
        for label, servers in behind.items():
            process, proxy = start_haproxy(servers, work / f"haproxy-{len(set(servers))}.log",
                                           port=proxy_ports[label])
            proxies.append(process)
            urls[label] = proxy.base_url
        # The machine is shared: the two set-ups take turns (which goes first alternates), level by level,
        # ``repeats`` times, so a change of the load around them falls on both alike.
        for repeat in range(repeats):
            for count in clients:
                order = list(behind) if repeat % 2 == 0 else list(reversed(behind))
                for label in order:
                    outcome = asyncio.run(_load(urls[label], token, names, count, seconds, warm_up))
                    outcome.update(behind=label, repeat=repeat, uptime=_uptime())
                    print(json.dumps(outcome), flush=True)
                    results["runs"].append(outcome)
        results["summary"] = _summary(results["runs"])
    finally:
        for process in proxies:
            stop_haproxy(process)
        for replica in replicas:
            replica.stop()
        redis_process.terminate()
        redis_process.wait(timeout=10)
        stop_postgres(pg_process)
        shutil.rmtree(pg_data, ignore_errors=True)
        vnc.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="8,32", help="concurrent clients, comma-separated levels")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured time per turn")
    parser.add_argument("--warm-up", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3, help="turns of each set-up at each level")
    parser.add_argument("--out", type=Path, default=Path("bench/out/replicas.json"))
    args = parser.parse_args()
    levels = [int(level) for level in args.clients.split(",")]
    before = _uptime()
    with tempfile.TemporaryDirectory(prefix="limen-bench-replicas-") as scratch:
        results = run(Path(scratch), levels, args.seconds, args.warm_up, args.repeats)
    results.update(uptime_before=before, uptime_after=_uptime(), nproc=os.cpu_count())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(before, "/", results["uptime_after"])


if __name__ == "__main__":
    main()
