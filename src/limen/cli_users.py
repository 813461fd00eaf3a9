"""``limen user …`` and ``limen token …``: users, roles and API tokens from the command line.

Mounted by :mod:`limen.cli` (``app.add_typer(user_app, name="user")`` and the same for ``token_app``);
``ctx.obj`` is its CliState, whose ``settings()`` gives the one Settings object. There is no default
password anywhere: ``user create`` prompts (or reads ``--password-stdin``), and ``user ensure-admin``
makes the first administrator with a random password that it prints once.

Changes that take away the right to a console (``user set-role NAME user``, ``user delete``, ``token
revoke``) are told to running servers through Redis when ``LIMEN_REDIS_URL`` is set, so their live consoles
end; without Redis a running server learns of them only when a console is opened next.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.exc import SQLAlchemyError

from limen import end_details
from limen.audit import AuditLog
from limen.auth.access import login_throttle_policy
from limen.auth.passwords import Passwords, generate_password
from limen.auth.principal import token_credential
from limen.auth.principal_cache import touch_credentials_stamp
from limen.auth.revocation import Revocation
from limen.auth.revocation_bus import publish_from_command_line
from limen.auth.throttle_store import ThrottleStore, make_throttle_store, throttle_address
from limen.auth.tokens import TokenInfo, Tokens
from limen.auth.users import UserInfo, Users, find_user_by_key
from limen.cli_audit import command_line_actor
from limen.cli_output import failed, moment, say, table
from limen.cli_state import cli_state
from limen.clock import system_clock
from limen.db import Database
from limen.db.database import database_fault
from limen.db.models import Role
from limen.deleted_owners import release_vms_of
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import Hypervisor
from limen.settings import Settings
from limen.url_redaction import redacted_url

T = TypeVar("T")

user_app = typer.Typer(help="Users and their roles (admin: everything; user: own VMs only).", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for scripts (Authorization: Bearer …).", no_args_is_help=True)

FIRST_ADMIN = "admin"


class _Directory:
    """The database, migrated, with the user and token services over it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.db_url)
        migrated_from = self.db.migrate()
        if migrated_from:
            # Said: a command run before the restart migrated the schema under a server still on the old one.
            typer.echo(say("cli.schema_migrated", database=self.db.redacted_url, revision=", ".join(migrated_from)),
                       err=True)
        self.users = Users(self.db, Passwords.of(settings), system_clock)
        self.tokens = Tokens(self.db, system_clock)


def _run(ctx: typer.Context, work: Callable[[_Directory], T]) -> T:
    return run_directory(cli_state(ctx).settings(), work)


def run_directory(settings: Settings, work: Callable[[_Directory], T]) -> T:
    """``work`` on the users and tokens of ``settings``' database; a LimenError is printed, exit code 1, and so
    is a database that cannot be opened or does not answer (it was a traceback of SQLAlchemy's), as
    ``limen serve`` says it."""
    try:
        directory = _Directory(settings)
    except (SQLAlchemyError, ModuleNotFoundError) as exc:
        raise _no_database(settings, exc) from None
    try:
        return work(directory)
    except LimenError as exc:
        raise failed(exc) from None
    except SQLAlchemyError as exc:
        raise _no_database(settings, exc) from None
    finally:
        directory.db.close()


def _no_database(settings: Settings, exc: BaseException) -> typer.Exit:
    fault = database_fault(settings.db_url, settings.data_dir, exc)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    typer.echo(say(f"cli.serve.no_database.{fault.value}", url=redacted_url(settings.db_url), reason=reason,
                   data_dir=settings.data_dir), err=True)
    return typer.Exit(1)


def _tell_servers(directory: _Directory, revocation: Revocation) -> None:
    """Ends the consoles the change took the right from, on running servers that share this Redis; running
    servers on this host without one forget the principals they remembered (the credentials stamp). One Redis
    did not take is counted (:func:`take_untold_revocations`): the command says so at its end, and exits 1."""
    touch_credentials_stamp(directory.settings.data_dir)
    redis_url = directory.settings.redis_url
    if redis_url and not publish_from_command_line(redis_url, revocation):
        _untold.append(revocation)


_untold: list[Revocation] = []


def take_untold_revocations() -> int:
    """How many of this command's revocations Redis did not take (forgotten then: the next command counts its
    own): the servers that read it never heard them. A command that could not reach Redis said it had made
    the change and exited 0, while the consoles it should have ended stayed open on every replica."""
    count = len(_untold)
    _untold.clear()
    return count


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password



def _user_dict(user: UserInfo) -> dict[str, Any]:
    return {"name": user.name, "role": user.role.value, "created_at": user.created_at.isoformat(),
            "disabled": user.disabled, "approved": user.approved}


def _token_dict(token: TokenInfo) -> dict[str, Any]:
    return {
        "id": token.id, "name": token.name, "owner": token.owner, "prefix": token.prefix,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input")]


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name")],
    admin: Annotated[bool, typer.Option("--admin", help="Make an administrator")] = False,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user (prompts for the password unless --password-stdin)."""
    password = _read_password(password_stdin)
    role = Role.ADMIN if admin else Role.USER
    user = _run(ctx, lambda d: d.users.create_sync(name, password, role))
    typer.echo(json.dumps(_user_dict(user)) if cli_state(ctx).as_json
               else say("cli.user_created", role=say(f"cli.role.{user.role.value}"), name=repr(user.name)))


@user_app.command("list")
def user_list(ctx: typer.Context) -> None:
    """List users."""
    users = _run(ctx, lambda d: d.db.run_sync(Users.list_in))
    if cli_state(ctx).as_json:
        typer.echo(json.dumps([_user_dict(user) for user in users], indent=2, ensure_ascii=False))
        return
    # Every user's status said (an active one's cell was empty).
    rows = [[u.name, say(f"cli.role.{u.role.value}"),
             say("cli.user.disabled" if u.disabled else "cli.user.pending" if not u.approved else "cli.user.active"),
             moment(u.created_at)] for u in users]
    typer.echo(table(rows, ["cli.col.name", "cli.col.role", "cli.col.status", "cli.col.created"]) if rows
               else say("cli.no_users"))


@user_app.command("passwd")
def user_passwd(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="User name")], password_stdin: PasswordStdin = False
) -> None:
    """Set a user's password."""
    password = _read_password(password_stdin)

    def run(directory: _Directory) -> None:
        user, ended = directory.users.set_password_sync(name, password)
        # Their browsers are signed out (done in the database); running servers forget the sessions they
        # remembered, and end the consoles those sessions opened. No sign-in ended: nothing to forget.
        for credential in ended:
            _tell_servers(directory, Revocation.credential_revoked(credential, end_details.password_reset_cli(user)))

    _run(ctx, run)
    typer.echo(say("cli.password_changed", name=repr(name)))


@user_app.command("set-role")
def user_set_role(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name")],
    role: Annotated[Role, typer.Argument(help="admin or user")],
) -> None:
    """Make a user an administrator, or a plain user."""
    def run(directory: _Directory) -> str:
        user = directory.users.set_role_sync(name, role)
        touch_credentials_stamp(directory.settings.data_dir)  # a promotion shows at once too
        if role is not Role.ADMIN:
            _tell_servers(directory, Revocation.user_changed(
                user.name, end_details.no_longer_admin(user.name, None)))
        return user.name

    user_name = _run(ctx, run)
    typer.echo(say("cli.role_changed", name=repr(user_name), role=say(f"cli.role.{role.value}")))


def _clear_throttle_keys(directory: _Directory, clear: Callable[[ThrottleStore], Awaitable[int]]) -> int:
    """Runs ``clear`` on the sign-in throttle's store the server uses (Redis or the database); its count."""
    settings = directory.settings
    store = make_throttle_store(settings.redis_url, directory.db, login_throttle_policy(settings))

    async def run() -> int:
        try:
            return await clear(store)
        finally:
            await store.close()

    return asyncio.run(run())


@user_app.command("unlock")
def user_unlock(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="User name")] = None,
    address: Annotated[str | None, typer.Option(
        "--address", help="Lift the blocks at this client address instead (an IPv6 address: its /64)")] = None,
) -> None:
    """Lift the user's sign-in blocks at every address, or with --address every block at one address: its own
    (it guessed at many names) and each name's there (in Redis when LIMEN_REDIS_URL is set)."""
    if (name is None) == (address is None):
        raise typer.BadParameter("give a user name or --address, one of the two")
    if address is not None:
        _unlock_address(ctx, address)
        return
    assert name is not None

    def run(directory: _Directory) -> tuple[str, int]:
        found = directory.db.run_sync(lambda session: find_user_by_key(session, name))
        if found is None:
            raise LimenError(ErrorCode.USER_NOT_FOUND, f"no user named {name!r}")
        user = UserInfo.of(found)
        return user.name, _clear_throttle_keys(directory, lambda store: store.clear_user(user.name))

    user_name, cleared = _run(ctx, run)
    if cli_state(ctx).as_json:
        typer.echo(json.dumps({"name": user_name, "cleared": cleared}, ensure_ascii=False))
        return
    typer.echo(say("cli.unlocked", name=repr(user_name), count=cleared))


def _unlock_address(ctx: typer.Context, address: str) -> None:
    try:
        where = throttle_address(str(ipaddress.ip_address(address)))
    except ValueError:
        raise typer.BadParameter(f"{address!r} is not an IP address", param_hint="--address") from None

    cleared = _run(ctx, lambda directory: _clear_throttle_keys(directory, lambda store: store.clear_address(where)))
    if cli_state(ctx).as_json:
        typer.echo(json.dumps({"address": where, "cleared": cleared}))
        return
    typer.echo(say("cli.address_unlocked", address=where, count=cleared))


@user_app.command("delete")
def user_delete(ctx: typer.Context, name: Annotated[str, typer.Argument(help="User name")]) -> None:
    """Delete a user with their API tokens and sign-ins (the audit keeps their name). The last enabled
    administrator cannot be deleted. VMs they owned pass to no owner (administrators only) first."""

    def run(directory: _Directory) -> UserInfo:
        kept = directory.db.run_sync(lambda session: UserInfo.of(Users.deletable_in(session, name, by=None)))
        # Running servers end their consoles before libvirt changes their VMs' owner, and again after.
        _tell_servers(directory, Revocation.user_changed(
            kept.name, end_details.user_deleted(kept.name, None)))
        asyncio.run(_release_vms(directory, kept.name))
        user = directory.db.run_sync(lambda session: Users.delete_in(session, name, by=None))
        _tell_servers(directory, Revocation.user_changed(
            user.name, end_details.user_deleted(user.name, None)))
        # Again: a VM given to them (owner change, create) after the first pass and before they went. They are
        # deleted by now; a VM given to them later finds them gone (limen.deleted_owners), so a libvirt that
        # stopped answering in between is not this command's failure.
        with contextlib.suppress(LimenError):
            asyncio.run(_release_vms(directory, user.name))
        return user

    user = _run(ctx, run)
    typer.echo(json.dumps(_user_dict(user)) if cli_state(ctx).as_json
               else say("cli.user_deleted", role=say(f"cli.role.{user.role.value}"), name=repr(user.name)))


async def _release_vms(directory: _Directory, owner: str) -> None:
    """The VMs ``owner`` owned pass to no owner (limen.deleted_owners), each audited as the command line's."""
    hypervisor = Hypervisor(directory.settings)
    await hypervisor.open()
    try:
        audit = AuditLog(directory.db, system_clock)
        for vm in await release_vms_of(hypervisor, audit, owner, actor=command_line_actor()):
            typer.echo(say("cli.vm_no_owner", name=repr(vm.name)), err=True)
    finally:
        await hypervisor.close()


@user_app.command("ensure-admin")
def user_ensure_admin(ctx: typer.Context) -> None:
    """If no administrator exists, create 'admin' with a random password and print it (once)."""
    password = generate_password()

    def run(directory: _Directory) -> UserInfo | str | None:
        if directory.db.run_sync(Users.admin_exists_in):
            return None
        # No administrator, and "admin" is a user that is not one: USER_ALREADY_EXISTS said "choose another
        # user name" to a command that takes none.
        taken = directory.db.run_sync(lambda session: find_user_by_key(session, FIRST_ADMIN))
        if taken is not None:
            return taken.name
        return directory.users.create_sync(FIRST_ADMIN, password, Role.ADMIN)

    created = _run(ctx, run)
    if created is None:
        typer.echo(say("cli.admin_exists"), err=True)
        return
    if isinstance(created, str):
        typer.echo(say("cli.admin_name_taken", name=created), err=True)
        raise typer.Exit(1)
    if cli_state(ctx).as_json:
        typer.echo(json.dumps({"name": created.name, "password": password}))
        return
    typer.echo(say("cli.admin_created", name=repr(created.name), password=password, plain=created.name))


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the token is for")],
    user: Annotated[str, typer.Option("--user", help="The user the token acts as")],
) -> None:
    """Create an API token and print its secret (shown this once)."""
    made = _run(ctx, lambda d: d.tokens.create_sync(user, name))
    if cli_state(ctx).as_json:
        typer.echo(json.dumps({**_token_dict(made.info), "secret": made.secret}, ensure_ascii=False))
        return
    typer.echo(made.secret)
    typer.echo(say("cli.token_created_note", id=made.info.id, name=repr(made.info.name), owner=repr(made.info.owner)),
               err=True)


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's tokens")] = None,
) -> None:
    """List API tokens (never their secrets)."""
    tokens = _run(ctx, lambda d: d.db.run_sync(lambda session: Tokens.list_in(session, user)))
    if cli_state(ctx).as_json:
        typer.echo(json.dumps([_token_dict(token) for token in tokens], indent=2, ensure_ascii=False))
        return
    rows = [
        [str(t.id), t.name, t.owner, t.prefix + "…", moment(t.created_at),
         moment(t.last_used_at) if t.last_used_at else "-",
         say("cli.token.revoked") if t.revoked_at else say("cli.token.active")]
        for t in tokens
    ]
    typer.echo(table(rows, ["cli.col.id", "cli.col.name", "cli.col.user", "cli.col.prefix", "cli.col.created",
                            "cli.col.last_used", "cli.col.status"]) if rows else say("cli.no_tokens"))


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: Annotated[int, typer.Argument(help="The token's id")]) -> None:
    """Revoke an API token; it is refused from then on."""
    def run(directory: _Directory) -> TokenInfo:
        token = directory.db.run_sync(lambda session: directory.tokens.revoke_in(session, token_id, None))
        _tell_servers(directory, Revocation.credential_revoked(
            token_credential(token.id), end_details.token_revoked(token.id, None)))
        return token

    token = _run(ctx, run)
    typer.echo(say("cli.token_revoked", id=token.id, name=repr(token.name), owner=repr(token.owner)))
