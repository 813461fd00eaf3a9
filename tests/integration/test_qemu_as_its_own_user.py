"""A packaged install on a stock Debian host, where libvirt runs QEMU as ``libvirt-qemu``, not root (this
machine's own libvirtd runs it as root: scripts/setup-host.sh). With /var/lib/limen and its ISO library
0700, as limen and its unit made them, QEMU could pass to no disk of the pool and no ISO of the library
under them, and no VM started ("Cannot access storage file ... Permission denied").

A second libvirtd runs in a mount namespace of its own (its own /run/libvirt, /var/lib/libvirt, /etc/libvirt
and /var/log/libvirt; /var/lib/limen a directory of the test's), with ``user = "libvirt-qemu"``. An install
from before: `limen doctor` names the directory that stops QEMU; the first `limen serve` of this version
opens the data dir and the library to passing (0711) and the library's ISO to reading (0644); then the check
passes and a VM as limen defines it, with a pool disk and a library ISO, starts, its QEMU running as
libvirt-qemu, and boots from the ISO; after it stops, the ISO is still limen's user's and 0644 (libvirt
was told not to relabel it). About 80-100 s (libvirt probes QEMU, as libvirt-qemu).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEMO_ISO, ISO_DIR
from tests.support.extra_host import pick_address

# The script has 300 s (libvirt probes QEMU twice, as libvirt-qemu; slow on a busy host).
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database,  # file modes: no database in it
              pytest.mark.timeout(330)]
SCRIPT = Path(__file__).resolve().parents[1] / "support" / "qemu_as_its_own_user.sh"
LIMEN = str(Path(sys.executable).parent / "limen")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_qemu_as_libvirt_qemu_reaches_the_pool_and_the_iso_library_after_an_upgrade(tmp_path: Path) -> None:
    if os.getuid() != 0 or not all(map(shutil.which, ("unshare", "libvirtd", "virsh", "qemu-img"))):
        pytest.skip("needs root, unshare and libvirtd to run a libvirtd of its own")
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        pytest.skip("no libvirt-qemu user")
    iso = tmp_path / "demo.iso"
    shutil.copyfile(ISO_DIR / DEMO_ISO, iso)
    vnc_min, vnc_max = pick_address()[1]
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", str(SCRIPT), str(tmp_path / "work"),
         str(tmp_path / "cache"), str(iso), LIMEN, str(_free_port()), str(vnc_min), str(vnc_max)],
        capture_output=True, text=True, timeout=300, check=False)
    said = [line for line in done.stdout.splitlines() if ": " in line]
    assert [line.split(": ", 1)[0] for line in said] == [
        "doctor", "modes", "doctor", "vm", "vnc", "boot", "iso after"], (done.stdout, done.stderr)
    before, modes, after, vm, vnc, boot, iso_after = (line.split(": ", 1)[1] for line in said)
    assert before.startswith("fail") and "cannot pass through /var/lib/limen to /var/lib/limen/pool" in before
    # The ISO an older limen uploaded 0600 is opened to reading, as QEMU reads it without relabelling.
    assert modes.split() == ["/var/lib/limen", "711", "/var/lib/limen/isos", "711", "/var/lib/limen/isos/demo.iso",
                             "644"]
    assert after.startswith("pass") and "runs as libvirt-qemu" in after
    assert vm == "started as libvirt-qemu", vm
    # Its display is in a range of its own, never on the real libvirtd's 5900+ (vnc://127.0.0.1:N, port 5900+N).
    assert vnc_min <= 5900 + int(vnc.rsplit(":", 1)[1]) <= vnc_max, vnc
    assert int(boot.split()[0]) > 0, boot
    # libvirt gave it to libvirt-qemu (0600) when the VM started and, as shared read-only media, never back:
    # limen's own user could no longer read it. Not relabelled, it stays limen's (here root's) and 0644.
    assert iso_after == f"{pwd.getpwuid(os.getuid()).pw_name} 644", iso_after
