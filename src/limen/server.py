"""Runs the app under uvicorn, and ends console sessions properly when the server stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Final

import uvicorn
from fastapi import FastAPI

from limen.api.services import services_of
from limen.collector import tune_collector
from limen.console.ws_protocol import CLOSE_GRACE, BoundedCloseWebSocketProtocol, uvicorn_ws_options
from limen.db.database import Database, DatabaseFault, database_fault
from limen.errors import LimenError
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


# The signals that stop limen gracefully (consoles closed with SERVER_SHUTDOWN, rows ended).
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class LimenConfig(uvicorn.Config):
    """uvicorn's configuration, and the bound on a client's TLS handshake: uvicorn creates its servers without
    one, so asyncio's 60 s applied (an idle connection closed after LIMEN_REQUEST_READ_TIMEOUT over plain HTTP
    stayed six times as long over TLS)."""

    def __init__(self, app: Any, *, ssl_handshake_timeout: float | None = None, **options: Any) -> None:
        super().__init__(app, **options)
        self.ssl_handshake_timeout = ssl_handshake_timeout


@contextlib.contextmanager
def tls_handshakes_bounded(loop: asyncio.AbstractEventLoop, timeout: float | None) -> Iterator[None]:
    """While uvicorn creates its servers (``loop.create_server``, no ``ssl_handshake_timeout`` of its own), those
    with TLS get ``timeout`` as that bound; the loop is as it was afterwards."""
    if timeout is None:
        yield
        return
    create_server = loop.create_server

    def bounded(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", timeout)
        return create_server(*args, **kwargs)

    loop.create_server = bounded  # type: ignore[method-assign]
    try:
        yield
    finally:
        del loop.create_server  # the instance's attribute: the loop's own method again


class LimenServer(uvicorn.Server):
    """uvicorn's server, stopping in the order a replica behind a load balancer needs: on SIGTERM ``/readyz``
    answers 503 at once (``Services.shutting_down``), the listening sockets close (new connections go to
    another replica), event streams end and console sessions are closed with SERVER_SHUTDOWN (so browsers
    reconnect, through the balancer, elsewhere) before uvicorn waits on what is left; uvicorn would
    otherwise wait on consoles for its whole graceful-shutdown time."""

    def _limen_app(self) -> FastAPI | None:
        app: Any = getattr(self.config, "loaded_app", None)
        # uvicorn wraps the app in middleware; find limen's FastAPI app underneath.
        while app is not None and not isinstance(app, FastAPI):
            app = getattr(app, "app", None)
        return app if isinstance(app, FastAPI) else None

    # Told once the server listens and its application has started (the "serving" line): not before.
    on_started: Callable[[], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        handshake = self.config.ssl_handshake_timeout if isinstance(self.config, LimenConfig) else None
        with tls_handshakes_bounded(asyncio.get_running_loop(), handshake):
            await super().startup(sockets)
        if not self.should_exit:
            # Started: what exists now lives as long as the process; collections need not walk it again.
            state = tune_collector()
            log.info("garbage collector tuned", extra={
                "event": "gc_tuned", "frozen": state.frozen, "thresholds": list(state.thresholds)})
            if self.on_started is not None:
                self.on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, with SIGHUP among the signals that stop limen gracefully: a closed terminal or a
        `kill -HUP` ended the process at once, its consoles without a close frame (the next start found them
        SERVER_LOST). As uvicorn does, a signal that stopped it is raised again once the server is down."""
        if threading.current_thread() is not threading.main_thread():  # signals belong to the main thread
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
        for captured in reversed(self._captured_signals):
            signal.raise_signal(captured)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not ready from the signal on: the main loop notices should_exit only at its next tick.
        app = self._limen_app()
        if app is not None:
            services_of(app).shutting_down.set()
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self._limen_app()
        services = services_of(app) if app is not None else None
        if services is not None:
            services.shutting_down.set()
        for server in self.servers:  # stop accepting first; uvicorn's own close below is then a no-op
            server.close()
        log.info("shutting down: not accepting, ending consoles", extra={"event": "shutdown_started"})
        if services is not None:
            services.hypervisor.feed.close()  # ends every event stream now, so uvicorn need not wait on them
            try:
                async with asyncio.timeout(5):
                    await services.console_sessions.close_all()
            except TimeoutError:
                log.warning("console sessions did not close within 5 s", extra={"event": "shutdown_slow"})
            await self._let_closing_handshakes_finish()
        await super().shutdown(sockets)

    async def _let_closing_handshakes_finish(self) -> None:
        """Waits (at most CLOSE_GRACE) until the clients of the consoles just closed have answered their close
        frames. uvicorn's shutdown closes TCP at once; a browser still sending VNC input into the closed socket
        then gets a reset, and Chromium, its write failing, drops the connection as 1006 without reading the
        close frame that came before: the page would say CONNECTION_LOST instead of SERVER_SHUTDOWN."""
        closing = [connection.lost() for connection in self.server_state.connections
                   if isinstance(connection, BoundedCloseWebSocketProtocol) and connection.awaiting_close_reply]
        if closing and not self.force_exit:
            await asyncio.wait(closing, timeout=CLOSE_GRACE)


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: Any) -> LimenConfig:
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
        # A handshake is part of reading the first request: bounded as its line and headers are.
        options["ssl_handshake_timeout"] = settings.request_read_timeout
    options.update(overrides)
    return LimenConfig(app, **options)


def open_listener(settings: Settings) -> socket.socket:
    """The socket ``limen serve`` listens on, bound before anything says it serves: an address in use, or not
    of this machine, is then one line (OSError) instead of uvicorn's message after the start's."""
    family, kind, proto, _, address = socket.getaddrinfo(
        settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError:
        listener.close()
        raise
    return listener


def database_problem(settings: Settings, timeout: float) -> tuple[str, DatabaseFault] | None:
    """Why the database does not answer ``SELECT 1`` within ``timeout`` seconds, and whose fault it is, or
    None; a database of a newer limen raises its LimenError (DATABASE_SCHEMA_NEWER). Asked in a thread of its
    own that is left behind if it hangs (a host that drops packets): the start says so and ends."""
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            database = Database(settings.db_url)
            try:
                database.check_answers()
                database.check_schema_known()
            finally:
                database.close()
        except Exception as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=probe, name="database-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no answer within {timeout:g} s", DatabaseFault.DATABASE
    failure = outcome[0]
    if failure is None:
        return None
    if isinstance(failure, LimenError):
        raise failure
    first_line = (str(failure).strip().splitlines() or [""])[0]
    return (f"{type(failure).__name__}: {first_line}"[:300],
            database_fault(settings.db_url, settings.data_dir, failure))


def migrate_schema(settings: Settings) -> None:
    """Brings the database's schema to this limen's before the server starts (the app's start then finds it
    there): a migration that fails is said as the command line says errors (DATABASE_MIGRATION_FAILED), not
    as the application's start-up traceback. Unbounded: a large table's copy takes as long as it takes."""
    database = Database(settings.db_url)
    try:
        database.migrate()
    finally:
        database.close()


def serve(app: FastAPI, settings: Settings, *, listener: socket.socket | None = None,
          on_started: Callable[[], None] | None = None) -> None:
    raise_fd_limit()
    server = LimenServer(uvicorn_config(app, settings))
    server.on_started = on_started
    server.run(sockets=[listener] if listener is not None else None)
