"""The ISO library through a real ``limen serve``: streamed uploads with bounded memory, dropped and
refused uploads that leave nothing, deleting refused while a VM on the real libvirtd holds the image."""

from __future__ import annotations

import asyncio
import hashlib
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from limen.hypervisor import Hypervisor, VmSpec
from limen.settings import Settings
from tests.conftest import QEMU_URI
from tests.support.server import LimenProcess

# ISO images are files in the ISO directory, their checksums beside them: the database is reached only by the
# sign-in (names, owners and roles are the users' rows every test reads on both).
pytestmark = [pytest.mark.integration, pytest.mark.same_on_any_database]
LIMEN = str(Path(sys.executable).parent / "limen")

GIB = 2**30
MIB = 2**20
CHUNK = MIB


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def everything_in(directory: Path) -> list[str]:
    """Every entry, hidden ones included (temp files and checksums are hidden)."""
    return sorted(os.listdir(directory))


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def start_partial_upload(
    server: LimenProcess, name: str, declared: int, send: int, *, authorization: str | None = "admin",
    query: str | None = None,
) -> socket.socket:
    """A raw HTTP upload that declares ``declared`` bytes and sends ``send`` of them; the socket stays open.
    ``authorization``: the admin's (the default), another header value, or None for an anonymous client;
    ``query`` replaces ``name=NAME``."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if authorization == "admin":
        authorization = server.auth_headers["Authorization"]
    credential = "" if authorization is None else f"Authorization: {authorization}\r\n"
    head = (
        f"POST /api/isos?{f'name={name}' if query is None else query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"{credential}Content-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode())
    block = b"\x5a" * 65536
    sent = 0
    while sent < send:
        piece = block[: min(len(block), send - sent)]
        sock.sendall(piece)
        sent += len(piece)
    return sock


def read_response(sock: socket.socket, head_lines: list[bytes] | None = None) -> tuple[int, bytes]:
    """The status and body of the answer; its header lines (lower case) are added to ``head_lines``."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if head_lines is not None:
        head_lines += head.lower().split(b"\r\n")[1:]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            while len(body) < int(value):
                piece = sock.recv(65536)
                if not piece:
                    break
                body += piece
    return status, body


@pytest.fixture
def iso_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "isos"
    directory.mkdir()
    return directory


@pytest.fixture
def api(limen_server: Callable[..., LimenProcess], iso_dir: Path) -> Iterator[tuple[LimenProcess, httpx.Client]]:
    server = limen_server(LIMEN_ISO_DIR=str(iso_dir))
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=60) as client:
        yield server, client


def test_a_2_gib_upload_streams_to_disk_with_bounded_memory(
    api: tuple[LimenProcess, httpx.Client], iso_dir: Path, tmp_path: Path
) -> None:
    server, client = api
    source = tmp_path / "big.iso"
    with source.open("wb") as file:
        file.truncate(2 * GIB)  # sparse: costs no disk on the client's side
    client.get("/api/isos")  # warm up the routes the upload uses
    before_kib = rss_kib(server.pid)
    digest = hashlib.sha256()
    peak_kib = before_kib
    sampling = True

    def sample() -> None:
        nonlocal peak_kib
        while sampling:
            peak_kib = max(peak_kib, rss_kib(server.pid))
            time.sleep(0.05)

    def body() -> Iterator[bytes]:
        with source.open("rb") as file:
            while chunk := file.read(CHUNK):
                digest.update(chunk)
                yield chunk

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        answer = client.post("/api/isos", params={"name": "big.iso"}, content=body(),
                             headers={"Content-Length": str(2 * GIB)}, timeout=600)
    finally:
        sampling = False
        sampler.join()
    high_water_kib = rss_kib(server.pid, "VmHWM")
    assert answer.status_code == 201, answer.text
    assert answer.json()["size_bytes"] == 2 * GIB
    assert answer.json()["sha256"] == digest.hexdigest()
    growth_mib = (max(high_water_kib, peak_kib) - before_kib) / 1024
    print(f"limen RSS before {before_kib / 1024:.1f} MiB, peak {peak_kib / 1024:.1f} MiB, "
          f"VmHWM {high_water_kib / 1024:.1f} MiB: grew {growth_mib:.1f} MiB")
    assert growth_mib < 64
    assert (iso_dir / "big.iso").stat().st_size == 2 * GIB
    listed = {iso["name"]: iso for iso in client.get("/api/isos").json()}
    assert listed["big.iso"]["sha256"] == digest.hexdigest()
    assert everything_in(iso_dir) == [".big.iso.sha256", "big.iso"]
    (iso_dir / "big.iso").unlink()


def test_a_dropped_upload_leaves_no_file(api: tuple[LimenProcess, httpx.Client], iso_dir: Path) -> None:
    server, client = api
    sock = start_partial_upload(server, "dropped.iso", declared=256 * MIB, send=8 * MIB)
    # The upload is under way: its hidden temp file grows in the ISO directory.
    assert wait_until(lambda: any(".upload-" in name for name in everything_in(iso_dir)), 10)
    sock.close()
    assert wait_until(lambda: everything_in(iso_dir) == [], 2.5), everything_in(iso_dir)
    assert client.get("/api/isos").json() == []
    assert client.get("/healthz").status_code == 200


def test_leftovers_of_a_killed_server_are_swept_at_start(
    limen_server: Callable[..., LimenProcess], iso_dir: Path
) -> None:
    server = limen_server(LIMEN_ISO_DIR=str(iso_dir))
    sock = start_partial_upload(server, "killed.iso", declared=256 * MIB, send=4 * MIB)
    # Killed once the upload has written some data (an empty temp file of a few seconds is spared: it may
    # be one a live process has just created).
    assert wait_until(lambda: any(path.stat().st_size for path in iso_dir.glob(".*.upload-*")), 10)
    os.kill(server.pid, signal.SIGKILL)
    server.stop()
    sock.close()
    leftovers = everything_in(iso_dir)
    assert len(leftovers) == 1 and ".upload-" in leftovers[0]
    limen_server(LIMEN_ISO_DIR=str(iso_dir))
    assert everything_in(iso_dir) == []


def test_a_server_stopped_mid_upload_leaves_no_file(
    limen_server: Callable[..., LimenProcess], iso_dir: Path
) -> None:
    server = limen_server(LIMEN_ISO_DIR=str(iso_dir))
    sock = start_partial_upload(server, "stopped.iso", declared=256 * MIB, send=4 * MIB)
    assert wait_until(lambda: any(path.stat().st_size for path in iso_dir.glob(".*.upload-*")), 10)
    server.stop(timeout=20)  # SIGTERM: the graceful shutdown gives up on the upload after 5 s
    sock.close()
    assert everything_in(iso_dir) == []


def test_a_stalled_upload_times_out_and_leaves_no_file(
    limen_server: Callable[..., LimenProcess], iso_dir: Path
) -> None:
    server = limen_server(LIMEN_ISO_DIR=str(iso_dir), LIMEN_ISO_UPLOAD_IDLE_TIMEOUT="1")
    sock = start_partial_upload(server, "stalled.iso", declared=64 * MIB, send=MIB)
    with sock:
        status, body = read_response(sock)
    assert status == 408 and b"REQUEST_TIMEOUT" in body
    assert wait_until(lambda: everything_in(iso_dir) == [], 2)


def test_uploads_refused_before_the_body_close_the_connection(
    api: tuple[LimenProcess, httpx.Client], iso_dir: Path
) -> None:
    """An anonymous client, a non-admin and a request without a name are refused at once, and the connection
    is closed: the server does not go on reading (and discarding) the gigabyte the client declared."""
    server, client = api
    assert client.post("/api/users", json={"name": "plain", "password": "a long password"}).status_code == 201
    secret = client.post("/api/tokens", json={"name": "plain", "user": "plain"}).json()["secret"]
    for authorization, query, status in ((None, None, 401), (f"Bearer {secret}", None, 403), ("admin", "", 422)):
        with start_partial_upload(server, "refused.iso", declared=GIB, send=MIB, authorization=authorization,
                                  query=query) as sock:
            head: list[bytes] = []
            answer, body = read_response(sock, head)
            assert answer == status, body
            assert b"connection: close" in head
            sock.settimeout(5)
            try:
                assert sock.recv(65536) == b""  # closed, the rest of the gigabyte never sent
            except ConnectionResetError:
                pass  # closed with the client's unread bytes still in the server's buffer
    assert everything_in(iso_dir) == []


def test_an_upload_may_pause_for_its_idle_timeout_and_is_dropped_after_it(
    limen_server: Callable[..., LimenProcess], iso_dir: Path, tmp_path: Path
) -> None:
    """The ISO idle timeout, not the general body deadline (LIMEN_REQUEST_READ_TIMEOUT), rules an upload: a
    pause longer than the latter is fine; one past the former is the server's timeout, logged as such."""
    server = limen_server(LIMEN_ISO_DIR=str(iso_dir), LIMEN_ISO_UPLOAD_IDLE_TIMEOUT="3",
                          LIMEN_REQUEST_READ_TIMEOUT="1")
    with start_partial_upload(server, "paused.iso", declared=2 * MIB, send=MIB) as sock:
        time.sleep(2)
        sock.sendall(b"\x5a" * MIB)
        status, body = read_response(sock)
    assert status == 201, body
    assert b'"sha256":"%s"' % hashlib.sha256(b"\x5a" * (2 * MIB)).hexdigest().encode() in body
    with start_partial_upload(server, "stalled.iso", declared=2 * MIB, send=MIB) as sock:
        started = time.monotonic()
        status, body = read_response(sock)
    assert status == 408 and b"LIMEN_ISO_UPLOAD_IDLE_TIMEOUT" in body, body
    assert time.monotonic() - started > 2.5
    log = tmp_path / "log" / "limen.log"  # the limen_server fixture's LIMEN_LOG_DIR
    assert wait_until(lambda: "iso_upload_timeout" in log.read_text(errors="replace"), 5)
    assert "iso_upload_dropped" not in log.read_text(errors="replace")
    assert everything_in(iso_dir) == [".paused.iso.sha256", "paused.iso"]


def test_over_the_limit_is_refused_and_leaves_no_file(
    limen_server: Callable[..., LimenProcess], iso_dir: Path
) -> None:
    server = limen_server(LIMEN_ISO_DIR=str(iso_dir), LIMEN_MAX_ISO_BYTES=str(MIB))
    # Declared too large: refused before a byte of the body is read (what curl's Expect: 100-continue waits for).
    with start_partial_upload(server, "declared.iso", declared=MIB + 1, send=0) as sock:
        status, body = read_response(sock)
    assert status == 413 and b"PAYLOAD_TOO_LARGE" in body and str(MIB).encode() in body
    # Undeclared (chunked) and longer than the limit: refused as the count passes it.
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as client:
        def chunks() -> Iterator[bytes]:
            for _ in range(3):
                yield b"\x01" * (MIB // 2)

        try:
            answer = client.post("/api/isos", params={"name": "chunked.iso"}, content=chunks())
            assert answer.status_code == 413, answer.text
            assert answer.json()["code"] == "PAYLOAD_TOO_LARGE"
        except httpx.TransportError:
            pass  # the server closed the connection on the rest of the body before httpx read the answer
        assert wait_until(lambda: everything_in(iso_dir) == [], 2), everything_in(iso_dir)
        exact = client.post("/api/isos", params={"name": "exact.iso"}, content=b"\x02" * MIB)
        assert exact.status_code == 201, exact.text
        assert exact.json()["sha256"] == hashlib.sha256(b"\x02" * MIB).hexdigest()


def test_names_owners_and_roles(api: tuple[LimenProcess, httpx.Client], iso_dir: Path) -> None:
    server, client = api
    made = client.post("/api/isos", params={"name": "Ünï 🙂.iso"}, content=b"first")
    assert made.status_code == 201, made.text
    assert made.json()["sha256"] == hashlib.sha256(b"first").hexdigest()

    again = client.post("/api/isos", params={"name": "Ünï 🙂.iso"}, content=b"second")
    assert again.status_code == 409 and again.json()["code"] == "ISO_ALREADY_EXISTS"
    assert (iso_dir / "Ünï 🙂.iso").read_bytes() == b"first"

    for bad in ["../escape.iso", "sub/dir.iso", ".hidden.iso", "notes.txt", "x" * 201 + ".iso", "", "a\x01.iso"]:
        refused = client.post("/api/isos", params={"name": bad}, content=b"data")
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["code"] == "VALIDATION_ERROR" and refused.json()["field"] == "name"
    longest = "n" * 196 + ".iso"
    assert client.post("/api/isos", params={"name": longest}, content=b"ok").status_code == 201
    form = client.post("/api/isos", params={"name": "form.iso"}, files={"file": ("form.iso", b"data")})
    assert form.status_code == 400 and form.json()["code"] == "INVALID_REQUEST"

    assert client.post("/api/users", json={"name": "plain", "password": "a long password"}).status_code == 201
    secret = client.post("/api/tokens", json={"name": "plain", "user": "plain"}).json()["secret"]
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as user:
        assert user.post("/api/isos", params={"name": "user.iso"}, content=b"data").status_code == 403
        assert user.delete(f"/api/isos/{longest}").status_code == 403
        assert sorted(iso["name"] for iso in user.get("/api/isos").json()) == sorted([longest, "Ünï 🙂.iso"])
    assert sorted(everything_in(iso_dir)) == sorted(
        [longest, f".{longest}.sha256", "Ünï 🙂.iso", ".Ünï 🙂.iso.sha256"]
    )


def test_parallel_uploads_of_one_name_keep_one_file(api: tuple[LimenProcess, httpx.Client], iso_dir: Path) -> None:
    server, _client = api
    results: list[int] = []
    payloads = [bytes([n]) * (4 * MIB) for n in range(4)]

    def upload(payload: bytes) -> None:
        with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=60) as client:
            results.append(client.post("/api/isos", params={"name": "race.iso"}, content=payload).status_code)

    threads = [threading.Thread(target=upload, args=(payload,)) for payload in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [201, 409, 409, 409]
    assert everything_in(iso_dir) == [".race.iso.sha256", "race.iso"]
    assert (iso_dir / "race.iso").read_bytes() in payloads


def test_images_copied_by_hand_get_their_checksum_in_the_background(
    limen_server: Callable[..., LimenProcess], iso_dir: Path, tmp_path: Path
) -> None:
    at_start = iso_dir / "at-start.iso"
    at_start.write_bytes(os.urandom(3 * MIB))
    target = tmp_path / "elsewhere.img"
    target.write_bytes(b"linked" * 1000)
    (iso_dir / "linked.img").symlink_to(target)
    server = limen_server(LIMEN_ISO_DIR=str(iso_dir))
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=30) as client:
        later = iso_dir / "later.iso"
        later.write_bytes(os.urandom(MIB))
        expected = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (at_start, later)}
        expected["linked.img"] = hashlib.sha256(target.read_bytes()).hexdigest()
        first = client.get("/api/isos")
        assert first.headers["X-Limen-Max-Iso-Bytes"] == str(16 * GIB)
        assert {iso["name"] for iso in first.json()} == set(expected)

        def computed() -> bool:
            return {iso["name"]: iso["sha256"] for iso in client.get("/api/isos").json()} == expected

        assert wait_until(computed, 20)


def test_delete_is_refused_while_a_vm_holds_the_image(
    api: tuple[LimenProcess, httpx.Client], iso_dir: Path, vm_names: Callable[[], str], tmp_path: Path
) -> None:
    _server, client = api
    assert client.post("/api/isos", params={"name": "held.iso"}, content=b"\0" * 4096).status_code == 201
    name = vm_names()
    made = client.post("/api/vms", json={"name": name, "memory_mib": 64, "iso": "held.iso"})
    assert made.status_code == 201, made.text

    refused = client.delete("/api/isos/held.iso")
    assert refused.status_code == 409
    assert refused.json()["code"] == "ISO_IN_USE"
    assert refused.json()["vms"] == [name] and name in refused.json()["details"]
    assert (iso_dir / "held.iso").exists()

    assert client.delete(f"/api/vms/{name}").status_code == 200
    assert client.delete("/api/isos/held.iso").json() == {"deleted": "held.iso"}
    assert everything_in(iso_dir) == []
    missing = client.delete("/api/isos/held.iso")
    assert missing.json()["code"] == "ISO_NOT_FOUND"
    assert client.delete("/api/isos/..%2Fescape.iso").status_code in (404, 422)

    target = tmp_path / "packaged.iso"
    target.write_bytes(b"packaged")
    (iso_dir / "link.iso").symlink_to(target)
    assert client.delete("/api/isos/link.iso").status_code == 200
    assert not (iso_dir / "link.iso").is_symlink() and target.read_bytes() == b"packaged"


# -- the command line ---------------------------------------------------------------------------------

def test_cli_upload_shows_a_progress_bar_on_a_terminal(iso_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "tty.iso"
    with source.open("wb") as file:
        file.truncate(200 * MIB)
    master, slave = pty.openpty()
    proc = subprocess.Popen([LIMEN, "--iso-dir", str(iso_dir), "iso", "upload", str(source)],
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            piece = os.read(master, 65536)
        except OSError:  # the terminal's other end closed
            break
        if not piece:
            break
        shown += piece
    os.close(master)
    assert proc.wait(timeout=60) == 0
    assert proc.stdout is not None and proc.stdout.read().startswith(b"uploaded tty.iso: 200 MiB,")
    screen = shown.decode(errors="replace")
    # The bar, the bytes (rich's column), the rate (limen's sizes: MiB/s or GiB/s, as fast as the copy went).
    assert "\u2501" in screen and "/200.0 MiB" in screen and re.search(r"\d [KMG]iB/s", screen)
    assert "0:00:0" in screen  # time left


@pytest.mark.parametrize(("language", "said"), [("en", "cancelled; nothing was kept"), ("ko", "업로드를 취소했습니다")])
def test_cli_upload_interrupted_leaves_nothing(iso_dir: Path, tmp_path: Path, language: str, said: str) -> None:
    source = tmp_path / "interrupted.iso"
    with source.open("wb") as file:
        file.truncate(8 * GIB)
    # Ctrl-C as a terminal sends it. A run started in the background (`make test &`) ignores SIGINT, and a
    # child inherits that (Python then installs no KeyboardInterrupt handler): the child gets it back.
    proc = subprocess.Popen([LIMEN, "--iso-dir", str(iso_dir), "iso", "upload", str(source)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "LIMEN_LANG": language},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert wait_until(lambda: any(path.stat().st_size for path in iso_dir.glob(".*.upload-*")), 20)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert said in err.decode(), err.decode()  # in the reader's language (it was English in Korean too)
    assert everything_in(iso_dir) == []


async def test_cli_delete_is_refused_while_a_vm_holds_the_image(
    make_settings: Callable[..., Settings], iso_dir: Path, vm_names: Callable[[], str]
) -> None:
    (iso_dir / "held.iso").write_bytes(b"\0" * 4096)
    hypervisor = Hypervisor(make_settings(libvirt_uri=QEMU_URI, iso_dir=iso_dir))
    await hypervisor.open()
    name = vm_names()
    try:
        await hypervisor.create_vm(VmSpec(name=name, memory_mib=64, iso="held.iso"))
        command = [LIMEN, "--iso-dir", str(iso_dir), "--libvirt-uri", QEMU_URI, "iso", "delete", "held.iso"]
        refused = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1
        assert "[ISO_IN_USE]" in refused.stderr and name in refused.stderr
        assert (iso_dir / "held.iso").exists()
        await hypervisor.delete_vm(name)
        deleted = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
        assert deleted.returncode == 0, deleted.stderr
        assert everything_in(iso_dir) == []
    finally:
        await hypervisor.close()
