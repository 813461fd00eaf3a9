"""Arguments that are not UTF-8 (bytes of another encoding reach Python as lone surrogates): every command
refuses them first, as a usage error (exit 2) that names the argument and its bytes, in the reader's
language, and does nothing. ``limen user delete $'\\xff'`` printed a traceback from the database's driver,
and ``limen backup`` to such a file wrote it, then failed printing its name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from limen.auth.users import Users
from limen.cli import is_utf8_text, main
from limen.db import Database
from tests.conftest import TEST_DRIVER_URI
from tests.support.access import provision_user

NOT_UTF8 = os.fsdecode(b"caf\xe9")  # Latin-1's "café"


def exit_code_of(tmp_path: Path, *args: str) -> int | str | None:
    with pytest.raises(SystemExit) as exited:
        main(["--libvirt-uri", TEST_DRIVER_URI, "--data-dir", str(tmp_path / "data"), *args])
    return exited.value.code


@pytest.mark.parametrize(("language", "said"), [
    ("en", "limen: argument 7 is not UTF-8 text: caf\\xe9\n"),
    ("ko", "limen: 7번째 인자가 UTF-8 텍스트가 아닙니다: caf\\xe9\n"),
])
def test_a_name_that_is_not_utf8_is_a_usage_error_that_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], language: str, said: str,
) -> None:
    monkeypatch.setenv("LIMEN_LANG", language)
    url = f"sqlite:///{tmp_path / 'data' / 'limen.db'}"
    (tmp_path / "data").mkdir()
    provision_user(url, "alice", "a long enough password")
    assert exit_code_of(tmp_path, "user", "delete", NOT_UTF8) == 2
    err = capsys.readouterr().err
    assert err.startswith(said), err
    database = Database(url)
    try:
        assert [user.name for user in database.run_sync(Users.list_in)] == ["alice"]
    finally:
        database.close()


def test_a_file_name_that_is_not_utf8_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / NOT_UTF8
    assert exit_code_of(tmp_path, "backup", str(target)) == 2
    assert "\\xe9" in capsys.readouterr().err
    assert not target.exists()


def test_utf8_text_of_every_script_passes() -> None:
    assert all(map(is_utf8_text, ["web-1", "가상머신", "café", "/var/lib/limen/백업.limen", "", "😀"]))
    assert not is_utf8_text(NOT_UTF8)
