"""``limen backup FILE`` and ``limen restore FILE`` (see :mod:`limen.backup`). Mounted by :mod:`limen.cli`;
``ctx.obj`` is its CliState. Exit codes: 0 done, 1 refused or failed (the message says why)."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import libvirt
import typer

from limen.backup import (
    Backup,
    BackupError,
    Manifest,
    VmRecord,
    database_label,
    open_backup,
    restore_database,
    write_backup,
)
from limen.cli_output import say
from limen.cli_progress import working
from limen.cli_state import cli_state
from limen.errors import LimenError
from limen.hypervisor import Hypervisor
from limen.settings import Settings


def _fail(message: str) -> typer.Exit:
    typer.echo(f"limen: {message}", err=True)
    return typer.Exit(1)


async def _vm_xml(settings: Settings) -> dict[VmRecord, str]:
    """Each VM's persistent definition, as libvirt would take it back (secure parts included)."""
    hypervisor = Hypervisor(settings)
    await hypervisor.open()

    def read(conn: libvirt.virConnect) -> dict[VmRecord, str]:
        found = {}
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT):
            try:
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
                found[VmRecord(dom.UUIDString(), dom.name())] = str(xml)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # undefined meanwhile: not there
                    raise
        return found

    try:
        return await hypervisor.connection.call("backup_vm_xml", read)
    finally:
        await hypervisor.close()


async def _define_missing(settings: Settings, backup: Backup, names: list[str] | None) -> list[str]:
    """Defines the backup's VMs libvirt does not have (by UUID); ``names`` limits which. Returns their names."""
    wanted = [vm for vm in backup.manifest.vms if vm.uuid in backup.vm_xml and (names is None or vm.name in names)]
    hypervisor = Hypervisor(settings)
    await hypervisor.open()

    def define(conn: libvirt.virConnect) -> list[str]:
        present = {dom.UUIDString() for dom in conn.listAllDomains(0)}
        defined = []
        for vm in wanted:
            if vm.uuid not in present:
                conn.defineXML(backup.vm_xml[vm.uuid])
                defined.append(vm.name)
        return defined

    try:
        return await hypervisor.connection.call("restore_vm_xml", define)
    finally:
        await hypervisor.close()


def backup_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Backup file to write (replaced if it exists)")],
    vms: Annotated[bool, typer.Option("--vms/--no-vms", help="Record each VM's libvirt XML")] = True,
) -> None:
    """Copy limen's database (consistent while limen serves), its settings file and its VMs' XML to FILE."""
    state = cli_state(ctx)
    settings = state.settings()
    try:
        with working(say("cli.progress.backing_up", database=database_label(settings), file=file),
                     as_json=state.as_json):
            vm_xml = asyncio.run(_vm_xml(settings)) if vms else {}
            manifest = write_backup(settings, file, config_file=state.config, vm_xml=vm_xml)
    except BackupError as exc:
        raise _fail(str(exc)) from None
    except LimenError as exc:
        raise _fail(f"cannot read the VMs from libvirt ({exc.details}); --no-vms leaves them out") from None
    _report(state.as_json, manifest, f"backup {file}: schema {manifest.schema_revision}, {len(manifest.vms)} VMs")


def _report(as_json: bool, manifest: Manifest, line: str, **more: Any) -> None:
    if as_json:
        typer.echo(json.dumps({**json.loads(manifest.to_json()), **more}, indent=2))
    else:
        typer.echo(line)


def _check_settings_target(backup: Backup, target: Path) -> None:
    if backup.config is None:
        raise BackupError("the backup holds no settings file (it was made without --config)")
    if target.exists():
        raise BackupError(f"{target} exists; --settings-to writes a new file only")


def restore_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Backup file made by `limen backup`")],
    vms: Annotated[bool, typer.Option("--vms", help="Also define the backup's VMs libvirt lacks")] = False,
    vm: Annotated[list[str] | None, typer.Option("--vm", help="With --vms: only this VM (repeatable)")] = None,
    settings_to: Annotated[Path | None, typer.Option(
        "--settings-to", help="Write the backup's settings file here (a new file; never over an existing one)")] = None,
) -> None:
    """Put FILE's database in place (limen must be stopped) and migrate it to this version's schema."""
    state = cli_state(ctx)
    settings = state.settings()
    with tempfile.TemporaryDirectory(prefix="limen-restore-") as work:
        try:
            with working(say("cli.progress.restoring", file=file), as_json=state.as_json):
                backup = open_backup(file, Path(work))
                if settings_to is not None:
                    _check_settings_target(backup, settings_to)
                kept = restore_database(settings, backup)
                if settings_to is not None and backup.config is not None:
                    fd = os.open(settings_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as target:
                        target.write(backup.config)
                defined = asyncio.run(_define_missing(settings, backup, vm)) if vms else []
        except BackupError as exc:
            raise _fail(str(exc)) from None
        except LimenError as exc:
            raise _fail(f"the database is restored, but the VMs could not be defined: {exc.details}") from None
    lines = [f"restored {file} (schema {backup.manifest.schema_revision}, made {backup.manifest.created_at})"]
    if kept is not None:
        lines.append(f"the database it replaced is kept at {kept}")
    if backup.config is not None and settings_to is not None:
        lines.append(f"the settings file {backup.manifest.config_file} of the backup is written to {settings_to}")
    elif backup.config is not None:
        lines.append(f"the backup holds the settings file {backup.manifest.config_file}; --settings-to FILE "
                     "writes it (the current one is never overwritten)")
    if vms:
        lines.append(f"defined VMs: {', '.join(defined) or 'none missing'}")
    _report(state.as_json, backup.manifest, "\n".join(lines), kept=str(kept) if kept else None, defined=defined)
