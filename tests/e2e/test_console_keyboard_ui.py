"""The console's keyboard in Chromium against real QEMU VMs: paste as typing arrives exact, the keyboard can
leave the screen without leaving keys pressed in the guest, the send-keys menu reaches the guest, and noVNC
arriving after limen's handshake still gets every VNC byte.

The VMs boot a GRUB ISO built here whose grub.cfg mirrors GRUB's terminal to the serial port, and are
defined through libvirt directly with a ``<serial type='file'>``: what GRUB prints (the typed command line
and ``echo``'s output) lands in a log file the test reads back exactly. limen shows any domain to an admin.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import libvirt
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import QEMU_URI
from tests.e2e.helpers import ARTIFACTS, PHONE, hold_novnc, save_screenshot, start_limen
from tests.support.idle_guests import typed_into
from tests.support.server import LimenProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

SERIAL_GRUB_CFG = """serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=-1
"""
PROMPT = "grub> "
ANSI_SEQUENCE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SHIFTED = '!@#$%^&*()_+{}|:"<>?~'
# Everything a US keyboard types except the single quote, which cannot stand inside GRUB's '…'.
PAYLOAD_ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" + SHIFTED + "`-=[]\\;,./ "
)


@pytest.fixture(scope="module")
def serial_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GRUB rescue ISO (as scripts/setup-host.sh builds the demo one) that mirrors GRUB to serial."""
    if shutil.which("grub-mkrescue") is None:
        pytest.fail("grub-mkrescue is needed (scripts/setup-host.sh installs grub-common, grub-pc-bin)")
    tmp = tmp_path_factory.mktemp("serial-iso")
    (tmp / "tree" / "boot" / "grub").mkdir(parents=True)
    (tmp / "tree" / "boot" / "grub" / "grub.cfg").write_text(SERIAL_GRUB_CFG)
    iso = tmp / "grub-serial.iso"
    subprocess.run(["grub-mkrescue", "-o", str(iso), str(tmp / "tree")], check=True, capture_output=True,
                   timeout=120)
    return iso


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimenProcess]:
    process = start_limen(tmp_path_factory.mktemp("limen-keys"))
    yield process
    process.stop()


class SerialVm:
    """A running QEMU VM booting ``serial_iso``; ``text()`` is its serial log with terminal escapes removed."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log

    def text(self) -> str:
        raw = self.log.read_bytes().decode("latin-1") if self.log.exists() else ""
        return ANSI_SEQUENCE.sub("", raw)

    def prompts(self) -> int:
        return self.text().count(PROMPT)

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"the serial log never showed {what}; its last 600 characters: {text[-600:]!r}")
            time.sleep(0.2)

    def outputs(self) -> list[str]:
        """What each command run at a ``grub>`` prompt printed, in order, as the terminal shows it (lines
        wrapped at 80 columns). The command line itself is drawn with cursor moves, so only the output is
        read: after the command's closing quote when it has one, else after its line."""
        segments = self.text().replace("\r", "").split(PROMPT)[1:-1]
        found = []
        for segment in segments:
            output = segment.rsplit("'", 1)[1] if "'" in segment else segment.split("\n", 1)[-1]
            found.append(output.strip("\n"))
        return found


def unwrapped_equals(expected: str, shown: str) -> bool:
    """Whether GRUB showed ``expected`` as ``shown``: it breaks lines at 80 columns, on a space when there
    is one (the space gives way to the line break); every other character must be there, in order."""
    position = 0
    for index, line in enumerate(shown.split("\n")):
        if index > 0 and not expected.startswith(line, position) and expected.startswith(" " + line, position):
            position += 1
        if not expected.startswith(line, position):
            return False
        position += len(line)
    return position == len(expected)


@pytest.fixture
def serial_vm(serial_iso: Path, vm_names: Callable[[], str], tmp_path: Path,
              request: pytest.FixtureRequest) -> Iterator[SerialVm]:
    """The VM, at normal priority; its serial log is kept as test-artifacts/serial-<test>.log."""
    name = vm_names()
    log = tmp_path / "serial.log"
    xml = f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='cdrom'/></os>
  <devices>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{serial_iso}'/>
      <target dev='hdc' bus='ide'/><readonly/></disk>
    <serial type='file'><source path='{log}'/><target port='0'/></serial>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
  </devices>
</domain>"""
    conn = libvirt.open(QEMU_URI)
    try:
        conn.defineXML(xml).create()
    finally:
        conn.close()
    vm = SerialVm(name, log)
    with typed_into(name):  # GRUB reads keys from a 15-key buffer: a starved guest loses what overflows it
        vm.wait_for(lambda text: PROMPT in text, "GRUB's prompt")
        yield vm
    if log.exists():
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copyfile(log, ARTIFACTS / f"serial-{request.node.name}.log")


def open_console(page: Page, server: LimenProcess, vm: SerialVm) -> None:
    """Opens the VM's console. The libvirtd these tests share with parallel suites sometimes answers too
    late (HYPERVISOR_UNAVAILABLE, the page's Retry): these tests are about the keyboard, so they retry
    that once, as a person would; any other failure fails the test."""
    page.goto(f"{server.base_url}/vms/{vm.name}/console")
    page.wait_for_selector('body[data-console-state="connected"], body[data-console-state="failed"]',
                           timeout=30_000)
    if page.locator('#panel-extra .error-box[data-code="HYPERVISOR_UNAVAILABLE"]').count():
        page.get_by_role("button", name="Retry", exact=True).click()
    page.wait_for_selector('body[data-console-state="connected"]', timeout=30_000)


def paste(page: Page, text: str) -> None:
    page.get_by_role("button", name="Paste as typing").click()
    page.get_by_label("Text to type").fill(text)
    page.get_by_role("button", name="Type it").click()


KEY_GAP_MS = 50  # 20 keys a second


def press_typed(page: Page, text: str) -> None:
    """Types ``text`` on Chromium's keyboard as a person on a US keyboard would, Shift held for shifted
    characters (Playwright's ``type`` sends "H" without Shift, which a scancode-based guest sees as "h"),
    a key every KEY_GAP_MS at most, a fast typist's pace: keys in a burst overflow GRUB's 15-key buffer
    whenever the guest is slow to read them."""
    shifted_keys = dict(zip(SHIFTED, ["Digit1", "Digit2", "Digit3", "Digit4", "Digit5", "Digit6", "Digit7",
                                      "Digit8", "Digit9", "Digit0", "Minus", "Equal", "BracketLeft",
                                      "BracketRight", "Backslash", "Semicolon", "Quote", "Comma", "Period",
                                      "Slash", "Backquote"], strict=True))
    for index, char in enumerate(text):
        if index:
            page.wait_for_timeout(KEY_GAP_MS)
        if char in shifted_keys:
            page.keyboard.press(f"Shift+{shifted_keys[char]}")
        elif char.isupper():
            page.keyboard.press(f"Shift+Key{char}")
        elif char == " ":
            page.keyboard.press("Space")
        elif char == "\n":
            page.keyboard.press("Enter")
        else:
            page.keyboard.press(char)


def payload_lines(total: int, width: int = 200) -> list[str]:
    """``echo`` command lines of about ``width`` characters, ``total`` characters in all with their line
    ends; each payload starts with its number so a lost or repeated line shows."""
    lines: list[str] = []
    length = 0
    index = 0
    while length < total:
        head = f"L{len(lines):02d}:"
        size = min(width, total - length) - len("echo ''\n") - len(head)
        body = "".join(PAYLOAD_ALPHABET[(index + i * 7) % len(PAYLOAD_ALPHABET)] for i in range(max(size, 1)))
        index += size
        lines.append(head + body)
        length += len(f"echo '{lines[-1]}'\n")
    return lines


def assert_echoed(vm: SerialVm, payloads: list[str], *, before: int, timeout: float) -> None:
    """The commands after the first ``before`` prompts printed each payload exactly, in order."""
    vm.wait_for(lambda _text: len(vm.outputs()) >= before + len(payloads), f"{len(payloads)} more prompts",
                timeout=timeout)
    shown = vm.outputs()[before:before + len(payloads)]
    for want, have in zip(payloads, shown, strict=True):
        assert unwrapped_equals(want, have), f"\nwanted {want!r}\n shown {have!r}"


# Two minutes of typing at GRUB's pace; the database is read only at sign-in and admission.
@pytest.mark.same_on_any_database
@pytest.mark.timeout(360)
def test_paste_as_typing_arrives_exact_and_refuses_what_no_key_types(
    server: LimenProcess, serial_vm: SerialVm, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server)
    open_console(page, server, serial_vm)
    page.locator("#screen canvas").click()

    # The cases: Shift for upper case and !, every shifted symbol, digits.
    before = len(serial_vm.outputs())
    short = ["Hi!", f"AZ az 09 {SHIFTED} `-=[]\\;,./"]
    paste(page, "".join(f"echo '{p}'\n" for p in short))
    assert_echoed(serial_vm, short, before=before, timeout=60)
    expect(page.locator("#conn-status")).to_contain_text("Connected")

    # Characters no US key types are refused before anything is typed, and named.
    prompts = serial_vm.prompts()
    log_size = len(serial_vm.text())
    paste(page, "echo 한글 ok é\n")
    error = page.locator("#paste-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Nothing was typed: 3 characters cannot be typed on a US keyboard")
    expect(error).to_contain_text("한 (U+D55C), 글 (U+AE00), é (U+00E9)")
    expect(page.locator("#paste-dialog")).to_have_attribute("open", "")
    save_screenshot(page, "console-paste-refused-1280")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    save_screenshot(page, "console-paste-refused-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.wait_for_timeout(1500)
    assert serial_vm.prompts() == prompts and len(serial_vm.text()) == log_size, "something was typed"
    page.get_by_role("button", name="Cancel").click()

    # 2,000 characters in 200-character echo lines: every one arrives exact, Enter included.
    lines = payload_lines(2000)
    text = "".join(f"echo '{p}'\n" for p in lines)
    assert 1990 <= len(text) <= 2000
    before = len(serial_vm.outputs())
    started = time.monotonic()
    paste(page, text)
    page.wait_for_function("() => document.body.dataset.typed === '2'", timeout=240_000)
    took = time.monotonic() - started
    assert_echoed(serial_vm, lines, before=before, timeout=30)
    print(f"typed {len(text)} characters in {took:.1f} s ({len(text) / took:.0f} characters/s)")
    save_screenshot(page, "console-pasted-2000-1280")


def focused_id(page: Page) -> str:
    value: str = page.evaluate(
        "() => document.activeElement ? document.activeElement.id || document.activeElement.tagName : ''"
    )
    return value


def test_the_keyboard_leaves_the_screen_without_leaving_keys_pressed_in_the_guest(
    server: LimenProcess, serial_vm: SerialVm, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server)
    open_console(page, server, serial_vm)
    page.locator("#screen canvas").click()
    hint = page.locator("#leave-hint")
    expect(hint).to_be_visible()
    expect(hint).to_have_text("Keys go to the VM · Ctrl+Alt+Shift leaves the console")
    save_screenshot(page, "console-leave-hint-1280")
    # It lies over the screen's bottom rows: gone after a few seconds, the screen still focused.
    expect(hint).to_be_hidden(timeout=8000)
    assert page.evaluate("() => document.getElementById('screen').contains(document.activeElement)")
    expect(page.locator("#conn-status")).to_have_attribute("title", re.compile("Ctrl\\+Alt\\+Shift"))

    for round_number in range(4):
        before = len(serial_vm.outputs())
        press_typed(page, f"echo 'Hi! {round_number}'\n")
        assert_echoed(serial_vm, [f"Hi! {round_number}"], before=before, timeout=30)

        # The chord, pressed in a different order each round; the focus lands on the toolbar.
        order = [["Control", "Alt", "Shift"], ["Shift", "Control", "Alt"], ["Alt", "Shift", "Control"],
                 ["Control", "Shift", "Alt"]][round_number]
        for key in order:
            page.keyboard.down(key)
        assert focused_id(page) == "btn-keys"
        for key in reversed(order):
            page.keyboard.up(key)
        expect(hint).to_be_hidden()
        expect(page.locator("#conn-status")).to_contain_text("Left the screen")

        # Tab through the toolbar to the screen; keys typed there reach the VM unchanged (no stuck modifier).
        seen = []
        for _ in range(10):
            page.keyboard.press("Tab")
            seen.append(focused_id(page))
            if seen[-1] == "CANVAS":
                break
        assert seen[:6] == ["btn-paste", "btn-clipboard", "btn-scale", "btn-fullscreen", "btn-popout",
                            "btn-connect"], seen
        assert seen[-1] == "CANVAS", seen
        expect(hint).to_be_visible()
        before = len(serial_vm.outputs())
        press_typed(page, "echo Hi!\n")
        assert_echoed(serial_vm, ["Hi!"], before=before, timeout=30)


def test_send_keys_menu_reaches_the_guest(
    server: LimenProcess, serial_vm: SerialVm, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server)
    open_console(page, server, serial_vm)
    page.locator("#screen canvas").click()

    # Tab from the menu completes a GRUB command: "ech" + Tab + " tabbed" runs echo.
    before = len(serial_vm.outputs())
    press_typed(page, "ech")
    menu_button = page.get_by_role("button", name="Send keys")
    menu_button.click()
    menu = page.get_by_role("menu", name="Send keys")
    expect(menu).to_be_visible()
    expect(page.get_by_role("menuitem")).to_have_count(18)
    save_screenshot(page, "console-send-keys-1280")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(300)
    save_screenshot(page, "console-send-keys-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    # Keyboard operable: arrows move, Enter sends, the focus returns to the screen.
    expect(page.get_by_role("menuitem", name="Ctrl+Alt+Del")).to_be_focused()
    page.keyboard.press("End")
    expect(page.get_by_role("menuitem", name="Super")).to_be_focused()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    expect(page.get_by_role("menuitem", name="Tab", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(menu).to_be_hidden()
    assert focused_id(page) == "CANVAS"
    press_typed(page, "tabbed\n")
    assert_echoed(serial_vm, ["tabbed"], before=before, timeout=30)
    assert "can't find command" not in serial_vm.text()

    # Escape closes the menu and gives the focus back to its button.
    menu_button.click()
    expect(menu).to_be_visible()
    page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    assert focused_id(page) == "btn-keys"

    # Ctrl+Alt+Del resets the VM: the firmware reboots it and GRUB greets again on the serial port.
    banners = serial_vm.text().count("Minimal BASH-like line editing")
    menu_button.click()
    page.get_by_role("menuitem", name="Ctrl+Alt+Del").click()
    serial_vm.wait_for(lambda text: text.count("Minimal BASH-like line editing") > banners, "GRUB starting again",
                       timeout=60)


@pytest.mark.same_on_any_database
def test_novnc_arriving_after_the_handshake_gets_the_vm_screen_and_types(
    server: LimenProcess, serial_vm: SerialVm, signed_in_page: Callable[..., Page]
) -> None:
    """The page opens the socket while noVNC still loads; a handshake that ends first has its VNC bytes held
    (the banner among them) and given to noVNC, in order, once it arrives."""
    page = signed_in_page(server)
    held = hold_novnc(page)
    page.goto(f"{server.base_url}/vms/{serial_vm.name}/console", wait_until="domcontentloaded")
    page.wait_for_selector('#stages li[data-stage="proxy"]', timeout=30_000)  # limen's last status came
    time.sleep(1.5)  # QEMU's banner has come too, and waits in the page; the watchdog does not fire meanwhile
    expect(page.locator("body")).to_have_attribute("data-console-state", "handshake")
    assert len(held) == 1
    held[0].continue_()
    page.wait_for_selector('body[data-console-state="connected"]', timeout=30_000)
    page.locator("#screen canvas").click()
    before = len(serial_vm.outputs())
    press_typed(page, "echo 'Held: Hi!'\n")
    assert_echoed(serial_vm, ["Held: Hi!"], before=before, timeout=30)


@pytest.mark.same_on_any_database
def test_novnc_failing_after_the_handshake_says_so_and_closes_the_console(
    server: LimenProcess, serial_vm: SerialVm, signed_in_page: Callable[..., Page]
) -> None:
    page = signed_in_page(server)
    held = hold_novnc(page)
    page.goto(f"{server.base_url}/vms/{serial_vm.name}/console", wait_until="domcontentloaded")
    page.wait_for_selector('#stages li[data-stage="proxy"]', timeout=30_000)
    held[0].fulfill(status=404, body="gone")
    expect(page.locator("#panel-extra .error-box")).to_have_attribute("data-code", "NOVNC_MISSING")
    expect(page.locator("body")).to_have_attribute("data-console-state", "failed")
    # The held console was closed: limen's audit row for it ends (no session is left open for nothing).
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers, timeout=10) as api:
        deadline = time.monotonic() + 10
        while True:
            sessions = [row for row in api.get("/api/console-sessions").json() if row["vm_name"] == serial_vm.name]
            if sessions and all(row["ended_at"] for row in sessions):
                break
            assert time.monotonic() < deadline, sessions
            time.sleep(0.2)
