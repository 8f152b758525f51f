/**
 * Throughput benchmark of brick on Deno and on Node against each runtime's own server, driven by
 * wrk.
 *
 * ```sh
 * deno task bench                                   # all scenarios and servers, 5 s x 3 rounds
 * deno task bench --quick                           # smoke test: 1 s x 1 round
 * deno task bench --runtime node                    # only the Node rows
 * deno task bench --scenario hello,close --duration 10 --rounds 5
 * deno task bench --server deno                     # only Deno.serve (no ratio)
 * deno task bench --help
 * ```
 *
 * The servers form two groups, one per runtime, each with its baseline:
 *
 * - Deno: brick (`mod.ts`) and `Deno.serve`, the baseline.
 * - Node: brick (the npm build, `npm/mod.js`), `node:http`, the baseline, and Hono on
 *   `@hono/node-server`.
 *
 * Every measurement starts a fresh server pinned to CPU 0 (`taskset -c 0`) on a free port of
 * 127.0.0.1 and drives it with wrk pinned to CPU 1 (`taskset -c 1`): a warm-up run whose numbers
 * are discarded, then a measured run with `--latency`. Within a round the servers take turns
 * (brick, Deno.serve, brick on Node, node:http, Hono, then again), so every server of a group is
 * measured under the same machine conditions as its baseline. The report gives, per scenario and
 * server, the median req/s, the median p99 latency and the median of the per-round ratios against
 * the row's baseline, and a second table of brick against each of the others. Both are printed as
 * markdown and written to BENCH.md with the machine and tool versions.
 *
 * Before the first measurement the Node servers are prepared: `npm/` is rebuilt with
 * `deno task build:npm` when `npm/mod.js` is missing or older than `mod.ts`, and a copy of it is
 * taken, so that a rebuild during the run changes nothing; `hono` and `@hono/node-server`, at
 * pinned versions, are installed with npm into a cache directory outside the repository
 * (`$XDG_CACHE_HOME/brick-bench/node`, or `~/.cache/...`) unless already there. If that install
 * fails (no network, say) the Hono rows are skipped with a note; without `node` on PATH, all Node
 * rows are. A server that fails during the run (a crash, a failed start) is reported with the end
 * of its stderr and left out of the rest of that scenario; the others go on, and the exit code
 * is 1.
 *
 * Needs `wrk` and `taskset` on PATH and at least two CPUs; the Node rows need `node` (20 or
 * later) and, for Hono, `npm`.
 *
 * To add a server, append to {@linkcode SERVERS} a command that starts it on a free port of
 * 127.0.0.1 and prints `LISTENING <port>` on stdout once it accepts connections. To add a
 * scenario, append to {@linkcode SCENARIOS} the request headers or wrk Lua script it needs.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

/** The runtime a server runs on; each has its own baseline server. */
type Runtime = "deno" | "node";

const RUNTIME_LABELS: Record<Runtime, string> = { deno: "Deno", node: "Node" };

/** A server under test. */
interface Server {
  /** Identifier used by `--server`. */
  name: string;
  /** Name shown in the report's server column. */
  label: string;
  /** Name shown where the runtime column is absent: in logs and in the brick-vs table. */
  title: string;
  runtime: Runtime;
  /** Name of the server this one's ratio is taken against (measured in the same rounds). */
  baseline: string;
  /**
   * Command line starting the server on a free port of 127.0.0.1; it must print
   * `LISTENING <port>` on stdout once it accepts connections.
   */
  command: string[];
  /**
   * Runs once before the first measurement (builds, installs) and returns environment variables
   * for the server process and lines for the report's environment list. Throws
   * {@linkcode SkipServer} to leave the server out of the run.
   */
  prepare?: (tmpDir: string) => Promise<Prepared>;
}

/** What {@linkcode Server.prepare} hands to the run. */
interface Prepared {
  env?: Record<string, string>;
  environment?: string[];
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

/** A load pattern applied to every server. */
interface Scenario {
  /** Identifier used by `--scenario`. */
  name: string;
  /** One-line description for the report. */
  description: string;
  /** Extra request headers, as `Name: value`. */
  headers?: string[];
  /** wrk Lua script; written to a temporary file and passed with `--script`. */
  lua?: string;
  /**
   * Whether wrk's latency percentiles mean anything here (default true). They do not with
   * pipelining: wrk then times whole batches and corrupts the percentiles when correcting them
   * (https://github.com/wg/wrk/issues/236), so p99 is reported as n/a.
   */
  latencyPercentiles?: boolean;
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
  connections: number;
  /** Path of the markdown report. */
  output: string;
}

/** What wrk reported for one measured run. */
interface Measurement {
  requestsPerSec: number;
  /** NaN when wrk reported no usable p99 (see {@linkcode Scenario.latencyPercentiles}). */
  p99Ms: number;
  /** Socket errors plus non-2xx/3xx responses. */
  errors: number;
}

/** A server process started by the benchmark. */
interface RunningServer {
  child: Deno.ChildProcess;
  port: number;
  /** Set once the process has exited, with how it exited. */
  exit?: string;
  /** The last {@linkcode STDERR_TAIL_CHARS} characters the server wrote to stderr. */
  stderrTail: () => string;
}

/**
 * Measurements of one scenario: per server name, one entry per round, undefined for the rounds
 * the server did not complete.
 */
type ScenarioResults = Map<string, (Measurement | undefined)[]>;

const HOSTNAME = "127.0.0.1";
const SERVER_CPU = "0";
const WRK_CPU = "1";
const CONNECTIONS = 64;
const PIPELINE_DEPTH = 16;
const STARTUP_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
/** Time wrk may take beyond its `-d` duration before it is killed. */
const WRK_GRACE_MS = 15_000;
const BUILD_TIMEOUT_MS = 300_000;
const NPM_INSTALL_TIMEOUT_MS = 180_000;
/** How much of a failing server's stderr the report quotes. */
const STDERR_TAIL_CHARS = 2_000;

/** Exact versions of the npm packages behind the Hono rows. */
const HONO_PACKAGES = { "@hono/node-server": "2.1.8", "hono": "4.13.19" };

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
const BENCH_DIR = fileURLToPath(new URL("./bench/", import.meta.url));

/** Servers in the order they take turns within a round, grouped by runtime. */
const SERVERS: Server[] = [
  {
    name: "brick",
    label: "brick",
    title: "brick on Deno",
    runtime: "deno",
    baseline: "deno",
    command: denoCommand("brick_hello.ts"),
  },
  {
    name: "deno",
    label: "Deno.serve",
    title: "Deno.serve",
    runtime: "deno",
    baseline: "deno",
    command: denoCommand("deno_hello.ts"),
  },
  {
    name: "brick-node",
    label: "brick",
    title: "brick on Node",
    runtime: "node",
    baseline: "node-http",
    command: ["node", BENCH_DIR + "brick_node.mjs"],
    prepare: prepareBrickNode,
  },
  {
    name: "node-http",
    label: "node:http",
    title: "node:http",
    runtime: "node",
    baseline: "node-http",
    command: ["node", BENCH_DIR + "node_http.mjs"],
  },
  {
    name: "hono-node",
    label: "@hono/node-server",
    title: "@hono/node-server",
    runtime: "node",
    baseline: "node-http",
    command: ["node", BENCH_DIR + "hono_node.mjs"],
    prepare: prepareHono,
  },
];

/** Pairs reported in the brick-vs table: the first server's req/s over the second's. */
const COMPARISONS: [string, string][] = [
  ["brick", "deno"],
  ["brick-node", "node-http"],
  ["brick-node", "hono-node"],
];

const SCENARIOS: Scenario[] = [
  {
    name: "hello",
    description: `keep-alive GET /, ${CONNECTIONS} connections`,
  },
  {
    name: "close",
    description: `GET / with \`Connection: close\`, a new connection per request, ` +
      `${CONNECTIONS} concurrent`,
    headers: ["Connection: close"],
  },
  {
    name: "pipeline",
    description: `keep-alive, ${PIPELINE_DEPTH} pipelined GET / per connection, ` +
      `${CONNECTIONS} connections; req/s counts responses`,
    lua: pipelineLua(PIPELINE_DEPTH),
    latencyPercentiles: false,
  },
];

const USAGE = `Usage: deno task bench [options]

Benchmarks brick against Deno.serve on Deno, and brick's npm build against node:http and
@hono/node-server on Node, with wrk (servers on CPU ${SERVER_CPU}, wrk on CPU ${WRK_CPU}), and
writes the results to BENCH.md.

Options:
  --scenario <names>  scenarios to run, repeatable or comma-separated (default: all)
                      ${SCENARIOS.map((s) => s.name).join(", ")}
  --runtime <names>   runtimes to run, repeatable or comma-separated (default: deno,node)
  --server <names>    servers to run, repeatable or comma-separated (default: all)
                      ${SERVERS.map((s) => s.name).join(", ")}
  --duration <s>      measured seconds per run (default: 5)
  --warmup <s>        warm-up seconds before each measured run (default: 2)
  --rounds <n>        rounds per scenario (default: 3)
  --quick             smoke test: --duration 1 --warmup 1 --rounds 1
  --output <path>     report file (default: BENCH.md in the repository root)
  -h, --help          show this help
`;

/** Live child processes, stopped on Ctrl-C. */
const children = new Set<Deno.ChildProcess>();
/** Set on Ctrl-C; no process is started after it. */
let interrupted = false;

function denoCommand(script: string): string[] {
  return [Deno.execPath(), "run", "--allow-net", BENCH_DIR + script];
}

/** wrk Lua script sending `depth` pipelined requests per write. */
function pipelineLua(depth: number): string {
  return `-- ${depth} pipelined requests per connection write.
init = function(args)
  local requests = {}
  for i = 1, ${depth} do
    requests[i] = wrk.format(nil, "/")
  end
  pipelined = table.concat(requests)
end

request = function()
  return pipelined
end
`;
}

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
        quick: { type: "boolean", default: false },
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
  const rounds = parsePositive("rounds", values.rounds, quick ? 1 : 3);
  if (!Number.isInteger(rounds)) throw new UsageError("--rounds must be an integer");
  return {
    scenarios: selectByName("scenario", SCENARIOS, values.scenario),
    servers: selectServers(values.server, values.runtime),
    duration: parsePositive("duration", values.duration, quick ? 1 : 5),
    warmup: parsePositive("warmup", values.warmup, quick ? 1 : 2),
    rounds,
    connections: CONNECTIONS,
    output: values.output ?? REPO_ROOT + "BENCH.md",
  };
}

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

/** Checks for wrk, taskset and two CPUs; returns an explanation of what is missing. */
async function checkPrerequisites(): Promise<string | undefined> {
  if (await commandOutput("wrk", ["-v"]) === undefined) {
    return "wrk is not installed (not found on PATH). Install it, e.g. on Debian or Ubuntu:\n" +
      "  sudo apt-get install -y wrk";
  }
  if (await commandOutput("taskset", ["-V"]) === undefined) {
    return "taskset is not installed (not found on PATH); it comes with util-linux, e.g.\n" +
      "  sudo apt-get install -y util-linux";
  }
  const cpus = Number(await commandOutput("nproc", []));
  if (cpus < 2) {
    return `the benchmark pins the server and wrk to separate CPUs but nproc reports ${cpus}`;
  }
  return undefined;
}

function spawnTracked(command: string, options: Deno.CommandOptions): Deno.ChildProcess {
  if (interrupted) throw new Error("interrupted");
  const child = new Deno.Command(command, options).spawn();
  children.add(child);
  child.status.finally(() => children.delete(child));
  return child;
}

/** Sends SIGTERM, then SIGKILL if the process has not exited in time, and waits for it. */
async function stopProcess(child: Deno.ChildProcess): Promise<void> {
  killQuietly(child, "SIGTERM");
  const timer = setTimeout(() => killQuietly(child, "SIGKILL"), STOP_TIMEOUT_MS);
  try {
    await child.status;
  } finally {
    clearTimeout(timer);
  }
}

function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

function describeExit({ code, signal }: Pick<Deno.CommandStatus, "code" | "signal">): string {
  return signal === null ? `exit code ${code}` : `stopped by ${signal}`;
}

/** Result of {@linkcode runBounded}. */
interface BoundedResult {
  success: boolean;
  /** How the process ended, e.g. "exit code 1" or "stopped after 300 s". */
  exit: string;
  /** stdout and stderr, as text. */
  output: string;
}

/**
 * Runs a helper command (a build, an install) to completion with its output captured, stopping
 * it if it takes longer than `timeoutMs`. Throws Deno.errors.NotFound if it is not on PATH.
 */
async function runBounded(
  command: string,
  args: string[],
  timeoutMs: number,
  cwd?: string,
): Promise<BoundedResult> {
  const child = spawnTracked(command, {
    args,
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

/** Modification time of a file in milliseconds, or undefined if it does not exist. */
async function modifiedAt(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Runs `deno task build:npm` when `npm/mod.js` is missing or older than `mod.ts`; returns
 * whether it did.
 */
async function ensureNpmBuild(): Promise<boolean> {
  const built = await modifiedAt(REPO_ROOT + "npm/mod.js");
  const source = await modifiedAt(REPO_ROOT + "mod.ts");
  if (built !== undefined && source !== undefined && built >= source) return false;
  console.error(
    `npm/mod.js is ${built === undefined ? "missing" : "older than mod.ts"}: ` +
      "running deno task build:npm",
  );
  const result = await runBounded(
    Deno.execPath(),
    ["task", "build:npm"],
    BUILD_TIMEOUT_MS,
    REPO_ROOT,
  );
  if (!result.success) {
    throw new Error(`deno task build:npm failed (${result.exit}):\n${outputTail(result.output)}`);
  }
  return true;
}

/**
 * Builds `npm/` if needed and snapshots `npm/mod.js` into the run's temporary directory, which
 * the server imports instead (`BRICK_BENCH_MODULE`): every round measures the same build even if
 * `npm/` is rebuilt meanwhile.
 */
async function prepareBrickNode(tmpDir: string): Promise<Prepared> {
  const rebuilt = await ensureNpmBuild();
  // .mjs: outside npm/ there is no package.json saying "type": "module".
  const snapshot = join(tmpDir, "brick_mod.mjs");
  await Deno.copyFile(REPO_ROOT + "npm/mod.js", snapshot);
  return {
    env: { BRICK_BENCH_MODULE: snapshot },
    environment: [
      `brick on Node: \`npm/mod.js\` from \`deno task build:npm\` (${
        rebuilt ? "rebuilt by this run" : "up to date with mod.ts"
      })`,
    ],
  };
}

/** Where the Hono packages are installed: a cache directory outside the repository. */
function honoInstallDir(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") || join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return join(cache, "brick-bench", "node");
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

/**
 * Installs `hono` and `@hono/node-server` into {@linkcode honoInstallDir} unless they are there
 * at the pinned versions; skips the Hono rows if npm is missing or the install fails.
 */
async function prepareHono(): Promise<Prepared> {
  const dir = honoInstallDir();
  const specs = Object.entries(HONO_PACKAGES).map(([name, version]) => `${name}@${version}`);
  const environment = [`Hono on Node: ${specs.join(", ")} from npm, installed in \`${dir}\``];
  if (await honoInstalled(dir)) return { env: { BRICK_BENCH_NODE_DIR: dir }, environment };

  console.error(`Installing ${specs.join(" ")} into ${dir}`);
  const args = [
    "install",
    "--prefix",
    dir,
    "--no-save",
    "--no-package-lock",
    "--no-audit",
    "--no-fund",
    ...specs,
  ];
  let result;
  try {
    await Deno.mkdir(dir, { recursive: true });
    result = await runBounded("npm", args, NPM_INSTALL_TIMEOUT_MS);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new SkipServer("npm is not on PATH, so hono and @hono/node-server cannot be installed");
  }
  if (!result.success || !(await honoInstalled(dir))) {
    // npm's own summary lines, without the stack trace it prints after them.
    const errors = result.output.split("\n").filter((line) =>
      line.startsWith("npm error") && !/^npm error\s+at /.test(line)
    );
    const code = errors.find((line) => line.startsWith("npm error code "))?.slice(10);
    throw new SkipServer(
      `npm install ${specs.join(" ")} failed (${result.exit}${code ? `, ${code}` : ""}; ` +
        "no network?)",
      outputTail(errors.length > 0 ? errors.slice(0, 4).join("\n") : result.output, 8),
    );
  }
  return { env: { BRICK_BENCH_NODE_DIR: dir }, environment };
}

/** Result of {@linkcode prepareServers}. */
interface Preparation {
  servers: ReadyServer[];
  /** Lines for the report's environment list. */
  environment: string[];
  /** Why servers were left out, one line each. */
  skipped: string[];
}

/**
 * Prepares the selected servers before any measurement: checks for Node when Node servers are
 * selected, runs each server's {@linkcode Server.prepare}, and leaves out (with a note) those
 * that cannot run here.
 */
async function prepareServers(options: Options, tmpDir: string): Promise<Preparation> {
  const preparation: Preparation = { servers: [], environment: [], skipped: [] };
  const skip = (server: Server, reason: string, detail = "") => {
    const line = `${server.title}: skipped, ${reason}`;
    console.error(detail === "" ? line : `${line}\n${detail}`);
    preparation.skipped.push(line);
  };
  let nodeMissing = false;
  if (options.servers.some((server) => server.runtime === "node")) {
    const version = (await commandOutput("node", ["--version"]))?.trim();
    if (version === undefined) nodeMissing = true;
    else preparation.environment.push(`Node: ${version}`);
  }
  for (const server of options.servers) {
    if (server.runtime === "node" && nodeMissing) {
      skip(server, "node is not on PATH");
      continue;
    }
    try {
      const prepared = await server.prepare?.(tmpDir) ?? {};
      preparation.servers.push({ ...server, env: prepared.env ?? {} });
      preparation.environment.push(...prepared.environment ?? []);
    } catch (error) {
      if (!(error instanceof SkipServer)) throw error;
      skip(server, error.message, error.detail);
    }
  }
  if (preparation.servers.length === 0) throw new Error("no server can run");
  return preparation;
}

/** Reads stdout until the `LISTENING <port>` line, then keeps draining it in the background. */
async function readListeningPort(child: Deno.ChildProcess): Promise<number> {
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
      const match = buffered.match(/^LISTENING (\d+)\r?$/m);
      if (match) {
        drain(reader);
        return Number(match[1]);
      }
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(
    timedOut
      ? `did not print "LISTENING <port>" within ${STARTUP_TIMEOUT_MS / 1000} s`
      : `closed stdout before printing "LISTENING <port>"`,
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
 * Copies a server's stderr to ours as it comes and keeps its last
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

/** Starts a server pinned to the server CPU and waits until it listens. */
async function startServer(server: ReadyServer): Promise<RunningServer> {
  const child = spawnTracked("taskset", {
    args: ["-c", SERVER_CPU, ...server.command],
    env: server.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const stderrTail = teeStderr(child.stderr);
  try {
    const running: RunningServer = { child, port: await readListeningPort(child), stderrTail };
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

/** wrk arguments selecting a scenario's headers and Lua script; writes the script to `tmpDir`. */
async function scenarioWrkArgs(scenario: Scenario, tmpDir: string): Promise<string[]> {
  const args = (scenario.headers ?? []).flatMap((header) => ["--header", header]);
  if (scenario.lua !== undefined) {
    const path = `${tmpDir}/${scenario.name}.lua`;
    await Deno.writeTextFile(path, scenario.lua);
    args.push("--script", path);
  }
  return args;
}

/** Runs wrk pinned to the wrk CPU for `seconds`, killing it if it overruns; returns stdout. */
async function runWrk(
  url: string,
  seconds: number,
  connections: number,
  extraArgs: string[],
): Promise<string> {
  const child = spawnTracked("taskset", {
    args: [
      "-c",
      WRK_CPU,
      "wrk",
      "--threads",
      "1",
      "--connections",
      String(connections),
      "--duration",
      `${seconds}s`,
      "--latency",
      ...extraArgs,
      url,
    ],
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

const LATENCY_UNITS_MS: Record<string, number> = {
  us: 0.001,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Reads the 99th percentile latency in milliseconds from wrk's `--latency` output; NaN for the
 * `0.00us` wrk prints when its percentiles are corrupted (https://github.com/wg/wrk/issues/236).
 */
function parseP99(output: string): number | undefined {
  const p99 = output.match(/^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$/m);
  if (!p99) return undefined;
  const ms = Number(p99[1]) * LATENCY_UNITS_MS[p99[2]];
  return ms > 0 ? ms : NaN;
}

/** Extracts req/s, p99 latency and error counts from wrk's `--latency` output. */
function parseWrkOutput(output: string): Measurement {
  const requests = output.match(/^\s*(\d+) requests in /m);
  const rate = output.match(/^Requests\/sec:\s+([\d.]+)/m);
  const p99Ms = parseP99(output);
  if (!requests || !rate || p99Ms === undefined) {
    throw new Error(`unexpected wrk output:\n${output}`);
  }
  if (Number(requests[1]) === 0) throw new Error(`wrk completed no requests:\n${output}`);
  const socket = output.match(
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/,
  );
  const non2xx = output.match(/Non-2xx or 3xx responses: (\d+)/);
  const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  return {
    requestsPerSec: Number(rate[1]),
    p99Ms,
    errors: socketErrors + (non2xx ? Number(non2xx[1]) : 0),
  };
}

/**
 * Runs wrk against a running server; if the server died meanwhile, fails with that (and the end
 * of its stderr) rather than with what wrk made of it.
 */
async function load(
  running: RunningServer,
  seconds: number,
  wrkArgs: string[],
  options: Options,
  phase: string,
): Promise<string> {
  const url = `http://${HOSTNAME}:${running.port}/`;
  let output, wrkError;
  try {
    output = await runWrk(url, seconds, options.connections, wrkArgs);
  } catch (error) {
    wrkError = error;
  }
  // Give an exit that happened during the load the time to be noticed.
  await new Promise((resolve) => setTimeout(resolve, 50));
  if (running.exit !== undefined) {
    throw new ServerFailure(`exited during the ${phase} (${running.exit})`, running.stderrTail());
  }
  if (output === undefined) throw wrkError;
  return output;
}

/** Starts a fresh server, warms it up, measures it and stops it. */
async function measure(
  server: ReadyServer,
  scenario: Scenario,
  wrkArgs: string[],
  options: Options,
): Promise<Measurement> {
  const running = await startServer(server);
  try {
    await load(running, options.warmup, wrkArgs, options, "warm-up");
    const output = await load(running, options.duration, wrkArgs, options, "measured run");
    const measurement = parseWrkOutput(output);
    if (scenario.latencyPercentiles === false) measurement.p99Ms = NaN;
    return measurement;
  } finally {
    await stopProcess(running.child);
  }
}

/** Milliseconds with two decimals, or "n/a" for NaN. */
function formatLatency(ms: number): string {
  return Number.isNaN(ms) ? "n/a" : `${ms.toFixed(2)} ms`;
}

function formatRate(requestsPerSec: number): string {
  return Math.round(requestsPerSec).toLocaleString("en-US");
}

function logMeasurement(
  scenario: string,
  round: number,
  options: Options,
  server: Server,
  m: Measurement,
): void {
  const errors = m.errors > 0 ? `  ${m.errors} errors` : "";
  console.error(
    `${scenario.padEnd(9)} round ${round}/${options.rounds}  ${server.title.padEnd(18)}` +
      `${formatRate(m.requestsPerSec).padStart(10)} req/s  p99 ${formatLatency(m.p99Ms)}${errors}`,
  );
}

/**
 * Runs all rounds of one scenario, servers taking turns within each round. A server that fails
 * is recorded in `failures` and not run again in this scenario.
 */
async function runScenario(
  scenario: Scenario,
  servers: ReadyServer[],
  options: Options,
  tmpDir: string,
  failures: Failure[],
): Promise<ScenarioResults> {
  const wrkArgs = await scenarioWrkArgs(scenario, tmpDir);
  const results: ScenarioResults = new Map(servers.map((server) => [server.name, []]));
  const failed = new Set<string>();
  for (let round = 1; round <= options.rounds; round++) {
    for (const server of servers) {
      if (failed.has(server.name)) continue;
      try {
        const measurement = await measure(server, scenario, wrkArgs, options);
        results.get(server.name)![round - 1] = measurement;
        logMeasurement(scenario.name, round, options, server, measurement);
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

/** Median of the values that are not NaN; NaN if there are none. */
function median(values: number[]): number {
  const sorted = values.filter((value) => !Number.isNaN(value)).toSorted((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * Median over the rounds both completed of the server's req/s divided by the other's in the same
 * round; NaN if they share no round.
 */
function medianRatio(
  server: (Measurement | undefined)[],
  other: (Measurement | undefined)[],
): number {
  const ratios = server.flatMap((m, round) => {
    const o = other[round];
    return m !== undefined && o !== undefined ? [m.requestsPerSec / o.requestsPerSec] : [];
  });
  return median(ratios);
}

function formatRatio(ratio: number): string {
  return Number.isNaN(ratio) ? "n/a" : ratio.toFixed(2);
}

/** Markdown table with padded columns; `rightAligned[i]` right-aligns column i. */
function markdownTable(header: string[], rightAligned: boolean[], rows: string[][]): string {
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

/**
 * One row per scenario and server: runtime, median req/s, median p99, the baseline it is
 * compared with and the median per-round ratio against it, errors (and "failed" if the server
 * did not complete every round).
 */
function formatResults(
  results: Map<string, ScenarioResults>,
  servers: ReadyServer[],
  rounds: number,
): string {
  const rows: string[][] = [];
  for (const [scenario, byServer] of results) {
    for (const server of servers) {
      const measurements = byServer.get(server.name)!;
      const completed = measurements.filter((m) => m !== undefined);
      const baseline = byServer.get(server.baseline);
      const errors = completed.reduce((sum, m) => sum + m.errors, 0);
      rows.push([
        scenario,
        RUNTIME_LABELS[server.runtime],
        server.label,
        completed.length === 0
          ? "failed"
          : formatRate(median(completed.map((m) => m.requestsPerSec))),
        formatLatency(median(completed.map((m) => m.p99Ms))),
        SERVERS.find((s) => s.name === server.baseline)!.label,
        baseline ? formatRatio(medianRatio(measurements, baseline)) : "n/a",
        completed.length < rounds ? `${errors}, failed` : String(errors),
      ]);
    }
  }
  return markdownTable(
    ["scenario", "runtime", "server", "req/s", "p99", "baseline", "ratio", "errors"],
    [false, false, false, true, true, false, true, true],
    rows,
  );
}

/**
 * brick against each other server of its runtime ({@linkcode COMPARISONS}): one column per pair
 * whose servers both ran, the median of per-round ratios; undefined if no pair ran.
 */
function formatComparisons(
  results: Map<string, ScenarioResults>,
  servers: ReadyServer[],
): string | undefined {
  const byName = new Map(servers.map((server) => [server.name, server]));
  const pairs = COMPARISONS.filter(([a, b]) => byName.has(a) && byName.has(b));
  if (pairs.length === 0) return undefined;
  const rows = [...results].map(([scenario, byServer]) => [
    scenario,
    ...pairs.map(([a, b]) => formatRatio(medianRatio(byServer.get(a)!, byServer.get(b)!))),
  ]);
  return markdownTable(
    ["scenario", ...pairs.map(([a, b]) => `${byName.get(a)!.title} / ${byName.get(b)!.title}`)],
    [false, ...pairs.map(() => true)],
    rows,
  );
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

/** The commit brick's sources are at, noting uncommitted changes to mod.ts. */
async function brickRevision(): Promise<string> {
  const git = (...args: string[]) => commandOutput("git", ["-C", REPO_ROOT, ...args]);
  const commit = (await git("rev-parse", "--short", "HEAD"))?.trim();
  if (!commit) return "unknown";
  const changed = (await git("status", "--porcelain", "--", "mod.ts"))?.trim();
  return changed ? `${commit} with uncommitted changes to mod.ts` : commit;
}

/** What the report says besides the tables. */
interface ReportParts {
  table: string;
  comparisons?: string;
  preparation: Preparation;
  failures: Failure[];
}

/** Lines of `text`, indented to sit inside a list item. */
function indent(text: string): string[] {
  return text.split("\n").map((line) => line === "" ? "" : `  ${line}`);
}

/** Markdown report: environment, method, scenarios, the results tables and any failures. */
async function formatReport(parts: ReportParts, options: Options): Promise<string> {
  const cpus = (await commandOutput("nproc", []))?.trim() ?? "unknown";
  const scenarios = options.scenarios.map((s) => `- \`${s.name}\`: ${s.description}`);
  const runtimes = new Set(parts.preparation.servers.map((server) => server.runtime));
  const baselines = [...runtimes].map((runtime) => {
    const baseline = SERVERS.find((s) => s.runtime === runtime && s.baseline === s.name)!;
    return `${baseline.label} for the ${RUNTIME_LABELS[runtime]} rows`;
  });
  const skipped = parts.preparation.skipped.map((line) => `- ${line}`);
  const failures = parts.failures.flatMap(({ summary, stderr }) => [
    `- ${summary}`,
    ...(stderr === ""
      ? []
      : ["", "  Its stderr ended with:", "", "  ```", ...indent(stderr), "  ```"]),
    "",
  ]);
  return [
    "# Benchmarks",
    "",
    `Generated by \`${["deno task bench", ...Deno.args].join(" ")}\`.`,
    "",
    `- Date: ${new Date().toISOString()}`,
    `- Machine: ${cpus} CPUs (nproc), ${await cpuModel()}, ${Deno.build.target}`,
    `- Deno: ${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`,
    ...parts.preparation.environment.map((line) => `- ${line}`),
    `- wrk: ${await wrkVersion()}`,
    `- brick: ${await brickRevision()}`,
    "",
    `Each measurement starts a fresh server pinned to CPU ${SERVER_CPU} and drives it with ` +
    `\`wrk --threads 1 --connections ${options.connections} --latency\` pinned to CPU ${WRK_CPU}: ` +
    `${options.warmup} s warm-up, then ${options.duration} s measured. ` +
    `${options.rounds} round${
      options.rounds === 1 ? "" : "s"
    }, servers taking turns within a round. req/s and p99 are ` +
    `medians over rounds. The ratio is the median of per-round ratios of the row's req/s to its ` +
    `baseline's, which ran in the same rounds: ${baselines.join(", ")}. ` +
    `Errors are wrk socket ` +
    `errors plus non-2xx/3xx responses, summed over rounds. p99 is n/a where wrk has no usable ` +
    `percentiles: with pipelining it times batches and corrupts them ` +
    `([wg/wrk#236](https://github.com/wg/wrk/issues/236)).`,
    "",
    ...scenarios,
    "",
    parts.table,
    ...(parts.comparisons === undefined ? [] : [
      "brick against each other server of its runtime, median of per-round req/s ratios:",
      "",
      parts.comparisons,
    ]),
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
    console.error("\nInterrupted: stopping servers and wrk (again to quit at once).");
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
    const preparation = await prepareServers(options, tmpDir);
    const results = new Map<string, ScenarioResults>();
    const failures: Failure[] = [];
    for (const scenario of options.scenarios) {
      results.set(
        scenario.name,
        await runScenario(scenario, preparation.servers, options, tmpDir, failures),
      );
    }
    const table = formatResults(results, preparation.servers, options.rounds);
    const comparisons = formatComparisons(results, preparation.servers);
    console.log(`\n${table}`);
    if (comparisons !== undefined) console.log(comparisons);
    const parts = { table, comparisons, preparation, failures };
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
