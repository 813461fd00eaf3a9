"""A GRUB image whose guest locks its CD tray, as an installer does while it reads its disc: for the tests of
MEDIA_LOCKED (tests/integration/test_vm_edit.py, tests/e2e/test_vm_details_more_ui.py)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# A GRUB image whose grub.cfg, through GRUB's port I/O commands, sends the ATAPI command PREVENT MEDIUM
# REMOVAL to the secondary IDE master (hdc, where limen puts CD-ROM drives): the guest locks its tray,
# as an installer does while it reads its disc. REQUEST SENSE first clears the drive's power-on
# "unit attention", which would make the drive refuse the lock.
TRAY_LOCKER_CFG = """\
insmod iorw
outb 0x376 0x02
outb 0x176 0xa0
outb 0x171 0x00
outb 0x174 0x00
outb 0x175 0x08
outb 0x177 0xa0
outw 0x170 0x0003
outw 0x170 0x0000
outw 0x170 0x0012
outw 0x170 0x0000
outw 0x170 0x0000
outw 0x170 0x0000
for i in 1 2 3 4 5 6 7 8 9; do inw -v sense 0x170; done
outb 0x176 0xa0
outb 0x171 0x00
outb 0x174 0x00
outb 0x175 0x08
outb 0x177 0xa0
outw 0x170 0x001e
outw 0x170 0x0000
outw 0x170 0x0001
outw 0x170 0x0000
outw 0x170 0x0000
outw 0x170 0x0000
set timeout=-1
"""


def build_tray_locker_iso(path: Path) -> Path:
    """Writes the tray-locking image to ``path`` with grub-mkrescue."""
    grub_mkrescue = shutil.which("grub-mkrescue")
    assert grub_mkrescue, "grub-mkrescue is missing: run `make install`"
    with tempfile.TemporaryDirectory() as tree:
        (Path(tree) / "boot" / "grub").mkdir(parents=True)
        (Path(tree) / "boot" / "grub" / "grub.cfg").write_text(TRAY_LOCKER_CFG)
        subprocess.run([grub_mkrescue, "-o", str(path), tree], check=True, capture_output=True, timeout=60)
    return path
