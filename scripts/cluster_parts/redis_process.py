"""A redis-server of its own on a free loopback port, without persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from scripts.cluster_parts.ports import free_port

START_BOUND = 10.0  # seconds until the new server must answer PING


def start_redis(directory: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Starts a redis-server on a free loopback port (or ``port``: a Redis restarted where it was), without
    persistence, in its own session (it outlives its starter: `make cluster` stops it by PID), and waits until
    it answers; returns it and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run `make install` (apt-get install redis-server)")
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + START_BOUND
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
