"""The ISO library: the boot images of the ISO directory, uploads into it, their checksums, deleting.

``library``     listing, name rules, resolving a name, which drives and snapshots hold an image, deleting
``upload``      a new image streamed into a locked temp file and published atomically
``checksums``   the SHA-256 kept beside each image; ``background`` computes missing ones
``tempfiles``   limen's hidden temp files and the sweep of those a killed process left
``sharing``     images readable by QEMU's user as they are (0644), as libvirt is told not to relabel them
"""

from limen.isos.library import (
    ISO_SUFFIXES,
    CdromSource,
    IsoImage,
    IsoInUse,
    check_new_name,
    delete_iso,
    holders_of,
    list_image,
    list_isos,
    name_problem,
    resolve_iso,
)
from limen.isos.sharing import share_library_images
from limen.isos.tempfiles import restore_parked_images, sweep_stale_temp_files
from limen.isos.upload import IsoUpload, check_room

__all__ = [
    "ISO_SUFFIXES",
    "CdromSource",
    "IsoImage",
    "IsoInUse",
    "IsoUpload",
    "check_new_name",
    "check_room",
    "delete_iso",
    "holders_of",
    "list_image",
    "list_isos",
    "name_problem",
    "resolve_iso",
    "restore_parked_images",
    "share_library_images",
    "sweep_stale_temp_files",
]
