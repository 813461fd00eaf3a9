"""HAProxy in front of ``limen serve`` replicas, run with the shipped ``deploy/haproxy.cfg`` as it is: the
addresses go in through the environment variables the file names. Loopback only."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from scripts.cluster_parts.ports import free_port

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
START_BOUND = 15.0  # seconds until HAProxy must pass a request through


@dataclass(frozen=True)
class Proxy:
    base_url: str
    ws_url: str
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def haproxy_env(bind: str, replicas: Sequence[str]) -> dict[str, str]:
    """The environment ``deploy/haproxy.cfg`` reads; it has two ``server`` lines (one replica twice is one
    replica behind the proxy)."""
    if len(replicas) != 2:
        raise ValueError("deploy/haproxy.cfg names two replicas")
    return {"LIMEN_HAPROXY_BIND": bind, "LIMEN_PUBLIC_HOST": "localhost",
            "LIMEN_REPLICA_1": replicas[0], "LIMEN_REPLICA_2": replicas[1]}


def start_haproxy(replicas: Sequence[str], log_path: Path, *,
                  port: int | None = None) -> tuple[subprocess.Popen[bytes], Proxy]:
    """Starts haproxy on loopback (``port``, or a free one) in front of ``replicas`` ("127.0.0.1:PORT" each),
    in its own session (it outlives its starter: `make cluster` stops it by PID), and waits until it passes
    a request through."""
    binary = shutil.which("haproxy")
    if binary is None:
        raise RuntimeError("haproxy is not installed: run `make install` (apt-get install haproxy)")
    port = port if port is not None else free_port()
    env = {**os.environ, **haproxy_env(f"127.0.0.1:{port}", replicas)}
    with log_path.open("ab") as log:
        process = subprocess.Popen([binary, "-db", "-f", str(CONFIG)], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    proxy = Proxy(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + START_BOUND
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {process.returncode}: {proxy.output()}")
        try:
            if httpx.get(f"{proxy.base_url}/healthz", timeout=1).status_code == 200:
                return process, proxy
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_haproxy(process)
            raise RuntimeError(f"haproxy passed no request within {START_BOUND:.0f} s: {proxy.output()}")
        time.sleep(0.05)


def stop_haproxy(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
