// Helpers for brick's protocol tests (mod_test.ts): start a server, talk to it
// over a raw TCP socket, and parse what comes back strictly.
//
// Only node:net and web-standard APIs, so the same suite runs on Deno, Node and
// Bun. Bytes on the wire are written and shown as latin1 strings: one character
// per byte, so "\xff" in a request is the single byte 0xFF.

import net from "node:net";
import { execFile } from "node:child_process";
import process from "node:process";
import { type Handler, serve, type ServeOptions, type Server } from "./mod.ts";

/** Where every test server listens. */
export const HOST = "127.0.0.1";

// ─── Bytes ──────────────────────────────────────────────────────────────────

/** Decodes bytes as latin1: each byte becomes the character of its value. */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  }
  return s;
}

/** Encodes a string of characters 0–255 as one byte each; throws on anything wider. */
export function latin1Bytes(s: string): Uint8Array {
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const code = s.charCodeAt(i);
    if (code > 0xff) throw new RangeError(`Character ${code} at ${i} is not a single byte`);
    bytes[i] = code;
  }
  return bytes;
}

/** Joins byte arrays into one. */
export function concat(pieces: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const piece of pieces) {
    all.set(piece, offset);
    offset += piece.length;
  }
  return all;
}

const toBytes = (data: string | Uint8Array) => typeof data === "string" ? latin1Bytes(data) : data;

/** A request head: the request line, then each field, then the empty line, all CRLF. */
export function head(requestLine: string, ...fields: string[]): string {
  return [requestLine, ...fields, "", ""].join("\r\n");
}

// ─── Time ───────────────────────────────────────────────────────────────────

/**
 * How long a test waits by default for something that should happen at once:
 * a response, a close. It bounds a failing test, and is long enough that a
 * passing one never meets it on a loaded 2-core machine.
 */
export const DEADLINE_MS = 10_000;

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Settles like `promise`, or rejects if it takes longer than `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A promise with its resolve function outside, for gates and signals between test and handler. */
export function deferred<T = void>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
} {
  let resolve!: (value: T) => void, reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

// ─── Servers ────────────────────────────────────────────────────────────────

/** A handler, or options with the handler as a member (the `serve(init)` form). */
export type ServerInit = Handler | (ServeOptions & { handler: Handler });

/**
 * Starts brick with `init` and resolves once it listens. Deno binds before
 * serve() returns, node:net (Node, Bun) in the background: onListen is the
 * moment every runtime agrees on.
 */
export async function serveListening(init: ServeOptions & { handler: Handler }): Promise<Server> {
  const listening = deferred();
  const server = serve({
    ...init,
    onListen(addr) {
      init.onListen?.(addr);
      listening.resolve();
    },
  });
  await Promise.race([listening.promise, server.finished]);
  return server;
}

/**
 * Starts brick on 127.0.0.1 with a free port and a quiet onListen. The
 * shutdown timeout is 1 s unless given, so a test that fails with a request in
 * flight still ends quickly.
 */
export async function startServer(
  handler: Handler,
  options: ServeOptions = {},
): Promise<{ server: Server; port: number }> {
  const server = await serveListening({
    hostname: HOST,
    port: 0,
    onListen() {},
    shutdownTimeout: 1000,
    ...options,
    handler,
  });
  return { server, port: server.addr.port };
}

/** Resolves once `ready()` holds, checking every 5 ms; rejects after `ms`. */
export async function until(ready: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await delay(5);
  }
}

/** What {@linkcode withServer} hands to the test body. */
export interface Harness {
  server: Server;
  port: number;
  /** Opens a raw connection that is destroyed when the test body ends. */
  connect(): Promise<RawClient>;
}

/**
 * Runs `body` against a fresh server, then destroys its clients and shuts the
 * server down, whatever happened.
 */
export async function withServer(
  init: ServerInit,
  body: (harness: Harness) => Promise<void>,
): Promise<void> {
  const { handler, ...options } = typeof init === "function" ? { handler: init } : init;
  const { server, port } = await startServer(handler, options);
  const clients: RawClient[] = [];
  try {
    await body({
      server,
      port,
      async connect() {
        const client = await RawClient.connect(port);
        clients.push(client);
        return client;
      },
    });
  } finally {
    for (const client of clients) client.destroy();
    await server.shutdown();
  }
}

// ─── Raw clients ────────────────────────────────────────────────────────────

/** One TCP connection that records every byte it receives and when the server closes. */
export class RawClient {
  /** The server sent FIN, reset the connection, or the socket was destroyed. */
  closed = false;
  /** The socket error, such as ECONNRESET, if there was one. */
  error: Error | null = null;
  #chunks: Uint8Array[] = [];
  #received: Uint8Array | null = new Uint8Array(0);
  #changed = new Set<() => void>();

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(new Uint8Array(chunk));
      this.#received = null;
      this.#notify();
    });
    const closed = () => {
      this.closed = true;
      this.#notify();
    };
    socket.on("end", closed);
    socket.on("close", closed);
    socket.on("error", (error) => {
      this.error = error;
      closed();
    });
  }

  /** Connects to brick on 127.0.0.1:`port`. */
  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host: HOST, port });
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new RawClient(socket));
      });
    });
  }

  /** Every byte received so far. */
  get received(): Uint8Array {
    return this.#received ??= concat(this.#chunks);
  }

  /** Every byte received so far, as latin1 text. */
  get text(): string {
    return latin1(this.received);
  }

  /** The client's own port, as the server sees it in `info.remoteAddr`. */
  get localPort(): number {
    return this.socket.localPort!;
  }

  /** Sends bytes (strings as latin1) and resolves once the socket took them. */
  write(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.write(toBytes(data), (error) => error ? reject(error) : resolve());
    });
  }

  /** Half-closes: sends FIN while still reading. */
  end(): Promise<void> {
    return new Promise((resolve) => this.socket.end(resolve));
  }

  /** Closes the connection (FIN). */
  destroy(): void {
    this.socket.destroy();
  }

  /** Aborts the connection with a TCP reset (RST) where the runtime can, else closes it. */
  reset(): void {
    if (typeof this.socket.resetAndDestroy === "function") this.socket.resetAndDestroy();
    else this.socket.destroy();
  }

  /**
   * Waits until `ready()` holds, checking after every received byte. Rejects
   * after `ms`, or when the server closes first.
   */
  async waitFor(ready: () => boolean, what: string, ms = DEADLINE_MS): Promise<void> {
    if (ready()) return;
    const done = deferred();
    const check = () => {
      try {
        if (ready()) done.resolve();
        else if (this.closed) done.reject(new Error(`The server closed before ${what}`));
      } catch (error) {
        done.reject(error);
      }
    };
    this.#changed.add(check);
    try {
      check();
      await within(done.promise, ms, what);
    } finally {
      this.#changed.delete(check);
    }
  }

  /** Waits until the received text contains `text`. */
  waitForText(text: string, ms?: number): Promise<void> {
    return this.waitFor(() => this.text.includes(text), JSON.stringify(text), ms);
  }

  /**
   * Waits until `count` complete responses have arrived and returns them,
   * parsed strictly. A close-delimited body counts once the server closed.
   */
  async responses(count: number, options: ParseOptions & { ms?: number } = {}) {
    let parsed: ParsedResponse[] = [];
    await this.waitFor(
      () => {
        parsed = parseAvailable(this.received, options, this.closed);
        return parsed.length >= count;
      },
      `${count} response(s), got ${JSON.stringify(this.text)}`,
      options.ms,
    );
    return parsed;
  }

  /** Waits until the server closes the connection. */
  waitClosed(ms = DEADLINE_MS): Promise<void> {
    return this.waitFor(() => this.closed, "the server to close the connection", ms);
  }

  #notify(): void {
    for (const check of [...this.#changed]) check();
  }
}

/** Options for {@linkcode rawExchange}. */
export interface ExchangeOptions extends ParseOptions {
  /** Pause between pieces, so each arrives in its own read. @default {0} */
  delayMs?: number;
  /**
   * Resolve after this much silence once everything is sent. Only an exchange
   * the server neither closes nor completes with `responses` ends this way, so
   * it is long enough for a busy machine. @default {10000}
   */
  waitMs?: number;
  /** Half-close the connection after the last piece. @default {false} */
  endAfter?: boolean;
  /** Resolve as soon as this many complete responses have arrived. */
  responses?: number;
}

/** What a raw exchange saw. */
export interface Exchange {
  bytes: Uint8Array;
  /** `bytes` as latin1 text. */
  text: string;
  /** Whether the server closed the connection. */
  closed: boolean;
}

/**
 * Opens a connection, sends `pieces` (strings as latin1), and collects every
 * byte until the server closes, `waitMs` pass in silence, or `responses`
 * complete responses have arrived. The socket is destroyed afterwards.
 */
export async function rawExchange(
  port: number,
  pieces: (string | Uint8Array)[],
  options: ExchangeOptions = {},
): Promise<Exchange> {
  const { delayMs = 0, waitMs = DEADLINE_MS, endAfter = false, responses } = options;
  const bun = (globalThis as { Bun?: BunConnect }).Bun;
  if (endAfter && bun && delayMs === 0 && responses === undefined) {
    return bunHalfClosedExchange(bun, port, pieces, waitMs);
  }
  const client = await RawClient.connect(port);
  try {
    for (let i = 0; i < pieces.length; i++) {
      if (i > 0 && delayMs > 0) await delay(delayMs);
      if (client.closed) break;
      await client.write(pieces[i]).catch(() => {}); // the server may close early
    }
    if (endAfter && !client.closed) await client.end();
    const enough = () =>
      client.closed ||
      (responses !== undefined && parseAvailable(client.received, options).length >= responses);
    for (let seen = -1; seen !== client.received.length && !enough();) {
      seen = client.received.length;
      await client.waitFor(enough, "", waitMs).catch(() => {});
    }
    return { bytes: client.received, text: client.text, closed: client.closed };
  } finally {
    client.destroy();
  }
}

/** The part of Bun's client socket API that {@linkcode bunHalfClosedExchange} uses. */
interface BunConnect {
  connect(options: {
    hostname: string;
    port: number;
    allowHalfOpen: boolean;
    socket: {
      data(socket: unknown, chunk: Uint8Array): void;
      end(socket: unknown): void;
      close(socket: unknown): void;
      error(socket: unknown, error: Error): void;
    };
  }): Promise<
    { write(data: Uint8Array): number; shutdown(): void; end(): void; terminate(): void }
  >;
}

/** A client that can reset its connection (RST) on every runtime. */
export interface ResettableClient {
  write(data: string | Uint8Array): Promise<void>;
  /** Aborts the connection with a TCP reset. */
  reset(): void;
}

/**
 * Connects a client that can send a real reset: a {@linkcode RawClient}, or
 * on Bun, whose node:net client sends FIN for resetAndDestroy(), Bun's own
 * client socket, whose terminate() sends RST.
 */
export async function connectResettable(port: number): Promise<ResettableClient> {
  const bun = (globalThis as { Bun?: BunConnect }).Bun;
  if (!bun) return RawClient.connect(port);
  const socket = await bun.connect({
    hostname: HOST,
    port,
    allowHalfOpen: true,
    socket: { data() {}, end() {}, close() {}, error() {} },
  });
  return {
    write(data) {
      const bytes = toBytes(data);
      return socket.write(bytes) === bytes.length
        ? Promise.resolve()
        : Promise.reject(new Error("The data did not fit the socket buffer"));
    },
    reset: () => socket.terminate(),
  };
}

/**
 * {@linkcode rawExchange} with a half-close on Bun, over Bun's own client
 * socket: Bun's node:net client stops reading once it has sent its FIN
 * (oven-sh/bun#34285), so it would never see the response.
 */
function bunHalfClosedExchange(
  bun: BunConnect,
  port: number,
  pieces: (string | Uint8Array)[],
  waitMs: number,
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let settled = false;
    let silence: ReturnType<typeof setTimeout> | undefined;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(silence);
      const bytes = concat(chunks);
      socket.then((s) => s.end(), () => {});
      resolve({ bytes, text: latin1(bytes), closed });
    };
    const waitQuietly = () => {
      clearTimeout(silence);
      silence = setTimeout(() => finish(false), waitMs);
    };
    const socket = bun.connect({
      hostname: HOST,
      port,
      allowHalfOpen: true,
      socket: {
        data(_socket, chunk) {
          chunks.push(new Uint8Array(chunk));
          waitQuietly();
        },
        end: () => finish(true),
        close: () => finish(true),
        error: () => finish(true),
      },
    });
    socket.then((s) => {
      const bytes = concat(pieces.map(toBytes));
      if (s.write(bytes) !== bytes.length) {
        return reject(new Error("The request did not fit the socket buffer"));
      }
      s.shutdown(); // FIN: the half-close
      waitQuietly();
    }, reject);
  });
}

// ─── A strict HTTP/1.1 response parser ──────────────────────────────────────

/** One response as it arrived on the wire. */
export interface ParsedResponse {
  version: string;
  status: number;
  reason: string;
  /** Lowercase field names → every value, in order; one entry per field line. */
  headers: Record<string, string[]>;
  body: Uint8Array;
  /** The body decoded as UTF-8. */
  text: string;
  /** How the body was delimited on the wire. */
  framing: "none" | "length" | "chunked" | "close";
  /** Trailer fields of a chunked body. */
  trailers: Record<string, string[]>;
}

/** Options for {@linkcode parseResponses}. */
export interface ParseOptions {
  /** Indexes of the responses that answer HEAD requests, so carry no body. */
  headFor?: number[];
}

/** The bytes end inside a response: more would have to arrive. */
export class IncompleteResponseError extends Error {
  override name = "IncompleteResponseError";
}

/** The bytes break HTTP/1.1's response syntax or framing. */
export class MalformedResponseError extends Error {
  override name = "MalformedResponseError";
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const STATUS_LINE = /^(HTTP\/1\.[01]) ([1-9]\d\d) ([\t\x20-\x7e\x80-\xff]*)$/;
const decoder = new TextDecoder();

/**
 * Parses every response in `bytes`, which must hold complete responses and
 * nothing else (a close-delimited body runs to the end). Strict: lines must end
 * in CRLF, fields need valid names and values without folding, Content-Length
 * must be one number, chunked framing must be exact, and a response must not
 * carry both Content-Length and Transfer-Encoding, nor either with 1xx or 204.
 *
 * @throws {IncompleteResponseError} When the bytes stop inside a response.
 * @throws {MalformedResponseError} When anything breaks the syntax.
 */
export function parseResponses(bytes: Uint8Array, options: ParseOptions = {}): ParsedResponse[] {
  const responses: ParsedResponse[] = [];
  for (let pos = 0; pos < bytes.length;) {
    const isHead = options.headFor?.includes(responses.length) ?? false;
    const { response, end } = parseResponse(bytes, pos, isHead);
    responses.push(response);
    pos = end;
  }
  return responses;
}

/**
 * The complete responses at the start of `bytes`, ignoring an incomplete one
 * at the end. A close-delimited body counts only when `closed`.
 */
function parseAvailable(bytes: Uint8Array, options: ParseOptions, closed = false) {
  const responses: ParsedResponse[] = [];
  try {
    for (let pos = 0; pos < bytes.length;) {
      const isHead = options.headFor?.includes(responses.length) ?? false;
      const { response, end } = parseResponse(bytes, pos, isHead);
      if (response.framing === "close" && !closed) break;
      responses.push(response);
      pos = end;
    }
  } catch (error) {
    if (!(error instanceof IncompleteResponseError)) throw error;
  }
  return responses;
}

/** Reads one CRLF-terminated line at `pos`; rejects bare CR and bare LF. */
function readLine(bytes: Uint8Array, pos: number): { line: string; next: number } {
  const lf = bytes.indexOf(10, pos);
  if (lf < 0) {
    const cr = bytes.indexOf(13, pos);
    if (cr >= 0 && cr < bytes.length - 1) throw new MalformedResponseError(`Bare CR at ${cr}`);
    throw new IncompleteResponseError(`No line end after offset ${pos}`);
  }
  if (lf === pos || bytes[lf - 1] !== 13) throw new MalformedResponseError(`Bare LF at ${lf}`);
  const line = latin1(bytes.subarray(pos, lf - 1));
  if (line.includes("\r")) throw new MalformedResponseError(`Bare CR in ${JSON.stringify(line)}`);
  return { line, next: lf + 1 };
}

/** Reads field lines up to and including the empty line. */
function readFields(
  bytes: Uint8Array,
  pos: number,
): { fields: Record<string, string[]>; next: number } {
  const fields: Record<string, string[]> = {};
  for (;;) {
    const { line, next } = readLine(bytes, pos);
    pos = next;
    if (line === "") return { fields, next: pos };
    if (line[0] === " " || line[0] === "\t") {
      throw new MalformedResponseError(`Obsolete line folding: ${JSON.stringify(line)}`);
    }
    const colon = line.indexOf(":");
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (colon < 1 || !TOKEN.test(name) || !FIELD_VALUE.test(value)) {
      throw new MalformedResponseError(`Malformed field line: ${JSON.stringify(line)}`);
    }
    (fields[name.toLowerCase()] ??= []).push(value);
  }
}

function parseResponse(
  bytes: Uint8Array,
  start: number,
  isHead: boolean,
): { response: ParsedResponse; end: number } {
  const prefix = latin1(bytes.subarray(start, start + 7));
  if (!"HTTP/1.".startsWith(prefix)) {
    throw new MalformedResponseError(`Not a status line: ${JSON.stringify(prefix)}`);
  }
  const status = readLine(bytes, start);
  const match = STATUS_LINE.exec(status.line);
  if (!match) throw new MalformedResponseError(`Malformed status line: ${status.line}`);
  const code = Number(match[2]);
  const { fields: headers, next } = readFields(bytes, status.next);
  const response: ParsedResponse = {
    version: match[1],
    status: code,
    reason: match[3],
    headers,
    body: new Uint8Array(0),
    text: "",
    framing: "none",
    trailers: {},
  };
  const lengths = headers["content-length"];
  const codings = headers["transfer-encoding"];
  if (lengths && codings) {
    throw new MalformedResponseError("Both Content-Length and Transfer-Encoding");
  }
  if ((code < 200 || code === 204) && (lengths || codings)) {
    throw new MalformedResponseError(`A ${code} response with Content-Length or Transfer-Encoding`);
  }
  if (code === 304 && codings) throw new MalformedResponseError("A 304 with Transfer-Encoding");
  if (lengths && (lengths.length !== 1 || !/^\d{1,15}$/.test(lengths[0]))) {
    throw new MalformedResponseError(`Invalid Content-Length: ${lengths.join(", ")}`);
  }
  if (codings && (codings.length !== 1 || codings[0] !== "chunked")) {
    throw new MalformedResponseError(`Unexpected Transfer-Encoding: ${codings.join(", ")}`);
  }
  if (isHead || code < 200 || code === 204 || code === 304) return { response, end: next };

  let end: number;
  if (lengths) {
    end = next + Number(lengths[0]);
    if (end > bytes.length) {
      throw new IncompleteResponseError(
        `The body has ${bytes.length - next} of ${lengths[0]} bytes`,
      );
    }
    response.body = bytes.slice(next, end);
    response.framing = "length";
  } else if (codings) {
    ({ end } = readChunked(bytes, next, response));
    response.framing = "chunked";
  } else {
    end = bytes.length;
    response.body = bytes.slice(next);
    response.framing = "close";
  }
  response.text = decoder.decode(response.body);
  return { response, end };
}

/** Decodes a chunked body (no chunk extensions: brick sends none) into `response`. */
function readChunked(bytes: Uint8Array, pos: number, response: ParsedResponse): { end: number } {
  const pieces: Uint8Array[] = [];
  for (;;) {
    const { line, next } = readLine(bytes, pos);
    if (!/^[0-9a-fA-F]{1,15}$/.test(line)) {
      throw new MalformedResponseError(`Invalid chunk size line: ${JSON.stringify(line)}`);
    }
    const size = parseInt(line, 16);
    pos = next;
    if (size === 0) break;
    if (pos + size + 2 > bytes.length) {
      throw new IncompleteResponseError(`A ${size}-byte chunk is cut short`);
    }
    if (bytes[pos + size] !== 13 || bytes[pos + size + 1] !== 10) {
      throw new MalformedResponseError(`Chunk data at ${pos} is not followed by CRLF`);
    }
    pieces.push(bytes.subarray(pos, pos + size));
    pos += size + 2;
  }
  const { fields, next } = readFields(bytes, pos);
  response.trailers = fields;
  response.body = concat(pieces);
  return { end: next };
}

/** The one value of field `name`, or undefined; throws if the field is repeated. */
export function header(response: ParsedResponse, name: string): string | undefined {
  const values = response.headers[name.toLowerCase()];
  if (values && values.length > 1) {
    throw new MalformedResponseError(`Field ${name} appears ${values.length} times`);
  }
  return values?.[0];
}

// ─── Console ────────────────────────────────────────────────────────────────

/**
 * Runs `body` with `console[method]` replaced by a recorder, and returns the
 * lines it printed. For tests of the default onListen and onError output.
 */
export async function capturing(
  method: "log" | "error",
  body: (lines: string[]) => unknown,
): Promise<string[]> {
  const original = console[method];
  const lines: string[] = [];
  console[method] = (...args: unknown[]) => {
    lines.push(args.map((arg) => arg instanceof Error ? arg.message : String(arg)).join(" "));
  };
  try {
    await body(lines);
    return lines;
  } finally {
    console[method] = original;
  }
}

/** Runs `command` with `args`; resolves to its stdout, or rejects with its stderr. */
export function run(
  command: string,
  args: string[],
  options: { timeoutMs?: number; env?: Record<string, string> } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, {
      timeout: options.timeoutMs ?? 10_000,
      env: options.env ? { ...process.env, ...options.env } : undefined,
      maxBuffer: 64 * 1024 * 1024,
    }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Why a test that needs `command` must skip, or false when it is installed. */
export function missing(command: string, versionFlag = "--version"): Promise<string | false> {
  return new Promise((resolve) =>
    execFile(
      command,
      [versionFlag],
      (error) => resolve(error ? `${command} is not installed` : false),
    )
  );
}
