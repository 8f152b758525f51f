// Tests of the bench's servers: each one, started as the bench starts it, answers every
// scenario it runs as the others do (hello text, a POST body read whole, the static file byte
// for byte with its Content-Length, 404 for a missing file). The servers of the workers
// scenario run the number of workers they are asked for. Every server runs in a process group
// of its own, as in the bench, and each test checks that stopping it leaves none of its
// processes behind. The Node servers need `node` and, for brick, the npm build in npm/; Hono
// needs the bench's install in its cache directory. Bun.serve is left to the bench itself; the
// raw responder runs on Bun too, fetched with npx as the bench does.

import { test } from "../../_test_skips.ts";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { signalGroup, waitForGroupExit } from "./_process_group.ts";
import { within } from "../../_test_utils.ts";

const DIR = fileURLToPath(new URL("./", import.meta.url));
const REPO = fileURLToPath(new URL("../../", import.meta.url));
const NPM_BUILD = fileURLToPath(new URL("../../npm/mod.js", import.meta.url));
const NPM_CLI = fileURLToPath(new URL("../../npm/main.js", import.meta.url));
/** A bench server's line with its port. */
const LISTENING = /^LISTENING (\d+)$/m;
/** The line of brick's banner with its port. */
const BRICK_BANNER = /^\s*Local:\s+http:\/\/127\.0\.0\.1:(\d+)\/$/m;
/** How long a stopped server's workers may take to be gone. */
const GROUP_EXIT_MS = 3_000;
/**
 * How long a server may take to exit after SIGTERM before its group gets SIGKILL, as in the
 * bench. `deno serve --parallel` needs it: a SIGTERM that comes within about a second of its
 * start can leave it running for good (a worker that has not yet registered its own signal
 * listener never stops).
 */
const STOP_TIMEOUT_MS = 5_000;
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
  /** The pid of the server process, which leads its process group. */
  pid: number;
  /** What it has written to stdout so far. */
  stdout: () => string;
  /** What it has written to stderr so far. */
  stderr: () => string;
  /** Resolves with the server process's exit code (null when a signal ended it). */
  exit: Promise<number | null>;
  /**
   * Stops the whole process group and waits for the server to exit; fails if any process of
   * the group is still there {@linkcode GROUP_EXIT_MS} later (it is killed then).
   */
  stop: () => Promise<void>;
}

/**
 * Starts a server in a process group of its own, as the bench does; resolves once it prints
 * the line with its port (`portLine`, the port in group 1).
 */
function startBenchServer(
  command: string[],
  args: string[],
  env: Record<string, string> = {},
  portLine = LISTENING,
): Promise<Started> {
  const child = spawn(command[0], [...command.slice(1), ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const pid = child.pid!;
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const stop = async () => {
    signalGroup(pid, "SIGTERM");
    const timer = setTimeout(() => signalGroup(pid, "SIGKILL"), STOP_TIMEOUT_MS);
    await exited.finally(() => clearTimeout(timer));
    const left = await waitForGroupExit(pid, GROUP_EXIT_MS);
    if (left.length > 0) signalGroup(pid, "SIGKILL");
    assert.deepEqual(left, [], "processes of the server's group were left running");
  };
  let stderr = "";
  child.stderr.on("data", (chunk) => stderr += chunk);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop().catch(() => {});
      reject(new Error(`no LISTENING line within 15 s; stderr: ${stderr}`));
    }, 15_000);
    let out = "";
    let listening = false;
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const match = out.match(portLine);
      if (match && !listening) {
        listening = true;
        clearTimeout(timer);
        const exit = exited;
        resolve({
          port: Number(match[1]),
          pid,
          stdout: () => out,
          stderr: () => stderr,
          exit,
          stop,
        });
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

/** Bun's binary, fetched with npx as the bench fetches it, or undefined where that fails. */
const bunBinary = (() => {
  try {
    return execFileSync("npx", ["-y", "bun@1.3.14", "-e", "console.log(process.execPath)"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 60_000,
    }).trim();
  } catch {
    return undefined;
  }
})();

/** Sends `pieces` one write at a time to `port`; resolves with all it read once the server closes or `ms` passed. */
function rawExchange(
  port: number,
  pieces: string[],
  ms = 2_000,
): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let text = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closed: false });
    }, ms);
    socket.on("data", (chunk) => text += chunk.toString("latin1"));
    socket.on("error", reject);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
    socket.on("connect", async () => {
      for (const piece of pieces) {
        socket.write(piece);
        await new Promise((wait) => setTimeout(wait, 20));
      }
    });
  });
}

/**
 * Checks the raw responder: pipelined heads split anywhere, each answered; POST bodies read
 * whole, whatever they hold; `close` closes.
 */
async function checkRawResponder(command: string[]): Promise<void> {
  const get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  const pipelined = get.repeat(3);
  const { port, stop } = await startBenchServer(command, ["--scenario", "pipeline"]);
  try {
    // Split inside the first head's blank line, and between the second and third heads.
    const cut = get.length - 2;
    const { text } = await rawExchange(port, [pipelined.slice(0, cut), pipelined.slice(cut)], 500);
    const answers = text.split("HTTP/1.1 200 OK\r\n").slice(1);
    assert.equal(answers.length, 3, text);
    for (const answer of answers) {
      assert.match(answer, /content-length: 13\r\n/);
      assert.ok(answer.endsWith("\r\n\r\nHello, World!"), answer);
    }
  } finally {
    await stop();
  }
  const posting = await startBenchServer(command, ["--scenario", "post"]);
  try {
    // The second body holds a blank line, which must not count as a head; the cuts fall inside
    // a Content-Length name, inside each body and between the digits of the second length.
    const posts = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789" +
      "POST / HTTP/1.1\r\nHost: x\r\ncontent-length:  12\r\n\r\nab\r\n\r\ncdefgh" + get;
    const cuts = ["Length", "56789", "2\r\n", "cdef"].map((text) => posts.indexOf(text));
    const pieces = [0, ...cuts].map((start, i) => posts.slice(start, cuts[i]));
    const { text } = await rawExchange(posting.port, pieces, 500);
    assert.equal(text.split("HTTP/1.1 200 OK\r\n").length - 1, 3, text);
  } finally {
    await posting.stop();
  }
  const closing = await startBenchServer(command, ["--scenario", "close"]);
  try {
    const { text, closed } = await rawExchange(closing.port, [get]);
    assert.ok(closed, "the responder closes after answering in the close scenario");
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n[^]*connection: close\r\n\r\nHello, World!$/);
  } finally {
    await closing.stop();
  }
}

test(
  "raw_responder.mjs answers each pipelined request, reads bodies and closes in the close scenario, on Deno",
  { skip: !onDeno && "needs Deno" },
  () => checkRawResponder(denoScript("raw_responder.mjs")),
);

test(
  "raw_responder.mjs answers each pipelined request, reads bodies and closes in the close scenario, on Node",
  { skip: !hasNode && "node is not on PATH" },
  () => checkRawResponder(["node", DIR + "raw_responder.mjs"]),
);

test(
  "raw_responder.mjs answers each pipelined request, reads bodies and closes in the close scenario, on Bun",
  { skip: bunBinary === undefined && "Bun could not be fetched with npx" },
  () => checkRawResponder([bunBinary!, DIR + "raw_responder.mjs"]),
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

/** The pids of a process's children, from `/proc/<pid>/task/<tid>/children`. */
function childPids(pid: number): number[] {
  const tasks = readdirSync(`/proc/${pid}/task`);
  return tasks.flatMap((tid) =>
    readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim().split(/\s+/)
  ).filter((text) => text !== "").map(Number);
}

/**
 * The distinct names (`/proc/<pid>/task/<tid>/comm`) matching `pattern` of a process's threads,
 * sorted. Distinct, as a thread that a named thread starts inherits its name.
 */
function threadNames(pid: number, pattern: RegExp): string[] {
  const names = readdirSync(`/proc/${pid}/task`).map((tid) =>
    readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim()
  );
  return [...new Set(names.filter((name) => pattern.test(name)))].sort();
}

/** Runs `body` against a started server, then stops it (checking that nothing is left). */
async function withStarted(started: Started, body: (base: string) => Promise<void>) {
  try {
    await body(`http://127.0.0.1:${started.port}`);
  } finally {
    await started.stop();
  }
}

/**
 * Sends `count` GET / with `Connection: close` at once, each on a connection of its own (fetch
 * may not send that field, and would keep its connections open), and checks that each gets a
 * 200 with the hello text.
 */
async function helloMany(base: string, count: number): Promise<void> {
  const { port } = new URL(base);
  const responses = await Promise.all(
    Array.from({ length: count }, () =>
      within(
        new Promise<string>((resolve, reject) => {
          const socket = connect(Number(port), "127.0.0.1");
          let text = "";
          socket.setEncoding("latin1");
          socket.on("data", (chunk) => text += chunk);
          socket.on("end", () => resolve(text));
          socket.on("error", reject);
          socket.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        }),
        10_000,
        "a hello response and the close",
      )),
  );
  for (const response of responses) {
    assert.match(response, /^HTTP\/1\.1 200 /);
    assert.equal(response.slice(response.indexOf("\r\n\r\n") + 4), "Hello, World!");
  }
}

test(
  "brick's CLI with --workers 2 on Deno answers hello on the port of its banner",
  { skip: !onDeno && "needs Deno" },
  async () => {
    const command = [process.execPath, "run", "--allow-net", "--allow-read", "--unstable-net"];
    command.push(REPO + "main.ts", "--workers", "2", "--quiet", "--host", "127.0.0.1");
    const started = await startBenchServer(command, ["--port", "0"], {}, BRICK_BANNER);
    await withStarted(started, async (base) => {
      assert.match(started.stdout(), /Workers: 2 threads/);
      // Deno names a Web Worker's thread after its id.
      assert.deepEqual(threadNames(started.pid, /^worker-\d+$/), ["worker-1", "worker-2"]);
      await helloMany(base, 8);
    });
  },
);

test(
  "deno serve --parallel runs deno_serve_app.ts on 2 threads that answer hello",
  { skip: !onDeno && "needs Deno" },
  async () => {
    const command = [process.execPath, "serve", "--parallel", "--allow-net"];
    command.push("--host", "127.0.0.1", "--port", "0", DIR + "deno_serve_app.ts");
    const started = await startBenchServer(
      command,
      [],
      { DENO_JOBS: "2" },
      /^\[serve-worker-\d+ *\] LISTENING (\d+)$/m,
    );
    await withStarted(started, async (base) => {
      await helloMany(base, 8);
      // Worker 0 is the main thread; Deno names the others' threads serve-worker-<n>.
      assert.deepEqual(threadNames(started.pid, /^serve-worker-\d+$/), ["serve-worker-1"]);
    });
  },
);

test(
  "brick's CLI with --workers 2 on Node (npm/main.js) answers hello from 2 worker processes",
  { skip: !hasNode ? "node is not on PATH" : !existsSync(NPM_CLI) && "npm/ is not built" },
  async () => {
    const command = ["node", NPM_CLI, "--workers", "2", "--quiet", "--host", "127.0.0.1"];
    const started = await startBenchServer(command, ["--port", "0"], {}, BRICK_BANNER);
    await withStarted(started, async (base) => {
      const workers = childPids(started.pid);
      assert.equal(workers.length, 2);
      assert.match(
        started.stdout(),
        new RegExp(`Workers: 2 processes \\(pids ${workers.join(", ")}\\)`),
      );
      await helloMany(base, 8);
    });
  },
);

test(
  "node_cluster.mjs answers hello and post from WORKERS worker processes",
  { skip: !hasNode && "node is not on PATH" },
  async () => {
    const command = ["node", DIR + "node_cluster.mjs"];
    for (const workers of [2, 3]) {
      const env = { WORKERS: String(workers) };
      const started = await startBenchServer(command, ["--scenario", "workers"], env);
      await withStarted(started, async (base) => {
        assert.equal(childPids(started.pid).length, workers);
        await helloMany(base, 8);
      });
    }
    await withBenchServer(command, ["--scenario", "post"], {}, async (base) => {
      const body = new Uint8Array(64 * 1024).fill(120);
      const response = await fetch(`${base}/`, { method: "POST", body });
      assert.equal(await response.text(), "Hello, World!");
    });
  },
);

test(
  "node_cluster.mjs stops with status 1 when a worker dies, taking the other with it",
  { skip: !hasNode && "node is not on PATH" },
  async () => {
    const command = ["node", DIR + "node_cluster.mjs"];
    const started = await startBenchServer(command, ["--scenario", "workers"], { WORKERS: "2" });
    const [first] = childPids(started.pid);
    process.kill(first, "SIGKILL");
    assert.equal(await within(started.exit, 10_000, "the primary's exit"), 1);
    assert.match(started.stderr(), /worker \d+ ended \(SIGKILL\); stopping the others/);
    await started.stop();
  },
);

test(
  "node_cluster.mjs refuses the static scenario and a bad WORKERS with status 2",
  { skip: !hasNode && "node is not on PATH" },
  async () => {
    const run = (args: string[], env: Record<string, string>) => {
      const child = spawn("node", [DIR + "node_cluster.mjs", ...args], {
        env: { ...process.env, ...env },
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (chunk) => stderr += chunk);
      return new Promise<[number | null, string]>((resolve) =>
        child.once("exit", (code) => resolve([code, stderr]))
      );
    };
    const [staticCode, staticError] = await run(["--scenario", "static", "--root", "/tmp"], {});
    assert.equal(staticCode, 2);
    assert.match(staticError, /does not serve files/);
    const [countCode, countError] = await run(["--scenario", "workers"], { WORKERS: "0" });
    assert.equal(countCode, 2);
    assert.match(countError, /WORKERS must be a whole number from 1 to 64, got "0"/);
  },
);
