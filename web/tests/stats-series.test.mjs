// The details page's resource series: merging answers of GET /api/vms/{id}/stats, the time window, and
// how figures read. Run: node --test web/tests/   (tests/unit/test_web_js.py runs it under pytest)

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  formatPercent, formatRate, formatSize, SeriesWindow, timeTickLabels, valueAxisTop,
} from "../../src/limen/web/static/js/stats-series.js";

function answer(times, cpu) {
  return { t: times, cpu_percent: cpu, cpu_vcpu_percent: cpu.map((v) => (v === null ? null : v / 2)) };
}

test("answers are merged once, in order, and missing columns read as null", () => {
  const series = new SeriesWindow(3600);
  assert.equal(series.since(), 0);
  series.merge(answer([100, 105], [null, 40]));
  series.merge(answer([105, 110], [40, 60])); // 105 again: an overlapping answer adds nothing twice
  assert.deepEqual(series.t, [100, 105, 110]);
  assert.deepEqual(series.columns.cpu_percent, [null, 40, 60]);
  assert.deepEqual(series.columns.cpu_vcpu_percent, [null, 20, 30]);
  assert.deepEqual(series.columns.net_rx_bps, [null, null, null]);
  assert.equal(series.since(), 110);
  assert.equal(series.latest("cpu_percent"), 60);
  assert.equal(series.latest("net_rx_bps"), null);
  assert.deepEqual(series.data(["cpu_percent"]), [[100, 105, 110], [null, 40, 60]]);
});

test("a VM stopped between two points leaves a gap; a gauge's one missing value is drawn across", () => {
  const series = new SeriesWindow(600);
  // Sampled every 5 s, stopped from 110 to 300; memory missed at 105 (libvirt busy), CPU at 300 (a rate's first).
  series.merge({ t: [100, 105, 110, 300, 305], cpu_percent: [10, 20, 30, null, 40],
                 memory_bytes: [64, null, 64, 64, 64] });
  assert.deepEqual(series.data(["memory_bytes"], { maxStep: 15, bridge: true }),
                   [[100, 105, 110, 205, 300, 305], [64, undefined, 64, null, 64, 64]]);
  assert.deepEqual(series.data(["cpu_percent"], { maxStep: 15 }),
                   [[100, 105, 110, 205, 300, 305], [10, 20, 30, null, null, 40]]);
});

test("points older than the window are dropped", () => {
  const series = new SeriesWindow(10);
  series.merge(answer([0, 5, 10, 15, 20], [1, 2, 3, 4, 5]));
  assert.deepEqual(series.t, [10, 15, 20]);
  assert.deepEqual(series.columns.cpu_percent, [3, 4, 5]);
});

test("an answer with nothing newer than the points held replaces them: the server's clock was set back", () => {
  // Held up to 1010; the server's clock then went back 300 s and its series began anew. Merged as before,
  // nothing came until the server's clock passed 1010 again: an hour set back froze the graphs for an hour.
  const series = new SeriesWindow(3600);
  series.merge(answer([1000, 1005, 1010], [10, 20, 30]));
  series.merge(answer([705, 710], [40, 50]));
  assert.deepEqual(series.t, [705, 710]);
  assert.deepEqual(series.columns.cpu_percent, [40, 50]);
  assert.equal(series.since(), 710);
});

test("bad answers change nothing", () => {
  const series = new SeriesWindow(10);
  series.merge(undefined);
  series.merge({ t: "nonsense" });
  assert.deepEqual(series.t, []);
});

test("figures read as people say them", () => {
  assert.equal(formatPercent(null), "—");
  assert.equal(formatPercent(0), "0%");
  assert.equal(formatPercent(3.14159), "3.1%");
  assert.equal(formatPercent(57.6), "58%");
  assert.equal(formatSize(96 * 2 ** 20), "96 MiB");
  assert.equal(formatSize(1.5 * 2 ** 30), "1.5 GiB");
  assert.equal(formatRate(2048), "2 KiB/s");
  assert.equal(formatRate(0), "0 B/s");
  assert.equal(formatRate(null), "—");
});

test("figures are written by Intl in the page's language, the binary units limen's own", () => {
  assert.equal(formatPercent(57.6, "ko"), "58%");
  assert.equal(formatPercent(3.14159, "de"), "3,1\u00a0%");
  assert.equal(formatSize(1.5 * 2 ** 30, "ko"), "1.5 GiB");
  assert.equal(formatSize(1.5 * 2 ** 30, "de"), "1,5 GiB");
  assert.equal(formatSize(1000), "1,000 B");
  assert.equal(formatRate(2048, "de"), "2 KiB/s");
  assert.equal(formatRate(2.5 * 1024, "de"), "2,5 KiB/s");
});

// The sizes and their texts in web/tests/size-texts.json are the command line's too (limen.sizes.format_size,
// tests/unit/test_sizes.py reads the same file): the Disks page said "1.0 GiB" where `limen volume list` said
// "1 GiB". The rule: the largest unit the size reaches, at most one decimal, never a trailing ".0".
test("a size reads as the command line says it", () => {
  const cases = JSON.parse(readFileSync(new URL("./size-texts.json", import.meta.url)));
  for (const [bytes, text] of cases) assert.equal(formatSize(bytes), text, `${bytes} bytes`);
});

test("time ticks less than a minute apart carry their seconds, so no two labels are alike", () => {
  const clock = (ms) => new Date(ms).toISOString().slice(11, 16);
  const withSeconds = (ms) => new Date(ms).toISOString().slice(11, 19);
  const ticks = [0, 15, 30, 45, 60].map((s) => 1_800_000_000 + s);
  const fine = timeTickLabels(ticks, 15, clock, withSeconds);
  assert.deepEqual(fine, ["08:00:00", "08:00:15", "08:00:30", "08:00:45", "08:01:00"]);
  assert.equal(new Set(fine).size, ticks.length);
  assert.deepEqual(timeTickLabels([1_800_000_000, 1_800_000_300], 300, clock, withSeconds), ["08:00", "08:05"]);
});

test("an empty graph's value axis keeps its scale's floor: an empty memory graph read 1 B / 0 B", () => {
  assert.equal(valueAxisTop(null, 2 ** 20), 2 ** 20 * 1.1);
  assert.equal(valueAxisTop(0, 1024), 1024 * 1.1);
  assert.equal(valueAxisTop(64 * 2 ** 20, 2 ** 20), 64 * 2 ** 20 * 1.1); // values above the floor lead
});
