/**
 * Benchmark of brick on Deno, Node and Bun against each runtime's own server: throughput,
 * latency and memory in seven scenarios, checked against brick's performance targets.
 *
 * ```sh
 * deno task bench                                   # everything, 5 s x 3 rounds
 * deno task bench --quick                           # smoke test: 1 s x 1 round
 * deno task bench --runtime node                    # only the Node servers
 * deno task bench --scenario hello,close --duration 10 --rounds 5
 * deno task bench --scenario idle --idle-connections 2000
 * deno task bench --scenario workers                # only the --workers 2 rows
 * deno task bench --server deno                     # only Deno.serve (no ratio)
 * deno task bench --help
 * ```
 *
 * The servers form three groups, one per runtime, each with its baseline:
 *
 * - Deno: brick (`mod.ts`) and `Deno.serve`, the baseline.
 * - Node: brick (the npm build, `npm/mod.js`), `node:http`, the baseline, and Hono on
 *   `@hono/node-server`.
 * - Bun: brick (the same npm build) and `Bun.serve`, the baseline.
 *
 * and, for the `workers` scenario only, servers of two workers:
 *
 * - Deno: brick's CLI (`main.ts --workers 2`, worker threads) and `deno serve --parallel`
 *   (`DENO_JOBS=2`), the baseline.
 * - Node: brick's CLI from the npm build (`npm/main.js --workers 2`, node:cluster processes)
 *   and `bench/node_cluster.mjs`, a node:cluster of two node:http workers, the baseline.
 *
 * The scenarios ({@linkcode SCENARIOS}): `hello`, `close` and `pipeline` (GET / keep-alive, with
 * a new connection per request, 16 pipelined), `post` (a 64 KiB body read whole), `static` (a
 * 100 MiB file), `idle` (10,000 open keep-alive connections) and `workers` (`hello` against the
 * servers of two workers). All but `idle` are driven by wrk; `idle` by `bench/idle_client.mjs`,
 * which opens the connections, then holds them.
 *
 * Every measurement starts a fresh server pinned to CPU 0 (`taskset -c 0`) on a free port of
 * 127.0.0.1, with the open-files limit raised (`ulimit -n`, up to 65535), and drives it from CPU
 * 1: a wrk warm-up whose numbers are discarded, then a measured wrk run with `--latency`. Within
 * a round the servers take turns (brick, Deno.serve, brick on Node, node:http, Hono, brick on
 * Bun, Bun.serve, then again), so every server of a group is measured under the same machine
 * conditions as its baseline. The server's memory is read from `/proc/<pid>/status`: the pid is
 * the server's own, since `bash -c 'ulimit …; exec …'` and `taskset` both exec.
 *
 * The `workers` scenario pins nothing: the servers need both cores, and wrk (two threads) runs
 * on the same ones. Its peak RSS is summed over the server's processes. Every server runs in a
 * process group of its own (`bench/_process_group.ts`) and is stopped with the whole group;
 * a server that leaves a process of its group running fails its run.
 *
 * The report gives the median of each figure over the rounds, per scenario and server, and per
 * runtime a table of brick's figures against its baseline's (medians of per-round ratios) and
 * against the targets of {@linkcode CHECKS}, with ✓ or ✗. Both are printed as markdown and
 * written to BENCH.md with the machine, the tool versions and the date.
 *
 * Before the first measurement the servers are prepared: `npm/` is rebuilt with
 * `deno task build:npm` when it is missing or older than its sources, and a copy of it is taken,
 * so that a rebuild during the run changes nothing; `hono` and `@hono/node-server`, at pinned
 * versions, are installed with npm into a cache directory outside the repository
 * (`$XDG_CACHE_HOME/brick-bench/node`, or `~/.cache/...`) unless already there; Bun is fetched
 * with `npx -y bun@1.3.14` and its binary located; the 100 MiB file is written once into the
 * same cache directory. A server that cannot be prepared (no network, say) is left out with a
 * note. A server that fails during the run (a crash, a failed start) is reported with the end of
 * its stderr and left out of the rest of that scenario; the others go on, and the exit code is 1.
 *
 * Needs `wrk`, `taskset` and `bash` on PATH and at least two CPUs; the Node servers need `node`
 * (20 or later) and, for Hono, `npm`; the Bun servers need `npx`.
 *
 * To add a server, append to {@linkcode SERVERS} a command that starts it as described in
 * `bench/_server_args.mjs`. To add a scenario, append to {@linkcode SCENARIOS} the request
 * headers or wrk Lua script it needs and the figures it reports.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  type Check,
  evaluate,
  formatRatio,
  formatSummary,
  formatTarget,
  KEPT_OPEN,
  markdownTable,
  type Measurement,
  type Metric,
  MIB_PER_SEC,
  P99,
  PEAK_RSS,
  REQUESTS_PER_SEC,
  type Results,
  type Rounds,
  RSS_PER_CONNECTION,
  type Target,
} from "./bench/_report.ts";
import { parseWrkOutput, pipelineLua, postLua } from "./bench/_wrk.ts";
import { groupMembers, signalGroup, spawnGroup, stopGroup } from "./bench/_process_group.ts";

// ─── Servers, scenarios and targets ─────────────────────────────────────────

/** The runtime a server runs on; each has its own baseline server. */
type Runtime = "deno" | "node" | "bun";

const RUNTIME_LABELS: Record<Runtime, string> = { deno: "Deno", node: "Node", bun: "Bun" };

/** A server under test. */
interface Server {
  /** Identifier used by `--server`. */
  name: string;
  /** Name shown in the tables and logs. */
  title: string;
  runtime: Runtime;
  /** Name of the server this one is compared with (measured in the same rounds). */
  baseline: string;
  /**
   * Program and script starting the server; the bench appends `--scenario <name>` (and
   * `--root <dir>`), as `bench/_server_args.mjs` describes.
   */
  command: string[];
  /**
   * The scenarios it runs (default: all those for its kind of server, see
   * {@linkcode Server.workers}).
   */
  scenarios?: string[];
  /**
   * How many workers serve, for a server of several processes or threads. Such a server runs
   * only the scenarios marked {@linkcode Scenario.workers}, and the others only the rest.
   */
  workers?: number;
  /**
   * Whether {@linkcode Server.command} is a bench server, which gets `--scenario <name>` (and
   * `--root <dir>`) appended (default true); false for a command line that is complete as it
   * is, such as brick's CLI.
   */
  benchArgs?: boolean;
  /**
   * The stdout line that tells the port the server listens on, with the port in group 1
   * (default: a bench server's `LISTENING <port>`).
   */
  portLine?: RegExp;
  /** Environment variables for the server process, besides those of its preparation. */
  env?: Record<string, string>;
  /**
   * Runs once before the first measurement (builds, installs) and returns what the server
   * needs. Throws {@linkcode SkipServer} to leave the server out of the run.
   */
  prepare?: (tmpDir: string, options: Options) => Promise<Prepared>;
}

/** What {@linkcode Server.prepare} hands to the run. */
interface Prepared {
  /** Environment variables for the server process. */
  env?: Record<string, string>;
  /** Replaces {@linkcode Server.command}, e.g. with a program found only now. */
  command?: string[];
  /** Lines for the report's environment list. */
  environment?: string[];
  /** How the server sends the static file, for the report's notes. */
  staticNote?: string;
}

/** A server ready to start. */
interface ReadyServer extends Server {
  env: Record<string, string>;
}

/** Thrown by a server's preparation when the server cannot run here; the run goes on without it. */
class SkipServer extends Error {
  /** `message` is one line for the report; `detail`, printed below it, may be more. */
  constructor(message: string, readonly detail = "") {
    super(message);
  }
}

/** A load pattern applied to every server that runs it. */
interface Scenario {
  /** Identifier used by `--scenario`. */
  name: string;
  /** One-line description for the report. */
  description: string;
  /** `wrk`, or the idle connections client. */
  driver: "wrk" | "idle";
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

/** Settings of one benchmark run. */
interface Options {
  scenarios: Scenario[];
  servers: Server[];
  /** Measured seconds per run. */
  duration: number;
  /** Warm-up seconds per run, discarded. */
  warmup: number;
  rounds: number;
  /** Connections the idle scenario opens. */
  idleConnections: number;
  /** Seconds the idle scenario holds them open. */
  idleHold: number;
  /** Whether to measure `npm/` as it is, without rebuilding it. */
  noBuild: boolean;
  /** Whether this is a `--quick` smoke test. */
  quick: boolean;
  /** Path of the markdown report. */
  output: string;
}

const HOSTNAME = "127.0.0.1";
const SERVER_CPU = "0";
const CLIENT_CPU = "1";
const CONNECTIONS = 64;
const PIPELINE_DEPTH = 16;
const POST_BODY_BYTES = 64 * 1024;
const STATIC_FILE_BYTES = 100 * 1024 * 1024;
const STATIC_FILE_NAME = "brick-bench-100mib.bin";
const STATIC_CONNECTIONS = 4;
const IDLE_CONNECTIONS = 10_000;
/** Workers of the servers in the `workers` scenario: one per core of a two-core machine. */
const WORKERS = 2;
const IDLE_HOLD_SECONDS = 5;
/** The open-files limit asked for, capped by the hard limit. */
const WANTED_FILE_LIMIT = 65_535;
/** Files a process needs besides its connections. */
const SPARE_FILES = 1_000;
const STARTUP_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
/**
 * How long the processes of a server's group may take to be gone after the server process
 * itself has exited (workers still exiting) before the bench kills them and fails the run.
 */
const GROUP_EXIT_TIMEOUT_MS = 3_000;
/** Time wrk may take beyond its `-d` duration before it is killed. */
const WRK_GRACE_MS = 15_000;
/** The most the idle client may spend opening its connections. */
const IDLE_OPEN_TIMEOUT_MS = 60_000;
/** Time the idle client may take beyond what it was told before it is killed. */
const IDLE_CLIENT_GRACE_MS = 15_000;
/** Pause between the warm-up request and the first memory reading of the idle scenario. */
const IDLE_SETTLE_MS = 500;
/** How often the server's memory is read while the idle connections are held. */
const RSS_SAMPLE_MS = 250;
const BUILD_TIMEOUT_MS = 300_000;
const INSTALL_TIMEOUT_MS = 180_000;
/** How much of a failing server's stderr the report quotes. */
const STDERR_TAIL_CHARS = 2_000;

/** Exact versions of the npm packages behind the Hono rows. */
const HONO_PACKAGES = { "@hono/node-server": "2.1.8", "hono": "4.13.19" };
/** The Bun release the Bun rows run on, fetched with npx. */
const BUN_PACKAGE = "bun@1.3.14";

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
const BENCH_DIR = fileURLToPath(new URL("./bench/", import.meta.url));

/** The banner line of brick's CLI that gives the port: `  Local:   http://127.0.0.1:<port>/`. */
const BRICK_BANNER_PORT = /^\s*Local:\s+http:\/\/127\.0\.0\.1:(\d+)\/\r?$/m;

/**
 * The arguments of brick's CLI in the `workers` scenario: its default hello app, no access log,
 * {@linkcode WORKERS} workers, a free port of 127.0.0.1.
 */
function brickCliArgs(): string[] {
  return ["--workers", String(WORKERS), "--quiet", "--host", HOSTNAME, "--port", "0"];
}

/**
 * Servers in the order they take turns within a round, grouped by runtime; the servers of
 * several workers last, as they run only their own scenario.
 */
const SERVERS: Server[] = [
  {
    name: "brick",
    title: "brick on Deno",
    runtime: "deno",
    baseline: "deno",
    command: denoCommand("brick_deno.ts"),
    prepare: () => Promise.resolve({ staticNote: brickDenoStaticNote() }),
  },
  {
    name: "deno",
    title: "Deno.serve",
    runtime: "deno",
    baseline: "deno",
    command: denoCommand("deno_serve.ts"),
  },
  {
    name: "brick-node",
    title: "brick on Node",
    runtime: "node",
    baseline: "node-http",
    command: ["node", BENCH_DIR + "brick_node.mjs"],
    prepare: prepareBrickBuild,
  },
  {
    name: "node-http",
    title: "node:http",
    runtime: "node",
    baseline: "node-http",
    command: ["node", BENCH_DIR + "node_http.mjs"],
  },
  {
    name: "hono-node",
    title: "@hono/node-server",
    runtime: "node",
    baseline: "node-http",
    command: ["node", BENCH_DIR + "hono_node.mjs"],
    scenarios: ["hello", "close", "pipeline", "post", "idle"],
    prepare: prepareHono,
  },
  {
    name: "brick-bun",
    title: "brick on Bun",
    runtime: "bun",
    baseline: "bun",
    command: ["bun", BENCH_DIR + "brick_node.mjs"],
    prepare: async (tmpDir, options) => {
      const build = await prepareBrickBuild(tmpDir, options);
      return { ...build, command: [await bunPath(), BENCH_DIR + "brick_node.mjs"] };
    },
  },
  {
    name: "bun",
    title: "Bun.serve",
    runtime: "bun",
    baseline: "bun",
    command: ["bun", BENCH_DIR + "bun_serve.mjs"],
    prepare: async () => ({ command: [await bunPath(), BENCH_DIR + "bun_serve.mjs"] }),
  },
  {
    name: "brick-workers",
    title: `brick --workers ${WORKERS} on Deno`,
    runtime: "deno",
    baseline: "deno-parallel",
    workers: WORKERS,
    benchArgs: false,
    portLine: BRICK_BANNER_PORT,
    command: [
      Deno.execPath(),
      "run",
      "--allow-net",
      "--allow-read",
      "--unstable-net",
      REPO_ROOT + "main.ts",
      ...brickCliArgs(),
    ],
  },
  {
    name: "deno-parallel",
    title: "deno serve --parallel",
    runtime: "deno",
    baseline: "deno-parallel",
    workers: WORKERS,
    benchArgs: false,
    portLine: /^(?:\[serve-worker-\d+ *\] )?LISTENING (\d+)\r?$/m,
    env: { DENO_JOBS: String(WORKERS) },
    command: [
      Deno.execPath(),
      "serve",
      "--parallel",
      "--allow-net",
      "--host",
      HOSTNAME,
      "--port",
      "0",
      BENCH_DIR + "deno_serve_app.ts",
    ],
  },
  {
    name: "brick-node-workers",
    title: `brick --workers ${WORKERS} on Node`,
    runtime: "node",
    baseline: "node-cluster",
    workers: WORKERS,
    benchArgs: false,
    portLine: BRICK_BANNER_PORT,
    command: ["node", REPO_ROOT + "npm/main.js", ...brickCliArgs()],
    prepare: async (tmpDir, options) => {
      const build = await prepareBrickBuild(tmpDir, options);
      const main = join(build.env!.BRICK_BENCH_NPM_DIR, "main.js");
      if (await modifiedAt(main) === undefined) {
        throw new SkipServer("the npm build has no main.js (brick's CLI)");
      }
      return { ...build, command: ["node", main, ...brickCliArgs()] };
    },
  },
  {
    name: "node-cluster",
    title: `node:cluster (${WORKERS} × node:http)`,
    runtime: "node",
    baseline: "node-cluster",
    workers: WORKERS,
    env: { WORKERS: String(WORKERS) },
    command: ["node", BENCH_DIR + "node_cluster.mjs"],
  },
];

const SCENARIOS: Scenario[] = [
  {
    name: "hello",
    description: `keep-alive GET /, ${CONNECTIONS} connections`,
    driver: "wrk",
    metrics: [REQUESTS_PER_SEC, P99],
  },
  {
    name: "close",
    description: `GET / with \`Connection: close\`, a new connection per request, ` +
      `${CONNECTIONS} concurrent`,
    driver: "wrk",
    headers: ["Connection: close"],
    metrics: [REQUESTS_PER_SEC, P99],
  },
  {
    name: "pipeline",
    description: `keep-alive, ${PIPELINE_DEPTH} pipelined GET / per connection, ` +
      `${CONNECTIONS} connections; req/s counts responses`,
    driver: "wrk",
    lua: pipelineLua(PIPELINE_DEPTH),
    latencyPercentiles: false,
    metrics: [REQUESTS_PER_SEC],
  },
  {
    name: "post",
    description: `keep-alive POST / with a ${POST_BODY_BYTES / 1024} KiB body ` +
      `(Content-Length), ${CONNECTIONS} connections; the server reads the whole body, then ` +
      "answers a short text; peak RSS is the server's VmHWM at the end of the run",
    driver: "wrk",
    lua: postLua(POST_BODY_BYTES),
    metrics: [REQUESTS_PER_SEC, P99, PEAK_RSS],
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
 * The performance targets, per runtime, in the order of the issue that set them; Bun has none,
 * and its table shows the same figures against Bun.serve. The `workers` rows have none either:
 * they show brick's CLI with `--workers` against each runtime's own way of using every core.
 */
const CHECKS: Record<Runtime, Check[]> = {
  deno: [
    check("hello", REQUESTS_PER_SEC, "brick", "deno", atLeast(0.6)),
    check("close", REQUESTS_PER_SEC, "brick", "deno", atLeast(0.7)),
    check("pipeline", REQUESTS_PER_SEC, "brick", "deno", atLeast(1.5)),
    check("post", REQUESTS_PER_SEC, "brick", "deno", atLeast(1.5)),
    check("post", PEAK_RSS, "brick", "deno", limit(100 * 1024)),
    check("static", MIB_PER_SEC, "brick", "deno", atLeast(1.0)),
    check("idle", RSS_PER_CONNECTION, "brick", "deno", limit(10)),
    check("idle", KEPT_OPEN, "brick", "deno", ALL_OPEN),
    check("hello", P99, "brick", "deno", atMost(1.5)),
    check("workers", REQUESTS_PER_SEC, "brick-workers", "deno-parallel"),
    check("workers", P99, "brick-workers", "deno-parallel"),
  ],
  node: [
    check("hello", REQUESTS_PER_SEC, "brick-node", "node-http", atLeast(1.3)),
    check("hello", REQUESTS_PER_SEC, "brick-node", "hono-node", atLeast(1.4)),
    check("close", REQUESTS_PER_SEC, "brick-node", "node-http", atLeast(1.2)),
    check("pipeline", REQUESTS_PER_SEC, "brick-node", "node-http", atLeast(2)),
    check("post", REQUESTS_PER_SEC, "brick-node", "node-http", atLeast(1.2)),
    check("post", PEAK_RSS, "brick-node", "node-http"),
    check("static", MIB_PER_SEC, "brick-node", "node-http", atLeast(1.0)),
    check("idle", RSS_PER_CONNECTION, "brick-node", "node-http", limit(8)),
    check("idle", KEPT_OPEN, "brick-node", "node-http", ALL_OPEN),
    check("hello", P99, "brick-node", "node-http", atMost(1.0)),
    check("workers", REQUESTS_PER_SEC, "brick-node-workers", "node-cluster"),
    check("workers", P99, "brick-node-workers", "node-cluster"),
  ],
  bun: [
    check("hello", REQUESTS_PER_SEC, "brick-bun", "bun"),
    check("close", REQUESTS_PER_SEC, "brick-bun", "bun"),
    check("pipeline", REQUESTS_PER_SEC, "brick-bun", "bun"),
    check("post", REQUESTS_PER_SEC, "brick-bun", "bun"),
    check("post", PEAK_RSS, "brick-bun", "bun"),
    check("static", MIB_PER_SEC, "brick-bun", "bun"),
    check("idle", RSS_PER_CONNECTION, "brick-bun", "bun"),
    check("idle", KEPT_OPEN, "brick-bun", "bun"),
    check("hello", P99, "brick-bun", "bun"),
  ],
};

const USAGE = `Usage: deno task bench [options]

Benchmarks brick against Deno.serve on Deno, brick's npm build against node:http and
@hono/node-server on Node and against Bun.serve on Bun (servers on CPU ${SERVER_CPU}, wrk and
the idle client on CPU ${CLIENT_CPU}), checks the results against brick's targets and writes
them to BENCH.md. The workers scenario runs brick's CLI with --workers ${WORKERS} against
deno serve --parallel and against a node:cluster of node:http, with nothing pinned (servers
and wrk share every CPU).

Options:
  --scenario <names>        scenarios to run, repeatable or comma-separated (default: all)
                            ${SCENARIOS.map((s) => s.name).join(", ")}
  --runtime <names>         runtimes to run, repeatable or comma-separated (default: all)
                            ${Object.keys(RUNTIME_LABELS).join(", ")}
  --server <names>          servers to run, repeatable or comma-separated (default: all)
                            ${wrapNames(SERVERS.map((s) => s.name), 28)}
  --duration <s>            measured seconds per wrk run (default: 5)
  --warmup <s>              warm-up seconds before each measured wrk run (default: 2)
  --rounds <n>              rounds per scenario (default: 3)
  --idle-connections <n>    connections of the idle scenario (default: ${IDLE_CONNECTIONS})
  --idle-hold <s>           seconds the idle scenario holds them (default: ${IDLE_HOLD_SECONDS})
  --quick                   smoke test: --duration 1 --warmup 1 --rounds 1
  --no-build                measure npm/ as it is, without rebuilding it when it is stale
  --output <path>           report file (default: BENCH.md in the repository root)
  -h, --help                show this help
`;

/** Live child processes, stopped on Ctrl-C. */
const children = new Set<Deno.ChildProcess>();
/**
 * The children that lead a process group of their own (the servers): signals go to the whole
 * group, so that a server's worker processes are stopped with it.
 */
const groupLeaders = new WeakSet<Deno.ChildProcess>();
/** Set on Ctrl-C; no process is started after it. */
let interrupted = false;

/** Names joined by commas in lines of at most 100 characters, those after the first indented. */
function wrapNames(names: string[], indent: number): string {
  const lines = [""];
  for (const [i, name] of names.entries()) {
    const item = i < names.length - 1 ? `${name},` : name;
    const line = lines.at(-1)!;
    if (line !== "" && indent + line.length + 1 + item.length > 100) lines.push(item);
    else lines[lines.length - 1] = line === "" ? item : `${line} ${item}`;
  }
  return lines.join(`\n${" ".repeat(indent)}`);
}

function denoCommand(script: string): string[] {
  return [Deno.execPath(), "run", "--allow-net", "--allow-read", BENCH_DIR + script];
}

// ─── Command line ───────────────────────────────────────────────────────────

/** Splits repeated, comma-separated values. */
function splitList(values: string[]): string[] {
  const names = values.flatMap((value) => value.split(",")).map((name) => name.trim());
  return [...new Set(names.filter((name) => name !== ""))];
}

/** Resolves repeated, comma-separated names against `known`. */
function selectByName<T extends { name: string }>(
  kind: string,
  known: T[],
  values: string[] | undefined,
): T[] {
  if (values === undefined) return known;
  return splitList(values).map((name) => {
    const found = known.find((item) => item.name === name);
    if (found === undefined) {
      const choices = known.map((item) => item.name).join(", ");
      throw new UsageError(`unknown ${kind} "${name}" (choose from ${choices})`);
    }
    return found;
  });
}

class UsageError extends Error {}

function parsePositive(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) {
    throw new UsageError(`--${flag} must be a positive number, got "${value}"`);
  }
  return number;
}

function parseCount(flag: string, value: string | undefined, fallback: number): number {
  const number = parsePositive(flag, value, fallback);
  if (!Number.isInteger(number)) throw new UsageError(`--${flag} must be an integer`);
  return number;
}

/** The selected servers, in {@linkcode SERVERS} order, whatever order the flags named them in. */
function selectServers(serverFlag: string[] | undefined, runtimeFlag: string[] | undefined) {
  const named = selectByName("server", SERVERS, serverFlag);
  const runtimes = selectByName(
    "runtime",
    Object.keys(RUNTIME_LABELS).map((name) => ({ name })),
    runtimeFlag,
  ).map(({ name }) => name);
  const servers = SERVERS.filter((server) =>
    named.includes(server) && runtimes.includes(server.runtime)
  );
  if (servers.length === 0) {
    throw new UsageError(
      `no server is left: --server ${splitList(serverFlag ?? []).join(",")} ` +
        `runs none on --runtime ${runtimes.join(",")}`,
    );
  }
  return servers;
}

/** Parses the command line; returns undefined when help was requested. */
function parseOptions(args: string[]): Options | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        scenario: { type: "string", multiple: true },
        runtime: { type: "string", multiple: true },
        server: { type: "string", multiple: true },
        duration: { type: "string" },
        warmup: { type: "string" },
        rounds: { type: "string" },
        "idle-connections": { type: "string" },
        "idle-hold": { type: "string" },
        quick: { type: "boolean", default: false },
        "no-build": { type: "boolean", default: false },
        output: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return undefined;

  const quick = values.quick;
  return {
    scenarios: selectByName("scenario", SCENARIOS, values.scenario),
    servers: selectServers(values.server, values.runtime),
    duration: parsePositive("duration", values.duration, quick ? 1 : 5),
    warmup: parsePositive("warmup", values.warmup, quick ? 1 : 2),
    rounds: parseCount("rounds", values.rounds, quick ? 1 : 3),
    idleConnections: parseCount("idle-connections", values["idle-connections"], IDLE_CONNECTIONS),
    idleHold: parsePositive("idle-hold", values["idle-hold"], IDLE_HOLD_SECONDS),
    noBuild: values["no-build"],
    quick,
    output: values.output ?? REPO_ROOT + "BENCH.md",
  };
}

// ─── Processes ──────────────────────────────────────────────────────────────

/** Runs a command to completion and returns its stdout, or undefined if it is not on PATH. */
async function commandOutput(command: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout } = await new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    return new TextDecoder().decode(stdout);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Checks for wrk, taskset, bash and two CPUs; returns an explanation of what is missing. */
async function checkPrerequisites(): Promise<string | undefined> {
  if (await commandOutput("wrk", ["-v"]) === undefined) {
    return "wrk is not installed (not found on PATH). Install it, e.g. on Debian or Ubuntu:\n" +
      "  sudo apt-get install -y wrk";
  }
  if (await commandOutput("taskset", ["-V"]) === undefined) {
    return "taskset is not installed (not found on PATH); it comes with util-linux, e.g.\n" +
      "  sudo apt-get install -y util-linux";
  }
  if (await commandOutput("bash", ["-c", "true"]) === undefined) {
    return "bash is not on PATH; the bench uses it to raise the open-files limit (ulimit -n)";
  }
  const cpus = Number(await commandOutput("nproc", []));
  if (cpus < 2) {
    return `the benchmark pins the servers and their clients to separate CPUs but nproc ` +
      `reports ${cpus}`;
  }
  return undefined;
}

/** The open-files limit every server and client gets: the hard limit, up to 65535. */
async function fileLimit(): Promise<number> {
  const hard = (await commandOutput("bash", ["-c", "ulimit -Hn"]))?.trim() ?? "";
  return hard === "unlimited" ? WANTED_FILE_LIMIT : Math.min(WANTED_FILE_LIMIT, Number(hard) || 0);
}

/**
 * A command line running `command` pinned to `cpu` (or on every CPU when `cpu` is undefined)
 * with the open-files limit raised. Both bash and taskset exec, so the process started is in
 * the end the command's own.
 */
function pinned(cpu: string | undefined, files: number, command: string[]): string[] {
  const taskset = cpu === undefined ? [] : ["taskset", "-c", cpu];
  return ["bash", "-c", 'ulimit -n "$0" && exec "$@"', String(files), ...taskset, ...command];
}

/**
 * Starts a child process and tracks it until it exits. With `group`, the child leads a process
 * group of its own ({@linkcode spawnGroup}), which every process it starts joins:
 * {@linkcode killQuietly} then signals the whole group.
 */
function spawnTracked(
  command: string[],
  options: Deno.CommandOptions,
  group = false,
): Deno.ChildProcess {
  if (interrupted) throw new Error("interrupted");
  const child = group
    ? spawnGroup(command, options)
    : new Deno.Command(command[0], { ...options, args: command.slice(1) }).spawn();
  children.add(child);
  if (group) groupLeaders.add(child);
  child.status.finally(() => children.delete(child));
  return child;
}

/**
 * Sends SIGTERM, then SIGKILL if the process has not exited in time, and waits for it. For the
 * leader of a process group, both go to the whole group.
 */
async function stopProcess(child: Deno.ChildProcess): Promise<void> {
  killQuietly(child, "SIGTERM");
  const timer = setTimeout(() => killQuietly(child, "SIGKILL"), STOP_TIMEOUT_MS);
  try {
    await child.status;
  } finally {
    clearTimeout(timer);
  }
}

/** Signals a child, or its whole process group if it leads one; ignores one that is gone. */
function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    if (groupLeaders.has(child)) signalGroup(child.pid, signal);
    else child.kill(signal);
  } catch {
    // Already exited.
  }
}

/**
 * Stops a server with its process group, and checks that no process of the group is left: a
 * worker still there once the server has exited (and {@linkcode GROUP_EXIT_TIMEOUT_MS} has
 * passed) is killed, and the run fails with a {@linkcode ServerFailure} that names it.
 */
async function stopServer(running: RunningServer): Promise<void> {
  const left = await stopGroup(running.child, {
    stopTimeoutMs: STOP_TIMEOUT_MS,
    exitTimeoutMs: GROUP_EXIT_TIMEOUT_MS,
  });
  if (left.length === 0) return;
  throw new ServerFailure(
    `left ${left.length} process(es) of its group running after it exited ` +
      `(pids ${left.join(", ")}); the bench killed them`,
    running.stderrTail(),
  );
}

function describeExit({ code, signal }: Pick<Deno.CommandStatus, "code" | "signal">): string {
  return signal === null ? `exit code ${code}` : `stopped by ${signal}`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Result of {@linkcode runBounded}. */
interface BoundedResult {
  success: boolean;
  /** How the process ended, e.g. "exit code 1" or "stopped after 300 s". */
  exit: string;
  stdout: string;
  /** stdout and stderr, as text. */
  output: string;
}

/**
 * Runs a helper command (a build, an install) to completion with its output captured, stopping
 * it if it takes longer than `timeoutMs`. Throws Deno.errors.NotFound if it is not on PATH.
 */
async function runBounded(
  command: string[],
  timeoutMs: number,
  cwd?: string,
): Promise<BoundedResult> {
  const child = spawnTracked(command, {
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    stopProcess(child).catch(() => {});
  }, timeoutMs);
  try {
    const { success, stdout, stderr, ...status } = await child.output();
    const decoder = new TextDecoder();
    return {
      success: success && !timedOut,
      exit: timedOut ? `stopped after ${timeoutMs / 1000} s` : describeExit(status),
      stdout: decoder.decode(stdout),
      output: (decoder.decode(stdout) + decoder.decode(stderr)).trim(),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** The last `lines` lines of a command's output, indented, for an error message. */
function outputTail(output: string, lines = 15): string {
  return output.split("\n").slice(-lines).map((line) => `  ${line}`).join("\n");
}

// ─── Preparing the servers ──────────────────────────────────────────────────

/** The bench's cache directory, outside the repository. */
function cacheDir(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") || join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return join(cache, "brick-bench");
}

/** Modification time of a file in milliseconds, or undefined if it does not exist. */
async function modifiedAt(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Whether `file_server.ts`, brick's static file server, exists. */
async function hasFileServer(): Promise<boolean> {
  return await modifiedAt(REPO_ROOT + "file_server.ts") !== undefined;
}

function brickDenoStaticNote(): string {
  try {
    Deno.statSync(REPO_ROOT + "file_server.ts");
    return "brick on Deno serves the static file with `serveDir` from `file_server.ts`.";
  } catch {
    return "brick on Deno serves the static file with the stream fallback " +
      "(`bench/_file_response.mjs`): `file_server.ts` does not exist yet.";
  }
}

/**
 * Why `npm/` needs a rebuild: a module of the build missing or older than its source (`mod.ts`,
 * `main.ts`, the CLI, and `file_server.ts` once it exists); undefined if it is up to date.
 */
async function staleBuild(): Promise<string | undefined> {
  const sources = ["mod", "main"];
  if (await hasFileServer()) sources.push("file_server");
  for (const name of sources) {
    const built = await modifiedAt(`${REPO_ROOT}npm/${name}.js`);
    const source = await modifiedAt(`${REPO_ROOT}${name}.ts`);
    if (built === undefined) return `npm/${name}.js is missing`;
    if (source !== undefined && built < source) return `npm/${name}.js is older than ${name}.ts`;
  }
  return undefined;
}

/**
 * Runs `deno task build:npm` when `npm/` is stale, unless `--no-build`; returns how the build
 * came to be, for the report. Throws {@linkcode SkipServer} if the build fails.
 */
async function ensureNpmBuild(options: Options): Promise<string> {
  const stale = await staleBuild();
  if (stale === undefined) return "up to date with its sources";
  if (options.noBuild) {
    if (await modifiedAt(REPO_ROOT + "npm/mod.js") === undefined) {
      throw new SkipServer("npm/mod.js is missing and --no-build forbids building it");
    }
    return `as found, with --no-build although ${stale}`;
  }
  console.error(`${stale}: running deno task build:npm`);
  const result = await runBounded(
    [Deno.execPath(), "task", "build:npm"],
    BUILD_TIMEOUT_MS,
    REPO_ROOT,
  );
  if (!result.success) {
    throw new SkipServer(
      `deno task build:npm failed (${result.exit}; --no-build measures npm/ as it is)`,
      outputTail(result.output),
    );
  }
  return "rebuilt by this run";
}

let brickBuild: Promise<Prepared> | undefined;

/**
 * Builds `npm/` if needed and copies its modules (tests left out) into the run's temporary
 * directory, which brick on Node and on Bun import instead (`BRICK_BENCH_NPM_DIR`): every round
 * measures the same build even if `npm/` is rebuilt meanwhile. Done once per run.
 */
function prepareBrickBuild(tmpDir: string, options: Options): Promise<Prepared> {
  brickBuild ??= (async () => {
    const how = await ensureNpmBuild(options);
    const snapshot = join(tmpDir, "brick-npm");
    await Deno.mkdir(snapshot);
    await Deno.writeTextFile(join(snapshot, "package.json"), '{ "type": "module" }\n');
    for await (const entry of Deno.readDir(REPO_ROOT + "npm")) {
      const isTest = entry.name.endsWith("_test.js") || entry.name.startsWith("_test");
      if (entry.isFile && entry.name.endsWith(".js") && !isTest) {
        await Deno.copyFile(join(REPO_ROOT, "npm", entry.name), join(snapshot, entry.name));
      }
    }
    const serveDir = await modifiedAt(join(snapshot, "file_server.js")) !== undefined;
    return {
      env: { BRICK_BENCH_NPM_DIR: snapshot },
      environment: [`brick on Node and Bun: \`npm/\` from \`deno task build:npm\` (${how})`],
      staticNote: serveDir
        ? "brick on Node and Bun serves the static file with `serveDir` from `file_server.js`."
        : "brick on Node and Bun serves the static file with the stream fallback " +
          "(`bench/_file_response.mjs`): the build has no `file_server.js` yet.",
    };
  })();
  return brickBuild;
}

/** Whether every package of {@linkcode HONO_PACKAGES} is installed in `dir` at its version. */
async function honoInstalled(dir: string): Promise<boolean> {
  for (const [name, version] of Object.entries(HONO_PACKAGES)) {
    try {
      const manifest = JSON.parse(
        await Deno.readTextFile(join(dir, "node_modules", name, "package.json")),
      );
      if (manifest.version !== version) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** npm's own error summary lines, without the stack trace it prints after them. */
function npmErrors(output: string): string[] {
  return output.split("\n").filter((line) =>
    line.startsWith("npm error") && !/^npm error\s+at /.test(line)
  );
}

/**
 * Installs `hono` and `@hono/node-server` into the cache directory unless they are there at the
 * pinned versions; skips the Hono rows if npm is missing or the install fails.
 */
async function prepareHono(): Promise<Prepared> {
  const dir = join(cacheDir(), "node");
  const specs = Object.entries(HONO_PACKAGES).map(([name, version]) => `${name}@${version}`);
  const environment = [`Hono on Node: ${specs.join(", ")} from npm, installed in \`${dir}\``];
  if (await honoInstalled(dir)) return { env: { BRICK_BENCH_NODE_DIR: dir }, environment };

  console.error(`Installing ${specs.join(" ")} into ${dir}`);
  const command = ["npm", "install", "--prefix", dir, "--no-save", "--no-package-lock"];
  command.push("--no-audit", "--no-fund", ...specs);
  let result;
  try {
    await Deno.mkdir(dir, { recursive: true });
    result = await runBounded(command, INSTALL_TIMEOUT_MS);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new SkipServer("npm is not on PATH, so hono and @hono/node-server cannot be installed");
  }
  if (!result.success || !(await honoInstalled(dir))) {
    const errors = npmErrors(result.output);
    const code = errors.find((line) => line.startsWith("npm error code "))?.slice(10);
    throw new SkipServer(
      `npm install ${specs.join(" ")} failed (${result.exit}${code ? `, ${code}` : ""}; ` +
        "no network?)",
      outputTail(errors.length > 0 ? errors.slice(0, 4).join("\n") : result.output, 8),
    );
  }
  return { env: { BRICK_BENCH_NODE_DIR: dir }, environment };
}

let bun: Promise<string> | undefined;

/**
 * The path of the Bun binary, fetched once with `npx -y bun@…`: the servers run it directly,
 * so that their pid is Bun's and not npx's. Throws {@linkcode SkipServer} if it cannot be had.
 */
function bunPath(): Promise<string> {
  bun ??= (async () => {
    let result;
    try {
      result = await runBounded(
        ["npx", "-y", BUN_PACKAGE, "-e", "console.log(process.execPath)"],
        INSTALL_TIMEOUT_MS,
      );
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      throw new SkipServer(`npx is not on PATH, so ${BUN_PACKAGE} cannot be fetched`);
    }
    const path = result.stdout.trim().split("\n").at(-1) ?? "";
    if (!result.success || !path.startsWith("/")) {
      const errors = npmErrors(result.output);
      throw new SkipServer(
        `npx -y ${BUN_PACKAGE} failed (${result.exit}; no network?)`,
        outputTail(errors.length > 0 ? errors.slice(0, 4).join("\n") : result.output, 8),
      );
    }
    return path;
  })();
  return bun;
}

/**
 * Writes the static scenario's file into the cache directory unless it is there at its size:
 * random bytes, so that no layer gets to skip zeros or compress them.
 */
async function ensureStaticFile(): Promise<string> {
  const dir = join(cacheDir(), "static");
  const path = join(dir, STATIC_FILE_NAME);
  try {
    if ((await Deno.stat(path)).size === STATIC_FILE_BYTES) return dir;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  console.error(`Writing ${STATIC_FILE_BYTES / 1024 ** 2} MiB of random bytes to ${path}`);
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    const chunk = new Uint8Array(1024 * 1024);
    for (let written = 0; written < STATIC_FILE_BYTES; written += chunk.length) {
      for (let i = 0; i < chunk.length; i += 65_536) {
        crypto.getRandomValues(chunk.subarray(i, i + 65_536));
      }
      for (let offset = 0; offset < chunk.length;) {
        offset += await file.write(chunk.subarray(offset));
      }
    }
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
  return dir;
}

const NOTHING_TO_MEASURE = "nothing to measure: none of the selected servers runs the selected " +
  "scenarios (the workers scenario has servers of its own; see --help)";

/** Result of {@linkcode prepareRun}. */
interface Preparation {
  servers: ReadyServer[];
  /** The scenarios that can run here. */
  scenarios: Scenario[];
  /** Lines for the report's environment list. */
  environment: string[];
  /** How the servers send the static file, one line each. */
  staticNotes: string[];
  /** Why servers or scenarios were left out, one line each. */
  skipped: string[];
  /** Where the static scenario's file is. */
  staticDir: string;
  /** The open-files limit servers and clients get. */
  files: number;
  /** The command starting the idle client, before its options. */
  idleClient: string[];
}

/**
 * Prepares the run before any measurement: checks for Node when Node servers are selected, runs
 * each server's {@linkcode Server.prepare}, writes the static file, checks the open-files limit
 * for the idle scenario, and leaves out (with a note) what cannot run here.
 */
async function prepareRun(options: Options, tmpDir: string): Promise<Preparation> {
  const preparation: Preparation = {
    servers: [],
    scenarios: [],
    environment: [],
    staticNotes: [],
    skipped: [],
    staticDir: "",
    files: await fileLimit(),
    idleClient: [],
  };
  const skip = (what: string, reason: string, detail = "") => {
    const line = `${what}: skipped, ${reason}`;
    console.error(detail === "" ? line : `${line}\n${detail}`);
    preparation.skipped.push(line);
  };
  const node = (await commandOutput("node", ["--version"]))?.trim();
  if (node !== undefined) preparation.environment.push(`Node: ${node}`);
  // Only the servers that some selected scenario runs: no install for a server left idle.
  const wanted = options.servers.filter((server) =>
    options.scenarios.some((scenario) => serversOf(scenario, [server]).length > 0)
  );
  if (wanted.length === 0) throw new Error(NOTHING_TO_MEASURE);
  for (const server of wanted) {
    if (server.runtime === "node" && node === undefined) {
      skip(server.title, "node is not on PATH");
      continue;
    }
    try {
      const prepared = await server.prepare?.(tmpDir, options) ?? {};
      preparation.servers.push({
        ...server,
        command: prepared.command ?? server.command,
        env: { ...server.env, ...prepared.env },
      });
      preparation.environment.push(...prepared.environment ?? []);
      if (prepared.staticNote) preparation.staticNotes.push(prepared.staticNote);
    } catch (error) {
      if (!(error instanceof SkipServer)) throw error;
      skip(server.title, error.message, error.detail);
    }
  }
  if (preparation.servers.some((server) => server.runtime === "bun")) {
    const version = (await commandOutput(await bunPath(), ["--version"]))?.trim();
    preparation.environment.push(`Bun: ${version} (${BUN_PACKAGE} from npm, run directly)`);
  }
  if (preparation.servers.length === 0) throw new Error("no server can run");

  for (const scenario of options.scenarios) {
    if (serversOf(scenario, preparation.servers).length === 0) {
      skip(`${scenario.name} scenario`, "none of the selected servers that can run here runs it");
      continue;
    }
    if (scenario.name === "static") {
      preparation.staticDir = await ensureStaticFile();
    }
    if (scenario.driver === "idle") {
      const needed = options.idleConnections + SPARE_FILES;
      if (preparation.files < needed) {
        skip(
          "idle scenario",
          `the open-files hard limit is ${preparation.files} (\`ulimit -Hn\`) and ` +
            `${options.idleConnections} connections need ${needed}; raise it or pass ` +
            `--idle-connections ${Math.max(1, preparation.files - SPARE_FILES)}`,
        );
        continue;
      }
      const client = BENCH_DIR + "idle_client.mjs";
      preparation.idleClient = node !== undefined
        ? ["node", client]
        : [Deno.execPath(), "run", "--allow-net", client];
    }
    preparation.scenarios.push(scenario);
  }
  if (preparation.scenarios.length === 0) throw new Error(NOTHING_TO_MEASURE);
  preparation.environment = [...new Set(preparation.environment)];
  preparation.staticNotes = [...new Set(preparation.staticNotes)];
  return preparation;
}

// ─── Running servers ────────────────────────────────────────────────────────

/** A server process started by the benchmark. */
interface RunningServer {
  child: Deno.ChildProcess;
  port: number;
  /** Set once the process has exited, with how it exited. */
  exit?: string;
  /** The last {@linkcode STDERR_TAIL_CHARS} characters the server wrote to stderr. */
  stderrTail: () => string;
}

/** A server run that failed, for the report. */
interface Failure {
  /** Scenario, round and server, with what went wrong, on one line. */
  summary: string;
  /** The end of the server's stderr, if it wrote any. */
  stderr: string;
}

/** A server failed to start or died under load; carries the end of its stderr. */
class ServerFailure extends Error {
  constructor(message: string, readonly stderr: string) {
    super(message);
  }
}

/** A bench server's line telling its port. */
const LISTENING_LINE = /^LISTENING (\d+)\r?$/m;

/**
 * Reads stdout until the line telling the port (`pattern`, the port in group 1), then keeps
 * draining it in the background.
 */
async function readListeningPort(child: Deno.ChildProcess, pattern: RegExp): Promise<number> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, STARTUP_TIMEOUT_MS);
  let buffered = "";
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += value;
      const match = buffered.match(pattern);
      if (match) {
        drain(reader);
        return Number(match[1]);
      }
    }
  } finally {
    clearTimeout(timer);
  }
  const line = pattern === LISTENING_LINE ? `"LISTENING <port>"` : `a line matching ${pattern}`;
  throw new Error(
    timedOut
      ? `did not print ${line} within ${STARTUP_TIMEOUT_MS / 1000} s`
      : `closed stdout before printing ${line}`,
  );
}

function drain(reader: ReadableStreamDefaultReader<string>): void {
  (async () => {
    while (!(await reader.read()).done) {
      // Discard.
    }
  })().catch(() => {});
}

/**
 * Copies a process's stderr to ours as it comes and keeps its last
 * {@linkcode STDERR_TAIL_CHARS} characters; returns a function reading them.
 */
function teeStderr(stream: ReadableStream<Uint8Array>): () => string {
  let tail = "";
  const decoder = new TextDecoder();
  (async () => {
    for await (const chunk of stream) {
      await Deno.stderr.write(chunk);
      tail = (tail + decoder.decode(chunk, { stream: true })).slice(-STDERR_TAIL_CHARS);
    }
  })().catch(() => {});
  return () => tail.trim();
}

/**
 * Starts a server for a scenario, in a process group of its own, pinned to the server CPU
 * unless the scenario pins nothing, and waits until it listens.
 */
async function startServer(
  server: ReadyServer,
  scenario: Scenario,
  preparation: Preparation,
): Promise<RunningServer> {
  const args = [];
  if (server.benchArgs ?? true) {
    args.push("--scenario", scenario.name);
    if (scenario.name === "static") args.push("--root", preparation.staticDir);
  }
  const cpu = scenario.pinned ?? true ? SERVER_CPU : undefined;
  const child = spawnTracked(pinned(cpu, preparation.files, [...server.command, ...args]), {
    env: server.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }, true);
  const stderrTail = teeStderr(child.stderr);
  try {
    const port = await readListeningPort(child, server.portLine ?? LISTENING_LINE);
    const running: RunningServer = { child, port, stderrTail };
    child.status.then((status) => running.exit = describeExit(status));
    return running;
  } catch (error) {
    await stopProcess(child);
    const message = error instanceof Error ? error.message : error;
    throw new ServerFailure(
      `${message} (${describeExit(await child.status)})`,
      stderrTail(),
    );
  }
}

/** A process's resident memory now (VmRSS) and at its peak (VmHWM), in KiB. */
interface Memory {
  rssKiB: number;
  peakKiB: number;
}

/**
 * Reads a server's memory from `/proc/<pid>/status`, after checking that the pid is the
 * server's and not a wrapper's (bash or taskset, which should have exec'd).
 */
async function readMemory(running: RunningServer): Promise<Memory> {
  const pid = running.child.pid;
  let status, exe;
  try {
    exe = basename(await Deno.readLink(`/proc/${pid}/exe`));
    status = await Deno.readTextFile(`/proc/${pid}/status`);
  } catch (error) {
    if (running.exit !== undefined || error instanceof Deno.errors.NotFound) {
      throw new ServerFailure(
        `exited before its memory was read (${running.exit ?? "gone"})`,
        running.stderrTail(),
      );
    }
    throw error;
  }
  if (exe === "bash" || exe === "taskset") {
    throw new Error(`pid ${pid} is ${exe}, not the server: its memory would be the wrapper's`);
  }
  const field = (name: string) =>
    Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"))?.[1]);
  const memory = { rssKiB: field("VmRSS"), peakKiB: field("VmHWM") };
  if (Number.isNaN(memory.rssKiB) || Number.isNaN(memory.peakKiB)) {
    throw new Error(`/proc/${pid}/status has no VmRSS or VmHWM line`);
  }
  return memory;
}

/**
 * The peak resident memory of a server of several processes: the sum of the VmHWM of every
 * live process of its group, in KiB. Each process peaked at its own moment, so the sum is an
 * upper bound of the group's peak. Threads (Deno's workers) count once, with their process.
 */
async function readGroupPeak(running: RunningServer): Promise<number> {
  const own = await readMemory(running);
  let sum = own.peakKiB;
  for (const pid of await groupMembers(running.child.pid)) {
    if (pid === running.child.pid) continue;
    try {
      const status = await Deno.readTextFile(`/proc/${pid}/status`);
      sum += Number(status.match(/^VmHWM:\s+(\d+) kB/m)?.[1] ?? 0);
    } catch {
      // Exited meanwhile: a worker that died shows in the server's own checks.
    }
  }
  return sum;
}

/** Fails with the server's exit (and the end of its stderr) if it has exited. */
async function assertAlive(running: RunningServer, phase: string): Promise<void> {
  // Give an exit that happened during the load the time to be noticed.
  await delay(50);
  if (running.exit !== undefined) {
    throw new ServerFailure(`exited during the ${phase} (${running.exit})`, running.stderrTail());
  }
}

// ─── wrk scenarios ──────────────────────────────────────────────────────────

/** wrk arguments of a scenario: headers, Lua script, timeout; writes the script to `tmpDir`. */
async function scenarioWrkArgs(scenario: Scenario, tmpDir: string): Promise<string[]> {
  const args = (scenario.headers ?? []).flatMap((header) => ["--header", header]);
  if (scenario.lua !== undefined) {
    const path = `${tmpDir}/${scenario.name}.lua`;
    await Deno.writeTextFile(path, scenario.lua);
    args.push("--script", path);
  }
  if (scenario.responseTimeout !== undefined) args.push("--timeout", scenario.responseTimeout);
  return args;
}

/**
 * Runs wrk for `seconds` with the scenario's connections and threads, pinned to the client CPU
 * unless the scenario pins nothing, killing it if it overruns; returns stdout.
 */
async function runWrk(
  url: string,
  seconds: number,
  scenario: Scenario,
  extraArgs: string[],
): Promise<string> {
  const threads = String(scenario.wrkThreads ?? 1);
  const connections = String(scenario.connections ?? CONNECTIONS);
  const wrk = ["wrk", "--threads", threads, "--connections", connections];
  wrk.push("--duration", `${seconds}s`, "--latency", ...extraArgs, url);
  const taskset = scenario.pinned ?? true ? ["taskset", "-c", CLIENT_CPU] : [];
  const child = spawnTracked([...taskset, ...wrk], {
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const timer = setTimeout(() => killQuietly(child, "SIGKILL"), seconds * 1000 + WRK_GRACE_MS);
  try {
    const { success, code, stdout, stderr } = await child.output();
    const decoder = new TextDecoder();
    if (!success) {
      throw new Error(`wrk failed (code ${code}): ${decoder.decode(stderr).trim()}`);
    }
    return decoder.decode(stdout);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs wrk against a running server; if the server died meanwhile, fails with that (and the end
 * of its stderr) rather than with what wrk made of it.
 */
async function load(
  running: RunningServer,
  scenario: Scenario,
  seconds: number,
  wrkArgs: string[],
  phase: string,
): Promise<string> {
  const url = `http://${HOSTNAME}:${running.port}${scenario.path ?? "/"}`;
  let output, wrkError;
  try {
    output = await runWrk(url, seconds, scenario, wrkArgs);
  } catch (error) {
    wrkError = error;
  }
  await assertAlive(running, phase);
  if (output === undefined) throw wrkError;
  return output;
}

/**
 * Starts a fresh server, runs `measure` against it, then stops it with its process group
 * ({@linkcode stopServer}). When `measure` fails, its error is the one reported.
 */
async function withServer<T>(
  server: ReadyServer,
  scenario: Scenario,
  preparation: Preparation,
  measure: (running: RunningServer) => Promise<T>,
): Promise<T> {
  const running = await startServer(server, scenario, preparation);
  let result: T;
  try {
    result = await measure(running);
  } catch (error) {
    await stopServer(running).catch(() => {});
    throw error;
  }
  await stopServer(running);
  return result;
}

/** Starts a fresh server, warms it up, measures it with wrk and stops it. */
function measureWithWrk(
  server: ReadyServer,
  scenario: Scenario,
  wrkArgs: string[],
  options: Options,
  preparation: Preparation,
): Promise<Measurement> {
  return withServer(server, scenario, preparation, async (running) => {
    await load(running, scenario, options.warmup, wrkArgs, "warm-up");
    const output = await load(running, scenario, options.duration, wrkArgs, "measured run");
    const peakKiB = scenario.workers
      ? await readGroupPeak(running)
      : (await readMemory(running)).peakKiB;
    const result = parseWrkOutput(output);
    return {
      requestsPerSec: result.requestsPerSec,
      mibPerSec: result.mibPerSec,
      p99Ms: scenario.latencyPercentiles === false ? NaN : result.p99Ms,
      errors: result.errors,
      peakRssKiB: peakKiB,
    };
  });
}

// ─── The idle scenario ──────────────────────────────────────────────────────

/**
 * Sends one `GET /` on a connection of its own, with `Connection: close`, and checks that the
 * answer is a 200: the warm-up of the idle scenario.
 */
async function warmUpRequest(port: number): Promise<void> {
  const connection = await Deno.connect({ hostname: HOSTNAME, port });
  const timer = setTimeout(() => connection.close(), STARTUP_TIMEOUT_MS);
  try {
    const request = `GET / HTTP/1.1\r\nHost: ${HOSTNAME}\r\nConnection: close\r\n\r\n`;
    await connection.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(4096);
    const read = await connection.read(buffer);
    const line = new TextDecoder().decode(buffer.subarray(0, read ?? 0)).split("\r\n")[0];
    if (!line.startsWith("HTTP/1.1 200")) {
      throw new Error(`the warm-up request got "${line}" instead of a 200 response`);
    }
  } finally {
    clearTimeout(timer);
    try {
      connection.close();
    } catch {
      // Closed by the timer.
    }
  }
}

/** Reads a child's stdout line by line. */
class LineReader {
  #reader: ReadableStreamDefaultReader<string>;
  #buffered = "";

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  /**
   * The next line matching `pattern` (other lines are skipped); throws if the stream ends first
   * or no such line comes within `timeoutMs`.
   */
  async match(pattern: RegExp, timeoutMs: number, what: string): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const newline = this.#buffered.indexOf("\n");
      if (newline !== -1) {
        const line = this.#buffered.slice(0, newline).trim();
        this.#buffered = this.#buffered.slice(newline + 1);
        const match = line.match(pattern);
        if (match) return match;
        continue;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
      });
      const read = await Promise.race([this.#reader.read(), timeout]).finally(() =>
        clearTimeout(timer)
      );
      if (read === "timeout") throw new Error(`${what} did not come within ${timeoutMs} ms`);
      if (read.done) throw new Error(`the idle client ended before ${what}`);
      this.#buffered += read.value;
    }
  }

  /** Discards the rest of the stream. */
  drain(): void {
    drain(this.#reader);
  }
}

/**
 * Starts a fresh server, sends a warm-up request, reads its memory, has the idle client open
 * the connections and hold them, reads the memory while they are held, and stops both.
 */
function measureIdle(
  server: ReadyServer,
  scenario: Scenario,
  options: Options,
  preparation: Preparation,
): Promise<Measurement> {
  return withServer(server, scenario, preparation, (running) => {
    return holdIdleConnections(running, options, preparation);
  });
}

/** The idle scenario against a running server; stops the idle client, not the server. */
async function holdIdleConnections(
  running: RunningServer,
  options: Options,
  preparation: Preparation,
): Promise<Measurement> {
  let client: Deno.ChildProcess | undefined;
  try {
    await warmUpRequest(running.port);
    await delay(IDLE_SETTLE_MS);
    const before = await readMemory(running);
    const holdMs = Math.round(options.idleHold * 1000);
    const clientArgs = [
      "--port",
      String(running.port),
      "--connections",
      String(options.idleConnections),
      "--hold",
      String(holdMs),
      "--timeout",
      String(IDLE_OPEN_TIMEOUT_MS),
    ];
    client = spawnTracked(
      pinned(CLIENT_CPU, preparation.files, [...preparation.idleClient, ...clientArgs]),
      { stdin: "null", stdout: "piped", stderr: "piped" },
    );
    teeStderr(client.stderr);
    const lines = new LineReader(client.stdout);
    const opened = await lines.match(
      /^OPENED (\d+) (\d+) (\d+)$/,
      IDLE_OPEN_TIMEOUT_MS + IDLE_CLIENT_GRACE_MS,
      "the OPENED line",
    );
    const held = lines.match(/^HELD (\d+) (\d+)$/, holdMs + IDLE_CLIENT_GRACE_MS, "the HELD line");
    let holding = true;
    held.then(() => holding = false, () => holding = false);
    let rssHeldKiB = (await readMemory(running)).rssKiB;
    while (holding) {
      await Promise.race([delay(RSS_SAMPLE_MS), held.catch(() => {})]);
      if (holding) rssHeldKiB = Math.max(rssHeldKiB, (await readMemory(running)).rssKiB);
    }
    const [, keptOpen, closed] = (await held).map(Number);
    lines.drain();
    const { peakKiB } = await readMemory(running);
    await assertAlive(running, "idle hold");
    const [, open, failed, openingMs] = opened.map(Number);
    console.error(`idle client: ${open} opened in ${openingMs} ms, ${failed} failed`);
    return {
      requestsPerSec: NaN,
      mibPerSec: NaN,
      p99Ms: NaN,
      errors: failed + closed,
      peakRssKiB: peakKiB,
      idle: {
        connections: options.idleConnections,
        opened: open,
        keptOpen,
        rssBeforeKiB: before.rssKiB,
        rssHeldKiB,
      },
    };
  } finally {
    if (client !== undefined) await stopProcess(client);
  }
}

// ─── Rounds ─────────────────────────────────────────────────────────────────

function formatRate(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

function logMeasurement(
  scenario: Scenario,
  round: number,
  options: Options,
  server: Server,
  m: Measurement,
): void {
  let figures;
  if (m.idle !== undefined) {
    const { opened, keptOpen, connections, rssBeforeKiB, rssHeldKiB } = m.idle;
    figures = `kept ${keptOpen}/${connections} open (${opened} opened), RSS ` +
      `${(rssBeforeKiB / 1024).toFixed(1)} -> ${(rssHeldKiB / 1024).toFixed(1)} MiB, ` +
      `${RSS_PER_CONNECTION.format(RSS_PER_CONNECTION.value(m))} per connection`;
  } else {
    const rate = scenario.name === "static"
      ? `${formatRate(m.mibPerSec).padStart(10)} MiB/s`
      : `${formatRate(m.requestsPerSec).padStart(10)} req/s`;
    const p99 = Number.isNaN(m.p99Ms) ? "n/a" : P99.format(m.p99Ms);
    figures = `${rate}  p99 ${p99}  peak RSS ${PEAK_RSS.format(m.peakRssKiB)}`;
  }
  const errors = m.errors > 0 ? `  ${m.errors} errors` : "";
  console.error(
    `${scenario.name.padEnd(9)} round ${round}/${options.rounds}  ${server.title.padEnd(18)}` +
      `${figures}${errors}`,
  );
}

/**
 * The servers that run a scenario: those that name it, or else, by default, the servers of
 * several workers run the `workers` scenarios and the others the rest.
 */
function serversOf<T extends Server>(scenario: Scenario, servers: T[]): T[] {
  return servers.filter((server) =>
    server.scenarios?.includes(scenario.name) ??
      (server.workers !== undefined) === (scenario.workers ?? false)
  );
}

/**
 * Runs all rounds of one scenario, servers taking turns within each round. A server that fails
 * is recorded in `failures` and not run again in this scenario.
 */
async function runScenario(
  scenario: Scenario,
  options: Options,
  preparation: Preparation,
  tmpDir: string,
  failures: Failure[],
): Promise<Map<string, Rounds>> {
  const servers = serversOf(scenario, preparation.servers);
  const wrkArgs = scenario.driver === "wrk" ? await scenarioWrkArgs(scenario, tmpDir) : [];
  const results = new Map<string, Rounds>(
    servers.map((server) => [server.name, Array(options.rounds).fill(undefined)]),
  );
  const failed = new Set<string>();
  for (let round = 1; round <= options.rounds; round++) {
    for (const server of servers) {
      if (failed.has(server.name)) continue;
      try {
        const measurement = scenario.driver === "idle"
          ? await measureIdle(server, scenario, options, preparation)
          : await measureWithWrk(server, scenario, wrkArgs, options, preparation);
        results.get(server.name)![round - 1] = measurement;
        logMeasurement(scenario, round, options, server, measurement);
      } catch (error) {
        if (interrupted) throw error;
        failed.add(server.name);
        const message = error instanceof Error ? error.message : String(error);
        const summary = `${scenario.name}, round ${round}, ${server.title}: ${message}`;
        const stderr = error instanceof ServerFailure ? error.stderr : "";
        console.error(
          `error: ${summary}\n(${server.title} is left out of the rest of this scenario)`,
        );
        failures.push({ summary, stderr });
      }
    }
  }
  return results;
}

// ─── The report ─────────────────────────────────────────────────────────────

/**
 * The results tables: one for the scenarios of single servers pinned apart from their client,
 * one for the `workers` scenario, each with the servers that run its scenarios; with a heading
 * each when there are both.
 */
function formatResultTables(
  results: Results,
  scenarios: Scenario[],
  servers: ReadyServer[],
  rounds: number,
): string {
  const groups = [
    { heading: "One process, pinned apart from the client", workers: false },
    { heading: `${WORKERS} workers, sharing every CPU with wrk`, workers: true },
  ].map((group) => {
    const ofGroup = scenarios.filter((s) => (s.workers ?? false) === group.workers);
    const running = servers.filter((server) =>
      ofGroup.some((scenario) => serversOf(scenario, [server]).length > 0)
    );
    return { ...group, scenarios: ofGroup, servers: running };
  }).filter((group) => group.scenarios.length > 0 && group.servers.length > 0);
  return groups.map((group) => {
    const table = formatResults(results, group.scenarios, group.servers, rounds);
    return groups.length > 1 ? `### ${group.heading}\n\n${table}` : table;
  }).join("\n");
}

/**
 * One row per scenario and figure, one column per server: the median over rounds. A server that
 * did not run the scenario shows "—"; one that failed in some round says how many it completed;
 * errors are added to the scenario's first figure.
 */
function formatResults(
  results: Results,
  scenarios: Scenario[],
  servers: ReadyServer[],
  rounds: number,
): string {
  const rows: string[][] = [];
  for (const scenario of scenarios) {
    const byServer = results.get(scenario.name);
    if (byServer === undefined) continue;
    scenario.metrics.forEach((metric, index) => {
      const cells = servers.map((server) => {
        const measurements = byServer.get(server.name);
        if (measurements === undefined) return "—";
        const completed = measurements.filter((m) => m !== undefined);
        if (completed.length === 0) return "failed";
        let cell = formatSummary(metric, measurements);
        const errors = completed.reduce((sum, m) => sum + m.errors, 0);
        if (index === 0 && errors > 0) cell += ` (${formatRate(errors)} errors)`;
        if (completed.length < rounds) cell += ` (${completed.length} of ${rounds} rounds)`;
        return cell;
      });
      rows.push([scenario.name, metric.label, ...cells]);
    });
  }
  return markdownTable(
    ["scenario", "figure", ...servers.map((server) => server.title)],
    [false, false, ...servers.map(() => true)],
    rows,
  );
}

/**
 * Per runtime, brick against its baseline and the targets ({@linkcode CHECKS}): brick's figure,
 * the other server's, the median per-round ratio, the target and whether it is met. Only the
 * checks whose scenario and servers ran.
 */
function formatChecks(results: Results, servers: ReadyServer[]): string[] {
  const byName = new Map(servers.map((server) => [server.name, server]));
  const sections: string[] = [];
  for (const runtime of Object.keys(CHECKS) as Runtime[]) {
    const checks = CHECKS[runtime].filter((c) =>
      results.has(c.scenario) && results.get(c.scenario)!.has(c.server) &&
      (c.against === undefined || results.get(c.scenario)!.has(c.against))
    );
    if (checks.length === 0) continue;
    const brickServers = new Set(checks.map((c) => c.server));
    const brickTitle = brickServers.size === 1 ? byName.get(checks[0].server)!.title : "brick";
    const rows = checks.map((c) => {
      const byServer = results.get(c.scenario)!;
      const { verdict, ratio } = evaluate(c, results);
      const against = c.against === undefined ? undefined : byName.get(c.against)!;
      return [
        c.scenario,
        c.metric.label,
        formatSummary(c.metric, byServer.get(c.server)!),
        against?.title ?? "—",
        c.against === undefined ? "—" : formatSummary(c.metric, byServer.get(c.against)!),
        c.against === undefined || c.metric.comparable === false ? "—" : formatRatio(ratio),
        formatTarget(c.target, c.metric),
        verdict === "" ? "—" : verdict,
      ];
    });
    sections.push(
      `### ${RUNTIME_LABELS[runtime]}\n\n` + markdownTable(
        ["scenario", "figure", brickTitle, "against", "its figure", "ratio", "target", "met"],
        [false, false, true, false, true, true, false, false],
        rows,
      ),
    );
  }
  return sections;
}

async function cpuModel(): Promise<string> {
  try {
    const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
    return cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1].trim() ?? "unknown";
  } catch {
    return "unknown";
  }
}

async function wrkVersion(): Promise<string> {
  const output = await commandOutput("wrk", ["-v"]) ?? "";
  return output.match(/^wrk (.+?)\s+Copyright/m)?.[1] ?? (output.split("\n")[0] || "unknown");
}

/** The commit brick's sources are at, noting uncommitted changes to them. */
async function brickRevision(): Promise<string> {
  const git = (...args: string[]) => commandOutput("git", ["-C", REPO_ROOT, ...args]);
  const commit = (await git("rev-parse", "--short", "HEAD"))?.trim();
  if (!commit) return "unknown";
  const changed = (await git("status", "--porcelain", "--", "mod.ts", "file_server.ts"))?.trim();
  return changed ? `${commit} with uncommitted changes to its sources` : commit;
}

/** What the report says besides the tables. */
interface ReportParts {
  table: string;
  checks: string[];
  preparation: Preparation;
  failures: Failure[];
}

/** Lines of `text`, indented to sit inside a list item. */
function indent(text: string): string[] {
  return text.split("\n").map((line) => line === "" ? "" : `  ${line}`);
}

/** Markdown report: environment, method, scenarios, the tables, notes and any failures. */
async function formatReport(parts: ReportParts, options: Options): Promise<string> {
  const { preparation } = parts;
  const cpus = (await commandOutput("nproc", []))?.trim() ?? "unknown";
  const scenarios = preparation.scenarios.map((s) => `- \`${s.name}\`: ${s.description}.`);
  const runtimes = new Set(preparation.servers.map((server) => server.runtime));
  const ran = (name: string) => preparation.scenarios.some((s) => s.name === name);
  const baselines = SERVERS.filter((server) =>
    server.baseline === server.name && preparation.servers.some((s) => s.name === server.name) &&
    preparation.scenarios.some((scenario) => serversOf(scenario, [server]).length > 0)
  ).map((server) => `${server.title} on ${RUNTIME_LABELS[server.runtime]}`);
  const pinnedApart = preparation.scenarios.some((s) => s.pinned ?? true);
  const unpinned = preparation.scenarios.some((s) => !(s.pinned ?? true));
  const where = !unpinned
    ? { server: `pinned to CPU ${SERVER_CPU}`, client: `from CPU ${CLIENT_CPU}` }
    : !pinnedApart
    ? { server: "on every CPU", client: "from the same CPUs" }
    : {
      server: `pinned to CPU ${SERVER_CPU} (in the workers scenario on every CPU)`,
      client: `from CPU ${CLIENT_CPU} (in the workers scenario from the same CPUs)`,
    };
  const skipped = preparation.skipped.map((line) => `- ${line}`);
  const failures = parts.failures.flatMap(({ summary, stderr }) => [
    `- ${summary}`,
    ...(stderr === ""
      ? []
      : ["", "  Its stderr ended with:", "", "  ```", ...indent(stderr), "  ```"]),
    "",
  ]);
  const rounds = `${options.rounds} round${options.rounds === 1 ? "" : "s"}`;
  const drivers = [];
  if (preparation.scenarios.some((s) => s.driver === "wrk")) {
    const threads = [...new Set(preparation.scenarios.map((s) => s.wrkThreads ?? 1))];
    drivers.push(
      `with \`wrk --threads ${threads.join("|")} --latency\`, ${options.warmup} s of ` +
        `warm-up, then ${options.duration} s measured`,
    );
  }
  if (ran("idle")) {
    drivers.push(
      `in the idle scenario with \`bench/idle_client.mjs\`: one warm-up request, then ` +
        `${options.idleConnections} connections opened and held ${options.idleHold} s`,
    );
  }
  return [
    "# Benchmarks",
    "",
    `Generated by \`${["deno task bench", ...Deno.args].join(" ")}\`.`,
    "",
    ...(options.quick
      ? [
        "**A smoke test (`--quick`): one round of 1 s runs. The figures show that every " +
        "scenario runs, not how the servers compare; run `deno task bench` for that.**",
        "",
      ]
      : []),
    `- Date: ${new Date().toISOString()}`,
    `- Machine: ${await cpuModel()}, ${cpus} cores (nproc), ${Deno.build.target}`,
    `- Deno: ${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`,
    ...preparation.environment.map((line) => `- ${line}`),
    `- wrk: ${await wrkVersion()}`,
    `- brick: ${await brickRevision()}`,
    "",
    `Each measurement starts a fresh server ${where.server}, with the open-files limit at ` +
    `${preparation.files}, and drives it ${where.client}: ${drivers.join("; ")}. ` +
    `${rounds}, servers taking turns within a round. Figures are medians over rounds; ratios are medians of ` +
    `per-round ratios against a server measured in the same rounds (the baselines are ` +
    `${baselines.join(", ")}). Errors are wrk's socket errors and non-2xx/3xx responses, or ` +
    `the idle client's failed or closed connections, summed over rounds.`,
    "",
    ...scenarios,
    "",
    "## Results",
    "",
    parts.table,
    ...(parts.checks.length === 0 ? [] : [
      "## Against the targets",
      "",
      "brick's figure, the other server's, the median per-round ratio, and the target it is " +
      "checked against.",
      "",
      ...parts.checks,
    ]),
    "## Notes",
    "",
    ...(ran("pipeline") || ran("static")
      ? [
        "- p99 is n/a where wrk has no usable percentiles: with pipelining it times batches and " +
        "corrupts them ([wg/wrk#236](https://github.com/wg/wrk/issues/236)); for the static " +
        "file too few requests complete for a 99th percentile.",
      ]
      : []),
    ...(ran("static")
      ? [
        `- The static file is ${STATIC_FILE_BYTES / 1024 ** 2} MiB of random bytes, read ` +
        "from the page cache after the warm-up (the machine has the memory to keep it): the " +
        "scenario measures the servers, not the disk. wrk reads in 8 KiB pieces on one core, " +
        "so a high MiB/s may be wrk's ceiling rather than the server's. Deno.serve sends " +
        "`Deno.open()` + `file.readable`, node:http `fs.createReadStream().pipe(res)`, " +
        "Bun.serve `new Response(Bun.file())`. " + preparation.staticNotes.join(" "),
      ]
      : []),
    ...(ran("idle")
      ? [
        "- In the idle scenario node:http and @hono/node-server keep idle connections 65 s " +
        "(Node's default is 5 s) and Bun.serve 65 s (Bun's default is 10 s), brick's default; " +
        "Deno.serve has no idle timeout. Memory is read from `/proc/<pid>/status` of the " +
        "server process itself.",
      ]
      : []),
    ...(ran("workers")
      ? [
        `- In the workers scenario nothing is pinned: each server's ${WORKERS} workers and wrk ` +
        `(${WORKERS} threads) share the machine's ${cpus} cores, so wrk's own CPU time is taken ` +
        "from the servers, alike for all of them, and the figures are lower than the cores " +
        "could serve alone. brick runs as its CLI (`main.ts`, on Node `npm/main.js`) with its " +
        `default hello app and \`--workers ${WORKERS} --quiet\` (no access log): on Deno ` +
        "worker threads, each listening with SO_REUSEPORT; on Node node:cluster processes " +
        "sharing the supervisor's socket. `deno serve --parallel` runs " +
        `\`DENO_JOBS=${WORKERS}\` threads of \`bench/deno_serve_app.ts\`; ` +
        "`bench/node_cluster.mjs` forks node:cluster workers of node:http, which share the " +
        "primary's socket as brick's do (Node's default round-robin). Each server runs in a " +
        "process group of its own, stopped as a whole; the bench checks that none of its " +
        "processes is left. No Bun row: Bun has no multi-worker server of its own to compare " +
        "with (Bun.serve's reusePort needs processes started by hand).",
      ]
      : []),
    ...(ran("close") && runtimes.has("bun")
      ? [
        "- Bun.serve answers a `Connection: close` request without a `Connection: close` field, " +
        "then closes the connection; wrk counts that as a read error, one per request. The " +
        "responses themselves are complete.",
      ]
      : []),
    "",
    ...(skipped.length === 0 ? [] : ["Left out:", "", ...skipped, ""]),
    ...(failures.length === 0 ? [] : ["Failed:", "", ...failures]),
  ].join("\n");
}

/**
 * Writes the report through a temporary file, so an interrupted run leaves the old one intact,
 * and formats it with `deno fmt` (the repository's settings) so it passes `deno fmt --check`.
 */
async function writeReport(path: string, report: string): Promise<void> {
  const tmp = join(dirname(path), `BENCH.tmp.${Deno.pid}.md`);
  try {
    await Deno.writeTextFile(tmp, report);
    const fmt = await new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--quiet", "--config", REPO_ROOT + "deno.json", tmp],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!fmt.success) {
      console.error(
        `warning: deno fmt failed on the report: ${new TextDecoder().decode(fmt.stderr)}`,
      );
    }
    await Deno.rename(tmp, path);
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

/**
 * On Ctrl-C, stops the running children and sets {@linkcode interrupted}, so the run unwinds
 * through its normal clean-up; a second Ctrl-C exits at once.
 */
function interruptOnSignal(): () => void {
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handler = () => {
    if (interrupted) Deno.exit(130);
    interrupted = true;
    console.error("\nInterrupted: stopping servers and clients (again to quit at once).");
    for (const child of children) killQuietly(child, "SIGTERM");
  };
  for (const signal of signals) Deno.addSignalListener(signal, handler);
  return () => signals.forEach((signal) => Deno.removeSignalListener(signal, handler));
}

async function main(): Promise<number> {
  let options;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`error: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (options === undefined) {
    console.log(USAGE);
    return 0;
  }
  const missing = await checkPrerequisites();
  if (missing !== undefined) {
    console.error(`error: ${missing}`);
    return 1;
  }

  const removeSignalHandler = interruptOnSignal();
  const tmpDir = await Deno.makeTempDir({ prefix: "brick-bench-" });
  try {
    const preparation = await prepareRun(options, tmpDir);
    const results: Results = new Map();
    const failures: Failure[] = [];
    for (const scenario of preparation.scenarios) {
      results.set(
        scenario.name,
        await runScenario(scenario, options, preparation, tmpDir, failures),
      );
    }
    const table = formatResultTables(
      results,
      preparation.scenarios,
      preparation.servers,
      options.rounds,
    );
    const checks = formatChecks(results, preparation.servers);
    console.log(`\n${table}`);
    for (const section of checks) console.log(section);
    const parts = { table, checks, preparation, failures };
    await writeReport(options.output, await formatReport(parts, options));
    console.error(`Wrote ${options.output}`);
    if (failures.length > 0) {
      console.error(`${failures.length} server run(s) failed; see the report`);
      return 1;
    }
    return 0;
  } catch (error) {
    if (interrupted) return 130;
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    await Promise.all([...children].map(stopProcess));
    await Deno.remove(tmpDir, { recursive: true });
    removeSignalHandler();
  }
}

if (import.meta.main) {
  Deno.exit(await main());
}
