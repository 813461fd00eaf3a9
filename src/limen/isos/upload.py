"""Writing a new ISO: streamed into a hidden temp file, hashed as it grows, published atomically.

::

    with IsoUpload(iso_dir, "debian.iso", max_bytes) as upload:   # VALIDATION_ERROR, ISO_ALREADY_EXISTS
        for chunk in source:
            upload.write(chunk)                                   # PAYLOAD_TOO_LARGE past max_bytes
        image = upload.commit()                                   # ISO_ALREADY_EXISTS if it appeared
    # leaving the block without commit() (an error, a dropped client, Ctrl-C) deletes the temp file

The image appears under its name only complete and synced (``os.link`` of the temp file, which never
replaces an existing file), so nobody ever sees half an ISO. The memory used is the chunk being written.
Methods may be called from any thread, one at a time; :meth:`abort` may race a :meth:`write` (it waits).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import shutil
import threading
import unicodedata
from pathlib import Path
from types import TracebackType

from limen.errors import ErrorCode, LimenError
from limen.isos.checksums import write_checksum
from limen.isos.library import IsoImage, check_new_name, list_image
from limen.isos.sharing import share_new_image
from limen.isos.tempfiles import exclusive_temp_file, parked_twin

log = logging.getLogger("limen.isos")

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def already_exists(iso_dir: Path, name: str) -> LimenError:
    """ISO_ALREADY_EXISTS for ``name`` in ``iso_dir``; a link there that points nowhere (its package removed),
    which no listing shows, is named as such, with the way to remove it."""
    path = iso_dir / name
    if path.is_symlink() and not path.exists():
        return LimenError(ErrorCode.ISO_ALREADY_EXISTS,
                          f"a link named {name!r} that points nowhere ({os.readlink(path)}) holds the name; the "
                          f"list does not show it: delete it (DELETE /api/isos/{name}, or limen iso delete), "
                          "then upload again")
    return LimenError(ErrorCode.ISO_ALREADY_EXISTS, f"an ISO named {name!r} exists")


def too_large(max_bytes: int) -> LimenError:
    return LimenError(ErrorCode.PAYLOAD_TOO_LARGE, f"ISOs may be at most {max_bytes} bytes (LIMEN_MAX_ISO_BYTES)")


def check_room(iso_dir: Path, size: int, max_bytes: int) -> None:
    """PAYLOAD_TOO_LARGE when an upload of ``size`` bytes is over the limit or cannot fit on the disk."""
    if size > max_bytes:
        raise too_large(max_bytes)
    existing = iso_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the directory is made by the upload; its disk is its parent's
    free = shutil.disk_usage(existing).free
    if size > free:
        raise LimenError(ErrorCode.PAYLOAD_TOO_LARGE, f"the ISO directory's disk has {free} bytes free, not {size}")


# How to send an image with curl: -T streams the file as it is (--data-binary would send it as a form, which
# the route refuses, and read it whole into memory first).
CURL_UPLOAD = "curl -X POST -T FILE"


def empty_image() -> LimenError:
    """An upload with no bytes: nothing boots from it, and it would take the name (curl -d @FILE of a missing
    file, a form's empty field)."""
    return LimenError(ErrorCode.INVALID_REQUEST, "the image is empty (0 bytes): send the file's contents as the "
                                                 f"body ({CURL_UPLOAD})")


def _twin_of(iso_dir: Path, name: str) -> str | None:
    """An image in ``iso_dir`` that reads as ``name`` though spelled in other code points (NFD ``한글.iso`` as
    macOS writes it, beside an NFC ``name``); None when there is none."""
    try:
        entries = os.listdir(iso_dir)
    except OSError:
        return None  # no directory yet: nothing in it
    return next((entry for entry in entries if unicodedata.normalize("NFC", entry) == name), None)


class IsoUpload:
    """A new image, named in Unicode NFC (as user names are): a name that reads like an existing image's is that
    image's, ISO_ALREADY_EXISTS, whichever code points either was spelled in."""

    def __init__(self, iso_dir: Path, name: str, max_bytes: int) -> None:
        check_new_name(name)
        name = unicodedata.normalize("NFC", name)
        self.name = name
        self.max_bytes = max_bytes
        self.target = iso_dir / name
        twin = name if os.path.lexists(self.target) else _twin_of(iso_dir, name)
        if twin is not None:
            raise already_exists(iso_dir, twin)
        if parked_twin(iso_dir, name):  # its delete may put it back: an image in its place would take its VMs
            raise LimenError(ErrorCode.ISO_ALREADY_EXISTS, f"an ISO named {name!r} is being deleted: try again")
        iso_dir.mkdir(parents=True, exist_ok=True)
        self.temp, self._fd = exclusive_temp_file(self.target)
        share_new_image(self._fd)
        self.size = 0
        self._digest = hashlib.sha256()
        self._lock = threading.Lock()
        self._done = False

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._done:
                raise LimenError(ErrorCode.INTERNAL_ERROR, "write to a finished ISO upload")
            if self.size + len(data) > self.max_bytes:
                raise too_large(self.max_bytes)
            self._digest.update(data)
            view = memoryview(data)
            try:
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    raise LimenError(
                        ErrorCode.PAYLOAD_TOO_LARGE, f"the ISO directory's disk is full after {self.size} bytes"
                    ) from None
                raise
            self.size += len(data)

    def commit(self) -> IsoImage:
        """Syncs the file and publishes it under its name; ISO_ALREADY_EXISTS if that name was taken
        meanwhile, INVALID_REQUEST if no byte came (the upload is then discarded). Once published, a failure
        to store its checksum is logged only: the image is there, with the SHA-256 answered."""
        with self._lock:
            if self._done:
                raise LimenError(ErrorCode.INTERNAL_ERROR, "commit of a finished ISO upload")
            if self.size == 0:
                self._discard()
                raise empty_image()
            os.fsync(self._fd)
            try:
                os.link(self.temp, self.target)  # unlike rename, never replaces an existing file
            except FileExistsError:
                self._discard()
                raise already_exists(self.target.parent, self.name) from None
            self._discard()
            digest = self._digest.hexdigest()
            try:
                write_checksum(self.target, digest)
                _sync_directory(self.target.parent)
            except OSError as exc:
                # The image is published whole: an error now (the disk full for the checksum's few bytes) must
                # not answer as if it were not. The checksum is computed again in the background.
                log.warning("ISO checksum not stored", extra={"event": "iso_checksum_not_stored",
                                                              "iso": self.name, "error": str(exc)})
        image = list_image(self.target)
        assert image is not None  # just created
        return dataclasses.replace(image, sha256=digest)

    def abort(self) -> None:
        """Deletes the temp file (no-op after commit or a previous abort)."""
        with self._lock:
            if not self._done:
                self._discard()

    def _discard(self) -> None:
        self._done = True
        try:
            self.temp.unlink(missing_ok=True)
        finally:
            os.close(self._fd)

    def __enter__(self) -> IsoUpload:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
