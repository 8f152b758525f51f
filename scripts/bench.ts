/**
 * Throughput benchmark of brick against Deno.serve, driven by wrk.
 *
 * ```sh
 * deno task bench                                   # all scenarios, 5 s x 3 rounds
 * deno task bench --quick                           # smoke test: 1 s x 1 round
 * deno task bench --scenario hello,close --duration 10 --rounds 5
 * deno task bench --server deno                     # only Deno.serve (no ratio)
 * deno task bench --help
 * ```
 *
 * Every measurement starts a fresh server pinned to CPU 0 (`taskset -c 0`) on a free port of
 * 127.0.0.1 and drives it with wrk pinned to CPU 1 (`taskset -c 1`): a warm-up run whose numbers
 * are discarded, then a measured run with `--latency`. Within a round the servers take turns
 * (brick, deno, brick, deno, ...). The report gives, per scenario and server, the median req/s,
 * the median p99 latency and the median of the per-round ratios against Deno.serve. It is
 * printed as a markdown table and written to BENCH.md with the machine, Deno and wrk versions.
 *
 * Needs `wrk` and `taskset` on PATH and at least two CPUs.
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

/** A server under test. */
interface Server {
  /** Identifier used by `--server`. */
  name: string;
  /** Name shown in the report. */
  label: string;
  /**
   * Command line starting the server on a free port of 127.0.0.1; it must print
   * `LISTENING <port>` on stdout once it accepts connections.
   */
  command: string[];
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
}

/** Measurements of one scenario: per server name, one per round. */
type ScenarioResults = Map<string, Measurement[]>;

const HOSTNAME = "127.0.0.1";
const SERVER_CPU = "0";
const WRK_CPU = "1";
const CONNECTIONS = 64;
const PIPELINE_DEPTH = 16;
const STARTUP_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
/** Time wrk may take beyond its `-d` duration before it is killed. */
const WRK_GRACE_MS = 15_000;
const BASELINE = "deno";

const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));
const BENCH_DIR = fileURLToPath(new URL("./bench/", import.meta.url));

/** Servers in the order they take turns within a round. */
const SERVERS: Server[] = [
  denoScriptServer("brick", "brick", "brick_hello.ts"),
  denoScriptServer("deno", "Deno.serve", "deno_hello.ts"),
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

Benchmarks brick against Deno.serve with wrk (servers on CPU ${SERVER_CPU}, wrk on CPU ${WRK_CPU})
and writes the results to BENCH.md.

Options:
  --scenario <names>  scenarios to run, repeatable or comma-separated (default: all)
                      ${SCENARIOS.map((s) => s.name).join(", ")}
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

function denoScriptServer(name: string, label: string, script: string): Server {
  return {
    name,
    label,
    command: [Deno.execPath(), "run", "--allow-net", BENCH_DIR + script],
  };
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

/** Splits repeated, comma-separated values and resolves them against `known`. */
function selectByName<T extends { name: string }>(
  kind: string,
  known: T[],
  values: string[] | undefined,
): T[] {
  if (values === undefined) return known;
  const names = values.flatMap((value) => value.split(",")).map((name) => name.trim())
    .filter((name) => name !== "");
  return [...new Set(names)].map((name) => {
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

/** Parses the command line; returns undefined when help was requested. */
function parseOptions(args: string[]): Options | undefined {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        scenario: { type: "string", multiple: true },
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
    servers: selectByName("server", SERVERS, values.server),
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

/** Starts a server pinned to the server CPU and waits until it listens. */
async function startServer(server: Server): Promise<RunningServer> {
  const child = spawnTracked("taskset", {
    args: ["-c", SERVER_CPU, ...server.command],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  });
  try {
    return { child, port: await readListeningPort(child) };
  } catch (error) {
    await stopProcess(child);
    const { code, signal } = await child.status;
    const exit = signal === null ? `exit code ${code}` : `stopped by ${signal}`;
    const message = error instanceof Error ? error.message : error;
    throw new Error(`${server.name}: ${message} (${exit})`);
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

/** Starts a fresh server, warms it up, measures it and stops it. */
async function measure(
  server: Server,
  scenario: Scenario,
  wrkArgs: string[],
  options: Options,
): Promise<Measurement> {
  const running = await startServer(server);
  try {
    const url = `http://${HOSTNAME}:${running.port}/`;
    await runWrk(url, options.warmup, options.connections, wrkArgs);
    const output = await runWrk(url, options.duration, options.connections, wrkArgs);
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
    `${scenario.padEnd(9)} round ${round}/${options.rounds}  ${server.label.padEnd(11)}` +
      `${formatRate(m.requestsPerSec).padStart(10)} req/s  p99 ${formatLatency(m.p99Ms)}${errors}`,
  );
}

/** Runs all rounds of one scenario, servers taking turns within each round. */
async function runScenario(
  scenario: Scenario,
  options: Options,
  tmpDir: string,
): Promise<ScenarioResults> {
  const wrkArgs = await scenarioWrkArgs(scenario, tmpDir);
  const results: ScenarioResults = new Map(options.servers.map((server) => [server.name, []]));
  for (let round = 1; round <= options.rounds; round++) {
    for (const server of options.servers) {
      const measurement = await measure(server, scenario, wrkArgs, options);
      results.get(server.name)!.push(measurement);
      logMeasurement(scenario.name, round, options, server, measurement);
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

/** Median over rounds of the server's req/s divided by the baseline's in the same round. */
function medianRatio(server: Measurement[], baseline: Measurement[]): number {
  return median(server.map((m, round) => m.requestsPerSec / baseline[round].requestsPerSec));
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

/** One row per scenario and server: median req/s, median p99, ratio, errors. */
function formatResults(results: Map<string, ScenarioResults>, options: Options): string {
  const baselineLabel = SERVERS.find((server) => server.name === BASELINE)!.label;
  const rows: string[][] = [];
  for (const [scenario, byServer] of results) {
    const baseline = byServer.get(BASELINE);
    for (const server of options.servers) {
      const measurements = byServer.get(server.name)!;
      rows.push([
        scenario,
        server.label,
        formatRate(median(measurements.map((m) => m.requestsPerSec))),
        formatLatency(median(measurements.map((m) => m.p99Ms))),
        baseline ? medianRatio(measurements, baseline).toFixed(2) : "n/a",
        String(measurements.reduce((sum, m) => sum + m.errors, 0)),
      ]);
    }
  }
  return markdownTable(
    ["scenario", "server", "req/s", "p99", `ratio vs ${baselineLabel}`, "errors"],
    [false, false, true, true, true, true],
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

/** Markdown report: environment, method, scenarios and the results table. */
async function formatReport(table: string, options: Options): Promise<string> {
  const cpus = (await commandOutput("nproc", []))?.trim() ?? "unknown";
  const scenarios = options.scenarios.map((s) => `- \`${s.name}\`: ${s.description}`);
  return [
    "# Benchmarks",
    "",
    `Generated by \`${["deno task bench", ...Deno.args].join(" ")}\`.`,
    "",
    `- Date: ${new Date().toISOString()}`,
    `- Machine: ${cpus} CPUs (nproc), ${await cpuModel()}, ${Deno.build.target}`,
    `- Deno: ${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`,
    `- wrk: ${await wrkVersion()}`,
    `- brick: ${await brickRevision()}`,
    "",
    `Each measurement starts a fresh server pinned to CPU ${SERVER_CPU} and drives it with ` +
    `\`wrk --threads 1 --connections ${options.connections} --latency\` pinned to CPU ${WRK_CPU}: ` +
    `${options.warmup} s warm-up, then ${options.duration} s measured. ` +
    `${options.rounds} round${
      options.rounds === 1 ? "" : "s"
    }, servers taking turns within a round. req/s and p99 are ` +
    `medians over rounds; the ratio is the median of per-round ratios; errors are wrk socket ` +
    `errors plus non-2xx/3xx responses, summed over rounds. p99 is n/a where wrk has no usable ` +
    `percentiles: with pipelining it times batches and corrupts them ` +
    `([wg/wrk#236](https://github.com/wg/wrk/issues/236)).`,
    "",
    ...scenarios,
    "",
    table,
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
    const results = new Map<string, ScenarioResults>();
    for (const scenario of options.scenarios) {
      results.set(scenario.name, await runScenario(scenario, options, tmpDir));
    }
    const table = formatResults(results, options);
    console.log(`\n${table}`);
    await writeReport(options.output, await formatReport(table, options));
    console.error(`Wrote ${options.output}`);
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
