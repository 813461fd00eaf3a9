"""Serial console helpers: a demo ISO whose GRUB talks on the serial port, URLs, and reading the guest's output.

The installed demo ISO (``make install``) mirrors GRUB to the serial port since the serial console came;
one built before does not. :func:`serial_demo_iso_dir` then builds the same ISO (from
``scripts/demo-iso/grub.cfg``) once into a directory of its own that QEMU may read, and the tests create
their VMs from there; the shared ISO directory is left alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.conftest import DEMO_ISO, ISO_DIR

GRUB_CFG = Path(__file__).resolve().parents[2] / "scripts" / "demo-iso" / "grub.cfg"
SERIAL_MARK = b"terminal_output console serial"
BUILT_ISO_DIR = Path("/var/lib/limen/test-isos-serial")


def serial_demo_iso_dir() -> Path:
    """A directory holding ``limen-grub-demo.iso`` with GRUB on the serial port."""
    installed = ISO_DIR / DEMO_ISO
    if installed.is_file() and SERIAL_MARK in installed.read_bytes():
        return ISO_DIR
    built = BUILT_ISO_DIR / DEMO_ISO
    wanted = GRUB_CFG.read_bytes()
    if built.is_file() and wanted in built.read_bytes():
        return BUILT_ISO_DIR
    BUILT_ISO_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tree:
        (Path(tree) / "boot" / "grub").mkdir(parents=True)
        (Path(tree) / "boot" / "grub" / "grub.cfg").write_bytes(wanted)
        partial = BUILT_ISO_DIR / f".{DEMO_ISO}.{os.getpid()}"
        subprocess.run(["grub-mkrescue", "-o", str(partial), tree], check=True, capture_output=True, timeout=120)
        partial.chmod(0o644)
        partial.replace(built)
    return BUILT_ISO_DIR


def serial_url(console_url: str) -> str:
    """The serial console's URL from a ConsoleServer's console URL (``…/console`` → ``…/serial``)."""
    base, _, query = console_url.partition("?")
    return base.removesuffix("/console") + "/serial" + (f"?{query}" if query else "")


class SerialReader:
    """Collects one serial session's frames: JSON text frames apart, the guest's output as one buffer."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.texts: list[dict[str, Any]] = []
        self.output = bytearray()

    @property
    def statuses(self) -> list[str]:
        return [frame["message"] for frame in self.texts if frame.get("type") == "status"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [frame for frame in self.texts if frame.get("type") == "error"]

    async def next(self) -> None:
        message = await self.ws.recv()
        if isinstance(message, str):
            self.texts.append(json.loads(message))
        else:
            self.output += message

    async def until_output(self, wanted: bytes, timeout: float, *, after: int = 0) -> None:
        async with asyncio.timeout(timeout):
            while wanted not in self.output[after:]:
                await self.next()

    async def until_status(self, message: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while message not in self.statuses:
                await self.next()

    async def until_closed(self, timeout: float) -> tuple[int | None, str]:
        from websockets.exceptions import ConnectionClosed

        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self.next()
            except ConnectionClosed:
                pass
        return self.ws.close_code, self.ws.close_reason or ""
