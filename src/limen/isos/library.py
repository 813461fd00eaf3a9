"""The ISO directory: which boot images it holds, which names are acceptable, deleting one.

Names are plain file names ending in ``.iso`` or ``.img``. Names starting with a dot are limen's own
(uploads in progress, checksum files) and are never listed nor accepted.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from limen.errors import ErrorCode, LimenError, Rule, ValidationFailed, rule
from limen.isos.checksums import read_checksum, remove_checksum

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
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return NameProblem(f"{name!r} contains control characters", rule(Rule.NO_CONTROL_CHARS))
    if name.startswith("."):
        return NameProblem(f"{name!r} starts with a dot (hidden names are limen's own)", rule(Rule.HIDDEN_NAME))
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return NameProblem(f"the name is longer than {MAX_NAME_BYTES} bytes", rule(Rule.MAX_BYTES, max=MAX_NAME_BYTES))
    if Path(name).suffix.lower() not in ISO_SUFFIXES:
        return NameProblem(f"{name!r} is not an .iso or .img file", rule(Rule.ISO_SUFFIX))
    return None


def check_new_name(name: str) -> None:
    """VALIDATION_ERROR (field ``name``) unless ``name`` may name a new ISO."""
    problem = name_problem(name)
    if problem is not None:
        raise ValidationFailed("name", problem.text, rule=problem.rule)


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
    """Boot images directly inside ``iso_dir`` (links included, e.g. to ISOs that packages ship)."""
    if not iso_dir.is_dir():
        return []
    images = []
    for entry in sorted(iso_dir.iterdir()):
        if name_problem(entry.name) is None:
            image = list_image(entry)
            if image is not None:
                images.append(image)
    return images


def resolve_iso(iso_dir: Path, name: str) -> Path:
    """The path of ISO ``name``, which must be a plain file name of an image in ``iso_dir``.

    Anything else (a path, ``..``, a missing file) is refused, so a request can never point a VM's
    CD-ROM at an arbitrary file of the host.
    """
    problem = name_problem(name)
    if problem is not None:
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: {problem.text}")
    path = iso_dir / name
    if not path.is_file():
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: no image named {name!r} in {iso_dir}")
    return path


def _same_file(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def vms_using(path: Path, cdroms: Iterable[tuple[str, str]]) -> list[str]:
    """The names of the VMs whose CD-ROM holds the ISO at ``path``; ``cdroms`` are (VM name, source path).

    A VM uses the image when its CD-ROM names this very path, or (for an image that is not a link) the
    same file by another path. A VM that names a link's target directly does not use the link: deleting
    the link leaves it untouched.
    """
    own = os.path.abspath(path)
    is_link = path.is_symlink()
    users = {
        vm for vm, source in cdroms
        if os.path.abspath(source) == own or (not is_link and _same_file(source, path))
    }
    return sorted(users)


class IsoInUse(LimenError):
    """ISO_IN_USE; the answer also lists the VMs as ``vms``."""

    def __init__(self, name: str, vms: list[str]) -> None:
        super().__init__(ErrorCode.ISO_IN_USE, f"iso {name!r} is the CD-ROM of: {', '.join(vms)}")
        self.vms = vms

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "vms": self.vms}


def delete_iso(iso_dir: Path, name: str, cdroms: Iterable[tuple[str, str]]) -> None:
    """Deletes ISO ``name`` (a link: the link only) and its checksum.

    ISO_NOT_FOUND for an unknown name; ISO_IN_USE, naming the VMs, while a VM's CD-ROM holds it.
    """
    problem = name_problem(name)
    if problem is not None:
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: {problem.text}")
    path = iso_dir / name
    if not (path.is_file() or path.is_symlink()):  # a dangling link can still be removed
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: no image named {name!r} in {iso_dir}")
    users = vms_using(path, cdroms)
    if users:
        raise IsoInUse(name, users)
    try:
        path.unlink()
    except FileNotFoundError:
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: {name!r} was deleted meanwhile") from None
    remove_checksum(path)
