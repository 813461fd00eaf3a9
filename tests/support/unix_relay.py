"""A Unix-socket relay in front of libvirtd's socket, which a test can cut, stall and restore.

It lets a test make libvirt vanish (connections dropped, socket gone), hang (connections accepted,
nothing relayed), answer late (new connections held, then relayed), and come back, while the real libvirtd
keeps serving everyone else.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

LIBVIRT_SOCKET = "/run/libvirt/libvirt-sock"


class UnixRelay:
    def __init__(self, path: Path, target: str = LIBVIRT_SOCKET) -> None:
        self.path = path
        self.target = target
        self.stalled = False
        self.holding = False  # new connections wait in `held` until release_held()
        self.held: list[socket.socket] = []
        self.relayed = 0  # connections relayed whose client has not closed its end
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.path}"

    def start(self) -> UnixRelay:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._track(client)
            if self.stalled:
                continue  # accepted, never answered: a hung daemon
            with self._lock:
                if self.holding:
                    self.held.append(client)
                    continue
            self._relay(client)

    def release_held(self) -> None:
        """The held connections are relayed, as every new one is from now on."""
        with self._lock:
            self.holding = False
            held, self.held = self.held, []
        for client in held:
            self._relay(client)

    def _relay(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.target)
        except OSError:
            client.close()
            return
        self._track(upstream)
        with self._lock:
            self.relayed += 1
        threading.Thread(target=self._pipe, args=(client, upstream, self._client_closed), daemon=True).start()
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _client_closed(self) -> None:
        with self._lock:
            self.relayed -= 1

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, ended: Callable[[], None] | None = None) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if ended is not None:
                ended()
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """libvirtd 'dies': the socket disappears and every relayed connection is dropped."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def stop(self) -> None:
        self.cut()
