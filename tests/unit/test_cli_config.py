"""``limen config show`` names each setting's source (flag, env, file, default) and masks secrets;
``limen config check FILE`` judges a TOML file alone and exits 2 naming the bad key."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from limen.cli import app
from limen.settings import setting_sources
from tests.support.certificates import make_certificate
from tests.support.cli import CliRunner

ENGLISH = {"LANG": "C.UTF-8", "LC_ALL": "", "LC_MESSAGES": "", "LIMEN_LANG": ""}


@pytest.fixture(autouse=True)
def no_limen_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LIMEN_"):
            monkeypatch.delenv(name)


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={**ENGLISH, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def test_show_names_flag_env_file_and_default(tmp_path: Path) -> None:
    config = tmp_path / "limen.toml"
    config.write_text('port = 9001\nhost = "0.0.0.0"\nregistration = "approval"\n')
    code, out, err = invoke("--config", str(config), "--data-dir", str(tmp_path / "data"), "--json",
                            "config", "show", env={"LIMEN_HOST": "127.0.0.2"})
    assert code == 0, err
    shown = json.loads(out)
    assert shown["data_dir"] == {"value": str(tmp_path / "data"), "source": "flag"}
    assert shown["host"] == {"value": "127.0.0.2", "source": "env"}  # the environment beats the file
    assert shown["port"] == {"value": 9001, "source": "file"}
    assert shown["registration"] == {"value": "approval", "source": "file"}
    assert shown["log_level"] == {"value": "info", "source": "default"}
    assert shown["allowed_hosts"] == {"value": [], "source": "default"}
    assert set(shown) >= {"libvirt_uri", "database_url", "tls_cert", "quota_vms"}


def test_an_empty_variable_is_no_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # LIMEN_PORT= is unset to the settings (the file's 9999 is used), yet `config show` said it came from env.
    config = tmp_path / "limen.toml"
    config.write_text("port = 9999\n")
    monkeypatch.setenv("LIMEN_PORT", "")
    monkeypatch.setenv("LIMEN_LOG_LEVEL", "")
    sources = setting_sources(config)
    assert (sources["port"], sources["log_level"]) == ("file", "default")
    code, out, err = invoke("--config", str(config), "--json", "config", "show", env={"LIMEN_PORT": ""})
    assert code == 0, err
    assert json.loads(out)["port"] == {"value": 9999, "source": "file"}


def test_show_masks_secrets_and_credentials_in_urls(tmp_path: Path) -> None:
    env = {"LIMEN_DATABASE_URL": "postgresql://limen:hunter2@db.example:5432/limen",
           "LIMEN_REDIS_URL": "redis://:s3cret@cache.example:6379/0", "LIMEN_METRICS_TOKEN": "t0ken-value"}
    code, out, err = invoke("--data-dir", str(tmp_path), "--json", "config", "show", env=env)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["database_url"] == {"value": "postgresql://limen:***@db.example:5432/limen", "source": "env"}
    assert shown["redis_url"]["value"] == "redis://:***@cache.example:6379/0"
    assert shown["metrics_token"] == {"value": "***", "source": "env"}
    code, table, err = invoke("--data-dir", str(tmp_path), "config", "show", env=env)
    assert code == 0, err
    for secret in ("hunter2", "s3cret", "t0ken-value"):
        assert secret not in out and secret not in table
    # libpq and redis-py take the password in the query too: it was shown in clear.
    in_query = {"LIMEN_DATABASE_URL": "postgresql://db.example/limen?sslmode=require&password=hunter2",
                "LIMEN_REDIS_URL": "redis://cache.example:6379/0?password=s3cret&db=1"}
    code, out, err = invoke("--data-dir", str(tmp_path), "--json", "config", "show", env=in_query)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["database_url"]["value"] == "postgresql://db.example/limen?sslmode=require&password=***"
    assert shown["redis_url"]["value"] == "redis://cache.example:6379/0?password=***&db=1"
    assert "libvirt_uri" in table and "metrics_token" in table


def test_show_table_in_korean_and_english(tmp_path: Path) -> None:
    code, english, err = invoke("--data-dir", str(tmp_path), "--log-dir", str(tmp_path / "log"), "config", "show")
    assert code == 0, err
    header, *rows = english.splitlines()
    assert header.split() == ["SETTING", "VALUE", "SOURCE"]
    log_row = next(row for row in rows if row.startswith("log_dir "))
    assert log_row.split() == ["log_dir", str(tmp_path / "log"), "flag"]
    code, korean, err = invoke("--data-dir", str(tmp_path), "config", "show",
                               env={"LANG": "ko_KR.UTF-8", "LIMEN_PORT": "8443"})
    assert code == 0, err
    assert korean.splitlines()[0].split() == ["설정", "값", "출처"]
    assert next(row for row in korean.splitlines() if row.startswith("port ")).split()[1:] == ["8443", "환경", "변수"]


def test_show_with_an_invalid_setting_exits_2_naming_it(tmp_path: Path) -> None:
    code, _, err = invoke("config", "show", env={"LIMEN_PORT": "99999"})
    assert code == 2
    assert "LIMEN_PORT (port)" in err


def test_check_accepts_a_good_file(tmp_path: Path) -> None:
    config = tmp_path / "limen.toml"
    config.write_text('port = 8443\nallowed_hosts = ["limen.example"]\n')
    code, out, err = invoke("config", "check", str(config))
    assert (code, out.strip()) == (0, f"{config}: OK"), err
    code, out, _ = invoke("--json", "config", "check", str(config))
    assert (code, json.loads(out)) == (0, {"file": str(config), "valid": True})


@pytest.mark.parametrize(("text", "key"), [
    ('port = 8080\nlisten_port = 8443\n', "listen_port"),  # unknown key
    ('port = 99999\n', "port"),  # out of range
    ('registration = "maybe"\n', "registration"),  # not one of the choices
    ('allowed_hosts = ["https://x.example"]\n', "allowed_hosts"),  # a validator's refusal
])
def test_check_exits_2_naming_the_bad_key(tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "limen.toml"
    config.write_text(text)
    code, out, err = invoke("config", "check", str(config))
    assert code == 2 and out == ""
    assert f"\n  {key}: " in err and str(config) in err


def test_check_judges_the_file_alone(tmp_path: Path) -> None:
    """A good value in the environment does not hide a bad one in the file (nor a bad one make it fail)."""
    config = tmp_path / "limen.toml"
    config.write_text("port = 0\n")
    code, _, err = invoke("config", "check", str(config), env={"LIMEN_PORT": "8080"})
    assert code == 2 and "port: " in err
    config.write_text("port = 8080\n")
    code, _, err = invoke("config", "check", str(config), env={"LIMEN_PORT": "nonsense"})
    assert code == 0, err


def test_check_of_a_missing_or_malformed_file_exits_2(tmp_path: Path) -> None:
    code, _, err = invoke("config", "check", str(tmp_path / "absent.toml"))
    assert code == 2 and "absent.toml" in err
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1\n")
    code, _, err = invoke("config", "check", str(broken))
    assert code == 2 and "broken.toml" in err


@pytest.mark.parametrize(("url", "said"), [
    ("notaurl", "is not a Redis URL: redis://HOST[:PORT][/DB], rediss://HOST[:PORT][/DB] or unix:///PATH"),
    ("http://cache.example:6379", "is not a Redis URL"),
    ("unix://run/redis.sock", "is not a Redis URL"),  # the socket /redis.sock on "host" run, to redis-py
    ("redis://:s3cret@cache.example:99999/0", "the port in \"redis://:***@cache.example:99999/0\" is not a number"),
    ("redis://cache.example:0", "is not a number from 1 to 65535"),  # redis-py took 6379 instead, silently
    ("rediss://cache.example:tls", "is not a number from 1 to 65535"),
])
def test_a_redis_url_redis_cannot_use_is_said_by_serve_and_config_check(tmp_path: Path, url: str, said: str) -> None:
    """`limen serve` ended in redis-py's traceback ("Redis URL must specify one of the following schemes",
    "Port out of range 0-65535"), and `limen config check` said a file holding such a URL was fine."""
    code, _, err = invoke("--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "log"), "serve",
                          env={"LIMEN_REDIS_URL": url})
    assert code == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 2 and "\n  LIMEN_REDIS_URL (redis_url): " in err, err
    assert said in err and "s3cret" not in err, err
    config = tmp_path / "limen.toml"
    config.write_text(f"redis_url = {json.dumps(url)}\n")
    code, out, err = invoke("config", "check", str(config))
    assert code == 2 and out == "" and "\n  redis_url: " in err and said in err, err


@pytest.mark.parametrize("url", ["redis://cache.example:6379/0", "rediss://:s3cret@cache.example/1",
                                 "redis://[::1]:6380", "unix:///run/redis/redis.sock?db=2", "redis://"])
def test_a_redis_url_redis_takes_passes_config_check(tmp_path: Path, url: str) -> None:
    config = tmp_path / "limen.toml"
    config.write_text(f"redis_url = {json.dumps(url)}\n")
    code, out, err = invoke("config", "check", str(config))
    assert (code, out.strip()) == (0, f"{config}: OK"), err


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true",
                                 "sqlite:///file:limen?mode=memory&uri=true"])
def test_a_sqlite_database_in_memory_is_refused(tmp_path: Path, url: str) -> None:
    """Each process had a database of its own, ended with it: `limen user ensure-admin` said it made an admin
    nobody else ever saw, and `limen serve` served an empty database."""
    code, _, err = invoke("--data-dir", str(tmp_path / "data"), "user", "ensure-admin", env={"LIMEN_DATABASE_URL": url})
    assert code == 2 and "\n  LIMEN_DATABASE_URL (database_url): " in err, err
    assert "is a database in memory, which no other limen process sees" in err and "Traceback" not in err, err
    config = tmp_path / "limen.toml"
    config.write_text(f"database_url = {json.dumps(url)}\n")
    code, _, err = invoke("config", "check", str(config))
    assert code == 2 and "\n  database_url: " in err and "is a database in memory" in err, err
    config.write_text(f"database_url = {json.dumps(f'sqlite:///{tmp_path}/limen.db')}\n")
    assert invoke("config", "check", str(config))[0] == 0


def test_a_key_of_another_type_than_the_certificate_is_said_to_be_not_its_key(tmp_path: Path) -> None:
    # An RSA key with an EC certificate was "not a PEM certificate and its key (NO_CERTIFICATE_ASSIGNED)".
    cert, _ = make_certificate(tmp_path)
    rsa_key = tmp_path / "rsa.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                    str(rsa_key)], check=True, capture_output=True, timeout=60)
    config = tmp_path / "limen.toml"
    config.write_text(f"tls_cert = {json.dumps(str(cert))}\ntls_key = {json.dumps(str(rsa_key))}\n")
    code, out, err = invoke("config", "check", str(config))
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert f"\n  tls_key: '{rsa_key}' is not the key of the certificate '{cert}'" in err, err


@pytest.mark.parametrize("empty", ["tls_cert", "tls_key"])
def test_an_empty_tls_path_is_said_to_be_empty(tmp_path: Path, empty: str) -> None:
    # tls_key = "" was read as ".": "'.' is not a readable key file".
    cert, key = make_certificate(tmp_path)
    paths = {"tls_cert": cert, "tls_key": key, empty: ""}
    config = tmp_path / "limen.toml"
    config.write_text("".join(f"{name} = {json.dumps(str(path))}\n" for name, path in paths.items()))
    code, out, err = invoke("config", "check", str(config))
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert f"\n  {empty}: must be a path, not empty (leave it out for the default)" in err and "'.'" not in err, err


@pytest.mark.parametrize("setting", ["data_dir", "log_dir", "iso_dir", "storage_pool_dir", "novnc_dir", "tls_key"])
def test_a_nul_character_in_a_path_is_refused_by_config_check_and_serve(tmp_path: Path, setting: str) -> None:
    # It passed `config check`; `serve` then ended in a traceback (ValueError: embedded null byte).
    config = tmp_path / "limen.toml"
    config.write_text(f'{setting} = "{tmp_path}/a\\u0000b"\n')
    said = f'{setting}: "{tmp_path}/a\\u0000b" must be a path without a NUL character'
    code, out, err = invoke("config", "check", str(config))
    assert code == 2 and out == "" and f"\n  {said}" in err and "Traceback" not in err, err
    code, _, err = invoke("--config", str(config), "serve")
    assert code == 2 and f"\n  {config}: {said}" in err and "Traceback" not in err, err
