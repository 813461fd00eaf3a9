"""``limen doctor --server URL`` when URL is not limen: another service's page or JSON, nesting deeper than
Python's json reads, text that is not UTF-8, something that speaks no HTTP, or no URL at all. Each is a failed
check that says so and tells the reader to correct --server, never a traceback (a JSON list or deep nesting
ended the doctor with a TypeError's or RecursionError's, after the checks before it had printed)."""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest
from websockets.asyncio.server import ServerConnection, serve

from limen.doctor import (
    START_SERVER_FIX,
    CheckFailed,
    Context,
    _console_errors,
    _request_ticket,
    check_console_websocket,
)
from limen.logs import LOG_FILE_NAME
from limen.settings import Settings

UUID = "0b7c6a2e-5a41-4f0e-9a55-111111111111"

DEEP = b"[" * 100_000 + b"]" * 100_000


class _Answers(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, bytes]]] = {
        "/page": (200, b"<html>another service</html>"), "/list": (200, b"[1, 2]"), "/deep": (200, DEEP),
        "/not-utf8": (200, b'{"ticket": "\xff"}'), "/number": (200, b'{"ticket": 5}'), "/empty": (200, b"{}"),
        "/refused-list": (403, b"[1]"), "/refused-deep": (403, DEEP), "/refused-page": (500, b"<html>oops</html>"),
        "/limen": (200, b'{"ticket": "t-1", "expires_in": 30}'),
    }

    def do_POST(self) -> None:
        if self.path.startswith("/refused-broken/"):  # a chunked body that is not chunks: reading it raises
            self.wfile.write(b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            self.close_connection = True
            return
        code, body = self.answers[self.path.split("/api/")[0]]
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    # socketserver's, not http.server's: that one looks its own name up in the DNS when it binds (0.75 s here).
    httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def failure(url: str) -> CheckFailed:
    with pytest.raises(CheckFailed) as failed:
        _request_ticket(url, UUID, "token", timeout=10)
    return failed.value


def test_limens_answer_gives_its_ticket(server: str) -> None:
    assert _request_ticket(f"{server}/limen", UUID, "token", timeout=10) == "t-1"


@pytest.mark.parametrize("path", ["/page", "/list", "/deep", "/not-utf8", "/number", "/empty"])
def test_an_answer_without_a_ticket_says_the_server_is_not_limen(server: str, path: str) -> None:
    failed = failure(f"{server}{path}")
    assert "answered without a console ticket" in str(failed.detail)
    assert "--server with limen's own URL" in str(failed.fix)


@pytest.mark.parametrize(("path", "status"), [("/refused-list", 403), ("/refused-deep", 403),
                                              ("/refused-page", 500), ("/refused-broken", 500)])
def test_a_refusal_that_is_no_limen_error_says_its_http_status(server: str, path: str, status: int) -> None:
    assert f"HTTP {status}" in str(failure(f"{server}{path}").detail)


def test_something_that_speaks_no_http_or_no_url_says_to_correct_the_url() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)

        def answer_as_ssh() -> None:
            connection, _ = other.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

        threading.Thread(target=answer_as_ssh, daemon=True).start()
        failed = failure(f"http://127.0.0.1:{other.getsockname()[1]}")
    assert "BadStatusLine" in str(failed.detail) and "--server with limen's own URL" in str(failed.fix)
    # A port bound and never listened on refuses connections, and no other program can take it meanwhile (a
    # port closed before the connection could have been).
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        # Without a scheme "localhost:8080" is a URL of scheme "localhost", which urllib cannot open: no server
        # to start
        for url in ("limen.lan", "http://exa mple", f"localhost:{port}", f"127.0.0.1:{port}"):
            assert "--server with limen's own URL" in str(failure(url).fix), url
        assert failure(f"http://127.0.0.1:{port}").fix is START_SERVER_FIX  # nothing listens: start the server


@pytest.mark.parametrize("frame", ["hello", "[1, 2]", "[" * 5000 + "]" * 5000])
async def test_a_websocket_server_that_is_not_limens_console_says_so(
    frame: str, make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    async def say_something_else(connection: ServerConnection) -> None:
        await connection.send(frame)
        await connection.wait_closed()

    async with serve(say_something_else, "127.0.0.1", 0) as other:
        port = other.sockets[0].getsockname()[1]
        context = Context(settings=make_settings(log_dir=tmp_path), hypervisor=cast(Any, None), vm_id="web",
                          server_url=f"http://127.0.0.1:{port}", vm=cast(Any, SimpleNamespace(uuid=UUID)))
        with pytest.raises(CheckFailed) as failed:
            await check_console_websocket(context)
    assert "a message limen's console does not send" in str(failed.value.detail)
    assert "--server with limen's own URL" in str(failed.value.fix)


async def test_the_console_check_without_a_token_says_to_correct_a_url_without_its_scheme(
    make_settings: Callable[..., Settings], tmp_path: Path,
) -> None:
    # Without a token no ticket is asked for first: the WebSocket's own failure said to start the server.
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        for url, fix in ((f"localhost:{port}", "--server with limen's own URL"),
                         (f"http://127.0.0.1:{port}", str(START_SERVER_FIX))):
            context = Context(settings=make_settings(log_dir=tmp_path), hypervisor=cast(Any, None), vm_id="web",
                              server_url=url, vm=cast(Any, SimpleNamespace(uuid=UUID)))
            with pytest.raises(CheckFailed) as failed:
                await check_console_websocket(context)
            assert fix in str(failed.value.fix), url


def test_other_programs_lines_in_the_log_directory_are_skipped(tmp_path: Path) -> None:
    ours = {"event": "console_error", "code": "VNC_CONNECT_FAILED", "vm_uuid": UUID}
    (tmp_path / LOG_FILE_NAME).write_text("\n".join([
        '["code", 1]', '"code"', "[" * 5000 + '"code"' + "]" * 5000, '{"code": "x"', json.dumps(ours)]) + "\n")
    vm = cast(Any, SimpleNamespace(uuid=UUID, name="web"))
    assert _console_errors(tmp_path, vm) == [ours]
