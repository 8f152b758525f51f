/**
 * `Bun.serve`, the baseline of the Bun rows of `deno task bench`.
 *
 * ```sh
 * bun scripts/bench/bun_serve.mjs --scenario hello [--port 8000]
 * ```
 *
 * Static files are sent as `new Response(Bun.file(path))`, which Bun sends with a
 * Content-Length (and sendfile). The idle timeout is raised from Bun's 10 s to 65 s, brick's
 * default, so that the idle scenario compares servers that both keep idle connections. The
 * command line and what each scenario answers are described in `_server_args.mjs`.
 *
 * @module
 */

import process from "node:process";
import { HELLO, parseServerArgs, staticPath } from "./_server_args.mjs";

const Bun = globalThis.Bun;
if (Bun === undefined) {
  console.error("error: this server runs on Bun: bun scripts/bench/bun_serve.mjs");
  process.exit(2);
}

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

/** @param {Request} request */
function sendFile(request) {
  const path = staticPath(root, request.url);
  return path === undefined
    ? new Response("Not Found", { status: 404 })
    : new Response(Bun.file(path));
}

const server = Bun.serve({
  port,
  hostname: "127.0.0.1",
  idleTimeout: 65,
  fetch: scenario === "post"
    ? readBody
    : scenario === "static"
    ? sendFile
    : () => new Response(HELLO),
});
console.log(`LISTENING ${server.port}`);
