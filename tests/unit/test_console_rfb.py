"""The RFB banner check, fed bytes by hand."""

from __future__ import annotations

import random

import pytest

from limen.console.rfb import (
    BANNER_LENGTH,
    BannerReader,
    BannerStatus,
    is_banner,
    only_asks_for_updates,
    protocol_version,
)


@pytest.mark.parametrize("banner", [b"RFB 003.003\n", b"RFB 003.007\n", b"RFB 003.008\n", b"RFB 003.889\n"])
def test_valid_banners(banner: bytes) -> None:
    reader = BannerReader()
    verdict = reader.feed(banner)
    assert verdict.status is BannerStatus.VALID and verdict.data == banner
    assert reader.wanted() == 0
    assert is_banner(banner)


def test_a_banner_in_pieces() -> None:
    reader = BannerReader()
    banner = b"RFB 003.008\n"
    for index, value in enumerate(banner):
        assert reader.wanted() == BANNER_LENGTH - index
        verdict = reader.feed(bytes([value]))
    assert verdict.status is BannerStatus.VALID and verdict.data == banner


@pytest.mark.parametrize(
    ("data", "seen"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n", 1),
        (b"SSH-2.0-Open", 1),
        (b"RFB 03.008\n\n", 6),
        (b"RFB 003,008\n", 8),
        (b"RFB 003.008\r", 12),
        (b"rfb 003.008\n", 1),
        (b"\x00\x00\x00\x00", 1),
    ],
)
def test_garbage_is_refused_on_its_first_wrong_byte(data: bytes, seen: int) -> None:
    reader = BannerReader()
    verdict = reader.feed(data[: reader.wanted()])
    assert verdict.status is BannerStatus.INVALID
    assert "expected an RFB banner" in verdict.reason
    assert len(verdict.data) >= seen
    assert reader.wanted() == 0


def test_early_close() -> None:
    reader = BannerReader()
    assert reader.eof().reason == "the server closed the connection before sending anything"
    partial = BannerReader()
    partial.feed(b"RFB 00")
    verdict = partial.eof()
    assert verdict.status is BannerStatus.INVALID and "after b'RFB 00'" in verdict.reason


def test_reader_never_takes_more_than_the_banner() -> None:
    reader = BannerReader()
    with pytest.raises(ValueError, match="wanted at most 12"):
        reader.feed(b"RFB 003.008\nextra")
    reader.feed(b"RFB 003.008\n")
    with pytest.raises(RuntimeError):
        reader.feed(b"x")


def test_reason_shows_untrusted_bytes_safely() -> None:
    reader = BannerReader()
    verdict = reader.feed(b'\n"\\\xff\x00' + b"z" * 7)
    assert verdict.status is BannerStatus.INVALID
    assert verdict.reason.isprintable()


def test_protocol_version() -> None:
    assert protocol_version(b"RFB 003.008\n") == (3, 8)
    with pytest.raises(ValueError, match="not an RFB banner"):
        protocol_version(b"RFB 3.8\n")


UPDATE_REQUEST = bytes([3, 1, 0, 0, 0, 0, 0x04, 0x00, 0x03, 0x00])  # incremental, the whole 1024x768 screen


@pytest.mark.parametrize("message", [UPDATE_REQUEST, UPDATE_REQUEST * 3])
def test_update_requests_alone_are_not_input(message: bytes) -> None:
    assert only_asks_for_updates(message)


@pytest.mark.parametrize("message", [
    b"",  # an empty message still says someone is there, as before
    bytes([4, 1, 0, 0, 0, 0, 0, 0x61]),  # KeyEvent: "a" down
    bytes([5, 0, 0, 10, 0, 20]),  # PointerEvent
    bytes([255, 0, 1, 0, 0, 0, 0, 0x61, 0, 0, 0, 0x1e]),  # QEMU extended key event
    UPDATE_REQUEST + bytes([6, 0, 0, 0, 0, 0, 0, 2]) + b"hi",  # a request and a paste in one message
    bytes([6, 0, 0, 0, 0, 0, 0, 2]) + b"hi",  # ClientCutText, 10 bytes long
    b"RFB 003.008\n",
])
def test_anything_else_is_input(message: bytes) -> None:
    assert not only_asks_for_updates(message)


def _each_request_type_byte_is_an_update_request(message: bytes) -> bool:
    """The rule written out plainly, one byte at a time: the fast form must always agree with it."""
    length = len(message)
    if length == 0 or length % 10:
        return False
    return all(message[at] == 3 for at in range(0, length, 10))


def _random_browser_messages(count: int) -> list[bytes]:
    """Messages made mostly of update requests, with a few other bytes at random places, often the type
    byte 3 itself, so both answers and every near miss come up; lengths around multiples of ten."""
    chance = random.Random(6143)
    messages = []
    for _ in range(count):
        length = chance.choice([0, 1, 9, 10, 11, 19, 20, 21, 30, 40, 100, 1000, chance.randrange(0, 300)])
        message = bytearray((UPDATE_REQUEST * (length // 10 + 1))[:length])
        for _ in range(chance.choice([0, 0, 1, 2, 5])):
            if length:
                message[chance.randrange(length)] = chance.choice([3, 3, 0, 4, 5, 255, chance.randrange(256)])
        messages.append(bytes(message))
    return messages


def test_the_fast_rule_agrees_with_the_plain_one() -> None:
    messages = _random_browser_messages(5000)
    disagreements = [message for message in messages
                     if only_asks_for_updates(message) != _each_request_type_byte_is_an_update_request(message)]
    assert disagreements == []
    answers = {_each_request_type_byte_is_an_update_request(message) for message in messages}
    assert answers == {True, False}  # the messages reach both sides of the rule
