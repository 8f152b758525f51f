/**
 * A reverse proxy for brick, with an optional shared HTTP cache (RFC 9111).
 *
 * {@linkcode proxy} forwards a request to an upstream HTTP/1.1 server and
 * returns its response: a fetch handler to combine with your own. It speaks
 * HTTP/1.1 to the upstream itself, on the same sockets as brick's server, with
 * a keep-alive pool per upstream; it removes hop-by-hop fields, adds `Via`,
 * `Forwarded` and `X-Forwarded-*` (RFC 9110 §7.6, RFC 7239), streams bodies
 * both ways with backpressure, passes upgrades (WebSocket) through, and
 * answers 502 or 504 when the upstream fails. With `cache`, responses are
 * stored and reused as a shared cache does, and every response says how in
 * `Cache-Status` (RFC 9211).
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "@brick/http";
 * import { createProxy } from "@brick/http/proxy";
 *
 * const api = createProxy({ upstream: "http://127.0.0.1:3000", cache: { maxBytes: 64 << 20 } });
 * serve({ port: 8888 }, (request, info) => {
 *   if (new URL(request.url).pathname.startsWith("/api/")) return api(request, info);
 *   return new Response("Hello from brick\n");
 * });
 * ```
 *
 * @module
 */

import {
  type ResponseHead,
  Upstream,
  UpstreamError,
  type UpstreamOptions,
  type UpstreamResponse,
} from "./_upstream.ts";
import { type CacheOptions, HttpCache } from "./_http_cache.ts";

export { type CacheOptions, type FetchUpstream, HttpCache } from "./_http_cache.ts";
export { UpstreamError, type UpstreamFailure, type UpstreamOptions } from "./_upstream.ts";

/** Options for {@linkcode proxy} and {@linkcode createProxy}. */
export interface ProxyOptions extends UpstreamOptions {
  /**
   * The upstream origin, `http://host:port`, with an optional path that
   * prefixes every forwarded path (`http://127.0.0.1:3000/v1` sends `/users`
   * as `/v1/users`). Only `http:` is supported.
   */
  upstream: string | URL;
  /**
   * Send the client's `Host` to the upstream as it came. When false, `Host`
   * names the upstream (as nginx's `proxy_pass` does by default), and the
   * client's host travels in `X-Forwarded-Host` and `Forwarded`.
   *
   * @default {false}
   */
  preserveHost?: boolean;
  /**
   * Keep the `Forwarded` and `X-Forwarded-*` fields a client sent and append
   * to them. Only when brick sits behind another proxy you trust: a client can
   * write anything there. When false they are replaced.
   *
   * @default {false}
   */
  trustForwarded?: boolean;
  /**
   * The name brick gives itself in `Via` (RFC 9110 §7.6.3).
   *
   * @default {"brick"}
   */
  via?: string;
  /**
   * A shared cache (RFC 9111) in front of the upstream: `{ maxBytes }` for a
   * memory store bounded in bytes, or an {@linkcode HttpCache} to share one
   * store among several proxies. No cache when absent.
   */
  cache?: CacheOptions | HttpCache;
}

/** What {@linkcode proxy} needs of the client besides the request. */
export interface ProxyInfo {
  /** The client's address, for `Forwarded: for=` and `X-Forwarded-For`. */
  remoteAddr?: { hostname?: string; port?: number; transport?: string; path?: string };
}

/** A proxy bound to its options, as {@linkcode createProxy} returns it. */
export interface ProxyHandler {
  /** Forwards `request`; `info` gives the client's address for `Forwarded`. */
  (request: Request, info?: ProxyInfo): Promise<Response>;
  /** Closes the idle upstream connections; requests after it answer 502. */
  close(): void;
}

const UPGRADE: unique symbol = Symbol.for("brick.upgrade") as never;
const RAW_HEADERS: unique symbol = Symbol.for("brick.rawHeaders") as never;
/** Where brick's server finds a response's trailer fields (mod.ts `withTrailers`). */
const TRAILERS: unique symbol = Symbol.for("brick.trailers") as never;

/**
 * The header fields of `request` as the client sent them (names in their
 * case, in order, repeats kept) when brick's server received it (over
 * HTTP/2 the names are lowercase, as that protocol sends them); null for a
 * Request made in code.
 */
function rawFields(request: Request): [string, string][] | null {
  const raw = (request as unknown as Record<symbol, unknown>)[RAW_HEADERS];
  return typeof raw === "function" ? (raw as () => [string, string][]).call(request) : null;
}

/**
 * The field lines to forward for `request`: the client's lines as received,
 * and where `request` is the cache's copy of `received`, with the fields the
 * cache changed replaced where they stood and those it added at the end.
 * Without the client's lines, the fields of `request.headers`: lowercase,
 * sorted, repeats joined with ", ".
 */
function fieldLines(request: Request, received: Request): Iterable<[string, string]> {
  const raw = rawFields(received);
  if (raw === null) return request.headers;
  if (request === received) return raw;
  const before = received.headers;
  const after = request.headers;
  const lines: [string, string][] = [];
  const replaced = new Set<string>();
  for (const [name, value] of raw) {
    const lower = name.toLowerCase();
    if (after.get(lower) === before.get(lower)) {
      lines.push([name, value]);
    } else if (!replaced.has(lower)) {
      replaced.add(lower);
      const changed = after.get(lower);
      if (changed !== null) lines.push([name, changed]);
    }
  }
  after.forEach((value, name) => {
    if (!before.has(name)) lines.push([name, value]);
  });
  return lines;
}

/** Fields that concern one connection only (RFC 9110 §7.6.1), never forwarded. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "te",
  "transfer-encoding",
  "upgrade",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "trailer",
]);

/** Request fields brick writes itself. */
const SET_BY_PROXY = new Set(["host", "content-length", "expect", "via"]);
const FORWARDING = new Set([
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
]);

/** Options resolved once per proxy: the upstream pool and cache. */
interface ProxyState {
  pool: Upstream;
  base: string;
  authority: string;
  preserveHost: boolean;
  trustForwarded: boolean;
  via: string;
  cache: HttpCache | null;
}

/**
 * Builds a proxy handler for `options`: one keep-alive pool and one cache,
 * reused by every request it handles.
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "@brick/http";
 * import { createProxy } from "@brick/http/proxy";
 *
 * serve({ port: 8888 }, createProxy({ upstream: "http://127.0.0.1:3000" }));
 * ```
 *
 * @param options The upstream, forwarding rules, timeouts, pool and cache.
 * @returns A fetch handler that forwards every request it is given.
 * @throws {TypeError} When `upstream` is not an `http://` URL.
 */
export function createProxy(options: ProxyOptions): ProxyHandler {
  const state = resolveState(options);
  const handler = (request: Request, info?: ProxyInfo) => forward(state, request, info);
  return Object.assign(handler, { close: () => state.pool.close() });
}

const states = new WeakMap<ProxyOptions, ProxyState>();

/**
 * Forwards `request` to `options.upstream` and resolves to its response.
 * State (the connection pool, the cache) is kept per `options` object: pass
 * the same object each time, or use {@linkcode createProxy}.
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "@brick/http";
 * import { proxy } from "@brick/http/proxy";
 *
 * const options = { upstream: "http://127.0.0.1:3000" };
 * serve({ port: 8888 }, (request, info) => proxy(request, options, info));
 * ```
 *
 * @param request The request to forward, as brick's `serve()` gives it.
 * @param options The upstream and how to forward.
 * @param info The client's address, for `Forwarded` and `X-Forwarded-For`.
 * @returns The upstream's response, or 502/504 when the upstream failed.
 */
export function proxy(
  request: Request,
  options: ProxyOptions,
  info?: ProxyInfo,
): Promise<Response> {
  let state = states.get(options);
  if (state === undefined) states.set(options, state = resolveState(options));
  return forward(state, request, info);
}

function resolveState(options: ProxyOptions): ProxyState {
  let url: URL;
  try {
    url = new URL(options.upstream);
  } catch {
    throw new TypeError(
      `Invalid upstream "${options.upstream}": give an absolute URL such as http://127.0.0.1:3000`,
    );
  }
  if (url.protocol !== "http:") {
    throw new TypeError(`Unsupported upstream "${url.href}": only http:// upstreams are supported`);
  }
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const port = url.port === "" ? 80 : Number(url.port);
  const cache = options.cache === undefined
    ? null
    : options.cache instanceof HttpCache
    ? options.cache
    : new HttpCache(options.cache);
  return {
    pool: new Upstream(hostname, port, options),
    base: url.pathname.replace(/\/$/, ""),
    authority: url.host,
    preserveHost: options.preserveHost ?? false,
    trustForwarded: options.trustForwarded ?? false,
    via: options.via ?? "brick",
    cache,
  };
}

async function forward(state: ProxyState, request: Request, info?: ProxyInfo): Promise<Response> {
  if (state.cache !== null) {
    return await state.cache.handle(request, (outgoing) => send(state, outgoing, info, request));
  }
  return await send(state, request, info, request);
}

/**
 * Sends one request upstream and turns the answer into a Response. `request`
 * is the client's (`received`) or the cache's copy of it.
 */
async function send(
  state: ProxyState,
  request: Request,
  info: ProxyInfo | undefined,
  received: Request,
): Promise<Response> {
  const url = new URL(request.url);
  const upgrade = upgradeWanted(request);
  const { fields, bodyLength, hasBody, expectContinue } = forwardedFields(
    state,
    request,
    received,
    url,
    info,
    upgrade,
  );

  let answer: UpstreamResponse;
  try {
    let body: ReadableStream<Uint8Array> | null = hasBody ? request.body : null;
    let length = bodyLength;
    if (!hasBody && bodyLength === null && request.body !== null) {
      // No framing fields (HTTP/2, a Request made in code): a body of unknown
      // length goes chunked; none at all, as an HTTP/1.1 request without them has.
      body = await nonEmpty(request.body);
      length = body === null ? 0 : null;
    }
    answer = await state.pool.roundTrip({
      method: request.method,
      target: state.base + url.pathname + url.search,
      fields,
      body,
      bodyLength: length,
      expectContinue,
      signal: request.signal,
      trailers: request === received ? requestTrailers(received) : undefined,
    });
  } catch (error) {
    return failureResponse(error, state.via);
  }
  if (answer.upgraded !== null) return switchProtocols(state, request, answer, upgrade);
  return toResponse(state, answer);
}

/**
 * The trailer fields of `request`'s chunked body as the client sent them, minus
 * hop-by-hop ones, for once the body has gone upstream; undefined for a
 * Request that brick's server did not receive.
 */
function requestTrailers(request: Request): (() => [string, string][]) | undefined {
  const method = (request as unknown as Record<symbol, unknown>)[TRAILERS];
  if (typeof method !== "function") return undefined;
  return () => endToEnd((method as () => [string, string][]).call(request));
}

/** The value of Upgrade when the client asked for one (Connection: upgrade), else null. */
function upgradeWanted(request: Request): string | null {
  const upgrade = request.headers.get("upgrade");
  const connection = request.headers.get("connection") ?? "";
  if (upgrade === null || !/(^|,)\s*upgrade\s*(,|$)/i.test(connection)) return null;
  return upgrade;
}

/** Names listed in a Connection field value, lowercased. */
function connectionOptions(value: string | null): Set<string> {
  const names = new Set<string>();
  if (value === null) return names;
  for (const part of value.split(",")) {
    const name = part.trim().toLowerCase();
    if (name !== "") names.add(name);
  }
  return names;
}

/** The request's end-to-end fields plus the ones a gateway adds (RFC 9110 §7.6, RFC 7239). */
function forwardedFields(
  state: ProxyState,
  request: Request,
  received: Request,
  url: URL,
  info: ProxyInfo | undefined,
  upgrade: string | null,
): { fields: string[]; bodyLength: number | null; hasBody: boolean; expectContinue: boolean } {
  const headers = request.headers;
  const named = connectionOptions(headers.get("connection"));
  const length = headers.get("content-length");
  const chunked = headers.has("transfer-encoding");
  const fields: string[] = [];
  const clientHost = headers.get("host") ?? url.host;
  fields.push("host", state.preserveHost ? clientHost : state.authority);
  const previous: Record<string, string> = {};
  for (const [name, value] of fieldLines(request, received)) {
    const lower = name.toLowerCase();
    // Trailer announces the fields after a chunked body, which go on with it.
    if (lower === "trailer" && chunked && !named.has(lower)) {
      fields.push(name, value);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || named.has(lower) || SET_BY_PROXY.has(lower)) continue;
    if (FORWARDING.has(lower)) {
      if (state.trustForwarded) {
        previous[lower] = previous[lower] === undefined ? value : previous[lower] + ", " + value;
      }
      continue;
    }
    fields.push(name, value);
  }
  const proto = url.protocol.slice(0, -1);
  const client = clientNode(info);
  const forwardedFor = client.startsWith("[") || client.includes(":") ? `"${client}"` : client;
  const element = `for=${forwardedFor};host=${quoteIfNeeded(clientHost)};proto=${proto}`;
  fields.push(
    "forwarded",
    previous["forwarded"] ? previous["forwarded"] + ", " + element : element,
  );
  const xff = client.replace(/^\[|\]$/g, "");
  fields.push(
    "x-forwarded-for",
    previous["x-forwarded-for"] ? previous["x-forwarded-for"] + ", " + xff : xff,
  );
  fields.push("x-forwarded-proto", previous["x-forwarded-proto"] ?? proto);
  fields.push("x-forwarded-host", previous["x-forwarded-host"] ?? clientHost);
  const via = headers.get("via");
  fields.push("via", (via ? via + ", " : "") + "1.1 " + state.via);
  if (upgrade !== null) fields.push("connection", "upgrade", "upgrade", upgrade);
  const bodyLength = length !== null && /^\d+$/.test(length) ? Number(length) : chunked ? null : 0;
  const hasBody = request.body !== null && (chunked || (bodyLength ?? 0) > 0);
  const expectContinue = hasBody && /^100-continue$/i.test(headers.get("expect") ?? "");
  if (expectContinue) fields.push("expect", "100-continue");
  return {
    fields,
    // null with no body: no Content-Length, or a body of unknown length (see send()).
    bodyLength: hasBody || length !== null ? bodyLength : null,
    hasBody,
    expectContinue,
  };
}

/**
 * `stream` when it carries any bytes (as a new stream that starts with the
 * first chunk read here), or null when it ends without any.
 */
async function nonEmpty(
  stream: ReadableStream<Uint8Array>,
): Promise<ReadableStream<Uint8Array> | null> {
  const reader = stream.getReader();
  let first = await reader.read();
  while (!first.done && first.value.length === 0) first = await reader.read();
  if (first.done) return null;
  let pending: Uint8Array | null = first.value;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pending !== null) {
        controller.enqueue(pending);
        pending = null;
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}

/** The client as a Forwarded node (RFC 7239 §6): an IP, "[v6]", or "unknown". */
function clientNode(info: ProxyInfo | undefined): string {
  const addr = info?.remoteAddr;
  if (!addr?.hostname) return "unknown";
  return addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
}

function quoteIfNeeded(value: string): string {
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(value)
    ? value
    : `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/** The upstream's response with hop-by-hop fields removed and Via added. */
function toResponse(state: ProxyState, answer: UpstreamResponse): Response {
  const headers = responseHeaders(state, answer, false);
  if (answer.status > 599) {
    answer.body?.cancel().catch(() => {});
    return failureResponse(
      new UpstreamError("protocol", `The upstream answered with status ${answer.status}`),
      state.via,
    );
  }
  const response = new Response(answer.bytes as Uint8Array<ArrayBuffer> | null ?? answer.body, {
    status: answer.status,
    statusText: answer.statusText,
    headers,
  });
  if (answer.body !== null && answer.reader.chunked) {
    // A chunked body: its trailer fields go on to the client once it has ended.
    const { reader } = answer;
    Object.defineProperty(response, TRAILERS, { value: () => endToEndFlat(reader.trailers) });
  }
  return response;
}

/** The end-to-end fields of a flat name/value list, as pairs. */
function endToEndFlat(fields: string[]): [string, string][] {
  const pairs: [string, string][] = [];
  for (let i = 0; i < fields.length; i += 2) pairs.push([fields[i], fields[i + 1]]);
  return endToEnd(pairs);
}

/** `fields` without the hop-by-hop ones. */
function endToEnd(fields: [string, string][]): [string, string][] {
  return fields.filter(([name]) => !HOP_BY_HOP.has(name.toLowerCase()));
}

function responseHeaders(state: ProxyState, answer: ResponseHead, upgrade: boolean): Headers {
  const headers = new Headers();
  const { fields } = answer;
  let named = new Set<string>();
  let via = "";
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i].toLowerCase() === "connection") {
      named = new Set([...named, ...connectionOptions(fields[i + 1])]);
    }
  }
  let chunked = false;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i].toLowerCase();
    if (name === "transfer-encoding") chunked = true;
  }
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i].toLowerCase();
    const value = fields[i + 1];
    if (name === "via") {
      via += (via ? ", " : "") + value;
      continue;
    }
    if (upgrade && name === "upgrade") {
      headers.append(name, value);
      continue;
    }
    // Trailer announces the fields after a chunked body, which go on with it.
    if (name === "trailer" && chunked) {
      headers.append(name, value);
      continue;
    }
    if (HOP_BY_HOP.has(name) || named.has(name)) continue;
    if (name === "content-length" && chunked) continue;
    headers.append(name, value);
  }
  const version = (answer as ResponseHead).http10 ? "1.0" : "1.1";
  headers.set("via", (via ? via + ", " : "") + version + " " + state.via);
  if (upgrade) headers.set("connection", "upgrade");
  return headers;
}

/** 502 or 504 for an upstream failure, with the reason in the body. */
function failureResponse(error: unknown, via = "brick"): Response {
  const failure = error instanceof UpstreamError ? error.failure : "protocol";
  const status = failure === "timeout" ? 504 : 502;
  const why = error instanceof Error ? error.message : String(error);
  return new Response(`${status === 504 ? "Gateway Timeout" : "Bad Gateway"}: ${why}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", "via": "1.1 " + via },
  });
}

/**
 * Answers an upgrade the upstream accepted: the client gets the 101 with the
 * upstream's fields, then bytes flow both ways until either side closes.
 */
function switchProtocols(
  state: ProxyState,
  request: Request,
  answer: UpstreamResponse,
  upgrade: string | null,
): Response {
  const conn = answer.upgraded!;
  const hook = (request as unknown as Record<symbol, unknown>)[UPGRADE];
  if (upgrade === null || typeof hook !== "function") {
    conn.close();
    return failureResponse(
      new UpstreamError("protocol", "The upstream switched protocols, which this request cannot"),
      state.via,
    );
  }
  const response = new Response(null, {
    status: 200,
    headers: responseHeaders(state, answer, true),
  });
  // Response refuses 101 in its constructor; brick writes the status line itself.
  Object.defineProperty(response, "status", { value: 101 });
  Object.defineProperty(response, "statusText", { value: "Switching Protocols" });
  const handedOver = (hook as (response: Response) => Promise<Tunnel>).call(request, response);
  handedOver.then((client) => tunnel(client, conn), () => conn.close());
  return response;
}

/** The client connection after an upgrade (mod.ts `UpgradedConnection`). */
interface Tunnel {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<void>;
  closeWrite(): Promise<void>;
  close(): void;
  onShutdown: (() => void) | null;
}

/** Copies bytes both ways between the client and the upstream until both directions end. */
async function tunnel(
  client: Tunnel,
  upstream: UpstreamResponse["upgraded"] & object,
): Promise<void> {
  const closeBoth = () => {
    client.close();
    upstream.close();
  };
  client.onShutdown = closeBoth;
  const early = upstream.take(upstream.buffered);
  const down = (async () => {
    if (early.length > 0) await client.write(early);
    const buffer = new Uint8Array(16_384);
    for (;;) {
      const n = await upstream.socket.read(buffer);
      if (n === null) break;
      await client.write(buffer.subarray(0, n));
    }
    await client.closeWrite();
  })();
  const up = (async () => {
    const buffer = new Uint8Array(16_384);
    for (;;) {
      const n = await client.read(buffer);
      if (n === null) break;
      await upstream.socket.write(buffer.subarray(0, n));
    }
    await upstream.socket.closeWrite();
  })();
  // Either direction failing ends both; both ending cleanly closes the sockets.
  down.catch(closeBoth);
  up.catch(closeBoth);
  await Promise.allSettled([down, up]);
  closeBoth();
}
