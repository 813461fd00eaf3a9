"""The RFB (VNC) server banner: the 12 bytes that prove the peer is a VNC server; and which of the browser's
messages are a person's input (:func:`only_asks_for_updates`, for the idle timeout). Pure, no I/O.

An RFB server speaks first (RFC 6143 §7.1.1): ``b"RFB xxx.yyy\\n"``, three digits, a dot, three digits.
limen only checks that banner; the rest of the protocol passes through untouched, between noVNC and
QEMU. The check is incremental so that garbage is rejected on its first wrong byte instead of after
the banner timeout, and so that a server sending the banner in pieces is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

BANNER_LENGTH = 12
_PREFIX = b"RFB "
# Position → what the byte at that position must be: a literal byte, or any ASCII digit.
_DIGIT = -1
_SHAPE: tuple[int, ...] = (*_PREFIX, _DIGIT, _DIGIT, _DIGIT, ord("."), _DIGIT, _DIGIT, _DIGIT, ord("\n"))
assert len(_SHAPE) == BANNER_LENGTH


class BannerStatus(Enum):
    INCOMPLETE = "incomplete"
    VALID = "valid"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class BannerVerdict:
    status: BannerStatus
    # The complete banner when VALID; the bytes seen so far otherwise.
    data: bytes
    # Why the bytes are not a banner (INVALID only), fit for an error's details.
    reason: str = ""


def _byte_fits(position: int, value: int) -> bool:
    expected = _SHAPE[position]
    if expected == _DIGIT:
        return 0x30 <= value <= 0x39
    return value == expected


def describe(data: bytes, limit: int = 32) -> str:
    """A printable rendering of untrusted bytes for details and logs (``repr`` of a bytes prefix)."""
    shown = data[:limit]
    suffix = "…" if len(data) > limit else ""
    return f"{shown!r}{suffix}"


class BannerReader:
    """Collects the server's first bytes until they form a banner or cannot become one.

    Feed what the socket returns with :meth:`feed`; ask :meth:`wanted` how many bytes to read next,
    so no byte past the banner is ever consumed (those belong to the proxied stream).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._verdict = BannerVerdict(BannerStatus.INCOMPLETE, b"")

    @property
    def verdict(self) -> BannerVerdict:
        return self._verdict

    def wanted(self) -> int:
        """Bytes still needed; 0 once there is a verdict."""
        if self._verdict.status is not BannerStatus.INCOMPLETE:
            return 0
        return BANNER_LENGTH - len(self._buffer)

    def feed(self, data: bytes) -> BannerVerdict:
        """Adds bytes read from the server. Feeding past a verdict is a programming error."""
        if self._verdict.status is not BannerStatus.INCOMPLETE:
            raise RuntimeError("banner already decided")
        if len(data) > self.wanted():
            raise ValueError(f"fed {len(data)} bytes, wanted at most {self.wanted()}")
        start = len(self._buffer)
        self._buffer += data
        for offset, value in enumerate(data):
            if not _byte_fits(start + offset, value):
                seen = bytes(self._buffer)
                self._verdict = BannerVerdict(
                    BannerStatus.INVALID, seen, f"expected an RFB banner like b'RFB 003.008\\n', got {describe(seen)}"
                )
                return self._verdict
        if len(self._buffer) == BANNER_LENGTH:
            self._verdict = BannerVerdict(BannerStatus.VALID, bytes(self._buffer))
        else:
            self._verdict = BannerVerdict(BannerStatus.INCOMPLETE, bytes(self._buffer))
        return self._verdict

    def eof(self) -> BannerVerdict:
        """The server closed the connection: whatever came so far is not a banner."""
        if self._verdict.status is BannerStatus.INCOMPLETE:
            seen = bytes(self._buffer)
            what = f"after {describe(seen)}" if seen else "before sending anything"
            self._verdict = BannerVerdict(BannerStatus.INVALID, seen, f"the server closed the connection {what}")
        return self._verdict


def is_banner(data: bytes) -> bool:
    """True when ``data`` is exactly one valid RFB banner."""
    return len(data) == BANNER_LENGTH and all(_byte_fits(i, value) for i, value in enumerate(data))


def protocol_version(banner: bytes) -> tuple[int, int]:
    """(major, minor) of a valid banner, e.g. (3, 8)."""
    if not is_banner(banner):
        raise ValueError(f"not an RFB banner: {describe(banner)}")
    return int(banner[4:7]), int(banner[8:11])


# -- the browser's messages: which are a person's input ---------------------------------------------------

FRAMEBUFFER_UPDATE_REQUEST = 3  # RFC 6143 §7.5.3: the message type, then 9 bytes (incremental, x, y, w, h)
_UPDATE_REQUEST_LENGTH = 10


def only_asks_for_updates(message: bytes) -> bool:
    """Whether a binary message from the browser is only FramebufferUpdateRequests. noVNC asks for the next
    screen by itself after every update, so while the guest's screen changes these come without anyone at
    the keyboard: they are not input, for the idle timeout (a guest's output is not input). Anything else
    (keys, pointer, clipboard, or messages of several kinds at once) counts as input."""
    length = len(message)
    if length == 0 or length % _UPDATE_REQUEST_LENGTH:
        return False
    # Every browser message passes here: one slice and one count run in C, where a generator would run
    # Python per request. The slice holds exactly the type bytes, one per request, and nothing else.
    type_bytes = message[::_UPDATE_REQUEST_LENGTH]
    return type_bytes.count(FRAMEBUFFER_UPDATE_REQUEST) == length // _UPDATE_REQUEST_LENGTH
