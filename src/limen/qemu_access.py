"""Whether QEMU, running as its own user, can reach the files limen gives it: the storage pool's disks and the
ISO library's images.

On a stock Debian host libvirt runs QEMU as ``libvirt-qemu`` (``user``/``group`` in ``/etc/libvirt/qemu.conf``)
and gives it each disk and ISO file (its DAC driver changes their owner when a VM starts), but not the
directories above them: every directory on the way must let that user pass (search, ``x``), or the VM does
not start ("Cannot access storage file ... Permission denied"). libvirt names QEMU's user and group in its
host capabilities (the DAC security model's base label, ``+uid:+gid``, one per domain type).

Pure: the capabilities are given as XML, the directories are judged by their ``stat`` alone.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProcessOwner:
    """The user and groups a process runs with."""

    uid: int
    gids: frozenset[int]

    @property
    def name(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)


def qemu_owner(capabilities_xml: str, virt_type: str) -> ProcessOwner | None:
    """Whom libvirt runs QEMU as for domains of ``virt_type`` (``kvm`` or ``qemu``), with that user's
    supplementary groups; None when libvirt does not say (no DAC security model: the test driver)."""
    host = ET.fromstring(capabilities_xml).find("host")
    for model in host.iterfind("secmodel") if host is not None else ():
        if model.findtext("model") != "dac":
            continue
        for label in model.iterfind("baselabel"):
            if label.get("type") == virt_type and label.text:
                uid, _, gid = label.text.replace("+", "").partition(":")
                return owner_with_groups(int(uid), int(gid))
    return None


def owner_with_groups(uid: int, gid: int) -> ProcessOwner:
    """``uid`` with its primary group ``gid`` and the groups that list its name (libvirt starts QEMU with them)."""
    gids = {gid}
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return ProcessOwner(uid, frozenset(gids))
    gids.update(group.gr_gid for group in grp.getgrall() if name in group.gr_mem)
    return ProcessOwner(uid, frozenset(gids))


def may_pass(directory: os.stat_result, owner: ProcessOwner) -> bool:
    """Whether ``owner`` may search a directory of this ``stat`` (as the kernel decides it without ACLs: the
    owner's bits, else the group's, else other's)."""
    if owner.uid == 0:
        return True
    if directory.st_uid == owner.uid:
        return bool(directory.st_mode & stat.S_IXUSR)
    if directory.st_gid in owner.gids:
        return bool(directory.st_mode & stat.S_IXGRP)
    return bool(directory.st_mode & stat.S_IXOTH)


def first_blocking(target: Path, owner: ProcessOwner,
                   read: Callable[[Path], os.stat_result] = os.stat) -> Path | None:
    """The first directory from ``/`` down to ``target`` (itself included) that ``owner`` may not pass; None
    when it may pass them all. Directories not made yet, or that this process cannot see, are not judged
    (libvirt makes the pool's)."""
    path = Path(os.path.abspath(target))
    for directory in [*reversed(path.parents), path]:
        try:
            info = read(directory)
        except OSError:
            return None
        if not stat.S_ISDIR(info.st_mode):
            return None
        if not may_pass(info, owner):
            return directory
    return None
