"""The REST API's request and response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from limen.hypervisor.models import Vm, VmState
from limen.isos import IsoImage


class ErrorBody(BaseModel):
    error: str = Field(description="Short title")
    code: str = Field(description="Stable error code")
    details: str = Field(description="Technical detail")
    message: str = Field(description="What the user can do")
    field: str | None = Field(None, description="The offending input field, for validation errors")


class VmCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="1–63 of letters, digits, '_', '.', '-'; starts with a letter or digit",
                      examples=["web-1"])
    vcpus: int = Field(1, description="1 to the host's CPU count")
    memory_mib: int = Field(256, description="32 MiB to the host's memory")
    disk_gib: int | None = Field(None, description="Size of a new qcow2 disk, 1–2048 GiB; none for no disk")
    iso: str | None = Field(None, description="File name of an ISO in the ISO directory (GET /api/isos)")
    boot_order: list[str] = Field(
        default_factory=list, description="Devices to boot from, in order: 'cdrom', 'hd'. "
        "Default: cdrom then hd with an ISO, else hd"
    )


class DiskOut(BaseModel):
    device: str
    target: str
    path: str | None
    capacity_bytes: int | None


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
    created_at: datetime | None
    uptime_seconds: float | None
    autostart: bool
    owner: str | None = Field(None, description="The limen user who owns the VM; none: only admins see it")

    @classmethod
    def of(cls, vm: Vm) -> VmOut:
        return cls(
            uuid=vm.uuid,
            name=vm.name,
            state=vm.state,
            vcpus=vm.vcpus,
            memory_mib=vm.memory_mib,
            disks=[
                DiskOut(device=d.device.value, target=d.target, path=d.path, capacity_bytes=d.capacity_bytes)
                for d in vm.disks
            ],
            boot_order=list(vm.boot_order),
            iso=vm.iso_path,
            vnc=VncOut(host=vm.vnc.host, port=vm.vnc.port) if vm.vnc else None,
            created_at=vm.created_at,
            uptime_seconds=round(vm.uptime_seconds, 1) if vm.uptime_seconds is not None else None,
            autostart=vm.autostart,
            owner=vm.owner,
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


class Health(BaseModel):
    status: str
