"""The server's own origins and the host names it answers to come from its settings, never a request."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from limen.auth.site import Site, host_of, interface_addresses, listen_names
from limen.errors import ErrorCode, LimenError
from limen.settings import Settings, SettingsError, load_settings

ADDRESSES = ["127.0.0.1", "192.0.2.10", "2001:db8::10"]


def site(**settings: object) -> Site:
    return Site.of(load_settings(None, **settings), addresses=lambda: ADDRESSES, names=lambda: ["box.lan"])


def refused(check: Callable[[], None]) -> ErrorCode:
    with pytest.raises(LimenError) as caught:
        check()
    return caught.value.code


def test_a_loopback_listen_is_its_address_and_localhost_and_checks_no_host() -> None:
    own = site(host="127.0.0.1", port=8080)
    assert own.origins == {"http://127.0.0.1:8080", "http://localhost:8080"}
    assert own.hosts is None
    own.check_host("evil.example")  # nothing beyond this machine can connect
    assert site(host="::1", port=9000).origins == {"http://[::1]:9000", "http://localhost:9000"}
    assert site(host="localhost", port=80).origins == {"http://localhost", "http://127.0.0.1"}


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
