"""Long VM operations that run in the background: an id to poll, a state, progress, and the outcome.

A request that would take seconds (a snapshot of a running VM saves its memory) answers at once with an
:class:`Operation`; the work goes on in an asyncio task of this process. ``GET /api/operations/{id}``
reads it, and the work announces its progress on the VM change feed. The registry is per process and
bounded: finished operations are kept for :data:`KEEP_FINISHED_SECONDS` (at most :data:`KEEP_FINISHED`
of them), so memory stays bounded however many are started. At most one operation per VM runs at a
time (:meth:`Operations.start` refuses a second one with the code it is given), which also keeps two
requests from racing on one VM between their checks and their work. A VM's deletion, a revert to a snapshot
and a snapshot's deletion are operations too (:data:`VM_DELETION`, :data:`SNAPSHOT_REVERT`,
:data:`SNAPSHOT_DELETION`), run by their request itself (:meth:`Operations.running`) and never shown (their
answer is the request's): what meets a revert or a snapshot's deletion is refused as what meets a snapshot
being taken, and what meets a VM's deletion waits for it instead, and then finds the VM gone
(:meth:`Operations.check_idle`), so nothing is taken into a disk the deletion keeps.

Several limen instances on one Redis hear of each other's operations through their relayed events
(:mod:`limen.vm_event_relay`): :meth:`Operations.heard` keeps what the last one said, so that
``GET /api/operations/{id}`` answers on every instance, not only on the one doing the work. An instance that
has heard nothing of an operation yet (it started after the operation began, or the poll came before the
first event) reads it from their :class:`OperationBoard` (:meth:`Operations.find`), where the instance
running it leaves its start before the start is answered (:meth:`Operations.post_start`). Another instance's
operation is only read here, never waited for or refused on. An end told while this instance could not hear
the others (Redis down) never comes as an event; the instance running it leaves it on the board again once
Redis is back, so an operation heard running before then is read from the board at its polls, once the board
can be read, until its end is found there or heard (:meth:`Operations.hearing_events`). An instance that
dies (``kill -9``) never tells the end of what it ran: once this instance's sweep (:mod:`limen.recovery`) no
longer finds it alive (:meth:`Operations.instances_alive`), its operations still running are read here as
failed with SERVER_LOST, as the audit trail records them, instead of running for as long as they are kept.

States, as a table (anything else is a bug)::

    running ──► done
        └─────► failed      (error: the JSON error body of the LimenError it failed with)
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from limen import end_details
from limen.errors import ErrorCode, LimenError

log = logging.getLogger("limen.hypervisor")

KEEP_FINISHED = 256
KEEP_FINISHED_SECONDS = 600.0
# Another instance's operation whose end never came (Redis dropped it, the instance died) is forgotten after
# this long: longer than any snapshot may take (limen.hypervisor.snapshots.TAKE_TIMEOUT).
KEEP_HEARD_RUNNING_SECONDS = 3600.0
# The kinds of the operations a request runs itself (Operations.running); a snapshot's is "snapshot".
VM_DELETION = "delete"
SNAPSHOT_REVERT = "revert"
SNAPSHOT_DELETION = "snapshot-delete"
VM_MIGRATION = "migrate"  # a move to another host: other changes of the VM are refused with VM_MOVING
KEEP_LOST_INSTANCES = 1024  # instances remembered as lost (one a crash): bounded memory


class OperationState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


_NEXT_STATES = {
    OperationState.RUNNING: frozenset({OperationState.DONE, OperationState.FAILED}),
    OperationState.DONE: frozenset[OperationState](),
    OperationState.FAILED: frozenset[OperationState](),
}


@dataclass(slots=True)
class Operation:
    """One background operation. ``progress`` is 0–100, or None while the hypervisor gives no figure (for a
    snapshot it gives none: None until done, then 100)."""

    id: str
    kind: str  # "snapshot", or one a request runs itself (VM_DELETION, SNAPSHOT_REVERT, SNAPSHOT_DELETION)
    vm_uuid: str
    vm_name: str
    vm_owner: str | None  # who may see it besides admins (and whoever started it)
    user: str  # who started it
    subject: str  # what it makes or acts on (the snapshot's name)
    started_at: datetime
    state: OperationState = OperationState.RUNNING
    progress: int | None = None
    error: dict[str, Any] | None = None
    finished_at: datetime | None = None
    finished_monotonic: float | None = field(default=None, repr=False)
    ended: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)
    # Another instance's operation: the limen instance running it (limen.instances), when it said so.
    instance_id: str | None = field(default=None, repr=False)
    # False for one a request runs itself (Operations.running): its answer is the request's, and nobody is
    # given its id to ask for it.
    shown: bool = field(default=True, repr=False, compare=False)

    def move_to(self, state: OperationState, now: float) -> None:
        """Ends the operation; ``now`` is the registry's clock (when it may be forgotten)."""
        if state not in _NEXT_STATES[self.state]:
            raise RuntimeError(f"operation {self.id}: {self.state} → {state} is not a transition")
        self.state = state
        self.finished_at = datetime.now(UTC)
        self.finished_monotonic = now
        if state is OperationState.DONE:
            self.progress = 100
        self.ended.set()

    @classmethod
    def of_payload(cls, payload: dict[str, Any], vm_owner: str | None, instance_id: str | None = None) -> Operation:
        """The operation another limen instance (``instance_id``, when known) sent as :meth:`payload`
        (ValueError, KeyError or TypeError when it is not one)."""
        finished_at, progress, error = payload["finished_at"], payload["progress"], payload["error"]
        if not (progress is None or type(progress) is int) or not (error is None or isinstance(error, dict)):
            raise TypeError("an operation's progress is a whole number and its error an object, or null")
        return cls(id=str(payload["id"]), kind=str(payload["kind"]), vm_uuid=str(payload["vm_uuid"]),
                   vm_name=str(payload["vm_name"]), vm_owner=vm_owner, user=str(payload["user"]),
                   subject=str(payload["subject"]), started_at=datetime.fromisoformat(payload["started_at"]),
                   state=OperationState(payload["state"]), progress=progress, error=error,
                   finished_at=datetime.fromisoformat(finished_at) if finished_at is not None else None,
                   instance_id=str(instance_id) if instance_id is not None else None)

    def payload(self) -> dict[str, Any]:
        """The operation as the API sends it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "vm_uuid": self.vm_uuid,
            "vm_name": self.vm_name,
            "subject": self.subject,
            "user": self.user,
            "state": self.state.value,
            "progress": self.progress,
            "error": self.error,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


Work = Callable[[Operation], Awaitable[None]]


class OperationBoard(Protocol):
    """Where the limen instances on one Redis leave their operations for each other to read."""

    async def post_start(self, operation: Operation) -> None:
        """Leaves ``operation`` as it starts, unless later news of it is there already. Never raises: an
        instance that cannot read it hears of it from its events all the same."""

    async def read(self, operation_id: str) -> Operation | None:
        """The operation as its instance last told of it, or None (REDIS_UNAVAILABLE when the board cannot be
        read)."""


class Operations:
    """The background operations of this process. Use from the event loop only."""

    def __init__(self, *, keep_finished: int = KEEP_FINISHED, keep_seconds: float = KEEP_FINISHED_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._operations: OrderedDict[str, Operation] = OrderedDict()
        # Other instances' operations as their last event told them, with when it was heard (this clock).
        self._heard: OrderedDict[str, tuple[Operation, float]] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._keep_finished = keep_finished
        self._keep_seconds = keep_seconds
        self._clock = clock
        self._closed = False
        self.board: OperationBoard | None = None  # with several instances on one Redis (limen.vm_event_relay)
        # The other instances found alive by the latest sweep, and those found alive once and no longer since.
        self._alive: frozenset[str] = frozenset()
        self._lost: OrderedDict[str, None] = OrderedDict()
        # Whether the others' events are heard now, and the heard operations whose end may have gone unheard.
        self._hearing = True
        self._end_unheard: set[str] = set()

    def running_for(self, vm_uuid: str) -> Operation | None:
        return next((op for op in self._operations.values()
                     if op.vm_uuid == vm_uuid and op.state is OperationState.RUNNING), None)

    def running_for_ident(self, ident: str) -> Operation | None:
        """The running operation of the VM named, or of that UUID (as a request gives it), if any."""
        folded = ident.lower()
        return next((op for op in self._operations.values() if op.state is OperationState.RUNNING
                     and (op.vm_name == ident or op.vm_uuid == folded)), None)

    async def check_idle(self, vm_uuid: str, vm_name: str, busy: ErrorCode) -> None:
        """Returns once no operation of the VM runs here: ``busy`` while one does (VM_MOVING while it moves to
        another host, whatever ``busy`` says), but a deletion of the VM is waited for, and is VM_NOT_FOUND once
        done (a deletion that failed left the VM: the check goes on). Between this return and the caller's
        next await, no operation of the VM can start."""
        while (running := self.running_for(vm_uuid)) is not None:
            if running.kind != VM_DELETION:
                what = f"{running.kind} {running.subject!r}"
                named = f"operation {running.id} ({what})" if running.shown else what  # an id only if it can be polled
                code = ErrorCode.VM_MOVING if running.kind == VM_MIGRATION else busy
                raise LimenError(code, f"{named} still runs on VM {vm_name!r}")
            await running.ended.wait()
            if running.state is OperationState.DONE:
                raise LimenError(ErrorCode.VM_NOT_FOUND, f"VM {vm_name!r} was deleted meanwhile")

    def started_here(self) -> list[Operation]:
        """This instance's operations it still keeps (running or finished), but those never shown."""
        self._forget_old()
        return [op for op in self._operations.values() if op.shown]

    def get(self, operation_id: str) -> Operation | None:
        """This instance's operation (not one never shown), or another's it heard of."""
        self._forget_old()
        local = self._operations.get(operation_id)
        if local is not None:
            return local if local.shown else None
        heard = self._heard.get(operation_id)
        return self._unless_lost(heard[0]) if heard is not None else None

    async def find(self, operation_id: str) -> Operation | None:
        """:meth:`get`, else what another instance left of it on the board; one heard running whose end may
        have gone unheard, as its end on the board once that is there."""
        found = self.get(operation_id)
        if found is None and self.board is not None:
            board_read = await self.board.read(operation_id)
            found = self._unless_lost(board_read) if board_read is not None else None
        elif found is not None and found.state is OperationState.RUNNING and operation_id in self._end_unheard:
            found = await self._end_on_board(found)
        return found

    async def _end_on_board(self, heard: Operation) -> Operation:
        """``heard``, or its end if the board has it (then kept as heard). The board is not asked while it
        cannot be read (a poll would wait for Redis to fail); one that fails leaves ``heard`` as it is."""
        if self.board is None or not self._hearing:
            return heard
        try:
            posted = await self.board.read(heard.id)
        except LimenError:
            return heard
        if posted is None or posted.state is OperationState.RUNNING:  # its end is not there (yet)
            return heard
        self._keep_heard(posted)
        return posted

    def hearing_events(self, hearing: bool) -> None:
        """The other instances' events stopped being heard (Redis down: False), or are heard again (True).
        Any end told in between is lost: each operation heard running is read on the board at its polls from
        now on (while it can be read) until its end is found there or an event of it is heard."""
        self._hearing = hearing
        if not hearing:
            self._end_unheard.update(operation_id for operation_id, (operation, _) in self._heard.items()
                                     if operation.state is OperationState.RUNNING)

    def instances_alive(self, alive: frozenset[str]) -> None:
        """The limen instances a sweep found alive now. One found alive before and not now is lost (it cannot
        tell the end of its operations any more) until it is found alive again (a stall another instance took
        for a loss). One never found alive here is never judged: its operations are kept as they were told."""
        for instance_id in self._alive - alive:
            self._lost[instance_id] = None
            self._lost.move_to_end(instance_id)
        for instance_id in alive:
            self._lost.pop(instance_id, None)
        while len(self._lost) > KEEP_LOST_INSTANCES:
            self._lost.popitem(last=False)
        self._alive = alive

    def _unless_lost(self, operation: Operation) -> Operation:
        """``operation`` as it is told, or failed with SERVER_LOST if it runs on an instance that was lost."""
        if operation.state is not OperationState.RUNNING or operation.instance_id not in self._lost:
            return operation
        assert operation.instance_id is not None
        lost = LimenError(ErrorCode.SERVER_LOST,
                          f"limen instance {operation.instance_id[:12]} running it was lost; whether the "
                          f"{operation.kind} was carried out is unknown: the VM's {operation.kind} list shows it")
        return replace(operation, state=OperationState.FAILED, error=lost.to_dict())

    async def post_start(self, operation: Operation) -> None:
        """Leaves the operation just :meth:`start`-ed on the board, so that every instance finds it from the
        moment its start is answered. Call it before answering."""
        if self.board is not None:
            await self.board.post_start(operation)

    def heard(self, payload: dict[str, Any], vm_owner: str | None, instance_id: str | None = None) -> None:
        """Records another instance's (``instance_id``, when known) operation as its latest event gives it
        (``payload``, as :meth:`Operation.payload` makes it; ValueError, KeyError or TypeError when it is not
        one), for :meth:`get`. It holds no VM here (:meth:`check_idle` does not see it): the instance running it refuses
        a second operation itself, and an end that never arrives must not hold the VM here."""
        self._keep_heard(Operation.of_payload(payload, vm_owner, instance_id))

    def _keep_heard(self, operation: Operation) -> None:
        self._heard.pop(operation.id, None)  # the newest news last: the oldest are forgotten first
        self._heard[operation.id] = (operation, self._clock())
        self._end_unheard.discard(operation.id)  # news of it came: its end will too
        self._forget_old()

    async def start(self, *, kind: str, vm_uuid: str, vm_name: str, vm_owner: str | None, user: str, subject: str,
                    work: Work, busy: ErrorCode, on_end: Work | None = None) -> Operation:
        """Runs ``work(operation)`` in a task and returns the operation, once :meth:`check_idle` lets it start.

        ``busy`` is the error when an operation of the VM still runs. ``work`` ends the operation by
        returning (done) or raising (failed: a LimenError's body; anything else is INTERNAL_ERROR).
        ``on_end(operation)`` runs once the operation has ended here (not when limen stops it): an end announced
        from there is never heard before :meth:`get` answers it (a client that heard "done" polled "running").
        """
        operation = await self._begin(kind=kind, vm_uuid=vm_uuid, vm_name=vm_name, vm_owner=vm_owner, user=user,
                                      subject=subject, busy=busy)
        task = asyncio.create_task(self._run(operation, work, on_end), name=f"operation-{operation.id}")
        self._tasks[operation.id] = task
        task.add_done_callback(lambda _task: self._tasks.pop(operation.id, None))
        return operation

    @asynccontextmanager
    async def running(self, *, kind: str, vm_uuid: str, vm_name: str, vm_owner: str | None, user: str,
                      subject: str, busy: ErrorCode) -> AsyncIterator[Operation]:
        """The caller's own work, inside the block, as an operation of the VM (a VM's deletion, a revert: its
        request answers when it ends). It starts as :meth:`start` does and ends with the block, failed by what
        the block raises (raised on); it is never shown, and forgotten then, as nobody was given its id."""
        operation = await self._begin(kind=kind, vm_uuid=vm_uuid, vm_name=vm_name, vm_owner=vm_owner, user=user,
                                      subject=subject, busy=busy, shown=False)
        try:
            yield operation
        except BaseException as exc:
            self._end(operation, exc)
            raise
        else:
            self._end(operation, None)
        finally:
            del self._operations[operation.id]

    async def _begin(self, *, kind: str, vm_uuid: str, vm_name: str, vm_owner: str | None, user: str, subject: str,
                     busy: ErrorCode, shown: bool = True) -> Operation:
        await self.check_idle(vm_uuid, vm_name, busy)
        # No await from the check to the registration: no other operation of the VM can start in between.
        if self._closed:
            raise LimenError(ErrorCode.SERVER_SHUTDOWN, end_details.SERVER_SHUTDOWN)
        self._forget_old()
        operation = Operation(id=secrets.token_hex(8), kind=kind, vm_uuid=vm_uuid, vm_name=vm_name,
                              vm_owner=vm_owner, user=user, subject=subject, started_at=datetime.now(UTC),
                              shown=shown)
        self._operations[operation.id] = operation
        return operation

    async def _run(self, operation: Operation, work: Work, on_end: Work | None) -> None:
        try:
            await work(operation)
        except asyncio.CancelledError as exc:
            self._end(operation, exc)
            raise
        except Exception as exc:
            if not isinstance(exc, LimenError):  # a bug: the operation says so instead of hanging in "running"
                log.exception("operation %s failed", operation.id, extra={"event": "operation_failed"})
            self._end(operation, exc)
        else:
            self._end(operation, None)
        if on_end is not None and not self._closed:  # once limen stops, its event streams end anyway
            await on_end(operation)

    def _end(self, operation: Operation, failure: BaseException | None) -> None:
        """Ends the operation as done, or failed with the error body of ``failure``."""
        if failure is None:
            operation.move_to(OperationState.DONE, self._clock())
            return
        if isinstance(failure, LimenError):
            error = failure
        elif isinstance(failure, asyncio.CancelledError):
            error = LimenError(ErrorCode.SERVER_SHUTDOWN, "limen stopped before it ended")
        else:
            error = LimenError(ErrorCode.INTERNAL_ERROR, type(failure).__name__)
        operation.error = error.to_dict()
        operation.move_to(OperationState.FAILED, self._clock())

    def _forget_old(self) -> None:
        now = self._clock()
        finished = [op for op in self._operations.values() if op.finished_monotonic is not None]
        excess = len(finished) - self._keep_finished
        for op in finished:  # oldest first: the dict keeps the order they started in
            assert op.finished_monotonic is not None
            if excess > 0 or now - op.finished_monotonic > self._keep_seconds:
                del self._operations[op.id]
                excess -= 1
        excess = len(self._heard) - self._keep_finished
        for operation_id, (op, heard_at) in list(self._heard.items()):
            kept_for = self._keep_seconds if op.state is not OperationState.RUNNING else KEEP_HEARD_RUNNING_SECONDS
            if excess > 0 or now - heard_at > kept_for:
                del self._heard[operation_id]
                self._end_unheard.discard(operation_id)
                excess -= 1

    async def close(self) -> None:
        """Cancels what still runs (the hypervisor may finish a call already made) and waits for it."""
        self._closed = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
