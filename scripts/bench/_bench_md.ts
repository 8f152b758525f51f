/**
 * The report of `deno task bench`: result tables, checks against the targets, and BENCH.md
 * with the machine, the versions and the date.
 *
 * @module
 */

import { dirname, join } from "node:path";
import {
  evaluate,
  formatRatioRange,
  formatSummary,
  formatTarget,
  markdownTable,
  type Results,
  roundRatios,
} from "./_report.ts";
import {
  CLIENT_CPU,
  type Options,
  REPO_ROOT,
  type Runtime,
  RUNTIME_LABELS,
  SERVER_CPU,
  STATIC_FILE_BYTES,
  WORKERS,
} from "./_config.ts";
import type { Preparation } from "./_prepare.ts";
import { commandOutput } from "./_processes.ts";
import { formatRate, serversOf } from "./_rounds.ts";
import type { Failure } from "./_running.ts";
import { CHECKS, type Scenario } from "./_scenarios.ts";
import { type ReadyServer, SERVERS } from "./_servers.ts";

// ─── The report ─────────────────────────────────────────────────────────────

/**
 * The results tables: one for the scenarios of single servers pinned apart from their client,
 * one for the `workers` scenario, each with the servers that run its scenarios; with a heading
 * each when there are both.
 */
export function formatResultTables(
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
const CHECK_COLUMNS = ["against", "its figure", "ratio", "target", "met"];

export function formatChecks(results: Results, servers: ReadyServer[]): string[] {
  const byName = new Map(servers.map((server) => [server.name, server]));
  const sections: string[] = [];
  for (const runtime of Object.keys(CHECKS) as Runtime[]) {
    const checks = CHECKS[runtime].filter((c) =>
      results.has(c.scenario) && results.get(c.scenario)!.has(c.server) &&
      (c.against === undefined || results.get(c.scenario)!.has(c.against))
    );
    if (checks.length === 0) continue;
    const brickServers = new Set(checks.map((c) => c.server));
    const oneServer = brickServers.size === 1;
    const rows = checks.map((c) => {
      const byServer = results.get(c.scenario)!;
      const { verdict, ratio } = evaluate(c, results);
      const against = c.against === undefined ? undefined : byName.get(c.against)!;
      return [
        c.scenario,
        c.metric.label,
        ...(oneServer ? [] : [byName.get(c.server)!.title]),
        formatSummary(c.metric, byServer.get(c.server)!),
        against?.title ?? "—",
        c.against === undefined ? "—" : formatSummary(c.metric, byServer.get(c.against)!),
        c.against === undefined || c.metric.comparable === false ? "—" : formatRatioRange(
          ratio,
          roundRatios(c.metric, byServer.get(c.server)!, byServer.get(c.against)!),
        ),
        formatTarget(c.target, c.metric),
        verdict === "" ? "—" : verdict,
      ];
    });
    sections.push(
      `### ${RUNTIME_LABELS[runtime]}\n\n` + markdownTable(
        oneServer
          ? ["scenario", "figure", byName.get(checks[0].server)!.title, ...CHECK_COLUMNS]
          : ["scenario", "figure", "server", "its figure", ...CHECK_COLUMNS],
        [false, false, ...(oneServer ? [] : [false]), true, false, true, true, false, false],
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
async function h2loadVersion(): Promise<string> {
  const output = await commandOutput("h2load", ["--version"]);
  return output?.trim().replace(/^h2load /, "") || "not installed";
}

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
export async function formatReport(parts: ReportParts, options: Options): Promise<string> {
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
  if (preparation.scenarios.some((s) => s.driver === "h2load")) {
    drivers.push(
      `in the hello-h2load scenario with \`h2load --h1 --threads 1\`, the same warm-up and ` +
        "duration",
    );
  }
  if (ran("idle")) {
    drivers.push(
      `in the idle scenario with \`scripts/bench/idle_client.mjs\`: one warm-up request, then ` +
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
    `- h2load: ${await h2loadVersion()}`,
    `- brick: ${await brickRevision()}`,
    "",
    `Each measurement starts a fresh server ${where.server}, with the open-files limit at ` +
    `${preparation.files}, and drives it ${where.client}: ${drivers.join("; ")}. ` +
    `${rounds}, servers taking turns within a round. Figures are medians over rounds; ratios are medians of ` +
    `per-round ratios against a server measured in the same rounds (the baselines are ` +
    `${baselines.join(", ")}). Errors are wrk's socket errors and non-2xx/3xx responses, ` +
    "h2load's failed, errored and timed-out requests and non-2xx/3xx responses, or " +
    `the idle client's failed or closed connections, summed over rounds. CPU µs/request is ` +
    "the server's CPU time, user and system over every thread (`/proc/<pid>/stat`, in 10 ms " +
    "ticks), during the measured run, divided by the requests completed; the client runs on " +
    "the other CPU and is not in it. The raw responders (`scripts/bench/raw_responder.mjs` on " +
    "Deno.listen, node:net and Bun.listen) answer every request with the same bytes, parsing " +
    "nothing but the end of each head: the ceiling of each runtime's sockets, not HTTP servers. " +
    "In post they also read each head's Content-Length and copy the body into a new array of " +
    "its own, as any server that hands bodies over whole must: that scenario's floor. " +
    "brick on Bun's node:net is brick with `BRICK_TRANSPORT=node:net`, the transport it had on " +
    "Bun before Bun.listen.",
    "",
    ...scenarios,
    "",
    "## Results",
    "",
    parts.table,
    ...(parts.checks.length === 0 ? [] : [
      "## Against the targets",
      "",
      "brick's figure, the other server's, the median per-round ratio (with the lowest and " +
      "highest per-round ratios: the noise between rounds), and the target it is checked against.",
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
export async function writeReport(path: string, report: string): Promise<void> {
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
