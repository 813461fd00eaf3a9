"""Logging: JSON lines to ``<log_dir>/limen.log`` (rotated by size) and readable lines on a terminal.

Without a terminal (a service), the file is the only copy; stderr gets JSON only if the file cannot be
written. The log dir is ``0700`` and every log file, rotated ones too, ``0600`` (:mod:`limen.private_files`):
the lines name users, clients and VMs.

Code logs with the standard library and passes structured fields in ``extra`` (always an ``event``
name); this module turns each record into one JSON object with those fields.
"""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from limen.private_files import Tightened, open_private_append, private_dir, private_file
from limen.settings import Settings

LOG_FILE_NAME = "limen.log"
log = logging.getLogger("limen.logs")
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(record_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in record_fields(record).items())
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        return f"{line}  {fields}" if fields else line


# The id of the HTTP request being served (set by limen.api.middleware), so that every line logged while
# serving it carries the id the client got back in X-Request-ID.
request_id_var: ContextVar[str | None] = ContextVar("limen_request_id", default=None)


def current_request_id() -> str | None:
    return request_id_var.get()


class RequestIdFilter(logging.Filter):
    """Adds the current HTTP request's id to every record logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = current_request_id()
            if request_id is not None:
                record.request_id = request_id
        return True


class RotatingJsonLines(logging.handlers.RotatingFileHandler):
    """Rotates by size like its base, but formats each record once and counts the bytes it wrote,
    instead of formatting twice and asking the file system for the size on every line (the console
    logs a line per stage, on the path whose latency users feel)."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self._written = path.stat().st_size if path.exists() else 0

    def _open(self) -> io.TextIOWrapper:
        # The base opens with the process's umask; a new log file (also after each rollover) is 0600.
        return open_private_append(Path(self.baseFilename), self.encoding or "utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            if self.maxBytes and self._written and self._written + len(line) > self.maxBytes:
                self.doRollover()
                self._written = 0
            if self.stream is None:  # closed by a rollover that failed to reopen; try again
                self.stream = self._open()
            self.stream.write(line)
            self.stream.flush()
            self._written += len(line)
        except Exception:
            self.handleError(record)


def _json_file_handler(settings: Settings) -> tuple[RotatingJsonLines, list[Tightened]]:
    """The handler of ``<log_dir>/limen.log`` (the dir made private, the files tightened), with what was
    tightened; OSError when it cannot be written."""
    tightened: list[Tightened] = list(filter(None, [private_dir(settings.log_dir)]))
    tightened += filter(None, map(private_file, sorted(settings.log_dir.glob(f"{LOG_FILE_NAME}*"))))
    handler = RotatingJsonLines(
        settings.log_dir / LOG_FILE_NAME, max_bytes=settings.log_max_bytes, backups=settings.log_backups
    )
    handler.setFormatter(JsonFormatter())
    # On the handlers: a logger's own filters do not see records of its child loggers.
    handler.addFilter(RequestIdFilter())
    return handler, tightened


def configure_logging(settings: Settings) -> Path | None:
    """Installs limen's handlers on the ``limen`` logger. Returns the log file path, if writable."""
    logger = logging.getLogger("limen")
    logger.setLevel(settings.log_level.upper())
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    log_file: Path | None = settings.log_dir / LOG_FILE_NAME
    tightened: list[Tightened] = []
    try:
        file_handler, tightened = _json_file_handler(settings)
        logger.addHandler(file_handler)
    except OSError as exc:
        print(f"limen: cannot write logs to {log_file}: {exc}", file=sys.stderr)
        log_file = None
    # A person at a terminal reads along; otherwise the file has it all, unless it cannot be written.
    if sys.stderr.isatty() or log_file is None:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(ConsoleFormatter() if sys.stderr.isatty() else JsonFormatter())
        stream.addFilter(RequestIdFilter())
        logger.addHandler(stream)
    for change in tightened:
        log.warning("log file or directory was readable by others; made owner-only", extra=change.log_fields())
    return log_file


@contextmanager
def logging_to_file(settings: Settings) -> Iterator[None]:
    """For one command that must leave a record an operator finds later (``limen restore``): the ``limen``
    loggers also write to ``limen.log``, beside the server's lines, while the block runs; the terminal gets
    the command's own words, not these lines. The logger is put back as it was after (tests run commands in
    their own process), and files that a command run as root made or rotated are given to the log dir's owner:
    root's 0600 ``limen.log`` was one the service could not write to. A log that cannot be written is said
    on stderr and the command goes on."""
    logger = logging.getLogger("limen")
    try:
        handler, tightened = _json_file_handler(settings)
    except OSError as exc:
        print(f"limen: cannot write logs to {settings.log_dir / LOG_FILE_NAME}: {exc}", file=sys.stderr)
        yield
        return
    level = logger.level
    handler.setLevel(settings.log_level.upper())
    logger.setLevel(min(logger.getEffectiveLevel(), handler.level))
    logger.addHandler(handler)
    try:
        for change in tightened:
            log.warning("log file or directory was readable by others; made owner-only",
                        extra=change.log_fields())
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)
        _give_to_log_dir_owner(settings.log_dir)


def _give_to_log_dir_owner(log_dir: Path) -> None:
    if os.getuid() != 0:
        return
    owner = log_dir.stat()
    for path in log_dir.glob(f"{LOG_FILE_NAME}*"):
        if (path.stat().st_uid, path.stat().st_gid) != (owner.st_uid, owner.st_gid):
            os.chown(path, owner.st_uid, owner.st_gid)
