// Resource series on the page: the points of GET /api/vms/{id}/stats kept for a time window, merged as new
// answers arrive (each asks only for what is newer than the last point held), and how figures are written.
// Pure: no DOM, no fetch; tested with node --test (web/tests/stats-series.test.mjs).

export const FIELDS = [
  "cpu_percent", "cpu_vcpu_percent", "memory_bytes", "memory_used_bytes", "rss_bytes",
  "disk_read_bps", "disk_write_bps", "net_rx_bps", "net_tx_bps",
];

export class SeriesWindow {
  // windowSeconds: how far back from the newest point to keep (older points are dropped).
  constructor(windowSeconds) {
    this.windowSeconds = windowSeconds;
    this.clear();
  }

  clear() {
    this.t = [];
    this.columns = Object.fromEntries(FIELDS.map((name) => [name, []]));
  }

  // The `since` to ask with: the newest point held, or 0 (everything the server has) before anything is
  // held; the server's clock decides, not this browser's.
  since() {
    return this.t.length ? this.t[this.t.length - 1] : 0;
  }

  // Adds the points of an answer's `series` newer than those held, then trims to the window. An answer with
  // points but none newer than those held is the server's whole series anew (its clock was set back, or
  // another server answered): it replaces what is held, which would otherwise hide every point until the
  // server's clock passed the newest one held again.
  merge(series) {
    const times = series && Array.isArray(series.t) ? series.t : [];
    if (times.length && this.t.length && !(times[times.length - 1] > this.t[this.t.length - 1])) this.clear();
    const last = this.t.length ? this.t[this.t.length - 1] : -Infinity;
    times.forEach((t, i) => {
      if (!(t > last)) return;
      this.t.push(t);
      for (const name of FIELDS) {
        const column = series[name];
        this.columns[name].push(column && column[i] !== undefined ? column[i] : null);
      }
    });
    if (!this.t.length) return;
    const oldest = this.t[this.t.length - 1] - this.windowSeconds;
    let drop = 0;
    while (drop < this.t.length && this.t[drop] < oldest) drop += 1;
    if (drop) {
      this.t.splice(0, drop);
      for (const name of FIELDS) this.columns[name].splice(0, drop);
    }
  }

  // uPlot's data: [times, ...columns] for the fields asked. Between two points further apart than `maxStep`
  // seconds (the VM was stopped meanwhile) comes a point of nulls, which every line shows as a gap. `bridge`:
  // a value missing from one point (a gauge libvirt skipped while the VM was busy) is undefined, which uPlot
  // draws across, while a stop's gap stays a gap.
  data(fields, { maxStep = Infinity, bridge = false } = {}) {
    const times = [];
    const columns = fields.map(() => []);
    this.t.forEach((t, i) => {
      const before = this.t[i - 1];
      if (i > 0 && t - before > maxStep) {
        times.push(before + (t - before) / 2);
        for (const column of columns) column.push(null);
      }
      times.push(t);
      fields.forEach((name, k) => {
        const value = this.columns[name][i];
        columns[k].push(value === null && bridge ? undefined : value);
      });
    });
    return [times, ...columns];
  }

  latest(name) {
    const column = this.columns[name];
    for (let i = column.length - 1; i >= 0; i -= 1) if (column[i] !== null) return column[i];
    return null;
  }
}

// Intl's number formats by locale and options (building one costs more than formatting with it).
const formats = new Map();
function numberFormat(locale, options) {
  const key = `${locale}|${JSON.stringify(options)}`;
  if (!formats.has(key)) formats.set(key, new Intl.NumberFormat(locale, options));
  return formats.get(key);
}

// One decimal below 10 (3.1), whole numbers from 10 (58) and for 0, written by Intl in `locale`.
function digits(value) {
  const count = value >= 10 || value === 0 ? 0 : 1;
  return { minimumFractionDigits: count, maximumFractionDigits: count };
}

export function formatPercent(value, locale = "en") {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return numberFormat(locale, { style: "percent", ...digits(value) }).format(value / 100);
}

// Binary units (KiB, MiB…), which Intl does not name: the number is Intl's, the unit limen's. The rule is the
// command line's too (limen.sizes.format_size): the largest unit the size reaches, at most one decimal and no
// ".0" ("1 GiB", "1.5 GiB", "196.5 MiB"), whole bytes below 1 KiB.
const SIZE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function formatSize(bytes, locale = "en") {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return "—";
  let value = Math.max(0, bytes);
  let unit = 0;
  let rounded;
  for (;;) {
    const scale = unit === 0 ? 1 : 10;
    rounded = Math.round(value * scale) / scale;
    // 1023.96 MiB rounds to 1024: that is 1 GiB, not "1,024 MiB".
    if (rounded < 1024 || unit === SIZE_UNITS.length - 1) break;
    value /= 1024;
    unit += 1;
  }
  return `${numberFormat(locale, { maximumFractionDigits: 1 }).format(rounded)} ${SIZE_UNITS[unit]}`;
}

export function formatRate(bytesPerSecond, locale = "en") {
  const size = formatSize(bytesPerSecond, locale);
  return size === "—" ? size : `${size}/s`;
}

// The top of a value axis from the highest value shown (null/undefined/0 when there is none) and the least
// top the graph's scale keeps, `floor`; a margin above the line. Without a floor an empty byte graph read
// "1 B / 0 B": its axis was scaled to one byte.
export function valueAxisTop(max, floor) {
  return Math.max(max || 0, floor) * 1.1;
}

// Labels of a time axis (ticks in seconds since the epoch, `incrSeconds` apart): hours and minutes once the
// ticks are a minute or more apart; with seconds below that, as in a graph's first minutes, where
// "3:58 PM" five times over says nothing. The formatters write milliseconds in the page's language.
export function timeTickLabels(ticks, incrSeconds, clock, clockWithSeconds) {
  const format = incrSeconds < 60 ? clockWithSeconds : clock;
  return ticks.map((seconds) => format(seconds * 1000));
}
