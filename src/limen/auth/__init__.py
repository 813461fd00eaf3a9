"""Access control: who is asking (:class:`Principal`), what they may do, and the credentials behind it.

::

    passwords.py         argon2 hashing; a dummy verify so unknown users take as long as known ones
    users.py             users and roles in the database; names are one name in any case
    tokens.py            API tokens for scripts ("limen_…", only a hash kept, revocable)
    browser_sessions.py  the ``limen_session`` cookie and its CSRF token
    ratelimit.py         sign-in attempts, reserved per user name at an address and per address
    throttle.py          the rules of one throttle key: places, failures, doubling blocks (pure)
    throttle_store.py    where throttle counts live: Redis (Lua) or the database (login_throttle)
    tickets.py           one-time console tickets: TicketStore, in memory or in Redis
    http.py              Origin checks, the client's address behind trusted proxies, HTTPS detection
    site.py              where limen is reached: its own origins and the Host names it answers to
    access.py            Access: all of the above, built once from the settings (an app's services hold it)
    deps.py              FastAPI dependencies: CurrentUser, AdminUser, AccessibleVm
    console_gate.py      what the console WebSocket calls before it proxies anything

Secrets (passwords, tokens, tickets, cookies) are never logged and never put in error details.
"""

from limen.auth.principal import AuthMethod, Principal, Role

__all__ = ["AuthMethod", "Principal", "Role"]
