// The VM details page's resource graphs: CPU %, memory, disk and network of the last hour, drawn with uPlot
// (served from /static/uplot) and updated live: GET /api/vms/{id}/stats?since=<newest point held> every
// sampling interval while the page is visible. Self-contained: it owns the #resource-graphs section.

import { api, ApiError } from "./api.js";
import { formatPercent, formatRate, formatSize, SeriesWindow, timeTickLabels, valueAxisTop } from "./stats-series.js";
import { formatClock, formatTime, lang, localizedError, t } from "./i18n.js";

const WINDOW_SECONDS = 3600;
const MIN_POLL_MS = 1000;
const RETRY_MS = 10000;
const CHART_HEIGHT = 150;
// Ticks on byte scales at binary steps (32 MiB, 64 MiB… rather than 48 MiB, 95 MiB).
const BYTE_INCRS = [];
for (let power = 0; power <= 50; power += 10) {
  for (const m of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]) BYTE_INCRS.push(m * 2 ** power);
}
// Time ticks at whole seconds or more: samples are a second apart at the finest, and in the first seconds
// of a graph uPlot would otherwise label half-seconds (":45.000 :45.500").
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
// An empty rate graph still shows a scale (0 to 1 KiB/s) rather than fractions of a byte; an empty memory
// graph one in MiB, a VM's least memory being tens of MiB.
const MIN_RATE_TOP = 1024;
const MIN_MEMORY_TOP = 2 ** 20;

// The lines' and axes' colours are the stylesheet's tokens (--graph-<colour>, --muted for the axes' words),
// read when a graph is made: the dark scheme has its own (limen.css). A canvas cannot take var().
function token(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(`--${name}`).trim();
}

const GRAPHS = [
  { id: "cpu", title: "CPU", unit: formatPercent, range: [0, 100],
    lines: [{ field: "cpu_vcpu_percent", label: t("graphs.of_vcpus"), colour: "blue", filled: true }] },
  { id: "memory", title: t("col.memory"), unit: formatSize, bytes: true, minTop: MIN_MEMORY_TOP,
    lines: [
      { field: "memory_bytes", label: t("graphs.assigned"), colour: "grey", dash: [4, 4] },
      { field: "rss_bytes", label: t("graphs.host_rss"), colour: "purple" },
      { field: "memory_used_bytes", label: t("graphs.used_by_guest"), colour: "green" },
    ] },
  { id: "disk", title: t("quota.disk"), unit: formatRate, bytes: true, minTop: MIN_RATE_TOP,
    lines: [
      { field: "disk_read_bps", label: t("graphs.read"), colour: "blue" },
      { field: "disk_write_bps", label: t("graphs.write"), colour: "orange" },
    ] },
  { id: "net", title: t("vm.network"), unit: formatRate, bytes: true, minTop: MIN_RATE_TOP,
    lines: [
      { field: "net_rx_bps", label: t("graphs.received"), colour: "green" },
      { field: "net_tx_bps", label: t("graphs.sent"), colour: "red" },
    ] },
];

// Points further apart than this many sampling intervals have a gap between them (the VM was stopped).
const GAP_AFTER_INTERVALS = 3;
const section = document.getElementById("resource-graphs");
const note = document.getElementById("graphs-note");
const addressedAs = decodeURIComponent(window.location.pathname.replace(/\/+$/, "").split("/").pop() || "");
// The details page names the VM by its UUID once it has read it (data-vm): a page opened by the VM's name
// asked for the old name's figures after a rename, got VM_NOT_FOUND and stopped for good.
const vmId = () => section.dataset.vm || addressedAs;
const series = new SeriesWindow(WINDOW_SECONDS);
const charts = new Map();
let uPlot = null;
let timer = null;
let polling = false;
let pollMs = 5000;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function chartWidth(box) {
  return Math.max(200, Math.floor(box.getBoundingClientRect().width));
}

function buildGraph(graph) {
  const card = el("figure", "graph");
  card.dataset.graph = graph.id;
  // Named for a screen reader (the canvas says nothing), described by its latest figures.
  card.setAttribute("aria-label", t("graphs.figure_name", { title: graph.title }));
  const head = el("figcaption", "graph-head");
  const title = el("span", "graph-title", graph.title);
  const figure = el("span", "graph-figure", noFiguresText(graph));
  figure.id = `graph-${graph.id}-latest`;
  card.setAttribute("aria-describedby", figure.id);
  head.append(title, figure);
  const box = el("div", "graph-box");
  card.append(head, box);
  const opts = {
    width: 400,
    height: CHART_HEIGHT,
    legend: { show: true, live: false },
    cursor: { y: false, points: { size: 5 } },
    scales: {
      x: { time: true },
      y: { range: graph.range ?? ((_u, _min, max) => [0, valueAxisTop(max, graph.minTop)]) },
    },
    axes: [
      // Times as the page's language writes them (uPlot's own labels are English: "1:05pm").
      { stroke: token("muted"), grid: { stroke: token("graph-grid") }, ticks: { stroke: token("border") }, incrs: TIME_INCRS, space: 84,
        values: (_u, ticks, _axis, _space, incr) => timeTickLabels(ticks, incr, formatClock, formatTime) },
      { stroke: token("muted"), grid: { stroke: token("graph-grid") }, ticks: { stroke: token("border") }, size: 76,
        incrs: graph.bytes ? BYTE_INCRS : undefined, values: (_u, ticks) => ticks.map((v) => graph.unit(v, lang)) },
    ],
    series: [
      {},
      ...graph.lines.map((line) => ({
        label: line.label, stroke: token(`graph-${line.colour}`), dash: line.dash, width: 1.5,
        fill: line.filled ? `${token(`graph-${line.colour}`)}1f` : undefined, // 12 % of the line's colour
        // A gauge (memory) is drawn across a sample that lacked it (libvirt does not wait for a VM busy with
        // a job, e.g. a screenshot: SeriesWindow.data's bridge); a rate's gap, and a stopped VM's, stay gaps.
        spanGaps: false, points: { show: false }, value: (_u, v) => graph.unit(v, lang),
      })),
    ],
  };
  return { graph, card, box, figure, opts, plot: null };
}

/** The latest figures of a graph's lines, or null when it has none. */
function figureText(graph) {
  const parts = graph.lines
    .map((line) => [line.label, series.latest(line.field)])
    .filter(([, value]) => value !== null)
    .map(([label, value]) => t("graphs.figure", { value: graph.unit(value, lang), label })); // "vCPU 대비 12%"
  return parts.length ? parts.join(" · ") : null;
}

/** Why a graph has no figures: a VM without a network interface never has network figures, not "yet". */
function noFiguresText(graph) {
  return graph.id === "net" && section.dataset.nics === "0" ? t("graphs.no_nics") : t("graphs.no_figures");
}

function draw() {
  for (const chart of charts.values()) {
    const data = series.data(chart.graph.lines.map((line) => line.field),
                             { maxStep: GAP_AFTER_INTERVALS * pollMs / 1000, bridge: chart.graph.id === "memory" });
    if (chart.plot === null) {
      chart.opts.width = chartWidth(chart.box);
      chart.plot = new uPlot(chart.opts, data, chart.box);
    } else {
      chart.plot.setData(data);
    }
  }
  showFigures();
}

function showFigures() {
  for (const chart of charts.values()) {
    const text = figureText(chart.graph);
    chart.figure.textContent = text ?? noFiguresText(chart.graph);
    chart.figure.classList.toggle("mono", text !== null); // figures line up; words need not
  }
}

function describe(body) {
  if (!body.enabled) return t("graphs.off");
  const every = t("graphs.every", { seconds: body.interval });
  if (!body.running) return series.t.length ? t("graphs.stopped_last", { every }) : t("graphs.not_running");
  if (body.stale) return t("graphs.stale");
  return t("graphs.live", { every });
}

async function poll() {
  clearTimeout(timer);
  timer = null;
  if (document.visibilityState !== "visible" || polling) return; // resumed by visibilitychange
  polling = true;
  let delay = pollMs;
  let asked = null;
  try {
    const since = series.since();
    asked = vmId();
    const body = await api("GET", `/api/vms/${encodeURIComponent(asked)}/stats?since=${since}&resolution=fine`);
    series.merge(body.series);
    pollMs = Math.max(MIN_POLL_MS, (body.interval || 5) * 1000);
    delay = body.enabled ? pollMs : RETRY_MS * 6;
    section.dataset.running = String(Boolean(body.running));
    section.dataset.points = String(series.t.length);
    draw();
    note.textContent = describe(body);
  } catch (exc) {
    delay = RETRY_MS;
    if (exc instanceof ApiError && exc.code === "VM_NOT_FOUND" && asked === vmId()) {
      note.textContent = ""; // the page says the VM is not there; asking again would not change that
      polling = false;
      return;
    }
    const shown = exc instanceof ApiError ? localizedError(exc.body) : null;
    const text = shown ? `${shown.error}: ${shown.message || shown.details || ""}` : String(exc);
    note.textContent = t("graphs.cannot_load", { reason: text.trim(), seconds: RETRY_MS / 1000 });
  } finally {
    polling = false;
  }
  timer = setTimeout(poll, delay);
}

function resize() {
  for (const chart of charts.values()) {
    if (chart.plot) chart.plot.setSize({ width: chartWidth(chart.box), height: CHART_HEIGHT });
  }
}

async function start() {
  if (!section) return;
  try {
    uPlot = (await import("/static/uplot/uPlot.esm.js")).default;
  } catch (exc) {
    note.textContent = t("graphs.no_uplot");
    return;
  }
  const grid = document.getElementById("graphs");
  for (const graph of GRAPHS) {
    const chart = buildGraph(graph);
    charts.set(graph.id, chart);
    grid.append(chart.card);
  }
  new ResizeObserver(() => resize()).observe(grid);
  // The details page tells the VM's interfaces (data-nics) when it has read the VM, after or before a poll.
  new MutationObserver(() => showFigures()).observe(section, { attributeFilter: ["data-nics"] });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && timer === null) poll();
  });
  poll();
}

start();
