"""The parts of RFB 3.8 (RFC 6143) that the fake server and the load client share.

Only what a VNC session with security type None and Raw rectangles needs: the handshake messages,
FramebufferUpdate/FramebufferUpdateRequest, and :class:`UpdateParser`, which follows a server → client
byte stream and counts whole FramebufferUpdates without copying pixel data.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

PROTOCOL_VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_RESULT_OK = b"\x00\x00\x00\x00"
CLIENT_INIT_SHARED = b"\x01"

# Client → server message types, and the size of each fixed part (type byte included).
SET_PIXEL_FORMAT = 0
SET_ENCODINGS = 2
FRAMEBUFFER_UPDATE_REQUEST = 3
KEY_EVENT = 4
POINTER_EVENT = 5
CLIENT_CUT_TEXT = 6
CLIENT_FIXED_SIZES = {
    SET_PIXEL_FORMAT: 20,
    SET_ENCODINGS: 4,  # then 4 bytes per encoding
    FRAMEBUFFER_UPDATE_REQUEST: 10,
    KEY_EVENT: 8,
    POINTER_EVENT: 6,
    CLIENT_CUT_TEXT: 8,  # then the text
}

# Server → client message types.
FRAMEBUFFER_UPDATE = 0
SET_COLOUR_MAP_ENTRIES = 1
BELL = 2
SERVER_CUT_TEXT = 3

ENCODING_RAW = 0
ENCODING_DESKTOP_SIZE = -223

# 32 bits per pixel, depth 24, little-endian, true colour, 8 bits per channel: what noVNC asks for.
PIXEL_FORMAT_32 = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
SERVER_INIT_FIXED = 24  # width, height, pixel format, name length


class ProtocolError(Exception):
    """The peer sent something that is not RFB as this module knows it."""


def server_init(width: int, height: int, name: bytes) -> bytes:
    return struct.pack(">HH", width, height) + PIXEL_FORMAT_32 + struct.pack(">I", len(name)) + name


def parse_server_init_fixed(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bits per pixel, name length) from ServerInit's first 24 bytes."""
    width, height = struct.unpack_from(">HH", data, 0)
    bits_per_pixel = data[4]
    (name_length,) = struct.unpack_from(">I", data, 20)
    return width, height, bits_per_pixel, name_length


def raw_update(width: int, height: int, pixels: bytes, x: int = 0, y: int = 0) -> bytes:
    """A FramebufferUpdate holding one Raw rectangle; ``pixels`` is width × height × 4 bytes."""
    if len(pixels) != width * height * 4:
        raise ValueError("pixels must hold width × height × 4 bytes")
    header = struct.pack(">BxH", FRAMEBUFFER_UPDATE, 1) + struct.pack(">HHHHi", x, y, width, height, ENCODING_RAW)
    return header + pixels


def pattern(size: int) -> bytes:
    """``size`` bytes of a repeating, non-constant pattern (nothing on the path compresses it anyway)."""
    block = bytes(range(256))
    return (block * (size // 256 + 1))[:size]


def update_request(x: int, y: int, width: int, height: int, *, incremental: bool = True) -> bytes:
    return struct.pack(">BBHHHH", FRAMEBUFFER_UPDATE_REQUEST, int(incremental), x, y, width, height)


class UpdateParser:
    """Follows a server → client RFB stream (after ServerInit) and counts FramebufferUpdates.

    Feed it the bytes as they come, in chunks of any size. Pixel data is skipped by counting, never
    copied; only message and rectangle headers (a few bytes each) are gathered. Raw and DesktopSize
    rectangles, Bell, ServerCutText and SetColourMapEntries are understood; anything else raises
    :class:`ProtocolError`.
    """

    __slots__ = ("_bytes_per_pixel", "_handler", "_head", "_need", "_rects_left", "_skip", "updates")

    def __init__(self, bits_per_pixel: int = 32) -> None:
        self._bytes_per_pixel = bits_per_pixel // 8
        self._skip = 0  # payload bytes still to skip
        self._head = bytearray()  # header bytes gathered so far
        self._need = 1  # header bytes wanted before _handler runs
        self._handler: Callable[[bytes], None] = self._on_type
        self._rects_left = 0
        self.updates = 0

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Consumes ``data``; returns how many FramebufferUpdates it completed."""
        before = self.updates
        position, end = 0, len(data)
        while position < end:
            if self._skip:
                taken = min(self._skip, end - position)
                self._skip -= taken
                position += taken
                if not self._skip:
                    self._after_payload()
                continue
            taken = min(self._need - len(self._head), end - position)
            self._head += data[position : position + taken]
            position += taken
            if len(self._head) == self._need:
                header = bytes(self._head)
                self._head.clear()
                self._handler(header)
        return self.updates - before

    # -- states ---------------------------------------------------------------------------------------

    def _expect(self, size: int, handler: Callable[[bytes], None]) -> None:
        self._need = size
        self._handler = handler

    def _on_type(self, header: bytes) -> None:
        kind = header[0]
        if kind == FRAMEBUFFER_UPDATE:
            self._expect(3, self._on_update)
        elif kind == BELL:
            self._expect(1, self._on_type)
        elif kind == SERVER_CUT_TEXT:
            self._expect(7, self._on_cut_text)
        elif kind == SET_COLOUR_MAP_ENTRIES:
            self._expect(5, self._on_colour_map)
        else:
            raise ProtocolError(f"unknown server message type {kind}")

    def _on_update(self, header: bytes) -> None:
        (self._rects_left,) = struct.unpack_from(">H", header, 1)
        if self._rects_left == 0:
            self.updates += 1
            self._expect(1, self._on_type)
        else:
            self._expect(12, self._on_rect)

    def _on_rect(self, header: bytes) -> None:
        _x, _y, width, height, encoding = struct.unpack(">HHHHi", header)
        if encoding == ENCODING_RAW:
            self._skip = width * height * self._bytes_per_pixel
        elif encoding != ENCODING_DESKTOP_SIZE:
            raise ProtocolError(f"unsupported encoding {encoding}")
        if not self._skip:
            self._after_payload()

    def _on_cut_text(self, header: bytes) -> None:
        (self._skip,) = struct.unpack_from(">I", header, 3)
        self._rects_left = 0
        self._expect(1, self._on_type)

    def _on_colour_map(self, header: bytes) -> None:
        (count,) = struct.unpack_from(">H", header, 3)
        self._skip = 6 * count
        self._rects_left = 0
        self._expect(1, self._on_type)

    def _after_payload(self) -> None:
        if self._handler == self._on_rect:
            self._rects_left -= 1
            if self._rects_left == 0:
                self.updates += 1
                self._expect(1, self._on_type)
