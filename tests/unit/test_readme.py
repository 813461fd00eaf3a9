from __future__ import annotations

from pathlib import Path

from limen.errors import ErrorCode
from limen.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_error_code_is_documented_with_its_status_and_close_code() -> None:
    for code in ErrorCode:
        row = f"| `{code.name}` | {code.http_status} | {code.close_code} | {code.title} | {code.user_message} |"
        assert row in README, row


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"LIMEN_{name.upper()}" in README, name
