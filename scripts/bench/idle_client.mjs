/**
 * The client of the `idle` scenario of `deno task bench`: opens many keep-alive connections to a
 * server on a loopback address, sends one `GET /` on each and reads the response, then keeps
 * them all open and idle for a while and counts how many the server closed meanwhile.
 *
 * ```sh
 * node scripts/bench/idle_client.mjs --port 8000 --connections 10000 --hold 5000
 * deno run --allow-net scripts/bench/idle_client.mjs --port 8000 --connections 100
 * ```
 *
 * Raise the open-files limit first for thousands of connections (`ulimit -n 20000`). Options:
 *
 * - `--host <address>`: a loopback address (default `127.0.0.1`).
 * - `--port <n>`: the server's port (required).
 * - `--connections <n>`: how many connections to open (default 10000).
 * - `--hold <ms>`: how long to keep them idle once all are open (default 5000).
 * - `--concurrency <n>`: connections being opened at once (default 200).
 * - `--timeout <ms>`: the most the opening may take in all (default 60000).
 * - `--connection-timeout <ms>`: the time each connection has to connect and get its response
 *   (default 10000).
 *
 * It prints two lines on stdout, the first once every connection has its response (or failed)
 * and the second at the end of the hold:
 *
 * ```text
 * OPENED <open> <failed> <milliseconds spent opening>
 * HELD <still open> <closed during the hold>
 * ```
 *
 * then exits (the system closes the connections): with status 0 if every connection opened and
 * stayed open, 1 otherwise, and 2 for a bad command line. The first failure, if any, is
 * described on stderr.
 *
 * @module
 */

import net from "node:net";
import process from "node:process";
import { parseArgs } from "node:util";

/** A request kept alive (HTTP/1.1 without `Connection: close`). */
const REQUEST = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/** @param {string} message */
function usageError(message) {
  console.error(`error: ${message}`);
  process.exit(2);
}

/**
 * @param {string} name
 * @param {string | undefined} value
 * @param {number} fallback
 * @param {number} min
 */
function integerOption(name, value, fallback, min) {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isInteger(number) || number < min) {
    usageError(`--${name} must be an integer of at least ${min}, got "${value}"`);
  }
  return number;
}

/** @param {string} host */
function isLoopback(host) {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Reads the command line; exits with status 2 on a bad one. */
function parseOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: {
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string" },
        connections: { type: "string" },
        hold: { type: "string" },
        concurrency: { type: "string" },
        timeout: { type: "string" },
        "connection-timeout": { type: "string" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    usageError(error instanceof Error ? error.message : String(error));
  }
  if (!isLoopback(values.host)) {
    usageError(`--host must be a loopback address such as 127.0.0.1, got "${values.host}"`);
  }
  if (values.port === undefined) usageError("--port is required");
  return {
    host: values.host,
    port: integerOption("port", values.port, 0, 1),
    connections: integerOption("connections", values.connections, 10_000, 1),
    holdMs: integerOption("hold", values.hold, 5_000, 0),
    concurrency: integerOption("concurrency", values.concurrency, 200, 1),
    timeoutMs: integerOption("timeout", values.timeout, 60_000, 1),
    connectionTimeoutMs: integerOption(
      "connection-timeout",
      values["connection-timeout"],
      10_000,
      1,
    ),
  };
}

/**
 * Whether `text` (a response read as latin1) holds a whole response: its head and as many body
 * bytes as its Content-Length says. Returns the status code once complete, undefined before.
 *
 * @param {string} text
 * @returns {number | undefined}
 */
function completeStatus(text) {
  const headEnd = text.indexOf("\r\n\r\n");
  if (headEnd === -1) return undefined;
  const head = text.slice(0, headEnd);
  const status = Number(head.match(/^HTTP\/1\.[01] (\d{3})/)?.[1] ?? NaN);
  const length = head.match(/\r\ncontent-length:[ \t]*(\d+)/i);
  if (length && text.length - headEnd - 4 < Number(length[1])) return undefined;
  return status;
}

/** Counts of the connections. */
const counts = { open: 0, failed: 0, closed: 0 };
/** Why the first connection failed or closed, for stderr. */
let firstProblem = "";

/** @param {string} problem */
function noteProblem(problem) {
  if (firstProblem === "") firstProblem = problem;
}

/**
 * Opens one connection, sends the request and resolves once the response is in (the
 * connection then counts as open) or the connection failed (it counts as failed).
 *
 * @param {{ host: string, port: number, connectionTimeoutMs: number }} target
 * @param {net.Socket[]} sockets where the open connection is kept
 * @returns {Promise<void>}
 */
function openConnection(target, sockets) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: target.host, port: target.port });
    let received = "";
    let opened = false;
    let settled = false;
    const settle = (/** @type {string | undefined} */ problem) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (problem === undefined) {
        opened = true;
        counts.open++;
        sockets.push(socket);
      } else {
        counts.failed++;
        noteProblem(problem);
        socket.destroy();
      }
      resolve();
    };
    const timer = setTimeout(
      () => settle(`no response within ${target.connectionTimeoutMs} ms`),
      target.connectionTimeoutMs,
    );
    socket.on("connect", () => socket.write(REQUEST));
    socket.on("data", (chunk) => {
      if (opened) return;
      received += chunk.toString("latin1");
      const status = completeStatus(received);
      if (status === undefined) return;
      settle(status === 200 ? undefined : `status ${status} instead of 200`);
    });
    socket.on("error", (error) => {
      if (!opened) settle(`connection error: ${error.message}`);
    });
    socket.on("close", () => {
      if (!opened) return settle("closed before the response was complete");
      counts.open--;
      counts.closed++;
      noteProblem("the server closed an idle connection");
    });
  });
}

/** Opens the connections, `concurrency` at a time, giving up on new ones after `timeoutMs`. */
async function openAll(options, sockets) {
  const deadline = Date.now() + options.timeoutMs;
  let next = 0;
  const worker = async () => {
    while (next < options.connections && Date.now() < deadline) {
      next++;
      await openConnection(options, sockets);
    }
  };
  const workers = Math.min(options.concurrency, options.connections);
  await Promise.all(Array.from({ length: workers }, worker));
  const notTried = options.connections - next;
  if (notTried > 0) {
    counts.failed += notTried;
    noteProblem(`${notTried} connections not tried: opening took over ${options.timeoutMs} ms`);
  }
}

const options = parseOptions();
/** @type {net.Socket[]} */
const sockets = [];
const started = performance.now();
await openAll(options, sockets);
console.log(`OPENED ${counts.open} ${counts.failed} ${Math.round(performance.now() - started)}`);
await new Promise((resolve) => setTimeout(resolve, options.holdMs));
console.log(`HELD ${counts.open} ${counts.closed}`);
if (firstProblem !== "") console.error(`idle client: ${firstProblem}`);
process.exit(counts.failed === 0 && counts.closed === 0 ? 0 : 1);
