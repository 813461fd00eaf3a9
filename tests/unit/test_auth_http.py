"""Origin checks, the client's address behind trusted proxies, HTTPS detection, and name rules."""

from __future__ import annotations

import pytest

from limen.auth.http import (
    check_origin,
    client_address,
    is_https,
    is_local_client,
    normalize_origin,
    parse_networks,
)
from limen.auth.names import clean_name
from limen.errors import ErrorCode, LimenError, ValidationFailed

PROXIES = parse_networks(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.7", None, "203.0.113.7"),
        ("203.0.113.7", "1.2.3.4", "203.0.113.7"),  # not a trusted proxy: header ignored
        ("10.0.0.2", "198.51.100.9", "198.51.100.9"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.9", "198.51.100.9"),  # the client wrote the left part
        ("10.0.0.2", "198.51.100.9, 10.0.0.5", "198.51.100.9"),  # skip trusted hops
        ("10.0.0.2", "10.0.0.9, 10.0.0.5", "10.0.0.9"),
        ("10.0.0.2", "garbage, 10.0.0.5", "10.0.0.5"),
        ("10.0.0.2", "[2001:db8::1]:4711", "2001:db8::1"),
        ("10.0.0.2", "192.0.2.1:8080", "192.0.2.1"),
        ("::1", "2001:db8::2", "2001:db8::2"),
        (None, "1.2.3.4", "unknown"),
    ],
)
def test_client_address(peer: str | None, forwarded: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_no_trusted_proxies_means_the_header_is_never_believed() -> None:
    assert client_address("127.0.0.1", "1.2.3.4", ()) == "127.0.0.1"


LOOPBACK_PROXY = parse_networks(["127.0.0.1/32"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "forwarded", "trusted", "expected"),
    [
        ("127.0.0.1", None, None, (), True),
        ("::1", None, None, (), True),
        ("127.0.0.5", None, None, (), True),
        ("192.0.2.10", None, None, (), False),
        (None, None, None, (), False),
        # A proxy on this machine (nginx, HAProxy) connects from loopback for every client it carries.
        ("127.0.0.1", "203.0.113.9", None, (), False),  # not trusted: who it carries is unknown
        ("127.0.0.1", "203.0.113.9", None, LOOPBACK_PROXY, False),
        ("127.0.0.1", "127.0.0.1", None, LOOPBACK_PROXY, True),  # a client on this machine, through it
        ("127.0.0.1", "127.0.0.1", None, (), False),
        ("127.0.0.1", "127.0.0.1, 203.0.113.9", None, LOOPBACK_PROXY, False),  # the left part is the client's
        ("127.0.0.1", None, "for=203.0.113.9", LOOPBACK_PROXY, False),  # RFC 7239's header is not read
        ("192.0.2.10", "127.0.0.1", None, LOOPBACK_PROXY, False),  # a remote peer cannot say it is local
    ],
)
def test_a_local_client_is_on_loopback_and_not_forwarded_from_elsewhere(
    peer: str | None, forwarded_for: str | None, forwarded: str | None, trusted: tuple[object, ...],
    expected: bool,
) -> None:
    assert is_local_client(peer, forwarded_for, forwarded, trusted) is expected  # type: ignore[arg-type]


def test_https_detection() -> None:
    assert is_https("https", "203.0.113.7", None, PROXIES)
    assert is_https("wss", None, None, ())
    assert not is_https("http", "203.0.113.7", "https", PROXIES)  # untrusted peer
    assert is_https("http", "10.1.2.3", "https", PROXIES)
    assert not is_https("http", "10.1.2.3", "http", PROXIES)


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("http://Limen.Example:80", "http://limen.example"),
        ("https://limen.example:443/", "https://limen.example"),
        ("https://limen.example:8443", "https://limen.example:8443"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("null", None),
        ("file:///etc/passwd", None),
        ("https://limen.example/path", None),
        ("http://host:99999", None),
    ],
)
def test_normalize_origin(origin: str, expected: str | None) -> None:
    assert normalize_origin(origin) == expected


def test_own_origin_is_allowed_by_default_and_others_are_not() -> None:
    own = {"http://127.0.0.1:8080", "http://localhost:8080"}
    check_origin("http://127.0.0.1:8080", own=own, allowed=())
    check_origin("http://LOCALHOST:8080/", own=own, allowed=())
    check_origin(None, own=own, allowed=())  # non-browser client
    for foreign in ("http://evil.example", "https://127.0.0.1:8080", "http://127.0.0.1:8081", "null"):
        with pytest.raises(LimenError) as caught:
            check_origin(foreign, own=own, allowed=())
        assert caught.value.code is ErrorCode.ORIGIN_NOT_ALLOWED


def test_configured_origins_replace_the_default() -> None:
    own = {"https://limen.internal"}
    check_origin("https://console.example.org", own=own, allowed=("https://console.example.org",))
    with pytest.raises(LimenError):
        check_origin("https://limen.internal", own=own, allowed=("https://console.example.org",))


@pytest.mark.parametrize(
    "name",
    ["alice", "O'Brien", 'say "hi"', "<script>alert(1)</script>", "x'; DROP TABLE users;--", "Ωμέγα 🐧", "a b"],
)
def test_names_keep_any_printable_text(name: str) -> None:
    assert clean_name("name", name, 64) == name


@pytest.mark.parametrize("name", ["", " lead", "trail ", "tab\there", "nul\x00", "rtl\u202eevil", "n" * 65])
def test_names_refuse_control_characters_and_edges(name: str) -> None:
    with pytest.raises(ValidationFailed):
        clean_name("name", name, 64)


def test_names_are_nfc() -> None:
    assert clean_name("name", "e\u0301", 64) == "\u00e9"


def test_access_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from limen.settings import SettingsError, load_settings

    monkeypatch.setenv("LIMEN_ALLOWED_ORIGINS", "https://Limen.Example/, http://127.0.0.1:8080")
    monkeypatch.setenv("LIMEN_TRUSTED_PROXIES", "10.0.0.1, 192.168.0.0/16")
    settings = load_settings(None, data_dir="/srv/limen")
    assert settings.allowed_origins == ("https://limen.example", "http://127.0.0.1:8080")
    assert settings.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16")
    assert settings.db_url == "sqlite:////srv/limen/limen.db"
    assert settings.redis_url is None and settings.console_ticket_ttl == 30
    for env, value in (("LIMEN_TRUSTED_PROXIES", "not-a-network"), ("LIMEN_ALLOWED_ORIGINS", "evil.example/path"),
                       ("LIMEN_CONSOLE_TICKET_TTL", "0"), ("LIMEN_COOKIE_SECURE", "sometimes")):
        monkeypatch.setenv(env, value)
        with pytest.raises(SettingsError) as caught:
            load_settings()
        assert env in str(caught.value)
        monkeypatch.delenv(env)
