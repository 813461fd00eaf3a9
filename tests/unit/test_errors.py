from __future__ import annotations

import json

from limen.errors import DETAILS_MAX, ErrorCode, HypervisorUnavailable, LimenError, ValidationFailed

SEED_CODES = {
    "INVALID_VM_ID", "VM_NOT_FOUND", "VM_NOT_RUNNING", "VM_START_FAILED", "VNC_NOT_CONFIGURED",
    "VNC_PORT_ERROR", "VNC_CONNECTION_FAILED", "VNC_HANDSHAKE_FAILED", "HYPERVISOR_UNAVAILABLE",
    "VM_STOPPED", "SLOW_CLIENT", "SERVER_SHUTDOWN", "INTERNAL_ERROR", "VM_ALREADY_EXISTS", "INVALID_REQUEST",
}


def test_every_code_the_issues_name_exists() -> None:
    assert {code.name for code in ErrorCode} >= SEED_CODES


def test_close_codes_are_unique_and_in_the_application_range() -> None:
    close_codes = [code.close_code for code in ErrorCode]
    assert len(close_codes) == len(set(close_codes))
    assert all(4000 <= close <= 4999 for close in close_codes)


def test_every_code_has_an_error_status_a_title_and_advice() -> None:
    for code in ErrorCode:
        assert 400 <= code.http_status <= 599, code
        assert code.title and code.user_message.endswith("."), code


def test_seed_vnc_port_error_text_is_kept_byte_for_byte() -> None:
    body = LimenError(ErrorCode.VNC_PORT_ERROR, "no port").to_dict()
    assert body == {
        "error": "Failed to get VNC port",
        "code": "VNC_PORT_ERROR",
        "details": "no port",
        "message": "VNC port not available yet. Please wait a moment and try again.",
    }
    assert list(body) == ["error", "code", "details", "message"]


def test_validation_failure_names_its_field() -> None:
    body = ValidationFailed("vcpus", "too many").to_dict()
    assert body["field"] == "vcpus"
    assert body["code"] == "VALIDATION_ERROR"
    assert json.loads(json.dumps(body)) == body


def test_hypervisor_unavailable_names_its_host_after_the_seeds_fields() -> None:
    named = HypervisorUnavailable("list: no answer", host="edge").to_dict()
    assert list(named) == ["error", "code", "details", "message", "host"] and named["host"] == "edge"
    assert named["code"] == "HYPERVISOR_UNAVAILABLE"
    # A host nobody knows (the command line's own connection): the seed's fields alone, as before.
    assert list(HypervisorUnavailable("cannot open", host=None).to_dict()) == ["error", "code", "details", "message"]


def test_details_quoting_a_huge_input_are_cut() -> None:
    # A 900,000-character boot device came back whole in a 900 KB answer.
    error = ValidationFailed("boot_order", f"{'x' * 900_000!r} is not one of hd, cdrom")
    body = error.to_dict()
    assert len(body["details"]) == DETAILS_MAX and body["details"].endswith(" characters)")
    assert LimenError(ErrorCode.VM_NOT_FOUND, "short").details == "short"
