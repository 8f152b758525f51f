/**
 * Ctrl+C and SIGTERM: the signals that shut brick down, and how a second one
 * is told apart from a wrapper's echo of the first.
 *
 * A terminal sends Ctrl+C's SIGINT to every process of the foreground group.
 * When brick runs under a wrapper (`npx`, `deno task`, npm's scripts), the
 * wrapper gets it too and passes it on to its child: brick sees the same
 * Ctrl+C twice, a few milliseconds apart. The rule:
 *
 * - the first SIGINT or SIGTERM starts the graceful shutdown;
 * - another one within {@linkcode ECHO_WINDOW_MS} of the first is that same
 *   Ctrl+C (or `kill` of the group) arriving again, and is ignored;
 * - one that comes later is a person pressing Ctrl+C again: it forces the
 *   exit.
 *
 * @module
 */

import process from "node:process";

/**
 * How long after the first shutdown signal another one still counts as an
 * echo of it: wrappers pass a signal on within milliseconds, and a person
 * takes longer to press Ctrl+C a second time.
 */
export const ECHO_WINDOW_MS = 500;

/** What a shutdown signal means, by when it came. */
export type SignalMeaning = "shut down" | "echo" | "force";

/**
 * Tells what each shutdown signal means, by the rule of this module.
 *
 * @param windowMs How long after the first signal another is an echo of it.
 * @returns A function to call with each signal's arrival time, in milliseconds.
 *
 * @example Usage
 * ```ts
 * import { signalMeanings } from "./signals.ts";
 * const meaning = signalMeanings(500);
 * console.assert(meaning(1000) === "shut down");
 * console.assert(meaning(1003) === "echo"); // npx passing the same Ctrl+C on
 * console.assert(meaning(2500) === "force"); // Ctrl+C again, later
 * ```
 */
export function signalMeanings(windowMs: number = ECHO_WINDOW_MS): (time: number) => SignalMeaning {
  let first: number | undefined;
  return (time) => {
    if (first === undefined) {
      first = time;
      return "shut down";
    }
    return time - first < windowMs ? "echo" : "force";
  };
}

/** What to do on the signals that {@linkcode onShutdownSignal} listens for. */
export interface ShutdownListeners {
  /** The first SIGINT or SIGTERM: shut down gracefully. */
  shutDown(): void;
  /** A later one, outside the echo window: exit now. */
  force(): void;
}

/**
 * Listens for SIGINT and SIGTERM, and calls `shutDown` for the first and
 * `force` for one that comes {@linkcode ECHO_WINDOW_MS} or more after it;
 * those in between are echoes of the first and are ignored.
 *
 * @param listeners What to do.
 * @returns A function that stops listening.
 */
export function onShutdownSignal(listeners: ShutdownListeners): () => void {
  const meaning = signalMeanings();
  const listener = () => {
    switch (meaning(performance.now())) {
      case "shut down":
        return listeners.shutDown();
      case "force":
        return listeners.force();
    }
  };
  const added: ("SIGINT" | "SIGTERM")[] = [];
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      process.on(signal, listener);
      added.push(signal);
    } catch {
      // Deno cannot listen for SIGTERM on Windows.
    }
  }
  return () => added.forEach((signal) => process.off(signal, listener));
}
