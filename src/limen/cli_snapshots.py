"""``limen vm snapshot …``: list, create, revert and delete a VM's snapshots.

Mounted under ``limen vm`` by :mod:`limen.cli`; ``ctx.obj`` is its CliState. The commands talk to libvirt
on the host through the same code as the REST API (:mod:`limen.hypervisor.snapshots`). ``create`` waits
for the snapshot, with a spinner and the time taken on a terminal, a plain line otherwise, nothing with
``--json`` (:mod:`limen.cli_progress`): a running VM's memory is saved with it, which takes seconds.
"""

from __future__ import annotations

import json
from typing import Annotated, TypeVar

import typer

from limen.api.schemas import SnapshotOut
from limen.audit import ActionTarget
from limen.cli_audit import run_audited
from limen.cli_hypervisor import run_on_hypervisor
from limen.cli_output import moment, say
from limen.cli_progress import working
from limen.cli_state import cli_state
from limen.hypervisor import Hypervisor
from limen.hypervisor.snapshots import (
    SnapshotInfo,
    check_can_take,
    delete_snapshot,
    list_snapshots,
    revert_snapshot,
    take_snapshot,
    tree_order,
)

T = TypeVar("T")

snapshot_app = typer.Typer(help="A VM's snapshots (disks, and a running VM's memory).", no_args_is_help=True)

VmArgument = Annotated[str, typer.Argument(help="UUID or name of the VM")]
NameArgument = Annotated[str, typer.Argument(help="Snapshot name")]


def snapshot_state(vm_state: str) -> str:
    """A snapshot's VM state as libvirt names it ("shutoff", "running"), in the command line's language."""
    known = {"shutoff": "cli.state.stopped", "running": "cli.state.running", "paused": "cli.state.paused"}
    return say(known[vm_state]) if vm_state in known else vm_state


def _describe(snap: SnapshotOut) -> str:
    kind = say("cli.snapshot.kind_memory") if snap.with_memory else snapshot_state(snap.vm_state)
    return f"{snap.name} ({kind}, {moment(snap.created_at)})"


@snapshot_app.command("list")
def snapshot_list(ctx: typer.Context, vm_id: VmArgument) -> None:
    """List the VM's snapshots as a tree (children indented under their parent; * the current one)."""
    state = cli_state(ctx)

    async def read(hv: Hypervisor) -> list[SnapshotInfo]:
        vm = await hv.get_vm(vm_id)
        return await list_snapshots(hv, vm.uuid)

    snapshots = run_on_hypervisor(state.settings(), read)
    if state.as_json:
        typer.echo(json.dumps([SnapshotOut.of(snap).model_dump(mode="json") for snap in snapshots], indent=2))
        return
    if not snapshots:
        typer.echo(say("cli.no_snapshots", vm=vm_id))
        return
    for depth, info in tree_order(snapshots):
        snap = SnapshotOut.of(info)
        line = f"{'*' if snap.current else ' '} {'  ' * depth}{_describe(snap)}"
        typer.echo(f"{line}  {snap.description}" if snap.description else line)


@snapshot_app.command("create")
def snapshot_create(
    ctx: typer.Context, vm_id: VmArgument, name: NameArgument,
    description: Annotated[str, typer.Option(help="Free text kept with the snapshot")] = "",
) -> None:
    """Take a snapshot (a running VM's memory included: a revert resumes it there)."""
    state = cli_state(ctx)
    settings = state.settings()

    async def take(hv: Hypervisor, target: ActionTarget) -> SnapshotOut:
        vm = await hv.get_vm(vm_id)
        target.vm_name, target.vm_uuid, target.details = vm.name, vm.uuid, name[:80]
        # A refused name, description or disk is said alone: "taking snapshot…" before it would say something
        # began that never did (as `vm create` does).
        await check_can_take(hv, vm.uuid, name, description)
        with working(say("cli.snapshot.taking", snapshot=name, vm=vm_id), as_json=state.as_json) as progress:
            # libvirt gives no progress figure for it: the spinner shows the time it has taken so far.
            progress.step(say("cli.snapshot.with_memory" if vm.state.value == "running" else "cli.snapshot.disks"))
            return SnapshotOut.of(await take_snapshot(hv, vm.uuid, name, description))

    snap = run_audited(run_on_hypervisor, settings, "snapshot", vm_id, take)
    if state.as_json:
        typer.echo(json.dumps(snap.model_dump(mode="json")))
    else:
        typer.echo(say("cli.snapshot_taken", snapshot=_describe(snap), vm=vm_id))


@snapshot_app.command("revert")
def snapshot_revert(ctx: typer.Context, vm_id: VmArgument, name: NameArgument) -> None:
    """Bring the VM back to the snapshot (what it did since is lost)."""
    state = cli_state(ctx)

    async def revert(hv: Hypervisor, target: ActionTarget) -> SnapshotOut:
        vm = await hv.get_vm(vm_id)
        target.vm_name, target.vm_uuid, target.details = vm.name, vm.uuid, name[:80]
        return SnapshotOut.of(await revert_snapshot(hv, vm.uuid, name))

    snap = run_audited(run_on_hypervisor, state.settings(), "revert", vm_id, revert)
    if state.as_json:
        typer.echo(json.dumps(snap.model_dump(mode="json")))
    else:
        after = (say("cli.revert.running") if snap.with_memory
                 else say("cli.revert.as_was", state=snapshot_state(snap.vm_state)))
        typer.echo(say("cli.snapshot_reverted", vm=vm_id, snapshot=snap.name, after=after))


@snapshot_app.command("delete")
def snapshot_delete(ctx: typer.Context, vm_id: VmArgument, name: NameArgument) -> None:
    """Delete a snapshot (its children stay, under its parent)."""
    state = cli_state(ctx)

    async def delete(hv: Hypervisor, target: ActionTarget) -> None:
        vm = await hv.get_vm(vm_id)
        target.vm_name, target.vm_uuid, target.details = vm.name, vm.uuid, name[:80]
        await delete_snapshot(hv, vm.uuid, name)

    run_audited(run_on_hypervisor, state.settings(), "snapshot-delete", vm_id, delete)
    typer.echo(json.dumps({"deleted": name}) if state.as_json else say("cli.snapshot_deleted", snapshot=name, vm=vm_id))
