/**
 * A worker's side of `--workers`: how a process (Node, Bun) or a thread
 * (Deno) learns that it is a worker, tells its supervisor that it listens,
 * and hears that it should stop.
 *
 * @module
 */

import process from "node:process";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;

/** What the supervisor tells a worker. */
export interface WorkerAssignment {
  /** The worker's number, 1 to n; a replacement keeps the number of the worker it replaces. */
  id: number;
  /** The port that every worker listens on. */
  port: number;
  /** How many times a worker with this number has been started, 1 for the first. */
  start: number;
}

/** A worker's side of the link to its supervisor. */
export interface WorkerRole extends WorkerAssignment {
  /** Tells the supervisor that this worker listens. */
  listening(): void;
  /**
   * Calls `listener` when the supervisor asks this worker to stop.
   *
   * @returns A function that removes the listener.
   */
  onStop(listener: () => void): () => void;
}

/** The environment variable that makes a Node or Bun process a worker: its assignment as JSON. */
export const WORKER_ENV = "BRICK_WORKER";

/** The name prefix of the threads that serve as workers on Deno. */
export const THREAD_PREFIX = "brick-worker-";

/** Reads an assignment sent by the supervisor, or undefined when it is not one. */
function parseAssignment(value: unknown): WorkerAssignment | undefined {
  const { id, port, start } = (value ?? {}) as Partial<Record<keyof WorkerAssignment, unknown>>;
  const valid = [id, port, start].every((n) => Number.isInteger(n) && (n as number) >= 0);
  return valid ? { id, port, start } as WorkerAssignment : undefined;
}

/**
 * This process's role as a worker on Node or Bun: set when the supervisor
 * started it with its assignment in the environment and an IPC channel.
 */
export function processWorkerRole(): WorkerRole | undefined {
  if (deno) return undefined;
  const text = process.env[WORKER_ENV];
  const send = process.send?.bind(process);
  if (text === undefined || send === undefined) return undefined;
  // The app's own child processes must not take themselves for workers.
  delete process.env[WORKER_ENV];
  let assignment: WorkerAssignment | undefined;
  try {
    assignment = parseAssignment(JSON.parse(text));
  } catch {
    assignment = undefined;
  }
  if (assignment === undefined) return undefined;
  // Ctrl+C in a terminal signals every process of the group. The supervisor
  // decides what it means, and sends SIGTERM.
  process.on("SIGINT", () => {});
  return {
    ...assignment,
    listening() {
      try {
        send({ brick: "listening" });
      } catch {
        // The supervisor is gone; "disconnect" stops this worker.
      }
    },
    onStop(listener) {
      process.on("SIGTERM", listener);
      process.on("disconnect", listener); // the supervisor is gone
      return () => {
        process.off("SIGTERM", listener);
        process.off("disconnect", listener);
      };
    },
  };
}

/** What a Deno worker thread sees of its global scope. */
export interface ThreadScope {
  name: string;
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
  addEventListener(type: "unload", listener: () => void): void;
}

/** This thread's global scope when it is a worker thread that the supervisor started on Deno. */
export function threadScope(): ThreadScope | undefined {
  if (!deno) return undefined;
  const scope = globalThis as unknown as Partial<ThreadScope> & { WorkerGlobalScope?: unknown };
  const isWorker = typeof scope.WorkerGlobalScope === "function";
  return isWorker && scope.name?.startsWith(THREAD_PREFIX) ? scope as ThreadScope : undefined;
}

/**
 * Serves as a worker thread on Deno: waits for the supervisor's start message
 * with the arguments and the assignment, runs the command line, and reports
 * the exit code when the server has shut down.
 */
export function serveAsThread(
  scope: ThreadScope,
  runCli: (args: string[], role: WorkerRole) => Promise<number>,
): void {
  let role: WorkerRole | undefined;
  let stopRequested = false;
  const stopListeners = new Set<() => void>();
  scope.onmessage = (event) => {
    const message = (event.data ?? {}) as { brick?: unknown; args?: unknown };
    if (message.brick === "stop") {
      stopRequested = true;
      for (const listener of [...stopListeners]) listener();
      return;
    }
    const assignment = parseAssignment(message);
    if (message.brick !== "start" || role || !assignment || !Array.isArray(message.args)) return;
    role = {
      ...assignment,
      listening: () => scope.postMessage({ brick: "listening" }),
      onStop(listener) {
        // A stop that came while the app was loading applies once it listens.
        if (stopRequested) queueMicrotask(listener);
        stopListeners.add(listener);
        return () => stopListeners.delete(listener);
      },
    };
    // A rejection reaches the supervisor as the thread's error event.
    runCli(message.args.map(String), role).then((code) => {
      scope.postMessage({ brick: "exit", code });
    });
  };
  // Deno.exit() or process.exit() in an app ends only this thread: tell the supervisor.
  scope.addEventListener("unload", () => {
    scope.postMessage({ brick: "exit", code: deno?.exitCode ?? 0 });
  });
}
