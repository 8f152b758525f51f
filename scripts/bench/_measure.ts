/**
 * Measuring a server with a load generator: wrk, or h2load for the `hello-h2load` scenario.
 * Around the measured run the server's CPU time is read, for its CPU time per request.
 *
 * @module
 */

import type { Measurement } from "./_report.ts";
import { parseWrkOutput } from "./_wrk.ts";
import { h2loadArgs, parseH2loadOutput } from "./_h2load.ts";
import { CLIENT_CPU, CONNECTIONS, HOSTNAME, type Options, WRK_GRACE_MS } from "./_config.ts";
import type { Preparation } from "./_prepare.ts";
import { killQuietly, spawnTracked, stopServer } from "./_processes.ts";
import {
  assertAlive,
  readCpuSeconds,
  readGroupPeak,
  readMemory,
  type RunningServer,
  startServer,
} from "./_running.ts";
import type { Scenario } from "./_scenarios.ts";
import type { ReadyServer } from "./_servers.ts";

// ─── wrk scenarios ──────────────────────────────────────────────────────────

/** wrk arguments of a scenario: headers, Lua script, timeout; writes the script to `tmpDir`. */
export async function scenarioWrkArgs(scenario: Scenario, tmpDir: string): Promise<string[]> {
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
export async function withServer<T>(
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
export function measureWithWrk(
  server: ReadyServer,
  scenario: Scenario,
  wrkArgs: string[],
  options: Options,
  preparation: Preparation,
): Promise<Measurement> {
  return withServer(server, scenario, preparation, async (running) => {
    await load(running, scenario, options.warmup, wrkArgs, "warm-up");
    const cpuBefore = await readCpuSeconds(running, scenario.workers);
    const output = await load(running, scenario, options.duration, wrkArgs, "measured run");
    const cpuSeconds = await readCpuSeconds(running, scenario.workers) - cpuBefore;
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
      cpuUsPerRequest: cpuSeconds * 1e6 / result.requests,
    };
  });
}

/** Runs h2load against a running server, pinned to the client CPU; returns stdout. */
async function runH2load(
  running: RunningServer,
  scenario: Scenario,
  seconds: number,
  phase: string,
): Promise<string> {
  const url = `http://${HOSTNAME}:${running.port}${scenario.path ?? "/"}`;
  const args = h2loadArgs(url, seconds, scenario.connections ?? CONNECTIONS);
  const child = spawnTracked(["taskset", "-c", CLIENT_CPU, "h2load", ...args], {
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const timer = setTimeout(() => killQuietly(child, "SIGKILL"), seconds * 1000 + WRK_GRACE_MS);
  let result;
  try {
    result = await child.output();
  } finally {
    clearTimeout(timer);
  }
  await assertAlive(running, phase);
  const decoder = new TextDecoder();
  if (!result.success) {
    throw new Error(`h2load failed (code ${result.code}): ${decoder.decode(result.stderr).trim()}`);
  }
  return decoder.decode(result.stdout);
}

/** Starts a fresh server, warms it up and measures it with h2load, then stops it. */
export function measureWithH2load(
  server: ReadyServer,
  scenario: Scenario,
  options: Options,
  preparation: Preparation,
): Promise<Measurement> {
  return withServer(server, scenario, preparation, async (running) => {
    await runH2load(running, scenario, options.warmup, "warm-up");
    const cpuBefore = await readCpuSeconds(running);
    const output = await runH2load(running, scenario, options.duration, "measured run");
    const cpuSeconds = await readCpuSeconds(running) - cpuBefore;
    const result = parseH2loadOutput(output);
    return {
      requestsPerSec: result.requestsPerSec,
      mibPerSec: NaN,
      p99Ms: NaN,
      errors: result.errors,
      peakRssKiB: (await readMemory(running)).peakKiB,
      cpuUsPerRequest: cpuSeconds * 1e6 / result.succeeded,
    };
  });
}
