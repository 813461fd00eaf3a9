"""REST route for background operations (a snapshot being taken): ``GET /api/operations/{id}``.

An operation is seen by admins, by who started it and by the owner of its VM; to anyone else, as to a
request for an id this server does not know (long finished, or another server's that it has not heard of),
it is OPERATION_NOT_FOUND. Replicas on one Redis hear of each other's operations through their relayed
events and answer for them as the last event told them (:meth:`Operations.heard`), or as the board in Redis
has it when they have heard nothing of it yet (:meth:`Operations.find`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from limen.api.deps import AccessDep, CurrentUser, HypervisorDep
from limen.api.schemas import ErrorBody
from limen.api.strict_json import StrictJsonRoute
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.operations import Operation

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/operations", tags=["operations"])

_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (401, 404)}


class OperationOut(BaseModel):
    id: str
    kind: str = Field(description="What runs: snapshot")
    vm_uuid: str
    vm_name: str
    subject: str = Field(description="What it makes or acts on: the snapshot's name")
    user: str = Field(description="Who started it")
    state: str = Field(description="running, done or failed")
    progress: int | None = Field(description="0–100; null while the hypervisor gives no figure")
    error: ErrorBody | None = Field(description="Why it failed (the usual error body); null otherwise")
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, operation: Operation) -> OperationOut:
        return cls.model_validate(operation.payload())


def refuse_busy_vm(action: str) -> Any:
    """A dependency: SNAPSHOT_IN_PROGRESS, before the VM is read, for a VM a snapshot is being taken of,
    reverted to or deleted; VM_MOVING for one being moved to another host. While libvirt does it, reading the
    VM may wait as long (libvirt holds the domain for it), so asking first keeps these requests from waiting
    for nothing; a cold move holds nothing in libvirt, and a start or a change meanwhile was lost or tore the
    copy. Only who may see the VM learns of it:
    to others it is missing, as the route answers them. The refusal is recorded as the route's ``action``, as
    the route's own refusals are: a delete tried during a snapshot shows in the audit trail. A VM being deleted
    is waited for (:meth:`Operations.check_idle`): VM_NOT_FOUND, recorded the same way, once the deletion is
    done."""

    async def refuse(request: Request, vm_id: str, principal: CurrentUser, access: AccessDep,
                     hypervisor: HypervisorDep) -> None:
        running = hypervisor.operations.running_for_ident(vm_id)
        if running is None or not (principal.name == running.user or principal.may_access(running.vm_owner)):
            return
        try:
            await hypervisor.operations.check_idle(running.vm_uuid, running.vm_name, ErrorCode.SNAPSHOT_IN_PROGRESS)
        except LimenError as refused:
            await access.audit.vm_action(user=principal.name, action=action, vm_name=running.vm_name,
                                         vm_uuid=running.vm_uuid, result_code=refused.code.name,
                                         details=await _snapshot_name(request))
            raise

    return Depends(refuse)


async def _snapshot_name(request: Request) -> str:
    """The snapshot a refused request named, as the route's own rows say it: in the path (revert, delete), or
    in the body of a snapshot's create (those rows said nothing)."""
    name = request.path_params.get("name")
    if name is None and request.method == "POST":
        try:
            body = await request.json()  # read already by FastAPI for the route: no second read
        except ValueError:
            body = None
        name = body.get("name") if isinstance(body, dict) else None
    return str(name)[:80] if isinstance(name, str) else ""


@router.get("/{operation_id}", response_model=OperationOut, responses=_ERRORS)
async def get_operation(operation_id: str, principal: CurrentUser, hypervisor: HypervisorDep) -> OperationOut:
    operation = await hypervisor.operations.find(operation_id)
    if operation is None or not (principal.name == operation.user or principal.may_access(operation.vm_owner)):
        raise LimenError(ErrorCode.OPERATION_NOT_FOUND, f"no operation {operation_id[:40]!r} on this server")
    return OperationOut.of(operation)
