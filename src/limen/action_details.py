"""The ``details`` of a VM action in the audit trail (``vm_actions``), in words a person reads: "forced",
"disks deleted too", "given to alice", not ``force=True``. One place writes them, for the API and the
command line alike; :func:`readable` also rewrites rows written before, in the old ``key=value`` form, when
they are read; :func:`phrases` reads them back as kinds and values, for the web pages to say in their own
language. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

FORCED = "forced"
NO_OWNER = "no owner"


def power_details(force: bool) -> str:
    """Stop, reboot, finish-install: whether the guest was asked or overruled."""
    return FORCED if force else ""


def console_start_details(console: str) -> str:
    """A start asked by opening the console of a stopped VM (``console``: "VNC", "serial")."""
    return f"from the {console} console"


def delete_details(delete_disks: bool) -> str:
    return "disks deleted too" if delete_disks else "disks kept"


def owner_details(owner: str | None) -> str:
    return f"given to {owner}" if owner is not None else NO_OWNER


def media_details(iso: str | None, force: bool) -> str:
    """A change of CD asked for (the summary of one done reads ``cd old.iso → new.iso``)."""
    return change_details("cd", None, iso or "ejected", forced=force)


def owner_deleted_details(owner: str) -> str:
    """A VM released because its owner's account was deleted."""
    return f"{NO_OWNER} ({owner} deleted)"


def change_details(field: str, old: object, new: object, *, pending: bool = False, forced: bool = False) -> str:
    """One change done: ``vcpus 1 → 2 (pending restart)``, ``cd a.iso → ejected (forced)``; ``old`` None for
    one asked (``vcpus → 2``)."""
    before = "" if old is None else f" {old}"
    return f"{field}{before} → {new}" + (" (pending restart)" if pending else "") + (f" ({FORCED})" if forced else "")


def cd_drive_added_details(iso: object) -> str:
    return f"CD-ROM drive added with {iso}"


def resize_details(target: str, size_bytes: int) -> str:
    """A disk's resize asked for (``vda to 2147483648 bytes``)."""
    return f"{target[:40]} to {size_bytes} bytes"


def resized_details(target: str, old_bytes: int, new_bytes: int) -> str:
    return f"{target} {old_bytes} → {new_bytes} bytes"


def migrate_details(source: object, target: object) -> str:
    return f"from {source} to {target}"


def edit_details(changes: Mapping[str, object]) -> str:
    """An edit asked for, before it is done (then :attr:`Edited.summary` says ``vcpus 1 → 2``): the fields
    asked, as ``vcpus → 2; boot_order → cdrom,hd``."""
    parts = []
    for key, value in changes.items():
        shown = ",".join(str(item) for item in value) if isinstance(value, list | tuple) else value
        shown = str(shown).lower() if isinstance(shown, bool) else shown
        parts.append(change_details(key, None, shown))
    return "; ".join(parts) or "nothing asked"


_OLD_PAIR = re.compile(r"(\w+)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|None|True|False)")


def readable(details: str) -> str:
    """``details`` as a person reads them; rows written before this module held ``force=True``,
    ``delete_disks=False``, ``owner='bob'``, ``iso='x.iso' force=False`` or an edit's JSON."""
    text = details.strip()
    if text.startswith("{") and text.endswith("}"):
        try:
            asked = json.loads(text)
        except ValueError:
            return details
        return edit_details(asked) if isinstance(asked, dict) else details
    pairs = dict(_OLD_PAIR.findall(text))
    if not pairs or _OLD_PAIR.sub("", text).strip():
        return details  # not (only) the old form: already words
    values: dict[str, object] = {key: _old_value(raw) for key, raw in pairs.items()}
    force = values.get("force") is True
    if "iso" in values:
        iso = values["iso"]
        return media_details(iso if isinstance(iso, str) else None, force)
    if "delete_disks" in values:
        return delete_details(values["delete_disks"] is True)
    if "owner" in values:
        owner = values["owner"]
        return owner_details(owner if isinstance(owner, str) else None)
    if "force" in values:
        return power_details(force)
    return details


# Each part of an action's details (parts are joined by "; ") that :func:`phrases` knows: its kind (the pages'
# ``action_detail.<kind>``) and the pattern of its English. The changes of an edit, a CD change and a finished
# install ("vcpus 1 → 2 (pending restart)", "cd a.iso → ejected (forced)", asked: "vcpus → 2") are one kind.
_CHANGED_FIELDS = "vcpus|memory_mib|boot_order|name|autostart|cd"
_PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(pattern)) for kind, pattern in (
    ("forced", FORCED),
    ("no_owner", NO_OWNER),
    ("disks_deleted", "disks deleted too"),
    ("disks_kept", "disks kept"),
    ("nothing_asked", "nothing asked"),
    ("nothing_changed", "nothing changed"),
    ("owner_deleted", r"no owner \((?P<owner>.+) deleted\)"),
    ("given_to", r"given to (?P<owner>.+)"),
    ("from_console", r"from the (?P<console>VNC|serial) console"),
    ("cd_drive_added", r"CD-ROM drive added with (?P<iso>.+)"),
    ("resize_asked", r"(?P<target>\w+) to (?P<bytes>\d+) bytes"),
    ("resized", r"(?P<target>\w+) (?P<old>\d+) → (?P<new>\d+) bytes"),
    ("migrate", r"from (?P<source>\S+) to (?P<target>\S+)"),
    ("change", rf"(?P<field>{_CHANGED_FIELDS})(?: (?P<old>.+?))? → (?P<new>.+?)"
               r"(?P<pending> \(pending restart\))?(?P<forced> \(forced\))?"),
))
# Actions whose details are a name given by a person (a snapshot's): never read as words.
_NAMED_DETAILS = frozenset({"snapshot", "snapshot-delete", "revert"})


def phrases(action: str, details: str) -> list[dict[str, str]] | None:
    """``details`` (as :func:`readable` gives them) as a list of ``{"kind": …, values…}``, one a part; None
    when a part is none of the known phrases (a page then shows the words as they are). A flag (``pending``,
    ``forced``) is "true" when set and absent otherwise."""
    if action in _NAMED_DETAILS or not details:
        return None
    read: list[dict[str, str]] = []
    for part in details.split("; "):
        for kind, pattern in _PHRASES:
            matched = pattern.fullmatch(part)
            if matched is not None:
                values = {key: ("true" if key in ("pending", "forced") else value)
                          for key, value in matched.groupdict().items() if value is not None}
                read.append({"kind": kind, **values})
                break
        else:
            return None
    return read


def _old_value(raw: str) -> object:
    if raw in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[raw]
    return raw[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in raw else raw[1:-1]
