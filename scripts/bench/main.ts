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
 *   and `node_cluster.mjs`, a node:cluster of two node:http workers, the baseline.
 *
 * After the scenarios come the other protocols' benches (`_protocols.ts`: WebSocket echo,
 * HTTP/2 under h2load, the reverse proxy against nginx), each a script of its own run as a
 * child, whose tables are added to the report; `--scenario websocket,http2,proxy` runs only
 * those and prints them.
 *
 * The scenarios (`SCENARIOS` in `_scenarios.ts`): `hello`, `close` and `pipeline` (GET / keep-alive, with
 * a new connection per request, 16 pipelined), `post` (a 64 KiB body read whole), `static` (a
 * 100 MiB file), `idle` (10,000 open keep-alive connections) and `workers` (`hello` against the
 * servers of two workers). All but `idle` are driven by wrk; `idle` by `idle_client.mjs`,
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
 * process group of its own (`_process_group.ts`) and is stopped with the whole group;
 * a server that leaves a process of its group running fails its run.
 *
 * The report gives the median of each figure over the rounds, per scenario and server, and per
 * runtime a table of brick's figures against its baseline's (medians of per-round ratios) and
 * against the targets of `CHECKS` (`_scenarios.ts`), with ✓ or ✗. Both are printed as markdown and
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
 * To add a server, append to `SERVERS` (`_servers.ts`) a command that starts it as described in
 * `_server_args.mjs`. To add a scenario, append to `SCENARIOS` (`_scenarios.ts`) the request
 * headers or wrk Lua script it needs and the figures it reports.
 *
 * The files of this folder, one idea each: `main.ts` wires them; `_options.ts` reads the command
 * line; `_config.ts` holds the shared settings; `_servers.ts` and `_scenarios.ts` say what is
 * measured and against which targets; `_prepare.ts` builds and installs before the first
 * measurement; `_processes.ts` and `_process_group.ts` start, bound and stop processes;
 * `_running.ts` starts a server and reads its memory and CPU time; `_measure.ts` drives it with
 * wrk or h2load, `_idle.ts` with the idle client; `_rounds.ts` makes the servers take turns;
 * `_report.ts` and `_bench_md.ts` turn the figures into tables and BENCH.md. The servers are
 * the `*.mjs` and `*_serve*.ts` scripts beside them.
 *
 * @module
 */

import type { Results } from "./_report.ts";
import { formatChecks, formatReport, formatResultTables, writeReport } from "./_bench_md.ts";
import { parseOptions, USAGE, UsageError } from "./_options.ts";
import { prepareRun } from "./_prepare.ts";
import {
  checkPrerequisites,
  children,
  interruptOnSignal,
  isInterrupted,
  stopProcess,
} from "./_processes.ts";
import { type ProtocolBench, runProtocolBench } from "./_protocols.ts";
import { runScenario } from "./_rounds.ts";
import type { Failure } from "./_running.ts";

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

  if (options.scenarios.length === 0) {
    return await runProtocolsOnly(options.protocols, options.duration);
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
    const protocols = [];
    for (const bench of options.protocols) {
      if (isInterrupted()) break;
      const section = await runProtocolBench(bench, options.duration);
      console.log(`\n${section}`);
      protocols.push(section);
    }
    const parts = { table, checks, preparation, failures };
    const report = await formatReport(parts, options);
    await writeReport(options.output, [report, ...protocols].join("\n"));
    console.error(`Wrote ${options.output}`);
    if (failures.length > 0) {
      console.error(`${failures.length} server run(s) failed; see the report`);
      return 1;
    }
    return 0;
  } catch (error) {
    if (isInterrupted()) return 130;
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    await Promise.all([...children].map(stopProcess));
    await Deno.remove(tmpDir, { recursive: true });
    removeSignalHandler();
  }
}

/** Only other protocols' benches were asked for: their tables are printed, BENCH.md is left alone. */
async function runProtocolsOnly(benches: ProtocolBench[], seconds: number): Promise<number> {
  for (const bench of benches) console.log(`\n${await runProtocolBench(bench, seconds)}`);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main());
}
