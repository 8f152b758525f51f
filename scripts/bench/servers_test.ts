// Tests of the bench's servers: each one, started as the bench starts it, answers every
// scenario it runs as the others do (hello text, a POST body read whole, the static file byte
// for byte with its Content-Length, 404 for a missing file). The Node servers need `node` and,
// for brick, the npm build in npm/; Hono needs the bench's install in its cache directory.
// Bun.serve is left to the bench itself (Bun is fetched with npx there).

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const DIR = fileURLToPath(new URL("./", import.meta.url));
const NPM_BUILD = fileURLToPath(new URL("../../npm/mod.js", import.meta.url));
const HONO_DIR = join(
  process.env.XDG_CACHE_HOME || join(homedir(), ".cache"),
  "brick-bench",
  "node",
);

const hasNode = (() => {
  try {
    execFileSync("node", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

/** A running bench server. */
interface Started {
  port: number;
  stop: () => Promise<void>;
}

/** Starts a server script with the bench's arguments; resolves once it prints its port. */
function startBenchServer(
  command: string[],
  args: string[],
  env: Record<string, string> = {},
): Promise<Started> {
  const child = spawn(command[0], [...command.slice(1), ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    child.kill("SIGTERM");
    await exited;
  };
  let stderr = "";
  child.stderr.on("data", (chunk) => stderr += chunk);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no LISTENING line within 15 s; stderr: ${stderr}`));
    }, 15_000);
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = out.match(/^LISTENING (\d+)$/m);
      if (match) {
        clearTimeout(timer);
        resolve({ port: Number(match[1]), stop });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before listening; stderr: ${stderr}`));
    });
  });
}

/** Starts the server for one scenario, runs `body` against it, stops it. */
async function withBenchServer(
  command: string[],
  args: string[],
  env: Record<string, string>,
  body: (base: string) => Promise<void>,
): Promise<void> {
  const { port, stop } = await startBenchServer(command, args, env);
  try {
    await body(`http://127.0.0.1:${port}`);
  } finally {
    await stop();
  }
}

/** Checks the hello, post and (unless `noStatic`) static scenarios of one server. */
async function checkScenarios(
  command: string[],
  env: Record<string, string> = {},
  noStatic = false,
): Promise<void> {
  await withBenchServer(command, ["--scenario", "hello"], env, async (base) => {
    const response = await fetch(`${base}/`);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "Hello, World!");
  });

  await withBenchServer(command, ["--scenario", "post"], env, async (base) => {
    const body = new Uint8Array(64 * 1024).fill(120);
    const response = await fetch(`${base}/`, { method: "POST", body });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "Hello, World!");
  });

  if (noStatic) return;
  const root = mkdtempSync(join(tmpdir(), "brick-bench-servers-"));
  try {
    const bytes = new Uint8Array(300_000).map((_, i) => (i * 7919) % 251);
    writeFileSync(join(root, "file.bin"), bytes);
    await withBenchServer(command, ["--scenario", "static", "--root", root], env, async (base) => {
      const response = await fetch(`${base}/file.bin`);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-length"), String(bytes.length));
      assert.deepEqual(new Uint8Array(await response.arrayBuffer()), bytes);
      const missing = await fetch(`${base}/missing.bin`);
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** How the test runtime runs a Deno server script. */
function denoScript(name: string): string[] {
  return [process.execPath, "run", "--allow-net", "--allow-read", DIR + name];
}

const onDeno = "Deno" in globalThis;

test(
  "brick_deno.ts answers hello, post and static",
  { skip: !onDeno && "needs Deno" },
  () => checkScenarios(denoScript("brick_deno.ts")),
);

test(
  "deno_serve.ts answers hello, post and static",
  { skip: !onDeno && "needs Deno" },
  () => checkScenarios(denoScript("deno_serve.ts")),
);

test(
  "brick_node.mjs answers hello, post and static on Node",
  { skip: !hasNode ? "node is not on PATH" : !existsSync(NPM_BUILD) && "npm/ is not built" },
  () => checkScenarios(["node", DIR + "brick_node.mjs"]),
);

test(
  "node_http.mjs answers hello, post and static",
  { skip: !hasNode && "node is not on PATH" },
  () => checkScenarios(["node", DIR + "node_http.mjs"]),
);

test(
  "hono_node.mjs answers hello and post",
  {
    skip: !hasNode
      ? "node is not on PATH"
      : !existsSync(join(HONO_DIR, "node_modules", "hono")) && "the bench has not installed Hono",
  },
  () => checkScenarios(["node", DIR + "hono_node.mjs"], { BRICK_BENCH_NODE_DIR: HONO_DIR }, true),
);

test(
  "a bench server refuses an unknown scenario with status 2",
  { skip: !onDeno && "needs Deno" },
  async () => {
    const child = spawn(denoScript("deno_serve.ts")[0], [
      ...denoScript("deno_serve.ts").slice(1),
      "--scenario",
      "nope",
    ], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk) => stderr += chunk);
    const code = await new Promise((resolve) => child.once("exit", resolve));
    assert.equal(code, 2);
    assert.match(stderr, /Unknown scenario "nope"/);
  },
);
