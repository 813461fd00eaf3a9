"""Screenshots as PNG: QEMU's binary PPM (P6) turned into a PNG with zlib and struct alone.

Pure functions over bytes; no I/O. Every loop runs per row with C-level slicing, never per pixel.
"""

from __future__ import annotations

import re
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PPM_HEADER = re.compile(rb"P6(?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)\s")


class ImageFormatError(ValueError):
    """The bytes are not an image this module reads."""


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def encode_png_rgb(width: int, height: int, pixels: bytes, *, level: int = 6) -> bytes:
    """A PNG of ``height`` rows of ``width`` 8-bit RGB pixels packed row after row in ``pixels``."""
    stride = width * 3
    if width <= 0 or height <= 0 or len(pixels) != stride * height:
        raise ImageFormatError(f"{len(pixels)} bytes do not hold {width}x{height} RGB pixels")
    raw = bytearray((stride + 1) * height)  # each row: filter type 0 (None), then its pixels
    for row in range(height):
        start = row * (stride + 1) + 1
        raw[start : start + stride] = pixels[row * stride : (row + 1) * stride]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(raw), level)) + _chunk(
        b"IEND", b""
    )


def parse_ppm(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB pixels) of a binary PPM with 8-bit samples."""
    match = _PPM_HEADER.match(data)
    if match is None:
        raise ImageFormatError("not a binary PPM (P6) image")
    width, height, maxval = (int(group) for group in match.groups())
    if maxval != 255:
        raise ImageFormatError(f"PPM with maxval {maxval}; only 8-bit samples (255) are read")
    size = width * height * 3
    pixels = data[match.end() : match.end() + size]
    if width <= 0 or height <= 0 or len(pixels) != size:
        raise ImageFormatError(f"PPM {width}x{height} is truncated ({len(pixels)} of {size} pixel bytes)")
    return width, height, pixels


def downscale_rgb(width: int, height: int, pixels: bytes, factor: int) -> tuple[int, int, bytes]:
    """Keeps every ``factor``-th pixel of every ``factor``-th row (nearest neighbour)."""
    if factor <= 1:
        return width, height, pixels
    stride = width * 3
    new_width = (width + factor - 1) // factor
    new_height = (height + factor - 1) // factor
    out = bytearray(new_width * new_height * 3)
    out_stride = new_width * 3
    step = factor * 3
    for new_row in range(new_height):
        row = pixels[new_row * factor * stride : new_row * factor * stride + stride]
        base = new_row * out_stride
        target = out[base : base + out_stride]
        for channel in range(3):
            target[channel::3] = row[channel::step]
        out[base : base + out_stride] = target
    return new_width, new_height, bytes(out)


def ppm_to_png(data: bytes, *, max_width: int | None = None) -> bytes:
    """PNG bytes of a binary PPM, shrunk by a whole factor when wider than ``max_width``."""
    width, height, pixels = parse_ppm(data)
    if max_width is not None and max_width > 0 and width > max_width:
        factor = -(-width // max_width)
        width, height, pixels = downscale_rgb(width, height, pixels, factor)
    return encode_png_rgb(width, height, pixels)
