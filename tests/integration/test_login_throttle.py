"""The sign-in throttle of a running ``limen serve``: parallel attempts, blocks per address, growing
blocks, unlocking from the command line while it runs, and two instances sharing the counts in Redis.

Addresses are simulated with X-Forwarded-For: the servers believe it from loopback
(LIMEN_TRUSTED_PROXIES=127.0.0.0/8). Users are made through the API, so their passwords are hashed
with the production argon2 parameters: the await across a real password check is what the attempts race.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, select

from limen.db import Database
from limen.db.models import LoginThrottle
from tests.support.access import redis_server
from tests.support.databases import cli_env, database_url_for
from tests.support.server import LIMEN_BIN, LimenProcess

pytestmark = pytest.mark.integration

USER, PASSWORD = "Ünïcode-Sëc 🙂", "the right password"
TRUSTED = {"LIMEN_TRUSTED_PROXIES": "127.0.0.0/8"}


def make_user(server: LimenProcess, name: str = USER, password: str = PASSWORD) -> None:
    made = httpx.post(f"{server.base_url}/api/users", json={"name": name, "password": password},
                      headers=server.auth_headers, timeout=20)
    assert made.status_code == 201, made.text


def login(server: LimenProcess, address: str, password: str, name: str = USER) -> httpx.Response:
    return httpx.post(f"{server.base_url}/api/login", json={"name": name, "password": password},
                      headers={"X-Forwarded-For": address}, timeout=30)


def refusal(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "TOO_MANY_ATTEMPTS"
    assert int(response.headers["Retry-After"]) == body["retry_after"] >= 1
    retry_after: int = body["retry_after"]
    return retry_after


def assert_block_left(block: int, failed_at: float, retry_after: int) -> None:
    """A refusal's Retry-After is what is left of the block, in whole seconds rounded up: ``block`` itself,
    less the time since the failure that started it (taken before that request: ``failed_at``), which a
    loaded machine stretches past a second. A block that did not grow is still told apart: it would have
    ended, or have left less."""
    waited = time.monotonic() - failed_at
    assert block - waited <= retry_after <= block, (block, retry_after, waited)


def limen_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LIMEN_BIN), *args], env=cli_env({**os.environ, **env}), capture_output=True, text=True,
                          timeout=60, check=False)


async def burst(server: LimenProcess, address: str, wrong: int) -> tuple[list[int], httpx.Response]:
    """``wrong`` wrong passwords at once, then the right one while they are in flight; their statuses."""
    limits = httpx.Limits(max_connections=wrong + 1)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60) as client:
        def attempt(password: str) -> asyncio.Task[httpx.Response]:
            return asyncio.ensure_future(client.post("/api/login", json={"name": USER, "password": password},
                                                     headers={"X-Forwarded-For": address}))

        wrongs = [attempt(f"wrong password {index}") for index in range(wrong)]
        await asyncio.sleep(0.2)
        right = await attempt(PASSWORD)
        return [response.status_code for response in await asyncio.gather(*wrongs)], right


def test_parallel_attempts_are_refused_past_the_limit_and_unlock_lifts_the_block(
    limen_server: Callable[..., LimenProcess], tmp_path: Path
) -> None:
    server = limen_server(**TRUSTED)
    make_user(server)
    statuses, right = asyncio.run(burst(server, "203.0.113.5", 60))
    # At most the limit (5) were evaluated; every other attempt was refused before its password was.
    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == 55, statuses
    refusal(right)  # the right password came after the places were taken: refused too
    assert refusal(login(server, "203.0.113.5", PASSWORD)) > 1

    # The same user from another address is not blocked; others at the blocked address neither.
    assert login(server, "198.51.100.20", PASSWORD).status_code == 200
    assert login(server, "203.0.113.5", "wrong", name="somebody else").status_code == 401

    # An administrator unlocks the user from the command line while the server runs.
    env = {"LIMEN_DATA_DIR": str(tmp_path / "data"), "LIMEN_LOG_DIR": str(tmp_path / "log")}
    unlocked = limen_cli(env, "--json", "user", "unlock", USER.upper())
    assert unlocked.returncode == 0, unlocked.stderr
    assert json.loads(unlocked.stdout) == {"name": USER, "cleared": 1}
    assert login(server, "203.0.113.5", PASSWORD).status_code == 200


def test_parallel_right_passwords_near_the_limit_are_told_to_retry_in_a_second(
    limen_server: Callable[..., LimenProcess]
) -> None:
    """One failure short of the block, a person signs in from several tabs at once: one attempt is evaluated,
    the others are refused while it is in flight, and told to come back in a second, when it is decided, not
    after the block it would start if it failed (the page counted down two minutes for a block that never came)."""
    server = limen_server(**TRUSTED, LIMEN_LOGIN_MAX_FAILURES_PER_USER="2", LIMEN_LOGIN_BLOCK_SECONDS="120")
    make_user(server)
    address = "198.51.100.61"
    assert login(server, address, "wrong").status_code == 401

    async def at_once(count: int) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.base_url, limits=httpx.Limits(max_connections=count),
                                     timeout=60) as client:
            return await asyncio.gather(*(client.post("/api/login", json={"name": USER, "password": PASSWORD},
                                                      headers={"X-Forwarded-For": address}) for _ in range(count)))

    responses = asyncio.run(at_once(6))
    signed_in = [response for response in responses if response.status_code == 200]
    refused = [response for response in responses if response.status_code != 200]
    assert len(signed_in) >= 1
    assert refused and {refusal(response) for response in refused} == {1}
    time.sleep(1)
    assert login(server, address, PASSWORD).status_code == 200  # nothing was blocked


def test_each_failure_past_the_limit_doubles_the_block(limen_server: Callable[..., LimenProcess]) -> None:
    server = limen_server(**TRUSTED, LIMEN_LOGIN_MAX_FAILURES_PER_USER="2", LIMEN_LOGIN_BLOCK_SECONDS="1",
                          LIMEN_LOGIN_BLOCK_MAX_SECONDS="4")
    make_user(server)
    address = "192.0.2.33"
    for _ in range(2):
        failed_at = time.monotonic()
        assert login(server, address, "wrong").status_code == 401
    blocks = [1, 2, 4, 4, 4]
    for index, block in enumerate(blocks):
        wait = refusal(login(server, address, PASSWORD))
        assert_block_left(block, failed_at, wait)
        if index == len(blocks) - 1:
            break
        time.sleep(wait + 0.2)
        failed_at = time.monotonic()
        assert login(server, address, "wrong").status_code == 401  # the block is over: one attempt


def test_two_instances_share_the_counts_in_redis(limen_server: Callable[..., LimenProcess], tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as redis_url:
        databases = [database_url_for(tmp_path / f"db-{index}") for index in range(2)]
        servers = [
            limen_server(**TRUSTED, LIMEN_REDIS_URL=redis_url, LIMEN_DATABASE_URL=database) for database in databases
        ]
        for server in servers:
            make_user(server)
        address = "203.0.113.77"
        for server in (servers[0], servers[1], servers[0], servers[1], servers[0]):
            assert login(server, address, "wrong").status_code == 401
        for server in servers:
            refusal(login(server, address, PASSWORD))
        # The counts are in Redis, not in either database.
        client = redis.Redis.from_url(redis_url)
        try:
            assert len(client.keys("limen:throttle:*")) == 2
        finally:
            client.close()
        for database in databases:
            db = Database(database)
            try:
                assert db.fetch_one_sync(select(func.count()).select_from(LoginThrottle)) == (0,)
            finally:
                db.close()
        # The CLI, pointed at the same Redis, unlocks the user on both.
        unlocked = limen_cli({"LIMEN_REDIS_URL": redis_url, "LIMEN_DATABASE_URL": databases[1],
                              "LIMEN_DATA_DIR": str(tmp_path / "data")}, "user", "unlock", USER)
        assert unlocked.returncode == 0, unlocked.stderr
        for server in servers:
            assert login(server, address, PASSWORD).status_code == 200
            assert login(server, address, PASSWORD).status_code == 200


async def wrong_bursts(servers: list[LimenProcess], address: str, each: int) -> list[int]:
    """``each`` wrong passwords to every server at once; their statuses."""
    clients = [httpx.AsyncClient(base_url=server.base_url, limits=httpx.Limits(max_connections=each), timeout=60)
               for server in servers]
    try:
        responses = await asyncio.gather(*(
            client.post("/api/login", json={"name": USER, "password": f"wrong {index}"},
                        headers={"X-Forwarded-For": address})
            for client in clients for index in range(each)
        ))
        return [response.status_code for response in responses]
    finally:
        for client in clients:
            await client.aclose()


def test_two_instances_on_one_database_share_the_counts(limen_server: Callable[..., LimenProcess]) -> None:
    # Both serve the fixture's one SQLite file: two processes, each with its own threads, race for it.
    servers = [limen_server(**TRUSTED), limen_server(**TRUSTED)]
    make_user(servers[0])
    statuses = asyncio.run(wrong_bursts(servers, "203.0.113.90", 30))
    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == 55, statuses
    for server in servers:
        refusal(login(server, "203.0.113.90", PASSWORD))
        assert login(server, "203.0.113.91", PASSWORD).status_code == 200


# Reserves every place of USER at an address through the real limiter, then dies by SIGKILL before
# deciding any: what a limen process killed mid-attempt leaves behind.
_DIE_MID_ATTEMPT = """
import asyncio, os, signal, sys
from limen.auth.access import Access
from limen.settings import load_settings

async def main():
    access = Access(load_settings(None))
    await access.start()
    for _ in range(access.settings.login_max_failures_per_user):
        await access.login_limiter.begin(sys.argv[1], sys.argv[2])
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_places_of_a_process_killed_mid_attempt_are_given_back(
    limen_server: Callable[..., LimenProcess], tmp_path: Path
) -> None:
    env = {**TRUSTED, "LIMEN_LOGIN_ATTEMPT_TIMEOUT": "3"}
    server = limen_server(**env)
    make_user(server)
    address = "203.0.113.44"
    killed = subprocess.run(
        [str(LIMEN_BIN.parent / "python"), "-c", _DIE_MID_ATTEMPT, USER, address],
        env=cli_env({**os.environ, **env, "LIMEN_DATA_DIR": str(tmp_path / "data"),
                     "LIMEN_LOG_DIR": str(tmp_path / "log")}),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert killed.returncode == -9, killed.stderr
    refusal(login(server, address, PASSWORD))  # the dead attempts still hold every place
    assert login(server, "203.0.113.45", PASSWORD).status_code == 200  # elsewhere: not held at all
    time.sleep(3.5)
    assert login(server, address, PASSWORD).status_code == 200


async def guesses(server: LimenProcess, address: str, names: list[str]) -> list[int]:
    """One wrong password for each of ``names``, all at once from ``address``; their statuses."""
    async with httpx.AsyncClient(base_url=server.base_url, limits=httpx.Limits(max_connections=len(names)),
                                 timeout=60) as client:
        responses = await asyncio.gather(*(
            client.post("/api/login", json={"name": name, "password": "a guess"}, headers={"X-Forwarded-For": address})
            for name in names))
    return [response.status_code for response in responses]


def test_an_address_guessing_many_names_is_blocked_there_only_with_growing_blocks(
    limen_server: Callable[..., LimenProcess],
) -> None:
    """Per address, all names: an address that guesses at many names (none of them USER's) is refused
    as a whole, right password or not, its block doubling with each failure past the limit; USER signs
    in from another address all along."""
    server = limen_server(**TRUSTED, LIMEN_LOGIN_MAX_FAILURES_PER_ADDRESS="4", LIMEN_LOGIN_BLOCK_SECONDS="1",
                          LIMEN_LOGIN_BLOCK_MAX_SECONDS="4")
    make_user(server)
    guesser, elsewhere = "203.0.113.60", "198.51.100.60"
    failed_at = time.monotonic()
    statuses = asyncio.run(guesses(server, guesser, [f"guess-{index}" for index in range(12)]))
    # Each name failed at most once (far below its own limit of 5): the address's count refused the rest.
    assert sorted(statuses) == [401] * 4 + [429] * 8, statuses
    wait = refusal(login(server, guesser, PASSWORD))  # a real user at that address: refused too
    assert_block_left(1, failed_at, wait)
    assert login(server, elsewhere, PASSWORD).status_code == 200
    for block in (2, 4):
        time.sleep(wait + 0.2)
        failed_at = time.monotonic()
        assert login(server, guesser, "wrong", name="guess-again").status_code == 401  # one attempt, failed
        wait = refusal(login(server, guesser, PASSWORD))
        assert_block_left(block, failed_at, wait)
        assert login(server, elsewhere, PASSWORD).status_code == 200
    # A right password after the block lets its user in but does not clear the address for others.
    time.sleep(wait + 0.2)
    assert login(server, guesser, PASSWORD).status_code == 200
    assert login(server, guesser, "wrong", name="guess-more").status_code == 401
    refusal(login(server, guesser, PASSWORD))


def test_an_administrator_lifts_an_address_block_from_the_api_and_the_command_line(
    limen_server: Callable[..., LimenProcess], tmp_path: Path
) -> None:
    """An office behind one NAT address guessed wrong too often: the whole address is blocked for an hour, which
    ``limen user unlock NAME`` does not lift (the names were not a user's). The address's unlock does, from the
    API and from the command line, and leaves other addresses' counts alone."""
    server = limen_server(**TRUSTED, LIMEN_LOGIN_MAX_FAILURES_PER_ADDRESS="3", LIMEN_LOGIN_BLOCK_SECONDS="3600")
    make_user(server)
    office, other = "203.0.113.90", "203.0.113.9"

    def block(address: str) -> None:
        for index in range(3):
            assert login(server, address, "wrong", name=f"typo-{index}").status_code == 401
        assert refusal(login(server, address, PASSWORD)) > 3000

    block(office)
    assert login(server, other, "wrong", name="typo-0").status_code == 401
    api_unlock = httpx.post(f"{server.base_url}/api/addresses/{office}/unlock", headers=server.auth_headers,
                            timeout=20)
    assert api_unlock.status_code == 200, api_unlock.text
    assert api_unlock.json() == {"address": office, "cleared": 4}  # the address's key and one per name
    assert login(server, office, PASSWORD).status_code == 200

    block(office)
    env = {"LIMEN_DATA_DIR": str(tmp_path / "data"), "LIMEN_LOG_DIR": str(tmp_path / "log")}
    unlocked = limen_cli(env, "--json", "user", "unlock", "--address", office)
    assert unlocked.returncode == 0, unlocked.stderr
    assert json.loads(unlocked.stdout) == {"address": office, "cleared": 4}
    assert login(server, office, PASSWORD).status_code == 200
    # The other address's failure was not touched; nonsense is refused with a clear error, not a 500.
    assert limen_cli(env, "--json", "user", "unlock", "--address", other).stdout.strip() == \
        json.dumps({"address": other, "cleared": 2})
    not_an_address = httpx.post(f"{server.base_url}/api/addresses/office/unlock", headers=server.auth_headers,
                                timeout=20)
    assert (not_an_address.status_code, not_an_address.json()["code"]) == (422, "VALIDATION_ERROR")
    assert limen_cli(env, "user", "unlock", "--address", "office").returncode == 2
    assert limen_cli(env, "user", "unlock").returncode == 2
