// brick's HTTP/1.1 client, for the reverse proxy (proxy.ts).
//
// Not `fetch`: fetch decodes bodies, merges and reorders fields, cannot pass an
// Upgrade and hides the connection. A proxy must forward bytes and fields as
// they are, so this client speaks HTTP/1.1 itself on the same transports as
// the server (`Deno.connect` on Deno, `node:net` on Node and Bun), parses the
// response head strictly (RFC 9112 §4–§5, the rules mod.ts applies to
// requests), frames bodies (Content-Length, chunked with trailers,
// close-delimited, none for HEAD/1xx/204/304) and keeps a pool of idle
// keep-alive connections per upstream.
//
// Sections: 1. errors and options, 2. the socket, 3. parsing the response
// head, 4. response bodies, 5. the pool and one round trip.

import * as net from "node:net";
import { PushedConn } from "./_pushed_conn.ts";
import { FIELD_CHAR, isFieldValue, isToken, TCHAR } from "./_grammar.ts";

// ─── 1. Errors and options ──────────────────────────────────────────────────

/** Why an upstream exchange failed; proxy.ts maps it to 502 or 504. */
export type UpstreamFailure =
  /** The connection could not be opened (refused, unreachable, DNS). */
  | "connect"
  /** connectTimeout, responseHeaderTimeout or readIdleTimeout elapsed. */
  | "timeout"
  /** The upstream sent something that is not a valid HTTP/1.1 response. */
  | "protocol"
  /** The upstream closed or reset the connection before the response was complete. */
  | "closed"
  /** The caller aborted (its client went away). */
  | "aborted";

/** An upstream exchange that failed, with the reason as {@linkcode UpstreamFailure}. */
export class UpstreamError extends Error {
  /**
   * Creates the error for one failed exchange.
   *
   * @param failure Why the exchange failed.
   * @param message What happened, for logs and the 502/504 body.
   * @param options The underlying error, if any.
   */
  constructor(readonly failure: UpstreamFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UpstreamError";
  }
}

/** Limits of one upstream's connections. Names follow Go's `http.Transport`. */
export interface UpstreamOptions {
  /** Milliseconds to open a connection before answering 504. @default {10000} */
  connectTimeout?: number;
  /** Milliseconds from the end of the request head to the response head. @default {60000} */
  responseHeaderTimeout?: number;
  /** Milliseconds without a byte from the upstream while a body streams. @default {60000} */
  readIdleTimeout?: number;
  /** Idle keep-alive connections kept per upstream. @default {128} */
  maxIdleConnections?: number;
  /** Milliseconds an idle connection is kept before it is closed. @default {30000} */
  idleConnectionTimeout?: number;
  /** Largest response head accepted, in bytes. @default {65536} */
  maxHeaderBytes?: number;
}

const DEFAULTS: Required<UpstreamOptions> = {
  connectTimeout: 10_000,
  responseHeaderTimeout: 60_000,
  readIdleTimeout: 60_000,
  maxIdleConnections: 128,
  idleConnectionTimeout: 30_000,
  maxHeaderBytes: 65_536,
};

/** Checks and completes upstream options. */
export function upstreamOptions(options: UpstreamOptions = {}): Required<UpstreamOptions> {
  const resolved = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS) as (keyof UpstreamOptions)[]) {
    const value = options[key];
    if (value === undefined) continue;
    if (typeof value !== "number" || !(value >= 0)) {
      throw new RangeError(`${key} must be a number of 0 or more, got ${String(value)}`);
    }
    resolved[key] = value;
  }
  return resolved;
}

// ─── 2. The socket ──────────────────────────────────────────────────────────

/** A connected TCP socket, as the client uses it. */
export interface Socket {
  /** Reads into `buffer`; resolves to the byte count, or null at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes all of `data`; resolves once `data` may be reused. */
  write(data: Uint8Array): Promise<void>;
  /** Sends FIN while still reading. */
  closeWrite(): Promise<void>;
  /** Closes both directions; pending reads and writes fail. Safe to call twice. */
  close(): void;
  /** True once the peer sent FIN or the socket failed (known on node:net only). */
  readonly ended: boolean;
}

type DenoRuntime = typeof Deno;
const deno: DenoRuntime | undefined = (globalThis as { Deno?: DenoRuntime }).Deno;

/** Opens a TCP connection to `hostname:port`, failing after `timeout` ms (0: never). */
export function connectTcp(hostname: string, port: number, timeout: number): Promise<Socket> {
  const opening = deno ? connectDeno(deno, hostname, port) : connectNode(hostname, port);
  if (timeout <= 0) return opening;
  return new Promise((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(
        new UpstreamError("timeout", `Connecting to ${hostname}:${port} took over ${timeout} ms`),
      );
    }, timeout);
    opening.then((socket) => {
      clearTimeout(timer);
      if (late) socket.close();
      else resolve(socket);
    }, (error) => {
      clearTimeout(timer);
      if (!late) reject(error);
    });
  });
}

function connectFailed(hostname: string, port: number, error: unknown): UpstreamError {
  const why = error instanceof Error ? error.message : String(error);
  return new UpstreamError("connect", `Cannot connect to ${hostname}:${port}: ${why}`, {
    cause: error,
  });
}

async function connectDeno(runtime: DenoRuntime, hostname: string, port: number): Promise<Socket> {
  let conn: Deno.TcpConn;
  try {
    conn = await runtime.connect({ hostname, port, transport: "tcp" });
  } catch (error) {
    throw connectFailed(hostname, port, error);
  }
  conn.setNoDelay(true);
  return new DenoSocket(conn);
}

/** A `Deno.TcpConn` as a {@linkcode Socket}. */
class DenoSocket implements Socket {
  ended = false;
  #conn: Deno.TcpConn;
  #closed = false;

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    const n = await this.#conn.read(buffer);
    if (n === null) this.ended = true;
    return n;
  }

  async write(data: Uint8Array): Promise<void> {
    for (let at = 0; at < data.length;) at += await this.#conn.write(data.subarray(at));
  }

  closeWrite(): Promise<void> {
    return this.#conn.closeWrite();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.ended = true;
    try {
      this.#conn.close();
    } catch { /* already closed by the runtime */ }
  }
}

function connectNode(hostname: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port, noDelay: true, allowHalfOpen: true });
    const failed = (error: Error) => reject(connectFailed(hostname, port, error));
    socket.once("error", failed);
    socket.once("connect", () => {
      socket.off("error", failed);
      resolve(new NodeSocket(socket));
    });
  });
}

/**
 * A `node:net` socket as a pull-style {@linkcode Socket}: its reads are
 * mod.ts's (the queue, pausing while it is full, the end-of-stream rules).
 */
class NodeSocket extends PushedConn implements Socket {
  ended = false;
  #socket: net.Socket;

  constructor(socket: net.Socket) {
    super();
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => this.received(chunk));
    socket.on("end", () => {
      this.ended = true;
      this.peerEnded();
    });
    socket.on("error", (error) => {
      this.ended = true;
      // After the upstream's FIN the bytes are all in: reads end cleanly.
      if (!socket.readableEnded) this.failed(error);
    });
    socket.on("close", () => {
      this.ended = true;
      this.socketClosed();
    });
  }

  protected pauseReading(): void {
    this.#socket.pause();
  }

  protected resumeReading(): void {
    this.#socket.resume();
  }

  write(data: Uint8Array): Promise<void> {
    if (this.#socket.destroyed) {
      return Promise.reject(this.failure ?? new Error("The socket closed"));
    }
    return new Promise((resolve, reject) => {
      let settled = false;
      const onClose = () => settle(this.failure ?? new Error("The socket closed"));
      const settle = (error?: Error | null) => {
        if (settled) return;
        settled = true;
        this.#socket.off("close", onClose);
        if (error) reject(error);
        else resolve();
      };
      this.#socket.once("close", onClose);
      this.#socket.write(data, settle);
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#socket.destroyed) return resolve();
      this.#socket.end(() => resolve());
      this.#socket.once("close", () => resolve());
    });
  }

  close(): void {
    this.ended = true;
    this.#socket.destroy();
  }
}

// ─── 3. Parsing the response head ───────────────────────────────────────────

const CR = 13, LF = 10, SP = 32, HT = 9, COLON = 58;

/** RFC 9112 §4 reason-phrase: HTAB, SP, VCHAR, obs-text. */
const REASON_CHAR = FIELD_CHAR;

/** A parsed response head. */
export interface ResponseHead {
  status: number;
  statusText: string;
  /** HTTP/1.0 response (no keep-alive unless asked for). */
  http10: boolean;
  /** Field names and values as received, flat: [name0, value0, name1, value1, …]. */
  fields: string[];
}

function latin1(bytes: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i += 2048) {
    s += String.fromCharCode.apply(
      null,
      bytes.subarray(i, Math.min(end, i + 2048)) as unknown as number[],
    );
  }
  return s;
}

const malformed = (why: string) =>
  new UpstreamError("protocol", `Malformed upstream response: ${why}`);

/**
 * Finds the end of a response head in buf[start, end): the index just past
 * its empty line, or -1 when more bytes are needed.
 */
export function findHeadEnd(buf: Uint8Array, start: number, end: number): number {
  for (let i = start; i < end; i++) {
    if (buf[i] !== LF) continue;
    if (i + 1 < end && buf[i + 1] === LF) return i + 2;
    if (i + 2 < end && buf[i + 1] === CR && buf[i + 2] === LF) return i + 3;
  }
  return -1;
}

/**
 * Parses a response head (RFC 9112 §4 status line, §5 field lines) in
 * buf[start, end), `end` just past its empty line. Strict like the server's
 * request parser: no obsolete line folding, no whitespace before the colon,
 * no control characters in values.
 */
export function parseResponseHead(buf: Uint8Array, start: number, end: number): ResponseHead {
  let lf = buf.indexOf(LF, start);
  if (lf < 0 || lf >= end) throw malformed("no status line");
  const lineEnd = lf > start && buf[lf - 1] === CR ? lf - 1 : lf;
  // HTTP-version SP 3DIGIT SP [ reason-phrase ]
  const isDigit = (b: number) => b >= 48 && b <= 57;
  const b = start;
  if (
    lineEnd - b < 12 || buf[b] !== 72 || buf[b + 1] !== 84 || buf[b + 2] !== 84 ||
    buf[b + 3] !== 80 || buf[b + 4] !== 47 || buf[b + 5] !== 49 || buf[b + 6] !== 46 ||
    !isDigit(buf[b + 7]) || buf[b + 8] !== SP || !isDigit(buf[b + 9]) ||
    !isDigit(buf[b + 10]) || !isDigit(buf[b + 11]) || (lineEnd > b + 12 && buf[b + 12] !== SP)
  ) {
    throw malformed("invalid status line");
  }
  const status = (buf[b + 9] - 48) * 100 + (buf[b + 10] - 48) * 10 + (buf[b + 11] - 48);
  if (status < 100) throw malformed(`invalid status code ${status}`);
  for (let i = b + 13; i < lineEnd; i++) {
    if (REASON_CHAR[buf[i]] !== 1) throw malformed("invalid character in the reason phrase");
  }
  const head: ResponseHead = {
    status,
    statusText: lineEnd > b + 13 ? latin1(buf, b + 13, lineEnd) : "",
    http10: buf[b + 7] === 48,
    fields: [],
  };
  for (let pos = lf + 1;;) {
    lf = buf.indexOf(LF, pos);
    if (lf < 0 || lf >= end) throw malformed("unterminated head");
    const stop = lf > pos && buf[lf - 1] === CR ? lf - 1 : lf;
    if (stop === pos) break;
    if (buf[pos] === SP || buf[pos] === HT) throw malformed("obsolete line folding");
    let colon = pos;
    while (colon < stop && TCHAR[buf[colon]] === 1) colon++;
    if (colon === pos || colon === stop || buf[colon] !== COLON) {
      throw malformed("invalid field name");
    }
    let vs = colon + 1, ve = stop;
    while (vs < ve && (buf[vs] === SP || buf[vs] === HT)) vs++;
    while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HT)) ve--;
    for (let i = vs; i < ve; i++) {
      if (FIELD_CHAR[buf[i]] !== 1) throw malformed("invalid character in a field value");
    }
    head.fields.push(latin1(buf, pos, colon), latin1(buf, vs, ve));
    pos = lf + 1;
  }
  return head;
}

/** How a response body is delimited (RFC 9112 §6.3). */
export type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  | { kind: "close" };

/**
 * Decides a response's framing and whether its connection may be reused
 * (RFC 9112 §6.3, §9.3). Conflicting or invalid Content-Length is an error.
 */
export function responseFraming(
  head: ResponseHead,
  requestMethod: string,
): { framing: BodyFraming; reusable: boolean } {
  let lengths: string | null = null;
  let codings: string | null = null;
  let connection = "";
  const { fields } = head;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i].toLowerCase();
    if (name === "content-length") {
      lengths = lengths === null ? fields[i + 1] : lengths + "," + fields[i + 1];
    } else if (name === "transfer-encoding") {
      codings = codings === null ? fields[i + 1] : codings + "," + fields[i + 1];
    } else if (name === "connection") connection += "," + fields[i + 1].toLowerCase();
  }
  const tokens = connection.split(",").map((t) => t.trim());
  let reusable = head.http10 ? tokens.includes("keep-alive") : !tokens.includes("close");
  const bodyless = requestMethod === "HEAD" || head.status < 200 || head.status === 204 ||
    head.status === 304;
  if (bodyless) return { framing: { kind: "none" }, reusable };
  if (codings !== null) {
    const list = codings.split(",").map((c) => c.trim().toLowerCase());
    // Transfer-Encoding overrides Content-Length; such a message may be an
    // attempt at request smuggling, so the connection is not reused.
    if (lengths !== null) reusable = false;
    if (!head.http10 && list[list.length - 1] === "chunked") {
      return { framing: { kind: "chunked" }, reusable };
    }
    return { framing: { kind: "close" }, reusable: false };
  }
  if (lengths !== null) {
    let length = -1;
    for (const part of lengths.split(",")) {
      const digits = part.trim();
      if (!/^\d{1,15}$/.test(digits)) throw malformed(`invalid Content-Length "${lengths}"`);
      if (length >= 0 && Number(digits) !== length) throw malformed("conflicting Content-Length");
      length = Number(digits);
    }
    return { framing: length === 0 ? { kind: "none" } : { kind: "length", length }, reusable };
  }
  return { framing: { kind: "close" }, reusable: false };
}

// ─── 4. Response bodies ─────────────────────────────────────────────────────

const READ_BYTES = 16_384;
const MAX_CHUNK_LINE = 4096;
const MAX_TRAILER_BYTES = 16_384;

/** One upstream connection: its socket, read buffer and deadlines. */
export class UpstreamConnection {
  buf = new Uint8Array(READ_BYTES);
  start = 0;
  end = 0;
  /** Requests this connection carried; above 0 it came from the pool. */
  uses = 0;
  idleTimer: ReturnType<typeof setTimeout> | null = null;
  closed = false;
  /** In the pool, waiting for a request. */
  idle = false;
  /** A read started while idle, so that a close by the upstream is seen at once. */
  #pending: Promise<number | null> | null = null;

  constructor(readonly socket: Socket, readonly key: string) {}

  get buffered(): number {
    return this.end - this.start;
  }

  /** Reads more bytes into the buffer; 0 at end of stream. Fails after `timeout` ms (0: never). */
  async fill(timeout: number, what: string): Promise<number> {
    const pending = this.#pending;
    if (pending !== null) {
      // The read started while idle: its bytes land at the buffer's start.
      this.#pending = null;
      const n = await withDeadline(pending, timeout, this, what);
      if (n === null) return 0;
      this.end += n;
      return n;
    }
    if (this.start === this.end) this.start = this.end = 0;
    if (this.end === this.buf.length) {
      if (this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      } else {
        const grown = new Uint8Array(this.buf.length * 2);
        grown.set(this.buf);
        this.buf = grown;
      }
    }
    const n = await withDeadline(
      this.socket.read(this.buf.subarray(this.end)),
      timeout,
      this,
      what,
    );
    if (n === null) return 0;
    this.end += n;
    return n;
  }

  /**
   * Reads while idle (as Go's Transport does): the upstream closing the
   * connection, or sending bytes nobody asked for, calls `onDead` at once,
   * instead of failing the next request sent on it.
   */
  watch(onDead: () => void): void {
    this.start = this.end = 0;
    const pending = this.socket.read(this.buf);
    this.#pending = pending;
    pending.then(() => {
      if (this.idle) onDead();
    }, () => {
      if (this.idle) onDead();
    });
  }

  /** Takes up to `max` buffered bytes as a new array. */
  take(max: number): Uint8Array {
    const n = Math.min(max, this.buffered);
    const piece = this.buf.slice(this.start, this.start + n);
    this.start += n;
    return piece;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.socket.close();
  }
}

/** Races a read with a deadline; at the deadline the connection is closed. */
function withDeadline<T>(
  work: Promise<T>,
  timeout: number,
  conn: UpstreamConnection,
  what: string,
): Promise<T> {
  if (timeout <= 0) return work.catch((error) => Promise.reject(readFailed(error)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new UpstreamError("timeout", `The upstream sent no ${what} for ${timeout} ms`));
      conn.close();
    }, timeout);
    work.then((value) => {
      clearTimeout(timer);
      resolve(value);
    }, (error) => {
      clearTimeout(timer);
      reject(readFailed(error));
    });
  });
}

function readFailed(error: unknown): UpstreamError {
  if (error instanceof UpstreamError) return error;
  const why = error instanceof Error ? error.message : String(error);
  return new UpstreamError("closed", `The upstream connection failed: ${why}`, { cause: error });
}

/** Reads a response body's pieces according to its framing; trailers end up in `trailers`. */
export class BodyReader {
  /** Trailer fields of a chunked body, flat, once it is read to the end. */
  trailers: string[] = [];
  done = false;
  #remaining: number;
  #chunkLeft = 0;
  #conn: UpstreamConnection;
  #framing: BodyFraming;
  #timeout: number;

  /** Whether the body is chunked, so that it may end with trailer fields. */
  get chunked(): boolean {
    return this.#framing.kind === "chunked";
  }

  constructor(conn: UpstreamConnection, framing: BodyFraming, readIdleTimeout: number) {
    this.#conn = conn;
    this.#framing = framing;
    this.#timeout = readIdleTimeout;
    this.#remaining = framing.kind === "length" ? framing.length : 0;
    this.done = framing.kind === "none";
  }

  /** The next piece of the body, or null at its end. */
  async next(): Promise<Uint8Array | null> {
    if (this.done) return null;
    switch (this.#framing.kind) {
      case "length":
        return await this.#nextLength();
      case "chunked":
        return await this.#nextChunk();
      default:
        return await this.#nextUntilClose();
    }
  }

  async #more(): Promise<void> {
    if (await this.#conn.fill(this.#timeout, "body bytes") === 0) {
      throw new UpstreamError("closed", "The upstream closed the connection before the body ended");
    }
  }

  async #nextLength(): Promise<Uint8Array> {
    const c = this.#conn;
    if (c.buffered === 0) await this.#more();
    const piece = c.take(this.#remaining);
    this.#remaining -= piece.length;
    if (this.#remaining === 0) this.done = true;
    return piece;
  }

  async #nextUntilClose(): Promise<Uint8Array | null> {
    const c = this.#conn;
    if (c.buffered === 0 && await c.fill(this.#timeout, "body bytes") === 0) {
      this.done = true;
      return null;
    }
    return c.take(c.buffered);
  }

  async #nextChunk(): Promise<Uint8Array | null> {
    const c = this.#conn;
    while (this.#chunkLeft === 0) {
      const size = await this.#chunkSize();
      if (size === 0) {
        await this.#readTrailers();
        this.done = true;
        return null;
      }
      this.#chunkLeft = size;
    }
    if (c.buffered === 0) await this.#more();
    const piece = c.take(this.#chunkLeft);
    this.#chunkLeft -= piece.length;
    if (this.#chunkLeft === 0) await this.#chunkEnd();
    return piece;
  }

  /** The line that ends at the next LF, without its CRLF. */
  async #line(limit: number, what: string): Promise<[number, number]> {
    const c = this.#conn;
    for (let scanned = 0;;) {
      const lf = c.buf.subarray(c.start + scanned, c.end).indexOf(LF);
      if (lf >= 0) {
        const at = c.start + scanned + lf;
        const line: [number, number] = [
          c.start,
          at > c.start && c.buf[at - 1] === CR ? at - 1 : at,
        ];
        c.start = at + 1;
        return line;
      }
      scanned = c.buffered;
      if (scanned > limit) throw malformed(`${what} too long`);
      await this.#more();
    }
  }

  async #chunkSize(): Promise<number> {
    const [from, to] = await this.#line(MAX_CHUNK_LINE, "chunk-size line");
    const buf = this.#conn.buf;
    let size = 0, i = from;
    for (; i < to; i++) {
      const b = buf[i] | 0x20;
      const digit = b >= 48 && b <= 57 ? b - 48 : b >= 97 && b <= 102 ? b - 87 : -1;
      if (digit < 0) break;
      size = size * 16 + digit;
      if (size > Number.MAX_SAFE_INTEGER / 16) throw malformed("chunk size too large");
    }
    if (i === from) throw malformed("invalid chunk size");
    for (; i < to; i++) { // chunk extensions: skipped, but no control characters
      if (buf[i] !== HT && (buf[i] < 0x20 || buf[i] === 0x7f)) {
        throw malformed("invalid chunk extension");
      }
    }
    return size;
  }

  async #chunkEnd(): Promise<void> {
    const [from, to] = await this.#line(2, "chunk end");
    if (to !== from) throw malformed("chunk data longer than its size");
  }

  async #readTrailers(): Promise<void> {
    let total = 0;
    for (;;) {
      const [from, to] = await this.#line(MAX_TRAILER_BYTES, "trailer section");
      if (from === to) return;
      total += to - from;
      if (total > MAX_TRAILER_BYTES) throw malformed("trailer section too long");
      const buf = this.#conn.buf;
      let colon = from;
      while (colon < to && TCHAR[buf[colon]] === 1) colon++;
      if (colon === from || colon === to || buf[colon] !== COLON) {
        throw malformed("invalid trailer field");
      }
      let vs = colon + 1, ve = to;
      while (vs < ve && (buf[vs] === SP || buf[vs] === HT)) vs++;
      while (ve > vs && (buf[ve - 1] === SP || buf[ve - 1] === HT)) ve--;
      for (let i = vs; i < ve; i++) {
        if (FIELD_CHAR[buf[i]] !== 1) throw malformed("invalid character in a trailer field");
      }
      this.trailers.push(latin1(buf, from, colon), latin1(buf, vs, ve));
    }
  }
}

// ─── 5. The pool and one round trip ─────────────────────────────────────────

/** A request as the proxy forwards it. */
export interface UpstreamRequest {
  method: string;
  /** The request-target, origin-form ("/path?query"). */
  target: string;
  /** Field names and values to send as they are, flat; no framing fields. */
  fields: string[];
  /** The body, streamed with backpressure; null for none. */
  body: ReadableStream<Uint8Array> | null;
  /** The body's length when known (Content-Length), else it is sent chunked. */
  bodyLength: number | null;
  /** Send the head and wait for 100 Continue (or 1 s) before the body (RFC 9110 §10.1.1). */
  expectContinue?: boolean;
  /**
   * The trailer fields to send after a chunked body, asked for once the body
   * has ended; one with an invalid name or value is left out.
   */
  trailers?: () => Iterable<readonly [string, string]>;
  /** Aborts the exchange: the connection is closed. */
  signal?: AbortSignal;
}

/** The response, its body still on the wire. */
export interface UpstreamResponse extends ResponseHead {
  /** The body as a byte stream pulled from the socket; null when it has none or `bytes` holds it. */
  body: ReadableStream<Uint8Array> | null;
  /** The whole body, when it arrived with the head (small responses). */
  bytes: Uint8Array | null;
  /** The body reader, for its trailers once the body is read. */
  reader: BodyReader;
  /** For a 101 response: the connection, now raw bytes; bytes already read are in it. */
  upgraded: UpstreamConnection | null;
}

const encoder = new TextEncoder();

/** How long to wait for `100 Continue` before sending the body anyway. */
const CONTINUE_WAIT_MS = 1000;

/** The keep-alive pool and round trips to one upstream `hostname:port`. */
export class Upstream {
  readonly options: Required<UpstreamOptions>;
  #idle: UpstreamConnection[] = [];
  #open = new Set<UpstreamConnection>();
  #closed = false;

  constructor(readonly hostname: string, readonly port: number, options: UpstreamOptions = {}) {
    this.options = upstreamOptions(options);
  }

  /** Idle connections in the pool. */
  get idleCount(): number {
    return this.#idle.length;
  }

  /** Connections open now, idle or busy. */
  get openCount(): number {
    return this.#open.size;
  }

  /** Closes idle connections and refuses new exchanges; busy ones end with their exchange. */
  close(): void {
    this.#closed = true;
    for (const conn of this.#idle.splice(0)) this.#discard(conn);
  }

  async #acquire(): Promise<UpstreamConnection> {
    if (this.#closed) throw new UpstreamError("connect", "The upstream pool is closed");
    while (this.#idle.length > 0) {
      const conn = this.#idle.pop()!;
      conn.idle = false;
      if (conn.idleTimer !== null) clearTimeout(conn.idleTimer);
      conn.idleTimer = null;
      if (!conn.socket.ended && conn.buffered === 0) return conn;
      this.#discard(conn); // the upstream closed it, or sent bytes nobody asked for
    }
    const socket = await connectTcp(this.hostname, this.port, this.options.connectTimeout);
    const conn = new UpstreamConnection(socket, `${this.hostname}:${this.port}`);
    this.#open.add(conn);
    return conn;
  }

  #release(conn: UpstreamConnection): void {
    if (
      this.#closed || conn.closed || conn.socket.ended ||
      this.#idle.length >= this.options.maxIdleConnections
    ) {
      return this.#discard(conn);
    }
    if (conn.buffered > 0) return this.#discard(conn); // bytes after the response
    const drop = () => {
      const at = this.#idle.indexOf(conn);
      if (at >= 0) this.#idle.splice(at, 1);
      conn.idle = false;
      this.#discard(conn);
    };
    conn.idle = true;
    conn.idleTimer = setTimeout(drop, this.options.idleConnectionTimeout);
    unref(conn.idleTimer);
    conn.watch(drop);
    this.#idle.push(conn);
  }

  #discard(conn: UpstreamConnection): void {
    conn.close();
    this.#open.delete(conn);
  }

  /**
   * Sends `request` and resolves once the response head arrived. A reused
   * connection that the upstream had closed is retried once on a new one
   * when the request has no body (nothing was lost).
   */
  async roundTrip(request: UpstreamRequest): Promise<UpstreamResponse> {
    for (let attempt = 0;; attempt++) {
      if (request.signal?.aborted) throw new UpstreamError("aborted", "The client went away");
      const conn = await this.#acquire();
      try {
        return await this.#exchange(conn, request);
      } catch (error) {
        this.#discard(conn);
        const retry = error instanceof UpstreamError && error.failure === "closed" &&
          conn.uses > 0 && request.body === null && attempt === 0 && error.message.includes("head");
        if (!retry) throw error;
      }
    }
  }

  async #exchange(conn: UpstreamConnection, request: UpstreamRequest): Promise<UpstreamResponse> {
    const reused = conn.uses++ > 0;
    const { signal } = request;
    const onAbort = () => this.#discard(conn);
    signal?.addEventListener("abort", onAbort, { once: true });
    let finished = false;
    const detach = () => signal?.removeEventListener("abort", onAbort);
    try {
      const sending = this.#send(conn, request);
      let head: ResponseHead;
      try {
        head = await this.#readHead(conn, sending.allow, reused);
        // A final answer to `Expect: 100-continue` means the body is not wanted.
        if (head.status >= 200 && !sending.allowed()) sending.stop();
      } catch (error) {
        sending.stop();
        throw signal?.aborted ? new UpstreamError("aborted", "The client went away") : error;
      }
      if (head.status === 101) {
        finished = true;
        detach();
        this.#open.delete(conn);
        return {
          ...head,
          body: null,
          bytes: null,
          reader: new BodyReader(conn, { kind: "none" }, 0),
          upgraded: conn,
        };
      }
      const { framing, reusable } = responseFraming(head, request.method);
      const reader = new BodyReader(conn, framing, this.options.readIdleTimeout);
      const sent = sending.done.then(() => true, () => false);
      const end = async (clean: boolean) => {
        if (finished) return;
        finished = true;
        detach();
        if (clean && reusable && await sent && !signal?.aborted) this.#release(conn);
        else this.#discard(conn);
      };
      if (reader.done) {
        // No body: the request body may still be going out; reuse only once it is.
        void end(true);
        return { ...head, body: null, bytes: null, reader, upgraded: null };
      }
      if (framing.kind === "length" && conn.buffered >= framing.length) {
        // The whole body came with the head (small responses): no stream needed.
        const bytes = await reader.next();
        void end(true);
        return { ...head, body: null, bytes, reader, upgraded: null };
      }
      // From here the server cancels the body when its client goes away (brick
      // and Deno.serve do); closing the socket on abort as well would only
      // turn that cancel into a read error.
      detach();
      let cancelled = false;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            const piece = await reader.next();
            if (piece === null) {
              controller.close();
              await end(true);
            } else {
              controller.enqueue(piece);
              if (reader.done) {
                // Close the stream once the bytes are taken; trailers (if any) are read.
                controller.close();
                await end(true);
              }
            }
          } catch (error) {
            await end(false);
            // A read that failed because the consumer cancelled is no error.
            if (!cancelled) controller.error(error);
          }
        },
        cancel() {
          cancelled = true;
          sending.stop();
          return end(false);
        },
      }, { highWaterMark: 0 });
      return { ...head, body, bytes: null, reader, upgraded: null };
    } catch (error) {
      detach();
      finished = true;
      throw error;
    }
  }

  /** Writes the head, then streams the body; `continued` settles when the body may go. */
  #send(conn: UpstreamConnection, request: UpstreamRequest) {
    let allow!: () => void;
    let allowed = !request.expectContinue;
    const continued = new Promise<void>((resolve) => allow = resolve);
    let stopped = false;
    let bodyReader: ReadableStreamDefaultReader<Uint8Array> | null = null;
    const stop = () => {
      stopped = true;
      allow();
      bodyReader?.cancel().catch(() => {});
    };
    const done = (async () => {
      const chunked = request.body !== null && request.bodyLength === null;
      let head = `${request.method} ${request.target} HTTP/1.1\r\n`;
      const { fields } = request;
      for (let i = 0; i < fields.length; i += 2) head += fields[i] + ": " + fields[i + 1] + "\r\n";
      if (request.bodyLength !== null && (request.body !== null || request.bodyLength > 0)) {
        head += "content-length: " + request.bodyLength + "\r\n";
      } else if (chunked) head += "transfer-encoding: chunked\r\n";
      await conn.socket.write(latin1Bytes(head + "\r\n"));
      if (request.body === null) return;
      if (request.expectContinue) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          continued,
          new Promise<void>((resolve) => timer = setTimeout(resolve, CONTINUE_WAIT_MS)),
        ]);
        clearTimeout(timer);
      }
      allowed = true;
      if (stopped) throw new Error("The request body was not sent");
      bodyReader = request.body.getReader();
      let sent = 0;
      for (;;) {
        const { value, done } = await bodyReader.read();
        if (stopped) throw new Error("The request body was abandoned");
        if (done) break;
        if (value.length === 0) continue;
        sent += value.length;
        if (chunked) {
          await conn.socket.write(encoder.encode(value.length.toString(16) + "\r\n"));
          await conn.socket.write(value);
          await conn.socket.write(CRLF);
        } else {
          if (sent > request.bodyLength!) {
            throw new Error("The request body is longer than its Content-Length");
          }
          await conn.socket.write(value);
        }
      }
      if (chunked) await conn.socket.write(lastChunk(request.trailers?.()));
      else if (sent !== request.bodyLength) throw new Error("The request body ended early");
    })();
    done.catch(() => {}); // observed by the exchange; a write error also shows as a read error
    return { allow, allowed: () => allowed, done, stop };
  }

  async #readHead(
    conn: UpstreamConnection,
    onContinue: () => void,
    reused: boolean,
  ): Promise<ResponseHead> {
    const timeout = this.options.responseHeaderTimeout;
    const deadline = timeout > 0 ? Date.now() + timeout : Infinity;
    for (;;) {
      let headEnd: number;
      while ((headEnd = findHeadEnd(conn.buf, conn.start, conn.end)) < 0) {
        if (conn.buffered > this.options.maxHeaderBytes) throw malformed("head too large");
        const left = deadline === Infinity ? 0 : Math.max(1, deadline - Date.now());
        if (await conn.fill(left, "response head") === 0) {
          throw new UpstreamError(
            "closed",
            `The upstream closed the connection before a response head${reused ? " (reused)" : ""}`,
          );
        }
      }
      // Bytes that are not a response (a leading empty line is tolerated).
      const head = parseResponseHead(conn.buf, conn.start, headEnd);
      conn.start = headEnd;
      if (head.status >= 200 || head.status === 101) return head;
      if (head.status === 100) onContinue();
      // Other 1xx (102, 103) are informational and dropped: a fetch Response cannot carry them.
    }
  }
}

const CRLF = new Uint8Array([CR, LF]);
const LAST_CHUNK = encoder.encode("0\r\n\r\n");

/** The last chunk, with a trailer section when there are `trailers` (RFC 9112 §7.1.2). */
function lastChunk(trailers: Iterable<readonly [string, string]> | undefined): Uint8Array {
  if (trailers === undefined) return LAST_CHUNK;
  let text = "0\r\n";
  for (const [name, value] of trailers) {
    if (isToken(name) && isFieldValue(value)) text += name + ": " + value + "\r\n";
  }
  return latin1Bytes(text + "\r\n");
}

/** Encodes a ByteString: each code point below 256 is one byte. */
export function latin1Bytes(s: string): Uint8Array {
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes;
}

function unref(timer: ReturnType<typeof setTimeout>): void {
  if (typeof timer === "object" && timer !== null && "unref" in timer) {
    (timer as { unref(): void }).unref();
  } else if (deno) deno.unrefTimer(timer as unknown as number);
}
