"""``GET /api/events``: VM changes pushed to the browser as Server-Sent Events.

The stream carries the process-wide :class:`~limen.hypervisor.vm_feed.VmFeed`, filtered to the VMs the
principal may see (``may_access(owner)``), in this order:

1. the events after ``Last-Event-ID`` still held by the feed (replay), or ``event: resync`` when that id
   is too old or from another limen process (the client reloads what it shows);
2. ``event: ready`` with the current id and ``retry:`` — the browser now has an id to reconnect with even
   if no change happens before the connection drops;
3. each change as ``event: vm`` with ``id:`` and JSON ``data`` (``type``, ``uuid``, ``name``, ``state``,
   ``owner``, ``at``), and a ``: keep-alive`` comment every ``events_keepalive`` seconds.

The credential is checked again at once after a revocation that may concern it (published on the
revocation bus, from this instance or another; while the others cannot be heard, every few seconds), and
every ``events_keepalive`` seconds in any case: a
revoked token, an ended sign-in, a disabled user or a changed role ends the stream, with ``event: ended``
carrying the error (ACCESS_REVOKED) last (the browser's reconnection then gets 401, or a stream filtered
for the new role). A reader that falls behind is dropped, and the
stream ends when limen shuts down.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from limen.api.deps import AccessDep, CurrentUser, HypervisorDep, SettingsDep
from limen.api.schemas import ErrorBody
from limen.api.strict_json import StrictJsonRoute
from limen.auth.access import Access
from limen.auth.browser_sessions import COOKIE_NAME
from limen.auth.credentials import authenticate
from limen.auth.principal import Principal
from limen.auth.revocation import Revocation, Scope
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.vm_feed import Subscription, SubscriptionEnded, VmEvent, VmFeed

log = logging.getLogger("limen.api")

router = APIRouter(route_class=StrictJsonRoute, tags=["events"])

RETRY_MS = 2000  # how soon a browser reconnects after the stream drops
SEND_TIMEOUT = 10.0  # a client that takes longer to accept one event is dropped
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorBody} for status in (401, 403, 503)}


def may_see(principal: Principal, event: VmEvent) -> bool:
    """The VM's owner and admins see its events; so does its former owner, once, to learn it is gone."""
    return principal.may_access(event.vm.owner) or (
        event.former_owner is not None and principal.may_access(event.former_owner)
    )


def _vm_event(principal: Principal, event: VmEvent, cursor: str) -> ServerSentEvent:
    payload = event.payload()
    if not principal.may_access(event.vm.owner):  # its former owner: the VM left them; to whom is not theirs
        payload.update(type="changed", owner=None, state=None)
    return ServerSentEvent(data=json.dumps(payload), event="vm", id=cursor)


async def _still_allowed(request: Request, access: Access, principal: Principal) -> bool:
    """Whether the credential that opened the stream still signs in the same user with the same role."""
    authorization = request.headers.get("authorization", "")
    bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
    try:
        now = await authenticate(access, bearer=bearer, cookie=request.cookies.get(COOKIE_NAME))
    except LimenError:
        return False
    return now.name == principal.name and now.role is principal.role


class _Recheck:
    """Whether a revocation since the last check may end this stream (a flag the bus's handler sets)."""

    def __init__(self, principal: Principal, subscription: Subscription) -> None:
        self.principal = principal
        self.subscription = subscription
        self.due = False

    def __call__(self, revocation: Revocation) -> None:
        # Checked at once, not at the next keep-alive: a revoked token, an ended sign-in, a disabled user or a
        # lowered role sees no more VM changes. Only the streams it names recheck (a revocation made every
        # open stream ask the database): its user's, or its credential's (every stream when the credential is
        # unknown). Revocations about VMs change no stream (each event is filtered when it is sent), nor does a
        # console session ended by an administrator (Scope.SESSION).
        if self.concerned_by(revocation):
            self.due = True
            self.subscription.wake()

    def concerned_by(self, revocation: Revocation) -> bool:
        if revocation.scope is Scope.USER:
            return revocation.subject == self.principal.name
        if revocation.scope is Scope.CREDENTIAL:
            return self.principal.credential is None or revocation.subject == self.principal.credential
        return revocation.scope is Scope.UNHEARD  # anything may have changed unheard (Redis unreachable)


async def _stream(request: Request, access: Access, principal: Principal, feed: VmFeed, last_event_id: str | None,
                  keepalive: float) -> AsyncIterator[ServerSentEvent]:
    # Subscribed here, not in the route: a response that never starts streaming then holds no subscription.
    with feed.subscribe(lambda event: may_see(principal, event), last_event_id) as subscription:
        recheck = _Recheck(principal, subscription)
        access.revocations.subscribe(recheck)
        try:
            if subscription.resync:
                yield ServerSentEvent(data="{}", event="resync", id=subscription.cursor, retry=RETRY_MS)
            for missed in subscription.replay:
                yield _vm_event(principal, missed, feed.cursor_of(missed.seq))
            yield ServerSentEvent(data=json.dumps({"user": principal.name}), event="ready", id=subscription.cursor,
                                  retry=RETRY_MS)
            checked_at = time.monotonic()
            while True:
                # Access is checked every `keepalive` seconds whether changes flow or not (a busy host must
                # not keep a revoked stream open), and at once after a revocation that may concern it.
                if recheck.due or time.monotonic() - checked_at >= keepalive:
                    recheck.due = False
                    if not await _still_allowed(request, access, principal):
                        log.info("event stream ended: access revoked", extra={"event": "events_revoked",
                                                                              "user": principal.name})
                        ended = LimenError(ErrorCode.ACCESS_REVOKED, "the credential of this stream no longer "
                                           "signs in the same user with the same role")
                        yield ServerSentEvent(data=json.dumps(ended.to_dict()), event="ended")
                        return
                    checked_at = time.monotonic()
                try:
                    event = await subscription.next_event(max(0.01, checked_at + keepalive - time.monotonic()))
                except SubscriptionEnded as ended_by:
                    log.info("event stream ended", extra={"event": "events_end", "user": principal.name,
                                                          "reason": ended_by.reason})
                    return
                if event is not None:
                    yield _vm_event(principal, event, feed.cursor_of(event.seq))
        finally:
            access.revocations.unsubscribe(recheck)


@router.get(
    "/api/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "VM changes as Server-Sent Events"},
               **_ERRORS},
)
async def vm_events(
    request: Request,
    principal: CurrentUser,
    access: AccessDep,
    hypervisor: HypervisorDep,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> EventSourceResponse:
    """VM defined / undefined / started / stopped / crashed / paused / resumed / media_changed / changed,
    as they happen, for the VMs you may see. Send ``Last-Event-ID`` to replay what you missed."""
    keepalive = settings.events_keepalive
    return EventSourceResponse(
        _stream(request, access, principal, hypervisor.feed, last_event_id, keepalive),
        ping=keepalive,
        ping_message_factory=lambda: ServerSentEvent(comment="keep-alive"),
        send_timeout=SEND_TIMEOUT,
        headers={"Cache-Control": "no-store"},
    )
