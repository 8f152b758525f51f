/**
 * Hello-world server on `node:http`, the baseline of the Node rows of `deno task bench`.
 *
 * Same response as the other bench servers: status 200, `content-type: text/plain;charset=UTF-8`
 * and the body `Hello, World!` with a Content-Length. Listens on 127.0.0.1 at the port given as
 * the first argument, or on a free port when the argument is missing or 0, and prints
 * `LISTENING <port>` on stdout once it accepts connections.
 *
 * ```sh
 * node scripts/bench/node_http.mjs [port]
 * ```
 *
 * @module
 */

import { createServer } from "node:http";
import process from "node:process";

const BODY = new TextEncoder().encode("Hello, World!");
const HEADERS = {
  "content-type": "text/plain;charset=UTF-8",
  "content-length": String(BODY.byteLength),
};

const port = Number(process.argv[2] ?? 0);

const server = createServer((_req, res) => {
  res.writeHead(200, HEADERS);
  res.end(BODY);
});
server.listen(port, "127.0.0.1", () => console.log(`LISTENING ${server.address().port}`));
