"""The header of a server's binary WebSocket frame, written in place just before its payload.

A server's frames are not masked (RFC 6455 5.1), so a frame is this header and then the payload unchanged:
the console's proxy reads the VNC server's bytes just after :data:`HEADER_ROOM` free bytes and sends header
and payload in one write, or has the kernel move the payload after the header (:mod:`limen.console.kernel_move`).
"""

from __future__ import annotations

import struct

# The longest header of a server frame: 2 bytes + an 8-byte length (server frames carry no mask).
HEADER_ROOM = 10

_OPCODE_BINARY_FIN = 0x82
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")


def write_binary_header(buffer: bytearray, nbytes: int) -> int:
    """Writes the header of a final binary frame of ``nbytes`` just before ``buffer[HEADER_ROOM:]``.

    Returns where the frame starts: ``buffer[start : HEADER_ROOM + nbytes]`` is the whole frame.
    """
    if nbytes < 126:
        start = HEADER_ROOM - 2
        buffer[start] = _OPCODE_BINARY_FIN
        buffer[start + 1] = nbytes
    elif nbytes < 1 << 16:
        start = HEADER_ROOM - 4
        _HEADER_16.pack_into(buffer, start, _OPCODE_BINARY_FIN, 126, nbytes)
    else:
        start = 0
        _HEADER_64.pack_into(buffer, start, _OPCODE_BINARY_FIN, 127, nbytes)
    return start
