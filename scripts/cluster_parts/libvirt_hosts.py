"""A second, real libvirt host on this machine: libvirtd in its own mount namespace (scripts/extra-host.sh).

Its ``qemu+tcp://ADDRESS/system`` is independent of the machine's own libvirtd (qemu:///system), which it
never touches: its own /run/libvirt, /var/lib/libvirt, /etc/libvirt and logs on a temporary directory,
listening on a loopback address of its own, its VMs' VNC servers on that address and on a port range of
its own. :meth:`ExtraHost.stop` kills its VMs and then the daemon it started, by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "extra-host.sh"


class ExtraHost:
    def __init__(self, state_dir: Path, address: str, vnc_ports: tuple[int, int]) -> None:
        self.state_dir = state_dir
        self.address = address
        self.vnc_ports = vnc_ports
        self.pid: int | None = None

    @property
    def uri(self) -> str:
        return f"qemu+tcp://{self.address}/system"

    def start(self) -> ExtraHost:
        done = subprocess.run(
            [str(SCRIPT), "start", str(self.state_dir), self.address, str(self.vnc_ports[0]), str(self.vnc_ports[1])],
            capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"extra host did not start: {done.stderr.strip()}")
        self.pid = int(done.stdout.strip())
        return self

    def pause(self) -> None:
        """SIGSTOP of its libvirtd: it hangs (its VMs run on)."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.pid is None:
            return
        subprocess.run([str(SCRIPT), "stop", str(self.state_dir)], capture_output=True, timeout=30, check=False)
        self.pid = None
        shutil.rmtree(self.state_dir, ignore_errors=True)

