// Tests for the brick CLI: each one runs the CLI as a child process on
// 127.0.0.1 with port 0 and talks to it over real sockets.
//
// The suite runs on the runtime that runs it, against the CLI beside it: on
// Deno, `deno test -A main_test.ts` runs main.ts with `deno run`; on Node,
// `node --test npm/main_test.js` runs the npm build's main.js with node.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import { extname } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { formatAccessLog, formatBanner, formatClfDate, parseFlags, UsageError } from "./main.ts";

/** Deno's API when the tests run on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;

/** The CLI beside this file: main.ts in the source, main.js in the npm build. */
const MAIN = fileURLToPath(new URL(`./main${extname(import.meta.url)}`, import.meta.url));
/** The version, from deno.json beside the source or the npm build's package.json. */
const VERSION = readVersion();
/** How the usage line names the command on this runtime. */
const COMMAND = deno ? "deno run --allow-net main.ts" : "brick";
const TIMEOUT = 10_000;
const CLF_LINE =
  /^127\.0\.0\.1 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "(.*)" (\d{3}) (\d+|-)$/m;

function readVersion(): string {
  for (const name of ["deno.json", "package.json"]) {
    const url = new URL(name, import.meta.url);
    if (existsSync(url)) return JSON.parse(readFileSync(url, "utf8")).version;
  }
  throw new Error("No deno.json or package.json beside main_test");
}

/**
 * The command line that runs the CLI on the current runtime. Permissions are
 * Deno's flags; Node and Bun have none and ignore them.
 */
function brickCommand(args: string[], permissions: string[]): [string, string[]] {
  if (deno) return [deno.execPath(), ["run", "--no-config", ...permissions, MAIN, ...args]];
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

/** Runs the CLI with `args`, on Deno with the given permission flags. */
function spawnBrick(args: string[], permissions = ["--allow-net"]): Brick {
  const [command, commandArgs] = brickCommand(args, permissions);
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
async function runBrick(args: string[], permissions?: string[]) {
  const brick = spawnBrick(args, permissions);
  try {
    const status = await brick.exit();
    await Promise.all([brick.stdout.done, brick.stderr.done]);
    return { code: status.code, stdout: brick.stdout.text, stderr: brick.stderr.text };
  } finally {
    await brick.close();
  }
}

/** Starts brick on 127.0.0.1 with a free port and returns the base URL from its banner. */
async function startBrick(args: string[] = [], permissions?: string[]) {
  const brick = spawnBrick(["--port", "0", "--host", "127.0.0.1", ...args], permissions);
  try {
    const [, url, port] = await brick.stdout.waitFor(/Local:\s+(http:\/\/127\.0\.0\.1:(\d+)\/)/);
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

test("parseFlags() reads long and short flags and applies the defaults", () => {
  assert.deepEqual(parseFlags([]), {
    port: 8888,
    host: "0.0.0.0",
    verbose: false,
    quiet: false,
    help: false,
    version: false,
  });
  assert.deepEqual(parseFlags(["-p", "0", "-H", "127.0.0.1", "-vq"]), {
    port: 0,
    host: "127.0.0.1",
    verbose: true,
    quiet: true,
    help: false,
    version: false,
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
    [["serve"], 'Unexpected argument "serve"'],
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
  const { brick } = await startBrick([], ["--allow-net", "--allow-sys"]);
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
  const options = text.split("\n").filter((line) => /^ {2}-\w, --/.test(line));
  assert.deepEqual(
    options.map((line) => line.match(/--(\w+)/)![1]),
    ["port", "host", "verbose", "quiet", "help", "version"],
  );
  const columns = options.map((line) => line.search(/(?<=\S {2,})\S/));
  assert.equal(new Set(columns).size, 1, `descriptions start in one column:\n${text}`);
});

test("brick CLI exits 2 with the usage line on an unknown flag", async () => {
  const { code, stderr } = await runBrick(["--nope"]);
  assert.equal(code, 2);
  const [error, usage] = stderr.split("\n");
  assert.equal(error, 'Unknown flag "--nope"');
  assert.equal(usage, `Usage: ${COMMAND} [--port <port>] [--host <host>] [--verbose] [--quiet]`);
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
  const { code, stderr } = await runBrick(["--host", "127.0.0.1", "--port", "0"], []);
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
