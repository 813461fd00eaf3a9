"""REST routes of the ISO library: list (any signed-in user), upload and delete (admins).

An upload is ``POST /api/isos?name=NAME`` with the raw image as the body (not multipart). The body is
read as it arrives and written to a temp file in a worker thread, a batch at a time, so memory stays
at about two batches whatever the size; the image appears under its name only once complete (see
:mod:`limen.isos.upload`). A client that drops, stalls for ``iso_upload_idle_timeout`` or passes
``max_iso_bytes`` leaves nothing behind. Refusals sent before the whole body arrived (the route's own,
and an anonymous client's 401, a non-admin's 403, a 422 for a missing ``name``) close the connection
(:mod:`limen.api.body_limit`), so the server does not go on reading an upload it has refused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.types import Message

from limen.api.deps import AdminUser, CurrentUser, HypervisorDep, SettingsDep
from limen.api.error_responses import error_response
from limen.api.schemas import ErrorBody, IsoDeleted, IsoOut
from limen.api.services import services_of
from limen.api.strict_json import StrictJsonRoute
from limen.errors import ErrorCode, LimenError
from limen.http_protocol import DROPPED_STATUS_SCOPE_KEY
from limen.isos import (
    CdromSource,
    IsoUpload,
    check_new_name,
    check_room,
    delete_iso,
    list_isos,
    restore_parked_images,
    sweep_stale_temp_files,
)
from limen.isos.background import BackgroundChecksums
from limen.isos.upload import CURL_UPLOAD, empty_image, too_large
from limen.settings import Settings

log = logging.getLogger("limen.api")

router = APIRouter(route_class=StrictJsonRoute, prefix="/api/isos", tags=["isos"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 408, 409, 413, 422)
}
# Written to disk this many bytes at a time (one batch writes while the next one arrives).
WRITE_BATCH = 1 << 20
MAX_ISO_BYTES_HEADER = "X-Limen-Max-Iso-Bytes"
# Status recorded (never delivered) for an upload whose client went away: nginx's "client closed request".
CLIENT_CLOSED_REQUEST = 499
_FORM_TYPES = ("multipart/", "application/x-www-form-urlencoded")


async def _checksums(request: Request) -> BackgroundChecksums:
    checksums: BackgroundChecksums = services_of(request).iso_checksums
    return checksums


ChecksumsDep = Annotated[BackgroundChecksums, Depends(_checksums)]


async def start_iso_library(settings: Settings, checksums: BackgroundChecksums) -> None:
    """At start-up: deletes the temp files of uploads a killed limen left, and queues missing checksums."""
    removed = await asyncio.to_thread(sweep_stale_temp_files, settings.iso_dir)
    if removed:
        log.info("stale ISO upload files removed", extra={"event": "iso_temp_swept",
                                                         "files": [path.name for path in removed]})
    restored = await asyncio.to_thread(restore_parked_images, settings.iso_dir)
    if restored:
        log.warning("ISOs a killed delete left parked are back under their names", extra={
            "event": "iso_parked_restored", "isos": [path.name for path in restored]})
    checksums.request(await asyncio.to_thread(list_isos, settings.iso_dir))


@router.get("", response_model=list[IsoOut], responses=_ERRORS)
async def get_isos(
    _user: CurrentUser, settings: SettingsDep, checksums: ChecksumsDep, response: Response
) -> list[IsoOut]:
    """Every image, with its SHA-256 once known. The ``X-Limen-Max-Iso-Bytes`` header gives the upload limit."""
    images = await asyncio.to_thread(list_isos, settings.iso_dir)
    checksums.request(images)
    response.headers[MAX_ISO_BYTES_HEADER] = str(settings.max_iso_bytes)
    return [IsoOut.of(image) for image in images]


class _ClientGone(Exception):
    """The connection ended before the whole body arrived: the client closed it, or the server dropped it
    (a deadline of limen.http_protocol, which says so in the scope)."""


async def _receive_into(upload: IsoUpload, request: Request, idle_timeout: float) -> None:
    """Reads the body into ``upload``: batches go to a worker thread while the next one arrives."""
    writing: asyncio.Future[None] | None = None
    batch = bytearray()
    received = 0
    try:
        more = True
        while more:
            try:
                async with asyncio.timeout(idle_timeout):
                    message: Message = await request.receive()
            except TimeoutError:
                raise LimenError(
                    ErrorCode.REQUEST_TIMEOUT,
                    f"no data for {idle_timeout:g} s after {received} bytes (LIMEN_ISO_UPLOAD_IDLE_TIMEOUT)",
                ) from None
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk: bytes = message.get("body", b"")
            more = bool(message.get("more_body", False))
            received += len(chunk)
            if received > upload.max_bytes:
                raise too_large(upload.max_bytes)
            batch += chunk
            if len(batch) >= WRITE_BATCH or not more:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(upload.write, bytes(batch)))
                batch.clear()
        if writing is not None:
            await writing
    finally:
        if writing is not None and not writing.done():
            await asyncio.wait([writing])  # the temp file is deleted only after its last write


def _log_timeout(name: str, user: str, status: int) -> None:
    log.warning("ISO upload timed out", extra={"event": "iso_upload_timeout", "iso": name, "status": status,
                                               "user": user})


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    if not value.isdigit():
        raise LimenError(ErrorCode.INVALID_REQUEST, f"Content-Length {value!r} is not a number")
    return int(value)


@router.post(
    "", response_model=IsoOut, status_code=201, responses=_ERRORS,
    openapi_extra={"requestBody": {"required": True, "content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}}},
)
async def upload_iso(
    request: Request,
    principal: AdminUser,
    settings: SettingsDep,
    name: str = Query(description="File name of the new image: NAME.iso or NAME.img, no path"),
) -> Response | IsoOut:
    """Admins: the raw image as the body (``curl -X POST -T FILE``, not multipart); answers its name, size and
    SHA-256. Refused at once when Content-Length is over ``LIMEN_MAX_ISO_BYTES`` or the name is taken."""
    try:
        check_new_name(name)
        content_type = request.headers.get("content-type", "").lower()
        if content_type.startswith(_FORM_TYPES):
            raise LimenError(ErrorCode.INVALID_REQUEST,
                             f"send the image as the raw body ({CURL_UPLOAD}), not as {content_type}")
        declared = _declared_length(request)
        if declared == 0:
            raise empty_image()
        if declared is not None:
            await asyncio.to_thread(check_room, settings.iso_dir, declared, settings.max_iso_bytes)
        upload = await asyncio.to_thread(IsoUpload, settings.iso_dir, name, settings.max_iso_bytes)
        with upload:
            await _receive_into(upload, request, settings.iso_upload_idle_timeout)
            image = await asyncio.to_thread(upload.commit)
    except _ClientGone:
        dropped_status = request.scope.get(DROPPED_STATUS_SCOPE_KEY)
        if dropped_status is not None:  # the server's deadline (limen.http_protocol), not the client, ended it
            _log_timeout(name, principal.name, dropped_status)
            return Response(status_code=dropped_status)
        log.warning("ISO upload dropped by the client", extra={"event": "iso_upload_dropped", "iso": name,
                                                                "user": principal.name})
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    except LimenError as exc:
        if exc.code is ErrorCode.REQUEST_TIMEOUT:  # this route's own idle timer, which may beat the protocol's
            _log_timeout(name, principal.name, exc.code.http_status)
            return error_response(exc)
        log.info("ISO upload refused", extra={"event": "iso_upload_refused", "iso": name, "code": exc.code.name,
                                              "user": principal.name})
        return error_response(exc)  # before the whole body came, with Connection: close (limen.api.body_limit)
    log.info("ISO uploaded", extra={"event": "iso_upload", "iso": image.name, "size_bytes": image.size_bytes,
                                    "sha256": image.sha256, "user": principal.name})
    return IsoOut.of(image)


@router.delete("/{name}", response_model=IsoDeleted, responses=_ERRORS)
async def remove_iso(name: str, principal: AdminUser, settings: SettingsDep, hypervisor: HypervisorDep) -> IsoDeleted:
    """Admins. Refused with ISO_IN_USE (the answer's ``vms`` names them) while a VM's CD-ROM holds the
    image; a link is removed, never its target."""
    cdroms = await hypervisor.cdrom_sources()
    loop = asyncio.get_running_loop()

    def recheck() -> list[CdromSource]:  # in delete_iso's thread, once the image is parked
        return asyncio.run_coroutine_threadsafe(hypervisor.cdrom_sources(), loop).result()

    await asyncio.to_thread(delete_iso, settings.iso_dir, name, cdroms, recheck)
    log.info("ISO deleted", extra={"event": "iso_delete", "iso": name, "user": principal.name})
    return IsoDeleted(deleted=name)
