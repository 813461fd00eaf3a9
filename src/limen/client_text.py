"""How an error's details quote what a client sent (a header, a JSON key, an address): as it was typed.

Why: details quoted such text escaped to ASCII first, then in quotes by ``repr``, which escaped the escapes: a
Korean JSON key given twice read ``'\\\\uc774\\\\ub984'`` and a Korean Host header ``'\\\\xed\\\\x95\\\\x9c…'``, to
users who had typed 이름 and 한국. Now readable text stays as it is; what is not printable (control characters, a
right-to-left override or isolate, a zero-width character, a lone surrogate) is escaped once, so a detail
still shows exactly what came and no invisible character reorders the line it is printed in. Right-to-left
letters (Hebrew, Arabic) stay letters: as in any text, they show in their own direction.
"""

from __future__ import annotations


def quoted(text: str, limit: int = 100) -> str:
    """``text`` in quotes, its first ``limit`` characters (then ``…``), each that is not printable escaped."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def printable(text: str, limit: int = 100) -> str:
    """:func:`quoted` without the quotes: for a message that already says where the client's text is."""
    return repr(text[:limit])[1:-1] + ("…" if len(text) > limit else "")


def header_text(value: str) -> str:
    """A header value as ASGI gives it (its bytes, one character each, as Latin-1) as the text its sender
    wrote: browsers and curl send UTF-8. A byte that is not UTF-8 stays itself, as a lone surrogate that
    :func:`quoted` shows as ``\\udcXX`` (the byte XX): two different bytes never read alike."""
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:  # already text (not from a header's bytes)
        return value
    return raw.decode("utf-8", "surrogateescape")
