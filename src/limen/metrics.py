"""Prometheus metrics, one registry per app so that several apps in one process never collide.

Console sessions report their milestones to :class:`ConsoleMetrics`; nothing here runs per proxied
frame: byte counts are added once per session, at its end.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from limen.stats_history import FIELDS, StatsHistory

STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
FIRST_FRAME_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
CALL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.console_sessions_active = Gauge(
            "limen_console_sessions_active", "Console sessions in the proxy stage now", registry=r
        )
        self.console_attempts = Counter(
            "limen_console_attempts_total", "Console attempts by result: OK or the error code",
            ["result"], registry=r,
        )
        self.console_stage_seconds = Histogram(
            "limen_console_stage_seconds", "Duration of each console handshake stage", ["stage"],
            buckets=STAGE_BUCKETS, registry=r,
        )
        self.console_first_status_seconds = Histogram(
            "limen_console_first_status_seconds", "Time from the WebSocket upgrade to the first status frame",
            buckets=FIRST_FRAME_BUCKETS, registry=r,
        )
        self.console_bytes = Counter(
            "limen_console_bytes_total", "Bytes proxied, by direction (to_client: VNC to browser)",
            ["direction"], registry=r,
        )
        self.console_sessions_ended = Counter(
            "limen_console_sessions_ended_total", "Console sessions ended, by reason", ["reason"], registry=r
        )
        self.libvirt_call_seconds = Histogram(
            "limen_libvirt_call_seconds", "libvirt call latency by operation", ["operation"],
            buckets=CALL_BUCKETS, registry=r,
        )
        self.libvirt_call_failures = Counter(
            "limen_libvirt_call_failures_total", "Failed libvirt calls by operation and error code",
            ["operation", "code"], registry=r,
        )
        self.event_streams_active = Gauge(
            "limen_event_streams_active", "Open GET /api/events streams", registry=r
        )
        self.http_requests = Counter(
            "limen_http_requests_total", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=r,
        )
        self.http_requests_dropped = Counter(
            "limen_http_requests_dropped_total",
            "Requests dropped while being read (too slow, head too large), by error code", ["code"], registry=r,
        )

    def watch_vm_stats(self, history: StatsHistory) -> None:
        """Publishes every running VM's latest figures (see :class:`VmStatsCollector`)."""
        self.registry.register(VmStatsCollector(history))

    def observe_libvirt_call(self, operation: str, seconds: float, failure: str | None) -> None:
        self.libvirt_call_seconds.labels(operation).observe(seconds)
        if failure is not None:
            self.libvirt_call_failures.labels(operation, failure).inc()

    def observe_dropped_request(self, code: str) -> None:
        self.http_requests_dropped.labels(code).inc()

    def console_observer(self) -> ConsoleMetrics:
        return ConsoleMetrics(self)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ConsoleMetrics:
    """Records one console session's milestones (a ``SessionObserver`` of ``limen.console.driver``)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def first_status_sent(self, session: Any, seconds: float) -> None:
        self.metrics.console_first_status_seconds.observe(seconds)

    def stage_ended(self, session: Any, stage: str, seconds: float) -> None:
        self.metrics.console_stage_seconds.labels(stage).observe(seconds)

    def proxy_started(self, session: Any) -> None:
        self.metrics.console_attempts.labels("OK").inc()
        self.metrics.console_sessions_active.inc()

    def session_ended(self, session: Any) -> None:
        m = self.metrics
        reason = session.end_reason or "unknown"
        if session.reached_proxy:
            m.console_sessions_active.dec()
        else:
            m.console_attempts.labels(reason).inc()
        m.console_sessions_ended.labels(reason).inc()
        m.console_bytes.labels("to_client").inc(session.traffic.to_client)
        m.console_bytes.labels("to_vnc").inc(session.traffic.to_vnc)


# Each figure of limen.stats_history.FIELDS as a gauge: (metric name, help).
VM_GAUGES = {
    "cpu_percent": ("limen_vm_cpu_percent", "VM CPU use, % of one host core, over the last sampling interval"),
    "cpu_vcpu_percent": ("limen_vm_cpu_vcpu_percent", "VM CPU use, % of its vCPUs together"),
    "memory_bytes": ("limen_vm_memory_bytes", "Memory the VM has now (balloon current)"),
    "memory_used_bytes": ("limen_vm_memory_used_bytes", "Memory the guest uses, when its balloon driver says"),
    "rss_bytes": ("limen_vm_rss_bytes", "Host memory held by the VM's process"),
    "disk_read_bps": ("limen_vm_disk_read_bytes_per_second", "VM disk reads, all disks"),
    "disk_write_bps": ("limen_vm_disk_write_bytes_per_second", "VM disk writes, all disks"),
    "net_rx_bps": ("limen_vm_network_receive_bytes_per_second", "VM network received, all interfaces"),
    "net_tx_bps": ("limen_vm_network_transmit_bytes_per_second", "VM network sent, all interfaces"),
}
assert tuple(VM_GAUGES) == FIELDS


class VmStatsCollector(Collector):
    """The latest sample of every running VM, read at scrape time, labelled by ``vm_uuid`` and ``vm_name``
    only: a VM that stops or goes away is simply not there at the next scrape."""

    def __init__(self, history: StatsHistory) -> None:
        self.history = history

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: its series come and go with the VMs

    def collect(self) -> Iterator[Metric]:
        families = {field: GaugeMetricFamily(name, text, labels=["vm_uuid", "vm_name"])
                    for field, (name, text) in VM_GAUGES.items()}
        running = GaugeMetricFamily("limen_vms_sampled", "Running VMs in the last resource sample")
        count = 0
        for vm in self.history.running():
            point = vm.fine.latest()
            if point is None:
                continue
            count += 1
            for field, value in zip(FIELDS, point[1], strict=True):
                if not math.isnan(value):
                    families[field].add_metric([vm.uuid, vm.name], value)
        running.add_metric([], count)
        yield running
        yield from families.values()
