/**
 * brick: an HTTP/1.1 server written from scratch on raw TCP sockets.
 *
 * {@linkcode serve} runs any web-standard fetch handler, `(Request, info) =>
 * Response`, with the call forms and option names of `Deno.serve`, so moving
 * an app over means changing one import.
 *
 * The file reads top to bottom like the tutorial it grew from: listen, accept,
 * read a request, write a response. Its sections:
 *
 * 1. Public API: options, handler and server types
 * 2. Limits, defaults and protocol tables
 * 3. Errors
 * 4. The transport: the small socket interface the engine needs
 * 5. Connections: buffer, state and deadlines
 * 6. Parsing the request head (RFC 9112 §2–§5)
 * 7. Request bodies: Content-Length and chunked (RFC 9112 §6–§7)
 * 8. The request object handed to the handler
 * 9. Writing responses (RFC 9112 §4, §6)
 * 10. The connection loop (listen → accept → read → respond)
 * 11. The server: accept loop, deadlines sweep and graceful shutdown
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "@brick/http";
 *
 * serve({ port: 8888 }, (request) => {
 *   const { pathname } = new URL(request.url);
 *   return new Response(`Hello from ${pathname}\n`);
 * });
 * ```
 *
 * @module
 */

import type * as net from "node:net";
import type * as tls from "node:tls";
import type * as fs from "node:fs";
import { Buffer } from "node:buffer";
import { type Http2Exchange, type Http2RequestParts, type Http2Sent, serveHttp2 } from "./http2.ts";
import { PushedConn } from "./_pushed_conn.ts";
import { ALNUM, byteTable, FIELD_CHAR, isFieldValue, isToken, TCHAR } from "./_grammar.ts";

// ─── 1. Public API ──────────────────────────────────────────────────────────

/** The address of a TCP endpoint: where the server listens or a client is. */
export interface NetAddr {
  /** The IP address, for example `"127.0.0.1"` or `"::1"`. */
  hostname: string;
  /** The TCP port number. */
  port: number;
  /** `"tcp"`, also for TLS. */
  transport: "tcp";
}

/** The address of a Unix domain socket: where the server listens or a client is. */
export interface UnixAddr {
  /** The socket file's path; empty for a client, which has no name. */
  path: string;
  /** Always `"unix"`. */
  transport: "unix";
}

/** A TCP or Unix domain socket address. */
export type Addr = NetAddr | UnixAddr;

/** What brick tells the handler about a request besides the request itself. */
export interface ServeInfo<A extends Addr = NetAddr> {
  /** The address of the client that sent the request. */
  remoteAddr: A;
  /**
   * Resolves once the response has been fully written to the socket; rejects
   * if the client went away first.
   */
  completed: Promise<void>;
}

/**
 * A fetch handler: receives each request and returns the response to send.
 *
 * @param request The incoming request. Its body is read from the socket as the
 * handler reads it.
 * @param info The client's address and a promise for the end of the response.
 * @returns The response, or a promise of it.
 */
export type Handler<A extends Addr = NetAddr> = (
  request: Request,
  info: ServeInfo<A>,
) => Response | Promise<Response>;

/** One response the server sent, as {@linkcode ServeOptions.onResponse} receives it. */
export interface ResponseLogEntry {
  /**
   * The request line as received, such as `GET /a?b=1 HTTP/1.1`; empty when
   * none arrived whole. For HTTP/2, the same made from the stream's
   * `:method` and `:path`: `GET /a?b=1 HTTP/2`.
   */
  requestLine: string;
  /** The request method: the request line's first word, or empty. */
  method: string;
  /** The request target: the request line's second word, or empty. */
  target: string;
  /** The status code sent. */
  status: number;
  /** The bytes of body written to the connection: `0` for none. */
  bodyBytes: number;
  /** The client's address. */
  remoteAddr: Addr;
  /** When the request began to arrive, in milliseconds since the epoch. */
  startTime: number;
  /** Milliseconds from `startTime` until the response was written or cut off. */
  duration: number;
  /** Why the response did not reach the client whole, when it did not. */
  error?: unknown;
}

/** Options for {@linkcode serve}. Names and defaults follow `Deno.serve` and Go's net/http. */
export interface ServeOptions {
  /**
   * The TCP port to listen on; `0` picks a free port (read it from
   * `server.addr` or `onListen`).
   *
   * @default {8888}
   */
  port?: number;
  /**
   * The address to listen on. The default listens on every IPv4 interface, so
   * other machines on the network can reach the server; use `"127.0.0.1"` to
   * accept local clients only.
   *
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * A TLS certificate chain in PEM form (the text, not a file path): with
   * `key`, the server speaks HTTPS. Read a file with
   * `Deno.readTextFileSync("cert.pem")` or `fs.readFileSync("cert.pem", "utf8")`.
   */
  cert?: string;
  /** The private key of `cert`, in PEM form. Needed whenever `cert` is given. */
  key?: string;
  /**
   * Sets `SO_REUSEPORT`, so that several processes can listen on the same
   * port and the kernel spreads connections among them (Linux, BSDs). Needs
   * Deno (with `--unstable-net`), Bun, or Node 22.12 or later; on older Node,
   * use `node:cluster`, whose workers share one listening socket, instead.
   *
   * @default {false}
   */
  reusePort?: boolean;
  /** Aborting this signal shuts the server down gracefully, like {@linkcode Server.shutdown}. */
  signal?: AbortSignal;
  /**
   * Called once the server listens. The default prints one line,
   * `Listening on http://<hostname>:<port>/` (`https://` with TLS).
   */
  onListen?: (addr: NetAddr) => void;
  /**
   * Turns an error thrown by the handler into a response. The default logs the
   * error with `console.error` and answers `500 Internal Server Error`. Errors
   * that carry their own HTTP answer, such as a failed WebSocket handshake
   * from `@brick/http/websocket` (400 or 426), are answered with it and do not
   * reach `onError`.
   */
  onError?: (error: unknown) => Response | Promise<Response>;
  /**
   * Called with the raw bytes of each request head (request line and header
   * fields) exactly as received, before the handler runs. Meant for
   * diagnostics such as the CLI's `--verbose`. The bytes are only valid during
   * the call: copy them to keep them.
   */
  onRequestHead?: (head: Uint8Array, info: ServeInfo) => void;
  /**
   * Called once for every response the server sends, once it is written or
   * the client has gone away: the handler's, and those the server makes
   * itself (400, 408, 413, 414, 431, 501, 503, 505, the 500 of a handler
   * that threw, the 101 of an upgrade). What an nginx or Apache access log
   * writes a line for. When not set, it costs nothing per request.
   *
   * @example Usage
   * ```ts ignore
   * import { serve } from "@brick/http";
   * serve({
   *   handler: () => new Response("Hi"),
   *   onResponse: (r) => console.log(`${r.method} ${r.target} ${r.status} ${r.bodyBytes}`),
   * });
   * ```
   */
  onResponse?: (entry: ResponseLogEntry) => void;
  /**
   * Milliseconds a client may take to send a complete request head, counted
   * from its first byte (or from the connection's start). When it runs out the
   * server answers `408 Request Timeout` and closes the connection. This is the
   * guard against slowloris clients that dribble header bytes.
   *
   * @default {10_000}
   */
  readHeaderTimeout?: number;
  /**
   * Milliseconds a client may take to send a whole request, head and body.
   * When it runs out, the body stream errors, the server answers `408` if no
   * response has started, and the connection closes. `0` disables it.
   *
   * @default {300_000}
   */
  readTimeout?: number;
  /**
   * Milliseconds from the end of the request head until the response has been
   * written: this covers the handler's own time and a client that reads the
   * response slowly. When it runs out the connection closes and
   * `request.signal` aborts. `0` (the default, as in Go and Node) disables it,
   * so long streams such as server-sent events keep working; set it when
   * handlers never stream for long.
   *
   * @default {0}
   */
  writeTimeout?: number;
  /**
   * Milliseconds a keep-alive connection may wait for its next request before
   * the server closes it. Longer than the 60 s idle timeout of common load
   * balancers, so a proxy never sends a request on a connection brick is
   * closing.
   *
   * @default {65_000}
   */
  idleTimeout?: number;
  /**
   * The largest request head, request line and header fields, in bytes. A
   * longer request line is answered `414 URI Too Long`, longer header fields
   * `431 Request Header Fields Too Large`. The default matches Node's.
   *
   * @default {16_384}
   */
  maxHeaderBytes?: number;
  /**
   * The largest request body, in bytes after chunked decoding. A larger
   * `Content-Length` is answered `413 Content Too Large` before the handler
   * runs; a chunked body that grows past it makes the body stream error and
   * the server answer `413`. `Infinity` disables the limit.
   *
   * @default {16_777_216}
   */
  maxBodyBytes?: number;
  /**
   * The most connections served at once. A connection that arrives at the
   * limit makes the server close its oldest idle keep-alive connection; when
   * none is idle, the newcomer is answered `503 Service Unavailable` with
   * `Retry-After: 1` and `Connection: close` and is closed. Connections
   * already open are never disturbed. Each connection holds a file
   * descriptor: keep this below the process's `ulimit -n`.
   *
   * @default {Infinity}
   */
  maxConnections?: number;
  /**
   * Milliseconds that a graceful shutdown waits for responses in flight before
   * it closes the remaining connections.
   *
   * @default {10_000}
   */
  shutdownTimeout?: number;
  /**
   * Serves HTTP/2 (RFC 9113) beside HTTP/1.1, with the same handler: `h2`
   * offered by ALPN on TLS listeners, and `h2c` with prior knowledge on plain
   * ones (a connection that opens with the HTTP/2 preface). `false` keeps
   * every connection on HTTP/1.1; `{ h2: false }` or `{ h2c: false }` turns
   * one of the two off. The HTTP/1.1 limits map onto HTTP/2:
   * `maxHeaderBytes` is the largest header list, `readHeaderTimeout` the time
   * for one header block, `idleTimeout` the time without open streams.
   *
   * @default {true}
   */
  http2?: boolean | Http2Switches;
}

/** Which HTTP/2 flavours {@linkcode ServeOptions.http2} turns on; each defaults to true. */
export interface Http2Switches {
  /** HTTP/2 over TLS, offered by ALPN. */
  h2?: boolean;
  /** HTTP/2 over plain TCP (or a Unix socket) with prior knowledge. */
  h2c?: boolean;
}

/**
 * Options for a server on a Unix domain socket: those of
 * {@linkcode ServeOptions} without the TCP ones, and the socket's `path`.
 */
export interface ServeUnixOptions
  extends Omit<ServeOptions, "port" | "hostname" | "cert" | "key" | "reusePort" | "onListen"> {
  /**
   * The socket file to listen on. A file left there by a server that is no
   * longer running is replaced; a live server's is not (the call fails). The
   * file is removed when the server shuts down.
   */
  path: string;
  /** Called once the server listens. The default prints `Listening on unix:<path>`. */
  onListen?: (addr: UnixAddr) => void;
}

/** {@linkcode ServeUnixOptions} with the handler given as a member. */
export interface ServeUnixInit extends ServeUnixOptions {
  /** The fetch handler that answers each request. */
  handler: Handler<UnixAddr>;
}

/** A running server, as returned by {@linkcode serve}. */
export interface Server<A extends Addr = NetAddr> extends AsyncDisposable {
  /** The address the server listens on, with the real port when `port` was 0. */
  readonly addr: A;
  /** Resolves once the server has shut down and every connection is closed. */
  readonly finished: Promise<void>;
  /**
   * Shuts down gracefully: stops accepting connections (new ones are
   * refused), lets responses in flight finish with `Connection: close`, and
   * gives each idle keep-alive connection until a second after its last
   * response to send one more request, answered with `Connection: close`.
   * Connections end with FIN, never a reset under a request the client has
   * sent. Whatever is left is closed once `shutdownTimeout` has passed.
   *
   * @returns A promise that resolves like {@linkcode Server.finished}.
   */
  shutdown(): Promise<void>;
}

/** {@linkcode ServeOptions} with the handler given as a member. */
export interface ServeInit extends ServeOptions {
  /** The fetch handler that answers each request. */
  handler: Handler;
}

/** brick's version, as published. */
export const VERSION = "0.1.0";

// ─── 2. Limits, defaults and protocol tables ───────────────────────────────

const DEFAULTS = {
  port: 8888,
  hostname: "0.0.0.0",
  readHeaderTimeout: 10_000,
  readTimeout: 300_000,
  writeTimeout: 0,
  idleTimeout: 65_000,
  maxHeaderBytes: 16_384,
  maxBodyBytes: 16_777_216,
  maxConnections: Infinity,
  shutdownTimeout: 10_000,
} as const;

/** Size of each connection's read buffer; it grows only for long heads. */
const READ_BUFFER_BYTES = 8192;
/**
 * Size of the read buffer a connection holds while it waits for a request
 * head: most API clients' heads fit (a longer one takes the 8 KiB buffer),
 * and 10,000 idle keep-alive connections hold about 75 MiB less.
 */
const HEAD_BUFFER_BYTES = 512;
/** Initial size of a connection's output buffer, taken at its first response. */
const OUT_BUFFER_BYTES = 4096;
/** Buffered responses are written once they reach this size, pipelined or not. */
const MAX_BUFFERED_OUT = 65_536;
/** An unread request body up to this size is read and dropped to keep the connection. */
const MAX_DRAIN_BYTES = 65_536;
/** Head and body are copied into one write up to this body size. */
const MAX_COALESCED_BODY = 16_384;
/** After an error response, how long and how much the server reads before closing. */
const LINGER_MS = 2000;
const MAX_LINGER_BYTES = 4 * 1024 * 1024;
/** Most significant digits a Content-Length may have: 15 fit a double exactly. */
const MAX_LENGTH_DIGITS = 15;
/** Most significant hex digits a chunk size may have: 13 fit a double exactly. */
const MAX_CHUNK_SIZE_DIGITS = 13;
/**
 * During a graceful shutdown, how long after its last response (or its
 * accept) a keep-alive connection may still send one more request, answered
 * with `Connection: close`; then the server half-closes it. A client that
 * sends its next request at once (most do, a load generator always) never
 * has it cut off.
 */
const SHUTDOWN_GRACE_MS = 1000;
/** How often deadlines are checked while the server shuts down. */
const SHUTDOWN_SWEEP_MS = 50;
/**
 * How long a shutdown may take to accept the connections queued in the
 * kernel (at most half of `shutdownTimeout`). Node accepts one connection per
 * turn of its event loop, and on a starved machine 32 queued connections
 * took over 2 s.
 */
const SHUTDOWN_ACCEPT_MS = 5000;
/** No new connection for this long: the kernel's accept queue is taken as empty. */
const SHUTDOWN_QUIET_MS = 20;
/** A chunk-size line or trailer field longer than this is rejected. */
const MAX_CHUNK_LINE = 4096;
/** A trailer section larger than this is answered with 431, as a head would be. */
const MAX_TRAILER_BYTES = 16_384;
/**
 * How many bytes of chunk framing (size lines, extensions) a body may carry
 * beyond what its data justifies; more is refused. The accounting is Go's
 * (net/http/internal chunked.go): each chunk of n bytes pays for 16 + 2n bytes
 * of framing, so ordinary bodies never come near, while 1-byte chunks with
 * 4 KiB extensions are stopped after a few of them.
 */
const MAX_CHUNK_OVERHEAD = 16_384;

const CR = 13, LF = 10, SP = 32, HT = 9, COLON = 58, SEMI = 59, EQ = 61, DQUOTE = 34;
const BACKSLASH = 92, PERCENT = 37, SLASH = 47, STAR = 42;

/** RFC 3986 characters allowed in a request-target (pchar, "/", "?", "[", "]"). */
const URI_CHAR = byteTable("-._~!$&'()*+,;=:@/?%[]", ...ALNUM);
/** RFC 3986 reg-name characters plus ":" and IPv6 brackets, for Host. */
const HOST_CHAR = byteTable("-._~!$&'()*+,;=%:[]", ...ALNUM);
/** Hex digit values, or 255 for anything else. */
const HEX = new Uint8Array(256).fill(255);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) HEX[65 + i] = HEX[97 + i] = 10 + i;

/** Reason phrases (RFC 9110 §15), for the status line. */
const REASONS: Record<number, string> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  203: "Non-Authoritative Information",
  204: "No Content",
  205: "Reset Content",
  206: "Partial Content",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  418: "I'm a teapot",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  425: "Too Early",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  451: "Unavailable For Legal Reasons",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** Status lines built once per status code ("HTTP/1.1 200 OK\r\n"). */
const statusLines = new Map<number, string>();
function statusLine(status: number, statusText: string): string {
  if (statusText !== "" && statusText !== REASONS[status]) {
    return `HTTP/1.1 ${status} ${statusText}\r\n`;
  }
  let line = statusLines.get(status);
  if (line === undefined) {
    line = `HTTP/1.1 ${status} ${REASONS[status] ?? "Unknown"}\r\n`;
    statusLines.set(status, line);
  }
  return line;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
let dateSecond = -1;
let dateLine = "";

/** The `Date` header line (RFC 9110 §5.6.7), rebuilt at most once a second. */
function dateHeaderLine(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    const d = new Date(second * 1000);
    const two = (n: number) => (n < 10 ? "0" + n : "" + n);
    dateLine = `date: ${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ` +
      `${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:` +
      `${two(d.getUTCSeconds())} GMT\r\n`;
  }
  return dateLine;
}

let dateBytes: Uint8Array = new Uint8Array(0);
let dateBytesLine = "";

/** The `Date` header line as bytes, encoded again only when the line changes. */
function dateHeaderBytes(): Uint8Array {
  const line = dateHeaderLine();
  if (line !== dateBytesLine) {
    dateBytes = latin1Bytes(line);
    dateBytesLine = line;
  }
  return dateBytes;
}

const encoder = new TextEncoder();

/**
 * Node's latin1 decoder, which every runtime's node:buffer has and which takes
 * any Uint8Array: a third of the time of String.fromCharCode over a subarray
 * on Node (0.1 against 0.3 µs for a 50-byte head), which builds an array of
 * the bytes first; faster on Deno and Bun too.
 */
const latin1Slice = Buffer.prototype.latin1Slice as (
  this: Uint8Array,
  start: number,
  end: number,
) => string;

/** Decodes bytes as ISO-8859-1: each byte becomes the code point of its value (a ByteString). */
function latin1(bytes: Uint8Array, start: number, end: number): string {
  return latin1Slice.call(bytes, start, end);
}

/** Encodes a ByteString as ISO-8859-1: each code point becomes one byte. */
function latin1Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  putHead(bytes, 0, text);
  return bytes;
}

// ─── 3. Errors ──────────────────────────────────────────────────────────────

/**
 * A request the server answers itself, with `status`, and after which it
 * closes the connection: malformed syntax, limits, unsupported features.
 */
class HttpError extends Error {
  /**
   * @param status The status to answer with.
   * @param message Why, sent as the body unless `withBody` is false.
   * @param withBody False for answers a client may read as body-less, such as
   * a refused CONNECT (clients expect none after a CONNECT, RFC 9112 §6.3).
   */
  constructor(readonly status: number, message: string, readonly withBody = true) {
    super(message);
    this.name = "HttpError";
  }
}

/** The client closed or reset the connection. */
class ClientGoneError extends Error {
  constructor(message = "The client closed the connection") {
    super(message);
    this.name = "ClientGoneError";
  }
}

const badRequest = (why: string) => new HttpError(400, why);

// ─── 4. The transport ───────────────────────────────────────────────────────
// The HTTP engine needs only this much of a socket: listen, accept, read,
// write with backpressure, half-close, close and the peer's address. The
// transport is chosen at run time: `Deno.listen` where `globalThis.Deno`
// exists, `Bun.listen` where `globalThis.Bun` does, `node:net` elsewhere
// (Node). One source file then serves every runtime, and the engine above
// this section is byte for byte the same.

/** Where and how to listen, resolved from the options. */
type ListenSpec =
  | { transport: "tcp"; hostname: string; port: number; reusePort: boolean; tls: TlsPem | null }
  | { transport: "unix"; path: string };

/** A certificate chain and its private key, PEM text, and the protocols ALPN offers. */
interface TlsPem {
  cert: string;
  key: string;
  alpn: string[];
}

/** A connected socket (TCP, TLS or Unix), as the engine uses it. */
interface Conn {
  readonly remoteAddr: Addr;
  /** Reads into `buffer`; resolves to the byte count, or null at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /**
   * Writes some of `data`; resolves to the byte count written, once `data`
   * may be reused. Waiting for it is the backpressure. A transport that knows
   * at once that the kernel took all of `data` returns the count itself:
   * awaiting nothing saves a promise and a tick per response.
   */
  write(data: Uint8Array): number | Promise<number>;
  /** Sends FIN: no more bytes from this side, while still reading. */
  closeWrite(): Promise<void>;
  close(): void;
}

/** A listening socket, as the engine uses it. */
interface Listener {
  /** Where it listens; on Node and Bun, known once `ready` resolves. */
  readonly addr: Addr;
  /** Resolves once listening; rejects with a readable error when binding failed. */
  readonly ready: Promise<void>;
  /** True when the address was bound before the constructor returned. */
  readonly bound: boolean;
  /** Resolves to the next connection, or null once the listener is closed. */
  accept(): Promise<Conn | null>;
  close(): void;
}

/**
 * A built-in module of Node's, loaded on first use. node:net and node:tls
 * carry brick on Node (and on Bun with BRICK_TRANSPORT=node:net); imported
 * up front, their polyfills and node:fs's added about 5 MiB to every server
 * on Deno, which needs node:fs and node:net only for a Unix socket's path.
 * `process.getBuiltinModule` is in Node from 20.16, Deno and Bun.
 */
function builtin<T>(name: "node:net" | "node:tls" | "node:fs"): T {
  const scope = globalThis as { process: { getBuiltinModule(name: string): unknown } };
  return scope.process.getBuiltinModule(name) as T;
}

const nodeNet = () => builtin<typeof net>("node:net");
const nodeTls = () => builtin<typeof tls>("node:tls");
const nodeFs = () => builtin<typeof fs>("node:fs");

type DenoRuntime = typeof Deno;
const deno: DenoRuntime | undefined = (globalThis as { Deno?: DenoRuntime }).Deno;

/**
 * Opens the listener `spec` describes. A Unix socket path is freed first
 * when a dead server left its file behind, which takes a connection attempt.
 */
function listen(spec: ListenSpec, handshakeTimeout: number): Listener {
  if (spec.transport === "unix") {
    const placeholder: Addr = { path: spec.path, transport: "unix" };
    const opening = freeUnixPath(spec.path).then(() => listenNow(spec, handshakeTimeout));
    return new DeferredListener(placeholder, opening);
  }
  return listenNow(spec, handshakeTimeout);
}

function listenNow(spec: ListenSpec, handshakeTimeout: number): Listener {
  if (deno) return DenoListener.open(deno, spec);
  if (bun) return new BunListener(bun, spec);
  return new NodeListener(spec, handshakeTimeout);
}

/** `Deno.listen` or `Deno.listenTls`, whose connections already have the {@linkcode Conn} shape. */
class DenoListener implements Listener {
  readonly addr: Addr;
  readonly ready: Promise<void> = Promise.resolve();
  readonly bound = true;
  #listener: Deno.Listener;
  #unixPath: string | null;

  constructor(readonly runtime: DenoRuntime, listener: Deno.Listener, unixPath: string | null) {
    this.#listener = listener;
    this.#unixPath = unixPath;
    this.addr = toAddr(listener.addr);
  }

  static open(runtime: DenoRuntime, spec: ListenSpec): DenoListener {
    if (spec.transport === "unix") {
      return new DenoListener(
        runtime,
        runtime.listen({ transport: "unix", path: spec.path }),
        spec.path,
      );
    }
    const { hostname, port, reusePort, tls } = spec;
    // Deno ends the process (exit code 70) on reusePort without --unstable-net,
    // where it cannot be caught; listenDatagram exists only with that flag.
    if (
      reusePort && typeof (runtime as { listenDatagram?: unknown }).listenDatagram !== "function"
    ) {
      throw new TypeError(
        'reusePort needs --unstable-net on Deno: run "deno run --unstable-net …" or add ' +
          '"unstable": ["net"] to deno.json',
      );
    }
    if (tls === null) {
      return new DenoListener(
        runtime,
        runtime.listen({ hostname, port, reusePort, transport: "tcp" }),
        null,
      );
    }
    try {
      return new DenoListener(
        runtime,
        runtime.listenTls({
          hostname,
          port,
          reusePort,
          cert: tls.cert,
          key: tls.key,
          alpnProtocols: tls.alpn,
        }),
        null,
      );
    } catch (error) {
      const errors = runtime.errors;
      const bindFailed = error instanceof errors.AddrInUse ||
        error instanceof errors.AddrNotAvailable ||
        error instanceof errors.PermissionDenied || error instanceof errors.NotCapable;
      throw bindFailed ? error : tlsSetupError(error);
    }
  }

  async accept(): Promise<Conn | null> {
    try {
      const conn = await this.#listener.accept();
      (conn as Partial<Deno.TcpConn>).setNoDelay?.(true);
      return conn as unknown as Conn; // a TCP, TLS or Unix connection: its remoteAddr fits Addr
    } catch (error) {
      if (error instanceof this.runtime.errors.BadResource) return null;
      throw error;
    }
  }

  close(): void {
    this.#listener.close();
    if (this.#unixPath !== null) removeSocketFile(this.#unixPath);
  }
}

/** A `node:net` (or `node:tls`) server turned into a pull-style listener. */
class NodeListener implements Listener {
  addr: Addr;
  readonly ready: Promise<void>;
  readonly bound = false;
  #server: net.Server;
  #unix: boolean;
  #arrived: net.Socket[] = [];
  #waiting: ((conn: Conn | null) => void) | null = null;
  #closed = false;

  constructor(spec: ListenSpec, handshakeTimeout: number) {
    this.#unix = spec.transport === "unix";
    this.addr = spec.transport === "unix"
      ? { path: spec.path, transport: "unix" }
      : { hostname: spec.hostname, port: spec.port, transport: "tcp" };
    this.#server = createNodeServer(spec, handshakeTimeout, (socket) => this.#arrive(socket));
    const where = spec.transport === "unix" ? spec.path : `${spec.hostname}:${spec.port}`;
    this.ready = new Promise((resolve, reject) => {
      this.#server.once("listening", () => {
        if (this.#closed) this.#server.close(); // shut down while binding
        if (!this.#unix) {
          const { address, port } = this.#server.address() as net.AddressInfo;
          this.addr = { hostname: address, port, transport: "tcp" };
        }
        this.#server.on("error", (error) => reportError(error, "The listener failed"));
        resolve();
      });
      this.#server.once("error", (error) => {
        reject(isTlsSetupError(spec, error) ? tlsSetupError(error) : listenError(error, where));
      });
    });
    if (spec.transport === "unix") this.#server.listen({ path: spec.path });
    else {
      this.#server.listen({ port: spec.port, host: spec.hostname, reusePort: spec.reusePort });
    }
  }

  #arrive(socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
    } else if (this.#waiting) {
      const waiting = this.#waiting;
      this.#waiting = null;
      waiting(new NodeConn(socket, this.#unix));
    } else {
      this.#arrived.push(socket);
    }
  }

  accept(): Promise<Conn | null> {
    const socket = this.#arrived.shift();
    if (socket) return Promise.resolve(new NodeConn(socket, this.#unix));
    if (this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => this.#waiting = resolve);
  }

  close(): void {
    this.#closed = true;
    this.#server.close();
    this.#waiting?.(null);
    this.#waiting = null;
    for (const socket of this.#arrived.splice(0)) socket.destroy();
    if (this.#unix) removeSocketFile((this.addr as UnixAddr).path);
  }
}

/** A `node:net` server, or a `node:tls` one that hands over sockets once their handshake is done. */
function createNodeServer(
  spec: ListenSpec,
  handshakeTimeout: number,
  onSocket: (socket: net.Socket) => void,
): net.Server {
  // allowHalfOpen: a client's FIN must not end our side before the response is out.
  const options = { noDelay: true, allowHalfOpen: true };
  if (spec.transport === "unix" || spec.tls === null) {
    return nodeNet().createServer(options, onSocket);
  }
  let server: tls.Server;
  try {
    const { cert, key, alpn } = spec.tls;
    server = nodeTls().createServer(
      { ...options, cert, key, ALPNProtocols: alpn, handshakeTimeout },
      onSocket,
    );
  } catch (error) {
    throw tlsSetupError(error);
  }
  // A failed or timed-out handshake (a plain-HTTP client, say) concerns that
  // client only; Node leaves closing its socket to the listener.
  server.on("tlsClientError", (_error, socket) => socket.destroy());
  return server;
}

/** A server that opens its real listener later (a Unix socket path must be freed first). */
class DeferredListener implements Listener {
  addr: Addr;
  readonly ready: Promise<void>;
  readonly bound = false;
  #inner: Listener | null = null;
  #closed = false;

  constructor(placeholder: Addr, opening: Promise<Listener>) {
    this.addr = placeholder;
    this.ready = opening.then(async (inner) => {
      if (this.#closed) return inner.close();
      this.#inner = inner;
      await inner.ready;
      this.addr = inner.addr;
    });
  }

  async accept(): Promise<Conn | null> {
    await this.ready;
    return this.#inner === null || this.#closed ? null : this.#inner.accept();
  }

  close(): void {
    this.#closed = true;
    this.#inner?.close();
  }
}

/**
 * Frees a Unix socket path for listening: nothing there is fine; a socket
 * file that no server answers on is a dead server's and is removed; a live
 * server's socket, or any other kind of file, is an error.
 */
async function freeUnixPath(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = nodeFs().lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) {
    throw Object.assign(
      new Error(
        `Cannot listen on ${path}: a file that is not a socket is in the way; ` +
          "remove it or choose another path",
      ),
      { code: "EEXIST" },
    );
  }
  if (await unixSocketAnswers(path)) {
    throw Object.assign(
      new Error(
        `Cannot listen on ${path}: address already in use (a running server listens there)`,
      ),
      { code: "EADDRINUSE" },
    );
  }
  removeSocketFile(path);
}

/** Whether a server accepts connections on the Unix socket at `path`. */
function unixSocketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = nodeNet().createConnection({ path });
    const settle = (alive: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(alive);
    };
    // A server too busy to accept within a second is still alive.
    const timer = setTimeout(() => settle(true), 1000);
    socket.once("connect", () => settle(true));
    socket.once("error", () => settle(false));
  });
}

function removeSocketFile(path: string): void {
  try {
    nodeFs().rmSync(path, { force: true });
  } catch { /* someone else removed or replaced it */ }
}

/** Whether a listen error is about the certificate or key (Bun reports them at listen). */
function isTlsSetupError(spec: ListenSpec, error: Error & { code?: string }): boolean {
  if (spec.transport !== "tcp" || spec.tls === null) return false;
  return /SSL|PEM|certificate|private key/i.test(error.message) ||
    (error.code ?? "").startsWith("ERR_OSSL");
}

/** A certificate or key that the TLS library refused, in words that say what to check. */
function tlsSetupError(error: unknown): Error {
  const why = error instanceof Error ? error.message : String(error);
  return new TypeError(
    `Cannot use the TLS certificate and key: ${why}. Pass the PEM text of both ` +
      '("-----BEGIN CERTIFICATE-----…" and "-----BEGIN PRIVATE KEY-----…"), not file paths, ' +
      "and check that the key belongs to the certificate",
    { cause: error },
  );
}

/** Node's bind errors, in the words Deno uses, with the code kept. */
function listenError(error: Error & { code?: string }, where: string): Error {
  const why = error.code === "EADDRINUSE"
    ? "address already in use"
    : error.code === "EACCES"
    ? "permission denied"
    : error.code === "EADDRNOTAVAIL"
    ? "address not available"
    : error.message;
  return Object.assign(
    new Error(`Cannot listen on ${where}: ${why}`, { cause: error }),
    {
      code: error.code,
    },
  );
}

/**
 * Whether NodeConn may count a write as finished when the socket shows
 * nothing left to send on return. True on Node; Bun's node:net (asked for
 * with BRICK_TRANSPORT=node:net) always waits for the callback.
 */
const nodeWritesAtOnce = (globalThis as { Bun?: unknown }).Bun === undefined;

/** A `node:net` (or `node:tls`) socket as a {@linkcode Conn}. */
class NodeConn extends PushedConn implements Conn {
  readonly remoteAddr: Addr;
  /** The protocol ALPN chose on TLS, read by {@linkcode negotiatedProtocol}. */
  readonly alpnProtocol: string | null;
  #socket: net.Socket;
  /** Callbacks of writes (and the end) that the socket has not called yet; usually one. */
  #unsettled: ((error?: Error | null) => void)[] = [];
  /**
   * Writes handed to the kernel at once whose callbacks have not come yet
   * (Node calls back a tick later). Nobody waits for them, except
   * `#partWritten` for the last one when the kernel took only part of it.
   */
  #uncalled = 0;
  #partWritten: ((error?: Error | null) => void) | null = null;
  #calledBack = (error?: Error | null): void => {
    if (--this.#uncalled > 0 || this.#partWritten === null) return;
    const settle = this.#partWritten;
    this.#partWritten = null;
    settle(error);
  };

  constructor(socket: net.Socket, unix: boolean) {
    super();
    this.#socket = socket;
    this.alpnProtocol = (socket as tls.TLSSocket).alpnProtocol || null;
    this.remoteAddr = unix
      ? { path: "", transport: "unix" }
      : { hostname: socket.remoteAddress ?? "", port: socket.remotePort ?? 0, transport: "tcp" };
    socket.on("data", (chunk: Uint8Array) => this.received(chunk));
    socket.on("end", () => this.peerEnded());
    // Every socket error is handled here: a reset must never crash the process.
    socket.on("error", (error) => this.failed(error));
    socket.on("close", () => {
      this.socketClosed();
      this.#settleWrites();
    });
  }

  protected pauseReading(): void {
    this.#socket.pause();
  }

  protected resumeReading(): void {
    this.#socket.resume();
  }

  write(data: Uint8Array): number | Promise<number> {
    const socket = this.#socket;
    if (nodeWritesAtOnce && this.#unsettled.length === 0 && socket.writableLength === 0) {
      // With nothing queued before it, Node hands `data` to the kernel now;
      // when the kernel takes all of it the write is finished on return
      // (writableLength is back to 0) and Node holds `data` no longer. The
      // callback still comes a tick later, to nobody; an error comes as the
      // socket's "error" event.
      this.#uncalled++;
      socket.write(data, this.#calledBack);
      if (socket.writableLength === 0 && !socket.errored) return data.length;
      // The kernel took part (or the write failed): wait for the callback.
      return this.#settledBy(data.length, (settle) => this.#partWritten = settle);
    }
    // Node keeps a reference to `data` until its callback: resolve only then.
    return this.#settledBy(data.length, (settle) => this.#socket.write(data, settle));
  }

  /** A write's promise, settled by the callback that `register` hands on. */
  #settledBy(
    length: number,
    register: (settle: (error?: Error | null) => void) => void,
  ): Promise<number> {
    return new Promise((resolve, reject) => {
      const settle = (error?: Error | null) => {
        this.#forget(settle);
        if (error) reject(error);
        else resolve(length);
      };
      this.#unsettled.push(settle);
      register(settle);
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => {
      const settle = () => {
        this.#forget(settle);
        resolve();
      };
      this.#unsettled.push(settle);
      this.#socket.end(settle);
    });
  }

  /**
   * Settles writes whose callbacks will never come: a socket that closed
   * before flushing them (seen on Bun) must not leave a writer waiting.
   */
  #settleWrites(): void {
    if (this.#unsettled.length === 0) return;
    const error = this.failure ?? new Error("The socket closed");
    for (const settle of this.#unsettled.splice(0)) settle(error);
  }

  #forget(settle: (error?: Error | null) => void): void {
    const at = this.#unsettled.indexOf(settle);
    if (at >= 0) this.#unsettled.splice(at, 1);
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** The part of a `Bun.listen` socket that brick uses (Bun 1.2 or later). */
interface BunSocket {
  /** brick's state for this socket, set when it opens. */
  data: BunConn | undefined;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Writes what the kernel takes at once; returns that count, or -1 once closed. */
  write(data: Uint8Array, byteOffset: number, byteLength: number): number;
  /** Sends FIN; reading goes on. */
  shutdown(): void;
  /** Closes the socket once Bun has sent what it holds. */
  end(): void;
  /** Closes the socket now, dropping what was not sent. */
  terminate?(): void;
  pause?(): void;
  resume?(): void;
  setNoDelay?(noDelay: boolean): boolean;
  /** Over TLS, once the handshake is done: the protocol ALPN chose, or false. */
  readonly alpnProtocol?: string | false | null;
}

/** A listener that `Bun.listen` returned. */
interface BunSocketListener {
  readonly hostname?: string;
  readonly port?: number;
  /** Fills `out` with the bound address (the name given may be "localhost"). */
  getsockname?(out: { address?: string; port?: number }): void;
  /** Stops accepting; open connections stay. */
  stop(closeActive?: boolean): void;
}

interface BunRuntime {
  listen(options: Record<string, unknown>): BunSocketListener;
}

/**
 * Bun's runtime where brick runs on `Bun.listen`: on Bun unless
 * `BRICK_TRANSPORT=node:net` asks for Bun's node:net instead (kept so the
 * bench can compare the two). The environment is read on Bun only.
 */
const bun: BunRuntime | undefined = bunRuntime();

function bunRuntime(): BunRuntime | undefined {
  const scope = globalThis as { Bun?: BunRuntime; process?: { env: Record<string, unknown> } };
  if (scope.Bun === undefined) return undefined;
  return scope.process?.env.BRICK_TRANSPORT === "node:net" ? undefined : scope.Bun;
}

/**
 * `Bun.listen`, Bun's own sockets: their events are handlers shared by every
 * connection, each socket's {@linkcode BunConn} kept in `socket.data`.
 */
class BunListener implements Listener {
  readonly addr: Addr;
  readonly ready: Promise<void> = Promise.resolve();
  readonly bound = true;
  #listener: BunSocketListener;
  #unixPath: string | null;
  #arrived: BunConn[] = [];
  #waiting: ((conn: Conn | null) => void) | null = null;
  #closed = false;

  constructor(runtime: BunRuntime, spec: ListenSpec) {
    const unix = spec.transport === "unix";
    const socket = bunSocketHandlers(
      unix,
      spec.transport === "tcp" && spec.tls !== null,
      (conn) => this.#arrive(conn),
    );
    // allowHalfOpen: a client's FIN must not end our side before the response is out.
    const where = unix ? spec.path : `${spec.hostname}:${spec.port}`;
    try {
      this.#listener = runtime.listen(
        unix ? { unix: spec.path, allowHalfOpen: true, socket } : {
          hostname: spec.hostname,
          port: spec.port,
          reusePort: spec.reusePort,
          ...(spec.tls === null ? {} : { tls: bunTls(spec.tls) }),
          allowHalfOpen: true,
          socket,
        },
      );
    } catch (error) {
      const failure = error as Error & { code?: string };
      throw isTlsSetupError(spec, failure) ? tlsSetupError(error) : listenError(failure, where);
    }
    this.#unixPath = unix ? spec.path : null;
    this.addr = unix ? { path: spec.path, transport: "unix" } : boundAddr(this.#listener, spec);
  }

  #arrive(conn: BunConn): void {
    if (this.#closed) {
      conn.close();
    } else if (this.#waiting) {
      const waiting = this.#waiting;
      this.#waiting = null;
      waiting(conn);
    } else {
      this.#arrived.push(conn);
    }
  }

  accept(): Promise<Conn | null> {
    const conn = this.#arrived.shift();
    if (conn) return Promise.resolve(conn);
    if (this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => this.#waiting = resolve);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener.stop();
    this.#waiting?.(null);
    this.#waiting = null;
    for (const conn of this.#arrived.splice(0)) conn.close();
    if (this.#unixPath !== null) removeSocketFile(this.#unixPath);
  }
}

/** Bun's TLS options: ALPN's protocol list goes in its wire form (RFC 7301 §3.1). */
function bunTls({ cert, key, alpn }: TlsPem): Record<string, unknown> {
  const names = alpn.map((name) => new TextEncoder().encode(name));
  const wire = new Uint8Array(names.reduce((size, name) => size + 1 + name.length, 0));
  let at = 0;
  for (const name of names) {
    wire[at++] = name.length;
    wire.set(name, at);
    at += name.length;
  }
  return { cert, key, ALPNProtocols: wire };
}

/** The address a Bun listener bound, as the kernel has it (like Deno's and Node's). */
function boundAddr(listener: BunSocketListener, spec: ListenSpec & { transport: "tcp" }): Addr {
  const bound: { address?: string; port?: number } = {};
  listener.getsockname?.(bound);
  return {
    hostname: bound.address ?? listener.hostname ?? spec.hostname,
    port: bound.port ?? listener.port ?? spec.port,
    transport: "tcp",
  };
}

/**
 * The handlers `Bun.listen` calls for every socket of one listener. Over TLS,
 * a `handshake` handler makes `open` come at connect, not after the
 * handshake, so brick's readHeaderTimeout also bounds a stalled handshake.
 */
function bunSocketHandlers(
  unix: boolean,
  secure: boolean,
  arrive: (conn: BunConn) => void,
): Record<string, unknown> {
  return {
    open(socket: BunSocket) {
      socket.setNoDelay?.(true);
      const conn = socket.data = new BunConn(socket, unix);
      arrive(conn);
    },
    data(socket: BunSocket, chunk: Uint8Array) {
      socket.data?.onData(chunk);
    },
    drain(socket: BunSocket) {
      socket.data?.onDrain();
    },
    end(socket: BunSocket) {
      socket.data?.onEnd();
    },
    // Every socket error is handled here: a reset must never crash the process.
    error(socket: BunSocket, error: Error) {
      socket.data?.onError(error);
    },
    close(socket: BunSocket) {
      socket.data?.onClose();
    },
    ...(secure ? { handshake: (socket: BunSocket) => socket.data?.onHandshake() } : {}),
  };
}

/** A write that the kernel did not take whole: the rest goes at `drain`. */
interface UnsentWrite {
  data: Uint8Array;
  written: number;
  resolve(n: number): void;
  reject(error: Error): void;
}

/**
 * A `Bun.listen` socket as a {@linkcode Conn}. Bun's `write()` copies nothing:
 * it returns how many bytes the kernel took, and the rest waits here for the
 * `drain` event, which is the backpressure.
 */
class BunConn extends PushedConn implements Conn {
  readonly remoteAddr: Addr;
  #socket: BunSocket;
  /** Writes waiting for `drain`, oldest first; the first may be partly written. */
  #unsent: UnsentWrite[] = [];
  /** A half-close asked for while writes were waiting: it follows them. */
  #closeWriteAfterUnsent: (() => void) | null = null;
  #closed = false;
  #handshake: Promise<{ alpnProtocol: string | null }> | null = null;
  #handshakeDone: (() => void) | null = null;
  #handshakeSeen = false;

  constructor(socket: BunSocket, unix: boolean) {
    super();
    this.#socket = socket;
    this.remoteAddr = unix
      ? { path: "", transport: "unix" }
      : { hostname: socket.remoteAddress ?? "", port: socket.remotePort ?? 0, transport: "tcp" };
  }

  onData(chunk: Uint8Array): void {
    this.received(chunk);
  }

  onEnd(): void {
    this.peerEnded();
  }

  onError(error: Error): void {
    this.failed(error);
  }

  /**
   * Over TLS, resolves once the handshake is over with the protocol ALPN chose
   * (read by {@linkcode negotiatedProtocol}); with null if the socket closed first.
   */
  handshake(): Promise<{ alpnProtocol: string | null }> {
    return this.#handshake ??= new Promise((resolve) => {
      this.#handshakeDone = () => resolve({ alpnProtocol: this.#socket.alpnProtocol || null });
      if (this.#closed || this.#handshakeSeen) this.#handshakeDone();
    });
  }

  onHandshake(): void {
    this.#handshakeSeen = true;
    this.#handshakeDone?.();
  }

  onClose(): void {
    this.#closed = true;
    this.#handshakeDone?.();
    this.socketClosed();
    this.#failWrites();
  }

  protected pauseReading(): void {
    this.#socket.pause?.();
  }

  protected resumeReading(): void {
    if (!this.#closed) this.#socket.resume?.();
  }

  write(data: Uint8Array): number | Promise<number> {
    if (this.#unsent.length === 0) {
      const n = this.#closed ? -1 : this.#socket.write(data, 0, data.length);
      if (n === data.length) return n;
      if (n < 0) return Promise.reject(this.failure ?? new Error("The socket closed"));
      return new Promise((resolve, reject) => {
        this.#unsent.push({ data, written: n, resolve, reject });
      });
    }
    return new Promise((resolve, reject) => {
      this.#unsent.push({ data, written: 0, resolve, reject });
    });
  }

  /** The kernel takes bytes again: writes what waits, in order, as far as it goes. */
  onDrain(): void {
    while (this.#unsent.length > 0) {
      const unsent = this.#unsent[0];
      const { data, written } = unsent;
      const n = this.#socket.write(data, written, data.length - written);
      if (n < 0) return this.#failWrites();
      unsent.written += n;
      if (unsent.written < data.length) return;
      this.#unsent.shift();
      unsent.resolve(data.length);
    }
    const closeWrite = this.#closeWriteAfterUnsent;
    this.#closeWriteAfterUnsent = null;
    closeWrite?.();
  }

  closeWrite(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#unsent.length === 0) {
      this.#socket.shutdown();
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#closeWriteAfterUnsent = () => {
        if (!this.#closed) this.#socket.shutdown();
        resolve();
      };
    });
  }

  /** Fails the writes still waiting: the socket closed under them. */
  #failWrites(): void {
    const error = this.failure ?? new Error("The socket closed");
    for (const unsent of this.#unsent.splice(0)) unsent.reject(error);
    const closeWrite = this.#closeWriteAfterUnsent;
    this.#closeWriteAfterUnsent = null;
    closeWrite?.();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Writes still waiting mean the peer stopped reading (writeTimeout, a
    // shutdown deadline): end() would wait for it, so drop them instead.
    if (this.#unsent.length > 0 && this.#socket.terminate) this.#socket.terminate();
    else this.#socket.end(); // Bun calls the close handler from here
    this.socketClosed();
    this.#failWrites();
  }
}

/** Lets a timer run without keeping the process alive, on every runtime. */
function unrefTimer(timer: ReturnType<typeof setInterval>): void {
  if (typeof timer === "object" && timer !== null && "unref" in timer) {
    (timer as { unref(): void }).unref();
  } else if (deno) {
    deno.unrefTimer(timer as unknown as number);
  }
}

/** Accept errors that concern one connection only: the next accept may succeed at once. */
function isPerConnectionError(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code === "ENOTCONN" || code === "ECONNABORTED" || code === "ECONNRESET" ||
    code === "EPROTO" || code === "EPERM";
}

/** A runtime's address object as brick's {@linkcode Addr}. */
function toAddr(
  addr: { transport?: string; hostname?: string; port?: number; path?: string },
): Addr {
  if (addr.transport === "unix") return { path: addr.path ?? "", transport: "unix" };
  return { hostname: addr.hostname ?? "", port: addr.port ?? 0, transport: "tcp" };
}

// ─── 5. Connections ─────────────────────────────────────────────────────────

/**
 * Buffers of closed connections, kept for new ones: a fresh ArrayBuffer per
 * connection costs allocation and GC time when clients connect per request.
 */
const readBuffers: Uint8Array[] = [];
const headBuffers: Uint8Array[] = [];
const outBuffers: Uint8Array[] = [];
const MAX_POOLED_BUFFERS = 256;
/** The read buffer of a closed connection, whose own went back to the pool. */
const NO_BYTES = new Uint8Array(0);

function takeBuffer(pool: Uint8Array[], size: number): Uint8Array {
  return pool.pop() ?? new Uint8Array(size);
}

function giveBuffer(pool: Uint8Array[], buffer: Uint8Array): void {
  if (pool.length < MAX_POOLED_BUFFERS) pool.push(buffer);
}

/**
 * Go's ConnState: where a connection is in its life. "hijacked": handed over
 * to an upgrade (WebSocket), no longer parsed as HTTP.
 */
type ConnState = "new" | "active" | "idle" | "hijacked" | "closed";

/**
 * Which deadline a connection is under; the sweep acts on it when it passes.
 * "grace": shutting down, the time left to send one last request.
 */
type Deadline = "none" | "header" | "idle" | "read" | "write" | "grace";

/** One client connection: its socket, read buffer, state and deadline. */
class Connection {
  buf: Uint8Array = takeBuffer(headBuffers, HEAD_BUFFER_BYTES);
  /** Unconsumed bytes are buf[start, end). */
  start = 0;
  end = 0;
  state: ConnState = "new";
  deadline: Deadline = "none";
  deadlineAt = 0;
  /** When the current request began; `readTimeout` counts from here. */
  requestStartedAt = 0;
  /** Between requests: reading a head; `headStarted` once its first byte came. */
  waitingForHead = false;
  headStarted = false;
  /** The client sent FIN; no more bytes will come. */
  eof = false;
  /** When the connection last went idle (or was accepted): the shutdown grace counts from here. */
  idleSince = 0;
  /** The server sent FIN: it writes nothing more and reads only until the client closes. */
  writeClosed = false;
  /** True once any byte of the current response has been written. */
  responding = false;
  /** The request being handled, for aborting its signal when the client leaves. */
  current: RequestState | null = null;
  /** Refused at the connection limit: answered 503, not counted against it. */
  refused = false;
  /** The upgrade that took the connection over, once hijacked. */
  handedOver: UpgradedConnection | null = null;
  /** The response stream being written, cancelled if the connection closes. */
  streamReader: ReadableStreamDefaultReader<Uint8Array> | ReadableStreamBYOBReader | null = null;
  /**
   * Responses not yet written: out[0, outLength). Small responses are built
   * here, so that the answers to pipelined requests leave in one write.
   */
  out: Uint8Array | null = null;
  outLength = 0;
  /** Requests whose responses sit in `out`: their `completed` settles on flush. */
  unflushed: RequestState[] = [];
  /** Progress of the head scan, relative to `start`, so a dribbled head is scanned once. */
  scanned = 0;
  lineStart = 0;
  firstLineEnd = -1;
  readonly remoteAddr: Addr;
  #reading: Promise<number> | null = null;
  /** Bytes the last fill() brought. */
  #lastRead = 0;
  #writing = 0;

  constructor(readonly conn: Conn, readonly server: ServerImpl) {
    this.remoteAddr = conn.remoteAddr;
  }

  get buffered(): number {
    return this.end - this.start;
  }

  /** True while a read from the socket into the buffer is pending. */
  get reading(): boolean {
    return this.#reading !== null;
  }

  /** A request begins (its first byte, or a new connection): the head deadline starts. */
  startRequest(readHeaderTimeout: number): void {
    this.requestStartedAt = Date.now();
    this.setDeadline("header", readHeaderTimeout);
  }

  setDeadline(kind: Deadline, ms: number): void {
    if (ms > 0 && ms !== Infinity) {
      this.deadline = kind;
      this.deadlineAt = Date.now() + ms;
    } else {
      this.deadline = "none";
    }
  }

  /**
   * Reads more bytes from the socket into the buffer. Concurrent callers share
   * one read. Resolves to the number of bytes added; 0 means end of stream.
   * Grows the buffer up to `limit` bytes of unconsumed data.
   */
  fill(limit = READ_BUFFER_BYTES): Promise<number> {
    if (this.#reading !== null) return this.#reading;
    if (this.eof) return Promise.resolve(0);
    // Closed, the buffer went back to the pool and may be another
    // connection's now: bytes still queued in the socket must not land in it.
    if (this.state === "closed") return Promise.reject(new ClientGoneError());
    this.makeRoom(limit);
    if (this.end === this.buf.length) {
      return Promise.reject(new RangeError("The read buffer is full"));
    }
    // One promise per read, with handlers made once per connection: an idle
    // keep-alive connection then holds as little as its pending read.
    // An empty buffer is read into as it is, which spares a view per request.
    const room = this.end === 0 ? this.buf : this.buf.subarray(this.end);
    return this.#reading = this.conn.read(room).then(this.#filled, this.#readFailed);
  }

  /**
   * Reads from the socket straight into `target`, past the buffer: for a
   * large body read whole, and for upgraded connections. Resolves to the byte
   * count; 0 means end of stream. Never while a {@linkcode fill} is pending.
   */
  readInto(target: Uint8Array): Promise<number> {
    if (this.eof) return Promise.resolve(0);
    return this.conn.read(target).then((n) => this.#counted(n), this.#readFailed);
  }

  #filled = (n: number | null): number => {
    this.#reading = null;
    const count = this.#lastRead = this.#counted(n);
    this.end += count;
    return count;
  };

  /** A read's byte count; at end of stream, marks the client gone and answers 0. */
  #counted(n: number | null): number {
    if (n !== null && n > 0) return n;
    // Like Deno.serve: a client that closed its side is gone; a response
    // stream still being written is cancelled, a buffered response still goes.
    this.eof = true;
    this.current?.abort(new ClientGoneError());
    this.streamReader?.cancel(new ClientGoneError()).catch(() => {});
    return 0;
  }

  #readFailed = (error: unknown): never => {
    this.#reading = null;
    const wasOpen = this.state !== "closed";
    this.clientGone();
    if (!wasOpen) throw new ClientGoneError();
    throw new ClientGoneError(`The connection failed: ${(error as Error).message}`);
  };

  /** Makes room to read: drops consumed bytes, then grows the buffer up to `limit`. */
  makeRoom(limit: number): void {
    // The small head buffer is for clients that send little at a time.
    if (this.buf.length < READ_BUFFER_BYTES && this.#lastRead > HEAD_BUFFER_BYTES / 2) {
      this.useFullBuffer();
    }
    if (this.start === this.end) this.start = this.end = 0;
    if (this.end < this.buf.length) return;
    if (this.start > 0) {
      this.buf.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
      return;
    }
    if (this.buf.length < READ_BUFFER_BYTES) this.useFullBuffer();
    else if (this.buf.length < limit) {
      this.#replaceBuffer(new Uint8Array(Math.min(limit, this.buf.length * 2)));
    }
  }

  /** Takes a full-size read buffer from the pool, for a body or a long head. */
  useFullBuffer(): void {
    if (this.buf.length >= READ_BUFFER_BYTES || this.#reading !== null) return;
    const small = this.buf;
    this.#replaceBuffer(takeBuffer(readBuffers, READ_BUFFER_BYTES));
    giveBuffer(headBuffers, small);
  }

  /**
   * Between requests: hands a full-size buffer back to the pool and keeps a
   * small one, unless the last read was large (a pipelining client, say),
   * which would only take it back at once.
   */
  useHeadBuffer(): void {
    if (
      this.buf.length === HEAD_BUFFER_BYTES || this.buffered > 0 || this.#reading !== null ||
      this.#lastRead > HEAD_BUFFER_BYTES / 2
    ) {
      return;
    }
    if (this.buf.length === READ_BUFFER_BYTES) giveBuffer(readBuffers, this.buf);
    else if (this.buf.length === HEAD_BUFFER_BYTES) giveBuffer(headBuffers, this.buf);
    this.buf = takeBuffer(headBuffers, HEAD_BUFFER_BYTES);
    this.start = this.end = 0;
  }

  /** Moves the unconsumed bytes into `buffer`, which becomes the read buffer. */
  #replaceBuffer(buffer: Uint8Array): void {
    buffer.set(this.buf.subarray(this.start, this.end));
    this.end -= this.start;
    this.start = 0;
    this.buf = buffer;
  }

  /** Makes room for `bytes` more bytes in the output buffer and returns it. */
  reserveOut(bytes: number): Uint8Array {
    const need = this.outLength + bytes;
    if (this.out === null || this.out.length < need) {
      const grown = need <= OUT_BUFFER_BYTES
        ? takeBuffer(outBuffers, OUT_BUFFER_BYTES)
        : new Uint8Array(2 ** Math.ceil(Math.log2(need)));
      if (this.out !== null) grown.set(this.out.subarray(0, this.outLength));
      this.out = grown;
    }
    return this.out;
  }

  /**
   * Writes the buffered responses, then settles their `completed` promises.
   * Returns undefined when the socket took them at once (Node, Bun), which
   * the connection loop then need not await.
   */
  flush(): Promise<void> | undefined {
    if (this.outLength === 0) return;
    const data = this.out!.subarray(0, this.outLength);
    this.outLength = 0;
    const writing = this.#writeAll(data);
    const done = this.unflushed;
    if (writing === undefined) {
      this.#flushed(done);
      done.length = 0; // kept for the next responses
      return;
    }
    this.unflushed = [];
    return writing.then(() => this.#flushed(done), (error) => {
      for (const state of done) state.finish(error);
      throw error;
    });
  }

  #flushed(done: RequestState[]): undefined {
    // An idle connection holds no output buffer: the next response takes one from the pool.
    if (this.outLength === 0 && this.out !== null && this.out.length === OUT_BUFFER_BYTES) {
      giveBuffer(outBuffers, this.out);
      this.out = null;
    }
    for (const state of done) state.finish();
  }

  /** Writes all of `data` after any buffered responses, respecting backpressure. */
  async write(data: Uint8Array): Promise<void> {
    if (this.outLength > 0) await this.flush();
    await this.#writeAll(data);
  }

  /** Writes all of `data`; undefined when the socket took it at once, else a promise. */
  #writeAll(data: Uint8Array): Promise<void> | undefined {
    let sent: number | Promise<number>;
    try {
      sent = this.conn.write(data);
    } catch (error) {
      sent = Promise.reject(error);
    }
    if (sent === data.length) return;
    return this.#writeRest(data, sent);
  }

  async #writeRest(data: Uint8Array, first: number | Promise<number>): Promise<void> {
    this.#writing++;
    try {
      let written = await first;
      while (written < data.length) written += await this.conn.write(data.subarray(written));
    } catch (error) {
      this.clientGone();
      throw new ClientGoneError(`Writing the response failed: ${(error as Error).message}`);
    } finally {
      this.#writing--;
    }
  }

  /** The peer reset or vanished: abort the request in flight and close. */
  clientGone(): void {
    this.current?.abort(new ClientGoneError());
    this.close();
  }

  close(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.deadline = "none";
    this.server.connections.delete(this);
    this.streamReader?.cancel(new ClientGoneError()).catch(() => {});
    try {
      this.conn.close();
    } catch { /* already closed */ }
    this.#releaseBuffers();
    this.server.connectionClosed(this);
  }

  /** Gives the buffers back for the next connection, unless a read or write still holds them. */
  #releaseBuffers(): void {
    // A pending read or write still holds its buffer: leave both to the GC.
    if (this.#reading !== null || this.#writing > 0) return;
    if (this.buf.length === READ_BUFFER_BYTES) giveBuffer(readBuffers, this.buf);
    else if (this.buf.length === HEAD_BUFFER_BYTES) giveBuffer(headBuffers, this.buf);
    this.buf = NO_BYTES; // the pool's now: nothing here may read or write it
    if (this.out !== null && this.out.length === OUT_BUFFER_BYTES && this.outLength === 0) {
      giveBuffer(outBuffers, this.out);
    }
    this.out = null;
    this.start = this.end = this.outLength = 0;
  }

  /**
   * Shutting down while no byte of a request has come: the client may still
   * send one, until {@linkcode SHUTDOWN_GRACE_MS} after the connection went
   * idle; then {@linkcode halfClose}.
   */
  endAfterGrace(): void {
    this.deadline = "grace";
    this.deadlineAt = this.idleSince + SHUTDOWN_GRACE_MS;
  }

  /**
   * Ends an idle connection without a reset (RFC 9112 §9.6): sends FIN, then
   * the connection loop reads and drops whatever still comes until the client
   * closes its side, for at most {@linkcode LINGER_MS}.
   */
  halfClose(): void {
    if (this.writeClosed || this.state === "closed") return;
    if (this.outLength > 0 || this.#writing > 0) {
      this.deadline = "grace"; // a response is still leaving: after it
      this.deadlineAt = Date.now() + SHUTDOWN_SWEEP_MS;
      return;
    }
    this.writeClosed = true;
    this.setDeadline("idle", LINGER_MS);
    this.conn.closeWrite().catch(() => this.close());
  }

  /** Called by the server's sweep when the deadline has passed. */
  expire(): void {
    const kind = this.deadline;
    this.deadline = "none";
    if (kind === "grace") return this.halfClose();
    const requestStarted = kind === "header" && this.buffered > 0 || kind === "read";
    if (requestStarted && !this.responding) {
      // Best effort: tell the client why before closing.
      this.responding = true;
      // A write that cannot finish (a client that reads nothing, or a TLS
      // handshake that never completed) must not keep the connection open.
      const giveUp = setTimeout(() => this.close(), LINGER_MS);
      const done = () => {
        clearTimeout(giveUp);
        this.close();
      };
      const sent = Promise.resolve(this.conn.write(errorResponseBytes(408, "Request Timeout")));
      sent.then(done, done);
      logServerAnswer(this, sent, 408, "Request Timeout");
      this.current?.abort(new HttpError(408, "The request took too long to arrive"));
      return;
    }
    this.current?.abort(new ClientGoneError("The connection timed out"));
    this.close();
  }
}

// ─── 6. Parsing the request head ────────────────────────────────────────────

/** How the request body is framed (RFC 9112 §6.3). */
const enum Framing {
  None,
  Length,
  Chunked,
}

/** What the server learned from a request head. */
interface RequestHead {
  method: string;
  target: string;
  /** "origin", "absolute", "asterisk" or "authority". */
  form: "origin" | "absolute" | "asterisk" | "authority";
  http10: boolean;
  /** Header names and values, flat: [name0, value0, name1, value1, …]. */
  fields: string[];
  host: string | null;
  framing: Framing;
  contentLength: number;
  keepAlive: boolean;
  expectContinue: boolean;
}

/**
 * Finds the end of the request head in the connection's buffer. Returns the
 * index just past the empty line, or -1 when more bytes are needed. Skips empty
 * lines before the request line (RFC 9112 §2.2), rejects bytes that cannot
 * begin a request line at once, and resumes where the last call stopped.
 */
function findHeadEnd(c: Connection, maxHeaderBytes: number): number {
  const buf = c.buf;
  if (c.scanned === 0) {
    while (c.start < c.end) {
      if (buf[c.start] === LF) c.start++;
      else if (buf[c.start] === CR && c.start + 1 < c.end && buf[c.start + 1] === LF) c.start += 2;
      else break;
    }
    checkMethodPrefix(buf, c.start, c.end);
  }
  const base = c.start;
  const end = c.end;
  for (let i = lineEndAt(buf, base + c.scanned, end); i >= 0; i = lineEndAt(buf, i + 1, end)) {
    const lineStart = base + c.lineStart;
    if (c.firstLineEnd < 0) c.firstLineEnd = i - base;
    else if (i === lineStart || (i === lineStart + 1 && buf[lineStart] === CR)) {
      const requestLineBytes = c.firstLineEnd;
      c.scanned = c.lineStart = 0;
      c.firstLineEnd = -1;
      if (i + 1 - base > maxHeaderBytes + 2) throw headTooLarge(requestLineBytes, maxHeaderBytes);
      return i + 1;
    }
    c.lineStart = i + 1 - base;
  }
  c.scanned = c.end - base;
  if (c.buffered > maxHeaderBytes) {
    throw headTooLarge(c.firstLineEnd < 0 ? c.buffered : c.firstLineEnd, maxHeaderBytes);
  }
  return -1;
}

/** 414 when the request line alone is over the limit, else 431. */
function headTooLarge(requestLineBytes: number, maxHeaderBytes: number): HttpError {
  return requestLineBytes > maxHeaderBytes
    ? new HttpError(414, "The request target is too long")
    : new HttpError(431, "The request header fields are too large");
}

/** Rejects at once a request whose first bytes cannot start `method SP`. */
function checkMethodPrefix(buf: Uint8Array, start: number, end: number): void {
  let i = start;
  while (i < end && TCHAR[buf[i]] === 1) i++;
  if (i < end && (buf[i] !== SP || i === start)) throw badRequest("Malformed request line");
}

/** Where a line ends: the index of its LF, and of its content's end (before CR). */
function lineEndAt(buf: Uint8Array, from: number, limit: number): number {
  for (let i = from; i < limit; i++) if (buf[i] === LF) return i;
  return -1;
}

/** The content end of the line whose LF is at `lf`: a CR before the LF is not content. */
function contentEnd(buf: Uint8Array, lineStart: number, lf: number): number {
  return lf > lineStart && buf[lf - 1] === CR ? lf - 1 : lf;
}

/** Compares buf[start, end) with a lowercase ASCII name, ignoring case. */
function equalsLower(buf: Uint8Array, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    if ((buf[start + i] | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** Parses the request head in buf[start, end) into a {@linkcode RequestHead}. */
function parseHead(buf: Uint8Array, start: number, end: number): RequestHead {
  // One decode of the whole head; names and values are slices of it.
  const text = latin1(buf, start, end);
  let lf = lineEndAt(buf, start, end);
  const lineEnd = contentEnd(buf, start, lf);
  const head = parseRequestLine(buf, start, lineEnd, text, start);
  let transferCodings: string | null = null;
  let connection = "";
  let expect: string | null = null;
  let hosts = 0;
  let lengthSeen = false;
  for (let pos = lf + 1;;) {
    lf = lineEndAt(buf, pos, end);
    const stop = contentEnd(buf, pos, lf);
    if (stop === pos) break; // the empty line that ends the head
    if (buf[pos] === SP || buf[pos] === HT) {
      throw badRequest("Obsolete line folding is not accepted (RFC 9112 §5.2)");
    }
    // Field name: one or more tchar, then a colon with no whitespace before it.
    let colon = pos;
    while (colon < stop && TCHAR[buf[colon]] === 1) colon++;
    if (colon === pos || colon === stop || buf[colon] !== COLON) {
      throw badRequest("Malformed header field name");
    }
    // Field value: without leading and trailing whitespace; no CTLs or bare CR.
    let vs = colon + 1, ve = stop;
    while (vs < ve && (buf[vs] === SP || buf[vs] === HT)) vs++;
    while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HT)) ve--;
    for (let i = vs; i < ve; i++) {
      if (FIELD_CHAR[buf[i]] !== 1) throw badRequest("Invalid character in a header field value");
    }
    const name = text.slice(pos - start, colon - start);
    const value = text.slice(vs - start, ve - start);
    head.fields.push(name, value);
    switch (colon - pos) {
      case 4:
        if (equalsLower(buf, pos, colon, "host")) {
          hosts++;
          head.host = value;
        }
        break;
      case 6:
        if (equalsLower(buf, pos, colon, "expect")) {
          expect = expect === null ? value : expect + "," + value;
        }
        break;
      case 10:
        if (equalsLower(buf, pos, colon, "connection")) connection += "," + value;
        break;
      case 14:
        if (equalsLower(buf, pos, colon, "content-length")) {
          const length = parseContentLength(value);
          if (lengthSeen && length !== head.contentLength) {
            throw badRequest("Conflicting Content-Length values");
          }
          lengthSeen = true;
          head.contentLength = length;
        }
        break;
      case 17:
        if (equalsLower(buf, pos, colon, "transfer-encoding")) {
          transferCodings = transferCodings === null ? value : transferCodings + "," + value;
        }
        break;
    }
    pos = lf + 1;
  }
  checkHost(head, hosts);
  head.keepAlive = decideKeepAlive(head.http10, connection);
  head.framing = lengthSeen ? Framing.Length : Framing.None;
  if (transferCodings !== null) {
    if (head.http10) throw badRequest("Transfer-Encoding is not allowed in an HTTP/1.0 request");
    if (lengthSeen) {
      throw badRequest("A request must not carry both Content-Length and Transfer-Encoding");
    }
    checkTransferCodings(transferCodings);
    head.framing = Framing.Chunked;
  }
  if (expect !== null && !head.http10) head.expectContinue = expectsContinue(expect);
  return head;
}

/** Parses `method SP request-target SP HTTP-version` (RFC 9112 §3). */
function parseRequestLine(
  buf: Uint8Array,
  start: number,
  end: number,
  text: string,
  textStart: number,
): RequestHead {
  let i = start;
  while (i < end && TCHAR[buf[i]] === 1) i++;
  if (i === start || i === end || buf[i] !== SP) throw badRequest("Malformed request line");
  const methodEnd = i++;
  const targetStart = i;
  while (i < end && buf[i] !== SP) i++;
  if (i === targetStart || i === end) throw badRequest("Malformed request line");
  const targetEnd = i++;
  const http10 = parseVersion(buf, i, end);
  const method = methodName(buf, start, methodEnd);
  const form = checkTarget(buf, targetStart, targetEnd, method);
  return {
    method,
    target: text.slice(targetStart - textStart, targetEnd - textStart),
    form,
    http10,
    fields: [],
    host: null,
    framing: Framing.None,
    contentLength: 0,
    keepAlive: true,
    expectContinue: false,
  };
}

const COMMON_METHODS = ["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS"];

/** The method as a string, reusing the common ones (methods are case-sensitive). */
function methodName(buf: Uint8Array, start: number, end: number): string {
  for (const m of COMMON_METHODS) {
    if (end - start !== m.length) continue;
    let same = true;
    for (let k = 0; k < m.length; k++) {
      if (buf[start + k] !== m.charCodeAt(k)) {
        same = false;
        break;
      }
    }
    if (same) return m;
  }
  return latin1(buf, start, end);
}

/**
 * Checks `HTTP/DIGIT.DIGIT` and returns whether the request is HTTP/1.0.
 * HTTP/1.x with x > 1 is served as HTTP/1.1 (RFC 9110 §2.5); other majors get 505.
 */
function parseVersion(buf: Uint8Array, i: number, end: number): boolean {
  const isDigit = (b: number) => b >= 48 && b <= 57;
  if (
    end - i !== 8 || buf[i] !== 72 || buf[i + 1] !== 84 || buf[i + 2] !== 84 ||
    buf[i + 3] !== 80 || buf[i + 4] !== SLASH || !isDigit(buf[i + 5]) || buf[i + 6] !== 46 ||
    !isDigit(buf[i + 7])
  ) {
    throw badRequest("Malformed HTTP version");
  }
  if (buf[i + 5] !== 49) {
    throw new HttpError(505, `HTTP/${buf[i + 5] - 48} is not supported; use HTTP/1.1`);
  }
  return buf[i + 7] === 48;
}

/** Validates the request-target (RFC 9112 §3.2) and returns its form. */
function checkTarget(
  buf: Uint8Array,
  start: number,
  end: number,
  method: string,
): RequestHead["form"] {
  for (let i = start; i < end; i++) {
    const b = buf[i];
    if (URI_CHAR[b] !== 1) throw badRequest("Invalid character in the request target");
    if (b === PERCENT && (i + 2 >= end || HEX[buf[i + 1]] === 255 || HEX[buf[i + 2]] === 255)) {
      throw badRequest("Invalid percent-encoding in the request target");
    }
  }
  if (buf[start] === SLASH) {
    if (method === "CONNECT") throw badRequest("CONNECT needs an authority-form target");
    return "origin";
  }
  if (method === "CONNECT") {
    const authority = latin1(buf, start, end);
    if (!isValidAuthority(authority) || !/:\d+$/.test(authority)) {
      throw badRequest("CONNECT needs a host:port target");
    }
    return "authority";
  }
  if (end - start === 1 && buf[start] === STAR) {
    if (method !== "OPTIONS") throw badRequest("Only OPTIONS may use the * target");
    return "asterisk";
  }
  const target = latin1(buf, start, end);
  const authority = /^https?:\/\/([^/?#]+)/i.exec(target)?.[1];
  if (authority === undefined || !URL.canParse(target)) {
    throw badRequest("Malformed request target");
  }
  // RFC 9110 §4.2.4: userinfo in an http(s) URI is an error, not a detail to
  // drop (it hides the real host from whoever reads the target carelessly).
  if (authority.includes("@")) {
    throw badRequest(
      "The request target must not carry userinfo (user@host); send credentials in Authorization",
    );
  }
  return "absolute";
}

/** Checks `uri-host [ ":" port ]` (RFC 3986 §3.2.2–3.2.3) without userinfo. */
function isValidAuthority(authority: string): boolean {
  let hostEnd = authority.length;
  if (authority.charCodeAt(0) === 91 /* [ */) {
    const close = authority.indexOf("]");
    if (
      close < 0 ||
      !/^\[[0-9A-Fa-f:.]+\]$|^\[v[0-9A-Fa-f]+\.[^\]]+\]$/.test(authority.slice(0, close + 1))
    ) {
      return false;
    }
    hostEnd = close + 1;
    if (hostEnd < authority.length && authority.charCodeAt(hostEnd) !== COLON) return false;
  } else {
    const colon = authority.indexOf(":");
    if (colon >= 0) hostEnd = colon;
    for (let i = 0; i < hostEnd; i++) {
      const b = authority.charCodeAt(i);
      if (b > 255 || HOST_CHAR[b] !== 1 || b === COLON || b === 91 || b === 93) return false;
    }
  }
  for (let i = hostEnd + 1; i < authority.length; i++) {
    const b = authority.charCodeAt(i);
    if (b < 48 || b > 57) return false;
  }
  return true;
}

/** RFC 9112 §3.2: HTTP/1.1 requests carry exactly one valid Host. */
function checkHost(head: RequestHead, hosts: number): void {
  if (hosts > 1) throw badRequest("A request must carry exactly one Host header field");
  if (hosts === 0) {
    if (!head.http10) throw badRequest("An HTTP/1.1 request must carry a Host header field");
    return;
  }
  const host = head.host!;
  if (host === "" || host === lastValidHost) return;
  // The URL check catches what the grammar lets through but request.url
  // cannot hold: a bad IPv6 literal, 999.1.1.1, a port over 65535, "%00".
  if (!isValidAuthority(host) || !URL.canParse(`http://${host}/`)) {
    throw badRequest(`Invalid Host header field "${host}"`);
  }
  lastValidHost = host;
}

/** The last Host found valid: most requests repeat it, so most skip the URL check. */
let lastValidHost = "";

/** RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive". */
function decideKeepAlive(http10: boolean, connection: string): boolean {
  if (connection === "") return !http10;
  let close = false, keepAlive = false;
  for (const token of connection.split(",")) {
    const t = token.trim().toLowerCase();
    if (t === "close") close = true;
    else if (t === "keep-alive") keepAlive = true;
  }
  if (close) return false;
  return http10 ? keepAlive : true;
}

/**
 * Content-Length = 1*DIGIT (RFC 9110 §8.6). Leading zeros are digits like any
 * other and do not count towards the 15 significant digits a length may have;
 * a longer one cannot be held exactly and is refused. A list of one decimal
 * value repeated ("5, 05") is that value (§8.6 lets a recipient take it); any
 * other list, an empty element, a sign or a space inside a number is an error.
 */
function parseContentLength(value: string): number {
  let result = -1;
  for (let i = 0; i <= value.length; i++) {
    i = skipOws(value, i);
    let n = 0, digits = 0, significant = 0;
    for (; i < value.length; i++) {
      const d = value.charCodeAt(i) - 48;
      if (d < 0 || d > 9) break;
      digits++;
      n = n * 10 + d;
      if (n !== 0 && ++significant > MAX_LENGTH_DIGITS) {
        throw badRequest(`Content-Length "${value}" is too large`);
      }
    }
    i = skipOws(value, i);
    if (digits === 0 || (i < value.length && value.charCodeAt(i) !== 44 /* , */)) {
      throw badRequest(`Invalid Content-Length "${value}"`);
    }
    if (result >= 0 && n !== result) throw badRequest("Conflicting Content-Length values");
    result = n;
  }
  return result;
}

/** The index of the first character at or after `i` that is not OWS (SP, HTAB). */
function skipOws(s: string, i: number): number {
  while (i < s.length && (s.charCodeAt(i) === SP || s.charCodeAt(i) === HT)) i++;
  return i;
}

/**
 * The members of a comma-separated list field (RFC 9110 §5.6.1), lowercased
 * and without OWS. Empty elements (", ,", a trailing comma, an empty line of
 * the field) are valid and dropped, as a recipient must.
 */
function listMembers(value: string): string[] {
  const members: string[] = [];
  for (const element of value.split(",")) {
    const member = element.trim();
    if (member !== "") members.push(member.toLowerCase());
  }
  return members;
}

/**
 * Expect = #expectation (RFC 9110 §10.1.1), case-insensitive. Returns whether
 * it asks for 100-continue; any other expectation is answered with 417, and
 * a list with no members expects nothing.
 */
function expectsContinue(value: string): boolean {
  const members = listMembers(value);
  for (const member of members) {
    if (member !== "100-continue") {
      throw new HttpError(417, `The expectation "${member}" is not supported`);
    }
  }
  return members.length > 0;
}

/**
 * Transfer-Encoding = #transfer-coding (RFC 9112 §6.1): empty elements are
 * dropped, and the codings must end in exactly one "chunked", the only coding
 * brick decodes. A field with no coding at all frames nothing and is refused.
 */
function checkTransferCodings(value: string): void {
  const codings = listMembers(value);
  if (codings.length === 0) throw badRequest("Transfer-Encoding names no transfer coding");
  const chunked = codings.filter((c) => c === "chunked").length;
  if (codings[codings.length - 1] !== "chunked" || chunked > 1) {
    throw badRequest("The request body framing is invalid: chunked must be the final coding");
  }
  if (codings.length > 1) {
    throw new HttpError(501, `Transfer coding "${codings[0]}" is not supported`);
  }
}

// ─── 7. Request bodies ──────────────────────────────────────────────────────

/** Chunked decoder states. */
const enum Chunk {
  Size,
  Data,
  DataEnd,
  Trailer,
  Done,
}

/**
 * Reads one request's body from the connection: Content-Length or chunked,
 * enforcing maxBodyBytes and the read deadline. `next()` returns the next
 * piece of content (a copy), or null at the end.
 */
class BodyReader {
  /** Bytes of content still to come (Length), or of the current chunk (Chunked). */
  remaining: number;
  chunk: Chunk = Chunk.Size;
  received = 0;
  /** Framing bytes not yet paid for by chunk data; see MAX_CHUNK_OVERHEAD. */
  overhead = 0;
  /** Bytes of the trailer section so far. */
  trailerBytes = 0;
  /** The trailer fields, names as received, once the body has been read to its end. */
  trailers: [string, string][] = [];
  done: boolean;
  error: Error | null = null;
  /** A 100 Continue is owed to the client before the first read. */
  continueOwed: boolean;

  constructor(
    readonly c: Connection,
    readonly framing: Framing,
    length: number,
    readonly maxBodyBytes: number,
    expectContinue: boolean,
  ) {
    this.remaining = framing === Framing.Length ? length : 0;
    this.done = framing === Framing.None || (framing === Framing.Length && length === 0);
    this.continueOwed = expectContinue && !this.done;
  }

  async next(): Promise<Uint8Array | null> {
    if (this.error) throw this.error;
    if (this.done) return null;
    try {
      if (this.continueOwed) await this.sendContinue();
      return this.framing === Framing.Length ? await this.#nextLength() : await this.#nextChunk();
    } catch (error) {
      this.error = error as Error;
      throw error;
    }
  }

  /** Sends `100 Continue` when the handler first reads and no body bytes have arrived. */
  async sendContinue(): Promise<void> {
    this.continueOwed = false;
    if (this.c.buffered === 0) await this.c.write(CONTINUE_BYTES);
  }

  async #nextLength(): Promise<Uint8Array | null> {
    const piece = await this.#takeContent();
    if (this.remaining === 0) this.done = true;
    return piece;
  }

  /** Takes up to `remaining` bytes of content: what is buffered, or the next read. */
  async #takeContent(): Promise<Uint8Array> {
    const c = this.c;
    if (c.buffered === 0 && await c.fill() === 0) throw this.#truncated();
    const n = Math.min(this.remaining, c.buffered);
    const piece = c.buf.slice(c.start, c.start + n);
    c.start += n;
    this.remaining -= n;
    this.received += n;
    return piece;
  }

  async #nextChunk(): Promise<Uint8Array | null> {
    const c = this.c;
    for (;;) {
      switch (this.chunk) {
        case Chunk.Size: {
          const line = await this.#line();
          this.remaining = parseChunkSize(c.buf, line.start, line.end);
          if (this.received + this.remaining > this.maxBodyBytes) throw tooLarge();
          this.#payForFraming(line.end - line.start + 2, this.remaining);
          this.chunk = this.remaining === 0 ? Chunk.Trailer : Chunk.Data;
          break;
        }
        case Chunk.Data: {
          const piece = await this.#takeContent();
          if (this.remaining === 0) this.chunk = Chunk.DataEnd;
          return piece;
        }
        case Chunk.DataEnd: {
          await this.#crlf();
          this.chunk = Chunk.Size;
          break;
        }
        case Chunk.Trailer: {
          const line = await this.#line();
          if (line.end === line.start) {
            this.chunk = Chunk.Done;
            this.done = true;
            return null;
          }
          this.trailerBytes += line.end - line.start + 2;
          if (this.trailerBytes > MAX_TRAILER_BYTES) {
            throw new HttpError(431, "The trailer section of the chunked body is too large");
          }
          this.trailers.push(trailerField(c.buf, line.start, line.end));
          break;
        }
        default:
          return null;
      }
    }
  }

  /** Counts a chunk-size line of `lineBytes` against the `size` bytes of data it frames. */
  #payForFraming(lineBytes: number, size: number): void {
    this.overhead = Math.max(0, this.overhead + lineBytes - 16 - 2 * size);
    if (this.overhead > MAX_CHUNK_OVERHEAD) {
      throw badRequest("The chunked body carries far more framing than data");
    }
  }

  /** Waits for the CRLF that ends chunk data and consumes it. */
  async #crlf(): Promise<void> {
    const c = this.c;
    while (c.buffered < 2) {
      if (await c.fill() === 0) throw this.#truncated();
    }
    if (c.buf[c.start] !== CR || c.buf[c.start + 1] !== LF) {
      throw badRequest("Chunk data must be followed by CRLF (RFC 9112 §7.1)");
    }
    c.start += 2;
  }

  /**
   * Waits for the next line of the chunked framing and consumes it; returns
   * its content bounds. Every such line ends in CRLF (RFC 9112 §7.1): the
   * chunk-size and last-chunk lines, and the trailer section too. RFC 9112
   * §2.2 lets a recipient take a bare LF as the end of the start line and of
   * fields, a MAY that brick takes for the head; in the body it does not.
   * There the lines decide where the message ends: with "X: a\n\r\n" a
   * CRLF-only proxy is still inside the trailer section while a lenient
   * server has ended the message and reads the rest as a new request (the
   * flaw of Go CVE-2025-22871 and Netty CVE-2025-58056). So a bare LF in any
   * line of the chunked framing, trailer fields included, is a 400.
   */
  async #line(): Promise<{ start: number; end: number }> {
    const c = this.c;
    let scanned = c.start;
    for (;;) {
      const lf = lineEndAt(c.buf, scanned, c.end);
      if (lf >= 0) {
        if (lf === c.start || c.buf[lf - 1] !== CR) {
          throw badRequest("A line of the chunked body must end in CRLF, not a bare LF");
        }
        const line = { start: c.start, end: lf - 1 };
        for (let i = line.start; i < line.end; i++) {
          if (c.buf[i] === CR) throw badRequest("Bare CR in chunked framing");
        }
        c.start = lf + 1;
        return line;
      }
      if (c.buffered > MAX_CHUNK_LINE) throw badRequest("Chunk line too long");
      scanned = c.end;
      const before = c.start;
      if (await c.fill(MAX_CHUNK_LINE * 2) === 0) throw this.#truncated();
      scanned -= before - c.start; // the buffer may have been compacted
    }
  }

  #truncated(): Error {
    return badRequest("The request body ended early");
  }

  /** Reads the rest of the body into one array (for text(), json() and the like). */
  async readAll(): Promise<Uint8Array> {
    if (this.framing === Framing.Length && !this.done && !this.error && !this.c.reading) {
      return await this.#readAllOfLength();
    }
    const pieces: Uint8Array[] = [];
    let total = 0;
    for (let piece = await this.next(); piece !== null; piece = await this.next()) {
      pieces.push(piece);
      total += piece.length;
    }
    return concatBytes(pieces, total);
  }

  /**
   * A Content-Length body in one array of its size: the buffered bytes are
   * copied in, the rest is read from the socket straight into it, in as few
   * reads as the socket allows.
   */
  async #readAllOfLength(): Promise<Uint8Array> {
    const c = this.c;
    try {
      if (this.continueOwed) await this.sendContinue();
      const all = new Uint8Array(this.remaining);
      let at = Math.min(all.length, c.buffered);
      all.set(c.buf.subarray(c.start, c.start + at));
      c.start += at;
      while (at < all.length) {
        const n = await c.readInto(all.subarray(at));
        if (n === 0) throw this.#truncated();
        at += n;
      }
      this.received += all.length;
      this.remaining = 0;
      this.done = true;
      return all;
    } catch (error) {
      this.error = error as Error;
      throw error;
    }
  }

  /**
   * After the response: reads and drops what the handler left, if it is small.
   * Returns whether the connection can be reused.
   */
  async drain(): Promise<boolean> {
    if (this.done) return true;
    if (this.error || this.continueOwed) return false;
    if (this.framing === Framing.Length && this.remaining > MAX_DRAIN_BYTES) return false;
    const limit = this.received + MAX_DRAIN_BYTES;
    try {
      while (await this.next() !== null) {
        if (this.received > limit) return false;
      }
      return true;
    } catch {
      return false;
    }
  }
}

const tooLarge = () => new HttpError(413, "The request body is larger than the server accepts");

/**
 * Parses `chunk-size [ chunk-ext ]` (RFC 9112 §7.1, §7.1.1). chunk-size is
 * 1*HEXDIG: leading zeros are valid and do not count towards the 13
 * significant digits a size may have. Whitespace is BWS before a ";" or
 * around "=" in an extension, nowhere else: "5 " and "5;a=b " are refused.
 */
function parseChunkSize(buf: Uint8Array, start: number, end: number): number {
  let i = start, size = 0, significant = 0;
  while (i < end && HEX[buf[i]] !== 255) {
    size = size * 16 + HEX[buf[i++]];
    if (size !== 0 && ++significant > MAX_CHUNK_SIZE_DIGITS) {
      throw badRequest("Chunk size too large");
    }
  }
  if (i === start) throw badRequest("Invalid chunk size");
  // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
  const skipWhitespace = () => {
    while (i < end && (buf[i] === SP || buf[i] === HT)) i++;
  };
  const token = () => {
    const from = i;
    while (i < end && TCHAR[buf[i]] === 1) i++;
    if (i === from) throw badRequest("Invalid chunk extension");
  };
  for (;;) {
    if (i === end) return size;
    // BWS ";" BWS ext-name
    skipWhitespace();
    if (i === end || buf[i++] !== SEMI) {
      throw badRequest('Invalid chunk size line: only a ";" extension may follow the size');
    }
    skipWhitespace();
    token();
    // [ BWS "=" BWS ext-val ]; without "=", whitespace must lead to the next ";"
    const nameEnd = i;
    skipWhitespace();
    if (i < end && buf[i] === EQ) {
      i++;
      skipWhitespace();
      if (i < end && buf[i] === DQUOTE) i = skipQuotedString(buf, i, end);
      else token();
    } else {
      i = nameEnd;
    }
  }
}

/** Returns the index after the quoted-string starting at `i` (RFC 9110 §5.6.4). */
function skipQuotedString(buf: Uint8Array, i: number, end: number): number {
  for (i++; i < end; i++) {
    const b = buf[i];
    if (b === DQUOTE) return i + 1;
    // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ), the bytes of FIELD_CHAR
    if (b === BACKSLASH && ++i < end && FIELD_CHAR[buf[i]] === 1) continue;
    if (b === BACKSLASH || FIELD_CHAR[b] !== 1) break;
  }
  throw badRequest("Invalid quoted string in a chunk extension");
}

/**
 * A trailer field with a header field's syntax, as its name (case kept) and
 * its value without the whitespace around it.
 */
function trailerField(buf: Uint8Array, start: number, end: number): [string, string] {
  let colon = start;
  while (colon < end && TCHAR[buf[colon]] === 1) colon++;
  if (colon === start || colon === end || buf[colon] !== COLON) {
    throw badRequest("Malformed trailer field");
  }
  for (let i = colon + 1; i < end; i++) {
    if (FIELD_CHAR[buf[i]] !== 1) throw badRequest("Invalid character in a trailer field");
  }
  let from = colon + 1;
  let to = end;
  while (from < to && (buf[from] === SP || buf[from] === HT)) from++;
  while (to > from && (buf[to - 1] === SP || buf[to - 1] === HT)) to--;
  return [latin1(buf, start, colon), latin1(buf, from, to)];
}

// ─── 8. The request object ──────────────────────────────────────────────────

/** The key of the request method that hands the connection over after a 101. */
const UPGRADE: unique symbol = Symbol.for("brick.upgrade");
/**
 * The key of the request method that returns the header fields as received:
 * `[name, value]` pairs with names in their case, in order, repeats kept,
 * values without the whitespace around them (latin1, as `Headers` reads
 * them). A proxy forwards with it; nothing is built unless it is called.
 */
const RAW_HEADERS: unique symbol = Symbol.for("brick.rawHeaders");
/**
 * The key of the trailer fields, both ways. On a request, a method that
 * returns the trailer fields of its chunked body once the body has been read
 * (`[name, value]` pairs as received). On a response, the function brick
 * calls for the fields to send after the body ({@linkcode withTrailers} sets
 * it). A symbol from the global registry, so that code which does not import
 * brick (a proxy, a framework adapter) can use it.
 */
const TRAILERS: unique symbol = Symbol.for("brick.trailers");
/**
 * The key of an error's method that gives the HTTP answer for it, as a failed
 * WebSocket handshake does (400 or 426). Such errors are answered with it.
 */
const ERROR_RESPONSE: unique symbol = Symbol.for("brick.errorResponse");

/**
 * What the request object needs of a request head, whichever protocol brought
 * it: HTTP/1.1's {@linkcode RequestHead}, or an HTTP/2 stream's pseudo-headers
 * and fields (see {@linkcode openHttp2Request}).
 */
type RequestFacts = Pick<RequestHead, "method" | "target" | "form" | "host" | "fields">;

/**
 * Where the request object reads the body from: HTTP/1.1's
 * {@linkcode BodyReader}, or an HTTP/2 stream's DATA frames.
 */
interface RequestBody {
  next(): Promise<Uint8Array | null>;
  readAll(): Promise<Uint8Array>;
  /** Called when the reader gives up on the body (its stream was cancelled). */
  cancel?(): void;
  /** Set when the body broke its framing or a limit: the server answers for it. */
  readonly error?: Error | null;
  /** The trailer fields of a chunked body, once it has been read to the end. */
  readonly trailers?: [string, string][];
}

/**
 * Per-request state the server and the request object share. Both protocols
 * use it: HTTP/1.1 with its parsed head and body reader (the defaults), HTTP/2
 * with any {@linkcode RequestFacts} and {@linkcode RequestBody}.
 */
class RequestState<Head extends RequestFacts = RequestHead, Body extends RequestBody = BodyReader> {
  controller: AbortController | null = null;
  abortReason: unknown = undefined;
  aborted = false;
  completion: { promise: Promise<void>; resolve(): void; reject(e: unknown): void } | null = null;
  settled: "pending" | "done" | "failed" = "pending";
  failure: unknown = undefined;
  /** Set when the handler asked to take the connection over (see {@linkcode UPGRADE}). */
  upgrade: PendingUpgrade | null = null;
  /** What `onResponse` will get, filled in as the response is written; null without it. */
  log: ResponseLogEntry | null = null;

  #url: string | null = null;

  constructor(
    readonly head: Head,
    readonly body: Body,
    readonly site: Site,
  ) {}

  /** The request URL, built when first asked for: many handlers never read it. */
  get url(): string {
    return this.#url ??= requestUrl(this.head, this.site);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** `info.completed`, created when first asked for. */
  get completed(): Promise<void> {
    if (this.completion === null) {
      let resolve!: () => void, reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      promise.catch(() => {}); // never an unhandled rejection when nobody listens
      this.completion = { promise, resolve, reject };
      if (this.settled === "done") resolve();
      else if (this.settled === "failed") reject(this.failure);
    }
    return this.completion.promise;
  }

  finish(error?: unknown): void {
    if (this.settled !== "pending") return;
    if (error === undefined) {
      this.settled = "done";
      this.completion?.resolve();
    } else {
      this.settled = "failed";
      this.failure = error;
      this.completion?.reject(error);
    }
  }
}

/** The {@linkcode ServeInfo} handed to the handler beside the request. */
class RequestInfo implements ServeInfo<Addr> {
  #state: AnyRequestState;

  constructor(readonly remoteAddr: Addr, state: AnyRequestState) {
    this.#state = state;
  }

  get completed(): Promise<void> {
    return this.#state.completed;
  }
}

/** A {@linkcode RequestState} of either protocol. */
type AnyRequestState = RequestState<RequestFacts, RequestBody>;

const hasBodyMethod = (method: string) => method !== "GET" && method !== "HEAD";

/**
 * The request handed to the handler. It is an `instanceof Request` whose
 * common members (method, url, headers, body, signal and the body readers) are
 * its own and built only when used; any other member first builds one real
 * `Request` and answers from it (see STYLE.md §6).
 */
class LazyRequest {
  #state: AnyRequestState;
  #headers: Headers | null = null;
  #body: ReadableStream<Uint8Array> | null = null;
  #used = false;
  #real: Request | null = null;

  constructor(state: AnyRequestState) {
    this.#state = state;
  }

  get method(): string {
    return this.#state.head.method;
  }

  get url(): string {
    return this.#state.url;
  }

  get headers(): Headers {
    if (this.#headers === null) {
      const fields = this.#state.head.fields;
      const headers = new Headers();
      for (let i = 0; i < fields.length; i += 2) headers.append(fields[i], fields[i + 1]);
      this.#headers = headers;
    }
    return this.#headers;
  }

  get signal(): AbortSignal {
    return this.#state.signal;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.#real) return this.#real.body;
    if (!hasBodyMethod(this.method)) return null;
    return this.#body ??= bodyStream(this.#state.body);
  }

  get bodyUsed(): boolean {
    if (this.#real) return this.#real.bodyUsed;
    return this.#used || (this.#body?.locked ?? false);
  }

  /** Reads the whole body without building a stream when nobody has asked for one. */
  async bytes(): Promise<Uint8Array<ArrayBuffer>> {
    if (this.#real || this.#body) return new Uint8Array(await this.#materialize().arrayBuffer());
    if (this.#used) throw new TypeError("Body already consumed");
    this.#used = true;
    if (!hasBodyMethod(this.method)) return new Uint8Array(0);
    const all = await this.#state.body.readAll();
    return all as Uint8Array<ArrayBuffer>;
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    const bytes = await this.bytes();
    return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
      ? bytes.buffer
      : bytes.slice().buffer;
  }

  async text(): Promise<string> {
    return decoder.decode(await this.bytes());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  async blob(): Promise<Blob> {
    const type = this.headers.get("content-type") ?? "";
    return new Blob([await this.bytes()], { type });
  }

  formData(): Promise<FormData> {
    return this.#materialize().formData();
  }

  clone(): Request {
    return this.#materialize().clone();
  }

  /** Builds the real Request once; from then on body reads go through it. */
  #materialize(): Request {
    if (this.#real === null) {
      const method = this.method;
      const body = hasBodyMethod(method) ? this.body : null;
      this.#real = new Request(this.url, {
        method,
        headers: this.headers,
        body,
        signal: this.signal,
        // @ts-ignore: duplex is required by fetch for streaming bodies
        duplex: "half",
      });
    }
    return this.#real;
  }

  static materialize(request: LazyRequest): Request {
    return request.#materialize();
  }

  /** Asks for the connection once `response` is sent; see {@linkcode UPGRADE}. */
  [UPGRADE](response: Response): Promise<UpgradedConnection> {
    return requestUpgrade(this.#state, response);
  }

  /**
   * The trailer fields of a chunked body as received (names in their case, in
   * order), once the body has been read to its end; empty before, and for
   * any other body. A new array each call; see {@linkcode TRAILERS}.
   */
  [TRAILERS](): [name: string, value: string][] {
    const trailers = this.#state.body.trailers;
    return trailers === undefined ? [] : trailers.map(([name, value]) => [name, value]);
  }

  /** The header fields as received, a new array each call; see {@linkcode RAW_HEADERS}. */
  [RAW_HEADERS](): [name: string, value: string][] {
    const fields = this.#state.head.fields;
    const pairs: [string, string][] = new Array(fields.length / 2);
    for (let i = 0; i < fields.length; i += 2) pairs[i / 2] = [fields[i], fields[i + 1]];
    return pairs;
  }
}

// Upgrades. A protocol that replaces HTTP on the connection (WebSocket) calls
// `request[Symbol.for("brick.upgrade")](response)` in the handler and returns
// that same response. The server then writes it as `101 Switching Protocols`,
// stops parsing HTTP on the connection and hands the socket over. Modules such
// as websocket.ts use the symbol, so mod.ts needs no import of them.

/** The connection, as handed over after an upgrade. */
interface UpgradedConnection {
  readonly remoteAddr: Addr;
  /** Reads bytes that follow the handshake; null at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes all of `data`; resolves once `data` may be reused. */
  write(data: Uint8Array): Promise<void>;
  /** Sends FIN while still reading. */
  closeWrite(): Promise<void>;
  close(): void;
  /** Called when the server shuts down gracefully; force-closed after `shutdownTimeout`. */
  onShutdown: (() => void) | null;
}

/** An upgrade the handler asked for, settled when its response is sent. */
interface PendingUpgrade {
  response: Response;
  resolve(conn: UpgradedConnection): void;
  reject(error: unknown): void;
}

function requestUpgrade(
  state: AnyRequestState,
  response: Response,
): Promise<UpgradedConnection> {
  if (state.upgrade !== null) {
    return Promise.reject(new TypeError("The connection was already claimed for an upgrade"));
  }
  if (!(response instanceof Response)) {
    return Promise.reject(new TypeError("An upgrade needs the Response the handler will return"));
  }
  return new Promise((resolve, reject) => {
    state.upgrade = { response, resolve, reject };
  });
}

/** A hijacked {@linkcode Connection} as an {@linkcode UpgradedConnection}. */
class HandedOverConnection implements UpgradedConnection {
  onShutdown: (() => void) | null = null;
  #c: Connection;

  constructor(c: Connection) {
    this.#c = c;
  }

  get remoteAddr(): Addr {
    return this.#c.remoteAddr;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    const c = this.#c;
    if (c.buffered === 0 && !c.reading) return await this.#readDirect(buffer);
    if (c.buffered === 0 && await c.fill() === 0) return null;
    const n = Math.min(buffer.length, c.buffered);
    buffer.set(c.buf.subarray(c.start, c.start + n));
    c.start += n;
    return n;
  }

  /** Reads straight into the caller's buffer: no 8 KiB cap and no copy. */
  async #readDirect(buffer: Uint8Array): Promise<number | null> {
    if (this.#c.state === "closed") return null;
    const n = await this.#c.readInto(buffer);
    return n === 0 ? null : n;
  }

  write(data: Uint8Array): Promise<void> {
    return this.#c.write(data);
  }

  closeWrite(): Promise<void> {
    return this.#c.conn.closeWrite();
  }

  close(): void {
    this.#c.close();
  }
}

const decoder = new TextDecoder();

// Every other Request member answers from a real Request built on first use.
lendMembers(
  LazyRequest.prototype,
  Request.prototype,
  (request) => LazyRequest.materialize(request),
);

/**
 * Makes `light` a stand-in for the web class whose prototype is `native`:
 * `light` inherits from it (so `instanceof` holds) and answers every member it
 * does not define itself from the real object that `real(this)` builds.
 */
function lendMembers<T extends object>(light: T, native: object, real: (self: T) => object): void {
  Object.setPrototypeOf(light, native);
  for (const key of Object.getOwnPropertyNames(native)) {
    if (key === "constructor" || Object.hasOwn(light, key)) continue;
    const descriptor = Object.getOwnPropertyDescriptor(native, key)!;
    if (typeof descriptor.get === "function") {
      const get = descriptor.get;
      Object.defineProperty(light, key, {
        configurable: true,
        enumerable: descriptor.enumerable,
        get(this: T) {
          return get.call(real(this));
        },
      });
    } else if (typeof descriptor.value === "function") {
      const method = descriptor.value as (...args: unknown[]) => unknown;
      Object.defineProperty(light, key, {
        configurable: true,
        writable: true,
        value(this: T, ...args: unknown[]) {
          return method.apply(real(this), args);
        },
      });
    }
  }
}

/** The request body as a byte stream, pulled from the socket as the consumer reads. */
function bodyStream(reader: RequestBody): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const piece = await reader.next();
        if (piece === null) controller.close();
        else controller.enqueue(piece);
      } catch (error) {
        controller.error(error);
      }
    },
    cancel() {
      reader.cancel?.();
    },
  }, { highWaterMark: 0 });
}

// ─── 9. Writing responses ───────────────────────────────────────────────────

const CONTINUE_BYTES = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");

/** The bytes of a complete error response that closes the connection. */
function errorResponseBytes(
  status: number,
  message: string,
  withBody = true,
  extraLines = "",
): Uint8Array {
  const body = withBody ? message + "\n" : "";
  return encoder.encode(
    statusLine(status, "") + dateHeaderLine() + extraLines +
      "content-type: text/plain; charset=utf-8\r\n" +
      `content-length: ${encoder.encode(body).length}\r\nconnection: close\r\n\r\n` + body,
  );
}

/** How the response body can be sent. */
type BodySource =
  | { kind: "none" }
  | { kind: "bytes"; bytes: Uint8Array }
  | { kind: "text"; text: string }
  | {
    kind: "stream";
    stream: ReadableStream<Uint8Array>;
    length: number | null;
    /** The runtime hides whether the body is static: peek to find out. */
    peek?: boolean;
  };

const NO_BODY: BodySource = { kind: "none" };

/**
 * Finds a response's body without reading it through a stream when the
 * runtime lets us see a static body (a string or bytes given to `new
 * Response`): reading such a body as a stream costs several microseconds per
 * response. Whatever is not recognised falls back to `response.body`.
 */
/** True where a Response's static body can be seen without reading it (Deno, Node). */
let staticBodyVisible = true;

const staticBody = (() => {
  const probe = new Response("");
  const symbols = Object.getOwnPropertySymbols(probe);
  const find = (name: string) => symbols.find((s) => s.description === name);
  // Deno keeps a string body aside until something reads it.
  const lazy = find("lazy static body");
  // Deno's inner response, or undici's (Node) state: both hold `body`.
  const inner = find("response") ?? find("state");
  staticBodyVisible = inner !== undefined;
  type InnerBody = {
    streamOrStatic?: { body?: unknown; consumed?: boolean };
    source?: unknown;
    length?: number | null;
  };
  return (response: Response): BodySource | undefined => {
    if (inner === undefined || response.bodyUsed) return undefined;
    const record = response as unknown as Record<symbol, unknown>;
    if (lazy !== undefined) {
      const text = record[lazy];
      if (typeof text === "string") return { kind: "text", text };
    }
    const body = (record[inner] as { body?: InnerBody | null } | undefined)?.body;
    if (body === undefined) return undefined;
    if (body === null) return NO_BODY;
    // Deno: a static body sits in streamOrStatic until it is read.
    const fixed = body.streamOrStatic;
    if (fixed !== undefined && !(fixed instanceof ReadableStream)) {
      if (fixed.consumed !== false) return undefined;
      if (fixed.body instanceof Uint8Array) return { kind: "bytes", bytes: fixed.body };
      if (typeof fixed.body === "string") return { kind: "text", text: fixed.body };
      return undefined;
    }
    // undici: `source` is what was given to the constructor.
    if (fixed === undefined) {
      if (typeof body.source === "string") return { kind: "text", text: body.source };
      if (body.source instanceof Uint8Array) return { kind: "bytes", bytes: body.source };
    }
    if (body.source instanceof Blob && typeof body.length === "number") {
      return { kind: "stream", stream: response.body!, length: body.length };
    }
    return undefined;
  };
})();

function bodySourceOf(response: Response): BodySource {
  const light = lightOf(response);
  if (light) {
    const body = lightBody(light);
    if (body !== undefined) return body;
  }
  // A light response with a stream, Blob or form body: undici's handles it.
  const lent = (response as unknown as Partial<LightResponse>)[LIGHT];
  if (lent !== undefined) response = realResponse(response as unknown as LightResponse);
  const known = staticBody(response);
  if (known !== undefined) return known;
  // Bun forgets the Content-Type a Blob body implies once the body is taken
  // before the headers were read: read them first (cheap everywhere).
  void response.headers;
  const stream = response.body;
  if (stream === null) return NO_BODY;
  return { kind: "stream", stream, length: null, peek: !staticBodyVisible };
}

/** Peeking stops holding back a stream past this many bytes: it is sent chunked. */
const MAX_PEEK_BYTES = 8 * 1024 * 1024;

/**
 * Where the runtime hides static bodies (Bun), reads chunks for as long as
 * each arrives within a macrotask: a body that ends that way is sent with a
 * Content-Length, anything else streams with the peeked chunks put back.
 */
async function peekBody(stream: ReadableStream<Uint8Array>): Promise<BodySource> {
  type Read = ReadableStreamReadResult<Uint8Array> | { failure: unknown };
  const reader = stream.getReader();
  const peeked: Uint8Array[] = [];
  let size = 0;
  let pending: Promise<Read> | null = null;
  while (size <= MAX_PEEK_BYTES) {
    const next: Promise<Read> = reader.read().catch((failure) => ({ failure }));
    const soon = await (peeked.length === 0 ? next : Promise.race([next, nextMacrotask()]));
    if (soon === undefined) {
      pending = next; // a real stream: the next chunk is not there yet
      break;
    }
    if ("failure" in soon) {
      pending = next;
      break;
    }
    if (soon.done) return { kind: "bytes", bytes: concatBytes(peeked, size) };
    peeked.push(soon.value);
    size += soon.value.length;
  }
  const resumed = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (peeked.length > 0) return controller.enqueue(peeked.shift()!);
      const read = await (pending ?? reader.read());
      pending = null;
      if ("failure" in read) controller.error(read.failure);
      else if (read.done) controller.close();
      else controller.enqueue(read.value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
  return { kind: "stream", stream: resumed, length: null };
}

function concatBytes(pieces: Uint8Array[], size: number): Uint8Array {
  if (pieces.length === 1) return pieces[0];
  const all = new Uint8Array(size);
  let offset = 0;
  for (const piece of pieces) {
    all.set(piece, offset);
    offset += piece.length;
  }
  return all;
}

/** The end of this event-loop turn: setImmediate where it exists (Node, Bun). */
function nextMacrotask(): Promise<undefined> {
  const later = (globalThis as { setImmediate?: (f: () => void) => void }).setImmediate ??
    ((f: () => void) => setTimeout(f, 0));
  return new Promise((resolve) => later(() => resolve(undefined)));
}

// A lightweight Response for Node and Bun. undici's constructor builds a
// ReadableStream for every body, strings included: about a fifth of brick's
// time per request on hello world; Bun hides a static body, which brick then
// reads as a stream. As @hono/node-server does, brick puts a
// lighter Response in `globalThis` while it serves on Node and Bun. It keeps the body
// and init as given; brick reads them directly, and any other use builds the
// real Response once. `instanceof Response` holds for it and for the runtime's
// own responses; `Response.json()`, `redirect()` and `error()` are the runtime's.

const NativeResponse = globalThis.Response;
const LIGHT = Symbol("brick.lightResponse");

/** What a light response was given, and the real Response once one was needed. */
interface LightState {
  body: unknown;
  init: ResponseInit | undefined;
  real: Response | null;
  /** The init's header fields, read and checked once, when it was given. */
  facts: HeadFacts;
}

class LightResponse {
  [LIGHT]: LightState;

  constructor(body?: BodyInit | null, init?: ResponseInit) {
    const facts = typeof body === "string" ? TEXT_FIELDS : NO_FIELDS;
    const state: LightState = { body, init, real: null, facts };
    this[LIGHT] = state;
    if (init === undefined) return;
    // Whatever the real constructor would reject, it rejects here, at once.
    const given = plainInitFacts(body, init);
    if (given === null) realResponse(this);
    else state.facts = given;
  }

  get status(): number {
    const { real, init } = this[LIGHT];
    return real ? real.status : init?.status ?? 200;
  }

  get statusText(): string {
    const { real, init } = this[LIGHT];
    return real ? real.statusText : init?.statusText ?? "";
  }

  get ok(): boolean {
    return this.status >= 200 && this.status < 300;
  }

  static json(data: unknown, init?: ResponseInit): Response {
    return NativeResponse.json(data, init);
  }

  static redirect(url: string | URL, status?: number): Response {
    return NativeResponse.redirect(url, status);
  }

  static error(): Response {
    return NativeResponse.error();
  }

  static [Symbol.hasInstance](value: unknown): boolean {
    return value instanceof NativeResponse;
  }
}

function realResponse(light: LightResponse): Response {
  const state = light[LIGHT];
  if (state.real === null) {
    const real = new NativeResponse(state.body as BodyInit | null, state.init);
    // Bun's Headers do not show the Content-Type a string body implies: the
    // real response names it, as brick sends it and as Deno's and undici's do.
    if (typeof state.body === "string" && !real.headers.has("content-type")) {
      real.headers.set("content-type", TEXT_TYPE);
    }
    state.real = real;
  }
  return state.real;
}

lendMembers(LightResponse.prototype, NativeResponse.prototype, realResponse);

/** The light state of `response` while no real Response stands behind it. */
function lightOf(response: Response): LightState | undefined {
  const state = (response as unknown as Partial<LightResponse>)[LIGHT];
  return state !== undefined && state.real === null ? state : undefined;
}

/**
 * Reads an init brick can send as given (a valid status and header fields, no
 * statusText) into the facts its head is written from, in one pass: fields are
 * copied when the response is made, as the real constructor copies them.
 *
 * @returns The facts, or null for an init only the real constructor can judge.
 */
function plainInitFacts(body: unknown, init: ResponseInit): HeadFacts | null {
  const { status, statusText, headers } = init;
  if (statusText !== undefined) return null;
  if (status !== undefined) {
    if (!Number.isInteger(status) || status < 200 || status > 599) return null;
    if ((status === 204 || status === 205 || status === 304) && body != null) return null;
  }
  const text = typeof body === "string";
  if (headers === undefined) return text ? TEXT_FIELDS : NO_FIELDS;
  // A frozen record of strings cannot change: its fields are read once for
  // every response made with it.
  const frozen = isFrozenRecord(headers);
  const known = frozen ? frozenFields.get(headers)?.[text ? 1 : 0] : undefined;
  if (known !== undefined) return known;
  const facts = headerInitFacts(headers, text);
  if (frozen && holdsOnlyStrings(headers)) {
    if (facts !== null) facts.wire = latin1Bytes(facts.lines);
    const pair = frozenFields.get(headers) ?? [undefined, undefined];
    pair[text ? 1 : 0] = facts;
    frozenFields.set(headers, pair);
  }
  return facts;
}

/** What brick read from each frozen header record, for a body of bytes or none and for text. */
const frozenFields = new WeakMap<
  object,
  [HeadFacts | null | undefined, HeadFacts | null | undefined]
>();

function isFrozenRecord(headers: HeadersInit): headers is Record<string, string> {
  return Object.getPrototypeOf(headers) === Object.prototype && Object.isFrozen(headers);
}

/** Whether each of the record's own fields is a string value, not a getter or an object. */
function holdsOnlyStrings(record: object): boolean {
  const fields = Object.getOwnPropertyDescriptors(record);
  for (const name in fields) {
    if (typeof fields[name].value !== "string") return false;
  }
  return true;
}

/** The facts of a HeadersInit, or null when a field is invalid. */
function headerInitFacts(headers: HeadersInit, text: boolean): HeadFacts | null {
  const facts = newFacts();
  let valid = true;
  forEachField(headers, (name, value) => {
    if (valid && isToken(name) && isFieldValue(value)) addField(facts, name.toLowerCase(), value);
    else valid = false;
  });
  if (!valid) return null;
  if (text && !facts.type) addField(facts, "content-type", TEXT_TYPE);
  return facts;
}

/** Adds a response header field to `facts`, noting the framing fields apart. */
function addField(facts: HeadFacts, name: string, value: string): void {
  if (FRAMING_FIELDS.has(name)) {
    if (name === "content-length") facts.length = value;
    else if (name === "connection" && /(^|,)\s*close\s*(,|$)/i.test(value)) facts.close = true;
    return;
  }
  if (name === "date") facts.date = true;
  else if (name === "content-type") facts.type = true;
  facts.lines += name + ": " + value + "\r\n";
}

/** Calls `fn` for each field of a HeadersInit, value trimmed as Headers does. */
function forEachField(headers: HeadersInit, fn: (name: string, value: string) => void): void {
  if (headers instanceof Headers) {
    headers.forEach((value, name) => fn(name, value));
  } else if (Array.isArray(headers) || Symbol.iterator in headers) {
    for (const pair of headers as Iterable<string[]>) {
      if (pair.length !== 2) fn("", ""); // invalid: the real constructor will say so
      else fn(String(pair[0]), String(pair[1]).trim());
    }
  } else {
    for (const name of Object.keys(headers)) fn(name, String(headers[name]).trim());
  }
}

/** The body of a light response, when brick can send it as it is. */
function lightBody(state: LightState): BodySource | undefined {
  const body = state.body;
  if (typeof body === "string") return { kind: "text", text: body };
  if (body === null || body === undefined) return NO_BODY;
  if (body instanceof Uint8Array) return { kind: "bytes", bytes: body };
  if (body instanceof ArrayBuffer) return { kind: "bytes", bytes: new Uint8Array(body) };
  return undefined;
}

/** The header fields of a light response, with the Content-Type a string body implies. */
function lightFields(state: LightState, fn: (name: string, value: string) => void): void {
  let typed = false;
  if (state.init?.headers !== undefined) {
    forEachField(state.init.headers, (name, value) => {
      const lower = name.toLowerCase();
      if (lower === "content-type") typed = true;
      fn(lower, value);
    });
  }
  if (!typed && typeof state.body === "string") fn("content-type", TEXT_TYPE);
}

/**
 * On Node and Bun, serves with the light Response in place of the runtime's
 * (once per process). Bun hides a static body: brick would read every
 * response through its stream (peekBody), most of its time per request on
 * hello world. The light response keeps the string or bytes as given, and
 * names the Content-Type a string body implies itself (Bun's own Headers do
 * not show it).
 */
function useLightResponse(): void {
  if (deno) return;
  if (globalThis.Response === NativeResponse) {
    globalThis.Response = LightResponse as unknown as typeof Response;
  }
}

/** Response header fields the server sets itself from the framing it chooses. */
const FRAMING_FIELDS = new Set(["connection", "content-length", "transfer-encoding", "keep-alive"]);

/** What the response's own header fields say about framing. */
interface HeadFacts {
  lines: string;
  /** `lines` as bytes, kept for facts that many responses share. */
  wire: Uint8Array | null;
  /** For shared facts: the head's start for the status and second last sent. */
  prefix: HeadPrefix | null;
  date: boolean;
  /** The response names its Content-Type. */
  type: boolean;
  close: boolean;
  length: string | null;
}

/** The facts of a response that names no header fields: shared, never changed. */
const NO_FIELDS: HeadFacts = {
  lines: "",
  wire: new Uint8Array(0),
  prefix: null,
  date: false,
  type: false,
  close: false,
  length: null,
};

/** The Content-Type a string body implies (Fetch's "extract a body"). */
const TEXT_TYPE = "text/plain;charset=UTF-8";

/** The Content-Type line of a string body, as bytes. */
const TEXT_TYPE_LINE = latin1Bytes("content-type: " + TEXT_TYPE + "\r\n");

/** The facts of a light response with a string body and no header fields: shared. */
const TEXT_FIELDS: HeadFacts = {
  lines: "content-type: " + TEXT_TYPE + "\r\n",
  wire: TEXT_TYPE_LINE,
  prefix: null,
  date: false,
  type: true,
  close: false,
  length: null,
};

/** Serialises the response's own header fields, skipping the framing fields. */
function headerLines(response: Response): HeadFacts {
  // A light response read its fields when it was made, with the Content-Type
  // a string body implies.
  const light = lightOf(response);
  if (light) return light.facts;
  const deno = readDenoFields(response);
  if (deno !== null) return deno;
  const facts = newFacts();
  response.headers.forEach((value, name) => addField(facts, name, value));
  return facts;
}

/** Facts with no field read yet, for one response. */
function newFacts(): HeadFacts {
  return {
    lines: "",
    wire: null,
    prefix: null,
    date: false,
    type: false,
    close: false,
    length: null,
  };
}

/** Deno's own symbols on a Response, where brick recognises them all. */
const DENO_RESPONSE = deno === undefined ? undefined : (() => {
  const symbols = Object.getOwnPropertySymbols(new Response(""));
  const find = (name: string) => symbols.find((s) => s.description === name);
  const found = {
    inner: find("response"),
    headers: find("headers"),
    lazyBody: find("lazy static body"),
    lazyType: find("lazy static content type"),
    fastType: find("serve fast content type"),
  };
  return Object.values(found).every((s) => s !== undefined)
    ? found as { [K in keyof typeof found]: symbol }
    : undefined;
})();

/**
 * Reads a Deno response's header fields from its inner list, as they were
 * set (checked and trimmed then): `forEach` would build the Headers object,
 * sort the names and join repeated ones for every response. Repeated fields
 * go out as lines of their own (RFC 9110 §5.3 makes the two the same). Deno
 * holds a body's implied Content-Type aside until the Headers object is
 * built; where brick cannot tell it, `forEach` reads the fields instead.
 * A response with no fields of its own shares the facts made for that case.
 *
 * @returns The facts, or null where `forEach` must read the fields.
 */
function readDenoFields(response: Response): HeadFacts | null {
  if (DENO_RESPONSE === undefined) return null;
  const record = response as unknown as Record<symbol, unknown>;
  const list = (record[DENO_RESPONSE.inner] as { headerList?: unknown } | undefined)?.headerList;
  if (!Array.isArray(list)) return null;
  let implied: string | null = null;
  if (record[DENO_RESPONSE.headers] == null) { // not built: the type may be held aside
    const lazyType = record[DENO_RESPONSE.lazyType];
    const fastType = record[DENO_RESPONSE.fastType];
    if (typeof fastType === "string") implied = fastType;
    else if (typeof lazyType === "string") implied = lazyType;
    else if (typeof record[DENO_RESPONSE.lazyBody] === "string") implied = TEXT_TYPE;
    else if (lazyType != null || fastType != null) return null;
  }
  if (list.length === 0 && implied === null) return NO_FIELDS;
  if (implied === TEXT_TYPE ? list.length === 0 : isOnlyTextType(list)) return TEXT_FIELDS;
  const facts = newFacts();
  for (let i = 0; i < list.length; i++) {
    const [name, value] = list[i] as [string, string];
    addField(facts, name.toLowerCase(), value);
  }
  if (implied !== null && !facts.type) addField(facts, "content-type", implied);
  return facts;
}

/** Whether a Deno header list holds just the Content-Type a string body implies. */
function isOnlyTextType(list: unknown[]): boolean {
  if (list.length !== 1) return false;
  const [name, value] = list[0] as [string, string];
  return value === TEXT_TYPE && name.length === 12 && name.toLowerCase() === "content-type";
}

/**
 * Writes a response head (a ByteString) into `out` at `at`. Code points above
 * 0x7F are written as single bytes: UTF-8 would mangle ByteString values. A
 * few lines are copied by hand: cheaper than a call to the encoder.
 */
function putHead(out: Uint8Array, at: number, head: string): void {
  if (head.length <= 256) {
    for (let i = 0; i < head.length; i++) out[at + i] = head.charCodeAt(i);
    return;
  }
  const { read, written } = encoder.encodeInto(head, out.subarray(at, at + head.length));
  if (read === head.length && written === head.length) return; // all ASCII
  for (let i = 0; i < head.length; i++) out[at + i] = head.charCodeAt(i);
}

/** A response's framing decisions, and the size of the head written for it. */
interface ResponsePlan {
  /** The head's bytes, at the connection's `outLength` but not yet counted in it. */
  headLength: number;
  keepAlive: boolean;
  chunked: boolean;
  length: number | null;
}

/** Status lines as bytes, built once per status code ("HTTP/1.1 200 OK\r\n"). */
const statusLineBytes = new Map<number, Uint8Array>();

function statusLineOf(status: number, statusText: string): Uint8Array {
  if (statusText !== "" && statusText !== REASONS[status]) {
    return latin1Bytes(statusLine(status, statusText));
  }
  let bytes = statusLineBytes.get(status);
  if (bytes === undefined) {
    bytes = latin1Bytes(statusLine(status, ""));
    statusLineBytes.set(status, bytes);
  }
  return bytes;
}

const CONTENT_LENGTH_NAME = latin1Bytes("content-length: ");
const CHUNKED_LINE = latin1Bytes("transfer-encoding: chunked\r\n");
const CLOSE_LINE = latin1Bytes("connection: close\r\n");
const KEEP_ALIVE_LINE = latin1Bytes("connection: keep-alive\r\n");
/** Room for the lines planResponse() adds to a response's own: type, date, length, connection. */
const MAX_ADDED_LINES = TEXT_TYPE_LINE.length + 64 + CONTENT_LENGTH_NAME.length + 18 +
  KEEP_ALIVE_LINE.length + 2;

/**
 * Decides the framing of a response (RFC 9112 §6.1–§6.3, §9.6) and writes its
 * head, as bytes, into the output buffer at `outLength`, with `room` bytes
 * free behind it; the caller counts the head in once the body is placed.
 */
function planResponse(
  c: Connection,
  state: RequestState,
  response: Response,
  facts: HeadFacts,
  source: BodySource,
  bodyLength: number | null,
  keepAlive: boolean,
  room = 0,
): ResponsePlan {
  const { head } = state;
  const status = response.status;
  const bodyless = head.method === "HEAD" || status === 204 || status === 304;
  if (facts.close || c.server.closing) keepAlive = false;
  let length = bodyLength;
  const declared = facts.length !== null && /^\d{1,15}$/.test(facts.length)
    ? Number(facts.length)
    : null;
  // A stream's length is what the handler declared; a HEAD response keeps the
  // length the GET would have, which only the handler knows (RFC 9110 §8.6).
  if (length === null || (head.method === "HEAD" && source.kind === "none")) {
    length = declared ?? length;
  }
  const chunked = length === null && !bodyless && !head.http10;
  if (length === null && !bodyless && head.http10) keepAlive = false; // close-delimited body

  const line = statusLineOf(status, response.statusText);
  const out = c.reserveOut(line.length + facts.lines.length + MAX_ADDED_LINES + room);
  // Deno and undici type string bodies in the Response's headers; Bun only when it sends.
  const typed = !facts.type && source.kind === "text";
  const sized = length !== null && status !== 204 && status !== 304;
  let at: number;
  if (facts.wire !== null) {
    at = put(out, c.outLength, headPrefix(facts, line, typed, sized));
  } else {
    at = putLines(out, put(out, c.outLength, line), facts.lines);
    if (typed) at = put(out, at, TEXT_TYPE_LINE);
    if (!facts.date) at = put(out, at, dateHeaderBytes());
    if (sized) at = put(out, at, CONTENT_LENGTH_NAME);
  }
  if (sized) {
    at = putDecimal(out, at, length!);
    out[at++] = CR;
    out[at++] = LF;
  } else if (chunked) {
    at = put(out, at, CHUNKED_LINE);
  }
  if (!keepAlive) at = put(out, at, CLOSE_LINE);
  else if (head.http10) at = put(out, at, KEEP_ALIVE_LINE);
  out[at++] = CR;
  out[at++] = LF;
  return {
    headLength: at - c.outLength,
    keepAlive,
    chunked: chunked && source.kind === "stream",
    length,
  };
}

/** Copies `bytes` into `out` at `at`; returns where they end. */
function put(out: Uint8Array, at: number, bytes: Uint8Array): number {
  out.set(bytes, at);
  return at + bytes.length;
}

/** Writes a response's own header lines (a ByteString) at `at`; returns where they end. */
function putLines(out: Uint8Array, at: number, lines: string): number {
  putHead(out, at, lines);
  return at + lines.length;
}

/**
 * The start of a head made from shared facts: status line, fields, type, date
 * and the name of Content-Length, whose value follows.
 */
interface HeadPrefix {
  line: Uint8Array;
  typed: boolean;
  sized: boolean;
  date: Uint8Array | null;
  bytes: Uint8Array;
}

/**
 * The head's start for shared facts (no fields, a string body's type, a
 * frozen record), built again only when the status, the type or the second
 * changes: one copy where there would be four.
 */
function headPrefix(
  facts: HeadFacts,
  line: Uint8Array,
  typed: boolean,
  sized: boolean,
): Uint8Array {
  const date = facts.date ? null : dateHeaderBytes();
  const known = facts.prefix;
  if (
    known !== null && known.line === line && known.typed === typed && known.sized === sized &&
    known.date === date
  ) {
    return known.bytes;
  }
  const wire = facts.wire!;
  const bytes = new Uint8Array(
    line.length + wire.length + (typed ? TEXT_TYPE_LINE.length : 0) + (date?.length ?? 0) +
      (sized ? CONTENT_LENGTH_NAME.length : 0),
  );
  let at = put(bytes, put(bytes, 0, line), wire);
  if (typed) at = put(bytes, at, TEXT_TYPE_LINE);
  if (date !== null) at = put(bytes, at, date);
  if (sized) put(bytes, at, CONTENT_LENGTH_NAME);
  facts.prefix = { line, typed, sized, date, bytes };
  return bytes;
}

/** Writes a non-negative integer in decimal at `at`; returns where it ends. */
function putDecimal(out: Uint8Array, at: number, value: number): number {
  let digits = 1;
  for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits++;
  let rest = value;
  for (let i = at + digits - 1; i >= at; i--) {
    out[i] = 48 + (rest % 10);
    rest = Math.floor(rest / 10);
  }
  return at + digits;
}

/**
 * Writes `response` for `state`'s request. Resolves to whether the connection
 * may carry another request (framing intact, nobody asked to close).
 * A head with a small static body is built in the connection's output buffer
 * and left there for the connection loop to flush.
 */
function writeResponse(
  c: Connection,
  state: RequestState,
  response: Response,
  keepAlive: boolean,
): boolean | Promise<boolean> {
  const source = bodySourceOf(response);
  if (
    source.kind === "stream" && source.peek && !response.headers.has("content-length") &&
    trailersOf(response) === null
  ) {
    return peekBody(source.stream).then((peeked) =>
      writeSource(c, state, response, peeked, keepAlive)
    );
  }
  return writeSource(c, state, response, source, keepAlive);
}

function writeSource(
  c: Connection,
  state: RequestState,
  response: Response,
  source: BodySource,
  keepAlive: boolean,
): boolean | Promise<boolean> {
  const sendsBody = state.head.method !== "HEAD" && response.status !== 204 &&
    response.status !== 304;
  const facts = headerLines(response);
  c.responding = true;
  const trailers = trailersOf(response);
  if (trailers !== null && sendsBody && !state.head.http10 && facts.length === null) {
    source = chunkedSource(source);
  }
  if (source.kind === "text" && source.text.length * 3 <= MAX_COALESCED_BODY) {
    return bufferTextResponse(c, state, response, facts, source.text, sendsBody, keepAlive);
  }
  if (source.kind === "text") {
    const bytes = encoder.encode(source.text);
    return writeBytesResponse(c, state, response, facts, bytes, sendsBody, keepAlive);
  }
  if (source.kind === "bytes") {
    return writeBytesResponse(c, state, response, facts, source.bytes, sendsBody, keepAlive);
  }
  const bodyLength = source.kind === "none" ? 0 : source.length;
  const plan = planResponse(c, state, response, facts, source, bodyLength, keepAlive);
  if (source.kind === "none" || !sendsBody) {
    if (source.kind === "stream") source.stream.cancel().catch(() => {});
    countHead(c, state, plan);
    return plan.keepAlive;
  }
  countHead(c, null, plan); // `completed` waits for the end of the stream
  return writeStreamResponse(c, state, source.stream, plan, trailers);
}

/** Sends the buffered head, then the stream; false when the body did not end as framed. */
async function writeStreamResponse(
  c: Connection,
  state: RequestState,
  stream: ReadableStream<Uint8Array>,
  plan: ResponsePlan,
  trailers: Trailers | null,
): Promise<boolean> {
  await c.flush();
  watchForDisconnect(c, state.body);
  const complete = await writeStream(c, stream, plan.chunked, plan.length, trailers);
  if (complete) state.finish();
  else state.finish(new Error("The response body stream failed before its end"));
  return plan.keepAlive && complete;
}

/** Counts a planned head into the output; `state`'s response is complete once it is flushed. */
function countHead(c: Connection, state: RequestState | null, plan: ResponsePlan): void {
  c.outLength += plan.headLength;
  if (state !== null) c.unflushed.push(state);
}

/** Puts a head in the output buffer; `state`'s response is complete once it is flushed. */
function bufferHead(c: Connection, state: RequestState | null, head: string): void {
  const out = c.reserveOut(head.length);
  putHead(out, c.outLength, head);
  c.outLength += head.length;
  if (state !== null) c.unflushed.push(state);
}

/** What planResponse() needs to know of a text body: its kind. */
const TEXT_BODY: BodySource = { kind: "text", text: "" };

/** A text body: UTF-8 encoded straight into the output buffer, behind its head. */
function bufferTextResponse(
  c: Connection,
  state: RequestState,
  response: Response,
  facts: HeadFacts,
  text: string,
  sendsBody: boolean,
  keepAlive: boolean,
): boolean {
  // The head is planned for as many bytes as the text has characters (all
  // ASCII, the usual case) and the body encoded behind it. Other text has
  // more bytes: the head is planned again for them and the body moved behind.
  let plan = planResponse(
    c,
    state,
    response,
    facts,
    TEXT_BODY,
    text.length,
    keepAlive,
    text.length * 3,
  );
  let bodyAt = c.outLength + plan.headLength;
  let written = putShortAscii(c.out!, bodyAt, text);
  if (written < 0) written = encoder.encodeInto(text, c.out!.subarray(bodyAt)).written;
  if (written !== text.length) {
    const bytes = c.out!.slice(bodyAt, bodyAt + written);
    plan = planResponse(c, state, response, facts, TEXT_BODY, written, keepAlive, written);
    bodyAt = c.outLength + plan.headLength;
    c.out!.set(bytes, bodyAt);
  }
  if (state.log !== null) state.log.bodyBytes = sendsBody ? written : 0;
  c.outLength += plan.headLength + (sendsBody ? written : 0);
  c.unflushed.push(state);
  return plan.keepAlive;
}

/**
 * Copies a short ASCII text into `out` at `at` by hand, cheaper than a call to
 * the encoder; returns its length, or -1 when it is longer or not ASCII.
 */
function putShortAscii(out: Uint8Array, at: number, text: string): number {
  const length = text.length;
  if (length > 64) return -1;
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) return -1;
    out[at + i] = code;
  }
  return length;
}

/** A bytes body: copied behind its head when small, else written after it. */
async function writeBytesResponse(
  c: Connection,
  state: RequestState,
  response: Response,
  facts: HeadFacts,
  bytes: Uint8Array,
  sendsBody: boolean,
  keepAlive: boolean,
): Promise<boolean> {
  const plan = planResponse(c, state, response, facts, NO_BODY, bytes.length, keepAlive);
  countHead(c, state, plan);
  if (!sendsBody || bytes.length === 0) return plan.keepAlive;
  if (state.log !== null) state.log.bodyBytes = bytes.length;
  if (bytes.length <= MAX_COALESCED_BODY) {
    c.reserveOut(bytes.length).set(bytes, c.outLength);
    c.outLength += bytes.length;
  } else {
    await c.write(bytes);
  }
  return plan.keepAlive;
}

/** How long a response stream may write without yielding to the event loop. */
const MAX_WRITE_BURST_MS = 2;

const CRLF = encoder.encode("\r\n");
const LAST_CHUNK = encoder.encode("0\r\n\r\n");

/** Trailer fields as `[name, value]` pairs: an array of pairs, or a `Headers`. */
export type TrailerFields = Iterable<readonly [string, string]>;

/** What brick calls for a response's trailer fields once its body has ended. */
type Trailers = () => TrailerFields | Promise<TrailerFields>;

/**
 * Gives `response` trailer fields: once its body has ended, brick calls
 * `trailers` and sends the fields it returns in the trailer section of the
 * chunked body (RFC 9112 §7.1.2), names in their case and in their order.
 *
 * Trailers need chunked framing, so brick sends such a response's body
 * chunked even when it knows the length; they are left out (and `trailers`
 * is not called) when there is no body (HEAD, 204, 304), when the response
 * sets `Content-Length`, or when the client speaks HTTP/1.0 — RFC 9110
 * §6.5.1 lets trailers be dropped, so send nothing there that the client
 * cannot do without. A field with an invalid name or value, or a framing
 * field (`Content-Length`, `Transfer-Encoding`, `Connection`,
 * `Keep-Alive`), is left out and reported. When `trailers` throws, the body
 * is left unterminated and the connection closed, as for a failed body
 * stream. Over HTTP/2 they end the stream in a HEADERS frame, names
 * lowercased, whatever the body and its Content-Length (not for HEAD, 204, 304).
 *
 * The function is stored under `Symbol.for("brick.trailers")`, which a
 * response may also set itself.
 *
 * @example Usage
 * ```ts ignore
 * import { serve, withTrailers } from "@brick/http";
 *
 * serve({ port: 8888 }, () => {
 *   const parts = ["hello ", "world"];
 *   let length = 0;
 *   const body = new ReadableStream<Uint8Array>({
 *     pull(controller) {
 *       const part = parts.shift();
 *       if (part === undefined) return controller.close();
 *       const bytes = new TextEncoder().encode(part);
 *       length += bytes.length;
 *       controller.enqueue(bytes);
 *     },
 *   });
 *   const response = new Response(body, { headers: { trailer: "x-length" } });
 *   return withTrailers(response, () => [["x-length", String(length)]]);
 * });
 * ```
 *
 * @param response The response to send with trailers.
 * @param trailers Called once the last body chunk is written; returns the fields.
 * @returns `response`, now carrying `trailers`.
 */
export function withTrailers<R extends Response>(
  response: R,
  trailers: () => TrailerFields | Promise<TrailerFields>,
): R {
  Object.defineProperty(response, TRAILERS, { value: trailers, configurable: true });
  return response;
}

/** The trailer function a response carries, or null. */
function trailersOf(response: Response): Trailers | null {
  const trailers = (response as unknown as Record<symbol, unknown>)[TRAILERS];
  return typeof trailers === "function" ? trailers as Trailers : null;
}

/** A body as a stream of unknown length, so that it goes chunked (with its trailers). */
function chunkedSource(source: BodySource): BodySource {
  if (source.kind === "stream") return { kind: "stream", stream: source.stream, length: null };
  if (source.kind === "none") return source;
  const bytes = source.kind === "text" ? encoder.encode(source.text) : source.bytes;
  return {
    kind: "stream",
    stream: new ReadableStream({
      start(controller) {
        if (bytes.length > 0) controller.enqueue(bytes);
        controller.close();
      },
    }),
    length: null,
  };
}

/** The largest buffer a byte stream body is read into; smaller when its length is known. */
const BYOB_BUFFER_BYTES = 512 * 1024;
/** The buffer for a byte stream of unknown length. */
const BYOB_UNKNOWN_LENGTH_BYTES = 64 * 1024;

/**
 * Reads a response stream's chunks. A byte stream (`type: "bytes"`, such as
 * serveDir's file bodies) is read in BYOB mode into one buffer, reused for
 * every read once the previous bytes are written: nothing is allocated or
 * zeroed per chunk. Any other stream is read as usual.
 */
function chunkReader(
  c: Connection,
  stream: ReadableStream<Uint8Array>,
  length: number | null,
): () => Promise<ReadableStreamReadResult<Uint8Array>> {
  let byob: ReadableStreamBYOBReader | null = null;
  if (length !== 0) {
    try {
      byob = stream.getReader({ mode: "byob" });
    } catch { /* not a byte stream */ }
  }
  if (byob === null) {
    const reader = stream.getReader();
    c.streamReader = reader;
    return () => reader.read();
  }
  const reader = byob;
  c.streamReader = reader;
  let buffer = new ArrayBuffer(Math.min(length ?? BYOB_UNKNOWN_LENGTH_BYTES, BYOB_BUFFER_BYTES));
  return async () => {
    const result = await reader.read(new Uint8Array(buffer));
    if (result.value !== undefined) buffer = result.value.buffer as ArrayBuffer;
    return result as ReadableStreamReadResult<Uint8Array>;
  };
}

/**
 * Copies a response stream to the socket, chunked or as is. Returns false when
 * the body did not end as framed (the stream failed or had the wrong length):
 * then the connection must close, and a chunked body is left unterminated so
 * the client sees it is incomplete. Each chunk is written before the next is
 * read, so a byte stream's buffer can be reused.
 */
async function writeStream(
  c: Connection,
  stream: ReadableStream<Uint8Array>,
  chunked: boolean,
  length: number | null,
  trailers: Trailers | null = null,
): Promise<boolean> {
  const read = chunkReader(c, stream, length);
  const reader = c.streamReader!;
  let sent = 0;
  let burstStart = Date.now();
  try {
    for (;;) {
      // A socket that takes every write at once (a fast reader on loopback)
      // settles each write without a turn of the event loop: yield now and
      // then, so that timers (the deadlines) and other connections still run.
      if (Date.now() - burstStart >= MAX_WRITE_BURST_MS) {
        await nextMacrotask();
        burstStart = Date.now();
      }
      const { done, value } = await read();
      if (c.state === "closed" || c.eof) throw new ClientGoneError();
      if (done) break;
      if (!(value instanceof Uint8Array)) {
        throw new TypeError("A response body stream must produce Uint8Array chunks");
      }
      if (value.length === 0) continue;
      sent += value.length;
      if (length !== null && sent > length) {
        throw new RangeError(`The response body is longer than its Content-Length ${length}`);
      }
      if (chunked) await writeChunk(c, value);
      else await c.write(value);
    }
  } catch (error) {
    reader.cancel(error).catch(() => {});
    if (error instanceof ClientGoneError) throw error;
    reportError(error, "The response body stream failed");
    return false;
  } finally {
    c.streamReader = null;
    if (c.current?.log) c.current.log.bodyBytes = sent;
  }
  if (length !== null && sent !== length) {
    reportError(
      new RangeError(`The response body is shorter (${sent} bytes) than its Content-Length`),
      "The response body stream failed",
    );
    return false;
  }
  if (!chunked) return true;
  if (trailers === null) {
    await c.write(LAST_CHUNK);
    return true;
  }
  let last: Uint8Array;
  try {
    last = lastChunkWith(await trailers());
  } catch (error) {
    // Trailers may say whether the body is good: without them it is cut short.
    reportError(error, "The response trailers failed");
    return false;
  }
  await c.write(last);
  return true;
}

/**
 * The last chunk and the trailer section with `fields` (RFC 9112 §7.1.2),
 * names as given. A field with an invalid name or value, or one that frames
 * the message, is left out and reported.
 */
function lastChunkWith(fields: TrailerFields): Uint8Array {
  let text = "0\r\n";
  for (const [name, value] of fields) {
    if (!isToken(name) || !isFieldValue(value) || FRAMING_FIELDS.has(name.toLowerCase())) {
      reportError(
        new TypeError(`Invalid trailer field "${name}": left out of the trailer section`),
        "The response trailers failed",
      );
      continue;
    }
    text += name + ": " + value + "\r\n";
  }
  return latin1Bytes(text + "\r\n");
}

async function writeChunk(c: Connection, data: Uint8Array): Promise<void> {
  const size = encoder.encode(data.length.toString(16) + "\r\n");
  if (data.length <= MAX_COALESCED_BODY) {
    const frame = new Uint8Array(size.length + data.length + 2);
    frame.set(size);
    frame.set(data, size.length);
    frame.set(CRLF, size.length + data.length);
    await c.write(frame);
  } else {
    await c.write(size);
    await c.write(data);
    await c.write(CRLF);
  }
}

function reportError(error: unknown, context: string): void {
  console.error(`brick: ${context}:`, error);
}

function defaultOnError(error: unknown): Response {
  reportError(error, "The handler failed");
  return new Response("Internal Server Error\n", {
    status: 500,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

// ─── 10. The connection loop ────────────────────────────────────────────────

/**
 * Serves one connection, as Go's `conn.serve` does: read a request head (under
 * its deadline), answer protocol errors, run the handler, finish the body,
 * decide whether the connection can be reused, then wait as idle.
 */
async function serveConnection(c: Connection): Promise<void> {
  const server = c.server;
  let answered = false;
  try {
    if (server.options.http2.h2 && server.site.scheme === "https://") {
      // A handshake still under way (Bun) is bounded like a head.
      c.startRequest(server.options.readHeaderTimeout);
      if (await negotiatedProtocol(c.conn) === "h2") return await handOverToHttp2(c);
    }
    for (;;) {
      const headEnd = findHeadEnd(c, server.options.maxHeaderBytes);
      if (headEnd < 0) {
        // Waiting here, not in a helper, keeps an idle connection down to
        // one suspended function and its pending read.
        if (!prepareToReadHead(c)) return; // closed between requests
        if (c.outLength > 0) {
          const flushing = c.flush();
          if (flushing) await flushing; // not when the socket took the bytes at once
        }
        if (c.buffered === 0) c.useHeadBuffer();
        if (await c.fill(server.options.maxHeaderBytes + 4) === 0) {
          if (c.buffered === 0 || c.state === "closed") return;
          throw badRequest("The connection closed before the request head was complete");
        }
        // Half-closed at shutdown: what still comes is dropped until the client closes.
        if (c.writeClosed) return await discardUntilEnd(c);
        continue;
      }
      if (c.state === "new" && opensWithHttp2Preface(c) && prefaceAccepted(c)) {
        return await handOverToHttp2(c);
      }
      c.state = "active";
      c.waitingForHead = false;
      c.responding = false;
      let keepAlive = serveRequest(c, headEnd);
      if (typeof keepAlive !== "boolean") keepAlive = await keepAlive;
      if ((c.state as ConnState) === "hijacked") return;
      // A response sent with keep-alive before a shutdown began: the client
      // may send its next request at any moment, and closing now would cut
      // it off. The loop waits for it (prepareToReadHead) and answers it
      // with `Connection: close`.
      if (!keepAlive || (c.state as ConnState) === "closed") {
        answered = true;
        return;
      }
      c.state = "idle";
      c.responding = false;
    }
  } catch (error) {
    await answerProtocolError(c, error);
  } finally {
    if (c.state !== "hijacked") {
      await c.flush()?.catch(() => {});
      // The client may still be sending (a body the handler left unread, the
      // next request): closing at once would reset the connection, and the
      // reset can destroy the response in flight. Close in stages instead
      // (RFC 9112 §9.6).
      if (answered && !c.eof && c.state !== "closed") await lingeringClose(c).catch(() => {});
      c.close();
    }
  }
}

/**
 * Before reading more of a request head: starts the right deadline (the
 * head's from its first byte, idle while nothing has come, the shutdown grace
 * while shutting down). Returns false when the connection should end instead.
 */
function prepareToReadHead(c: Connection): boolean {
  const { options } = c.server;
  if (!c.waitingForHead) {
    c.waitingForHead = true;
    c.responding = false;
    c.headStarted = false;
  }
  if (c.buffered > 0 && !c.headStarted) {
    c.headStarted = true;
    if (c.state !== "new") c.startRequest(options.readHeaderTimeout);
  } else if (c.buffered === 0) {
    if (c.writeClosed) return false;
    if (c.state === "new") {
      c.startRequest(options.readHeaderTimeout);
      c.idleSince = c.requestStartedAt;
    } else {
      c.idleSince = Date.now();
      c.setDeadline("idle", options.idleTimeout);
    }
    if (c.server.closing) c.endAfterGrace();
  }
  return true;
}

/**
 * Parses, runs and answers one request; gives whether to keep the connection.
 * A handler that answers at once, with a response written whole, is served
 * without a promise: the common request costs no microtask turn here.
 */
function serveRequest(c: Connection, headEnd: number): boolean | Promise<boolean> {
  const server = c.server;
  const { options } = server;
  const headStart = c.start;
  const head = parseHead(c.buf, headStart, headEnd);
  if (head.form === "authority") throw new HttpError(501, "CONNECT is not supported", false);
  if (head.framing === Framing.Length && head.contentLength > options.maxBodyBytes) {
    throw tooLarge();
  }

  const body = new BodyReader(
    c,
    head.framing,
    head.contentLength,
    options.maxBodyBytes,
    head.expectContinue,
  );
  const state = new RequestState(head, body, server.site);
  const info = new RequestInfo(c.remoteAddr, state);
  if (options.onRequestHead) {
    options.onRequestHead(c.buf.subarray(headStart, headEnd), info as ServeInfo);
  }
  if (options.onResponse) logWhenFinished(c, state, headStart);
  c.start = headEnd;
  if (!body.done) c.useFullBuffer();
  c.current = state;
  c.setDeadline("write", options.writeTimeout);
  if (!body.done && options.readTimeout > 0) {
    c.setDeadline("read", options.readTimeout - (Date.now() - c.requestStartedAt));
  }

  const response = callHandler(server, new LazyRequest(state) as unknown as Request, info, state);
  if (response instanceof Response) return answerRequest(c, state, body, response);
  return awaitHandler(c, state, body, response);
}

/** The handler answered with a promise: the connection is watched while it runs. */
async function awaitHandler(
  c: Connection,
  state: RequestState,
  body: BodyReader,
  pending: Promise<Response>,
): Promise<boolean> {
  watchForDisconnect(c, body);
  if (c.outLength > 0) await c.flush(); // earlier answers must not wait for this one
  return await answerRequest(c, state, body, await pending);
}

/** Sends the handler's response; gives whether to keep the connection. */
function answerRequest(
  c: Connection,
  state: RequestState,
  body: BodyReader,
  response: Response,
): boolean | Promise<boolean> {
  const { options } = c.server;
  const head = state.head;
  if (state.log !== null) state.log.status = response.status;
  if (c.state === "closed") {
    state.finish(new ClientGoneError());
    return false;
  }
  // A body whose framing broke, or that was too large, is answered by the server.
  if (body.error instanceof HttpError) throw body.error;
  if (state.upgrade !== null) {
    if (response === state.upgrade.response) return switchProtocols(c, state, body);
    state.upgrade.reject(new Error("The handler returned another response than the upgrade's"));
  }
  c.setDeadline("write", options.writeTimeout);

  let keepAlive = head.keepAlive && !c.eof;
  if (!body.done && (body.continueOwed || body.error)) keepAlive = false;
  if (head.framing === Framing.Length && !body.done && body.remaining > MAX_DRAIN_BYTES) {
    keepAlive = false;
  }
  let written: boolean | Promise<boolean>;
  try {
    written = writeResponse(c, state, response, keepAlive);
  } catch (error) {
    state.finish(error);
    c.current = null;
    throw error;
  }
  if (typeof written !== "boolean" || (written && !body.done)) {
    return finishAnswer(c, state, body, written);
  }
  c.current = null;
  const flushing = c.outLength > MAX_BUFFERED_OUT ? c.flush() : undefined;
  return flushing === undefined ? written : flushing.then(() => written);
}

/**
 * The rest of an answer that could not finish at once: a response still being
 * written, or a body left unread that is drained to keep the connection.
 */
async function finishAnswer(
  c: Connection,
  state: RequestState,
  body: BodyReader,
  written: boolean | Promise<boolean>,
): Promise<boolean> {
  let keepAlive: boolean;
  try {
    keepAlive = await written;
    if (keepAlive && !body.done) {
      await c.flush(); // the client may wait for the answer before sending the rest
      keepAlive = await body.drain();
    }
  } catch (error) {
    state.finish(error);
    throw error;
  } finally {
    c.current = null;
  }
  if (c.outLength > MAX_BUFFERED_OUT) await c.flush();
  return keepAlive;
}

/**
 * Sends the upgrade's response as `101 Switching Protocols` and hands the
 * connection to whoever asked for it: from here on it is not HTTP.
 */
async function switchProtocols(
  c: Connection,
  state: RequestState,
  body: BodyReader,
): Promise<boolean> {
  const upgrade = state.upgrade!;
  try {
    if (!body.done) throw badRequest("A request with a body cannot be upgraded");
    let head = "HTTP/1.1 101 Switching Protocols\r\n";
    upgrade.response.headers.forEach((value, name) => {
      if (name !== "content-length" && name !== "transfer-encoding") {
        head += name + ": " + value + "\r\n";
      }
    });
    c.responding = true;
    if (state.log !== null) state.log.status = 101;
    bufferHead(c, state, head + "\r\n");
    await c.flush();
  } catch (error) {
    upgrade.reject(error);
    throw error;
  }
  c.state = "hijacked";
  c.deadline = "none";
  c.current = null;
  c.handedOver = new HandedOverConnection(c);
  upgrade.resolve(c.handedOver);
  if (c.server.closing) queueMicrotask(() => c.handedOver?.onShutdown?.());
  return false;
}

// HTTP/2 joins here, and only here: serveConnection() hands a connection to
// http2.ts when TLS ALPN chose "h2" (before any byte is read), or when its
// first bytes are the HTTP/2 preface ("PRI * HTTP/2.0\r\n\r\n" reads as a
// complete request head): h2c with prior knowledge on a plain port. From then
// on http2.ts serves it, with this server's handler, error answers, response
// body reading and clock.

const HTTP2_PREFACE_HEAD = "PRI * HTTP/2.0\r\n\r\n";

/**
 * The protocol ALPN chose on a TLS connection ("h2" hands it over before any
 * byte is read, so a bad preface is an HTTP/2 connection error), else null.
 */
async function negotiatedProtocol(conn: Conn): Promise<string | null> {
  const tlsConn = conn as {
    handshake?: () => Promise<{ alpnProtocol: string | null }>;
    alpnProtocol?: string | null;
  };
  if (typeof tlsConn.handshake !== "function") return tlsConn.alpnProtocol ?? null;
  try {
    return (await tlsConn.handshake()).alpnProtocol; // Deno
  } catch {
    return null; // a failed handshake: the first read reports it
  }
}

/** h2c on plain listeners; on TLS, the preface without ALPN's h2 when h2 is on. */
function prefaceAccepted(c: Connection): boolean {
  const { h2, h2c } = c.server.options.http2;
  return c.server.site.scheme === "https://" ? h2 : h2c;
}

function opensWithHttp2Preface(c: Connection): boolean {
  if (c.buffered < HTTP2_PREFACE_HEAD.length) return false;
  for (let i = 0; i < HTTP2_PREFACE_HEAD.length; i++) {
    if (c.buf[c.start + i] !== HTTP2_PREFACE_HEAD.charCodeAt(i)) return false;
  }
  return true;
}

/** Hands the connection to the HTTP/2 engine; resolves once it is closed. */
function handOverToHttp2(c: Connection): Promise<void> {
  const server = c.server;
  const { options } = server;
  c.state = "hijacked";
  c.deadline = "none";
  const transport = c.handedOver = new HandedOverConnection(c);
  const session = serveHttp2(transport, {
    open: (parts) => openHttp2Request(server, c.remoteAddr, parts),
    responseBody: bodySourceOf,
    responseFields(response, fn) {
      const light = lightOf(response);
      if (light) lightFields(light, fn);
      else response.headers.forEach((value, name) => fn(name, value));
    },
    date: () => dateHeaderLine().slice(6, -2),
    remoteAddr: c.remoteAddr,
    scheme: server.site.scheme === "https://" ? "https" : "http",
    defaultAuthority: server.site.defaultHost,
  }, {
    maxHeaderListSize: options.maxHeaderBytes,
    readHeaderTimeout: options.readHeaderTimeout,
    idleTimeout: options.idleTimeout,
    maxBodyBytes: options.maxBodyBytes,
    readTimeout: options.readTimeout,
    writeTimeout: options.writeTimeout,
    shutdownTimeout: options.shutdownTimeout,
  });
  transport.onShutdown = () => void session.shutdown();
  if (server.closing) queueMicrotask(() => transport.onShutdown?.());
  return session.finished;
}

/**
 * An HTTP/2 request as HTTP/1.1's: the same {@linkcode RequestState},
 * {@linkcode LazyRequest} and {@linkcode RequestInfo}, and the same handler
 * call (so onError, and errors that carry their answer, work alike).
 */
class Http2Request extends RequestState<RequestFacts, RequestBody> implements Http2Exchange {
  /** When the stream's request head arrived, for `onResponse`. */
  readonly startTime = Date.now();

  constructor(readonly server: ServerImpl, readonly remoteAddr: Addr, parts: Http2RequestParts) {
    const head: RequestFacts = {
      method: parts.method,
      target: parts.path,
      form: parts.path === "*" ? "asterisk" : "origin",
      host: parts.authority,
      fields: parts.fields,
    };
    super(head, parts.body, server.site);
  }

  respond(): Response | Promise<Response> {
    const request = new LazyRequest(this) as unknown as Request;
    return callHandler(this.server, request, new RequestInfo(this.remoteAddr, this), this);
  }

  override finish(error?: unknown, sent?: Http2Sent): void {
    super.finish(error);
    if (sent !== undefined && this.server.options.onResponse) this.#log(sent, error);
  }

  /** Hands `onResponse` this stream's entry; the request line is HTTP/2's equivalent. */
  #log(sent: Http2Sent, error: unknown): void {
    const { method, target } = this.head;
    const log = newLogEntry(`${method} ${target} HTTP/2`, this.startTime, this.remoteAddr);
    log.status = sent.status;
    log.bodyBytes = sent.bodyBytes;
    reportResponse(this.server, log, error);
  }
}

/** The toolkit's `open`: a request with an authority that is not `host[:port]` is refused. */
function openHttp2Request(
  server: ServerImpl,
  remoteAddr: Addr,
  parts: Http2RequestParts,
): Http2Request {
  if (parts.authority !== null && !isValidAuthority(parts.authority)) {
    throw new TypeError(`:authority "${parts.authority}" is not host[:port]`);
  }
  return new Http2Request(server, remoteAddr, parts);
}

/**
 * While the handler runs or a response streams, once the request body has
 * been read, keeps one read pending so that a client that leaves is noticed:
 * EOF or a reset aborts `request.signal` and cancels the response stream.
 * Bytes that arrive (a pipelined request) stay buffered.
 */
function watchForDisconnect(c: Connection, body: BodyReader): void {
  if (!body.done || c.buffered > 0 || c.eof || c.state === "closed") return;
  c.fill().catch(() => {});
}

/**
 * Calls the handler. A Response returned at once is used at once (no promise
 * is made for it); a promise, a throw or a value that is not a Response goes
 * through {@linkcode settleResponse}.
 */
function callHandler(
  server: ServerImpl,
  request: Request,
  info: ServeInfo<Addr>,
  state: AnyRequestState,
): Response | Promise<Response> {
  let result: unknown;
  try {
    result = server.handler(request, info);
  } catch (error) {
    return recover(server, state, error);
  }
  return result instanceof Response ? result : settleResponse(server, state, result);
}

/** Awaits what the handler returned; anything but a Response goes to onError. */
async function settleResponse(
  server: ServerImpl,
  state: AnyRequestState,
  result: unknown,
): Promise<Response> {
  try {
    const response = await result;
    if (response instanceof Response) return response;
    throw new TypeError(`The handler returned ${describe(response)} instead of a Response`);
  } catch (error) {
    return recover(server, state, error);
  }
}

/** Turns a handler failure into onError's response (or a plain 500). */
async function recover(
  server: ServerImpl,
  state: AnyRequestState,
  error: unknown,
): Promise<Response> {
  if (state.body.error instanceof HttpError || state.aborted) {
    return new Response(null, { status: 500 }); // replaced by the body's error, or never sent
  }
  const answer = ownAnswer(error);
  if (answer !== null) return answer;
  try {
    const response = await server.options.onError(error);
    if (response instanceof Response) return response;
    reportError(new TypeError(`onError returned ${describe(response)}`), "onError failed");
  } catch (onErrorFailure) {
    reportError(onErrorFailure, "onError failed");
  }
  return new Response("Internal Server Error\n", { status: 500 });
}

/** The response an error carries under {@linkcode ERROR_RESPONSE}, if it carries one. */
function ownAnswer(error: unknown): Response | null {
  if (typeof error !== "object" || error === null) return null;
  const make = (error as { [ERROR_RESPONSE]?: unknown })[ERROR_RESPONSE];
  if (typeof make !== "function") return null;
  try {
    const response = make.call(error);
    return response instanceof Response ? response : null;
  } catch {
    return null;
  }
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return `an object (${value.constructor?.name ?? "Object"})`;
  return `a ${typeof value}`;
}

/** The scheme of request URLs and the authority for requests without Host. */
interface Site {
  /** `"http://"` or `"https://"`. */
  scheme: string;
  defaultHost: string;
}

/** The absolute URL of the request, from its target and Host (RFC 9112 §3.3). */
function requestUrl(head: RequestFacts, site: Site): string {
  if (head.form === "absolute") return head.target;
  const host = head.host || site.defaultHost;
  if (head.form === "asterisk") return `${site.scheme}${host}/*`;
  return site.scheme + host + head.target;
}

/** Answers a protocol error on the wire, if nothing of a response was sent yet. */
async function answerProtocolError(c: Connection, error: unknown): Promise<void> {
  c.current?.abort(error);
  if (c.state === "closed" || error instanceof ClientGoneError) return;
  if (!(error instanceof HttpError)) {
    reportError(error, "Unexpected failure while serving a connection");
    return;
  }
  if (c.responding) return;
  try {
    c.responding = true;
    const sent = c.write(errorResponseBytes(error.status, error.message, error.withBody));
    logServerAnswer(c, sent, error.status, error.withBody ? error.message : null);
    await sent;
    await lingeringClose(c);
  } catch { /* the client is gone */ }
}

/**
 * Makes `state`'s entry for `onResponse` and hands it over once the response
 * is written or cut off. The request line is copied now: the buffer is reused.
 */
function logWhenFinished(c: Connection, state: RequestState, headStart: number): void {
  const log = connectionLogEntry(c, requestLineAt(c.buf, headStart, c.start + c.buffered));
  state.log = log;
  const report = (error?: unknown) => state.log === log && reportResponse(c.server, log, error);
  state.completed.then(() => report(), report);
}

/** Reports a response the server made itself (`message` is its body, without the newline). */
function logServerAnswer(
  c: Connection,
  sent: Promise<unknown>,
  status: number,
  message: string | null,
) {
  if (!c.server.options.onResponse) return;
  const line = c.current?.log?.requestLine ?? requestLineAt(c.buf, c.start, c.start + c.buffered);
  // This answer replaces the handler's response, which is not sent then.
  if (c.current !== null) c.current.log = null;
  const log = connectionLogEntry(c, line);
  log.status = status;
  log.bodyBytes = message === null ? 0 : encoder.encode(message).length + 1;
  sent.then(() => reportResponse(c.server, log), (error) => reportResponse(c.server, log, error));
}

function newLogEntry(requestLine: string, startTime: number, remoteAddr: Addr): ResponseLogEntry {
  const [method = "", target = ""] = requestLine === "" ? [] : requestLine.split(" ");
  return {
    requestLine,
    method,
    target,
    status: 0,
    bodyBytes: 0,
    remoteAddr,
    startTime,
    duration: 0,
  };
}

/** A connection's entry for `onResponse`: its request began at `requestStartedAt`. */
function connectionLogEntry(c: Connection, requestLine: string): ResponseLogEntry {
  return newLogEntry(requestLine, c.requestStartedAt || Date.now(), c.remoteAddr);
}

function reportResponse(server: ServerImpl, log: ResponseLogEntry, error?: unknown): void {
  log.duration = Date.now() - log.startTime;
  if (error !== undefined) log.error = error;
  try {
    server.options.onResponse!(log);
  } catch (failure) {
    reportError(failure, "onResponse failed");
  }
}

/** The request line that starts at `start`, as latin1, or "" when no whole line is there. */
function requestLineAt(buf: Uint8Array, start: number, end: number): string {
  let lf = buf.indexOf(LF, start);
  if (lf === -1 || lf >= end) return "";
  if (lf > start && buf[lf - 1] === CR) lf--;
  let line = "";
  for (let i = start; i < lf; i++) line += String.fromCharCode(buf[i]);
  return line;
}

/**
 * Half-closes and reads what the client is still sending for a short while
 * before the close, so that unread request bytes do not make the kernel reset
 * the connection and destroy the error response in flight.
 */
async function lingeringClose(c: Connection): Promise<void> {
  c.writeClosed = true;
  // The deadline starts first: a half-close Bun never confirms must not hold
  // the connection (and a shutdown) open.
  c.setDeadline("idle", LINGER_MS);
  await c.conn.closeWrite();
  await discardUntilEnd(c);
}

/**
 * After the server's FIN: reads and drops what the client still sends until
 * it closes its side, up to {@linkcode MAX_LINGER_BYTES} and the deadline.
 */
async function discardUntilEnd(c: Connection): Promise<void> {
  let discarded = c.buffered;
  while (discarded < MAX_LINGER_BYTES && c.state !== "closed") {
    c.start = c.end = 0;
    const n = await c.fill();
    if (n === 0) return;
    discarded += n;
  }
}

/** Answers a connection over the limit with 503 and closes it. */
async function refuseConnection(c: Connection): Promise<void> {
  c.state = "active";
  c.responding = true;
  try {
    const message = "The server is at its connection limit; retry shortly";
    const sent = c.write(errorResponseBytes(503, message, true, "retry-after: 1\r\n"));
    logServerAnswer(c, sent, 503, message);
    await sent;
    await lingeringClose(c);
  } catch {
    /* the client is gone */
  } finally {
    c.close();
  }
}

// ─── 11. The server ─────────────────────────────────────────────────────────

/** Resolves in a later turn of the event loop, after pending I/O had its turn. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** Tells an upgraded connection that the server is going away. */
function notifyShutdown(upgraded: UpgradedConnection): void {
  try {
    upgraded.onShutdown?.();
  } catch (error) {
    reportError(error, "An upgraded connection's onShutdown failed");
  }
}

/** Every option, with defaults filled in; where to listen is in `listen`. */
type ResolvedOptions =
  & Required<
    Omit<
      ServeOptions,
      | "signal"
      | "onListen"
      | "onRequestHead"
      | "onResponse"
      | "port"
      | "hostname"
      | "cert"
      | "key"
      | "reusePort"
      | "http2"
    >
  >
  & Pick<ServeOptions, "onRequestHead" | "onResponse">
  & { listen: ListenSpec; http2: Required<Http2Switches> };

class ServerImpl implements Server<Addr> {
  readonly connections = new Set<Connection>();
  addr: Addr;
  /** The scheme of request URLs, and their authority when a request has no Host (HTTP/1.0). */
  readonly site: Site;
  readonly finished: Promise<void>;
  /** Shutting down: no keep-alive, idle connections wind down. */
  closing = false;
  /** Set first by a shutdown: the accept loop ends. */
  #stopAccepting = false;
  /** Connections accepted so far. */
  #accepted = 0;
  #listener: Listener;
  #sweep: ReturnType<typeof setInterval> | undefined;
  #resolveFinished!: () => void;
  #rejectFinished!: (error: unknown) => void;
  #acceptDone: Promise<void> = Promise.resolve();
  #shutdown: Promise<void> | null = null;
  /** Connections being refused at the limit (answered 503, then closed). */
  #refusing = 0;

  constructor(
    readonly options: ResolvedOptions,
    readonly handler: Handler<Addr>,
    listener: Listener,
    onListen: (addr: Addr) => void,
  ) {
    this.#listener = listener;
    this.site = { scheme: urlScheme(options.listen), defaultHost: "" };
    this.addr = this.#updateAddr();
    this.finished = new Promise((resolve, reject) => {
      this.#resolveFinished = resolve;
      this.#rejectFinished = reject;
    });
    this.#startSweep();
    // Deno binds before listen() returns, so onListen runs at once, as with
    // Deno.serve; node:net binds in the background.
    if (listener.bound) this.#start(onListen);
    else {
      listener.ready.then(() => this.#start(onListen), (error) => {
        this.closing = this.#stopAccepting = true;
        clearInterval(this.#sweep);
        this.#rejectFinished(error);
      });
    }
  }

  #start(onListen: (addr: Addr) => void): void {
    this.#updateAddr();
    if (this.#stopAccepting) return;
    this.#acceptDone = this.#acceptLoop();
    onListen(this.addr);
  }

  #updateAddr(): Addr {
    const addr = this.addr = this.#listener.addr;
    this.site.defaultHost = addr.transport === "unix"
      ? "localhost"
      : `${displayHost(addr.hostname)}:${addr.port}`;
    return addr;
  }

  /**
   * Accepts connections until the listener closes. A failed accept (a client
   * that reset before it was accepted, or no file descriptors left) is retried,
   * after a growing pause for the lasting kinds, as Go's `Serve` does.
   */
  async #acceptLoop(): Promise<void> {
    let pause = 0;
    while (!this.#stopAccepting) {
      let conn: Conn | null;
      try {
        conn = await this.#listener.accept();
        if (conn === null) return; // the listener was closed
      } catch (error) {
        if (this.#stopAccepting) return;
        if (isPerConnectionError(error)) continue;
        pause = Math.min(Math.max(5, pause * 2), 1000);
        reportError(error, `Accepting a connection failed; retrying in ${pause} ms`);
        await new Promise((resolve) => setTimeout(resolve, pause));
        continue;
      }
      pause = 0;
      this.#accepted++;
      // Accepted as the listener closed: the client has connected and may
      // have sent a request, so it is served (with `Connection: close`)
      // rather than reset.
      const c = new Connection(conn, this);
      const full = this.connections.size - this.#refusing >= this.options.maxConnections;
      this.connections.add(c);
      if (full && !this.#closeAnIdleConnection()) {
        c.refused = true;
        this.#refusing++;
        refuseConnection(c);
      } else {
        serveConnection(c);
      }
    }
  }

  /**
   * One timer for all deadlines: precise to a quarter of the shortest timeout,
   * or to `every` ms when given.
   */
  #startSweep(every?: number): void {
    const o = this.options;
    const timeouts = [o.readHeaderTimeout, o.readTimeout, o.writeTimeout, o.idleTimeout]
      .filter((t) => t > 0 && t !== Infinity);
    every ??= Math.max(5, Math.min(1000, Math.floor(Math.min(...timeouts, 4000) / 4)));
    clearInterval(this.#sweep);
    this.#sweep = setInterval(() => {
      const now = Date.now();
      for (const c of this.connections) {
        if (c.deadline !== "none" && now >= c.deadlineAt) c.expire();
      }
    }, every);
    unrefTimer(this.#sweep);
  }

  /** Makes room at the connection limit: closes the oldest idle connection, if any. */
  #closeAnIdleConnection(): boolean {
    for (const c of this.connections) {
      if (c.state === "idle" && c.buffered === 0) {
        c.close();
        return true;
      }
    }
    return false;
  }

  connectionClosed(c: Connection): void {
    if (c.refused) this.#refusing--;
    if (this.closing && this.connections.size === 0) this.#finish();
  }

  #finish(): void {
    this.#acceptDone.then(() => {
      // A connection accepted as the listener closed is served to its end first.
      if (this.connections.size > 0) return;
      clearInterval(this.#sweep);
      this.#resolveFinished();
    });
  }

  /**
   * Shuts down without cutting off a request (RFC 9112 §9.6): the listener
   * closes first, so new connections are refused; then the connections wind
   * down ({@linkcode ServerImpl.windDown}). `shutdownTimeout` bounds it all.
   */
  shutdown(): Promise<void> {
    if (this.#shutdown) return this.#shutdown;
    const deadline = setTimeout(() => {
      for (const c of [...this.connections]) {
        c.current?.abort(new ClientGoneError("The server shut down"));
        c.close();
      }
    }, this.options.shutdownTimeout);
    this.#shutdown = this.finished.then(() => clearTimeout(deadline));
    this.#acceptQueued().then(() => this.#stopListening());
    return this.#shutdown;
  }

  /**
   * Accepts the connections the kernel has completed but the server has not
   * taken yet: closing the listener would reset them, requests and all.
   * Node takes about one per turn of the event loop, Deno when its reactor
   * next polls: this waits for a quiet spell, {@linkcode SHUTDOWN_QUIET_MS}
   * and two turns without a new connection, for at most
   * {@linkcode SHUTDOWN_ACCEPT_MS}. New connections that keep coming are
   * served meanwhile, as during a load balancer's deregistration delay.
   */
  async #acceptQueued(): Promise<void> {
    const until = Date.now() + Math.min(SHUTDOWN_ACCEPT_MS, this.options.shutdownTimeout / 2);
    let seen = this.#accepted, quietSince = Date.now(), quietTurns = 0;
    while (Date.now() < until) {
      await nextTurn();
      if (seen !== this.#accepted) {
        seen = this.#accepted;
        quietSince = Date.now();
        quietTurns = 0;
      } else if (++quietTurns >= 2 && Date.now() - quietSince >= SHUTDOWN_QUIET_MS) return;
    }
  }

  /** Closes the listener, then winds the connections down once the accept loop has ended. */
  #stopListening(): void {
    this.#stopAccepting = true;
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    // Deno frees the listening socket only once its pending accept has been
    // cancelled, a turn of the event loop or more later. A client told
    // `Connection: close` before then reconnects into the backlog, and the
    // socket's close resets it there: wind down once the accept loop ended.
    this.#acceptDone.then(() => this.windDown());
  }

  /**
   * Winds the connections down. A request in flight is answered with
   * `Connection: close`. A keep-alive connection waiting for its next request
   * gets until {@linkcode SHUTDOWN_GRACE_MS} after its last response to send
   * one (answered with `Connection: close`), since the client may have sent
   * it already; then it is half-closed and read until the client closes, so
   * no reset destroys anything in flight. Upgraded connections are told.
   */
  windDown(): void {
    this.closing = true;
    this.#startSweep(SHUTDOWN_SWEEP_MS);
    for (const c of this.connections) {
      if (c.state === "hijacked") notifyShutdown(c.handedOver!);
      else if (c.waitingForHead && c.buffered === 0) c.endAfterGrace();
    }
    if (this.connections.size === 0) this.#finish();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}

/**
 * Starts an HTTP/1.1 server on a Unix domain socket, for a reverse proxy on
 * the same machine. `info.remoteAddr` is a {@linkcode UnixAddr}.
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "@brick/http";
 *
 * const server = serve({ path: "/tmp/app.sock" }, () => new Response("ok"));
 * // curl --unix-socket /tmp/app.sock http://localhost/
 * await server.shutdown(); // removes /tmp/app.sock
 * ```
 *
 * @param options The socket's path, timeouts, limits and callbacks.
 * @param handler The fetch handler that answers each request.
 * @returns The running server.
 */
export function serve(options: ServeUnixOptions, handler: Handler<UnixAddr>): Server<UnixAddr>;
/**
 * Starts an HTTP/1.1 server on a Unix domain socket, with the handler given
 * among the options.
 *
 * @param init The options, with the handler as `init.handler`.
 * @returns The running server.
 */
export function serve(init: ServeUnixInit): Server<UnixAddr>;
/**
 * Starts an HTTP/1.1 server that answers every request with `handler`.
 *
 * The call forms match `Deno.serve`: `serve(handler)`, `serve(options,
 * handler)` and `serve({ ...options, handler })`.
 *
 * @example Usage
 * ```ts
 * import { serve } from "@brick/http";
 *
 * const server = serve({ port: 0, hostname: "127.0.0.1" }, (request, info) => {
 *   return Response.json({ url: request.url, from: info.remoteAddr.hostname });
 * });
 * console.log(`Listening on port ${server.addr.port}`);
 * await server.shutdown();
 * ```
 *
 * @param handler The fetch handler that answers each request.
 * @returns The running server.
 * @throws {Deno.errors.AddrInUse} When the port is already taken.
 */
export function serve(handler: Handler): Server;
/**
 * Starts an HTTP/1.1 server with options.
 *
 * @example Usage
 * ```ts
 * import { serve } from "@brick/http";
 *
 * const controller = new AbortController();
 * const server = serve(
 *   { port: 0, hostname: "127.0.0.1", signal: controller.signal },
 *   () => new Response("ok"),
 * );
 * const response = await fetch(`http://127.0.0.1:${server.addr.port}/`);
 * console.log(await response.text()); // "ok"
 * controller.abort(); // graceful shutdown
 * await server.finished;
 * ```
 *
 * @param options Where to listen, timeouts, limits and callbacks.
 * @param handler The fetch handler that answers each request.
 * @returns The running server.
 */
export function serve(options: ServeOptions, handler: Handler): Server;
/**
 * Starts an HTTP/1.1 server whose handler is given among the options.
 *
 * @example Usage
 * ```ts
 * import { serve } from "@brick/http";
 *
 * await using server = serve({
 *   port: 0,
 *   hostname: "127.0.0.1",
 *   handler: () => new Response("ok"),
 * });
 * console.log(server.addr.port); // shuts down when `server` goes out of scope
 * ```
 *
 * @param init The options, with the handler as `init.handler`.
 * @returns The running server.
 */
export function serve(init: ServeInit): Server;
export function serve(
  first: Handler | ServeOptions | ServeInit | ServeUnixOptions | ServeUnixInit,
  second?: Handler | Handler<UnixAddr>,
): Server<Addr> {
  const { handler, options } = resolveArguments(first, second as Handler<Addr> | undefined);
  const userOptions: { onListen?: (addr: never) => void; signal?: AbortSignal } =
    typeof first === "function" ? {} : first;
  const onListen = userOptions.onListen as (addr: Addr) => void;
  useLightResponse();
  const listener = listen(options.listen, options.readHeaderTimeout);
  const server = new ServerImpl(options, handler, listener, (addr) => {
    if (userOptions.onListen) onListen(addr);
    else printListening(addr, urlScheme(options.listen));
  });
  const signal = userOptions.signal;
  if (signal) {
    if (signal.aborted) server.shutdown();
    else signal.addEventListener("abort", () => server.shutdown(), { once: true });
  }
  return server;
}

function resolveArguments(
  first: Handler | ServeOptions | ServeInit | ServeUnixOptions | ServeUnixInit,
  second?: Handler<Addr>,
): { handler: Handler<Addr>; options: ResolvedOptions } {
  const given: ServeOptions & Partial<ServeUnixOptions> = typeof first === "function"
    ? {}
    : first as ServeOptions & Partial<ServeUnixOptions>;
  const handler = typeof first === "function"
    ? first as Handler<Addr>
    : second ?? (first as ServeInit).handler as Handler<Addr>;
  if (typeof handler !== "function") {
    throw new TypeError('serve() needs a handler function: serve((request) => new Response("hi"))');
  }
  const options: ResolvedOptions = {
    listen: resolveListenSpec(given),
    onError: given.onError ?? defaultOnError,
    onRequestHead: given.onRequestHead,
    onResponse: given.onResponse,
    readHeaderTimeout: given.readHeaderTimeout ?? DEFAULTS.readHeaderTimeout,
    readTimeout: given.readTimeout ?? DEFAULTS.readTimeout,
    writeTimeout: given.writeTimeout ?? DEFAULTS.writeTimeout,
    idleTimeout: given.idleTimeout ?? DEFAULTS.idleTimeout,
    maxHeaderBytes: given.maxHeaderBytes ?? DEFAULTS.maxHeaderBytes,
    maxBodyBytes: given.maxBodyBytes ?? DEFAULTS.maxBodyBytes,
    maxConnections: given.maxConnections ?? DEFAULTS.maxConnections,
    shutdownTimeout: given.shutdownTimeout ?? DEFAULTS.shutdownTimeout,
    http2: resolveHttp2(given.http2),
  };
  for (
    const key of [
      "readHeaderTimeout",
      "readTimeout",
      "writeTimeout",
      "idleTimeout",
      "shutdownTimeout",
    ] as const
  ) {
    if (!(options[key] >= 0)) {
      throw new RangeError(`Invalid ${key} "${options[key]}": use milliseconds ≥ 0`);
    }
  }
  for (const key of ["maxHeaderBytes", "maxBodyBytes"] as const) {
    if (!(options[key] > 0)) {
      throw new RangeError(`Invalid ${key} "${options[key]}": use a byte count > 0`);
    }
  }
  if (!(options.maxConnections >= 1)) {
    throw new RangeError(
      `Invalid maxConnections "${options.maxConnections}": use a count ≥ 1 (or Infinity)`,
    );
  }
  return { handler, options };
}

/** Where to listen: a Unix socket `path`, or TCP `hostname` and `port`, with TLS if `cert` is given. */
function resolveListenSpec(given: ServeOptions & Partial<ServeUnixOptions>): ListenSpec {
  if (given.path !== undefined) {
    if (typeof given.path !== "string" || given.path === "") {
      throw new TypeError(`Invalid path "${given.path}": give the socket file's path`);
    }
    for (const key of ["port", "hostname", "cert", "key", "reusePort"] as const) {
      if (given[key] !== undefined) {
        throw new TypeError(`"${key}" does not apply to a Unix socket: give either path or ${key}`);
      }
    }
    return { transport: "unix", path: given.path };
  }
  const port = given.port ?? DEFAULTS.port;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`Invalid port "${port}": use a whole number from 0 to 65535`);
  }
  return {
    transport: "tcp",
    hostname: given.hostname ?? DEFAULTS.hostname,
    port,
    reusePort: given.reusePort ?? false,
    tls: resolveTls(given.cert, given.key, resolveHttp2(given.http2).h2),
  };
}

/** `http2: true`, `false` or `{ h2, h2c }` as both switches. */
function resolveHttp2(given: ServeOptions["http2"]): Required<Http2Switches> {
  if (given === undefined || typeof given === "boolean") {
    return { h2: given ?? true, h2c: given ?? true };
  }
  return { h2: given.h2 ?? true, h2c: given.h2c ?? true };
}

/** `cert` and `key` come together, as PEM text; neither means plain HTTP. */
function resolveTls(
  cert: string | undefined,
  key: string | undefined,
  http2: boolean,
): TlsPem | null {
  if (cert === undefined && key === undefined) return null;
  if (cert === undefined || key === undefined) {
    const [given, missing] = cert === undefined ? ["key", "cert"] : ["cert", "key"];
    throw new TypeError(
      `TLS needs both cert and key: ${given} was given without ${missing}. ` +
        "Pass both as PEM text, or neither for plain HTTP",
    );
  }
  for (const [name, pem] of [["cert", cert], ["key", key]] as const) {
    if (typeof pem !== "string" || !pem.includes("-----BEGIN ")) {
      throw new TypeError(
        `Invalid ${name}: expected PEM text ("-----BEGIN …"), not a file path; ` +
          `read the file first, e.g. fs.readFileSync(path, "utf8")`,
      );
    }
  }
  return { cert, key, alpn: http2 ? ["h2", "http/1.1"] : ["http/1.1"] };
}

/** Prints where the server listens: `Listening on http://127.0.0.1:8888/`. */
function printListening(addr: Addr, scheme = "http://"): void {
  if (addr.transport === "unix") console.log(`Listening on unix:${addr.path}`);
  else {
    console.log(`Listening on ${scheme}${bracketed(addr.hostname)}:${addr.port}/`);
  }
}

/** An IP address as the host of a URL: IPv6 in brackets, the wildcard addresses as localhost. */
function displayHost(hostname: string): string {
  if (hostname === "0.0.0.0" || hostname === "::") return "localhost";
  return bracketed(hostname);
}

/** An IPv6 address in brackets, as URLs and `host:port` want it; others as they are. */
function bracketed(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}

/** `"https://"` for a TLS listener, else `"http://"`. */
function urlScheme(spec: ListenSpec): string {
  return spec.transport === "tcp" && spec.tls !== null ? "https://" : "http://";
}
