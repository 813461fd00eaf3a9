"""Every error the HTTP API returns is JSON with the seed's fields; no traceback ever reaches a client."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from limen.errors import ErrorCode, LimenError
from limen.logs import current_request_id

log = logging.getLogger("limen.api")


def with_request_id(body: dict[str, Any]) -> dict[str, Any]:
    request_id = current_request_id()
    if request_id is not None:
        body["details"] = f"{body['details']} [request_id={request_id}]".lstrip()
        body["request_id"] = request_id
    return body


def error_response(error: LimenError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(with_request_id(error.to_dict()), status_code=error.code.http_status, headers=headers)


async def _limen_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LimenError)
    return error_response(exc)


def _location(loc: Sequence[object]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query", "path")]
    return ".".join(parts) or "body"


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(LimenError(ErrorCode.INVALID_REQUEST, f"body is not valid JSON: {first['msg']}"))
    field = _location(first.get("loc", ()))
    details = "; ".join(f"{_location(e.get('loc', ()))}: {e.get('msg', '')}" for e in errors)
    body = LimenError(ErrorCode.VALIDATION_ERROR, details).to_dict()
    body["field"] = field
    return JSONResponse(with_request_id(body), status_code=ErrorCode.VALIDATION_ERROR.http_status)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code)
    if code is None:
        code = ErrorCode.INVALID_REQUEST if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR
        body = with_request_id(LimenError(code, str(exc.detail)).to_dict())
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
    return error_response(LimenError(code, str(exc.detail)))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"event": "http_internal_error", "path": request.url.path})
    return error_response(LimenError(ErrorCode.INTERNAL_ERROR, type(exc).__name__))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LimenError, _limen_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
