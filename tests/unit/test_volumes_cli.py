"""``limen volumes list|delete`` on libvirt's test driver: a disk kept from a deleted VM is listed as used
by none and deleted (audited as the API's deletion is); one a VM uses is refused with its code and kept."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from limen.audit import AuditLog
from limen.cli import app
from limen.clock import system_clock
from limen.db import Database
from tests.conftest import ISO_DIR, TEST_DRIVER_URI
from tests.support.cli import CliRunner


@pytest.fixture
def held_test_driver() -> Iterator[None]:
    """Keeps the test driver's state alive between the CLI runs (each its own connection)."""
    conn = libvirt.open(TEST_DRIVER_URI)
    yield
    conn.close()


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    options = ["--libvirt-uri", TEST_DRIVER_URI, "--data-dir", str(tmp_path / "data"), "--iso-dir", str(ISO_DIR)]
    result = CliRunner().invoke(app, [*options, *args], env={"LIMEN_STORAGE_POOL_DIR": str(tmp_path / "pool"),
                                                           "LIMEN_LANG": "en"})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.usefixtures("held_test_driver")
def test_list_and_delete(tmp_path: Path) -> None:
    kept, used = (f"s41v-{uuid.uuid4().hex[:8]}" for _ in range(2))
    for name in (kept, used):
        assert run(tmp_path, "vm", "create", name, "--memory", "64", "--disk", "1")[0] == 0
    assert run(tmp_path, "vm", "delete", kept)[0] == 0  # the disk kept

    code, out, err = run(tmp_path, "--json", "volumes", "list")
    assert code == 0, err
    listed = {volume["name"]: volume for volume in json.loads(out)}
    assert listed[f"{kept}-disk0.qcow2"]["used_by"] == []
    assert [user["name"] for user in listed[f"{used}-disk0.qcow2"]["used_by"]] == [used]
    code, _, err = run(tmp_path, "--json", "volumes", "list", "--host", "nowhere")
    assert code == 1 and json.loads(err)["code"] == "HOST_NOT_FOUND"
    code, out, err = run(tmp_path, "volumes", "list")
    assert out.splitlines()[0].split() == ["NAME", "HOST", "SIZE", "ALLOCATED", "FORMAT", "USED", "BY"]
    # Size and allocation as the Disks page says them (limen.sizes): the allocation read "1024.0 MiB".
    assert f"{kept}-disk0.qcow2  local  1 GiB  1 GiB " in out

    code, _, err = run(tmp_path, "volumes", "delete", f"{used}-disk0.qcow2")
    assert code == 1 and "[VOLUME_IN_USE]" in err and used in err
    code, out, err = run(tmp_path, "volumes", "delete", f"{kept}-disk0.qcow2", "--host", "local")
    assert code == 0, err
    assert out.strip() == f"deleted volume {kept}-disk0.qcow2 on host local"
    code, _, err = run(tmp_path, "--json", "volumes", "delete", f"{kept}-disk0.qcow2")
    assert code == 1 and json.loads(err)["code"] == "VOLUME_NOT_FOUND"
    code, out, _ = run(tmp_path, "--json", "volumes", "list")
    assert f"{kept}-disk0.qcow2" not in {volume["name"] for volume in json.loads(out)}

    db = Database(f"sqlite:///{tmp_path / 'data' / 'limen.db'}")
    try:
        rows = asyncio.run(AuditLog(db, system_clock).vm_actions(vm=f"{kept}-disk0.qcow2"))
    finally:
        db.close()
    assert [(row.action, row.result_code, row.details) for row in rows] == [
        ("delete-volume", "VOLUME_NOT_FOUND", "on host local"),
        ("delete-volume", "OK", f"on host local, {2**30} bytes"),
    ]
    assert run(tmp_path, "vm", "delete", used, "--delete-disks")[0] == 0
