"""``limen backup`` / ``limen restore`` through the CLI on a real SQLite file (no daemon): the settings file
given with --config or LIMEN_CONFIG travels in the backup and --settings-to writes it as a new file only; the
rows come back."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pwd
import resource
import signal
import sqlite3
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from limen import backup as backup_module
from limen.backup import WORK_LOCK, open_backup, restore_database, write_backup
from limen.cli import app
from limen.db.database import SCHEMA_HEAD, Database
from limen.settings import load_settings
from tests.support.cli import CliRunner
from tests.support.console import FakeDomain, driver_uri


class WatchedConnection(sqlite3.Connection):
    """A connection that notes, as it closes, the mode of its file and of the directory holding it: SQLite has
    written the file then, and nothing else has been done to it yet."""

    modes: ClassVar[dict[Path, tuple[int, int]]] = {}

    def __init__(self, database: str | Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self.file = None if str(database).startswith("file:") else Path(database)  # file: URIs are read-only

    def close(self) -> None:
        if self.file is not None and self.file.exists():
            self.modes[self.file] = (stat.S_IMODE(self.file.stat().st_mode),
                                     stat.S_IMODE(self.file.parent.stat().st_mode))
        super().close()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def migrated_data_dir(tmp_path: Path, more_settings: str = "") -> tuple[Path, Path]:
    """A data directory with a migrated database, and a settings file naming it: (data dir, settings file)."""
    data = tmp_path / "data"
    config = tmp_path / "limen.toml"
    config.write_text(f'data_dir = "{data}"\nlibvirt_uri = "test:///default"\n{more_settings}')
    db = Database(f"sqlite:///{data / 'limen.db'}")
    db.migrate()
    db.close()
    return data, config


def test_settings_travel_with_the_backup_and_are_written_only_as_a_new_file(tmp_path: Path) -> None:
    data, config = migrated_data_dir(tmp_path, "port = 9443\n# Zoë\n")
    with sqlite3.connect(data / "limen.db") as connection:
        connection.execute("INSERT INTO vm_actions (user_name, vm_name, action, at, result_code, details) "
                           "VALUES ('Zoë', 'vm', 'start', '2026-01-01 00:00:00', 'OK', 'kept')")
    connection.close()
    out = tmp_path / "b.limen"
    code, _, err = run("--config", str(config), "backup", str(out), "--no-vms")
    assert code == 0, err
    with sqlite3.connect(data / "limen.db") as connection:
        connection.execute("DELETE FROM vm_actions")
    connection.close()

    existing = tmp_path / "existing.toml"
    existing.write_text("mine")
    code, _, err = run("--config", str(config), "restore", str(out), "--settings-to", str(existing))
    assert code == 1 and "writes a new file only" in err
    assert existing.read_text() == "mine"
    # A directory that is not there is said before the database is replaced (it was replaced, then the
    # write of the settings failed with a traceback).
    code, _, err = run("--config", str(config), "restore", str(out), "--settings-to", str(tmp_path / "no" / "s.toml"))
    assert code == 1 and "is not a directory" in err
    assert list(data.glob("limen.db.before-restore-*")) == []

    written = tmp_path / "restored.toml"
    code, stdout, err = run("--config", str(config), "restore", str(out), "--settings-to", str(written))
    assert code == 0, err
    assert written.read_text() == config.read_text() and oct(written.stat().st_mode & 0o777) == "0o600"
    assert f"written to {written}" in stdout
    with sqlite3.connect(data / "limen.db") as connection:
        assert connection.execute("SELECT user_name, details FROM vm_actions").fetchall() == [("Zoë", "kept")]


def test_the_settings_file_named_by_limen_config_travels_with_the_backup_too(tmp_path: Path) -> None:
    """A backup holds the settings file limen was started with; one named by LIMEN_CONFIG, not --config, was
    left out (and `restore --settings-to` said the backup held none)."""
    _data, config = migrated_data_dir(tmp_path, "port = 9443\n")
    out = tmp_path / "b.limen"
    result = CliRunner().invoke(app, ["backup", str(out), "--no-vms"], env={"LIMEN_CONFIG": str(config)})
    assert result.exit_code == 0, result.stderr
    (tmp_path / "work").mkdir()
    backup = open_backup(out, tmp_path / "work")
    assert (backup.config, backup.manifest.config_file) == (config.read_bytes(), str(config))


def test_each_copy_of_the_database_is_owner_only_while_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite gives a file it creates the umask's mode: a restore's copies of the replaced database
    (limen.db.before-restore-<time>) and of the incoming one (.limen.db.restoring) were 0644 under the usual
    umask 022 while SQLite wrote them, readable by every local user under names anyone can guess, until a
    chmod after the copy. The backup's copy is written in a directory of its own, 0700."""
    data, config = migrated_data_dir(tmp_path)
    out = tmp_path / "b.limen"
    real_connect = sqlite3.connect
    monkeypatch.setattr(WatchedConnection, "modes", {})
    monkeypatch.setattr(sqlite3, "connect", lambda database, *args, **kwargs: real_connect(
        database, *args, factory=WatchedConnection, **kwargs))
    previous = os.umask(0o022)
    try:
        code, _, err = run("--config", str(config), "backup", str(out), "--no-vms")
        assert code == 0, err
        code, _, err = run("--config", str(config), "restore", str(out))
        assert code == 0, err
    finally:
        os.umask(previous)
    written = {path.name if path.parent == data else f"{path.parent.name[:14]}/{path.name}": modes
               for path, modes in WatchedConnection.modes.items() if path != data / "limen.db"}
    kept = next(path.name for path in data.glob("limen.db.before-restore-*"))
    assert written == {".limen-backup-/limen.db": (0o600, 0o700), kept: (0o600, 0o700),
                       ".limen.db.restoring": (0o600, 0o700)}, written
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_restore_killed_half_way_does_not_fail_the_next_one(tmp_path: Path) -> None:
    """A killed restore leaves .limen.db.restoring half written: the next one copied the backup over it and
    failed ("file is not a database"); the leftover, and its journal, are removed first now."""
    data, config = migrated_data_dir(tmp_path)
    out = tmp_path / "b.limen"
    assert run("--config", str(config), "backup", str(out), "--no-vms")[0] == 0
    (data / ".limen.db.restoring").write_bytes(b"the first pages of a database" * 100)
    (data / ".limen.db.restoring-journal").write_bytes(b"its journal")
    code, _, err = run("--config", str(config), "restore", str(out))
    assert code == 0, err
    assert sorted(path.name for path in data.iterdir() if "restoring" in path.name) == []


def test_a_restore_is_refused_while_another_one_writes_its_copy(tmp_path: Path) -> None:
    """The copy a restore is writing (.limen.db.restoring) was removed by a second restore run meanwhile,
    which took it for one a killed restore left: two restores replaced the database at once."""
    data, config = migrated_data_dir(tmp_path)
    out = tmp_path / "b.limen"
    assert run("--config", str(config), "backup", str(out), "--no-vms")[0] == 0
    fd = os.open(data / ".limen.db.restoring", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as the restore at work holds it
        code, _, err = run("--config", str(config), "restore", str(out))
    finally:
        os.close(fd)
    assert code == 1 and f"another limen restore is writing {data / '.limen.db.restoring'} now" in err, err
    assert sorted(path.name for path in data.iterdir()) == [".limen.db.restoring", "limen.db"]


def test_a_backup_removes_the_work_directories_that_killed_backups_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed `limen backup` left its work directory, .limen-backup-XXXX/ with a full copy of the database,
    beside the backup file for good. The next backup there removes each whose backup is gone."""
    _data, config = migrated_data_dir(tmp_path)
    out = tmp_path / "backups" / "b.limen"
    settings = load_settings(config)
    child = os.fork()
    if child == 0:  # a backup killed as it copies the database
        try:
            monkeypatch.setattr(backup_module, "_copy_sqlite", lambda *_: os.kill(os.getpid(), signal.SIGKILL))
            write_backup(settings, out, config_file=None, vm_xml={})
        finally:
            os._exit(1)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == -signal.SIGKILL
    (killed,) = out.parent.glob(".limen-backup-*")
    at_work, older_limens, just_made = (out.parent / f".limen-backup-{name}"
                                        for name in ("at-work", "of-an-older-limen", "just-made"))
    for work in (at_work, older_limens, just_made):
        work.mkdir()
        (work / "limen.db").write_bytes(b"a copy")
    lock = os.open(at_work / WORK_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as its backup holds it
    for work, age in ((killed, 120), (at_work, 120), (older_limens, 2 * 86400)):
        os.utime(work, (time.time() - age, time.time() - age))
    try:
        code, _, err = run("--config", str(config), "backup", str(out), "--no-vms")
    finally:
        os.close(lock)
    assert code == 0, err
    # Left: the one at work, and one just made (its backup may not have locked it yet).
    assert sorted(path.name for path in out.parent.iterdir()) == [".limen-backup-at-work",
                                                                 ".limen-backup-just-made", "b.limen"]


def test_two_restores_within_a_second_keep_each_ones_replaced_database(tmp_path: Path) -> None:
    """The replaced database is kept as limen.db.before-restore-<time>, to the second: a second restore within
    that second wrote its copy over the first one's, and the database as it was before both was lost."""
    data, config = migrated_data_dir(tmp_path)
    out = tmp_path / "b.limen"
    assert run("--config", str(config), "backup", str(out), "--no-vms")[0] == 0
    with sqlite3.connect(data / "limen.db") as connection:  # after the backup: only the first kept copy has it
        connection.execute("INSERT INTO vm_actions (user_name, vm_name, action, at, result_code, details) "
                           "VALUES ('zoe', 'vm', 'start', '2026-01-01 00:00:00', 'OK', 'before both')")
    connection.close()
    (tmp_path / "work").mkdir()
    backup = open_backup(out, tmp_path / "work")
    settings = load_settings(config)
    moment = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
    first = restore_database(settings, backup, now=moment).kept
    second = restore_database(settings, backup, now=moment.replace(microsecond=900_000)).kept
    assert first is not None and second is not None
    assert (first.name, second.name) == ("limen.db.before-restore-20260501T120000Z",
                                         "limen.db.before-restore-20260501T120000Z-2")
    details = []
    for kept in (first, second):
        with sqlite3.connect(kept) as connection:
            details.append(connection.execute("SELECT details FROM vm_actions").fetchall())
        connection.close()
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert details == [[("before both",)], []]


def test_a_database_sqlite_cannot_read_is_replaced_and_kept_as_it_was(tmp_path: Path) -> None:
    """A damaged database is what a restore is for, and the restore refused it: "cannot write the database at
    …: file is not a database (check LIMEN_DATA_DIR: its owner, permissions and free space)"."""
    data, config = migrated_data_dir(tmp_path)
    out = tmp_path / "b.limen"
    assert run("--config", str(config), "backup", str(out), "--no-vms")[0] == 0
    for number, how in enumerate(([], ["--json"])):
        (data / "limen.db").write_bytes(b"not a database" * 100)
        (data / "limen.db-wal").write_bytes(b"a log")  # never replayed onto the restored database
        code, stdout, err = run("--config", str(config), *how, "restore", str(out))
        assert code == 0, err
        kept = sorted(data.glob("limen.db.before-restore-*"))[number]
        assert kept.read_bytes() == b"not a database" * 100 and stat.S_IMODE(kept.stat().st_mode) == 0o600
        if how:
            said = json.loads(stdout)
            assert (said["kept"], said["kept_unreadable"]) == (str(kept), "file is not a database")
        else:
            assert f"could not be read (file is not a database): it is kept as it was at {kept}" in stdout, stdout
        assert not (data / "limen.db-wal").exists()
        with sqlite3.connect(data / "limen.db") as connection:
            assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_HEAD,)]
        connection.close()


def test_a_restore_that_cannot_copy_the_database_aside_leaves_no_half_copy(tmp_path: Path) -> None:
    """A data directory that cannot take the copy (full, here a file size limit) failed the restore, rightly,
    and left the half-written copy as limen.db.before-restore-<time>, named as the database it had replaced
    (which is untouched), and an empty .limen.db.restoring."""
    data, config = migrated_data_dir(tmp_path)
    out = tmp_path / "b.limen"
    assert run("--config", str(config), "backup", str(out), "--no-vms")[0] == 0
    backed_up = (data / "limen.db").stat().st_size
    with sqlite3.connect(data / "limen.db") as connection:  # the database grows past what the limit lets through
        connection.executemany("INSERT INTO vm_actions (user_name, vm_name, action, at, result_code, details) "
                               "VALUES ('zoe', 'vm', 'start', '2026-01-01 00:00:00', 'OK', ?)",
                               [("x" * 200,)] * 2000)
    connection.close()
    child = os.fork()
    if child == 0:  # the limit is the whole process's
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails (EFBIG), not the process
            resource.setrlimit(resource.RLIMIT_FSIZE, (2 * backed_up, 2 * backed_up))
            code, _, err = run("--config", str(config), "restore", str(out))
            os._exit(0 if code == 1 and "cannot write the database at" in err else 3)
        finally:
            os._exit(4)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
    assert sorted(path.name for path in data.iterdir() if "restor" in path.name) == []


def test_a_backup_holds_the_vms_of_every_registered_host_and_names_each_ones_host(tmp_path: Path) -> None:
    # Only the default host's VMs were in the backup, without a word: restoring "--vms" lost the others.
    local = driver_uri(tmp_path, [FakeDomain("on-local", None, running=False)])
    edge = driver_uri(tmp_path, [FakeDomain("on-edge", None, running=False)])
    gone = "test:///nowhere/at/all.xml"  # a host that does not answer: said, and the backup goes on
    base = ["--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "log"), "--libvirt-uri", local]
    assert run(*base, "host", "add", "edge", edge)[0] == 0
    assert run(*base, "host", "add", "gone", gone)[0] == 0
    out = tmp_path / "b.limen"
    code, _, err = run(*base, "backup", str(out))
    assert code == 0, err
    assert "host 'gone' did not answer" in err
    (tmp_path / "work").mkdir()
    backup = open_backup(out, tmp_path / "work")
    assert sorted((vm.name, vm.host) for vm in backup.manifest.vms) == [("on-edge", "edge"), ("on-local", None)]
    assert all(vm.uuid in backup.vm_xml for vm in backup.manifest.vms)
    code, _, err = run(*base, "restore", str(out))  # both VMs are still there: nothing to define, no error
    assert code == 0, err


def test_a_vm_whose_name_was_taken_since_is_refused_before_the_database_is_replaced(tmp_path: Path) -> None:
    """The backup's VM is gone and another VM has its name now: libvirt refused to define it only after the
    database had been replaced ("the database is restored …, but what follows it failed"), half done."""
    backed_up = FakeDomain("web", None, running=False)
    migrated_data_dir(tmp_path)
    base = ["--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "log")]
    out = tmp_path / "b.limen"
    code, _, err = run(*base, "--libvirt-uri", driver_uri(tmp_path, [backed_up]), "backup", str(out))
    assert code == 0, err
    for taker in ("web", "WEB"):  # limen's names are one in any case
        now = driver_uri(tmp_path, [FakeDomain(taker, None, running=False), FakeDomain("db", None, running=False)])
        how = ["--vm", "web"] if taker == "web" else ["--vms"]
        code, _, err = run(*base, "--libvirt-uri", now, "restore", str(out), *how)
        assert code == 1, how
        assert f"cannot define the backup's VM 'web' (uuid {backed_up.uuid}) on host 'local'" in err, err
        assert f"where VM {taker!r} (uuid " in err, err  # the VM to rename or delete, by the name it has
        assert "rename or delete that VM" in err and "the database is restored" not in err
        assert list((tmp_path / "data").glob("limen.db.before-restore-*")) == [], how
    # Nothing to define: the database alone is restored, as before.
    code, _, err = run(*base, "--libvirt-uri", driver_uri(tmp_path, [backed_up]), "restore", str(out), "--vms")
    assert code == 0, err


def test_a_restore_run_as_root_leaves_the_database_its_owners(tmp_path: Path) -> None:
    """README's restore runs as root; the restored limen.db (and the copy kept beside it) were root's 0600, and
    the service's user could not open them ("unable to open database file")."""
    if os.getuid() != 0:
        pytest.skip("needs root, as the README's restore")
    service = pwd.getpwnam("nobody")
    data, config = migrated_data_dir(tmp_path)
    out = tmp_path / "b.limen"
    assert run("--config", str(config), "backup", str(out), "--no-vms")[0] == 0
    for path in (data, data / "limen.db"):
        os.chown(path, service.pw_uid, service.pw_gid)
    code, _, err = run("--config", str(config), "restore", str(out))
    assert code == 0, err
    owners = {path.name: (path.stat().st_uid, path.stat().st_gid) for path in data.iterdir()
              if path.name.startswith("limen.db")}
    assert owners and set(owners.values()) == {(service.pw_uid, service.pw_gid)}, owners


def test_user_and_token_commands_say_a_database_that_cannot_be_opened_in_one_line(tmp_path: Path) -> None:
    """`limen user list` and the other user and token commands printed ~60 lines of SQLAlchemy's traceback
    for a database file they could not open (serve and doctor said it in one line)."""
    data = tmp_path / "data"
    (data / "limen.db").mkdir(parents=True)  # not a file SQLite can open, whoever runs this (root included)
    for args in (["user", "list"], ["token", "list"], ["user", "ensure-admin"]):
        code, _, err = run("--data-dir", str(data), *args)
        assert code == 1 and "Traceback" not in err, (args, err)
        assert "cannot be opened" in err and "LIMEN_DATA_DIR" in err and len(err.strip().splitlines()) == 1, err


def test_a_command_that_migrates_an_older_schema_says_so(tmp_path: Path) -> None:
    """`limen user list` after installing a new version migrated the schema under the old server, silently."""
    data = tmp_path / "data"
    data.mkdir()
    db = Database(f"sqlite:///{data / 'limen.db'}")
    db.migrate("0001_access")
    db.close()
    code, _, err = run("--data-dir", str(data), "user", "list")
    assert code == 0 and "older schema (0001_access) and is migrated now" in err, err
    code, _, err = run("--data-dir", str(data), "user", "list")
    assert code == 0 and "migrated" not in err  # said once: it is at the newest schema now


def older_schema_backup(tmp_path: Path) -> tuple[Path, Path]:
    """A data dir whose database is of the first schema, and a backup of it: (data dir, backup file)."""
    data = tmp_path / "data"
    data.mkdir()
    db = Database(f"sqlite:///{data / 'limen.db'}")
    db.migrate("0001_access")
    db.close()
    out = tmp_path / "old.limen"
    code, _, err = run("--data-dir", str(data), "--log-dir", str(tmp_path / "log"), "backup", str(out), "--no-vms")
    assert code == 0, err
    return data, out


def backup_a_later_migration_refuses(tmp_path: Path) -> Path:
    """A backup of the second schema holding two unfinished creations of one VM, which the third schema's
    unique index refuses: its migration fails as any might (rows it cannot take, a full disk)."""
    old = tmp_path / "old"
    old.mkdir()
    db = Database(f"sqlite:///{old / 'limen.db'}")
    db.migrate("0002_safety")
    db.close()
    with sqlite3.connect(old / "limen.db") as connection:
        connection.executemany("INSERT INTO vm_actions (user_name, vm_name, action, at, result_code, details) "
                               "VALUES ('zoe', 'web', 'create', ?, 'OK', '')",
                               [("2026-01-01 00:00:00",), ("2026-01-01 00:00:01",)])
    connection.close()
    out = tmp_path / "old.limen"
    code, _, err = run("--data-dir", str(old), "--log-dir", str(tmp_path / "log"), "backup", str(out), "--no-vms")
    assert code == 0, err
    return out


def test_a_restore_whose_migration_fails_puts_the_replaced_database_back(tmp_path: Path) -> None:
    """The restore printed Alembic's traceback and left the backup's unmigrated database in place (each start
    of limen failed on it), without a word of where the one it replaced was kept."""
    out = backup_a_later_migration_refuses(tmp_path)
    data, config = migrated_data_dir(tmp_path)
    with sqlite3.connect(data / "limen.db") as connection:
        connection.execute("INSERT INTO vm_actions (user_name, vm_name, action, at, result_code, details) "
                           "VALUES ('zoe', 'vm', 'start', '2026-01-01 00:00:00', 'OK', 'before the restore')")
    connection.close()
    code, _, err = run("--config", str(config), "--log-dir", str(tmp_path / "log"), "restore", str(out))
    assert code == 1 and "Traceback" not in err, err
    assert (f"the backup's database (schema 0002_safety) could not be migrated to this version's ({SCHEMA_HEAD}): "
            "UNIQUE constraint failed: vm_actions.vm_name; the database it replaced is "
            "back in place, as it was") in err, err
    assert len(err.strip().splitlines()) <= 3, err  # the progress line, the error, its advice
    with sqlite3.connect(data / "limen.db") as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(SCHEMA_HEAD,)]
        assert connection.execute("SELECT details FROM vm_actions").fetchall() == [("before the restore",)]
    connection.close()
    assert sorted(path.name for path in data.iterdir()) == ["limen.db"]
    # One SQLite could not read, kept as it was (not copied), is renamed back.
    (data / "limen.db").write_bytes(b"not a database" * 100)
    code, _, err = run("--config", str(config), "--log-dir", str(tmp_path / "log"), "restore", str(out))
    assert code == 1 and "the database it replaced is back in place, as it was" in err, err
    assert sorted(path.name for path in data.iterdir()) == ["limen.db"]
    assert (data / "limen.db").read_bytes() == b"not a database" * 100
    # No database before: none after either (limen makes a new one at its next start, as before the restore).
    empty = tmp_path / "empty"
    code, _, err = run("--data-dir", str(empty), "--log-dir", str(tmp_path / "log"), "restore", str(out))
    assert code == 1 and "it is removed again (there was no database before)" in err, err
    assert list(empty.iterdir()) == []


@pytest.mark.parametrize(("env", "said"), [
    ({"LANG": "C.UTF-8", "LC_ALL": "", "LC_MESSAGES": "", "LIMEN_LANG": ""},
     f"was on an older schema (0001_access) and is migrated to this version's ({SCHEMA_HEAD})"),
    ({"LANG": "ko_KR.UTF-8", "LC_ALL": "", "LC_MESSAGES": "", "LIMEN_LANG": ""},
     f"이전 스키마(0001_access)여서 이 버전의 스키마({SCHEMA_HEAD})로 마이그레이션했습니다"),
])
def test_a_restore_that_migrates_an_older_schema_says_so(tmp_path: Path, env: dict[str, str], said: str) -> None:
    """`limen restore` of a backup from an older limen migrated the database without a word (other commands
    that migrate say it)."""
    data, out = older_schema_backup(tmp_path)
    result = CliRunner().invoke(app, ["--data-dir", str(data), "--log-dir", str(tmp_path / "log"), "restore",
                                      str(out)], env=env)
    assert result.exit_code == 0, result.stderr
    assert said in result.stdout
    result = CliRunner().invoke(app, ["--data-dir", str(data), "--log-dir", str(tmp_path / "log"), "--json",
                                      "restore", str(out)], env=env)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["migrated_from"] == ["0001_access"]


def test_a_restore_at_this_schema_says_no_migration(tmp_path: Path) -> None:
    _data, config = migrated_data_dir(tmp_path)
    out = tmp_path / "b.limen"
    assert run("--config", str(config), "backup", str(out), "--no-vms")[0] == 0
    code, stdout, err = run("--config", str(config), "--log-dir", str(tmp_path / "log"), "restore", str(out))
    assert code == 0, err
    assert "migrated" not in stdout


def test_a_restore_leaves_a_line_in_limens_log(tmp_path: Path) -> None:
    """A restore replaces every user, token and session, and left no trace an operator could find later."""
    data, out = older_schema_backup(tmp_path)
    logger = logging.getLogger("limen")
    before = (list(logger.handlers), logger.propagate, logger.level)
    code, stdout, err = run("--data-dir", str(data), "--log-dir", str(tmp_path / "log"), "restore", str(out))
    assert code == 0, err
    assert "database_restored" not in stdout + err  # the terminal gets the command's words, not log lines
    lines = [json.loads(line) for line in (tmp_path / "log" / "limen.log").read_text().splitlines()]
    restored = [line for line in lines if line.get("event") == "database_restored"]
    assert len(restored) == 1, lines
    assert restored[0]["file"] == str(out) and restored[0]["migrated_from"] == "0001_access"
    assert restored[0]["by"].startswith("cli:") and restored[0]["kept"].startswith(str(data / "limen.db"))
    assert restored[0]["backup_schema"] == "0001_access"
    assert oct((tmp_path / "log" / "limen.log").stat().st_mode & 0o777) == "0o600"
    # The logger is as it was: a later command or test in this process writes nothing there.
    assert (list(logger.handlers), logger.propagate, logger.level) == before


def test_a_restore_run_as_root_leaves_the_log_its_owners(tmp_path: Path) -> None:
    """The service's user must still write limen.log after a restore run as root made it."""
    if os.getuid() != 0:
        pytest.skip("needs root, as the README's restore")
    service = pwd.getpwnam("nobody")
    data, out = older_schema_backup(tmp_path)
    (tmp_path / "log").mkdir(mode=0o700)
    os.chown(tmp_path / "log", service.pw_uid, service.pw_gid)
    code, _, err = run("--data-dir", str(data), "--log-dir", str(tmp_path / "log"), "restore", str(out))
    assert code == 0, err
    log_file = tmp_path / "log" / "limen.log"
    assert (log_file.stat().st_uid, log_file.stat().st_gid) == (service.pw_uid, service.pw_gid)


def test_a_restore_under_json_says_what_it_restored(tmp_path: Path) -> None:
    """``limen --json restore`` printed the manifest with the database kept and the VMs defined, but not the
    file it restored, the settings file it wrote, nor the VMs asked for that libvirt already had."""
    gone, kept_vm = FakeDomain("gone", None, running=False), FakeDomain("still-here", None, running=False)
    data, config = migrated_data_dir(tmp_path)
    base = ["--config", str(config), "--log-dir", str(tmp_path / "log")]
    out = tmp_path / "b.limen"
    code, _, err = run(*base, "--libvirt-uri", driver_uri(tmp_path, [gone, kept_vm]), "backup", str(out))
    assert code == 0, err
    written = tmp_path / "restored.toml"
    code, stdout, err = run(*base, "--libvirt-uri", driver_uri(tmp_path, [kept_vm]), "--json", "restore", str(out),
                            "--vms", "--settings-to", str(written))
    assert code == 0, err
    said = json.loads(stdout)
    assert (said["file"], said["settings_written"]) == (str(out), str(written))
    assert (said["defined"], said["skipped"]) == (["gone"], ["still-here"])
    assert said["schema_revision"] == SCHEMA_HEAD and said["migrated_from"] == []
    assert sorted(vm["name"] for vm in said["vms"]) == ["gone", "still-here"]
    assert said["kept"].startswith(str(data / "limen.db.before-restore-"))
    assert err == ""  # no progress line under --json


def test_a_backup_where_limen_has_no_database_makes_none_and_fails(tmp_path: Path) -> None:
    """A backup run without the service's settings (a cron job, a data directory that holds no database) read
    the host registry first, which made an empty SQLite file, then backed that up (schema None, exit 0):
    every night's backup was empty, and restoring one put an empty database over the real one."""
    data = tmp_path / "data"
    out = tmp_path / "b.limen"
    code, _, err = run("--data-dir", str(data), "--log-dir", str(tmp_path / "log"), "--libvirt-uri",
                       driver_uri(tmp_path, [FakeDomain("web", None, running=False)]), "backup", str(out))
    assert code == 1 and "nothing to back up" in err, err
    assert not (data / "limen.db").exists() and not out.exists()
    # A database file limen never wrote (no schema) is no database of limen's either.
    data.mkdir(exist_ok=True)
    sqlite3.connect(data / "limen.db").close()
    code, _, err = run("--data-dir", str(data), "--log-dir", str(tmp_path / "log"), "backup", str(out), "--no-vms")
    assert code == 1 and "holds nothing of limen's" in err, err
    assert not out.exists()
