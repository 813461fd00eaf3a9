"""The ``limen`` command: ``serve``, ``vm …`` and ``iso …``.

Exit codes: 0 success, 1 an operation failed (the error's message is printed), 2 bad usage or
invalid configuration (the offending key is named).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from limen.api.schemas import VmOut
from limen.auth.revocation import Revocation
from limen.auth.revocation_bus import publish_from_command_line
from limen.cli_users import token_app, user_app
from limen.errors import LimenError
from limen.hypervisor import Hypervisor, VmSpec
from limen.isos import list_isos
from limen.settings import Settings, SettingsError, load_settings

T = TypeVar("T")

app = typer.Typer(help="limen: a VM manager over libvirt whose browser console never hangs.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
vm_app = typer.Typer(help="Create, list and control VMs.", no_args_is_help=True)
iso_app = typer.Typer(help="Boot images in the ISO directory.", no_args_is_help=True)
app.add_typer(vm_app, name="vm")
app.add_typer(iso_app, name="iso")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")


class CliState:
    def __init__(self, config: Path | None, overrides: dict[str, Any], as_json: bool) -> None:
        self.config = config
        self.overrides = overrides
        self.as_json = as_json
        self._settings: Settings | None = None

    def settings(self, **more: Any) -> Settings:
        if self._settings is None or more:
            try:
                self._settings = load_settings(self.config, **{**self.overrides, **more})
            except SettingsError as exc:
                typer.echo(f"limen: {exc}", err=True)
                raise typer.Exit(2) from None
        return self._settings


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file")] = None,
    libvirt_uri: Annotated[str | None, typer.Option(help="libvirt URI [LIMEN_LIBVIRT_URI]")] = None,
    iso_dir: Annotated[Path | None, typer.Option(help="ISO directory [LIMEN_ISO_DIR]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory [LIMEN_DATA_DIR]")] = None,
    log_dir: Annotated[Path | None, typer.Option(help="Log directory [LIMEN_LOG_DIR]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    ctx.obj = CliState(
        config,
        {"libvirt_uri": libvirt_uri, "iso_dir": iso_dir, "data_dir": data_dir, "log_dir": log_dir},
        as_json,
    )


def _state(ctx: typer.Context) -> CliState:
    state: CliState = ctx.obj
    return state


def _run(settings: Settings, operation: Callable[[Hypervisor], Awaitable[T]]) -> T:
    async def run() -> T:
        hypervisor = Hypervisor(settings)
        await hypervisor.open()
        try:
            return await operation(hypervisor)
        finally:
            await hypervisor.close()

    try:
        return asyncio.run(run())
    except LimenError as exc:
        typer.echo(f"limen: {exc.title}: {exc.details}\n  {exc.code.user_message} [{exc.code.name}]", err=True)
        raise typer.Exit(1) from None


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines)


def _print_vms(state: CliState, vms: list[VmOut]) -> None:
    if state.as_json:
        typer.echo(json.dumps([vm.model_dump(mode="json") for vm in vms], indent=2))
        return
    rows = [
        [vm.name, vm.state.value, str(vm.vcpus), f"{vm.memory_mib} MiB",
         str(vm.vnc.port) if vm.vnc and vm.vnc.port else "-", vm.uuid]
        for vm in vms
    ]
    typer.echo(_table(rows, ["NAME", "STATE", "VCPUS", "MEMORY", "VNC", "UUID"]))


def _print_vm(state: CliState, vm: VmOut) -> None:
    if state.as_json:
        typer.echo(json.dumps(vm.model_dump(mode="json"), indent=2))
        return
    vnc = "none" if vm.vnc is None else f"{vm.vnc.host}:{vm.vnc.port if vm.vnc.port else '(not assigned)'}"
    fields = [
        ("name", vm.name), ("uuid", vm.uuid), ("state", vm.state.value), ("vcpus", str(vm.vcpus)),
        ("memory", f"{vm.memory_mib} MiB"), ("vnc", vnc), ("iso", vm.iso or "-"),
        ("boot order", ", ".join(vm.boot_order) or "-"),
        ("created", vm.created_at.isoformat() if vm.created_at else "-"),
    ]
    fields += [(f"disk {d.target}", f"{d.path} ({d.device})") for d in vm.disks]
    width = max(len(key) for key, _ in fields)
    typer.echo("\n".join(f"{key.ljust(width)}  {value}" for key, value in fields))


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address [LIMEN_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port [LIMEN_PORT]")] = None,
) -> None:
    """Serve the web UI, the REST API and the console WebSocket."""
    from limen.api.app import create_app
    from limen.logs import configure_logging
    from limen.server import serve as run_server

    settings = _state(ctx).settings(host=host, port=port)
    log_file = configure_logging(settings)
    typer.echo(f"limen serving on http://{settings.host}:{settings.port}/ (libvirt {settings.libvirt_uri}"
               f"{', log ' + str(log_file) if log_file else ''}); Ctrl-C stops it", err=True)
    run_server(create_app(settings), settings)


@vm_app.command("list")
def vm_list(ctx: typer.Context) -> None:
    """List every VM libvirt knows."""
    state = _state(ctx)
    vms = _run(state.settings(), lambda hv: hv.list_vms())
    _print_vms(state, [VmOut.of(vm) for vm in vms])


@vm_app.command("show")
def vm_show(ctx: typer.Context, vm_id: Annotated[str, typer.Argument(help="UUID or name")]) -> None:
    """Show one VM."""
    state = _state(ctx)
    _print_vm(state, VmOut.of(_run(state.settings(), lambda hv: hv.get_vm(vm_id))))


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
    state = _state(ctx)
    spec = VmSpec(name=name, vcpus=vcpus, memory_mib=memory, disk_gib=disk, iso=iso, boot_order=tuple(boot or ()),
                  owner=owner)
    _print_vm(state, VmOut.of(_run(state.settings(), lambda hv: hv.create_vm(spec))))


@vm_app.command("start")
def vm_start(ctx: typer.Context, vm_id: Annotated[str, typer.Argument(help="UUID or name")]) -> None:
    """Start a VM."""
    state = _state(ctx)
    _print_vm(state, VmOut.of(_run(state.settings(), lambda hv: hv.start_vm(vm_id))))


@vm_app.command("stop")
def vm_stop(
    ctx: typer.Context,
    vm_id: Annotated[str, typer.Argument(help="UUID or name")],
    force: Annotated[bool, typer.Option(help="Power off at once instead of ACPI shutdown")] = False,
) -> None:
    """Stop a VM (ACPI shutdown; --force powers it off)."""
    state = _state(ctx)
    _print_vm(state, VmOut.of(_run(state.settings(), lambda hv: hv.stop_vm(vm_id, force=force))))


@vm_app.command("reboot")
def vm_reboot(
    ctx: typer.Context,
    vm_id: Annotated[str, typer.Argument(help="UUID or name")],
    force: Annotated[bool, typer.Option(help="Hardware reset instead of ACPI reboot")] = False,
) -> None:
    """Reboot a VM."""
    state = _state(ctx)
    _print_vm(state, VmOut.of(_run(state.settings(), lambda hv: hv.reboot_vm(vm_id, force=force))))


@vm_app.command("delete")
def vm_delete(
    ctx: typer.Context,
    vm_id: Annotated[str, typer.Argument(help="UUID or name")],
    delete_disks: Annotated[bool, typer.Option(help="Also delete the VM's disk volumes")] = False,
) -> None:
    """Delete a VM (stopping it first if it runs)."""
    state = _state(ctx)
    settings = state.settings()

    async def delete(hv: Hypervisor) -> list[str]:
        vm = await hv.get_vm(vm_id)
        # Running servers end its consoles first (when they share a Redis with this command).
        publish_from_command_line(settings.redis_url, Revocation.vm_deleted(
            vm.uuid, f"VM {vm.name!r} deleted from the command line"))
        return await hv.delete_vm(vm.uuid, delete_disks=delete_disks)

    volumes = _run(settings, delete)
    if state.as_json:
        typer.echo(json.dumps({"deleted": vm_id, "deleted_volumes": volumes}))
    else:
        typer.echo(f"deleted {vm_id}" + (f" and {', '.join(volumes)}" if volumes else ""))


@iso_app.command("list")
def iso_list(ctx: typer.Context) -> None:
    """List the boot images in the ISO directory."""
    state = _state(ctx)
    settings = state.settings()
    isos = list_isos(settings.iso_dir)
    if state.as_json:
        typer.echo(json.dumps([{"name": i.name, "size_bytes": i.size_bytes} for i in isos], indent=2))
    else:
        rows = [[i.name, f"{i.size_bytes / 2**20:.1f} MiB"] for i in isos]
        typer.echo(_table(rows, ["NAME", "SIZE"]) if rows else f"no ISOs in {settings.iso_dir}")


@app.command()
def doctor(
    ctx: typer.Context,
    vm_id: Annotated[str | None, typer.Argument(help="UUID or name; without it, check the host")] = None,
    server: Annotated[str | None, typer.Option(help="URL of the running limen server")] = None,
    timeout: Annotated[float, typer.Option(help="Bound on the whole run, seconds")] = 60.0,
    token: Annotated[str | None, typer.Option(
        envvar="LIMEN_TOKEN", show_envvar=True,
        help="API token; the console check asks the server for a console ticket with it",
    )] = None,
) -> None:
    """Walk the checks a person would run by hand, in order, with a fix for each failure."""
    from limen import doctor as checks

    state = _state(ctx)
    settings = state.settings()
    show_progress = not state.as_json and sys.stderr.isatty()

    def progress(name: str) -> None:
        if show_progress:
            sys.stderr.write(f"\r\033[K… {name}")
            sys.stderr.flush()

    results = asyncio.run(
        checks.diagnose(
            settings, vm_id, server_url=server or checks.default_server_url(settings),
            timeout=timeout, progress=progress, token=token,
        )
    )
    if show_progress:
        sys.stderr.write("\r\033[K")
    typer.echo(checks.render_json(results) if state.as_json else checks.render_table(results))
    raise typer.Exit(0 if checks.all_passed(results) else 1)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        app(args=list(argv) if argv is not None else None, standalone_mode=True)
    except SystemExit as exc:
        # Typer/click exits 2 on usage errors already; keep their codes.
        sys.exit(exc.code)
