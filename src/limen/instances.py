"""The limen instances that share one database, and which of them are gone.

Each ``limen serve`` registers itself at start (a new random id every start), heartbeats every
``instance_heartbeat`` seconds and marks itself stopped on a clean shutdown. Another instance judges it
gone (:func:`why_gone`) when it stopped, when its heartbeat is older than :data:`LOST_AFTER_HEARTBEATS`
intervals, or at once when its process ran on this host, in this PID namespace, since this boot, and is
no longer there (so a restart right after ``kill -9`` cleans up without waiting). What a gone instance
held (live console rows, pending VM actions) is cleaned up by :mod:`limen.recovery`.

A process is named by its boot id, PID namespace, PID and start time (:class:`ProcessIdentity`): the PID
alone could belong to another process by now, and a PID from another namespace (a container sharing the
host name) says nothing here.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from limen.db import Database
from limen.db.models import LimenInstance

LOST_AFTER_HEARTBEATS = 3
# ``in_contact_since`` for a judge that takes the rows' silence as it stands (a one-off command).
EVER = datetime.min.replace(tzinfo=UTC)
PROC = Path("/proc")

Clock = Callable[[], float]  # seconds since the epoch, like time.time


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    hostname: str
    pid: int
    # "<boot id>/<pid namespace>/<pid>/<start time in clock ticks>"; None where /proc cannot tell.
    key: str | None

    @property
    def namespace(self) -> str | None:
        """The part of the key that says "this boot, this PID namespace"."""
        return "/".join(self.key.split("/")[:2]) if self.key else None


def _start_ticks(pid: int, proc: Path) -> str | None:
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime), counted after the command name, which is in parentheses and may hold spaces.
    fields = stat[stat.rfind(")") + 2:].split()
    if fields and fields[0] in ("Z", "X"):  # a killed process its parent has not reaped yet: it holds nothing
        return None
    return fields[19] if len(fields) > 19 else None


def process_key(pid: int, proc: Path = PROC) -> str | None:
    """The key of the live process ``pid`` as seen from here, or None if it is not there (or no /proc)."""
    try:
        boot_id = (proc / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(proc / "self/ns/pid")
    except OSError:
        return None
    ticks = _start_ticks(pid, proc)
    return f"{boot_id}/{namespace}/{pid}/{ticks}" if ticks is not None else None


def this_process(proc: Path = PROC) -> ProcessIdentity:
    return ProcessIdentity(hostname=socket.gethostname(), pid=os.getpid(), key=process_key(os.getpid(), proc))


def process_gone(key: str, here: ProcessIdentity, proc: Path = PROC) -> bool:
    """True when the process ``key`` names ran in ``here``'s PID namespace since this boot and is no longer
    running (its PID is free, or another process's). False when it runs, or when this host cannot tell."""
    parts = key.split("/")
    if len(parts) != 4 or here.namespace is None or "/".join(parts[:2]) != here.namespace:
        return False
    try:
        pid = int(parts[2])
    except ValueError:
        return False
    return process_key(pid, proc) != key


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    id: str
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    process_key: str | None

    @classmethod
    def of(cls, row: LimenInstance) -> InstanceInfo:
        return cls(id=row.id, hostname=row.hostname, pid=row.pid, started_at=row.started_at,
                   heartbeat_at=row.heartbeat_at, stopped_at=row.stopped_at, process_key=row.process_key)

    def describe(self) -> str:
        return f"limen instance {self.id[:12]} (host {self.hostname[:60]}, pid {self.pid})"


def why_gone(
    instance: InstanceInfo,
    *,
    now: datetime,
    heartbeat_interval: float,
    is_process_gone: Callable[[str], bool],
    in_contact_since: datetime | None,
) -> str | None:
    """Why ``instance`` is gone, in words; None while it may still be alive.

    Silence counts only as long as the judge itself has reached the database without a break
    (``in_contact_since``; None: not now): after a database outage every instance's heartbeat is old, and
    the one that reaches the database first must not declare the others lost before they could write."""
    if instance.stopped_at is not None:
        return "it stopped"
    if instance.process_key is not None and is_process_gone(instance.process_key):
        return "its process ended"
    bound = timedelta(seconds=heartbeat_interval * LOST_AFTER_HEARTBEATS)
    silent = now - max(instance.heartbeat_at, in_contact_since or now)
    if silent > bound:
        return f"no heartbeat for {(now - instance.heartbeat_at).total_seconds():.0f} s"
    return None


@dataclass(frozen=True, slots=True)
class Census:
    """The instances believed alive, and the ones found gone (with why) that were not yet marked stopped."""

    live: frozenset[str]
    gone: tuple[tuple[InstanceInfo, str], ...]


class InstanceRegistry:
    """This instance's row, and the judgement of the others. Call :meth:`register` once the database is
    migrated, :meth:`heartbeat` every ``heartbeat_interval`` seconds, :meth:`stopped` on a clean shutdown."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        heartbeat_interval: float,
        *,
        process: ProcessIdentity | None = None,
        is_process_gone: Callable[[str], bool] | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.heartbeat_interval = heartbeat_interval
        self.id = uuid.uuid4().hex
        self.process = process or this_process()
        here = self.process
        self._is_process_gone = is_process_gone or (lambda key: process_gone(key, here))
        # Since when this instance has reached the database without a break (registered, or the first
        # heartbeat after a failed one); None right after a failure.
        self._in_contact_since: datetime | None = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def register(self) -> None:
        now = self._now()
        await self.db.execute(insert(LimenInstance), {
            "id": self.id, "hostname": self.process.hostname[:255], "pid": self.process.pid, "started_at": now,
            "heartbeat_at": now, "process_key": self.process.key,
        })
        self._in_contact_since = now

    async def heartbeat(self) -> bool:
        """Says this instance is alive. False if another instance had declared it lost (its stall outlasted
        the heartbeat bound): the row is revived, but what was swept meanwhile stays closed.

        A heartbeat that took longer than an interval met a database that hung (stopped, not refusing):
        the others' heartbeats waited as long, so this instance counts their silence from now, as after
        one that failed."""
        now = self._now()

        def run(session: Session) -> bool:
            row = session.get(LimenInstance, self.id)
            if row is None:
                return False
            revived = row.stopped_at is not None
            row.heartbeat_at, row.stopped_at = now, None
            return not revived

        try:
            alive = await self.db.run(run)
        except BaseException:
            self._in_contact_since = None
            raise
        answered = self._now()
        if self._in_contact_since is None or answered - now > timedelta(seconds=self.heartbeat_interval):
            self._in_contact_since = answered
        return alive

    async def stopped(self) -> None:
        await self.db.execute(
            update(LimenInstance).where(LimenInstance.id == self.id).values(stopped_at=self._now())
        )

    async def census(self) -> Census:
        now = self._now()

        def run(session: Session) -> Census:
            live: set[str] = set()
            gone: list[tuple[InstanceInfo, str]] = []
            for row in session.scalars(select(LimenInstance).where(LimenInstance.stopped_at.is_(None))):
                info = InstanceInfo.of(row)
                reason = None if info.id == self.id else why_gone(
                    info, now=now, heartbeat_interval=self.heartbeat_interval,
                    is_process_gone=self._is_process_gone, in_contact_since=self._in_contact_since)
                if reason is None:
                    live.add(info.id)
                else:
                    gone.append((info, reason))
            return Census(live=frozenset(live), gone=tuple(gone))

        return await self.db.run(run)

    async def describe(self, instance_ids: set[str]) -> dict[str, InstanceInfo]:
        """The rows of these instances (the ones that exist)."""
        if not instance_ids:
            return {}
        query = select(LimenInstance).where(LimenInstance.id.in_(sorted(instance_ids)))
        return await self.db.run(lambda session: {row.id: InstanceInfo.of(row) for row in session.scalars(query)})

    async def mark_lost(self, instance_id: str) -> None:
        """Marks a gone instance stopped, once what it held is cleaned up, so it is never judged again
        (its PID may be another process's tomorrow)."""
        await self.db.execute(
            update(LimenInstance).where(LimenInstance.id == instance_id, LimenInstance.stopped_at.is_(None))
            .values(stopped_at=self._now())
        )
