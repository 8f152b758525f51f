/**
 * Preparing a run of `deno task bench` before its first measurement: builds, installs, the
 * static file, what can run here.
 *
 * @module
 */

import { join } from "node:path";
import {
  BENCH_DIR,
  BUILD_TIMEOUT_MS,
  BUN_PACKAGE,
  HONO_PACKAGES,
  INSTALL_TIMEOUT_MS,
  type Options,
  REPO_ROOT,
  SPARE_FILES,
  STATIC_FILE_BYTES,
  STATIC_FILE_NAME,
} from "./_config.ts";
import { commandOutput, fileLimit, outputTail, runBounded } from "./_processes.ts";
import { serversOf } from "./_rounds.ts";
import type { Scenario } from "./_scenarios.ts";
import { type Prepared, type ReadyServer, SkipServer } from "./_servers.ts";

// ─── Preparing the servers ──────────────────────────────────────────────────

/** The bench's cache directory, outside the repository. */
function cacheDir(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") || join(Deno.env.get("HOME") ?? "/tmp", ".cache");
  return join(cache, "brick-bench");
}

/** Modification time of a file in milliseconds, or undefined if it does not exist. */
export async function modifiedAt(path: string): Promise<number | undefined> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/** Whether `file_server.ts`, brick's static file server, exists. */
async function hasFileServer(): Promise<boolean> {
  return await modifiedAt(REPO_ROOT + "file_server.ts") !== undefined;
}

export function brickDenoStaticNote(): string {
  try {
    Deno.statSync(REPO_ROOT + "file_server.ts");
    return "brick on Deno serves the static file with `serveDir` from `file_server.ts`.";
  } catch {
    return "brick on Deno serves the static file with the stream fallback " +
      "(`bench/_file_response.mjs`): `file_server.ts` does not exist yet.";
  }
}

/**
 * Why `npm/` needs a rebuild: a module of the build missing or older than its source (`mod.ts`,
 * `main.ts`, the CLI, and `file_server.ts` once it exists); undefined if it is up to date.
 */
async function staleBuild(): Promise<string | undefined> {
  const sources = ["mod", "main"];
  if (await hasFileServer()) sources.push("file_server");
  for (const name of sources) {
    const built = await modifiedAt(`${REPO_ROOT}npm/${name}.js`);
    const source = await modifiedAt(`${REPO_ROOT}${name}.ts`);
    if (built === undefined) return `npm/${name}.js is missing`;
    if (source !== undefined && built < source) return `npm/${name}.js is older than ${name}.ts`;
  }
  return undefined;
}

/**
 * Runs `deno task build:npm` when `npm/` is stale, unless `--no-build`; returns how the build
 * came to be, for the report. Throws {@linkcode SkipServer} if the build fails.
 */
async function ensureNpmBuild(options: Options): Promise<string> {
  const stale = await staleBuild();
  if (stale === undefined) return "up to date with its sources";
  if (options.noBuild) {
    if (await modifiedAt(REPO_ROOT + "npm/mod.js") === undefined) {
      throw new SkipServer("npm/mod.js is missing and --no-build forbids building it");
    }
    return `as found, with --no-build although ${stale}`;
  }
  console.error(`${stale}: running deno task build:npm`);
  const result = await runBounded(
    [Deno.execPath(), "task", "build:npm"],
    BUILD_TIMEOUT_MS,
    REPO_ROOT,
  );
  if (!result.success) {
    throw new SkipServer(
      `deno task build:npm failed (${result.exit}; --no-build measures npm/ as it is)`,
      outputTail(result.output),
    );
  }
  return "rebuilt by this run";
}

let brickBuild: Promise<Prepared> | undefined;

/**
 * Builds `npm/` if needed and copies its modules (tests left out) into the run's temporary
 * directory, which brick on Node and on Bun import instead (`BRICK_BENCH_NPM_DIR`): every round
 * measures the same build even if `npm/` is rebuilt meanwhile. Done once per run.
 */
export function prepareBrickBuild(tmpDir: string, options: Options): Promise<Prepared> {
  brickBuild ??= (async () => {
    const how = await ensureNpmBuild(options);
    const snapshot = join(tmpDir, "brick-npm");
    await Deno.mkdir(snapshot);
    await Deno.writeTextFile(join(snapshot, "package.json"), '{ "type": "module" }\n');
    await copyModules(join(REPO_ROOT, "npm"), snapshot);
    // The CLI's modules (main.js imports cli/).
    await Deno.mkdir(join(snapshot, "cli"));
    await copyModules(join(REPO_ROOT, "npm", "cli"), join(snapshot, "cli"));
    const serveDir = await modifiedAt(join(snapshot, "file_server.js")) !== undefined;
    return {
      env: { BRICK_BENCH_NPM_DIR: snapshot },
      environment: [`brick on Node and Bun: \`npm/\` from \`deno task build:npm\` (${how})`],
      staticNote: serveDir
        ? "brick on Node and Bun serves the static file with `serveDir` from `file_server.js`."
        : "brick on Node and Bun serves the static file with the stream fallback " +
          "(`bench/_file_response.mjs`): the build has no `file_server.js` yet.",
    };
  })();
  return brickBuild;
}

/** Copies the modules of `from` (tests left out, not its folders) into `to`. */
async function copyModules(from: string, to: string): Promise<void> {
  for await (const entry of Deno.readDir(from)) {
    const isTest = entry.name.endsWith("_test.js") || entry.name.startsWith("_test");
    if (entry.isFile && entry.name.endsWith(".js") && !isTest) {
      await Deno.copyFile(join(from, entry.name), join(to, entry.name));
    }
  }
}

/** Whether every package of {@linkcode HONO_PACKAGES} is installed in `dir` at its version. */
async function honoInstalled(dir: string): Promise<boolean> {
  for (const [name, version] of Object.entries(HONO_PACKAGES)) {
    try {
      const manifest = JSON.parse(
        await Deno.readTextFile(join(dir, "node_modules", name, "package.json")),
      );
      if (manifest.version !== version) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** npm's own error summary lines, without the stack trace it prints after them. */
function npmErrors(output: string): string[] {
  return output.split("\n").filter((line) =>
    line.startsWith("npm error") && !/^npm error\s+at /.test(line)
  );
}

/**
 * Installs `hono` and `@hono/node-server` into the cache directory unless they are there at the
 * pinned versions; skips the Hono rows if npm is missing or the install fails.
 */
export async function prepareHono(): Promise<Prepared> {
  const dir = join(cacheDir(), "node");
  const specs = Object.entries(HONO_PACKAGES).map(([name, version]) => `${name}@${version}`);
  const environment = [`Hono on Node: ${specs.join(", ")} from npm, installed in \`${dir}\``];
  if (await honoInstalled(dir)) return { env: { BRICK_BENCH_NODE_DIR: dir }, environment };

  console.error(`Installing ${specs.join(" ")} into ${dir}`);
  const command = ["npm", "install", "--prefix", dir, "--no-save", "--no-package-lock"];
  command.push("--no-audit", "--no-fund", ...specs);
  let result;
  try {
    await Deno.mkdir(dir, { recursive: true });
    result = await runBounded(command, INSTALL_TIMEOUT_MS);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new SkipServer("npm is not on PATH, so hono and @hono/node-server cannot be installed");
  }
  if (!result.success || !(await honoInstalled(dir))) {
    const errors = npmErrors(result.output);
    const code = errors.find((line) => line.startsWith("npm error code "))?.slice(10);
    throw new SkipServer(
      `npm install ${specs.join(" ")} failed (${result.exit}${code ? `, ${code}` : ""}; ` +
        "no network?)",
      outputTail(errors.length > 0 ? errors.slice(0, 4).join("\n") : result.output, 8),
    );
  }
  return { env: { BRICK_BENCH_NODE_DIR: dir }, environment };
}

let bun: Promise<string> | undefined;

/**
 * The path of the Bun binary, fetched once with `npx -y bun@…`: the servers run it directly,
 * so that their pid is Bun's and not npx's. Throws {@linkcode SkipServer} if it cannot be had.
 */
export function bunPath(): Promise<string> {
  bun ??= (async () => {
    let result;
    try {
      result = await runBounded(
        ["npx", "-y", BUN_PACKAGE, "-e", "console.log(process.execPath)"],
        INSTALL_TIMEOUT_MS,
      );
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      throw new SkipServer(`npx is not on PATH, so ${BUN_PACKAGE} cannot be fetched`);
    }
    const path = result.stdout.trim().split("\n").at(-1) ?? "";
    if (!result.success || !path.startsWith("/")) {
      const errors = npmErrors(result.output);
      throw new SkipServer(
        `npx -y ${BUN_PACKAGE} failed (${result.exit}; no network?)`,
        outputTail(errors.length > 0 ? errors.slice(0, 4).join("\n") : result.output, 8),
      );
    }
    return path;
  })();
  return bun;
}

/**
 * Writes the static scenario's file into the cache directory unless it is there at its size:
 * random bytes, so that no layer gets to skip zeros or compress them.
 */
async function ensureStaticFile(): Promise<string> {
  const dir = join(cacheDir(), "static");
  const path = join(dir, STATIC_FILE_NAME);
  try {
    if ((await Deno.stat(path)).size === STATIC_FILE_BYTES) return dir;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  console.error(`Writing ${STATIC_FILE_BYTES / 1024 ** 2} MiB of random bytes to ${path}`);
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    const chunk = new Uint8Array(1024 * 1024);
    for (let written = 0; written < STATIC_FILE_BYTES; written += chunk.length) {
      for (let i = 0; i < chunk.length; i += 65_536) {
        crypto.getRandomValues(chunk.subarray(i, i + 65_536));
      }
      for (let offset = 0; offset < chunk.length;) {
        offset += await file.write(chunk.subarray(offset));
      }
    }
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
  return dir;
}

const NOTHING_TO_MEASURE = "nothing to measure: none of the selected servers runs the selected " +
  "scenarios (the workers scenario has servers of its own; see --help)";

/** Result of {@linkcode prepareRun}. */
export interface Preparation {
  servers: ReadyServer[];
  /** The scenarios that can run here. */
  scenarios: Scenario[];
  /** Lines for the report's environment list. */
  environment: string[];
  /** How the servers send the static file, one line each. */
  staticNotes: string[];
  /** Why servers or scenarios were left out, one line each. */
  skipped: string[];
  /** Where the static scenario's file is. */
  staticDir: string;
  /** The open-files limit servers and clients get. */
  files: number;
  /** The command starting the idle client, before its options. */
  idleClient: string[];
}

/**
 * Prepares the run before any measurement: checks for Node when Node servers are selected, runs
 * each server's {@linkcode Server.prepare}, writes the static file, checks the open-files limit
 * for the idle scenario, and leaves out (with a note) what cannot run here.
 */
export async function prepareRun(options: Options, tmpDir: string): Promise<Preparation> {
  const preparation: Preparation = {
    servers: [],
    scenarios: [],
    environment: [],
    staticNotes: [],
    skipped: [],
    staticDir: "",
    files: await fileLimit(),
    idleClient: [],
  };
  const skip = (what: string, reason: string, detail = "") => {
    const line = `${what}: skipped, ${reason}`;
    console.error(detail === "" ? line : `${line}\n${detail}`);
    preparation.skipped.push(line);
  };
  const node = (await commandOutput("node", ["--version"]))?.trim();
  if (node !== undefined) preparation.environment.push(`Node: ${node}`);
  // Only the servers that some selected scenario runs: no install for a server left idle.
  const wanted = options.servers.filter((server) =>
    options.scenarios.some((scenario) => serversOf(scenario, [server]).length > 0)
  );
  if (wanted.length === 0) throw new Error(NOTHING_TO_MEASURE);
  for (const server of wanted) {
    if (server.runtime === "node" && node === undefined) {
      skip(server.title, "node is not on PATH");
      continue;
    }
    try {
      const prepared = await server.prepare?.(tmpDir, options) ?? {};
      preparation.servers.push({
        ...server,
        command: prepared.command ?? server.command,
        env: { ...server.env, ...prepared.env },
      });
      preparation.environment.push(...prepared.environment ?? []);
      if (prepared.staticNote) preparation.staticNotes.push(prepared.staticNote);
    } catch (error) {
      if (!(error instanceof SkipServer)) throw error;
      skip(server.title, error.message, error.detail);
    }
  }
  if (preparation.servers.some((server) => server.runtime === "bun")) {
    const version = (await commandOutput(await bunPath(), ["--version"]))?.trim();
    preparation.environment.push(`Bun: ${version} (${BUN_PACKAGE} from npm, run directly)`);
  }
  if (preparation.servers.length === 0) throw new Error("no server can run");

  for (const scenario of options.scenarios) {
    if (serversOf(scenario, preparation.servers).length === 0) {
      skip(`${scenario.name} scenario`, "none of the selected servers that can run here runs it");
      continue;
    }
    if (
      scenario.driver === "h2load" && await commandOutput("h2load", ["--version"]) === undefined
    ) {
      skip(
        `${scenario.name} scenario`,
        "h2load is not installed (e.g. sudo apt-get install -y nghttp2-client)",
      );
      continue;
    }
    if (scenario.name === "static") {
      preparation.staticDir = await ensureStaticFile();
    }
    if (scenario.driver === "idle") {
      const needed = options.idleConnections + SPARE_FILES;
      if (preparation.files < needed) {
        skip(
          "idle scenario",
          `the open-files hard limit is ${preparation.files} (\`ulimit -Hn\`) and ` +
            `${options.idleConnections} connections need ${needed}; raise it or pass ` +
            `--idle-connections ${Math.max(1, preparation.files - SPARE_FILES)}`,
        );
        continue;
      }
      const client = BENCH_DIR + "idle_client.mjs";
      preparation.idleClient = node !== undefined
        ? ["node", client]
        : [Deno.execPath(), "run", "--allow-net", client];
    }
    preparation.scenarios.push(scenario);
  }
  if (preparation.scenarios.length === 0) throw new Error(NOTHING_TO_MEASURE);
  preparation.environment = [...new Set(preparation.environment)];
  preparation.staticNotes = [...new Set(preparation.staticNotes)];
  return preparation;
}
