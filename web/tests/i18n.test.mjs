// The page's words for what the server sends as identifiers: a VM action of the audit trail; and what a form
// says under a refused field. Outside a page the English catalogue is read from the package (i18n.js).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  actionName, fieldErrorText, localizedError, quotaText, sessionEndText, t, tWith, useLanguage,
} from "../../src/limen/web/static/js/i18n.js";
import { catalogue } from "./catalogue.mjs";

test("a VM action is shown by its name in the page's language", () => {
  assert.equal(actionName("start"), "Start");
  assert.equal(actionName("finish-install"), "Finish install");
  assert.equal(actionName("snapshot-delete"), "Delete snapshot");
});

test("an action the catalogue does not know (a newer server's) is shown as it came", () => {
  assert.equal(actionName("defragment"), "defragment");
});

test("a console session's normal end is said in words (the audit page showed a bare OK); an unknown code is not", () => {
  assert.equal(sessionEndText("OK"), "Ended normally");
  assert.equal(sessionEndText("DEFRAGMENTED"), null);
});

test("a sentence naming things keeps each name a node where its language puts it, not split into pieces", () => {
  const name = { bold: "vm1" };
  assert.deepEqual(tWith("list.delete_q", { name }), ["Delete the VM ", name, "? This cannot be undone."]);
  const vm = { bold: "vm1" };
  const snapshot = { bold: "s1" };
  assert.deepEqual(tWith("snapshots.delete_text", { vm, snapshot }), ["Delete snapshot ", snapshot, " of ", vm,
    "? The VM stays as it is; snapshots taken after this one stay. This cannot be undone."]);
  assert.deepEqual(tWith("isos.uploaded", { name }, { size: "1.0 MiB" }), ["Uploaded ", name, " (1.0 MiB)."]);
});

test("an English form says the server's words for the field, without its name and the request id", () => {
  // The ISO page showed "name: 'a/b.iso' is not a file name inside the ISO directory [request_id=8794…]".
  const refused = {
    error: "Validation error", code: "VALIDATION_ERROR", field: "name", rule: { kind: "file_name" },
    details: "name: 'a/b.iso' is not a file name inside the ISO directory [request_id=8794abc]",
  };
  assert.equal(fieldErrorText(refused), "'a/b.iso' is not a file name inside the ISO directory");
  const two = { field: "memory_mib", details: "vcpus: too many; memory_mib: must be between 32 and 24105 MiB" };
  assert.equal(fieldErrorText(two), "must be between 32 and 24105 MiB");
  assert.equal(fieldErrorText({ error: "Validation error", details: "" }), "Validation error");
});

test("a quota refusal says its numbers and what to free in the message, not only in folded English details", () => {
  const refused = {
    error: "Quota exceeded", code: "QUOTA_EXCEEDED", message: "Free what the details name …", details: "…",
    quota: { scope: "user 'alice'", resource: "memory_mib", limit: 4096, usage: 3072, requested: 2048, free: 1024 },
  };
  assert.equal(localizedError(refused).message, "Over your quota of running memory (MiB): the limit is "
    + "4,096, 3,072 in use, and this needs 2,048 more. Free 1,024: stop a running VM, turn off a stopped one's autostart or give it less memory.");
  const never = { ...refused, quota: { scope: "system-wide", resource: "vcpus", limit: 2, usage: 0, requested: 4, free: 2 } };
  assert.equal(localizedError(never).message, "Over the system-wide quota of running vCPUs: the limit is 2 and this "
    + "needs 4, so it could never fit. Ask for at most 2.");
  // Without its numbers (an older server), or another code: the server's message, unchanged.
  assert.equal(localizedError({ ...refused, quota: undefined }).message, "Free what the details name …");
  assert.equal(localizedError({ ...refused, code: "FORBIDDEN" }).message, "Free what the details name …");
  assert.equal(quotaText({ ...refused.quota, resource: "gpus" }), null);
});

test("a Korean quota refusal names the resource once, without brackets inside brackets", () => {
  // It read "내 할당량(실행 중인 메모리(MiB))을 초과합니다", then "실행 중인 메모리(MiB)에 대한 내 할당량을 초과합니다".
  const quota = { scope: "user 'alice'", resource: "memory_mib", limit: 512, usage: 0, requested: 1024, free: 512 };
  try {
    useLanguage("ko", catalogue("ko"));
    assert.equal(quotaText(quota), "이 작업은 내 할당량을 초과합니다. 실행 중인 메모리(MiB) 한도가 512이므로 "
      + "1,024만큼은 할당할 수 없습니다. 512 이하로 요청하세요.");
    const over = { scope: "system-wide", resource: "vcpus", limit: 8, usage: 6, requested: 4, free: 2 };
    assert.equal(quotaText(over), "이 작업은 시스템 전체 할당량을 초과합니다. 실행 중인 vCPU 한도는 8, 사용량은 6이며 "
      + "4만큼 더 필요합니다. 실행 중인 가상 머신을 중지하거나, 중지된 가상 머신의 자동 시작을 끄거나, vCPU를 줄여 2만큼 확보하세요.");
  } finally {
    useLanguage("en", catalogue("en")); // the other test files share this process and expect English
  }
});

test("the New VM form's Korean quota advice reads as one kind of sentence", () => {
  // It read "최대 4: 내 할당량(실행 중인 vCPU) 기준, 현재 1 사용 중." and "할당량을 넘습니다.".
  try {
    useLanguage("ko", catalogue("ko"));
    assert.equal(t("new.cap_vcpus", { limit: 4, scope: t("quota.scope_your"), usage: 1 }),
                 "내 할당량에 따라 최대 4개까지 가능합니다. 현재 실행 중인 vCPU는 1개입니다.");
    assert.equal(t("new.cap_memory", { limit: 2048, scope: t("quota.scope_system"), usage: 512 }),
                 "시스템 전체 할당량에 따라 최대 2048 MiB까지 가능합니다. 현재 실행 중인 메모리는 512 MiB입니다.");
    assert.equal(t("new.cap_disk", { left: 3, scope: t("quota.scope_your"), usage: 7, limit: 10 }),
                 "내 할당량에 따라 최대 3 GiB까지 가능합니다. 디스크는 10 GiB 중 7 GiB 사용 중입니다.");
    assert.equal(t("new.no_disk_left", { scope: t("quota.scope_your"), usage: 10, limit: 10 }),
                 "내 디스크 할당량이 남지 않아 디스크를 만들 수 없습니다(10 GiB 중 10 GiB 사용 중). "
                 + "가상 머신을 디스크와 함께 삭제하세요.");
    assert.equal(t("new.over_cap", { max: "4" }), "할당량을 초과합니다. 최대 4까지 가능합니다.");
    assert.equal(t("new.vms_full", { scope: t("quota.scope_your"), limit: 2, usage: 2 }),
                 "가상 머신을 만들 수 없습니다. 내 할당량은 2대까지인데 이미 2대가 있습니다. 먼저 하나를 삭제하세요.");
  } finally {
    useLanguage("en", catalogue("en"));
  }
});

test("the token revoke dialog says the prefix in a sentence that ends once, in either language", () => {
  // It read "Prefix limen_PZdKLn…." ("…" then ".").
  const prefix = { code: "limen_PZdKLn" };
  assert.deepEqual(tWith("tokens.dialog_prefix", { prefix }), ["Its prefix is ", prefix, ". "]);
  try {
    useLanguage("ko", catalogue("ko"));
    assert.deepEqual(tWith("tokens.dialog_prefix", { prefix }), ["접두어는 ", prefix, "입니다. "]);
  } finally {
    useLanguage("en", catalogue("en"));
  }
});
