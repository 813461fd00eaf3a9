"""Every error the HTTP API returns is JSON with the seed's fields; no traceback ever reaches a client."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from limen.api.body_rules import body_model, rule_refusals
from limen.client_text import quoted
from limen.db.database import database_unavailable
from limen.errors import ErrorCode, LimenError, Rule, rule
from limen.logs import current_request_id

log = logging.getLogger("limen.api")

# A validation error names at most this many of a request's problems, each cut at DETAIL_MAX characters.
ERRORS_SHOWN = 10
DETAIL_MAX = 300


# pydantic's error types of a value that is not an integer where one belongs.
WHOLE_NUMBER_ERRORS = frozenset({"int_parsing", "int_from_float", "int_type"})


def with_request_id(body: dict[str, Any]) -> dict[str, Any]:
    request_id = current_request_id()
    if request_id is not None:
        body["details"] = f"{body['details']} [request_id={request_id}]".lstrip()
        body["request_id"] = request_id
    return body


# What a 401 must say (RFC 9110, 15.5.2): how to authenticate. An API token as a bearer token; a browser
# signs in with its form instead, and asks no password for this scheme (as it would for Basic).
UNAUTHORIZED_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="limen"'}


def error_response(error: LimenError, headers: dict[str, str] | None = None) -> JSONResponse:
    if error.code.http_status == 401:
        headers = {**UNAUTHORIZED_CHALLENGE, **(headers or {})}
    return JSONResponse(with_request_id(error.to_dict()), status_code=error.code.http_status, headers=headers)


async def _limen_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LimenError)
    return error_response(exc)


def _location(loc: Sequence[object]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path")]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        context = first.get("ctx")
        # "Expecting value" (json's own words), not only FastAPI's "JSON decode error".
        why = context.get("error") if isinstance(context, dict) and context.get("error") else first["msg"]
        return error_response(LimenError(ErrorCode.INVALID_REQUEST, f"body is not valid JSON: {why}"))
    # pydantic's refusals, and those of limen's own rules on the fields that passed: every one at once.
    # A body with 60,000 unknown keys made a 2.4 MB answer naming each: the first few say what is wrong.
    refusals = [_refusal(error) for error in errors[:ERRORS_SHOWN]] or [_refusal(first)]
    found = await rule_refusals(request, errors, exc.body)
    refusals += [refusal.field_entry() for refusal in found]
    shown = in_form_order(refusals, body_model(request))[:ERRORS_SHOWN]
    details = "; ".join(f"{refusal['field']}: {refusal['details']}"[:DETAIL_MAX] for refusal in shown)
    total = len(errors) + len(found)
    if total > ERRORS_SHOWN:
        details += f"; and {total - ERRORS_SHOWN} more"
    body = LimenError(ErrorCode.VALIDATION_ERROR, details).to_dict()
    body["field"] = shown[0]["field"]
    if "rule" in shown[0]:
        body["rule"] = shown[0]["rule"]
    body["fields"] = shown
    return JSONResponse(with_request_id(body), status_code=ErrorCode.VALIDATION_ERROR.http_status)


def in_form_order(refusals: list[dict[str, Any]], model: type[BaseModel] | None) -> list[dict[str, Any]]:
    """``refusals`` in the order of the model's fields (a form's), anything else after, as it came."""
    if model is None:
        return refusals
    order = {name: index for index, name in enumerate(model.model_fields)}
    return sorted(refusals, key=lambda refusal: order.get(str(refusal["field"]).split(".")[0], len(order)))


def _refusal(error: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of a VALIDATION_ERROR's ``fields`` (as ValidationFailed.field_entry writes limen's own)."""
    entry: dict[str, Any] = {"field": _location(error.get("loc", ())),
                             "details": str(error.get("msg", ""))[:DETAIL_MAX]}
    # pydantic's refusals the pages can word (its English otherwise showed on Korean pages).
    kind = error.get("type")
    bounds = error.get("ctx") or {}
    if kind in WHOLE_NUMBER_ERRORS:  # "Input should be a valid integer"
        entry["rule"] = rule(Rule.WHOLE_NUMBER)
    elif kind == "greater_than_equal" and isinstance(bounds.get("ge"), int):
        entry["rule"] = rule(Rule.AT_LEAST, min=bounds["ge"])
    elif kind == "less_than_equal" and isinstance(bounds.get("le"), int):
        entry["rule"] = rule(Rule.AT_MOST, max=bounds["le"])
    elif kind == "missing":
        entry["rule"] = rule(Rule.REQUIRED)
    return entry


async def http_error(_request: Request, exc: Exception) -> JSONResponse:
    """A 404 or 405 of the router (no such address, or not with that method) in the one error schema."""
    assert isinstance(exc, StarletteHTTPException)
    code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code)
    if code is None:
        code = ErrorCode.INVALID_REQUEST if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR
        body = with_request_id(LimenError(code, str(exc.detail)).to_dict())
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
    return error_response(LimenError(code, str(exc.detail)))


def unexpected_error(exc: Exception, path: str) -> LimenError:
    """What an exception no code of limen expected is answered as, logged: DATABASE_UNAVAILABLE (503) when the
    database did not answer (PostgreSQL stopped, its connection dropped, SQLite busy past its timeout: the
    request may be retried, and nothing of it was done), else INTERNAL_ERROR (500) with the traceback."""
    unavailable = database_unavailable(exc)
    if unavailable is not None:
        log.warning("the database did not answer: %s", unavailable.details, extra={
            "event": "database_unavailable", "path": path})
        return unavailable
    log.exception("unhandled error", exc_info=exc, extra={"event": "http_internal_error", "path": path})
    return LimenError(ErrorCode.INTERNAL_ERROR, type(exc).__name__)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Only for what fails outside the request context (RequestContextMiddleware answers the rest).
    return error_response(unexpected_error(exc, request.url.path))


async def answer_unexpected_error(exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``exc`` as :func:`unexpected_error` says."""
    await error_response(unexpected_error(exc, scope["path"]))(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LimenError, _limen_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.router.default = _no_route(app.router.default, app.router.routes)


def _no_route(default: ASGIApp, routes: Sequence[BaseRoute]) -> ASGIApp:
    """The router's answer to an address none of its routes has for the request: a WebSocket upgrade there gets
    the 404 NOT_FOUND of the one error schema, as an HTTP request does, instead of Starlette's close before the
    handshake, which uvicorn answers 403 with no body (a script's mistyped console address read as a
    refusal). Servers without the ASGI denial-response extension still get that close. An HTTP request to a
    WebSocket's address (a console's, opened in a browser's address bar or with curl) gets 426
    WEBSOCKET_REQUIRED, not a 404 that says the address is wrong."""

    async def no_route(scope: Scope, receive: Receive, send: Send) -> None:
        shown = quoted(str(scope.get("path", "")), 200)
        if scope["type"] == "websocket" and "websocket.http.response" in scope.get("extensions", {}):
            refusal = error_response(LimenError(ErrorCode.NOT_FOUND, f"no WebSocket at {shown}"))
            await WebSocket(scope, receive, send).send_denial_response(refusal)
            return
        if scope["type"] == "http" and _websocket_at(routes, scope):
            refusal = error_response(LimenError(ErrorCode.WEBSOCKET_REQUIRED, f"{shown} takes WebSocket upgrades only"),
                                     # RFC 9110, 15.5.22 and 7.8: the protocol to use, named in Connection too
                                     headers={"Upgrade": "websocket", "Connection": "Upgrade"})
            await refusal(scope, receive, send)
            return
        await default(scope, receive, send)

    return no_route


def _websocket_at(routes: Sequence[BaseRoute], scope: Scope) -> bool:
    """Whether one of ``routes`` is a WebSocket whose address is this HTTP request's."""
    as_upgrade = {**scope, "type": "websocket"}
    return any(isinstance(route, WebSocketRoute) and route.matches(as_upgrade)[0] is Match.FULL for route in routes)
