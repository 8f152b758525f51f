/**
 * `node:http`, the baseline of the Node rows of `deno task bench`.
 *
 * ```sh
 * node scripts/bench/node_http.mjs --scenario hello [--port 8000]
 * ```
 *
 * Short responses carry `content-type: text/plain;charset=UTF-8` and a Content-Length, as the
 * other servers' do. A POST body is consumed (`'data'` until `'end'`) before the answer. Static
 * files are sent with `fs.createReadStream().pipe(res)` and a Content-Length. The keep-alive
 * timeout is raised from Node's 5 s to 65 s, brick's default, so that the idle scenario compares
 * servers that both keep idle connections. The command line is described in `_server_args.mjs`.
 *
 * @module
 */

import { createReadStream, stat } from "node:fs";
import { createServer } from "node:http";
import process from "node:process";
import { HELLO, parseServerArgs, staticPath } from "./_server_args.mjs";

const BODY = new TextEncoder().encode(HELLO);
const HEADERS = {
  "content-type": "text/plain;charset=UTF-8",
  "content-length": String(BODY.byteLength),
};

const { scenario, port, root } = parseServerArgs(process.argv.slice(2));

/** @param {import("node:http").ServerResponse} res */
function sendHello(res) {
  res.writeHead(200, HEADERS);
  res.end(BODY);
}

/** @type {import("node:http").RequestListener} */
function readBody(req, res) {
  req.on("data", () => {});
  req.on("end", () => sendHello(res));
}

/** @type {import("node:http").RequestListener} */
function sendFile(req, res) {
  const path = staticPath(root, req.url ?? "/");
  const notFound = () => res.writeHead(404).end("Not Found");
  if (path === undefined) return notFound();
  stat(path, (error, stats) => {
    if (error || !stats.isFile()) return notFound();
    res.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": String(stats.size),
    });
    createReadStream(path).pipe(res);
  });
}

const server = createServer(
  scenario === "post" ? readBody : scenario === "static" ? sendFile : (_req, res) => sendHello(res),
);
server.keepAliveTimeout = 65_000;
server.listen(port, "127.0.0.1", () => console.log(`LISTENING ${server.address().port}`));
