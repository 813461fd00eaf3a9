// A VM action's details in the page's words, from the phrases the server reads them back as.

import assert from "node:assert/strict";
import { test } from "node:test";

import { actionDetailsText, wordPhrases } from "../../src/limen/web/static/js/action-details.js";
import { has, t } from "../../src/limen/web/static/js/i18n.js";

const korean = {  // a few of the Korean catalogue's words, enough to tell them from the English
  "action_detail.change": "{field} {old} → {new}{pending}{forced}",
  "action_detail.change_asked": "{field} → {new}{pending}{forced}",
  "action_detail.pending": " (다시 시작하면 적용)",
  "action_detail.forced_after": " (강제)",
  "action_detail.field.memory_mib": "메모리 (MiB)",
  "action_detail.field.cd": "CD",
  "action_detail.value.cd.ejected": "꺼냄",
  "action_detail.given_to": "{owner}에게 넘김",
  "action_detail.resized": "{target} {old} → {new}",
};
/** A Korean page whose catalogue holds only ``words``: what wordPhrases reads it with. */
function koreanPage(words) {
  return {
    translate: (key, params = {}) => words[key].replace(/\{(\w+)\}/g, (_, name) => params[name] ?? ""),
    known: (key) => Object.hasOwn(words, key),
    locale: "ko",
  };
}
const inKorean = koreanPage(korean);

test("each phrase is worded from the catalogue, values in the page's way", () => {
  const edit = [{ kind: "change", field: "memory_mib", old: "64", new: "1024", pending: "true" }];
  assert.equal(wordPhrases(edit, inKorean), "메모리 (MiB) 64 → 1,024 (다시 시작하면 적용)");
  const eject = [{ kind: "change", field: "cd", new: "ejected", forced: "true" }, { kind: "given_to", owner: "bob" }];
  assert.equal(wordPhrases(eject, inKorean), "CD → 꺼냄 (강제); bob에게 넘김");
  const grown = [{ kind: "resized", target: "vda", old: String(2 ** 30), new: String(3 * 2 ** 30) }];
  assert.equal(wordPhrases(grown, inKorean), "vda 1 GiB → 3 GiB");
});

test("a boot order is said by its devices' names", () => {
  const order = [{ kind: "change", field: "boot_order", old: "cdrom,hd", new: "hd" }];
  assert.equal(wordPhrases(order, { translate: t, known: has, locale: "en" }), "boot order CD-ROM, then disk → Disk only");
});

test("a phrase or a field without words here (a newer server's) leaves the server's words", () => {
  assert.equal(wordPhrases([{ kind: "defragmented" }], inKorean), null);
  assert.equal(wordPhrases([{ kind: "change", field: "cpu_model", old: "a", new: "b" }], inKorean), null);
  // An English page shows the server's words as they are; so does any page for a row without phrases.
  assert.equal(actionDetailsText({ details: "vcpus 1 → 2", details_phrases: [{ kind: "change" }] }), "vcpus 1 → 2");
  assert.equal(actionDetailsText({ details: "s1", details_phrases: null }), "s1");
});

test("a quota's refusal and a lost server's words are said in Korean", () => {
  const page = koreanPage({
    "action_detail.quota": "{resource} 할당량 초과: {needed}{unit} (한도 {limit}{unit})",
    "action_detail.quota_system": "시스템 전체 {resource} 할당량 초과: {needed}{unit} (한도 {limit}{unit})",
    "action_detail.quota_resource.memory": "메모리",
    "action_detail.outcome_unknown": "실제로 실행됐는지는 알 수 없음: 가상 머신의 상태를 확인하세요",
    "action_detail.instance_silent": "limen 인스턴스 {instance} (호스트 {host}, PID {pid})와 연결이 끊김: {seconds}초 동안 하트비트 없음",
  });
  const memory = { kind: "quota", resource: "memory", needed: "1024", unit: " MiB", limit: "768" };
  assert.equal(wordPhrases([memory], page), "메모리 할당량 초과: 1,024 MiB (한도 768 MiB)");
  assert.equal(wordPhrases([{ ...memory, system_wide: "true" }], page),
               "시스템 전체 메모리 할당량 초과: 1,024 MiB (한도 768 MiB)");
  assert.equal(wordPhrases([{ ...memory, resource: "printers" }], page), null);  // a newer server's: its English
  const lost = [{ kind: "instance_silent", instance: "abc", host: "h", pid: "1", seconds: "16" }, { kind: "outcome_unknown" }];
  assert.equal(wordPhrases(lost, page),
               "limen 인스턴스 abc (호스트 h, PID 1)와 연결이 끊김: 16초 동안 하트비트 없음; 실제로 실행됐는지는 알 수 없음: 가상 머신의 상태를 확인하세요");
});

test("every phrase kind the server reads back has words in both catalogues", async () => {
  const { readFileSync } = await import("node:fs");
  for (const language of ["en", "ko"]) {
    const catalogue = JSON.parse(readFileSync(new URL(`../../src/limen/i18n/catalogues/${language}/ui.json`, import.meta.url)));
    for (const kind of ["quota", "quota_system", "unrecorded_instance", "instance_had_stopped", "instance_stopped",
                        "instance_process_ended", "instance_silent", "create_stopped", "outcome_unknown", "removed"]) {
      assert.ok(Object.hasOwn(catalogue, `action_detail.${kind}`), `${language}: ${kind}`);
    }
  }
});

test("a console session's end in limen's own words is said in Korean; other words stay as they came", () => {
  const page = koreanPage({
    "action_detail.vm_stopped": "가상 머신 {vm} 멈춤{lifecycle}",
    "action_detail.lifecycle": " (libvirt 수명 주기 이벤트)",
    "action_detail.vm_crashed": "가상 머신 {vm} 비정상 종료{lifecycle}",
    "action_detail.vnc_server_closed": "VNC 서버가 연결을 닫음",
    "action_detail.vm_given": "{by} 사용자가 가상 머신 {vm}의 소유권을 {owner}에게 넘김",
  });
  assert.equal(wordPhrases([{ kind: "vm_stopped", vm: "web", lifecycle: "true" }], page),
               "가상 머신 web 멈춤 (libvirt 수명 주기 이벤트)");
  assert.equal(wordPhrases([{ kind: "vm_crashed", vm: "web" }, { kind: "vnc_server_closed" }], page),
               "가상 머신 web 비정상 종료; VNC 서버가 연결을 닫음");
  assert.equal(wordPhrases([{ kind: "vm_given", vm: "web", owner: "bob", by: "admin" }], page),
               "admin 사용자가 가상 머신 web의 소유권을 bob에게 넘김");
  assert.equal(wordPhrases([{ kind: "taken_over" }], page), null); // no words here: the server's English
});
