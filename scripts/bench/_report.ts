/**
 * The figures and tables of `deno task bench`: what a measurement holds, the metrics read from
 * it, medians over rounds, ratios taken round by round, targets and the markdown tables.
 *
 * @module
 */

/** What the idle scenario measured in one run. */
export interface IdleMeasurement {
  /** Connections the client was asked to open. */
  connections: number;
  /** Connections that got their response. */
  opened: number;
  /** Connections still open at the end of the hold. */
  keptOpen: number;
  /** The server's resident memory (VmRSS) in KiB after a warm-up request, before opening. */
  rssBeforeKiB: number;
  /** The highest VmRSS in KiB sampled while the connections were held open. */
  rssHeldKiB: number;
}

/** What one run of one server in one scenario measured. */
export interface Measurement {
  /** Completed requests per second; NaN where the scenario has no such rate (idle). */
  requestsPerSec: number;
  /** MiB read by the client per second; NaN where not measured. */
  mibPerSec: number;
  /** 99th percentile latency in milliseconds; NaN where not usable. */
  p99Ms: number;
  /** Errors the client saw: socket errors and non-2xx/3xx responses. */
  errors: number;
  /** The server's peak resident memory (VmHWM) in KiB at the end of the run; NaN if unknown. */
  peakRssKiB: number;
  /**
   * The server's CPU time (user + system, every thread) over the measured run divided by the
   * requests completed, in microseconds; absent where not measured.
   */
  cpuUsPerRequest?: number;
  /** Present in the idle scenario only. */
  idle?: IdleMeasurement;
}

/** One measurement per round, undefined for the rounds a server did not complete. */
export type Rounds = (Measurement | undefined)[];

/** A figure read from a measurement, with how to print it. */
export interface Metric {
  /** Name shown in the tables, such as `req/s`. */
  label: string;
  /** The figure in one measurement; NaN when the measurement has none. */
  value: (m: Measurement) => number;
  /** Prints a figure; NaN never reaches it. */
  format: (value: number) => string;
  /**
   * How rounds are summed up (default: the median). `min` for counts that must hold in every
   * round, such as connections kept open.
   */
  summary?: "median" | "min";
  /** Whether a ratio of two servers' figures means something (default true). */
  comparable?: boolean;
}

const integer = (value: number) => Math.round(value).toLocaleString("en-US");

/** Completed requests per second. */
export const REQUESTS_PER_SEC: Metric = {
  label: "req/s",
  value: (m) => m.requestsPerSec,
  format: integer,
};

/** MiB read per second. */
export const MIB_PER_SEC: Metric = {
  label: "MiB/s",
  value: (m) => m.mibPerSec,
  format: integer,
};

/** Server CPU time per completed request. */
export const CPU_PER_REQUEST: Metric = {
  label: "CPU µs/request",
  value: (m) => m.cpuUsPerRequest ?? NaN,
  format: (us) => us.toFixed(1),
};

/** 99th percentile latency. */
export const P99: Metric = {
  label: "p99 latency",
  value: (m) => m.p99Ms,
  format: (ms) => `${ms.toFixed(2)} ms`,
};

/** Peak resident memory of the server. */
export const PEAK_RSS: Metric = {
  label: "peak RSS",
  value: (m) => m.peakRssKiB,
  format: (kib) => `${(kib / 1024).toFixed(1)} MiB`,
};

/** Growth of the server's resident memory per idle connection. */
export const RSS_PER_CONNECTION: Metric = {
  label: "RSS per connection",
  value: (m) =>
    m.idle && m.idle.opened > 0 ? (m.idle.rssHeldKiB - m.idle.rssBeforeKiB) / m.idle.opened : NaN,
  format: (kib) => `${kib.toFixed(2)} KiB`,
};

/** Idle connections still open at the end of the hold (the fewest over rounds). */
export const KEPT_OPEN: Metric = {
  label: "kept open",
  value: (m) => m.idle?.keptOpen ?? NaN,
  format: integer,
  summary: "min",
  comparable: false,
};

/**
 * Median of the values that are not NaN; NaN if there are none.
 *
 * @param values the values
 * @returns their median
 */
export function median(values: number[]): number {
  const sorted = values.filter((value) => !Number.isNaN(value)).toSorted((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * A metric summed up over the rounds a server completed (see {@linkcode Metric.summary}); NaN
 * if no round has it.
 *
 * @param metric the figure
 * @param rounds the server's measurements
 * @returns the median, or the minimum for `summary: "min"`
 */
export function summarize(metric: Metric, rounds: Rounds): number {
  const values = rounds.flatMap((m) => m === undefined ? [] : [metric.value(m)])
    .filter((value) => !Number.isNaN(value));
  if (values.length === 0) return NaN;
  return metric.summary === "min" ? Math.min(...values) : median(values);
}

/**
 * Median over the rounds both servers completed of one's figure divided by the other's in the
 * same round; NaN if they share no round with both figures.
 *
 * @param metric the figure
 * @param server the measurements of the server on top of the ratio
 * @param other the measurements of the server below
 * @returns the median per-round ratio
 */
export function medianRatio(metric: Metric, server: Rounds, other: Rounds): number {
  return median(roundRatios(metric, server, other));
}

/**
 * One's figure divided by the other's, for each round both servers completed with both figures.
 *
 * @param metric the figure
 * @param server the measurements of the server on top of the ratio
 * @param other the measurements of the server below
 * @returns the ratios, in round order
 */
export function roundRatios(metric: Metric, server: Rounds, other: Rounds): number[] {
  return server.flatMap((m, round) => {
    const o = other[round];
    if (m === undefined || o === undefined) return [];
    const ratio = metric.value(m) / metric.value(o);
    return Number.isFinite(ratio) ? [ratio] : [];
  });
}

/** What a check demands. */
export type Target =
  /** The ratio against the other server is at least `value`. */
  | { kind: "at least"; value: number }
  /** The ratio against the other server is at most `value`. */
  | { kind: "at most"; value: number }
  /** The server's own figure (its summary over rounds) is at most `value`. */
  | { kind: "limit"; value: number }
  /** Every round kept every connection open. */
  | { kind: "all open" };

/** One line of a target table: a figure of one server, against another server or a limit. */
export interface Check {
  /** The scenario whose measurements are checked. */
  scenario: string;
  /** The figure checked. */
  metric: Metric;
  /** The server checked. */
  server: string;
  /** The server its figure is divided by, for a ratio. */
  against?: string;
  /** What is demanded; without it the line shows the figures only. */
  target?: Target;
}

/** Where a check reads its figures: per scenario, per server name, the rounds. */
export type Results = Map<string, Map<string, Rounds>>;

/** A check's verdict, printed in the `met` column. */
export type Verdict = "✓" | "✗" | "n/a" | "";

/**
 * Whether a check is met; "n/a" when a figure is missing, "" when it has no target.
 *
 * @param check the check
 * @param results the measurements
 * @returns the verdict and the ratio (NaN without `against`)
 */
export function evaluate(check: Check, results: Results): { verdict: Verdict; ratio: number } {
  const byServer = results.get(check.scenario);
  const rounds = byServer?.get(check.server) ?? [];
  const other = check.against === undefined ? undefined : byServer?.get(check.against);
  const ratio = other === undefined || check.metric.comparable === false
    ? NaN
    : medianRatio(check.metric, rounds, other);
  const target = check.target;
  if (target === undefined) return { verdict: "", ratio };
  const met = (ok: boolean, value: number): Verdict => Number.isNaN(value) ? "n/a" : ok ? "✓" : "✗";
  switch (target.kind) {
    case "at least":
      return { verdict: met(ratio >= target.value, ratio), ratio };
    case "at most":
      return { verdict: met(ratio <= target.value, ratio), ratio };
    case "limit": {
      const value = summarize(check.metric, rounds);
      return { verdict: met(value <= target.value, value), ratio };
    }
    case "all open": {
      const idle = rounds.map((m) => m?.idle);
      if (idle.length === 0 || idle.some((m) => m === undefined)) return { verdict: "n/a", ratio };
      const allOpen = idle.every((m) => m!.keptOpen === m!.connections);
      return { verdict: allOpen ? "✓" : "✗", ratio };
    }
  }
}

/** A target ratio with one decimal, or two where one would round it (0.95). */
function ratioText(value: number): string {
  return Number(value.toFixed(1)) === value ? value.toFixed(1) : value.toFixed(2);
}

/**
 * Prints a target for the table, such as `≥ 1.3×`.
 *
 * @param target the target
 * @param metric the figure a `limit` bounds, to print its unit
 * @returns the text
 */
export function formatTarget(target: Target | undefined, metric: Metric): string {
  if (target === undefined) return "—";
  switch (target.kind) {
    case "at least":
      return `≥ ${ratioText(target.value)}×`;
    case "at most":
      return `≤ ${ratioText(target.value)}×`;
    case "limit":
      return `≤ ${metric.format(target.value)}`;
    case "all open":
      return "all";
  }
}

/**
 * Prints a ratio with two decimals, or "n/a" for NaN.
 *
 * @param ratio the ratio
 * @returns the text, such as `1.25×`
 */
export function formatRatio(ratio: number): string {
  return Number.isNaN(ratio) ? "n/a" : `${ratio.toFixed(2)}×`;
}

/**
 * A median ratio with the lowest and highest per-round ratios beside it: the noise between
 * rounds. The range is left out for a single round, or when every round agrees.
 *
 * @param ratio the median per-round ratio
 * @param ratios the per-round ratios
 * @returns the text, such as `0.86× (0.83–0.88)`
 */
export function formatRatioRange(ratio: number, ratios: number[]): string {
  const text = formatRatio(ratio);
  if (Number.isNaN(ratio) || ratios.length < 2) return text;
  const low = Math.min(...ratios).toFixed(2);
  const high = Math.max(...ratios).toFixed(2);
  return low === high ? text : `${text} (${low}–${high})`;
}

/**
 * A metric's summary for a table cell, or "n/a".
 *
 * @param metric the figure
 * @param rounds the server's measurements
 * @returns the text
 */
export function formatSummary(metric: Metric, rounds: Rounds): string {
  const value = summarize(metric, rounds);
  return Number.isNaN(value) ? "n/a" : metric.format(value);
}

/**
 * A markdown table with padded columns.
 *
 * @param header the column titles
 * @param rightAligned whether each column is right-aligned
 * @param rows the cells, row by row
 * @returns the table, ending with a newline
 */
export function markdownTable(header: string[], rightAligned: boolean[], rows: string[][]): string {
  const widths = header.map((cell, i) => Math.max(3, cell.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `| ${
      cells.map((cell, i) => rightAligned[i] ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))
        .join(" | ")
    } |`;
  const rule = widths.map((width, i) =>
    rightAligned[i] ? "-".repeat(width - 1) + ":" : "-".repeat(width)
  );
  return [line(header), line(rule), ...rows.map(line)].join("\n") + "\n";
}
