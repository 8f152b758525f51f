/**
 * The command line of `deno task bench`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  CLIENT_CPU,
  IDLE_CONNECTIONS,
  IDLE_HOLD_SECONDS,
  type Options,
  REPO_ROOT,
  RUNTIME_LABELS,
  SERVER_CPU,
  WORKERS,
} from "./_config.ts";
import { PROTOCOL_BENCHES } from "./_protocols.ts";
import { SCENARIOS } from "./_scenarios.ts";
import { SERVERS } from "./_servers.ts";

export const USAGE = `Usage: deno task bench [options]

Benchmarks brick against Deno.serve on Deno, brick's npm build against node:http and
@hono/node-server on Node and against Bun.serve on Bun (servers on CPU ${SERVER_CPU}, wrk and
the idle client on CPU ${CLIENT_CPU}), checks the results against brick's targets and writes
them to BENCH.md. The workers scenario runs brick's CLI with --workers ${WORKERS} against
deno serve --parallel and against a node:cluster of node:http, with nothing pinned (servers
and wrk share every CPU).

Options:
  --scenario <names>        scenarios to run, repeatable or comma-separated (default: all)
                            ${SCENARIOS.map((s) => s.name).join(", ")}
                            and the other protocols' benches, each a script of its own:
                            ${PROTOCOL_BENCHES.map((b) => b.name).join(", ")}
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

export class UsageError extends Error {}

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
export function parseOptions(args: string[]): Options | undefined {
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
  const named = values.scenario === undefined ? undefined : splitList(values.scenario);
  const isProtocol = (name: string) => PROTOCOL_BENCHES.some((bench) => bench.name === name);
  const core = named?.filter((name) => !isProtocol(name));
  return {
    scenarios: core?.length === 0 ? [] : selectByName("scenario", SCENARIOS, core),
    protocols: named === undefined
      ? PROTOCOL_BENCHES
      : PROTOCOL_BENCHES.filter((bench) => named.includes(bench.name)),
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
