"""``Database.ping`` against a database that hangs (stopped, not refusing): a TimeoutError within its bound,
and nothing left that the caller's event loop waits for when it closes. ``limen doctor --timeout 20`` with a
hung PostgreSQL printed nothing and never ended: ``asyncio.run`` joined the default executor's thread that
was still connecting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from limen.db import Database
from limen.doctor import CheckFailed, Context, check_database
from limen.settings import Settings


def test_a_database_that_hangs_leaves_nothing_for_the_closing_loop_to_wait_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    hung = threading.Event()
    monkeypatch.setattr(database, "check_answers", hung.wait)  # a connection's start that is never answered
    outcomes: list[str] = []

    def doctor() -> None:  # as `limen doctor` runs its checks: one asyncio.run, closed at the end
        try:
            asyncio.run(database.ping(0.1))
        except TimeoutError:
            outcomes.append("no answer")

    runner = threading.Thread(target=doctor, daemon=True)
    runner.start()
    runner.join(30)  # a bound on the test itself, not a measurement
    try:
        assert not runner.is_alive(), "closing the loop waited for the database that hangs"
        assert outcomes == ["no answer"]
    finally:
        hung.set()
        runner.join(10)
        database.close()


async def test_the_doctor_waits_for_the_database_its_own_timeout(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``limen doctor`` asks the database within LIMEN_DATABASE_TIMEOUT, as the server's requests wait for it,
    not within libvirt's bound."""
    waited: list[float] = []

    async def no_answer(_database: Database, timeout: float) -> None:
        waited.append(timeout)
        raise TimeoutError

    settings = make_settings(libvirt_timeout=1, database_timeout=7)
    Database(settings.db_url).close()  # made (a database the doctor finds none of is not asked)
    monkeypatch.setattr(Database, "ping", no_answer)
    context = Context(settings=settings, hypervisor=cast(Any, None), vm_id=None, server_url="http://127.0.0.1:1")
    with pytest.raises(CheckFailed) as failed:
        await check_database(context)
    assert waited == [7]
    assert "7 s" in str(failed.value.detail)


async def test_a_pool_whose_every_connection_is_held_is_a_timeout_too(tmp_path: Path) -> None:
    """On PostgreSQL the pool's pool_timeout is the database timeout, the ping's own bound: with every connection
    held by calls the database does not answer, /readyz said SQLAlchemy's "QueuePool limit ... reached" or "no
    answer", whichever bound ended first."""
    from sqlalchemy import create_engine

    database = Database(f"sqlite:///{tmp_path / 'limen.db'}")
    database.engine.dispose()
    database.engine = create_engine(database.url, pool_size=1, max_overflow=0, pool_timeout=0.1)  # a small pool
    try:
        # its one connection held; the pool's bound ends first here, always
        with database.engine.connect(), pytest.raises(TimeoutError, match=r"no connection to .* came free in time"):
            await database.ping(10)
    finally:
        database.close()


async def test_the_doctor_makes_no_database_where_there_is_none(make_settings: Callable[..., Settings]) -> None:
    """Asked, it made an empty limen.db and said 'answers': a backup then took that file for limen's."""
    settings = make_settings()
    context = Context(settings=settings, hypervisor=cast(Any, None), vm_id=None, server_url="http://127.0.0.1:1")
    said = await check_database(context)
    assert "no database at" in str(said) and "yet" in str(said)
    assert not (settings.data_dir / "limen.db").exists()
