"""How libvirt's errors become limen's: the connection's failures are HYPERVISOR_UNAVAILABLE whatever code the
RPC layer gives them."""

from __future__ import annotations

import libvirt

from limen.errors import ErrorCode
from limen.hypervisor.connection import classify, is_connection_error


def libvirt_error(code: int, domain: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)  # what virGetLastError gives
    return exc


def test_a_socket_closed_under_a_call_is_the_hypervisor_gone() -> None:
    closed = libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_RPC,
                           "internal error: client socket is closed")
    assert is_connection_error(closed)
    assert classify(closed, when="list_vms").code is ErrorCode.HYPERVISOR_UNAVAILABLE


def test_a_drivers_own_internal_error_stays_an_operation_failure() -> None:
    failed = libvirt_error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU,
                           "internal error: qemu unexpectedly closed")
    assert not is_connection_error(failed)
    assert classify(failed, when="start").code is ErrorCode.VM_OPERATION_FAILED


def test_a_snapshot_deleted_since_it_was_looked_up_is_not_found() -> None:
    # A revert racing a delete of its snapshot: libvirt's answer is the snapshot missing, not a failure.
    gone = libvirt_error(libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT, libvirt.VIR_FROM_DOMAIN_SNAPSHOT,
                         "Domain snapshot not found: no domain snapshot with matching name 'earlier'")
    assert classify(gone, when="revert").code is ErrorCode.SNAPSHOT_NOT_FOUND
