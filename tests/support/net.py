"""Ports and small network helpers for tests."""

from __future__ import annotations

import socket
import time

from scripts.cluster_parts.ports import free_port

__all__ = ["free_port", "read_banner"]


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
