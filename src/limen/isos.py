"""The ISO directory: which boot images exist, and safe resolution of a name the user sent."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from limen.errors import ErrorCode, LimenError

ISO_SUFFIXES = (".iso", ".img")


@dataclass(frozen=True, slots=True)
class IsoImage:
    name: str
    path: Path
    size_bytes: int


def list_isos(iso_dir: Path) -> list[IsoImage]:
    """Boot images directly inside ``iso_dir`` (links included, e.g. to ISOs that packages ship)."""
    if not iso_dir.is_dir():
        return []
    images = []
    for entry in sorted(iso_dir.iterdir()):
        if entry.suffix.lower() in ISO_SUFFIXES and entry.is_file():
            images.append(IsoImage(name=entry.name, path=entry, size_bytes=entry.stat().st_size))
    return images


def resolve_iso(iso_dir: Path, name: str) -> Path:
    """The path of ISO ``name``, which must be a plain file name of an image in ``iso_dir``.

    Anything else (a path, ``..``, a missing file) is refused, so a request can never point a VM's
    CD-ROM at an arbitrary file of the host.
    """
    candidate = Path(name)
    if not name or name in (".", "..") or candidate.name != name or "\x00" in name:
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: {name!r} is not a file name inside the ISO directory")
    if candidate.suffix.lower() not in ISO_SUFFIXES:
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: {name!r} is not an .iso or .img file")
    path = iso_dir / name
    if not path.is_file():
        raise LimenError(ErrorCode.ISO_NOT_FOUND, f"iso: no image named {name!r} in {iso_dir}")
    return path
