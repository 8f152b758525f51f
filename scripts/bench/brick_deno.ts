/**
 * brick on Deno, measured by `deno task bench`.
 *
 * ```sh
 * deno run --allow-net --allow-read scripts/bench/brick_deno.ts --scenario hello [--port 8000]
 * deno run --allow-net --allow-read scripts/bench/brick_deno.ts --scenario static --root /tmp/files
 * ```
 *
 * Static files are served with `serveDir` from `file_server.ts` when that module exists, and
 * otherwise with the stream fallback of `_file_response.mjs`. The command line and what each
 * scenario answers are described in `_server_args.mjs`.
 *
 * @module
 */

import { serve } from "../../mod.ts";
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

function isFile(url: URL): boolean {
  try {
    return Deno.statSync(url).isFile;
  } catch {
    return false;
  }
}

/**
 * `serveDir` when `file_server.ts` exists, the stream fallback otherwise. Both are imported only
 * for this scenario, so that the other scenarios' peak RSS counts what brick's core loads, as
 * Deno.serve's counts what Deno's does.
 */
async function staticHandler(): Promise<Handler> {
  const fileServer = new URL("../../file_server.ts", import.meta.url);
  if (isFile(fileServer)) {
    const { serveDir } = await import(fileServer.href);
    return (request) => serveDir(request, { root });
  }
  const { fileResponse } = await import("./_file_response.mjs");
  return (request) => {
    const path = staticPath(root, request.url);
    return path === undefined ? new Response("Not Found", { status: 404 }) : fileResponse(path);
  };
}

const handler: Handler = scenario === "post"
  ? readBody
  : scenario === "static"
  ? await staticHandler()
  : () => new Response(HELLO);

serve({
  port,
  hostname: "127.0.0.1",
  onListen: ({ port }) => console.log(`LISTENING ${port}`),
  handler,
});
