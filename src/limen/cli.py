"""The ``limen`` command: ``serve``, ``vm …``, ``iso …``, ``user …``, ``token …``, ``host …`` and ``config …``.

Exit codes: 0 success, 1 an operation failed (the error's message is printed), 2 bad usage or
invalid configuration (the offending key is named).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from sqlalchemy import func, select

from limen import __version__, end_details
from limen.action_details import (
    delete_details,
    edit_details,
    media_details,
    power_details,
    resize_details,
    resized_details,
)
from limen.api.schemas import MediaOut, VmOut
from limen.audit import ActionTarget
from limen.auth.revocation import Revocation
from limen.auth.revocation_bus import publish_from_command_line
from limen.cli_audit import run_audited
from limen.cli_backup import backup_command, restore_command
from limen.cli_config import config_app
from limen.cli_help import localized_command
from limen.cli_hosts import host_app
from limen.cli_hypervisor import run_on_hypervisor
from limen.cli_isos import iso_app
from limen.cli_output import cli_language, error_text, moment, say, say_errors_as_json, table
from limen.cli_progress import working
from limen.cli_snapshots import snapshot_app
from limen.cli_state import CliState, cli_state
from limen.cli_users import run_directory, take_untold_revocations, token_app, user_app
from limen.cli_volumes import volume_app
from limen.db import Database
from limen.db.models import ConsoleSessionRecord
from limen.errors import LimenError
from limen.hypervisor import Hypervisor, Vm, VmSpec, editing
from limen.hypervisor.connection import calls_under_way
from limen.i18n import display_width, pad
from limen.isos import share_library_images
from limen.private_files import TRAVERSABLE_DIR_MODE, private_dir, traversable_dir
from limen.redis_client import check_redis_answers
from limen.settings import Settings
from limen.sizes import format_size
from limen.url_redaction import redacted_url

T = TypeVar("T")

app = typer.Typer(help="limen: a VM manager over libvirt whose browser console never hangs.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
vm_app = typer.Typer(help="Create, list and control VMs.", no_args_is_help=True)
app.add_typer(vm_app, name="vm")
vm_app.add_typer(snapshot_app, name="snapshot")
app.add_typer(iso_app, name="iso")
app.add_typer(volume_app, name="volumes")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(host_app, name="host")
app.add_typer(config_app, name="config")
app.command("backup")(backup_command)
app.command("restore")(restore_command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"limen {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file")] = None,
    libvirt_uri: Annotated[str | None, typer.Option(help="libvirt URI [LIMEN_LIBVIRT_URI]")] = None,
    iso_dir: Annotated[Path | None, typer.Option(help="ISO directory [LIMEN_ISO_DIR]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory [LIMEN_DATA_DIR]")] = None,
    log_dir: Annotated[Path | None, typer.Option(help="Log directory [LIMEN_LOG_DIR]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print limen's version and exit")] = False,
) -> None:
    ctx.obj = CliState(
        config,
        {"libvirt_uri": libvirt_uri, "iso_dir": iso_dir, "data_dir": data_dir, "log_dir": log_dir},
        as_json,
    )
    say_errors_as_json(as_json)


def _audited(settings: Settings, action: str, vm_id: str,
             work: Callable[[Hypervisor, ActionTarget], Awaitable[T]]) -> T:
    """:func:`run_on_hypervisor`, with the action in the audit trail as the API writes it (actor ``cli:<login>``)."""
    return run_audited(run_on_hypervisor, settings, action, vm_id, work)


# How long `limen vm delete` waits for running servers to end the VM's consoles (the API waits as long).
CONSOLES_END_WAIT = 1.0
# How long `limen serve` waits for the database's answer before it says the database does not answer.
DATABASE_START_TIMEOUT = 10.0


def _wait_for_consoles_to_end(settings: Settings, vm_uuid: str, seconds: float) -> None:
    """Until no console of the VM is live in the audit (their servers ended them), at most ``seconds``: a
    row a lost server left live ends only at a sweep, and must not hold the deletion up."""
    db = Database(settings.db_url)
    live = select(func.count()).select_from(ConsoleSessionRecord).where(
        ConsoleSessionRecord.vm_uuid == vm_uuid, ConsoleSessionRecord.ended_at.is_(None))
    try:
        deadline = time.monotonic() + seconds
        while (db.fetch_one_sync(live) or (0,))[0] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        db.close()


def _named(target: ActionTarget, vm: Vm) -> Vm:
    target.vm_name, target.vm_uuid = vm.name, vm.uuid
    return vm


def _print_vms(state: CliState, vms: list[VmOut]) -> None:
    if state.as_json:
        typer.echo(json.dumps([vm.model_dump(mode="json") for vm in vms], indent=2))
        return
    rows = [
        [vm.name, say(f"cli.state.{vm.state.value}"), str(vm.vcpus), format_size(vm.memory_mib * 2**20),
         str(vm.vnc.port) if vm.vnc and vm.vnc.port else "-", vm.uuid]
        for vm in vms
    ]
    typer.echo(table(rows, ["cli.col.name", "cli.col.state", "cli.col.vcpus", "cli.col.memory", "cli.col.vnc",
                            "cli.col.uuid"]))


def _print_vm(state: CliState, vm: VmOut) -> None:
    if state.as_json:
        typer.echo(json.dumps(vm.model_dump(mode="json"), indent=2))
        return
    vnc = say("cli.none") if vm.vnc is None else f"{vm.vnc.host}:{vm.vnc.port or say('cli.not_assigned')}"
    cdrom = say("cli.none") if vm.cdrom is None else f"{vm.cdrom.target}: {vm.cdrom.iso or say('cli.empty')}"
    fields = [
        (say("cli.field.name"), vm.name), (say("cli.field.uuid"), vm.uuid),
        (say("cli.field.state"), say(f"cli.state.{vm.state.value}")), (say("cli.field.vcpus"), str(vm.vcpus)),
        (say("cli.field.memory"), format_size(vm.memory_mib * 2**20)), (say("cli.field.vnc"), vnc),
        (say("cli.field.iso"), vm.iso or "-"), (say("cli.field.cdrom"), cdrom),
        (say("cli.field.boot_order"), ", ".join(vm.boot_order) or "-"),
        (say("cli.field.autostart"), say("cli.yes") if vm.autostart else say("cli.no")),
        (say("cli.field.created"), moment(vm.created_at) if vm.created_at else "-"),
    ]
    fields += [
        (say("cli.field.disk", target=d.target), f"{d.path or say('cli.empty')} ({say(f'cli.device.{d.device}')}"
         + (f", {format_size(d.capacity_bytes)}" if d.capacity_bytes is not None else "") + ")")
        for d in vm.disks
    ]
    if vm.pending_restart:
        waiting = ", ".join(
            f"{key} {', '.join(value) if isinstance(value, list) else value}" for key, value in vm.pending.items()
        )
        fields.append((say("cli.field.pending_restart"), say("cli.pending_at_next_start", waiting=waiting)))
    width = max(display_width(key) for key, _ in fields)
    typer.echo("\n".join(f"{pad(key, width)}  {value}" for key, value in fields))


def _dirs_qemu_passes(settings: Settings) -> list[Path]:
    """The data dir, and the ISO library in it, when the storage pool or the ISO library is under the data
    dir (the packaged layout: /var/lib/limen/pool, /var/lib/limen/isos)."""
    data = settings.data_dir
    dirs = [data] if settings.pool_dir.is_relative_to(data) or settings.iso_dir.is_relative_to(data) else []
    if settings.iso_dir.is_relative_to(data) and settings.iso_dir != data:
        dirs.append(settings.iso_dir)
    return dirs


def _data_dir_modes(settings: Settings) -> None:
    """The data dir holds the database: 0700, tightened (and logged) if it is looser; 0711 when QEMU must pass
    through it to the storage pool or the ISO library (and the library 0711 too): QEMU runs as its own user
    on a stock host (libvirt-qemu), and with 0700 every VM failed to start ("Permission denied" on its disk)."""
    log = logging.getLogger("limen.cli")
    try:
        passed = _dirs_qemu_passes(settings)
        change = None if passed else private_dir(settings.data_dir)
        opened = {path: traversable_dir(path) for path in passed}
    except OSError as exc:  # the database's own checks say more when it is opened
        log.warning("cannot set the data dir's mode", extra={
            "event": "data_dir_unusable", "path": str(settings.data_dir), "error": str(exc)})
        return
    if change is not None:
        log.warning("data dir was readable by others; made owner-only", extra=change.log_fields())
    for path, was in opened.items():
        if was is not None:
            log.warning("directory made passable for QEMU, not listable (0711): VM disks or ISOs are under it",
                        extra={"event": "file_mode_changed", "path": str(path), "was": f"{was:04o}",
                               "now": f"{TRAVERSABLE_DIR_MODE:04o}"})


def _share_library_images(settings: Settings) -> None:
    """The library's images readable by QEMU's user as they are (0644): libvirt no longer relabels them, and
    an upload of an older limen was 0600 (the service's umask). Each change is logged."""
    log = logging.getLogger("limen.cli")
    try:
        changed = share_library_images(settings.iso_dir)
    except OSError as exc:  # listing the library says more
        log.warning("cannot make the ISO library's images readable by QEMU", extra={
            "event": "iso_dir_unusable", "path": str(settings.iso_dir), "error": str(exc)})
        return
    for path, (was, now) in changed.items():
        log.warning("ISO made readable by QEMU's user, writable by limen's only", extra={
            "event": "file_mode_changed", "path": str(path), "was": f"{was:04o}", "now": f"{now:04o}"})


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address [LIMEN_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [LIMEN_PORT]")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate: serve HTTPS [LIMEN_TLS_CERT]")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert [LIMEN_TLS_KEY]")] = None,
) -> None:
    """Serve the web UI, the REST API and the console WebSocket."""

    from limen.api.app import create_app
    from limen.logs import configure_logging
    from limen.server import database_problem, migrate_schema, open_listener
    from limen.server import serve as run_server

    settings = cli_state(ctx).settings(host=host, port=port, tls_cert=tls_cert, tls_key=tls_key)
    log_file = configure_logging(settings)
    _data_dir_modes(settings)
    _share_library_images(settings)
    # What would fail the start is said in one line, before anything says it serves.
    address = settings.address
    try:
        listener = open_listener(settings)
    except OSError as exc:
        typer.echo(say("cli.serve.cannot_listen", address=address, reason=exc.strerror or str(exc)), err=True)
        raise typer.Exit(1 if exc.errno == errno.EADDRINUSE else 2) from None
    try:
        # A newer limen's schema (a rollback after an upgrade) raises its LimenError, said in one line too.
        problem = database_problem(settings, DATABASE_START_TIMEOUT)
    except LimenError:
        listener.close()
        raise
    if problem is not None:
        listener.close()
        reason, fault = problem
        typer.echo(say(f"cli.serve.no_database.{fault.value}", url=redacted_url(settings.db_url), reason=reason,
                       data_dir=settings.data_dir), err=True)
        raise typer.Exit(1)
    try:
        migrate_schema(settings)  # DATABASE_MIGRATION_FAILED is said in one line too
    except LimenError:
        listener.close()
        raise
    if settings.redis_url:
        # A Redis that does not answer: said as the command line says errors, not as the application's
        # start-up traceback.
        try:
            asyncio.run(check_redis_answers(settings.redis_url))
        except LimenError:
            listener.close()
            raise
    scheme = "https" if settings.tls else "http"
    serving = say("cli.serving", url=f"{scheme}://{address}/", uri=settings.libvirt_uri,
                  log=say("cli.serving_log", path=log_file) if log_file else "")
    run_server(create_app(settings), settings, listener=listener, on_started=lambda: typer.echo(serving, err=True))


@vm_app.command("list")
def vm_list(ctx: typer.Context) -> None:
    """List every VM libvirt knows."""
    state = cli_state(ctx)
    vms = run_on_hypervisor(state.settings(), lambda hv: hv.list_vms())
    _print_vms(state, [VmOut.of(vm) for vm in vms])


@vm_app.command("show")
def vm_show(ctx: typer.Context, vm_id: Annotated[str, typer.Argument(help="UUID or name")]) -> None:
    """Show one VM."""
    state = cli_state(ctx)
    _print_vm(state, VmOut.of(run_on_hypervisor(state.settings(), lambda hv: hv.get_vm(vm_id))))


@vm_app.command("create")
def vm_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="VM name")],
    vcpus: Annotated[int, typer.Option(help="Virtual CPUs")] = 1,
    memory: Annotated[int, typer.Option(help="Memory, MiB")] = 256,
    disk: Annotated[int | None, typer.Option(help="New qcow2 disk, GiB")] = None,
    iso: Annotated[str | None, typer.Option(help="ISO file name in the ISO directory")] = None,
    boot: Annotated[list[str] | None, typer.Option(help="Boot device, in order (cdrom, hd); repeatable")] = None,
    owner: Annotated[str | None, typer.Option(help="limen user who owns the VM (default: none, admins only)")] = None,
) -> None:
    """Create (define) a VM; it starts stopped."""
    state = cli_state(ctx)
    if owner is not None:  # USER_NOT_FOUND for a typo; any case finds the user, the VM keeps its name as kept
        typed = owner
        owner = run_directory(state.settings(), lambda directory: directory.users.get_sync(typed)).name
    spec = VmSpec(name=name, vcpus=vcpus, memory_mib=memory, disk_gib=disk, iso=iso, boot_order=tuple(boot or ()),
                  owner=owner)
    label = (say("cli.progress.creating_with_disk", name=name, disk=disk) if disk
             else say("cli.progress.creating", name=name))

    async def create(hv: Hypervisor, target: ActionTarget) -> Vm:
        # A refused name or size is said alone: "creating…" before it would say something began that never did.
        await hv.validate_spec(spec)
        await hv.check_name_free(spec.name)
        with working(label, as_json=state.as_json):
            return _named(target, await hv.create_vm(spec))

    _print_vm(state, VmOut.of(_audited(state.settings(), "create", name, create)))


@vm_app.command("start")
def vm_start(ctx: typer.Context, vm_id: Annotated[str, typer.Argument(help="UUID or name")]) -> None:
    """Start a VM."""
    state = cli_state(ctx)
    async def start(hv: Hypervisor, target: ActionTarget) -> Vm:
        return _named(target, await hv.start_vm(_named(target, await hv.get_vm(vm_id)).uuid))

    _print_vm(state, VmOut.of(_audited(state.settings(), "start", vm_id, start)))


@vm_app.command("stop")
def vm_stop(
    ctx: typer.Context,
    vm_id: Annotated[str, typer.Argument(help="UUID or name")],
    force: Annotated[bool, typer.Option("--force", help="Power off at once instead of ACPI shutdown")] = False,
) -> None:
    """Stop a VM (ACPI shutdown; --force powers it off)."""
    state = cli_state(ctx)
    async def stop(hv: Hypervisor, target: ActionTarget) -> Vm:
        target.details = power_details(force)
        return await hv.stop_vm(_named(target, await hv.get_vm(vm_id)).uuid, force=force)

    _print_vm(state, VmOut.of(_audited(state.settings(), "stop", vm_id, stop)))


@vm_app.command("reboot")
def vm_reboot(
    ctx: typer.Context,
    vm_id: Annotated[str, typer.Argument(help="UUID or name")],
    force: Annotated[bool, typer.Option("--force", help="Hardware reset instead of ACPI reboot")] = False,
) -> None:
    """Reboot a VM."""
    state = cli_state(ctx)
    async def reboot(hv: Hypervisor, target: ActionTarget) -> Vm:
        target.details = power_details(force)
        return await hv.reboot_vm(_named(target, await hv.get_vm(vm_id)).uuid, force=force)

    _print_vm(state, VmOut.of(_audited(state.settings(), "reboot", vm_id, reboot)))


@vm_app.command("delete")
def vm_delete(
    ctx: typer.Context,
    vm_id: Annotated[str, typer.Argument(help="UUID or name")],
    delete_disks: Annotated[bool, typer.Option("--delete-disks", help="Also delete the VM's disk volumes")] = False,
) -> None:
    """Delete a VM (stopping it first if it runs)."""
    state = cli_state(ctx)
    settings = state.settings()

    kept: list[str] = []

    async def delete(hv: Hypervisor, target: ActionTarget) -> list[str]:
        target.details = delete_details(delete_disks)
        vm = _named(target, await hv.get_vm(vm_id))
        if not delete_disks:  # said after: they take room in the pool until deleted by hand
            kept.extend(str(disk.path) for disk in vm.disks if disk.device == "disk" and disk.path)
        # Running servers end its consoles first (when they share a Redis with this command), saying why,
        # before the VM goes (not VM_STOPPED after): as the API does, it waits a moment for them.
        if publish_from_command_line(settings.redis_url, Revocation.vm_deleted(
                vm.uuid, end_details.vm_deleted(vm.name, None))):
            await asyncio.to_thread(_wait_for_consoles_to_end, settings, vm.uuid, CONSOLES_END_WAIT)
        return await hv.delete_vm(vm.uuid, delete_disks=delete_disks)

    volumes = _audited(settings, "delete", vm_id, delete)
    if state.as_json:
        typer.echo(json.dumps({"deleted": vm_id, "deleted_volumes": volumes}))
    else:
        typer.echo(say("cli.deleted_vm_and", vm=vm_id, volumes=", ".join(volumes)) if volumes
                   else say("cli.deleted_vm", vm=vm_id))
        if kept:
            typer.echo(say("cli.deleted_vm_kept", disks=", ".join(kept)))


@vm_app.command("media")
def vm_media(
    ctx: typer.Context,
    vm_id: Annotated[str, typer.Argument(help="UUID or name")],
    iso: Annotated[str | None, typer.Argument(help="ISO file name to insert; without it, show the CD")] = None,
    eject: Annotated[bool, typer.Option("--eject", help="Eject the CD")] = False,
    force: Annotated[bool, typer.Option("--force", help="Open the tray even when the guest has locked it")] = False,
) -> None:
    """Show, insert or change (ISO), or eject (--eject) a VM's CD; running VMs change at once."""
    state = cli_state(ctx)
    if iso is not None and eject:
        raise typer.BadParameter("give an ISO or --eject, not both")
    if iso is None and not eject:
        media = MediaOut.of(run_on_hypervisor(state.settings(), lambda hv: hv.get_vm(vm_id)))
    else:
        async def change(hv: Hypervisor, target: ActionTarget) -> editing.Edited:
            target.details = media_details(iso, force)
            changed = await editing.change_media(hv, _named(target, await hv.get_vm(vm_id)).uuid, iso, force=force)
            target.details = changed.summary
            return changed

        media = MediaOut.of(_audited(state.settings(), "media", vm_id, change).vm)
    if state.as_json:
        typer.echo(media.model_dump_json())
    elif media.target is None:
        typer.echo(say("cli.no_cdrom"))
    else:
        typer.echo(say("cli.media", target=media.target, iso=media.iso or say("cli.empty")))


@vm_app.command("set")
def vm_set(
    ctx: typer.Context,
    vm_id: Annotated[str, typer.Argument(help="UUID or name")],
    vcpus: Annotated[int | None, typer.Option(help="Virtual CPUs")] = None,
    memory: Annotated[int | None, typer.Option(help="Memory, MiB")] = None,
    boot: Annotated[list[str] | None, typer.Option(
        help="Boot device, in order (cdrom, hd); repeatable or comma-separated")] = None,
    autostart: Annotated[bool | None, typer.Option("--autostart/--no-autostart",
                                                   help="Start with the host")] = None,
    name: Annotated[str | None, typer.Option(help="New name (the VM must be stopped)")] = None,
) -> None:
    """Change a VM's vCPUs, memory, boot order, autostart or name.

    On a running VM, vCPUs, memory and boot order apply at its next start (shown as pending restart).
    """
    state = cli_state(ctx)
    boot_order = tuple(part.strip() for item in boot for part in item.split(",") if part.strip()) if boot else None
    edit = editing.VmEdit(name=name, vcpus=vcpus, memory_mib=memory, boot_order=boot_order, autostart=autostart)
    if edit == editing.VmEdit():
        raise typer.BadParameter("give at least one of --vcpus, --memory, --boot, --autostart, --name")
    asked = {key: value for key, value in (("name", name), ("vcpus", vcpus), ("memory_mib", memory),
                                           ("boot_order", boot_order), ("autostart", autostart)) if value is not None}

    async def change(hv: Hypervisor, target: ActionTarget) -> editing.Edited:
        target.details = edit_details(asked)
        changed = await editing.edit_vm(hv, _named(target, await hv.get_vm(vm_id)).uuid, edit)
        target.details = changed.summary
        return changed

    edited = _audited(state.settings(), "edit", vm_id, change)
    if not state.as_json:
        typer.echo(f"{edited.summary}\n", err=True)
    _print_vm(state, VmOut.of(edited.vm))


_SIZE = re.compile(r"^ *([0-9]{1,20}) *([A-Za-z]{0,3}) *$")
_SIZE_UNITS = {"": 2**30, "b": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30,
               "t": 2**40, "tib": 2**40}


def parse_size(text: str) -> int:
    """Bytes of a size such as ``20`` (GiB), ``20G``, ``20GiB``, ``512M``, ``1T`` or ``21474836480B``."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise typer.BadParameter(f"{text!r} is not a size: a whole number of GiB, or with a unit (M, G, T, B)")
    return int(match.group(1)) * _SIZE_UNITS[unit]


@vm_app.command("resize-disk")
def vm_resize_disk(
    ctx: typer.Context,
    vm_id: Annotated[str, typer.Argument(help="UUID or name")],
    target: Annotated[str, typer.Argument(help="The disk's target, e.g. vda")],
    size: Annotated[str, typer.Argument(help="New size: GiB, or with a unit (512M, 20G, 1T, …B)")],
) -> None:
    """Grow a disk (never shrink), running or stopped."""
    state = cli_state(ctx)
    size_bytes = parse_size(size)
    async def resize(hv: Hypervisor, row: ActionTarget) -> editing.Resized:
        row.details = resize_details(target, size_bytes)
        done = await editing.resize_disk(hv, _named(row, await hv.get_vm(vm_id)).uuid, target, size_bytes)
        row.details = resized_details(done.target, done.old_bytes, done.new_bytes)
        return done

    resizing = say("cli.progress.resizing", vm=vm_id, target=target, size=format_size(size_bytes))
    with working(resizing, as_json=state.as_json):
        resized = _audited(state.settings(), "resize-disk", vm_id, resize)
    if not state.as_json:
        typer.echo(f"{resized.target}: {format_size(resized.old_bytes)} → {format_size(resized.new_bytes)}\n", err=True)
    _print_vm(state, VmOut.of(resized.vm))


@vm_app.command("finish-install")
def vm_finish_install(
    ctx: typer.Context,
    vm_id: Annotated[str, typer.Argument(help="UUID or name")],
    force: Annotated[bool, typer.Option("--force", help="Open the tray even when the guest has locked it")] = False,
) -> None:
    """Eject the CD and boot from disk only (on a running VM the boot order applies at its next start)."""
    state = cli_state(ctx)
    async def finish(hv: Hypervisor, target: ActionTarget) -> editing.Edited:
        target.details = power_details(force)
        done = await editing.finish_install(hv, _named(target, await hv.get_vm(vm_id)).uuid, force=force)
        target.details = done.summary
        return done

    edited = _audited(state.settings(), "finish-install", vm_id, finish)
    if not state.as_json:
        typer.echo(f"{edited.summary}\n", err=True)
    _print_vm(state, VmOut.of(edited.vm))


def _seconds_above_zero(value: float) -> float:
    """A usage error (exit 2) for 0, a negative number, NaN or infinity: -1 skipped every check and exited 1."""
    if not math.isfinite(value) or value <= 0:
        raise typer.BadParameter(f"{value} is not a number of seconds above 0")
    return value


@app.command()
def doctor(
    ctx: typer.Context,
    vm_id: Annotated[str | None, typer.Argument(help="UUID or name; without it, check the host")] = None,
    server: Annotated[str | None, typer.Option(help="URL of the running limen server")] = None,
    timeout: Annotated[float, typer.Option(
        help="Bound on the whole run, seconds", callback=_seconds_above_zero)] = 60.0,
    token: Annotated[str | None, typer.Option(
        envvar="LIMEN_TOKEN", show_envvar=True,
        help="API token; the console check asks the server for a console ticket with it. Prefer LIMEN_TOKEN: "
             "an option shows in ps and in the shell's history",
    )] = None,
) -> None:
    """Walk the checks a person would run by hand, in order, with a fix for each failure."""
    from limen import doctor as checks

    state = cli_state(ctx)
    settings = state.settings()
    lang = cli_language()
    with working(say("cli.doctor.working", target=vm_id or say("cli.doctor.the_host")),
                 as_json=state.as_json) as progress:
        results = asyncio.run(
            checks.diagnose(
                settings, vm_id, server_url=server or checks.default_server_url(settings),
                timeout=timeout, progress=lambda name: progress.step(checks.check_title(name)(lang)), token=token,
            )
        )
    typer.echo(checks.render_json(results) if state.as_json else checks.render_table(results, lang))
    raise typer.Exit(0 if checks.all_passed(results) else 1)


# How long a command that has said its result waits for its libvirt calls still running, before it leaves
# without them (exit_past_hung_libvirt_calls).
HUNG_CALL_GRACE = 0.5


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(argv) if argv is not None else sys.argv[1:]
    not_text = next((index for index, argument in enumerate(arguments, 1) if not is_utf8_text(argument)), None)
    if not_text is not None:
        # Bytes that are not UTF-8 (a name typed in another encoding, a file named so) reach Python as lone
        # surrogates, which neither the database nor the terminal nor the log takes: every command would fail
        # its own way, some after doing part of their work. Refused first, as a usage error, for all of them.
        shown = os.fsencode(arguments[not_text - 1]).decode("utf-8", "backslashreplace")
        print(say("cli.argument_not_utf8", position=not_text, argument=shown), file=sys.stderr)
        sys.exit(2)
    command = localized_command(app, cli_language())  # --help in the reader's language
    code: int | str | None = 0
    try:
        command(args=arguments, standalone_mode=True)
    except SystemExit as exc:
        # Typer/click exits 2 on usage errors already; keep their codes.
        code = exc.code
    except LimenError as exc:
        # Met before a command's own handling (opening the database: a newer limen's schema): one line.
        typer.echo(error_text(exc), err=True)
        code = 1
    except OSError as exc:
        # The machine's answer (a directory that cannot be made, a path that is a file): one line, not a
        # traceback; the commands say their own failures, this is what none of them foresaw.
        where = " → ".join(str(path) for path in (exc.filename, exc.filename2) if path)
        print(f"limen: {exc.strerror or exc}{f': {where}' if where else ''}", file=sys.stderr)
        code = 1
    if take_untold_revocations() and code in (0, None):
        print(say("cli.revocation_untold"), file=sys.stderr)  # the change stands; its reach does not
        code = 1
    exit_past_hung_libvirt_calls(code)


def is_utf8_text(argument: str) -> bool:
    """Whether a command-line argument was UTF-8 (Python decodes other bytes to lone surrogates)."""
    try:
        argument.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def exit_past_hung_libvirt_calls(code: int | str | None, grace: float = HUNG_CALL_GRACE) -> NoReturn:
    """Exits with ``code``; when a libvirt call that timed out still holds its thread (a host that accepted the
    connection and never answers), without waiting for it: the command has said what it had to, and Python
    would join that thread at exit forever."""
    deadline = time.monotonic() + grace
    while calls_under_way() and time.monotonic() < deadline:
        time.sleep(0.02)
    if calls_under_way():
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if isinstance(code, str):
            print(code, file=sys.stderr)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(code)
