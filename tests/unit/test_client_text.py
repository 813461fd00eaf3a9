"""Error details quote what a client sent as it was typed: Korean stays Korean, what is not printable is escaped
once (limen.client_text). They escaped it to ASCII and then escaped the escapes: a Korean key given twice in a
body read '\\\\uc774\\\\ub984', a Korean Host header '\\\\xed\\\\x95\\\\x9c...'."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from limen.auth.http import check_origin
from limen.auth.site import Site
from limen.client_text import header_text, printable, quoted
from limen.errors import LimenError
from limen.settings import Settings, load_settings
from tests.conftest import app_client


def as_asgi_header(text: str) -> str:
    """What ASGI hands over for a header a client wrote as ``text`` in UTF-8: each byte as one character."""
    return text.encode().decode("latin-1")


def test_readable_text_stays_as_typed_and_what_is_not_printable_is_escaped_once() -> None:
    assert quoted("이름") == "'이름'"
    assert quoted("a\nb\x00c") == r"'a\nb\x00c'"
    assert quoted("evil\u202etxt.exe") == r"'evil\u202etxt.exe'"  # a right-to-left override cannot turn the line
    assert quoted("\udcff") == r"'\udcff'"
    assert quoted("가" * 101) == "'" + "가" * 100 + "'…" and quoted("ab", 1) == "'a'…"
    assert printable("한\x9c글", 2) == r"한\x9c…"


def test_a_headers_bytes_read_as_the_utf8_its_sender_wrote() -> None:
    assert header_text(as_asgi_header("http://한국.kr")) == "http://한국.kr"
    # Bytes that are not UTF-8 stay themselves: two of them never read alike
    assert quoted(header_text("caf\xe9")) == r"'caf\udce9'" != quoted(header_text("caf\xe8"))
    assert header_text("이름") == "이름"  # already text


def details_of(check: Callable[[], None]) -> str:
    with pytest.raises(LimenError) as caught:
        check()
    return caught.value.details


def test_a_korean_host_or_origin_is_named_as_typed() -> None:
    site = Site.of(load_settings(None, host="0.0.0.0", port=8080, public_url="http://limen.example:8080"),
                   addresses=lambda: ["127.0.0.1"], names=lambda: [])
    details = details_of(lambda: site.check_host(as_asgi_header("한국.kr")))
    assert details.startswith("the Host header '한국.kr' names no address"), details
    details = details_of(lambda: site.check_host_headers([as_asgi_header("한국.kr"), "limen.example:8080"]))
    assert "('한국.kr', 'limen.example:8080')" in details, details
    details = details_of(lambda: check_origin(as_asgi_header("http://한국.kr"), own={"http://limen.example"},
                                              allowed=[]))
    assert details == "origin 'http://한국.kr' is not allowed"


async def test_a_key_given_twice_is_named_as_typed(make_settings: Callable[..., Settings]) -> None:
    async with app_client(make_settings()) as client:
        for key, shown in [("이름", "'이름'"), ("a\\nb", r"'a\nb'")]:  # the second: a newline in JSON
            body = f'{{"{key}": 1, "{key}": 2}}'.encode()
            answer = await client.post("/api/vms", content=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 400 and answer.json()["code"] == "INVALID_REQUEST"
            assert f"the key {shown} is given twice in one object" in answer.json()["details"], answer.json()
