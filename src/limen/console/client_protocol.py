"""A console the server failed because the browser broke the WebSocket protocol, told apart from one the
browser closed.

The WebSocket server fails such a connection itself, with the close code RFC 6455 (7.4.1) gives the fault,
and the app hears of it only as a disconnect, as when the browser closes. Left at that, the audit would
record the session as ended ``OK``. So limen's protocol (``ws_protocol.py``) notes the failure in the
connection's ASGI scope (``scope["extensions"][PROTOCOL_ERROR_EXTENSION]``: the close code and reason it
sent) before it queues the disconnect, and the console's channel reads it from there when the client has
gone (:func:`client_protocol_error`): the session ends with CLIENT_PROTOCOL_ERROR, whichever of its parts
(the client reader, the splice) heard of the leaving first. A client that sends a close frame itself, whatever
its code, closed the console.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from limen.errors import ErrorCode, LimenError

PROTOCOL_ERROR_EXTENSION: Final = "limen.protocol_error"

# RFC 6455 7.4.1: the close codes of a connection failed for what its peer sent.
PROTOCOL_ERROR: Final = 1002
INVALID_FRAME_PAYLOAD_DATA: Final = 1007  # a text message that is not UTF-8
MESSAGE_TOO_BIG: Final = 1009

# What the browser did, for each close code the server fails a connection with because of the browser.
WHAT_THE_CLIENT_DID: Final[Mapping[int, str]] = {
    PROTOCOL_ERROR: "sent a frame the WebSocket protocol does not allow",
    INVALID_FRAME_PAYLOAD_DATA: "sent a text message that is not valid UTF-8",
    MESSAGE_TOO_BIG: "sent a message larger than the server takes",
}


def client_protocol_error(scope: Mapping[str, Any]) -> LimenError | None:
    """CLIENT_PROTOCOL_ERROR when the server failed this connection for what the browser sent; else None."""
    noted = (scope.get("extensions") or {}).get(PROTOCOL_ERROR_EXTENSION)
    if not noted:
        return None
    code, reason = noted["code"], noted["reason"]
    said = f": {reason}" if reason else ""
    return LimenError(ErrorCode.CLIENT_PROTOCOL_ERROR,
                      f"the browser {WHAT_THE_CLIENT_DID[code]}; the server closed the WebSocket with {code}{said}")
