"""Whom libvirt runs QEMU as, and the first directory that keeps it from a VM's disk or ISO: with a 0700
/var/lib/limen, QEMU as libvirt-qemu could open no disk of the pool and no ISO of the library in it."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from limen.qemu_access import ProcessOwner, first_blocking, qemu_owner

QEMU = ProcessOwner(uid=64055, gids=frozenset({64055}))
LIMEN, ROOT = 998, 0

CAPABILITIES = """<capabilities><host>
  <secmodel><model>apparmor</model><doi>0</doi></secmodel>
  <secmodel><model>dac</model><doi>0</doi>
    <baselabel type='kvm'>+64055:+64055</baselabel><baselabel type='qemu'>+64056:+64057</baselabel>
  </secmodel>
</host></capabilities>"""


def test_libvirts_dac_label_names_qemus_user_for_the_virt_type_in_use() -> None:
    kvm, tcg = qemu_owner(CAPABILITIES, "kvm"), qemu_owner(CAPABILITIES, "qemu")
    assert kvm is not None and kvm.uid == 64055 and 64055 in kvm.gids
    assert tcg is not None and tcg.uid == 64056 and 64057 in tcg.gids
    # The test driver (and a libvirt without DAC) says nothing: nothing is judged.
    assert qemu_owner("<capabilities><host><secmodel><model>testSecurity</model></secmodel></host>"
                      "</capabilities>", "kvm") is None


def directories(modes: dict[str, tuple[int, int, int]]) -> dict[Path, os.stat_result]:
    """``path -> (mode, uid, gid)`` as ``stat`` would give them."""
    return {Path(path): os.stat_result((stat.S_IFDIR | mode, 0, 0, 0, uid, gid, 0, 0, 0, 0))
            for path, (mode, uid, gid) in modes.items()}


def reader(tree: dict[Path, os.stat_result]) -> Callable[[Path], os.stat_result]:
    def read(path: Path) -> os.stat_result:
        if path not in tree:
            raise FileNotFoundError(path)
        return tree[path]
    return read


PACKAGED = {"/": (0o755, ROOT, ROOT), "/var": (0o755, ROOT, ROOT), "/var/lib": (0o755, ROOT, ROOT),
            "/var/lib/limen/pool": (0o711, ROOT, ROOT), "/var/lib/limen/isos": (0o711, LIMEN, LIMEN)}


@pytest.mark.parametrize(("data_dir_mode", "blocked"), [
    (0o700, "/var/lib/limen"),  # the install before: QEMU stops at the data dir
    (0o711, None),
])
def test_the_first_directory_qemu_cannot_pass_is_named(data_dir_mode: int, blocked: str | None) -> None:
    tree = directories({**PACKAGED, "/var/lib/limen": (data_dir_mode, LIMEN, LIMEN)})
    for target in ("/var/lib/limen/pool", "/var/lib/limen/isos"):
        assert first_blocking(Path(target), QEMU, reader(tree)) == (Path(blocked) if blocked else None)


def test_the_iso_library_itself_and_group_bits_count() -> None:
    tree = directories({**PACKAGED, "/var/lib/limen": (0o711, LIMEN, LIMEN),
                        "/var/lib/limen/isos": (0o700, LIMEN, LIMEN)})
    assert first_blocking(Path("/var/lib/limen/isos"), QEMU, reader(tree)) == Path("/var/lib/limen/isos")
    # A group QEMU's user is in lets it pass where other may not.
    tree = directories({**PACKAGED, "/var/lib/limen": (0o710, LIMEN, 64055)})
    assert first_blocking(Path("/var/lib/limen/pool"), QEMU, reader(tree)) is None
    # Root passes everything; a pool not made yet is libvirt's to make.
    assert first_blocking(Path("/var/lib/limen/isos"), ProcessOwner(0, frozenset({0})), reader(tree)) is None
    assert first_blocking(Path("/var/lib/limen/pool/new"), QEMU, reader(tree)) is None
