"""HAProxy in front of ``limen serve`` replicas for tests (scripts/cluster_parts/haproxy_process.py), stopped
after the test."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from scripts.cluster_parts.haproxy_process import Proxy, start_haproxy, stop_haproxy

__all__ = ["Proxy", "haproxy", "start_haproxy"]


@contextmanager
def haproxy(replicas: Sequence[str], log_path: Path, *, port: int | None = None) -> Iterator[Proxy]:
    """:func:`start_haproxy`, stopped after."""
    process, proxy = start_haproxy(replicas, log_path, port=port)
    try:
        yield proxy
    finally:
        stop_haproxy(process)
