"""The command line's VM actions land in the audit trail (``vm_actions``) as the API's do, with the command
line as the actor; no user may take the actor's name."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from limen.audit import ActionTarget, AuditLog
from limen.auth.passwords import Passwords
from limen.auth.users import Users
from limen.cli import app
from limen.cli_audit import audit_log, record
from limen.clock import system_clock
from limen.db import Database
from limen.errors import ValidationFailed
from limen.settings import load_settings
from tests.conftest import ISO_DIR, TEST_DRIVER_URI
from tests.support.access import CHEAP_HASHER
from tests.support.cli import CliRunner


@pytest.fixture
def held_test_driver() -> Iterator[None]:
    """Each CLI run opens its own connection; one held open keeps the test driver's state between them."""
    conn = libvirt.open(TEST_DRIVER_URI)
    yield
    conn.close()


def run(tmp_path: Path, *args: str) -> tuple[int, str]:
    options = ["--libvirt-uri", TEST_DRIVER_URI, "--data-dir", str(tmp_path / "data"), "--iso-dir", str(ISO_DIR)]
    result = CliRunner().invoke(app, [*options, *args], env={"LIMEN_STORAGE_POOL_DIR": str(tmp_path / "pool")})
    return result.exit_code, result.stderr


def actions(tmp_path: Path) -> list[tuple[str, str, str, str, str]]:
    db = Database(f"sqlite:///{tmp_path / 'data' / 'limen.db'}")
    try:
        rows = asyncio.run(AuditLog(db, system_clock).vm_actions())
    finally:
        db.close()
    return [(row.user, row.action, row.vm_name, row.result_code, row.details) for row in reversed(rows)]


@pytest.mark.usefixtures("held_test_driver")
def test_vm_commands_are_audited_with_the_command_line_as_the_actor(tmp_path: Path) -> None:
    name = f"cli-audit-{uuid.uuid4().hex[:8]}"
    actor = f"cli:{getpass.getuser()}"
    assert run(tmp_path, "vm", "create", name, "--memory", "64")[0] == 0
    assert run(tmp_path, "vm", "start", name)[0] == 0
    code, err = run(tmp_path, "vm", "start", name)
    assert code == 1 and "VM_ALREADY_RUNNING" in err
    assert run(tmp_path, "vm", "set", name, "--vcpus", "2")[0] == 0
    assert run(tmp_path, "vm", "reboot", name)[0] == 0
    assert run(tmp_path, "vm", "stop", name, "--force")[0] == 0
    assert run(tmp_path, "vm", "delete", name)[0] == 0
    assert run(tmp_path, "vm", "stop", "no-such-vm-here")[0] == 1

    assert actions(tmp_path) == [
        (actor, "create", name, "OK", ""),
        (actor, "start", name, "OK", ""),
        (actor, "start", name, "VM_ALREADY_RUNNING", ""),
        (actor, "edit", name, "OK", "vcpus 1 → 2 (pending restart)"),
        (actor, "reboot", name, "OK", ""),
        (actor, "stop", name, "OK", "forced"),
        (actor, "delete", name, "OK", "disks kept"),
        (actor, "stop", "no-such-vm-here", "VM_NOT_FOUND", ""),
    ]


@pytest.mark.parametrize("name", ["cli:root", "CLI:someone", "cli:"])
def test_no_user_may_be_named_as_the_command_line(tmp_path: Path, name: str) -> None:
    db = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    try:
        db.migrate()
        users = Users(db, Passwords(CHEAP_HASHER), system_clock)
        with pytest.raises(ValidationFailed):
            users.create_sync(name, "a long enough password")
        assert users.create_sync("cli", "a long enough password").name == "cli"
    finally:
        db.close()


@pytest.mark.usefixtures("held_test_driver")
def test_user_delete_on_the_command_line_leaves_their_vms_with_no_owner(tmp_path: Path) -> None:
    name = f"cli-owned-{uuid.uuid4().hex[:8]}"
    db = Database(f"sqlite:///{tmp_path / 'data' / 'limen.db'}")
    try:
        db.migrate()
        Users(db, Passwords(CHEAP_HASHER), system_clock).create_sync("Bøb", "a long enough password")
    finally:
        db.close()
    assert run(tmp_path, "vm", "create", name, "--memory", "64", "--owner", "bøb")[0] == 0
    code, err = run(tmp_path, "user", "delete", "BØB")
    assert code == 0, err
    assert f"VM {name!r} has no owner now" in err
    result = CliRunner().invoke(app, ["--libvirt-uri", TEST_DRIVER_URI, "--data-dir", str(tmp_path / "data"),
                                      "--json", "vm", "show", name])
    assert json.loads(result.stdout)["owner"] is None
    assert actions(tmp_path)[-1] == (f"cli:{getpass.getuser()}", "set_owner", name, "OK", "no owner (Bøb deleted)")
    assert run(tmp_path, "vm", "delete", name)[0] == 0


@pytest.mark.usefixtures("held_test_driver")
def test_snapshot_commands_are_audited(tmp_path: Path) -> None:
    name = f"cli-snap-{uuid.uuid4().hex[:8]}"
    actor = f"cli:{getpass.getuser()}"
    assert run(tmp_path, "vm", "create", name, "--memory", "64")[0] == 0
    try:
        steps = [("create", name, "s1"), ("revert", name, "s1"), ("delete", name, "s1")]
        # Each command's own outcome (the test driver may refuse snapshots of this VM): OK or the [CODE] printed.
        results = []
        for step in steps:
            code, err = run(tmp_path, "vm", "snapshot", *step)
            printed = re.search(r"\[([A-Z_]+)\]", err)
            results.append("OK" if code == 0 else printed.group(1) if printed else f"exit {code}")
    finally:
        assert run(tmp_path, "vm", "delete", name)[0] == 0
    audited = [row for row in actions(tmp_path) if row[1] not in ("create", "delete")]
    assert audited == [
        (actor, "snapshot", name, results[0], "s1"),
        (actor, "revert", name, results[1], "s1"),
        (actor, "snapshot-delete", name, results[2], "s1"),
    ]
    assert "exit" not in " ".join(results), results


@pytest.mark.usefixtures("held_test_driver")
def test_a_delete_that_keeps_the_disks_says_so_and_a_new_vm_of_the_name_gets_a_disk_of_its_own(
    tmp_path: Path,
) -> None:
    # "deleted X", and then `vm create X --disk 1` answered "a disk volume … already exists; delete the existing
    # VM first" though there was no VM; later the name stayed blocked by the kept disk for good.
    name = f"cli-kept-{uuid.uuid4().hex[:8]}"
    options = ["--libvirt-uri", TEST_DRIVER_URI, "--data-dir", str(tmp_path / "data"), "--iso-dir", str(ISO_DIR)]

    def limen(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, [*options, *args], env={"LIMEN_STORAGE_POOL_DIR": str(tmp_path / "pool"),
                                                                  "LIMEN_LANG": "en"})
        return result.exit_code, result.stdout, result.stderr

    assert limen("vm", "create", name, "--memory", "64", "--disk", "1")[0] == 0
    code, out, _ = limen("vm", "delete", name)
    assert code == 0 and f"its disks are kept: {tmp_path / 'pool' / f'{name}-disk0.qcow2'}" in out, out
    for _ in range(2):  # the kept disk stays as it is; each new VM of the name gets a disk beside it
        code, out, err = limen("vm", "create", name, "--memory", "64", "--disk", "1")
        assert code == 0 and re.search(rf"/{name}-disk0-[0-9a-f]{{8}}\.qcow2 ", out), (out, err)
        code, out, _ = limen("vm", "delete", name, "--delete-disks")
        assert code == 0 and "its disks are kept" not in out


@pytest.mark.usefixtures("held_test_driver")
def test_a_refused_create_says_why_and_never_that_it_was_creating(tmp_path: Path) -> None:
    # `limen vm create BADNAME` printed "creating BADNAME…" and then the name's refusal: as if it had begun.
    taken = f"cli-taken-{uuid.uuid4().hex[:8]}"
    assert run(tmp_path, "vm", "create", taken, "--memory", "64")[0] == 0
    try:
        for name, code in (("bad name!", "VALIDATION_ERROR"), (taken, "VM_ALREADY_EXISTS")):
            exit_code, err = run(tmp_path, "vm", "create", name, "--memory", "64")
            assert exit_code == 1 and f"[{code}]" in err, err
            assert "creating" not in err and "만드는 중" not in err, err
            assert actions(tmp_path)[-1][1:4] == ("create", name, code)  # still in the audit trail
    finally:
        assert run(tmp_path, "vm", "delete", taken)[0] == 0
    said = run(tmp_path, "vm", "create", taken, "--memory", "64")[1]
    assert "creating" in said or "만드는 중" in said  # an accepted one says so
    assert run(tmp_path, "vm", "delete", taken)[0] == 0


@pytest.mark.usefixtures("held_test_driver")
def test_a_refused_snapshot_says_why_and_never_that_it_was_being_taken(tmp_path: Path) -> None:
    # `limen vm snapshot create VM 스냅` printed "taking snapshot 스냅 of VM…" and then the name's refusal.
    name = f"cli-snap-{uuid.uuid4().hex[:8]}"
    assert run(tmp_path, "vm", "create", name, "--memory", "64")[0] == 0  # no disk: nothing to keep one in
    try:
        for snapshot, code in (("스냅", "VALIDATION_ERROR"), ("fine", "SNAPSHOT_UNSUPPORTED")):
            exit_code, err = run(tmp_path, "vm", "snapshot", "create", name, snapshot)
            assert exit_code == 1 and f"[{code}]" in err, err
            assert "taking snapshot" not in err and "만드는 중" not in err, err
            assert actions(tmp_path)[-1][1:4] == ("snapshot", name, code)  # still in the audit trail
    finally:
        assert run(tmp_path, "vm", "delete", name)[0] == 0


def test_a_ctrl_c_while_the_row_is_written_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Ctrl-C that came as the row was being written left a VM created and no row saying so.
    written: list[str] = []
    real = AuditLog.vm_action

    async def interrupted_write(self: AuditLog, **row: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C now
        await real(self, **row)
        written.append(row["action"])

    monkeypatch.setattr(AuditLog, "vm_action", interrupted_write)
    settings = load_settings(None, data_dir=tmp_path / "data", libvirt_uri=TEST_DRIVER_URI)
    with pytest.raises(KeyboardInterrupt):
        record(settings, "create", ActionTarget(vm_name="interrupted"), "OK")
    assert written == ["create"]
    assert [(row[1], row[2], row[3]) for row in actions(tmp_path)] == [("create", "interrupted", "OK")]


def test_a_commands_audit_log_has_its_tables_on_a_fresh_data_directory_and_closes_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[Database] = []
    real_close = Database.close

    def close(self: Database) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(Database, "close", close)
    settings = load_settings(None, data_dir=tmp_path / "data", libvirt_uri=TEST_DRIVER_URI)
    with audit_log(settings) as audit:
        assert asyncio.run(audit.pending_actions("create", "migrate")) == []  # its tables are there
    assert len(closed) == 1
    with pytest.raises(RuntimeError, match="the command failed"), audit_log(settings):
        raise RuntimeError("the command failed")
    assert len(closed) == 2
