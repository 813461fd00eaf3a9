"""How long a client may take to send a request: the rules, with no socket and no clock of their own.

One :class:`RequestReading` per connection follows what the server has read of the current request and
says by when the rest must have come (``deadline``), in loop time given by the caller:

    phase     entered when                                 the client must, within ``timeout``
    WAITING   the request was read whole                   nothing: uvicorn's keep-alive timeout rules
    HEAD      the connection opened, or the next           finish the request line and headers, in all
              request's first byte arrived                 (and send no more than ``max_head_bytes``)
    BODY      the headers were complete                    send ``BODY_PROGRESS_BYTES`` more (or the rest);
                                                           each time it has, it gets ``timeout`` again

A request may bring a body rule of its own (:meth:`RequestReading.head_done`): an ISO upload, which a
client may pause, must send a byte within ``LIMEN_ISO_UPLOAD_IDLE_TIMEOUT`` instead.

While the server itself stops reading (flow control: the application has not taken what came, or a
pipelined request waits its turn), there is no deadline; when reading resumes, the current phase's
clock starts again. So only a client that is slow is dropped, never one the server keeps waiting.

A header or body trickling in a byte every few seconds (slowloris) is past its deadline ``timeout``
after it started; an upload that keeps coming, however long, never is.
"""

from __future__ import annotations

from enum import Enum

# Bytes of body a client must send within each timeout: 16 KiB per 10 s is 1.6 KB/s, which any real
# client passes and a trickle of a byte every few seconds does not.
BODY_PROGRESS_BYTES = 16 * 1024
# (method, path) of the streamed uploads: bodies of any size (limen.api.body_limit leaves them alone) that
# may pause (limen.http_protocol's body rule for them). POST /api/isos streams an ISO to disk and bounds it
# with its own settings (LIMEN_MAX_ISO_BYTES, LIMEN_ISO_UPLOAD_IDLE_TIMEOUT); it is authenticated before a
# byte is read like every route that needs a user (limen.api.authenticate_first).
UNLIMITED_BODY_ROUTES: frozenset[tuple[str, str]] = frozenset({("POST", "/api/isos")})


class ReadPhase(Enum):
    WAITING = "waiting"
    HEAD = "head"
    BODY = "body"


class RequestReading:
    def __init__(self, timeout: float, max_head_bytes: int, *, body_progress_bytes: int = BODY_PROGRESS_BYTES):
        self.timeout = timeout
        self.max_head_bytes = max_head_bytes
        self.body_progress_bytes = body_progress_bytes
        self.phase = ReadPhase.WAITING
        self.paused = False
        self.head_bytes = 0
        self._clock_start = 0.0  # when the current phase's clock (re)started
        self._unprogressed = 0  # body bytes since the body's clock last restarted
        # The current request's body rule: the connection's unless head_done was given one.
        self.body_timeout = timeout
        self.body_progress = body_progress_bytes

    @property
    def deadline(self) -> float | None:
        """Loop time by which the client must have made the progress its phase asks; None: no deadline."""
        if self.phase is ReadPhase.WAITING or self.paused:
            return None
        return self._clock_start + (self.body_timeout if self.phase is ReadPhase.BODY else self.timeout)

    def overdue(self, now: float) -> bool:
        deadline = self.deadline
        return deadline is not None and now >= deadline

    # -- events ----------------------------------------------------------------------------------------

    def request_started(self, now: float) -> None:
        """The connection opened, or a byte of its next request arrived; a no-op while reading one."""
        if self.phase is ReadPhase.WAITING:
            self.phase = ReadPhase.HEAD
            self.head_bytes = 0
            self._clock_start = now

    def head_received(self, size: int) -> bool:
        """``size`` more bytes of request line and headers; False once they are more than allowed."""
        self.head_bytes += size
        return self.head_bytes <= self.max_head_bytes

    def head_done(self, now: float, *, body_timeout: float | None = None, body_progress: int | None = None) -> None:
        """The headers are in; the body must send ``body_progress`` bytes within ``body_timeout`` (by default
        the connection's ``body_progress_bytes`` within ``timeout``)."""
        self.phase = ReadPhase.BODY
        self._clock_start = now
        self._unprogressed = 0
        self.body_timeout = self.timeout if body_timeout is None else body_timeout
        self.body_progress = self.body_progress_bytes if body_progress is None else body_progress

    def body_received(self, size: int, now: float) -> None:
        self._unprogressed += size
        if self._unprogressed >= self.body_progress:
            self._unprogressed = 0
            self._clock_start = now

    def request_done(self) -> None:
        """The request was read whole (or the connection was handed over to another protocol)."""
        self.phase = ReadPhase.WAITING

    def reading_paused(self) -> None:
        self.paused = True

    def reading_resumed(self, now: float) -> None:
        if self.paused:
            self.paused = False
            self._clock_start = now
            self._unprogressed = 0
