"""Run as a script by tests/integration/test_hung_host_returns.py, in a process of its own (a crash in
libvirt must not take pytest with it): a second libvirt host (:class:`ExtraHost`, started from this process,
as a test harness or an operator's shell would) with a running VM, and limen's connection to it asked what
the stats sampler and the VM list ask, every second, while the host's libvirtd is stopped for PAUSE seconds
and then answers again. Prints one line a round: the seconds since the start and each call's outcome (``ok``
or the error code). Arguments: STATE_DIR ADDRESS FIRST_PORT PAUSE."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from limen.errors import LimenError
from limen.hypervisor.connection import LibvirtConnection
from limen.hypervisor.events import ensure_event_thread
from limen.hypervisor.stats import read_running_vms
from tests.support.extra_host import ExtraHost

ROUNDS_BEFORE = 5  # seconds of calls before the host hangs
ROUNDS_AFTER = 10  # and once it answers again
VM = "limen-test-returning-host"


async def _outcome(call: asyncio.Future[object]) -> str:
    try:
        await call
    except LimenError as exc:
        return exc.code.name
    return "ok"


async def ask_through_a_hang(host: ExtraHost, pause: float) -> None:
    ensure_event_thread()  # limen serve's libvirt event loop
    connection = LibvirtConnection(host.uri, 2.0, host="returning")
    began = time.monotonic()
    stopped = resumed = False
    while time.monotonic() - began < ROUNDS_BEFORE + pause + ROUNDS_AFTER:
        now = time.monotonic() - began
        if now > ROUNDS_BEFORE and not stopped:
            host.pause()
            stopped = True
        if now > ROUNDS_BEFORE + pause and not resumed:
            host.resume()
            resumed = True
        outcomes = await asyncio.gather(
            _outcome(asyncio.ensure_future(connection.call("stats", read_running_vms))),
            _outcome(asyncio.ensure_future(connection.call("list", lambda conn: conn.listAllDomains(0)))))
        print(f"{now:.1f}", *outcomes, flush=True)
        await asyncio.sleep(1)
    await connection.close()


def main(state_dir: Path, address: str, first_port: int, pause: float) -> None:
    host = ExtraHost(state_dir, address, (first_port, first_port + 49)).start()
    domain = state_dir / "vm.xml"
    domain.write_text(f"<domain type='qemu'><name>{VM}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                      "<os><type arch='x86_64'>hvm</type></os></domain>")
    try:
        subprocess.run(["virsh", "-c", host.uri, "create", str(domain)], check=True, capture_output=True)
        asyncio.run(ask_through_a_hang(host, pause))
    finally:
        host.resume()
        subprocess.run(["virsh", "-c", host.uri, "destroy", VM], capture_output=True)
        host.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
