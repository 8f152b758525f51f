/**
 * The raw responder: the ceiling of each runtime's rows in `deno task bench`. It answers every
 * request with the same bytes straight on the runtime's own sockets (`Deno.listen` on Deno,
 * `Bun.listen` on Bun, `node:net` on Node), without parsing more than the blank line that ends
 * a request head; no HTTP server can do less work per request on that socket API.
 *
 * ```sh
 * deno run --allow-net scripts/bench/raw_responder.mjs --scenario hello [--port 8000]
 * node scripts/bench/raw_responder.mjs --scenario pipeline
 * bun scripts/bench/raw_responder.mjs --scenario close
 * ```
 *
 * It serves the bodiless scenarios only (`hello`, `hello-h2load`, `close`, `pipeline`, `idle`):
 * a request with a body would be misread. The answer is a 200 with `Hello, World!`, a
 * Content-Length and a Date, like the other servers'; in `close` the connection closes after
 * it, as the request asks. Every answer to the requests of one read leaves in one write. The
 * command line is described in `_server_args.mjs`.
 *
 * @module
 */

import net from "node:net";
import process from "node:process";
import { HELLO, parseServerArgs } from "./_server_args.mjs";

const { scenario, port } = parseServerArgs(process.argv.slice(2));
if (!["hello", "hello-h2load", "close", "pipeline", "idle"].includes(scenario)) {
  console.error(`error: the raw responder cannot serve the ${scenario} scenario`);
  process.exit(2);
}
const closeAfter = scenario === "close";

const encoder = new TextEncoder();
/** Answers to 1, 2, … requests, rebuilt when the Date changes (at most once a second). */
let answers = [];
let answersDate = "";

/** The bytes answering `count` requests. */
function answer(count) {
  const date = new Date().toUTCString();
  if (date !== answersDate) {
    answers = [];
    answersDate = date;
  }
  let bytes = answers[count];
  if (bytes === undefined) {
    const one = encoder.encode(
      "HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n" +
        `content-length: ${HELLO.length}\r\ndate: ${date}\r\n` +
        (closeAfter ? "connection: close\r\n" : "") + `\r\n${HELLO}`,
    );
    bytes = new Uint8Array(one.length * count);
    for (let i = 0; i < count; i++) bytes.set(one, i * one.length);
    if (count <= 64) answers[count] = bytes;
  }
  return bytes;
}

/**
 * Counts the request heads that end in `chunk` (CR LF CR LF), carrying a partial match over
 * from the previous chunk in `state.matched`.
 */
function countHeads(state, chunk) {
  let heads = 0;
  let matched = state.matched;
  for (let i = 0; i < chunk.length; i++) {
    const byte = chunk[i];
    if (byte === (matched % 2 === 0 ? 13 : 10)) {
      if (++matched === 4) {
        heads++;
        matched = 0;
      }
    } else matched = byte === 13 ? 1 : 0;
  }
  state.matched = matched;
  return heads;
}

function listening(port) {
  console.log(`LISTENING ${port}`);
}

/** Deno.listen: one read loop per connection. */
async function serveDeno(Deno) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  listening(listener.addr.port);
  for await (const conn of listener) {
    conn.setNoDelay(true);
    serveDenoConn(conn).catch(() => {}).finally(() => {
      try {
        conn.close();
      } catch { /* already closed */ }
    });
  }
}

async function serveDenoConn(conn) {
  const buffer = new Uint8Array(65_536);
  const state = { matched: 0 };
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) return;
    const heads = countHeads(state, buffer.subarray(0, n));
    if (heads === 0) continue;
    const bytes = answer(heads);
    for (let written = 0; written < bytes.length;) {
      written += await conn.write(bytes.subarray(written));
    }
    if (closeAfter) return;
  }
}

/** Bun.listen: shared handlers; a write the kernel does not take whole waits for drain. */
function serveBun(Bun) {
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port,
    socket: {
      open(socket) {
        socket.data = { matched: 0, unsent: null };
      },
      data(socket, chunk) {
        const heads = countHeads(socket.data, chunk);
        if (heads === 0) return;
        const bytes = answer(heads);
        const state = socket.data;
        if (state.unsent !== null) {
          const joined = new Uint8Array(state.unsent.length + bytes.length);
          joined.set(state.unsent);
          joined.set(bytes, state.unsent.length);
          state.unsent = joined;
          return;
        }
        writeBun(socket, bytes);
      },
      drain(socket) {
        const unsent = socket.data?.unsent;
        if (unsent) {
          socket.data.unsent = null;
          writeBun(socket, unsent);
        }
      },
      error() {},
    },
  });
  listening(listener.port);
}

function writeBun(socket, bytes) {
  const n = socket.write(bytes, 0, bytes.length);
  if (n < 0) return;
  if (n < bytes.length) socket.data.unsent = bytes.subarray(n);
  else if (closeAfter) socket.end();
}

/** node:net: Node's own sockets. */
function serveNode() {
  const server = net.createServer({ noDelay: true }, (socket) => {
    const state = { matched: 0 };
    socket.on("data", (chunk) => {
      const heads = countHeads(state, chunk);
      if (heads === 0) return;
      if (closeAfter) socket.end(answer(heads));
      else socket.write(answer(heads));
    });
    socket.on("error", () => {});
  });
  server.listen(port, "127.0.0.1", () => listening(server.address().port));
}

if (globalThis.Deno) await serveDeno(globalThis.Deno);
else if (globalThis.Bun) serveBun(globalThis.Bun);
else serveNode();
