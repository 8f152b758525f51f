/**
 * What every bench server shares: its command line, the short response body and the mapping
 * of a request path to the static file. Plain JavaScript with node: imports only, so the Deno,
 * Node and Bun servers all import it.
 *
 * A bench server is started as
 *
 * ```sh
 * <runtime> scripts/bench/<server> --scenario <name> [--port <n>] [--root <dir>]
 * ```
 *
 * listens on 127.0.0.1 (a free port unless `--port` names one) and prints `LISTENING <port>` on
 * stdout once it accepts connections. What it answers depends on the scenario:
 *
 * - `hello`, `close`, `pipeline`, `idle`, `workers`: any request gets `200` with the text
 *   `Hello, World!` (`workers` is for servers of several processes or threads, such as
 *   `node_cluster.mjs`).
 * - `post`: the whole request body is read, then the same short text is sent.
 * - `static`: `GET /<name>` sends the file `<root>/<name>` with a Content-Length.
 *
 * @module
 */

import { join } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";

/** The scenarios a bench server knows. */
export const SCENARIOS = [
  "hello",
  "hello-h2load",
  "close",
  "pipeline",
  "post",
  "static",
  "idle",
  "workers",
];

/** The body of every short response. */
export const HELLO = "Hello, World!";

/**
 * Reads a bench server's command line; exits with status 2 and a message on a bad one.
 *
 * @param {string[]} args the arguments after the script
 * @returns {{ scenario: string, port: number, root: string }}
 */
export function parseServerArgs(args) {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        scenario: { type: "string", default: "hello" },
        port: { type: "string", default: "0" },
        root: { type: "string", default: "" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
  const port = Number(values.port);
  if (!SCENARIOS.includes(values.scenario)) {
    fail(`Unknown scenario "${values.scenario}" (choose from ${SCENARIOS.join(", ")})`);
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`--port must be a port number, got "${values.port}"`);
  }
  if (values.scenario === "static" && values.root === "") {
    fail("The static scenario needs --root <dir>, the directory of the files to serve");
  }
  return { scenario: values.scenario, port, root: values.root };
}

/**
 * The file a static request names: `<root>/<path>`, or undefined for a path that could leave
 * the root (a `..` segment or a backslash, encoded or not).
 *
 * @param {string} root directory of the served files
 * @param {string} target the request target, such as `/file.bin` or a full URL
 * @returns {string | undefined}
 */
export function staticPath(root, target) {
  const path = target.startsWith("/") ? target.split("?")[0] : new URL(target).pathname;
  let decoded;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return undefined;
  }
  if (decoded.includes("\\") || decoded.split("/").includes("..")) return undefined;
  return join(root, decoded);
}

/** @param {string} message */
function fail(message) {
  console.error(`error: ${message}`);
  process.exit(2);
}
