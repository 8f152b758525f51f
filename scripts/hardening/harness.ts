/**
 * Child processes for the hardening tests, the fuzzer and the stress runs: a
 * brick target server ({@linkcode startTarget}) or any command
 * ({@linkcode spawnProcess}), and what Linux's `/proc` says about them (open
 * file descriptors, resident memory).
 *
 * Portable: it runs on Deno from the source and on Node from the npm build
 * (`npm/scripts/hardening/harness.js`), and starts the target on either.
 *
 * @example Usage
 * ```ts ignore
 * import { startTarget } from "./harness.ts";
 *
 * await using target = await startTarget({ readHeaderTimeout: 1000 });
 * console.log(target.port, target.stats());
 * ```
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

/** Deno's API when this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;

/** A runtime the target server can run on. */
export type Runtime = "deno" | "node";

/** The runtime running this module. Bun counts as Node: it runs the npm build. */
export const CURRENT_RUNTIME: Runtime = deno ? "deno" : "node";

/** Whether `/proc` can tell file descriptors and memory of a process (Linux). */
export const HAS_PROC: boolean = existsSync("/proc/self/fd");

// ─── Processes ──────────────────────────────────────────────────────────────

/** How a child process ended. */
export interface ExitStatus {
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal that ended it, if one did. */
  signal: string | null;
}

/** A running child process with its output collected as text. */
export interface ChildProcess extends AsyncDisposable {
  /** The process id, for `/proc/<pid>` and signals. */
  readonly pid: number;
  /** Everything the child printed to stdout so far. */
  readonly stdout: string;
  /** Everything the child printed to stderr so far. */
  readonly stderr: string;
  /** Settles once the child has exited and its output is drained. */
  readonly exited: Promise<ExitStatus>;
  /** Whether the child has exited. */
  readonly running: boolean;
  /** Sends a signal; does nothing once the child has exited. */
  kill(signal: "SIGTERM" | "SIGINT" | "SIGKILL"): void;
  /**
   * Resolves with the first match of `pattern` in stdout; rejects after `ms`
   * or when the child exits first.
   */
  waitForOutput(pattern: RegExp, ms?: number): Promise<RegExpMatchArray>;
}

/** Options for {@linkcode spawnProcess}. */
export interface SpawnOptions {
  /** Raise the soft limit of open files to the hard limit first (through `bash -c ulimit`). */
  raiseFdLimit?: boolean;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/**
 * Starts `command` with stdin closed and stdout and stderr collected. On Deno
 * it uses `Deno.Command`, which reports a child that handled SIGTERM and exited
 * with its own exit code (Deno's `node:child_process` reports the signal).
 *
 * @param command The program to run.
 * @param args Its arguments.
 * @param options Environment and file descriptor limit.
 * @returns The running child; `await using` kills it at the end of the scope.
 */
export function spawnProcess(
  command: string,
  args: string[],
  options: SpawnOptions = {},
): ChildProcess {
  if (options.raiseFdLimit && existsSync("/bin/bash")) {
    // `exec` keeps the pid, so /proc/<pid> is the program itself.
    args = ["-c", 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"', command, ...args];
    command = "/bin/bash";
  }
  const env = { ...process.env, NO_COLOR: "1", ...options.env } as Record<string, string>;
  return deno ? spawnWithDeno(deno, command, args, env) : spawnWithNode(command, args, env);
}

/** The state {@linkcode spawnProcess}'s two implementations share. */
class Collected {
  stdout = "";
  stderr = "";
  running = true;
  #waiters = new Set<() => void>();

  changed(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  async read(stream: AsyncIterable<Uint8Array>, into: "stdout" | "stderr"): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) {
        this[into] += decoder.decode(chunk, { stream: true });
        this.changed();
      }
    } catch {
      // The pipe broke: keep what arrived.
    }
    this[into] += decoder.decode();
  }

  waitForOutput(pattern: RegExp, ms = 10_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = this.stdout.match(pattern);
        if (match) done(() => resolve(match));
        else if (!this.running) {
          done(() =>
            reject(
              new Error(`The process exited before printing ${pattern}; stderr: ${this.stderr}`),
            )
          );
        }
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(
              new Error(`Timed out after ${ms} ms waiting for ${pattern} in ${this.stdout}`),
            )
          ),
        ms,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        settle();
      };
      this.#waiters.add(check);
      check();
    });
  }
}

function spawnWithDeno(
  runtime: typeof Deno,
  command: string,
  args: string[],
  env: Record<string, string>,
): ChildProcess {
  const child = new runtime.Command(command, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const collected = new Collected();
  const drained = Promise.all([
    collected.read(child.stdout, "stdout"),
    collected.read(child.stderr, "stderr"),
  ]);
  const exited = child.status.then(async ({ code, signal }) => {
    await drained;
    collected.running = false;
    collected.changed();
    return { code: signal ? null : code, signal };
  });
  return wrapChild(child.pid, collected, exited, (signal) => child.kill(signal));
}

function spawnWithNode(command: string, args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env });
  const collected = new Collected();
  const drained = Promise.all([
    collected.read(child.stdout!, "stdout"),
    collected.read(child.stderr!, "stderr"),
  ]);
  const status = new Promise<ExitStatus>((resolve, reject) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", reject);
  });
  const exited = status.then(async (result) => {
    await drained;
    collected.running = false;
    collected.changed();
    return result;
  }, (error) => {
    collected.running = false;
    collected.changed();
    throw error;
  });
  return wrapChild(child.pid ?? -1, collected, exited, (signal) => child.kill(signal));
}

function wrapChild(
  pid: number,
  collected: Collected,
  exited: Promise<ExitStatus>,
  kill: (signal: "SIGTERM" | "SIGINT" | "SIGKILL") => void,
): ChildProcess {
  exited.catch(() => {});
  return {
    pid,
    exited,
    get stdout() {
      return collected.stdout;
    },
    get stderr() {
      return collected.stderr;
    },
    get running() {
      return collected.running;
    },
    kill(signal) {
      if (!collected.running) return;
      try {
        kill(signal);
      } catch {
        // It exited in the meantime.
      }
    },
    waitForOutput: (pattern, ms) => collected.waitForOutput(pattern, ms),
    async [Symbol.asyncDispose]() {
      if (collected.running) {
        try {
          kill("SIGKILL");
        } catch {
          // It exited in the meantime.
        }
      }
      await exited.catch(() => {});
    },
  };
}

// ─── /proc ──────────────────────────────────────────────────────────────────

/** What `/proc` says about a process at one moment. */
export interface ProcessStats {
  /** Open file descriptors (entries of `/proc/<pid>/fd`). */
  fds: number;
  /** Resident set size in bytes (`VmRSS`). */
  rss: number;
  /** The largest resident set size so far in bytes (`VmHWM`). */
  peakRss: number;
}

/**
 * Reads the open file descriptors and memory of process `pid` from `/proc`.
 *
 * @param pid The process id; the default is this process.
 * @returns The figures, or null where there is no `/proc` (not Linux) or the
 * process is gone.
 */
export function processStats(pid: number | "self" = "self"): ProcessStats | null {
  if (!HAS_PROC) return null;
  try {
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (field: string) =>
      Number(status.match(new RegExp(`^${field}:\\s+(\\d+)`, "m"))?.[1]);
    return { fds, rss: kib("VmRSS") * 1024, peakRss: kib("VmHWM") * 1024 };
  } catch {
    return null;
  }
}

/**
 * Whether some process still holds the server's end of the TCP connection
 * from 127.0.0.1:`clientPort` to `serverPort`, from `/proc/net/tcp`: a socket
 * whose owner closed it is gone from the table, or listed with inode 0 while
 * the kernel still sends what it holds. Null without `/proc`. Unlike a count
 * of the server's descriptors, this is not fooled by the runtime opening or
 * closing other files meanwhile.
 */
export function serverHoldsConnection(serverPort: number, clientPort: number): boolean | null {
  if (!HAS_PROC) return null;
  const hex = (port: number) => port.toString(16).toUpperCase().padStart(4, "0");
  const local = `0100007F:${hex(serverPort)}`;
  const remote = `0100007F:${hex(clientPort)}`;
  try {
    for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n")) {
      const columns = line.trim().split(/\s+/);
      // sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode
      if (columns[1] === local && columns[2] === remote) return columns[9] !== "0";
    }
    return false;
  } catch {
    return null;
  }
}

/** The soft and hard limits of open files of process `pid`, from `/proc/<pid>/limits`. */
export function fdLimits(pid: number | "self" = "self"): { soft: number; hard: number } | null {
  if (!HAS_PROC) return null;
  try {
    const limits = readFileSync(`/proc/${pid}/limits`, "utf8");
    const match = limits.match(/^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m);
    if (!match) return null;
    const value = (s: string) => s === "unlimited" ? Infinity : Number(s);
    return { soft: value(match[1]), hard: value(match[2]) };
  } catch {
    return null;
  }
}

// ─── The target server ──────────────────────────────────────────────────────

/** Options for the target: brick's serve() options that fit in JSON (see mod.ts for each). */
export interface TargetOptions {
  /** `serve()`'s readHeaderTimeout. */
  readHeaderTimeout?: number;
  /** `serve()`'s readTimeout. */
  readTimeout?: number;
  /** `serve()`'s writeTimeout. */
  writeTimeout?: number;
  /** `serve()`'s idleTimeout. */
  idleTimeout?: number;
  /** `serve()`'s maxHeaderBytes. */
  maxHeaderBytes?: number;
  /** `serve()`'s maxBodyBytes. */
  maxBodyBytes?: number;
  /** `serve()`'s shutdownTimeout. */
  shutdownTimeout?: number;
  /** `serve()`'s maxConnections. */
  maxConnections?: number;
  /** The most bytes `/stream` sends (the target's own limit, not brick's). @default {2 ** 40} */
  maxStreamBytes?: number;
}

/** Where and how to start the target. */
export interface TargetLaunch {
  /** The runtime to run it on; the default is the one running this module. */
  runtime?: Runtime;
  /**
   * The npm build's directory, for a Node target started from Deno. The
   * default is `npm/` in the repository.
   */
  npmDir?: string;
  /** Raise the target's limit of open files to the hard limit. @default {true} */
  raiseFdLimit?: boolean;
}

/** A target server running in a child process. */
export interface Target extends AsyncDisposable {
  /** The process it runs in. */
  readonly process: ChildProcess;
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  /** The runtime it runs on. */
  readonly runtime: Runtime;
  /** Its open file descriptors and memory now, or null without `/proc`. */
  stats(): ProcessStats | null;
  /** SIGTERM, then waits for the exit (SIGKILL after `ms`). */
  stop(ms?: number): Promise<ExitStatus>;
}

/**
 * The command line that runs `scripts/hardening/target` on `runtime`: from the
 * source on Deno, from the npm build on Node.
 *
 * @param runtime The runtime to run it on.
 * @param options Its serve() options.
 * @param npmDir The npm build, for Node from Deno.
 * @returns The program and its arguments.
 */
export function targetCommand(
  runtime: Runtime,
  options: TargetOptions,
  npmDir?: string,
): [string, string[]] {
  const here = extname(import.meta.url); // ".ts" in the source, ".js" in the build
  const json = JSON.stringify(options);
  if (runtime === "deno") {
    if (!deno || here !== ".ts") {
      throw new Error("A Deno target runs from the source: start it from Deno, not the npm build");
    }
    return [deno.execPath(), ["run", "-A", "--no-config", path("./target.ts"), json]];
  }
  const script = here === ".js"
    ? path("./target.js")
    : `${npmDir ?? path("../../npm")}/scripts/hardening/target.js`;
  if (!existsSync(script)) {
    throw new Error(
      `No Node target at ${script}: run \`deno task build:npm\` first ` +
        "(its TEST_SOURCES must include scripts/hardening/target.ts)",
    );
  }
  return [deno ? "node" : process.execPath, [script, json]];
}

/**
 * The command line that runs brick's CLI on `runtime`: `main.ts` on Deno,
 * the npm build's `main.js` on Node.
 *
 * @param runtime The runtime to run it on.
 * @param args The CLI's flags.
 * @param npmDir The npm build, for Node from Deno.
 * @returns The program and its arguments.
 */
export function cliCommand(runtime: Runtime, args: string[], npmDir?: string): [string, string[]] {
  const here = extname(import.meta.url);
  if (runtime === "deno") {
    if (!deno || here !== ".ts") {
      throw new Error("The Deno CLI runs from the source: start it from Deno");
    }
    return [deno.execPath(), ["run", "--no-config", "--allow-net", path("../../main.ts"), ...args]];
  }
  const script = here === ".js" ? path("../../main.js") : `${npmDir ?? path("../../npm")}/main.js`;
  if (!existsSync(script)) {
    throw new Error(`No npm build at ${script}: run \`deno task build:npm\``);
  }
  return [deno ? "node" : process.execPath, [script, ...args]];
}

function path(relative: string): string {
  return fileURLToPath(new URL(relative, import.meta.url));
}

/**
 * Starts `scripts/hardening/target.ts` on 127.0.0.1 with a free port in a
 * child process, and resolves once it listens.
 *
 * @param options Timeouts and limits for its `serve()`.
 * @param launch The runtime and build to use.
 * @returns The running target; `await using` stops it at the end of the scope.
 */
export async function startTarget(
  options: TargetOptions = {},
  launch: TargetLaunch = {},
): Promise<Target> {
  const runtime = launch.runtime ?? CURRENT_RUNTIME;
  const [command, args] = targetCommand(runtime, options, launch.npmDir);
  const child = spawnProcess(command, args, { raiseFdLimit: launch.raiseFdLimit ?? true });
  let port: number;
  try {
    port = Number((await child.waitForOutput(/^listening (\d+)$/m, 30_000))[1]);
  } catch (error) {
    await child[Symbol.asyncDispose]();
    throw error;
  }
  const stop = async (ms = 15_000) => {
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    try {
      return await child.exited;
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    process: child,
    port,
    runtime,
    stats: () => processStats(child.pid),
    stop,
    async [Symbol.asyncDispose]() {
      if (child.running) await stop(2000);
    },
  };
}
