/**
 * The long versions of the hardening tests, at the sizes of issue 6, with the
 * figures they measure: brick's target server in a child process (on Deno
 * from the source, or on Node from the npm build), attacked from this one.
 *
 * ```sh
 * deno task stress                        # every scenario on Deno
 * deno task stress --runtime node         # on Node (after deno task build:npm)
 * deno task stress --only slowloris,flood
 * ```
 *
 * Scenarios: `slowloris` (1,000 connections dribbling header bytes at the
 * default 10 s readHeaderTimeout), `slow-reader` (a client that stops reading
 * a 1 GiB stream), `fast-reader` (a client that downloads an endless stream as
 * fast as it can), `flood` (10,000 concurrent connections), `limit` (10,000
 * connections over a maxConnections of 1,000) and `shutdown` (SIGTERM to the
 * CLI under wrk). Each prints its figures and PASS or FAIL; the exit code is 1
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

  async shutdown({ runtime, npmDir }) {
    if (!(await hasCommand("wrk"))) return { failures: ["wrk is not installed"], figures: [] };
    const f = await shutdownUnderLoad({
      runtime,
      npmDir,
      connections: 256,
      seconds: 10,
      signalAfterMs: 5000,
    });
    const failures: string[] = [];
    if (f.exit.code !== 0) failures.push(`exit ${JSON.stringify(f.exit)}: ${f.stderr}`);
    if (!(f.exitMs < 10_000)) failures.push(`exited ${ms(f.exitMs)} after SIGTERM`);
    if (f.wrk.requests !== f.served) {
      failures.push(`wrk got ${f.wrk.requests} responses, the server answered ${f.served}`);
    }
    if (f.wrk.non2xx > 0) failures.push(f.wrk.output);
    const e = f.wrk.errors;
    return {
      failures,
      figures: [
        "wrk -t2 -c256 -d10s against the CLI, SIGTERM after 5 s",
        `exit code ${f.exit.code} ${ms(f.exitMs)} after SIGTERM; ` +
        `${f.served} requests read and answered, wrk received ${f.wrk.requests}`,
        `wrk socket errors: connect ${e.connect}, read ${e.read}, write ${e.write} ` +
        `(once the server is gone), timeout ${e.timeout} (answered, after over 2 s); ` +
        `non-2xx ${f.wrk.non2xx}`,
      ],
    };
  },
};

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      runtime: { type: "string", default: "deno" },
      only: { type: "string" },
      "npm-dir": { type: "string" },
    },
  });
  const runtime = values.runtime as Runtime;
  const names = values.only?.split(",") ?? Object.keys(SCENARIOS);
  const unknown = names.filter((name) => !(name in SCENARIOS));
  if ((runtime !== "deno" && runtime !== "node") || unknown.length > 0) {
    console.error(
      `Usage: deno task stress [--runtime deno|node] [--only ${Object.keys(SCENARIOS).join(",")}]`,
    );
    Deno.exit(2);
  }
  const npmDir = values["npm-dir"];
  const context: Context = {
    runtime,
    npmDir,
    start: (options) => startTarget(options, { runtime, npmDir }),
  };
  console.log(`brick stress on ${runtime}`);
  let failed = 0;
  for (const name of names) {
    const started = performance.now();
    let result;
    try {
      result = await SCENARIOS[name](context);
    } catch (error) {
      result = { failures: [`threw: ${(error as Error).stack ?? error}`], figures: [] };
    }
    const verdict = result.failures.length === 0 ? "PASS" : "FAIL";
    if (verdict === "FAIL") failed++;
    console.log(`\n${name}: ${verdict} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
    for (const line of [...result.figures, ...result.failures.map((f) => `FAIL: ${f}`)]) {
      console.log(`  ${line}`);
    }
  }
  Deno.exit(failed === 0 ? 0 : 1);
}
