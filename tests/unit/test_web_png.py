"""PPM → PNG conversion of screenshots, checked by decoding the PNG by hand."""

from __future__ import annotations

import struct
import zlib

import pytest

from limen.web.png import ImageFormatError, downscale_rgb, encode_png_rgb, parse_ppm, ppm_to_png


def decode_png_rgb(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB pixels) of an 8-bit RGB PNG with filter 0 rows, checking every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset = 8
    width = height = 0
    idat = b""
    kinds = []
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + payload)
        kinds.append(kind)
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, _i = struct.unpack(">IIBBBBB", payload)
            assert (depth, colour) == (8, 2)
        elif kind == b"IDAT":
            idat += payload
        offset += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    raw = zlib.decompress(idat)
    stride = width * 3
    rows = []
    for row in range(height):
        line = raw[row * (stride + 1) : (row + 1) * (stride + 1)]
        assert line[0] == 0
        rows.append(line[1:])
    return width, height, b"".join(rows)


def gradient(width: int, height: int) -> bytes:
    """Pixel (x, y)'s channel c is (7x + 3y + c) mod 256: each row is the first one shifted by 3y (a byte
    table per row instead of a generator over every byte, which cost a second of CPU for 1024×768)."""
    first_row = bytes((x * 7 + c) % 256 for x in range(width) for c in range(3))
    return b"".join(first_row.translate(bytes((i + y * 3) % 256 for i in range(256))) for y in range(height))


def ppm(width: int, height: int, pixels: bytes, header: bytes | None = None) -> bytes:
    return (header or f"P6\n{width} {height}\n255\n".encode()) + pixels


def test_png_round_trip_keeps_every_pixel() -> None:
    pixels = gradient(13, 7)
    assert decode_png_rgb(encode_png_rgb(13, 7, pixels)) == (13, 7, pixels)


def test_ppm_to_png_keeps_the_picture() -> None:
    pixels = gradient(720, 400)
    assert decode_png_rgb(ppm_to_png(ppm(720, 400, pixels))) == (720, 400, pixels)


def test_ppm_header_with_comments_and_any_whitespace() -> None:
    pixels = gradient(3, 2)
    data = ppm(3, 2, pixels, b"P6 # made by QEMU\n3\t2\r\n255\n")
    assert parse_ppm(data) == (3, 2, pixels)


def test_wide_screens_shrink_by_a_whole_factor() -> None:
    pixels = gradient(1024, 768)
    width, height, small = decode_png_rgb(ppm_to_png(ppm(1024, 768, pixels), max_width=480))
    assert (width, height) == (342, 256)  # factor 3
    # Nearest neighbour: pixel (x, y) of the small image is pixel (3x, 3y) of the big one.
    for x, y in [(0, 0), (5, 7), (341, 255)]:
        small_px = small[(y * width + x) * 3 : (y * width + x) * 3 + 3]
        big_px = pixels[((3 * y) * 1024 + 3 * x) * 3 : ((3 * y) * 1024 + 3 * x) * 3 + 3]
        assert small_px == big_px


def test_narrow_screens_are_left_alone() -> None:
    pixels = gradient(320, 200)
    assert decode_png_rgb(ppm_to_png(ppm(320, 200, pixels), max_width=480))[:2] == (320, 200)


def test_downscale_factor_one_is_identity() -> None:
    pixels = gradient(4, 4)
    assert downscale_rgb(4, 4, pixels, 1) == (4, 4, pixels)


@pytest.mark.parametrize(
    "data",
    [
        b"P3\n1 1\n255\n0 0 0\n",  # ASCII PPM
        b"P6\n2 2\n65535\n" + bytes(24),  # 16-bit samples
        b"P6\n4 4\n255\n" + bytes(10),  # truncated
        b"\x89PNG not a ppm",
        b"",
    ],
)
def test_unreadable_images_raise(data: bytes) -> None:
    with pytest.raises(ImageFormatError):
        ppm_to_png(data)


def test_wrong_pixel_count_is_refused() -> None:
    with pytest.raises(ImageFormatError):
        encode_png_rgb(2, 2, bytes(11))
