"""limen's temporary files in the ISO directory: ``.NAME.upload-<random>``, locked while in use.

Whoever writes one holds an exclusive ``flock`` on it for as long as it lives, so a sweep can tell the
leftovers of a killed process (lock free) from the work of a live one (an upload running in another
limen, or in ``limen iso upload``). The lock dies with its process; no stale-lock files are needed.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import stat
import time
from pathlib import Path

TEMP_MARK = ".upload-"
_TOKEN_BYTES = 6  # the random part: 12 hex digits
# Exactly the names exclusive_temp_file makes: an image's own name may hold ".upload-" (x.upload-1.iso, whose
# checksum file .x.upload-1.iso.sha256 the sweep must leave alone).
_TEMP_NAME = re.compile(rf"\..+{re.escape(TEMP_MARK)}[0-9a-f]{{{2 * _TOKEN_BYTES}}}", re.DOTALL)
# A file this fresh and still empty may have been created by a live process that has not yet locked it.
_GRACE_SECONDS = 10.0


def exclusive_temp_file(target: Path) -> tuple[Path, int]:
    """A new, empty, locked temp file beside ``target`` (hidden, never listed): its path and descriptor."""
    while True:
        temp = target.with_name(f".{target.name}{TEMP_MARK}{secrets.token_hex(_TOKEN_BYTES)}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a brand-new file: nobody else holds it
        return temp, fd


def is_temp_name(name: str) -> bool:
    return _TEMP_NAME.fullmatch(name) is not None


def sweep_stale_temp_files(directory: Path, *, now: float | None = None) -> list[Path]:
    """Deletes the temp files in ``directory`` that no live process holds; returns them."""
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    now = time.time() if now is None else now
    for entry in directory.iterdir():
        if not is_temp_name(entry.name):
            continue
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # held: an upload in progress
        try:
            info = os.fstat(fd)
            if info.st_size == 0 and now - info.st_mtime < _GRACE_SECONDS:
                continue
            entry.unlink(missing_ok=True)
            removed.append(entry)
        finally:
            os.close(fd)
    return removed


# An image being deleted: ``.NAME.deleting-<random>``, for the moment its delete checks the CD-ROMs again.
PARK_MARK = ".deleting-"
_PARKED_NAME = re.compile(rf"\.(?P<name>.+){re.escape(PARK_MARK)}[0-9a-f]{{{2 * _TOKEN_BYTES}}}", re.DOTALL)


class ParkedImage:
    """An image moved under a hidden name while its delete makes sure nothing took it meanwhile: no listing
    shows it and no new VM can be given it (:func:`limen.isos.library.resolve_iso` finds no file). Locked while
    parked (an image, not a link), so that a sweep tells a live delete's from a killed one's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hidden = path.with_name(f".{path.name}{PARK_MARK}{secrets.token_hex(_TOKEN_BYTES)}")
        self._fd: int | None = None
        if stat.S_ISREG(path.lstat().st_mode):  # not a link, nor a pipe an open would wait on
            try:
                self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass  # unreadable to limen, or another delete of it holds it: the rename below decides
        try:
            os.rename(path, self.hidden)
        except BaseException:
            self._close()
            raise

    def put_back(self) -> None:
        """Its name again: without replacing an image uploaded under it meanwhile (then this one goes)."""
        try:
            os.link(self.hidden, self.path, follow_symlinks=False)
        except FileExistsError:
            pass
        self.remove()

    def remove(self) -> None:
        try:
            self.hidden.unlink(missing_ok=True)
        finally:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def parked_twin(directory: Path, name: str) -> bool:
    """Whether image ``name`` of ``directory`` is parked by its delete right now (its name free meanwhile)."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return False
    return any((matched := _PARKED_NAME.fullmatch(entry)) is not None and matched["name"] == name
               for entry in entries)


def restore_parked_images(directory: Path) -> list[Path]:
    """Gives the images a killed limen left parked (its delete did not finish, nor answer) their names back;
    one whose name an image has taken meanwhile is removed. Returns the names restored or removed. A parked
    image a live delete holds (its lock) is left to it; a parked link, which has no lock, is given back:
    were its delete alive (another limen on this directory), the link stays, which loses nothing."""
    handled: list[Path] = []
    if not directory.is_dir():
        return handled
    for entry in directory.iterdir():
        matched = _PARKED_NAME.fullmatch(entry.name)
        if matched is None:
            continue
        try:
            if not stat.S_ISREG(entry.lstat().st_mode):
                fd = None
            else:
                fd = os.open(entry, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue  # held: a delete in progress
        except OSError:
            continue
        try:
            try:
                os.link(entry, directory / matched["name"], follow_symlinks=False)
            except FileExistsError:
                pass
            entry.unlink(missing_ok=True)
            handled.append(directory / matched["name"])
        except OSError:
            continue
        finally:
            if fd is not None:
                os.close(fd)
    return handled
