"""Korean and English: both catalogues complete and consistent, every key the pages and scripts use
exists, language negotiation, the pages rendered in the chosen language, and the user's choice kept."""

from __future__ import annotations

import ast
import html
import json
import re
import string
from pathlib import Path

import httpx
import pytest

import limen
from limen.errors import RANGE_LIMITS, ErrorCode, Rule
from limen.i18n import (
    CATALOGUE_DIR,
    LANGUAGE_CODES,
    catalogue,
    catalogue_json,
    display_width,
    error_keys,
    language_from_environment,
    negotiate,
    pad,
    translate,
)
from limen.web.routes import STATIC_DIR, TEMPLATE_DIR
from tests.unit.test_auth_api import ALICE, PASSWORD, World
from tests.unit.test_auth_api import shared as shared  # the fixtures: one app for this module, reset per test
from tests.unit.test_auth_api import world as world
from tests.unit.test_web_routes import reading_client as reading_client  # one app for the pages only read

PAGES = ("/", "/login", "/audit", "/isos", "/users", "/tokens", "/vms/new", "/vms/test", "/vms/test/console")
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


# -- the catalogues ---------------------------------------------------------------------------------------


def test_every_key_exists_in_both_languages() -> None:
    english, korean = catalogue("en"), catalogue("ko")
    assert sorted(english.keys() - korean.keys()) == []
    assert sorted(korean.keys() - english.keys()) == []


def test_no_catalogue_file_has_a_key_twice() -> None:
    """JSON keeps the last of two equal keys without a word: cli.json had "cli.user.pending" twice in each
    language (the first, "awaiting approval", never said)."""
    for path in sorted(CATALOGUE_DIR.glob("*/*.json")):
        keys = [key for key, _ in json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=list)]
        assert sorted({key for key in keys if keys.count(key) > 1}) == [], path


# A test per group of keys (cli, console, errors, ui), not per key: ~1,000 tests of a few microseconds each
# cost ~0.7 s of pytest's own work. Each names every key that fails it.
@pytest.mark.parametrize("group", sorted({key.split(".", 1)[0] for key in catalogue("en")}))
def test_placeholders_match_and_no_text_is_empty(group: str) -> None:
    catalogues = {lang: catalogue(lang) for lang in LANGUAGE_CODES}
    keys = [key for key in sorted(catalogues["en"]) if key.split(".", 1)[0] == group]
    failures: dict[str, str] = {}
    for key in keys:
        texts = {lang: texts.get(key) for lang, texts in catalogues.items()}
        if not all(text is not None and text.strip() for text in texts.values()):
            failures[key] = f"missing or empty: {texts}"
        elif placeholders(texts["ko"] or "") != placeholders(texts["en"] or ""):
            failures[key] = f"placeholders differ: {texts}"
    assert keys and failures == {}


def test_every_error_code_has_korean_title_and_message_and_english_is_errors_py() -> None:
    for code in ErrorCode:
        title, message = error_keys(code)
        assert catalogue("en")[title] == code.title and catalogue("en")[message] == code.user_message
        assert HANGUL.search(catalogue("ko")[title]), code.name
        assert HANGUL.search(catalogue("ko")[message]), code.name


def test_english_errors_live_only_in_errors_py() -> None:
    """One source per language: errors.py is English's; no English catalogue file repeats a server code."""
    files = json.loads((CATALOGUE_DIR / "en" / "ui.json").read_text()) | json.loads(
        (CATALOGUE_DIR / "en" / "console.json").read_text())
    for code in ErrorCode:
        assert error_keys(code)[0] not in files, code.name


def test_korean_texts_are_korean() -> None:
    """Every Korean text that is words (not a code, unit or key name) has Hangul: no English leftovers."""
    untranslatable = re.compile(r"^[\W\d_]*$|^(?:[A-Z0-9\-]+|VNC|CD-ROM|ISO|UUID|SHA256|ID|VCPU|vCPU|"
                                r"limen: \{title\}.*|Ctrl.*)$", re.S)
    # A text of placeholders and signs only ("{field} {old} → {new}") has no words to translate.
    leftovers = [key for key, text in catalogue("ko").items() if not HANGUL.search(text)
                 and not untranslatable.match(text) and not untranslatable.match(re.sub(r"\{[a-z_]+\}", "", text))]
    assert leftovers == []


def used_keys() -> dict[str, set[str]]:
    """Every literal key the templates (t('…')) and the scripts (t("…"), tWith("…")) ask for, by file."""
    found: dict[str, set[str]] = {}
    for path in [*TEMPLATE_DIR.glob("*.html"), *(STATIC_DIR / "js").glob("*.js")]:
        keys = set(re.findall(r"""\b(?:t|tWith)\(\s*["']([a-z_]+(?:\.[A-Za-z0-9_]+)+)["']""", path.read_text()))
        if keys:
            found[path.name] = keys
    return found


def test_every_key_the_pages_and_scripts_use_exists() -> None:
    english = catalogue("en")
    uses = used_keys()
    assert {"base.html", "index.html", "console.html", "console-page.js", "dom.js"} <= uses.keys()
    missing = {name: sorted(keys - english.keys()) for name, keys in uses.items() if keys - english.keys()}
    assert missing == {}


# The calls that name a VM action of the audit trail: its name is their one string literal among the arguments.
ACTION_RECORDERS = {"recording", "_audited", "run_audited", "vm_action", "action_started"}


def recorded_action_names() -> set[str]:
    """Every VM action name limen's code records (the server's, the command line's, the recovery's)."""
    names: set[str] = set()
    for path in Path(limen.__file__).parent.rglob("*.py"):
        source = path.read_text()
        if not any(recorder in source for recorder in ACTION_RECORDERS):
            continue  # no such call in it: parsing every module was ~0.2 s of CPU
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called not in ACTION_RECORDERS:
                continue
            values = [*node.args, *(keyword.value for keyword in node.keywords if keyword.arg == "action")]
            names |= {value.value for value in values
                      if isinstance(value, ast.Constant) and isinstance(value.value, str)}
    return names


def test_every_vm_action_the_audit_records_has_a_name_in_both_languages() -> None:
    names = recorded_action_names()
    assert {"create", "start", "finish-install", "snapshot-delete", "set_owner", "migrate"} <= names
    for lang in LANGUAGE_CODES:
        assert sorted(name for name in names if f"audit.action.{name}" not in catalogue(lang)) == [], lang
    assert catalogue("ko")["audit.action.finish-install"] == catalogue("ko")["vm.finish_install"]  # one word for it


def test_every_validation_rule_has_words_in_both_languages() -> None:
    """A rule the catalogue lacks is shown in the server's English on a Korean page (ruleText returns null)."""
    for lang in LANGUAGE_CODES:
        ui = catalogue(lang)
        missing = [kind.value for kind in Rule if f"rule.{kind.value}" not in ui]
        missing += [limit for limit in RANGE_LIMITS if f"rule.range.{limit}" not in ui]
        assert not missing, (lang, missing)


def test_korean_ranges_say_each_bound_with_its_unit() -> None:
    """"{min}~{max} 사이" said the range twice over; a Korean form says 이상 … 이하, the unit after each bound
    (i18n.js ruleText passes the unit with its leading space, numbers formatted)."""
    said = translate("ko", "rule.range", min="256", max="8,192", unit=" MiB")
    assert said == "256 MiB 이상 8,192 MiB 이하여야 합니다."
    assert translate("ko", "rule.range", min="1", max="63", unit="") == "1 이상 63 이하여야 합니다."
    assert translate("ko", "rule.length", min="1", max="63") == "1자 이상 63자 이하여야 합니다."
    for key in ("rule.range", "rule.range.host_cpus", "rule.range.host_memory", "rule.length"):
        assert "~" not in catalogue("ko")[key] and "사이" not in catalogue("ko")[key], key


# What the pages and the command line say once something is done: toasts, a row's or a form's result, a
# command's one line. Korean said some "…삭제함" and others "…삭제했습니다"; all now end politely.
KOREAN_RESULTS = (
    "action.start.done", "action.stop.done", "action.force_stop.done", "action.reboot.done", "action.reset.done",
    "action.delete.done", "details.saved", "details.inserted_ok", "details.ejected_ok", "details.finished",
    "details.finished_next_start", "details.resized", "snapshots.taken", "snapshots.reverted", "snapshots.deleted",
    "list.deleted", "list.deleted_with_volume", "list.deleted_with_volumes", "login.created", "login.created_pending",
    "new.created", "tokens.created", "tokens.revoked_toast", "tokens.copied", "users.enabled_note",
    "users.disabled_note", "users.approved", "users.approved_name", "users.deleted", "users.created",
    "users.created_name", "users.quota_saved", "users.quota_saved_name", "users.role_changed", "users.unlocked",
    "users.unlocked_one", "users.unlocked_none", "isos.deleted_toast", "isos.uploaded", "isos.cancelled",
    "console.copied", "console.clip_sent", "console.sent_combo", "console.typed", "cli.deleted_vm",
    "cli.deleted_vm_and", "cli.user_created", "cli.user_deleted", "cli.password_changed", "cli.token_revoked",
    "cli.iso_deleted", "cli.iso_uploaded", "cli.snapshot_taken", "cli.snapshot_reverted", "cli.snapshot_deleted",
    "cli.host.added", "cli.host.removed", "cli.host.drains", "cli.host.takes_new", "cli.unlocked",
    "cli.address_unlocked", "cli.vm_no_owner", "cli.admin_created", "cli.restore.done", "cli.restore.kept",
    "cli.restore.kept_unreadable", "cli.restore.settings_written",
)
# The terse endings of a done thing ("삭제함", "만듦", "씀", "꺼냄", "되돌림", "넣음", "끔").
TERSE_ENDING = re.compile(r"(?:함|듦|씀|냄|림|넣음|끔)(?=$|[\s.:·(,])")


def test_korean_results_are_polite_sentences() -> None:
    korean = catalogue("ko")
    terse = {key: text for key in KOREAN_RESULTS
             if "니다" not in (text := korean[key]) or TERSE_ENDING.search(text)}
    assert terse == {}


# What no Korean text may hold. A particle for either ending of the word before it ("{name}을(를) 삭제했습니다",
# "이(가)", "(으)로") reads as a form letter: "{name} 스냅샷을 삭제했습니다" has the noun after the name carry
# the particle, as Korean says it, and a dialog that shows a name in bold has it in one sentence (i18n.js
# tWith), not between two texts of which the second began with the particle. Three dots: the console's stage
# texts said "확인 중..." where every other Korean text says "불러오는 중…" (the seed's English status texts
# keep their three dots: they are the console's contract, byte for byte).
KOREAN_MISTAKES = {
    "particle-fallback": re.compile(r"[을를이가은는와과]\([을를이가은는와과]\)|\((?:으|이|과|와)\)"),
    "ellipsis-as-three-dots": re.compile(re.escape("...")),
}


@pytest.mark.parametrize("mistake", KOREAN_MISTAKES)
def test_korean_texts_avoid(mistake: str) -> None:
    found = {key: text for key, text in catalogue("ko").items() if KOREAN_MISTAKES[mistake].search(text)}
    assert found == {}


def test_the_pending_changes_note_says_what_applies_them() -> None:
    """"적용 대기 중." did not say what the changes wait for. They wait for the VM's next start: a reboot
    (재시작, ACPI) keeps the running QEMU and its old definition, so the note asks for a stop and a start."""
    korean, english = catalogue("ko")["details.restart_pending"], catalogue("en")["details.restart_pending"]
    assert "중지한 뒤 다시 시작" in korean and "재시작" not in korean
    assert "stop the VM and start it again" in english


# One word for one thing: the word a Korean text must not use → the one the catalogue uses for it.
KOREAN_TERMS = {
    "스냅숏": "스냅샷",  # the one the pages used from the first
    "가상머신": "가상 머신",
    "재부팅": "재시작",  # the VM action (action.reboot.label); "다시 시작" is the prose of starting again
    "검사": "점검",  # limen doctor's checks
    "서비스": "실행 중 / 제공합니다",  # a server serving ("서비스 중" read as customer service)
    "멈춥니다": "중지합니다",  # stopping a VM or the server; "멈췄습니다" stays for what hangs
    "닿지": "연결할 수 없습니다",
}


def test_korean_texts_keep_one_word_for_each_thing() -> None:
    found = {key: word for key, text in catalogue("ko").items() for word in KOREAN_TERMS if word in text}
    assert found == {}


def test_catalogue_json_cannot_end_its_script_element() -> None:
    for lang in LANGUAGE_CODES:
        text = catalogue_json(lang)
        assert "</" not in text and "<" not in text
        assert json.loads(text)["nav.vms"] == catalogue(lang)["nav.vms"]


def test_translate_fills_placeholders() -> None:
    assert translate("ko", "console.typed", count=12) == "연결됨 · 12자를 입력했습니다"
    assert translate("en", "console.typed", count=12) == "Connected · typed 12 characters"
    assert translate("ko", "no.such.key") == "no.such.key"


# -- choosing a language ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    (None, "en"), ("", "en"), ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"), ("en-US,en;q=0.9,ko;q=0.8", "en"),
    ("de-DE,ko;q=0.5,en;q=0.4", "ko"), ("fr, de", "en"), ("en;q=0.2, ko;q=0.8", "ko"), ("ko;q=0, en", "en"),
    ("ko;q=abc, en;q=0.1", "en"), ("KO", "ko"), ("*", "en"), ("ko-KR;q=1.0;x=y", "ko"), ("a" * 5000, "en"),
])
def test_accept_language_negotiation(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "en"), ({"LANG": "ko_KR.UTF-8"}, "ko"), ({"LANG": "C.UTF-8"}, "en"), ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LIMEN_LANG": "en", "LANG": "ko_KR.UTF-8"}, "en"), ({"LIMEN_LANG": "ko", "LANG": "C"}, "ko"),
    ({"LC_ALL": "ko_KR.UTF-8", "LANG": "en_US.UTF-8"}, "ko"), ({"LC_ALL": "C", "LANG": "ko_KR.UTF-8"}, "en"),
    ({"LIMEN_LANG": "xx", "LANG": "ko_KR.UTF-8"}, "ko"), ({"LC_MESSAGES": "ko_KR", "LANG": "en_US"}, "ko"),
])
def test_command_line_language_from_environment(env: dict[str, str], expected: str) -> None:
    assert language_from_environment(env) == expected


def test_terminal_width_counts_hangul_twice() -> None:
    assert display_width("가상 머신") == 9
    assert pad("상태", 6) == "상태  " and pad("STATE", 6) == "STATE "


# -- the pages ------------------------------------------------------------------------------------------------


async def test_pages_follow_accept_language_and_the_cookie(reading_client: httpx.AsyncClient) -> None:
    client = reading_client
    for path in PAGES:
        korean = await client.get(path, headers={"Accept-Language": "ko-KR,ko;q=0.9,en;q=0.8"})
        assert korean.status_code == 200, path
        assert '<html lang="ko">' in korean.text and korean.headers["content-language"] == "ko", path
        assert '<select id="language-menu"' in korean.text, path
        english = await client.get(path, headers={"Accept-Language": "ko", "Cookie": "limen_lang=en"})
        assert '<html lang="en">' in english.text, path
        default = await client.get(path, headers={"Cookie": "limen_lang=xx"})
        assert '<html lang="en">' in default.text, path
    home = (await client.get("/", headers={"Accept-Language": "ko"})).text
    assert "<title>가상 머신 — limen</title>" in home
    assert '<a href="/" aria-current="page">가상 머신</a>' in home
    assert '<option value="ko" lang="ko" selected>한국어</option>' in home


async def test_no_english_words_left_on_korean_pages(reading_client: httpx.AsyncClient) -> None:
    """The text nodes of every Korean page, outside scripts, are Korean, product names, codes or units."""
    allowed = {"limen", "VNC", "CD", "ROM", "ISO", "UUID", "vCPU", "MiB", "GiB", "API", "Ctrl", "Alt", "Shift",
               "Esc", "Authorization", "Bearer", "secret", "user", "admin", "English", "Tab", "qcow2", "US", "GRUB",
               "Enter", "Ctrl+C"}
    for path in PAGES:
        page = (await reading_client.get(path, headers={"Accept-Language": "ko"})).text
        body = re.sub(r"<script.*?</script>", "", page, flags=re.S)
        # The attributes people read, not data-i18n-title/-aria-label (the catalogue keys a page says again).
        texts = re.findall(r">([^<>]+)<", body) + re.findall(r'(?<![\w-])(?:aria-label|title|placeholder)="([^"]*)"',
                                                             body)
        words = {word for text in texts for word in re.findall(r"[A-Za-z]{2,}", html.unescape(text))}
        assert words - allowed - {"SHA", "debian", "iso", "web", "before", "upgrade", "img"} == set(), path


def test_the_static_pages_are_gone() -> None:
    """Pages are templates on one base layout; a stale copy under static/ would be served as an old page."""
    assert list(STATIC_DIR.glob("*.html")) == []
    for template in Path(TEMPLATE_DIR).glob("*.html"):
        text = template.read_text()
        if template.name not in ("base.html", "_macros.html"):
            assert text.startswith('{% extends "base.html" %}'), template.name
            assert "<head>" not in text and "<nav" not in text, template.name


# -- the user's choice ------------------------------------------------------------------------------------------


async def test_the_user_keeps_a_language_for_every_browser(world: World) -> None:
    from tests.support.access import sign_in

    csrf = await sign_in(world.client, ALICE, PASSWORD[ALICE])
    assert (await world.client.get("/api/me")).json()["language"] is None
    changed = await world.client.patch("/api/me", json={"language": "ko"}, headers={"X-CSRF-Token": csrf})
    assert changed.status_code == 200, changed.text
    assert changed.json()["language"] == "ko"
    assert "limen_lang=ko" in changed.headers["set-cookie"]
    assert (await world.client.get("/api/me")).json()["language"] == "ko"
    # Another browser: signed out it follows its Accept-Language; signing in brings the user's language.
    async with world.other_client() as other:
        page = await other.get("/login", headers={"Accept-Language": "en"})  # signed out, "/" sends it here
        assert '<html lang="en">' in page.text
        signed_in = await other.post("/api/login", json={"name": ALICE, "password": PASSWORD[ALICE]})
        assert signed_in.json()["language"] == "ko"
        assert "limen_lang=ko" in signed_in.headers.get_list("set-cookie")[-1]
        page = await other.get("/", headers={"Accept-Language": "en"})
        assert '<html lang="ko">' in page.text
    forgot = await world.client.patch("/api/me", json={"language": None}, headers={"X-CSRF-Token": csrf})
    assert forgot.json()["language"] is None and (await world.client.get("/api/me")).json()["language"] is None


@pytest.fixture
async def refusing_world(world: World) -> World:
    """The world of the tests whose every change is refused: each checks that the user's language and role
    are still as they were (the module's app is put back before each test)."""
    return world


@pytest.mark.parametrize("body", [{"language": "de"}, {"language": "ko-KR"}, {"language": 1}, {}, {"lang": "ko"},
                                  {"language": "ko", "role": "admin"}, {"language": "한국어" * 1000}])
async def test_a_bad_language_is_refused(refusing_world: World, body: object) -> None:
    from tests.support.access import assert_error, sign_in

    world = refusing_world
    csrf = await sign_in(world.client, ALICE, PASSWORD[ALICE])
    assert_error(await world.client.patch("/api/me", json=body, headers={"X-CSRF-Token": csrf}),
                 422, "VALIDATION_ERROR")
    assert (await world.client.get("/api/me")).json() == {**(await world.client.get("/api/me")).json(),
                                                            "language": None, "role": "user"}


async def test_changing_the_language_needs_the_csrf_token_and_a_user(world: World) -> None:
    from tests.support.access import assert_error, sign_in

    assert_error(await world.client.patch("/api/me", json={"language": "ko"}), 401, "UNAUTHORIZED")
    await sign_in(world.client, ALICE, PASSWORD[ALICE])
    assert_error(await world.client.patch("/api/me", json={"language": "ko"}), 403, "CSRF_FAILED")
    headers = await world.token(ALICE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=world.app),
                                 base_url=str(world.client.base_url)) as script:
        answer = await script.patch("/api/me", json={"language": "en"}, headers=headers)
    assert answer.status_code == 200 and answer.json()["language"] == "en"


def test_stage_texts_match_the_console_table() -> None:
    """The English labels and status texts the page falls back on are the stage table's own (the seed's,
    byte for byte); every stage has a Korean name and every status a Korean text."""
    from limen.console.stage_table import CONSOLE_KINDS

    for kind, stages in CONSOLE_KINDS.items():
        prefix = "" if kind == "vnc" else f"{kind}_"  # the VNC console's keys came first: stage.*, others kind_stage.*
        for stage in stages:
            assert catalogue("en")[f"{prefix}stage.{stage.name}"] == stage.label, (kind, stage.name)
            assert HANGUL.search(catalogue("ko")[f"{prefix}stage.{stage.name}"]), (kind, stage.name)
            if stage.status is not None:
                assert catalogue("en")[f"{prefix}stage_status.{stage.name}"] == stage.status, (kind, stage.name)
                assert HANGUL.search(catalogue("ko")[f"{prefix}stage_status.{stage.name}"]), (kind, stage.name)


# -- the scripts' own texts ------------------------------------------------------------------------------------

JS_STRING = re.compile(r'''"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`''')
# Where a literal becomes text a person reads: a property or assignment that puts it on the page, or a
# status line. ``[^,;]*$`` lets a ternary (``cond ? "a" : "b"``) between the sink and the literal.
USER_VISIBLE_SINK = re.compile(
    r'(?:\b(?:text|title|error|message|placeholder)\s*:|"aria-label"\s*:|\.(?:textContent|title)\s*=|'
    r'\bset(?:Status|State)\((?:[^,()]*,)?|\bended\()\s*[^,;]*$')
# Words in a sentence: a word of three letters or more and a space (keys, ids and codes have no space).
ENGLISH_WORDS = re.compile(r"(?=.*[A-Za-z]{3})(?=.* )", re.S)


def english_in(literal: str) -> bool:
    """Whether a JavaScript string literal (quotes included) reads as English words once its
    ``${…}`` parts and the product's name are taken out."""
    words = re.sub(r"\$\{[^}]*\}|\blimen\b", "", literal[1:-1]).strip()
    return bool(ENGLISH_WORDS.match(words))


def english_shown_by_scripts() -> list[str]:
    """Literals with English words that the scripts put where a person reads them (not ``details``, which
    stay technical, nor exceptions for logs): each must come from the catalogue, by key."""
    found = []
    for path in sorted((STATIC_DIR / "js").glob("*.js")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.lstrip().startswith(("//", "*", "/*")):
                continue
            for literal in JS_STRING.finditer(line):
                if english_in(literal.group()) and USER_VISIBLE_SINK.search(line[:literal.start()]):
                    found.append(f"{path.name}:{number}: {line.strip()}")
    return found


def test_scripts_show_no_english_of_their_own() -> None:
    """A Korean page must not show English a script wrote itself (the console's CONNECTION_FAILED title,
    a toast, a validation hint): the texts the scripts show are catalogue keys, so each language has its own."""
    assert english_shown_by_scripts() == []


def test_the_scan_sees_a_hard_coded_text() -> None:
    """The scan above is not vacuous: it flags the kinds of lines it is meant to."""
    samples = ['  return { error: "Cannot connect to limen", code: "CONNECTION_FAILED" };',
               '  ui.toast.textContent = `Deleted ${name}.`;',
               '  el.textContent = empty ? "(this VM has no disks)" : list;',
               '  this.setStatus(`xterm.js is not installed: ${exc}.`, "error");']
    for sample in samples:
        literal = next(JS_STRING.finditer(sample))
        assert english_in(literal.group()), sample
        assert USER_VISIBLE_SINK.search(sample[:literal.start()]), sample
    assert not USER_VISIBLE_SINK.search('  details: `WebSocket closed with code ')
    assert not english_in('"console.state.connected"') and not english_in("`${name} — ${size}`")
