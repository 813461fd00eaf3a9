"""TLS settings: certificate and key go together, must be files and a pair that loads; with them limen's own origin is
https://, uvicorn gets them, and every answer over TLS carries HSTS. deploy/nginx.conf waits longer than
the console's pings and the event stream's keep-alives."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from limen.api.transport_security import StrictTransportSecurity
from limen.auth.site import Site
from limen.cli import app
from limen.settings import Settings, SettingsError, check_settings_file, load_settings
from tests.support.certificates import make_certificate
from tests.support.cli import CliRunner
from tests.support.console import ConsoleServer

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def test_a_pair_that_cannot_serve_tls_is_refused_with_the_reason(tmp_path: Path, pem_files: tuple[Path, Path]) -> None:
    # uvicorn found these only when it started, with a traceback, after limen had said it was serving.
    cert, key = pem_files
    other_cert, other_key = make_certificate(tmp_path)
    with pytest.raises(SettingsError, match=r"LIMEN_TLS_KEY .*is not the key of the certificate"):
        load_settings(None, tls_cert=cert, tls_key=other_key)
    with pytest.raises(SettingsError, match=r"LIMEN_TLS_KEY .*not a PEM certificate and its key"):
        load_settings(None, tls_cert=key, tls_key=cert)  # swapped
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
                   check=True, capture_output=True, timeout=60)
    with pytest.raises(SettingsError, match=r"LIMEN_TLS_KEY .*is encrypted: limen needs the key without a passphrase"):
        load_settings(None, tls_cert=cert, tls_key=encrypted)
    assert load_settings(None, tls_cert=other_cert, tls_key=other_key).tls


def test_a_database_url_limen_cannot_use_is_refused() -> None:
    for url, said in (("nonsense", "is not a database URL"), ("mysql://u@h/db", "not mysql")):
        with pytest.raises(SettingsError, match=rf"LIMEN_DATABASE_URL .*{said}"):
            load_settings(None, database_url=url)


def test_cert_without_key_is_refused_naming_the_key(pem_files: tuple[Path, Path]) -> None:
    with pytest.raises(SettingsError, match=r"LIMEN_TLS_KEY .*give both or neither"):
        load_settings(None, tls_cert=pem_files[0])
    with pytest.raises(SettingsError, match=r"LIMEN_TLS_KEY .*give both or neither"):
        load_settings(None, tls_key=pem_files[1])


def test_a_missing_certificate_file_is_named(tmp_path: Path, pem_files: tuple[Path, Path]) -> None:
    with pytest.raises(SettingsError, match=r"LIMEN_TLS_CERT .*not a readable certificate"):
        load_settings(None, tls_cert=tmp_path / "nope.pem", tls_key=pem_files[1])


def test_tls_makes_the_own_origin_https(pem_files: tuple[Path, Path]) -> None:
    plain = Site.of(Settings.model_validate({"port": 8443}), addresses=lambda: [], names=lambda: [])
    secure = Site.of(Settings.model_validate({"port": 8443, "tls_cert": pem_files[0], "tls_key": pem_files[1]}),
                     addresses=lambda: [], names=lambda: [])
    assert "http://127.0.0.1:8443" in plain.origins
    assert "https://127.0.0.1:8443" in secure.origins and "http://127.0.0.1:8443" not in secure.origins


async def test_hsts_only_on_answers_sent_over_tls() -> None:
    app = FastAPI()
    app.add_api_route("/", lambda: PlainTextResponse("hi"))
    wrapped = StrictTransportSecurity(app)
    for base, expected in (("https://limen.test", "max-age=31536000"), ("http://limen.test", None)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url=base) as client:
            assert (await client.get("/")).headers.get("strict-transport-security") == expected


@pytest.mark.parametrize("host", ["localhost:8443", "LOCALHOST.", "dev.localhost", "127.0.0.1:8443", "127.0.0.2",
                                  "[::1]:8443"])
async def test_no_hsts_for_localhost_or_a_loopback_address(host: str) -> None:
    """A browser keeps HSTS per host, not per port: limen's, sent to https://localhost:PORT, made Chromium force
    HTTPS for a year on every http://localhost:* service of the machine."""
    app = FastAPI()
    app.add_api_route("/", lambda: PlainTextResponse("hi"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=StrictTransportSecurity(app)),
                                 base_url="https://limen.test") as client:
        assert "strict-transport-security" not in (await client.get("/", headers={"Host": host})).headers
        # The machine's public name still gets it.
        assert (await client.get("/", headers={"Host": "limen.example:8443"})).headers[
            "strict-transport-security"] == "max-age=31536000"


async def test_a_tls_handshake_is_bounded_by_the_request_read_timeout(
    make_settings: Callable[..., Settings], pem_files: tuple[Path, Path]
) -> None:
    """A connection that sends nothing was closed after LIMEN_REQUEST_READ_TIMEOUT over plain HTTP but after
    asyncio's 60 s over TLS: uvicorn gave its handshake no bound."""
    settings = make_settings(tls_cert=pem_files[0], tls_key=pem_files[1], request_read_timeout=1)
    server = await ConsoleServer(settings, as_served=True).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        began = time.monotonic()
        try:
            async with asyncio.timeout(6):
                assert await reader.read() == b""  # closed by the server, not a byte sent
        finally:
            writer.close()
        assert time.monotonic() - began < 3
    finally:
        await server.stop()


def _seconds(directive: str) -> float:
    match = re.search(rf"^\s*{directive}\s+(\d+)s;", (DEPLOY / "nginx.conf").read_text(), re.MULTILINE)
    assert match, directive
    return float(match.group(1))


def test_nginx_waits_longer_than_three_console_pings_and_event_keepalives() -> None:
    defaults = Settings.model_validate({})
    for directive in ("proxy_read_timeout", "proxy_send_timeout"):
        assert _seconds(directive) > 3 * max(defaults.console_ping_interval, defaults.events_keepalive)


@pytest.fixture(scope="module")
def unservable_pairs(tmp_path_factory: pytest.TempPathFactory, pem_files: tuple[Path, Path]) -> list[tuple[Path, Path]]:
    """A certificate with another's key, the two swapped, and the key encrypted."""
    cert, key = pem_files
    directory = tmp_path_factory.mktemp("unservable")
    _, other_key = make_certificate(directory)
    locked = directory / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(locked)],
                   check=True, capture_output=True, timeout=60)
    return [(cert, other_key), (key, cert), (cert, locked)]


@pytest.mark.parametrize(("language", "said"), [
    ("en", ("is not the key of the certificate", "are not a PEM certificate and its key", "is encrypted")),
    ("ko", ("키가 인증서와 짝이 맞지 않습니다", "PEM 인증서와 그 키가 아닙니다", "키가 암호로 보호되어 있습니다")),
])
def test_limen_serve_says_why_a_pair_cannot_serve_tls_in_each_language(
    tmp_path: Path, unservable_pairs: list[tuple[Path, Path]], language: str, said: tuple[str, str, str],
) -> None:
    """The command line says these problems as it says any setting's: their texts name the key file
    ``{key}``, which the translation took for its own argument (a TypeError's traceback instead)."""
    for (cert, key), words in zip(unservable_pairs, said, strict=True):
        result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "serve", "--tls-cert", str(cert),
                                          "--tls-key", str(key)], env={"LIMEN_LANG": language})
        assert isinstance(result.exception, SystemExit) and result.exit_code == 2, result.exception
        assert words in result.stderr and "LIMEN_TLS_KEY" in result.stderr, result.stderr


@pytest.mark.parametrize(("language", "said"), [
    ("en", "public_url 'http://limen.example:8443' is an http:// address, but limen serves HTTPS itself"),
    ("ko", "public_url이 http:// 주소입니다"),
])
def test_tls_with_an_http_public_url_is_refused_naming_public_url(
    tmp_path: Path, pem_files: tuple[Path, Path], language: str, said: str,
) -> None:
    # `config check` passed it and `serve` started; then every browser's sign-in was refused (ORIGIN_NOT_ALLOWED).
    cert, key = pem_files
    with pytest.raises(SettingsError, match=re.escape("public_url 'http://limen.example:8443' is an http:// address")):
        load_settings(None, tls_cert=cert, tls_key=key, public_url="http://limen.example:8443")
    config = tmp_path / "limen.toml"
    config.write_text(f'tls_cert = "{cert}"\ntls_key = "{key}"\npublic_url = "http://limen.example:8443"\n')
    with pytest.raises(SettingsError, match="public_url"):
        check_settings_file(config)
    result = CliRunner().invoke(app, ["config", "check", str(config)], env={"LIMEN_LANG": language})
    assert result.exit_code == 2 and said in result.stderr and "Traceback" not in result.stderr, result.stderr
    config.write_text(f'tls_cert = "{cert}"\ntls_key = "{key}"\npublic_url = "https://limen.example:8443"\n')
    assert check_settings_file(config).public_url == "https://limen.example:8443"
