"""``limen backup FILE`` and ``limen restore FILE`` (see :mod:`limen.backup`). Mounted by :mod:`limen.cli`;
``ctx.obj`` is its CliState. Exit codes: 0 done, 1 refused or failed (the message says why)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
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
    Restored,
    VmRecord,
    check_backup_target,
    database_label,
    open_backup,
    restore_database,
    write_backup,
)
from limen.cli_audit import command_line_actor
from limen.cli_hypervisor import with_hypervisor
from limen.cli_output import failed, say
from limen.cli_progress import working
from limen.cli_state import cli_state
from limen.db.database import SCHEMA_HEAD
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import Hypervisor
from limen.hypervisor.hosts import DEFAULT_HOST
from limen.logs import logging_to_file
from limen.settings import Settings, settings_file_in_use

log = logging.getLogger("limen.restore")

def _fail(message: str) -> typer.Exit:
    """BACKUP_FAILED said as the command line says errors: its title and advice in the user's language, the
    details as they are, or the API's JSON error under --json (these were plain English lines either way)."""
    return failed(LimenError(ErrorCode.BACKUP_FAILED, message))


async def _vm_xml(settings: Settings) -> dict[VmRecord, str]:
    """Each VM's persistent definition, as libvirt would take it back (secure parts included), from every
    host of the registry; a host that does not answer is said on stderr, and its VMs are not in it."""

    def read(conn: libvirt.virConnect) -> list[tuple[str, str, str]]:
        found = []
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT):
            try:
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
                found.append((dom.UUIDString(), dom.name(), str(xml)))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # undefined meanwhile: not there
                    raise
        return found

    async def every_host(hypervisor: Hypervisor) -> dict[VmRecord, str]:
        found: dict[VmRecord, str] = {}
        for link in hypervisor.hosts.links:
            try:
                vms = await link.connection.call("backup_vm_xml", read)
            except LimenError as exc:
                if link.name == DEFAULT_HOST:
                    raise
                typer.echo(f"limen: host {link.name!r} did not answer ({exc.code.name}): its VMs' XML is not "
                           "in the backup", err=True)
                continue
            host = None if link.name == DEFAULT_HOST else link.name
            found.update({VmRecord(uuid, name, host): xml for uuid, name, xml in vms})
        return found

    return await with_hypervisor(settings, every_host)


async def _missing_vms(settings: Settings, backup: Backup, names: list[str] | None) -> dict[str, list[VmRecord]]:
    """The backup's VMs libvirt does not have (by UUID), by the host each goes to: the one it was on when the
    registry has that host, else the default host; ``names`` limits which. Checked before the database is
    replaced: a VM whose name another VM has taken there since is a BackupError (libvirt would refuse to
    define it after the database had been replaced)."""
    wanted = [vm for vm in backup.manifest.vms if vm.uuid in backup.vm_xml and (names is None or vm.name in names)]

    def absent(conn: libvirt.virConnect, vms: list[VmRecord]) -> list[tuple[VmRecord, tuple[str, str] | None]]:
        """Each VM of ``vms`` that ``conn`` lacks, with the name and UUID of the VM holding its name there, if
        any."""
        present = {dom.UUIDString(): dom.name() for dom in conn.listAllDomains(0)}
        # In any case, as limen's own creates and renames refuse a name (limen.hypervisor.service)
        holder = {name.casefold(): (name, uuid) for uuid, name in present.items()}
        return [(vm, holder.get(vm.name.casefold())) for vm in vms if vm.uuid not in present]

    async def on_their_hosts(hypervisor: Hypervisor) -> dict[str, list[VmRecord]]:
        links = {link.name: link for link in hypervisor.hosts.links}
        by_host: dict[str, list[VmRecord]] = {}
        for vm in wanted:
            by_host.setdefault(vm.host if vm.host in links else DEFAULT_HOST, []).append(vm)
        missing: dict[str, list[VmRecord]] = {}
        taken: list[str] = []
        for host, vms in by_host.items():
            for vm, holder in await links[host].connection.call("restore_vm_list", functools.partial(absent, vms=vms)):
                if holder is None:
                    missing.setdefault(host, []).append(vm)
                else:
                    # Named: in another case (web, WEB) "that name" is not the one the operator looks for.
                    taker_name, taker_uuid = holder
                    taken.append(f"{vm.name!r} (uuid {vm.uuid}) on host {host!r}, where VM {taker_name!r} "
                                 f"(uuid {taker_uuid}) now holds that name")
        if taken:
            raise BackupError(f"cannot define the backup's VM {'; '.join(taken)}: rename or delete that VM, or "
                              "leave the backup's out (--vm names the ones to define)")
        return missing

    return await with_hypervisor(settings, on_their_hosts)


async def _define(settings: Settings, backup: Backup, missing: dict[str, list[VmRecord]]) -> list[str]:
    """Defines what :func:`_missing_vms` found, each on its host; returns their names."""

    def define(conn: libvirt.virConnect, vms: list[VmRecord]) -> list[str]:
        present = {dom.UUIDString() for dom in conn.listAllDomains(0)}
        defined = []
        for vm in vms:
            if vm.uuid not in present:
                conn.defineXML(backup.vm_xml[vm.uuid])
                defined.append(vm.name)
        return defined

    async def on_their_hosts(hypervisor: Hypervisor) -> list[str]:
        links = {link.name: link for link in hypervisor.hosts.links}
        defined: list[str] = []
        for host, vms in missing.items():
            defined += await links[host].connection.call("restore_vm_xml", functools.partial(define, vms=vms))
        return defined

    return await with_hypervisor(settings, on_their_hosts)


def backup_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Backup file to write (replaced if it exists)")],
    vms: Annotated[bool, typer.Option("--vms/--no-vms", help="Record each VM's libvirt XML")] = True,
) -> None:
    """Copy limen's database (consistent while limen serves), its settings file and its VMs' XML to FILE."""
    state = cli_state(ctx)
    settings = state.settings()
    try:
        check_backup_target(file)  # before libvirt is asked for anything
        with working(say("cli.progress.backing_up", database=database_label(settings), file=file),
                     as_json=state.as_json):
            vm_xml = asyncio.run(_vm_xml(settings)) if vms else {}
            # The file the settings were read from, --config's or LIMEN_CONFIG's (only --config's was kept).
            manifest = write_backup(settings, file, config_file=settings_file_in_use(state.config), vm_xml=vm_xml)
    except BackupError as exc:
        raise _fail(str(exc)) from None
    except LimenError as exc:
        raise _fail(f"cannot read the VMs from libvirt ({exc.details}); --no-vms leaves them out") from None
    _report(state.as_json, manifest,
            say("cli.backup.done", file=file, schema=manifest.schema_revision, count=len(manifest.vms)))


def _report(as_json: bool, manifest: Manifest, line: str, **more: Any) -> None:
    if as_json:
        typer.echo(json.dumps({**json.loads(manifest.to_json()), **more}, indent=2))
    else:
        typer.echo(line)


def _check_settings_target(backup: Backup, target: Path) -> None:
    if backup.config is None:
        raise BackupError("the backup holds no settings file (it was made without --config or LIMEN_CONFIG)")
    if target.exists():
        raise BackupError(f"{target} exists; --settings-to writes a new file only")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a directory; --settings-to writes a file into an existing one")


def _check_vm_names(backup: Backup, names: list[str]) -> None:
    """Every ``--vm`` names a VM of the backup: a typo would else define nothing and say so quietly."""
    held = [vm.name for vm in backup.manifest.vms]
    unknown = [name for name in names if name not in held]
    if unknown:
        raise BackupError(f"the backup holds no VM named {', '.join(map(repr, unknown))} "
                          f"(it holds: {', '.join(held) or 'none'})")


def _log_restore(file: Path, backup: Backup, restored: Restored) -> None:
    """The restore in limen.log: the database was replaced, by whom and from what, found later beside the
    server's lines. (Administrative commands write no audit rows; the audit trail is the database replaced.)
    A warning, not news: every user, token and session went back to the backup's, and a LIMEN_LOG_LEVEL of
    warning must keep it."""
    log.warning("database restored from a backup", extra={
        "event": "database_restored", "file": str(file.resolve()), "by": command_line_actor(),
        "backup_made": backup.manifest.created_at, "backup_limen_version": backup.manifest.limen_version,
        "backup_schema": backup.manifest.schema_revision,
        "migrated_from": ", ".join(restored.migrated_from) or None,
        "kept": str(restored.kept) if restored.kept is not None else None,
        "kept_unreadable": restored.kept_unreadable})


def restore_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Backup file made by `limen backup`")],
    vms: Annotated[bool, typer.Option("--vms", help="Also define the backup's VMs libvirt lacks")] = False,
    vm: Annotated[list[str] | None, typer.Option(
        "--vm", help="Define only this VM of the backup, if libvirt lacks it (repeatable; implies --vms)")] = None,
    settings_to: Annotated[Path | None, typer.Option(
        "--settings-to", help="Write the backup's settings file here (a new file; never over an existing one)")] = None,
) -> None:
    """Put FILE's database in place (limen must be stopped) and migrate it to this version's schema."""
    state = cli_state(ctx)
    settings = state.settings()
    vms = vms or bool(vm)
    kept: Path | None = None
    restored = False
    with tempfile.TemporaryDirectory(prefix="limen-restore-") as work:
        try:
            with working(say("cli.progress.restoring", file=file), as_json=state.as_json):
                # Everything that can be checked is, before the database is replaced.
                backup = open_backup(file, Path(work))
                if settings_to is not None:
                    _check_settings_target(backup, settings_to)
                if vm:
                    _check_vm_names(backup, vm)
                missing = asyncio.run(_missing_vms(settings, backup, vm)) if vms else {}
                with logging_to_file(settings):
                    restored_as = restore_database(settings, backup)
                    _log_restore(file, backup, restored_as)
                kept, restored = restored_as.kept, True
                if settings_to is not None and backup.config is not None:
                    fd = os.open(settings_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as target:
                        target.write(backup.config)
                defined = asyncio.run(_define(settings, backup, missing)) if missing else []
        except BackupError as exc:
            raise _fail(str(exc)) from None
        except (LimenError, OSError) as exc:
            if not restored:
                raise
            why = exc.details if isinstance(exc, LimenError) else f"{type(exc).__name__}: {exc}"
            where = f" (the database it replaced is kept at {kept})" if kept is not None else ""
            raise _fail(f"the database is restored{where}, but what follows it failed: {why}") from None
    lines = [say("cli.restore.done", file=file, schema=backup.manifest.schema_revision,
                 made=backup.manifest.created_at)]
    if restored_as.migrated_from:
        lines.append(say("cli.restore.migrated", revision=", ".join(restored_as.migrated_from), schema=SCHEMA_HEAD))
    if kept is not None and restored_as.kept_unreadable is not None:
        lines.append(say("cli.restore.kept_unreadable", path=kept, reason=restored_as.kept_unreadable))
    elif kept is not None:
        lines.append(say("cli.restore.kept", path=kept))
    if backup.config is not None and settings_to is not None:
        lines.append(say("cli.restore.settings_written", name=backup.manifest.config_file, path=settings_to))
    elif backup.config is not None:
        lines.append(say("cli.restore.settings_held", name=backup.manifest.config_file))
    if vms:
        lines.append(say("cli.restore.defined", names=", ".join(defined) or say("cli.restore.none_missing")))
    # The backup's VMs asked for (--vms: all; --vm: those) that libvirt already had, so were left as they are.
    asked = [held.name for held in backup.manifest.vms if vms and (not vm or held.name in vm)]
    _report(state.as_json, backup.manifest, "\n".join(lines), file=str(file), kept=str(kept) if kept else None,
            kept_unreadable=restored_as.kept_unreadable, migrated_from=restored_as.migrated_from,
            settings_written=str(settings_to) if settings_to is not None and backup.config is not None else None,
            defined=defined, skipped=[name for name in asked if name not in defined])
