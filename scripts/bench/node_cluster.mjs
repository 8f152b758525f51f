/**
 * `node:http` in a `node:cluster` of worker processes, the baseline of brick's `--workers` row
 * on Node in `deno task bench`.
 *
 * ```sh
 * WORKERS=2 node scripts/bench/node_cluster.mjs --scenario workers [--port 8000]
 * ```
 *
 * The primary process forks `WORKERS` workers (default 2), each running the same `node:http`
 * server as `node_http.mjs`; node:cluster shares one listening socket between them. Once every
 * worker listens, the primary prints `LISTENING <port>`. A worker that dies is not replaced:
 * the primary stops the others and exits with status 1, so that the bench sees the failure. On
 * SIGTERM or SIGINT the primary stops its workers and exits once they are gone.
 *
 * Every scenario but `static` gets the short text (`post` after reading the whole body); the
 * command line is described in `_server_args.mjs`.
 *
 * @module
 */

import cluster from "node:cluster";
import { createServer } from "node:http";
import process from "node:process";
import { HELLO, parseServerArgs } from "./_server_args.mjs";

const BODY = new TextEncoder().encode(HELLO);
const HEADERS = {
  "content-type": "text/plain;charset=UTF-8",
  "content-length": String(BODY.byteLength),
};
/** The most workers this script forks. */
const MAX_WORKERS = 64;
/** How long the primary waits for its workers to exit after asking them to. */
const STOP_TIMEOUT_MS = 5_000;

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

/**
 * The number of workers from the `WORKERS` environment variable; exits with status 2 on a bad
 * value.
 *
 * @returns {number}
 */
function workerCount() {
  const text = process.env.WORKERS ?? "2";
  const count = Number(text);
  if (!Number.isInteger(count) || count < 1 || count > MAX_WORKERS) {
    console.error(`error: WORKERS must be a whole number from 1 to ${MAX_WORKERS}, got "${text}"`);
    process.exit(2);
  }
  return count;
}

/** A worker: the node:http server, on the port the primary's socket has. */
function runWorker() {
  const { scenario, port } = parseServerArgs(process.argv.slice(2));
  const server = createServer(scenario === "post" ? readBody : (_req, res) => sendHello(res));
  server.keepAliveTimeout = 65_000;
  server.listen(port, "127.0.0.1");
  process.on("SIGTERM", () => process.exit(0));
  // Ctrl+C reaches the whole process group; the primary decides.
  process.on("SIGINT", () => {});
}

/** The primary: forks the workers, prints the port once all listen, stops them on a signal. */
function runPrimary() {
  const { scenario } = parseServerArgs(process.argv.slice(2));
  if (scenario === "static") {
    console.error("error: node_cluster.mjs does not serve files; use node_http.mjs for static");
    process.exit(2);
  }
  const count = workerCount();
  let listening = 0;
  let stopping = false;
  const stop = (code) => {
    if (stopping) return;
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill("SIGTERM");
    setTimeout(() => process.exit(code), STOP_TIMEOUT_MS).unref();
    const exitWhenAlone = () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(code);
    };
    cluster.on("exit", exitWhenAlone);
    exitWhenAlone();
  };
  cluster.on("listening", (_worker, address) => {
    listening++;
    if (listening === count) console.log(`LISTENING ${address.port}`);
  });
  cluster.on("exit", (worker, code, signal) => {
    if (stopping) return;
    console.error(
      `error: worker ${worker.id} ended (${signal ?? `exit code ${code}`}); stopping the others`,
    );
    stop(1);
  });
  process.on("SIGTERM", () => stop(0));
  process.on("SIGINT", () => stop(0));
  for (let i = 0; i < count; i++) cluster.fork();
}

if (cluster.isPrimary) runPrimary();
else runWorker();
