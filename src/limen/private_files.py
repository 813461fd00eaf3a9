"""Files only limen's own user may read: the database, the logs, and the directories that hold them.

The database holds password hashes, token hashes and session keys; the logs hold user names, client
addresses and VM names. Directories are made ``0700`` and files ``0600`` (``umask`` can only take bits
away from those); ones that already exist with looser modes, from an older limen or a hand-made
set-up, are tightened, and each tightening is returned as a :class:`Tightened` for the caller to log.
Group and other bits are what "looser" means: the owner's own bits are left as they are on files.
One exception: a directory QEMU must pass through (:func:`traversable_dir`) is ``0711``.
"""

from __future__ import annotations

import io
import itertools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# A directory QEMU must pass through to reach VM disks or ISOs under it (the data dir of the packaged layout,
# the ISO library in it): QEMU runs as its own user (libvirt-qemu on Debian), and the search bit alone lets
# it open a file whose name it is given, without listing what is there. Each file of limen's own in such a
# directory is owner-only by itself (the database and its companions: 0600).
TRAVERSABLE_DIR_MODE = 0o711
_GROUP_AND_OTHER = 0o077


@dataclass(frozen=True, slots=True)
class Tightened:
    path: Path
    was: int
    now: int

    def log_fields(self) -> dict[str, str]:
        return {"event": "file_mode_tightened", "path": str(self.path), "was": f"{self.was:04o}",
                "now": f"{self.now:04o}"}


def _tighten(path: Path, target: int) -> Tightened | None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if not mode & _GROUP_AND_OTHER:
        return None
    now = (mode & ~_GROUP_AND_OTHER) | target
    path.chmod(now)
    return Tightened(path, mode, now)


def private_dir(path: Path) -> Tightened | None:
    """Makes ``path`` (and missing parents) if it does not exist, ``0700``; tightens it if it is looser."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    return _tighten(path, PRIVATE_DIR_MODE)


def traversable_dir(path: Path) -> int | None:
    """Makes ``path`` if it does not exist (missing parents ``0700``), ``0711``; an existing one gets exactly
    the search bit for group and other (``0700`` and ``0755`` become ``0711``). Returns the mode an existing
    one had, when it changed."""
    made = not path.exists()
    if made:
        path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        path.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    wanted = (mode & ~_GROUP_AND_OTHER) | (TRAVERSABLE_DIR_MODE & _GROUP_AND_OTHER)
    if mode == wanted:
        return None
    path.chmod(wanted)  # not given to mkdir: the umask would take the search bits away again
    return None if made else mode


def private_file(path: Path) -> Tightened | None:
    """Tightens an existing file to owner-only; None if it is private already or does not exist."""
    return _tighten(path, 0)


def create_private_file(path: Path) -> Tightened | None:
    """Creates ``path`` empty and ``0600`` unless it exists; tightens it if it exists and is looser."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE))
    except FileExistsError:
        return private_file(path)
    return None


def new_private_file(directory: Path, name: str, suffix: str = "") -> Path:
    """Creates ``directory/<name><suffix>`` empty and ``0600``, never over a file (or a link) already there: a
    taken name gets ``-2``, ``-3``… before ``suffix``. Returns the file made. For a copy another program then
    writes (SQLite, pg_dump): one they create themselves gets the umask's mode, ``0644`` as a rule, and is
    readable by every local user while it is written."""
    for number in itertools.count(1):
        path = directory / f"{name}{f'-{number}' if number > 1 else ''}{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)  # a umask that takes the owner's write bit would leave it unwritable
        finally:
            os.close(fd)
        return path
    raise AssertionError("unreachable")  # itertools.count never ends


def open_private_append(path: Path, encoding: str) -> io.TextIOWrapper:
    """``open(path, "a")``, but a new file is ``0600`` from its first byte, and an existing one is tightened."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & _GROUP_AND_OTHER:
            os.fchmod(fd, mode & ~_GROUP_AND_OTHER)
        return open(fd, "a", encoding=encoding)  # the handler owns and closes it
    except BaseException:
        os.close(fd)
        raise
