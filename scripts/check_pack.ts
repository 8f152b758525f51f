/**
 * Tests the npm package the way users get it: packs `npm/` with `npm pack`,
 * installs the tarball into a fresh project (offline: the package has no
 * dependencies) and uses it from there, on Node:
 *
 * - `npx brick` prints its version and usage, serves Hello World, and stops
 *   on SIGTERM; the installed `brick` command exits 0 after a SIGTERM
 * - an ES module imports `serve` from "brickhttp" (and the file-server and
 *   websocket entry points), serves and fetches
 * - a CommonJS module `require`s "brickhttp" (Node ≥ 20.19 loads ESM so)
 * - TypeScript 6 type-checks a consumer against the package's declarations,
 *   with and without `@types/node`, with NodeNext and Bundler resolution
 *
 * ```sh
 * deno task test:pack             # builds npm/ first
 * deno task test:pack --no-build  # tests npm/ as it is
 * ```
 *
 * Everything listens on 127.0.0.1. The temporary project and every process
 * started here are removed at the end, also when a step fails.
 *
 * @module
 */

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "./build_npm.ts";

const NPM_DIR = fileURLToPath(new URL("../npm/", import.meta.url));
/** TypeScript and Node types for the consumer check; fetched from npm, pinned. */
const TYPESCRIPT = "typescript@6.0.3";
const TYPES_NODE = "@types/node@20.19.43";
const TIMEOUT = 15_000;
const INSTALL_TIMEOUT = 180_000;
const PACKAGE_FILES = [
  "LICENSE",
  "README.md",
  "_grammar.d.ts",
  "_grammar.js",
  "_hpack.d.ts",
  "_hpack.js",
  "_http_cache.d.ts",
  "_http_cache.js",
  "_pushed_conn.d.ts",
  "_pushed_conn.js",
  "_upstream.d.ts",
  "_upstream.js",
  ...[
    "access_log",
    "app",
    "banner",
    "command",
    "errors",
    "flags",
    "headers",
    "proxy",
    "run",
    "server",
    "signals",
    "worker",
    "workers",
  ].flatMap((name) => [`cli/${name}.d.ts`, `cli/${name}.js`]),
  "file_server.d.ts",
  "file_server.js",
  "http2.d.ts",
  "http2.js",
  "main.d.ts",
  "main.js",
  "mod.d.ts",
  "mod.js",
  "package.json",
  "proxy.d.ts",
  "proxy.js",
  "websocket.d.ts",
  "websocket.js",
];

// ─── Processes ─────────────────────────────────────────────────────────────

/** Collects a stream as text, and waits for a pattern to appear in it. */
class Output {
  text = "";
  done: Promise<void>;
  #changed = () => {};

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      try {
        for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
          this.text += chunk;
          this.#changed();
        }
      } catch {
        // The pipe broke: keep what arrived.
      }
      this.#changed();
    })();
  }

  async waitFor(pattern: RegExp, timeout = TIMEOUT): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeout;
    let ended = false;
    this.done.then(() => ended = true);
    while (true) {
      const match = this.text.match(pattern);
      if (match) return match;
      const left = deadline - Date.now();
      if (left <= 0 || ended) {
        throw new Error(`No ${pattern} in the output: ${JSON.stringify(this.text)}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#changed = resolve),
        new Promise<void>((resolve) => timer = setTimeout(resolve, Math.min(left, 100))),
      ]);
      clearTimeout(timer);
    }
  }
}

/** A process started by this script. */
interface Process {
  command: string;
  pid: number;
  /** Whether it leads a process group of its own, to be signalled as a whole. */
  group: boolean;
  stdout: Output;
  stderr: Output;
  status: Promise<Deno.CommandStatus>;
  exited: boolean;
}

/** Every process started here, until it has exited; stopped at the end by {@linkcode stopAll}. */
const processes = new Set<Process>();

interface StartOptions {
  cwd: string;
  /**
   * Starts it as the leader of a new process group. `npx` runs the command
   * through `sh -c`, and npm does not pass SIGTERM on: signalling the group is
   * what a terminal does, and it reaches every process npx started.
   */
  group?: boolean;
}

function start(command: string, args: string[], options: StartOptions): Process {
  const child = new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: { NO_COLOR: "1", npm_config_update_notifier: "false" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: options.group ?? false,
  }).spawn();
  const proc: Process = {
    command: [command, ...args].join(" "),
    pid: child.pid,
    group: options.group ?? false,
    stdout: new Output(child.stdout),
    stderr: new Output(child.stderr),
    status: child.status,
    exited: false,
  };
  processes.add(proc);
  child.status.finally(() => {
    proc.exited = true;
    if (!proc.group) processes.delete(proc);
  });
  return proc;
}

/** Sends a signal to the process, or to its whole group. */
function signal(proc: Process, signo: Deno.Signal): void {
  try {
    Deno.kill(proc.group ? -proc.pid : proc.pid, signo);
  } catch {
    // Already gone.
  }
}

/** Waits for the exit and the end of the output; kills the process after `timeout`. */
async function finish(proc: Process, timeout = TIMEOUT): Promise<Deno.CommandStatus> {
  const timer = setTimeout(() => signal(proc, "SIGKILL"), timeout);
  try {
    const status = await proc.status;
    await Promise.all([proc.stdout.done, proc.stderr.done]);
    return status;
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a command to its end; throws unless it exits 0. */
async function run(
  command: string,
  args: string[],
  options: StartOptions & { timeout?: number },
): Promise<string> {
  const proc = start(command, args, options);
  const status = await finish(proc, options.timeout);
  if (status.code !== 0) {
    throw new Error(
      `${proc.command} exited with ${status.signal ?? status.code}:\n` +
        proc.stdout.text + proc.stderr.text,
    );
  }
  return proc.stdout.text;
}

/** Kills whatever is still running, groups included, and waits for it. */
async function stopAll(): Promise<void> {
  for (const proc of processes) {
    // A group may outlive its leader: npx exits on a signal before brick does.
    signal(proc, "SIGKILL");
    await proc.status.catch(() => {});
  }
  processes.clear();
}

// ─── Checks ────────────────────────────────────────────────────────────────

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

/** Waits until nothing listens on the port any more. */
async function waitClosed(port: number): Promise<void> {
  const deadline = Date.now() + TIMEOUT;
  while (Date.now() < deadline) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`Port ${port} still accepts connections`);
}

async function fetchText(url: string): Promise<string> {
  const response = await fetch(url);
  const text = await response.text();
  check(response.status === 200, `${url} answered ${response.status}: ${text}`);
  return text;
}

async function packAndInstall(dir: string): Promise<{ project: string; version: string }> {
  const { version } = JSON.parse(readFileSync(join(NPM_DIR, "package.json"), "utf8"));
  const packed = JSON.parse(
    await run("npm", ["pack", "--json", "--pack-destination", dir], { cwd: NPM_DIR }),
  )[0] as { filename: string; files: { path: string }[] };
  const files = packed.files.map((file) => file.path).sort();
  check(
    JSON.stringify(files) === JSON.stringify(PACKAGE_FILES),
    `The package holds ${files.join(", ")}; expected ${PACKAGE_FILES.join(", ")}`,
  );
  const project = join(dir, "project");
  Deno.mkdirSync(project);
  writeFileSync(
    join(project, "package.json"),
    JSON.stringify({ name: "brick-consumer", private: true, type: "module" }, null, 2),
  );
  await run(
    "npm",
    ["install", join(dir, packed.filename), "--offline", "--no-audit", "--no-fund"],
    { cwd: project, timeout: INSTALL_TIMEOUT },
  );
  return { project, version };
}

async function checkCliViaNpx(project: string, version: string): Promise<void> {
  const printed = await run("npx", ["--no", "--", "brick", "--version"], { cwd: project });
  check(printed === `brick ${version}\n`, `npx brick --version printed ${JSON.stringify(printed)}`);

  const bad = start("npx", ["--no", "--", "brick", "--nope"], { cwd: project, group: true });
  const status = await finish(bad);
  check(status.code === 2, `npx brick --nope exited with ${status.code}, expected 2`);
  check(
    bad.stderr.text.includes('Unknown flag "--nope"\nUsage: npx --no -- brick [options]'),
    `npx brick --nope printed ${JSON.stringify(bad.stderr.text)}`,
  );

  const brick = start("npx", ["--no", "--", "brick", "--port", "0", "--host", "127.0.0.1"], {
    cwd: project,
    group: true,
  });
  const [, url, port] = await brick.stdout.waitFor(/Local:\s+(http:\/\/127\.0\.0\.1:(\d+)\/)/);
  const text = await fetchText(url + "npx");
  check(text === "Hello, World!", `npx brick answered ${JSON.stringify(text)}`);
  await brick.stdout.waitFor(/"GET \/npx HTTP\/1\.1" 200 13$/m);
  // npm itself dies of the signal (exit 143); brick shuts down gracefully.
  signal(brick, "SIGTERM");
  await brick.stderr.waitFor(/^Shutting down$/m);
  await waitClosed(Number(port));
  await finish(brick);
}

async function checkCliExitCode(project: string): Promise<void> {
  // What `npx brick` runs, and what a global install puts on the PATH.
  const bin = join(project, "node_modules", ".bin", "brick");
  const brick = start(bin, ["--port", "0", "--host", "127.0.0.1"], { cwd: project });
  const [, url] = await brick.stdout.waitFor(/Local:\s+(http:\/\/127\.0\.0\.1:\d+\/)/);
  check(await fetchText(url) === "Hello, World!", "brick answers Hello, World!");
  signal(brick, "SIGTERM");
  const status = await finish(brick);
  check(
    status.code === 0 && brick.stderr.text === "Shutting down\n",
    `brick exited with ${status.signal ?? status.code} after SIGTERM: ${brick.stderr.text}`,
  );
}

async function checkEsmImport(project: string): Promise<void> {
  writeFileSync(
    join(project, "serve.mjs"),
    `import { serve } from "brickhttp";
import { serveDir } from "brickhttp/file-server";
import { upgradeWebSocket } from "brickhttp/websocket";
import { createProxy } from "brickhttp/proxy";
if (
  typeof serveDir !== "function" || typeof upgradeWebSocket !== "function" ||
  typeof createProxy !== "function"
) {
  throw new Error("brickhttp/file-server, brickhttp/websocket or brickhttp/proxy is missing its export");
}

let ready;
const listening = new Promise((resolve) => ready = resolve);
const server = serve({ port: 0, hostname: "127.0.0.1", onListen: ready }, (request, info) => {
  return new Response(\`Hello from \${new URL(request.url).pathname} to \${info.remoteAddr.hostname}\`);
});
const { port } = await listening;
const response = await fetch(\`http://127.0.0.1:\${port}/mjs\`);
console.log(response.status, await response.text());
await server.shutdown();
`,
  );
  // It has to exit by itself: the server leaves nothing running after shutdown().
  const printed = await run("node", ["serve.mjs"], { cwd: project });
  check(
    printed === "200 Hello from /mjs to 127.0.0.1\n",
    `serve.mjs printed ${JSON.stringify(printed)}`,
  );
}

async function checkRequire(project: string, version: string): Promise<void> {
  writeFileSync(
    join(project, "require.cjs"),
    `const brick = require("brickhttp");\nconsole.log(typeof brick.serve, brick.VERSION);\n`,
  );
  const printed = await run("node", ["require.cjs"], { cwd: project });
  check(printed === `function ${version}\n`, `require.cjs printed ${JSON.stringify(printed)}`);
}

const CONSUMER_TS =
  `import { type Handler, type NetAddr, serve, type Server, VERSION } from "brickhttp";

const handler: Handler = async (request, info) => {
  const body: string = request.method === "POST" ? await request.text() : info.remoteAddr.hostname;
  return new Response(body);
};

const server: Server = serve({
  port: 0,
  hostname: "127.0.0.1",
  signal: new AbortController().signal,
  onListen: (addr: NetAddr) => console.log(addr.port),
  readHeaderTimeout: 5_000,
}, handler);
serve(handler);
serve({ handler, maxBodyBytes: 1024 });
const finished: Promise<void> = server.finished;
await server.shutdown();
await server[Symbol.asyncDispose]();
export const version: string = VERSION;
export { finished };

// @ts-expect-error: the port is a number
serve({ port: "8080" }, handler);
// @ts-expect-error: a handler returns a Response
serve(() => "text");
// @ts-expect-error: no such option
serve({ handler, timeout: 5 });
`;

/** Compiler options for each kind of consumer, on top of strict checking. */
const TSCONFIGS: Record<string, Record<string, unknown>> = {
  // Node without @types/node: Request and Response come from the DOM library.
  "tsconfig.json": {
    module: "nodenext",
    target: "es2022",
    lib: ["es2022", "dom"],
    types: [],
  },
  // Node with @types/node and no DOM library.
  "tsconfig.node.json": {
    module: "nodenext",
    target: "es2022",
    lib: ["es2022"],
    types: ["node"],
  },
  // A bundler, or Bun, with the default libraries.
  "tsconfig.bundler.json": {
    module: "esnext",
    moduleResolution: "bundler",
    target: "esnext",
    types: [],
  },
};

async function checkTypes(project: string): Promise<void> {
  await run(
    "npm",
    ["install", "--no-save", "--prefer-offline", "--no-audit", "--no-fund", TYPESCRIPT, TYPES_NODE],
    { cwd: project, timeout: INSTALL_TIMEOUT },
  );
  writeFileSync(join(project, "consumer.ts"), CONSUMER_TS);
  const tsc = join(project, "node_modules", "typescript", "bin", "tsc");
  for (const [name, options] of Object.entries(TSCONFIGS)) {
    const compilerOptions = { ...options, strict: true, noEmit: true, skipLibCheck: false };
    writeFileSync(
      join(project, name),
      JSON.stringify({ compilerOptions, files: ["consumer.ts"] }, null, 2),
    );
    await run("node", [tsc, "-p", name], { cwd: project, timeout: 60_000 });
  }
}

// ─── Main ──────────────────────────────────────────────────────────────────

const STEPS: [string, (project: string, version: string) => Promise<void>][] = [
  ["npx brick: --version, usage, Hello World, SIGTERM", checkCliViaNpx],
  ["brick (the installed bin) exits 0 after SIGTERM", checkCliExitCode],
  ['import { serve } from "brickhttp" serves and fetches', checkEsmImport],
  ['require("brickhttp") gives serve', checkRequire],
  [`tsc (${TYPESCRIPT}) checks a consumer: ${Object.keys(TSCONFIGS).join(", ")}`, checkTypes],
];

/** Runs every step; returns the exit code. */
async function packTest(args: string[]): Promise<number> {
  if (!args.includes("--no-build")) console.log(build());
  const dir = mkdtempSync(join(tmpdir(), "brick-pack-"));
  try {
    const { project, version } = await packAndInstall(dir);
    console.log(`ok   npm pack, npm install --offline: brickhttp@${version}`);
    for (const [name, step] of STEPS) {
      const started = Date.now();
      await step(project, version);
      console.log(`ok   ${name} (${Date.now() - started} ms)`);
    }
    console.log("The npm package works");
    return 0;
  } catch (error) {
    console.error(`FAIL ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) Deno.exit(await packTest(Deno.args));
