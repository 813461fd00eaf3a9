"""The uvicorn WebSocket protocol limen runs: uvicorn's sans-I/O one, plus a bound on closing.

Why: the console drops a client that does not read (SLOW_CLIENT). uvicorn's WebSocket protocols then
call ``transport.close()``, which in asyncio waits until the write buffer has been flushed, and a
client that never reads never lets it flush: the socket, its buffers and the protocol object would
stay forever. This protocol aborts the transport when it is still open ``CLOSE_GRACE`` seconds after
the application has returned (or after a keepalive ping went unanswered), so a session's resources
are freed whatever the client does. A client that reads gets its close frame long before that.

Use with ``uvicorn.Config(..., **uvicorn_ws_options(settings))``.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from limen.settings import Settings

# Time a client gets, once the app is done with its connection, to read what is left and the close.
CLOSE_GRACE = 2.0


class BoundedCloseWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol whose connections end within CLOSE_GRACE of the app."""

    def _abort_if_open(self) -> None:
        if not self.disconnected and self.transport is not None:
            self.transport.abort()

    def _bound_close(self) -> None:
        self.loop.call_later(CLOSE_GRACE, self._abort_if_open)

    async def run_asgi(self) -> None:
        try:
            await super().run_asgi()
        finally:
            self._bound_close()

    def send_500_response(self) -> None:
        # A client that left before the upgrade completed: uvicorn would try to answer it anyway and
        # trip over websockets' state (an AssertionError in a task nobody awaits). Nothing to send.
        if self.transport is None or self.transport.is_closing():
            return
        super().send_500_response()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self._bound_close()


def uvicorn_ws_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn.Config options the console depends on."""
    ping = settings.console_ping_interval or None
    return {
        "ws": BoundedCloseWebSocketProtocol,
        # Protocol-level pings keep idle sessions alive through proxies; an unanswered one drops the peer.
        "ws_ping_interval": ping,
        "ws_ping_timeout": ping,
        # The VNC stream is compressed by its encodings already; deflate would only burn CPU.
        "ws_per_message_deflate": False,
        # noVNC's messages are small; this bounds what one client message can make the server hold.
        "ws_max_size": 1 << 20,
    }
