"""The command line's human output in Korean under ``LANG=ko_KR.UTF-8`` (or ``LIMEN_LANG=ko``), English
otherwise; ``--json`` the same in every language. On libvirt's test driver (its VM 'test') and SQLite."""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from limen import settings as settings_module
from limen.cli import app
from limen.cli_output import refusals_text
from limen.doctor import START_SERVER_FIX, Said, _unreachable_fix
from limen.errors import Rule, ValidationFailed, range_rule, rule
from limen.i18n import catalogue, display_width, translate
from tests.conftest import ISO_DIR, TEST_DRIVER_URI
from tests.support.cli import CliRunner

KOREAN = {"LANG": "ko_KR.UTF-8", "LC_ALL": "", "LC_MESSAGES": "", "LIMEN_LANG": ""}
ENGLISH = {"LANG": "C.UTF-8", "LC_ALL": "", "LC_MESSAGES": "", "LIMEN_LANG": ""}


@pytest.fixture(autouse=True)
def held_test_driver() -> Iterator[None]:
    conn = libvirt.open(TEST_DRIVER_URI)
    dom = conn.lookupByName("test")
    if not dom.isActive():  # the driver is shared by the whole process: other tests may have stopped it
        dom.create()
    yield
    conn.close()


def run(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    options = ["--libvirt-uri", TEST_DRIVER_URI, "--data-dir", str(tmp_path / "data"), "--iso-dir", str(ISO_DIR)]
    result = CliRunner().invoke(app, [*options, *args], env={**env, "LIMEN_STORAGE_POOL_DIR": str(tmp_path / "p")})
    return result.exit_code, result.stdout, result.stderr


def test_vm_list_and_show_in_korean(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, KOREAN, "vm", "list")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["이름", "상태", "VCPU", "메모리", "VNC", "UUID"]
    test_row = next(row for row in rows if row.startswith("test "))
    assert "실행 중" in test_row
    # Columns line up in terminal columns: UUIDs start at the same column as the header's "UUID".
    column = display_width(header[:header.index("UUID")])
    assert display_width(test_row[:test_row.rindex(" ") + 1]) == column
    code, out, err = run(tmp_path, KOREAN, "vm", "show", "test")
    assert code == 0, err
    assert out.splitlines()[0].startswith("이름") and "상태" in out and "부팅 순서" in out and "자동 시작" in out


def test_errors_in_korean_keep_the_code_and_details(tmp_path: Path) -> None:
    code, _out, err = run(tmp_path, KOREAN, "vm", "show", "no-such-vm")
    assert code == 1
    assert err.startswith("limen: 가상 머신을 찾을 수 없음: ")
    assert "no-such-vm" in err and "[VM_NOT_FOUND]" in err and "가상 머신 목록을 새로 고치세요" in err
    code, _out, err = run(tmp_path, KOREAN, "vm", "show", "이름-한글")
    assert err.startswith("limen: 잘못된 가상 머신 ID: '이름-한글' is neither")  # details stay as they came
    assert "[INVALID_VM_ID]" in err
    code, _out, err = run(tmp_path, ENGLISH, "vm", "show", "no-such-vm")
    assert err.startswith("limen: VM not found: ") and "Reload the VM list. [VM_NOT_FOUND]" in err


@pytest.mark.parametrize(("env", "lang"), [(KOREAN, "ko"), (ENGLISH, "en")])
def test_a_refused_field_says_its_rule_in_the_users_language(tmp_path: Path, env: dict[str, str], lang: str) -> None:
    """Korean said "name: must start with a letter or digit…" in English; the pages' words now, in both."""
    code, _out, err = run(tmp_path, env, "vm", "create", "--", "-bad")
    assert code == 1 and "[VALIDATION_ERROR]" in err
    assert f": name: {catalogue(lang)['rule.vm_name']}\n" in err


def test_each_refused_field_says_its_rule_in_korean_and_english_keeps_the_details() -> None:
    refused = ValidationFailed.all_of([
        ValidationFailed("name", "must start with a letter or digit", rule=rule(Rule.VM_NAME)),
        ValidationFailed("memory_mib", "must be between 32 and 24105 MiB (this host's memory)",
                         rule=range_rule(32, 24105, unit="MiB", limit="host_memory")),
        ValidationFailed("boot_order", "must be one of cdrom, hd", rule=rule(Rule.ONE_OF, allowed=["cdrom", "hd"])),
        ValidationFailed("vcpus", "no rule of words"),  # its details, as they came
    ])
    assert refusals_text("ko", refused) == (
        "name: 영문자, 숫자, “_”, “.”, “-”만 63자까지 쓸 수 있으며 영문자나 숫자로 시작해야 합니다; "
        "memory_mib: 32 MiB 이상 24,105 MiB 이하여야 합니다. 상한은 이 호스트의 메모리 크기입니다; "
        "boot_order: cdrom, hd 중 하나여야 합니다; vcpus: no rule of words")
    assert refusals_text("en", refused) == refused.details
    assert refusals_text("ko", ValidationFailed("vcpus", "no rule of words")) == "vcpus: no rule of words"


def test_configuration_errors_in_korean_name_the_setting_and_its_value(tmp_path: Path) -> None:
    """pydantic's English ("Extra inputs are not permitted", "Input should be a valid integer") showed under
    LIMEN_LANG=ko: each bad setting is said in Korean, with where it was set and what it was set to."""
    bad_env = {"LIMEN_PORT": "abc", "LIMEN_LOG_LEVEL": "loud", "LIMEN_CONSOLE_WRITE_TIMEOUT": "soon"}
    code, _, err = run(tmp_path, {**KOREAN, **bad_env}, "config", "show")
    assert code == 2
    lines = err.splitlines()
    assert lines[0] == "limen: 설정이 올바르지 않습니다:" and "Input should" not in err, err
    assert sorted(lines[1:]) == sorted([
        "  LIMEN_LOG_LEVEL (log_level): 'debug', 'info', 'warning', 'error' 중 하나여야 합니다(지정한 값: \"loud\")",
        '  LIMEN_PORT (port): 정수여야 합니다(지정한 값: "abc")',
        '  LIMEN_CONSOLE_WRITE_TIMEOUT (console_write_timeout): 숫자여야 합니다(지정한 값: "soon")',
    ])
    settings_file = tmp_path / "limen.toml"
    settings_file.write_text('limen_port = 8081\nbogus = "x"\nport = 0\n')
    code, _, err = run(tmp_path, KOREAN, "config", "check", str(settings_file))
    assert code == 2 and "Extra inputs" not in err and "greater than" not in err, err
    assert err.startswith(f"limen: {settings_file} 설정 파일이 올바르지 않습니다:\n")
    assert "  port: 1 이상이어야 합니다(지정한 값: 0)" in err
    assert '  bogus: limen에 없는 설정입니다(지정한 값: "x")' in err
    assert ("limen_port: limen에 없는 설정입니다(지정한 값: 8081) "
            "(파일에서는 설정 이름을 LIMEN_ 없이 씁니다: port = …)") in err
    code, _, err = run(tmp_path, KOREAN, "--config", str(tmp_path / "missing.toml"), "config", "show")
    assert (code, err.strip()) == (2, f"limen: --config ({tmp_path / 'missing.toml'}): 그런 파일이 없습니다")


def test_limens_own_setting_rules_speak_korean_too(tmp_path: Path) -> None:
    bad_env = {"LIMEN_STATS_INTERVAL": "0.1", "LIMEN_TRUSTED_PROXIES": "nope", "LIMEN_PUBLIC_URL": "ftp://x",
               "LIMEN_DATABASE_URL": "mysql://limen@db/limen"}
    code, _, err = run(tmp_path, {**KOREAN, **bad_env}, "config", "show")
    assert code == 2
    assert sorted(err.splitlines()[1:]) == sorted([
        '  LIMEN_STATS_INTERVAL (stats_interval): 0(끔)이거나 0.5초 이상이어야 합니다(지정한 값: "0.1")',
        "  LIMEN_TRUSTED_PROXIES (trusted_proxies): 주소나 10.0.0.0/8 같은 CIDR이 아닙니다: 'nope'",
        "  LIMEN_PUBLIC_URL (public_url): https://limen.example[:port] 같은 주소가 아닙니다: 'ftp://x'",
        "  LIMEN_DATABASE_URL (database_url): limen은 데이터를 SQLite나 PostgreSQL에만 저장하며 mysql "
        '데이터베이스는 쓸 수 없습니다(지정한 값: "mysql://limen@db/limen"). sqlite:///PATH 또는 '
        "postgresql://USER@HOST/DATABASE 형식으로 쓰세요",
    ]), err


def test_every_rule_of_the_settings_has_words_in_both_languages() -> None:
    kinds = set(re.findall(r'refused\(\s*"(\w+)"', Path(settings_module.__file__).read_text()))
    assert len(kinds) > 10
    for lang in ("en", "ko"):
        assert sorted(kind for kind in kinds if f"cli.settings.problem.{kind}" not in catalogue(lang)) == [], lang


def test_a_configuration_error_never_repeats_a_secret(tmp_path: Path) -> None:
    code, _, err = run(tmp_path, {**KOREAN, "LIMEN_DATABASE_URL": "mysql://limen:hunter2@db/limen"}, "config", "show")
    assert code == 2 and "hunter2" not in err and "mysql://limen:***@db/limen" in err, err
    settings_file = tmp_path / "limen.toml"
    settings_file.write_text('metrics_token = 12345678\n')  # a number where text belongs: refused, not repeated
    code, _, err = run(tmp_path, KOREAN, "config", "check", str(settings_file))
    assert code == 2 and "12345678" not in err, err
    assert "metrics_token: 문자열이어야 합니다(지정한 값: (표시 안 함))" in err, err


def test_a_setting_named_for_a_password_but_holding_none_is_shown(tmp_path: Path) -> None:
    # password_hash_* are argon2's numbers: they were hidden as secrets, in errors and in `config show`.
    code, _, err = run(tmp_path, {**ENGLISH, "LIMEN_PASSWORD_HASH_TIME_COST": "abc"}, "config", "show")
    assert code == 2 and '"abc" is not a whole number' in err, err
    code, out, err = run(tmp_path, {**ENGLISH, "LIMEN_PASSWORD_HASH_TIME_COST": "5"}, "--json", "config", "show")
    assert code == 0, err
    assert json.loads(out)["password_hash_time_cost"]["value"] == 5, out


@pytest.mark.parametrize(("env", "said"), [
    (ENGLISH, "  LIMEN_PUBLIC_URL (public_url): 'https://user:***@limen.example' is not an address like "
              "https://limen.example[:port]"),
    (KOREAN, "  LIMEN_PUBLIC_URL (public_url): https://limen.example[:port] 같은 주소가 아닙니다: "
             "'https://user:***@limen.example'"),
])
def test_a_refused_public_url_is_repeated_without_its_password(tmp_path: Path, env: dict[str, str],
                                                               said: str) -> None:
    # Its own rule repeated the URL as given, password included.
    code, _, err = run(tmp_path, {**env, "LIMEN_PUBLIC_URL": "https://user:hunter2@limen.example"}, "config", "show")
    assert code == 2 and "hunter2" not in err and said in err.splitlines(), err


@pytest.mark.parametrize(("env", "said"), [
    (ENGLISH, "  settings: password_hash_memory_kib must be at least 8 KiB per lane (password_hash_parallelism)"),
    (KOREAN, "  설정: password_hash_memory_kib는 레인(password_hash_parallelism)마다 8 KiB 이상이어야 합니다"),
])
def test_a_rule_between_settings_is_said_of_the_settings_not_of_a_variable(tmp_path: Path, env: dict[str, str],
                                                                           said: str) -> None:
    # It was labelled "LIMEN_(CONFIG) ((config))", a variable nobody can set.
    lanes = {"LIMEN_PASSWORD_HASH_MEMORY_KIB": "8", "LIMEN_PASSWORD_HASH_PARALLELISM": "4"}
    code, _, err = run(tmp_path, {**env, **lanes}, "config", "show")
    assert code == 2 and err.splitlines()[1:] == [said], err
    settings_file = tmp_path / "limen.toml"
    settings_file.write_text("password_hash_memory_kib = 8\npassword_hash_parallelism = 4\n")
    code, _, err = run(tmp_path, env, "config", "check", str(settings_file))
    assert code == 2 and err.splitlines()[1:] == [said], err


@pytest.mark.parametrize(("env", "said"), [
    (ENGLISH, ['  LIMEN_STATS_INTERVAL (stats_interval): "nan" is not a number',
               '  LIMEN_LIBVIRT_TIMEOUT (libvirt_timeout): "inf" is not a number',
               '  LIMEN_CONSOLE_WRITE_TIMEOUT (console_write_timeout): "0" must be greater than 0',
               '  LIMEN_CONSOLE_IDLE_TIMEOUT (console_idle_timeout): "-1" is below the least allowed, 0',
               '  LIMEN_SESSION_TTL (session_ttl): "1e9" is above the most allowed, 7776000']),
    (KOREAN, ['  LIMEN_STATS_INTERVAL (stats_interval): 숫자여야 합니다(지정한 값: "nan")',
              '  LIMEN_LIBVIRT_TIMEOUT (libvirt_timeout): 숫자여야 합니다(지정한 값: "inf")',
              '  LIMEN_CONSOLE_WRITE_TIMEOUT (console_write_timeout): 0보다 커야 합니다(지정한 값: "0")',
              '  LIMEN_CONSOLE_IDLE_TIMEOUT (console_idle_timeout): 0 이상이어야 합니다(지정한 값: "-1")',
              '  LIMEN_SESSION_TTL (session_ttl): 7776000 이하여야 합니다(지정한 값: "1e9")']),
])
def test_a_number_setting_says_nan_is_no_number_and_its_bounds_as_people_write_them(
    tmp_path: Path, env: dict[str, str], said: list[str]
) -> None:
    # "nan" was "above the most allowed, 3600.0" (and inf "above" too); bounds read "0.0", "7776000.0".
    bad_env = {"LIMEN_STATS_INTERVAL": "nan", "LIMEN_LIBVIRT_TIMEOUT": "inf", "LIMEN_CONSOLE_WRITE_TIMEOUT": "0",
               "LIMEN_CONSOLE_IDLE_TIMEOUT": "-1", "LIMEN_SESSION_TTL": "1e9"}
    code, _, err = run(tmp_path, {**env, **bad_env}, "config", "show")
    assert code == 2 and sorted(err.splitlines()[1:]) == sorted(said), err
    settings_file = tmp_path / "limen.toml"
    settings_file.write_text("stats_interval = nan\nlibvirt_timeout = 0.25\n")
    code, _, err = run(tmp_path, env, "config", "check", str(settings_file))
    assert code == 2 and ("stats_interval: nan is not a number" in err or "stats_interval: 숫자여야" in err), err


@pytest.mark.parametrize(("env", "said"), [
    (ENGLISH, "the port in {url} is not a number from 1 to 65535"),
    (KOREAN, "포트는 1 이상 65535 이하의 숫자여야 합니다(지정한 값: {url})"),
])
@pytest.mark.parametrize("url", ["postgresql://limen@db:abc/limen", "postgresql://limen@db:70000/limen"])
def test_a_database_urls_bad_port_is_said_in_the_users_language(tmp_path: Path, env: dict[str, str], said: str,
                                                                url: str) -> None:
    # SQLAlchemy's "invalid literal for int() with base 10: 'abc'" was the reason, in English, in Korean too;
    # a port past 65535 was taken.
    code, _, err = run(tmp_path, {**env, "LIMEN_DATABASE_URL": url}, "config", "show")
    assert code == 2 and err.splitlines()[1:] == [
        "  LIMEN_DATABASE_URL (database_url): " + said.format(url=json.dumps(url))], err


@pytest.mark.parametrize(("text", "english", "korean"), [
    ("port = \n", "Invalid value (at line 1, column 8)", "위치: 1행 8열"),
    ("port = [1,\n", "(at end of document)", "위치: 파일 끝"),
])
def test_a_settings_file_that_is_not_toml_says_where_in_the_users_language(tmp_path: Path, text: str, english: str,
                                                                         korean: str) -> None:
    # The parser's English words were the reason in Korean too.
    settings_file = tmp_path / "limen.toml"
    settings_file.write_text(text)
    for args in (("config", "check", str(settings_file)), ("--config", str(settings_file), "config", "show")):
        code, _, err = run(tmp_path, ENGLISH, *args)
        assert (code, err.strip()) == (2, f"limen: invalid configuration file {settings_file}: "
                                          + ("Invalid value " if "end" in english else "") + english), err
        code, _, err = run(tmp_path, KOREAN, *args)
        assert code == 2, err
        assert err.strip() == f"limen: 설정 파일의 TOML 문법이 잘못되었습니다({settings_file}, {korean})", err


def test_a_settings_file_that_is_a_directory_is_called_one(tmp_path: Path) -> None:
    # LIMEN_CONFIG=/etc/limen said "no such file" of a directory that is there.
    for env, said in ((ENGLISH, "is a directory, not a settings file"),
                      (KOREAN, "디렉터리입니다. 설정 파일(TOML)을 지정하세요")):
        for args, more in (((), {"LIMEN_CONFIG": str(tmp_path)}), (("--config", str(tmp_path)), {}),
                           (("config", "check", str(tmp_path)), {})):
            command = args if args[:1] == ("config",) else (*args, "config", "show")
            code, _, err = run(tmp_path, {**env, **more}, *command)
            assert (code, err.strip()) == (2, f"limen: --config ({tmp_path}): {said}"), (args, err)


def test_a_settings_file_that_is_a_device_or_a_pipe_is_called_one(tmp_path: Path) -> None:
    # /dev/zero was said to be missing; a named pipe would have been read until a writer came and went.
    pipe = tmp_path / "settings.toml"
    os.mkfifo(pipe)
    for env, said in ((ENGLISH, "is not an ordinary file (a device or a named pipe): give a TOML settings file"),
                      (KOREAN, "일반 파일이 아닙니다(장치나 명명된 파이프). TOML 설정 파일을 지정하세요")):
        for path in (Path("/dev/zero"), pipe):
            for command in (("config", "check", str(path)), ("--config", str(path), "config", "show")):
                code, _, err = run(tmp_path, env, *command)
                assert (code, err.strip()) == (2, f"limen: --config ({path}): {said}"), (command, err)


def test_english_by_default_and_limen_lang_wins(tmp_path: Path) -> None:
    assert run(tmp_path, ENGLISH, "vm", "list")[1].split()[:2] == ["NAME", "STATE"]
    assert run(tmp_path, {**KOREAN, "LIMEN_LANG": "en"}, "vm", "list")[1].split()[:2] == ["NAME", "STATE"]
    assert run(tmp_path, {**ENGLISH, "LIMEN_LANG": "ko"}, "vm", "list")[1].split()[:2] == ["이름", "상태"]


def test_json_output_does_not_change_with_the_language(tmp_path: Path) -> None:
    korean = run(tmp_path, KOREAN, "--json", "vm", "show", "test")[1]
    english = run(tmp_path, ENGLISH, "--json", "vm", "show", "test")[1]
    assert json.loads(korean)["state"] == "running"
    assert korean == english
    # Errors too: with --json the API's JSON error, in English whatever the language (they were words).
    code, _, err = run(tmp_path, KOREAN, "--json", "vm", "show", "no-such-vm")
    assert code == 1 and json.loads(err) == {
        "error": "VM not found", "code": "VM_NOT_FOUND", "details": "no VM with name 'no-such-vm'",
        "message": "The VM does not exist (it may have been deleted). Reload the VM list."}
    code, _, err = run(tmp_path, ENGLISH, "--json", "vm", "create", "bad name", "--memory", "64")
    assert code == 1 and json.loads(err)["field"] == "name" and json.loads(err)["rule"] == {"kind": "vm_name"}
    assert run(tmp_path, KOREAN, "vm", "show", "no-such-vm")[2].startswith("limen: 가상 머신을 찾을 수 없음")


def test_users_in_korean(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, KOREAN, "user", "list")
    assert (code, out.strip()) == (0, "사용자 없음"), err
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "user", "create", "관리자-한글",
                                      "--admin", "--password-stdin"], input="password-123\n", env=KOREAN)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "'관리자-한글' 사용자를 만들었습니다 (역할: 관리자)"  # the role in words
    header, row = run(tmp_path, KOREAN, "user", "list")[1].splitlines()
    assert header.split() == ["이름", "역할", "상태", "생성", "시각"]
    assert row.startswith("관리자-한글  관리자  활성")  # the role in words too ("admin" before)


def test_hosts_tokens_and_restores_speak_korean(tmp_path: Path) -> None:
    # They stayed English on a Korean terminal: host lines, the token's note, unlock, the backup's result.
    code, out, err = run(tmp_path, KOREAN, "host", "add", "edge", "test:///edge-not-there")
    assert (code, out.strip()) == (0, "edge 호스트를 추가했습니다 (test:///edge-not-there)"), err
    drained = run(tmp_path, KOREAN, "host", "drain", "edge")[1].strip()
    assert drained == "edge 호스트는 이제 새 가상 머신을 받지 않습니다"
    code, _, err = run(tmp_path, KOREAN, "host", "add", "edge", "test:///other")
    assert code == 1 and "HOST_ALREADY_EXISTS" in err and "호스트" in err.splitlines()[0], err
    CliRunner().invoke(app, ["--data-dir", str(tmp_path / "data"), "user", "create", "bob", "--password-stdin"],
                       input="password-123\n", env=KOREAN)
    code, _, err = run(tmp_path, KOREAN, "token", "create", "backup", "--user", "bob")
    # Whose token first, as Korean says it ("토큰 1 'backup' ('bob')" left the owner in brackets at the end).
    note = r"^'bob'의 토큰 \d+ 'backup': 위의 비밀 값은 이번 한 번만 표시됩니다\. "
    assert code == 0 and re.search(note, err, re.M), err
    code, out, _ = run(tmp_path, KOREAN, "user", "unlock", "bob")
    assert out.strip() == "'bob'의 로그인 잠금을 해제했습니다 (주소 0곳의 로그인 실패 기록을 지웠습니다)"
    code, out, err = run(tmp_path, KOREAN, "backup", str(tmp_path / "b.limen"), "--no-vms")
    assert code == 0 and out.startswith(f"백업 {tmp_path / 'b.limen'}: 스키마 "), err


def test_doctor_speaks_korean_to_people_and_english_to_scripts(tmp_path: Path) -> None:
    """Check names, results and fixes in Korean; the test driver's VM has no VNC graphics, so that check
    fails with its fix and the ones after it are skipped, naming the check they wait for."""
    logs = {"LIMEN_LOG_DIR": str(tmp_path / "log")}
    code, out, err = run(tmp_path, {**KOREAN, **logs}, "doctor", "test", "--server", "http://127.0.0.1:9")
    assert code == 1, err
    lines = out.splitlines()
    assert lines[0].startswith(" 1. ✓ 설정과 로그 디렉터리") and lines[0].endswith("에 쓸 수 있음")
    assert "가상 머신 실행 중" in out and "VNC 그래픽 설정" in out
    failed = next(line for line in lines if "✗" in line)
    assert "VNC 그래픽 설정" in failed and "가상 머신에 VNC 그래픽 장치가 없습니다" in failed
    fix = lines[lines.index(failed) + 1]
    assert fix.split()[0] == "해결:" and "<devices>에 추가한 뒤" in fix
    assert "'VNC 그래픽 설정' 점검을 통과해야 함" in out
    # Every check name is Korean, lined up by terminal columns (Hangul takes two).
    detail_columns = {display_width(line[:line.index(" ms  ") + 5]) for line in lines if " ms  " in line}
    assert len(detail_columns) == 1
    english_words = {"settings", "libvirt reachable", "VM running", "TCP connect", "needs", "fix:", "skip"}
    assert not any(word in out for word in english_words), out

    _code, english, _err = run(tmp_path, {**ENGLISH, **logs}, "doctor", "test", "--server", "http://127.0.0.1:9")
    assert "VNC graphics configured" in english and "fix: add to its <devices>" in english
    assert "needs 'VNC graphics configured' to pass" in english


def test_doctor_json_is_the_same_english_in_every_language(tmp_path: Path) -> None:
    def checks(env: dict[str, str]) -> list[dict[str, object]]:
        env = {**env, "LIMEN_LOG_DIR": str(tmp_path / "log")}
        code, out, err = run(tmp_path, env, "--json", "doctor", "test", "--server", "http://127.0.0.1:9")
        assert code == 1, err
        return [{**check, "seconds": 0} for check in json.loads(out)["checks"]]

    korean, english = checks(KOREAN), checks(ENGLISH)
    assert korean == english
    assert [check["name"] for check in korean][:5] == [
        "settings and log dir", "libvirt reachable", "VM exists", "VM running", "VNC graphics configured"]
    assert set(korean[0]) == {"name", "outcome", "detail", "seconds", "fix"}
    assert korean[4]["detail"] == "the VM has no VNC graphics device"
    assert korean[5]["detail"] == "needs 'VNC graphics configured' to pass"


def test_progress_labels_in_korean(tmp_path: Path) -> None:
    """What a command says while it works (here in a pipe: one plain line) is in the reader's language."""
    from limen.db.database import Database

    (tmp_path / "data").mkdir()
    database = Database(f"sqlite:///{tmp_path / 'data' / 'limen.db'}")
    database.migrate()
    database.close()
    code, _out, err = run(tmp_path, KOREAN, "backup", str(tmp_path / "b.limen"), "--no-vms")
    assert code == 0, err
    assert err.splitlines()[0].endswith(f"{tmp_path / 'b.limen'}에 백업하는 중…"), err
    code, _out, err = run(tmp_path, ENGLISH, "backup", str(tmp_path / "c.limen"), "--no-vms")
    assert code == 0, err
    assert err.startswith("backing up ") and err.splitlines()[0].endswith(f"to {tmp_path / 'c.limen'}…"), err
    code, _out, err = run(tmp_path, KOREAN, "--json", "backup", str(tmp_path / "d.limen"), "--no-vms")
    assert (code, err) == (0, "")


def help_of(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str],
            *args: str) -> str:
    from limen.cli import main

    for name, value in {**env, "COLUMNS": "120"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_help_in_korean_for_the_command_list_and_the_everyday_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    top = help_of(monkeypatch, capsys, KOREAN)
    assert "브라우저 콘솔이 멈추지 않는 libvirt 가상 머신 관리자" in top
    assert "가상 머신을 만들고, 나열하고, 제어합니다." in top and "스크립트용 JSON 출력" in top
    assert "Create, list and control VMs." not in top
    create = help_of(monkeypatch, capsys, KOREAN, "vm", "create")
    assert "가상 머신을 만듭니다(정의)." in create and "메모리(MiB)" in create and "가상 머신 이름" in create
    assert "사람이 손으로 해 볼 점검" in help_of(monkeypatch, capsys, KOREAN, "doctor")
    english = help_of(monkeypatch, capsys, ENGLISH, "vm", "create")
    assert "Create (define) a VM; it starts stopped." in english and "Memory, MiB" in english


def test_help_of_the_volumes_commands_in_korean(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``limen volumes`` and its subcommands said all of their help in English under LANG=ko_KR.UTF-8."""
    volumes = help_of(monkeypatch, capsys, KOREAN, "volumes")
    assert "스토리지 풀의 디스크 볼륨" in volumes and "각 볼륨을 쓰는 가상 머신을 나열합니다" in volumes
    assert "쓰지 않는 볼륨을 삭제합니다" in volumes and "Disk volumes" not in volumes
    delete = help_of(monkeypatch, capsys, KOREAN, "volumes", "delete")
    assert "`limen volumes list`에 나오는 볼륨 이름" in delete and "볼륨이 있는 호스트" in delete
    assert "이 호스트의 볼륨만 (기본: 모든 호스트)" in help_of(monkeypatch, capsys, KOREAN, "volumes", "list")
    assert "The host whose pool holds it" in help_of(monkeypatch, capsys, ENGLISH, "volumes", "delete")


def test_every_commands_help_and_every_parameters_has_korean() -> None:
    """Commands added after the first translation (vm media/set/resize-disk/finish-install/snapshot, iso, user,
    token, host, config) said their help in English under LANG=ko_KR.UTF-8, beside Korean ones in one list."""
    import typer.main

    from limen.cli_help import help_key, walk
    from limen.i18n import catalogue

    korean = catalogue("ko")
    untranslated = [key for path, command in walk(typer.main.get_command(app))
                    for key, text in [(help_key(path), command.help),
                                      *((help_key(path, p.name), getattr(p, "help", None)) for p in command.params)]
                    if text and not _hangul(korean.get(key, ""))]  # an English copy is no translation
    assert untranslated == []


def _hangul(text: str) -> bool:
    return any("\uac00" <= char <= "\ud7a3" for char in text)


def test_help_of_the_later_commands_and_the_help_option_in_korean(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    vm = help_of(monkeypatch, capsys, KOREAN, "vm")
    assert "가상 머신의 CD를 보거나" in vm and "디스크를 늘립니다" in vm and "Grow a disk" not in vm
    assert "이 도움말을 보여 주고 끝냄" in vm and "Show this message and exit." not in vm
    create = help_of(monkeypatch, capsys, KOREAN, "vm", "snapshot", "create")
    assert "스냅샷을 만듭니다" in create and "스냅샷과 함께 남길 설명" in create
    assert "API 토큰을 폐기합니다" in help_of(monkeypatch, capsys, KOREAN, "token")
    assert "Show this message and exit." in help_of(monkeypatch, capsys, ENGLISH, "vm")


@pytest.mark.parametrize("env", [ENGLISH, KOREAN], ids=["en", "ko"])
def test_help_shows_no_type_beside_a_flag_and_no_unasked_no_x_twin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    """Every flag read as if it took a value (``--json <bool>``, ``--help <bool>``), and ``--force`` had a
    ``--no-force`` twin nobody asked for: ``--force  --no-force  <bool>  … [default: no-force]``."""
    top = help_of(monkeypatch, capsys, env)
    assert "<bool>" not in top and "<path>" in top  # options that take a value keep their type
    stop = help_of(monkeypatch, capsys, env, "vm", "stop")
    assert "<bool>" not in stop and "--no-force" not in stop and "default" not in stop
    assert "--delete-disks" in (delete := help_of(monkeypatch, capsys, env, "vm", "delete"))
    assert "--no-delete-disks" not in delete and "<bool>" not in delete


def test_each_languages_help_tree_is_made_once_and_keeps_its_own_texts() -> None:
    """``limen --help`` builds click's tree of ~60 commands (~25 ms of CPU); a language's is built once."""
    from limen.cli import app
    from limen.cli_help import localized_command

    korean = localized_command(app, "ko")
    english = localized_command(app, "en")
    assert localized_command(app, "ko") is korean and localized_command(app, "en") is english
    assert "가상 머신을 만들고, 나열하고, 제어합니다." in korean.commands["vm"].help
    assert english.commands["vm"].help.startswith("Create, list and control VMs.")


def test_the_english_help_catalogue_is_the_docstrings() -> None:
    """The docstrings and ``help=`` are English's one source; the catalogue's English repeats them (it must,
    every key being in both languages) and cannot drift from them."""
    import typer.main

    from limen.cli_help import help_key, walk
    from limen.i18n import catalogue

    texts: dict[str, str | None] = {}
    for path, command in walk(typer.main.get_command(app)):
        texts[help_key(path)] = command.help
        texts.update({help_key(path, p.name): getattr(p, "help", None) for p in command.params})
    english = {key: text for key, text in catalogue("en").items() if key.startswith("cli.help")}
    assert len(english) > 40
    assert {key: texts.get(key) for key in english} == english


def test_states_roles_and_devices_are_said_in_korean_not_as_their_identifiers() -> None:
    """doctor said "가상 머신 상태: stopped", snapshot list "(shutoff, …)" and "with memory", vm show "(disk, …)"."""
    assert "중지됨" in Said("cli.doctor.vm_state", {"state": Said("cli.state.stopped")})("ko")
    assert "stopped" in str(Said("cli.doctor.vm_state", {"state": Said("cli.state.stopped")}))  # --json: English
    for key, korean in (("cli.state.stopped", "중지됨"), ("cli.snapshot.kind_memory", "메모리 포함"),
                        ("cli.device.disk", "디스크"), ("cli.device.cdrom", "CD-ROM"), ("cli.role.admin", "관리자")):
        assert translate("ko", key) == korean, key


def test_doctor_says_to_trust_the_certificate_or_use_https_not_to_start_a_running_server() -> None:
    """--server https://… without LIMEN_TLS_CERT (CERTIFICATE_VERIFY_FAILED) and http:// against a TLS server
    (RemoteDisconnected) were both told "start the server"."""
    untrusted = ssl.SSLCertVerificationError("certificate verify failed: self-signed certificate")
    assert "LIMEN_TLS_CERT" in str(_unreachable_fix("https://127.0.0.1:8443", untrusted))
    plain = _unreachable_fix("http://127.0.0.1:8443", http.client.RemoteDisconnected("closed"))
    assert "--server https://127.0.0.1:8443" in str(plain)
    assert _unreachable_fix("http://127.0.0.1:8080", ConnectionRefusedError()) is START_SERVER_FIX
