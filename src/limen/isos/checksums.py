"""SHA-256 checksums of ISOs, kept beside each image in a hidden file ``.NAME.sha256``.

The file holds ``<hex digest> <size> <mtime_ns>`` of the image it was computed for; a checksum whose
image has since changed size or modification time is stale and reads as unknown.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from limen.isos.tempfiles import exclusive_temp_file

READ_CHUNK = 1 << 20


CHECKSUM_SUFFIX = ".sha256"


def checksum_path(image: Path) -> Path:
    return image.with_name(f".{image.name}{CHECKSUM_SUFFIX}")


def read_checksum(image: Path, info: os.stat_result) -> str | None:
    """The stored SHA-256 of ``image`` (whose ``stat()`` is ``info``), or None if unknown or stale."""
    try:
        fields = checksum_path(image).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    if len(fields) != 3 or len(fields[0]) != 64:
        return None
    digest, size, mtime_ns = fields
    if size != str(info.st_size) or mtime_ns != str(info.st_mtime_ns):
        return None
    return digest


def write_checksum(image: Path, digest: str) -> None:
    """Stores ``digest`` as the checksum of ``image`` as it is now (atomically: a temp file renamed)."""
    info = image.stat()
    target = checksum_path(image)
    temp, fd = exclusive_temp_file(target)
    try:
        os.write(fd, f"{digest} {info.st_size} {info.st_mtime_ns}\n".encode("ascii"))
        os.close(fd)
        fd = -1
        os.replace(temp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temp.unlink(missing_ok=True)
        raise


def remove_checksum(image: Path) -> None:
    checksum_path(image).unlink(missing_ok=True)


def checked_image(entry: Path) -> Path | None:
    """The image ``entry`` would be the checksum file of (``.NAME.sha256`` → ``NAME``), or None for any other
    name."""
    name = entry.name
    if len(name) > len(CHECKSUM_SUFFIX) + 1 and name.startswith(".") and name.endswith(CHECKSUM_SUFFIX):
        return entry.with_name(name[1:-len(CHECKSUM_SUFFIX)])
    return None


def hash_file(path: Path, stop: threading.Event | None = None) -> str | None:
    """The SHA-256 of the file at ``path``, read a chunk at a time; None if ``stop`` was set meanwhile."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(READ_CHUNK):
            if stop is not None and stop.is_set():
                return None
            digest.update(chunk)
    return digest.hexdigest()
