"""The uvicorn WebSocket protocol limen runs: uvicorn's sans-I/O one, plus a bound on closing.

Why: the console drops a client that does not read (SLOW_CLIENT). uvicorn's WebSocket protocols then
call ``transport.close()``, which in asyncio waits until the write buffer has been flushed, and a
client that never reads never lets it flush: the socket, its buffers and the protocol object would
stay forever. This protocol aborts the transport when it is still open ``CLOSE_GRACE`` seconds after
the application has returned (or after a keepalive ping went unanswered), so a session's resources
are freed whatever the client does. A client that reads gets its close frame long before that.

It also offers the console's fast path, the ``limen.splice`` ASGI extension
(``scope["extensions"]["limen.splice"]["splice"]``, a :class:`limen.console.splice.SpliceFn`): the
session hands it the VNC transport once the handshake is done, and from then on the bytes move between
the two transports in protocol callbacks (:mod:`limen.console.splice`). Pings, the close handshake and
ASGI sends (notices, the close frame) keep working as before; only binary messages from the client
bypass the ASGI queue. Text messages are dropped there, as the task-based pump drops them, once checked
to be UTF-8: one that is not closes the connection with 1007, as uvicorn does before the splice.
The extension also offers ``send_frames``: several messages in one write to the socket (the console's
status frames of instant stages). ASGI servers without the extension get the task-based pump (``pump.py``);
they hand text over decoded, having checked it themselves.

The splice reaches into uvicorn's protocol (its ASGI queue, its frame buffer, its flow-control flags), which
uvicorn does not promise to keep: pyproject pins the uvicorn versions it was written for, and
:func:`uvicorn_ws_options` checks at start that every attribute it uses is there. If one is missing, limen
logs which, and serves with :class:`NoSpliceWebSocketProtocol`: the console then moves bytes with the task
pump, slower but relying on nothing private.

Use with ``uvicorn.Config(..., **uvicorn_ws_options(settings))``.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import http
import inspect
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

import websockets.http11
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.exceptions import InvalidMethod, InvalidState, SecurityError
from websockets.frames import Frame
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import StatusLike

from limen.client_text import header_text, printable
from limen.console.client_protocol import INVALID_FRAME_PAYLOAD_DATA, PROTOCOL_ERROR_EXTENSION, WHAT_THE_CLIENT_DID
from limen.console.pacing import CONNECTIONS_LOST, when_paced
from limen.console.pump import Traffic
from limen.console.splice import SPLICE_EXTENSION, Splice
from limen.errors import ErrorCode, LimenError
from limen.http_protocol import MAX_HEAD_BYTES, error_answer, error_answer_parts
from limen.settings import Settings

log = logging.getLogger("limen.console")

# The code of each status websockets' ServerProtocol.accept refuses an upgrade with (a status not here is
# limen's own failure): a missing or malformed key, a version but 13 (400), a method but GET (405, and websockets
# adds "Allow: GET"), a Connection or Upgrade header without the upgrade (426, with "Upgrade: websocket"); and
# uvicorn's own use of it: an app that closed before accepting (403).
REFUSAL_CODES = {
    http.HTTPStatus.BAD_REQUEST: ErrorCode.INVALID_REQUEST,
    http.HTTPStatus.FORBIDDEN: ErrorCode.FORBIDDEN,
    http.HTTPStatus.METHOD_NOT_ALLOWED: ErrorCode.METHOD_NOT_ALLOWED,
    http.HTTPStatus.UPGRADE_REQUIRED: ErrorCode.WEBSOCKET_REQUIRED,
    http.HTTPStatus.HTTP_VERSION_NOT_SUPPORTED: ErrorCode.INVALID_REQUEST,
}

# Time a client gets, once the app is done with its connection, to read what is left and the close.
CLOSE_GRACE = 2.0


class BoundedCloseWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol whose connections end within CLOSE_GRACE of the app."""

    # Whether handle_connect offers the limen.splice extension (see NoSpliceWebSocketProtocol).
    offers_splice = True
    _splice: Splice | None = None
    _splice_read_paused = False
    # What the client sent after its upgrade while the 101 was not written yet (see _hold_until_accepted).
    _held_before_accept: bytearray | None = None

    def _abort_if_open(self) -> None:
        if not self.disconnected and self.transport is not None:
            self.transport.abort()

    _close_timer: asyncio.TimerHandle | None = None

    def _bound_close(self) -> None:
        if self._close_timer is None and not self.disconnected:  # a socket already gone has nothing to bound
            self._close_timer = self.loop.call_later(CLOSE_GRACE, self._abort_if_open)

    async def run_asgi(self) -> None:
        try:
            await super().run_asgi()
        finally:
            self._bound_close()

    _lost: asyncio.Future[None] | None = None

    @property
    def awaiting_close_reply(self) -> bool:
        """Whether this connection has sent its close frame and waits for the client's (RFC 6455 7.1.1)."""
        return self.close_sent and not self.disconnected

    def lost(self) -> asyncio.Future[None]:
        """Resolved once the connection is gone (:meth:`connection_lost`)."""
        if self._lost is None:
            self._lost = self.loop.create_future()
            if self.disconnected:
                self._lost.set_result(None)
        return self._lost

    def send_500_response(self) -> None:
        # A client that left before the upgrade completed: uvicorn would try to answer it anyway and
        # trip over websockets' state (an AssertionError in a task nobody awaits). Nothing to send.
        if self.transport is None or self.transport.is_closing():
            return
        super().send_500_response()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self._bound_close()

    def data_received(self, data: bytes) -> None:
        if self.handshake_initiated and not self.handshake_complete:
            self._hold_until_accepted(data)
            return
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            self._refuse_unparsed_upgrade(self.conn.handshake_exc)

    # -- frames the client sent before the 101 ----------------------------------------------------------

    def _hold_until_accepted(self, data: bytes) -> None:
        # A client may write its first frames right behind the upgrade, before the app has accepted (the HTTP
        # protocol hands over those that came in the upgrade's own read). websockets would parse them before
        # its 101 is sent and uvicorn would act on them (a close answered, a message queued) before the app
        # has the connection: they are kept, and reading stops, until the 101 is written.
        if self._held_before_accept is None:
            self._held_before_accept = bytearray()
            if not self.transport.is_closing():
                self.transport.pause_reading()
        self._held_before_accept += data

    async def send(self, message: Any) -> None:
        await super().send(message)
        if (not self.handshake_complete and message["type"] == "websocket.http.response.body"
                and not message.get("more_body", False)):  # an open console's sends stop at the first test
            # The upgrade was answered with an HTTP response instead (a denial, as the router's 404): that
            # ends the handshake too, which uvicorn's protocol does not note, and it logged the app's normal
            # return as an error ("ASGI callable returned without completing handshake").
            self.handshake_complete = True
        if self._held_before_accept is not None and self.handshake_complete:
            self.loop.call_soon(self._receive_held)

    def _receive_held(self) -> None:
        """The bytes held until the 101, received now as if they had come after it (nothing if the upgrade
        was refused: the connection is closing)."""
        held, self._held_before_accept = self._held_before_accept, None
        if held is None or self.disconnected or self.close_sent or self.transport.is_closing():
            return
        super().data_received(bytes(held))
        if not (self.read_paused or self._splice_read_paused or self.transport.is_closing()):
            self.transport.resume_reading()

    def _refuse_unparsed_upgrade(self, reason: Exception) -> None:
        # The upgrade's head, already read by the HTTP protocol, that websockets' own parser refused: it
        # queues a plain-text answer (or none) that uvicorn never sends, and the connection would stay open
        # with nobody answering. The client gets the JSON error and the close instead.
        self.conn.data_to_send()  # websockets' own answer, dropped
        if isinstance(reason, SecurityError):
            error = LimenError(ErrorCode.PAYLOAD_TOO_LARGE,
                               f"the WebSocket upgrade's request line or headers are too large ({reason})")
        else:
            error = LimenError(ErrorCode.INVALID_REQUEST,
                               "the WebSocket upgrade is not a valid HTTP/1.1 request")
        log.info("websocket upgrade not parsed", extra={
            "event": "websocket_upgrade_refused", "reason": str(reason),
            "client": self.client[0] if self.client else None,
        })
        self.handshake_initiated = self.handshake_complete = self.close_sent = True
        self.transport.write(error_answer(error))
        self.transport.close()
        self._bound_close()

    def _refuse_upgrade(self, status: StatusLike, text: str) -> Response:
        """The answer to an upgrade websockets' checks refused (or uvicorn's 500 and 403 before an accept): the
        JSON error of its status's code, with websockets' reason as the details (:data:`REFUSAL_CODES`)."""
        refused = REFUSAL_CODES.get(http.HTTPStatus(status))
        reason = self.conn.handshake_exc
        if refused is None:  # limen's own failure (a crash in websockets or the app): what it was is for the log
            code, details = ErrorCode.INTERNAL_ERROR, http.HTTPStatus(status).phrase
        elif reason is not None:
            # websockets' reason quotes the header's value, its bytes read as Latin-1
            shown = printable(header_text(str(reason)), 300)
            code, details = refused, f"the WebSocket upgrade was refused: {shown}"
            log.info("websocket upgrade refused", extra={
                "event": "websocket_upgrade_refused", "reason": shown,
                "client": self.client[0] if self.client else None,
            })
        else:
            code, details = refused, text.strip() or http.HTTPStatus(status).phrase
        status, headers, body = error_answer_parts(LimenError(code, details))
        if code is ErrorCode.WEBSOCKET_REQUIRED:  # websockets adds its Upgrade, whose sender names it here too
            headers = [("Connection", "Upgrade, close") if name == "Connection" else (name, value)
                       for name, value in headers]
        if isinstance(reason, InvalidMethod) and reason.method == "HEAD":
            body = b""  # RFC 9110, 9.3.2: the answer to HEAD has no content (its headers say what GET's would)
        return Response(status, http.HTTPStatus(status).phrase,
                        Headers([("Date", email.utils.formatdate(usegmt=True)), *headers]), body)

    # -- the splice (the console's proxy stage) -------------------------------------------------------

    def handle_connect(self, event: Request) -> None:
        # websockets' own checks of the upgrade (a Sec-WebSocket-Key, version 13, GET) answer what they refuse
        # through its ServerProtocol.reject, in plain text, which uvicorn sends as it is: limen's JSON error
        # instead. An instance attribute shadows the method, as websockets itself does for select_subprotocol.
        setattr(self.conn, "reject", self._refuse_upgrade)  # noqa: B010 (mypy refuses assigning to a method)
        super().handle_connect(event)
        # The app's task was created but has not run yet: the scope can still be completed.
        if self.offers_splice and self.response.status_code == 101:
            self.scope["extensions"][SPLICE_EXTENSION] = {"splice": self.splice, "send_frames": self.send_frames}

    async def send_frames(self, frames: Sequence[str | bytes]) -> None:
        """Sends several messages (text: str, binary: bytes) in one write to the socket, as ASGI sends of
        each would, one after the other. Raises ClientDisconnected when the client has gone."""
        await self.writable.wait()
        if self.disconnected or self.close_sent or not self.handshake_complete:
            raise ClientDisconnected()
        try:
            for frame in frames:
                if isinstance(frame, str):
                    self.conn.send_text(frame.encode())
                else:
                    self.conn.send_binary(frame)
        except InvalidState:
            raise ClientDisconnected() from None
        self.transport.write(b"".join(self.conn.data_to_send()))

    def splice(
        self,
        vnc: asyncio.BaseTransport,
        traffic: Traffic,
        *,
        initial: Sequence[bytes] = (),
        unread: bytes = b"",
        write_timeout: float,
        clock: Callable[[], float],
    ) -> Splice:
        """From now on, moves bytes between this WebSocket and ``vnc`` (see :mod:`limen.console.splice`).

        ``initial``: the client's binary messages the app holds already. Messages still in the ASGI queue
        go to the VNC server after them, in order; a disconnect stays queued for the app. ``unread``: what
        the VNC server sent that the app has read but not forwarded; it goes to the client first.
        """
        splice = Splice(self, cast(asyncio.Transport, vnc), traffic,
                        write_timeout=write_timeout, clock=clock, loop=self.loop)
        pending = list(initial)
        kept: list[Any] = []
        while not self.queue.empty():
            message = self.queue.get_nowait()
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                if data is not None:
                    pending.append(data)
                # text carries nothing for a VNC server: dropped, as the task-based pump does
            else:
                kept.append(message)
        for message in kept:
            self.queue.put_nowait(message)
        self._splice = splice
        splice.ended.add_done_callback(self._splice_ended)
        splice.start(pending, client_full=not self.writable.is_set(), unread=unread)
        if self.read_paused and not kept:  # the queue is empty now: read the client again
            self.read_paused = False
            if not self._splice_read_paused and not self.transport.is_closing():
                self.transport.resume_reading()
        if self.disconnected or self.close_sent:
            splice.client_gone()
        return splice

    def _splice_ended(self, _: object) -> None:
        self._splice = None

    def splice_pause_reading(self) -> None:
        if not self._splice_read_paused:
            self._splice_read_paused = True
            if not self.read_paused and not self.transport.is_closing():
                self.transport.pause_reading()

    def splice_resume_reading(self) -> None:
        if self._splice_read_paused:
            self._splice_read_paused = False
            if not self.read_paused and not self.transport.is_closing():
                self.transport.resume_reading()

    def send_receive_event_to_app(self) -> None:
        splice = self._splice
        if self.close_sent:
            super().send_receive_event_to_app()
            return
        if self.curr_msg_data_type == "text" and not self._text_is_utf8():
            # A text message must be UTF-8, else the connection fails with 1007. uvicorn does that too, but
            # logs it as a server error with a traceback (logger.exception): it is the client's fault, and
            # the console's own record says it (CLIENT_PROTOCOL_ERROR).
            self.frames = []
            if self.conn.state is State.OPEN:  # not when a close is already under way (sending one would raise)
                self.conn.send_close(INVALID_FRAME_PAYLOAD_DATA)
            self.handle_parser_exception()
            return
        if splice is None:
            super().send_receive_event_to_app()
            return
        frames, self.frames = self.frames, []
        if self.curr_msg_data_type == "bytes":
            splice.to_vnc(frames[0] if len(frames) == 1 else b"".join(frames))
        # Text carries nothing for a VNC server: dropped.

    def _text_is_utf8(self) -> bool:
        try:
            (self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)).decode()
        except UnicodeDecodeError:
            return False
        return True

    def handle_parser_exception(self) -> None:
        # The app hears of this only as a disconnect: what the browser broke is noted in the scope first, so
        # the console records it rather than a browser that closed (see limen.console.client_protocol).
        close = self.conn.close_sent
        if close is not None and close.code in WHAT_THE_CLIENT_DID and self.handshake_complete:
            self.scope["extensions"][PROTOCOL_ERROR_EXTENSION] = {"code": close.code, "reason": close.reason}
        super().handle_parser_exception()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._splice is not None:
            self._splice.client_full()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._splice is not None:
            self._splice.client_drained()

    def handle_close(self, event: Frame) -> None:
        super().handle_close(event)
        if self._splice is not None:
            self._splice.client_gone()

    def connection_lost(self, exc: Exception | None) -> None:
        # In a close storm the loop learns of thousands of lost sockets in one poll, and what each loss
        # wakes (the session's tasks, then its teardown) would all run before the next poll, holding up the
        # live sessions' traffic for hundreds of milliseconds: the loss is told to the session a few
        # connections a loop iteration (limen.console.pacing). Until then the connection only refuses to send
        # (ClientDisconnected, as once it is told) instead of writing to a closed transport.
        self.disconnected = True
        when_paced(self.loop, CONNECTIONS_LOST, lambda: self._tell_lost(exc))

    def shutdown(self) -> None:
        if self.disconnected:
            # The server stops while this connection's loss waits for its turn (connection_lost): its socket is
            # gone, so there is no close frame to send (uvloop raises on a write to a closed transport).
            self.stop_keepalive()
            return
        super().shutdown()

    def _tell_lost(self, exc: Exception | None) -> None:
        if self._splice is not None:
            self._splice.client_gone()
        super().connection_lost(exc)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        # Nothing is left to bound, and the scope's extension and websockets' reject (handle_connect) hold this
        # protocol's methods (cycles through it): let go of them, so reference counting frees the connection
        # now, not the cyclic collector later.
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope.get("extensions", {}).pop(SPLICE_EXTENSION, None)
        vars(self.conn).pop("reject", None)


class NoSpliceWebSocketProtocol(BoundedCloseWebSocketProtocol):
    """The bounded close without the splice, for a uvicorn that lacks what the splice relies on: the
    console's proxy stage runs as the task pump. Every splice override passes through to uvicorn while no
    splice is made."""

    offers_splice = False


# What the splice, the bounded close, the frames held until the 101 and the shutdown use of uvicorn's
# WebSocketsSansIOProtocol, beyond the asyncio Protocol interface: the methods they override or call, and the
# attributes uvicorn sets on its instances.
UVICORN_METHODS = (
    "run_asgi", "send_500_response", "keepalive_timeout", "handle_connect", "send_receive_event_to_app",
    "pause_writing", "resume_writing", "handle_close", "connection_lost", "handle_parser_exception", "send",
    "shutdown", "stop_keepalive",
)
UVICORN_ATTRIBUTES = (
    "loop", "transport", "disconnected", "close_sent", "queue", "read_paused", "writable", "frames",
    "curr_msg_data_type", "conn", "response", "scope", "handshake_complete", "handshake_initiated", "client",
)

# websockets parses the upgrade's head again, by default refusing a line over 8 KiB or more than 128 headers
# (settings it reads from the environment at import). The HTTP protocol has bounded the head already, to
# MAX_HEAD_BYTES like every request's: a console opened with a browser's 9 KiB of cookies must open as the
# REST API answers it.
WEBSOCKETS_HEAD_LIMITS = {"MAX_LINE_LENGTH": MAX_HEAD_BYTES, "MAX_NUM_HEADERS": MAX_HEAD_BYTES // 4}


def missing_uvicorn_parts(protocol: type | None = None) -> list[str]:
    """The methods and instance attributes of UVICORN_METHODS/UVICORN_ATTRIBUTES that ``protocol`` (by
    default uvicorn's WebSocketsSansIOProtocol) lacks.

    Instance attributes exist only once a connection is made, so they are looked up in the source of the
    class and its bases other than asyncio's (``self.name =`` or ``self.name: T =``); a class whose source
    cannot be read lacks them all."""
    protocol = protocol or WebSocketsSansIOProtocol
    missing = [name for name in UVICORN_METHODS if not callable(getattr(protocol, name, None))]
    assigned: set[str] = set()
    for cls in protocol.__mro__:
        if cls.__module__ == "builtins" or cls.__module__.startswith("asyncio"):
            continue
        assigned |= _attributes_assigned_in(cls)
    missing += [name for name in UVICORN_ATTRIBUTES if name not in assigned]
    return missing


def widen_websockets_head_limits() -> None:
    """Lets websockets' parser take every head the HTTP protocol took (WEBSOCKETS_HEAD_LIMITS). A websockets
    without these settings refuses such heads; the console then answers that refusal (as JSON) instead."""
    for name, limit in WEBSOCKETS_HEAD_LIMITS.items():
        current = getattr(websockets.http11, name, None)
        if isinstance(current, int) and current < limit:
            setattr(websockets.http11, name, limit)


@functools.cache
def _attributes_assigned_in(cls: type) -> frozenset[str]:
    """The names ``self.name =`` assigns in the source of ``cls`` (read once a class: ~6 ms of CPU each time,
    and every server limen starts asks)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return frozenset()
    return frozenset(re.findall(r"\bself\.(\w+)\s*(?::[^=\n]*)?=(?!=)", source))


def websocket_protocol() -> type[BoundedCloseWebSocketProtocol]:
    """The protocol class limen serves WebSockets with: the splicing one if this uvicorn has all it uses."""
    missing = missing_uvicorn_parts()
    if not missing:
        return BoundedCloseWebSocketProtocol
    log.warning(
        "uvicorn's websockets-sansio protocol lacks what the console's splice uses (%s); consoles use the "
        "slower task pump. Install the uvicorn version pinned in requirements.lock.", ", ".join(missing),
        extra={"event": "console_splice_unavailable", "missing": missing},
    )
    return NoSpliceWebSocketProtocol


def uvicorn_ws_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn.Config options the console depends on."""
    ping = settings.console_ping_interval or None
    widen_websockets_head_limits()
    return {
        "ws": websocket_protocol(),
        # Protocol-level pings keep idle sessions alive through proxies; an unanswered one drops the peer.
        "ws_ping_interval": ping,
        "ws_ping_timeout": ping,
        # The VNC stream is compressed by its encodings already; deflate would only burn CPU.
        "ws_per_message_deflate": False,
        # noVNC's messages are small; this bounds what one client message can make the server hold.
        "ws_max_size": 1 << 20,
    }
