// Helpers for the CLI tests in cli/*_test.ts: each test runs the CLI as a
// child process on 127.0.0.1 with port 0 and talks to it over real sockets.
//
// The suites run on the runtime that runs them, against the CLI of the same
// tree: on Deno, `deno test -A cli/` runs main.ts with `deno run`; on Node,
// `node --test npm/cli/` runs the npm build's main.js with node.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import process from "node:process";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { makeTestCertificates, opensslMissing, type TestCertificates } from "../_test_tls.ts";

/** Deno's API when the tests run on Deno; undefined on Node and Bun. */
export const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;

/** The CLI: main.ts in the source, main.js in the npm build. */
export const MAIN = fileURLToPath(new URL(`../main${extname(import.meta.url)}`, import.meta.url));

/** The version, from deno.json beside the source or the npm build's package.json. */
export const VERSION = readVersion();

/** How the usage line names the command on this runtime. */
export const COMMAND = deno ? `${denoRun()} --allow-net --allow-read main.ts` : "brick";

/**
 * How hints spell `deno run`: the Deno running the tests comes from npm
 * (`npx -y deno@2.9.6`), and brick names the command that started it.
 */
export function denoRun(): string {
  return deno && deno.execPath().includes("/node_modules/deno/")
    ? `npx -y deno@${deno.version.deno} run`
    : "deno run";
}

/** The usage line, as printed under a flag error. */
export const USAGE = `Usage: ${COMMAND} [options] [<app module> | <folder>]`;

/** Which runtime runs the tests, for skip reasons. */
export const RUNTIME = deno
  ? "Deno"
  : typeof (process.versions as { bun?: string }).bun === "string"
  ? "Bun"
  : "Node";

/** Deno's permissions for a CLI that serves files. */
export const READ = ["--allow-net", "--allow-read"];

/** The fixtures: app modules and a small site. The npm build copies them to npm/testdata/. */
export const TESTDATA = fileURLToPath(new URL("../testdata/", import.meta.url));

export const APPS = join(TESTDATA, "apps");

export const SITE = join(TESTDATA, "site");

/** Why the fixture tests cannot run here, or false when they can. */
export const NO_TESTDATA = existsSync(TESTDATA)
  ? false
  : `${TESTDATA} is missing: the npm build does not copy testdata/ yet`;

/** Why the Hono tests cannot run here, or false when they can. */
export const NO_HONO = NO_TESTDATA || honoMissing();

export const TIMEOUT = 10_000;

export const CLF_LINE =
  /^127\.0\.0\.1 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "(.*)" (\d{3}) (\d+|-)$/m;

/**
 * Why the fixtures cannot import `hono`, or false when they can: on Deno
 * through deno.json's import map, on Node and Bun from the npm build's
 * node_modules.
 */
export function honoMissing(): string | false {
  if (deno) return false;
  try {
    import.meta.resolve("hono");
    return false;
  } catch {
    return "hono cannot be resolved beside the tests: the npm build does not install it yet";
  }
}

export function readVersion(): string {
  for (const name of ["deno.json", "package.json"]) {
    const url = new URL(`../${name}`, import.meta.url);
    if (existsSync(url)) return JSON.parse(readFileSync(url, "utf8")).version;
  }
  throw new Error("No deno.json or package.json above cli/");
}

/** How to run the CLI besides its arguments. */
export interface RunOptions {
  /** Deno's permission flags; Node and Bun have none and ignore them. */
  permissions?: string[];
  /**
   * On Deno, use the project's deno.json (without its lock file), whose
   * import map resolves `hono` for the app fixtures. Otherwise `--no-config`.
   */
  config?: boolean;
}

/** The command line that runs the CLI on the current runtime. */
export function brickCommand(args: string[], options: RunOptions): [string, string[]] {
  const { permissions = ["--allow-net"], config = false } = options;
  if (deno) {
    const configFlags = config
      ? ["--config", fileURLToPath(new URL("../deno.json", import.meta.url)), "--no-lock"]
      : ["--no-config"];
    return [deno.execPath(), ["run", ...configFlags, ...permissions, MAIN, ...args]];
  }
  return [process.execPath, [MAIN, ...args]];
}

/** Collects a child's output as text, and waits for a pattern to appear in it. */
export class Output {
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
export interface ExitStatus {
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal that ended it, if one did. */
  signal: string | null;
}

/** Where and how {@linkcode spawnChild} starts a child. */
export interface SpawnOptions {
  /** The working directory; this process's when not given. */
  cwd?: string;
  /** Start it as the leader of a new process group, which {@linkcode killGroup} signals. */
  detached?: boolean;
}

/** A child process with piped output, whichever runtime started it. */
export interface Child {
  pid: number;
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
export function spawnChild(
  command: string,
  args: string[],
  env: Record<string, string>,
  options: SpawnOptions = {},
): Child {
  const { cwd, detached = false } = options;
  if (deno) {
    const child = new deno.Command(command, {
      args,
      env,
      cwd,
      detached,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return {
      pid: child.pid,
      stdout: child.stdout,
      stderr: child.stderr,
      status: child.status.then(({ code, signal }) => ({ code: signal ? null : code, signal })),
      kill: (signal) => child.kill(signal),
    };
  }
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env, cwd, detached });
  return {
    pid: child.pid!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    status: new Promise((resolve, reject) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", reject);
    }),
    kill: (signal) => child.kill(signal),
  };
}

export interface Brick {
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
export function spawnBrick(args: string[], options: RunOptions = {}): Brick {
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
export async function runBrick(args: string[], options?: RunOptions) {
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
export async function startBrick(args: string[] = [], options?: RunOptions) {
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
export interface Client extends Disposable {
  /** Everything received on the connection so far. */
  received: Received;
  /** Sends `text` as UTF-8 and resolves once it is handed to the system. */
  write(text: string): Promise<void>;
  /** Sends FIN: no more bytes from the client, while it still reads. */
  closeWrite(): void;
}

/** Opens a TCP connection to brick on 127.0.0.1. */
export function connect(port: number): Promise<Client> {
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
export class Received {
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

export interface RawResponse {
  statusLine: string;
  headers: Map<string, string>;
  body: string;
}

/** Splits complete Content-Length framed responses off the front of `text`. */
export function parseResponses(text: string): RawResponse[] {
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

export const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

export const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export const DEFAULT_FLAGS = {
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
  proxy: [],
  cacheBytes: undefined,
  verbose: false,
  quiet: false,
  help: false,
  version: false,
};

/** Writes `files` into a fresh temporary folder, runs `body` with its path, and removes it. */
export async function withTempDir<T>(
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
export async function curl(args: string[]) {
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
export async function readUntil(
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

export const APP_EXAMPLE =
  'Export a fetch handler: export default { fetch(request) { return new Response("Hi") } }';

/** Deno's permissions for a CLI on a Unix socket. */
export const UNIX = ["--allow-net", "--allow-read", "--allow-write"];

/** Why curl cannot run here, or false when it can. */
export async function curlMissing(): Promise<string | false> {
  try {
    const { code } = await curl(["--version"]);
    return code === 0 ? false : "curl does not run";
  } catch {
    return "curl is not installed";
  }
}

export const NO_CURL = await curlMissing();

export const NO_OPENSSL = await opensslMissing();

/**
 * Makes a CA and a certificate for 127.0.0.1 that it signs in a temporary
 * folder, runs `body` with them, and removes the folder.
 */
export function withCertificates<T>(body: (pki: TestCertificates) => Promise<T>): Promise<T> {
  return withTempDir({}, async (dir) => await body(await makeTestCertificates(dir)));
}

/** GETs `path` on a new TLS connection that trusts only `ca`, with `Connection: close`. */
export function httpsGet(port: number, path: string, ca: string): Promise<RawResponse> {
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

/** Whether a process with this id exists. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

/**
 * Sends a signal to every process of the group that `pid` leads, as a
 * terminal does on Ctrl+C; nothing when the group is gone.
 */
export function killGroup(pid: number, signal: "SIGINT" | "SIGTERM" | "SIGKILL"): void {
  try {
    if (deno) deno.kill(-pid, signal);
    else process.kill(-pid, signal);
  } catch {
    // No process is left in the group.
  }
}

/** Whether any process of the group that `pid` leads is still running. */
export function isGroupRunning(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}

/**
 * An app whose /slow path answers after half a second, to have a request in
 * flight; it prints `slow request started` once that request has reached it.
 */
export const SLOW_APP = "export default async (request) => {\n" +
  '  if (new URL(request.url).pathname === "/slow") {\n' +
  '    console.log("slow request started");\n' +
  "    await new Promise((resolve) => setTimeout(resolve, 500));\n" +
  "  }\n" +
  '  return new Response("done\\n");\n' +
  "};\n";
