"""The console's JSON text frames: the seed's bytes, and valid JSON whatever the details hold."""

from __future__ import annotations

import json

import pytest

from limen.console import messages
from limen.errors import ErrorCode, LimenError


def test_status_frame_starts_with_the_seeds_exact_bytes() -> None:
    frame = messages.status_frame("Connected, checking VM status...", stage="check_vm", elapsed_ms=0)
    assert frame == '{"type":"status","message":"Connected, checking VM status...","stage":"check_vm","elapsed_ms":0}'
    assert frame.startswith('{"type":"status","message":"Connected, checking VM status..."')


def test_error_frame_has_the_seeds_fields_in_the_seeds_order() -> None:
    error = LimenError(ErrorCode.VNC_PORT_ERROR, "no port")
    frame = messages.error_frame(error, stage="get_port")
    assert frame == (
        '{"type":"error","error":"Failed to get VNC port","code":"VNC_PORT_ERROR","details":"no port",'
        '"message":"VNC port not available yet. Please wait a moment and try again.","stage":"get_port"}'
    )


@pytest.mark.parametrize(
    "details",
    [
        'say "hi"',
        "C:\\path\\to\\disk.qcow2",
        "line one\nline two\r\n\ttabbed",
        "ends with a backslash \\",
        '\\"',
        "한국어 오류: VNC 포트를 가져올 수 없음",
        "emoji 🖥️ and NUL \x00 and bell \x07 and DEL \x7f",
        "lone surrogate \udcff from undecodable bytes",
        "</script><script>alert(1)</script>",
        "",
    ],
)
def test_error_details_of_any_shape_stay_valid_json(details: str) -> None:
    frame = messages.error_frame(LimenError(ErrorCode.VNC_CONNECTION_FAILED, details), stage="connect")
    frame.encode("utf-8")  # a text frame must be valid UTF-8
    decoded = json.loads(frame)
    assert decoded["type"] == "error" and decoded["code"] == "VNC_CONNECTION_FAILED"
    assert decoded["details"] == details.encode("utf-8", "replace").decode("utf-8")
    assert "\n" not in frame  # one frame, one line


def test_non_ascii_stays_readable() -> None:
    frame = messages.error_frame(LimenError(ErrorCode.VM_NOT_FOUND, "가상 머신 없음"), stage="check_vm")
    assert "가상 머신 없음" in frame


def test_notice_frame() -> None:
    frame = messages.notice_frame("IDLE_WARNING", messages.idle_warning_text(60), stage="proxy", elapsed_ms=5,
                                  values={"seconds_left": 60})
    assert json.loads(frame) == {
        "type": "notice",
        "code": "IDLE_WARNING",
        "message": "No input for a while: the console closes in 60 s unless you use it.",
        "seconds_left": 60,  # for a page in another language
        "stage": "proxy",
        "elapsed_ms": 5,
    }


def test_every_error_code_fits_a_close_frame() -> None:
    for code in ErrorCode:
        assert 4000 <= code.close_code <= 4999
        assert len(code.name.encode()) <= 123  # a close reason's limit
    assert len({code.close_code for code in ErrorCode}) == len(ErrorCode)
