"""The library's images are read-only media QEMU reads as they are: ``0644``, never relabelled.

libvirt's DAC driver would give an ISO to QEMU's user when a VM starts (``libvirt-qemu`` on Debian, mode
0600) and, as read-only media may be shared by other VMs, never give it back when the VM stops: limen's own
user could then no longer read it. So the CD-ROM tells libvirt not to relabel it
(:func:`limen.hypervisor.domain_xml.shared_media_source`), and every image is readable by QEMU's user
as it is. The library directory stays ``0711``: others may read an image whose name they know, not list
them; nobody but limen's user may write one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from limen.isos.library import name_problem

SHARED_IMAGE_MODE = 0o644
_READ_FOR_ALL = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_WRITE_FOR_OTHERS = stat.S_IWGRP | stat.S_IWOTH


def share_new_image(fd: int) -> None:
    """Makes a new image (open as ``fd``) ``0644`` whatever the umask (the service's is 0077)."""
    os.fchmod(fd, SHARED_IMAGE_MODE)


def share_library_images(iso_dir: Path) -> dict[Path, tuple[int, int]]:
    """Makes each image of ``iso_dir`` that limen's user owns readable by all and writable by its owner
    only (an upload of an older limen was 0600: QEMU could not read it without relabelling). Links and
    other users' files are left as they are. Returns each changed image's mode before and after."""
    changed: dict[Path, tuple[int, int]] = {}
    if not iso_dir.is_dir():
        return changed
    for entry in iso_dir.iterdir():
        if name_problem(entry.name) is not None:
            continue  # not an image: limen's own uploads in progress and checksums, other files
        try:
            info = entry.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            continue
        mode = stat.S_IMODE(info.st_mode)
        wanted = (mode | _READ_FOR_ALL) & ~_WRITE_FOR_OTHERS
        if wanted != mode:
            entry.chmod(wanted)
            changed[entry] = (mode, wanted)
    return changed
