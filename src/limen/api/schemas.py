"""The REST API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

# Numbers and switches in request bodies are strict: true is not 1 vCPU, "1" is not a number, "yes" is not a
# switch (JSON has the types; a client that sends others has a bug worth telling it about).
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

from limen.hypervisor.models import Disk, Vm, VmState
from limen.hypervisor.snapshots import SnapshotInfo
from limen.hypervisor.volumes import PoolVolume
from limen.isos import IsoImage


class FieldRefusal(BaseModel):
    field: str = Field(description="The field")
    details: str = Field(description="What is wrong with it, in English")
    rule: dict[str, Any] | None = Field(None, description="The rule broken, as in the error's 'rule'")


class ErrorBody(BaseModel):
    error: str = Field(description="Short title")
    code: str = Field(description="Stable error code")
    details: str = Field(description="Technical detail")
    message: str = Field(description="What the user can do")
    field: str | None = Field(None, description="The offending input field, for validation errors")
    rule: dict[str, Any] | None = Field(
        None, description="For validation errors of limen's own rules, the rule broken, for a client to word in its "
        "own language: 'kind' (vm_name, range, length, no_edge_space, no_control_chars, reserved_prefix, "
        "dot_segment, file_name, hidden_name, max_bytes, iso_suffix, whole_number, at_least, required) and the "
        "values its wording needs, "
        "e.g. {'kind': 'range', 'min': 32, 'max': 24105, 'unit': 'MiB', 'limit': 'host_memory'} or "
        "{'kind': 'length', 'min': 8, 'max': 1024}")
    fields: list[FieldRefusal] | None = Field(
        None, description="For validation errors, every field the request got wrong (the first is 'field'), so a "
        "form can mark them all at once")


class VmCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="1–63 of letters a–z, A–Z, digits, '_', '.', '-'; starts with a letter or digit",
                      examples=["web-1"])
    vcpus: StrictInt = Field(1, description="1 to the host's CPU count")
    memory_mib: StrictInt = Field(256, description="32 MiB to the host's memory")
    disk_gib: StrictInt | None = Field(None, description="Size of a new qcow2 disk, 1–2048 GiB; none for no disk")
    iso: str | None = Field(None, description="File name of an ISO in the ISO directory (GET /api/isos)")
    boot_order: list[str] = Field(
        default_factory=list, description="Devices to boot from, in order: 'cdrom', 'hd'. "
        "Default: cdrom then hd with an ISO, else hd"
    )
    host: str | None = Field(None, description="The host to create it on (GET /api/hosts); default: the available "
                             "host, not draining, with the most memory not given to its VMs")


class VmMigrate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="The host to move the VM to (GET /api/hosts)")


class VmPatch(BaseModel):
    """Any of these; a field left out stays as it is. On a running VM, vcpus, memory_mib and boot_order
    wait for the next start (``pending_restart``); a rename needs a stopped VM."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="New name (VM stopped): the create rules; the owner and disks stay")
    vcpus: StrictInt | None = Field(None, description="1 to the host's CPU count")
    memory_mib: StrictInt | None = Field(None, description="32 MiB to the host's memory")
    boot_order: list[str] | None = Field(None, description="Devices to boot from, in order: 'cdrom', 'hd'",
                                         examples=[["hd"]])
    autostart: StrictBool | None = Field(None, description="Start the VM when the host starts; applies at once")

    @model_validator(mode="before")
    @classmethod
    def _not_empty(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            raise ValueError("give at least one of name, vcpus, memory_mib, boot_order, autostart")
        return data

    # Per field, not over the whole body: a null beside another field's type error is named with it.
    @field_validator("name", "vcpus", "memory_mib", "boot_order", "autostart", mode="before")
    @classmethod
    def _no_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("null is not a value; leave the field out instead")
        return value


class MediaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # No max_length: a name too long is refused by the ISO names' rule (max_bytes), as a create's.
    iso: str | None = Field(description="File name of an ISO in the ISO directory; null ejects the disc",
                            examples=["limen-grub-demo.iso"])
    force: StrictBool = Field(False, description="Open the tray even when the guest has locked it")


class MediaOut(BaseModel):
    target: str | None = Field(description="The CD-ROM drive (e.g. hdc); null when the VM has none")
    iso: str | None = Field(description="The ISO in it; null when empty")

    @classmethod
    def of(cls, vm: Vm) -> MediaOut:
        cdrom = vm.cdrom
        return cls(target=cdrom.target if cdrom else None, iso=cdrom.file_name if cdrom else None)


class DiskResize(BaseModel):
    """Exactly one of the two. The new size must be larger than the disk's capacity (equal is refused)."""

    model_config = ConfigDict(extra="forbid")

    size_gib: StrictInt | None = Field(None, description="New size in GiB (2^30 bytes), up to 2048")
    size_bytes: StrictInt | None = Field(None, description="New size in bytes, a multiple of 512, up to 2 TiB")

    @model_validator(mode="after")
    def _exactly_one(self) -> DiskResize:
        if (self.size_gib is None) == (self.size_bytes is None):
            raise ValueError("give exactly one of size_gib and size_bytes")
        return self

    @property
    def bytes(self) -> int:
        return self.size_bytes if self.size_bytes is not None else int(self.size_gib or 0) * 2**30

    @property
    def field(self) -> str:
        return "size_bytes" if self.size_bytes is not None else "size_gib"


class DiskOut(BaseModel):
    device: str
    target: str
    path: str | None
    capacity_bytes: int | None
    allocation_bytes: int | None = Field(description="Bytes the volume takes on the host; null outside a pool")
    bus: str | None

    @classmethod
    def of(cls, disk: Disk) -> DiskOut:
        return cls(device=disk.device.value, target=disk.target, path=disk.path, capacity_bytes=disk.capacity_bytes,
                   allocation_bytes=disk.allocation_bytes, bus=disk.bus)


class CdromOut(BaseModel):
    target: str
    iso: str | None = Field(description="File name of the ISO in the drive; null when empty")


class NicOut(BaseModel):
    mac: str | None
    source: str | None = Field(description="The network, bridge or host device it is plugged into")
    model: str | None


class VncOut(BaseModel):
    host: str
    port: int | None


class VmOut(BaseModel):
    uuid: str
    name: str
    state: VmState
    vcpus: int
    memory_mib: int
    disks: list[DiskOut]
    boot_order: list[str]
    iso: str | None
    vnc: VncOut | None = Field(description="None when the VM has no VNC graphics; port None until assigned")
    serial_console: bool = Field(False, description="It has a serial console (GET /api/vms/{id}/serial)")
    created_at: datetime | None
    uptime_seconds: float | None
    autostart: bool
    owner: str | None = Field(None, description="The limen user who owns the VM; none: only admins see it")
    cdrom: CdromOut | None = Field(None, description="The CD-ROM drive; null when the VM has none")
    nics: list[NicOut] = Field(default_factory=list)
    pending_restart: bool = Field(
        False, description="The VM runs with settings older than its definition; they apply at its next start"
    )
    pending: dict[str, int | list[str]] = Field(
        default_factory=dict,
        description="What waits for the next start: those of vcpus, memory_mib, boot_order whose new value "
        "differs from the running one",
    )
    host: str | None = Field(None, description="The libvirt host that defines the VM (GET /api/hosts)")
    host_available: bool = Field(
        True, description="False: the host does not answer now (\"host unavailable\"); the rest is what it said last")

    @classmethod
    def of(cls, vm: Vm) -> VmOut:
        return cls(
            uuid=vm.uuid,
            name=vm.name,
            state=vm.state,
            vcpus=vm.vcpus,
            memory_mib=vm.memory_mib,
            disks=[DiskOut.of(disk) for disk in vm.disks],
            boot_order=list(vm.boot_order),
            iso=vm.iso_path,
            vnc=VncOut(host=vm.vnc.host, port=vm.vnc.port) if vm.vnc else None,
            serial_console=vm.serial_console,
            created_at=vm.created_at,
            uptime_seconds=round(vm.uptime_seconds, 1) if vm.uptime_seconds is not None else None,
            autostart=vm.autostart,
            owner=vm.owner,
            cdrom=CdromOut(target=vm.cdrom.target, iso=vm.cdrom.file_name) if vm.cdrom else None,
            nics=[NicOut(mac=nic.mac, source=nic.source, model=nic.model) for nic in vm.nics],
            pending_restart=vm.pending_restart,
            pending=vm.pending.as_dict(),
            host=vm.host,
            host_available=vm.host_available,
        )


class VmDeleted(BaseModel):
    deleted: str = Field(description="UUID or name as requested")
    deleted_volumes: list[str]


class IsoOut(BaseModel):
    name: str
    size_bytes: int
    modified: datetime = Field(description="When the image was last written")
    sha256: str | None = Field(description="Hex SHA-256 of the image; null until computed (images copied "
                               "into the ISO directory by hand get theirs in the background)")

    @classmethod
    def of(cls, image: IsoImage) -> IsoOut:
        return cls(name=image.name, size_bytes=image.size_bytes, modified=image.modified, sha256=image.sha256)


class IsoDeleted(BaseModel):
    deleted: str


class VolumeUserOut(BaseModel):
    uuid: str
    name: str


class VolumeOut(BaseModel):
    name: str = Field(description="The volume's name in the storage pool (LIMEN_STORAGE_POOL)")
    host: str = Field(description="The host whose pool holds it (local: LIMEN_LIBVIRT_URI's)")
    path: str
    format: str | None = Field(description="qcow2, raw, … as libvirt reads it")
    capacity_bytes: int
    allocation_bytes: int = Field(description="What it takes on the host's disk now")
    used_by: list[VolumeUserOut] = Field(description="The VMs whose disk it is (their definition, running or "
                                                     "next start's, or one their snapshots keep); empty: none")
    backing_for: list[str] = Field(description="Volumes of the pool backed by this one (qcow2 overlays)")
    in_use: bool = Field(description="Whether it may not be deleted: a VM uses it, or a volume is backed by it")

    @classmethod
    def of(cls, volume: PoolVolume) -> VolumeOut:
        return cls(name=volume.name, host=volume.host, path=volume.path, format=volume.format,
                   capacity_bytes=volume.capacity_bytes, allocation_bytes=volume.allocation_bytes,
                   used_by=[VolumeUserOut(uuid=user.uuid, name=user.name) for user in volume.used_by],
                   backing_for=list(volume.backing_for), in_use=volume.in_use)


class VolumeDeleted(BaseModel):
    deleted: str
    host: str
    capacity_bytes: int


class Health(BaseModel):
    status: str
    version: str = Field(description="limen's version (limen.__version__)")


class SnapshotOut(BaseModel):
    name: str
    description: str
    parent: str | None = Field(description="The snapshot this one was taken after (the tree's edge); null "
                                           "for a root")
    created_at: datetime
    vm_state: str = Field(description="The VM's state when it was taken: running (memory included), shutoff…")
    with_memory: bool = Field(description="Holds the running VM's memory: a revert resumes the VM from it")
    current: bool = Field(description="The snapshot the VM last came from (taken or reverted to)")

    @classmethod
    def of(cls, snap: SnapshotInfo) -> SnapshotOut:
        return cls(name=snap.name, description=snap.description, parent=snap.parent, created_at=snap.created_at,
                   vm_state=snap.vm_state, with_memory=snap.with_memory, current=snap.current)
