/**
 * `Deno.serve`, the baseline of the Deno rows of `deno task bench`.
 *
 * ```sh
 * deno run --allow-net --allow-read scripts/bench/deno_serve.ts --scenario hello [--port 8000]
 * ```
 *
 * Static files are sent as `Deno.open()` + `file.readable` with a Content-Length. The command
 * line and what each scenario answers are described in `_server_args.mjs`.
 *
 * @module
 */

import { HELLO, parseServerArgs, staticPath } from "./_server_args.mjs";

type Handler = (request: Request) => Response | Promise<Response>;

const { scenario, port, root } = parseServerArgs(Deno.args);

/** Reads the whole body, then answers; a client gone mid-body (wrk stopping) gets a 400. */
async function readBody(request: Request): Promise<Response> {
  try {
    await request.arrayBuffer();
  } catch {
    return new Response(null, { status: 400 });
  }
  return new Response(HELLO);
}

async function sendFile(request: Request): Promise<Response> {
  const path = staticPath(root, request.url);
  let file;
  try {
    if (path === undefined) throw new Deno.errors.NotFound();
    file = await Deno.open(path);
  } catch {
    return new Response("Not Found", { status: 404 });
  }
  const { size } = await file.stat();
  return new Response(file.readable, {
    headers: { "content-type": "application/octet-stream", "content-length": String(size) },
  });
}

const handler: Handler = scenario === "post"
  ? readBody
  : scenario === "static"
  ? sendFile
  : () => new Response(HELLO);

Deno.serve({
  port,
  hostname: "127.0.0.1",
  onListen: ({ port }) => console.log(`LISTENING ${port}`),
}, handler);
