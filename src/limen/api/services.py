"""The services one app is built with: one typed, frozen object that ``create_app`` makes and keeps at
``app.state.services`` (the only thing limen keeps there). Routes reach it through
:data:`limen.api.deps.ServicesDep` or the narrower dependencies built on it; code outside the routes
(the server, the console endpoint, tests) through :func:`services_of`."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from limen.auth.access import Access
from limen.console.registry import ConsoleSessions
from limen.console.serial_session import SerialHolders
from limen.host_registry import HostSync
from limen.hypervisor import Hypervisor
from limen.hypervisor.serial_stream import SerialPorts
from limen.isos.background import BackgroundChecksums
from limen.metrics import Metrics
from limen.quota import QuotaLedger
from limen.recovery import Recovery
from limen.settings import Settings
from limen.stats_sampler import StatsSampler
from limen.web.screenshots import ScreenshotCache


@dataclass(frozen=True)
class Services:
    settings: Settings
    hypervisor: Hypervisor
    access: Access  # users, tokens, sessions, tickets, the audit trail, revocations
    metrics: Metrics
    recovery: Recovery  # this instance's heartbeat, and what lost instances held
    quota: QuotaLedger
    stats_sampler: StatsSampler
    console_sessions: ConsoleSessions  # the console sessions live in this process
    iso_checksums: BackgroundChecksums
    screenshots: ScreenshotCache
    serial_ports: SerialPorts  # the VMs' serial consoles, through libvirt's console streams
    serial_holders: SerialHolders  # who holds each VM's serial port in this process
    host_sync: HostSync  # the host pool kept equal to the registry (shared by every replica)
    # Set from the stop signal on: /readyz answers 503 so a load balancer sends no more (server.py sets it).
    shutting_down: threading.Event = field(default_factory=threading.Event)


def services_of(app_or_connection: Starlette | HTTPConnection) -> Services:
    """The services of an app built by ``create_app``, or of the app a request or WebSocket reached."""
    app = app_or_connection.app if isinstance(app_or_connection, HTTPConnection) else app_or_connection
    services = app.state.services
    assert isinstance(services, Services), "the app was not built by limen.api.app.create_app"
    return services
