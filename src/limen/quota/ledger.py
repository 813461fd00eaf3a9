"""Quota checks made atomic across every limen instance on one database.

libvirt cannot be locked, so the check is made atomic in the database. :meth:`QuotaLedger.reserving`, in one
transaction:

1. updates the one ``quota_lock`` row first — on PostgreSQL a row lock, on SQLite the database's write lock
   (taken by that first write, waiting up to the busy timeout) — so checks run one at a time, whichever
   process makes them;
2. reads the reservations of changes that passed their check and are not done yet
   (``quota_reservations``), then what libvirt shows (every VM, with its owner from the domain metadata) —
   in that order, as a change that is done deletes its reservation without the lock; a reservation and the
   VM libvirt shows of the same UUID (a VM being created: of its name) are merged by taking the larger of
   each resource, never added;
3. checks the owner's limits and the system-wide ones (:mod:`limen.quota.limits`) and, if the change fits,
   records its reservation before the lock is released at commit.

The caller then makes the change and the reservation is deleted when it is done or failed (by then libvirt
shows what it made). Reservations of a limen instance found lost are dropped by its sweep
(:mod:`limen.recovery`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.lowlevel import EventLoopToken
from sqlalchemy import delete, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from limen.auth.principal import Principal
from limen.auth.users import lookup_user, user_to_change
from limen.clock import Clock, utc_now
from limen.db import Database
from limen.db.models import QuotaLock, QuotaReservation, Role, UserQuota
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import Vm
from limen.quota.limits import SYSTEM_WIDE, Footprint, Limits, Usage, check, check_alone, with_change
from limen.settings import Settings

LOCK_WAIT = 30.0  # seconds a quota check may wait for its turn

VmLister = Callable[[], Coroutine[Any, Any, list[Vm]]]


def default_limits(settings: Settings) -> Limits:
    return Limits(settings.quota_vms, settings.quota_vcpus, settings.quota_memory_mib, settings.quota_disk_gib)


def system_limits(settings: Settings) -> Limits:
    return Limits(settings.quota_total_vms, settings.quota_total_vcpus, settings.quota_total_memory_mib,
                  settings.quota_total_disk_gib)


@dataclass(frozen=True, slots=True)
class QuotaReport:
    user: str
    limits: Limits
    usage: Usage
    system_limits: Limits
    system_usage: Usage


def _override_of(session: Session, user_id: int) -> Limits:
    row = session.get(UserQuota, user_id)
    if row is None:
        return Limits()
    return Limits(row.max_vms, row.max_vcpus, row.max_memory_mib, row.max_disk_gib)


class QuotaLedger:
    def __init__(self, db: Database, settings: Settings, clock: Clock, *, instance_id: str) -> None:
        self.db = db
        self.defaults = default_limits(settings)
        self.system = system_limits(settings)
        self.clock = clock
        self.instance_id = instance_id

    # -- limits ------------------------------------------------------------------------------------

    def _limits_in(self, session: Session, user_name: str | None) -> Limits:
        """A plain user's override, else the defaults; an administrator's override only; none for a VM
        without an owner (or whose owner is gone)."""
        user = lookup_user(session, user_name) if user_name is not None else None
        if user is None:
            return Limits()
        override = _override_of(session, user.id)
        return override if user.role == Role.ADMIN.value else override.or_else(self.defaults)

    async def override(self, user_name: str) -> Limits:
        def run(session: Session) -> Limits:
            user = lookup_user(session, user_name)
            return Limits() if user is None else _override_of(session, user.id)

        return await self.db.run(run)

    async def set_override(self, user_name: str, limits: Limits) -> str:
        """Sets the user's override (any case finds them; USER_NOT_FOUND); returns their name as kept."""
        def run(session: Session) -> str:
            user = user_to_change(session, user_name)  # also serializes two overrides of one user
            row = session.get(UserQuota, user.id)
            if row is None:
                row = UserQuota(user_id=user.id)
                session.add(row)
            row.max_vms, row.max_vcpus = limits.vms, limits.vcpus
            row.max_memory_mib, row.max_disk_gib = limits.memory_mib, limits.disk_gib
            return user.name

        return await self.db.run(run)

    # -- usage -------------------------------------------------------------------------------------

    @staticmethod
    def _reservations(session: Session) -> list[Footprint]:
        return [Footprint(name=row.vm_name, owner=row.user_name, running=row.running, vcpus=row.vcpus,
                          memory_mib=row.memory_mib, disk_bytes=row.disk_bytes, uuid=row.vm_uuid)
                for row in session.scalars(select(QuotaReservation))]

    @staticmethod
    def _footprints(vms: list[Vm], reservations: list[Footprint]) -> dict[str, Footprint]:
        footprints = {vm.uuid: Footprint.of_vm(vm) for vm in vms}
        for reserved in reservations:
            footprints = with_change(footprints, reserved)
        return footprints

    async def report(self, user_name: str, list_vms: VmLister) -> QuotaReport:
        vms = await list_vms()

        def run(session: Session) -> QuotaReport:
            footprints = self._footprints(vms, self._reservations(session)).values()
            return QuotaReport(
                user=user_name, limits=self._limits_in(session, user_name),
                usage=Usage.of(f for f in footprints if f.owner == user_name),
                system_limits=self.system, system_usage=Usage.of(footprints))

        return await self.db.run(run)

    # -- checking ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def reserving(self, change: Footprint, list_vms: VmLister, *, must_fit_alone: bool = False,
                        owner_limited: bool = True) -> AsyncIterator[None]:
        """Checks ``change`` (what its VM will use, owner included) atomically and holds its reservation
        for the block. ``must_fit_alone``: also refuse a VM that could never start within the limits.
        ``owner_limited`` False: only the system-wide limits (an administrator acting on another's VM)."""
        reservation_id = await self._reserve_waiting(change, list_vms, must_fit_alone=must_fit_alone,
                                                     owner_limited=owner_limited)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                # If this fails, the reservation outlives the change until this instance is found gone;
                # it only ever counts what is already in libvirt, never twice.
                await self.db.run(lambda session: session.execute(
                    delete(QuotaReservation).where(QuotaReservation.id == reservation_id)))

    async def _reserve_waiting(self, change: Footprint, list_vms: VmLister, *, must_fit_alone: bool,
                               owner_limited: bool) -> int:
        """SQLite gives up waiting for its write lock after its busy timeout (5 s); with many checks queued
        on a loaded host that can pass, so the check is tried again, up to ``LOCK_WAIT`` seconds in all."""
        deadline = anyio.current_time() + LOCK_WAIT
        # The transaction asks the event loop for the VMs: named by its token, as the thread it runs in may be
        # the database's own (limen.db.workers, on PostgreSQL), not one of anyio's, which know their loop.
        loop = anyio.lowlevel.current_token()
        while True:
            try:
                return await self.db.run(lambda session: self._reserve(
                    session, change, list_vms, loop, must_fit_alone=must_fit_alone, owner_limited=owner_limited))
            except OperationalError as exc:
                if "locked" not in str(exc.orig) or anyio.current_time() > deadline:
                    raise LimenError(ErrorCode.INTERNAL_ERROR,
                                     f"the quota check could not lock the database: {exc.orig}") from None

    def _reserve(self, session: Session, change: Footprint, list_vms: VmLister, loop: EventLoopToken, *,
                 must_fit_alone: bool, owner_limited: bool) -> int:
        # First statement of the transaction: takes the lock (see the module docstring).
        session.execute(update(QuotaLock).where(QuotaLock.id == 1).values(generation=QuotaLock.generation + 1))
        # The reservations before libvirt: a change that is done deletes its reservation without the lock, once
        # libvirt shows what it made. Read in this order, a reservation gone after the read is a VM the list
        # then shows; in the other order a VM made after the list whose reservation went before the read
        # would be counted nowhere (PostgreSQL lets that delete run meanwhile; SQLite's write lock did not).
        reservations = self._reservations(session)
        vms: list[Vm] = anyio.from_thread.run(list_vms, token=loop)  # this thread holds the lock meanwhile
        before = self._footprints(vms, reservations)
        after = with_change(before, change)
        if owner_limited and change.owner is not None:
            limits = self._limits_in(session, change.owner)
            scope = f"user {change.owner!r}"
            if must_fit_alone:
                check_alone(limits, change, scope=scope)
            mine_before = Usage.of(f for f in before.values() if f.owner == change.owner)
            mine_after = Usage.of(f for f in after.values() if f.owner == change.owner)
            check(limits, mine_before, mine_after, scope=scope)
        if must_fit_alone:
            check_alone(self.system, change, scope=SYSTEM_WIDE)
        check(self.system, Usage.of(before.values()), Usage.of(after.values()), scope=SYSTEM_WIDE)
        row = QuotaReservation(user_name=change.owner, vm_name=change.name, vm_uuid=change.uuid, running=change.running,
                               vcpus=change.vcpus, memory_mib=change.memory_mib, disk_bytes=change.disk_bytes,
                               instance_id=self.instance_id, created_at=utc_now(self.clock))
        session.add(row)
        session.flush()
        return row.id

    async def drop_reservations_except(self, live: frozenset[str]) -> None:
        """Forgets reservations of instances that no longer run (their changes ended with them)."""
        await self.db.run(lambda session: session.execute(
            delete(QuotaReservation).where(QuotaReservation.instance_id.not_in(live))))


def owner_limited(principal: Principal, vm_owner: str | None) -> bool:
    """An administrator acting on someone else's VM is bound by the system-wide limits only."""
    return not principal.is_admin or vm_owner == principal.name
