/**
 * Runs the RFC 9112 conformance corpus in `../shared/conformance/` against
 * brick: serves the corpus's echo app on a loopback port and runs its runner.
 *
 * ```sh
 * deno task conformance                 # every public case
 * deno task conformance --only chunked  # arguments go to run.py
 * ```
 *
 * The corpus sits beside the project in CI and on the developers' machines,
 * not on a user's: without it this script says so and exits 0.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { serve } from "../mod.ts";

const corpus = fileURLToPath(new URL("../../shared/conformance/", import.meta.url));

if (import.meta.main) {
  if (!existsSync(corpus + "run.py")) {
    console.log(`Skipping conformance: no corpus at ${corpus}`);
    Deno.exit(0);
  }
  Deno.exit(await runConformance(Deno.args));
}

/** Serves the echo app with brick, runs the corpus against it and returns the exit code. */
async function runConformance(extraArgs: string[]): Promise<number> {
  const { echo } = await import(corpus + "echo_app.ts");
  const server = serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, echo);
  try {
    return await runRunner([
      corpus + "run.py",
      "--host",
      "127.0.0.1",
      "--port",
      String(server.addr.port),
      "--cases",
      corpus + "public",
      "--strict",
      ...extraArgs,
    ]);
  } finally {
    await server.shutdown();
  }
}

function runRunner(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn("python3", args, { stdio: "inherit" });
    child.on(
      "error",
      (error) =>
        reject(new Error(`Cannot run python3 for the conformance runner: ${error.message}`)),
    );
    child.on("exit", (code) => resolve(code ?? 1));
  });
}
