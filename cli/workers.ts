/**
 * The supervisor of `--workers n`. It checks the flags, the files and the
 * port, starts n workers that each run the same command line and listen on
 * the same port, prints one banner once all of them listen, restarts a worker
 * that ends, and on SIGINT or SIGTERM asks each to shut down gracefully.
 * The workers are:
 *   - on Deno, threads (Web Workers) of this process. They inherit its
 *     permissions, import map and flags as they are; each listens with
 *     SO_REUSEPORT, which Deno still marks unstable (--unstable-net).
 *     Their access log lines go to the shared stdout, one write per line.
 *   - on Bun, child processes, each listening with SO_REUSEPORT.
 *   - on Node, node:cluster processes: Node before 22.12 has no
 *     SO_REUSEPORT, so the workers share the supervisor's listening socket.
 *     Child processes write their output to pipes; the supervisor passes it
 *     on in whole lines, so lines from two workers never mix.
 *
 * @module
 */

import type { ChildProcess } from "node:child_process";
import net from "node:net";
import { basename } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import type { Target } from "./app.ts";
import { printBanner, proxyBanner } from "./banner.ts";
import { MAIN_URL } from "./command.ts";
import { canRead, CliError, commandFor, describeListenError, listenExitCode } from "./errors.ts";
import type { Flags } from "./flags.ts";
import { onShutdownSignal } from "./signals.ts";
import { THREAD_PREFIX, WORKER_ENV, type WorkerAssignment } from "./worker.ts";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;
/** Whether this runs on Bun. */
const bun = typeof (process.versions as { bun?: string }).bun === "string";

/** How a worker ended: its exit code, or the signal that ended it. */
interface WorkerExit {
  code: number | null;
  signal: string | null;
}

/** The supervisor's handle on one worker, a thread or a process. */
interface WorkerHandle {
  readonly assignment: WorkerAssignment;
  /** The process id; undefined for a thread. */
  readonly pid: number | undefined;
  /** Resolves once the worker listens. */
  readonly listening: Promise<void>;
  /** Resolves once the worker has ended, however it ended, and its output is passed on. */
  readonly exited: Promise<WorkerExit>;
  /** Asks the worker to shut down gracefully. */
  stop(): void;
  /** Ends the worker at once. */
  kill(): void;
}

type StartWorker = (assignment: WorkerAssignment) => WorkerHandle;

/** Starts a worker thread on Deno, running this module with `args`. */
function startThread(assignment: WorkerAssignment, args: string[]): WorkerHandle {
  const worker = new Worker(MAIN_URL, {
    type: "module",
    name: `${THREAD_PREFIX}${assignment.id}`,
  });
  let ended = false;
  let settle!: (exit: WorkerExit) => void;
  const exited = new Promise<WorkerExit>((resolve) => settle = resolve);
  const end = (exit: WorkerExit) => {
    if (ended) return;
    ended = true;
    worker.terminate();
    settle(exit);
  };
  const listening = new Promise<void>((resolve) => {
    worker.onmessage = (event: MessageEvent) => {
      const message = (event.data ?? {}) as { brick?: unknown; code?: unknown };
      if (message.brick === "listening") resolve();
      if (message.brick === "exit") {
        end({ code: typeof message.code === "number" ? message.code : 1, signal: null });
      }
    };
  });
  // An uncaught error ends the thread (Deno prints it); handled here, it
  // does not end the process.
  worker.onerror = (event) => {
    event.preventDefault();
    end({ code: 1, signal: null });
  };
  worker.postMessage({ brick: "start", args, ...assignment });
  return {
    assignment,
    pid: undefined,
    listening,
    exited,
    stop: () => ended || worker.postMessage({ brick: "stop" }),
    kill: () => end({ code: null, signal: "SIGKILL" }),
  };
}

/** How long the supervisor waits for a worker's output to end after the worker has exited. */
const OUTPUT_DRAIN_MS = 1000;

/** Watches a worker process: its messages, its exit, and its output, passed on in whole lines. */
function watchProcess(child: ChildProcess, assignment: WorkerAssignment): WorkerHandle {
  const output = [
    relayLines(child.stdout, process.stdout),
    relayLines(child.stderr, process.stderr),
  ];
  const listening = new Promise<void>((resolve) => {
    child.on("message", (message: { brick?: unknown } | null) => {
      if (message?.brick === "listening") resolve();
    });
  });
  const exited = new Promise<WorkerExit>((resolve) => {
    child.once("exit", (code, signal) => {
      // The last lines may still be in the pipes; a process that the worker
      // started may hold them open, so do not wait for long.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const drained = new Promise((resolve) => timer = setTimeout(resolve, OUTPUT_DRAIN_MS));
      Promise.race([Promise.all(output), drained]).then(() => {
        clearTimeout(timer);
        resolve({ code, signal });
      });
    });
    child.once("error", (error) => {
      console.error(`Cannot start worker ${assignment.id}: ${error.message}`);
      resolve({ code: 1, signal: null });
    });
  });
  const send = (signal: "SIGTERM" | "SIGKILL") => {
    try {
      child.kill(signal);
    } catch {
      // It has exited meanwhile.
    }
  };
  return {
    assignment,
    pid: child.pid,
    listening,
    exited,
    stop: () => send("SIGTERM"),
    kill: () => send("SIGKILL"),
  };
}

/** The longest unfinished line of a worker's output held back before it is passed on anyway. */
const MAX_HELD_BYTES = 65_536;

const NEWLINE = new Uint8Array([10]);

/**
 * Passes a worker's output on to `target` in whole lines: each write ends
 * with a line break, so lines from two workers never mix. Resolves once
 * `source` has ended.
 */
function relayLines(
  source: NodeJS.ReadableStream | null,
  target: NodeJS.WritableStream,
): Promise<void> {
  if (source === null) return Promise.resolve();
  let held: Uint8Array = new Uint8Array(0);
  const write = (bytes: Uint8Array) => {
    try {
      target.write(bytes);
    } catch {
      // A closed stdout must not take the supervisor down.
    }
  };
  source.on("data", (chunk: Uint8Array) => {
    const end = chunk.lastIndexOf(10);
    if (end === -1) {
      held = concatBytes(held, chunk);
      if (held.length >= MAX_HELD_BYTES) {
        write(held);
        held = new Uint8Array(0);
      }
      return;
    }
    write(concatBytes(held, chunk.subarray(0, end + 1)));
    held = chunk.slice(end + 1);
  });
  return new Promise((resolve) => {
    const finish = () => {
      if (held.length > 0) write(concatBytes(held, NEWLINE));
      held = new Uint8Array(0);
      resolve();
    };
    source.once("end", finish);
    source.once("error", finish);
  });
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const bytes = new Uint8Array(a.length + b.length);
  bytes.set(a);
  bytes.set(b, a.length);
  return bytes;
}

/** How this runtime starts a worker: a thread on Deno, a process on Node and Bun. */
async function workerStarter(args: string[]): Promise<StartWorker> {
  if (deno) return (assignment) => startThread(assignment, args);
  const script = fileURLToPath(MAIN_URL);
  const env = (assignment: WorkerAssignment) => ({ [WORKER_ENV]: JSON.stringify(assignment) });
  if (bun) {
    const { fork } = await import("node:child_process");
    return (assignment) => {
      const child = fork(script, args, {
        env: { ...process.env, ...env(assignment) },
        silent: true,
      });
      return watchProcess(child, assignment);
    };
  }
  const { default: cluster } = await import("node:cluster");
  cluster.setupPrimary({ exec: script, args, silent: true });
  return (assignment) => watchProcess(cluster.fork(env(assignment)).process, assignment);
}

/** A worker that exits sooner than this after it started counts as a quick exit. */
const QUICK_EXIT_MS = 10_000;

/** The quick exits in a row of one worker after which the supervisor gives up. */
const MAX_QUICK_EXITS = 5;

/** The pause before restarting a worker after a quick exit; it doubles with each one in a row. */
const RESTART_DELAY_MS = 100;

/** How long workers may take to stop: their own graceful shutdown (10 s) and some. */
const STOP_TIMEOUT_MS = 15_000;

/** How long a second signal waits for the killed workers to be gone before brick exits. */
const FORCED_EXIT_MS = 2000;

/** "worker 2 (pid 1234)", or "worker 2" for a thread. */
function describeWorker(worker: WorkerHandle): string {
  const pid = worker.pid === undefined ? "" : ` (pid ${worker.pid})`;
  return `worker ${worker.assignment.id}${pid}`;
}

function describeExit(exit: WorkerExit): string {
  return exit.code === null ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

/** Starts n workers, restarts those that end, and stops them all. */
class Supervisor {
  /** Resolves with the exit code once every worker has ended after {@linkcode stop} or {@linkcode kill}. */
  readonly done: Promise<number>;
  readonly #workers = new Map<number, WorkerHandle>();
  readonly #starts: number[];
  readonly #quickExits: number[];
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #stopping = false;
  #exitCode = 0;
  #finish!: (code: number) => void;

  constructor(
    readonly count: number,
    readonly port: number,
    readonly startWorker: StartWorker,
    readonly log: (line: string) => void,
  ) {
    this.#starts = new Array(count).fill(0);
    this.#quickExits = new Array(count).fill(0);
    this.done = new Promise((resolve) => this.#finish = resolve);
  }

  /** The process ids of the running workers, or undefined when they are threads. */
  get pids(): number[] | undefined {
    const workers = [...this.#workers.values()].sort((a, b) => a.assignment.id - b.assignment.id);
    if (workers.some((worker) => worker.pid === undefined)) return undefined;
    return workers.map((worker) => worker.pid!);
  }

  /**
   * Starts the workers: the first alone, so that an app that cannot load says
   * so once, then the others together.
   *
   * @returns Undefined once each has listened, or the exit code of the first
   * that ended before it listened; the others are stopped then.
   */
  async start(): Promise<number | undefined> {
    const first = await this.#startAndWait(1);
    if (first !== undefined) return first;
    const ids = Array.from({ length: this.count - 1 }, (_, i) => i + 2);
    const others = await Promise.all(ids.map((id) => this.#startAndWait(id)));
    const failed = others.find((code) => code !== undefined);
    if (failed === undefined) return undefined;
    this.stop();
    await this.done;
    return failed;
  }

  async #startAndWait(id: number): Promise<number | undefined> {
    if (this.#stopping) return undefined;
    const worker = this.#launch(id);
    const exit = await Promise.race([worker.listening.then(() => null), worker.exited]);
    return exit === null || this.#stopping ? undefined : exit.code || 1;
  }

  #launch(id: number): WorkerHandle {
    const start = ++this.#starts[id - 1];
    const startedAt = Date.now();
    const worker = this.startWorker({ id, port: this.port, start });
    this.#workers.set(id, worker);
    let listened = false;
    worker.listening.then(() => {
      listened = true;
      if (start > 1 && !this.#stopping) this.log(`${describeWorker(worker)} is listening`);
    });
    worker.exited.then((exit) => {
      if (this.#workers.get(id) === worker) this.#workers.delete(id);
      if (this.#stopping) this.#finishIfDone();
      // A first start that fails is start()'s to report.
      else if (listened || start > 1) this.#restart(worker, exit, Date.now() - startedAt);
    });
    return worker;
  }

  /** Restarts a worker that ended, after a pause that grows while it keeps ending soon after its start. */
  #restart(worker: WorkerHandle, exit: WorkerExit, lifetime: number): void {
    const { id } = worker.assignment;
    const quickExits = this.#quickExits[id - 1] = lifetime < QUICK_EXIT_MS
      ? this.#quickExits[id - 1] + 1
      : 0;
    const what = `${describeWorker(worker)} ${describeExit(exit)}`;
    if (quickExits >= MAX_QUICK_EXITS) {
      this.log(
        `${what}; giving up: it ended ${quickExits} times in a row within ` +
          `${QUICK_EXIT_MS / 1000} s of its start (its errors are above)`,
      );
      this.#exitCode = 1;
      this.stop();
      return;
    }
    const delay = quickExits === 0 ? 0 : RESTART_DELAY_MS * 2 ** (quickExits - 1);
    this.log(`${what}; restarting${delay > 0 ? ` in ${delay} ms` : ""}`);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#stopping) this.#launch(id);
    }, delay);
    this.#timers.add(timer);
  }

  /** Asks every worker to shut down gracefully, and kills those still running after a while. */
  stop(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#clearTimers();
    for (const worker of this.#workers.values()) worker.stop();
    const deadline = setTimeout(() => {
      for (const worker of this.#workers.values()) {
        this.log(`${describeWorker(worker)} did not stop within ${STOP_TIMEOUT_MS / 1000} s`);
        worker.kill();
      }
    }, STOP_TIMEOUT_MS);
    this.done.then(() => clearTimeout(deadline));
    this.#finishIfDone();
  }

  /** Ends every worker at once. */
  kill(): void {
    this.#stopping = true;
    this.#clearTimers();
    for (const worker of this.#workers.values()) worker.kill();
  }

  #clearTimers(): void {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }

  #finishIfDone(): void {
    if (this.#workers.size === 0) this.#finish(this.#exitCode);
  }
}

/**
 * Checks that `host:port` is free by binding it for a moment, and returns the
 * port, the one the system picked when `port` is 0, for every worker to share.
 * Binding without SO_REUSEPORT first also keeps the workers from joining the
 * sockets of another server that listens there with it.
 */
async function probePort(host: string, port: number): Promise<number> {
  if (deno) {
    const listener = deno.listen({ hostname: host, port });
    const picked = (listener.addr as Deno.NetAddr).port;
    listener.close();
    return picked;
  }
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host, port }, resolve);
  });
  const picked = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return picked;
}

/**
 * Checks what workers need on Deno: `--unstable-net`, since they listen with
 * SO_REUSEPORT, and read access to this module, which each thread loads.
 *
 * @throws {CliError} With exit code 2 and the command to run instead.
 */
export function checkWorkerSupport(flags: Flags, args: string[]): void {
  if (!deno) return;
  const missing: string[] = [];
  // Deno.listenDatagram exists only with --unstable-net (or "unstable": ["net"] in deno.json).
  if (typeof (deno as { listenDatagram?: unknown }).listenDatagram !== "function") {
    missing.push("--unstable-net, as the workers share the port with SO_REUSEPORT");
  }
  // Each thread loads main.ts and the modules of this folder.
  const files = MAIN_URL.startsWith("file:")
    ? [fileURLToPath(MAIN_URL), fileURLToPath(new URL(".", import.meta.url))]
    : [];
  if (files.some((path) => !canRead(path))) {
    missing.push(`read access to ${basename(files[0])}, which each worker thread loads`);
  }
  if (missing.length === 0) return;
  throw new CliError(
    `Cannot start ${flags.workers} workers: Deno needs ${missing.join(", and ")}\n` +
      `Run it with them instead: ${commandFor(flags, args)}`,
    2,
  );
}

/**
 * Runs the workers until a SIGINT or SIGTERM: picks the port, starts them,
 * prints the banner once all listen, restarts any that ends, then stops them
 * all gracefully (a second signal kills them).
 *
 * @returns The exit code: `0` after a graceful shutdown, `130` when forced,
 * `1` when a worker kept crashing or the port is taken, or the exit code of a
 * worker that ended before it listened (`2` for an app without a handler).
 */
export async function superviseWorkers(
  flags: Flags,
  args: string[],
  target: Target,
): Promise<number> {
  let port: number;
  try {
    port = await probePort(flags.host, flags.port);
  } catch (error) {
    console.error(describeListenError(error, flags, args));
    return listenExitCode(error);
  }
  for (const stream of [process.stdout, process.stderr]) {
    // A closed stdout must not take the supervisor down.
    stream.on?.("error", () => {});
  }
  const log = (line: string) => {
    try {
      console.error(line);
    } catch {
      // As above.
    }
  };
  const supervisor = new Supervisor(flags.workers, port, await workerStarter(args), log);
  let stopping = false;
  let forced = false;
  let forceTimer: ReturnType<typeof setTimeout> | undefined;
  let stopWaiting!: () => void;
  const waitedEnough = new Promise<void>((resolve) => stopWaiting = resolve);
  const removeSignalListeners = onShutdownSignal({
    shutDown() {
      stopping = true;
      log("Shutting down");
      supervisor.stop();
    },
    force() {
      if (forced) return;
      forced = true;
      log("Forcing exit");
      supervisor.kill();
      // Killed processes exit at once: wait for that, briefly, so that none is left unreaped.
      forceTimer = setTimeout(stopWaiting, FORCED_EXIT_MS);
    },
  });
  try {
    const failed = await Promise.race([supervisor.start(), waitedEnough.then(() => undefined)]);
    if (!stopping && failed !== undefined) return failed;
    if (!stopping) {
      const workers = { count: flags.workers, pids: supervisor.pids };
      const tls = flags.cert !== undefined;
      printBanner(flags.host, port, target, { tls, workers, proxy: proxyBanner(flags) });
    }
    const code = await Promise.race([supervisor.done, waitedEnough.then(() => 130)]);
    return forced ? 130 : code;
  } finally {
    clearTimeout(forceTimer);
    removeSignalListeners();
  }
}
