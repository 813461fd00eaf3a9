"""A PostgreSQL whose connections start and are never answered (a hung server: its kernel still accepts):
``Database.ping`` says TimeoutError whichever bound ends first, its own or the new connection's
(``connect_timeout``, as long as the server's deadline, at least libpq's 2 s). /readyz and ``limen doctor``
read a TimeoutError as "no answer within N s"; the driver's ConnectionTimeout, arriving first in a CI run,
made /readyz say the driver's words instead. About 2 s: libpq's shortest connect_timeout."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from limen.db import Database

# No database of the run: a socket that listens and never answers stands for the hung server.
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]


def test_a_connection_start_that_times_out_is_no_answer() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        database = Database(f"postgresql+psycopg://limen:secret@127.0.0.1:{port}/limen", timeout=1)
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError) as raised:
                asyncio.run(database.ping(30))  # far past connect_timeout: the connection's own bound ends first
            assert time.monotonic() - started < 30
            assert "secret" not in str(raised.value) and f"127.0.0.1:{port}" in str(raised.value)
        finally:
            database.close()
