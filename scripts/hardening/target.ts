/**
 * The server the hardening tests, the fuzzer and the stress runs attack: brick
 * on 127.0.0.1 with a free port, in a process of its own so that a crash, its
 * file descriptors and its memory can be observed from outside.
 *
 * ```sh
 * deno run -A scripts/hardening/target.ts '{"readHeaderTimeout":1000}'
 * node npm/scripts/hardening/target.js '{"readHeaderTimeout":1000}'
 * ```
 *
 * The argument is `serve()`'s options as JSON, plus `maxStreamBytes`, the
 * most `/stream` may send (default 1 TiB). Once listening it prints
 * `listening <port>`. SIGTERM or SIGINT shuts it down gracefully; it then
 * exits 0. Lines on stderr that start with `target:` report a handler that
 * failed for a reason other than the routes that fail on purpose.
 *
 * Routes (every query number is capped, so no request can ask for more than
 * the target allows):
 *
 * | path            | answer                                                           |
 * | --------------- | ---------------------------------------------------------------- |
 * | `/`             | `ok`                                                             |
 * | `/echo`         | the request body, read whole                                     |
 * | `/bytes?n=`     | `n` bytes (≤ 1 MiB), with a Content-Length                       |
 * | `/stream?n=&chunk=` | `n` bytes (≤ `maxStreamBytes`) in `chunk`-byte pieces, chunked |
 * | `/slow?ms=`     | `ok` after `ms` (≤ 60,000)                                       |
 * | `/hang`         | never answers                                                    |
 * | `/block?ms=`    | `ok` after blocking the event loop for `ms` (≤ 5,000)            |
 * | `/throw`, `/reject`, `/not-a-response` | fail on purpose                           |
 * | `/stream-error` | a chunked stream that fails after 3 chunks                       |
 *
 * A HEAD request gets an empty 200, whatever the path: the fuzzer's response
 * parser need not know which request was a HEAD.
 *
 * @module
 */

import process from "node:process";
import { serve, type ServeOptions } from "../../mod.ts";

/** Marks an error a route throws on purpose, so it is not reported. */
const ON_PURPOSE = "on purpose";

const MAX_BYTES = 1 << 20;
const MAX_SLOW_MS = 60_000;
const MAX_BLOCK_MS = 5000;
/** The most bytes `/stream` sends; the `maxStreamBytes` option lowers it. */
let maxStream = 2 ** 40;

/** A number from the query, clamped to [0, max]; `fallback` when missing or invalid. */
function numberParam(url: URL, name: string, fallback: number, max: number): number {
  const value = Number(url.searchParams.get(name) ?? fallback);
  return Number.isFinite(value) ? Math.min(Math.max(0, Math.floor(value)), max) : fallback;
}

/** A stream of `total` bytes in `chunk`-byte pieces, made as the consumer pulls. */
function byteStream(total: number, chunk: number): ReadableStream<Uint8Array> {
  const piece = new Uint8Array(chunk).fill(0x61);
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) return controller.close();
      const n = Math.min(chunk, total - sent);
      sent += n;
      // A fresh copy per chunk: a writer may keep a reference until written.
      controller.enqueue(piece.slice(0, n));
    },
  }, { highWaterMark: 0 });
}

/** A chunked stream that fails after three pieces. */
function failingStream(): ReadableStream<Uint8Array> {
  let count = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (count++ === 3) return controller.error(new Error(`The stream fails ${ON_PURPOSE}`));
      controller.enqueue(new TextEncoder().encode(`piece ${count}\n`));
    },
  }, { highWaterMark: 0 });
}

/** Answers one request by its path. */
async function handle(request: Request): Promise<Response> {
  // Touch what a handler would: a throw here is a finding, not a route.
  const url = new URL(request.url);
  void [...request.headers];
  if (request.method === "HEAD") return new Response(null);
  switch (url.pathname) {
    case "/":
      return new Response("ok");
    case "/echo":
      return new Response(await request.text());
    case "/bytes":
      return new Response(new Uint8Array(numberParam(url, "n", 1024, MAX_BYTES)).fill(0x62));
    case "/stream": {
      const total = numberParam(url, "n", 65_536, maxStream);
      return new Response(
        byteStream(total, Math.max(1, numberParam(url, "chunk", 16_384, 1 << 20))),
      );
    }
    case "/slow":
      await new Promise((resolve) => setTimeout(resolve, numberParam(url, "ms", 100, MAX_SLOW_MS)));
      return new Response("ok");
    case "/hang":
      return new Promise(() => {});
    case "/block": {
      // A handler that does not yield (CPU-bound work, or a process paused):
      // meanwhile new connections wait in the kernel's accept queue.
      const until = Date.now() + numberParam(url, "ms", 100, MAX_BLOCK_MS);
      while (Date.now() < until) { /* busy */ }
      return new Response("ok");
    }
    case "/throw":
      throw new Error(`Thrown ${ON_PURPOSE}`);
    case "/reject":
      return Promise.reject(new Error(`Rejected ${ON_PURPOSE}`));
    case "/not-a-response":
      return { status: 200 } as unknown as Response;
    case "/stream-error":
      return new Response(failingStream());
    default:
      return new Response("not found", { status: 404 });
  }
}

/** A handler's failure: reported on stderr unless it was on purpose, answered 500. */
function onError(error: unknown): Response {
  const message = error instanceof Error ? error.message : String(error);
  // A body that broke off or was refused rejects request.text(): brick answers for it.
  const fromTheBody = error instanceof Error &&
    ["HttpError", "ClientGoneError", "AbortError"].includes(error.name);
  const onPurpose = fromTheBody || message.includes(ON_PURPOSE) ||
    message.includes("instead of a Response");
  if (!onPurpose) console.error(`target: the handler failed: ${error}`);
  return new Response(null, { status: 500 });
}

// Not guarded by import.meta.main, which Node 20 lacks: this file is only ever run.
{
  const { maxStreamBytes, ...options } = JSON.parse(process.argv[2] ?? "{}") as ServeOptions & {
    maxStreamBytes?: number;
  };
  if (maxStreamBytes !== undefined) maxStream = maxStreamBytes;
  const server = serve({
    ...options,
    hostname: "127.0.0.1",
    port: 0,
    handler: handle,
    onError,
    onListen: ({ port }) => console.log(`listening ${port}`),
  });
  const stop = () => {
    server.shutdown().then(() => process.exit(0), () => process.exit(1));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  server.finished.catch((error) => {
    console.error(`target: the server failed: ${error}`);
    process.exit(1);
  });
}
