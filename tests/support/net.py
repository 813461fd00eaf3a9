"""Ports and small network helpers for tests."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_banner(host: str, port: int, *, timeout: float = 10.0) -> bytes:
    """The first 12 bytes a server sends, retrying the connection until ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                data = b""
                while len(data) < 12:
                    chunk = sock.recv(12 - len(data))
                    if not chunk:
                        break
                    data += chunk
                return data
        except OSError as exc:
            last_error = exc
            time.sleep(0.1)
    raise AssertionError(f"no banner from {host}:{port} within {timeout} s: {last_error}")
