"""REST routes for a VM's snapshots: list, take (a background operation), revert, delete.

Authorised as every VM route (owners and admins, ``AccessibleVm``: a VM the asker may not see is
VM_NOT_FOUND) and recorded in the audit trail. Taking a snapshot answers 202 with an operation at once:
its audit row is written before the work and completed when the work ends, however long that takes;
progress goes to the event stream (``snapshot_progress``, ``snapshot_done``) and to
``GET /api/operations/{id}``. A revert and a deletion answer when they end, but are operations of the VM all
the same (never shown): what else would change the VM meanwhile is refused, as during a snapshot's taking.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from limen.api.body_rules import body_rules
from limen.api.deps import AccessDep, AccessibleVm, CurrentUser, HypervisorDep
from limen.api.operations import OperationOut, refuse_busy_vm
from limen.api.quota import QuotaDep, quota_for_revert
from limen.api.schemas import ErrorBody, SnapshotOut
from limen.api.strict_json import StrictJsonRoute
from limen.errors import ErrorCode, LimenError, Refusals
from limen.hypervisor import Hypervisor
from limen.hypervisor.operations import SNAPSHOT_DELETION, SNAPSHOT_REVERT, Operation
from limen.hypervisor.snapshots import (
    DESCRIPTION_MAX,
    check_can_take,
    check_description,
    check_snapshot_name,
    delete_snapshot,
    find_snapshot,
    list_snapshots,
    revert_snapshot,
    take_snapshot,
)
from limen.hypervisor.vm_feed import VmEventType

log = logging.getLogger("limen.api")

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/vms", tags=["snapshots"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 422, 503)
}


class SnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="1–63 of letters a–z, A–Z, digits, '_', '.', '-'; starts with a letter or digit "
                                  "(the VM name rule)", examples=["before-upgrade"])
    description: str = Field("", description=f"Free text, at most {DESCRIPTION_MAX} characters")


@body_rules(SnapshotIn)
async def _snapshot_rules(_request: Request, body: SnapshotIn, _failed: frozenset[str]) -> None:
    """The snapshot's name and description rules (check_can_take's), beside the body's type errors."""
    refusals = Refusals()
    with refusals.check():
        if body.name is not None:
            check_snapshot_name(body.name)
    with refusals.check():
        if body.description is not None:
            check_description(body.description)
    refusals.raise_any()


class SnapshotDeleted(BaseModel):
    deleted: str


@router.get("/{vm_id}/snapshots", response_model=list[SnapshotOut], responses=_ERRORS)
async def get_snapshots(vm: AccessibleVm, hypervisor: HypervisorDep) -> list[SnapshotOut]:
    """The VM's snapshots, parents before their children (depth first, oldest first among siblings)."""
    return [SnapshotOut.of(snap) for snap in await list_snapshots(hypervisor, vm.uuid)]


@router.post("/{vm_id}/snapshots", response_model=OperationOut, status_code=202, responses=_ERRORS,
    dependencies=[refuse_busy_vm("snapshot")])
async def post_snapshot(
    body: SnapshotIn, vm: AccessibleVm, principal: CurrentUser, access: AccessDep, hypervisor: HypervisorDep,
) -> OperationOut:
    """Take a snapshot: of the disks, and of a running VM's memory too (a revert resumes it there).

    Answers 202 with the operation at once; poll ``GET /api/operations/{id}`` or follow the event stream.
    Refused before any work: a bad name (VALIDATION_ERROR), a name taken (SNAPSHOT_ALREADY_EXISTS), a disk
    that is not qcow2 (SNAPSHOT_UNSUPPORTED), a snapshot of the VM still being taken (SNAPSHOT_IN_PROGRESS).
    """
    operations = hypervisor.operations
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(access.audit.recording(principal.name, "snapshot", vm.name,
                                                               vm_uuid=vm.uuid, details=body.name[:80]))
        await operations.check_idle(vm.uuid, vm.name, ErrorCode.SNAPSHOT_IN_PROGRESS)
        await check_can_take(hypervisor, vm.uuid, body.name, body.description)
        # The audit row completes when the work ends, in the operation's task. The task starts at this
        # coroutine's next await, after the hand-over below; a refusal by start() is still recorded here.
        handover: list[AsyncExitStack] = []

        async def work(operation: Operation) -> None:
            async with handover[0]:
                try:
                    await _take(hypervisor, operation, body)
                except asyncio.CancelledError:  # limen stops: say so, in the audit row and the operation
                    raise LimenError(ErrorCode.SERVER_SHUTDOWN, "limen stopped while the snapshot was being taken; "
                                     "the VM's snapshot list shows whether libvirt finished it") from None

        # A deletion of the VM that began during the checks is waited for here, and answers VM_NOT_FOUND.
        async def announce_end(operation: Operation) -> None:  # done or failed, as the operation says now
            await hypervisor.announce(operation.vm_uuid, VmEventType.SNAPSHOT_DONE, operation=operation.payload())

        operation = await operations.start(
            kind="snapshot", vm_uuid=vm.uuid, vm_name=vm.name, vm_owner=vm.owner, user=principal.name,
            subject=body.name, work=work, busy=ErrorCode.SNAPSHOT_IN_PROGRESS, on_end=announce_end)
        handover.append(stack.pop_all())
    await operations.post_start(operation)  # a poll on another replica right after this answer finds it
    log.info("VM snapshot started", extra={"event": "vm_snapshot_start", "vm_uuid": vm.uuid, "vm_name": vm.name,
                                           "snapshot": body.name, "operation": operation.id,
                                           "user": principal.name})
    return OperationOut.of(operation)


async def _take(hypervisor: Hypervisor, operation: Operation, body: SnapshotIn) -> None:
    """The operation's work: takes the snapshot, announcing its start on the event stream (its end is announced
    once the operation has ended: ``announce_end``)."""
    await hypervisor.announce(operation.vm_uuid, VmEventType.SNAPSHOT_PROGRESS, operation=operation.payload())
    try:
        snap = await take_snapshot(hypervisor, operation.vm_uuid, body.name, body.description)
    except LimenError as exc:
        log.warning("VM snapshot failed: %s", exc, extra={"event": "vm_snapshot_failed", "vm_uuid": operation.vm_uuid,
                                                           "snapshot": body.name, "operation": operation.id})
        raise
    log.info("VM snapshot taken", extra={"event": "vm_snapshot", "vm_uuid": operation.vm_uuid,
                                         "vm_name": operation.vm_name, "snapshot": snap.name,
                                         "with_memory": snap.with_memory, "operation": operation.id,
                                         "user": operation.user})


@router.post("/{vm_id}/snapshots/{name}/revert", response_model=SnapshotOut, responses=_ERRORS,
    dependencies=[refuse_busy_vm("revert")])
async def post_revert(
    name: str, vm: AccessibleVm, principal: CurrentUser, access: AccessDep, hypervisor: HypervisorDep,
    quota: QuotaDep,
) -> SnapshotOut:
    """Bring the VM back to the snapshot ``name``: its disks, and for a snapshot of a running VM its memory
    (the VM runs on from that moment; a snapshot of a stopped VM leaves it stopped). What the VM did
    since the snapshot is lost, unless another snapshot holds it. A revert that leaves the VM running is
    checked against the quota on running vCPUs and memory as a start is (QUOTA_EXCEEDED). The VM keeps its
    owner of now, not the snapshot's. An operation of the VM while it runs: a snapshot, a revert, a snapshot's
    or the VM's deletion asked meanwhile is SNAPSHOT_IN_PROGRESS."""
    async with (access.audit.recording(principal.name, "revert", vm.name, vm_uuid=vm.uuid, details=name[:80]),
                hypervisor.operations.running(kind=SNAPSHOT_REVERT, vm_uuid=vm.uuid, vm_name=vm.name,
                                              vm_owner=vm.owner, user=principal.name, subject=name[:80],
                                              busy=ErrorCode.SNAPSHOT_IN_PROGRESS)):
        target = await find_snapshot(hypervisor, vm.uuid, name)
        async with quota_for_revert(quota, hypervisor, principal, vm, target):
            snap = await revert_snapshot(hypervisor, vm.uuid, name)
    await hypervisor.announce(vm.uuid, VmEventType.SNAPSHOTS_CHANGED)  # "current" moved; state events follow
    log.info("VM reverted to a snapshot", extra={"event": "vm_snapshot_revert", "vm_uuid": vm.uuid,
                                                 "vm_name": vm.name, "snapshot": name, "user": principal.name})
    return SnapshotOut.of(snap)


@router.delete("/{vm_id}/snapshots/{name}", response_model=SnapshotDeleted, responses=_ERRORS,
    dependencies=[refuse_busy_vm("snapshot-delete")])
async def delete_one_snapshot(
    name: str, vm: AccessibleVm, principal: CurrentUser, access: AccessDep, hypervisor: HypervisorDep,
) -> SnapshotDeleted:
    """Delete the snapshot ``name`` (its data in the disks too); its children hang from its parent. An operation
    of the VM while it runs, as a revert is."""
    async with (access.audit.recording(principal.name, "snapshot-delete", vm.name, vm_uuid=vm.uuid,
                                       details=name[:80]),
                hypervisor.operations.running(kind=SNAPSHOT_DELETION, vm_uuid=vm.uuid, vm_name=vm.name,
                                              vm_owner=vm.owner, user=principal.name, subject=name[:80],
                                              busy=ErrorCode.SNAPSHOT_IN_PROGRESS)):
        await delete_snapshot(hypervisor, vm.uuid, name)
    await hypervisor.announce(vm.uuid, VmEventType.SNAPSHOTS_CHANGED)
    log.info("VM snapshot deleted", extra={"event": "vm_snapshot_delete", "vm_uuid": vm.uuid, "vm_name": vm.name,
                                           "snapshot": name, "user": principal.name})
    return SnapshotDeleted(deleted=name)
