"""``limen iso list | upload | delete`` on a temporary ISO directory (libvirt's test driver for delete)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from limen.cli import app
from tests.support.cli import CliRunner
from tests.unit.test_isos import put_latin1_named_image


def limen(iso_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--iso-dir", str(iso_dir), "--libvirt-uri", "test:///default", *args])
    return result.exit_code, result.stdout, result.stderr


def test_upload_list_and_delete(tmp_path: Path) -> None:
    iso_dir = tmp_path / "isos"  # made by the first upload
    source = tmp_path / "Ünï source.iso"
    source.write_bytes(b"\x42" * (3 * 2**20 + 5))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()

    code, out, err = limen(iso_dir, "iso", "upload", str(source))
    assert code == 0, err
    assert out.strip() == f"uploaded Ünï source.iso: 3 MiB, sha256 {digest}"  # --json has the exact bytes
    # Plain progress lines without a terminal, in the sizes the pages use.
    assert "uploaded 1 MiB of 3 MiB (33%)" in err and "(100%)" in err

    code, out, err = limen(iso_dir, "--json", "iso", "upload", str(source), "--name", "copy.img")
    assert code == 0, err
    assert json.loads(out)["name"] == "copy.img" and json.loads(out)["sha256"] == digest
    assert err == ""

    code, out, _ = limen(iso_dir, "--json", "iso", "list")
    listed = [(iso["name"], iso["sha256"]) for iso in json.loads(out)]
    assert listed == [("copy.img", digest), ("Ünï source.iso", digest)]
    code, out, _ = limen(iso_dir, "iso", "list")
    assert out.splitlines()[0].split() == ["NAME", "SIZE", "MODIFIED", "SHA256"] and digest[:16] in out

    code, out, err = limen(iso_dir, "iso", "delete", "copy.img")
    assert code == 0, err
    assert out.strip() == "deleted copy.img"
    assert sorted(p.name for p in iso_dir.iterdir()) == [".Ünï source.iso.sha256", "Ünï source.iso"]


def test_refusals_name_their_code_and_keep_nothing(tmp_path: Path) -> None:
    iso_dir = tmp_path / "isos"
    iso_dir.mkdir()
    (iso_dir / "taken.iso").write_bytes(b"old")
    source = tmp_path / "new.iso"
    source.write_bytes(b"new data")

    code, _, err = limen(iso_dir, "iso", "upload", str(source), "--name", "taken.iso")
    assert code == 1 and "[ISO_ALREADY_EXISTS]" in err
    code, _, err = limen(iso_dir, "iso", "upload", str(source), "--name", "../escape.iso")
    assert code == 1 and "[VALIDATION_ERROR]" in err
    code, _, err = limen(iso_dir, "iso", "delete", "absent.iso")
    assert code == 1 and "[ISO_NOT_FOUND]" in err
    code, _, err = limen(iso_dir, "iso", "upload", str(tmp_path / "missing.iso"))
    assert code == 2
    assert sorted(p.name for p in iso_dir.iterdir()) == ["taken.iso"]
    assert (iso_dir / "taken.iso").read_bytes() == b"old"


def test_the_size_limit_applies(tmp_path: Path) -> None:
    iso_dir = tmp_path / "isos"
    source = tmp_path / "big.iso"
    source.write_bytes(b"x" * 2000)
    runner = CliRunner(env={"LIMEN_MAX_ISO_BYTES": "1000"})
    result = runner.invoke(app, ["--iso-dir", str(iso_dir), "iso", "upload", str(source)])
    assert result.exit_code == 1 and "[PAYLOAD_TOO_LARGE]" in result.stderr
    assert not iso_dir.exists() or list(iso_dir.iterdir()) == []


def test_list_skips_a_name_not_in_utf8(tmp_path: Path) -> None:
    iso_dir = tmp_path / "isos"
    iso_dir.mkdir()
    (iso_dir / "ok.iso").write_bytes(b"ok")
    put_latin1_named_image(iso_dir)
    for args in (["--json", "iso", "list"], ["iso", "list"]):
        code, out, err = limen(iso_dir, *args)
        assert code == 0, err
        assert "ok.iso" in out and "caf" not in out
