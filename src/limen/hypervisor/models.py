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
    # Bytes the volume takes on the host (a qcow2 file grows as the guest writes); None as above.
    allocation_bytes: int | None = None
    bus: str | None = None  # "virtio", "ide", "sata", "scsi", …

    @property
    def file_name(self) -> str | None:
        """The last part of ``path``: for a CD-ROM, the ISO's name as the ISO directory lists it."""
        return self.path.rsplit("/", 1)[-1] if self.path else None


@dataclass(frozen=True, slots=True)
class Nic:
    mac: str | None
    source: str | None  # the network, bridge or host device it is plugged into
    model: str | None  # "virtio", "e1000", …


@dataclass(frozen=True, slots=True)
class PendingChanges:
    """Hardware settings of a running VM's persistent definition that differ from the running ones.

    They take effect when the VM is next started (a reboot inside the guest keeps the QEMU process and so
    the running settings). A field is None when it is not pending.
    """

    vcpus: int | None = None
    memory_mib: int | None = None
    boot_order: tuple[str, ...] | None = None

    def __bool__(self) -> bool:
        return any(value is not None for value in (self.vcpus, self.memory_mib, self.boot_order))

    def as_dict(self) -> dict[str, int | list[str]]:
        fields: dict[str, int | list[str]] = {}
        if self.vcpus is not None:
            fields["vcpus"] = self.vcpus
        if self.memory_mib is not None:
            fields["memory_mib"] = self.memory_mib
        if self.boot_order is not None:
            fields["boot_order"] = list(self.boot_order)
        return fields


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
    # Whether it has a device the serial console opens (a <console> or <serial>).
    serial_console: bool = False
    created_at: datetime | None = None
    # Seconds since the VM last started, when libvirt can tell (running VMs on QEMU).
    uptime_seconds: float | None = None
    autostart: bool = False
    owner: str | None = None
    nics: tuple[Nic, ...] = ()
    pending: PendingChanges = PendingChanges()
    extra: dict[str, str] = field(default_factory=dict)
    # The libvirt host that defines the VM (limen.hypervisor.hosts); False below: that host does not answer
    # now, and the rest is what it said last.
    host: str | None = None
    host_available: bool = True

    @property
    def is_active(self) -> bool:
        return self.state in (VmState.RUNNING, VmState.PAUSED, VmState.SHUTTING_DOWN, VmState.SUSPENDED)

    @property
    def pending_restart(self) -> bool:
        return bool(self.pending)

    @property
    def cdrom(self) -> Disk | None:
        """The VM's (first) CD-ROM drive, with or without a disc; None when it has no such drive."""
        return next((disk for disk in self.disks if disk.device is DiskDevice.CDROM), None)

    @property
    def iso_path(self) -> str | None:
        for disk in self.disks:
            if disk.device is DiskDevice.CDROM and disk.path:
                return disk.path
        return None


class StreamRelease(StrEnum):
    """Why limen released a VM's console stream itself, told once that is over
    (:attr:`limen.hypervisor.serial_stream.SerialPort.released_for`)."""

    MIGRATED = "migrated"  # for a live migration of its VM, which moved the VM to another host
    MIGRATION_FAILED = "migration_failed"  # for a live migration that failed: the VM runs on where it was


class LifecycleKind(StrEnum):
    """A VM lifecycle event, reduced to what limen acts on."""

    STARTED = "started"
    STOPPED = "stopped"  # shut down, destroyed, or its QEMU process died
    REVERTED = "reverted"  # stopped because a snapshot was reverted to (it may run again from the snapshot)
    MIGRATED = "migrated"  # stopped on this host because it moved to another (it runs on there)
    CRASHED = "crashed"
    PAUSED = "paused"
    RESUMED = "resumed"
    DEFINED = "defined"
    UNDEFINED = "undefined"
    OTHER = "other"

    @property
    def ends_console(self) -> bool:
        return self in (LifecycleKind.STOPPED, LifecycleKind.REVERTED, LifecycleKind.MIGRATED, LifecycleKind.CRASHED,
                        LifecycleKind.UNDEFINED)


@dataclass(frozen=True, slots=True)
class HostFigures:
    """What a host answers now: every limen asking it at the same moment gets the same figures."""

    memory_mib: int
    free_memory_mib: int  # its memory less what every VM defined there is given, running or not
    vm_count: int


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
    host: str | None = None  # where to create it; None: the available host with the most free memory
