/**
 * The hello app that `deno serve --parallel` runs as the baseline of brick's `--workers` row on
 * Deno in `deno task bench`.
 *
 * ```sh
 * DENO_JOBS=2 deno serve --parallel --allow-net --host 127.0.0.1 --port 0 scripts/bench/deno_serve_app.ts
 * ```
 *
 * Every request gets `200` with the text `Hello, World!`. Deno runs the module once per thread
 * (`DENO_JOBS` of them, all sharing the port) and calls `onListen` in the first thread only,
 * which prints `[serve-worker-0 ] LISTENING <port>`: the bench reads the port from that line.
 *
 * @module
 */

import { HELLO } from "./_server_args.mjs";

export default {
  fetch: () => new Response(HELLO),
  onListen: (addr) => console.log(`LISTENING ${(addr as Deno.NetAddr).port}`),
} satisfies Deno.ServeDefaultExport;
