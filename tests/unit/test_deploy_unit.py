"""deploy/limen.service makes the directories as limen keeps them: a looser mode was tightened (and logged
as a warning) at every start, and a 0700 data dir kept QEMU (libvirt-qemu) from the disks and ISOs in it."""

from __future__ import annotations

import re
from pathlib import Path

from limen.private_files import PRIVATE_DIR_MODE, TRAVERSABLE_DIR_MODE

UNIT = (Path(__file__).resolve().parents[2] / "deploy" / "limen.service").read_text()


def test_the_units_directories_are_made_as_limen_keeps_them() -> None:
    modes = {key: int(mode, 8) for key, mode in re.findall(r"^(\w+DirectoryMode)=(\d+)$", UNIT, re.M)}
    # The state dir holds the pool and the ISO library QEMU reaches; the logs are limen's alone.
    assert modes == {"StateDirectoryMode": TRAVERSABLE_DIR_MODE, "LogsDirectoryMode": PRIVATE_DIR_MODE}, modes
    assert re.search(r"^StateDirectory=limen limen/isos$", UNIT, re.M)
