from __future__ import annotations

from pathlib import Path

import pytest

from limen.settings import Settings, SettingsError, check_settings_file, load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIMEN_CONFIG", raising=False)
    for key in ("LIMEN_LIBVIRT_URI", "LIMEN_HOST", "LIMEN_PORT", "LIMEN_LOG_DIR", "LIMEN_ISO_DIR", "LIMEN_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    settings = load_settings()
    assert settings.libvirt_uri == "qemu:///system"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.log_dir == Path("/var/log/limen")
    assert settings.console_write_timeout == 5.0
    assert settings.pool_dir == settings.data_dir / "pool"
    assert settings.max_body_bytes == 2**20 and settings.request_read_timeout == 10.0


def test_precedence_cli_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "limen.toml"
    config.write_text('port = 9001\nhost = "0.0.0.0"\nlibvirt_uri = "test:///default"\n')
    monkeypatch.setenv("LIMEN_HOST", "127.0.0.2")
    settings = load_settings(config, port=None)
    assert settings.port == 9001  # from the file
    assert settings.host == "127.0.0.2"  # env beats file
    assert settings.libvirt_uri == "test:///default"
    assert load_settings(config, port=9002).port == 9002  # flag beats both


def test_a_file_read_again_gives_its_new_values_from_one_settings_class(tmp_path: Path) -> None:
    """Each build reads the file anew; the class over it is made once (~3 ms of CPU each time it was: the
    command line and the tests build from one file many times), and the file alone has its own."""
    config = tmp_path / "limen.toml"
    config.write_text("port = 9004\n")
    first = load_settings(config)
    config.write_text("port = 9005\n")
    second = load_settings(config)
    assert (first.port, second.port) == (9004, 9005)
    assert type(first) is type(second)
    assert check_settings_file(config).port == 9005
    assert type(check_settings_file(config)) is not type(first)  # the file alone: no LIMEN_* variables


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "limen.toml"
    config.write_text("port = 9003\n")
    monkeypatch.setenv("LIMEN_CONFIG", str(config))
    assert load_settings().port == 9003


@pytest.mark.parametrize(
    ("env", "value", "named"),
    [
        ("LIMEN_PORT", "0", "LIMEN_PORT"),
        ("LIMEN_PORT", "http", "LIMEN_PORT"),
        ("LIMEN_CONSOLE_WRITE_TIMEOUT", "-1", "LIMEN_CONSOLE_WRITE_TIMEOUT"),
        ("LIMEN_VIRT_TYPE", "xen", "LIMEN_VIRT_TYPE"),
        ("LIMEN_LIBVIRT_URI", " ", "LIMEN_LIBVIRT_URI"),
        ("LIMEN_LIBVIRT_URI", "qemu+ssh://root:hunter2@h/system", "LIMEN_LIBVIRT_URI"),
        ("LIMEN_CONSOLE_AUTO_START", "maybe", "LIMEN_CONSOLE_AUTO_START"),
    ],
)
def test_invalid_value_names_the_key(monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert named in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_bad_key_of_the_file_is_named_as_the_file_writes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It was named as a LIMEN_ variable ("LIMEN_PROT (prot): Extra inputs…") the reader never set.
    config = tmp_path / "limen.toml"
    config.write_text('prot = 1\nport = "x"\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    said = str(caught.value)
    assert f"{config}: prot: Extra inputs are not permitted" in said and f"{config}: port:" in said
    assert "LIMEN_" not in said
    monkeypatch.setenv("LIMEN_PORT", "0")  # the variable is stronger than the file: it is the one named
    with pytest.raises(SettingsError, match=r"LIMEN_PORT \(port\)"):
        load_settings(config)
    monkeypatch.delenv("LIMEN_PORT")
    # Keys in capitals are the file's too: 'LIMEN_LIMEN_PORT (LIMEN_PORT)' named a variable nobody set.
    config.write_text('LIMEN_PORT = 9000\nLog_Levl = "info"\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(config)
    said = str(caught.value)
    assert f"{config}: LIMEN_PORT: Extra inputs are not permitted (the file names settings without LIMEN_: " \
        "port = …)" in said, said
    assert f"{config}: Log_Levl: Extra inputs are not permitted" in said and "LIMEN_LIMEN" not in said, said


def test_malformed_or_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("port = [")
    with pytest.raises(SettingsError, match=r"broken\.toml"):
        load_settings(broken)
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(tmp_path / "absent.toml")


def test_settings_are_frozen() -> None:
    settings = load_settings(port=8081)
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def test_request_bounds_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIMEN_MAX_BODY_BYTES", "65536")
    monkeypatch.setenv("LIMEN_REQUEST_READ_TIMEOUT", "2.5")
    settings = load_settings()
    assert (settings.max_body_bytes, settings.request_read_timeout) == (65536, 2.5)
    monkeypatch.setenv("LIMEN_MAX_BODY_BYTES", "0")
    with pytest.raises(SettingsError, match="LIMEN_MAX_BODY_BYTES"):
        load_settings()


def test_an_ipv6_host_is_written_in_brackets_where_a_url_needs_it(tmp_path: Path) -> None:
    """'limen serve --host ::1' said it served on http://::1:8080/, which no browser opens."""
    from limen.doctor import default_server_url

    settings = Settings(data_dir=tmp_path, host="::1", port=8080)
    assert settings.address == "[::1]:8080"
    assert default_server_url(settings) == "http://[::1]:8080"
    assert Settings(data_dir=tmp_path, host="127.0.0.1", port=8080).address == "127.0.0.1:8080"


def test_an_empty_variable_is_unset_and_an_empty_path_in_a_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LIMEN_DATA_DIR= (an environment file's empty line) read as ".": `limen serve` then made the directory it
    was started in its data directory and chmodded it 0700."""
    monkeypatch.setenv("LIMEN_DATA_DIR", "")
    monkeypatch.setenv("LIMEN_TLS_CERT", "")
    settings = load_settings(None)
    assert settings.data_dir == Path("/var/lib/limen") and settings.tls_cert is None
    config = tmp_path / "limen.toml"
    config.write_text('data_dir = ""\n')
    with pytest.raises(SettingsError, match=r"data_dir.*must be a path, not empty"):
        load_settings(config)
