"""The uvicorn HTTP protocol limen runs: uvicorn's httptools one, plus deadlines on reading a request.

Why: uvicorn has no timeout for reading a request's line, headers or body, and no bound on the size of
its headers. A client that opens a connection and sends a byte every few seconds (slowloris) would hold
its socket, a protocol object and a task forever, and a few hundred such clients would exhaust the
server; one that sends megabytes of header would grow it without end.

This protocol follows each connection with a :class:`limen.request_reading.RequestReading` (the rules
are there) and drops a client that is past its deadline: with a 408 REQUEST_TIMEOUT (the JSON error)
when some of the request came and nothing has been answered on the connection yet, else by just
closing. Request line and headers over ``MAX_HEAD_BYTES`` get 413 PAYLOAD_TOO_LARGE and the close; bytes
that are not HTTP/1.1 at all get 400 INVALID_REQUEST (uvicorn's own answer is plain text). The
application, if it was waiting for the body, sees ``http.disconnect``. Nothing of a dropped connection
stays: its one timer is cancelled with it.

A streamed upload (an ISO) has a body rule of its own: a byte within ``LIMEN_ISO_UPLOAD_IDLE_TIMEOUT``,
so a client may pause it. Kept-alive connections waiting for their next request keep uvicorn's own
``timeout_keep_alive``. A WebSocket upgrade is subject to the header deadline like any request; once
the headers are in, the connection goes to the WebSocket protocol (``limen.console.ws_protocol``) with
no deadline of ours. What the client sent after the upgrade's head in the same read (frames written
before the 101 came) goes to the WebSocket protocol too, as the first bytes from the socket: uvicorn
hands over only the head.

Written for uvicorn 0.54 (pinned in requirements.lock); :func:`uvicorn_http_options` checks at start
that the hooks it overrides still exist. Use with ``uvicorn.Config(..., **uvicorn_http_options(settings))``.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
from array import array
from collections.abc import Callable
from typing import Any, cast

import httptools
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from limen.errors import ErrorCode, LimenError
from limen.request_reading import UNLIMITED_BODY_ROUTES, ReadPhase, RequestReading
from limen.settings import Settings

log = logging.getLogger("limen.http")

# Request line and headers, in bytes. Browsers send a few KiB; 64 KiB is what common proxies accept.
MAX_HEAD_BYTES = 64 * 1024

# Set in the scope of a request dropped while the application had it: the status its client got.
DROPPED_STATUS_SCOPE_KEY = "limen.dropped_status"

# The parts of uvicorn's protocol this one hooks into.
_HOOKS = (
    "connection_made", "connection_lost", "data_received", "on_message_begin", "on_url", "on_header",
    "on_headers_complete",
    "on_body", "on_message_complete", "handle_websocket_upgrade", "send_400_response",
)


def absolute_form_authority(target: bytes) -> bytes | None:
    """The host (and port) a request target in absolute form names (``http://limen.lan:8080/api/vms`` →
    ``limen.lan:8080``, without any ``user@``), or None for the origin form (``/api/vms``) and ``*``."""
    if target.startswith(b"/"):  # the origin form, every browser's: nothing to scan
        return None
    scheme, separator, rest = target.partition(b"://")
    if not separator or scheme.lower() not in (b"http", b"https"):
        return None
    authority = rest.split(b"/", 1)[0].split(b"?", 1)[0].split(b"#", 1)[0]
    return authority.rpartition(b"@")[2]


def error_answer_parts(error: LimenError) -> tuple[int, list[tuple[str, str]], bytes]:
    """The status, headers and body of a response carrying ``error`` as the JSON error, closing the connection;
    like the app's errors (:mod:`limen.api.browser_security`), never sniffed as another type nor cached. Written
    by :func:`error_answer` here, and as websockets' response to an upgrade it refuses (limen.console.ws_protocol).
    """
    body = json.dumps(error.to_dict()).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close"),
               ("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]
    return error.code.http_status, headers, body


def error_answer(error: LimenError) -> bytes:
    """A whole HTTP/1.1 response carrying ``error`` (:func:`error_answer_parts`)."""
    status, headers, body = error_answer_parts(error)
    head = "".join(f"{name.lower()}: {value}\r\n" for name, value in headers)
    return f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n{head}\r\n".encode() + body


class _ReportingFlowControl(FlowControl):
    """uvicorn's flow control, telling the protocol when the server stops and starts reading."""

    def __init__(self, transport: asyncio.Transport, protocol: DeadlineHttpProtocol) -> None:
        super().__init__(transport)
        self._protocol = protocol

    def pause_reading(self) -> None:
        if not self.read_paused:
            self._protocol.reading.reading_paused()
        super().pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self._protocol.reading_resumed()
        super().resume_reading()


class _HeadTooLarge(Exception):
    """Raised in a parser callback to stop a request whose head is over MAX_HEAD_BYTES."""


class _UpgradeTailParser(httptools.HttpRequestParser):
    """httptools' request parser, keeping the bytes that followed an upgrade's head in the chunk that ended
    it: httptools stops there and tells only their offset, which uvicorn drops."""

    upgrade_tail = b""
    # What httptools found wrong with bytes that are not HTTP/1.1 ("Invalid method encountered", "Duplicate
    # Content-Length", …: its own words, none of the client's bytes), which uvicorn drops for a fixed text.
    refusal: str | None = None
    invalid_url = False

    def feed_data(self, data: bytes | bytearray | memoryview | array[int]) -> None:
        try:
            super().feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.upgrade_tail = memoryview(data)[upgrade.args[0]:].tobytes()
            raise
        except httptools.HttpParserError as error:
            self.refusal = str(error)[:200] or None
            self.invalid_url = isinstance(error, httptools.HttpParserInvalidURLError)
            raise


def _not_http_details(parser: _UpgradeTailParser) -> str:
    details = "the request line or a header is not valid HTTP/1.1"
    if parser.refusal:
        details = f"{details}: {parser.refusal}"
    if parser.invalid_url:
        details = f"{details} (a path's non-ASCII characters must be percent-encoded)"
    return details


class DeadlineHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request-reading deadlines; see the module docstring."""

    read_timeout = 10.0  # set from the settings by uvicorn_http_options
    # How long a streamed upload (limen.request_reading.UNLIMITED_BODY_ROUTES: an ISO) may send nothing; it
    # may pause (a laptop's network changing) but need not keep up BODY_PROGRESS_BYTES. Set likewise.
    upload_idle_timeout = 60.0
    # Told the error code of every request dropped here (limen.metrics counts them).
    drop_observers: tuple[Callable[[str], None], ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        parser = _UpgradeTailParser(self)
        parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn sets its own
        self.parser = parser
        self.reading = RequestReading(self.read_timeout, MAX_HEAD_BYTES)
        self._timer: asyncio.TimerHandle | None = None
        self._messages_begun = 0
        # The current request's line and headers as parsed (the target and each header's name and value,
        # with their separators): a head that came whole in one read is measured here.
        self._head_bytes = 0
        self._head_too_large = False
        self._streamed_upload = False  # the current request is one of UNLIMITED_BODY_ROUTES

    # -- the deadline's timer: set when the deadline comes nearer, re-checked when it fires -------------

    def _schedule(self) -> None:
        deadline = self.reading.deadline
        if deadline is None:
            self._cancel_timer()
        elif self._timer is None or self._timer.when() > deadline:
            self._cancel_timer()
            self._timer = self.loop.call_at(deadline, self._deadline_reached)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline_reached(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self.reading.overdue(self.loop.time()):
            self._schedule()  # the client made progress since the timer was set
            return
        phase = self.reading.phase
        log.info("request too slow", extra={
            "event": "request_too_slow", "phase": phase.value, "client": self.client[0] if self.client else None,
        })
        setting = "LIMEN_REQUEST_READ_TIMEOUT"
        if phase is ReadPhase.BODY and self._streamed_upload:
            what = f"body sent nothing for {self.reading.body_timeout:g} s"
            setting = "LIMEN_ISO_UPLOAD_IDLE_TIMEOUT"
        elif phase is ReadPhase.BODY:
            # Not "no progress": a body trickling in a byte a second progresses, only too slowly.
            what = (f"body came slower than {self.reading.body_progress // 1024} KiB in "
                    f"{self.reading.body_timeout:g} s")
        else:
            what = f"line and headers were not complete within {self.read_timeout:g} s"
        error = LimenError(ErrorCode.REQUEST_TIMEOUT, f"the request's {what} ({setting})")
        self._drop(error, answer=self._messages_begun > 0)  # a connection that never sent a byte is just closed

    def _nothing_answered(self) -> bool:
        """Whether an answer may still be written: no response is under way or queued on the connection."""
        if self.pipeline:
            return False
        cycle = self.cycle
        if cycle is None:
            return True
        if self.reading.phase is ReadPhase.BODY:
            return not cycle.response_started
        return cycle.response_complete

    def _drop(self, error: LimenError, *, answer: bool) -> None:
        self._cancel_timer()
        for observe in self.drop_observers:
            observe(error.code.name)
        if answer and self._nothing_answered():
            self.transport.write(error_answer(error))
        self.reading.request_done()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # What connection_lost would do, now: the application stops waiting for the body, and what it
            # still sends goes nowhere; the request's metrics count it with the status it really got.
            cycle.disconnected = True
            cycle.message_event.set()
            cycle.scope[DROPPED_STATUS_SCOPE_KEY] = error.code.http_status  # type: ignore[literal-required]
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # a client that does not read either: nothing to wait for
        else:
            self.transport.close()

    def reading_resumed(self) -> None:
        self.reading.reading_resumed(self.loop.time())
        self._schedule()

    # -- uvicorn's hooks -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _ReportingFlowControl(transport, self)
        self.reading.request_started(self.loop.time())
        self._schedule()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)
        self._let_go()

    def _let_go(self) -> None:
        """Once the connection is lost or handed to the WebSocket protocol, drops what refers back to this
        protocol: its parser (holding its callbacks), its flow control, its request cycle (whose on_response is
        its method) and requests pipelined behind it. Reference counting then frees the connection rather than
        the cyclic collector (every console left a dozen objects of cyclic garbage here; uvicorn lets go only of
        the parser, and only on a loss). A cycle still running keeps what it uses itself (its transport, its flow
        control), and uvicorn starts no pipelined request on a lost connection."""
        self.parser = None  # type: ignore[assignment]
        self.flow = None  # type: ignore[assignment]
        self.cycle = None  # type: ignore[assignment]
        self.pipeline.clear()

    def data_received(self, data: bytes) -> None:
        begun = self._messages_begun
        super().data_received(data)
        # Bytes that came while one request's head was being read (a chunk in which a request began may
        # hold the end of the one before: it is not counted, so at most one chunk more is held).
        if (
            self.reading.phase is ReadPhase.HEAD
            and begun == self._messages_begun
            and not self.reading.head_received(len(data))
            and not self.transport.is_closing()
        ):
            self._drop_head_too_large()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._messages_begun += 1
        self._head_bytes = len(b"GET  HTTP/1.1\r\n\r\n")
        self.reading.request_started(self.loop.time())
        self._schedule()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_bytes += len(name) + len(value) + len(b": \r\n")

    def on_headers_complete(self) -> None:
        if self._head_bytes > MAX_HEAD_BYTES:
            # A head that came in one read (data_received counts those that span several): refused before
            # uvicorn hands it to the application. httptools turns the raise into a parser error, which
            # uvicorn answers through send_400_response, below.
            self._head_too_large = True
            raise _HeadTooLarge
        authority = absolute_form_authority(self.url)
        if authority is not None:
            # HTTP/1.1 (RFC 9112, 3.2.2): a request target in absolute form names the host, and its Host header
            # is ignored. uvicorn keeps only the target's path, so the Host check read the header instead
            # (GET http://evil.example/… with Host: 127.0.0.1 passed). The same list is the scope's headers.
            self.headers[:] = [(name, value) for name, value in self.headers if name != b"host"]
            self.headers.append((b"host", authority))
        super().on_headers_complete()
        # (An upgrade has no path in its scope: uvicorn hands it over before reading one.)
        self._streamed_upload = (self.scope["method"], self.scope.get("path")) in UNLIMITED_BODY_ROUTES
        if self._streamed_upload:
            self.reading.head_done(self.loop.time(), body_timeout=self.upload_idle_timeout, body_progress=1)
        else:
            self.reading.head_done(self.loop.time())
        self._schedule()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self.reading.body_received(len(body), self.loop.time())

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading.request_done()
        self._schedule()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._drop_head_too_large()
            return
        # Bytes httptools cannot parse as HTTP/1.1 (raw UTF-8 in the path, a bad header line, ...): uvicorn
        # answers a plain-text 400; limen's clients get the JSON error like every other refusal. A target of
        # 64 KiB or more, which httptools' URL parser cannot hold (it counts in 16 bits), came in one chunk
        # with the rest of its head: that head is too large, as it would be had it come in two.
        if len(getattr(self, "url", b"")) >= MAX_HEAD_BYTES - len(b"GET  HTTP/1.1\r\n\r\n"):
            self._drop_head_too_large()
            return
        log.info("request not HTTP/1.1", extra={
            "event": "request_malformed", "client": self.client[0] if self.client else None,
        })
        details = _not_http_details(cast(_UpgradeTailParser, self.parser))
        self._drop(LimenError(ErrorCode.INVALID_REQUEST, details), answer=True)

    def _drop_head_too_large(self) -> None:
        log.info("request head too large", extra={
            "event": "request_head_too_large", "client": self.client[0] if self.client else None,
        })
        self._drop(LimenError(
            ErrorCode.PAYLOAD_TOO_LARGE, f"the request line and headers are larger than {MAX_HEAD_BYTES} bytes"
        ), answer=True)

    def handle_websocket_upgrade(self) -> None:
        self.reading.request_done()
        self._cancel_timer()
        parser = cast(_UpgradeTailParser, self.parser)
        tail, parser.upgrade_tail = parser.upgrade_tail, b""
        super().handle_websocket_upgrade()  # the transport delivers to the WebSocket protocol from now on
        self._let_go()  # this protocol's work is over
        if tail and not self.transport.is_closing():
            # A client that wrote its first frames with the upgrade: they are the WebSocket's first bytes,
            # before any that come later, exactly as if they had come after the 101.
            cast(asyncio.Protocol, self.transport.get_protocol()).data_received(tail)


def uvicorn_http_options(settings: Settings, on_drop: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The uvicorn.Config options for limen's HTTP protocol; ``on_drop`` is told the error code of every
    request it drops."""
    missing = [name for name in _HOOKS if not callable(getattr(HttpToolsProtocol, name, None))]
    if missing:
        raise RuntimeError(f"this uvicorn's HttpToolsProtocol lacks {missing}: limen is written for uvicorn 0.54")

    class ConfiguredHttpProtocol(DeadlineHttpProtocol):
        read_timeout = settings.request_read_timeout
        upload_idle_timeout = settings.iso_upload_idle_timeout
        drop_observers = () if on_drop is None else (on_drop,)

    return {"http": ConfiguredHttpProtocol}
