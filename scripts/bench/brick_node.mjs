/**
 * Hello-world server on brick running on Node (the npm build in `npm/`), measured by
 * `deno task bench`. Plain JavaScript: Node 20 does not run TypeScript.
 *
 * Listens on 127.0.0.1 at the port given as the first argument, or on a free port when the
 * argument is missing or 0, and prints `LISTENING <port>` on stdout once it accepts connections.
 *
 * ```sh
 * deno task build:npm
 * node scripts/bench/brick_node.mjs [port]
 * ```
 *
 * It imports `../../npm/mod.js`, or the file named by `BRICK_BENCH_MODULE` when that is set: the
 * bench passes a copy of `npm/mod.js` taken at its start, so that a rebuild of `npm/` during the
 * run neither breaks a server start nor mixes two builds in one report.
 *
 * @module
 */

import process from "node:process";
import { pathToFileURL } from "node:url";

const moduleUrl = process.env.BRICK_BENCH_MODULE
  ? pathToFileURL(process.env.BRICK_BENCH_MODULE).href
  : new URL("../../npm/mod.js", import.meta.url).href;
const { serve } = await import(moduleUrl);

const port = Number(process.argv[2] ?? 0);

serve(
  {
    port,
    hostname: "127.0.0.1",
    onListen: ({ port }) => console.log(`LISTENING ${port}`),
  },
  (_req) => new Response("Hello, World!"),
);
