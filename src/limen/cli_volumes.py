"""``limen volumes …``: the storage pool's disk volumes on each host, and deleting one no VM uses.

Mounted by :mod:`limen.cli`; ``ctx.obj`` is its CliState. The commands talk to libvirt on the hosts through
the same code as the REST API (:mod:`limen.hypervisor.volumes`); ``delete`` also reads the audit trail for a
create or move of a running limen that is about to use the volume (:mod:`limen.volume_claims`), and is
recorded there as the API's deletion is (``delete-volume``).
"""

from __future__ import annotations

import functools
import json
from typing import Annotated

import typer

from limen.action_details import volume_details
from limen.api.schemas import VolumeOut
from limen.audit import ActionTarget
from limen.cli_audit import audit_log, run_audited
from limen.cli_hypervisor import run_on_hypervisor
from limen.cli_output import say, table
from limen.cli_state import cli_state
from limen.hypervisor import Hypervisor
from limen.hypervisor.hosts import DEFAULT_HOST
from limen.hypervisor.volumes import PoolVolume, delete_volume, list_volumes
from limen.sizes import format_size
from limen.volume_claims import refuse_claimed

volume_app = typer.Typer(help="Disk volumes of the storage pool: which VM uses each; delete one none uses "
                              "(a disk kept when its VM was deleted).",
                         no_args_is_help=True)


def _used_by(volume: PoolVolume) -> str:
    names = [user.name for user in volume.used_by] + [say("cli.volume.backs", volume=name)
                                                      for name in volume.backing_for]
    return ", ".join(names) if names else say("cli.volume.unused")


@volume_app.command("list")
def volumes_list(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Only this host's (default: every host's)")] = None,
) -> None:
    """List the pool's volumes on each host, with the VM that uses each (none: a disk kept from a deleted VM)."""
    state = cli_state(ctx)

    volumes = run_on_hypervisor(state.settings(), functools.partial(list_volumes, host=host))
    if state.as_json:
        typer.echo(json.dumps([VolumeOut.of(volume).model_dump(mode="json") for volume in volumes], indent=2))
        return
    rows = [[volume.name, volume.host, format_size(volume.capacity_bytes),
             format_size(volume.allocation_bytes), volume.format or "-", _used_by(volume)]
            for volume in volumes]
    typer.echo(table(rows, ["cli.col.name", "cli.col.host", "cli.col.size", "cli.col.allocated", "cli.col.format",
                            "cli.col.used_by"]) if rows else say("cli.no_volumes"))


@volume_app.command("delete")
def volumes_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The volume's name, as `limen volumes list` shows it")],
    host: Annotated[str, typer.Option(help="The host whose pool holds it")] = DEFAULT_HOST,
) -> None:
    """Delete a volume no VM uses (refused while a VM, a snapshot, a volume backed by it or a create needs it)."""
    state = cli_state(ctx)
    settings = state.settings()

    async def delete(hv: Hypervisor, target: ActionTarget) -> PoolVolume:
        hv.hosts.get(host)  # HOST_NOT_FOUND
        target.details = volume_details(host)
        with audit_log(settings) as audit:
            deleted = await delete_volume(hv, name, host=host, check_claims=functools.partial(refuse_claimed, audit))
        target.details = volume_details(host, deleted.capacity_bytes)
        return deleted

    deleted = run_audited(run_on_hypervisor, settings, "delete-volume", name, delete)
    typer.echo(json.dumps({"deleted": name, "host": host, "capacity_bytes": deleted.capacity_bytes})
               if state.as_json else say("cli.volume_deleted", name=name, host=host))
