"""The libvirt connection: every blocking call in a worker thread, bounded by a timeout, errors typed.

libvirt's Python binding blocks. Each call goes to a small thread pool and is awaited with
``settings.libvirt_timeout``; a call past it raises :class:`HypervisorUnavailable` and the connection is
dropped, so the next call opens a fresh one (that is how limen recovers when libvirtd comes back).
A hung call keeps its thread until the host answers or TCP gives up on it (no libvirt keepalive: see
:meth:`LibvirtConnection._connection`), which is why each host has a pool of its own, small but not tiny,
and why no caller ever waits on it without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import libvirt

from limen import end_details
from limen.errors import ErrorCode, HypervisorUnavailable, LimenError

T = TypeVar("T")
log = logging.getLogger("limen.hypervisor")

# libvirt errors that mean "the daemon or the connection is gone", not "this request was wrong".
_CONNECTION_ERRORS = frozenset(
    {
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_INVALID_CONN,
        libvirt.VIR_ERR_SYSTEM_ERROR,
        libvirt.VIR_ERR_RPC,
        libvirt.VIR_ERR_AUTH_FAILED,
        libvirt.VIR_ERR_AUTH_UNAVAILABLE,
        libvirt.VIR_ERR_AUTH_CANCELLED,
        getattr(libvirt, "VIR_ERR_NO_SERVER", -1),
        getattr(libvirt, "VIR_ERR_AGENT_UNRESPONSIVE", -1),
    }
)
_NOT_FOUND_ERRORS = frozenset({libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_VOL})
_OPERATION_INVALID = frozenset({libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_OPERATION_DENIED})


def _silence_libvirt_stderr() -> None:
    """libvirt prints every error to stderr by default; limen reports them itself."""

    def ignore(_ctx: object, _err: object) -> None:
        return None

    libvirt.registerErrorHandler(ignore, None)


_silence_libvirt_stderr()


def is_connection_error(exc: libvirt.libvirtError) -> bool:
    # Whatever the RPC layer itself reports is the connection's: a socket closed under a call comes as
    # VIR_ERR_INTERNAL_ERROR "client socket is closed" from VIR_FROM_RPC, not as one of the codes above.
    return exc.get_error_code() in _CONNECTION_ERRORS or exc.get_error_domain() == libvirt.VIR_FROM_RPC


def classify(exc: libvirt.libvirtError, *, when: str) -> LimenError:
    """Maps a libvirt error to limen's typed errors. ``when`` names the operation, for the details."""
    code = exc.get_error_code()
    message = exc.get_error_message() or str(exc)
    details = f"{when}: {message}"
    if is_connection_error(exc):
        return HypervisorUnavailable(details)
    if code in _NOT_FOUND_ERRORS:
        return LimenError(ErrorCode.VM_NOT_FOUND, details)
    if code == libvirt.VIR_ERR_DOM_EXIST:
        return LimenError(ErrorCode.VM_ALREADY_EXISTS, details)
    if code == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:  # deleted by another request since it was looked up
        return LimenError(ErrorCode.SNAPSHOT_NOT_FOUND, details)
    if code in _OPERATION_INVALID:
        return LimenError(ErrorCode.VM_OPERATION_FAILED, details)
    if code in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_CONFIG_UNSUPPORTED):
        return LimenError(ErrorCode.INVALID_REQUEST, details)
    return LimenError(ErrorCode.VM_OPERATION_FAILED, details)


_thread_host = threading.local()


class _CallsUnderWay:
    """How many libvirt calls of this process's connections are running in their worker threads now.

    A call whose caller stopped waiting (its timeout) may never return: libvirt waits on a host that accepted
    the connection and says nothing. Its worker thread keeps the interpreter from exiting (Python joins a
    pool's threads at exit), so a command line that has said its error would never end; it asks
    :func:`calls_under_way` and leaves without that join."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __enter__(self) -> None:
        with self._lock:
            self.count += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self.count -= 1


_calls_under_way = _CallsUnderWay()


def calls_under_way() -> int:
    """How many libvirt calls are still running in worker threads (see :class:`_CallsUnderWay`)."""
    return _calls_under_way.count


def _serve_host(host: str) -> None:
    _thread_host.name = host


def current_host() -> str:
    """The name of the host whose connection runs the calling worker thread ("" outside one)."""
    return getattr(_thread_host, "name", "")


class LibvirtConnection:
    """One lazily opened libvirt connection, shared by every caller, re-opened after it breaks."""

    def __init__(self, uri: str, timeout: float, *, max_threads: int = 8, host: str = "") -> None:
        self.uri = uri
        self.timeout = timeout
        self.host = host
        # Its own threads, so a hung host holds only its own; each knows its host (:func:`current_host`).
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix=f"libvirt-{host}",
                                            initializer=_serve_host, initargs=(host,))
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()
        self._on_open: list[Callable[[libvirt.virConnect], Callable[[], None] | None]] = []
        # Undo what the on_open callbacks did to the current connection (e.g. event callbacks), so that
        # closing it really releases its socket.
        self._cleanups: list[Callable[[], None]] = []
        # Told of every call: (operation, seconds, error code name or None). Used for metrics.
        self.observers: list[Callable[[str, float, str | None], None]] = []
        self._closed = False
        # Calls running on each connection (by id), and connections to release once their last call returns:
        # closing a virConnect while another thread waits in a call on it (a host that hangs, then answers)
        # freed what that call came back to, and the process died in libvirt (SIGSEGV).
        self._users: dict[int, int] = {}
        self._release_after: dict[int, tuple[libvirt.virConnect, list[Callable[[], None]]]] = {}
        self._users_lock = threading.Lock()

    def on_open(self, callback: Callable[[libvirt.virConnect], Callable[[], None] | None]) -> None:
        """Runs ``callback`` (in a worker thread) on every newly opened connection, e.g. to register events.

        It may return a function that undoes its work; that runs before the connection is closed.
        """
        self._on_open.append(callback)

    def _connection(self) -> libvirt.virConnect:
        """Returns the open connection, opening it first if needed. Runs in a worker thread."""
        with self._lock:
            if self._closed:  # a call that passed _call's check before close(): no new connection now
                raise HypervisorUnavailable(end_details.SERVER_SHUTDOWN)
            if self._conn is not None:
                try:
                    if self._conn.isAlive() == 1:
                        return self._entered(self._conn)
                except libvirt.libvirtError:
                    pass
                self._drop_locked()
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                # Any failure to open is the hypervisor's absence (no such driver, no system bus, a refused
                # socket), not a VM operation refused: it was said as VM_OPERATION_FAILED unless it was a socket.
                raise HypervisorUnavailable(f"cannot open {self.uri}: {exc.get_error_message()}") from None
            if conn is None:  # older bindings return None instead of raising
                raise HypervisorUnavailable(f"cannot open {self.uri}")
            if self._closed:
                # close() ran while this was opening (a slow or busy daemon): nothing would ever close it,
                # and its socket would outlive the server's hypervisor.
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
                raise HypervisorUnavailable(end_details.SERVER_SHUTDOWN)
            # No client keepalive (libvirt's remote connections have none unless asked): with it, a host that
            # hung for longer than its window (5 s x 3) and then answered again made libvirt 9.0's client
            # quit a call's freed GMainLoop ("g_main_loop_quit: assertion ... failed") and, in limen serve,
            # die of SIGSEGV in the stats sampler's getAllDomainStats. limen bounds every call itself (the
            # timeout above its thread, the host marked unavailable, this connection dropped); a call left
            # on a host that hangs keeps its thread until the host answers or TCP gives up on it.
            self._cleanups = [cleanup for callback in self._on_open if (cleanup := callback(conn)) is not None]
            self._conn = conn
            log.info("libvirt connection opened", extra={"event": "libvirt_open", "uri": self.uri})
            return self._entered(conn)

    def _entered(self, conn: libvirt.virConnect) -> libvirt.virConnect:
        """``conn``, counted as used by one more call until :meth:`_left` (under ``_lock``: not released meanwhile)."""
        with self._users_lock:
            self._users[id(conn)] = self._users.get(id(conn), 0) + 1
        return conn

    def _left(self, conn: libvirt.virConnect) -> None:
        """A call on ``conn`` returned; the last one releases it if it was let go meanwhile."""
        with self._users_lock:
            left = self._users[id(conn)] - 1
            if left:
                self._users[id(conn)] = left
                return
            del self._users[id(conn)]
            waiting = self._release_after.pop(id(conn), None)
        if waiting is not None:
            self._release_now(*waiting)

    def _drop_locked(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._release(conn)

    def _release(self, conn: libvirt.virConnect) -> None:
        """Undoes the on_open callbacks' work and closes ``conn``, now or, while calls run on it, after the
        last one (a call hung on a host ends with the host's answer or TCP's giving up)."""
        cleanups, self._cleanups = self._cleanups, []
        with self._users_lock:
            if self._users.get(id(conn)):
                self._release_after[id(conn)] = (conn, cleanups)
                return
        self._release_now(conn, cleanups)

    @staticmethod
    def _release_now(conn: libvirt.virConnect, cleanups: list[Callable[[], None]]) -> None:
        for cleanup in cleanups:
            with contextlib.suppress(libvirt.libvirtError):
                cleanup()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()

    def drop(self) -> None:
        """Forgets the current connection so the next call opens a new one. Never blocks for long."""
        # A hung call may hold the lock; dropping without it only loses a reference, which is safe.
        acquired = self._lock.acquire(timeout=0.1)
        try:
            self._conn = None
        finally:
            if acquired:
                self._lock.release()

    async def call(self, operation: str, func: Callable[[libvirt.virConnect], T], *,
                   subject: str = "", timeout: float | None = None) -> T:
        """Runs ``func(conn)`` in a worker thread within the timeout; libvirt errors become LimenErrors.

        ``operation`` is a stable name (``get_vm``), ``subject`` what it acts on; both go in error details.
        """
        began = time.monotonic()
        failure: str | None = None
        try:
            return await self._call(f"{operation} {subject}".strip(), func, timeout)
        except LimenError as exc:
            failure = exc.code.name
            if isinstance(exc, HypervisorUnavailable) and exc.host is None and not self._closed:
                # Whatever made it (a timeout, a lost socket, an open refused, the call's own), this host did
                # not answer: the error names it, as the hosts API does. Not when limen itself is stopping.
                exc.host = self.host or None
            raise
        finally:
            elapsed = time.monotonic() - began
            for observe in self.observers:
                observe(operation, elapsed, failure)

    async def _call(self, operation: str, func: Callable[[libvirt.virConnect], T], timeout: float | None) -> T:
        if self._closed:
            raise HypervisorUnavailable(f"{operation}: limen is shutting down")
        loop = asyncio.get_running_loop()

        def run() -> T:
            with _calls_under_way:
                conn = self._connection()
                try:
                    return func(conn)
                finally:
                    self._left(conn)

        limit = self.timeout if timeout is None else timeout
        future = loop.run_in_executor(self._executor, run)
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the answer when a cancel meets it,
            # and the cancelled caller (a console's look-up at its end) would go on as if never cancelled.
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            self.drop()
            raise HypervisorUnavailable(
                f"{operation}: no answer from libvirt at {self.uri} within {limit:g} s"
            ) from None
        except libvirt.libvirtError as exc:
            if is_connection_error(exc):
                self.drop()
            raise classify(exc, when=operation) from None

    async def close(self) -> None:
        self._closed = True  # from now on no call opens a connection (_call, _connection)
        release: Callable[[], None] | None
        if self._lock.acquire(blocking=False):
            # No connection is being opened: the one set now is the last, if any.
            try:
                conn, self._conn = self._conn, None
            finally:
                self._lock.release()
            release = None if conn is None else functools.partial(self._release, conn)
        else:
            release = self._release_when_opened
        if release is not None:
            loop = asyncio.get_running_loop()
            with contextlib.suppress(TimeoutError, libvirt.libvirtError):
                async with asyncio.timeout(2):
                    await loop.run_in_executor(self._executor, release)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _release_when_opened(self) -> None:
        """close()'s work while a worker holds the lock (opening a connection, or checking the current one):
        once it is done the connection is either set (and released here) or closed by that worker, which saw
        ``_closed``. A hung opening holds the lock until libvirt gives up; after a second this drops what is
        set without it."""
        acquired = self._lock.acquire(timeout=1.0)
        try:
            self._drop_locked()
        finally:
            if acquired:
                self._lock.release()

