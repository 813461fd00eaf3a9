"""The PostgreSQL side of :mod:`limen.backup`: ``pg_dump`` (custom format) makes the copy, ``pg_restore``
turns it back into SQL and ``psql`` runs that in one transaction, after dropping the ``public`` schema, so a
failed restore leaves the database as it was.

The programs get the database as a libpq URI without its secrets, which never go on a command line that ``ps``
shows: the password (of the user-info part or ``?password=``) goes in ``PGPASSWORD``, the environment of the
child only; an ``?sslpassword=`` (libpq reads no variable for it) in a service file of the child's own, private
to limen's user and removed after.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from limen.private_files import create_private_file

# A dump of a big audit trail takes a while; a server that does not answer ends the command.
DUMP_TIMEOUT = 3600.0
_ALEMBIC_ROW = re.compile(r"^COPY [\w.\"]*alembic_version \(version_num\) FROM stdin;\n([^\n\\]*)\n", re.M)


class PostgresToolError(Exception):
    """A PostgreSQL program is missing or failed; the message says which and its own words."""


def is_postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


@contextmanager
def libpq_arguments(url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The URI libpq's programs take (SQLAlchemy's driver suffix and every secret dropped) and the environment
    that hands them the secrets; the service file, if one was needed, is removed when the block ends."""
    parsed: URL = make_url(url)
    password = parsed.query.get("password")
    ssl_password = parsed.query.get("sslpassword")
    env = {**os.environ}
    if parsed.password is not None:
        password = str(parsed.password)
    if isinstance(password, str):
        env["PGPASSWORD"] = password
    # URL.set() leaves a part alone when it is given None: _replace is what drops the password.
    uri = (parsed.difference_update_query(["password", "sslpassword"])
           ._replace(drivername="postgresql", password=None).render_as_string(hide_password=False))
    if not isinstance(ssl_password, str):
        yield uri, env
        return
    if "\n" in ssl_password or "\r" in ssl_password:
        raise PostgresToolError("the database URL's sslpassword holds a line break: libpq cannot be handed it")
    with tempfile.TemporaryDirectory(prefix="limen-libpq-") as private:
        service_file = Path(private) / "pg_service.conf"
        service_file.touch(mode=0o600)
        service_file.write_text(f"[limen]\nsslpassword={ssl_password}\n")
        yield uri, {**env, "PGSERVICEFILE": str(service_file), "PGSERVICE": "limen"}


def _run(command: list[str], env: dict[str, str], what: str, **more: object) -> subprocess.CompletedProcess[bytes]:
    program = shutil.which(command[0])
    if program is None:
        raise PostgresToolError(f"{command[0]} is not installed (Debian: apt install postgresql-client)")
    try:
        done = subprocess.run([program, *command[1:]], env=env, capture_output=True, timeout=DUMP_TIMEOUT,
                              check=False, **more)  # type: ignore[call-overload]
    except subprocess.TimeoutExpired:
        raise PostgresToolError(f"{what}: {command[0]} did not finish within {DUMP_TIMEOUT:g} s") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise PostgresToolError(f"{what}: {command[0]}: {message}")
    result: subprocess.CompletedProcess[bytes] = done
    return result


def dump(url: str, out: Path) -> None:
    """One consistent snapshot of the database (pg_dump runs in one repeatable-read transaction) into ``out``,
    owner-only (0600) from its first byte: pg_dump writes into the file made here (and keeps its mode), where
    the one it creates itself had the umask's mode, 0644 as a rule, every password hash in it readable by all
    local users until the dump ended."""
    create_private_file(out)
    with libpq_arguments(url) as (uri, env):
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-acl", "--file", str(out), "--dbname", uri],
             env, "cannot dump the database")


def revision_in(dump_file: Path) -> str | None:
    """The Alembic revision the dump holds (its ``alembic_version`` row); also proves the dump readable."""
    done = _run(["pg_restore", "--data-only", "--table=alembic_version", "--file=-", str(dump_file)],
                dict(os.environ), "the backup's database dump is damaged")
    match = _ALEMBIC_ROW.search(done.stdout.decode(errors="replace"))
    return match.group(1) if match else None


def replace_with(url: str, dump_file: Path, work: Path) -> None:
    """Replaces everything in the database's ``public`` schema with the dump, all or nothing."""
    script = work / "restore.sql"
    _run(["pg_restore", "--no-owner", "--no-acl", f"--file={script}", str(dump_file)], dict(os.environ),
         "the backup's database dump is damaged")
    with libpq_arguments(url) as (uri, env):
        _run(["psql", "--no-psqlrc", "--quiet", "--single-transaction", "--set=ON_ERROR_STOP=1", "--dbname", uri,
              "--command=DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;", f"--file={script}"],
             env, "cannot restore the database (it is left as it was)")
