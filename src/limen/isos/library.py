"""The ISO directory: which boot images it holds, which names are acceptable, deleting one.

Names are plain file names ending in ``.iso`` or ``.img``, in UTF-8. Names starting with a dot are limen's
own (uploads in progress, checksum files) and are never listed nor accepted; a file whose name is other
bytes (a Latin-1 ``caf\xe9.iso``) is not listed either (logged once), as no answer could carry its name.
"""

from __future__ import annotations

import logging
import os
import stat
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from limen.errors import ErrorCode, LimenError, Rule, ValidationFailed, rule
from limen.isos.checksums import checked_image, read_checksum, remove_checksum
from limen.isos.tempfiles import ParkedImage, parked_twin

log = logging.getLogger("limen.isos")

ISO_SUFFIXES = (".iso", ".img")
# Room under the file system's 255-byte name limit for the ".NAME.upload-<random>" of an upload.
MAX_NAME_BYTES = 200


@dataclass(frozen=True, slots=True)
class IsoImage:
    name: str
    path: Path
    size_bytes: int
    modified: datetime
    sha256: str | None  # None until computed (an ISO copied into the directory by hand)


@dataclass(frozen=True, slots=True)
class NameProblem:
    """Why a name cannot be an ISO's: in words, and as the :class:`~limen.errors.Rule` broken."""

    text: str
    rule: dict[str, Any]


def name_problem(name: str) -> NameProblem | None:
    """Why ``name`` cannot be an ISO's name (a path, ``..``, a hidden or over-long name, a wrong suffix),
    or None when it can."""
    if not name or name in (".", "..") or Path(name).name != name or "/" in name:
        return NameProblem(f"{name!r} is not a file name inside the ISO directory", rule(Rule.FILE_NAME))
    if not _is_utf8(name):
        return NameProblem(f"{name!r} is not valid UTF-8", rule(Rule.FILE_NAME))
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return NameProblem(f"{name!r} contains control characters", rule(Rule.NO_CONTROL_CHARS))
    if name.startswith("."):
        return NameProblem(f"{name!r} starts with a dot (hidden names are limen's own)", rule(Rule.HIDDEN_NAME))
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return NameProblem(f"the name is longer than {MAX_NAME_BYTES} bytes", rule(Rule.MAX_BYTES, max=MAX_NAME_BYTES))
    if Path(name).suffix.lower() not in ISO_SUFFIXES:
        return NameProblem(f"{name!r} is not an .iso or .img file", rule(Rule.ISO_SUFFIX))
    return None


def _is_utf8(name: str) -> bool:
    """Whether ``name`` is Unicode text: a file name of other bytes (``caf\\xe9.iso``, Latin-1) reads from the
    directory with lone surrogates in it, which no JSON answer, log line or terminal can carry."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_new_name(name: str) -> None:
    """VALIDATION_ERROR (field ``name``) unless ``name`` may name a new ISO."""
    problem = name_problem(name)
    if problem is not None:
        raise ValidationFailed("name", problem.text, rule=problem.rule)
    # A new name is shown as it reads: no invisible or reordering characters (U+202E turned "x‮osi.exe" into
    # what reads "xexe.iso"), no white space at its ends. Files put in the directory by hand keep theirs.
    if any(unicodedata.category(char)[0] == "C" for char in name):
        raise ValidationFailed("name", f"{name!r} contains invisible or formatting characters",
                               rule=rule(Rule.NO_CONTROL_CHARS))
    if name != name.strip() or Path(name).stem != Path(name).stem.strip():
        raise ValidationFailed("name", f"{name!r} starts or ends with white space", rule=rule(Rule.NO_EDGE_SPACE))
    if "\ufffd" in name:  # what a URL's invalid UTF-8 (name=a%ff.iso) decodes to: the file would be named otherwise
        raise ValidationFailed("name", f"{name!r} was not valid UTF-8: percent-encode the name's UTF-8 bytes")


def list_image(entry: Path) -> IsoImage | None:
    """The image at ``entry`` as the listing shows it; None when it is not a (link to a) regular file."""
    try:
        info = entry.stat()  # follows links: a link to a packaged ISO is listed like a file
    except OSError:
        return None  # a dangling link, or gone since the directory was read
    if not stat.S_ISREG(info.st_mode):
        return None
    return IsoImage(
        name=entry.name,
        path=entry,
        size_bytes=info.st_size,
        modified=datetime.fromtimestamp(info.st_mtime, tz=UTC),
        sha256=read_checksum(entry, info),
    )


def list_isos(iso_dir: Path) -> list[IsoImage]:
    """Boot images directly inside ``iso_dir`` (links included, e.g. to ISOs that packages ship).

    The checksum file of an image deleted by hand (``rm``, not limen) is removed on the way: nothing else
    would, and each such image left one behind for good.
    """
    if not iso_dir.is_dir():
        return []
    images = []
    for entry in sorted(iso_dir.iterdir()):
        if not _is_utf8(entry.name):
            if not entry.name.startswith(".") and entry.suffix.lower() in ISO_SUFFIXES:
                _log_unreadable_once(entry)  # an image by its looks: say why it is not listed
        elif name_problem(entry.name) is None:
            image = list_image(entry)
            if image is not None:
                images.append(image)
        else:
            _remove_if_orphan_checksum(entry)
    return images


# The names not in UTF-8 already logged: the listing is asked for often, a name logged once is enough.
_logged_unreadable: set[Path] = set()


def _log_unreadable_once(entry: Path) -> None:
    if entry not in _logged_unreadable:
        _logged_unreadable.add(entry)
        shown = os.fsencode(entry.name).decode("utf-8", "backslashreplace")
        log.warning("ISO directory entry skipped: its name is not valid UTF-8 (rename it to list it)",
                    extra={"event": "iso_name_not_utf8", "iso": shown})


def _remove_if_orphan_checksum(entry: Path) -> None:
    image = checked_image(entry)
    # Only a checksum file of an image name limen would list; the image is looked for now, not in the listing
    # read before: an upload links its image before it writes the checksum, so one seen here has its image.
    # Nor one whose image its delete has parked for a moment (it may yet be put back).
    if (image is not None and name_problem(image.name) is None and not os.path.lexists(image)
            and not parked_twin(image.parent, image.name)):
        try:
            entry.unlink(missing_ok=True)
        except OSError:
            pass  # a directory limen may only read (or a directory of that name) is still listed


def resolve_iso(iso_dir: Path, name: str) -> Path:
    """The path of ISO ``name``, which must be a plain file name of an image in ``iso_dir``.

    Anything else is refused, so a request can never point a VM's CD-ROM at an arbitrary file of the host:
    VALIDATION_ERROR (field ``iso``) with the rule broken, a path or ``..`` (the name's rule) or a missing
    file (``iso_missing``). The details name the image only: the directory is the host's, not every user's.
    """
    problem = name_problem(name)
    if problem is not None:
        raise ValidationFailed("iso", problem.text, rule=problem.rule)
    path = iso_dir / name
    if not path.is_file():
        raise ValidationFailed("iso", f"no image named {name!r}", rule=rule(Rule.ISO_MISSING))
    return path


def _same_file(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


class CdromSource(NamedTuple):
    """A CD-ROM's image file: in a VM's drive (``snapshot`` None), or in the definition a snapshot of the VM
    keeps (a revert puts that disc back in the drive)."""

    vm: str
    path: str
    snapshot: str | None = None


def holders_of(
    path: Path, cdroms: Iterable[CdromSource], *, now_at: Path | None = None
) -> list[tuple[str, str | None]]:
    """(VM name, snapshot name or None) of every drive and snapshot that holds the ISO at ``path``, sorted;
    ``now_at``: where its file is now (parked by its delete), if not at ``path``.

    A CD-ROM holds the image when it names this very path, or (for an image that is not a link) the same
    file by another path. A VM that names a link's target directly does not hold the link: deleting the
    link leaves it untouched.
    """
    own = os.path.abspath(path)
    file = now_at or path
    is_link = file.is_symlink()
    holders = {
        (cdrom.vm, cdrom.snapshot) for cdrom in cdroms
        if os.path.abspath(cdrom.path) == own or (not is_link and _same_file(cdrom.path, file))
    }
    return sorted(holders, key=lambda holder: (holder[0], holder[1] or ""))


class IsoInUse(LimenError):
    """ISO_IN_USE; the answer also lists the VMs whose drive holds it as ``vms``, and the snapshots that would
    put it back in a drive as ``snapshots`` (``{"vm", "snapshot"}`` each)."""

    def __init__(self, name: str, holders: list[tuple[str, str | None]]) -> None:
        self.vms = sorted({vm for vm, snapshot in holders if snapshot is None})
        self.snapshots = [{"vm": vm, "snapshot": snapshot} for vm, snapshot in holders if snapshot is not None]
        held = [f"the CD-ROM of: {', '.join(self.vms)}"] if self.vms else []
        if self.snapshots:
            held.append("kept by the snapshots: " + ", ".join(f"{s['vm']}/{s['snapshot']}" for s in self.snapshots))
        super().__init__(ErrorCode.ISO_IN_USE, f"iso {name!r} is {'; and '.join(held)}")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "vms": self.vms, "snapshots": self.snapshots}


def delete_iso(iso_dir: Path, name: str, cdroms: Iterable[CdromSource],
               recheck: Callable[[], Iterable[CdromSource]] | None = None) -> None:
    """Deletes ISO ``name`` (a link: the link only) and its checksum.

    ISO_NOT_FOUND for an unknown name; ISO_IN_USE, naming them, while a VM's CD-ROM or a snapshot holds it.
    ``cdroms`` are every CD-ROM's image, read before; ``recheck`` reads them again once the image is parked
    under a hidden name (no new VM can be given it then): a VM created from it, or given it, between the
    first read and the delete held a deleted file (both answered success). Met then, the image is put back.
    """
    problem = name_problem(name)
    if problem is not None:
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: {problem.text}")
    path = iso_dir / name
    if not (path.is_file() or path.is_symlink()):  # a dangling link can still be removed
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: no image named {name!r}")
    holders = holders_of(path, cdroms)
    if holders:
        raise IsoInUse(name, holders)
    try:
        if recheck is None:
            path.unlink()
        else:
            parked = ParkedImage(path)
            try:
                holders = holders_of(path, recheck(), now_at=parked.hidden)
            except BaseException:
                parked.put_back()
                raise
            if holders:
                parked.put_back()
                raise IsoInUse(name, holders)
            parked.remove()
    except FileNotFoundError:
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: {name!r} was deleted meanwhile") from None
    remove_checksum(path)
