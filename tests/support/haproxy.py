"""HAProxy in front of ``limen serve`` replicas, run with the shipped ``deploy/haproxy.cfg`` as it is: the
addresses go in through the environment variables the file names. Loopback only, a free port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.net import free_port

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"


@dataclass(frozen=True)
class Proxy:
    base_url: str
    ws_url: str
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def haproxy_env(bind: str, replicas: Sequence[str]) -> dict[str, str]:
    """The environment ``deploy/haproxy.cfg`` reads; it has two ``server`` lines."""
    assert len(replicas) == 2, "deploy/haproxy.cfg names two replicas"
    return {"LIMEN_HAPROXY_BIND": bind, "LIMEN_PUBLIC_HOST": "localhost",
            "LIMEN_REPLICA_1": replicas[0], "LIMEN_REPLICA_2": replicas[1]}


@contextmanager
def haproxy(replicas: Sequence[str], log_path: Path, *, port: int | None = None) -> Iterator[Proxy]:
    """Starts haproxy on loopback (``port``, or a free one) in front of ``replicas`` ("127.0.0.1:PORT" each)
    and waits until it passes a request through; stops it after."""
    binary = shutil.which("haproxy")
    if binary is None:
        raise AssertionError("haproxy is not installed: run `make install` (apt-get install haproxy)")
    port = port if port is not None else free_port()
    env = {**os.environ, **haproxy_env(f"127.0.0.1:{port}", replicas)}
    with log_path.open("ab") as log:
        process = subprocess.Popen([binary, "-db", "-f", str(CONFIG)], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    proxy = Proxy(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise AssertionError(f"haproxy exited with {process.returncode}: {proxy.output()}")
            try:
                if httpx.get(f"{proxy.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy passed no request within 15 s: {proxy.output()}")
            time.sleep(0.05)
        yield proxy
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
