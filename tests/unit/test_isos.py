from __future__ import annotations

from pathlib import Path

import pytest

from limen.errors import ErrorCode, LimenError
from limen.isos import list_isos, resolve_iso


@pytest.fixture
def iso_dir(tmp_path: Path) -> Path:
    (tmp_path / "isos").mkdir()
    (tmp_path / "isos" / "boot.iso").write_bytes(b"x" * 10)
    (tmp_path / "isos" / "notes.txt").write_text("not an image")
    (tmp_path / "secret.iso").write_bytes(b"outside")
    return tmp_path / "isos"


def test_lists_only_images(iso_dir: Path) -> None:
    assert [(iso.name, iso.size_bytes) for iso in list_isos(iso_dir)] == [("boot.iso", 10)]
    assert list_isos(iso_dir / "absent") == []


def test_resolves_a_plain_name(iso_dir: Path) -> None:
    assert resolve_iso(iso_dir, "boot.iso") == iso_dir / "boot.iso"


@pytest.mark.parametrize(
    "name", ["../secret.iso", "/etc/passwd", "sub/boot.iso", "..", ".", "", "missing.iso", "notes.txt", "a\x00.iso"]
)
def test_refuses_anything_else(iso_dir: Path, name: str) -> None:
    with pytest.raises(LimenError) as caught:
        resolve_iso(iso_dir, name)
    assert caught.value.code is ErrorCode.ISO_NOT_FOUND
