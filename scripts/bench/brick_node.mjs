/**
 * brick's npm build (`npm/`) on Node or Bun, measured by `deno task bench`. Plain JavaScript:
 * Node 20 does not run TypeScript.
 *
 * ```sh
 * deno task build:npm
 * node scripts/bench/brick_node.mjs --scenario hello [--port 8000]
 * bun scripts/bench/brick_node.mjs --scenario static --root /tmp/files
 * ```
 *
 * It imports `mod.js` (and `file_server.js`, when present) from `../../npm/`, or from the
 * directory named by `BRICK_BENCH_NPM_DIR` when that is set: the bench passes a copy of the build
 * taken at its start, so that a rebuild of `npm/` during the run neither breaks a server start
 * nor mixes two builds in one report.
 *
 * Static files are served with `serveDir` from `file_server.js` when the build has it, and
 * otherwise with the stream fallback of `_file_response.mjs`. The command line and what each
 * scenario answers are described in `_server_args.mjs`.
 *
 * @module
 */

import { existsSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { fileResponse } from "./_file_response.mjs";
import { HELLO, parseServerArgs, staticPath } from "./_server_args.mjs";

const buildDir = process.env.BRICK_BENCH_NPM_DIR ||
  fileURLToPath(new URL("../../npm/", import.meta.url));
const { serve } = await import(pathToFileURL(join(buildDir, "mod.js")).href);

const { scenario, port, root } = parseServerArgs(process.argv.slice(2));

/**
 * Reads the whole body, then answers; a client gone mid-body (wrk stopping) gets a 400.
 *
 * @param {Request} request
 */
async function readBody(request) {
  try {
    await request.arrayBuffer();
  } catch {
    return new Response(null, { status: 400 });
  }
  return new Response(HELLO);
}

/** `serveDir` when the build has `file_server.js`, the stream fallback otherwise. */
async function staticHandler() {
  const fileServer = join(buildDir, "file_server.js");
  if (existsSync(fileServer)) {
    const { serveDir } = await import(pathToFileURL(fileServer).href);
    return (/** @type {Request} */ request) => serveDir(request, { root });
  }
  return (/** @type {Request} */ request) => {
    const path = staticPath(root, request.url);
    return path === undefined ? new Response("Not Found", { status: 404 }) : fileResponse(path);
  };
}

const handler = scenario === "post"
  ? readBody
  : scenario === "static"
  ? await staticHandler()
  : () => new Response(HELLO);

serve({
  port,
  hostname: "127.0.0.1",
  onListen: (/** @type {{ port: number }} */ { port }) => console.log(`LISTENING ${port}`),
  handler,
});
