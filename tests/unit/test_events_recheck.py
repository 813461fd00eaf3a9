"""Which revocations make an open /api/events stream ask the database again (limen.api.events._Recheck)."""

from __future__ import annotations

from limen.api.events import _Recheck
from limen.auth.principal import AuthMethod, Principal, Role, token_credential
from limen.auth.revocation import Revocation


class _Subscription:
    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


def _recheck(principal: Principal) -> tuple[_Recheck, _Subscription]:
    subscription = _Subscription()
    return _Recheck(principal, subscription), subscription  # type: ignore[arg-type]


def test_only_the_streams_a_revocation_names_recheck() -> None:
    """Every revocation made every open stream recheck its credential in the database: a thousand streams,
    a thousand queries for one revoked token."""
    alice = Principal("alice", Role.USER, AuthMethod.TOKEN, credential=token_credential(7))
    recheck, subscription = _recheck(alice)
    for unrelated in (Revocation.credential_revoked(token_credential(8), "another token"),
                      Revocation.user_changed("bob", "disabled"),
                      Revocation.session_ended("console-1", "ended by an administrator"),
                      Revocation.vm_changed("00000000-0000-0000-0000-000000000001", "owner changed"),
                      Revocation.vm_deleted("00000000-0000-0000-0000-000000000001", "deleted")):
        recheck(unrelated)
        assert not recheck.due and subscription.woken == 0, unrelated
    recheck(Revocation.credential_revoked(token_credential(7), "revoked"))
    assert recheck.due and subscription.woken == 1
    recheck.due = False
    recheck(Revocation.user_changed("alice", "disabled"))
    assert recheck.due and subscription.woken == 2


def test_a_stream_whose_credential_is_unknown_rechecks_on_every_credentials_revocation() -> None:
    anonymous_credential = Principal("carol", Role.ADMIN, AuthMethod.COOKIE)
    recheck, subscription = _recheck(anonymous_credential)
    recheck(Revocation.credential_revoked("session:0123456789abcdef", "signed out"))
    assert recheck.due and subscription.woken == 1


def test_every_stream_rechecks_while_revocations_cannot_be_heard() -> None:
    # Replica B could not hear replica A (Redis down): a stream of a token revoked on A stayed open on B until
    # its keep-alive check, which read B's remembered principal, for up to 30 s more.
    alice = Principal("alice", Role.USER, AuthMethod.TOKEN, credential=token_credential(7))
    recheck, subscription = _recheck(alice)
    recheck(Revocation.unheard())
    assert recheck.due and subscription.woken == 1
