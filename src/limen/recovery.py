"""Crash recovery: this instance's heartbeat, and closing what lost instances held.

:class:`Recovery` runs for the life of ``limen serve`` (:meth:`Recovery.start` in the app's lifespan,
:meth:`Recovery.stop` at its end). At start and every ``instance_heartbeat`` seconds it heartbeats this
instance and sweeps (:meth:`Recovery.sweep`): every instance found gone (:mod:`limen.instances`) is marked
stopped, then what no live instance holds is closed:

- live console rows → ended now with ``SERVER_LOST``, ``end_details`` naming the lost instance;
- quota reservations (:mod:`limen.quota.ledger`) of instances not alive → dropped;
- pending VM actions → completed with ``SERVER_LOST``: a create as failed, once what it left in libvirt
  is removed (:mod:`limen.hypervisor.leftovers`; until then it stays pending, and the next sweep tries
  again); any other with its outcome unknown (``OUTCOME_UNKNOWN``), since libvirt may have done the work;
- the operations of instances no longer alive (a snapshot being taken), as this instance answers for them
  (:meth:`~limen.hypervisor.operations.Operations.instances_alive`) → failed with ``SERVER_LOST``.

Creates go through :meth:`Recovery.creating`, which makes them recoverable: the name must be free, then
the create's row is written (``STARTED``, with a random token the domain's metadata will carry) before
any libvirt work, and completed with the outcome. A retry of the same name first clears a lost create of
that name (held by a gone instance, or by this one but no longer running), so the name is never stuck.
The row is the commit point: a create whose row cannot be completed as ``OK`` is undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import NoReturn

from limen.action_details import (
    OUTCOME_UNKNOWN,
    OWN_CREATE_STOPPED,
    UNRECORDED_INSTANCE,
    joined,
    removed_details,
)
from limen.audit import OK, AuditLog, VmActionInfo
from limen.cancellation import cancel_and_wait
from limen.errors import CreateNotBegun, ErrorCode, LimenError
from limen.hypervisor import Hypervisor, VmSpec
from limen.hypervisor.leftovers import CreateMark, remove_create_leftovers
from limen.instances import Census, InstanceInfo, InstanceRegistry
from limen.quota import QuotaLedger

log = logging.getLogger("limen.recovery")

LOST = ErrorCode.SERVER_LOST.name


@dataclass(frozen=True, slots=True)
class SweepReport:
    lost_instances: tuple[str, ...] = ()
    closed_sessions: tuple[str, ...] = ()
    failed_actions: tuple[int, ...] = ()  # completed as SERVER_LOST
    still_pending: tuple[int, ...] = ()  # their leftovers could not be removed yet


@dataclass(slots=True)
class CreateIntent:
    """A create's pending row; the block sets ``vm_uuid`` once the VM is defined."""

    action_id: int
    mark: CreateMark
    vm_uuid: str | None = None

    @property
    def token(self) -> str:
        """For :meth:`Hypervisor.create_vm`: the domain's metadata carries it."""
        return self.mark.token

    @property
    def volume(self) -> str | None:
        """For :meth:`Hypervisor.create_vm`: the disk volume's name, as recorded."""
        return self.mark.volume


@dataclass(slots=True)
class _Lost:
    """Words for what a sweep closes: which instance was lost, and why."""

    gone: dict[str, tuple[InstanceInfo, str]] = field(default_factory=dict)

    def describe(self, instance_id: str | None) -> str:
        if instance_id is None:
            return UNRECORDED_INSTANCE
        if instance_id in self.gone:
            info, reason = self.gone[instance_id]
            return f"{info.describe()} was lost: {reason}"
        return f"limen instance {instance_id[:12]} had stopped"


class Recovery:
    def __init__(self, registry: InstanceRegistry, audit: AuditLog, hypervisor: Hypervisor, *,
                 quota: QuotaLedger | None = None) -> None:
        self.registry = registry
        self.quota = quota
        self.audit = audit
        self.hypervisor = hypervisor
        self._creating: set[str] = set()  # names whose create runs in this process
        self._cleaning = asyncio.Lock()  # one cleanup of lost creates at a time in this process
        self._loop: asyncio.Task[None] | None = None

    # -- life --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Registers this instance, sweeps once, and heartbeats and sweeps from then on."""
        await self.registry.register()
        log.info("limen instance registered", extra={
            "event": "instance_start", "instance": self.registry.id, "pid": self.registry.process.pid})
        await self._sweep_logged()
        self._loop = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._loop is not None:
            await cancel_and_wait(self._loop, "the recovery loop")
            self._loop = None
        try:
            await self.registry.stopped()
        except Exception:  # stopping anyway; the others will find this instance gone by its heartbeat
            log.exception("could not mark this instance stopped", extra={"event": "instance_stop_failed"})

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.registry.heartbeat_interval)
            try:
                if not await self.registry.heartbeat():
                    log.error("this instance had been declared lost (no heartbeat in time); what it held was "
                              "closed by another instance", extra={"event": "instance_revived",
                                                                  "instance": self.registry.id})
            except Exception:
                log.exception("heartbeat failed", extra={"event": "heartbeat_failed"})
            await self._sweep_logged()

    async def _sweep_logged(self) -> None:
        try:
            report = await self.sweep()
        except Exception:  # the database or libvirt is down: the next sweep tries again
            log.exception("sweep for lost instances failed", extra={"event": "sweep_failed"})
            return
        if report != SweepReport():
            log.warning("closed what lost limen instances held", extra={
                "event": "sweep", "lost_instances": list(report.lost_instances),
                "closed_sessions": list(report.closed_sessions), "failed_actions": list(report.failed_actions),
                "still_pending": list(report.still_pending)})

    # -- sweeping ----------------------------------------------------------------------------------

    async def sweep(self) -> SweepReport:
        census = await self.registry.census()
        self.hypervisor.operations.instances_alive(census.live)
        lost = _Lost({info.id: (info, reason) for info, reason in census.gone})
        for instance_id in lost.gone:
            await self.registry.mark_lost(instance_id)
        gone = frozenset(lost.gone)
        if self.quota is not None:  # quota reservations of changes that ended with their instance
            await self.quota.drop_reservations_except(census.live)
        closed = await self.audit.close_lost_console_sessions(gone, lost.describe)
        failed: list[int] = []
        pending: list[int] = []
        for action in await self.audit.lost_actions(gone, own_creates=True):
            if action.instance_id == self.registry.id and action.vm_name in self._creating:
                continue  # runs right now in this process
            why = (OWN_CREATE_STOPPED if action.instance_id == self.registry.id
                   else lost.describe(action.instance_id))
            if await self._recover(action, why):
                failed.append(action.id)
            else:
                pending.append(action.id)
        return SweepReport(tuple(lost.gone), tuple(closed), tuple(failed), tuple(pending))

    async def _recover(self, action: VmActionInfo, why: str) -> bool:
        """Removes what a lost action left and completes it as SERVER_LOST; False if it stays pending."""
        async with self._cleaning:
            if not await self.audit.claim_action(action):
                return False  # completed or claimed meanwhile
            removed: list[str] = []
            if action.action == "create":
                mark = CreateMark.parse(action.details)
                try:
                    if mark is not None:  # else written by no create of this code: nothing is provably its
                        removed = await remove_create_leftovers(self.hypervisor, action.vm_name, mark)
                except LimenError as exc:
                    log.warning("could not remove what a lost create left; it stays pending", extra={
                        "event": "create_leftovers_kept", "action_id": action.id, "vm_name": action.vm_name,
                        "code": exc.code.name})
                    return False
            if action.action == "create":
                details = joined(why, removed_details(removed))
            else:  # what it was (the started row's details), then why it ends so
                details = joined(action.details, why, OUTCOME_UNKNOWN)
            await self.audit.action_finished(action.id, result_code=LOST, details=details)
            log.warning("lost VM action completed as failed", extra={
                "event": "action_lost", "action_id": action.id, "action": action.action,
                "vm_name": action.vm_name, "removed": removed})
            return True

    async def close_if_lost(self, session_id: str) -> bool:
        """Ends the live console row ``session_id`` at once (SERVER_LOST) if no live instance holds it."""
        census = await self.registry.census()
        lost = _Lost({info.id: (info, reason) for info, reason in census.gone})
        closed = await self.audit.close_console_session_if_lost(session_id, frozenset(lost.gone), lost.describe)
        return closed is not None

    # -- creating ----------------------------------------------------------------------------------

    async def _clear_lost_create(self, vm_name: str) -> None:
        """Recovers a pending create of ``vm_name`` that no running create holds: its instance is gone, or
        it is this one and the create no longer runs here (the caller holds the name in ``_creating``)."""
        pending = await self.audit.pending_creates(vm_name)
        if not pending:
            return
        census: Census = await self.registry.census()  # after the rows: an instance that wrote one is in it
        lost = _Lost({info.id: (info, reason) for info, reason in census.gone})
        for action in pending:
            mine = action.instance_id == self.registry.id
            if mine or action.instance_id not in census.live:
                why = OWN_CREATE_STOPPED if mine else lost.describe(action.instance_id)
                await self._recover(action, why)

    @asynccontextmanager
    async def creating(self, user: str, spec: VmSpec) -> AsyncIterator[CreateIntent]:
        """Records the create of ``spec`` around the block, which must pass the intent's token to
        :meth:`Hypervisor.create_vm`. Failures before the block (invalid spec, the name is taken, a create
        of it runs) are recorded as completed failed actions and raised."""
        vm_name = spec.name
        try:
            await self.hypervisor.validate_spec(spec)  # the name is sane before anything is asked about it
        except LimenError as exc:
            await self._refused(user, vm_name, exc)
        if vm_name in self._creating:
            await self._refused(user, vm_name, LimenError(
                ErrorCode.VM_ALREADY_EXISTS, f"a VM named {vm_name!r} is being created right now"))
        self._creating.add(vm_name)
        try:
            intent = await self._begin(user, spec)
            try:
                yield intent
            except BaseException as exc:
                await self._failed(intent, vm_name, exc)
                raise
            await self._succeeded(intent, vm_name)
        finally:
            self._creating.discard(vm_name)

    async def _begin(self, user: str, spec: VmSpec) -> CreateIntent:
        try:
            await self._clear_lost_create(spec.name)
            await self.hypervisor.check_name_free(spec.name)
            token = uuid.uuid4().hex
            with_disk = spec.disk_gib is not None
            volume = await self.hypervisor.free_volume_name(spec.name, token) if with_disk else None
            mark = CreateMark(token=token, with_disk=with_disk, volume=volume)
            action_id = await self.audit.action_started(user=user, action="create", vm_name=spec.name,
                                                        details=mark.as_details())
        except LimenError as exc:
            await self._refused(user, spec.name, exc)
        return CreateIntent(action_id=action_id, mark=mark)

    async def _refused(self, user: str, vm_name: str, exc: LimenError) -> NoReturn:
        with contextlib.suppress(Exception):  # the refusal matters more to the caller than its record
            await self.audit.vm_action(user=user, action="create", vm_name=vm_name, vm_uuid=None,
                                       result_code=exc.code.name, details=exc.audit_details)
        raise exc

    async def _failed(self, intent: CreateIntent, vm_name: str, exc: BaseException) -> None:
        """The create failed and rolled back what it made; make sure of it, as a sweep would, and only then
        complete the row (else it stays pending for the next sweep or retry)."""
        result, why = (exc.code.name, exc.audit_details) if isinstance(exc, LimenError) else ("INTERNAL_ERROR", "")
        try:
            # A create that never began left nothing, and its host may not answer the look for leftovers:
            # completing its row now frees the name (else held until that host answers again).
            removed = ([] if isinstance(exc, CreateNotBegun)
                       else await remove_create_leftovers(self.hypervisor, vm_name, intent.mark))
            await self.audit.action_finished(intent.action_id, result_code=result,
                                             details=joined(why, removed_details(removed)))
        except Exception:
            log.exception("a failed create could not be completed; it stays pending for the next sweep", extra={
                "event": "create_left_pending", "action_id": intent.action_id, "vm_name": vm_name})

    async def _succeeded(self, intent: CreateIntent, vm_name: str) -> None:
        try:
            completed = await self.audit.action_finished(intent.action_id, result_code=OK, vm_uuid=intent.vm_uuid,
                                                         details="")
        except Exception as exc:
            await self._undo(intent, vm_name)
            raise LimenError(ErrorCode.INTERNAL_ERROR,
                             f"the create could not be recorded ({type(exc).__name__}); it was undone") from None
        if not completed:  # another instance declared this one lost and completed the row as failed
            await self._undo(intent, vm_name)
            raise LimenError(ErrorCode.SERVER_LOST, "this limen instance was declared lost during the create")

    async def _undo(self, intent: CreateIntent, vm_name: str) -> None:
        try:
            await remove_create_leftovers(self.hypervisor, vm_name, intent.mark)
        except LimenError:  # the row is still pending (or already failed): a later sweep or retry finishes
            log.exception("could not undo a create", extra={"event": "create_undo_failed", "vm_name": vm_name})

