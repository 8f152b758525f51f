/**
 * Ctrl+C and SIGTERM: the signals that shut brick down.
 *
 * @module
 */

import process from "node:process";

/** Listens for SIGINT and SIGTERM; returns a function that stops listening. */
export function onShutdownSignal(listener: () => void): () => void {
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
