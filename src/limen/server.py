"""Runs the app under uvicorn, and ends console sessions properly when the server stops."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI

from limen.api.services import services_of
from limen.console.ws_protocol import uvicorn_ws_options
from limen.http_protocol import uvicorn_http_options
from limen.settings import Settings

log = logging.getLogger("limen.server")


def raise_fd_limit() -> int:
    """Raises the soft open-files limit to the hard one: each console session holds two sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


class LimenServer(uvicorn.Server):
    """uvicorn's server, but event streams end and console sessions are closed with SERVER_SHUTDOWN before
    sockets go (uvicorn would otherwise wait on them for its whole graceful-shutdown time)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app: Any = self.config.loaded_app
        # uvicorn wraps the app in middleware; find limen's FastAPI app underneath.
        while app is not None and not isinstance(app, FastAPI):
            app = getattr(app, "app", None)
        services = services_of(app) if app is not None else None
        if services is not None:
            services.hypervisor.feed.close()  # ends every event stream now, so uvicorn need not wait on them
            try:
                await asyncio.wait_for(services.console_sessions.close_all(), timeout=5)
            except TimeoutError:
                log.warning("console sessions did not close within 5 s", extra={"event": "shutdown_slow"})
        await super().shutdown(sockets)


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    metrics = services_of(app).metrics
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        **uvicorn_http_options(settings, on_drop=metrics.observe_dropped_request),
        **uvicorn_ws_options(settings),
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 5,
        "server_header": False,
        # limen reads X-Forwarded-* itself, from LIMEN_TRUSTED_PROXIES only (limen.auth.http).
        "proxy_headers": False,
    }
    if settings.tls:  # HTTPS and WSS on the one port; a plain-HTTP client there fails its TLS handshake
        options["ssl_certfile"] = str(settings.tls_cert)
        options["ssl_keyfile"] = str(settings.tls_key)
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(app: FastAPI, settings: Settings) -> None:
    raise_fd_limit()
    server = LimenServer(uvicorn_config(app, settings))
    server.run()
