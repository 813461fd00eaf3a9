// The pop-out console window's size and address.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DEFAULT_SCREEN, popoutFeatures, popoutSize, popoutUrl, popoutWindowName,
} from "../../src/limen/web/static/js/console-popout.js";

test("the window holds the VM's screen at 1:1 plus the toolbar", () => {
  assert.deepEqual(popoutSize({ width: 720, height: 400 }, 34, { width: 1920, height: 1080 }),
    { width: 720, height: 434 });
});

test("an unknown screen size counts as a VGA console", () => {
  assert.deepEqual(popoutSize({ width: 0, height: 0 }, 30, null),
    { width: DEFAULT_SCREEN.width, height: DEFAULT_SCREEN.height + 30 });
  assert.deepEqual(popoutSize(null, 30, undefined),
    { width: DEFAULT_SCREEN.width, height: DEFAULT_SCREEN.height + 30 });
});

test("a screen larger than the display is cut to the display; a tiny one grows to a usable window", () => {
  assert.deepEqual(popoutSize({ width: 2560, height: 1600 }, 36, { width: 1366, height: 740 }),
    { width: 1366, height: 740 });
  assert.deepEqual(popoutSize({ width: 320, height: 200 }, 36, { width: 1366, height: 740 }),
    { width: 400, height: 300 });
});

test("features and names", () => {
  assert.equal(popoutFeatures({ width: 720, height: 434 }), "popup=yes,width=720,height=434");
  assert.equal(popoutUrl("web 1/é"), "/vms/web%201%2F%C3%A9/console?popout=1");
  assert.equal(popoutWindowName("web 1.x"), "limen-console-web_1_x");
});
