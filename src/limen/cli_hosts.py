"""``limen host …``: the libvirt hosts limen manages besides the default one (LIMEN_LIBVIRT_URI).

The registry is the database (:mod:`limen.host_registry`); a running server picks changes up within
``HOST_SYNC_INTERVAL`` seconds. Mounted by :mod:`limen.cli`; ``ctx.obj`` is its CliState.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from limen import host_registry
from limen.cli_output import failed, say, table
from limen.cli_state import cli_state
from limen.db import Database
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.connection import LibvirtConnection
from limen.hypervisor.hosts import DEFAULT_HOST, HostConfig

host_app = typer.Typer(help="Libvirt hosts: add, list, remove, drain (the default is LIMEN_LIBVIRT_URI).",
                       no_args_is_help=True)


def _database(ctx: typer.Context) -> Database:
    state = cli_state(ctx)
    db = Database(state.settings().db_url)
    db.migrate()
    return db


def _as_dict(host: HostConfig) -> dict[str, Any]:
    return {"name": host.name, "uri": host.uri, "console_address": host.console_address,
            "draining": host.draining}


@host_app.command("add")
def add(ctx: typer.Context, name: str, uri: str,
        console_address: Annotated[str | None, typer.Option(
            help="Where consoles reach its VMs' VNC servers (default: the URI's host)")] = None) -> None:
    """Registers a host. It need not answer yet."""
    default_uri = cli_state(ctx).settings().libvirt_uri
    db = _database(ctx)
    try:
        host = host_registry.add_host(db, name, uri, console_address, default_uri=default_uri)
    except LimenError as exc:
        raise failed(exc) from None
    finally:
        db.close()
    typer.echo(json.dumps(_as_dict(host)) if cli_state(ctx).as_json
               else say("cli.host.added", name=host.name, uri=host.uri))


@host_app.command("list")
def list_(ctx: typer.Context) -> None:
    """The default host and every registered one, each asked now whether it answers (and its VMs)."""
    state = cli_state(ctx)
    settings = state.settings()
    db = _database(ctx)
    try:
        hosts = [HostConfig(DEFAULT_HOST, settings.libvirt_uri), *host_registry.list_hosts(db)]
    finally:
        db.close()
    answers = asyncio.run(_ask_each(hosts, settings.libvirt_timeout))
    if state.as_json:
        typer.echo(json.dumps([{**_as_dict(host), "available": not isinstance(answer, LimenError),
                                "vm_count": None if isinstance(answer, LimenError) else len(answer),
                                "last_error": answer.details if isinstance(answer, LimenError) else None}
                               for host, answer in zip(hosts, answers, strict=True)], indent=2))
        return
    rows = [[host.name, host.uri, host.console_address or "-",
             say("cli.yes") if host.draining else say("cli.no"),
             say("cli.host.down", reason=answer.details) if isinstance(answer, LimenError)
             else say("cli.host.up", count=len(answer))]
            for host, answer in zip(hosts, answers, strict=True)]
    typer.echo(table(rows, ["cli.col.name", "cli.col.uri", "cli.col.console_address", "cli.col.draining",
                            "cli.col.status"]))


async def _ask_each(hosts: list[HostConfig], timeout: float) -> list[list[str] | LimenError]:
    """Each host's VM names, or why it did not answer (within ``timeout``): a dead host looked fine."""
    async def ask(host: HostConfig) -> list[str] | LimenError:
        try:
            return await _domain_names(host.uri, timeout)
        except LimenError as exc:
            return exc

    return list(await asyncio.gather(*(ask(host) for host in hosts)))


@host_app.command("remove")
def remove(ctx: typer.Context, name: str,
           force: Annotated[bool, typer.Option(
               "--force", help="Remove it even when it cannot be asked for its VMs")] = False,
           ) -> None:
    """Unregisters a host that has no VMs (HOST_IN_USE otherwise). Its VMs are not touched."""
    settings = cli_state(ctx).settings()
    db = _database(ctx)
    try:
        if name == DEFAULT_HOST:
            raise LimenError(ErrorCode.HOST_IN_USE, "the default host is LIMEN_LIBVIRT_URI and cannot be removed")
        host = next((host for host in host_registry.list_hosts(db) if host.name == name), None)
        if host is None:
            raise LimenError(ErrorCode.HOST_NOT_FOUND, f"no host named {name[:80]!r}")
        try:
            names = asyncio.run(_domain_names(host.uri, settings.libvirt_timeout))
        except LimenError as exc:
            if not force:
                raise LimenError(exc.code, f"{exc.details}; it cannot be asked for its VMs: `limen host remove "
                                           f"{name} --force` removes it without asking", title=exc.title) from None
            names = []
        if names:
            raise LimenError(ErrorCode.HOST_IN_USE, f"host {name!r} has {len(names)} VM(s): {', '.join(names[:10])}")
        host_registry.remove_host(db, name)
    except LimenError as exc:
        raise failed(exc) from None
    finally:
        db.close()
    typer.echo(json.dumps({"removed": name}) if cli_state(ctx).as_json else say("cli.host.removed", name=name))


@host_app.command("drain")
def drain(ctx: typer.Context, name: str,
          undo: Annotated[bool, typer.Option("--undo", help="Take new VMs again")] = False) -> None:
    """Keeps the host's VMs but places no new ones on it."""
    db = _database(ctx)
    try:
        if name == DEFAULT_HOST:  # as the API says it; the registry does not hold it ("not found" misled)
            raise LimenError(ErrorCode.HOST_IN_USE, "the default host's settings come from LIMEN_LIBVIRT_URI")
        host = host_registry.set_draining(db, name, not undo)
    except LimenError as exc:
        raise failed(exc) from None
    finally:
        db.close()
    typer.echo(json.dumps(_as_dict(host)) if cli_state(ctx).as_json
               else say("cli.host.drains" if host.draining else "cli.host.takes_new", name=host.name))


async def _domain_names(uri: str, timeout: float) -> list[str]:
    connection = LibvirtConnection(uri, timeout)
    try:
        return await connection.call("list_vms", lambda conn: sorted(dom.name() for dom in conn.listAllDomains(0)))
    finally:
        await connection.close()



