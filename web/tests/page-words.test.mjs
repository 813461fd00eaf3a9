// Words the pages build from what the server sends (a user's role and state, a snapshot's saved VM state):
// in the page's language, none left in English on a Korean page.
// Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { test } from "node:test";

import { useLanguage } from "../../src/limen/web/static/js/i18n.js";
import { ownerOptionText } from "../../src/limen/web/static/js/vm-owner.js";
import { snapshotKind } from "../../src/limen/web/static/js/vm-snapshots.js";
import { catalogue } from "./catalogue.mjs";

test("the owner select says an administrator or a disabled user in the page's language", () => {
  try {
    useLanguage("ko", catalogue("ko"));
    assert.equal(ownerOptionText({ name: "bob", role: "admin", disabled: true }), "bob (관리자, 비활성)");
    assert.equal(ownerOptionText({ name: "민수", role: "user", disabled: false }), "민수");
  } finally {
    useLanguage("en", catalogue("en"));
  }
  assert.equal(ownerOptionText({ name: "bob", role: "admin", disabled: false }), "bob (administrator)");
});

test("a snapshot's saved VM state is said in the page's language, not as libvirt names it", () => {
  try {
    useLanguage("ko", catalogue("ko"));
    assert.equal(snapshotKind({ with_memory: false, vm_state: "paused" }), "디스크, 가상 머신 일시 정지 상태");
    assert.equal(snapshotKind({ with_memory: false, vm_state: "disk-snapshot" }), "디스크만, 가상 머신 실행 중");
    assert.equal(snapshotKind({ with_memory: false, vm_state: "shutoff" }), "디스크, 가상 머신 중지 상태");
    assert.equal(snapshotKind({ with_memory: true, vm_state: "running" }), "메모리 포함");
  } finally {
    useLanguage("en", catalogue("en"));
  }
  assert.equal(snapshotKind({ with_memory: false, vm_state: "paused" }), "disks, VM paused");
  assert.equal(snapshotKind({ with_memory: false, vm_state: "nostate" }), "disks, nostate"); // a newer libvirt's
});
