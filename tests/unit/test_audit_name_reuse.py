"""A user name given again after its user was deleted: the audit keeps the old user's rows under that name,
and the new user does not see them as their own."""

from __future__ import annotations

from collections.abc import Callable

from limen.settings import Settings
from tests.support.access import FakeClock, access_client, admin_token, make_access


async def test_a_new_user_given_a_deleted_users_name_sees_none_of_their_audit_rows(
    make_settings: Callable[..., Settings],
) -> None:
    # Audit rows keep a deleted user's name; a new "ada" saw the old one's console sessions (client addresses,
    # credentials) and VM actions as her own.
    settings = make_settings()
    clock = FakeClock(1_800_000_000.0)
    access = make_access(settings, clock)
    async with access_client(settings, access) as (client, _app):
        admin = {"Authorization": f"Bearer {await admin_token(access)}"}
        await access.users.create("ada", "ada's long password")
        clock.advance(1)
        await access.audit.vm_action(user="ada", action="start", vm_name="old", vm_uuid=None, result_code="OK")
        await access.audit.console_started("s-old", user="ada", vm_uuid="u-old", vm_name="old",
                                           client_address="192.0.2.7", credential="token:1")
        clock.advance(60)
        await access.users.delete("ada", by="root")
        clock.advance(60)
        await access.users.create("ada", "the new ada's password")
        ada = {"Authorization": f"Bearer {(await access.tokens.create('ada', 'tests')).secret}"}
        clock.advance(1)
        await access.audit.vm_action(user="ada", action="start", vm_name="new", vm_uuid=None, result_code="OK")
        assert [a["vm_name"] for a in (await client.get("/api/vm-actions", headers=ada)).json()] == ["new"]
        assert (await client.get("/api/console-sessions", headers=ada)).json() == []
        # The audit keeps both: administrators see every row.
        assert [a["vm_name"] for a in (await client.get("/api/vm-actions", headers=admin)).json()] == ["new", "old"]
        assert [s["id"] for s in (await client.get("/api/console-sessions", headers=admin)).json()] == ["s-old"]
