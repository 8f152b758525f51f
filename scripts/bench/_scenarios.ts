/**
 * The load patterns of `deno task bench` and the targets brick's figures are checked against.
 *
 * @module
 */

import {
  type Check,
  CPU_PER_REQUEST,
  KEPT_OPEN,
  type Metric,
  MIB_PER_SEC,
  P99,
  PEAK_RSS,
  REQUESTS_PER_SEC,
  RSS_PER_CONNECTION,
  type Target,
} from "./_report.ts";
import { pipelineLua, postLua } from "./_wrk.ts";
import {
  CONNECTIONS,
  PIPELINE_DEPTH,
  POST_BODY_BYTES,
  type Runtime,
  STATIC_CONNECTIONS,
  STATIC_FILE_BYTES,
  STATIC_FILE_NAME,
  WORKERS,
} from "./_config.ts";

export interface Scenario {
  /** Identifier used by `--scenario`. */
  name: string;
  /** One-line description for the report. */
  description: string;
  /** `wrk`, or the idle connections client. */
  driver: "wrk" | "h2load" | "idle";
  /** Extra request headers for wrk, as `Name: value`. */
  headers?: string[];
  /** wrk Lua script; written to a temporary file and passed with `--script`. */
  lua?: string;
  /** Request path (default `/`). */
  path?: string;
  /** wrk connections (default {@linkcode CONNECTIONS}). */
  connections?: number;
  /** wrk's `--timeout` for one response (default wrk's 2 s). */
  responseTimeout?: string;
  /**
   * Whether wrk's latency percentiles mean anything here (default true). They do not with
   * pipelining: wrk then times whole batches and corrupts the percentiles when correcting them
   * (https://github.com/wg/wrk/issues/236), so p99 is reported as n/a.
   */
  latencyPercentiles?: boolean;
  /** The rows of the results table, in order. */
  metrics: Metric[];
  /**
   * Whether the scenario is for servers of several workers ({@linkcode Server.workers}): only
   * they run it, it has its own results table, and the peak RSS is summed over the processes of
   * the server (default false).
   */
  workers?: boolean;
  /**
   * Whether the server is pinned to CPU {@linkcode SERVER_CPU} and its client to
   * {@linkcode CLIENT_CPU} (default true). When false, both run on every CPU, sharing them.
   */
  pinned?: boolean;
  /** wrk's `--threads` (default 1). */
  wrkThreads?: number;
}
export const SCENARIOS: Scenario[] = [
  {
    name: "hello",
    description: `keep-alive GET /, ${CONNECTIONS} connections`,
    driver: "wrk",
    metrics: [REQUESTS_PER_SEC, CPU_PER_REQUEST, P99],
  },
  {
    name: "hello-h2load",
    description: `the hello load from \`h2load --h1\` (nghttp2, one thread) instead of wrk, ` +
      `${CONNECTIONS} connections: a second client, for where wrk is the bottleneck`,
    driver: "h2load",
    metrics: [REQUESTS_PER_SEC, CPU_PER_REQUEST],
  },
  {
    name: "close",
    description: `GET / with \`Connection: close\`, a new connection per request, ` +
      `${CONNECTIONS} concurrent`,
    driver: "wrk",
    headers: ["Connection: close"],
    metrics: [REQUESTS_PER_SEC, CPU_PER_REQUEST, P99],
  },
  {
    name: "pipeline",
    description: `keep-alive, ${PIPELINE_DEPTH} pipelined GET / per connection, ` +
      `${CONNECTIONS} connections; req/s counts responses`,
    driver: "wrk",
    lua: pipelineLua(PIPELINE_DEPTH),
    latencyPercentiles: false,
    metrics: [REQUESTS_PER_SEC, CPU_PER_REQUEST],
  },
  {
    name: "post",
    description: `keep-alive POST / with a ${POST_BODY_BYTES / 1024} KiB body ` +
      `(Content-Length), ${CONNECTIONS} connections; the server reads the whole body, then ` +
      "answers a short text; peak RSS is the server's VmHWM at the end of the run",
    driver: "wrk",
    lua: postLua(POST_BODY_BYTES),
    metrics: [REQUESTS_PER_SEC, CPU_PER_REQUEST, P99, PEAK_RSS],
  },
  {
    name: "static",
    description: `keep-alive GET of a ${STATIC_FILE_BYTES / 1024 ** 2} MiB file, ` +
      `${STATIC_CONNECTIONS} connections; MiB/s is what wrk read per second`,
    driver: "wrk",
    path: `/${STATIC_FILE_NAME}`,
    connections: STATIC_CONNECTIONS,
    responseTimeout: "60s",
    latencyPercentiles: false,
    metrics: [MIB_PER_SEC, PEAK_RSS],
  },
  {
    name: "idle",
    description: "keep-alive connections, each sending one GET / and reading the response, " +
      "then held idle; RSS per connection is the growth of the server's VmRSS (its highest " +
      "reading while they are held, against one after a warm-up request) divided by the " +
      "connections, and kept open counts those still open at the end of the hold (the fewest " +
      "over rounds)",
    driver: "idle",
    metrics: [RSS_PER_CONNECTION, KEPT_OPEN],
  },
  {
    name: "workers",
    description: `keep-alive GET /, ${CONNECTIONS} connections, against servers of ${WORKERS} ` +
      "workers (brick's CLI with `--workers`, `deno serve --parallel`, node:cluster); nothing " +
      `is pinned: the workers and wrk (${WORKERS} threads) share every CPU; peak RSS is the ` +
      "sum of the VmHWM of every process of the server",
    driver: "wrk",
    workers: true,
    pinned: false,
    wrkThreads: WORKERS,
    metrics: [REQUESTS_PER_SEC, P99, PEAK_RSS],
  },
];

/** A check of `server` against `against`, or against a limit when `against` is undefined. */
function check(
  scenario: string,
  metric: Metric,
  server: string,
  against: string | undefined,
  target?: Target,
): Check {
  return { scenario, metric, server, against, target };
}

const atLeast = (value: number): Target => ({ kind: "at least", value });
const atMost = (value: number): Target => ({ kind: "at most", value });
const limit = (value: number): Target => ({ kind: "limit", value });
const ALL_OPEN: Target = { kind: "all open" };

/**
 * The performance targets, per runtime, in the order of the issues that set them, and figures
 * shown without a target: CPU per request, the h2load rates, brick against the raw responder
 * of its runtime (the ceiling; in post, the floor of peak memory) and, on Bun, against its
 * former node:net transport. The `workers` rows have none either: they show brick's CLI with
 * `--workers` against each runtime's own way of using every core.
 */
export const CHECKS: Record<Runtime, Check[]> = {
  deno: [
    check("hello", REQUESTS_PER_SEC, "brick", "deno", atLeast(0.9)),
    check("close", REQUESTS_PER_SEC, "brick", "deno", atLeast(0.85)),
    check("pipeline", REQUESTS_PER_SEC, "brick", "deno", atLeast(1.5)),
    check("post", REQUESTS_PER_SEC, "brick", "deno", atLeast(1.5)),
    check("post", PEAK_RSS, "brick", "deno", limit(120 * 1024)),
    check("static", MIB_PER_SEC, "brick", "deno", atLeast(1.0)),
    check("idle", RSS_PER_CONNECTION, "brick", "deno", limit(10)),
    check("idle", KEPT_OPEN, "brick", "deno", ALL_OPEN),
    check("hello", P99, "brick", "deno", atMost(1.5)),
    check("hello", CPU_PER_REQUEST, "brick", "deno"),
    check("hello-h2load", REQUESTS_PER_SEC, "brick", "deno"),
    check("hello", REQUESTS_PER_SEC, "brick", "raw-deno"),
    check("hello-h2load", REQUESTS_PER_SEC, "deno", "raw-deno"),
    // The floor of a server that hands each body over as a new array, in memory as in speed.
    check("post", PEAK_RSS, "brick", "raw-deno"),
    check("post", REQUESTS_PER_SEC, "brick", "raw-deno"),
    // The CLI as fast as the library, within 5%.
    check("hello", REQUESTS_PER_SEC, "brick-deno-cli", "brick", atLeast(0.95)),
    check("hello", CPU_PER_REQUEST, "brick-deno-cli", "brick"),
    check("workers", REQUESTS_PER_SEC, "brick-workers", "deno-parallel"),
    check("workers", P99, "brick-workers", "deno-parallel"),
  ],
  node: [
    check("hello", REQUESTS_PER_SEC, "brick-node", "node-http", atLeast(1.4)),
    check("hello", REQUESTS_PER_SEC, "brick-node", "hono-node", atLeast(1.4)),
    check("close", REQUESTS_PER_SEC, "brick-node", "node-http", atLeast(1.2)),
    check("pipeline", REQUESTS_PER_SEC, "brick-node", "node-http", atLeast(2)),
    check("post", REQUESTS_PER_SEC, "brick-node", "node-http", atLeast(1.2)),
    check("post", PEAK_RSS, "brick-node", "node-http"),
    check("static", MIB_PER_SEC, "brick-node", "node-http", atLeast(1.0)),
    check("idle", RSS_PER_CONNECTION, "brick-node", "node-http", limit(8)),
    check("idle", KEPT_OPEN, "brick-node", "node-http", ALL_OPEN),
    check("hello", P99, "brick-node", "node-http", atMost(1.0)),
    check("hello", CPU_PER_REQUEST, "brick-node", "node-http"),
    check("hello-h2load", REQUESTS_PER_SEC, "brick-node", "node-http"),
    check("hello", REQUESTS_PER_SEC, "brick-node", "raw-node", atLeast(0.8)),
    check("post", PEAK_RSS, "brick-node", "raw-node"),
    check("post", REQUESTS_PER_SEC, "brick-node", "raw-node"),
    // The CLI as fast as the library, within 5%.
    check("hello", REQUESTS_PER_SEC, "brick-node-cli", "brick-node", atLeast(0.95)),
    check("hello", CPU_PER_REQUEST, "brick-node-cli", "brick-node"),
    check("workers", REQUESTS_PER_SEC, "brick-node-workers", "node-cluster"),
    check("workers", P99, "brick-node-workers", "node-cluster"),
  ],
  bun: [
    check("hello", REQUESTS_PER_SEC, "brick-bun", "bun", atLeast(0.7)),
    check("hello", REQUESTS_PER_SEC, "brick-bun-cli", "bun", atLeast(0.7)),
    // The CLI as fast as the library, within 5%.
    check("hello", REQUESTS_PER_SEC, "brick-bun-cli", "brick-bun", atLeast(0.95)),
    check("hello", CPU_PER_REQUEST, "brick-bun-cli", "brick-bun"),
    check("hello-h2load", REQUESTS_PER_SEC, "brick-bun", "bun", atLeast(0.7)),
    check("hello-h2load", REQUESTS_PER_SEC, "brick-bun-cli", "bun", atLeast(0.7)),
    check("close", REQUESTS_PER_SEC, "brick-bun", "bun"),
    check("pipeline", REQUESTS_PER_SEC, "brick-bun", "bun", atLeast(2)),
    check("post", REQUESTS_PER_SEC, "brick-bun", "bun"),
    check("post", PEAK_RSS, "brick-bun", "bun"),
    check("static", MIB_PER_SEC, "brick-bun", "bun", atLeast(0.9)),
    check("idle", RSS_PER_CONNECTION, "brick-bun", "bun"),
    check("idle", KEPT_OPEN, "brick-bun", "bun"),
    check("hello", P99, "brick-bun", "bun"),
    check("hello", CPU_PER_REQUEST, "brick-bun", "bun"),
    check("hello", REQUESTS_PER_SEC, "brick-bun", "raw-bun"),
    check("hello-h2load", REQUESTS_PER_SEC, "bun", "raw-bun"),
    check("post", PEAK_RSS, "brick-bun", "raw-bun"),
    check("post", REQUESTS_PER_SEC, "brick-bun", "raw-bun"),
    // Bun.listen against the node:net transport brick had on Bun before.
    check("hello", REQUESTS_PER_SEC, "brick-bun", "brick-bun-node-net"),
    check("pipeline", REQUESTS_PER_SEC, "brick-bun", "brick-bun-node-net"),
    check("post", REQUESTS_PER_SEC, "brick-bun", "brick-bun-node-net"),
    check("static", MIB_PER_SEC, "brick-bun", "brick-bun-node-net"),
  ],
};
