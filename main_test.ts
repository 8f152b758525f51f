// Tests for the brick CLI: each one runs the CLI as a child process on
// 127.0.0.1 with port 0 and talks to it over real sockets.
//
// The suite runs on the runtime that runs it, against the CLI beside it: on
// Deno, `deno test -A main_test.ts` runs main.ts with `deno run`; on Node,
// `node --test npm/main_test.js` runs the npm build's main.js with node.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import { extname, join } from "node:path";
import process from "node:process";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { chromiumPath, dumpDom } from "./_test_browser.ts";
import { makeTestCertificates, opensslMissing, type TestCertificates } from "./_test_tls.ts";
import {
  CliError,
  formatAccessLog,
  formatBanner,
  formatClfDate,
  handlerFromModule,
  parseFlags,
  UsageError,
} from "./main.ts";

/** Deno's API when the tests run on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;

/** The CLI beside this file: main.ts in the source, main.js in the npm build. */
const MAIN = fileURLToPath(new URL(`./main${extname(import.meta.url)}`, import.meta.url));
/** The version, from deno.json beside the source or the npm build's package.json. */
const VERSION = readVersion();
/** How the usage line names the command on this runtime. */
const COMMAND = deno ? "deno run --allow-net --allow-read main.ts" : "brick";
/** The usage line, as printed under a flag error. */
const USAGE = `Usage: ${COMMAND} [options] [<app module> | <folder>]`;
/** Which runtime runs the tests, for skip reasons. */
const RUNTIME = deno
  ? "Deno"
  : typeof (process.versions as { bun?: string }).bun === "string"
  ? "Bun"
  : "Node";
/** Deno's permissions for a CLI that serves files. */
const READ = ["--allow-net", "--allow-read"];
/** The fixtures: app modules and a small site. The npm build copies them to npm/testdata/. */
const TESTDATA = fileURLToPath(new URL("./testdata/", import.meta.url));
const APPS = join(TESTDATA, "apps");
const SITE = join(TESTDATA, "site");
/** Why the fixture tests cannot run here, or false when they can. */
const NO_TESTDATA = existsSync(TESTDATA)
  ? false
  : `${TESTDATA} is missing: the npm build does not copy testdata/ yet`;
/** Why the Hono tests cannot run here, or false when they can. */
const NO_HONO = NO_TESTDATA || honoMissing();
const TIMEOUT = 10_000;
const CLF_LINE =
  /^127\.0\.0\.1 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "(.*)" (\d{3}) (\d+|-)$/m;

/**
 * Why the fixtures cannot import `hono`, or false when they can: on Deno
 * through deno.json's import map, on Node and Bun from the npm build's
 * node_modules.
 */
function honoMissing(): string | false {
  if (deno) return false;
  try {
    import.meta.resolve("hono");
    return false;
  } catch {
    return "hono cannot be resolved beside the tests: the npm build does not install it yet";
  }
}

function readVersion(): string {
  for (const name of ["deno.json", "package.json"]) {
    const url = new URL(name, import.meta.url);
    if (existsSync(url)) return JSON.parse(readFileSync(url, "utf8")).version;
  }
  throw new Error("No deno.json or package.json beside main_test");
}

/** How to run the CLI besides its arguments. */
interface RunOptions {
  /** Deno's permission flags; Node and Bun have none and ignore them. */
  permissions?: string[];
  /**
   * On Deno, use the project's deno.json (without its lock file), whose
   * import map resolves `hono` for the app fixtures. Otherwise `--no-config`.
   */
  config?: boolean;
}

/** The command line that runs the CLI on the current runtime. */
function brickCommand(args: string[], options: RunOptions): [string, string[]] {
  const { permissions = ["--allow-net"], config = false } = options;
  if (deno) {
    const configFlags = config
      ? ["--config", fileURLToPath(new URL("./deno.json", import.meta.url)), "--no-lock"]
      : ["--no-config"];
    return [deno.execPath(), ["run", ...configFlags, ...permissions, MAIN, ...args]];
  }
  return [process.execPath, [MAIN, ...args]];
}

/** Collects a child's output as text, and waits for a pattern to appear in it. */
class Output {
  text = "";
  done: Promise<void>;
  #changed = () => {};

  constructor(stream: AsyncIterable<Uint8Array>) {
    this.done = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of stream) {
          this.text += decoder.decode(chunk, { stream: true });
          this.#changed();
        }
      } catch {
        // The pipe broke: keep what arrived.
      }
      this.text += decoder.decode();
    })();
  }

  async waitFor(pattern: RegExp, timeout = TIMEOUT): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeout;
    while (true) {
      const match = this.text.match(pattern);
      if (match) return match;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`Timed out waiting for ${pattern} in ${JSON.stringify(this.text)}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#changed = resolve),
        this.done,
        new Promise<void>((resolve) => timer = setTimeout(resolve, Math.min(left, 100))),
      ]);
      clearTimeout(timer);
    }
  }
}

/** How a child process ended. */
interface ExitStatus {
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal that ended it, if one did. */
  signal: string | null;
}

/** A child process with piped output, whichever runtime started it. */
interface Child {
  stdout: AsyncIterable<Uint8Array>;
  stderr: AsyncIterable<Uint8Array>;
  status: Promise<ExitStatus>;
  kill(signal: "SIGINT" | "SIGTERM" | "SIGKILL"): void;
}

/**
 * Spawns a child with stdin closed and stdout and stderr piped. On Deno this
 * uses `Deno.Command`: Deno's `node:child_process` gives a spawned `deno`
 * every permission (which the permission tests must not have), and reports a
 * child that handled SIGTERM and exited as if the signal had killed it.
 */
function spawnChild(command: string, args: string[], env: Record<string, string>): Child {
  if (deno) {
    const child = new deno.Command(command, {
      args,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return {
      stdout: child.stdout,
      stderr: child.stderr,
      status: child.status.then(({ code, signal }) => ({ code: signal ? null : code, signal })),
      kill: (signal) => child.kill(signal),
    };
  }
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env });
  return {
    stdout: child.stdout!,
    stderr: child.stderr!,
    status: new Promise((resolve, reject) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", reject);
    }),
    kill: (signal) => child.kill(signal),
  };
}

interface Brick {
  stdout: Output;
  stderr: Output;
  /** Sends a signal to the process. */
  kill(signal: "SIGINT" | "SIGTERM"): void;
  /** Waits for the exit, killing the process first if it runs past the timeout. */
  exit(timeout?: number): Promise<ExitStatus>;
  /** Kills the process if it still runs and waits until its output is drained. */
  close(): Promise<void>;
}

/** Runs the CLI with `args`, on Deno with the given permission flags and config. */
function spawnBrick(args: string[], options: RunOptions = {}): Brick {
  const [command, commandArgs] = brickCommand(args, options);
  // Without npx in the environment, the usage line names the command `brick`.
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && name !== "npm_command") env[name] = value;
  }
  env.NO_COLOR = "1";
  const child = spawnChild(command, commandArgs, env);
  const stdout = new Output(child.stdout);
  const stderr = new Output(child.stderr);
  let exited = false;
  const status = child.status.finally(() => exited = true);
  const kill = () => {
    if (exited) return;
    try {
      child.kill("SIGKILL");
    } catch {
      // It exited in the meantime.
    }
  };
  return {
    stdout,
    stderr,
    kill: (signal) => child.kill(signal),
    async exit(timeout = TIMEOUT) {
      const timer = setTimeout(kill, timeout);
      try {
        return await status;
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      kill();
      await status.catch(() => {});
      await Promise.all([stdout.done, stderr.done]);
    },
  };
}

/** Runs brick until it exits by itself and returns its exit code and output. */
async function runBrick(args: string[], options?: RunOptions) {
  const brick = spawnBrick(args, options);
  try {
    const status = await brick.exit();
    await Promise.all([brick.stdout.done, brick.stderr.done]);
    return { code: status.code, stdout: brick.stdout.text, stderr: brick.stderr.text };
  } finally {
    await brick.close();
  }
}

/** Starts brick on 127.0.0.1 with a free port and returns the base URL from its banner. */
async function startBrick(args: string[] = [], options?: RunOptions) {
  const brick = spawnBrick(["--port", "0", "--host", "127.0.0.1", ...args], options);
  try {
    const [, url, port] = await brick.stdout.waitFor(/Local:\s+(https?:\/\/127\.0\.0\.1:(\d+)\/)/);
    return { brick, url, port: Number(port) };
  } catch (error) {
    await brick.close();
    throw new Error(`brick did not start: ${brick.stderr.text}`, { cause: error });
  }
}

/** A raw TCP connection to brick; `using` closes it. */
interface Client extends Disposable {
  /** Everything received on the connection so far. */
  received: Received;
  /** Sends `text` as UTF-8 and resolves once it is handed to the system. */
  write(text: string): Promise<void>;
  /** Sends FIN: no more bytes from the client, while it still reads. */
  closeWrite(): void;
}

/** Opens a TCP connection to brick on 127.0.0.1. */
function connect(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve({
        received: new Received(socket),
        write: (text) =>
          new Promise((resolve, reject) => {
            socket.write(new TextEncoder().encode(text), (error) => {
              if (error) reject(error);
              else resolve();
            });
          }),
        closeWrite: () => socket.end(),
        [Symbol.dispose]: () => socket.destroy(),
      });
    });
  });
}

/** Reads everything a connection receives into one growing buffer. */
class Received {
  bytes = new Uint8Array(0);
  done: Promise<void>;
  #changed = () => {};

  constructor(socket: net.Socket) {
    this.done = new Promise((resolve) => {
      socket.on("data", (chunk: Uint8Array) => {
        const grown = new Uint8Array(this.bytes.length + chunk.length);
        grown.set(this.bytes);
        grown.set(chunk, this.bytes.length);
        this.bytes = grown;
        this.#changed();
      });
      const ended = () => {
        resolve();
        this.#changed();
      };
      socket.once("end", ended);
      socket.once("close", ended);
      // A reset ends the connection like a close does.
      socket.on("error", () => {});
    });
  }

  get text(): string {
    return new TextDecoder().decode(this.bytes);
  }

  /** Waits until `count` complete responses with a Content-Length have arrived. */
  async responses(count: number, timeout = TIMEOUT): Promise<RawResponse[]> {
    const deadline = Date.now() + timeout;
    let ended = false;
    this.done.then(() => ended = true);
    while (true) {
      const responses = parseResponses(this.text);
      if (responses.length >= count) return responses;
      if (ended) throw new Error(`Connection closed after ${JSON.stringify(this.text)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`Timed out, received ${JSON.stringify(this.text)}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#changed = resolve),
        new Promise<void>((resolve) => timer = setTimeout(resolve, Math.min(left, 100))),
      ]);
      clearTimeout(timer);
    }
  }
}

interface RawResponse {
  statusLine: string;
  headers: Map<string, string>;
  body: string;
}

/** Splits complete Content-Length framed responses off the front of `text`. */
function parseResponses(text: string): RawResponse[] {
  const responses: RawResponse[] = [];
  while (true) {
    const end = text.indexOf("\r\n\r\n");
    if (end === -1) return responses;
    const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
    const headers = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(":");
      headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
    }
    const length = Number(headers.get("content-length") ?? NaN);
    if (!Number.isInteger(length)) throw new Error(`No Content-Length in ${JSON.stringify(text)}`);
    if (text.length < end + 4 + length) return responses;
    responses.push({ statusLine, headers, body: text.slice(end + 4, end + 4 + length) });
    text = text.slice(end + 4 + length);
  }
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const DEFAULT_FLAGS = {
  port: 8888,
  host: "0.0.0.0",
  cert: undefined,
  key: undefined,
  unix: undefined,
  workers: 1,
  debugWorker: false,
  app: undefined,
  root: undefined,
  path: undefined,
  dotfiles: false,
  listing: true,
  compress: true,
  cors: false,
  headers: [],
  verbose: false,
  quiet: false,
  help: false,
  version: false,
};

test("parseFlags() reads long and short flags and applies the defaults", () => {
  assert.deepEqual(parseFlags([]), DEFAULT_FLAGS);
  assert.deepEqual(parseFlags(["-p", "0", "-H", "127.0.0.1", "-vq"]), {
    ...DEFAULT_FLAGS,
    port: 0,
    host: "127.0.0.1",
    verbose: true,
    quiet: true,
  });
  assert.equal(parseFlags(["--port=65535"]).port, 65535);
  assert.equal(parseFlags(["-p8080"]).port, 8080);
});

test("parseFlags() rejects bad ports, unknown flags and stray arguments", () => {
  const cases: [string[], string][] = [
    [["--port", "abc"], 'Invalid port "abc": expected a number from 0 to 65535'],
    [["--port", "-1"], 'Invalid port "-1": expected a number from 0 to 65535'],
    [["--port", "65536"], 'Invalid port "65536": expected a number from 0 to 65535'],
    [["--port", "80.5"], 'Invalid port "80.5": expected a number from 0 to 65535'],
    [["--port="], 'Invalid port "": expected a number from 0 to 65535'],
    [["--port"], 'Missing value for "--port"'],
    [["--port", "--quiet"], 'Missing value for "--port"'],
    [["--nope"], 'Unknown flag "--nope"'],
    [["-x"], 'Unknown flag "-x"'],
    [["--quiet=yes"], 'Flag "--quiet" takes no value'],
    [
      ["app.ts", "public"],
      'Unexpected argument "public": brick serves one app module or one folder',
    ],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseFlags(args), (error) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.message, message, `for ${JSON.stringify(args)}`);
      return true;
    });
  }
});

test("formatAccessLog() writes Common Log Format with '-' for an unknown size", () => {
  const date = new Date(2026, 10, 21, 10, 0, 0);
  const base = { remoteAddr: "127.0.0.1", date, requestLine: "GET /a?b=c HTTP/1.1", status: 200 };
  const stamp = formatClfDate(date);
  assert.match(stamp, /^21\/Nov\/2026:10:00:00 [+-]\d{4}$/);
  assert.equal(
    formatAccessLog({ ...base, bytes: 13 }),
    `127.0.0.1 - - [${stamp}] "GET /a?b=c HTTP/1.1" 200 13`,
  );
  assert.equal(
    formatAccessLog({ ...base, bytes: undefined }),
    `127.0.0.1 - - [${stamp}] "GET /a?b=c HTTP/1.1" 200 -`,
  );
  assert.equal(
    formatAccessLog({ ...base, requestLine: 'GET /"\x1b[2J HTTP/1.1', bytes: 0 }),
    `127.0.0.1 - - [${stamp}] "GET /\\"\\x1b[2J HTTP/1.1" 200 0`,
  );
});

test("formatBanner() lists Network URLs only when listening on all interfaces", () => {
  const networkAddresses = ["192.168.1.5", "10.0.0.2"];
  assert.equal(
    formatBanner({ host: "0.0.0.0", port: 8888, networkAddresses, color: false }),
    `brick ${VERSION} is listening\n` +
      "  Local:   http://localhost:8888/\n" +
      "  Network: http://192.168.1.5:8888/\n" +
      "  Network: http://10.0.0.2:8888/\n" +
      "Press Ctrl+C to stop",
  );
  const local = formatBanner({ host: "127.0.0.1", port: 80, networkAddresses, color: false });
  assert.match(local, /Local: {3}http:\/\/127\.0\.0\.1:80\//);
  assert.doesNotMatch(local, /Network/);
  assert.ok(!local.includes("\x1b"), "no colour codes");
  const colored = formatBanner({ host: "::1", port: 1, networkAddresses, color: true });
  assert.ok(colored.includes("\x1b["), "colour codes");
  assert.match(colored, /http:\/\/\[::1\]:/);
});

test("brick CLI serves Hello, World! and prints the real port in the banner", async () => {
  const { brick, url, port } = await startBrick();
  try {
    assert.ok(port > 0, `the banner shows port ${port}`);
    const response = await fetch(url + "any/path?x=1");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(await response.text(), "Hello, World!");
    assert.match(brick.stdout.text, new RegExp(`^brick ${VERSION} is listening\n`));
  } finally {
    await brick.close();
  }
});

test("brick CLI shows only the Local URL with --host 127.0.0.1, even with --allow-sys", async () => {
  const { brick } = await startBrick([], { permissions: ["--allow-net", "--allow-sys"] });
  try {
    assert.doesNotMatch(brick.stdout.text, /Network:/);
  } finally {
    await brick.close();
  }
});

test("brick CLI prints 'brick <version>' for --version and -V", async () => {
  for (const flag of ["--version", "-V"]) {
    const { code, stdout } = await runBrick([flag]);
    assert.equal(code, 0);
    assert.equal(stdout, `brick ${VERSION}\n`);
  }
});

test("brick CLI prints the usage line and aligned options for --help", async () => {
  const { code, stdout: text } = await runBrick(["-h"]);
  assert.equal(code, 0);
  assert.match(text, new RegExp(`^Usage: ${escapeRegExp(COMMAND)} \\[`, "m"));
  const options = text.split("\n").filter((line) => /^ {2}(?:-\w, | {4})--/.test(line));
  assert.deepEqual(
    options.map((line) => line.match(/--([\w-]+)/)![1]),
    [
      ...["port", "host", "cert", "key", "unix", "workers", "app", "root", "dotfiles"],
      ...["no-listing", "no-compress", "cors", "header", "verbose", "quiet", "help", "version"],
    ],
  );
  const columns = options.map((line) => line.search(/(?<=\S {2,})\S/));
  assert.equal(new Set(columns).size, 1, `descriptions start in one column:\n${text}`);
  assert.match(text, /^Examples:$/m);
  assert.ok(text.includes(`  ${COMMAND} ./public --port 8080 --host 127.0.0.1 --cors\n`), text);
  assert.doesNotMatch(text, /debug-worker/, "the debugging flag stays out of the help");
  const wide = text.split("\n").filter((line) => line.length > 100);
  assert.deepEqual(wide, [], "every line fits 100 columns");
});

test("brick CLI exits 2 with the usage line on an unknown flag", async () => {
  const { code, stderr } = await runBrick(["--nope"]);
  assert.equal(code, 2);
  const [error, usage] = stderr.split("\n");
  assert.equal(error, 'Unknown flag "--nope"');
  assert.equal(usage, USAGE);
});

test("brick CLI exits 2 with the usage line on a bad port", async () => {
  for (const port of ["abc", "-1", "65536"]) {
    const { code, stderr } = await runBrick(["--port", port]);
    assert.equal(code, 2, `for --port ${port}`);
    const [error, usage] = stderr.split("\n");
    assert.equal(error, `Invalid port "${port}": expected a number from 0 to 65535`);
    assert.match(usage, /^Usage: /);
  }
});

test("brick CLI exits 1 with 'address already in use' when the port is taken", async () => {
  const listener = net.createServer();
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen({ host: "127.0.0.1", port: 0 }, resolve);
  });
  const { port } = listener.address() as net.AddressInfo;
  try {
    const { code, stderr } = await runBrick(["--host", "127.0.0.1", "--port", String(port)]);
    assert.equal(code, 1);
    assert.equal(
      stderr,
      `Cannot listen on 127.0.0.1:${port}: address already in use (try --port ${port + 1})\n`,
    );
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
});

test("brick CLI exits 1 with the command to run when --allow-net is missing", {
  skip: deno ? false : "Deno only: Node and Bun have no permissions",
}, async () => {
  const { code, stderr } = await runBrick(["--host", "127.0.0.1", "--port", "0"], {
    permissions: [],
  });
  assert.equal(code, 1);
  assert.equal(
    stderr,
    "Cannot listen on 127.0.0.1:0: network access is not allowed\n" +
      "Run it with network access instead: " +
      "deno run --allow-net main.ts --host 127.0.0.1 --port 0\n",
  );
});

test("brick CLI shuts down gracefully and exits 0 on SIGTERM and SIGINT", async () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const { brick, url } = await startBrick();
    try {
      await (await fetch(url)).text();
      brick.kill(signal);
      const status = await brick.exit();
      await brick.stderr.done;
      assert.equal(status.code, 0, `after ${signal}: ${brick.stderr.text}`);
      assert.equal(brick.stderr.text, "Shutting down\n");
    } finally {
      await brick.close();
    }
  }
});

test("brick CLI exits 130 at once on a second SIGINT while a request is unfinished", async () => {
  const { brick, port } = await startBrick();
  try {
    using conn = await connect(port);
    const { received } = conn;
    await conn.write("GET / HTTP/1.1\r\n");
    await delay(100);
    brick.kill("SIGINT");
    await brick.stderr.waitFor(/Shutting down\n/);
    await delay(100);
    const started = Date.now();
    brick.kill("SIGINT");
    const status = await brick.exit();
    assert.equal(status.code, 130);
    assert.ok(Date.now() - started < 2000, "the second SIGINT does not wait for the request");
    await brick.stderr.done;
    assert.equal(brick.stderr.text, "Shutting down\nForcing exit\n");
    await received.done;
  } finally {
    await brick.close();
  }
});

test("brick CLI writes one Common Log Format line per request", async () => {
  const { brick, url } = await startBrick();
  try {
    await (await fetch(url + "path/to?x=1&y=%20z")).text();
    const match = await brick.stdout.waitFor(CLF_LINE);
    assert.equal(match[1], "GET /path/to?x=1&y=%20z HTTP/1.1");
    assert.equal(match[2], "200");
    assert.equal(match[3], "13");
    await (await fetch(url + "second", { method: "POST", body: "data" })).text();
    await brick.stdout.waitFor(/"POST \/second HTTP\/1\.1" 200 13$/m);
  } finally {
    await brick.close();
  }
});

test("brick CLI logs the request line as received, with its HTTP version", async () => {
  const { brick, port } = await startBrick();
  try {
    for (
      const [head, line] of [
        ["GET /old?x=1 HTTP/1.0\r\n\r\n", '"GET /old?x=1 HTTP/1.0" 200 13'],
        [
          "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
          '"OPTIONS * HTTP/1.1" 200 13',
        ],
      ]
    ) {
      using conn = await connect(port);
      const { received } = conn;
      await conn.write(head);
      await received.responses(1);
      await received.done;
      const match = await brick.stdout.waitFor(new RegExp(`.*${escapeRegExp(line)}$`, "m"));
      assert.match(match[0], CLF_LINE);
    }
  } finally {
    await brick.close();
  }
});

test("brick CLI prints no access log with --quiet", async () => {
  const { brick, url } = await startBrick(["--quiet"]);
  try {
    await (await fetch(url + "quiet")).text();
    brick.kill("SIGTERM");
    assert.equal((await brick.exit()).code, 0);
    await brick.stdout.done;
    assert.doesNotMatch(brick.stdout.text, /quiet|HTTP\/1\.1/);
  } finally {
    await brick.close();
  }
});

test("brick CLI prints each raw request head as received with --verbose", async () => {
  const { brick, port } = await startBrick(["--verbose"]);
  try {
    using conn = await connect(port);
    const { received } = conn;
    const head = "GET /verbose?q=1 HTTP/1.1\r\nHost: example\r\nX-Trace:  MiXeD case \r\n\r\n";
    await conn.write(head);
    await received.responses(1);
    await brick.stdout.waitFor(/"GET \/verbose\?q=1 HTTP\/1\.1" 200 13$/m);
    assert.ok(
      brick.stdout.text.includes(head),
      `the head appears verbatim in ${JSON.stringify(brick.stdout.text)}`,
    );
    conn.closeWrite();
    await received.done;
  } finally {
    await brick.close();
  }
});

test("brick CLI answers a request typed line by line and keeps the connection open", async () => {
  const { brick, port } = await startBrick();
  try {
    using conn = await connect(port);
    const { received } = conn;
    const type = (line: string) => conn.write(line + "\r\n");
    for (const line of ["GET / HTTP/1.1", "Host: x"]) {
      await type(line);
      await delay(300);
      assert.equal(received.bytes.length, 0, `no answer before the blank line, after "${line}"`);
    }
    await type("");
    const [first] = await received.responses(1);
    assert.equal(first.statusLine, "HTTP/1.1 200 OK");
    assert.equal(first.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(first.headers.get("content-length"), "13");
    assert.equal(first.body, "Hello, World!");
    assert.notEqual(first.headers.get("connection")?.toLowerCase(), "close");

    await delay(300);
    for (const line of ["GET /again HTTP/1.1", "Host: x", ""]) {
      await type(line);
      await delay(100);
    }
    const [, second] = await received.responses(2);
    assert.equal(second.statusLine, "HTTP/1.1 200 OK");
    assert.equal(second.body, "Hello, World!");
    conn.closeWrite();
    await received.done;
  } finally {
    await brick.close();
  }
});

// ─── Apps and folders ───────────────────────────────────────────────────────

/** Writes `files` into a fresh temporary folder, runs `body` with its path, and removes it. */
async function withTempDir<T>(
  files: Record<string, string>,
  body: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "brick-main-test-"));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    return await body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs curl, bounded by its own --max-time, and returns its exit code and output. */
async function curl(args: string[]) {
  const child = spawnChild("curl", ["--silent", "--show-error", "--max-time", "10", ...args], {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
  });
  const stdout = new Output(child.stdout);
  const stderr = new Output(child.stderr);
  const status = await child.status;
  await Promise.all([stdout.done, stderr.done]);
  return { code: status.code, stdout: stdout.text, stderr: stderr.text };
}

/** Reads `reader` until the text read so far matches `pattern`, or fails after `timeout`. */
async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pattern: RegExp,
  timeout = TIMEOUT,
): Promise<string> {
  const decoder = new TextDecoder();
  const deadline = Date.now() + timeout;
  let text = "";
  while (!pattern.test(text)) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
    });
    const result = await Promise.race([reader.read(), timedOut]);
    clearTimeout(timer);
    if (result === "timeout") throw new Error(`Timed out waiting for ${pattern} in "${text}"`);
    if (result.done) throw new Error(`The body ended before ${pattern}: "${text}"`);
    text += decoder.decode(result.value, { stream: true });
  }
  return text;
}

const APP_EXAMPLE =
  'Export a fetch handler: export default { fetch(request) { return new Response("Hi") } }';

test("parseFlags() reads the path, --app, --root and the response flags", () => {
  const args = ["public", "--cors", "--dotfiles", "--no-listing", "--no-compress"];
  const headers = ["--header", "Cache-Control: no-store", "--header=X-Empty:"];
  assert.deepEqual(parseFlags([...args, ...headers, "--header", "X-Padded:\t a  b \t"]), {
    ...DEFAULT_FLAGS,
    path: "public",
    cors: true,
    dotfiles: true,
    listing: false,
    compress: false,
    headers: [["Cache-Control", "no-store"], ["X-Empty", ""], ["X-Padded", "a  b"]],
  });
  assert.equal(parseFlags(["--app", "app.ts"]).app, "app.ts");
  assert.equal(parseFlags(["--root=site"]).root, "site");
  assert.equal(parseFlags(["--", "-odd.mjs"]).path, "-odd.mjs");
});

test("parseFlags() rejects a malformed --header, naming it", () => {
  const badName = "the name must be letters, digits and !#$%&'*+-.^_`|~, with no spaces";
  const cases: [string, string][] = [
    ["Cache-Control no-store", 'Invalid header "Cache-Control no-store": expected "Name: value"'],
    ["Bad Name: x", `Invalid header "Bad Name: x": ${badName}`],
    [": x", `Invalid header ": x": ${badName}`],
    [
      "X-Bell: a\x07b",
      'Invalid header "X-Bell: a\\u0007b": the value must not contain control characters',
    ],
  ];
  for (const [value, message] of cases) {
    assert.throws(() => parseFlags(["--header", value]), (error) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.message, message);
      return true;
    });
  }
});

test("parseFlags() rejects two things to serve at once, such as --app with --root", () => {
  const one = "brick serves one app module or one folder";
  const cases: [string[], string][] = [
    [
      ["--app", "app.ts", "--root", "public"],
      `Cannot serve --app "app.ts" and --root "public" at once: ${one}`,
    ],
    [["site", "--app", "app.ts"], `Cannot serve "site" and --app "app.ts" at once: ${one}`],
    [["--root", "a", "b"], `Cannot serve "b" and --root "a" at once: ${one}`],
    [["--root", ""], 'Missing value for "--root"'],
    [["--app"], 'Missing value for "--app"'],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseFlags(args), (error) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.message, message, `for ${JSON.stringify(args)}`);
      return true;
    });
  }
});

test("handlerFromModule() serves a default function, or a { fetch } object as `this`", async () => {
  const info = {
    remoteAddr: { hostname: "127.0.0.1", port: 1, transport: "tcp" as const },
    completed: Promise.resolve(),
  };
  const request = () => new Request("http://localhost/path");
  const plain = handlerFromModule({ default: (r: Request) => new Response(r.method) }, "a.mjs");
  assert.equal(await (await plain(request(), info)).text(), "GET");
  const app = {
    greeting: "Hi",
    fetch(this: { greeting: string }, r: Request) {
      return new Response(`${this.greeting} at ${new URL(r.url).pathname}`);
    },
  };
  const object = handlerFromModule({ default: app }, "b.mjs");
  assert.equal(await (await object(request(), info)).text(), "Hi at /path");
});

test("handlerFromModule() names what it found instead of a fetch handler", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{}, `it has no default export (it exports nothing)\n${APP_EXAMPLE}`],
    [{ foo: 1, bar: 2 }, `it has no default export (its exports: foo, bar)\n${APP_EXAMPLE}`],
    [
      { fetch: () => new Response() },
      "it has no default export (its exports: fetch)\n" +
      "Export its fetch function as the default: export default { fetch }",
    ],
    [{ default: "hello" }, `its default export is a string, not a fetch handler\n${APP_EXAMPLE}`],
    [{ default: null }, `its default export is null, not a fetch handler\n${APP_EXAMPLE}`],
    [{ default: 42 }, `its default export is a number, not a fetch handler\n${APP_EXAMPLE}`],
    [
      { default: { port: 8000, handler() {} } },
      "its default export is an object without a fetch method (its keys: port, handler), " +
      `not a fetch handler\n${APP_EXAMPLE}`,
    ],
    [
      { default: class App {} },
      "its default export is a class, not a fetch handler " +
      `(export an instance instead: export default new App())\n${APP_EXAMPLE}`,
    ],
  ];
  for (const [module, message] of cases) {
    assert.throws(() => handlerFromModule(module, "app.mjs"), (error) => {
      assert.ok(error instanceof CliError);
      assert.equal(error.exitCode, 2);
      assert.equal(error.message, `Cannot serve "app.mjs": ${message}`);
      return true;
    });
  }
});

/** Checks the Hono fixture's routes, served at `url`, as a client sees them. */
async function checkHonoApp(url: string): Promise<void> {
  const home = await fetch(url);
  assert.equal(home.status, 200);
  // Hono's c.text() leaves the type to the Response constructor. Bun keeps
  // that default out of response.headers, so brick on Bun cannot see it yet.
  const type = home.headers.get("content-type");
  if (RUNTIME !== "Bun" || type !== null) assert.equal(type, "text/plain;charset=UTF-8");
  assert.equal(home.headers.get("x-middleware"), "hono", "the middleware ran");
  assert.equal(await home.text(), "Hello from Hono");

  const user = await fetch(url + "users/42?lang=fr");
  assert.equal(user.status, 200);
  assert.match(user.headers.get("content-type") ?? "", /^application\/json/);
  assert.deepEqual(await user.json(), { id: "42", lang: "fr" });

  const body = { list: [1, 2, 3], text: "é ✓" };
  const echo = await fetch(url + "echo", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(echo.status, 201);
  assert.deepEqual(await echo.json(), { received: body });

  const missing = await fetch(url + "no/such/route");
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get("x-middleware"), "hono");
  await missing.body?.cancel();
}

/**
 * Checks the Hono fixture's stream: its first part arrives while the app
 * still holds the rest back, so nothing on the way buffers the body.
 */
async function checkHonoStream(url: string): Promise<Response> {
  const response = await fetch(url + "stream");
  assert.equal(response.status, 200);
  const reader = response.body!.getReader();
  assert.equal(await readUntil(reader, /\n/), "first\n");
  assert.equal(await (await fetch(url + "release")).text(), "released");
  assert.equal(await readUntil(reader, /second\n/), "second\n");
  assert.equal((await reader.read()).done, true);
  return response;
}

test("brick CLI serves a Hono app module unchanged: routes, params, JSON, middleware", {
  skip: NO_HONO,
}, async () => {
  const app = join(APPS, "hono_app.mjs");
  const { brick, url } = await startBrick([app], { permissions: READ, config: true });
  try {
    assert.match(brick.stdout.text, new RegExp(`^ {2}App: {5}${escapeRegExp(app)}$`, "m"));
    await checkHonoApp(url);
    await brick.stdout.waitFor(/"POST \/echo HTTP\/1\.1" 201 (\d+|-)$/m);
  } finally {
    await brick.close();
  }
});

test("brick CLI streams a Hono app's response part by part, with --header and --cors added", {
  skip: NO_HONO,
}, async () => {
  const app = join(APPS, "hono_app.mjs");
  const { brick, url } = await startBrick(
    ["--app", app, "--header", "X-Served-By: brick", "--cors"],
    { permissions: READ, config: true },
  );
  try {
    const response = await checkHonoStream(url);
    assert.equal(response.headers.get("x-served-by"), "brick");
    assert.equal(response.headers.get("access-control-allow-origin"), "*");
    assert.equal(response.headers.get("x-middleware"), "hono");
    const home = await fetch(url);
    assert.equal(home.headers.get("x-served-by"), "brick");
    assert.equal(await home.text(), "Hello from Hono");
  } finally {
    await brick.close();
  }
});

test("brick CLI serves a TypeScript Hono app on Deno and Bun", {
  skip: RUNTIME === "Node" ? "Node 20 does not run TypeScript" : NO_HONO,
}, async () => {
  const app = join(APPS, "hono_app.ts");
  const { brick, url } = await startBrick([app], { permissions: READ, config: true });
  try {
    await checkHonoApp(url);
    await checkHonoStream(url);
  } finally {
    await brick.close();
  }
});

test("brick CLI serves a module whose default export is a handler function", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick(["--app", join(APPS, "handler.mjs")], {
    permissions: READ,
  });
  try {
    const get = await fetch(url + "a/b?c=d");
    assert.deepEqual(await get.json(), {
      method: "GET",
      path: "/a/b",
      body: null,
      client: "127.0.0.1",
    });
    const post = await fetch(url + "form", { method: "POST", body: "x=1" });
    assert.deepEqual(await post.json(), {
      method: "POST",
      path: "/form",
      body: "x=1",
      client: "127.0.0.1",
    });
  } finally {
    await brick.close();
  }
});

test("brick CLI serves a { fetch } object module, calling fetch with the object as this", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick([join(APPS, "fetch_object.mjs")], {
    permissions: READ,
  });
  try {
    const response = await fetch(url + "here");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-app"), "fetch-object");
    assert.equal(await response.text(), "Hello from an object at /here\n");
    // The app sets no Content-Length, so the log cannot know the size: "-".
    await brick.stdout.waitFor(/"GET \/here HTTP\/1\.1" 200 -$/m);
  } finally {
    await brick.close();
  }
});

test("brick CLI adds --header fields to responses whose headers are immutable", async () => {
  // Response.redirect() and fetch() results have immutable headers: brick
  // answers with a copy that keeps the status, the fields and the body.
  const source = "export default (request) =>\n" +
    '  new URL(request.url).pathname === "/go"\n' +
    '    ? Response.redirect("http://127.0.0.1/elsewhere", 307)\n' +
    '    : new Response("here");\n';
  await withTempDir({ "redirect.mjs": source }, async (dir) => {
    const { brick, url } = await startBrick(
      [join(dir, "redirect.mjs"), "--header", "X-Extra: 1"],
      { permissions: READ },
    );
    try {
      const redirect = await fetch(url + "go", { redirect: "manual" });
      assert.equal(redirect.status, 307);
      assert.equal(redirect.headers.get("location"), "http://127.0.0.1/elsewhere");
      assert.equal(redirect.headers.get("x-extra"), "1");
      await redirect.body?.cancel();
      const plain = await fetch(url);
      assert.equal(plain.headers.get("x-extra"), "1");
      assert.equal(await plain.text(), "here");
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI exits 2 naming what a module exports instead of a fetch handler", async () => {
  await withTempDir({
    "exports.mjs": "export const foo = 1;\nexport function bar() {}\n",
    "string.mjs": 'export default "hello";\n',
  }, async (dir) => {
    const exports = join(dir, "exports.mjs");
    let result = await runBrick([exports], { permissions: READ });
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      `Cannot serve "${exports}": it has no default export (its exports: bar, foo)\n` +
        `${APP_EXAMPLE}\n`,
    );
    const string = join(dir, "string.mjs");
    result = await runBrick(["--app", string], { permissions: READ });
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      `Cannot serve "${string}": its default export is a string, not a fetch handler\n` +
        `${APP_EXAMPLE}\n`,
    );
  });
});

test("brick CLI exits 1 with the error when the app module throws while loading", async () => {
  await withTempDir({
    "throws.mjs": 'throw new Error("DATABASE_URL is not set");\n',
    "syntax.mjs": "export default {\n",
  }, async (dir) => {
    const throws = join(dir, "throws.mjs");
    let result = await runBrick([throws], { permissions: READ });
    assert.equal(result.code, 1);
    assert.ok(
      result.stderr.startsWith(`Cannot load "${throws}": it threw while loading\n`),
      result.stderr,
    );
    assert.match(result.stderr, /Error: DATABASE_URL is not set\n/);
    assert.match(result.stderr, /throws\.mjs:1/, "the stack points at the module");
    const syntax = join(dir, "syntax.mjs");
    result = await runBrick([syntax], { permissions: READ });
    assert.equal(result.code, 1);
    assert.ok(result.stderr.startsWith(`Cannot load "${syntax}": it threw while loading\n`));
    // Deno and Node throw a SyntaxError; Bun a BuildMessage with its position.
    assert.match(result.stderr, /SyntaxError|BuildMessage/);
    assert.match(result.stderr, /syntax\.mjs/, "the message says where");
  });
});

test("brick CLI exits 2 with the path when the app or folder does not exist", async () => {
  await withTempDir({}, async (dir) => {
    for (
      const args of [
        ["--app", join(dir, "missing.mjs")],
        ["--root", join(dir, "missing")],
        [join(dir, "missing")],
      ]
    ) {
      const { code, stdout, stderr } = await runBrick(args, { permissions: READ });
      assert.equal(code, 2, `for ${args}`);
      const path = args.at(-1)!;
      assert.equal(stderr, `Cannot find "${path}": no such file or folder (${path})\n`);
      assert.equal(stdout, "", "nothing listens");
    }
  });
});

test("brick CLI exits 2 when the path is the wrong kind for --app or --root", async () => {
  await withTempDir(
    { "app.mjs": "export default () => new Response();\n", "notes.txt": "x" },
    async (dir) => {
      const app = join(dir, "app.mjs");
      const notes = join(dir, "notes.txt");
      const cases: [string[], string][] = [
        [
          ["--root", app],
          `Cannot serve "${app}" as a folder: it is a file (to serve it as an app: --app ${app})`,
        ],
        [
          ["--app", dir],
          `Cannot serve "${dir}" as an app: it is a folder (to serve its files: --root ${dir})`,
        ],
        [
          [notes],
          `Cannot serve "${notes}": an app module's name ends in .ts, .mts, .tsx, .js, .mjs, .cjs, ` +
          ".jsx; to serve static files, give the folder that holds them",
        ],
      ];
      for (const [args, message] of cases) {
        const { code, stderr } = await runBrick(args, { permissions: READ });
        assert.equal(code, 2, `for ${args}`);
        assert.equal(stderr, message + "\n");
      }
    },
  );
});

test("brick CLI exits 2 with the usage line on a malformed --header or --app with --root", async () => {
  const cases: [string[], string][] = [
    [["--header", "X-Trace"], 'Invalid header "X-Trace": expected "Name: value"'],
    [
      ["--app", "app.mjs", "--root", "public"],
      'Cannot serve --app "app.mjs" and --root "public" at once: ' +
      "brick serves one app module or one folder",
    ],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await runBrick(args, { permissions: READ });
    assert.equal(code, 2, `for ${args}`);
    assert.equal(stderr, `${message}\n${USAGE}\n`);
  }
});

test("brick CLI exits 2 when a folder-only flag such as --dotfiles comes with an app", async () => {
  await withTempDir({ "app.mjs": "export default () => new Response();\n" }, async (dir) => {
    const app = join(dir, "app.mjs");
    for (const flag of ["--dotfiles", "--no-listing", "--no-compress"]) {
      const { code, stderr } = await runBrick([app, flag], { permissions: READ });
      assert.equal(code, 2);
      assert.equal(
        stderr,
        `Flag "${flag}" applies to a folder only, and brick serves an app\n${USAGE}\n`,
      );
    }
  });
});

test("brick CLI runs a TypeScript app on Deno and Bun; Node exits 2 with what to run instead", async () => {
  const source = "export default {\n" +
    "  fetch(request: Request): Response {\n" +
    "    return new Response(`typed ${new URL(request.url).pathname}`);\n" +
    "  },\n" +
    "};\n";
  await withTempDir({ "app.ts": source }, async (dir) => {
    const app = join(dir, "app.ts");
    if (RUNTIME === "Node") {
      const { code, stderr } = await runBrick([app, "--port", "0"]);
      assert.equal(code, 2);
      const js = join(dir, "app.js");
      assert.equal(
        stderr,
        `Cannot import "${app}": Node ${process.version} does not run TypeScript ` +
          "(Deno, Bun and Node 22.18 or later do)\n" +
          `Run it with Bun instead: bunx --bun brick ${app} --port 0\n` +
          `Or compile it to ${js} and run: brick ${js}\n`,
      );
      return;
    }
    const { brick, url } = await startBrick([app], { permissions: READ });
    try {
      assert.equal(await (await fetch(url + "x")).text(), "typed /x");
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI exits 2 with the command to run when --allow-read is missing", {
  skip: deno ? false : "Deno only: Node and Bun have no permissions",
}, async () => {
  await withTempDir({ "app.mjs": "export default () => new Response();\n" }, async (dir) => {
    const app = join(dir, "app.mjs");
    const { code, stderr } = await runBrick([app, "--host", "127.0.0.1", "--port", "0"]);
    assert.equal(code, 2);
    assert.equal(
      stderr,
      `Cannot read "${app}": file access is not allowed\n` +
        "Run it with read access instead: " +
        `deno run --allow-net --allow-read main.ts ${app} --host 127.0.0.1 --port 0\n`,
    );
  });
});

test("brick CLI with --cors answers a preflight that the app leaves unanswered", {
  skip: NO_HONO,
}, async () => {
  const { brick, url } = await startBrick([join(APPS, "hono_app.mjs"), "--cors"], {
    permissions: READ,
    config: true,
  });
  try {
    const preflight = await fetch(url + "echo", {
      method: "OPTIONS",
      headers: {
        origin: "http://elsewhere.test",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "*");
    assert.equal(preflight.headers.get("access-control-allow-methods"), "POST");
    assert.equal(preflight.headers.get("access-control-allow-headers"), "content-type");
    const plain = await fetch(url + "echo", { method: "OPTIONS" });
    assert.equal(plain.status, 404, "an OPTIONS request that is no preflight reaches the app");
    await plain.body?.cancel();
  } finally {
    await brick.close();
  }
});

test("brick CLI serves a folder: index.html, a listing, a file, 404", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick([SITE], { permissions: READ });
  try {
    assert.match(brick.stdout.text, new RegExp(`^ {2}Folder: {2}${escapeRegExp(SITE)}$`, "m"));
    const index = await fetch(url);
    assert.equal(index.status, 200);
    assert.match(index.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(await index.text(), /<h1 id="title">Served by brick<\/h1>/);

    const listing = await fetch(url + "docs/");
    assert.equal(listing.status, 200);
    assert.match(listing.headers.get("content-type") ?? "", /^text\/html/);
    const html = await listing.text();
    assert.match(html, /first\.txt/);
    assert.match(html, /second\.txt/);

    const file = await fetch(url + "docs/first.txt");
    assert.equal(file.status, 200);
    assert.match(file.headers.get("content-type") ?? "", /^text\/plain/);
    assert.equal(await file.text(), "first document\n");

    const missing = await fetch(url + "no-such-file.txt");
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    await brick.stdout.waitFor(/"GET \/no-such-file\.txt HTTP\/1\.1" 404 (\d+|-)$/m);
  } finally {
    await brick.close();
  }
});

test("brick CLI with --no-listing answers 404 for a folder without index.html", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick(["--root", SITE, "--no-listing"], { permissions: READ });
  try {
    const listing = await fetch(url + "docs/");
    assert.equal(listing.status, 404);
    await listing.body?.cancel();
    const index = await fetch(url);
    assert.equal(index.status, 200, "index.html is still served");
    await index.body?.cancel();
  } finally {
    await brick.close();
  }
});

test("brick CLI adds --cors and --header fields to the files it serves and to 404s", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick(
    [SITE, "--cors", "--header", "Cache-Control: no-store", "--header", "X-Served-By: brick"],
    { permissions: READ },
  );
  try {
    for (const [path, status] of [["hello.txt", 200], ["missing.txt", 404]] as const) {
      const response = await fetch(url + path);
      assert.equal(response.status, status);
      assert.equal(response.headers.get("access-control-allow-origin"), "*", path);
      assert.equal(response.headers.get("cache-control"), "no-store", path);
      assert.equal(response.headers.get("x-served-by"), "brick", path);
      await response.body?.cancel();
    }
  } finally {
    await brick.close();
  }
});

test("brick CLI serves dotfiles only with --dotfiles", { skip: NO_TESTDATA }, async () => {
  for (const [flags, status] of [[[], 404], [["--dotfiles"], 200]] as const) {
    const { brick, url } = await startBrick([SITE, ...flags], { permissions: READ });
    try {
      const response = await fetch(url + ".secret.txt");
      assert.equal(response.status, status, `with ${JSON.stringify(flags)}`);
      const text = await response.text();
      if (status === 200) assert.equal(text, "not for everyone\n");
    } finally {
      await brick.close();
    }
  }
});

test("brick CLI answers curl's range request and a conditional request with the ETag", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, url } = await startBrick([SITE], { permissions: READ });
  try {
    const range = await curl(["--include", "--range", "0-4", url + "hello.txt"]);
    assert.equal(range.code, 0, range.stderr);
    const [head, body] = range.stdout.split("\r\n\r\n");
    assert.match(head, /^HTTP\/1\.1 206 Partial Content\r\n/);
    assert.match(head, /^content-range: bytes 0-4\/23$/im);
    assert.equal(body, "Hello");

    const full = await curl(["--include", url + "hello.txt"]);
    const etag = full.stdout.match(/^etag: (.+)\r$/im)?.[1];
    assert.ok(etag, `an ETag in ${JSON.stringify(full.stdout)}`);
    const conditional = await curl([
      "--include",
      "--header",
      `If-None-Match: ${etag}`,
      url + "hello.txt",
    ]);
    assert.equal(conditional.code, 0, conditional.stderr);
    assert.match(conditional.stdout, /^HTTP\/1\.1 304 Not Modified\r\n/);
    assert.ok(conditional.stdout.endsWith("\r\n\r\n"), "a 304 has no body");
    assert.match(conditional.stdout, new RegExp(`^etag: ${escapeRegExp(etag)}\r$`, "im"));
  } finally {
    await brick.close();
  }
});

test("brick CLI serves a page that headless Chromium renders with its CSS, script and image", {
  skip: NO_TESTDATA || (chromiumPath() === null ? "Chromium is not installed" : false),
}, async () => {
  const { brick, url } = await startBrick([SITE], { permissions: READ });
  try {
    const dom = await dumpDom(url, { timeoutMs: 30_000, virtualTimeBudgetMs: 5_000 });
    const results = dom.match(/<p id="results">(.*?)<\/p>/)?.[1];
    assert.ok(results, `the results paragraph in ${dom}`);
    assert.deepEqual(JSON.parse(results), {
      script: "ran",
      imageWidth: 3,
      imageHeight: 2,
      color: "rgb(1, 2, 3)",
      marginLeft: "17px",
    });
    for (const path of ["/", "/style.css", "/check.js", "/pixel.png"]) {
      await brick.stdout.waitFor(new RegExp(`"GET ${escapeRegExp(path)} HTTP/1\\.1" 200 `));
    }
  } finally {
    await brick.close();
  }
});

test("dumpDom() kills Chromium when the page does not load within timeoutMs", {
  skip: chromiumPath() === null ? "Chromium is not installed" : false,
}, async () => {
  // A server that accepts connections and never answers.
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => silent.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const { port } = silent.address() as net.AddressInfo;
  try {
    const started = Date.now();
    await assert.rejects(
      dumpDom(`http://127.0.0.1:${port}/`, { timeoutMs: 1_000 }),
      /^Error: Chromium did not finish loading http:\/\/127\.0\.0\.1:\d+\/ within 1000 ms/,
    );
    assert.ok(Date.now() - started < 6_000, "the timeout ends it");
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

// ─── TLS and Unix sockets ───────────────────────────────────────────────────

/** Deno's permissions for a CLI on a Unix socket. */
const UNIX = ["--allow-net", "--allow-read", "--allow-write"];

/** Why curl cannot run here, or false when it can. */
async function curlMissing(): Promise<string | false> {
  try {
    const { code } = await curl(["--version"]);
    return code === 0 ? false : "curl does not run";
  } catch {
    return "curl is not installed";
  }
}

const NO_CURL = await curlMissing();
const NO_OPENSSL = await opensslMissing();

/**
 * Makes a CA and a certificate for 127.0.0.1 that it signs in a temporary
 * folder, runs `body` with them, and removes the folder.
 */
function withCertificates<T>(body: (pki: TestCertificates) => Promise<T>): Promise<T> {
  return withTempDir({}, async (dir) => await body(await makeTestCertificates(dir)));
}

/** GETs `path` on a new TLS connection that trusts only `ca`, with `Connection: close`. */
function httpsGet(port: number, path: string, ca: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" });
    let text = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`No answer over TLS within ${TIMEOUT} ms: ${JSON.stringify(text)}`));
    }, TIMEOUT);
    socket.setEncoding("utf8");
    socket.once("secureConnect", () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    });
    socket.on("data", (chunk: string) => text += chunk);
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once("close", () => {
      clearTimeout(timer);
      const [response] = parseResponses(text);
      if (response) resolve(response);
      else reject(new Error(`The TLS connection closed after ${JSON.stringify(text)}`));
    });
  });
}

test("parseFlags() reads --cert, --key, --unix and --workers", () => {
  assert.deepEqual(parseFlags(["--cert", "c.pem", "--key=k.pem", "--workers", "3"]), {
    ...DEFAULT_FLAGS,
    cert: "c.pem",
    key: "k.pem",
    workers: 3,
  });
  assert.deepEqual(parseFlags(["--unix", "/run/brick.sock", "--workers", "1"]), {
    ...DEFAULT_FLAGS,
    unix: "/run/brick.sock",
  });
  assert.equal(parseFlags(["--workers", "auto"]).workers, availableParallelism());
  assert.equal(parseFlags(["--workers=256"]).workers, 256);
  assert.equal(parseFlags(["--debug-worker"]).debugWorker, true);
});

test("parseFlags() rejects a lone --cert or --key, --unix with TCP flags, and bad --workers", () => {
  const unix = 'Flag "--unix" cannot be combined with';
  const count = 'expected a number from 1 to 256, or "auto"';
  const cases: [string[], string][] = [
    [
      ["--cert", "c.pem"],
      'Flag "--cert" needs "--key" too: HTTPS takes a certificate and its private key',
    ],
    [
      ["--key", "k.pem"],
      'Flag "--key" needs "--cert" too: HTTPS takes a certificate and its private key',
    ],
    [["--cert="], 'Missing value for "--cert"'],
    [["--unix"], 'Missing value for "--unix"'],
    [
      ["--unix", "a.sock", "--port", "80"],
      `${unix} "--port": brick listens on a Unix socket or on a TCP port, not both`,
    ],
    [
      ["--host", "::1", "--unix", "a.sock"],
      `${unix} "--host": brick listens on a Unix socket or on a TCP port, not both`,
    ],
    [
      ["--unix", "a.sock", "--cert", "c.pem", "--key", "k.pem"],
      `${unix} "--cert": brick serves HTTPS on TCP ports only`,
    ],
    [["--unix", "a.sock", "--workers", "2"], `${unix} "--workers": workers share a TCP port`],
    [["--workers", "0"], `Invalid worker count "0": ${count}`],
    [["--workers", "-1"], `Invalid worker count "-1": ${count}`],
    [["--workers", "x"], `Invalid worker count "x": ${count}`],
    [["--workers", "1.5"], `Invalid worker count "1.5": ${count}`],
    [["--workers", "257"], `Invalid worker count "257": ${count}`],
    [["--workers", "--quiet"], 'Missing value for "--workers"'],
  ];
  for (const [args, message] of cases) {
    assert.throws(() => parseFlags(args), (error) => {
      assert.ok(error instanceof UsageError);
      assert.equal(error.message, message, `for ${JSON.stringify(args)}`);
      return true;
    });
  }
});

test("formatBanner() shows https URLs with TLS, a socket path, and the workers", () => {
  const base = { host: "0.0.0.0", port: 8443, networkAddresses: ["10.0.0.2"], color: false };
  assert.equal(
    formatBanner({ ...base, tls: true, workers: { count: 2, pids: [41, 42] } }),
    `brick ${VERSION} is listening\n` +
      "  Workers: 2 processes (pids 41, 42)\n" +
      "  Local:   https://localhost:8443/\n" +
      "  Network: https://10.0.0.2:8443/\n" +
      "Press Ctrl+C to stop",
  );
  assert.match(formatBanner({ ...base, workers: { count: 4 } }), /^ {2}Workers: 4 threads$/m);
  assert.equal(
    formatBanner({ ...base, socket: "/run/my app.sock" }),
    `brick ${VERSION} is listening\n` +
      "  Socket:  /run/my app.sock\n" +
      "  Try:     curl --unix-socket '/run/my app.sock' http://localhost/\n" +
      "Press Ctrl+C to stop",
  );
});

test("brick CLI with --cert and --key serves HTTPS that curl trusts through the CA", {
  skip: NO_OPENSSL || NO_CURL,
}, async () => {
  await withCertificates(async (pki) => {
    await withTempDir(
      { "url.mjs": "export default (request) => new Response(request.url);\n" },
      async (dir) => {
        const { brick, url, port } = await startBrick(
          [join(dir, "url.mjs"), "--cert", pki.certFile, "--key", pki.keyFile],
          { permissions: READ },
        );
        try {
          assert.equal(url, `https://127.0.0.1:${port}/`, "the banner shows an https URL");
          // HTTP/1.1 on purpose: the access log line below is HTTP/1.1's.
          const result = await curl([
            "--http1.1",
            "--cacert",
            pki.caFile,
            "--include",
            url + "secure?x=1",
          ]);
          assert.equal(result.code, 0, result.stderr);
          assert.match(result.stdout, /^HTTP\/1\.1 200 OK\r\n/);
          const body = result.stdout.slice(result.stdout.indexOf("\r\n\r\n") + 4);
          assert.equal(body, `https://127.0.0.1:${port}/secure?x=1`, "request.url is https");
          await brick.stdout.waitFor(
            /^127\.0\.0\.1 - - \[.+\] "GET \/secure\?x=1 HTTP\/1\.1" 200 /m,
          );
          const untrusted = await curl([url]);
          assert.equal(untrusted.code, 60, "without the CA, curl refuses the certificate");
        } finally {
          await brick.close();
        }
      },
    );
  });
});

test("brick CLI exits 2 naming the certificate or key that it cannot read or use", {
  skip: NO_OPENSSL,
}, async () => {
  await withCertificates(async (pki) => {
    await withTempDir({ "notes.txt": "not a certificate\n" }, async (dir) => {
      const missing = join(dir, "missing.pem");
      const notes = join(dir, "notes.txt");
      const cases: [string[], string][] = [
        [
          ["--cert", missing, "--key", pki.keyFile],
          `Cannot read the certificate "${missing}" (--cert): no such file (${missing})`,
        ],
        [
          ["--cert", pki.certFile, "--key", dir],
          `Cannot read the private key "${dir}" (--key): it is a folder`,
        ],
        [
          ["--cert", notes, "--key", pki.keyFile],
          `Cannot use "${notes}" as the certificate (--cert): it holds no PEM block ("-----BEGIN …")`,
        ],
      ];
      for (const [args, message] of cases) {
        const result = await runBrick([...args, "--host", "127.0.0.1", "--port", "0"], {
          permissions: READ,
        });
        assert.equal(result.code, 2, `for ${args}: ${result.stderr}`);
        assert.equal(result.stderr, `${message}\n`);
        assert.equal(result.stdout, "", "nothing listens");
      }
      // The CA's certificate with the server's key: a pair that does not belong together.
      const mismatched = await runBrick(
        ["--cert", pki.caFile, "--key", pki.keyFile, "--host", "127.0.0.1", "--port", "0"],
        { permissions: READ },
      );
      assert.equal(mismatched.code, 2, mismatched.stderr);
      assert.ok(
        mismatched.stderr.startsWith(
          `Cannot use --cert "${pki.caFile}" with --key "${pki.keyFile}": `,
        ),
        mismatched.stderr,
      );
      assert.match(mismatched.stderr, /check that both are PEM files and that the key belongs/);
    });
  });
});

test("brick CLI exits 2 with the usage line for --cert without --key and --unix with --port", async () => {
  const cases: [string[], string][] = [
    [
      ["--cert", "cert.pem"],
      'Flag "--cert" needs "--key" too: HTTPS takes a certificate and its private key',
    ],
    [
      ["--unix", "brick.sock", "-p", "8080"],
      'Flag "--unix" cannot be combined with "--port": ' +
      "brick listens on a Unix socket or on a TCP port, not both",
    ],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await runBrick(args, { permissions: READ });
    assert.equal(code, 2, `for ${args}`);
    assert.equal(stderr, `${message}\n${USAGE}\n`);
  }
});

test("brick CLI exits 2 with the command to run when --cert comes without --allow-read", {
  skip: deno ? (NO_OPENSSL || false) : "Deno only: Node and Bun have no permissions",
}, async () => {
  await withCertificates(async (pki) => {
    const args = ["--cert", pki.certFile, "--key", pki.keyFile, "--port", "0"];
    const { code, stderr } = await runBrick(args);
    assert.equal(code, 2);
    assert.equal(
      stderr,
      `Cannot read "${pki.certFile}": file access is not allowed\n` +
        `Run it with read access instead: deno run --allow-net --allow-read main.ts ${
          args.join(" ")
        }\n`,
    );
  });
});

test("brick CLI with --unix serves curl --unix-socket, logs 'unix' clients, removes the socket", {
  skip: NO_CURL,
}, async () => {
  await withTempDir({}, async (dir) => {
    const socket = join(dir, "brick.sock");
    const brick = spawnBrick(["--unix", socket], { permissions: UNIX });
    try {
      const [, shown] = await brick.stdout.waitFor(/^ {2}Socket: {2}(.+)$/m);
      assert.equal(shown, socket);
      assert.match(brick.stdout.text, /^ {2}Try: {5}curl --unix-socket \S+ http:\/\/localhost\/$/m);
      assert.doesNotMatch(brick.stdout.text, /Local:|Network:/);
      const result = await curl([
        "--unix-socket",
        socket,
        "--include",
        "http://localhost/over/unix",
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^HTTP\/1\.1 200 OK\r\n/);
      assert.ok(result.stdout.endsWith("\r\n\r\nHello, World!"), result.stdout);
      await brick.stdout.waitFor(/^unix - - \[[^\]]+\] "GET \/over\/unix HTTP\/1\.1" 200 13$/m);
      brick.kill("SIGTERM");
      assert.equal((await brick.exit()).code, 0, brick.stderr.text);
      assert.equal(existsSync(socket), false, "the socket file is removed on shutdown");
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI exits 1 when another server listens on the --unix socket, which keeps serving", {
  skip: NO_CURL,
}, async () => {
  await withTempDir({}, async (dir) => {
    const socket = join(dir, "brick.sock");
    const first = spawnBrick(["--unix", socket, "--quiet"], { permissions: UNIX });
    try {
      await first.stdout.waitFor(/Socket:/);
      const second = await runBrick(["--unix", socket], { permissions: UNIX });
      assert.equal(second.code, 1);
      assert.equal(
        second.stderr,
        `Cannot listen on ${socket}: address already in use ` +
          "(a running server listens there; stop it or choose another --unix path)\n",
      );
      const result = await curl(["--unix-socket", socket, "http://localhost/"]);
      assert.equal(result.stdout, "Hello, World!", "the first server still answers");
    } finally {
      await first.close();
    }
  });
});

test("brick CLI exits 1 with the command to run when --unix lacks Deno's permissions", {
  skip: deno ? false : "Deno only: Node and Bun have no permissions",
}, async () => {
  await withTempDir({}, async (dir) => {
    const socket = join(dir, "brick.sock");
    const { code, stderr } = await runBrick(["--unix", socket], { permissions: READ });
    assert.equal(code, 1);
    assert.equal(
      stderr,
      `Cannot listen on ${socket}: a Unix socket needs network, read and write access\n` +
        `Run it with them instead: deno run --allow-net --allow-read --allow-write main.ts ` +
        `--unix ${socket}\n`,
    );
    assert.equal(existsSync(socket), false);
  });
});

// ─── Workers ────────────────────────────────────────────────────────────────

/** Deno's flags for a CLI with workers: each thread loads main.ts and listens with SO_REUSEPORT. */
const WORKERS = ["--allow-net", "--allow-read", "--unstable-net"];

/** Which worker answered, from the `x-brick-worker` header that `--debug-worker` adds. */
interface WorkerTag {
  id: number;
  pid: number;
  start: number;
}

function workerTag(response: RawResponse): WorkerTag {
  const value = response.headers.get("x-brick-worker") ?? "";
  const match = value.match(/^(\d+); pid=(\d+); start=(\d+)$/);
  assert.ok(match, `an x-brick-worker field in ${JSON.stringify([...response.headers])}`);
  return { id: Number(match[1]), pid: Number(match[2]), start: Number(match[3]) };
}

/** GETs `path` on a new connection, which the kernel or node:cluster gives to any worker. */
async function getOnce(port: number, path = "/"): Promise<RawResponse> {
  using conn = await connect(port);
  await conn.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const [response] = await conn.received.responses(1);
  return response;
}

/**
 * Sends requests, each on a new connection, until the workers that answered
 * satisfy `enough`; fails after `max` requests.
 */
async function findWorkers(
  get: () => Promise<RawResponse>,
  enough: (tags: WorkerTag[]) => boolean,
  max = 200,
): Promise<WorkerTag[]> {
  const tags: WorkerTag[] = [];
  for (let i = 0; i < max; i++) {
    const response = await get();
    assert.equal(response.statusLine, "HTTP/1.1 200 OK");
    tags.push(workerTag(response));
    if (enough(tags)) return tags;
  }
  const seen = [...new Set(tags.map((tag) => JSON.stringify(tag)))];
  throw new Error(`After ${max} requests, only these workers answered: ${seen.join(", ")}`);
}

const bothWorkers = (tags: WorkerTag[]) => new Set(tags.map((tag) => tag.id)).size === 2;

/** Whether a process with this id exists. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

/** The worker PIDs in the banner, or none when the workers are threads (Deno). */
function bannerPids(stdout: string): number[] {
  const match = stdout.match(/^ {2}Workers: 2 processes \(pids (\d+), (\d+)\)$/m);
  return match ? [Number(match[1]), Number(match[2])] : [];
}

test("brick CLI with --workers 2 answers from both workers, with one banner and whole log lines", async () => {
  const { brick, port } = await startBrick(["--workers", "2", "--debug-worker"], {
    permissions: WORKERS,
  });
  try {
    const banner = brick.stdout.text;
    assert.equal(banner.match(/is listening/g)?.length, 1, `one banner: ${banner}`);
    assert.match(banner, deno ? /^ {2}Workers: 2 threads$/m : /^ {2}Workers: 2 processes /m);
    const tags = await findWorkers(() => getOnce(port), bothWorkers);
    const pids = new Set(tags.map((tag) => tag.pid));
    if (deno) assert.equal(pids.size, 1, "threads of one process");
    else assert.deepEqual([...pids].sort(), bannerPids(banner).sort(), "the PIDs in the banner");

    // Many requests at once, from both workers: each log line arrives whole.
    const path = "/" + "x".repeat(600);
    await Promise.all(Array.from({ length: 40 }, () => getOnce(port, path)));
    const lines = () => brick.stdout.text.slice(banner.length).split("\n").filter(Boolean);
    const deadline = Date.now() + TIMEOUT;
    while (lines().length < tags.length + 40 && Date.now() < deadline) await delay(50);
    assert.equal(lines().length, tags.length + 40);
    for (const line of lines()) assert.match(line, CLF_LINE);
    assert.equal(brick.stderr.text, "");
  } finally {
    await brick.close();
  }
});

/**
 * An app that writes a line to stdout in two halves, 100 ms apart, while it
 * holds its process: the other worker's halves come in between.
 */
const HALF_LINES_APP = 'import process from "node:process";\n' +
  "export default (request) => {\n" +
  '  const id = new URL(request.url).searchParams.get("id");\n' +
  "  process.stdout.write(`half-line ${id} starts,`);\n" +
  "  const until = Date.now() + 100;\n" +
  "  while (Date.now() < until);\n" +
  "  process.stdout.write(` and ends ${id}\\n`);\n" +
  '  return new Response("ok\\n");\n' +
  "};\n";

test("brick CLI with --workers passes on a worker's output in whole lines", {
  skip: deno ? "Deno's workers are threads: they write to the shared stdout themselves" : false,
}, async () => {
  await withTempDir({ "halves.mjs": HALF_LINES_APP }, async (dir) => {
    const { brick, port } = await startBrick(
      [join(dir, "halves.mjs"), "--workers", "2", "--debug-worker", "--quiet"],
      { permissions: WORKERS },
    );
    try {
      const banner = brick.stdout.text;
      let sent = 0;
      // Requests at once until both workers were writing at the same time.
      for (let batch = 0; batch < 10; batch++) {
        const ids = Array.from({ length: 8 }, () => sent++);
        const tags = await Promise.all(
          ids.map(async (id) => workerTag(await getOnce(port, `/?id=${id}`))),
        );
        if (bothWorkers(tags)) break;
      }
      await brick.stdout.waitFor(new RegExp(` and ends ${sent - 1}\n`));
      const lines = brick.stdout.text.slice(banner.length).split("\n").filter(Boolean);
      assert.equal(lines.length, sent);
      for (const line of lines) assert.match(line, /^half-line (\d+) starts, and ends \1$/);
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI with --workers serves HTTPS from each worker", { skip: NO_OPENSSL }, async () => {
  await withCertificates(async (pki) => {
    const { brick, url, port } = await startBrick(
      ["--workers", "2", "--debug-worker", "--cert", pki.certFile, "--key", pki.keyFile],
      { permissions: WORKERS },
    );
    try {
      assert.equal(url, `https://127.0.0.1:${port}/`);
      await findWorkers(() => httpsGet(port, "/", pki.ca), bothWorkers);
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI with --workers restarts a worker whose app crashed, and logs the restart", {
  skip: NO_TESTDATA,
}, async () => {
  const { brick, port } = await startBrick([
    join(APPS, "crash.mjs"),
    "--workers",
    "2",
    "--debug-worker",
  ], {
    permissions: WORKERS,
  });
  try {
    await findWorkers(() => getOnce(port), bothWorkers);
    const crashing = await getOnce(port, "/crash");
    assert.equal(crashing.body, "crashing\n");
    const { id, pid } = workerTag(crashing);
    const who = deno ? `worker ${id}` : `worker ${id} \\(pid ${pid}\\)`;
    await brick.stderr.waitFor(
      new RegExp(`^${who} exited with code 1; restarting in 100 ms$`, "m"),
    );
    const [, newPid] = await brick.stderr.waitFor(
      new RegExp(`^worker ${id}(?: \\(pid (\\d+)\\))? is listening$`, "m"),
    );
    if (!deno) assert.notEqual(Number(newPid), pid, "a new process");
    assert.match(brick.stderr.text, /crash requested by GET \/crash/, "the crash's error is shown");
    // The replacement, started a second time under the same number, answers beside the other.
    const tags = await findWorkers(
      () => getOnce(port),
      (tags) => tags.some((tag) => tag.id === id && tag.start === 2) && bothWorkers(tags),
    );
    assert.ok(tags.every((tag) => tag.id !== id || tag.start === 2), "the crashed one is gone");
  } finally {
    await brick.close();
  }
});

test("brick CLI with --workers replaces a worker process killed with SIGKILL", {
  skip: deno ? "Deno's workers are threads of one process" : false,
}, async () => {
  const { brick, port } = await startBrick(["--workers", "2", "--debug-worker"]);
  try {
    const [killed, other] = bannerPids(brick.stdout.text);
    process.kill(killed, "SIGKILL");
    await brick.stderr.waitFor(
      new RegExp(`^worker 1 \\(pid ${killed}\\) was killed by SIGKILL; restarting in 100 ms$`, "m"),
    );
    const [, replacement] = await brick.stderr.waitFor(/^worker 1 \(pid (\d+)\) is listening$/m);
    const tags = await findWorkers(() => getOnce(port), bothWorkers);
    assert.deepEqual(
      [...new Set(tags.map((tag) => tag.pid))].sort(),
      [Number(replacement), other].sort(),
    );
  } finally {
    await brick.close();
  }
});

/** An app whose /slow path answers after half a second, to have a request in flight. */
const SLOW_APP = "export default async (request) => {\n" +
  '  if (new URL(request.url).pathname === "/slow") {\n' +
  "    await new Promise((resolve) => setTimeout(resolve, 500));\n" +
  "  }\n" +
  '  return new Response("done\\n");\n' +
  "};\n";

test("brick CLI with --workers finishes requests in flight on SIGTERM, exits 0, leaves no worker", async () => {
  await withTempDir({ "slow.mjs": SLOW_APP }, async (dir) => {
    const { brick, port } = await startBrick(
      [join(dir, "slow.mjs"), "--workers", "2", "--debug-worker"],
      { permissions: WORKERS },
    );
    try {
      const tags = await findWorkers(() => getOnce(port), bothWorkers);
      const slow = getOnce(port, "/slow");
      await delay(150);
      brick.kill("SIGTERM");
      const response = await slow;
      assert.equal(response.body, "done\n", "the request in flight is answered");
      const status = await brick.exit();
      await brick.stderr.done;
      assert.equal(status.code, 0, brick.stderr.text);
      assert.equal(brick.stderr.text, "Shutting down\n", "one message, from the supervisor");
      for (const pid of new Set(tags.map((tag) => tag.pid))) {
        assert.equal(isRunning(pid), false, `process ${pid} is gone`);
      }
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI with --workers stops gracefully once on Ctrl+C, which signals the whole group", {
  skip: deno ? "Deno's workers are threads of one process" : false,
}, async () => {
  await withTempDir({ "slow.mjs": SLOW_APP }, async (dir) => {
    // A terminal's Ctrl+C sends SIGINT to every process of the foreground group.
    const args = [join(dir, "slow.mjs"), "--workers", "2", "-p", "0", "-H", "127.0.0.1"];
    const child = spawn(process.execPath, [MAIN, ...args], {
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" },
    });
    const status = new Promise<ExitStatus>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    const stdout = new Output(child.stdout!);
    const stderr = new Output(child.stderr!);
    try {
      const [, port] = await stdout.waitFor(/Local:\s+http:\/\/127\.0\.0\.1:(\d+)\//);
      const pids = bannerPids(stdout.text);
      assert.equal(pids.length, 2, stdout.text);
      const slow = getOnce(Number(port), "/slow");
      await delay(150);
      process.kill(-child.pid!, "SIGINT");
      assert.equal((await slow).body, "done\n", "the worker finishes the request in flight");
      const timer = setTimeout(() => child.kill("SIGKILL"), TIMEOUT);
      assert.deepEqual(await status, { code: 0, signal: null });
      clearTimeout(timer);
      await stderr.done;
      assert.equal(
        stderr.text,
        "Shutting down\n",
        "the workers leave the signal to the supervisor",
      );
      for (const pid of pids) assert.equal(isRunning(pid), false, `process ${pid} is gone`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await status;
    }
  });
});

test("brick CLI with --workers exits 130 at once on a second signal and leaves no worker", async () => {
  const app = SLOW_APP.replace("500", "20_000");
  await withTempDir({ "slow.mjs": app }, async (dir) => {
    const { brick, port } = await startBrick(
      [join(dir, "slow.mjs"), "--workers", "2", "--debug-worker"],
      { permissions: WORKERS },
    );
    try {
      const tags = await findWorkers(() => getOnce(port), bothWorkers);
      const stuck = getOnce(port, "/slow").catch(() => "closed");
      await delay(150);
      brick.kill("SIGTERM");
      await brick.stderr.waitFor(/^Shutting down$/m);
      const started = Date.now();
      brick.kill("SIGINT");
      const status = await brick.exit();
      assert.equal(status.code, 130);
      assert.ok(Date.now() - started < 3000, "the second signal does not wait for the request");
      await brick.stderr.done;
      assert.equal(brick.stderr.text, "Shutting down\nForcing exit\n");
      assert.equal(await stuck, "closed", "the request in flight is cut off");
      for (const pid of new Set(tags.map((tag) => tag.pid))) {
        assert.equal(isRunning(pid), false, `process ${pid} is gone`);
      }
    } finally {
      await brick.close();
    }
  });
});

test("brick CLI with --workers exits 2 once when the app has no fetch handler", async () => {
  await withTempDir({ "exports.mjs": "export const foo = 1;\n" }, async (dir) => {
    const app = join(dir, "exports.mjs");
    const result = await runBrick([app, "--workers", "2", "--host", "127.0.0.1", "--port", "0"], {
      permissions: WORKERS,
    });
    assert.equal(result.code, 2);
    assert.equal(
      result.stderr,
      `Cannot serve "${app}": it has no default export (its exports: foo)\n${APP_EXAMPLE}\n`,
      "said once, by the first worker",
    );
    assert.equal(result.stdout, "");
  });
});

test("brick CLI with --workers gives up with exit 1 when a worker keeps crashing at start", {
  skip: NO_TESTDATA,
}, async () => {
  const brick = spawnBrick(
    [join(APPS, "crash_soon.mjs"), "--workers", "2", "--host", "127.0.0.1", "--port", "0"],
    { permissions: WORKERS },
  );
  try {
    const status = await brick.exit(20_000);
    await brick.stderr.done;
    const stderr = brick.stderr.text;
    assert.equal(status.code, 1, stderr);
    assert.match(
      stderr,
      /^worker \d+(?: \(pid \d+\))? exited with code 1; giving up: it ended 5 times in a row within 10 s of its start \(its errors are above\)$/m,
    );
    for (const delay of [100, 200, 400, 800]) {
      assert.match(stderr, new RegExp(`exited with code 1; restarting in ${delay} ms$`, "m"));
    }
  } finally {
    await brick.close();
  }
});

test("brick CLI with --workers exits 1 when the port is taken, before starting any", async () => {
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const { port } = listener.address() as net.AddressInfo;
  try {
    const result = await runBrick(
      ["--workers", "2", "--host", "127.0.0.1", "--port", String(port)],
      {
        permissions: WORKERS,
      },
    );
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `Cannot listen on 127.0.0.1:${port}: address already in use (try --port ${port + 1})\n`,
    );
  } finally {
    await new Promise((resolve) => listener.close(resolve));
  }
});

test("brick CLI exits 2 with the usage line on a bad --workers value", async () => {
  for (const value of ["0", "-1", "x"]) {
    const { code, stderr } = await runBrick(["--workers", value]);
    assert.equal(code, 2, `for --workers ${value}`);
    assert.equal(
      stderr,
      `Invalid worker count "${value}": expected a number from 1 to 256, or "auto"\n${USAGE}\n`,
    );
  }
});

test("brick CLI exits 2 with the command to run when Deno lacks what --workers needs", {
  skip: deno ? false : "Deno only",
}, async () => {
  const args = ["--workers", "2", "--host", "127.0.0.1", "--port", "0"];
  const { code, stderr } = await runBrick(args);
  assert.equal(code, 2);
  assert.equal(
    stderr,
    "Cannot start 2 workers: Deno needs --unstable-net, as the workers share the port with " +
      "SO_REUSEPORT, and read access to main.ts, which each worker thread loads\n" +
      "Run it with them instead: " +
      `deno run --allow-net --allow-read --unstable-net main.ts ${args.join(" ")}\n`,
  );
});
