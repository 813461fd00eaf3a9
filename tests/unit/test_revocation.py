"""Revocation without sockets: which live consoles a revocation ends (the pure rule), the console registry
that applies it (re-checks, the window while a console's checks run), the rights of now, the local bus."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from limen.auth.principal import AuthMethod, Principal
from limen.auth.revocation import CurrentRights, LiveConsole, Revocation, Scope, verdict
from limen.auth.revocation_bus import LocalRevocationBus
from limen.console.registry import ConsoleSessions
from limen.db import Role
from limen.errors import ErrorCode, LimenError
from limen.hypervisor.models import Vm, VmState

VM_A = "aaaaaaaa-0000-4000-8000-000000000001"
VM_B = "bbbbbbbb-0000-4000-8000-000000000002"
BOB_ON_A = LiveConsole("s1", "bob", VM_A, "token:7")
BOB_ON_B = LiveConsole("s2", "bob", VM_B, "session:0123456789abcdef")
CAROL_ON_A = LiveConsole("s3", "carol", VM_A, "token:8")
ANONYMOUS_TICKET = LiveConsole("s4", "carol", VM_B, None)


# -- the rule -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("revocation", "console", "ends"), [
    (Revocation.credential_revoked("token:7", "API token 7 revoked"), BOB_ON_A, True),
    (Revocation.credential_revoked("token:7", "API token 7 revoked"), CAROL_ON_A, False),
    (Revocation.credential_revoked("token:70", "API token 70 revoked"), BOB_ON_A, False),  # not a prefix match
    (Revocation.credential_revoked("session:0123456789abcdef", "signed out"), BOB_ON_B, True),
    (Revocation.credential_revoked("session:0123456789abcdef", "signed out"), BOB_ON_A, False),
    (Revocation.vm_deleted(VM_A, "VM 'a' deleted"), BOB_ON_A, True),
    (Revocation.vm_deleted(VM_A, "VM 'a' deleted"), CAROL_ON_A, True),
    (Revocation.vm_deleted(VM_A, "VM 'a' deleted"), BOB_ON_B, False),
    (Revocation.session_ended("s3", "an administrator ended the session"), CAROL_ON_A, True),
    (Revocation.session_ended("s3", "an administrator ended the session"), BOB_ON_A, False),
])
def test_revocations_that_need_no_recheck_end_exactly_their_consoles(
    revocation: Revocation, console: LiveConsole, ends: bool
) -> None:
    assert not revocation.needs_recheck
    error = verdict(revocation, console)
    assert (error is not None) is ends
    if error is not None:
        assert error.details == revocation.reason


def test_a_console_opened_without_a_credential_name_is_never_matched_by_one() -> None:
    assert verdict(Revocation.credential_revoked("", "?"), ANONYMOUS_TICKET) is None


@pytest.mark.parametrize("still_allowed", [True, False, None])
def test_user_and_vm_revocations_end_a_console_only_if_its_right_is_gone(still_allowed: bool | None) -> None:
    for revocation in (Revocation.user_changed("bob", "user 'bob' disabled by 'admin'"),
                       Revocation.vm_changed(VM_A, "VM 'a' given to 'carol'")):
        assert revocation.needs_recheck
        error = verdict(revocation, BOB_ON_A, still_allowed)
        # None: the right could not be confirmed, and is not assumed.
        assert (error is None) is (still_allowed is True)
        assert verdict(revocation, CAROL_ON_A if revocation.scope is Scope.USER else BOB_ON_B, False) is None


def test_the_codes_and_the_words() -> None:
    revoked = Revocation.user_changed("bob", "user 'bob' disabled by 'admin'").error()
    assert (revoked.code, revoked.details) == (ErrorCode.ACCESS_REVOKED, "user 'bob' disabled by 'admin'")
    assert revoked.code.close_code == 4513
    terminated = Revocation.session_ended("s1", "an administrator ('root') ended the session").error()
    assert terminated.code is ErrorCode.SESSION_TERMINATED
    long_reason = Revocation.vm_changed(VM_A, "x" * 1000).error()
    assert len(long_reason.details) == 200  # what the audit row's end_details holds


@pytest.mark.parametrize("revocation", [
    Revocation.user_changed("Ωμέγα 🐧 O'Brien\"", "user 'Ωμέγα' deleted"),
    Revocation.credential_revoked("token:12", "API token 12 revoked"),
    Revocation.vm_deleted(VM_A, "VM 'a' deleted"),
    Revocation.session_ended("s1", "ended"),
    Revocation.vm_changed(VM_B, "VM 'b' has no owner now"),
])
def test_a_revocation_survives_the_wire(revocation: Revocation) -> None:
    assert Revocation.from_json(revocation.to_json()) == revocation
    assert Revocation.from_json(revocation.to_json().encode()) == revocation


@pytest.mark.parametrize("text", ["", "null", "[]", "{}", '{"scope": "planet", "subject": "x", "reason": "y"}',
                                  '{"scope": "user", "subject": "x"}', "not json"])
def test_anything_else_on_the_wire_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a revocation"):
        Revocation.from_json(text)


# -- the registry ---------------------------------------------------------------------------------------


class FakeSession:
    def __init__(self, session_id: str) -> None:
        self.id = session_id
        self.ended_with: list[LimenError] = []
        self.finished = asyncio.Event()

    def request_end(self, error: LimenError) -> None:
        self.ended_with.append(error)
        self.finished.set()

    @property
    def code(self) -> ErrorCode | None:
        return self.ended_with[0].code if self.ended_with else None


class FakeRights:
    """bob may open VM_A only while he is an admin; carol owns VM_A; nobody else may open anything. Every
    credential is in force but those in ``revoked``."""

    def __init__(self) -> None:
        self.bob_is_admin = True
        self.carol_owns_a = True
        self.failing = False
        self.asked: list[tuple[str, str]] = []
        self.revoked: set[str] = set()
        self.credentials_asked: list[str] = []

    async def credential_in_force(self, credential: str) -> bool:
        self.credentials_asked.append(credential)
        await asyncio.sleep(0)
        if self.failing:
            raise LimenError(ErrorCode.DATABASE_UNAVAILABLE, "the database is down")
        return credential not in self.revoked

    async def may_access(self, user: str, vm_uuid: str) -> bool:
        self.asked.append((user, vm_uuid))
        await asyncio.sleep(0)
        if self.failing:
            raise LimenError(ErrorCode.HYPERVISOR_UNAVAILABLE, "libvirt is down")
        if user == "bob":
            return self.bob_is_admin
        return user == "carol" and vm_uuid == VM_A and self.carol_owns_a


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry_with(*consoles: LiveConsole, rights: FakeRights | None = None,
                  clock: Clock | None = None) -> tuple[ConsoleSessions, dict[str, FakeSession], list[Any]]:
    registry = ConsoleSessions(rights or FakeRights(), clock=clock or Clock())
    sessions: dict[str, FakeSession] = {}
    tracking: list[Any] = []
    for console in consoles:
        session = sessions[console.session_id] = FakeSession(console.session_id)
        tracker = registry.track(session)  # type: ignore[arg-type]
        tracker.__enter__()
        tracking.append(tracker)
        registry.admitted(console)
    return registry, sessions, tracking


async def settled(turns: int = 10) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_a_revoked_credential_ends_its_consoles_at_once_and_no_others() -> None:
    registry, sessions, _ = registry_with(BOB_ON_A, BOB_ON_B, CAROL_ON_A)
    registry.revoke(Revocation.credential_revoked("token:7", "API token 7 revoked by 'admin'"))
    assert sessions["s1"].code is ErrorCode.ACCESS_REVOKED  # no await: ended synchronously
    assert sessions["s1"].ended_with[0].details == "API token 7 revoked by 'admin'"
    assert sessions["s2"].code is None and sessions["s3"].code is None


async def test_a_demoted_admin_keeps_only_the_consoles_they_may_still_open() -> None:
    rights = FakeRights()
    carol_on_b = LiveConsole("s5", "carol", VM_B, "token:8")
    registry, sessions, _ = registry_with(BOB_ON_A, BOB_ON_B, CAROL_ON_A, carol_on_b, rights=rights)
    registry.revoke(Revocation.user_changed("carol", "user 'carol' is no longer an administrator"))
    await settled()
    assert sessions["s3"].code is None  # she owns VM_A
    assert sessions["s5"].code is ErrorCode.ACCESS_REVOKED
    assert sessions["s1"].code is None and sessions["s2"].code is None  # bob's are not looked at
    assert sorted(rights.asked) == [("carol", VM_A), ("carol", VM_B)]


async def test_a_vm_given_away_ends_the_consoles_of_those_who_lost_it() -> None:
    rights = FakeRights()
    registry, sessions, _ = registry_with(BOB_ON_A, BOB_ON_B, CAROL_ON_A, rights=rights)
    rights.carol_owns_a = False
    registry.revoke(Revocation.vm_changed(VM_A, "VM 'a' given to 'dave'"))
    await settled()
    assert sessions["s3"].code is ErrorCode.ACCESS_REVOKED
    assert sessions["s1"].code is None  # bob is an admin
    assert sessions["s2"].code is None  # another VM
    assert sessions["s3"].ended_with[0].details == "VM 'a' given to 'dave'"


async def test_a_right_that_cannot_be_confirmed_ends_the_console() -> None:
    rights = FakeRights()
    registry, sessions, _ = registry_with(CAROL_ON_A, rights=rights)
    rights.failing = True
    registry.revoke(Revocation.vm_changed(VM_A, "VM 'a' given to 'dave'"))
    await settled()
    assert sessions["s3"].code is ErrorCode.ACCESS_REVOKED


async def test_rechecks_ask_once_per_user_and_vm() -> None:
    rights = FakeRights()
    twins = [LiveConsole(f"t{i}", "carol", VM_A, f"token:{i}") for i in range(5)]
    registry, sessions, _ = registry_with(*twins, rights=rights)
    registry.revoke(Revocation.user_changed("carol", "user 'carol' is no longer an administrator"))
    await settled()
    assert rights.asked == [("carol", VM_A)]
    assert all(session.code is None for session in sessions.values())


async def test_a_revocation_during_a_consoles_checks_ends_it_when_it_is_admitted() -> None:
    """The checks read the rights before the change; the revocation came before the registry knew whose
    the console was. Admission judges it against what came since the console began."""
    clock = Clock()
    registry = ConsoleSessions(FakeRights(), clock=clock)
    session = FakeSession("s1")
    with registry.track(session):  # type: ignore[arg-type]
        clock.now += 0.5
        registry.revoke(Revocation.credential_revoked("token:7", "API token 7 revoked"))
        assert session.code is None  # not admitted yet: nobody knows it is token 7's
        clock.now += 0.5
        registry.admitted(BOB_ON_A)
        assert session.code is ErrorCode.ACCESS_REVOKED


async def test_user_and_vm_revocations_from_before_a_console_began_do_not_touch_it() -> None:
    """Its own checks read the rights after them."""
    clock = Clock()
    rights = FakeRights()
    registry = ConsoleSessions(rights, clock=clock)
    registry.revoke(Revocation.user_changed("bob", "user 'bob' is no longer an administrator"))
    registry.revoke(Revocation.vm_changed(VM_A, "VM 'a' given to 'dave'"))
    registry.revoke(Revocation.session_ended("s1", "an earlier session of the same id"))
    clock.now += 1
    session = FakeSession("s1")
    with registry.track(session):  # type: ignore[arg-type]
        registry.admitted(BOB_ON_A)
        await settled()
        assert session.code is None and rights.asked == []


async def test_a_ticket_asked_for_by_a_credential_revoked_since_opens_nothing() -> None:
    """The ticket was issued, then its token revoked (or its browser signed out), then the ticket used:
    the console is admitted on the ticket and ended at once, as long as the ticket could live."""
    clock = Clock()
    registry = ConsoleSessions(FakeRights(), clock=clock, remember=60)
    registry.revoke(Revocation.credential_revoked("token:7", "API token 7 revoked"))
    clock.now += 55
    session = FakeSession("s1")
    with registry.track(session):  # type: ignore[arg-type]
        registry.admitted(BOB_ON_A)
        assert session.code is ErrorCode.ACCESS_REVOKED
    clock.now += 10  # past what is remembered: forgotten with the next revocation
    registry.revoke(Revocation.credential_revoked("token:99", "API token 99 revoked"))
    later = FakeSession("s1")
    with registry.track(later):  # type: ignore[arg-type]
        registry.admitted(BOB_ON_A)
        assert later.code is None


async def test_what_is_remembered_is_bounded() -> None:
    clock = Clock()
    registry = ConsoleSessions(FakeRights(), clock=clock)
    for number in range(5000):
        registry.revoke(Revocation.credential_revoked(f"token:{number}", "revoked"))
    assert len(registry._recent) <= 1000


async def test_an_administrator_ends_a_session_even_before_it_is_admitted() -> None:
    registry = ConsoleSessions(FakeRights(), clock=Clock())
    session = FakeSession("s9")
    with registry.track(session):  # type: ignore[arg-type]
        registry.revoke(Revocation.session_ended("s9", "an administrator ('root') ended the session"))
        assert session.code is ErrorCode.SESSION_TERMINATED
        registry.revoke(Revocation.session_ended("unknown", "nothing to end"))


async def test_a_deleted_vm_waits_for_its_consoles_to_end() -> None:
    registry, sessions, _ = registry_with(BOB_ON_A, BOB_ON_B)
    registry.revoke(Revocation.vm_deleted(VM_A, "VM 'a' deleted by 'admin'"))
    await asyncio.wait_for(registry.wait_ended(VM_A, timeout=1), 0.5)  # s1 finished at once
    # It says the VM is gone: ACCESS_REVOKED's "sign in again or ask an administrator" would not bring it back.
    assert sessions["s1"].code is ErrorCode.VM_NOT_FOUND and sessions["s2"].code is None


async def test_ended_sessions_are_forgotten() -> None:
    registry, sessions, tracking = registry_with(BOB_ON_A)
    tracking[0].__exit__(None, None, None)
    assert registry.holder("s1") is None and len(registry) == 0
    registry.revoke(Revocation.credential_revoked("token:7", "API token 7 revoked"))
    assert sessions["s1"].code is None


async def test_while_unheard_a_console_ends_once_its_credential_or_right_is_found_gone() -> None:
    # Replica B could not hear replica A (Redis down): a token A revoked, a user A demoted kept their consoles
    # on B until Redis came back. Each re-check reads both the user's right and the console's credential.
    rights = FakeRights()
    carols_ticket = LiveConsole("s4", "carol", VM_A, None)  # no credential to read: her right is
    registry, sessions, _ = registry_with(BOB_ON_A, BOB_ON_B, CAROL_ON_A, carols_ticket, rights=rights)
    registry.revoke(Revocation.unheard())
    await settled()
    assert all(session.code is None for session in sessions.values())  # nothing changed: all go on
    rights.revoked.add("token:7")  # bob's token, revoked on the other replica
    registry.revoke(Revocation.unheard())
    await settled()
    assert sessions["s1"].code is ErrorCode.ACCESS_REVOKED
    assert sessions["s1"].ended_with[0].details == Revocation.unheard().reason
    assert [session.code for session in (sessions["s2"], sessions["s3"], sessions["s4"])] == [None] * 3
    rights.bob_is_admin = False  # bob demoted there
    registry.revoke(Revocation.unheard())
    await settled()
    assert sessions["s2"].code is ErrorCode.ACCESS_REVOKED
    assert sessions["s3"].code is None and sessions["s4"].code is None
    assert sorted(set(rights.credentials_asked)) == ["session:0123456789abcdef", "token:7", "token:8"]


async def test_while_unheard_a_console_whose_right_cannot_be_read_goes_on() -> None:
    # No change is known: a database that does not answer just then does not end every console.
    rights = FakeRights()
    registry, sessions, _ = registry_with(BOB_ON_A, CAROL_ON_A, rights=rights)
    rights.failing = True
    registry.revoke(Revocation.unheard())
    await settled()
    assert sessions["s1"].code is None and sessions["s3"].code is None


async def test_an_unheard_recheck_is_not_remembered_for_later_admissions() -> None:
    clock = Clock()
    rights = FakeRights()
    registry = ConsoleSessions(rights, clock=clock)
    session = FakeSession("s1")
    with registry.track(session):  # type: ignore[arg-type]
        registry.revoke(Revocation.unheard())
        registry.admitted(BOB_ON_A)  # its own checks read the database: no second look
        await settled()
    assert session.code is None and rights.asked == [] and rights.credentials_asked == []


class HeldRights(FakeRights):
    """A database that answers only once ``answer`` is set, as a slow one does; counts the reads under way."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()
        self.reading = 0
        self.most_at_once = 0

    async def may_access(self, user: str, vm_uuid: str) -> bool:
        self.reading += 1
        self.most_at_once = max(self.most_at_once, self.reading)
        try:
            await self.answer.wait()
            return await super().may_access(user, vm_uuid)
        finally:
            self.reading -= 1


async def test_while_unheard_a_round_asked_while_one_runs_follows_it_once() -> None:
    # Redis unreadable, a slow database: the bus asks every 2 s, each ask started a round of its own over every
    # console, and rounds piled up (about 5 at once at the 10 s deadline).
    rights = HeldRights()
    registry, sessions, _tracking = registry_with(BOB_ON_A, CAROL_ON_A, rights=rights)
    registry.revoke(Revocation.unheard())
    await settled()
    assert rights.reading == 2  # the first round waits for the database: bob's right and carol's
    for _ask in range(3):
        registry.revoke(Revocation.unheard())
        await settled()
    assert rights.reading == 2 and rights.asked == []  # none started beside it
    rights.revoked.add("token:7")  # revoked on another replica while the first round read
    rights.answer.set()
    await settled(50)  # the round, then the one after it
    assert len(rights.asked) == 4  # one round followed it, for the three asks
    assert rights.credentials_asked.count("token:7") == 2
    assert sessions["s1"].code is ErrorCode.ACCESS_REVOKED and sessions["s3"].code is None
    registry.revoke(Revocation.unheard())  # asked again once the rounds are over: a round of its own
    await settled(50)
    assert len(rights.asked) == 6


async def test_a_recheck_reads_a_few_rights_at_once() -> None:
    rights = HeldRights()
    consoles = [LiveConsole(f"s{number}", "bob", f"{number:08d}-0000-4000-8000-000000000000", "token:7")
                for number in range(12)]
    registry = ConsoleSessions(rights, clock=Clock(), reads_at_once=3)
    with contextlib.ExitStack() as tracking:
        for console in consoles:
            tracking.enter_context(registry.track(FakeSession(console.session_id)))  # type: ignore[arg-type]
            registry.admitted(console)
        registry.revoke(Revocation.user_changed("bob", "user 'bob' is no longer an administrator"))
        await settled()
        assert rights.reading == 3
        rights.answer.set()
        await settled()
    assert rights.most_at_once == 3 and len(rights.asked) == 12


# -- the rights of now ----------------------------------------------------------------------------------


class Directory:
    def __init__(self, **people: Principal | None) -> None:
        self.people = people

    async def principal(self, name: str, method: AuthMethod) -> Principal | None:
        return self.people.get(name)


async def test_current_rights_read_the_user_and_the_vm_now() -> None:
    owned_by = {VM_A: "bob", VM_B: None}

    async def find_vm(vm_uuid: str) -> Vm:
        if vm_uuid not in owned_by:
            raise LimenError(ErrorCode.VM_NOT_FOUND, "gone")
        if vm_uuid == "broken":
            raise LimenError(ErrorCode.HYPERVISOR_UNAVAILABLE, "down")
        return Vm(uuid=vm_uuid, name="v", state=VmState.RUNNING, vcpus=1, memory_mib=64, owner=owned_by[vm_uuid])

    directory = Directory(bob=Principal("bob", Role.USER, AuthMethod.TOKEN),
                          root=Principal("root", Role.ADMIN, AuthMethod.TOKEN), gone=None)
    async def credential_in_force(credential: str) -> bool:
        return credential == "token:1"

    rights = CurrentRights(directory, find_vm, credential_in_force)
    assert await rights.credential_in_force("token:1") is True
    assert await rights.credential_in_force("token:2") is False
    assert await rights.may_access("bob", VM_A) is True
    assert await rights.may_access("bob", VM_B) is False  # unowned: admins only
    assert await rights.may_access("root", VM_B) is True
    assert await rights.may_access("gone", VM_A) is False  # deleted or disabled
    assert await rights.may_access("bob", "cccccccc-0000-4000-8000-000000000003") is False  # VM deleted
    owned_by["broken"] = "bob"
    with pytest.raises(LimenError):
        await rights.may_access("bob", "broken")


# -- the local bus --------------------------------------------------------------------------------------


async def test_the_local_bus_delivers_to_every_subscriber_even_past_a_broken_one() -> None:
    bus = LocalRevocationBus()
    got: list[Revocation] = []

    def broken(revocation: Revocation) -> None:
        raise RuntimeError("a bug")

    bus.subscribe(broken)
    bus.subscribe(got.append)
    revocation = Revocation.credential_revoked("token:1", "API token 1 revoked")
    await bus.publish(revocation)
    assert got == [revocation]


async def test_an_unsubscribed_handler_hears_no_more() -> None:
    bus = LocalRevocationBus()
    got: list[Revocation] = []
    bus.subscribe(got.append)
    first = Revocation.credential_revoked("token:1", "API token 1 revoked")
    await bus.publish(first)
    bus.unsubscribe(got.append)
    bus.unsubscribe(got.append)  # twice: nothing happens
    await bus.publish(Revocation.credential_revoked("token:2", "API token 2 revoked"))
    assert got == [first]
