"""The quota arithmetic: limits, what each VM uses (its footprint), usage, and the check. No I/O.

A VM's footprint counts toward four resources:

- ``vms``: every VM, running or not;
- ``vcpus`` and ``memory_mib``: only while the VM runs. A running VM with a pending hardware change counts
  the larger of its running and pending values (the change applies at its next start, which must fit);
- ``disk_gib``: the capacity of its disks (not CD-ROMs), running or not.

A change is refused only for a resource it *increases* past its limit: a user an administrator put over
quota can still stop, shrink and delete.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from limen.action_details import quota_details
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import DiskDevice, Vm

GIB = 2**30
SYSTEM_WIDE = "system-wide"  # the scope of the limits over every VM, whoever owns it
RESOURCES = ("vms", "vcpus", "memory_mib", "disk_gib")

_NAMES = {"vms": "VMs", "vcpus": "vCPUs", "memory_mib": "memory (MiB)", "disk_gib": "disk (GiB)"}
_HOW_TO_FREE = {
    "vms": "delete a VM",
    "vcpus": "stop a running VM, turn off a stopped one's autostart or give it fewer vCPUs",
    "memory_mib": "stop a running VM, turn off a stopped one's autostart or give it less memory",
    "disk_gib": "delete a VM with its disks",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """None: no limit on that resource."""

    vms: int | None = None
    vcpus: int | None = None
    memory_mib: int | None = None
    disk_gib: int | None = None

    def of(self, resource: str) -> int | None:
        value: int | None = getattr(self, resource)
        return value

    def or_else(self, defaults: Limits) -> Limits:
        """Each resource from self, or from ``defaults`` where self has none."""
        return Limits(**{r: self.of(r) if self.of(r) is not None else defaults.of(r) for r in RESOURCES})

    def as_dict(self) -> dict[str, int | None]:
        return {resource: self.of(resource) for resource in RESOURCES}


@dataclass(frozen=True, slots=True)
class Footprint:
    """What one VM uses (or will, once a change in flight is done)."""

    name: str
    owner: str | None
    running: bool
    vcpus: int
    memory_mib: int
    disk_bytes: int
    # Which VM: a change to an existing VM is its VM by UUID whatever its name is by then (a start checked
    # under the old name and a rename to a bigger VM at once were two VMs, and both passed); None for a VM
    # being created, its VM by name once libvirt lists it.
    uuid: str | None = None

    @classmethod
    def of_vm(cls, vm: Vm) -> Footprint:
        # A VM set to start with the host counts as running: libvirt starts it when the host (or libvirtd)
        # starts, past every check, so a user's stopped autostart VMs all ran at once after a reboot.
        return cls(
            name=vm.name, owner=vm.owner, running=vm.is_active or vm.autostart,
            vcpus=max(vm.vcpus, vm.pending.vcpus or 0) if vm.is_active else vm.vcpus,
            memory_mib=max(vm.memory_mib, vm.pending.memory_mib or 0) if vm.is_active else vm.memory_mib,
            disk_bytes=sum(disk.capacity_bytes or 0 for disk in vm.disks if disk.device is DiskDevice.DISK),
            uuid=vm.uuid,
        )

    def merged(self, other: Footprint) -> Footprint:
        """The larger of both in every resource: a reservation and what libvirt shows of the same VM are
        never counted twice."""
        return replace(self, running=self.running or other.running, vcpus=max(self.vcpus, other.vcpus),
                       memory_mib=max(self.memory_mib, other.memory_mib),
                       disk_bytes=max(self.disk_bytes, other.disk_bytes))

    def started(self) -> Footprint:
        return replace(self, running=True)


@dataclass(frozen=True, slots=True)
class Usage:
    vms: int = 0
    vcpus: int = 0
    memory_mib: int = 0
    disk_bytes: int = 0

    @classmethod
    def of(cls, footprints: Iterable[Footprint]) -> Usage:
        vms = vcpus = memory = disk = 0
        for footprint in footprints:
            vms += 1
            disk += footprint.disk_bytes
            if footprint.running:
                vcpus += footprint.vcpus
                memory += footprint.memory_mib
        return cls(vms, vcpus, memory, disk)

    def of_resource(self, resource: str) -> float:
        """In the unit of the limit (disk in GiB)."""
        if resource == "disk_gib":
            return self.disk_bytes / GIB
        value: int = getattr(self, resource)
        return value

    def as_dict(self) -> dict[str, float]:
        return {resource: _rounded(self.of_resource(resource)) for resource in RESOURCES}


def _rounded(value: float) -> float:
    # Rounded first: 1023.995 GiB was shown as 1024.0, a float where clients read whole numbers as integers.
    rounded = round(value, 2)
    return int(rounded) if float(rounded).is_integer() else rounded


class QuotaExceeded(LimenError):
    """A change would take ``resource`` past ``limit``; the body says by how much and what to free."""

    def __init__(self, *, scope: str, resource: str, limit: int, usage: float, requested: float,
                 details: str | None = None) -> None:
        over = usage + requested - limit
        self.quota = {"scope": scope, "resource": resource, "limit": limit, "usage": _rounded(usage),
                      "requested": _rounded(requested), "free": _rounded(over)}
        self.audit_details = quota_details(resource, usage + requested, limit, system_wide=scope == SYSTEM_WIDE)
        name = _NAMES[resource]
        super().__init__(ErrorCode.QUOTA_EXCEEDED, details or (
            f"{scope} quota on {name}: limit {limit}, in use {_rounded(usage)}, this needs {_rounded(requested)} "
            f"more; free {_rounded(over)} ({_HOW_TO_FREE[resource]})"))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "quota": self.quota}


def check(limits: Limits, before: Usage, after: Usage, *, scope: str) -> None:
    """Raises :class:`QuotaExceeded` for the first resource ``after`` takes past its limit while increasing."""
    for resource in RESOURCES:
        limit = limits.of(resource)
        if limit is None:
            continue
        old, new = before.of_resource(resource), after.of_resource(resource)
        if new > limit and new > old:
            raise QuotaExceeded(scope=scope, resource=resource, limit=limit, usage=old, requested=new - old)


def _key_of(footprints: dict[str, Footprint], change: Footprint) -> str:
    """Where ``change`` goes in ``footprints`` (keyed by :func:`_key_of`): its VM's UUID; for a VM being
    created, the listed VM of its name once libvirt shows it, else its name."""
    if change.uuid is not None:
        return change.uuid
    return next((key for key, footprint in footprints.items() if footprint.name == change.name),
                f"new:{change.name}")


def with_change(footprints: dict[str, Footprint], change: Footprint) -> dict[str, Footprint]:
    """``footprints`` with ``change`` merged into its VM (added, if the VM is new)."""
    changed = dict(footprints)
    key = _key_of(changed, change)
    existing = changed.get(key)
    changed[key] = existing.merged(change) if existing is not None else change
    return changed


def check_alone(limits: Limits, vm: Footprint, *, scope: str) -> None:
    """Refuses a VM that could never start within ``limits`` even with nothing else running."""
    alone = Usage.of([vm.started()])
    for resource in ("vcpus", "memory_mib"):
        limit = limits.of(resource)
        needed = alone.of_resource(resource)
        if limit is not None and needed > limit:
            raise QuotaExceeded(scope=scope, resource=resource, limit=limit, usage=0, requested=needed, details=(
                f"{scope} quota on {_NAMES[resource]}: limit {limit}; a VM with {_rounded(needed)} could never "
                f"start within it (give it at most {limit})"))
