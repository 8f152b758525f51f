/**
 * The long versions of the hardening tests, at the sizes of issue 6, with the
 * figures they measure: brick's target server in a child process (on Deno
 * from the source, or on Node from the npm build), attacked from this one.
 *
 * ```sh
 * deno task stress                        # every scenario on Deno
 * deno task stress --runtime node         # on Node (after deno task build:npm)
 * deno task stress --only slowloris,flood
 * deno task stress --only shutdown --rounds 50 --netns
 * ```
 *
 * `--rounds N` runs each scenario N times in a row. `--netns` (root, Linux)
 * runs everything in a network namespace of its own, so that the shutdown
 * scenario can count resets and refused connects in the kernel's counters.
 *
 * Scenarios: `slowloris` (1,000 connections dribbling header bytes at the
 * default 10 s readHeaderTimeout), `slow-reader` (a client that stops reading
 * a 1 GiB stream), `fast-reader` (a client that downloads an endless stream as
 * fast as it can), `flood` (10,000 concurrent connections), `limit` (10,000
 * connections over a maxConnections of 1,000) and `shutdown` (SIGTERM to the
 * CLI under `wrk -c32`: wrk never retries, so any read, write or timeout error
 * it counts is a response lost). Each prints its figures and PASS or FAIL; the exit code is 1
 * if any failed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { fdLimits, type Runtime, startTarget, type TargetOptions } from "./hardening/harness.ts";
import {
  connectionLimitFlood,
  fastReader,
  flood,
  hasCommand,
  type Latency,
  privateTcpCounters,
  shutdownUnderLoad,
  slowloris,
  slowReader,
} from "./hardening/scenarios.ts";

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** One scenario: it runs against targets it starts and returns its verdict and figures. */
type Scenario = (context: Context) => Promise<{ failures: string[]; figures: string[] }>;

interface Context {
  runtime: Runtime;
  /** The round, from 0, when a scenario runs more than once (`--rounds`). */
  round: number;
  npmDir?: string;
  start(options: TargetOptions): ReturnType<typeof startTarget>;
}

const ms = (value: number) => `${value.toFixed(value < 10 ? 1 : 0)} ms`;
const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
const latencyLine = (l: Latency) =>
  `${l.count} normal requests: p50 ${ms(l.p50)}, p99 ${ms(l.p99)}, max ${ms(l.max)}` +
  (l.failures.length > 0 ? `, ${l.failures.length} failed (${l.failures[0]})` : "");

const SCENARIOS: Record<string, Scenario> = {
  async slowloris({ start }) {
    const readHeaderTimeout = 10_000; // brick's default
    await using target = await start({ readHeaderTimeout });
    const f = await slowloris(target.port, {
      connections: 1000,
      readHeaderTimeout,
      byteEveryMs: 500,
    });
    const failures: string[] = [];
    if (f.latency.p99 >= 50) failures.push(`p99 ${ms(f.latency.p99)} is not under 50 ms`);
    if (f.latency.failures.length > 0) failures.push("normal requests failed");
    if (f.stillOpen > 0) failures.push(`${f.stillOpen} slow connections still open`);
    if (Object.keys(f.endings).some((e) => e !== "408" && e !== "close")) {
      failures.push(`unexpected endings ${JSON.stringify(f.endings)}`);
    }
    if (f.closedAfterMs.min < readHeaderTimeout - 50) failures.push("closed before the timeout");
    return {
      failures,
      figures: [
        `1,000 connections dribbling a header byte every 500 ms, readHeaderTimeout 10 s`,
        latencyLine(f.latency),
        `slow connections ended: ${JSON.stringify(f.endings)}, ` +
        `closed ${ms(f.closedAfterMs.min)}–${ms(f.closedAfterMs.max)} after connecting`,
      ],
    };
  },

  async "slow-reader"({ start }) {
    const writeTimeout = 5000;
    await using target = await start({ writeTimeout });
    const f = await slowReader(target, GiB, 8 * MiB, writeTimeout + 5000);
    const { before, stalled, after } = f.stats;
    const failures: string[] = [];
    if (!(f.closedAfterMs < writeTimeout + 1500)) {
      failures.push(`closed after ${ms(f.closedAfterMs)}, writeTimeout is ${writeTimeout} ms`);
    }
    const growth = stalled && before ? stalled.rss - before.rss : NaN;
    if (!(growth < 64 * MiB)) failures.push(`RSS grew ${mib(growth)} while the reader stalled`);
    return {
      failures,
      figures: [
        `a 1 GiB stream, the client stops reading after 8 MiB, writeTimeout ${writeTimeout} ms`,
        `closed ${ms(f.closedAfterMs)} after the request; client got ${mib(f.received)}`,
        `server RSS: ${mib(before?.rss ?? NaN)} before, ${mib(stalled?.rss ?? NaN)} stalled, ` +
        `${mib(after?.rss ?? NaN)} after (peak ${mib(after?.peakRss ?? NaN)})`,
      ],
    };
  },

  async "fast-reader"({ start }) {
    if (!(await hasCommand("curl"))) return { failures: ["curl is not installed"], figures: [] };
    const writeTimeout = 5000;
    await using target = await start({ writeTimeout });
    const f = await fastReader(target.port, writeTimeout + 10_000);
    const failures: string[] = [];
    if (!(f.closedAfterMs < writeTimeout + 1500)) {
      failures.push(`closed after ${ms(f.closedAfterMs)}, writeTimeout is ${writeTimeout} ms`);
    }
    if (f.latency.max >= 500) failures.push(`a normal request took ${ms(f.latency.max)}`);
    if (f.latency.failures.length > 0) failures.push("normal requests failed");
    return {
      failures,
      figures: [
        `an endless stream read as fast as possible, writeTimeout ${writeTimeout} ms`,
        `closed ${ms(f.closedAfterMs)} after the request; client got ${mib(f.received)}`,
        latencyLine(f.latency),
      ],
    };
  },

  async flood({ start }) {
    const connections = 10_000;
    const own = fdLimits()?.soft ?? Infinity;
    if (own < connections + 200) {
      return {
        failures: [`this process may open only ${own} files; raise ulimit -n`],
        figures: [],
      };
    }
    await using target = await start({});
    const limit = fdLimits(target.process.pid)?.soft ?? Infinity;
    if (limit < connections + 100) {
      return { failures: [`the target may open only ${limit} files`], figures: [] };
    }
    const f = await flood(target, connections);
    const failures: string[] = [];
    if (f.answered !== connections) {
      failures.push(`${connections - f.answered} unanswered: ${JSON.stringify(f.failures)}`);
    }
    return {
      failures,
      figures: [
        `${connections} connections, each sends a GET and stays open until all are answered`,
        `answered ${f.answered} in ${ms(f.ms)}; the target held ${f.peakFds} file descriptors`,
      ],
    };
  },

  async limit({ start }) {
    const busy = 1000, newcomers = 10_000;
    await using target = await start({ maxConnections: busy });
    const f = await connectionLimitFlood(target, busy, newcomers, 20_000);
    const failures: string[] = [];
    if (f.busy["200"] !== busy) failures.push(`busy connections ended ${JSON.stringify(f.busy)}`);
    if (f.newcomers["503"] !== newcomers) {
      failures.push(`newcomers got ${JSON.stringify(f.newcomers)}`);
    }
    return {
      failures,
      figures: [
        `maxConnections ${busy}, all busy (20 s requests); ${newcomers} newcomers arrive`,
        `newcomers: ${JSON.stringify(f.newcomers)} in ${ms(f.ms)}; ` +
        `busy: ${JSON.stringify(f.busy)}; peak ${f.peakFds} file descriptors`,
      ],
    };
  },

  async shutdown({ runtime, npmDir, round }) {
    if (!(await hasCommand("wrk"))) return { failures: ["wrk is not installed"], figures: [] };
    // SIGTERM at a different moment of the load each round (1.0–2.9 s in).
    const signalAfterMs = 1000 + (round * 397) % 2000;
    // wrk runs until the CLI has exited (its -d only bounds the run), so no
    // request is cut off by wrk itself stopping. A response that takes over
    // 10 s counts as a timeout: on a starved machine 2 s (wrk's default) is
    // the machine's latency, not a shutdown's loss.
    const f = await shutdownUnderLoad({
      runtime,
      npmDir,
      connections: 32,
      seconds: 30,
      signalAfterMs,
      timeoutSeconds: 10,
    });
    const failures: string[] = [];
    if (f.exit.code !== 0) failures.push(`exit ${JSON.stringify(f.exit)}: ${f.stderr}`);
    if (!(f.exitMs < 10_000)) failures.push(`exited ${ms(f.exitMs)} after SIGTERM`);
    if (f.wrk.requests !== f.served) {
      failures.push(`wrk got ${f.wrk.requests} responses, the server answered ${f.served}`);
    }
    if (f.wrk.non2xx > 0) failures.push(f.wrk.output);
    const e = f.wrk.errors;
    // wrk never retries: a read error or a timeout is a response lost. A
    // connect refused once the listener closed is what a shutdown must do,
    // but wrk counts it as a write error (its first write fails), so write
    // errors are checked against the kernel's count of refused connects
    // where the run has its own network namespace (--netns).
    if (e.read > 0 || e.timeout > 0) {
      failures.push(`wrk saw ${e.read} read errors and ${e.timeout} timeouts`);
    }
    if (f.tcp && f.tcp.estabResets > 0) {
      failures.push(`${f.tcp.estabResets} established connections were reset`);
    }
    if (f.tcp && e.write > f.tcp.attemptFails) {
      failures.push(`${e.write} write errors, only ${f.tcp.attemptFails} of them refused connects`);
    }
    return {
      failures,
      figures: [
        `wrk -t2 -c32 --timeout 10s against the CLI, SIGTERM after ${ms(signalAfterMs)}`,
        `exit code ${f.exit.code} ${ms(f.exitMs)} after SIGTERM; ` +
        `${f.served} requests read and answered, wrk received ${f.wrk.requests}`,
        `wrk socket errors: read ${e.read}, timeout ${e.timeout}, write ${e.write}, ` +
        `connect ${e.connect}; non-2xx ${f.wrk.non2xx}`,
        f.tcp
          ? `kernel: ${f.tcp.attemptFails} connects refused (wrk's write errors), ` +
            `${f.tcp.estabResets} established connections reset`
          : "kernel counters not checked: run with --netns for the reset count",
      ],
    };
  },
};

/**
 * Runs this script again in a network namespace of its own (`unshare --net`,
 * as root, loopback only), so the kernel's TCP counters count this run alone.
 */
async function runInOwnNetwork(): Promise<number> {
  const args = Deno.args.filter((arg) => arg !== "--netns");
  const script = new URL(import.meta.url).pathname;
  const { code } = await new Deno.Command("unshare", {
    args: [
      "--net",
      "sh",
      "-c",
      'ip link set lo up && exec "$@"',
      "sh",
      Deno.execPath(),
      "run",
      "-A",
      script,
      ...args,
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  return code;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runtime: { type: "string", default: "deno" },
      only: { type: "string" },
      "npm-dir": { type: "string" },
      rounds: { type: "string", default: "1" },
      netns: { type: "boolean", default: false },
    },
  });
  const runtime = values.runtime as Runtime;
  const names = values.only?.split(",") ?? Object.keys(SCENARIOS);
  const unknown = names.filter((name) => !(name in SCENARIOS));
  const rounds = Number(values.rounds);
  if (
    (runtime !== "deno" && runtime !== "node") || unknown.length > 0 ||
    !(Number.isInteger(rounds) && rounds >= 1 && rounds <= 1000)
  ) {
    console.error(
      `Usage: deno task stress [--runtime deno|node] [--only ${
        Object.keys(SCENARIOS).join(",")
      }] ` +
        "[--rounds 1-1000] [--netns]",
    );
    Deno.exit(2);
  }
  if (values.netns && privateTcpCounters() === null) Deno.exit(await runInOwnNetwork());
  const npmDir = values["npm-dir"];
  const context: Context = {
    runtime,
    round: 0,
    npmDir,
    start: (options) => startTarget(options, { runtime, npmDir }),
  };
  console.log(`brick stress on ${runtime}`);
  let failed = 0;
  const failedRounds: Record<string, number> = {};
  for (const name of names) {
    for (let round = 0; round < rounds; round++) {
      const started = performance.now();
      let result;
      try {
        result = await SCENARIOS[name]({ ...context, round });
      } catch (error) {
        result = { failures: [`threw: ${(error as Error).stack ?? error}`], figures: [] };
      }
      const verdict = result.failures.length === 0 ? "PASS" : "FAIL";
      if (verdict === "FAIL") {
        failed++;
        failedRounds[name] = (failedRounds[name] ?? 0) + 1;
      }
      const label = rounds > 1 ? `${name} (round ${round + 1}/${rounds})` : name;
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.log(`\n${label}: ${verdict} (${seconds} s)`);
      for (const line of [...result.figures, ...result.failures.map((f) => `FAIL: ${f}`)]) {
        console.log(`  ${line}`);
      }
    }
    if (rounds > 1) {
      const bad = failedRounds[name] ?? 0;
      console.log(`\n${name}: ${rounds - bad} of ${rounds} rounds passed`);
    }
  }
  Deno.exit(failed === 0 ? 0 : 1);
}
