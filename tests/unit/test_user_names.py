"""User names are one name in any case: ``Sec`` beside ``sec`` is refused (API, command line, database,
a database from before name_key), and sign-in and lookups by name find the user whatever the case typed,
always carrying on with the name as it was first written. Real SQLite; the API in-process."""

from __future__ import annotations

import asyncio
import json
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import typer
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from limen.api.services import services_of
from limen.auth.access import Access
from limen.cli import CliState
from limen.cli import app as cli_app
from limen.cli_users import token_app, user_app
from limen.db import Database, Role
from limen.db.database import MIGRATIONS_DIR
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.ownership import set_owner
from limen.settings import Settings, load_settings
from tests.conftest import settings_in
from tests.support.access import assert_error, make_access, provision_user
from tests.support.cli import CliRunner
from tests.support.shared_app import SharedApp, shared_app

ADMIN, PASSWORD = "Root", "a-long-password"


class World:
    def __init__(self, client: httpx.AsyncClient, access: Access, admin: dict[str, str]) -> None:
        self.client = client
        self.access = access
        self.admin = admin

    async def create(self, name: str, role: str = "user") -> httpx.Response:
        return await self.client.post("/api/users", headers=self.admin,
                                      json={"name": name, "password": PASSWORD, "role": role})


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[SharedApp, dict[str, str]]]:
    """One app for the module, with its admin and their token made once; each test gets it back as then."""
    async with shared_app(settings_in(tmp_path_factory.mktemp("user-names"))) as shared:
        await shared.access.users.create(ADMIN, PASSWORD, Role.ADMIN)
        admin = {"Authorization": f"Bearer {(await shared.access.tokens.create(ADMIN, 'tests')).secret}"}
        shared.keep_as_start()
        yield shared, admin


@pytest.fixture
async def world(shared: tuple[SharedApp, dict[str, str]]) -> AsyncIterator[World]:
    app, admin = shared
    await app.reset()
    await set_owner(services_of(app.app).hypervisor, "test", None)
    yield World(app.client, app.access, admin)
    await set_owner(services_of(app.app).hypervisor, "test", None)


@pytest.mark.parametrize(("first", "second"), [("sec", "Sec"), ("Sec", "SEC"), ("Straße", "STRASSE"),
                                               ("ΣΊΣΥΦΟΣ", "σίσυφος"), ("e\u0301te\u0301", "ÉTÉ")])
async def test_a_second_spelling_of_a_name_is_refused(world: World, first: str, second: str) -> None:
    assert (await world.create(first)).status_code == 201
    body = assert_error(await world.create(second), 409, "USER_ALREADY_EXISTS")
    kept = unicodedata.normalize("NFC", first)  # names are kept in NFC
    assert repr(kept) in body["details"]  # the name as kept, which the admin can then look for
    listed = [user["name"] for user in (await world.client.get("/api/users", headers=world.admin)).json()]
    assert listed.count(kept) == 1 and second not in listed


async def test_parallel_creates_of_two_spellings_let_exactly_one_in(world: World) -> None:
    for round_ in range(5):
        answers = await asyncio.gather(world.create(f"Sec{round_}"), world.create(f"sec{round_}"))
        assert sorted(answer.status_code for answer in answers) == [201, 409], [a.text for a in answers]
    names = [user["name"].casefold() for user in (await world.client.get("/api/users", headers=world.admin)).json()]
    assert len(names) == len(set(names))


async def test_sign_in_takes_any_case_and_the_session_is_the_user_as_kept(world: World) -> None:
    assert (await world.create("Sec")).status_code == 201
    for typed in ("Sec", "sec", "SEC"):
        signed_in = await world.client.post("/api/login", json={"name": typed, "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["name"] == "Sec"
        assert (await world.client.get("/api/me")).json()["name"] == "Sec"
        world.client.cookies.clear()
    assert_error(await world.client.post("/api/login", json={"name": "SEC", "password": "not-the-password"}),
                 401, "INVALID_CREDENTIALS")


async def test_admin_lookups_by_name_take_any_case(world: World) -> None:
    assert (await world.create("Sec")).status_code == 201
    changed = await world.client.put("/api/users/SEC/role", headers=world.admin, json={"role": "admin"})
    assert changed.status_code == 200 and changed.json()["name"] == "Sec" and changed.json()["role"] == "admin"
    given = await world.client.put("/api/vms/test/owner", headers=world.admin, json={"owner": "sEC"})
    assert given.status_code == 200 and given.json()["owner"] == "Sec"
    made = await world.client.post("/api/tokens", headers=world.admin, json={"name": "script", "user": "sec"})
    assert made.status_code == 201 and made.json()["owner"] == "Sec"
    assert_error(await world.client.put("/api/users/nobody/role", headers=world.admin, json={"role": "user"}),
                 404, "USER_NOT_FOUND")


async def test_the_last_admin_is_kept_whatever_case_names_them(world: World) -> None:
    for path, body in (("role", {"role": "user"}), ("disabled", {"disabled": True})):
        assert_error(await world.client.put(f"/api/users/ROOT/{path}", headers=world.admin, json=body),
                     409, "LAST_ADMINISTRATOR")
    assert (await world.access.users.get("root")).role is Role.ADMIN


# -- the command line -----------------------------------------------------------------------------------


def test_the_command_line_refuses_a_second_spelling(tmp_path: Path) -> None:
    app = typer.Typer()

    @app.callback()
    def options(ctx: typer.Context) -> None:
        ctx.obj = CliState(None, {"data_dir": tmp_path / "data", "libvirt_uri": "test:///default"}, False)

    app.add_typer(user_app, name="user")
    app.add_typer(token_app, name="token")

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, list(args), input="a-long-password\n")
        return result.exit_code, result.stdout, result.stderr

    assert run("user", "create", "sec", "--password-stdin")[0] == 0
    code, _, err = run("user", "create", "Sec", "--password-stdin")
    assert code == 1 and "USER_ALREADY_EXISTS" in err and "'sec'" in err
    code, out, _ = run("user", "set-role", "SEC", "admin")
    assert code == 0 and "'sec'" in out
    code, out, err = run("token", "create", "script", "--user", "SEC")
    assert code == 0 and "for 'sec'" in out + err
    result = CliRunner().invoke(app, ["user", "list"])
    assert result.exit_code == 0 and "Sec" not in result.stdout


def test_limen_vm_create_gives_the_vm_to_the_user_as_kept(tmp_path: Path) -> None:
    settings = {"data_dir": tmp_path / "data", "libvirt_uri": "test:///default", "iso_dir": tmp_path}
    provision_user(load_settings(None, **settings).db_url, "Sec", PASSWORD)
    name = f"owned-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(cli_app, ["--data-dir", str(tmp_path / "data"), "--libvirt-uri", "test:///default",
                                          "--iso-dir", str(tmp_path), "--json", "vm", "create", name,
                                          "--owner", "SEC"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["owner"] == "Sec"  # (the test driver forgets the VM with its connection)
    result = CliRunner().invoke(cli_app, ["--data-dir", str(tmp_path / "data"), "vm", "create", name + "x",
                                          "--owner", "nobody"])
    assert result.exit_code == 1 and "USER_NOT_FOUND" in result.stderr


# -- a database from before name_key ------------------------------------------------------------------


def _upgrade(db: Database, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_a_0001_database_with_users_gets_their_name_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    try:
        _upgrade(db, "0001_access")
        with db.engine.begin() as connection:
            for name in ("Sec", "Straße", "alice"):
                connection.execute(text(
                    "INSERT INTO users (name, password_hash, role, created_at, disabled) "
                    "VALUES (:name, 'x', 'user', :now, 0)"), {"name": name, "now": datetime.now(UTC)})
        db.migrate()
        with db.engine.connect() as connection:
            keys: dict[str, str] = {row.name: row.name_key
                                    for row in connection.execute(text("SELECT name, name_key FROM users"))}
    finally:
        db.close()
    assert keys == {"Sec": "sec", "Straße": "strasse", "alice": "alice"}


async def test_two_spellings_from_before_both_survive_the_upgrade(make_settings: Callable[..., Settings]) -> None:
    """The older keeps the name in any case; the newer is reached by its exact name (nobody is locked out)."""
    settings = make_settings()
    db = Database(settings.db_url)
    _upgrade(db, "0001_access")
    db.close()
    access = make_access(settings)
    with db.engine.begin() as connection:  # the 0001 schema had no name_key: insert straight in
        for name in ("Sec", "sec"):
            connection.execute(text("INSERT INTO users (name, password_hash, role, created_at, disabled) "
                                    "VALUES (:name, :hash, 'user', :now, 0)"),
                               {"name": name, "hash": access.passwords.hash(f"{name}-password-long"),
                                "now": datetime.now(UTC)})
    db.close()
    await access.start()
    try:
        for typed, kept in (("Sec", "Sec"), ("SEC", "Sec"), ("sec", "sec")):
            assert (await access.users.get(typed)).name == kept
            principal = await access.users.authenticate(typed, f"{kept}-password-long")
            assert principal is not None and principal.name == kept
        with pytest.raises(LimenError) as caught:
            await access.users.create("sEc", PASSWORD)
        assert caught.value.code is ErrorCode.USER_ALREADY_EXISTS
    finally:
        await access.close()


async def test_after_the_upgrade_a_second_spelling_is_refused(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    db = Database(settings.db_url)
    _upgrade(db, "0001_access")
    with db.engine.begin() as connection:
        connection.execute(text("INSERT INTO users (name, password_hash, role, created_at, disabled) "
                                "VALUES ('Sec', 'x', 'user', :now, 0)"), {"now": datetime.now(UTC)})
    db.close()
    access = make_access(settings)
    await access.start()
    try:
        with pytest.raises(LimenError) as caught:
            await access.users.create("sec", PASSWORD)
        assert caught.value.code is ErrorCode.USER_ALREADY_EXISTS
        assert json.dumps((await access.users.get("SEC")).name) == '"Sec"'
    finally:
        await access.close()
