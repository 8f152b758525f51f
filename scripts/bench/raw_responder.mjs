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
 * It serves the bodiless scenarios (`hello`, `hello-h2load`, `close`, `pipeline`, `idle`), which
 * it reads as heads only, and `post`, where it also finds each head's Content-Length and copies
 * the body into a new array of its own, as a server that hands each body over whole must: the
 * floor of that scenario's CPU and memory. No other framing is understood. The answer is a 200
 * with `Hello, World!`, a Content-Length and a Date, like the other servers'; in `close` the
 * connection closes after it, as the request asks. Every answer to the requests of one read
 * leaves in one write. The command line is described in `_server_args.mjs`.
 *
 * @module
 */

import process from "node:process";
import { HELLO, parseServerArgs } from "./_server_args.mjs";

const { scenario, port } = parseServerArgs(process.argv.slice(2));
if (!["hello", "hello-h2load", "close", "pipeline", "idle", "post"].includes(scenario)) {
  console.error(`error: the raw responder cannot serve the ${scenario} scenario`);
  process.exit(2);
}
const closeAfter = scenario === "close";
/** Counts the requests that end in a chunk: heads alone, or heads and their bodies in `post`. */
const countRequests = scenario === "post" ? countPosts : countHeads;

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
    matched = nextMatched(matched, chunk[i]);
    if (matched === 4) {
      heads++;
      matched = 0;
    }
  }
  state.matched = matched;
  return heads;
}

/** How much of CR LF CR LF is matched once `byte` follows `matched` bytes of it; 4 ends a head. */
function nextMatched(matched, byte) {
  if (byte === (matched % 2 === 0 ? 13 : 10)) return matched + 1;
  return byte === 13 ? 1 : 0;
}

const CONTENT_LENGTH = encoder.encode("\ncontent-length:");

/** A new reading state: where the head scan and the body being received stand. */
function newState() {
  return { matched: 0, name: 0, inLength: false, length: 0, body: null, received: 0 };
}

/**
 * Counts the requests whose head and Content-Length body end in `chunk`. Each body is copied
 * into a new array of its length, dropped once complete. The state carries over between chunks.
 */
function countPosts(state, chunk) {
  let requests = 0;
  for (let i = 0; i < chunk.length; i++) {
    if (state.body !== null) {
      const take = Math.min(chunk.length - i, state.body.length - state.received);
      state.body.set(chunk.subarray(i, i + take), state.received);
      state.received += take;
      i += take - 1;
      if (state.received === state.body.length) {
        state.body = null;
        requests++;
      }
      continue;
    }
    const byte = chunk[i];
    if (state.inLength) {
      if (byte >= 48 && byte <= 57) state.length = state.length * 10 + byte - 48;
      else if (byte !== 32) state.inLength = false;
    } else if ((byte >= 65 && byte <= 90 ? byte + 32 : byte) === CONTENT_LENGTH[state.name]) {
      if (++state.name === CONTENT_LENGTH.length) {
        state.inLength = true;
        state.name = 0;
      }
    } else state.name = byte === 10 ? 1 : 0;
    state.matched = nextMatched(state.matched, byte);
    if (state.matched < 4) continue;
    state.matched = 0;
    if (state.length > 0) {
      state.body = new Uint8Array(state.length);
      state.received = 0;
    } else requests++;
    state.length = 0;
    state.inLength = false;
  }
  return requests;
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

/**
 * Bytes read at once on Deno. Small but for bodies: a 64 KiB buffer per connection cost the close
 * scenario 158k instructions a connection under callgrind, against 65k with 4 KiB (zeroing it and
 * collecting it), and made the responder a false ceiling there.
 */
const READ_BYTES = scenario === "post" ? 65_536 : 4_096;

async function serveDenoConn(conn) {
  const buffer = new Uint8Array(READ_BYTES);
  const state = newState();
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) return;
    const heads = countRequests(state, buffer.subarray(0, n));
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
        socket.data = newState();
        socket.data.unsent = null;
      },
      data(socket, chunk) {
        const heads = countRequests(socket.data, chunk);
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

/** node:net: Node's own sockets, imported only here, so that Deno and Bun do not load it. */
async function serveNode() {
  const { default: net } = await import("node:net");
  const server = net.createServer({ noDelay: true }, (socket) => {
    const state = newState();
    socket.on("data", (chunk) => {
      const heads = countRequests(state, chunk);
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
else await serveNode();
