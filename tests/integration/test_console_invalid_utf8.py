"""A console WebSocket text frame that is not UTF-8 closes the connection with 1007 (invalid frame payload
data, RFC 6455 §7.4.1), before the proxy stage and in it, against a running ``limen serve``.

The client is a raw socket that writes hand-made masked frames: a WebSocket library would refuse to send
such a frame at all.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.access import provision_admin_token
from tests.support.console import FakeDomain, driver_uri
from tests.support.databases import database_url_for
from tests.support.fake_vnc import BANNER
from tests.support.raw_ws import BINARY, CONTINUATION, TEXT, RawConsole, masked_frame
from tests.support.server import LimenProcess

# WebSocket framing; the database is read only at admission.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60), pytest.mark.same_on_any_database]

INVALID_UTF8 = b"caf\xc3(\xff\xfe"  # a broken two-byte sequence, then bytes UTF-8 never uses


class EchoVnc:
    """The RFB banner, then an echo of whatever the console sends; on threads, so one serves the module."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(BANNER)
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LimenProcess, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("invalid-utf8")
    vnc = EchoVnc()
    token = provision_admin_token(database_url_for(tmp / 'data'))
    server = LimenProcess({
        "LIMEN_LIBVIRT_URI": driver_uri(tmp, [FakeDomain("vm", vnc.port)]),
        "LIMEN_DATA_DIR": str(tmp / "data"), "LIMEN_LOG_DIR": str(tmp / "log"), "LIMEN_ISO_DIR": str(tmp),
    }, tmp / "serve.log").start()
    yield server, {"Authorization": f"Bearer {token}"}
    server.stop()
    vnc.sock.close()


async def test_invalid_utf8_before_the_proxy_stage_closes_with_1007(
    served: tuple[LimenProcess, dict[str, str]]
) -> None:
    server, headers = served
    console = await RawConsole.open(server.port, "/api/vms/vm/console", headers)
    try:
        await console.until(TEXT)  # the first status frame: the session runs
        console.send(masked_frame(TEXT, INVALID_UTF8))
        assert await console.close_code() == 1007
    finally:
        console.close()


@pytest.mark.parametrize("fragmented", [False, True])
async def test_invalid_utf8_in_the_proxy_stage_closes_with_1007(
    served: tuple[LimenProcess, dict[str, str]], fragmented: bool
) -> None:
    server, headers = served
    console = await RawConsole.open(server.port, "/api/vms/vm/console", headers)
    try:
        assert await console.until(BINARY) == BANNER  # the proxy stage (the splice) runs
        console.send(masked_frame(BINARY, b"ping"))
        assert await console.until(BINARY) == b"ping"  # the echo: bytes flow both ways
        if fragmented:  # a two-byte sequence begun in the first fragment and broken in the second
            console.send(masked_frame(TEXT, b"caf" + b"\xc3", fin=False))
            console.send(masked_frame(CONTINUATION, b"(", fin=True))
        else:
            console.send(masked_frame(TEXT, INVALID_UTF8))
        assert await console.close_code() == 1007
    finally:
        console.close()


async def test_valid_text_in_the_proxy_stage_is_ignored(served: tuple[LimenProcess, dict[str, str]]) -> None:
    """The control: well-formed text (even split inside a character) carries nothing for VNC, and the
    session goes on."""
    server, headers = served
    console = await RawConsole.open(server.port, "/api/vms/vm/console", headers)
    try:
        assert await console.until(BINARY) == BANNER
        console.send(masked_frame(TEXT, "café".encode()[:4], fin=False))
        console.send(masked_frame(CONTINUATION, "café".encode()[4:], fin=True))
        console.send(masked_frame(BINARY, b"still here"))
        assert await console.until(BINARY) == b"still here"
    finally:
        console.close()
