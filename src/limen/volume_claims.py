"""Whether a create or a move of another limen process may be about to use a pool volume.

A volume a create has just made has no VM yet until the create defines it; a move makes the volumes of
its VM on the target host before the VM arrives there. Both write their pending row in the audit trail
(``vm_actions``) before they touch libvirt, and complete it after, so a volume deletion that finds such a
row refuses (VOLUME_IN_USE) rather than delete what is about to be used: a create's row names its volume
(:class:`~limen.hypervisor.leftovers.CreateMark`), a move's its target host. Within one process the naming
lock does the same (:mod:`limen.hypervisor.volumes`); a row left pending by a lost process holds its
volume until the sweep completes it (:mod:`limen.recovery`), which also removes that create's volume.
"""

from __future__ import annotations

from limen.action_details import migrate_target
from limen.audit import AuditLog
from limen.errors import ErrorCode, LimenError
from limen.hypervisor import storage
from limen.hypervisor.leftovers import CreateMark
from limen.hypervisor.volumes import PoolVolume


async def refuse_claimed(audit: AuditLog, volume: PoolVolume) -> None:
    """VOLUME_IN_USE when a pending create will use ``volume`` or a pending move goes to its host."""
    for action in await audit.pending_actions("create", "migrate"):
        if action.action == "create":
            mark = CreateMark.parse(action.details)
            if mark is not None and mark.with_disk and \
                    (mark.volume or storage.disk_volume_name(action.vm_name)) == volume.name:
                raise LimenError(ErrorCode.VOLUME_IN_USE, f"volume {volume.name!r} is the disk of VM "
                                                          f"{action.vm_name!r}, being created")
            continue
        if migrate_target(action.details) == volume.host:
            raise LimenError(ErrorCode.VOLUME_IN_USE, f"VM {action.vm_name!r} is moving to host {volume.host!r}: "
                                                      "its volumes there have no VM yet; retry once it is done")
