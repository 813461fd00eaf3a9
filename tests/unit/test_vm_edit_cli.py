"""``limen vm media|set|resize-disk|finish-install`` on libvirt's test driver (no daemon): usage errors
(exit 2), refusals (exit 1 with the code), and the changes. The CD and disk growth need real QEMU:
tests/integration/test_vm_edit.py::test_cli_media_set_resize_and_finish_install."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import typer

from limen.cli import app, parse_size
from tests.conftest import DEMO_ISO, ISO_DIR, TEST_DRIVER_URI
from tests.support.cli import CliRunner


@pytest.fixture
def held_test_driver() -> Iterator[None]:
    """The test driver's state lives while a connection to it is open: keep one, so that each CLI run
    (its own connection) sees what the previous one did."""
    conn = libvirt.open(TEST_DRIVER_URI)
    yield
    conn.close()


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    options = ["--libvirt-uri", TEST_DRIVER_URI, "--data-dir", str(tmp_path / "data"), "--iso-dir", str(ISO_DIR)]
    result = CliRunner().invoke(app, [*options, *args], env={"LIMEN_STORAGE_POOL_DIR": str(tmp_path / "pool")})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.usefixtures("held_test_driver")
def test_set_and_refusals(tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert run(tmp_path, "vm", "create", name, "--memory", "64", "--disk", "1", "--iso", DEMO_ISO)[0] == 0
    code, out, err = run(tmp_path, "--json", "vm", "set", name, "--vcpus", "2", "--memory", "96",
                         "--boot", "hd,cdrom", "--autostart")
    assert code == 0, err
    vm = json.loads(out)
    assert (vm["vcpus"], vm["memory_mib"], vm["boot_order"], vm["autostart"]) == (2, 96, ["hd", "cdrom"], True)

    assert run(tmp_path, "vm", "start", name)[0] == 0
    code, out, err = run(tmp_path, "vm", "set", name, "--boot", "cdrom", "--boot", "hd", "--no-autostart")
    assert code == 0, err
    assert "boot_order hd,cdrom → cdrom,hd (pending restart)" in err and "autostart true → false" in err
    assert "pending restart  boot_order cdrom, hd (at the next start)" in out
    code, out, err = run(tmp_path, "vm", "show", name)
    assert "pending restart" in out and f"cd-rom           hdc: {DEMO_ISO}" in out

    code, _, err = run(tmp_path, "vm", "set", name, "--name", f"{name}-2")
    assert code == 1 and "VM_MUST_BE_STOPPED" in err and "Stop the VM" in err
    code, _, err = run(tmp_path, "vm", "set", name, "--vcpus", "0")
    assert code == 1 and "VALIDATION_ERROR" in err and "vcpus" in err
    code, _, err = run(tmp_path, "vm", "resize-disk", name, "vda", "512M")
    assert code == 1 and "DISK_SHRINK_REFUSED" in err
    code, _, err = run(tmp_path, "vm", "resize-disk", name, "vdz", "5")
    assert code == 1 and "DISK_NOT_FOUND" in err
    code, _, err = run(tmp_path, "vm", "media", name, "missing.iso")
    assert code == 1 and "VALIDATION_ERROR" in err and "no image named 'missing.iso'" in err
    code, out, _ = run(tmp_path, "--json", "vm", "media", name)
    assert json.loads(out) == {"target": "hdc", "iso": DEMO_ISO}

    assert run(tmp_path, "vm", "stop", name, "--force")[0] == 0
    code, out, err = run(tmp_path, "--json", "vm", "set", name, "--name", f"{name}-2")
    assert code == 0, err
    assert json.loads(out)["name"] == f"{name}-2"
    assert run(tmp_path, "vm", "delete", f"{name}-2")[0] == 0


@pytest.mark.usefixtures("held_test_driver")
def test_media_on_a_vm_without_a_drive_and_finish_install_without_a_disk(tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert run(tmp_path, "vm", "create", name, "--memory", "64")[0] == 0
    assert run(tmp_path, "vm", "media", name) == (0, "no CD-ROM drive\n", "")
    assert run(tmp_path, "vm", "media", name, "--eject")[:2] == (0, "no CD-ROM drive\n")
    code, _, err = run(tmp_path, "vm", "finish-install", name)
    assert code == 1 and "DISK_NOT_FOUND" in err
    assert run(tmp_path, "vm", "delete", name)[0] == 0


@pytest.mark.parametrize("args", [
    ("vm", "media", "x", DEMO_ISO, "--eject"),
    ("vm", "set", "x"),
    ("vm", "resize-disk", "x", "vda", "lots"),
    ("vm", "resize-disk", "x", "vda", "20 parsecs"),
    ("vm", "resize-disk", "x", "vda", "-5G"),
    ("vm", "set", "x", "--vcpus", "two"),
])
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert run(tmp_path, *args)[0] == 2


@pytest.mark.parametrize(("text", "size"), [
    ("20", 20 * 2**30), ("20G", 20 * 2**30), ("20gib", 20 * 2**30), ("512M", 2**29), ("1T", 2**40),
    ("21474836480B", 20 * 2**30), (" 3 GiB ", 3 * 2**30), ("4k", 4096),
])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "G", "1.5G", "1e9", "20 GB", "٣G", "0x10", "9" * 5000])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_size(text)


@pytest.mark.usefixtures("held_test_driver")
def test_an_empty_cd_drive_is_shown_as_empty(tmp_path: Path) -> None:
    # `vm show` printed its disk line as "None (cdrom)", a Python None, in every language.
    name = f"cli-empty-cd-{uuid.uuid4().hex[:8]}"
    conn = libvirt.open(TEST_DRIVER_URI)
    try:
        conn.defineXML(f"""<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>
          <os><type>hvm</type></os><devices><disk type='file' device='cdrom'><target dev='hdc' bus='ide'/>
          <readonly/></disk></devices></domain>""")
        code, out, err = run(tmp_path, "vm", "show", name)
        assert code == 0, err
        assert "None" not in out and "hdc: empty" in out and "empty (cdrom)" in out, out
    finally:
        conn.lookupByName(name).undefine()
        conn.close()
