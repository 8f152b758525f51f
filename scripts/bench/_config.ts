/**
 * Settings every part of `deno task bench` shares: runtimes, the run's options,
 * the load and the limits, where things are.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import type { Scenario } from "./_scenarios.ts";
import type { Server } from "./_servers.ts";
import type { ProtocolBench } from "./_protocols.ts";

// ─── Servers, scenarios and targets ─────────────────────────────────────────

/** The runtime a server runs on; each has its own baseline server. */
export type Runtime = "deno" | "node" | "bun";

export const RUNTIME_LABELS: Record<Runtime, string> = { deno: "Deno", node: "Node", bun: "Bun" };

/** Settings of one benchmark run. */
export interface Options {
  scenarios: Scenario[];
  /** The other protocols' benches to run after the scenarios. */
  protocols: ProtocolBench[];
  servers: Server[];
  /** Measured seconds per run. */
  duration: number;
  /** Warm-up seconds per run, discarded. */
  warmup: number;
  rounds: number;
  /** Connections the idle scenario opens. */
  idleConnections: number;
  /** Seconds the idle scenario holds them open. */
  idleHold: number;
  /** Whether to measure `npm/` as it is, without rebuilding it. */
  noBuild: boolean;
  /** Whether this is a `--quick` smoke test. */
  quick: boolean;
  /** Path of the markdown report. */
  output: string;
}

export const HOSTNAME = "127.0.0.1";
export const SERVER_CPU = "0";
export const CLIENT_CPU = "1";
export const CONNECTIONS = 64;
export const PIPELINE_DEPTH = 16;
export const POST_BODY_BYTES = 64 * 1024;
export const STATIC_FILE_BYTES = 100 * 1024 * 1024;
export const STATIC_FILE_NAME = "brick-bench-100mib.bin";
export const STATIC_CONNECTIONS = 4;
export const IDLE_CONNECTIONS = 10_000;
/** Workers of the servers in the `workers` scenario: one per core of a two-core machine. */
export const WORKERS = 2;
export const IDLE_HOLD_SECONDS = 5;
/** The open-files limit asked for, capped by the hard limit. */
export const WANTED_FILE_LIMIT = 65_535;
/** Files a process needs besides its connections. */
export const SPARE_FILES = 1_000;
export const STARTUP_TIMEOUT_MS = 10_000;
export const STOP_TIMEOUT_MS = 5_000;
/**
 * How long the processes of a server's group may take to be gone after the server process
 * itself has exited (workers still exiting) before the bench kills them and fails the run.
 */
export const GROUP_EXIT_TIMEOUT_MS = 3_000;
/** Time wrk may take beyond its `-d` duration before it is killed. */
export const WRK_GRACE_MS = 15_000;
/** The most the idle client may spend opening its connections. */
export const IDLE_OPEN_TIMEOUT_MS = 60_000;
/** Time the idle client may take beyond what it was told before it is killed. */
export const IDLE_CLIENT_GRACE_MS = 15_000;
/** Pause between the warm-up request and the first memory reading of the idle scenario. */
export const IDLE_SETTLE_MS = 500;
/** How often the server's memory is read while the idle connections are held. */
export const RSS_SAMPLE_MS = 250;
export const BUILD_TIMEOUT_MS = 300_000;
export const INSTALL_TIMEOUT_MS = 180_000;
/** How much of a failing server's stderr the report quotes. */
export const STDERR_TAIL_CHARS = 2_000;

/** Exact versions of the npm packages behind the Hono rows. */
export const HONO_PACKAGES = { "@hono/node-server": "2.1.8", "hono": "4.13.19" };
/** The Bun release the Bun rows run on, fetched with npx. */
export const BUN_PACKAGE = "bun@1.3.14";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const BENCH_DIR = fileURLToPath(new URL("./", import.meta.url));
