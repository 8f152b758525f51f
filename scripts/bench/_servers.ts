/**
 * The servers `deno task bench` measures, grouped by runtime, each with its baseline, and
 * how each is prepared and started.
 *
 * @module
 */

import { join } from "node:path";
import { BENCH_DIR, HOSTNAME, type Options, REPO_ROOT, type Runtime, WORKERS } from "./_config.ts";
import {
  brickDenoStaticNote,
  bunPath,
  modifiedAt,
  prepareBrickBuild,
  prepareHono,
} from "./_prepare.ts";

/** A server under test. */
export interface Server {
  /** Identifier used by `--server`. */
  name: string;
  /** Name shown in the tables and logs. */
  title: string;
  runtime: Runtime;
  /** Name of the server this one is compared with (measured in the same rounds). */
  baseline: string;
  /**
   * Program and script starting the server; the bench appends `--scenario <name>` (and
   * `--root <dir>`), as `bench/_server_args.mjs` describes.
   */
  command: string[];
  /**
   * The scenarios it runs (default: all those for its kind of server, see
   * {@linkcode Server.workers}).
   */
  scenarios?: string[];
  /**
   * How many workers serve, for a server of several processes or threads. Such a server runs
   * only the scenarios marked {@linkcode Scenario.workers}, and the others only the rest.
   */
  workers?: number;
  /**
   * Whether {@linkcode Server.command} is a bench server, which gets `--scenario <name>` (and
   * `--root <dir>`) appended (default true); false for a command line that is complete as it
   * is, such as brick's CLI.
   */
  benchArgs?: boolean;
  /**
   * The stdout line that tells the port the server listens on, with the port in group 1
   * (default: a bench server's `LISTENING <port>`).
   */
  portLine?: RegExp;
  /** Environment variables for the server process, besides those of its preparation. */
  env?: Record<string, string>;
  /**
   * Runs once before the first measurement (builds, installs) and returns what the server
   * needs. Throws {@linkcode SkipServer} to leave the server out of the run.
   */
  prepare?: (tmpDir: string, options: Options) => Promise<Prepared>;
}

/** What {@linkcode Server.prepare} hands to the run. */
export interface Prepared {
  /** Environment variables for the server process. */
  env?: Record<string, string>;
  /** Replaces {@linkcode Server.command}, e.g. with a program found only now. */
  command?: string[];
  /** Lines for the report's environment list. */
  environment?: string[];
  /** How the server sends the static file, for the report's notes. */
  staticNote?: string;
}

/** A server ready to start. */
export interface ReadyServer extends Server {
  env: Record<string, string>;
}

/** Thrown by a server's preparation when the server cannot run here; the run goes on without it. */
export class SkipServer extends Error {
  /** `message` is one line for the report; `detail`, printed below it, may be more. */
  constructor(message: string, readonly detail = "") {
    super(message);
  }
}

/** A load pattern applied to every server that runs it. */
/** The banner line of brick's CLI that gives the port: `  Local:   http://127.0.0.1:<port>/`. */
const BRICK_BANNER_PORT = /^\s*Local:\s+http:\/\/127\.0\.0\.1:(\d+)\/\r?$/m;

/**
 * The arguments of brick's CLI: its default hello app, no access log, `workers` workers (in the
 * `workers` scenario {@linkcode WORKERS}), a free port of 127.0.0.1.
 */
function brickCliArgs(workers = WORKERS): string[] {
  return ["--workers", String(workers), "--quiet", "--host", HOSTNAME, "--port", "0"];
}

/** brick's CLI from the source on Deno; several workers need `--unstable-net` (SO_REUSEPORT). */
function brickDenoCliCommand(workers: number): string[] {
  const unstable = workers > 1 ? ["--unstable-net"] : [];
  return [
    Deno.execPath(),
    "run",
    "--allow-net",
    "--allow-read",
    ...unstable,
    REPO_ROOT + "main.ts",
    ...brickCliArgs(workers),
  ];
}

/** The scenarios of the raw responders: those without a request body, and post. */
const RAW_SCENARIOS = ["hello", "hello-h2load", "close", "pipeline", "post"];

/**
 * Servers in the order they take turns within a round, grouped by runtime; the servers of
 * several workers last, as they run only their own scenario.
 */
export const SERVERS: Server[] = [
  {
    name: "brick",
    title: "brick on Deno",
    runtime: "deno",
    baseline: "deno",
    command: denoCommand("brick_deno.ts"),
    prepare: () => Promise.resolve({ staticNote: brickDenoStaticNote() }),
  },
  {
    name: "brick-deno-cli",
    title: "brick CLI on Deno",
    runtime: "deno",
    baseline: "deno",
    scenarios: ["hello", "hello-h2load"],
    benchArgs: false,
    portLine: BRICK_BANNER_PORT,
    command: brickDenoCliCommand(1),
  },
  {
    name: "deno",
    title: "Deno.serve",
    runtime: "deno",
    baseline: "deno",
    command: denoCommand("deno_serve.ts"),
  },
  {
    name: "raw-deno",
    title: "Deno.listen responder",
    runtime: "deno",
    baseline: "deno",
    command: denoCommand("raw_responder.mjs"),
    scenarios: RAW_SCENARIOS,
  },
  {
    name: "brick-node",
    title: "brick on Node",
    runtime: "node",
    baseline: "node-http",
    command: ["node", BENCH_DIR + "brick_node.mjs"],
    prepare: prepareBrickBuild,
  },
  {
    name: "node-http",
    title: "node:http",
    runtime: "node",
    baseline: "node-http",
    command: ["node", BENCH_DIR + "node_http.mjs"],
  },
  {
    name: "hono-node",
    title: "@hono/node-server",
    runtime: "node",
    baseline: "node-http",
    command: ["node", BENCH_DIR + "hono_node.mjs"],
    scenarios: ["hello", "close", "pipeline", "post", "idle"],
    prepare: prepareHono,
  },
  {
    name: "raw-node",
    title: "node:net responder",
    runtime: "node",
    baseline: "node-http",
    command: ["node", BENCH_DIR + "raw_responder.mjs"],
    scenarios: RAW_SCENARIOS,
  },
  {
    name: "brick-node-cli",
    title: "brick CLI on Node",
    runtime: "node",
    baseline: "node-http",
    scenarios: ["hello", "hello-h2load"],
    benchArgs: false,
    portLine: BRICK_BANNER_PORT,
    command: ["node", REPO_ROOT + "npm/main.js", ...brickCliArgs(1)],
    prepare: async (tmpDir, options) => {
      const build = await prepareBrickBuild(tmpDir, options);
      const main = join(build.env!.BRICK_BENCH_NPM_DIR, "main.js");
      return { ...build, command: ["node", main, ...brickCliArgs(1)] };
    },
  },
  {
    name: "brick-bun",
    title: "brick on Bun",
    runtime: "bun",
    baseline: "bun",
    command: ["bun", BENCH_DIR + "brick_node.mjs"],
    prepare: async (tmpDir, options) => {
      const build = await prepareBrickBuild(tmpDir, options);
      return { ...build, command: [await bunPath(), BENCH_DIR + "brick_node.mjs"] };
    },
  },
  {
    name: "brick-bun-cli",
    title: "brick CLI on Bun",
    runtime: "bun",
    baseline: "bun",
    scenarios: ["hello", "hello-h2load"],
    benchArgs: false,
    portLine: BRICK_BANNER_PORT,
    command: ["bun", REPO_ROOT + "npm/main.js", ...brickCliArgs(1)],
    prepare: async (tmpDir, options) => {
      const build = await prepareBrickBuild(tmpDir, options);
      const main = join(build.env!.BRICK_BENCH_NPM_DIR, "main.js");
      return { ...build, command: [await bunPath(), main, ...brickCliArgs(1)] };
    },
  },
  {
    // The transport brick used on Bun before Bun.listen, kept as the "before" of the Bun rows.
    name: "brick-bun-node-net",
    title: "brick on Bun's node:net",
    runtime: "bun",
    baseline: "bun",
    env: { BRICK_TRANSPORT: "node:net" },
    command: ["bun", BENCH_DIR + "brick_node.mjs"],
    prepare: async (tmpDir, options) => {
      const build = await prepareBrickBuild(tmpDir, options);
      return { ...build, command: [await bunPath(), BENCH_DIR + "brick_node.mjs"] };
    },
  },
  {
    name: "bun",
    title: "Bun.serve",
    runtime: "bun",
    baseline: "bun",
    command: ["bun", BENCH_DIR + "bun_serve.mjs"],
    prepare: async () => ({ command: [await bunPath(), BENCH_DIR + "bun_serve.mjs"] }),
  },
  {
    name: "raw-bun",
    title: "Bun.listen responder",
    runtime: "bun",
    baseline: "bun",
    command: ["bun", BENCH_DIR + "raw_responder.mjs"],
    scenarios: RAW_SCENARIOS,
    prepare: async () => ({ command: [await bunPath(), BENCH_DIR + "raw_responder.mjs"] }),
  },
  {
    name: "brick-workers",
    title: `brick --workers ${WORKERS} on Deno`,
    runtime: "deno",
    baseline: "deno-parallel",
    workers: WORKERS,
    benchArgs: false,
    portLine: BRICK_BANNER_PORT,
    command: brickDenoCliCommand(WORKERS),
  },
  {
    name: "deno-parallel",
    title: "deno serve --parallel",
    runtime: "deno",
    baseline: "deno-parallel",
    workers: WORKERS,
    benchArgs: false,
    portLine: /^(?:\[serve-worker-\d+ *\] )?LISTENING (\d+)\r?$/m,
    env: { DENO_JOBS: String(WORKERS) },
    command: [
      Deno.execPath(),
      "serve",
      "--parallel",
      "--allow-net",
      "--host",
      HOSTNAME,
      "--port",
      "0",
      BENCH_DIR + "deno_serve_app.ts",
    ],
  },
  {
    name: "brick-node-workers",
    title: `brick --workers ${WORKERS} on Node`,
    runtime: "node",
    baseline: "node-cluster",
    workers: WORKERS,
    benchArgs: false,
    portLine: BRICK_BANNER_PORT,
    command: ["node", REPO_ROOT + "npm/main.js", ...brickCliArgs()],
    prepare: async (tmpDir, options) => {
      const build = await prepareBrickBuild(tmpDir, options);
      const main = join(build.env!.BRICK_BENCH_NPM_DIR, "main.js");
      if (await modifiedAt(main) === undefined) {
        throw new SkipServer("the npm build has no main.js (brick's CLI)");
      }
      return { ...build, command: ["node", main, ...brickCliArgs()] };
    },
  },
  {
    name: "node-cluster",
    title: `node:cluster (${WORKERS} × node:http)`,
    runtime: "node",
    baseline: "node-cluster",
    workers: WORKERS,
    env: { WORKERS: String(WORKERS) },
    command: ["node", BENCH_DIR + "node_cluster.mjs"],
  },
];

function denoCommand(script: string): string[] {
  return [Deno.execPath(), "run", "--allow-net", "--allow-read", BENCH_DIR + script];
}
