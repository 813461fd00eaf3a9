"""Backups of limen's own state: its database (users, tokens, sessions, audit), the settings file it was
started with, and the XML of the VMs it manages. The VMs' disks are libvirt's and not in the backup.

A backup is a tar file (owner-only, 0600: it holds password and token hashes) of ``manifest.json``, the
database — ``limen.db``, a consistent copy made with SQLite's online backup API (safe while limen serves and
writes), or ``limen.pgdump``, ``pg_dump``'s custom format of a PostgreSQL database
(:mod:`limen.backup_postgres`) — ``config.toml`` when a settings file was used, and ``vms/<uuid>.xml``.
A restore refuses a backup whose schema is newer than this limen knows or whose database is of the other
kind, puts the database in place while no limen serves it (the old one is kept beside it), then migrates it
to this version's schema.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from limen import __version__, backup_postgres
from limen.db.database import SCHEMA_HEAD, SQLITE_COMPANIONS, Database, known_revisions
from limen.db.models import LimenInstance
from limen.errors import MigrationFailed
from limen.instances import EVER, InstanceInfo, process_gone, this_process, why_gone
from limen.private_files import new_private_file, private_file
from limen.settings import Settings
from limen.url_redaction import redacted_url

T = TypeVar("T")
BACKUP_FORMAT = 1
MANIFEST = "manifest.json"
DATABASE = "limen.db"
PG_DATABASE = "limen.pgdump"
SQLITE, POSTGRESQL = "sqlite", "postgresql"
CONFIG = "config.toml"
_VM_MEMBER = re.compile(r"^vms/([0-9a-f-]{36})\.xml$")
# Largest member read from a backup: a limen database of millions of audit rows, not an arbitrary file.
MAX_MEMBER_BYTES = 8 * 2**30
# A backup is made in a directory of its own beside its file (a full copy of the database in it), locked by
# its process (WORK_LOCK) from within two system calls of its making until it is removed.
WORK_PREFIX = ".limen-backup-"
WORK_LOCK = "in-use.lock"
# A work directory changed this recently (seconds) is left alone even unlocked: its backup may be between them.
_JUST_MADE = 60.0
# One without a lock file, which a limen before these locks left, is removed once no backup can be at work in it.
_MADE_BEFORE_LOCKS = 86400.0


class BackupError(Exception):
    """The backup cannot be made or restored; the message says why and what to do."""


@dataclass(frozen=True)
class VmRecord:
    uuid: str
    name: str
    host: str | None = None  # the registry's host that defined it (None: the default host, or an old backup)


@dataclass(frozen=True)
class Manifest:
    format: int
    limen_version: str
    schema_revision: str | None
    created_at: str
    database: str
    config_file: str | None
    vms: list[VmRecord] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("format") != BACKUP_FORMAT:
            raise BackupError(f"not a limen backup of format {BACKUP_FORMAT} (manifest says {raw.get('format')!r})"
                              if isinstance(raw, dict) else "manifest.json is not an object")
        try:
            return cls(
                format=BACKUP_FORMAT, limen_version=str(raw["limen_version"]),
                schema_revision=None if raw["schema_revision"] is None else str(raw["schema_revision"]),
                created_at=str(raw["created_at"]), database=str(raw["database"]),
                config_file=None if raw.get("config_file") is None else str(raw["config_file"]),
                vms=[VmRecord(str(vm["uuid"]), str(vm["name"]),
                              None if vm.get("host") is None else str(vm["host"])) for vm in raw.get("vms", [])],
            )
        except (KeyError, TypeError) as exc:
            raise BackupError(f"manifest.json lacks {exc}") from None


def sqlite_file(settings: Settings) -> Path:
    url = make_url(settings.db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise BackupError(f"limen backup copies SQLite and PostgreSQL databases; "
                          f"{redacted_url(settings.db_url)} is neither")
    return Path(url.database)


def database_kind(settings: Settings) -> str:
    """``sqlite`` or ``postgresql``; any other database is refused."""
    if backup_postgres.is_postgresql(settings.db_url):
        return POSTGRESQL
    sqlite_file(settings)
    return SQLITE


def database_label(settings: Settings) -> str:
    """The database as messages name it: the SQLite file, or the URL without its password."""
    if database_kind(settings) == POSTGRESQL:
        return redacted_url(settings.db_url)
    return str(sqlite_file(settings))


def _postgres(run: Callable[[], T]) -> T:
    """``run()``, a failing PostgreSQL program reported as a :class:`BackupError`."""
    try:
        return run()
    except backup_postgres.PostgresToolError as exc:
        raise BackupError(str(exc)) from None


def _revision_of(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:  # no table: a database never migrated
        return None
    return None if row is None else str(row[0])


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def write_backup(settings: Settings, out: Path, *, config_file: Path | None,
                 vm_xml: dict[VmRecord, str]) -> Manifest:
    """Writes the backup to ``out`` (replaced whole, or left as it was if this fails)."""
    check_backup_target(out)
    kind = database_kind(settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_work_dirs(out.parent)
    with tempfile.TemporaryDirectory(prefix=WORK_PREFIX, dir=out.parent) as work, \
            _locked_new_file(Path(work) / WORK_LOCK):
        if kind == POSTGRESQL:
            copy = Path(work) / PG_DATABASE
            _postgres(lambda: backup_postgres.dump(settings.db_url, copy))
            # The revision as the dump holds it: the same snapshot as the rows.
            revision = _postgres(lambda: backup_postgres.revision_in(copy))
        else:
            copy = new_private_file(Path(work), DATABASE)
            revision = _copy_sqlite(sqlite_file(settings), copy)
        manifest = Manifest(
            format=BACKUP_FORMAT, limen_version=__version__, schema_revision=revision,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"), database=kind,
            config_file=str(config_file) if config_file is not None else None,
            vms=sorted(vm_xml, key=lambda vm: vm.name),
        )
        partial = Path(work) / "backup.tar"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, MANIFEST, manifest.to_json().encode())
            tar.add(copy, copy.name, filter=lambda info: _owner_only(info))
            if config_file is not None:
                _add_bytes(tar, CONFIG, config_file.read_bytes())
            for vm, xml in sorted(vm_xml.items(), key=lambda item: item[0].uuid):
                _add_bytes(tar, f"vms/{vm.uuid}.xml", xml.encode())
        os.replace(partial, out)
    return manifest


@contextmanager
def _locked_new_file(path: Path) -> Iterator[None]:
    """Creates ``path`` (empty, 0600) and holds an exclusive flock on it until the block ends. The kernel lets
    go of it when the process ends, however it ends: a lock that is free was left by a process that is gone."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lock_is_free(lock: Path) -> bool | None:
    """Whether no process holds ``lock``'s flock (see :func:`_locked_new_file`); None: there is no such file."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _remove_stale_work_dirs(directory: Path) -> None:
    """Removes the work directories that backups killed before their end left in ``directory``: each holds a
    full copy of the database, and was left there for good. One whose backup is at work is locked."""
    now = time.time()
    for work in directory.glob(f"{WORK_PREFIX}*"):
        try:
            info = work.lstat()
            if not stat.S_ISDIR(info.st_mode) or now - info.st_mtime < _JUST_MADE:
                continue
            free = _lock_is_free(work / WORK_LOCK)
            if free or (free is None and now - info.st_mtime > _MADE_BEFORE_LOCKS):
                shutil.rmtree(work)
        except OSError:  # another user's, or removed meanwhile by another backup: this backup goes on
            continue


def check_backup_target(out: Path) -> None:
    """BackupError unless ``out`` is missing or an ordinary file: the backup takes its place (a rename), and
    a FIFO, a device (``/dev/full`` as root), a symbolic link (``/dev/stdout``) or a directory was replaced,
    or failed after the copy was made."""
    try:
        mode = out.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise BackupError(f"{out} is a directory: give the backup file's name (e.g. {out / 'limen.backup'})")
    raise BackupError(f"{out} is {_kind_of_file(mode)}: a backup is written as an ordinary file in its place, so it "
                      f"is refused there; give the name of a new or ordinary file")


def _kind_of_file(mode: int) -> str:
    return ("a symbolic link" if stat.S_ISLNK(mode) else "a named pipe" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "not an ordinary file")


def _copy_sqlite(source: Path, copy: Path) -> str | None:
    """Copies the database into ``copy`` (made owner-only beforehand); returns the copy's schema revision."""
    if not source.is_file():
        raise BackupError(f"no database at {source}: nothing to back up")
    # Read-only, and SQLite's backup API in one step: the copy is one consistent moment of the database
    # even while a serving limen writes to it (WAL: the writer is not blocked meanwhile).
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as reader, sqlite3.connect(copy) as writer:
        reader.backup(writer)
        revision = _revision_of(writer)
    reader.close()
    writer.close()
    if revision is None:
        # A file limen never wrote (no schema: made empty by something that opened it): its backup would be
        # restored over a real database as if it were one.
        raise BackupError(f"the database at {source} holds nothing of limen's (no schema): nothing to back up")
    return revision


def _owner_only(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


@dataclass
class Backup:
    """An opened backup: its manifest and the members a restore uses (read into a private directory)."""

    manifest: Manifest
    database: Path
    config: bytes | None
    vm_xml: dict[str, str]  # uuid -> XML


def open_backup(file: Path, work: Path) -> Backup:
    """Reads ``file`` into ``work``; only the members a backup has are read, each bounded in size."""
    manifest: Manifest | None = None
    database: Path | None = None
    config: bytes | None = None
    vm_xml: dict[str, str] = {}
    try:
        mode = file.stat().st_mode  # a link to a backup is read as the backup
        if not stat.S_ISREG(mode):
            # Read as an archive, /dev/zero never ended, and a pipe cannot be read as one (tarfile seeks).
            raise BackupError(f"{file} is {_kind_of_file(mode)}: a backup is read from an ordinary file")
        with tarfile.open(file, mode="r:*") as tar:
            for member in tar:
                if not member.isfile() or member.size > MAX_MEMBER_BYTES:
                    continue
                extracted = tar.extractfile(member)
                if extracted is None:
                    continue
                if member.name == MANIFEST:
                    manifest = Manifest.from_json(extracted.read(2**20).decode())
                elif member.name in (DATABASE, PG_DATABASE) and database is None:
                    database = work / member.name
                    fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    with os.fdopen(fd, "wb") as target:
                        while chunk := extracted.read(2**20):
                            target.write(chunk)
                elif member.name == CONFIG:
                    config = extracted.read(2**20)
                elif match := _VM_MEMBER.match(member.name):
                    vm_xml[match.group(1)] = extracted.read(2**20).decode()
    except (OSError, tarfile.TarError, EOFError, UnicodeDecodeError, json.JSONDecodeError, RecursionError,
            zlib.error) as exc:
        # One line: tarfile lists every compression it tried, a line each. RecursionError: a manifest nested
        # deeper than Python's json reads.
        raise BackupError(f"{file} is not a readable limen backup: {(str(exc).splitlines() or [''])[0]}") from None
    if manifest is None or database is None:
        raise BackupError(f"{file} is not a limen backup (no {MANIFEST if manifest is None else 'database'})")
    expected = PG_DATABASE if manifest.database == POSTGRESQL else DATABASE
    if database.name != expected:
        raise BackupError(f"{file} is not a limen backup (its manifest says {manifest.database}, it holds "
                          f"{database.name})")
    return Backup(manifest, database, config, vm_xml)


def check_restorable(backup: Backup, kind: str = SQLITE) -> None:
    """Refuses a backup of a schema this limen does not know (a newer limen's), of another kind of database
    than ``kind`` (this limen's), or a damaged database."""
    known = known_revisions()
    revision = backup.manifest.schema_revision
    if revision is None:
        # Made from a file limen never wrote (an older limen backed up the empty one its registry read made):
        # restored, it put an empty database in place of the real one.
        raise BackupError("the backup holds no limen database (it was made from an empty file, no schema): "
                          "nothing to restore from it")
    if revision not in known:
        raise BackupError(f"the backup's schema {revision!r} (limen {backup.manifest.limen_version}) is newer than "
                          f"this limen {__version__} knows (up to {known[-1]!r}): restore it with that version")
    if backup.manifest.database != kind:
        raise BackupError(f"the backup is of a {backup.manifest.database} database and this limen uses {kind}: "
                          "restore it with a limen configured like the one that made it")
    if kind == POSTGRESQL:
        actual = _postgres(lambda: backup_postgres.revision_in(backup.database))
        if actual != revision:
            raise BackupError(f"the backup's database is at schema {actual!r}, its manifest says {revision!r}")
        return
    with sqlite3.connect(f"file:{backup.database}?mode=ro", uri=True) as db:
        try:
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
            actual = _revision_of(db)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"the backup's database is damaged: {exc}") from None
    db.close()
    if verdict != "ok":
        raise BackupError(f"the backup's database is damaged: {verdict}")
    if actual != revision:
        raise BackupError(f"the backup's database is at schema {actual!r}, its manifest says {revision!r}")


def serving_instances(settings: Settings) -> list[str]:
    """``host pid`` of each limen instance that may be serving this database now, judged as limen's own crash
    recovery judges them (stopped, its process ended on this host, or silent for three heartbeats: gone).
    A restored database holds the rows of the instance that served when the backup was made: they are gone."""
    if database_kind(settings) == SQLITE and not sqlite_file(settings).is_file():
        return []
    db = Database(settings.db_url)
    here = this_process()
    now = datetime.now(UTC)

    def live(session: Session) -> list[str]:
        rows = session.execute(select(LimenInstance).where(LimenInstance.stopped_at.is_(None))).scalars()
        return [
            f"{row.hostname} pid {row.pid}" for row in rows
            if why_gone(InstanceInfo.of(row), now=now, heartbeat_interval=settings.instance_heartbeat,
                        is_process_gone=lambda key: process_gone(key, here),
                        in_contact_since=EVER) is None  # a silence as the rows tell it
        ]

    try:
        return db.run_sync(live)
    except Exception:  # an old schema without instances (or none at all): nothing says one serves it
        return []
    finally:
        db.close()


@dataclass(frozen=True)
class Restored:
    """What :func:`restore_database` did: where the replaced database is kept (None if there was none), the
    schema revisions the backup's database was migrated from ([] when it was at this version's), and why
    SQLite could not read the replaced database, when it was kept as it was rather than copied (None: copied)."""

    kept: Path | None
    migrated_from: list[str]
    kept_unreadable: str | None = None


def restore_database(settings: Settings, backup: Backup, *, now: datetime | None = None) -> Restored:
    """Puts the backup's database in place of the current one and migrates it to this version's schema."""
    kind = database_kind(settings)
    check_restorable(backup, kind)
    serving = serving_instances(settings)
    if serving:
        lost_after = 3 * settings.instance_heartbeat
        raise BackupError(f"limen serves this database ({', '.join(serving)}): stop it before a restore (one "
                          f"killed on another host counts as serving until it has missed its heartbeats for "
                          f"{lost_after:g} s)")
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    restore = _restore_postgres if kind == POSTGRESQL else _restore_sqlite
    kept, kept_unreadable = restore(settings, backup, stamp)
    db = Database(settings.db_url)
    try:
        migrated_from = db.migrate()
    except Exception as exc:  # Alembic's, the database's or limen's: said in one line, not a traceback
        db.close()  # before the file is put back
        raise BackupError(_migration_failed(settings, backup, kept, kept_unreadable, exc)) from None
    try:
        # The instances that served when the backup was made serve the database they were backed up from,
        # not this copy: marked stopped, or a second restore right after was refused, naming them, until
        # their heartbeats ran out. What they held is closed by the next start's sweep, as for any stopped one.
        restored_at = now or datetime.now(UTC)
        db.run_sync(lambda session: session.execute(
            update(LimenInstance).where(LimenInstance.stopped_at.is_(None)).values(stopped_at=restored_at)))
    finally:
        db.close()
    return Restored(kept, migrated_from, kept_unreadable)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _migration_failed(settings: Settings, backup: Backup, kept: Path | None, kept_unreadable: str | None,
                      exc: Exception) -> str:
    """Puts the replaced database back, the restored one's migration having failed, and says all of it: the
    restore printed Alembic's traceback and left the backup's database in place, unmigrated (each start of
    limen failed on it), without a word of where the replaced one was kept. A migration runs in one
    transaction; what is put back is the whole file (SQLite) or is restored in one transaction (PostgreSQL)."""
    reason = exc.reason if isinstance(exc, MigrationFailed) else _first_line(exc)
    failed = (f"the backup's database (schema {backup.manifest.schema_revision}) could not be migrated to this "
              f"version's ({SCHEMA_HEAD}): {reason}")
    try:
        if database_kind(settings) == POSTGRESQL:
            assert kept is not None  # a dump is made before every PostgreSQL restore
            _postgres(lambda: backup_postgres.replace_with(settings.db_url, kept, backup.database.parent))
            return f"{failed}; the database it replaced is back in place (its dump is kept at {kept})"
        target = sqlite_file(settings)
        if kept is None:
            _remove_with_companions(target)
            return f"{failed}; it is removed again (there was no database before)"
        # The copy made before the restore (the database as it was, whole), or a database SQLite could not
        # read, kept as it was with whatever -wal or -journal it had.
        _move_with_companions(kept, target)
        return f"{failed}; the database it replaced is back in place, as it was"
    except (OSError, BackupError) as again:
        where = f": the database it replaced is kept at {kept}" if kept is not None else ""
        return f"{failed}; putting the replaced database back failed too ({_first_line(again)}){where}"


def _restore_postgres(settings: Settings, backup: Backup, stamp: str) -> tuple[Path, None]:
    """Dumps the current database beside the data (``limen-before-restore-<time>.pgdump``), then replaces it."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    kept = new_private_file(settings.data_dir, f"limen-before-restore-{stamp}", ".pgdump")
    _postgres(lambda: backup_postgres.dump(settings.db_url, kept))
    _postgres(lambda: backup_postgres.replace_with(settings.db_url, backup.database, backup.database.parent))
    return kept, None


def _restore_sqlite(settings: Settings, backup: Backup, stamp: str) -> tuple[Path | None, str | None]:
    target = sqlite_file(settings)
    try:
        return _replace_sqlite(target, backup, stamp)
    except (sqlite3.Error, OSError) as exc:  # an unwritable or full data directory: one line, nothing replaced
        # OSError: the copies are made, locked and removed by limen itself now, no longer only by SQLite.
        why = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename else str(exc)
        raise BackupError(f"cannot write the database at {target}: {why} (check LIMEN_DATA_DIR: its owner, "
                          f"permissions and free space)") from None


def _owner_of(target: Path) -> tuple[int, int]:
    """Whose the restored files must be: the database's being replaced, else its directory's (the service's
    user). A restore run as root made them root's 0600, which the service could not open."""
    for path in (target, target.parent):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        return info.st_uid, info.st_gid
    return os.getuid(), os.getgid()


def _give(path: Path, owner: tuple[int, int]) -> None:
    if os.getuid() == 0 and (path.stat().st_uid, path.stat().st_gid) != owner:
        os.chown(path, *owner)


@contextmanager
def _incoming(target: Path) -> Iterator[Path]:
    """``.<database>.restoring``, made empty and owner-only, the backup's database is copied to before it takes
    the database's place; locked while the block runs. One a killed restore left (its lock free) is removed
    first, with its journal: written over, a half-written one failed the restore ("file is not a database"),
    and its journal would be rolled back into the new copy. One whose restore is at work is refused."""
    incoming = target.with_name(f".{target.name}.restoring")
    if _lock_is_free(incoming) is False:
        raise BackupError(f"another limen restore is writing {incoming} now: let it end, then run this one again")
    _remove_with_companions(incoming)
    with _locked_new_file(incoming):
        try:
            yield incoming
        except BaseException:  # a restore that failed leaves no copy of its own behind
            _remove_with_companions(incoming)
            raise


def _replace_sqlite(target: Path, backup: Backup, stamp: str) -> tuple[Path | None, str | None]:
    """Puts the backup's database at ``target``; returns where the one it replaced is kept and, if SQLite
    could not read that one, why (it is kept as it was then, not copied)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = _owner_of(target)
    kept: Path | None = None
    unreadable: str | None = None
    with _incoming(target) as incoming:  # first: one refused (a restore at work already) has done nothing
        if target.exists():
            # Both copies are full databases under names anyone can guess, in a directory QEMU may pass
            # through (0711): made owner-only before SQLite writes them (it keeps a file's mode, and gives its
            # journal the same). A second restore within the second keeps its own copy, not the first one's.
            kept = new_private_file(target.parent, f"{target.name}.before-restore-{stamp}")
            # Checkpointed into one file (no -wal beside the copy), then set aside.
            current, aside = sqlite3.connect(target), sqlite3.connect(kept)
            try:
                current.backup(aside)
            except sqlite3.DatabaseError as exc:
                # Garbage or a damaged file is what a restore is for: it was refused ("cannot write the
                # database at …: file is not a database"). Kept as it is instead, its log with it.
                if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                    aside.close()
                    _remove_with_companions(kept)  # half a copy, the database itself untouched: not "kept"
                    raise
                unreadable = str(exc)
            finally:
                current.close()
                aside.close()
            if unreadable is not None:
                _move_with_companions(target, kept)
                private_file(kept)
            _give(kept, owner)
        with sqlite3.connect(f"file:{backup.database}?mode=ro", uri=True) as source, \
                sqlite3.connect(incoming) as copy:
            source.backup(copy)
        source.close()
        copy.close()
        _give(incoming, owner)
        for companion in SQLITE_COMPANIONS:  # the old database's log must not be replayed onto the new one
            Path(f"{target}{companion}").unlink(missing_ok=True)
        os.replace(incoming, target)
    return kept, unreadable


def _remove_with_companions(database: Path) -> None:
    for path in (database, *(Path(f"{database}{companion}") for companion in SQLITE_COMPANIONS)):
        path.unlink(missing_ok=True)


def _move_with_companions(database: Path, to: Path) -> None:
    """Renames ``database`` and its -wal, -shm and -journal, those it has, to ``to`` and the same suffixes."""
    for companion in SQLITE_COMPANIONS:  # the copy's own, if the failed copy left one, are not the database's
        Path(f"{to}{companion}").unlink(missing_ok=True)
    os.replace(database, to)
    for companion in SQLITE_COMPANIONS:
        if Path(f"{database}{companion}").exists():
            os.replace(f"{database}{companion}", f"{to}{companion}")
