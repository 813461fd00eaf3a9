"""deploy/limen.service makes the directories as limen keeps them: a looser mode was tightened (and logged
as a warning) at every start."""

from __future__ import annotations

import re
from pathlib import Path

from limen.private_files import PRIVATE_DIR_MODE

UNIT = (Path(__file__).resolve().parents[2] / "deploy" / "limen.service").read_text()


def test_the_units_directories_are_made_owner_only_as_limen_keeps_them() -> None:
    modes = dict(re.findall(r"^(\w+DirectoryMode)=(\d+)$", UNIT, re.M))
    assert modes and all(int(mode, 8) == PRIVATE_DIR_MODE for mode in modes.values()), modes
