/**
 * WebSocket (RFC 6455) for brick: {@linkcode upgradeWebSocket} turns a request
 * that brick's `serve()` received into a WebSocket, with the same call shape as
 * `Deno.upgradeWebSocket`, so a Deno app ports by changing its import.
 *
 * ```ts ignore
 * import { serve } from "@brick/http";
 * import { upgradeWebSocket } from "@brick/http/websocket";
 *
 * serve({ port: 8080 }, (request) => {
 *   if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
 *     return new Response("Connect with a WebSocket client\n", { status: 426 });
 *   }
 *   const { socket, response } = upgradeWebSocket(request);
 *   socket.onmessage = (event) => socket.send(event.data); // echo
 *   return response;
 * });
 * ```
 *
 * The socket is an `EventTarget` with the browser `WebSocket`'s members:
 * `onopen`, `onmessage`, `onclose`, `onerror`, `send()`, `close()`,
 * `readyState`, `bufferedAmount`, `binaryType`, `protocol`, `extensions`.
 * Client frames must be masked; fragmented messages are joined into one
 * buffer as they arrive; pings are answered; text is checked to be UTF-8 as
 * its bytes arrive (else close code 1007); a message above `maxMessageSize`
 * ends the connection with 1009, one in more than `maxFragments` frames with
 * 1008; other protocol errors with 1002. `send()` queues, and
 * `bufferedAmount` tells how much is still waiting for the client to read.
 * permessage-deflate (RFC 7692) is there with the `compression` option.
 *
 * The frame codec ({@linkcode encodeFrame}, {@linkcode decodeFrame}) is
 * exported too, for clients and tests that speak the protocol directly.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  constants as zlibConstants,
  createDeflateRaw,
  createInflateRaw,
  type DeflateRaw,
  type InflateRaw,
} from "node:zlib";

// ─── 1. Public API ──────────────────────────────────────────────────────────

/** Options for {@linkcode upgradeWebSocket}. The first two are `Deno.upgradeWebSocket`'s. */
export interface UpgradeWebSocketOptions {
  /**
   * The subprotocol to use, or several in order of preference. The first one
   * that the client also offered in `Sec-WebSocket-Protocol` is selected and
   * becomes `socket.protocol`; when none matches, no subprotocol is selected.
   */
  protocol?: string | readonly string[];
  /**
   * Seconds without any frame from the client after which the server sends a
   * ping. If nothing arrives for as long again, the connection is deemed dead:
   * it closes with code 1001 and the socket fires `error` and `close`. `0`
   * disables the check.
   *
   * @default {30}
   */
  idleTimeout?: number;
  /**
   * The largest message the client may send, in bytes, counting all its
   * fragments. A larger one closes the connection with code 1009 (message too
   * big) as soon as a frame header announces it.
   *
   * @default {16_777_216}
   */
  maxMessageSize?: number;
  /**
   * The most frames one message may arrive in. A message in more closes the
   * connection with code 1008 (policy violation). Fragments are joined into
   * one buffer as they arrive, so memory stays within `maxMessageSize`
   * whatever their number and size; this limit bounds the work a client can
   * cause with endless tiny (or empty) fragments. The default lets a 4 MiB
   * message arrive in 64-byte fragments.
   *
   * @default {65_536}
   */
  maxFragments?: number;
  /**
   * permessage-deflate (RFC 7692): `true` to accept a client's offer with the
   * defaults, an object to tune it (see {@linkcode CompressionOptions} for
   * each setting and the memory it costs), `false` for none. It is used only
   * when the client offers it, as browsers do; `socket.extensions` tells.
   * `maxMessageSize` then limits the inflated size, checked while inflating.
   * Off by default: with context takeover, each connection that has sent or
   * received a compressed message keeps about 300 KiB of zlib state (the
   * deflate part is freed after 5-10 s without sending).
   *
   * @default {false}
   */
  compression?: boolean | CompressionOptions;
}

/** What {@linkcode upgradeWebSocket} returns: the socket, and the response to return from the handler. */
export interface WebSocketUpgrade {
  /** The server's end of the WebSocket. It opens once `response` has been sent. */
  socket: ServerWebSocket;
  /** The `101 Switching Protocols` response; the handler must return this very object. */
  response: Response;
}

/** The GUID that RFC 6455 appends to the client's key before hashing. */
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const UPGRADE: unique symbol = Symbol.for("brick.upgrade");
const ERROR_RESPONSE: unique symbol = Symbol.for("brick.errorResponse");

/** The largest message accepted by default: 16 MiB. */
export const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024;
/** The most fragments a message may have by default. */
export const DEFAULT_MAX_FRAGMENTS = 65_536;

/**
 * Upgrades `request` to a WebSocket. Checks the handshake (a `GET` with
 * `Upgrade: websocket`, `Connection: Upgrade`, a valid `Sec-WebSocket-Key`
 * and `Sec-WebSocket-Version: 13`), selects a subprotocol, and returns the
 * socket with the `101` response. Return that response from the handler: brick
 * then sends it, stops speaking HTTP on the connection and opens the socket.
 *
 * A failed handshake throws a {@linkcode WebSocketHandshakeError} that carries
 * its HTTP answer: `400 Bad Request` with the reason, or
 * `426 Upgrade Required` with `Sec-WebSocket-Version: 13` for another protocol
 * version. brick answers with it when the error leaves the handler, even with
 * a custom `onError`.
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "@brick/http";
 * import { upgradeWebSocket } from "@brick/http/websocket";
 *
 * serve((request) => {
 *   const { socket, response } = upgradeWebSocket(request, { protocol: ["chat.v2", "chat"] });
 *   socket.onopen = () => socket.send(`Hello, you speak ${socket.protocol || "no subprotocol"}`);
 *   socket.onmessage = (event) => console.log("got", event.data);
 *   socket.onclose = (event) => console.log("closed", event.code, event.reason);
 *   return response;
 * });
 * ```
 *
 * @param request A request that brick's `serve()` passed to the handler.
 * @param options Subprotocols, the ping interval and the largest message.
 * @returns The socket, and the response to return from the handler.
 * @throws {TypeError} When `request` did not come from brick's `serve()`.
 * @throws {WebSocketHandshakeError} When the request is not a valid WebSocket handshake.
 */
export function upgradeWebSocket(
  request: Request,
  options: UpgradeWebSocketOptions = {},
): WebSocketUpgrade {
  const upgrade = (request as unknown as Record<symbol, unknown>)[UPGRADE];
  if (typeof upgrade !== "function") {
    throw new TypeError(
      "upgradeWebSocket needs a request from brick's serve(): this request cannot hand its connection over",
    );
  }
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  if (!(maxMessageSize > 0)) {
    throw new RangeError(`maxMessageSize must be a positive number, got ${maxMessageSize}`);
  }
  const maxFragments = options.maxFragments ?? DEFAULT_MAX_FRAGMENTS;
  if (!(maxFragments >= 1)) {
    throw new RangeError(`maxFragments must be 1 or more, got ${maxFragments}`);
  }
  const idleTimeout = options.idleTimeout ?? 30;
  if (!(idleTimeout >= 0)) {
    throw new RangeError(`idleTimeout must be 0 or more seconds, got ${idleTimeout}`);
  }
  const compression = compressionSettings(options.compression);
  const key = checkHandshake(request);
  const protocol = selectProtocol(request.headers.get("sec-websocket-protocol"), options.protocol);
  const deflate = negotiateDeflate(request.headers.get("sec-websocket-extensions"), compression);

  const headers = new Headers({
    "upgrade": "websocket",
    "connection": "Upgrade",
    "sec-websocket-accept": acceptKey(key),
  });
  if (protocol) headers.set("sec-websocket-protocol", protocol);
  if (deflate !== null) headers.set("sec-websocket-extensions", deflate.response);
  // Response refuses 101 in its constructor; brick writes the status line
  // itself, and user code sees 101 as with Deno.upgradeWebSocket.
  const response = new Response(null, { status: 200, headers });
  Object.defineProperty(response, "status", { value: 101 });
  Object.defineProperty(response, "ok", { value: false });
  Object.defineProperty(response, "statusText", { value: "Switching Protocols" });

  const socket = new ServerWebSocket(SOCKET_TOKEN, {
    url: request.url.replace(/^http/, "ws"),
    protocol,
    idleTimeoutMs: idleTimeout * 1000,
    maxMessageSize,
    maxFragments,
    deflate,
  });
  let handedOver: Promise<UpgradedConnection>;
  try {
    handedOver = Promise.resolve(
      (upgrade as (response: Response) => Promise<UpgradedConnection>).call(request, response),
    );
  } catch (error) {
    handedOver = Promise.reject(error);
  }
  handedOver.then(
    (conn) => socket[ATTACH](conn),
    (error) => socket[ATTACH_FAILED](error),
  );
  return { socket, response };
}

/**
 * The error {@linkcode upgradeWebSocket} throws for a request that is not a
 * valid WebSocket handshake. It carries the HTTP answer, which brick sends on
 * its own when the error leaves the handler. Code that catches it, or runs
 * under another server, answers with {@linkcode WebSocketHandshakeError.toResponse}.
 *
 * @example Usage
 * ```ts ignore
 * import { upgradeWebSocket, WebSocketHandshakeError } from "@brick/http/websocket";
 *
 * function handler(request: Request): Response {
 *   try {
 *     const { socket, response } = upgradeWebSocket(request);
 *     socket.onmessage = (event) => socket.send(event.data);
 *     return response;
 *   } catch (error) {
 *     if (error instanceof WebSocketHandshakeError) return error.toResponse();
 *     throw error;
 *   }
 * }
 * ```
 */
export class WebSocketHandshakeError extends Error {
  /** The error's name, `"WebSocketHandshakeError"`. */
  override name = "WebSocketHandshakeError";
  /** The HTTP status to answer with: 400, or 426 for an unsupported protocol version. */
  readonly status: 400 | 426;

  /**
   * Creates the error for a refused handshake.
   *
   * @param message The reason, sent as the response body.
   * @param status 400, or 426 when the client speaks another protocol version.
   */
  constructor(message: string, status: 400 | 426 = 400) {
    super(message);
    this.status = status;
  }

  /**
   * Builds the HTTP answer: the status, the reason as plain text and, for 426,
   * `Sec-WebSocket-Version: 13`, the one version brick speaks.
   *
   * @returns A new response each time it is called.
   */
  toResponse(): Response {
    const headers = new Headers({ "content-type": "text/plain; charset=utf-8" });
    if (this.status === 426) {
      headers.set("sec-websocket-version", "13");
      headers.set("upgrade", "websocket");
    }
    return new Response(this.message + "\n", { status: this.status, headers });
  }

  /** brick's hook for errors that carry their own HTTP answer. */
  [ERROR_RESPONSE](): Response {
    return this.toResponse();
  }
}

// ─── 2. The handshake ───────────────────────────────────────────────────────

/** Whether the comma-separated field `value` lists `token`, ignoring case. */
function hasToken(value: string | null, token: string): boolean {
  if (value === null) return false;
  return value.split(",").some((item) => item.trim().toLowerCase() === token);
}

/** 16 bytes in base64, as RFC 6455 requires of `Sec-WebSocket-Key`. */
const KEY = /^[A-Za-z0-9+/]{22}==$/;

/** Validates the opening handshake (RFC 6455 §4.2.1) and returns the client's key. */
function checkHandshake(request: Request): string {
  if (request.method !== "GET") {
    throw new WebSocketHandshakeError(
      `A WebSocket handshake must be a GET request, not ${request.method}`,
    );
  }
  const headers = request.headers;
  if (!hasToken(headers.get("upgrade"), "websocket")) {
    throw new WebSocketHandshakeError(
      `A WebSocket handshake needs "Upgrade: websocket", got ${quote(headers.get("upgrade"))}`,
    );
  }
  if (!hasToken(headers.get("connection"), "upgrade")) {
    throw new WebSocketHandshakeError(
      `A WebSocket handshake needs "Connection: Upgrade", got ${quote(headers.get("connection"))}`,
    );
  }
  const version = headers.get("sec-websocket-version");
  if (version?.trim() !== "13") {
    throw new WebSocketHandshakeError(
      `Unsupported Sec-WebSocket-Version ${quote(version)}: this server speaks version 13`,
      426,
    );
  }
  const key = headers.get("sec-websocket-key")?.trim() ?? null;
  if (key === null || !KEY.test(key)) {
    throw new WebSocketHandshakeError(
      `A WebSocket handshake needs a Sec-WebSocket-Key of 16 bytes in base64, got ${quote(key)}`,
    );
  }
  return key;
}

function quote(value: string | null | undefined): string {
  return value === null || value === undefined ? "none" : JSON.stringify(value);
}

/** The `Sec-WebSocket-Accept` value for `key`: base64 of SHA-1 over the key and RFC 6455's GUID. */
function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

/** The first of the server's subprotocols that the client offered, or "". */
function selectProtocol(
  offered: string | null,
  wanted: string | readonly string[] | undefined,
): string {
  if (offered === null || wanted === undefined) return "";
  const offers = new Set(offered.split(",").map((item) => item.trim()));
  for (const protocol of typeof wanted === "string" ? [wanted] : wanted) {
    if (offers.has(protocol)) return protocol;
  }
  return "";
}

// ─── 3. The frame codec ─────────────────────────────────────────────────────

/** Frame opcodes (RFC 6455 §5.2). */
export const Opcode = {
  /** A further fragment of the message in progress. */
  Continuation: 0x0,
  /** The first frame of a UTF-8 text message. */
  Text: 0x1,
  /** The first frame of a binary message. */
  Binary: 0x2,
  /** Starts or answers the closing handshake. */
  Close: 0x8,
  /** Asks the peer for a pong. */
  Ping: 0x9,
  /** Answers a ping, or serves as a heartbeat. */
  Pong: 0xa,
} as const;

/** One WebSocket frame. */
export interface Frame {
  /** Whether this frame ends its message (always true for control frames). */
  fin: boolean;
  /** One of {@linkcode Opcode}'s values, or another 4-bit value when decoding raw bytes. */
  opcode: number;
  /** The payload, unmasked. */
  payload: Uint8Array;
  /** The three reserved bits RSV1–RSV3 as a number 0–7; 0 unless an extension uses them. */
  rsv?: number;
}

/** Options for {@linkcode encodeFrame}. */
export interface EncodeFrameOptions {
  /**
   * The 4-byte masking key, or `true` for a random one. Clients must mask every
   * frame; servers must not mask. Leave it out for no mask.
   */
  mask?: Uint8Array | boolean;
}

/**
 * Serializes `frame`: the header with the shortest length form (7, 16 or 64
 * bits), the mask key if masking, and the (masked) payload. No checks are made,
 * so tests can build invalid frames too.
 *
 * @example Usage
 * ```ts
 * import { encodeFrame, Opcode } from "@brick/http/websocket";
 *
 * const bytes = encodeFrame({ fin: true, opcode: Opcode.Text, payload: new TextEncoder().encode("hi") });
 * console.log(bytes); // Uint8Array(4) [ 129, 2, 104, 105 ]
 * ```
 *
 * @param frame What to send.
 * @param options Whether and how to mask the payload.
 * @returns The frame's bytes.
 */
export function encodeFrame(frame: Frame, options: EncodeFrameOptions = {}): Uint8Array {
  const { payload } = frame;
  let key: Uint8Array | null = null;
  if (options.mask === true) key = crypto.getRandomValues(new Uint8Array(4));
  else if (options.mask instanceof Uint8Array) key = options.mask;
  const headerSize = frameHeaderSize(payload.length, key !== null);
  const bytes = new Uint8Array(headerSize + payload.length);
  writeFrameHeader(bytes, frame.fin, frame.rsv ?? 0, frame.opcode, payload.length, key);
  bytes.set(payload, headerSize);
  if (key !== null) applyMask(bytes, headerSize, bytes.length, key);
  return bytes;
}

/** The header size for a payload of `length` bytes. */
function frameHeaderSize(length: number, masked: boolean): number {
  return (length < 126 ? 2 : length < 0x10000 ? 4 : 10) + (masked ? 4 : 0);
}

/** Writes a frame header at the start of `bytes`; returns its size. */
function writeFrameHeader(
  bytes: Uint8Array,
  fin: boolean,
  rsv: number,
  opcode: number,
  length: number,
  key: Uint8Array | null,
): number {
  bytes[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  const maskBit = key !== null ? 0x80 : 0;
  let pos: number;
  if (length < 126) {
    bytes[1] = maskBit | length;
    pos = 2;
  } else if (length < 0x10000) {
    bytes[1] = maskBit | 126;
    bytes[2] = length >>> 8;
    bytes[3] = length & 0xff;
    pos = 4;
  } else {
    bytes[1] = maskBit | 127;
    const view = new DataView(bytes.buffer, bytes.byteOffset, 10);
    view.setUint32(2, Math.floor(length / 0x1_0000_0000));
    view.setUint32(6, length >>> 0);
    pos = 10;
  }
  if (key !== null) {
    bytes.set(key, pos);
    pos += 4;
  }
  return pos;
}

/**
 * XORs bytes[start, end) with the 4-byte `key`, in place; masking and
 * unmasking are the same. `keyOffset` is how many payload bytes came before
 * `start`, for a payload unmasked in pieces. Long runs go four bytes at a time, from the first
 * 4-byte-aligned offset, with the key rotated to match.
 */
function applyMask(
  bytes: Uint8Array,
  start: number,
  end: number,
  key: Uint8Array,
  keyOffset = 0,
): void {
  let i = start, j = keyOffset & 3;
  if (end - start >= 64) {
    for (; ((bytes.byteOffset + i) & 3) !== 0; i++, j = (j + 1) & 3) bytes[i] ^= key[j];
    const rotated = new Uint8Array(4);
    for (let n = 0; n < 4; n++) rotated[n] = key[(j + n) & 3];
    const word = new Uint32Array(rotated.buffer)[0];
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset + i, (end - i) >>> 2);
    for (let w = 0; w < words.length; w++) words[w] ^= word;
    i += words.length * 4;
  }
  for (; i < end; i++, j = (j + 1) & 3) bytes[i] ^= key[j];
}

/**
 * A protocol violation, with the close code to end the connection with:
 * 1002 (protocol error), 1007 (text that is not UTF-8) or 1009 (too big).
 */
export class WebSocketProtocolError extends Error {
  /** The error's name, `"WebSocketProtocolError"`. */
  override name = "WebSocketProtocolError";
  /** The close code that reports this violation to the peer. */
  readonly code: number;

  /**
   * Creates the error for a protocol violation.
   *
   * @param message What went wrong; sent as the close reason, cut to fit 123 bytes.
   * @param code The close code. @default {1002}
   */
  constructor(message: string, code = 1002) {
    super(message);
    this.code = code;
  }
}

/** Options for {@linkcode decodeFrame}. */
export interface DecodeFrameOptions {
  /**
   * Whether frames must be masked (true on a server, which reads client
   * frames) or must not be (false on a client). Leave it out to accept both.
   */
  masked?: boolean;
  /**
   * The largest data frame payload accepted, in bytes: a larger one throws
   * with code 1009. Control frames have their own limit of 125 bytes.
   *
   * @default {Infinity}
   */
  maxPayload?: number;
  /**
   * The reserved bits a negotiated extension gives meaning to, as in
   * {@linkcode Frame.rsv}: 4 for RSV1, which permessage-deflate uses. Other
   * reserved bits set throw with code 1002.
   *
   * @default {0}
   */
  allowedRsv?: number;
}

/** A frame header, parsed. */
interface FrameHeader {
  fin: boolean;
  rsv: number;
  opcode: number;
  /** The mask key's offset from the frame start, or -1 when unmasked. */
  maskAt: number;
  headerSize: number;
  length: number;
}

/**
 * Parses the header at bytes[start, end) and checks what a single frame can
 * break: reserved bits, unknown opcodes, control frames that are fragmented or
 * longer than 125 bytes, a 64-bit length with its top bit set, the masking
 * rule and `maxPayload`. Returns null while the header is incomplete, else
 * `out` filled in (a socket passes the same object for every frame).
 */
function parseFrameHeader(
  bytes: Uint8Array,
  start: number,
  end: number,
  options: ParseOptions,
  out: FrameHeader = { fin: false, rsv: 0, opcode: 0, maskAt: -1, headerSize: 0, length: 0 },
): FrameHeader | null {
  if (end - start < 2) return null;
  const b0 = bytes[start], b1 = bytes[start + 1];
  const fin = (b0 & 0x80) !== 0;
  const rsv = (b0 >> 4) & 7;
  const opcode = b0 & 0x0f;
  const masked = (b1 & 0x80) !== 0;
  let length = b1 & 0x7f;
  let headerSize = 2;
  if ((rsv & ~(options.allowedRsv ?? 0)) !== 0) {
    throw new WebSocketProtocolError(`Reserved bits set (${rsv}) without a negotiated extension`);
  }
  const isControl = (opcode & 0x08) !== 0;
  if (opcode > 0x2 && opcode !== 0x8 && opcode !== 0x9 && opcode !== 0xa) {
    throw new WebSocketProtocolError(`Unknown opcode 0x${opcode.toString(16)}`);
  }
  if (isControl && !fin) throw new WebSocketProtocolError("Control frames must not be fragmented");
  if (isControl && length > 125) {
    throw new WebSocketProtocolError("Control frames must have a payload of 125 bytes or less");
  }
  if (options.masked === true && !masked) {
    throw new WebSocketProtocolError("Client frames must be masked");
  }
  if (options.masked === false && masked) {
    throw new WebSocketProtocolError("Server frames must not be masked");
  }
  if (length === 126) {
    if (end - start < 4) return null;
    length = (bytes[start + 2] << 8) | bytes[start + 3];
    headerSize = 4;
  } else if (length === 127) {
    if (end - start < 10) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset + start + 2, 8);
    const high = view.getUint32(0);
    if (high >= 0x8000_0000) {
      throw new WebSocketProtocolError("The 64-bit payload length has its top bit set");
    }
    length = high * 0x1_0000_0000 + view.getUint32(4);
    headerSize = 10;
  }
  if (!isControl && length > (options.maxPayload ?? Infinity)) {
    throw new WebSocketProtocolError(`A frame of ${length} bytes is over the limit`, 1009);
  }
  const maskAt = masked ? headerSize : -1;
  if (masked) headerSize += 4;
  if (end - start < headerSize) return null;
  out.fin = fin, out.rsv = rsv, out.opcode = opcode, out.maskAt = maskAt;
  out.headerSize = headerSize, out.length = length;
  return out;
}

type ParseOptions = DecodeFrameOptions;

/**
 * Parses the frame at the start of `bytes` and unmasks its payload (into a
 * copy; `bytes` is not changed). Returns null when `bytes` holds only part of
 * a frame. Frame-level protocol errors throw (see {@linkcode DecodeFrameOptions}
 * for the masking rule and the size limit); message-level rules, such as
 * continuation order and UTF-8, are the socket's.
 *
 * @example Usage
 * ```ts
 * import { decodeFrame } from "@brick/http/websocket";
 *
 * const decoded = decodeFrame(new Uint8Array([0x81, 0x02, 0x68, 0x69]), { masked: false });
 * console.log(decoded?.frame.opcode, decoded?.size); // 1 4
 * ```
 *
 * @param bytes Bytes that start at a frame boundary.
 * @param options The masking rule and the largest payload.
 * @returns The frame and how many bytes it took, or null if incomplete.
 * @throws {WebSocketProtocolError} When the frame breaks the protocol; its `code` is the close code.
 */
export function decodeFrame(
  bytes: Uint8Array,
  options: DecodeFrameOptions = {},
): { frame: Frame; size: number } | null {
  const header = parseFrameHeader(bytes, 0, bytes.length, options);
  if (header === null) return null;
  const size = header.headerSize + header.length;
  if (bytes.length < size) return null;
  const payload = bytes.slice(header.headerSize, size);
  if (header.maskAt >= 0) {
    applyMask(payload, 0, payload.length, bytes.subarray(header.maskAt, header.maskAt + 4));
  }
  return { frame: { fin: header.fin, opcode: header.opcode, payload, rsv: header.rsv }, size };
}

/**
 * Whether `code` may appear in a close frame (RFC 6455 §7.4): 1000–1003,
 * 1007–1014 and 3000–4999. 1004–1006 and 1015 are reserved for reporting and
 * never sent.
 *
 * @param code A close code.
 * @returns True if an endpoint may send it.
 */
export function isValidCloseCode(code: number): boolean {
  return Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
      (code >= 3000 && code <= 4999));
}

const encoder = new TextEncoder();
/** One-shot strict UTF-8 decoding. Keeps a leading BOM: the text arrives as sent. */
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
/** Decodes text already checked by {@linkcode checkUtf8}. */
const looseDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** {@linkcode checkUtf8}'s answer for bytes that can never be UTF-8. */
const UTF8_INVALID = -1;

/**
 * Checks `bytes[start, end)` as the next piece of a UTF-8 text, so that a
 * bad byte is caught the moment it arrives. `state` is what the previous
 * piece returned (0 to begin): 0 at a character boundary, otherwise the bytes
 * still due (bits 16+) and the range the next byte must fall in (bits 8-15
 * and 0-7). Returns the state after the piece, or `UTF8_INVALID`. The ranges
 * are RFC 3629's: no overlong forms, no surrogates, nothing past U+10FFFF.
 */
function checkUtf8(bytes: Uint8Array, start: number, end: number, state: number): number {
  let due = state >>> 16, low = (state >>> 8) & 0xff, high = state & 0xff;
  for (let i = start; i < end; i++) {
    const byte = bytes[i];
    if (due === 0) {
      if (byte < 0x80) continue;
      if (byte < 0xc2 || byte > 0xf4) return UTF8_INVALID;
      if (byte < 0xe0) {
        due = 1, low = 0x80, high = 0xbf;
      } else if (byte < 0xf0) {
        due = 2, low = byte === 0xe0 ? 0xa0 : 0x80, high = byte === 0xed ? 0x9f : 0xbf;
      } else {
        due = 3, low = byte === 0xf0 ? 0x90 : 0x80, high = byte === 0xf4 ? 0x8f : 0xbf;
      }
    } else {
      if (byte < low || byte > high) return UTF8_INVALID;
      due--, low = 0x80, high = 0xbf;
    }
  }
  return due === 0 ? 0 : (due << 16) | (low << 8) | high;
}

/**
 * The payload of a close frame: the code as two bytes, then the UTF-8 reason.
 *
 * @param code The close code, or undefined for an empty payload.
 * @param reason The reason; at most 123 bytes of UTF-8.
 * @returns The payload bytes.
 */
export function encodeClosePayload(code?: number, reason = ""): Uint8Array {
  if (code === undefined) return new Uint8Array(0);
  const text = encoder.encode(reason);
  const payload = new Uint8Array(2 + text.length);
  payload[0] = code >>> 8;
  payload[1] = code & 0xff;
  payload.set(text, 2);
  return payload;
}

/**
 * Reads a close frame's payload: a code (1005, "no status", when empty) and a
 * reason.
 *
 * @param payload The close frame's payload.
 * @returns The code and the reason.
 * @throws {WebSocketProtocolError} With 1002 for a one-byte payload or a code
 * no endpoint may send, with 1007 for a reason that is not UTF-8.
 */
export function decodeClosePayload(payload: Uint8Array): { code: number; reason: string } {
  if (payload.length === 0) return { code: 1005, reason: "" };
  if (payload.length === 1) {
    throw new WebSocketProtocolError("A close payload of one byte has no room for a code");
  }
  const code = (payload[0] << 8) | payload[1];
  if (!isValidCloseCode(code)) throw new WebSocketProtocolError(`Invalid close code ${code}`);
  let reason: string;
  try {
    reason = strictDecoder.decode(payload.subarray(2));
  } catch {
    throw new WebSocketProtocolError("The close reason is not valid UTF-8", 1007);
  }
  return { code, reason };
}

/** `reason` cut to at most 123 bytes of UTF-8 without splitting a character. */
function fitReason(reason: string): string {
  if (encoder.encode(reason).length <= 123) return reason;
  let cut = "";
  for (const char of reason) {
    if (encoder.encode(cut + char).length > 120) break;
    cut += char;
  }
  return cut + "...";
}

// ─── 4. permessage-deflate (RFC 7692) ───────────────────────────────────────

/**
 * permessage-deflate settings for {@linkcode UpgradeWebSocketOptions.compression}.
 *
 * Memory: a connection holds no zlib state until its first compressed
 * message. From then on, with context takeover (the default), it keeps a
 * deflate context of about `2^(serverMaxWindowBits + 2) + 2^(memLevel + 9)`
 * bytes (256 KiB with the defaults), freed once it sent nothing for 5-10 s,
 * and an inflate context of about `2^clientMaxWindowBits + 7 KiB` (39 KiB),
 * so compression suits servers with fewer, busier connections. Smaller windows and `memLevel` trade ratio for
 * memory; `serverNoContextTakeover` and `clientNoContextTakeover` free each
 * context after every message instead of keeping it.
 */
export interface CompressionOptions {
  /**
   * Start every message the server sends with an empty deflate window, and
   * free the deflate context after each message (less memory, worse ratio).
   * Also granted when the client asks for it.
   *
   * @default {false}
   */
  serverNoContextTakeover?: boolean;
  /**
   * Ask the client to start every message with an empty window, so the
   * server frees its inflate context after each message.
   *
   * @default {false}
   */
  clientNoContextTakeover?: boolean;
  /**
   * The largest deflate window the server uses, as a power of two, 9–15. An
   * offer asking for less is granted down to 9 and declined below (zlib cannot
   * make raw deflate with a 256-byte window).
   *
   * @default {15}
   */
  serverMaxWindowBits?: number;
  /**
   * The largest window the client may use, 8–15, asked for when the client's
   * offer lets the server choose (`client_max_window_bits`).
   *
   * @default {15}
   */
  clientMaxWindowBits?: number;
  /**
   * Messages the server sends below this many bytes go uncompressed:
   * compressing them costs more time than it saves bytes.
   *
   * @default {1024}
   */
  threshold?: number;
  /**
   * The zlib compression level, 0 (none) to 9 (smallest, slowest).
   *
   * @default {6}
   */
  level?: number;
  /**
   * zlib's memory level for deflate, 1–9: less memory, worse ratio.
   *
   * @default {8}
   */
  memLevel?: number;
}

/** What the handshake agreed on for permessage-deflate. */
interface DeflateParams {
  /** The server resets its deflate context after each message. */
  serverNoContextTakeover: boolean;
  /** The client resets its context after each message, so the server's inflater can too. */
  clientNoContextTakeover: boolean;
  /** The server's deflate window. */
  serverWindowBits: number;
  /** The inflate window: the client's largest, at least 9 (zlib's smallest raw window). */
  clientWindowBits: number;
  threshold: number;
  level: number;
  memLevel: number;
  /** The `Sec-WebSocket-Extensions` value of the 101 response. */
  response: string;
}

/** What a sync flush ends with, removed from each message's end by the sender (RFC 7692 §7.2.1). */
const DEFLATE_TAIL_BYTES = new Uint8Array([0x00, 0x00, 0xff, 0xff]);

/** Validates the `compression` option; returns the settings with defaults, or null when off. */
function compressionSettings(
  option: boolean | CompressionOptions | undefined,
): Required<CompressionOptions> | null {
  if (option === undefined || option === false) return null;
  const given = option === true ? {} : option;
  const settings: Required<CompressionOptions> = {
    serverNoContextTakeover: given.serverNoContextTakeover ?? false,
    clientNoContextTakeover: given.clientNoContextTakeover ?? false,
    serverMaxWindowBits: given.serverMaxWindowBits ?? 15,
    clientMaxWindowBits: given.clientMaxWindowBits ?? 15,
    threshold: given.threshold ?? 1024,
    level: given.level ?? 6,
    memLevel: given.memLevel ?? 8,
  };
  const ranges: [keyof CompressionOptions, number, number][] = [
    ["serverMaxWindowBits", 9, 15],
    ["clientMaxWindowBits", 8, 15],
    ["level", 0, 9],
    ["memLevel", 1, 9],
    ["threshold", 0, Infinity],
  ];
  for (const [name, low, high] of ranges) {
    const value = settings[name] as number;
    if (!(value >= low && value <= high) || (high !== Infinity && !Number.isInteger(value))) {
      throw new RangeError(`compression.${name} must be ${low} to ${high}, got ${value}`);
    }
  }
  return settings;
}

/**
 * Picks the first permessage-deflate offer in `header` that the server can
 * accept (RFC 7692 §5, §7.1): an offer with an unknown or repeated parameter,
 * or a value that is not allowed, is declined and the next one considered.
 * Returns null when no offer is acceptable; the connection then runs
 * without compression.
 */
function negotiateDeflate(
  header: string | null,
  settings: Required<CompressionOptions> | null,
): DeflateParams | null {
  if (header === null || settings === null) return null;
  for (const offer of parseExtensionList(header)) {
    if (offer === null || offer.name !== "permessage-deflate") continue;
    const accepted = acceptDeflateOffer(offer.params, settings);
    if (accepted !== null) return accepted;
  }
  return null;
}

/** A window size parameter's value: 8–15 in plain digits, or null. */
function windowBits(value: string): number | null {
  return /^(?:8|9|1[0-5])$/.test(value) ? Number(value) : null;
}

/** The response to one offer's parameters, or null to decline it. */
function acceptDeflateOffer(
  params: Map<string, string | true>,
  settings: Required<CompressionOptions>,
): DeflateParams | null {
  let serverWindow = settings.serverMaxWindowBits;
  let clientWindow = 15;
  let clientWindowAnswer: number | null = null;
  for (const [name, value] of params) {
    switch (name) {
      case "server_no_context_takeover":
      case "client_no_context_takeover":
        if (value !== true) return null;
        break;
      case "server_max_window_bits": {
        const bits = value === true ? null : windowBits(value);
        if (bits === null) return null;
        serverWindow = Math.min(serverWindow, bits);
        if (serverWindow < 9) return null; // zlib has no raw deflate with a 256-byte window
        break;
      }
      case "client_max_window_bits": {
        const bits = value === true ? 15 : windowBits(value);
        if (bits === null) return null;
        clientWindow = Math.min(bits, settings.clientMaxWindowBits);
        clientWindowAnswer = clientWindow;
        break;
      }
      default:
        return null; // an unknown parameter: decline this offer
    }
  }
  const serverNoContextTakeover = settings.serverNoContextTakeover ||
    params.has("server_no_context_takeover");
  const clientNoContextTakeover = settings.clientNoContextTakeover;
  const answer = ["permessage-deflate"];
  if (serverNoContextTakeover) answer.push("server_no_context_takeover");
  if (clientNoContextTakeover) answer.push("client_no_context_takeover");
  if (params.has("server_max_window_bits")) answer.push(`server_max_window_bits=${serverWindow}`);
  if (
    clientWindowAnswer !== null &&
    (clientWindowAnswer < 15 || params.get("client_max_window_bits") !== true)
  ) {
    answer.push(`client_max_window_bits=${clientWindowAnswer}`);
  }
  return {
    serverNoContextTakeover,
    clientNoContextTakeover,
    serverWindowBits: serverWindow,
    clientWindowBits: Math.max(9, clientWindow),
    threshold: settings.threshold,
    level: settings.level,
    memLevel: settings.memLevel,
    response: answer.join("; "),
  };
}

/**
 * Splits a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1) into offers, each
 * a name with its parameters; a parameter's value may be a quoted string. An
 * offer that is malformed or repeats a parameter is null, so the caller
 * declines it and goes on with the next.
 */
function parseExtensionList(
  header: string,
): ({ name: string; params: Map<string, string | true> } | null)[] {
  const offers: ({ name: string; params: Map<string, string | true> } | null)[] = [];
  for (const item of splitOutsideQuotes(header, ",")) {
    if (item.trim() === "") continue;
    const [name, ...rest] = splitOutsideQuotes(item, ";").map((part) => part.trim());
    const params = new Map<string, string | true>();
    let valid = TOKEN.test(name);
    for (const param of rest) {
      const match =
        /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*(?:([!#$%&'*+\-.^_`|~0-9A-Za-z]+)|"((?:[^"\\]|\\.)*)"))?$/
          .exec(param);
      if (match === null || params.has(match[1].toLowerCase())) {
        valid = false;
        break;
      }
      const quoted = match[3]?.replace(/\\(.)/g, "$1");
      params.set(match[1].toLowerCase(), match[2] ?? quoted ?? true);
    }
    offers.push(valid ? { name: name.toLowerCase(), params } : null);
  }
  return offers;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `text` split at each `separator` that is not inside a quoted string. */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let quoted = false, start = 0;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quoted && char === "\\") i++;
    else if (char === '"') quoted = !quoted;
    else if (!quoted && char === separator) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

/**
 * A connection's permessage-deflate state: one deflate and one inflate
 * context from `node:zlib` (raw deflate, the same on Deno, Node and Bun),
 * each made on first use. Compression runs one message at a time, in order.
 * Inflated bytes go to `onInflated` as zlib produces them, so the socket can
 * stop a message the moment it grows past its limit.
 */
class PerMessageDeflate {
  readonly params: DeflateParams;
  #deflater: DeflateRaw | null = null;
  #inflater: InflateRaw | null = null;
  #deflating: Promise<unknown> = Promise.resolve();
  /** Whether the deflater compressed since the last sweep. */
  #deflatedSinceSweep = true;
  /** Compressions queued behind a stream write: a synchronous one must wait its turn. */
  #deflatesQueued = 0;
  /** Inflater stream writes whose callback has not come: inflating synchronously waits for them. */
  #inflatesQueued = 0;
  /** Called with each piece of inflated output. */
  #onInflated: (bytes: Uint8Array) => void;
  /** Called once if the inflater fails (corrupt data). */
  #onInflateError: (error: Error) => void;
  /** Promises the socket waits on (a drain, a flush) that an abort must release. */
  #waiting = new Set<() => void>();
  /** The connection has ended: no context is made again. */
  #closed = false;

  constructor(
    params: DeflateParams,
    onInflated: (bytes: Uint8Array) => void,
    onInflateError: (error: Error) => void,
  ) {
    this.params = params;
    this.#onInflated = onInflated;
    this.#onInflateError = onInflateError;
  }

  /**
   * Compresses one message at once, where zlib can run synchronously (see
   * {@linkcode syncZlib}) and no compression is queued before it: returns the
   * payload, its `00 00 ff ff` tail removed.
   * Returns null otherwise; {@linkcode PerMessageDeflate.compress} then queues it.
   */
  compressSync(data: Uint8Array): Uint8Array | null {
    if (this.#closed || this.#deflatesQueued > 0 || data.length > SYNC_DEFLATE_BYTES) return null;
    this.#deflatedSinceSweep = true;
    const deflater = this.#deflater ??= this.#createDeflater();
    const zlib = syncZlib(deflater);
    if (zlib === null) return null;
    const chunks: Uint8Array[] = [];
    let size = 0;
    let taken = -1;
    try {
      taken = writeZlibSync(zlib, data, (chunk) => {
        chunks.push(chunk.slice()); // out of the shared output buffer
        size += chunk.length;
        return true;
      }, Infinity);
    } catch {
      // never seen: the stream starts again with a new context
    }
    if (taken !== data.length || deflater.destroyed) {
      this.#closeDeflater();
      return null;
    }
    let out = joinBytes(chunks, size);
    if (endsWithTail(out)) out = out.subarray(0, out.length - 4);
    if (this.params.serverNoContextTakeover) this.#closeDeflater();
    return out;
  }

  /**
   * Compresses one message after those queued before it (in zlib's context,
   * as on the wire, the order of the calls); resolves with the payload, its
   * `00 00 ff ff` tail removed.
   */
  compress(data: Uint8Array | Promise<Uint8Array>): Promise<Uint8Array> {
    this.#deflatesQueued++;
    this.#deflatedSinceSweep = true;
    const run = this.#deflating.then(() => data).then((bytes) => this.#compressNow(bytes));
    const settled = () => {
      this.#deflatesQueued--;
    };
    this.#deflating = run.then(settled, settled);
    return run;
  }

  /**
   * Frees the deflate context if it compressed nothing since the last sweep
   * (see {@linkcode DEFLATE_IDLE_MS}). Returns whether it is gone.
   */
  sweepDeflater(): boolean {
    if (this.#deflatesQueued > 0 || this.#deflatedSinceSweep) {
      this.#deflatedSinceSweep = false;
      return this.#deflater === null;
    }
    this.#closeDeflater();
    return true;
  }

  /** A deflate stream; every write ends with a sync flush, so one zlib call per message gives all its output. */
  #createDeflater(): DeflateRaw {
    const { serverWindowBits, level, memLevel } = this.params;
    if (!this.params.serverNoContextTakeover) watchDeflater(this);
    return createDeflateRaw({
      windowBits: serverWindowBits,
      level,
      memLevel,
      flush: zlibConstants.Z_SYNC_FLUSH,
    }).on("error", () => {}); // each compression listens for its own errors
  }

  #compressNow(data: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new Error("The WebSocket connection has ended"));
    const deflater = this.#deflater ??= this.#createDeflater();
    return new Promise((resolve, reject) => {
      const chunks: Uint8Array[] = [];
      let size = 0;
      const collect = (chunk: Uint8Array) => {
        chunks.push(chunk);
        size += chunk.length;
      };
      deflater.on("data", collect);
      deflater.once("error", reject);
      deflater.write(data, () => {
        deflater.off("data", collect);
        deflater.off("error", reject);
        let out = joinBytes(chunks, size);
        if (endsWithTail(out)) out = out.subarray(0, out.length - 4);
        if (this.params.serverNoContextTakeover) this.#closeDeflater();
        resolve(out);
      });
    });
  }

  /**
   * Feeds compressed payload bytes (owned by the call) to the inflater.
   * Returns a promise to wait for when zlib's input queue is full, else null.
   */
  inflate(bytes: Uint8Array): Promise<void> | null {
    if (this.#closed) return null;
    const inflater = this.#inflater ??= this.#createInflater();
    const rest = this.#inflateSync(inflater, bytes);
    if (rest === null) return null;
    if (this.#writeInflater(inflater, rest, () => {})) return null;
    return this.#waitFor((done) => inflater.once("drain", done));
  }

  /**
   * Feeds a message's last compressed bytes (owned by the call), the
   * `00 00 ff ff` tail included: resolves once all the message's output has
   * been passed on (or the inflater was aborted).
   */
  endMessage(bytes: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const inflater = this.#inflater ??= this.#createInflater();
    const end = () => {
      if (this.params.clientNoContextTakeover && this.#inflater === inflater) this.#closeInflater();
    };
    const rest = this.#inflateSync(inflater, bytes);
    if (rest === null) {
      if (this.#inflater !== inflater) return Promise.resolve(); // aborted: the socket knows why
      if (inflater.destroyed) return this.#waitFor(() => {}); // its error event releases it
      end();
      return Promise.resolve();
    }
    return this.#waitFor((done) =>
      this.#writeInflater(inflater, rest, () => {
        end();
        done();
      })
    );
  }

  /**
   * Inflates `bytes` synchronously where zlib can (see {@linkcode syncZlib})
   * and no stream write is still in progress, passing the output on as it
   * comes. After {@linkcode SYNC_INFLATE_OUTPUT_BYTES} of output it stops,
   * so one message cannot hold the event loop long, and returns the input
   * left for the stream. Returns null when all is done or inflating stopped
   * (an abort, an error); `bytes` itself when nothing ran.
   */
  #inflateSync(inflater: InflateRaw, bytes: Uint8Array): Uint8Array | null {
    const zlib = this.#inflatesQueued === 0 ? syncZlib(inflater) : null;
    if (zlib === null) return bytes;
    let taken: number;
    try {
      taken = writeZlibSync(zlib, bytes, (chunk) => {
        if (this.#inflater !== inflater || inflater.destroyed) return false;
        this.#onInflated(chunk);
        return this.#inflater === inflater;
      }, SYNC_INFLATE_OUTPUT_BYTES);
    } catch (error) {
      this.#inflaterFailed(inflater, error as Error);
      return null;
    }
    if (taken < 0 || this.#inflater !== inflater || inflater.destroyed) return null;
    return taken === bytes.length && zlib.state[0] !== 0 ? null : bytes.subarray(taken);
  }

  /** Writes to the inflater stream, counting the write until its callback. */
  #writeInflater(inflater: InflateRaw, bytes: Uint8Array, then: () => void): boolean {
    this.#inflatesQueued++;
    return inflater.write(bytes, () => {
      if (this.#inflater === inflater) this.#inflatesQueued--;
      then();
    });
  }

  /** Stops inflating at once (a message over its limit, or a failed connection). */
  abortInflate(): void {
    this.#closeInflater();
    for (const release of this.#waiting) release();
    this.#waiting.clear();
  }

  /** Frees both contexts. */
  close(): void {
    this.#closed = true;
    this.abortInflate();
    this.#closeDeflater();
  }

  #createInflater(): InflateRaw {
    // Each write ends with a sync flush: its callback comes once all its output is out.
    const inflater = createInflateRaw({
      windowBits: this.params.clientWindowBits,
      flush: zlibConstants.Z_SYNC_FLUSH,
    });
    inflater.on("data", (chunk: Uint8Array) => {
      if (this.#inflater === inflater) this.#onInflated(chunk);
    });
    inflater.on("error", (error: Error) => this.#inflaterFailed(inflater, error));
    return inflater;
  }

  #inflaterFailed(inflater: InflateRaw, error: Error): void {
    if (this.#inflater !== inflater) return;
    this.abortInflate();
    this.#onInflateError(error);
  }

  #waitFor(start: (done: () => void) => void): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#waiting.delete(done);
        resolve();
      };
      this.#waiting.add(done);
      start(done);
    });
  }

  #closeInflater(): void {
    const inflater = this.#inflater;
    this.#inflater = null;
    this.#inflatesQueued = 0;
    inflater?.close();
  }

  #closeDeflater(): void {
    const deflater = this.#deflater;
    this.#deflater = null;
    unwatchDeflater(this);
    deflater?.close();
  }
}

/**
 * A deflate context that compressed nothing for this long (one to two
 * periods) is freed: with context takeover it is most of what compression
 * costs an idle connection (256 KiB with the defaults). The server may start
 * a message from an empty window whenever it likes (without
 * `server_no_context_takeover` it may refer back, RFC 7692 §7.1.1.1, and
 * need not), so the client sees no difference.
 */
const DEFLATE_IDLE_MS = 5000;
/** Connections holding a deflate context with context takeover, swept every {@linkcode DEFLATE_IDLE_MS}. */
const watchedDeflaters = new Set<PerMessageDeflate>();
let deflaterSweep: ReturnType<typeof setInterval> | undefined;

function watchDeflater(owner: PerMessageDeflate): void {
  watchedDeflaters.add(owner);
  deflaterSweep ??= setInterval(sweepDeflaters, DEFLATE_IDLE_MS);
}

function unwatchDeflater(owner: PerMessageDeflate): void {
  watchedDeflaters.delete(owner);
  if (watchedDeflaters.size > 0 || deflaterSweep === undefined) return;
  clearInterval(deflaterSweep); // nothing to sweep: no timer keeps the process alive
  deflaterSweep = undefined;
}

function sweepDeflaters(): void {
  for (const owner of watchedDeflaters) owner.sweepDeflater();
}

/** Messages up to this size are deflated synchronously where {@linkcode syncZlib} allows. */
const SYNC_DEFLATE_BYTES = 64 * 1024;
/** A synchronous inflate hands the rest to the stream after this much output. */
const SYNC_INFLATE_OUTPUT_BYTES = 256 * 1024;
/** zlib's output piece, as node:zlib streams use (16 KiB). */
const ZLIB_CHUNK_BYTES = 16 * 1024;
/** The output buffer of synchronous zlib calls, shared: each piece is used before the next call. */
let zlibScratch: Uint8Array | null = null;

/** A zlib stream's native handle, for synchronous writes that keep the context. */
interface SyncZlib {
  handle: {
    writeSync(
      flush: number,
      input: Uint8Array,
      inputOffset: number,
      inputLength: number,
      output: Uint8Array,
      outputOffset: number,
      outputLength: number,
    ): void;
  };
  /** After a write: `[output space left, input left]`. */
  state: Uint32Array;
}

/**
 * The stream's handle for synchronous writes, or null to use the stream.
 *
 * A `node:zlib` stream write costs a thread-pool round trip on Node and Bun:
 * a 1.9 KiB deflate plus inflate measured 60-190 us that way against 17-39 us
 * through the handle's `writeSync` (the one Node's own `*Sync` functions use;
 * `_processChunk` without a callback would close the context). Deno's stream
 * writes are cheaper than its handle's (about 15 us against 45), so Deno keeps
 * the stream. Where the handle is missing or unlike Node's, the stream is used.
 */
function syncZlib(stream: DeflateRaw | InflateRaw): SyncZlib | null {
  if ("Deno" in globalThis || stream.destroyed) return null;
  const { _handle: handle, _writeState: state } = stream as unknown as {
    _handle?: SyncZlib["handle"] | null;
    _writeState?: unknown;
  };
  if (typeof handle?.writeSync !== "function") return null;
  return state instanceof Uint32Array && state.length >= 2 ? { handle, state } : null;
}

/**
 * Runs `input` through zlib with a sync flush, synchronously, passing each
 * piece of output (valid during the call) to `onOutput`, which returns false
 * to stop. Stops once `maxOutput` bytes came out. Returns how many input bytes
 * zlib took, or -1 when `onOutput` stopped it.
 */
function writeZlibSync(
  zlib: SyncZlib,
  input: Uint8Array,
  onOutput: (chunk: Uint8Array) => boolean,
  maxOutput: number,
): number {
  const out = zlibScratch ??= new Uint8Array(ZLIB_CHUNK_BYTES);
  let taken = 0, produced = 0;
  for (;;) {
    const left = input.length - taken;
    zlib.handle.writeSync(zlibConstants.Z_SYNC_FLUSH, input, taken, left, out, 0, out.length);
    const outLeft = zlib.state[0], inLeft = zlib.state[1];
    taken += left - inLeft;
    const have = out.length - outLeft;
    produced += have;
    if (have > 0 && !onOutput(out.subarray(0, have))) return -1;
    if (outLeft !== 0 || produced >= maxOutput) return taken;
  }
}

function endsWithTail(bytes: Uint8Array): boolean {
  const n = bytes.length;
  return n >= 4 && bytes[n - 4] === 0 && bytes[n - 3] === 0 && bytes[n - 2] === 0xff &&
    bytes[n - 1] === 0xff;
}

// ─── 5. Events ──────────────────────────────────────────────────────────────
// Deno and Bun have CloseEvent and ErrorEvent; Node 20 has neither, so small
// stand-ins with the same members take their place there.

interface CloseEventInit2 extends EventInit {
  code?: number;
  reason?: string;
  wasClean?: boolean;
}

const CloseEventClass: new (type: string, init?: CloseEventInit2) => CloseEvent =
  (globalThis as { CloseEvent?: typeof CloseEvent }).CloseEvent ??
    class CloseEvent extends Event {
      readonly code: number;
      readonly reason: string;
      readonly wasClean: boolean;
      constructor(type: string, init: CloseEventInit2 = {}) {
        super(type, init);
        this.code = init.code ?? 0;
        this.reason = init.reason ?? "";
        this.wasClean = init.wasClean ?? false;
      }
    } as unknown as typeof CloseEvent;

interface ErrorEventInit2 extends EventInit {
  message?: string;
  error?: unknown;
}

const ErrorEventClass: new (type: string, init?: ErrorEventInit2) => ErrorEvent =
  (globalThis as { ErrorEvent?: typeof ErrorEvent }).ErrorEvent ??
    class ErrorEvent extends Event {
      readonly message: string;
      readonly error: unknown;
      readonly filename = "";
      readonly lineno = 0;
      readonly colno = 0;
      constructor(type: string, init: ErrorEventInit2 = {}) {
        super(type, init);
        this.message = init.message ?? "";
        this.error = init.error;
      }
    } as unknown as typeof ErrorEvent;

// ─── 6. The socket ──────────────────────────────────────────────────────────

/** The connection brick hands over after the 101 (see mod.ts, "Upgrades"). */
interface UpgradedConnection {
  readonly remoteAddr: { hostname: string; port: number; transport: "tcp" };
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<void>;
  closeWrite(): Promise<void>;
  close(): void;
  onShutdown: (() => void) | null;
}

/** Keeps `new ServerWebSocket()` to this module: sockets come from upgradeWebSocket. */
const SOCKET_TOKEN = Symbol("ServerWebSocket");
const ATTACH = Symbol("attach");
const ATTACH_FAILED = Symbol("attachFailed");

interface SocketConfig {
  url: string;
  protocol: string;
  idleTimeoutMs: number;
  maxMessageSize: number;
  maxFragments: number;
  deflate: DeflateParams | null;
}

/** How long the server waits for the client's close frame after sending its own. */
const CLOSE_TIMEOUT_MS = 5000;
/** The read buffer; frames larger than this are read into their own buffer. */
const READ_BUFFER_BYTES = 16 * 1024;
/** A long message's buffer starts at this size and doubles as bytes arrive, up to the message's. */
const FIRST_BIG_BUFFER_BYTES = 64 * 1024;
/** A fragmented message's buffer starts at this size (its length is not known in advance). */
const FIRST_FRAGMENTS_BUFFER_BYTES = 1024;
/** A payload at least this long, with nothing else buffered, is read straight into its message. */
const DIRECT_READ_BYTES = 4096;
const EMPTY = new Uint8Array(0);
/** The RSV1 bit in {@linkcode Frame.rsv}: permessage-deflate's "compressed" flag. */
const RSV1 = 4;

/** A data frame whose payload is arriving. */
interface IncomingFrame {
  header: FrameHeader;
  /** The frame's mask key, copied out of the read buffer. */
  key: Uint8Array;
  /** Payload bytes received so far. */
  received: number;
}

/**
 * A message being received. Its frames' payloads are joined into one buffer
 * as they arrive, so a frame costs nothing beyond its bytes: an empty
 * continuation frame costs no memory at all.
 */
interface IncomingMessage {
  opcode: number;
  /** The payload so far is `data[0, size)`. */
  data: Uint8Array;
  size: number;
  /** Payload bytes received on the wire (compressed bytes for a compressed message). */
  wire: number;
  /** Frames received, the first included. */
  fragments: number;
  /** Whether the first frame had RSV1 set: the payload is deflated (RFC 7692). */
  compressed: boolean;
  /** For text, the UTF-8 check's state between pieces (see {@linkcode checkUtf8}). */
  utf8: number;
}

/** What the socket sends: frame bytes, a Blob's frame being read, or the order to close TCP. */
type Outgoing =
  | { kind: "frame"; bytes: Uint8Array | Promise<Uint8Array>; size: number }
  | { kind: "end" };
type ReadyFrame = { kind: "frame"; bytes: Uint8Array; size: number };

/** The most that queued frames are joined into for one write. */
const BATCH_BYTES = 64 * 1024;

/** An `on*` property's value. */
type Handler<E extends Event> = ((this: ServerWebSocket, event: E) => unknown) | null;

/** The events a {@linkcode ServerWebSocket} fires. */
export interface ServerWebSocketEventMap {
  /** The handshake response has been sent; `send()` may be called. */
  open: Event;
  /** A whole message arrived: `data` is a string, or binary data as `binaryType` says. */
  message: MessageEvent;
  /** The connection ended. `wasClean` tells whether both sides sent a close frame. */
  close: CloseEvent;
  /** The connection failed: a protocol error, a dead peer or a transport error. */
  error: Event;
}

/**
 * The server's end of a WebSocket, made by {@linkcode upgradeWebSocket}. It has
 * the browser `WebSocket`'s members and events, so code written for
 * `Deno.upgradeWebSocket`'s socket runs on it unchanged.
 *
 * Differences to know about: `close()` accepts every code an endpoint may
 * send (see {@linkcode isValidCloseCode}), not only 1000 and 3000–4999, so a
 * server can say 1001, 1008 or 1011. When the socket fails a connection
 * (a protocol error, a message over `maxMessageSize`, a dead peer), the
 * `close` event carries the code the server sent, with `wasClean` false.
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "@brick/http";
 * import { upgradeWebSocket } from "@brick/http/websocket";
 *
 * serve((request) => {
 *   const { socket, response } = upgradeWebSocket(request);
 *   socket.binaryType = "arraybuffer";
 *   socket.addEventListener("message", (event) => {
 *     if (typeof event.data === "string") socket.send(event.data.toUpperCase());
 *     else socket.close(1003, "Text only, please");
 *   });
 *   return response;
 * });
 * ```
 */
export class ServerWebSocket extends EventTarget {
  /** The socket waits for its handshake response to be sent. */
  static readonly CONNECTING = 0;
  /** Messages flow both ways. */
  static readonly OPEN = 1;
  /** A close frame has been sent or received; the connection is ending. */
  static readonly CLOSING = 2;
  /** The connection is closed. */
  static readonly CLOSED = 3;
  /** The socket waits for its handshake response to be sent. */
  readonly CONNECTING = 0;
  /** Messages flow both ways. */
  readonly OPEN = 1;
  /** A close frame has been sent or received; the connection is ending. */
  readonly CLOSING = 2;
  /** The connection is closed. */
  readonly CLOSED = 3;

  /** The URL of the request that opened the socket, with the `ws:` scheme. */
  readonly url: string;
  /** The selected subprotocol, or "" when none was. */
  readonly protocol: string;
  /** The negotiated extensions: the `Sec-WebSocket-Extensions` answer (permessage-deflate), or "". */
  readonly extensions: string;

  #readyState: 0 | 1 | 2 | 3 = 0;
  #binaryType: BinaryType = "blob";
  #bufferedAmount = 0;
  #config: SocketConfig;
  #origin: string;
  #conn: UpgradedConnection | null = null;
  #handlers = new Map<string, { handler: Handler<Event>; listener: EventListener }>();

  // Writing: frames queue here and leave one at a time (backpressure).
  #queue: Outgoing[] = [];
  #writing = false;
  /** How many queued items the write in progress covers. */
  #inFlight = 0;
  #closeSent = false;
  /** The close requested while the socket was still connecting. */
  #pendingClose: { code?: number; reason: string } | null = null;

  /** The pong queued and not yet written, which a newer ping's pong replaces. */
  #queuedPong: Outgoing | null = null;

  // Reading: frames are parsed from `#buf[#start, #end)`.
  #buf = new Uint8Array(READ_BUFFER_BYTES);
  #start = 0;
  #end = 0;
  /** The data frame whose payload is arriving: `#frameSlot`, or null between frames. */
  #frame: IncomingFrame | null = null;
  /** The one frame record a socket needs, reused for every frame so none allocates. */
  #frameSlot: IncomingFrame = {
    header: { fin: false, rsv: 0, opcode: 0, maskAt: -1, headerSize: 0, length: 0 },
    key: new Uint8Array(4),
    received: 0,
  };
  #parseOptions: ParseOptions = { masked: true, maxPayload: Infinity, allowedRsv: 0 };
  /** permessage-deflate, when negotiated. */
  #deflate: PerMessageDeflate | null = null;
  /** What reading waits for before it goes on: zlib taking input, or a message inflating. */
  #pause: Promise<void> | null = null;
  /** Compressed bytes gathered for the inflater; see {@linkcode ServerWebSocket.#batchCompressed}. */
  #inflateBatch: Uint8Array = EMPTY;
  #inflateBatchSize = 0;
  /** The message being received, from its first frame until its last. */
  #message: IncomingMessage | null = null;
  /** Whether the last read went straight into `#message.data`. */
  #direct = false;
  #closeReceived: { code: number; reason: string } | null = null;

  // Ending.
  #failure: { code: number; reason: string } | null = null;
  /** Why reading or writing failed, if it did. */
  #transportError: unknown = undefined;
  #finished = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #lastReceivedAt = 0;
  #pingSent = false;

  /**
   * Not for direct use: sockets come from {@linkcode upgradeWebSocket}.
   *
   * @param token The module's private token.
   * @param config What the handshake decided.
   * @ignore
   */
  constructor(token: symbol, config: SocketConfig) {
    if (token !== SOCKET_TOKEN) {
      throw new TypeError("Create a ServerWebSocket with upgradeWebSocket(request)");
    }
    super();
    this.url = config.url;
    this.protocol = config.protocol;
    this.extensions = config.deflate?.response ?? "";
    this.#config = config;
    if (config.deflate !== null) {
      this.#deflate = new PerMessageDeflate(
        config.deflate,
        (bytes) => this.#inflated(bytes),
        (error) => this.#fail(1007, `A compressed message does not inflate: ${error.message}`),
      );
      this.#parseOptions.allowedRsv = RSV1;
    }
    this.#origin = originOf(config.url);
  }

  /** 0 connecting, 1 open, 2 closing, 3 closed. */
  get readyState(): number {
    return this.#readyState;
  }

  /** Bytes of payload that `send()` queued and the client has not yet taken. */
  get bufferedAmount(): number {
    return this.#bufferedAmount;
  }

  /**
   * How binary messages arrive in `event.data`: as a `Blob` (the default, as
   * in browsers) or an `ArrayBuffer`.
   */
  get binaryType(): BinaryType {
    return this.#binaryType;
  }
  set binaryType(value: BinaryType) {
    if (value === "blob" || value === "arraybuffer") this.#binaryType = value;
  }

  /** Called once the socket is open. */
  get onopen(): ((this: ServerWebSocket, event: Event) => unknown) | null {
    return this.#getHandler("open");
  }
  set onopen(handler: ((this: ServerWebSocket, event: Event) => unknown) | null) {
    this.#setHandler("open", handler);
  }
  /** Called with each message. */
  get onmessage(): ((this: ServerWebSocket, event: MessageEvent) => unknown) | null {
    return this.#getHandler("message");
  }
  set onmessage(handler: ((this: ServerWebSocket, event: MessageEvent) => unknown) | null) {
    this.#setHandler("message", handler as Handler<Event>);
  }
  /** Called once the connection has closed. */
  get onclose(): ((this: ServerWebSocket, event: CloseEvent) => unknown) | null {
    return this.#getHandler("close");
  }
  set onclose(handler: ((this: ServerWebSocket, event: CloseEvent) => unknown) | null) {
    this.#setHandler("close", handler as Handler<Event>);
  }
  /** Called when the connection fails, just before `close`. */
  get onerror(): ((this: ServerWebSocket, event: Event) => unknown) | null {
    return this.#getHandler("error");
  }
  set onerror(handler: ((this: ServerWebSocket, event: Event) => unknown) | null) {
    this.#setHandler("error", handler);
  }

  /**
   * Listens for `type`, with the event typed for the socket's own events.
   *
   * @param type The event name.
   * @param listener The function or object to call.
   * @param options As for `EventTarget.addEventListener`.
   */
  override addEventListener<K extends keyof ServerWebSocketEventMap>(
    type: K,
    listener: (this: ServerWebSocket, event: ServerWebSocketEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  /**
   * Listens for any event type, as `EventTarget.addEventListener` does.
   *
   * @param type The event name.
   * @param listener The function or object to call.
   * @param options As for `EventTarget.addEventListener`.
   */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener, options);
  }

  /**
   * Sends a message: a string as text, anything binary as binary. The frame is
   * queued and leaves when the ones before it have been written, so
   * `bufferedAmount` grows while the client reads slowly. After `close()`, or
   * once the connection has ended, data is dropped, as in browsers.
   *
   * @param data The message.
   * @throws {DOMException} `InvalidStateError` while the socket is still connecting.
   */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void {
    if (this.#readyState === 0) {
      throw new DOMException(
        "The WebSocket is not open yet: send from onopen, or after the handler returned the response",
        "InvalidStateError",
      );
    }
    if (typeof data === "string") {
      const payload = encoder.encode(data);
      this.#sendData(Opcode.Text, payload, payload.length, true);
    } else if (data instanceof Blob) {
      const bytes = data.arrayBuffer().then((buffer) => new Uint8Array(buffer));
      this.#sendData(Opcode.Binary, bytes, data.size, true);
    } else if (ArrayBuffer.isView(data)) {
      const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      this.#sendData(Opcode.Binary, view, view.length, false);
    } else {
      const view = new Uint8Array(data);
      this.#sendData(Opcode.Binary, view, view.length, false);
    }
  }

  /**
   * Starts the closing handshake: queues a close frame after the messages
   * already sent, then waits (up to 5 s) for the client's close frame before
   * closing the connection. The `close` event follows.
   *
   * @param code The close code. @default {1000} when a reason is given, else none
   * @param reason Why, at most 123 bytes of UTF-8.
   * @throws {DOMException} `InvalidAccessError` for a code no endpoint may send,
   * `SyntaxError` for a reason over 123 bytes.
   */
  close(code?: number, reason?: string): void {
    if (code !== undefined && !isValidCloseCode(code)) {
      throw new DOMException(
        `Close code ${code} may not be sent: use 1000, 1001-1003, 1007-1014 or 3000-4999`,
        "InvalidAccessError",
      );
    }
    const text = reason ?? "";
    if (encoder.encode(text).length > 123) {
      throw new DOMException("The close reason must be 123 bytes of UTF-8 or less", "SyntaxError");
    }
    if (code === undefined && text !== "") code = 1000;
    if (this.#readyState >= 2) return;
    this.#readyState = 2;
    if (this.#conn === null) {
      this.#pendingClose = { code, reason: text };
      return;
    }
    this.#sendClose(code, text);
    this.#closeTimer ??= setTimeout(() => this.#abort(null), CLOSE_TIMEOUT_MS);
  }

  #getHandler<E extends Event>(type: string): Handler<E> {
    return (this.#handlers.get(type)?.handler ?? null) as Handler<E>;
  }

  #setHandler(type: string, handler: Handler<Event>): void {
    const entry = this.#handlers.get(type);
    if (typeof handler !== "function") {
      if (entry) super.removeEventListener(type, entry.listener);
      this.#handlers.delete(type);
      return;
    }
    if (entry) {
      entry.handler = handler;
      return;
    }
    const listener: EventListener = (event) => created.handler?.call(this, event as Event);
    const created = { handler, listener };
    this.#handlers.set(type, created);
    super.addEventListener(type, created.listener);
  }

  // ── Opening ──

  /**
   * brick sent the 101 and handed the connection over.
   *
   * @ignore
   */
  [ATTACH](conn: UpgradedConnection): void {
    this.#conn = conn;
    conn.onShutdown = () => this.#shutdown();
    this.#lastReceivedAt = Date.now();
    this.#scheduleIdleCheck();
    if (this.#pendingClose !== null) {
      const { code, reason } = this.#pendingClose;
      this.#sendClose(code, reason);
      this.#closeTimer = setTimeout(() => this.#abort(null), CLOSE_TIMEOUT_MS);
    } else {
      this.#readyState = 1;
      this.dispatchEvent(new Event("open"));
    }
    this.#readLoop();
  }

  /**
   * The handler returned another response, or the connection died before the 101.
   *
   * @ignore
   */
  [ATTACH_FAILED](error: unknown): void {
    this.#readyState = 3;
    this.#finished = true;
    this.#dispatchError(`The WebSocket handshake did not complete: ${message(error)}`, error);
    this.dispatchEvent(new CloseEventClass("close", { code: 1006, reason: "", wasClean: false }));
  }

  // ── Writing ──

  /**
   * Queues a data frame. With permessage-deflate, a message of `threshold`
   * bytes or more is compressed first (in a copy unless `owned`, as zlib
   * reads it later); the queue keeps its place, so messages leave in order.
   */
  #sendData(
    opcode: number,
    payload: Uint8Array | Promise<Uint8Array>,
    size: number,
    owned: boolean,
  ): void {
    if (this.#readyState !== 1) return;
    const deflate = this.#deflate;
    let bytes: Uint8Array | Promise<Uint8Array>;
    const compressed = deflate !== null && size >= deflate.params.threshold &&
        payload instanceof Uint8Array
      ? deflate.compressSync(payload)
      : null;
    if (compressed !== null) {
      bytes = frameBytes(opcode, compressed, RSV1);
    } else if (deflate !== null && size >= deflate.params.threshold) {
      const data = payload instanceof Uint8Array && !owned ? payload.slice() : payload;
      bytes = deflate.compress(data).then((compressed) => frameBytes(opcode, compressed, RSV1));
    } else {
      bytes = payload instanceof Uint8Array
        ? frameBytes(opcode, payload)
        : payload.then((bytes) => frameBytes(opcode, bytes));
    }
    // A frame dropped from the queue (the connection failed) is never awaited.
    if (bytes instanceof Promise) bytes.catch(() => {});
    this.#bufferedAmount += size;
    this.#queue.push({ kind: "frame", bytes, size });
    this.#flush();
  }

  #sendControl(opcode: number, payload: Uint8Array): void {
    this.#queue.push({ kind: "frame", bytes: frameBytes(opcode, payload), size: 0 });
    this.#flush();
  }

  /**
   * Answers a ping. A pong still waiting in the queue takes the newer ping's
   * payload instead of queueing another (RFC 6455 §5.5.3 allows answering only
   * the latest ping), so a client that pings without reading cannot grow the
   * queue.
   */
  #sendPong(payload: Uint8Array): void {
    if (this.#closeSent) return;
    const queued = this.#queuedPong;
    if (queued !== null && queued.kind === "frame") {
      queued.bytes = frameBytes(Opcode.Pong, payload);
      return;
    }
    const pong: Outgoing = { kind: "frame", bytes: frameBytes(Opcode.Pong, payload), size: 0 };
    this.#queuedPong = pong;
    this.#queue.push(pong);
    this.#flush();
  }

  #sendClose(code: number | undefined, reason: string): void {
    if (this.#closeSent) return;
    this.#closeSent = true;
    this.#sendControl(Opcode.Close, encodeClosePayload(code, reason));
  }

  /** Queues the end of the TCP connection after everything queued so far. */
  #endAfterFlush(): void {
    if (this.#queue.some((item) => item.kind === "end")) return;
    this.#queue.push({ kind: "end" });
    this.#flush();
  }

  /**
   * Writes the queue in order, one write at a time; each resolves once the
   * socket took it. Frames that queued up meanwhile leave together in one
   * write of up to 64 KiB. The first write starts before `send()` returns.
   */
  async #flush(): Promise<void> {
    const conn = this.#conn;
    if (this.#writing || conn === null) return;
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#finished) {
        const first = this.#queue[0];
        if (first.kind === "end") {
          this.#queue.length = 0;
          this.#finish();
          return;
        }
        if (!(first.bytes instanceof Uint8Array)) {
          first.bytes = await first.bytes; // a Blob being read; the queue may change meanwhile
          continue;
        }
        const batch = this.#takeBatch();
        this.#inFlight = batch.length;
        await conn.write(batch.length === 1 ? batch[0].bytes : joinFrames(batch));
        this.#inFlight = 0;
        this.#queue.splice(0, batch.length);
        for (const item of batch) this.#bufferedAmount -= item.size;
      }
    } catch (error) {
      this.#abort(error);
    } finally {
      this.#writing = false;
      this.#inFlight = 0;
    }
  }

  /** The ready frames at the head of the queue, up to 64 KiB together (or one bigger frame). */
  #takeBatch(): ReadyFrame[] {
    const batch = [this.#queue[0] as ReadyFrame];
    let total = batch[0].bytes.length;
    for (let i = 1; i < this.#queue.length; i++) {
      const item = this.#queue[i];
      if (item.kind !== "frame" || !(item.bytes instanceof Uint8Array)) break;
      if (total + item.bytes.length > BATCH_BYTES) break;
      total += item.bytes.length;
      batch.push(item as ReadyFrame);
    }
    if (this.#queuedPong !== null && batch.includes(this.#queuedPong as ReadyFrame)) {
      this.#queuedPong = null; // being written: a later ping queues its own pong
    }
    return batch;
  }

  // ── Reading ──

  /**
   * Reads until the connection ends. Frame headers and small frames are
   * parsed from the 16 KiB read buffer; a data frame's payload is taken as its
   * bytes arrive (unmasked, checked for UTF-8 when text, appended to the
   * message, or fed to the inflater when compressed), and a long uncompressed
   * one is read straight into the message's buffer. While zlib works through
   * a compressed message, reading waits, so the client is held back by TCP.
   * After the client's close frame, or after a protocol error, bytes are read
   * and dropped: the client's FIN then ends the connection at once, even while
   * the server's close frame is still being written.
   */
  async #readLoop(): Promise<void> {
    const conn = this.#conn!;
    try {
      while (!this.#finished) {
        const n = await conn.read(this.#readTarget());
        if (this.#finished) return;
        if (n === null) return this.#abort(null);
        this.#lastReceivedAt = Date.now();
        this.#pingSent = false;
        if (this.#closeReceived !== null || this.#failure !== null) {
          this.#start = this.#end = 0; // the conversation is over: drop
          this.#frame = this.#message = null;
          continue;
        }
        if (this.#direct) this.#guard(() => this.#acceptPayload(this.#message!.size, n));
        else this.#end += n;
        this.#guard(() => this.#processFrames());
        this.#flushCompressed();
        while (this.#pause !== null && !this.#finished) {
          await this.#pause;
          this.#pause = null;
          if (this.#failure === null) this.#guard(() => this.#processFrames());
          this.#flushCompressed();
        }
      }
    } catch (error) {
      // A reset after the client's close frame ends a finished handshake.
      if (!this.#finished) this.#abort(this.#closeReceived !== null ? null : error);
    }
  }

  /** Runs `step`; a protocol error fails the connection with its code. */
  #guard(step: () => void): void {
    try {
      step();
    } catch (error) {
      if (error instanceof WebSocketProtocolError) this.#fail(error.code, error.message);
      else throw error;
    }
  }

  /**
   * Where the next read goes: straight into the message when a long
   * uncompressed payload is due and nothing else is buffered, else the free
   * end of the read buffer.
   */
  #readTarget(): Uint8Array {
    const frame = this.#frame, message = this.#message;
    this.#direct = false;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (frame !== null && message !== null && !message.compressed && this.#start === this.#end) {
      const left = frame.header.length - frame.received;
      if (left >= DIRECT_READ_BYTES) {
        this.#reserve(Math.min(left, READ_BUFFER_BYTES));
        this.#direct = true;
        const end = Math.min(message.data.length, message.size + left);
        return message.data.subarray(message.size, end);
      }
    }
    if (this.#end === this.#buf.length) this.#compact();
    return this.#buf.subarray(this.#end);
  }

  /** Moves the unread bytes to the front of the read buffer. */
  #compact(): void {
    this.#buf.copyWithin(0, this.#start, this.#end);
    this.#end -= this.#start;
    this.#start = 0;
  }

  /**
   * Handles what the read buffer holds: payload bytes of the current frame,
   * then whole frames. Stops early when zlib asks reading to wait.
   */
  #processFrames(): void {
    while (this.#closeReceived === null && this.#failure === null && this.#pause === null) {
      const frame = this.#frame;
      if (frame !== null) {
        const take = Math.min(frame.header.length - frame.received, this.#end - this.#start);
        if (take === 0 && frame.received < frame.header.length) return;
        const from = this.#start;
        this.#start += take;
        this.#takePayload(from, from + take);
        continue;
      }
      if (this.#start === this.#end) return;
      const options = this.#parseOptions, slot = this.#frameSlot, message = this.#message;
      options.maxPayload =
        (this.#deflate !== null ? this.#wireLimit : this.#config.maxMessageSize) -
        (message?.wire ?? 0);
      const header = parseFrameHeader(this.#buf, this.#start, this.#end, options, slot.header);
      if (header === null) return;
      const payloadStart = this.#start + header.headerSize;
      const frameEnd = payloadStart + header.length;
      const isControl = (header.opcode & 0x08) !== 0;
      if (header.rsv !== 0 && (isControl || header.opcode === Opcode.Continuation)) {
        throw new WebSocketProtocolError(
          isControl ? "RSV1 set on a control frame" : "RSV1 set on a continuation frame",
        );
      }
      const compressed = header.rsv !== 0 || (message?.compressed ?? false);
      if (!compressed && header.length > this.#config.maxMessageSize - (message?.size ?? 0)) {
        throw new WebSocketProtocolError(
          `A frame of ${header.length} bytes is over the limit`,
          1009,
        );
      }
      const key = slot.key, buf = this.#buf, at = this.#start + header.maskAt;
      key[0] = buf[at], key[1] = buf[at + 1], key[2] = buf[at + 2], key[3] = buf[at + 3];
      const whole = header.fin && message === null && header.opcode !== Opcode.Continuation &&
        !compressed;
      if (isControl || (whole && frameEnd <= this.#end)) {
        // A whole frame in the buffer: read it in place, without a copy.
        if (frameEnd > this.#end) return; // a control frame fits the buffer once compacted
        applyMask(this.#buf, payloadStart, frameEnd, key);
        this.#start = frameEnd;
        const payload = this.#buf.subarray(payloadStart, frameEnd);
        if (isControl) this.#handleControl(header.opcode, payload);
        else this.#deliver(header.opcode, payload);
        continue;
      }
      this.#startFrame(header);
      slot.received = 0;
      this.#frame = slot;
      this.#start = payloadStart;
    }
  }

  /**
   * The most compressed bytes a message may have on the wire: its inflated
   * limit, plus room for deflate's stored blocks (5 bytes per 64 KiB), so an
   * incompressible message just under `maxMessageSize` still passes.
   */
  get #wireLimit(): number {
    const max = this.#config.maxMessageSize;
    return max + Math.ceil(max / 4096) + 64;
  }

  /** A control frame's meaning. */
  #handleControl(opcode: number, payload: Uint8Array): void {
    if (opcode === Opcode.Ping) this.#sendPong(payload);
    else if (opcode === Opcode.Close) this.#receiveClose(decodeClosePayload(payload));
  }

  /**
   * A data frame begins: it starts a message or continues the one in
   * progress. A message may have at most `maxFragments` frames.
   */
  #startFrame(header: FrameHeader): void {
    const message = this.#message;
    if (header.opcode === Opcode.Continuation) {
      if (message === null) {
        throw new WebSocketProtocolError("A continuation frame without a message to continue");
      }
      if (++message.fragments > this.#config.maxFragments) {
        throw new WebSocketProtocolError(
          `A message in more than ${this.#config.maxFragments} fragments`,
          1008,
        );
      }
      return;
    }
    if (message !== null) {
      throw new WebSocketProtocolError("A new message started before the last one ended");
    }
    this.#message = {
      opcode: header.opcode,
      data: EMPTY,
      size: 0,
      wire: 0,
      fragments: 1,
      utf8: 0,
      compressed: header.rsv !== 0,
    };
  }

  /** Takes the current frame's payload bytes `#buf[from, to)`. */
  #takePayload(from: number, to: number): void {
    const message = this.#message!;
    if (message.compressed) return this.#takeCompressed(from, to);
    if (to > from) {
      this.#reserve(to - from);
      message.data.set(this.#buf.subarray(from, to), message.size);
    }
    this.#acceptPayload(message.size, to - from);
  }

  /**
   * `n` payload bytes of the current frame now lie at `message.data` from
   * `from`: unmasks them, checks text as it arrives (so bad UTF-8 fails the
   * connection at once, not when the frame ends), and ends the frame and
   * message when due.
   */
  #acceptPayload(from: number, n: number): void {
    const frame = this.#frame!, message = this.#message!;
    applyMask(message.data, from, from + n, frame.key, frame.received);
    this.#checkText(message, from, from + n);
    message.size = from + n;
    message.wire += n;
    frame.received += n;
    if (frame.received < frame.header.length) return;
    this.#frame = null;
    if (frame.header.fin) this.#endMessage(message);
  }

  /** Checks `message.data[from, to)` as the next piece of a text message's UTF-8. */
  #checkText(message: IncomingMessage, from: number, to: number): void {
    if (message.opcode !== Opcode.Text) return;
    message.utf8 = checkUtf8(message.data, from, to, message.utf8);
    if (message.utf8 === UTF8_INVALID) {
      throw new WebSocketProtocolError("A text message is not valid UTF-8", 1007);
    }
  }

  /** The message is complete: dispatches it. */
  #endMessage(message: IncomingMessage): void {
    this.#message = null;
    if (message.opcode === Opcode.Text && message.utf8 !== 0) {
      throw new WebSocketProtocolError("A text message ends inside a UTF-8 character", 1007);
    }
    const data = message.data.subarray(0, message.size);
    if (message.opcode === Opcode.Text) this.#dispatchMessage(looseDecoder.decode(data));
    else this.#dispatchMessage(this.#binaryData(data));
  }

  /**
   * Compressed payload bytes `#buf[from, to)`: unmasked in place and handed
   * to the inflater in a copy of their own (zlib holds its input until it has
   * read it). At the frame that ends the message, the inflater is flushed and
   * reading waits until the message is out.
   */
  #takeCompressed(from: number, to: number): void {
    const frame = this.#frame!, message = this.#message!, deflate = this.#deflate!;
    applyMask(this.#buf, from, to, frame.key, frame.received);
    frame.received += to - from;
    message.wire += to - from;
    this.#batchCompressed(this.#buf, from, to);
    if (frame.received < frame.header.length) return;
    this.#frame = null;
    if (!frame.header.fin) return;
    this.#batchCompressed(DEFLATE_TAIL_BYTES, 0, 4); // RFC 7692 §7.2.2: the tail the sender removed
    const last = this.#takeInflateBatch();
    this.#inflateBatch = EMPTY; // an idle socket keeps no batch; the next message grows one
    const drained = this.#pause ?? Promise.resolve();
    this.#pause = drained.then(() => this.#failure === null ? deflate.endMessage(last) : undefined)
      .then(() => {
        if (this.#failure !== null || this.#finished || this.#message !== message) return;
        this.#guard(() => this.#endMessage(message));
      });
  }

  /**
   * Gathers compressed bytes `bytes[from, to)` (at most 16 KiB) for the inflater, so that many
   * small fragments cost one zlib call per read, not one each.
   */
  #batchCompressed(bytes: Uint8Array, from: number, to: number): void {
    if (to === from) return;
    const needed = this.#inflateBatchSize + (to - from);
    if (needed > this.#inflateBatch.length && this.#inflateBatch.length < READ_BUFFER_BYTES) {
      const grown = new Uint8Array(
        Math.min(READ_BUFFER_BYTES, Math.max(needed, 2 * this.#inflateBatch.length, 256)),
      );
      grown.set(this.#inflateBatch.subarray(0, this.#inflateBatchSize));
      this.#inflateBatch = grown;
    }
    if (needed > this.#inflateBatch.length) this.#flushCompressed();
    this.#inflateBatch.set(bytes.subarray(from, to), this.#inflateBatchSize);
    this.#inflateBatchSize += to - from;
  }

  /** Hands the gathered compressed bytes to the inflater, in a copy zlib may keep. */
  #flushCompressed(): void {
    if (this.#inflateBatchSize === 0 || this.#failure !== null) return;
    const pause = this.#deflate!.inflate(this.#takeInflateBatch());
    if (pause !== null) this.#pause = pause;
  }

  /** The gathered compressed bytes, in a copy zlib may keep; the batch starts again empty. */
  #takeInflateBatch(): Uint8Array {
    const bytes = this.#inflateBatch.slice(0, this.#inflateBatchSize);
    this.#inflateBatchSize = 0;
    return bytes;
  }

  /** A piece of a compressed message, inflated: counted against `maxMessageSize` as it comes. */
  #inflated(bytes: Uint8Array): void {
    const message = this.#message;
    if (message === null || this.#failure !== null || this.#finished) return;
    const max = this.#config.maxMessageSize;
    if (message.size + bytes.length > max) {
      this.#deflate!.abortInflate();
      this.#fail(1009, `A compressed message inflates to more than ${max} bytes`);
      return;
    }
    this.#reserve(bytes.length);
    message.data.set(bytes, message.size);
    const from = message.size;
    message.size += bytes.length;
    this.#guard(() => this.#checkText(message, from, message.size));
    if (this.#failure !== null) this.#deflate!.abortInflate();
  }

  /**
   * Makes room for `n` more bytes in the message's buffer. It grows by
   * doubling, never past `maxMessageSize`, nor past the message's length once
   * its last frame is known (uncompressed), so a finished message fills it
   * exactly.
   */
  #reserve(n: number): void {
    const message = this.#message!, frame = this.#frame;
    const needed = message.size + n;
    if (needed <= message.data.length) return;
    const exact = !message.compressed && frame !== null && frame.header.fin;
    const limit = exact
      ? message.size + frame.header.length - frame.received
      : this.#config.maxMessageSize;
    const first = exact ? FIRST_BIG_BUFFER_BYTES : FIRST_FRAGMENTS_BUFFER_BYTES;
    const grown = new Uint8Array(Math.min(limit, Math.max(needed, message.data.length * 2, first)));
    grown.set(message.data.subarray(0, message.size));
    message.data = grown;
  }

  /** A message in one frame, read in place: `payload` is valid only during the call. */
  #deliver(opcode: number, payload: Uint8Array): void {
    if (opcode === Opcode.Text) {
      let text: string;
      try {
        text = strictDecoder.decode(payload);
      } catch {
        throw new WebSocketProtocolError("A text message is not valid UTF-8", 1007);
      }
      this.#dispatchMessage(text);
    } else {
      this.#dispatchMessage(this.#binaryData(payload.slice()));
    }
  }

  #binaryData(bytes: Uint8Array): ArrayBuffer | Blob {
    const buffer = bytes.buffer.byteLength === bytes.length
      ? bytes.buffer as ArrayBuffer
      : bytes.slice().buffer as ArrayBuffer;
    return this.#binaryType === "arraybuffer" ? buffer : new Blob([buffer]);
  }

  #dispatchMessage(data: string | ArrayBuffer | Blob): void {
    if (this.#readyState !== 1) return; // closing: messages are dropped, as in browsers
    this.dispatchEvent(new MessageEvent("message", { data, origin: this.#origin }));
  }

  // ── Closing ──

  /** The client's close frame: answer it (or it answers ours), then end the connection. */
  #receiveClose(close: { code: number; reason: string }): void {
    this.#closeReceived = close;
    this.#readyState = 2;
    this.#sendClose(close.code === 1005 ? undefined : close.code, "");
    this.#endAfterFlush();
    this.#closeTimer ??= setTimeout(() => this.#abort(null), CLOSE_TIMEOUT_MS);
  }

  /** Fails the connection (RFC 6455 §7.1.7): close frame with `code`, then close TCP. */
  #fail(code: number, reason: string): void {
    if (this.#finished || this.#failure !== null) return;
    this.#failure = { code, reason };
    this.#readyState = 2;
    // Data not yet started is dropped, so the close frame leaves at once.
    this.#queue = this.#queue.slice(0, this.#inFlight);
    this.#queuedPong = null;
    this.#deflate?.abortInflate();
    this.#bufferedAmount = this.#queue.reduce(
      (n, item) => n + (item.kind === "frame" ? item.size : 0),
      0,
    );
    if (!this.#closeSent) {
      this.#closeSent = true;
      this.#sendControl(Opcode.Close, encodeClosePayload(code, fitReason(reason)));
    }
    this.#endAfterFlush();
    this.#closeTimer ??= setTimeout(() => this.#abort(null), CLOSE_TIMEOUT_MS);
  }

  /** The server shuts down: say "going away" (1001) and close. */
  #shutdown(): void {
    if (this.#readyState >= 2) return;
    this.close(1001, "The server is shutting down");
  }

  /** The connection ended without a finished closing handshake, or the transport failed. */
  #abort(error: unknown): void {
    if (this.#finished) return;
    if (error !== null) this.#transportError ??= error;
    this.#finish();
  }

  /** Closes TCP once, clears the timers, and fires `error` (if failed) and `close`. */
  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#readyState = 3;
    clearTimeout(this.#closeTimer);
    clearTimeout(this.#idleTimer);
    this.#queue.length = 0;
    this.#bufferedAmount = 0;
    this.#deflate?.close();
    const conn = this.#conn;
    if (conn !== null) {
      conn.onShutdown = null;
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    const closed = this.#closeReceived, failure = this.#failure, broken = this.#transportError;
    if (failure !== null) {
      this.#dispatchError(`The WebSocket connection failed: ${failure.reason}`, undefined);
    } else if (broken !== undefined) {
      this.#dispatchError(`The WebSocket connection broke: ${message(broken)}`, broken);
    }
    const init = failure !== null
      ? { code: failure.code, reason: fitReason(failure.reason), wasClean: false }
      : closed !== null && this.#closeSent && broken === undefined
      ? { code: closed.code, reason: closed.reason, wasClean: true }
      : { code: 1006, reason: "", wasClean: false };
    this.dispatchEvent(new CloseEventClass("close", init));
  }

  #dispatchError(text: string, error: unknown): void {
    this.dispatchEvent(new ErrorEventClass("error", { message: text, error }));
  }

  // ── Liveness ──

  #scheduleIdleCheck(): void {
    const idle = this.#config.idleTimeoutMs;
    if (idle <= 0 || this.#finished) return;
    const due = this.#lastReceivedAt + idle * (this.#pingSent ? 2 : 1) - Date.now();
    this.#idleTimer = setTimeout(() => this.#checkIdle(), Math.max(due, 10));
  }

  #checkIdle(): void {
    if (this.#finished) return;
    const idle = this.#config.idleTimeoutMs;
    const quiet = Date.now() - this.#lastReceivedAt;
    if (this.#pingSent && quiet >= 2 * idle) {
      this.#fail(1001, `No answer to a ping within ${idle / 1000} s`);
      return;
    }
    if (!this.#pingSent && quiet >= idle) {
      this.#pingSent = true;
      if (!this.#closeSent) this.#sendControl(Opcode.Ping, new Uint8Array(0));
    }
    this.#scheduleIdleCheck();
  }
}

// ─── 7. Helpers ─────────────────────────────────────────────────────────────

/** An unmasked server frame with `payload`, in one buffer. */
function frameBytes(opcode: number, payload: Uint8Array, rsv = 0): Uint8Array {
  const headerSize = frameHeaderSize(payload.length, false);
  const bytes = new Uint8Array(headerSize + payload.length);
  writeFrameHeader(bytes, true, rsv, opcode, payload.length, null);
  bytes.set(payload, headerSize);
  return bytes;
}

function joinFrames(frames: ReadyFrame[]): Uint8Array {
  return joinBytes(
    frames.map((frame) => frame.bytes),
    frames.reduce((n, frame) => n + frame.bytes.length, 0),
  );
}

function joinBytes(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const all = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return all;
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "";
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
