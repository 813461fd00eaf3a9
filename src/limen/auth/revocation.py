"""Revocation: a change that takes away the right to a VM's console, told to every live console.

A :class:`Revocation` says what changed, about whom, and why (in words, for the client's error details and
the session's audit row). Six scopes, and which live consoles each one ends::

    scope        subject          ends a console when                                    code
    user         a user's name    it is that user's and the user may no longer open      ACCESS_REVOKED
                                  its VM (re-checked now: disabled, deleted, role lowered)
    vm           a VM's UUID      it is on that VM and its user may no longer open it    ACCESS_REVOKED
                                  (re-checked now: the owner changed)
    credential   a credential     it was opened with that credential (a token revoked,   ACCESS_REVOKED
                                  a browser signed out; a ticket counts as the credential
                                  that asked for it)
    vm_deleted   a VM's UUID      it is on that VM                                       VM_NOT_FOUND
    session      a session's id   it is that session (an administrator's "End session")  SESSION_TERMINATED
    unheard      (none)           its user may no longer open its VM or its credential   ACCESS_REVOKED
                                  is no longer in force (re-checked now; one that cannot
                                  be re-checked goes on)

:func:`verdict` is the whole rule, pure: a live console (:class:`LiveConsole`), a revocation and, for the
two scopes that need it, whether the user may still open the VM now (:class:`Rights`), give the error to
end the console with, or None. The places that change rights publish revocations on a bus
(:mod:`limen.auth.revocation_bus`); each instance's console registry evaluates every one against its
own live consoles (:class:`limen.console.registry.ConsoleSessions`).

``unheard`` is no change anyone made: the revocation bus delivers it in its own instance only, while it cannot
hear the other instances' revocations (their Redis is down) and once more when it hears them again, so that
what was revoked elsewhere meanwhile ends here too (:mod:`limen.auth.revocation_bus`). As no change is known,
a console whose right cannot be read just then is left alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from limen import end_details
from limen.auth.principal import AuthMethod, Principal
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import Vm

log = logging.getLogger("limen.auth")

REASON_MAX = 200


class Scope(StrEnum):
    USER = "user"
    VM = "vm"
    CREDENTIAL = "credential"
    VM_DELETED = "vm_deleted"
    SESSION = "session"
    UNHEARD = "unheard"


# The scopes whose consoles are re-checked against the rights of now, instead of ended outright.
RECHECKED = frozenset({Scope.USER, Scope.VM, Scope.UNHEARD})
# The scopes that stay true for good (a revoked credential, a deleted VM never come back): they also concern
# consoles admitted after them, e.g. with a ticket asked for by the credential before it was revoked.
LASTING = frozenset({Scope.CREDENTIAL, Scope.VM_DELETED})


@dataclass(frozen=True, slots=True)
class LiveConsole:
    """What revocation needs to know about an admitted console session."""

    session_id: str
    user: str
    vm_uuid: str
    credential: str | None


@dataclass(frozen=True, slots=True)
class Revocation:
    scope: Scope
    subject: str
    reason: str

    # -- the changes that make one ---------------------------------------------------------------------

    @classmethod
    def user_changed(cls, user: str, reason: str) -> Revocation:
        """``user`` was disabled, deleted or lost a role: their consoles are re-checked."""
        return cls(Scope.USER, user, reason)

    @classmethod
    def vm_changed(cls, vm_uuid: str, reason: str) -> Revocation:
        """The VM's owner changed: its consoles are re-checked."""
        return cls(Scope.VM, vm_uuid, reason)

    @classmethod
    def credential_revoked(cls, credential: str, reason: str) -> Revocation:
        return cls(Scope.CREDENTIAL, credential, reason)

    @classmethod
    def vm_deleted(cls, vm_uuid: str, reason: str) -> Revocation:
        return cls(Scope.VM_DELETED, vm_uuid, reason)

    @classmethod
    def session_ended(cls, session_id: str, reason: str) -> Revocation:
        return cls(Scope.SESSION, session_id, reason)

    @classmethod
    def unheard(cls) -> Revocation:
        """Changes made on other instances may not have been heard here: every console is re-checked."""
        return cls(Scope.UNHEARD, "", end_details.ACCESS_WITHDRAWN_UNHEARD)

    # -- what it means --------------------------------------------------------------------------------

    @property
    def needs_recheck(self) -> bool:
        return self.scope in RECHECKED

    @property
    def lasting(self) -> bool:
        return self.scope in LASTING

    def concerns(self, console: LiveConsole) -> bool:
        """Whether ``console`` is one this revocation may end (before any re-check)."""
        match self.scope:
            case Scope.USER:
                return console.user == self.subject
            case Scope.VM | Scope.VM_DELETED:
                return console.vm_uuid == self.subject
            case Scope.CREDENTIAL:
                return console.credential is not None and console.credential == self.subject
            case Scope.SESSION:
                return console.session_id == self.subject
            case Scope.UNHEARD:
                return True
        return False  # pragma: no cover - every scope is matched above

    def error(self) -> LimenError:
        # A deleted VM's console says the VM is gone (not that access was withdrawn: signing in again or asking
        # an administrator, ACCESS_REVOKED's advice, would not bring it back).
        code = {Scope.SESSION: ErrorCode.SESSION_TERMINATED,
                Scope.VM_DELETED: ErrorCode.VM_NOT_FOUND}.get(self.scope, ErrorCode.ACCESS_REVOKED)
        return LimenError(code, self.reason[:REASON_MAX])

    # -- on the wire (between instances) ----------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps({"scope": self.scope.value, "subject": self.subject, "reason": self.reason},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Revocation:
        """Raises ValueError for anything that is not a revocation."""
        try:
            data = json.loads(text)
            return cls(Scope(data["scope"]), str(data["subject"]), str(data["reason"])[:REASON_MAX])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a revocation: {type(exc).__name__}") from None


def verdict(revocation: Revocation, console: LiveConsole, still_allowed: bool | None = None) -> LimenError | None:
    """The error ``console`` must end with, or None if it may go on.

    ``still_allowed`` is whether the console's user may open its VM now; it is needed (and only read)
    when ``revocation.needs_recheck``; None there means it could not be found out, and the console ends:
    a right that cannot be confirmed is not assumed.
    """
    if not revocation.concerns(console):
        return None
    if revocation.needs_recheck and still_allowed:
        return None
    return revocation.error()


# -- the rights of now -------------------------------------------------------------------------------


class Rights(Protocol):
    async def may_access(self, user: str, vm_uuid: str) -> bool:
        """Whether ``user`` may open the console of ``vm_uuid`` now; raises if that cannot be found out."""
        ...

    async def credential_in_force(self, credential: str) -> bool:
        """Whether the credential named ``credential`` still signs in now; raises if that cannot be found out."""
        ...


class PrincipalLookup(Protocol):
    async def principal(self, name: str, method: AuthMethod) -> Principal | None: ...


class CurrentRights:
    """Rights read now: the user from the database, the VM's owner from libvirt."""

    def __init__(self, users: PrincipalLookup, find_vm: Callable[[str], Awaitable[Vm]],
                 credential_in_force: Callable[[str], Awaitable[bool]]) -> None:
        self.users = users
        self.find_vm = find_vm
        self._credential_in_force = credential_in_force

    async def credential_in_force(self, credential: str) -> bool:
        return await self._credential_in_force(credential)

    async def may_access(self, user: str, vm_uuid: str) -> bool:
        principal = await self.users.principal(user, AuthMethod.TOKEN)
        if principal is None:  # gone or disabled
            return False
        if principal.is_admin:
            return True
        try:
            vm = await self.find_vm(vm_uuid)
        except LimenError as exc:
            if exc.code is ErrorCode.VM_NOT_FOUND:
                return False
            raise
        return principal.may_access(vm.owner)
