"""Who is asking, and the one rule of ownership."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from limen.db.models import Role as Role
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.service import vm_not_found


class AuthMethod(StrEnum):
    COOKIE = "cookie"  # a browser session; state-changing requests must carry its CSRF token
    TOKEN = "token"  # Authorization: Bearer limen_…
    TICKET = "ticket"  # a one-time console ticket


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role
    method: AuthMethod
    # The browser session's CSRF token (cookie sign-ins only); kept out of repr so it is never logged.
    csrf_token: str | None = field(default=None, repr=False, compare=False)
    # Which credential this request came with (see token_credential / browser_credential; for a ticket, the
    # credential that asked for it), so that revoking that credential finds what it opened. Not a secret.
    credential: str | None = field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_access(self, vm_owner: str | None) -> bool:
        """Admins reach every VM; users only the VMs whose owner is them (never an unowned VM). Owners are
        written as the user's name is kept (the API and the command line look the typed name up first)."""
        return self.is_admin or (vm_owner is not None and vm_owner == self.name)


def token_credential(token_id: int) -> str:
    """How an API token is named as a credential: ``token:<id>``."""
    return f"token:{token_id}"


BROWSER_CREDENTIAL_HASH_CHARS = 16


def browser_credential(id_hash: str) -> str:
    """How a browser session is named as a credential: ``session:`` and the first 16 hex characters of the
    SHA-256 the database keeps of its cookie (enough to tell sessions apart, useless to sign in with)."""
    return f"session:{id_hash[:BROWSER_CREDENTIAL_HASH_CHARS]}"


def parse_credential(credential: str) -> tuple[str, str]:
    """The kind (``token``, ``session``) and the rest of a credential's name (see above)."""
    kind, _, rest = credential.partition(":")
    return kind, rest


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise LimenError(ErrorCode.FORBIDDEN, "administrators only")


def require_vm_access(principal: Principal, vm_id: str, vm_owner: str | None) -> None:
    """Unless ``principal`` may see and act on the VM: VM_NOT_FOUND, the very error a VM that does not
    exist gets (``vm_id`` is the UUID or name as the request gave it), so that whether a VM one may not
    see exists, and whose it is, cannot be learned by asking for it."""
    if not principal.may_access(vm_owner):
        raise vm_not_found(vm_id)
