"""``limen user …`` and ``limen token …`` against a real SQLite file."""

from __future__ import annotations

import asyncio
import io
import json
import re
from pathlib import Path

import pytest
import typer

from limen.auth.access import Access
from limen.auth.ratelimit import TooManyAttempts
from limen.cli import CliState
from limen.cli_users import token_app, user_app
from limen.settings import load_settings
from tests.support.cli import CliRunner
from tests.support.net import free_port

NASTY = "O'Brien \"q\" <script>alert(1)</script>; DROP TABLE users;-- Ωμ🐧"


@pytest.fixture
def cli(tmp_path: Path) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def options(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
        ctx.obj = CliState(None, {"data_dir": tmp_path / "data", "libvirt_uri": "test:///default"}, as_json)

    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")
    return app


def run(cli: typer.Typer, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def authenticate(tmp_path: Path, name: str, password: str) -> bool:
    async def check() -> bool:
        access = Access(load_settings(None, data_dir=tmp_path / "data"))
        await access.start()
        try:
            return await access.users.authenticate(name, password) is not None
        finally:
            await access.close()

    return asyncio.run(check())


def test_create_list_and_duplicate(cli: typer.Typer, tmp_path: Path) -> None:
    assert run(cli, "user", "create", NASTY, "--password-stdin", stdin="pw-from-stdin\n")[0] == 0
    code, out, _ = run(cli, "user", "create", "root", "--admin", stdin="prompted-pw\nprompted-pw\n")
    assert code == 0 and "created admin 'root'" in out
    assert "prompted-pw" not in out
    code, _, err = run(cli, "user", "create", "root", "--password-stdin", stdin="another-pw\n")
    assert code == 1 and "USER_ALREADY_EXISTS" in err
    code, out, _ = run(cli, "--json", "user", "list")
    assert code == 0
    assert [(u["name"], u["role"]) for u in json.loads(out)] == sorted([(NASTY, "user"), ("root", "admin")])
    assert {u["approved"] for u in json.loads(out)} == {True}
    code, out, _ = run(cli, "user", "list")  # every status said: an active user's cell was empty
    assert code == 0 and [line.split()[-3] for line in out.splitlines()[1:] if line] == ["active", "active"], out
    assert all(re.search(r"  \d{4}-\d\d-\d\d \d\d:\d\d$", line) for line in out.splitlines()[1:]), out  # to the minute
    assert authenticate(tmp_path, NASTY, "pw-from-stdin")
    assert authenticate(tmp_path, "root", "prompted-pw")


def test_short_password_is_refused(cli: typer.Typer) -> None:
    code, _, err = run(cli, "user", "create", "alice", "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 8" in err and "short" not in err.replace("at least", "")


def test_ensure_admin_prints_a_password_once(cli: typer.Typer, tmp_path: Path) -> None:
    code, out, _ = run(cli, "--json", "user", "ensure-admin")
    assert code == 0
    first = json.loads(out)
    assert first["name"] == "admin" and len(first["password"]) >= 20
    assert authenticate(tmp_path, "admin", first["password"])
    code, out, err = run(cli, "user", "ensure-admin")
    assert code == 0 and out == "" and "nothing to do" in err
    code, _, _ = run(cli, "user", "passwd", "admin", "--password-stdin", stdin="a-new-password\n")
    assert code == 0 and authenticate(tmp_path, "admin", "a-new-password")


def test_a_password_set_from_the_command_line_signs_the_user_out_everywhere(cli: typer.Typer, tmp_path: Path) -> None:
    # A password is reset because someone else may know it, and may be signed in with it: their browser
    # stayed signed in for the session's 12 hours. API tokens stay (each is its own secret).
    run(cli, "user", "create", "bob", "--password-stdin", stdin="bobs-old-password\n")
    token = run(cli, "--json", "token", "create", "--user", "bob", "script")[1]

    async def sign_in_twice() -> list[str]:
        access = Access(load_settings(None, data_dir=tmp_path / "data"))
        await access.start()
        try:
            return [(await access.sessions.create("bob")).cookie for _ in range(2)]
        finally:
            await access.close()

    async def still_signed_in(cookies: list[str]) -> list[bool]:
        access = Access(load_settings(None, data_dir=tmp_path / "data"))
        await access.start()
        try:
            return [await access.sessions.resolve(cookie) is not None for cookie in cookies]
        finally:
            await access.close()

    cookies = asyncio.run(sign_in_twice())
    assert asyncio.run(still_signed_in(cookies)) == [True, True]
    assert run(cli, "user", "passwd", "bob", "--password-stdin", stdin="bobs-new-password\n")[0] == 0
    assert asyncio.run(still_signed_in(cookies)) == [False, False]
    assert authenticate(tmp_path, "bob", "bobs-new-password")
    assert [t["name"] for t in json.loads(run(cli, "--json", "token", "list")[1])] == [json.loads(token)["name"]]


def test_a_change_running_servers_could_not_be_told_of_exits_1_saying_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With LIMEN_REDIS_URL on a Redis the command cannot reach, `limen user set-role` made the change, said
    so and exited 0: a script offboarding a user took the consoles for ended, while every replica kept them."""
    from limen.cli import main

    for name, value in {"LIMEN_DATA_DIR": str(tmp_path / "data"), "LIMEN_LOG_DIR": str(tmp_path / "log"),
                        "LIMEN_LANG": "en", "LIMEN_LIBVIRT_URI": "test:///default"}.items():
        monkeypatch.setenv(name, value)

    def limen(*args: str) -> tuple[int | str | None, str]:
        with pytest.raises(SystemExit) as exited:
            main(list(args))
        return exited.value.code, capsys.readouterr().err

    for name in ("admin", "dave"):
        monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
        assert limen("user", "create", name, "--admin", "--password-stdin")[0] == 0
    monkeypatch.setenv("LIMEN_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    code, said = limen("user", "set-role", "dave", "user")
    assert code == 1, said
    assert "could not be told through Redis" in said and "stay open" in said, said
    monkeypatch.delenv("LIMEN_REDIS_URL")
    assert limen("user", "set-role", "dave", "admin")[0] == 0  # told nothing untold of the one before


def test_ensure_admin_creates_one_only_when_none_is_enabled(cli: typer.Typer) -> None:
    run(cli, "user", "create", "alice", "--password-stdin", stdin="alice-password\n")
    code, out, _ = run(cli, "user", "ensure-admin")
    assert code == 0 and "created administrator 'admin' with password: " in out
    assert run(cli, "user", "set-role", "alice", "admin")[0] == 0
    assert run(cli, "user", "set-role", "nobody", "admin")[0] == 1


def test_ensure_admin_says_what_to_do_when_admin_is_a_plain_user(cli: typer.Typer) -> None:
    """USER_ALREADY_EXISTS, "choose another user name", to a command that takes no name."""
    run(cli, "user", "create", "Admin", "--password-stdin", stdin="admin-password\n")  # not an administrator
    code, _, err = run(cli, "user", "ensure-admin")
    assert code == 1 and "limen user set-role Admin admin" in err and "USER_ALREADY_EXISTS" not in err, err
    assert run(cli, "user", "set-role", "Admin", "admin")[0] == 0
    assert "nothing to do" in run(cli, "user", "ensure-admin")[2]


def test_tokens(cli: typer.Typer, tmp_path: Path) -> None:
    run(cli, "user", "create", "alice", "--password-stdin", stdin="alice-password\n")
    code, out, err = run(cli, "token", "create", NASTY, "--user", "alice")
    assert code == 0
    secret = out.strip()
    assert secret.startswith("limen_") and "shown once" in err
    code, out, _ = run(cli, "--json", "token", "list")
    [listed] = json.loads(out)
    assert listed["name"] == NASTY and listed["owner"] == "alice" and secret not in out
    assert listed["revoked_at"] is None
    assert run(cli, "token", "revoke", str(listed["id"]))[0] == 0
    assert json.loads(run(cli, "--json", "token", "list", "--user", "alice")[1])[0]["revoked_at"]
    code, _, err = run(cli, "token", "list", "--user", "nobody")  # it said "no API tokens", exit 0
    assert code == 1 and "USER_NOT_FOUND" in err
    assert run(cli, "token", "revoke", "999")[0] == 1
    assert run(cli, "token", "create", "x", "--user", "nobody")[0] == 1


def test_unlock_lifts_a_users_sign_in_blocks(cli: typer.Typer, tmp_path: Path) -> None:
    run(cli, "user", "create", NASTY, "--password-stdin", stdin="nasty-password\n")

    async def fail_from(address: str) -> None:
        access = Access(load_settings(None, data_dir=tmp_path / "data"))
        await access.start()
        try:
            for _ in range(access.settings.login_max_failures_per_user):
                await (await access.login_limiter.begin(NASTY.upper(), address)).failed()
            with pytest.raises(TooManyAttempts):
                await access.login_limiter.begin(NASTY, address)
        finally:
            await access.close()

    asyncio.run(fail_from("192.0.2.1"))
    asyncio.run(fail_from("2001:db8::1"))
    code, out, _ = run(cli, "--json", "user", "unlock", NASTY.lower())  # case-blind, as names are
    assert code == 0 and json.loads(out) == {"name": NASTY, "cleared": 2}

    async def admitted_from(address: str) -> None:
        access = Access(load_settings(None, data_dir=tmp_path / "data"))
        await access.start()
        try:
            await (await access.login_limiter.begin(NASTY, address)).succeeded()
        finally:
            await access.close()

    asyncio.run(admitted_from("192.0.2.1"))
    asyncio.run(admitted_from("2001:db8::1"))
    code, out, _ = run(cli, "user", "unlock", NASTY)
    assert code == 0 and "from 0 address(es)" in out
    code, _, err = run(cli, "user", "unlock", "nobody")
    assert code == 1 and "USER_NOT_FOUND" in err


def test_delete_a_user_but_never_the_last_enabled_admin(cli: typer.Typer, tmp_path: Path) -> None:
    assert run(cli, "user", "create", "root", "--admin", "--password-stdin", stdin="root-password\n")[0] == 0
    assert run(cli, "user", "create", NASTY, "--password-stdin", stdin="nasty-password\n")[0] == 0
    assert run(cli, "token", "create", "script", "--user", NASTY)[0] == 0
    code, out, _ = run(cli, "user", "delete", NASTY)
    assert code == 0 and f"deleted user {NASTY!r}" in out
    assert not authenticate(tmp_path, NASTY, "nasty-password")
    assert json.loads(run(cli, "--json", "token", "list")[1]) == []  # its tokens went with it
    code, _, err = run(cli, "user", "delete", "root")
    assert code == 1 and "LAST_ADMINISTRATOR" in err and "last enabled administrator" in err
    # Nor demoted first (then the delete passed): the API refused that; the command line did not.
    code, _, err = run(cli, "user", "set-role", "root", "user")
    assert code == 1 and "LAST_ADMINISTRATOR" in err and "last enabled administrator" in err
    code, _, err = run(cli, "user", "delete", "nobody")
    assert code == 1 and "USER_NOT_FOUND" in err
    assert authenticate(tmp_path, "root", "root-password")
