"""The ``details`` of a VM action in the audit trail (``vm_actions``), in words a person reads: "forced",
"disks deleted too", "given to alice", not ``force=True``. One place writes them, for the API and the
command line alike; :func:`readable` also rewrites rows written before, in the old ``key=value`` form, when
they are read. Pure.
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
    return f"cd → {iso or 'ejected'}" + (f" ({FORCED})" if force else "")


def edit_details(changes: Mapping[str, object]) -> str:
    """An edit asked for, before it is done (then :attr:`Edited.summary` says ``vcpus 1 → 2``): the fields
    asked, as ``vcpus → 2; boot_order → cdrom,hd``."""
    parts = []
    for key, value in changes.items():
        shown = ",".join(str(item) for item in value) if isinstance(value, list | tuple) else value
        shown = str(shown).lower() if isinstance(shown, bool) else shown
        parts.append(f"{key} → {shown}")
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


def _old_value(raw: str) -> object:
    if raw in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[raw]
    return raw[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in raw else raw[1:-1]
