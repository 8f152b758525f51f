/**
 * Hello-world server on Deno.serve, the baseline for `deno task bench`.
 *
 * Listens on 127.0.0.1 at the port given as the first argument, or on a free port when the
 * argument is missing or 0, and prints `LISTENING <port>` on stdout once it accepts connections.
 *
 * ```sh
 * deno run --allow-net scripts/bench/deno_hello.ts [port]
 * ```
 *
 * @module
 */

const port = Number(Deno.args[0] ?? 0);

Deno.serve(
  {
    port,
    hostname: "127.0.0.1",
    onListen: ({ port }) => console.log(`LISTENING ${port}`),
  },
  (_req) => new Response("Hello, World!"),
);
