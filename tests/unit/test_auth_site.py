"""The server's own origins and the host names it answers to come from its settings, never a request."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from starlette.requests import HTTPConnection
from starlette.types import Message, Receive, Scope, Send

from limen.api.hosts import HostCheck
from limen.auth.site import Site, host_of, interface_addresses, listen_names
from limen.errors import ErrorCode, LimenError
from limen.settings import Settings, SettingsError, load_settings
from tests.support.access import make_access

ADDRESSES = ["127.0.0.1", "192.0.2.10", "2001:db8::10"]


def site(**settings: object) -> Site:
    return Site.of(load_settings(None, **settings), addresses=lambda: ADDRESSES, names=lambda: ["box.lan"])


def refused(check: Callable[[], None]) -> ErrorCode:
    with pytest.raises(LimenError) as caught:
        check()
    return caught.value.code


def test_a_loopback_listen_is_its_address_and_localhost() -> None:
    own = site(host="127.0.0.1", port=8080)
    assert own.origins == {"http://127.0.0.1:8080", "http://localhost:8080"}
    assert site(host="::1", port=9000).origins == {"http://[::1]:9000", "http://localhost:9000"}
    assert site(host="localhost", port=80).origins == {"http://localhost", "http://127.0.0.1"}


@pytest.mark.parametrize("listen", ["127.0.0.1", "::1", "localhost"])
@pytest.mark.parametrize("foreign", ["evil.example", "rebound.evil.example:8080", "localhost.evil.example",
                                     "192.0.2.10", "", None])
def test_a_loopback_listen_refuses_a_foreign_host(listen: str, foreign: str | None) -> None:
    """Only this machine connects there, but its browser runs any page: one whose name DNS re-points at
    127.0.0.1 (DNS rebinding) sends its own name as the Host."""
    own = site(host=listen, port=8080)
    assert refused(lambda: own.check_host(foreign)) is ErrorCode.HOST_NOT_ALLOWED


@pytest.mark.parametrize("listen", ["127.0.0.1", "::1", "localhost"])
def test_a_loopback_listen_answers_to_the_loopback_names(listen: str) -> None:
    """localhost, and any loopback IP literal (a page there is limen's own), with or without a port."""
    own = site(host=listen, port=8080)
    for name in ("localhost", "LOCALHOST:8080", "127.0.0.1", "127.0.0.1:8080", "[::1]:8080", "[::1]",
                 "127.0.0.2:8080"):
        own.check_host(name)


def test_a_loopback_listen_answers_to_the_public_url_and_the_allowed_hosts() -> None:
    """limen on loopback behind nginx or HAProxy gets the public name in the Host."""
    own = site(host="127.0.0.1", public_url="https://limen.example:8443", allowed_hosts="limen.lan")
    own.check_host("limen.example:8443")
    own.check_host("limen.lan")
    own.check_host("127.0.0.1:8080")
    assert refused(lambda: own.check_host("evil.example")) is ErrorCode.HOST_NOT_ALLOWED
    anything = site(host="127.0.0.1", allowed_hosts="*")  # the operator's explicit opt-out
    assert anything.hosts is None
    anything.check_host("evil.example")


def test_the_public_url_is_the_origin_and_a_host() -> None:
    own = site(host="0.0.0.0", port=8080, public_url="HTTPS://Limen.Example:443/")
    assert own.origins == {"https://limen.example"}
    assert own.hosts is not None and "limen.example" in own.hosts
    own.check_host("limen.example")
    own.check_host("LIMEN.example.:8443")  # case, a trailing dot and the port do not matter
    assert refused(lambda: own.check_host("evil.example")) is ErrorCode.HOST_NOT_ALLOWED
    assert refused(lambda: own.check_host(None)) is ErrorCode.HOST_NOT_ALLOWED
    assert refused(lambda: own.check_host("limen.example.evil.example")) is ErrorCode.HOST_NOT_ALLOWED


def test_a_wildcard_listen_answers_to_the_machines_names_and_addresses() -> None:
    own = site(host="0.0.0.0", port=9000)
    assert own.hosts == frozenset({"localhost", "127.0.0.1", "::1", "box.lan", "192.0.2.10", "2001:db8::10"})
    assert {"http://192.0.2.10:9000", "http://[2001:db8::10]:9000", "http://box.lan:9000"} <= own.origins
    own.check_host("[2001:db8::10]:9000")
    own.check_host("192.0.2.10")
    assert refused(lambda: own.check_host("rebound.evil.example:9000")) is ErrorCode.HOST_NOT_ALLOWED


@pytest.mark.parametrize(("listen", "warned"), [("127.0.0.1", False), ("0.0.0.0", True)])
async def test_only_a_listen_beyond_loopback_warns_without_a_public_url(
        listen: str, warned: bool, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture) -> None:
    """On loopback the Host is checked too, but the listen address's names are all a browser there uses."""
    caplog.set_level(logging.WARNING, logger="limen")
    access = make_access(make_settings(host=listen))
    await access.start()
    await access.close()
    assert any(getattr(record, "event", None) == "public_url_missing" for record in caplog.records) is warned


def test_a_specific_address_is_itself_and_allowed_hosts_add_to_it() -> None:
    own = site(host="192.0.2.10", port=8443, allowed_hosts="limen.lan")
    assert own.hosts == frozenset({"192.0.2.10", "limen.lan"})
    assert own.origins == {"http://192.0.2.10:8443", "http://limen.lan:8443"}
    assert refused(lambda: own.check_host("localhost")) is ErrorCode.HOST_NOT_ALLOWED  # not reachable so
    assert site(host="192.0.2.10", allowed_hosts="*").hosts is None  # the operator's explicit opt-out


def test_host_headers_are_read_as_browsers_write_them() -> None:
    assert host_of("Example.ORG:8080") == "example.org"
    assert host_of("[::1]:8080") == "::1"
    assert host_of("[::1]") == "::1"
    assert host_of("::1") == "::1"
    assert host_of("127.000.000.001") == "127.000.000.001"  # not an address: it stays a (refused) name


def test_listen_names_of_this_machine_include_its_loopback() -> None:
    assert {"localhost", "127.0.0.1"} <= set(listen_names("0.0.0.0"))
    assert "127.0.0.1" in interface_addresses()


@pytest.mark.parametrize("value", ["limen.example", "ftp://limen.example", "https://limen.example/app",
                                   "https://limen.example?x=1", "https://user:pw@limen.example", "https://:80"])
def test_a_public_url_must_be_an_origin(value: str) -> None:
    with pytest.raises(SettingsError, match="LIMEN_PUBLIC_URL"):
        load_settings(None, public_url=value)


@pytest.mark.parametrize("value", ["https://limen.example", "limen.example:8080", "a b", "limen/x"])
def test_allowed_hosts_are_names_or_addresses(value: str) -> None:
    with pytest.raises(SettingsError, match="LIMEN_ALLOWED_HOSTS"):
        load_settings(None, allowed_hosts=value)


def test_host_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMEN_PUBLIC_URL", "https://Limen.Example:8443")
    monkeypatch.setenv("LIMEN_ALLOWED_HOSTS", "limen.lan, 192.0.2.10,[2001:db8::1]")
    settings: Settings = load_settings(None)
    assert settings.public_url == "https://limen.example:8443"
    assert settings.allowed_hosts == ("limen.lan", "192.0.2.10", "[2001:db8::1]")


async def test_a_request_with_two_host_headers_is_refused_over_http_and_at_the_console(
    make_settings: Callable[..., Settings],
) -> None:
    """HTTP/1.1 asks a server to refuse it (400): limen read the first line, and a proxy in front of it might
    route by the other ("127.0.0.1:8080" then "evil.example" passed)."""
    own = site(host="127.0.0.1", port=8080)
    own.check_host_headers(["127.0.0.1:8080"])
    for lines in (["127.0.0.1:8080", "evil.example"], ["127.0.0.1:8080", "127.0.0.1:8080"], ["evil.example"], []):
        assert refused(lambda lines=lines: own.check_host_headers(lines)) is ErrorCode.HOST_NOT_ALLOWED, lines
    site(host="127.0.0.1", allowed_hosts="*").check_host_headers(["a.example", "b.example"])  # the opt-out

    answered: list[int] = []

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        answered.append(200)

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    for lines in ([b"127.0.0.1:8080", b"evil.example"], [b"127.0.0.1:8080"]):
        scope: Scope = {"type": "http", "method": "GET", "path": "/api/vms", "query_string": b"",
                        "headers": [(b"host", line) for line in lines]}
        await HostCheck(application, own)(scope, receive, send)
    assert answered == [400, 200]
    console = {"type": "websocket", "path": "/api/vms/web/console", "query_string": b"",
               "headers": [(b"host", b"127.0.0.1:8080"), (b"host", b"evil.example")]}
    access = make_access(make_settings(host="127.0.0.1", port=8080))
    assert refused(lambda: access.check_host(HTTPConnection(console))) is ErrorCode.HOST_NOT_ALLOWED
