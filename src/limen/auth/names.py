"""Names people choose (user names, token names): any text, kept exactly, shown as text.

A name is normalised to Unicode NFC (so two names that look the same are the same name), must not be
empty, must not start or end with white space, and must hold no control or format characters (so a name
cannot hide text, break a log line or reorder what is shown around it). Quotes, ``<``, ``;`` and every
other printable character are allowed: the database binds parameters and the UI renders text.
"""

from __future__ import annotations

import unicodedata

from limen.errors import Rule, ValidationFailed, rule


def clean_name(field: str, value: str, max_length: int) -> str:
    name = unicodedata.normalize("NFC", value)
    length = rule(Rule.LENGTH, min=1, max=max_length)
    if not name:
        raise ValidationFailed(field, "must not be empty", rule=length)
    if len(name) > max_length:
        raise ValidationFailed(field, f"must be at most {max_length} characters", rule=length)
    if name != name.strip():
        raise ValidationFailed(field, "must not start or end with white space", rule=rule(Rule.NO_EDGE_SPACE))
    if any(unicodedata.category(char)[0] == "C" for char in name):
        raise ValidationFailed(field, "must not contain control or invisible formatting characters",
                               rule=rule(Rule.NO_CONTROL_CHARS))
    return name


# The audit trail names the command line as ``cli:<login name>`` (limen.cli_audit): no user is named so.
COMMAND_LINE_PREFIX = "cli:"


def name_key(name: str) -> str:
    """What makes two names the same name: ``Sec`` and ``sec`` are one user. Kept in ``users.name_key``
    (unique), so the database itself refuses a second spelling, whoever inserts it."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())
