"""What limen knows of a VM: a snapshot read from libvirt, never stored anywhere else."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class VmState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    SHUTTING_DOWN = "shutting_down"
    CRASHED = "crashed"
    SUSPENDED = "suspended"
    UNKNOWN = "unknown"


class DiskDevice(StrEnum):
    DISK = "disk"
    CDROM = "cdrom"


@dataclass(frozen=True, slots=True)
class Disk:
    device: DiskDevice
    target: str
    path: str | None
    # Bytes as libvirt reports them for volumes in a pool; None for files outside any pool.
    capacity_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class VncEndpoint:
    """Where the VM's VNC server listens, as libvirt reports it.

    ``port`` is None while libvirt has not assigned one (VM stopped, or autoport not yet done).
    ``host`` is the address to connect to: a wildcard listen address is turned into loopback.
    """

    host: str
    port: int | None


@dataclass(frozen=True, slots=True)
class Vm:
    uuid: str
    name: str
    state: VmState
    vcpus: int
    memory_mib: int
    disks: tuple[Disk, ...] = ()
    boot_order: tuple[str, ...] = ()
    # None when the VM has no VNC graphics device at all.
    vnc: VncEndpoint | None = None
    created_at: datetime | None = None
    # Seconds since the VM last started, when libvirt can tell (running VMs on QEMU).
    uptime_seconds: float | None = None
    autostart: bool = False
    owner: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_active(self) -> bool:
        return self.state in (VmState.RUNNING, VmState.PAUSED, VmState.SHUTTING_DOWN, VmState.SUSPENDED)

    @property
    def iso_path(self) -> str | None:
        for disk in self.disks:
            if disk.device is DiskDevice.CDROM and disk.path:
                return disk.path
        return None


class LifecycleKind(StrEnum):
    """A VM lifecycle event, reduced to what limen acts on."""

    STARTED = "started"
    STOPPED = "stopped"  # shut down, destroyed, or its QEMU process died
    CRASHED = "crashed"
    PAUSED = "paused"
    RESUMED = "resumed"
    DEFINED = "defined"
    UNDEFINED = "undefined"
    OTHER = "other"

    @property
    def ends_console(self) -> bool:
        return self in (LifecycleKind.STOPPED, LifecycleKind.CRASHED, LifecycleKind.UNDEFINED)


@dataclass(frozen=True, slots=True)
class VmSpec:
    """A validated request to create a VM (validation lives in the API schema and in create_vm)."""

    name: str
    vcpus: int = 1
    memory_mib: int = 256
    disk_gib: int | None = None
    iso: str | None = None  # a file name inside the ISO dir
    boot_order: tuple[str, ...] = ()  # "cdrom", "hd"; default: cdrom first when an ISO is given
    owner: str | None = None  # a limen user name, kept in the domain's <metadata>
