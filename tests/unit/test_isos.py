from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
import unicodedata
from pathlib import Path

import pytest

from limen.errors import ErrorCode, LimenError, ValidationFailed
from limen.isos import (
    CdromSource,
    IsoInUse,
    IsoUpload,
    check_new_name,
    check_room,
    delete_iso,
    holders_of,
    list_isos,
    name_problem,
    resolve_iso,
    restore_parked_images,
    share_library_images,
    sweep_stale_temp_files,
)
from limen.isos.background import BackgroundChecksums
from limen.isos.checksums import checksum_path, hash_file, read_checksum, write_checksum
from tests.conftest import app_client, settings_in


@pytest.fixture
def iso_dir(tmp_path: Path) -> Path:
    (tmp_path / "isos").mkdir()
    (tmp_path / "isos" / "boot.iso").write_bytes(b"x" * 10)
    (tmp_path / "isos" / "notes.txt").write_text("not an image")
    (tmp_path / "secret.iso").write_bytes(b"outside")
    return tmp_path / "isos"


def test_lists_only_images(iso_dir: Path) -> None:
    assert [(iso.name, iso.size_bytes, iso.sha256) for iso in list_isos(iso_dir)] == [("boot.iso", 10, None)]
    assert list_isos(iso_dir / "absent") == []


def put_latin1_named_image(iso_dir: Path) -> None:
    with open(os.path.join(os.fsencode(iso_dir), b"caf\xe9.iso"), "wb") as file:
        file.write(b"x")


def test_a_name_not_in_utf8_is_skipped_logged_once_and_refused(
    iso_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file named in other bytes (Latin-1 caf\xe9.iso) reads with a lone surrogate, which no JSON answer can
    carry: listing it made GET /api/isos a 500 for everyone."""
    put_latin1_named_image(iso_dir)
    unreadable = os.fsdecode(b"caf\xe9.iso")
    assert name_problem(unreadable) is not None
    with caplog.at_level("WARNING", logger="limen.isos"):
        assert [iso.name for iso in list_isos(iso_dir)] == ["boot.iso"]
        assert [iso.name for iso in list_isos(iso_dir)] == ["boot.iso"]
    logged = [record for record in caplog.records if getattr(record, "event", None) == "iso_name_not_utf8"]
    assert [record.iso for record in logged] == ["caf\\xe9.iso"]  # type: ignore[attr-defined]
    with pytest.raises(ValidationFailed) as caught:
        resolve_iso(iso_dir, unreadable)
    assert caught.value.rule == {"kind": "file_name"}


async def test_the_api_lists_beside_a_name_not_in_utf8(iso_dir: Path, tmp_path: Path) -> None:
    put_latin1_named_image(iso_dir)
    async with app_client(settings_in(tmp_path, iso_dir=iso_dir)) as client:
        answer = await client.get("/api/isos")
    assert answer.status_code == 200, answer.text
    assert [iso["name"] for iso in answer.json()] == ["boot.iso"]


def test_resolves_a_plain_name(iso_dir: Path) -> None:
    assert resolve_iso(iso_dir, "boot.iso") == iso_dir / "boot.iso"


@pytest.mark.parametrize(("name", "kind"), [
    ("../secret.iso", "file_name"), ("/etc/passwd", "file_name"), ("sub/boot.iso", "file_name"), ("..", "file_name"),
    (".", "file_name"), ("", "file_name"), ("missing.iso", "iso_missing"), ("notes.txt", "iso_suffix"),
    ("a\x00.iso", "no_control_chars"),
])
def test_refuses_anything_else(iso_dir: Path, name: str, kind: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        resolve_iso(iso_dir, name)
    assert (caught.value.field, caught.value.rule) == ("iso", {"kind": kind})
    assert str(iso_dir) not in caught.value.details  # the host's directory is not every user's to see


# -- names --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["debian-12.iso", "Ünï 🙂.IMG", "a.b-c_d.iso", "n" * 196 + ".iso"])
def test_accepts_plain_image_names(name: str) -> None:
    assert name_problem(name) is None
    check_new_name(name)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x.iso", "a/b.iso", ".hidden.iso", "x.txt", "x.iso.upload-1", "a\x00.iso",
             "tab\t.iso", "n" * 197 + ".iso", "é" * 99 + ".iso"],
)
def test_refuses_paths_hidden_long_and_foreign_names(name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(ValidationFailed) as caught:
        check_new_name(name)
    assert caught.value.field == "name"


@pytest.mark.parametrize(("name", "kind"), [
    ("x\u202eosi.exe.iso", "no_control_chars"), ("x\u200b.iso", "no_control_chars"),
    ("x\u2066y\u2069.iso", "no_control_chars"), ("x .iso", "no_edge_space"), (" x.iso", "no_edge_space"),
])
def test_a_new_name_reads_as_it_is(name: str, kind: str) -> None:
    # Reordering and invisible characters, and white space at a name's ends, are refused for new images only:
    # a file an administrator put in the directory by hand still resolves and can be deleted.
    with pytest.raises(ValidationFailed) as caught:
        check_new_name(name)
    assert caught.value.field == "name" and caught.value.rule == {"kind": kind}
    assert name_problem(name) is None


def test_listing_hides_limens_own_files_and_dangling_links(iso_dir: Path) -> None:
    (iso_dir / ".boot.iso.sha256").write_text("junk")
    (iso_dir / ".x.iso.upload-abc").write_bytes(b"partial")
    (iso_dir / "gone.iso").symlink_to(iso_dir / "nowhere.iso")
    assert [iso.name for iso in list_isos(iso_dir)] == ["boot.iso"]


def test_the_listing_removes_the_checksums_of_images_deleted_by_hand_and_only_those(iso_dir: Path) -> None:
    (iso_dir / "kept.img").write_bytes(b"k")
    (iso_dir / "dangling.iso").symlink_to(iso_dir / "nowhere.iso")  # limen's delete still removes it and its checksum
    for name in ("boot.iso", "kept.img", "dangling.iso", "gone.iso", "gone.img"):  # the last two were `rm`ed
        checksum_path(iso_dir / name).write_text(f"{'a' * 64} 1 1\n")
    (iso_dir / ".notes.sha256").write_text("someone else's")  # names no image: not limen's
    (iso_dir / ".x.iso.upload-abc").write_bytes(b"partial")
    assert [iso.name for iso in list_isos(iso_dir)] == ["boot.iso", "kept.img"]
    assert sorted(p.name for p in iso_dir.iterdir() if p.name.startswith(".")) == [
        ".boot.iso.sha256", ".dangling.iso.sha256", ".kept.img.sha256", ".notes.sha256", ".x.iso.upload-abc"]


def test_a_checksum_file_the_listing_cannot_remove_leaves_the_listing_whole(iso_dir: Path) -> None:
    (iso_dir / ".gone.iso.sha256").mkdir()  # unlink fails as on a directory limen may only read (root may write any)
    assert [iso.name for iso in list_isos(iso_dir)] == ["boot.iso"]
    assert (iso_dir / ".gone.iso.sha256").is_dir()


# -- uploads ------------------------------------------------------------------------------------------

def test_an_upload_appears_complete_with_its_checksum(iso_dir: Path) -> None:
    with IsoUpload(iso_dir, "new.iso", max_bytes=100) as upload:
        upload.write(b"abc")
        assert not (iso_dir / "new.iso").exists()  # invisible until complete
        assert [iso.name for iso in list_isos(iso_dir)] == ["boot.iso"]
        upload.write(b"def")
        image = upload.commit()
    assert image.sha256 == hashlib.sha256(b"abcdef").hexdigest() and image.size_bytes == 6
    assert (iso_dir / "new.iso").read_bytes() == b"abcdef"
    assert {iso.name: iso.sha256 for iso in list_isos(iso_dir)}["new.iso"] == image.sha256
    assert sorted(p.name for p in iso_dir.iterdir()) == [".new.iso.sha256", "boot.iso", "new.iso", "notes.txt"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_an_upload_is_readable_by_qemus_user_whatever_the_umask(iso_dir: Path) -> None:
    """libvirt does not relabel the library's ISOs (it would leave them libvirt-qemu's, 0600, after the VM
    stops): QEMU's user reads them as they are. The service's umask is 0077."""
    before = os.umask(0o077)
    try:
        with IsoUpload(iso_dir, "new.iso", max_bytes=100) as upload:
            upload.write(b"abc")
            upload.commit()
    finally:
        os.umask(before)
    assert _mode(iso_dir / "new.iso") == 0o644


def test_serve_makes_the_librarys_images_readable_by_all_and_writable_by_limen_only(iso_dir: Path) -> None:
    (iso_dir / "boot.iso").chmod(0o600)  # an upload of an older limen
    (iso_dir / "open.img").write_bytes(b"x")
    (iso_dir / "open.img").chmod(0o666)
    (iso_dir / "tool.iso").write_bytes(b"x")
    (iso_dir / "tool.iso").chmod(0o755)
    write_checksum(iso_dir / "boot.iso", "0" * 64)
    checksum_path(iso_dir / "boot.iso").chmod(0o600)
    (iso_dir / "notes.txt").chmod(0o600)
    (iso_dir / "link.iso").symlink_to(iso_dir.parent / "secret.iso")
    (iso_dir.parent / "secret.iso").chmod(0o600)
    assert share_library_images(iso_dir) == {iso_dir / "boot.iso": (0o600, 0o644),
                                             iso_dir / "open.img": (0o666, 0o644)}
    assert (_mode(iso_dir / "boot.iso"), _mode(iso_dir / "open.img"), _mode(iso_dir / "tool.iso")) == (
        0o644, 0o644, 0o755)
    # Not images, or not the library's own file: left as they are.
    assert _mode(checksum_path(iso_dir / "boot.iso")) == _mode(iso_dir / "notes.txt") == 0o600
    assert _mode(iso_dir.parent / "secret.iso") == 0o600
    assert share_library_images(iso_dir) == {}
    assert share_library_images(iso_dir / "missing") == {}


def disk_full(image: Path, digest: str) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_checksum_that_cannot_be_stored_leaves_the_upload_published(
    iso_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("limen.isos.upload.write_checksum", disk_full)
    with IsoUpload(iso_dir, "full.iso", 100) as upload:
        upload.write(b"data")
        image = upload.commit()
    assert image.sha256 == hashlib.sha256(b"data").hexdigest()
    assert (iso_dir / "full.iso").read_bytes() == b"data" and not checksum_path(iso_dir / "full.iso").exists()


async def test_the_api_answers_201_when_only_the_checksum_could_not_be_stored(
    iso_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("limen.isos.upload.write_checksum", disk_full)
    async with app_client(settings_in(tmp_path, iso_dir=iso_dir)) as client:
        answer = await client.post("/api/isos?name=full.iso", content=b"data")
    assert answer.status_code == 201, answer.text
    assert answer.json()["sha256"] == hashlib.sha256(b"data").hexdigest()


def test_names_that_read_alike_are_one_image(iso_dir: Path) -> None:
    """A name in NFD (as macOS spells 한글) and its NFC twin read the same: they are one image, kept in NFC."""
    nfd, nfc = unicodedata.normalize("NFD", "한글.iso"), unicodedata.normalize("NFC", "한글.iso")
    assert nfd != nfc
    with IsoUpload(iso_dir, nfd, max_bytes=100) as upload:
        upload.write(b"first")
        assert upload.commit().name == nfc
    for again in (nfc, nfd):
        with pytest.raises(LimenError) as refused:
            IsoUpload(iso_dir, again, max_bytes=100)
        assert refused.value.code is ErrorCode.ISO_ALREADY_EXISTS
    (iso_dir / unicodedata.normalize("NFD", "é.iso")).write_bytes(b"copied by hand")
    with pytest.raises(LimenError) as refused:
        IsoUpload(iso_dir, "é.iso", max_bytes=100)
    assert refused.value.code is ErrorCode.ISO_ALREADY_EXISTS


async def test_the_api_refuses_the_nfc_twin_of_an_nfd_upload(iso_dir: Path, tmp_path: Path) -> None:
    nfd = unicodedata.normalize("NFD", "한글.iso")
    async with app_client(settings_in(tmp_path, iso_dir=iso_dir)) as client:
        made = await client.post("/api/isos", params={"name": nfd}, content=b"first")
        assert made.status_code == 201 and made.json()["name"] == "한글.iso", made.text
        again = await client.post("/api/isos", params={"name": "한글.iso"}, content=b"second")
    assert again.status_code == 409 and again.json()["code"] == "ISO_ALREADY_EXISTS", again.text


def test_an_empty_upload_is_refused_and_leaves_nothing(iso_dir: Path) -> None:
    # A 0-byte image (curl -d @FILE of a missing file) boots nothing and would have taken the name.
    with IsoUpload(iso_dir, "empty.iso", max_bytes=100) as upload, pytest.raises(LimenError) as refused:
        upload.commit()
    assert refused.value.code is ErrorCode.INVALID_REQUEST and "empty" in refused.value.details
    # The curl command it suggests is one the route takes: --data-binary sends a form, which it refuses.
    assert "curl -X POST -T FILE" in refused.value.details and "--data" not in refused.value.details
    assert sorted(p.name for p in iso_dir.iterdir()) == ["boot.iso", "notes.txt"]


async def test_the_upload_route_documents_a_curl_command_it_takes(tmp_path: Path) -> None:
    async with app_client(settings_in(tmp_path)) as client:
        spec = (await client.get("/api/openapi.json")).json()
    described = spec["paths"]["/api/isos"]["post"]["description"]
    assert "curl -X POST -T FILE" in described and "--data" not in described


def test_leaving_an_upload_unfinished_deletes_it(iso_dir: Path) -> None:
    def interrupted() -> None:
        with IsoUpload(iso_dir, "new.iso", max_bytes=100) as upload:
            upload.write(b"abc")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert sorted(p.name for p in iso_dir.iterdir()) == ["boot.iso", "notes.txt"]


def test_an_upload_past_the_limit_is_refused(iso_dir: Path) -> None:
    with IsoUpload(iso_dir, "new.iso", max_bytes=5) as upload:
        upload.write(b"12345")
        with pytest.raises(LimenError) as caught:
            upload.write(b"6")
    assert caught.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert sorted(p.name for p in iso_dir.iterdir()) == ["boot.iso", "notes.txt"]
    with pytest.raises(LimenError) as declared:
        check_room(iso_dir, 6, max_bytes=5)
    assert declared.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    with pytest.raises(LimenError) as no_room:
        check_room(iso_dir / "not-yet", 2**62, max_bytes=2**63)
    assert "free" in no_room.value.details


def test_an_existing_name_is_never_replaced(iso_dir: Path) -> None:
    with pytest.raises(LimenError) as at_start:
        IsoUpload(iso_dir, "boot.iso", max_bytes=100)
    assert at_start.value.code is ErrorCode.ISO_ALREADY_EXISTS
    with IsoUpload(iso_dir, "late.iso", max_bytes=100) as upload:
        upload.write(b"mine")
        (iso_dir / "late.iso").write_bytes(b"theirs")  # another upload finished first
        with pytest.raises(LimenError) as at_commit:
            upload.commit()
    assert at_commit.value.code is ErrorCode.ISO_ALREADY_EXISTS
    assert (iso_dir / "late.iso").read_bytes() == b"theirs"
    assert not list(iso_dir.glob(".*"))


# -- temp files and checksums -------------------------------------------------------------------------

def test_the_sweep_spares_live_uploads_and_fresh_empty_files(iso_dir: Path) -> None:
    live = IsoUpload(iso_dir, "live.iso", max_bytes=100)
    live.write(b"data")
    stale = iso_dir / ".dead.iso.upload-0123456789ab"
    stale.write_bytes(b"left by a killed process")
    fresh = iso_dir / ".new.iso.upload-456789abcdef"
    fresh.touch()
    assert sweep_stale_temp_files(iso_dir) == [stale]
    assert live.temp.exists() and fresh.exists()
    assert sweep_stale_temp_files(iso_dir, now=time.time() + 60) == [fresh]
    live.abort()
    assert sorted(p.name for p in iso_dir.iterdir()) == ["boot.iso", "notes.txt"]


def test_the_sweep_keeps_files_whose_names_only_look_like_temp_files(iso_dir: Path) -> None:
    """An image may be named x.upload-1.iso: its checksum file .x.upload-1.iso.sha256 is no temp file."""
    with IsoUpload(iso_dir, "x.upload-1.iso", max_bytes=100) as upload:
        upload.write(b"data")
        upload.commit()
    (iso_dir / ".notes.upload-later").write_bytes(b"someone's own")
    kept = sorted(p.name for p in iso_dir.iterdir())
    assert ".x.upload-1.iso.sha256" in kept
    assert sweep_stale_temp_files(iso_dir, now=time.time() + 60) == []
    assert sorted(p.name for p in iso_dir.iterdir()) == kept


def test_a_checksum_of_a_changed_image_is_stale(iso_dir: Path) -> None:
    image = iso_dir / "boot.iso"
    write_checksum(image, "a" * 64)
    assert read_checksum(image, image.stat()) == "a" * 64
    image.write_bytes(b"y" * 11)
    assert read_checksum(image, image.stat()) is None
    checksum_path(image).write_text("garbage")
    assert read_checksum(image, image.stat()) is None
    assert hash_file(image) == hashlib.sha256(b"y" * 11).hexdigest()
    stop = threading.Event()
    stop.set()
    assert hash_file(image, stop) is None


# -- which VMs use an image, deleting -----------------------------------------------------------------

def test_vms_using_an_image(iso_dir: Path, tmp_path: Path) -> None:
    image = iso_dir / "boot.iso"
    (tmp_path / "alias").symlink_to(iso_dir)
    target = tmp_path / "packaged.iso"
    target.write_bytes(b"packaged")
    link = iso_dir / "link.iso"
    link.symlink_to(target)
    cdroms = [CdromSource("by-path", str(image)), CdromSource("by-alias", str(tmp_path / "alias" / "boot.iso")),
              CdromSource("by-link", str(link)), CdromSource("by-target", str(target)),
              CdromSource("other", "/nowhere.iso"), CdromSource("by-path", str(image), "before"),
              CdromSource("kept", str(image), "b"), CdromSource("kept", str(image), "a")]
    assert holders_of(image, cdroms) == [("by-alias", None), ("by-path", None), ("by-path", "before"),
                                         ("kept", "a"), ("kept", "b")]
    assert holders_of(link, cdroms) == [("by-link", None)]  # naming the target directly does not hold the link


def test_delete_refuses_held_and_unknown_images_and_removes_links_only(iso_dir: Path, tmp_path: Path) -> None:
    image = iso_dir / "boot.iso"
    write_checksum(image, "b" * 64)
    with pytest.raises(IsoInUse) as held:
        delete_iso(iso_dir, "boot.iso", [CdromSource("vm-b", str(image)), CdromSource("vm-a", str(image))])
    assert held.value.code is ErrorCode.ISO_IN_USE and held.value.to_dict()["vms"] == ["vm-a", "vm-b"]
    assert held.value.to_dict()["snapshots"] == []
    # Only a snapshot holds it (ejected since): a revert would put it back in the drive.
    with pytest.raises(IsoInUse) as kept:
        delete_iso(iso_dir, "boot.iso", [CdromSource("vm-a", str(image), "before-update")])
    body = kept.value.to_dict()
    assert (body["vms"], body["snapshots"]) == ([], [{"vm": "vm-a", "snapshot": "before-update"}])
    assert body["details"] == "iso 'boot.iso' is kept by the snapshots: vm-a/before-update"
    delete_iso(iso_dir, "boot.iso", [])
    assert not image.exists() and not checksum_path(image).exists()
    for name in ("boot.iso", "../secret.iso", "notes.txt"):
        with pytest.raises(LimenError) as unknown:
            delete_iso(iso_dir, name, [])
        assert unknown.value.code is ErrorCode.ISO_NOT_FOUND and str(iso_dir) not in unknown.value.details
    target = tmp_path / "packaged.iso"
    target.write_bytes(b"packaged")
    (iso_dir / "link.iso").symlink_to(target)
    (iso_dir / "dangling.iso").symlink_to(tmp_path / "gone.iso")
    delete_iso(iso_dir, "link.iso", [])
    delete_iso(iso_dir, "dangling.iso", [])
    assert target.read_bytes() == b"packaged"
    assert sorted(p.name for p in iso_dir.iterdir()) == ["notes.txt"]


# -- background checksums -----------------------------------------------------------------------------

async def test_missing_checksums_are_computed_once_per_version(iso_dir: Path) -> None:
    checksums = BackgroundChecksums()
    checksums.request(list_isos(iso_dir))
    await checksums.wait_idle()
    await checksums.close()
    image = iso_dir / "boot.iso"
    assert {iso.name: iso.sha256 for iso in list_isos(iso_dir)} == {"boot.iso": hashlib.sha256(b"x" * 10).hexdigest()}

    checksums = BackgroundChecksums()
    checksum_path(image).unlink()
    checksums.request(list_isos(iso_dir))
    checksums.request(list_isos(iso_dir))  # already queued: not twice
    assert checksums._queue == [image]
    await checksums.close()


async def test_closing_stops_the_work(iso_dir: Path) -> None:
    checksums = BackgroundChecksums()
    await checksums.close()
    checksums.request(list_isos(iso_dir))  # after close: nothing starts
    assert checksums._queue == []
    assert list_isos(iso_dir)[0].sha256 is None


def test_a_delete_that_meets_a_new_holder_on_its_second_look_puts_the_image_back(iso_dir: Path) -> None:
    """A VM created from the image (or given it) after the delete's first look at the CD-ROMs, before its
    unlink: both answered success, and the VM's CD-ROM named a deleted file."""
    image = iso_dir / "raced.iso"
    image.write_bytes(b"raced image")
    write_checksum(image, "c" * 64)
    seen_while_parked: list[list[str]] = []

    def new_vm_holds_it() -> list[CdromSource]:
        seen_while_parked.append(sorted(path.name for path in iso_dir.iterdir()))
        # Meanwhile a listing (which removes the checksums of images gone) keeps this one's, and an upload
        # cannot take the name the delete may give back.
        assert "raced.iso" not in [iso.name for iso in list_isos(iso_dir)]
        with pytest.raises(LimenError) as taken:
            IsoUpload(iso_dir, "raced.iso", 1 << 20)
        assert taken.value.code is ErrorCode.ISO_ALREADY_EXISTS and "being deleted" in taken.value.details
        return [CdromSource("made-meanwhile", str(image))]

    with pytest.raises(IsoInUse) as held:
        delete_iso(iso_dir, "raced.iso", [], new_vm_holds_it)
    assert held.value.to_dict()["vms"] == ["made-meanwhile"]
    assert image.read_bytes() == b"raced image" and read_checksum(image, image.stat()) == "c" * 64
    # While the second look ran, the image was under a hidden name: nothing could be given it then.
    (parked_view,) = seen_while_parked
    assert "raced.iso" not in parked_view and any(name.startswith(".raced.iso.deleting-") for name in parked_view)
    assert [path.name for path in iso_dir.iterdir() if "raced" in path.name and not path.name.endswith(".sha256")] \
        == ["raced.iso"]

    def fails() -> list[CdromSource]:
        raise LimenError(ErrorCode.HYPERVISOR_UNAVAILABLE, "libvirt went away")

    with pytest.raises(LimenError):
        delete_iso(iso_dir, "raced.iso", [], fails)
    assert image.read_bytes() == b"raced image"  # a second look that failed deletes nothing
    delete_iso(iso_dir, "raced.iso", [], list)
    assert not image.exists() and not checksum_path(image).exists()
    assert [path.name for path in iso_dir.iterdir() if "raced" in path.name] == []


def test_an_image_a_killed_delete_left_parked_gets_its_name_back(iso_dir: Path, tmp_path: Path) -> None:
    (iso_dir / ".kept.iso.deleting-0123456789ab").write_bytes(b"kept")
    (iso_dir / ".taken.iso.deleting-0123456789ab").write_bytes(b"old")
    (iso_dir / "taken.iso").write_bytes(b"uploaded since")
    target = tmp_path / "target.iso"
    target.write_bytes(b"t")
    (iso_dir / ".link.iso.deleting-0123456789ab").symlink_to(target)
    restored = restore_parked_images(iso_dir)
    assert sorted(path.name for path in restored) == ["kept.iso", "link.iso", "taken.iso"]
    assert (iso_dir / "kept.iso").read_bytes() == b"kept"
    assert (iso_dir / "taken.iso").read_bytes() == b"uploaded since"  # never replaced
    assert (iso_dir / "link.iso").is_symlink()
    assert not [path for path in iso_dir.iterdir() if ".deleting-" in path.name]


def test_a_dangling_link_that_holds_a_name_is_said_with_the_way_to_remove_it(iso_dir: Path, tmp_path: Path) -> None:
    """A link whose target went (its package removed) is in no listing, and an upload of its name said only
    'an ISO named … exists', an image nobody could see or find to delete."""
    (iso_dir / "dangling.iso").symlink_to(tmp_path / "removed-by-apt.iso")
    assert "dangling.iso" not in [image.name for image in list_isos(iso_dir)]
    with pytest.raises(LimenError) as taken:
        IsoUpload(iso_dir, "dangling.iso", 1 << 20)
    assert taken.value.code is ErrorCode.ISO_ALREADY_EXISTS
    assert "points nowhere" in taken.value.details and "DELETE /api/isos/dangling.iso" in taken.value.details
    delete_iso(iso_dir, "dangling.iso", [])
    with IsoUpload(iso_dir, "dangling.iso", 1 << 20) as upload:
        upload.write(b"now an image")
        assert upload.commit().name == "dangling.iso"
