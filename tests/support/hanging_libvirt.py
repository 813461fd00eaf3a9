"""A fake libvirtd socket that accepts connections and never answers: every libvirt call on it hangs.

``qemu+unix:///system?socket=<path>`` makes libvirt talk to it. Until :attr:`armed` is set it closes
each connection at once (so an app's start-up connect fails fast instead of hanging); once armed it
keeps them open in silence. Closing it closes every connection, which ends the hung libvirt calls
(and frees their worker threads) with an error.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType


class HangingLibvirt:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.armed = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept_loop, name="hanging-libvirt", daemon=True)

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.path}&no_tty=1"

    def __enter__(self) -> HangingLibvirt:
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self.armed:
                self._held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in self._held:
            conn.close()
        self._held.clear()
        self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


@contextlib.contextmanager
def hanging_libvirt() -> Iterator[HangingLibvirt]:
    """A :class:`HangingLibvirt` in a fresh short directory (unix socket paths are limited to ~100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="limen-") as short, HangingLibvirt(Path(short) / "libvirt.sock") as fake:
        yield fake
