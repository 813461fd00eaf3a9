"""The server's own origin comes from its settings (LIMEN_PUBLIC_URL, else the listen address), never
from a request's Host header; limen answers only to its own host names, on loopback too (HOST_NOT_ALLOWED:
400 JSON over HTTP, an error frame and close 4010 on the console). Against a running ``limen serve``;
"beyond loopback" is a listen on 0.0.0.0 (the tests still connect over loopback).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.access import provision_admin_token, provision_user
from tests.support.console import FakeDomain, driver_uri
from tests.support.databases import database_url_for
from tests.support.net import free_port
from tests.support.raw_ws import CLOSE, TEXT, RawConsole
from tests.support.server import LimenProcess

pytestmark = pytest.mark.integration

PASSWORD = "alice-password-long"


def _serve(tmp: Path, *, listen: str, **env: str) -> tuple[LimenProcess, str]:
    token = provision_admin_token(database_url_for(tmp / 'data'))
    provision_user(database_url_for(tmp / 'data'), "alice", PASSWORD)
    server = LimenProcess({
        "LIMEN_LIBVIRT_URI": driver_uri(tmp, [FakeDomain("vm", free_port())]),
        "LIMEN_DATA_DIR": str(tmp / "data"), "LIMEN_LOG_DIR": str(tmp / "log"), "LIMEN_ISO_DIR": str(tmp), **env,
    }, tmp / "serve.log", listen=listen).start()
    return server, token


@pytest.fixture(scope="module")
def public(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LimenProcess, str]]:
    """Listens on 0.0.0.0 with LIMEN_PUBLIC_URL=https://limen.example:8443 (a TLS proxy's address)."""
    server, token = _serve(tmp_path_factory.mktemp("public"), listen="0.0.0.0",
                           LIMEN_PUBLIC_URL="https://limen.example:8443", LIMEN_ALLOWED_HOSTS="limen.lan")
    yield server, token
    server.stop()


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LimenProcess, str]]:
    """Listens on 127.0.0.1 without any host or origin setting, as the other tests' servers do."""
    server, token = _serve(tmp_path_factory.mktemp("loopback"), listen="127.0.0.1")
    yield server, token
    server.stop()


def _login(server: LimenProcess, *, host: str, origin: str | None) -> httpx.Response:
    headers = {"Host": host, "X-Request-ID": "host-check"}
    if origin is not None:
        headers["Origin"] = origin
    return httpx.post(f"{server.base_url}/api/login", json={"name": "alice", "password": PASSWORD},
                      headers=headers, timeout=10)


def test_beyond_loopback_an_unknown_host_is_refused(public: tuple[LimenProcess, str]) -> None:
    server, token = public
    for host in ("evil.example", f"rebound.evil.example:{server.port}", "limen.example.evil.example", ""):
        for path in ("/healthz", "/api/vms", "/", "/api/openapi.json"):
            refused = httpx.get(f"{server.base_url}{path}", timeout=10,
                                headers={"Host": host, "Authorization": f"Bearer {token}", "X-Request-ID": "r1"})
            assert refused.status_code == 400, (host, path, refused.text)
            body = refused.json()
            assert body["code"] == "HOST_NOT_ALLOWED" and body["request_id"] == "r1"
            assert {"error", "details", "message"} <= set(body)
    # Its own names pass: the public URL's host, an allowed host, and the machine's loopback names.
    for host in ("limen.example:8443", "LIMEN.LAN", f"127.0.0.1:{server.port}", f"localhost:{server.port}"):
        answer = httpx.get(f"{server.base_url}/api/vms", headers={"Host": host, "Authorization": f"Bearer {token}"},
                           timeout=10)
        assert answer.status_code == 200, (host, answer.text)


def test_the_own_origin_is_the_public_url(public: tuple[LimenProcess, str]) -> None:
    server, _ = public
    assert _login(server, host="limen.example:8443", origin="https://limen.example:8443").status_code == 200
    # An allowed Host does not make its origin the server's own when a public URL says what that is.
    for origin in (f"http://127.0.0.1:{server.port}", "http://limen.example:8443", "https://limen.lan:8443"):
        refused = _login(server, host="limen.example:8443", origin=origin)
        assert (refused.status_code, refused.json()["code"]) == (403, "ORIGIN_NOT_ALLOWED"), origin


def test_on_loopback_the_host_header_no_longer_makes_the_origin(loopback: tuple[LimenProcess, str]) -> None:
    """Before, a page at http://evil.example that DNS-rebinds to 127.0.0.1 sent Host and Origin alike and
    was taken for limen's own."""
    server, _ = loopback
    rebound = _login(server, host=f"evil.example:{server.port}", origin=f"http://evil.example:{server.port}")
    assert (rebound.status_code, rebound.json()["code"]) == (400, "HOST_NOT_ALLOWED")  # see below
    foreign = _login(server, host=f"localhost:{server.port}", origin=f"http://evil.example:{server.port}")
    assert (foreign.status_code, foreign.json()["code"]) == (403, "ORIGIN_NOT_ALLOWED")
    for own in (f"http://127.0.0.1:{server.port}", f"http://localhost:{server.port}"):
        assert _login(server, host=f"127.0.0.1:{server.port}", origin=own).status_code == 200, own
    # Scripts send no Origin.
    assert _login(server, host=f"localhost:{server.port}", origin=None).status_code == 200


def test_on_loopback_an_unknown_host_is_refused(loopback: tuple[LimenProcess, str]) -> None:
    """Only this machine connects, but its browser runs any page: a DNS-rebinding one sends its own name."""
    server, token = loopback
    for host in (f"rebind.evil.example:{server.port}", "anything.example"):
        for path in ("/metrics", "/readyz", "/api/vms"):
            refused = httpx.get(f"{server.base_url}{path}", timeout=10,
                                headers={"Host": host, "Authorization": f"Bearer {token}"})
            assert (refused.status_code, refused.json()["code"]) == (400, "HOST_NOT_ALLOWED"), (host, path)
        assert _login(server, host=host, origin=None).json()["code"] == "HOST_NOT_ALLOWED"
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}", "127.0.0.2"):
        answer = httpx.get(f"{server.base_url}/metrics", headers={"Host": host}, timeout=10)
        assert answer.status_code == 200, (host, answer.text)


@pytest.mark.parametrize("listen", ["public", "loopback"])
async def test_the_console_refuses_an_unknown_host_with_a_frame_and_4010(listen: str,
                                                                          request: pytest.FixtureRequest) -> None:
    server, token = request.getfixturevalue(listen)
    auth = {"Authorization": f"Bearer {token}"}
    console = await RawConsole.open(server.port, "/api/vms/vm/console", auth, host="evil.example")
    try:
        status = json.loads(await console.until(TEXT))
        assert status["type"] == "status" and status["stage"] == "check_vm"
        error = json.loads(await console.until(TEXT))
        assert error["type"] == "error" and error["code"] == "HOST_NOT_ALLOWED"
        payload = await console.until(CLOSE)
        assert (int.from_bytes(payload[:2], "big"), payload[2:]) == (4010, b"HOST_NOT_ALLOWED")
    finally:
        console.close()
    # Its own name gets past the host check (to the next verdict: this VM's VNC port has no server).
    own = "limen.example:8443" if listen == "public" else f"localhost:{server.port}"
    console = await RawConsole.open(server.port, "/api/vms/vm/console", auth, host=own)
    try:
        await console.until(TEXT)
        assert json.loads(await console.until(TEXT)).get("code") != "HOST_NOT_ALLOWED"
    finally:
        console.close()
