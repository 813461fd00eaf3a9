"""The ``details`` of a VM action in the audit trail (``vm_actions``), in words a person reads: "forced",
"disks deleted too", "given to alice", not ``force=True``. One place writes them, for the API and the
command line alike; :func:`readable` also rewrites rows written before, in the old ``key=value`` form, when
they are read; :func:`phrases` reads them back as kinds and values, for the web pages to say in their own
language. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from limen.end_details import PHRASES as END_PHRASES

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


_MIGRATE_WORDS = r"from (?P<source>\S+) to (?P<target>\S+)"
_MIGRATE = re.compile(_MIGRATE_WORDS)


def migrate_details(source: object, target: object) -> str:
    """A move between hosts (``from a to b``); :func:`migrate_target` reads its target back."""
    return f"from {source} to {target}"


def migrate_hosts(details: str) -> tuple[str, ...]:
    """Both hosts of a move whose details :func:`migrate_details` wrote (source, target); () for other words."""
    matched = _MIGRATE.fullmatch(details)
    return (matched["source"], matched["target"]) if matched is not None else ()


def migrate_target(details: str) -> str | None:
    """The target host of a move whose details :func:`migrate_details` wrote; None for any other words."""
    hosts = migrate_hosts(details)
    return hosts[1] if hosts else None


def volume_details(host: str, capacity_bytes: int | None = None) -> str:
    """A pool volume's deletion (its name is the row's ``vm_name``): its host, and once deleted its size."""
    return f"on host {host}" if capacity_bytes is None else f"on host {host}, {capacity_bytes} bytes"


# A quota's resource (limen.quota.limits.RESOURCES) in the details' words, and its unit.
_QUOTA_WORDS = {"vms": ("VMs", ""), "vcpus": ("vCPUs", ""), "memory_mib": ("memory", " MiB"),
                "disk_gib": ("disk", " GiB")}


def quota_details(resource: str, needed: float, limit: int, *, system_wide: bool) -> str:
    """The quota that refused a change: what the change would have taken its resource to, and the limit
    (``memory quota: 1024 MiB over 768 MiB``, ``system-wide VMs quota: 4 over 3``)."""
    word, unit = _QUOTA_WORDS[resource]
    shown = int(needed) if float(needed).is_integer() else round(needed, 2)
    return f"{'system-wide ' if system_wide else ''}{word} quota: {shown}{unit} over {limit}{unit}"


# A lost action's details (limen.recovery completes it with SERVER_LOST): why it ends so, after what it was.
# The words for a lost instance itself are limen.instances' (``InstanceInfo.describe``, ``why_gone``), also
# a console's end_details; the phrases below read them.
UNRECORDED_INSTANCE = "held by no recorded limen instance (written before instances were recorded)"
# A create of the instance that sweeps, whose request ended with its row pending (what it left could not be
# removed then, typically its host did not answer).
OWN_CREATE_STOPPED = "its create stopped without completing its record"
# Not a create's (whose leftovers are removed: that one surely failed): the work may have been done before the
# process died (libvirt finishes a snapshot, a start, a stop on its own).
OUTCOME_UNKNOWN = "whether it was carried out is unknown: the VM's state shows it"


def removed_details(names: Sequence[str]) -> str:
    """What of a failed or lost create was removed (its domain, its volume), if anything."""
    return f"removed {', '.join(names)}" if names else ""


def joined(*parts: str) -> str:
    """Details made of several parts, as :func:`phrases` reads them back; empty parts left out."""
    return "; ".join(part for part in parts if part)


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
_LOST_INSTANCE = r"limen instance (?P<instance>\w+) \(host (?P<host>.*), pid (?P<pid>\d+)\) was lost: "
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
    ("migrate", _MIGRATE_WORDS),
    ("volume_host", r"on host (?P<host>\S+)"),
    ("volume_deleted", r"on host (?P<host>\S+), (?P<bytes>\d+) bytes"),
    ("unrecorded_instance", re.escape(UNRECORDED_INSTANCE)),
    ("create_stopped", OWN_CREATE_STOPPED),
    ("outcome_unknown", re.escape(OUTCOME_UNKNOWN)),
    ("removed", r"removed (?P<names>.+)"),
    ("instance_had_stopped", r"limen instance (?P<instance>\w+) had stopped"),
    ("instance_stopped", rf"{_LOST_INSTANCE}it stopped"),
    ("instance_process_ended", rf"{_LOST_INSTANCE}its process ended"),
    ("instance_silent", rf"{_LOST_INSTANCE}no heartbeat for (?P<seconds>\d+) s"),
    ("quota", r"(?P<system_wide>system-wide )?(?P<resource>VMs|vCPUs|memory|disk) quota: "
              r"(?P<needed>\d+(?:\.\d+)?)(?P<unit>(?: MiB| GiB)?) over (?P<limit>\d+)(?P=unit)"),
    ("change", rf"(?P<field>{_CHANGED_FIELDS})(?: (?P<old>.+?))? → (?P<new>.+?)"
               r"(?P<pending> \(pending restart\))?(?P<forced> \(forced\))?"),
))
# Every kind a page words (``action_detail.<kind>`` in its catalogue; a change's words are its field's).
PHRASE_KINDS = frozenset(kind for kind, _ in (*_PHRASES, *END_PHRASES))
_FLAGS = ("pending", "forced", "system_wide", "lifecycle")
# Actions whose details are a name given by a person (a snapshot's): never read as words.
_NAMED_DETAILS = frozenset({"snapshot", "snapshot-delete", "revert"})


def phrases(action: str, details: str) -> list[dict[str, str]] | None:
    """``details`` (as :func:`readable` gives them) as a list of ``{"kind": …, values…}``, one a part; None
    when a part is none of the known phrases (a page then shows the words as they are). A flag (``pending``,
    ``forced``, ``system_wide``) is "true" when set and absent otherwise."""
    if action in _NAMED_DETAILS or not details:
        return None
    return _read(details, _PHRASES)


def _read(details: str, known: Sequence[tuple[str, re.Pattern[str]]]) -> list[dict[str, str]] | None:
    read: list[dict[str, str]] = []
    for part in details.split("; "):
        for kind, pattern in known:
            matched = pattern.fullmatch(part)
            if matched is not None:
                values = {key: ("true" if key in _FLAGS else value)
                          for key, value in matched.groupdict().items() if value is not None}
                read.append({"kind": kind, **values})
                break
        else:
            return None
    return read


def end_phrases(end_code: str | None, end_details: str | None) -> list[dict[str, str]] | None:
    """A console session's ``end_details`` as :func:`phrases`: a lost server's (SERVER_LOST) in the words of
    :mod:`limen.recovery`, as a lost action's; any other end's in the words of limen's own errors (the VM
    stopped, deleted or given away, a user disabled, a token revoked, idle...: :mod:`limen.end_details`). None
    when a part is none of them (a libvirt error's own words stay as they are)."""
    if not end_details:
        return None
    if end_code == "SERVER_LOST":
        return phrases("console", end_details)
    return _read(end_details, END_PHRASES)


def _old_value(raw: str) -> object:
    if raw in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[raw]
    return raw[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in raw else raw[1:-1]
