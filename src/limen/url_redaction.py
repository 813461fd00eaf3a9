"""URLs as limen shows them (messages, logs, ``config show``): without the password, wherever the URL holds
it. libpq and redis-py take a password in the query (``?password=…``, ``?sslpassword=…``) as well as in the
user-info part (``user:password@``); SQLAlchemy's ``hide_password`` covers only the latter."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

MASK = "***"
# Query parameters whose name holds one of these carry a secret (password, sslpassword, passfile is a path
# but harmless to hide, auth_token…).
_SECRET_PARAMETER_WORDS = ("pass", "secret", "token")


def redacted_url(url: str) -> str:
    """``url`` with its user-info password and every secret query parameter's value as ``***``; a text that
    is no URL is returned as it is."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    netloc = parts.netloc
    if password is not None:
        user_info, _, host = netloc.rpartition("@")
        user = user_info.partition(":")[0]
        netloc = f"{user}:{MASK}@{host}"
    query = "&".join(_redacted_parameter(parameter) for parameter in parts.query.split("&")) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return url
    # Put together by hand: urlunsplit drops the empty authority of "sqlite:////path".
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def holds_password(url: str) -> bool:
    """Whether ``url`` holds a password: in its user-info part, or as a secret query parameter's value."""
    return redacted_url(url) != url


def _redacted_parameter(parameter: str) -> str:
    name, equals, _value = parameter.partition("=")
    if equals and any(word in unquote(name).lower() for word in _SECRET_PARAMETER_WORDS):
        return f"{name}={MASK}"
    return parameter
