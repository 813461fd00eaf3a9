"""Everything that talks to libvirt: VMs, domain XML, storage, lifecycle events."""

from limen.hypervisor.events import VmWatch
from limen.hypervisor.models import Disk, DiskDevice, LifecycleKind, Vm, VmSpec, VmState, VncEndpoint
from limen.hypervisor.service import Hypervisor, parse_vm_id

__all__ = [
    "Disk",
    "DiskDevice",
    "Hypervisor",
    "LifecycleKind",
    "Vm",
    "VmSpec",
    "VmState",
    "VmWatch",
    "VncEndpoint",
    "parse_vm_id",
]
