"""A deleted user's VMs pass to no owner, on libvirt's test driver: one deleted meanwhile is skipped, not the
end of the deletion."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from limen.audit import AuditLog
from limen.clock import system_clock
from limen.db import Database
from limen.deleted_owners import release_vms_of
from limen.hypervisor import Hypervisor
from limen.hypervisor.ownership import set_owner
from limen.settings import Settings


async def test_a_vm_deleted_while_its_owner_is_deleted_is_skipped(make_settings: Callable[..., Settings]) -> None:
    # The user's deletion answered VM_NOT_FOUND half-way: the VMs before were released, the user stayed,
    # and their consoles were not ended.
    settings = make_settings()
    db = Database(settings.db_url)
    db.migrate()
    hypervisor = Hypervisor(settings)
    await hypervisor.open()
    try:
        await set_owner(hypervisor, "test", "alice")  # the test driver's own VM
        listed = await hypervisor.list_vms()
        gone = dataclasses.replace(next(vm for vm in listed if vm.name == "test"),
                                   uuid="00000000-0000-4000-8000-000000000099", name="deleted-meanwhile")

        async def list_with_one_gone() -> list:  # type: ignore[type-arg]
            return [gone, *listed]

        hypervisor.list_vms = list_with_one_gone  # type: ignore[method-assign]
        audit = AuditLog(db, system_clock)
        released = await release_vms_of(hypervisor, audit, "ALICE", actor="admin")
        assert [vm.name for vm in released] == ["test"] and released[0].owner is None
        rows = {row.vm_name: row.result_code for row in await audit.vm_actions()}
        assert rows == {"deleted-meanwhile": "VM_NOT_FOUND", "test": "OK"}
    finally:
        await hypervisor.close()
        db.close()
