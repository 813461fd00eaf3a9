"""What limen hands PostgreSQL's programs for a backup or a restore: a URI that ``ps`` may show, with every
secret of the database URL moved to the child's environment or a private service file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from limen.backup_postgres import PostgresToolError, dump, libpq_arguments


@pytest.mark.parametrize(
    ("url", "uri", "password"),
    [
        ("postgresql+psycopg://limen:hun%40ter2@db.example:5433/limen?sslmode=require",
         "postgresql://limen@db.example:5433/limen?sslmode=require", "hun@ter2"),
        ("postgresql+psycopg://limen@db.example/limen?password=s3cret&application_name=limen",
         "postgresql://limen@db.example/limen?application_name=limen", "s3cret"),
        ("postgresql+psycopg:///limen?host=/run/postgresql", "postgresql:///limen?host=%2Frun%2Fpostgresql", None),
    ],
)
def test_the_uri_on_the_command_line_holds_no_password(url: str, uri: str, password: str | None) -> None:
    with libpq_arguments(url) as (shown, env):
        assert shown == uri
        assert env.get("PGPASSWORD") == password
        assert "PGSERVICEFILE" not in env


def test_an_ssl_key_password_goes_in_a_private_service_file_removed_after() -> None:
    url = "postgresql+psycopg://limen:pw@db.example/limen?sslpassword=k3y%3Dx&sslmode=verify-full"
    with libpq_arguments(url) as (shown, env):
        assert shown == "postgresql://limen@db.example/limen?sslmode=verify-full"
        service_file = Path(env["PGSERVICEFILE"])
        assert env["PGSERVICE"] == "limen" and env["PGPASSWORD"] == "pw"
        assert service_file.read_text() == "[limen]\nsslpassword=k3y=x\n"
        assert stat.S_IMODE(service_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(service_file.parent.stat().st_mode) == 0o700
    assert not service_file.exists() and not service_file.parent.exists()


def test_a_line_break_in_the_ssl_key_password_is_refused() -> None:
    with pytest.raises(PostgresToolError, match="line break"), \
            libpq_arguments("postgresql+psycopg://limen@db/limen?sslpassword=a%0A%5Bother%5D"):
        pass


def test_the_environment_is_a_copy_for_the_child() -> None:
    with libpq_arguments("postgresql+psycopg://limen:pw@db/limen") as (_uri, env):
        env["PGPASSWORD"] = "changed"
    assert os.environ.get("PGPASSWORD") != "changed"


def test_a_dump_is_owner_only_while_pg_dump_writes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pg_dump creates its --file with the umask's mode: a backup's dump and a restore's copy of the replaced
    database (limen-before-restore-<time>.pgdump, a name anyone can guess), every password hash in them, were
    0644 under the usual umask 022 until the dump had ended."""
    programs = tmp_path / "bin"
    programs.mkdir()
    fake = programs / "pg_dump"  # writes its --file as pg_dump does, and notes the file's mode meanwhile
    fake.write_text('#!/bin/sh\nwhile [ "$1" != --file ]; do shift; done\nprintf PGDMP > "$2"\n'
                    'stat -c %a "$2" > "$2.mode"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{programs}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "limen.pgdump"
    previous = os.umask(0o022)
    try:
        dump("postgresql+psycopg://limen@db.example/limen", out)
    finally:
        os.umask(previous)
    assert out.read_bytes() == b"PGDMP"
    assert Path(f"{out}.mode").read_text().strip() == "600"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
