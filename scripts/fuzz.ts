/**
 * Fuzzes brick over real sockets: a seeded mutation fuzzer (see
 * `scripts/hardening/fuzzer.ts`) against the target server in a child
 * process, on Deno from the source or on Node from the npm build.
 *
 * ```sh
 * deno task fuzz                                  # 20,000 cases on Deno, a random seed
 * deno task fuzz --runtime node --cases 1000000   # on Node (after deno task build:npm)
 * deno task fuzz --seed 42 --only 1234            # rerun one case of a run
 * ```
 *
 * Flags: `--runtime deno|node`, `--seed <n>`, `--cases <n>`, `--concurrency
 * <n>`, `--only <i,j,…>`, `--npm-dir <dir>` (the build to use for Node).
 *
 * It passes when every connection ended with well-formed responses or a clean
 * close within the target's timeouts, the target never crashed, logged no
 * unexpected failure, answers a normal request afterwards, and has as many
 * file descriptors open as before the run. Otherwise it prints each violation
 * with its seed and bytes, and exits 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type Runtime, startTarget } from "./hardening/harness.ts";
import { FUZZ_TARGET_OPTIONS, fuzzTarget, type TargetFuzzReport } from "./hardening/fuzzer.ts";

const USAGE = "Usage: deno task fuzz [--runtime deno|node] [--seed <n>] [--cases <n>] " +
  "[--concurrency <n>] [--only <i,j,…>] [--npm-dir <dir>]";

/** The flags, checked. */
interface FuzzFlags {
  runtime: Runtime;
  seed: number;
  cases: number;
  concurrency: number;
  only?: number[];
  npmDir?: string;
}

function parseFlags(args: string[]): FuzzFlags {
  const { values } = parseArgs({
    args,
    options: {
      runtime: { type: "string", default: "deno" },
      seed: { type: "string" },
      cases: { type: "string", default: "20000" },
      concurrency: { type: "string", default: "64" },
      only: { type: "string" },
      "npm-dir": { type: "string" },
    },
  });
  const whole = (name: string, value: string, min: number) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) {
      throw new RangeError(`Invalid --${name} "${value}": use a whole number ≥ ${min}`);
    }
    return n;
  };
  if (values.runtime !== "deno" && values.runtime !== "node") {
    throw new RangeError(`Invalid --runtime "${values.runtime}": use deno or node`);
  }
  return {
    runtime: values.runtime,
    seed: values.seed === undefined
      ? Math.floor(Math.random() * 2 ** 31)
      : whole("seed", values.seed, 0),
    cases: whole("cases", values.cases, 1),
    concurrency: whole("concurrency", values.concurrency, 1),
    only: values.only?.split(",").map((i) => whole("only", i, 0)),
    npmDir: values["npm-dir"],
  };
}

/** The summary: what ran, the outcomes and statuses, speed, and the target's health. */
function formatReport(flags: FuzzFlags, report: TargetFuzzReport): string {
  const count = (record: Record<string, number>) =>
    Object.entries(record).sort(([a], [b]) => a.localeCompare(b))
      .map(([key, n]) => `${key}: ${n}`).join(", ");
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  const lines = [
    `brick fuzz on ${flags.runtime}: seed ${report.seed}, ${report.cases} cases, ` +
    `concurrency ${flags.concurrency}`,
    `  outcomes:  ${count(report.kinds)}`,
    `  statuses:  ${count(report.statuses)}`,
    `  time:      ${(report.ms / 1000).toFixed(1)} s, ` +
    `${
      Math.round(report.cases / (report.ms / 1000))
    } cases/s, slowest case ${report.slowestMs} ms (#${report.slowestIndex})`,
  ];
  if (report.fds) lines.push(`  fds:       ${report.fds.before} before, ${report.fds.after} after`);
  if (report.rss) {
    lines.push(
      `  memory:    ${mib(report.rss.before)} before, ${mib(report.rss.after)} after, ` +
        `${mib(report.rss.peak)} peak (RSS)`,
    );
  }
  if (Object.keys(report.logged).length > 0) lines.push(`  logged:    ${count(report.logged)}`);
  lines.push(
    report.problems.length === 0 ? "  PASS" : `  FAIL: ${report.problems.length} problem(s)`,
  );
  for (const problem of report.problems) lines.push(problem.replace(/^/gm, "    "));
  return lines.join("\n");
}

if (import.meta.main) {
  let flags: FuzzFlags;
  try {
    flags = parseFlags(Deno.args);
  } catch (error) {
    console.error((error as Error).message);
    console.error(USAGE);
    Deno.exit(2);
  }
  let target;
  try {
    target = await startTarget(FUZZ_TARGET_OPTIONS, {
      runtime: flags.runtime,
      npmDir: flags.npmDir,
    });
  } catch (error) {
    console.error(`Cannot start the ${flags.runtime} target: ${(error as Error).message}`);
    Deno.exit(1);
  }
  console.log(
    `Fuzzing brick on ${flags.runtime} (pid ${target.process.pid}, port ${target.port}), ` +
      `seed ${flags.seed}`,
  );
  let report: TargetFuzzReport;
  try {
    report = await fuzzTarget(target, {
      seed: flags.seed,
      cases: flags.cases,
      only: flags.only,
      concurrency: flags.concurrency,
      progressEvery: flags.cases >= 100_000 ? 50_000 : 5000,
      onProgress: (done) => console.log(`  ${done} cases`),
    });
  } catch (error) {
    await target[Symbol.asyncDispose]();
    throw error;
  }
  const stopped = Date.now();
  const exit = await target.stop();
  const stopMs = Date.now() - stopped;
  if (exit.code !== 0) report.problems.push(`The target exited with ${JSON.stringify(exit)}`);
  console.log(formatReport(flags, report));
  console.log(`  shutdown:  ${stopMs} ms after SIGTERM, exit code ${exit.code}`);
  Deno.exit(report.problems.length === 0 ? 0 : 1);
}
