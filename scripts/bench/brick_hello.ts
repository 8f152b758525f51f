/**
 * Hello-world server on brick, measured by `deno task bench`.
 *
 * Listens on 127.0.0.1 at the port given as the first argument, or on a free port when the
 * argument is missing or 0, and prints `LISTENING <port>` on stdout once it accepts connections.
 *
 * ```sh
 * deno run --allow-net scripts/bench/brick_hello.ts [port]
 * ```
 *
 * @module
 */

import { serve } from "../../mod.ts";

const port = Number(Deno.args[0] ?? 0);

serve(
  {
    port,
    hostname: "127.0.0.1",
    onListen: ({ port }) => console.log(`LISTENING ${port}`),
  },
  (_req) => new Response("Hello, World!"),
);
