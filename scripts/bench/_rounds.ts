/**
 * Rounds of a scenario: the servers take turns, each measured on a fresh start.
 *
 * @module
 */

import { type Measurement, P99, PEAK_RSS, type Rounds, RSS_PER_CONNECTION } from "./_report.ts";
import type { Options } from "./_config.ts";
import { measureIdle } from "./_idle.ts";
import { measureWithH2load, measureWithWrk, scenarioWrkArgs } from "./_measure.ts";
import type { Preparation } from "./_prepare.ts";
import { isInterrupted } from "./_processes.ts";
import { type Failure, ServerFailure } from "./_running.ts";
import type { Scenario } from "./_scenarios.ts";
import type { Server } from "./_servers.ts";

// ─── Rounds ─────────────────────────────────────────────────────────────────

export function formatRate(value: number): string {
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
    const cpu = m.cpuUsPerRequest === undefined
      ? ""
      : `  CPU ${m.cpuUsPerRequest.toFixed(1)} µs/req`;
    figures = `${rate}${cpu}  p99 ${p99}  peak RSS ${PEAK_RSS.format(m.peakRssKiB)}`;
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
export function serversOf<T extends Server>(scenario: Scenario, servers: T[]): T[] {
  return servers.filter((server) =>
    server.scenarios?.includes(scenario.name) ??
      (server.workers !== undefined) === (scenario.workers ?? false)
  );
}

/**
 * Runs all rounds of one scenario, servers taking turns within each round. A server that fails
 * is recorded in `failures` and not run again in this scenario.
 */
export async function runScenario(
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
          : scenario.driver === "h2load"
          ? await measureWithH2load(server, scenario, options, preparation)
          : await measureWithWrk(server, scenario, wrkArgs, options, preparation);
        results.get(server.name)![round - 1] = measurement;
        logMeasurement(scenario, round, options, server, measurement);
      } catch (error) {
        if (isInterrupted()) throw error;
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
