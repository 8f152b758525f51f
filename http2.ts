/**
 * HTTP/2 (RFC 9113) for brick: the frame layer and the connection engine.
 * Internal for now (not in deno.json `exports`); mod.ts hands a connection
 * over to {@linkcode serveHttp2} at one place, with the transport's read and
 * write and a small toolkit of what both protocols share (how to build the
 * request object, how to read a response body, the handler), so that nothing
 * here copies the HTTP/1.1 server.
 *
 * Sections, top-down: 1. protocol tables and errors; 2. frames (parsing with
 * every size and flag rule of §6, serialising); 3. the toolkit and options;
 * 4. the connection engine (preface, SETTINGS, streams and their states,
 * flow control, header validation, requests and responses, shutdown).
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { HpackDecoder, HpackEncoder, HpackError } from "./_hpack.ts";

// ─── 1. Protocol tables and errors ─────────────────────────────────────────

const encoder = new TextEncoder();

/** The client connection preface (§3.4): "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n". */
export const PREFACE: Uint8Array = encoder.encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Frame types (§6, §11.2). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags (§6). */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes (§7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

/** SETTINGS parameters (§6.5.2). */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** The frame header's size: length (24 bits), type, flags, stream id (31 bits). */
export const FRAME_HEADER_SIZE = 9;
/** The initial and smallest SETTINGS_MAX_FRAME_SIZE (§4.2). */
export const MIN_MAX_FRAME_SIZE = 16_384;
/** The largest SETTINGS_MAX_FRAME_SIZE (§6.5.2). */
export const MAX_MAX_FRAME_SIZE = 16_777_215;
/** The largest flow-control window (§6.9.1). */
export const MAX_WINDOW = 0x7fff_ffff;
/** The initial window of the connection and, until SETTINGS say otherwise, of each stream. */
export const DEFAULT_WINDOW = 65_535;

/**
 * A protocol violation. `streamId` 0 makes it a connection error (GOAWAY and
 * close, §5.4.1); another id a stream error (RST_STREAM on that stream, §5.4.2).
 */
export class Http2Error extends Error {
  constructor(readonly code: number, message: string, readonly streamId = 0) {
    super(message);
    this.name = "Http2Error";
  }
}

function connectionError(code: number, message: string): Http2Error {
  return new Http2Error(code, message, 0);
}

function streamError(streamId: number, code: number, message: string): Http2Error {
  return new Http2Error(code, message, streamId);
}

// ─── 2. Frames ──────────────────────────────────────────────────────────────

/** A frame's header: what is known before its payload arrives. */
export interface FrameHeader {
  length: number;
  type: number;
  flags: number;
  streamId: number;
}

/** Reads the 9-byte frame header at `pos` (the reserved bit is ignored, §4.1). */
export function readFrameHeader(buf: Uint8Array, pos: number): FrameHeader {
  return {
    length: (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2],
    type: buf[pos + 3],
    flags: buf[pos + 4],
    streamId: readUint31(buf, pos + 5),
  };
}

function readUint31(buf: Uint8Array, pos: number): number {
  return ((buf[pos] & 0x7f) * 0x100_0000) + (buf[pos + 1] << 16) + (buf[pos + 2] << 8) +
    buf[pos + 3];
}

function readUint32(buf: Uint8Array, pos: number): number {
  return buf[pos] * 0x100_0000 + (buf[pos + 1] << 16) + (buf[pos + 2] << 8) + buf[pos + 3];
}

function writeUint32(buf: Uint8Array, pos: number, value: number): void {
  buf[pos] = value >>> 24;
  buf[pos + 1] = (value >>> 16) & 0xff;
  buf[pos + 2] = (value >>> 8) & 0xff;
  buf[pos + 3] = value & 0xff;
}

/** A parsed frame: its header and its type's fields, padding removed. */
export type Frame =
  | FrameHeader & { type: 0x0; data: Uint8Array; endStream: boolean; flowLength: number }
  | FrameHeader & {
    type: 0x1;
    fragment: Uint8Array;
    endStream: boolean;
    endHeaders: boolean;
    dependency: number | null;
  }
  | FrameHeader & { type: 0x2; dependency: number }
  | FrameHeader & { type: 0x3; errorCode: number }
  | FrameHeader & { type: 0x4; ack: boolean; settings: [number, number][] }
  | FrameHeader & { type: 0x5 }
  | FrameHeader & { type: 0x6; ack: boolean; opaque: Uint8Array }
  | FrameHeader & { type: 0x7; lastStreamId: number; errorCode: number; debug: Uint8Array }
  | FrameHeader & { type: 0x8; increment: number }
  | FrameHeader & { type: 0x9; fragment: Uint8Array; endHeaders: boolean }
  | FrameHeader & { type: -1 };

/**
 * Checks a frame's length against the receiver's SETTINGS_MAX_FRAME_SIZE
 * before its payload is read (§4.2): a frame too large for a header block
 * or for the connection state is a connection error, else a stream error.
 */
export function checkFrameSize(header: FrameHeader, maxFrameSize: number): void {
  if (header.length <= maxFrameSize) return;
  const message = `Frame of ${header.length} bytes is over SETTINGS_MAX_FRAME_SIZE ${maxFrameSize}`;
  const connectionWide = header.streamId === 0 || header.type === FrameType.HEADERS ||
    header.type === FrameType.CONTINUATION || header.type === FrameType.SETTINGS ||
    header.type === FrameType.PUSH_PROMISE;
  throw connectionWide
    ? connectionError(ErrorCode.FRAME_SIZE_ERROR, message)
    : streamError(header.streamId, ErrorCode.FRAME_SIZE_ERROR, message);
}

/**
 * Parses a frame's payload by its type, with the rules of §6 that need no
 * connection state: stream id 0 or not, fixed lengths, padding. Unknown
 * types parse to `type: -1` (to be ignored, §5.5).
 *
 * @throws {Http2Error} for each violation, with the code and scope §6 gives.
 */
export function parseFrame(header: FrameHeader, payload: Uint8Array): Frame {
  const { type, flags, streamId, length } = header;
  switch (type) {
    case FrameType.DATA: {
      requireStream(header, "DATA");
      const data = unpad(header, payload);
      return {
        length,
        type,
        flags,
        streamId,
        data,
        endStream: (flags & Flag.END_STREAM) !== 0,
        flowLength: length,
      };
    }
    case FrameType.HEADERS: {
      requireStream(header, "HEADERS");
      let fragment = unpad(header, payload);
      let dependency: number | null = null;
      if (flags & Flag.PRIORITY) {
        if (fragment.length < 5) {
          throw connectionError(
            ErrorCode.FRAME_SIZE_ERROR,
            "HEADERS frame too short for its priority fields",
          );
        }
        dependency = readUint31(fragment, 0);
        fragment = fragment.subarray(5);
        if (dependency === streamId) {
          throw streamError(
            streamId,
            ErrorCode.PROTOCOL_ERROR,
            `Stream ${streamId} depends on itself`,
          );
        }
      }
      return {
        length,
        type,
        flags,
        streamId,
        fragment,
        dependency,
        endStream: (flags & Flag.END_STREAM) !== 0,
        endHeaders: (flags & Flag.END_HEADERS) !== 0,
      };
    }
    case FrameType.PRIORITY: {
      requireStream(header, "PRIORITY");
      if (length !== 5) {
        throw streamError(
          streamId,
          ErrorCode.FRAME_SIZE_ERROR,
          `PRIORITY frame of ${length} bytes: it must be 5`,
        );
      }
      const dependency = readUint31(payload, 0);
      if (dependency === streamId) {
        throw streamError(
          streamId,
          ErrorCode.PROTOCOL_ERROR,
          `Stream ${streamId} depends on itself`,
        );
      }
      return { length, type, flags, streamId, dependency };
    }
    case FrameType.RST_STREAM:
      requireStream(header, "RST_STREAM");
      requireLength(header, 4, "RST_STREAM");
      return { length, type, flags, streamId, errorCode: readUint32(payload, 0) };
    case FrameType.SETTINGS: {
      requireConnection(header, "SETTINGS");
      const ack = (flags & Flag.ACK) !== 0;
      if (ack && length !== 0) {
        throw connectionError(
          ErrorCode.FRAME_SIZE_ERROR,
          "SETTINGS acknowledgement with a payload",
        );
      }
      if (length % 6 !== 0) {
        throw connectionError(
          ErrorCode.FRAME_SIZE_ERROR,
          `SETTINGS frame of ${length} bytes: not a multiple of 6`,
        );
      }
      const settings: [number, number][] = [];
      for (let i = 0; i < length; i += 6) {
        settings.push([(payload[i] << 8) | payload[i + 1], readUint32(payload, i + 2)]);
      }
      return { length, type, flags, streamId, ack, settings };
    }
    case FrameType.PUSH_PROMISE:
      // Only servers push; a client that sends one breaks §8.4.
      throw connectionError(ErrorCode.PROTOCOL_ERROR, "Client sent PUSH_PROMISE");
    case FrameType.PING:
      requireConnection(header, "PING");
      requireLength(header, 8, "PING");
      return { length, type, flags, streamId, ack: (flags & Flag.ACK) !== 0, opaque: payload };
    case FrameType.GOAWAY:
      requireConnection(header, "GOAWAY");
      if (length < 8) {
        throw connectionError(
          ErrorCode.FRAME_SIZE_ERROR,
          `GOAWAY frame of ${length} bytes: it needs 8`,
        );
      }
      return {
        length,
        type,
        flags,
        streamId,
        lastStreamId: readUint31(payload, 0),
        errorCode: readUint32(payload, 4),
        debug: payload.subarray(8),
      };
    case FrameType.WINDOW_UPDATE: {
      requireLength(header, 4, "WINDOW_UPDATE");
      const increment = readUint31(payload, 0);
      if (increment === 0) {
        const message = "WINDOW_UPDATE with an increment of 0";
        throw streamId === 0
          ? connectionError(ErrorCode.PROTOCOL_ERROR, message)
          : streamError(streamId, ErrorCode.PROTOCOL_ERROR, message);
      }
      return { length, type, flags, streamId, increment };
    }
    case FrameType.CONTINUATION:
      requireStream(header, "CONTINUATION");
      return {
        length,
        type,
        flags,
        streamId,
        fragment: payload,
        endHeaders: (flags & Flag.END_HEADERS) !== 0,
      };
    default:
      return { length, type: -1, flags, streamId };
  }
}

function requireStream(header: FrameHeader, name: string): void {
  if (header.streamId === 0) {
    throw connectionError(ErrorCode.PROTOCOL_ERROR, `${name} frame on stream 0`);
  }
}

/** A frame whose payload has one fixed size: any other is a connection error (§4.2). */
function requireLength(header: FrameHeader, size: number, name: string): void {
  if (header.length !== size) {
    throw connectionError(
      ErrorCode.FRAME_SIZE_ERROR,
      `${name} frame of ${header.length} bytes: it must be ${size}`,
    );
  }
}

function requireConnection(header: FrameHeader, name: string): void {
  if (header.streamId !== 0) {
    throw connectionError(
      ErrorCode.PROTOCOL_ERROR,
      `${name} frame on stream ${header.streamId}: it belongs on stream 0`,
    );
  }
}

/** Removes padding (§6.1): a pad length that leaves no room is a PROTOCOL_ERROR. */
function unpad(header: FrameHeader, payload: Uint8Array): Uint8Array {
  if ((header.flags & Flag.PADDED) === 0) return payload;
  if (payload.length < 1) {
    throw connectionError(ErrorCode.FRAME_SIZE_ERROR, "Padded frame without its pad length");
  }
  const padLength = payload[0];
  if (padLength >= payload.length) {
    throw connectionError(
      ErrorCode.PROTOCOL_ERROR,
      `Pad length ${padLength} is not less than the frame's ${payload.length}-byte payload`,
    );
  }
  return payload.subarray(1, payload.length - padLength);
}

/** Serialises one frame. */
export function encodeFrame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array = EMPTY,
): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_SIZE + payload.length);
  writeFrameHeader(frame, 0, payload.length, type, flags, streamId);
  frame.set(payload, FRAME_HEADER_SIZE);
  return frame;
}

function writeFrameHeader(
  buf: Uint8Array,
  pos: number,
  length: number,
  type: number,
  flags: number,
  streamId: number,
): void {
  buf[pos] = length >>> 16;
  buf[pos + 1] = (length >>> 8) & 0xff;
  buf[pos + 2] = length & 0xff;
  buf[pos + 3] = type;
  buf[pos + 4] = flags;
  writeUint32(buf, pos + 5, streamId);
}

const EMPTY = new Uint8Array(0);

/** A SETTINGS frame with the given parameters, or an acknowledgement. */
export function settingsFrame(settings: [number, number][], ack = false): Uint8Array {
  const payload = new Uint8Array(settings.length * 6);
  settings.forEach(([id, value], i) => {
    payload[i * 6] = id >>> 8;
    payload[i * 6 + 1] = id & 0xff;
    writeUint32(payload, i * 6 + 2, value);
  });
  return encodeFrame(FrameType.SETTINGS, ack ? Flag.ACK : 0, 0, payload);
}

/** A GOAWAY frame. */
export function goawayFrame(lastStreamId: number, errorCode: number, debug = ""): Uint8Array {
  const text = encoder.encode(debug);
  const payload = new Uint8Array(8 + text.length);
  writeUint32(payload, 0, lastStreamId);
  writeUint32(payload, 4, errorCode);
  payload.set(text, 8);
  return encodeFrame(FrameType.GOAWAY, 0, 0, payload);
}

/** A RST_STREAM frame. */
export function rstStreamFrame(streamId: number, errorCode: number): Uint8Array {
  const payload = new Uint8Array(4);
  writeUint32(payload, 0, errorCode);
  return encodeFrame(FrameType.RST_STREAM, 0, streamId, payload);
}

/** A WINDOW_UPDATE frame. */
export function windowUpdateFrame(streamId: number, increment: number): Uint8Array {
  const payload = new Uint8Array(4);
  writeUint32(payload, 0, increment);
  return encodeFrame(FrameType.WINDOW_UPDATE, 0, streamId, payload);
}

/** A PING frame (8 opaque bytes). */
export function pingFrame(opaque: Uint8Array, ack = false): Uint8Array {
  return encodeFrame(FrameType.PING, ack ? Flag.ACK : 0, 0, opaque);
}

/**
 * A header block as HEADERS and as many CONTINUATION frames as
 * `maxFrameSize` needs, in one buffer (they must not be interleaved, §4.3).
 */
export function headersFrames(
  streamId: number,
  block: Uint8Array,
  endStream: boolean,
  maxFrameSize: number,
): Uint8Array {
  const count = Math.max(1, Math.ceil(block.length / maxFrameSize));
  const out = new Uint8Array(block.length + count * FRAME_HEADER_SIZE);
  let pos = 0;
  for (let i = 0; i < count; i++) {
    const start = i * maxFrameSize;
    const end = Math.min(block.length, start + maxFrameSize);
    const last = i === count - 1;
    const type = i === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
    const flags = (last ? Flag.END_HEADERS : 0) | (i === 0 && endStream ? Flag.END_STREAM : 0);
    writeFrameHeader(out, pos, end - start, type, flags, streamId);
    out.set(block.subarray(start, end), pos + FRAME_HEADER_SIZE);
    pos += FRAME_HEADER_SIZE + end - start;
  }
  return out;
}

// ─── 3. The toolkit and the options ────────────────────────────────────────

/** The connection as the engine uses it: mod.ts's `Conn` has this shape. */
export interface Http2Transport {
  /** Reads into `buffer`; resolves to the byte count, or null at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /**
   * Writes `data`, or some of it; resolves once `data` may be reused, to the
   * count written (nothing means all of it).
   */
  write(data: Uint8Array): Promise<number | void>;
  /** Sends FIN while reading goes on (optional). */
  closeWrite?(): Promise<void>;
  close(): void;
}

/** A response body as the server reads it (mod.ts's `BodySource` has this shape). */
export type Http2Body =
  | { kind: "none" }
  | { kind: "bytes"; bytes: Uint8Array }
  | { kind: "text"; text: string }
  | { kind: "stream"; stream: ReadableStream<Uint8Array>; length: number | null };

/**
 * A request body as the request object reads it (mod.ts's `BodyReader` has
 * this shape): chunks in order, then null; reading gives flow-control credit
 * back to the client.
 */
export interface Http2RequestBody {
  /** The next chunk, or null at the end; rejects if the stream failed. */
  next(): Promise<Uint8Array | null>;
  /** The rest of the body in one array. */
  readAll(): Promise<Uint8Array>;
  /** Drops what is buffered and what comes later; the request will not be read. */
  cancel(): void;
}

/** What the engine hands the toolkit to build a request, once its fields are valid. */
export interface Http2RequestParts {
  method: string;
  /** `:path` as sent ("*" for `OPTIONS *`, "/" for CONNECT). */
  path: string;
  /** `:authority`, else the Host field, else null. */
  authority: string | null;
  /** Field names (lowercase) and values, flat, pseudo-headers removed, cookies joined. */
  fields: string[];
  body: Http2RequestBody;
}

/** What the handler is told besides the request: `info` of the fetch handler. */
export interface Http2Info {
  remoteAddr: unknown;
  /** Resolves once the response has been written; rejects if the stream ended first. */
  completed: Promise<void>;
}

/**
 * One request and its handler, as the toolkit builds them: the engine asks
 * for the response, and reports how the stream ended.
 */
export interface Http2Exchange {
  /** Runs the handler; a failure is turned into a response (onError), never a rejection. */
  respond(): Response | Promise<Response>;
  /** The stream ended before its response did: aborts `request.signal`, fails `info.completed`. */
  abort(reason: Error): void;
  /**
   * The response was written (no error) or failed: settles `info.completed`.
   * `sent` says what reached the connection: the status (0 when no HEADERS
   * went out) and the bytes of body in DATA frames.
   */
  finish(error?: Error, sent?: Http2Sent): void;
}

/** What a stream's response put on the connection, for an access log. */
export interface Http2Sent {
  /** The status sent, or 0 when no response head went out. */
  status: number;
  /** The bytes of body sent in DATA frames. */
  bodyBytes: number;
}

/**
 * What the HTTP/1.1 server shares with the engine, so that requests and
 * responses are built and read in one place for both protocols.
 */
export interface Http2Toolkit {
  /**
   * Builds the request object and its handler call; throws if the request
   * cannot be served (a bad authority), which resets the stream. Default: a
   * standard `Request` passed to {@linkcode Http2Toolkit.handler}.
   */
  open?(parts: Http2RequestParts): Http2Exchange;
  /** The fetch handler, for the default {@linkcode Http2Toolkit.open}. */
  handler?(request: Request, info: Http2Info): Response | Promise<Response>;
  /** Turns a handler's error into a response, for the default `open`. Default: log it, answer 500. */
  onError?(error: unknown): Response | Promise<Response>;
  /** Reads a response's body. Default: `response.body`. */
  responseBody?(response: Response): Http2Body;
  /**
   * Calls `fn` with each of a response's header fields (lowercase names).
   * Default: `response.headers.forEach`.
   */
  responseFields?(response: Response, fn: (name: string, value: string) => void): void;
  /** The Date field's value for a response that has none (RFC 9110 §6.6.1). */
  date?(): string;
  /** The client's address, passed on as `info.remoteAddr`. */
  remoteAddr: unknown;
  /** The URL scheme of the listener: "http" (h2c) or "https" (h2). */
  scheme: "http" | "https";
  /** The authority used when a request carries neither :authority nor Host. */
  defaultAuthority: string;
}

/** Limits and timeouts of an HTTP/2 connection; each is mapped from the HTTP/1.1 one. */
export interface Http2Options {
  /**
   * SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open at once.
   * Handlers still running on streams the client reset count too.
   * @default {100}
   */
  maxConcurrentStreams?: number;
  /**
   * SETTINGS_INITIAL_WINDOW_SIZE: bytes of request body a stream may send
   * before the handler reads them.
   * @default {262144}
   */
  initialWindowSize?: number;
  /**
   * The connection's receive window: bytes of request bodies, all streams
   * together, buffered before handlers read them.
   * @default {1048576}
   */
  connectionWindowSize?: number;
  /**
   * SETTINGS_MAX_HEADER_LIST_SIZE (name + value + 32 per field); larger
   * request heads are answered 431. Mapped from `maxHeaderBytes`.
   * @default {16384}
   */
  maxHeaderListSize?: number;
  /**
   * Milliseconds to wait for the client's acknowledgement of SETTINGS.
   * @default {10000}
   */
  settingsTimeout?: number;
  /**
   * Milliseconds a header block (HEADERS and its CONTINUATION frames) may take.
   * Mapped from `readHeaderTimeout`.
   * @default {10000}
   */
  readHeaderTimeout?: number;
  /**
   * Milliseconds a connection with no open stream stays open. Mapped from `idleTimeout`.
   * @default {65000}
   */
  idleTimeout?: number;
  /**
   * The largest request body in bytes. A content-length over it is answered
   * 413 before the handler runs; a body that grows past it fails its reads
   * with an error that answers 413 if the handler lets it through, or resets
   * the stream (CANCEL) if the response has started. Mapped from `maxBodyBytes`.
   * @default {16777216}
   */
  maxBodyBytes?: number;
  /**
   * Milliseconds a stream may take to receive its whole request, counted from
   * its HEADERS. When it runs out the body fails with an error that answers
   * 408 if the response has not started, else the stream is reset (CANCEL).
   * `0` disables it. Mapped from `readTimeout`.
   * @default {300000}
   */
  readTimeout?: number;
  /**
   * Milliseconds a stream may take from its request head to the end of its
   * response, a client that grants no flow-control window included; then the
   * stream is reset (CANCEL) and `request.signal` aborts. `0` disables it.
   * Mapped from `writeTimeout`.
   * @default {0}
   */
  writeTimeout?: number;
  /**
   * Milliseconds a graceful shutdown waits for streams before closing.
   * @default {10000}
   */
  shutdownTimeout?: number;
}

const DEFAULTS: Required<Http2Options> = {
  maxConcurrentStreams: 100,
  initialWindowSize: 262_144,
  connectionWindowSize: 1_048_576,
  maxHeaderListSize: 16_384,
  settingsTimeout: 10_000,
  readHeaderTimeout: 10_000,
  idleTimeout: 65_000,
  maxBodyBytes: 16_777_216,
  readTimeout: 300_000,
  writeTimeout: 0,
  shutdownTimeout: 10_000,
};

/**
 * Frames that cost work and carry nothing (PING, SETTINGS, PRIORITY, empty
 * DATA, unknown types) tolerated within {@linkcode IDLE_FRAME_WINDOW}, plus
 * ten per response served, before ENHANCE_YOUR_CALM.
 */
const MAX_IDLE_FRAMES = 1_000;
const IDLE_FRAME_WINDOW = 10_000;
/** Output queued unread by the peer before the connection is dropped (floods of PING, SETTINGS, RST). */
const MAX_QUEUED_CONTROL_BYTES = 256 * 1024;
/** CONTINUATION frames one header block may take. */
const MAX_CONTINUATIONS = 32;
/** Resets by the client tolerated beyond twice the completed responses (rapid reset). */
const MAX_EXCESS_RESETS = 200;
/** Ids of streams the server reset, remembered so that frames still in flight for them are ignored. */
const RECENT_STREAMS = 256;
/** Output a stream keeps queued before waiting for the socket. */
const WRITE_HIGH_WATER = 64 * 1024;

/**
 * A running HTTP/2 connection: {@linkcode Http2Session.finished} resolves
 * once it is closed; {@linkcode Http2Session.shutdown} ends it gracefully.
 */
export interface Http2Session {
  readonly finished: Promise<void>;
  /** Sends GOAWAY in two steps (§6.8), lets streams finish, then closes. */
  shutdown(): Promise<void>;
  /** The number of open streams. */
  readonly activeStreams: number;
}

/**
 * Serves one HTTP/2 connection. `initial` holds bytes already read from the
 * transport (the start of the preface, when mod.ts sniffed it).
 *
 * @example Usage
 * ```ts ignore
 * const session = serveHttp2(conn, toolkit, { maxConcurrentStreams: 100 }, firstBytes);
 * await session.finished;
 * ```
 */
export function serveHttp2(
  transport: Http2Transport,
  toolkit: Http2Toolkit,
  options: Http2Options = {},
  initial: Uint8Array = EMPTY,
): Http2Session {
  const connection = new Connection(
    transport,
    toolkit,
    { ...DEFAULTS, ...defined(options) },
    initial,
  );
  connection.start();
  return connection;
}

function defined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<
    T
  >;
}

// ─── 4. The connection engine ──────────────────────────────────────────────

/** A stream's state (§5.1), from the server's side; idle and reserved are never stored. */
type StreamState = "open" | "half-closed-remote" | "half-closed-local" | "closed";

/** Connection-specific fields forbidden in HTTP/2 (§8.2.2). */
/** What brick calls for a response's trailer fields (mod.ts `withTrailers`). */
type Trailers = () =>
  | Iterable<readonly [string, string]>
  | Promise<Iterable<readonly [string, string]>>;

/** The key of a response's trailer function, shared with mod.ts. */
const TRAILERS = Symbol.for("brick.trailers");

/** The trailer function a response carries, or null. */
function trailersOf(response: Response): Trailers | null {
  const trailers = (response as unknown as Record<symbol, unknown>)[TRAILERS];
  return typeof trailers === "function" ? trailers as Trailers : null;
}

/** A lowercase field name (RFC 9113 §8.2.1), and a field value without CR, LF or NUL. */
const TRAILER_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Fields a trailer section must not carry: connection-specific ones and framing. */
const NOT_TRAILERS = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "content-length",
]);

const CONNECTION_FIELDS = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);

/** Request pseudo-headers (§8.3.1). */
const REQUEST_PSEUDO = [":method", ":scheme", ":authority", ":path"];

class Stream {
  state: StreamState;
  /** Bytes the client may still send before a WINDOW_UPDATE. */
  recvWindow: number;
  /** Bytes read by the handler and not yet given back in a WINDOW_UPDATE. */
  unacked = 0;
  sendWindow: number;
  /** The request body; null when HEADERS ended the stream. */
  body: StreamBody | null = null;
  contentLength: number | null = null;
  received = 0;
  /** The request body broke a limit: later DATA is dropped, and the stream ends with the response. */
  refused = false;
  /** The request object and handler call, once the handler runs. */
  exchange: Http2Exchange | null = null;
  /** Woken when the send window grows or the stream ends. */
  wake: (() => void) | null = null;
  handlerRunning = false;
  responseStarted = false;
  /** What the response has put on the connection so far (status 0: no head yet). */
  readonly sent: Http2Sent = { status: 0, bodyBytes: 0 };
  readTimer: ReturnType<typeof setTimeout> | null = null;
  writeTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly id: number, endStream: boolean, recvWindow: number, sendWindow: number) {
    this.state = endStream ? "half-closed-remote" : "open";
    this.recvWindow = recvWindow;
    this.sendWindow = sendWindow;
  }
}

/**
 * A request body received in DATA frames: chunks wait here (within the
 * stream's window) until the handler reads them, and each read gives its
 * bytes back to the client as window (`onRead`).
 */
class StreamBody implements Http2RequestBody {
  chunks: Uint8Array[] = [];
  buffered = 0;
  ended = false;
  error: Error | null = null;
  cancelled = false;
  #waiting: { resolve(chunk: Uint8Array | null): void; reject(error: Error): void } | null = null;

  constructor(readonly onRead: (n: number) => void) {}

  next(): Promise<Uint8Array | null> {
    const chunk = this.chunks.shift();
    if (chunk !== undefined) {
      this.buffered -= chunk.length;
      this.onRead(chunk.length);
      return Promise.resolve(chunk);
    }
    if (this.error !== null) return Promise.reject(this.error);
    if (this.ended || this.cancelled) return Promise.resolve(null);
    return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
  }

  async readAll(): Promise<Uint8Array> {
    const pieces: Uint8Array[] = [];
    let size = 0;
    for (let chunk = await this.next(); chunk !== null; chunk = await this.next()) {
      pieces.push(chunk);
      size += chunk.length;
    }
    return pieces.length === 1 ? pieces[0] : concat(pieces, size);
  }

  cancel(): void {
    this.cancelled = true;
    const dropped = this.discard();
    if (dropped > 0) this.onRead(dropped);
  }

  push(chunk: Uint8Array): void {
    if (this.cancelled) return this.onRead(chunk.length);
    const waiting = this.#waiting;
    if (waiting === null) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      return;
    }
    this.#waiting = null;
    this.onRead(chunk.length);
    waiting.resolve(chunk);
  }

  end(): void {
    this.ended = true;
    if (this.chunks.length > 0) return;
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.resolve(null);
  }

  /** Makes later reads fail with `error` once the chunks already here are read. */
  fail(error: Error): void {
    if (this.ended || this.error !== null) return;
    this.error = error;
    const waiting = this.#waiting;
    this.#waiting = null;
    waiting?.reject(error);
  }

  /** Drops the unread chunks; returns how many bytes they held. */
  discard(): number {
    const dropped = this.buffered;
    this.chunks = [];
    this.buffered = 0;
    return dropped;
  }
}

/** The body of a request whose HEADERS frame ended the stream. */
const ENDED_BODY: Http2RequestBody = {
  next: () => Promise.resolve(null),
  readAll: () => Promise.resolve(EMPTY),
  cancel() {},
};

/** A header block being received across CONTINUATION frames. */
interface PendingBlock {
  streamId: number;
  fragments: Uint8Array[];
  size: number;
  endStream: boolean;
  frames: number;
  timer: ReturnType<typeof setTimeout>;
}

class Connection implements Http2Session {
  readonly finished: Promise<void>;
  #resolveFinished!: () => void;
  #t: Http2Transport;
  #tk: Http2Toolkit;
  #o: Required<Http2Options>;
  // Reading.
  #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #decoder: HpackDecoder;
  #encoder = new HpackEncoder();
  #pending: PendingBlock | null = null;
  // Streams.
  #streams = new Map<number, Stream>();
  #lastStreamId = 0;
  #recentlyReset: number[] = [];
  #handlers = 0;
  // Peer settings.
  #peerMaxFrameSize = MIN_MAX_FRAME_SIZE;
  #peerInitialWindow = DEFAULT_WINDOW;
  // Connection flow control.
  #sendWindow = DEFAULT_WINDOW;
  #recvWindow = DEFAULT_WINDOW;
  #recvUnacked = 0;
  // Writing.
  #queue: Uint8Array[] = [];
  #queued = 0;
  #flushing = false;
  #drained: (() => void)[] = [];
  // Lifecycle.
  #closed = false;
  /** A connection error was sent: frames are no longer processed. */
  #failed = false;
  #goawaySent = false;
  #peerGoaway = false;
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #goawayLastId = MAX_WINDOW;
  #settingsTimer: ReturnType<typeof setTimeout> | null = null;
  #idleTimer: ReturnType<typeof setTimeout> | null = null;
  /** When the connection last had no open stream; -1 while it has some. */
  #idleSince = -1;
  #shutdownPing: (() => void) | null = null;
  #idleFrames = 0;
  #idleWindowStart = Date.now();
  #resets = 0;
  #completedResponses = 0;

  constructor(
    transport: Http2Transport,
    toolkit: Http2Toolkit,
    options: Required<Http2Options>,
    initial: Uint8Array,
  ) {
    this.#t = transport;
    this.#tk = toolkit;
    this.#o = options;
    this.#decoder = new HpackDecoder({ maxHeaderListSize: options.maxHeaderListSize });
    this.#buf = new Uint8Array(Math.max(32 * 1024, initial.length));
    this.#buf.set(initial);
    this.#end = initial.length;
    this.finished = new Promise((resolve) => (this.#resolveFinished = resolve));
  }

  get activeStreams(): number {
    return this.#streams.size;
  }

  start(): void {
    this.#sendSettings();
    this.#run();
  }

  // ── Reading frames ──

  async #run(): Promise<void> {
    try {
      await this.#readFrames();
    } catch (error) {
      this.#fail(error);
    }
    // After a connection error, read (and drop) what the client still sends
    // until it closes or the linger timer does, so that it sees the GOAWAY.
    const scratch = this.#buf;
    try {
      while (!this.#closed && (await this.#t.read(scratch)) !== null) { /* discard */ }
    } catch {
      // reset by the peer
    }
    this.#peerClosed();
  }

  async #readFrames(): Promise<void> {
    await this.#readPreface();
    this.#armIdle();
    while (!this.#closed && !this.#failed) {
      if (!(await this.#fill(FRAME_HEADER_SIZE))) return;
      const header = readFrameHeader(this.#buf, this.#start);
      checkFrameSize(header, MIN_MAX_FRAME_SIZE);
      if (!(await this.#fill(FRAME_HEADER_SIZE + header.length))) return;
      const payload = this.#buf.subarray(
        this.#start + FRAME_HEADER_SIZE,
        this.#start + FRAME_HEADER_SIZE + header.length,
      );
      this.#start += FRAME_HEADER_SIZE + header.length;
      try {
        this.#handle(parseFrame(header, payload));
      } catch (error) {
        if (!(error instanceof Http2Error) || error.streamId === 0) throw error;
        this.#resetStream(error.streamId, error.code);
      }
    }
  }

  async #readPreface(): Promise<void> {
    if (!(await this.#fill(PREFACE.length))) return;
    for (let i = 0; i < PREFACE.length; i++) {
      if (this.#buf[this.#start + i] !== PREFACE[i]) {
        throw connectionError(ErrorCode.PROTOCOL_ERROR, "Invalid connection preface");
      }
    }
    this.#start += PREFACE.length;
  }

  /** Ensures `n` unread bytes are buffered; false at end of stream. */
  async #fill(n: number): Promise<boolean> {
    while (this.#end - this.#start < n) {
      if (this.#closed || this.#failed) return false;
      if (this.#buf.length - this.#start < n) {
        const size = Math.max(this.#buf.length, n);
        const next = new Uint8Array(size);
        next.set(this.#buf.subarray(this.#start, this.#end));
        this.#end -= this.#start;
        this.#start = 0;
        this.#buf = next;
      } else if (this.#start > 0 && this.#buf.length - this.#end < 4096) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#end -= this.#start;
        this.#start = 0;
      }
      const count = await this.#t.read(this.#buf.subarray(this.#end));
      if (count === null) return false;
      this.#end += count;
    }
    return true;
  }

  #handle(frame: Frame): void {
    if (this.#pending !== null && frame.type !== FrameType.CONTINUATION) {
      throw connectionError(
        ErrorCode.PROTOCOL_ERROR,
        `Frame of type ${frame.type} inside a header block: CONTINUATION expected`,
      );
    }
    switch (frame.type) {
      case FrameType.DATA:
        return this.#onData(frame);
      case FrameType.HEADERS:
        return this.#onHeaders(frame);
      case FrameType.PRIORITY:
        return this.#countIdleFrame(); // priority signals are ignored (§5.3.2)
      case FrameType.RST_STREAM:
        return this.#onRstStream(frame);
      case FrameType.SETTINGS:
        return this.#onSettings(frame);
      case FrameType.PING:
        return this.#onPing(frame);
      case FrameType.GOAWAY:
        return this.#onGoaway();
      case FrameType.WINDOW_UPDATE:
        return this.#onWindowUpdate(frame);
      case FrameType.CONTINUATION:
        return this.#onContinuation(frame);
      default:
        return this.#countIdleFrame(); // unknown types are ignored (§5.5)
    }
  }

  /** Counts a frame that costs work and carries nothing; too many is a flood. */
  #countIdleFrame(): void {
    const now = Date.now();
    if (now - this.#idleWindowStart > IDLE_FRAME_WINDOW) {
      this.#idleWindowStart = now;
      this.#idleFrames = 0;
    }
    if (++this.#idleFrames > MAX_IDLE_FRAMES + this.#completedResponses * 10) {
      throw connectionError(ErrorCode.ENHANCE_YOUR_CALM, "Too many frames that carry nothing");
    }
  }

  /** Whether a stream id was never opened yet (idle, §5.1). */
  #isIdle(streamId: number): boolean {
    return streamId > this.#lastStreamId;
  }

  // ── DATA (§6.1) ──

  #onData(frame: Frame & { type: 0x0 }): void {
    const id = frame.streamId;
    if (this.#isIdle(id)) {
      throw connectionError(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${id}`);
    }
    if (frame.flowLength > this.#recvWindow) {
      throw connectionError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection's window");
    }
    this.#recvWindow -= frame.flowLength;
    const stream = this.#streams.get(id);
    if (
      stream === undefined || stream.state === "half-closed-remote" || stream.state === "closed"
    ) {
      this.#giveBackConnection(frame.flowLength);
      if (stream === undefined && this.#recentlyReset.includes(id)) return;
      if (stream === undefined) {
        throw connectionError(ErrorCode.STREAM_CLOSED, `DATA on closed stream ${id}`);
      }
      throw streamError(id, ErrorCode.STREAM_CLOSED, `DATA after the end of stream ${id}`);
    }
    if (frame.flowLength > stream.recvWindow) {
      this.#giveBackConnection(frame.flowLength);
      throw streamError(id, ErrorCode.FLOW_CONTROL_ERROR, `DATA beyond stream ${id}'s window`);
    }
    if (stream.state === "half-closed-local" && !frame.endStream) {
      this.#giveBackConnection(frame.flowLength);
      return this.#stopRequest(stream);
    }
    stream.recvWindow -= frame.flowLength;
    if (stream.refused) {
      this.#giveBackConnection(frame.flowLength); // its stream window stays shut
      if (frame.endStream) this.#remoteEnded(stream);
      return;
    }
    // Padding is flow-controlled but never read: give it back now.
    const padding = frame.flowLength - frame.data.length;
    if (padding > 0) this.#consumed(stream, padding);
    if (frame.data.length === 0 && !frame.endStream) this.#countIdleFrame();
    stream.received += frame.data.length;
    if (stream.contentLength !== null && stream.received > stream.contentLength) {
      throw streamError(id, ErrorCode.PROTOCOL_ERROR, "DATA beyond content-length");
    }
    if (stream.received > this.#o.maxBodyBytes) {
      const why = `Request body is over maxBodyBytes (${this.#o.maxBodyBytes})`;
      return this.#refuseBody(stream, new RequestBodyError(413, why));
    }
    if (frame.data.length > 0) stream.body!.push(frame.data.slice());
    if (frame.endStream) this.#endOfRequest(stream);
  }

  #endOfRequest(stream: Stream): void {
    if (stream.contentLength !== null && stream.received !== stream.contentLength) {
      throw streamError(
        stream.id,
        ErrorCode.PROTOCOL_ERROR,
        `Request body of ${stream.received} bytes, content-length says ${stream.contentLength}`,
      );
    }
    stream.body?.end();
    this.#clearTimer(stream.readTimer);
    stream.readTimer = null;
    this.#remoteEnded(stream);
  }

  /**
   * A request body broke a limit (maxBodyBytes, readTimeout): its reads fail
   * with `error`, and later DATA is dropped. Before the response starts the
   * handler may still answer (the error carries 413 or 408); after, the
   * stream is reset.
   */
  #refuseBody(stream: Stream, error: RequestBodyError): void {
    if (stream.responseStarted) return this.#resetStream(stream.id, ErrorCode.CANCEL);
    stream.refused = true;
    if (stream.body !== null) {
      this.#giveBackConnection(stream.body.discard());
      stream.body.fail(error);
    }
  }

  #readTimedOut(stream: Stream): void {
    stream.readTimer = null;
    const why = `Request body not received within readTimeout (${this.#o.readTimeout} ms)`;
    this.#refuseBody(stream, new RequestBodyError(408, why));
  }

  #remoteEnded(stream: Stream): void {
    if (stream.state === "open") stream.state = "half-closed-remote";
    else if (stream.state === "half-closed-local") this.#closeStream(stream);
  }

  /** Gives flow-control credit back once the handler read `n` bytes (§6.9). */
  #consumed(stream: Stream, n: number): void {
    if (n === 0) return;
    this.#giveBackConnection(n);
    if (stream.state !== "open" && stream.state !== "half-closed-local") return;
    stream.unacked += n;
    if (stream.unacked >= this.#o.initialWindowSize / 2) {
      stream.recvWindow += stream.unacked;
      this.#enqueue(windowUpdateFrame(stream.id, stream.unacked));
      stream.unacked = 0;
    }
  }

  #giveBackConnection(n: number): void {
    if (n === 0) return;
    this.#recvUnacked += n;
    if (this.#recvUnacked >= this.#o.connectionWindowSize / 4) {
      this.#recvWindow += this.#recvUnacked;
      this.#enqueue(windowUpdateFrame(0, this.#recvUnacked));
      this.#recvUnacked = 0;
    }
  }

  // ── HEADERS and CONTINUATION (§6.2, §6.10) ──

  #onHeaders(frame: Frame & { type: 0x1 }): void {
    const id = frame.streamId;
    if (id % 2 === 0) {
      throw connectionError(
        ErrorCode.PROTOCOL_ERROR,
        `HEADERS on even stream ${id}: clients use odd ids`,
      );
    }
    if (frame.endHeaders) return this.#onHeaderBlock(id, frame.fragment, frame.endStream);
    this.#pending = {
      streamId: id,
      fragments: [frame.fragment.slice()],
      size: frame.fragment.length,
      endStream: frame.endStream,
      frames: 1,
      timer: this.#timer(() => this.#headerTimeout(), this.#o.readHeaderTimeout),
    };
    this.#checkPendingSize();
  }

  #onContinuation(frame: Frame & { type: 0x9 }): void {
    const pending = this.#pending;
    if (pending === null || pending.streamId !== frame.streamId) {
      throw connectionError(
        ErrorCode.PROTOCOL_ERROR,
        `CONTINUATION on stream ${frame.streamId} without HEADERS before it`,
      );
    }
    pending.fragments.push(frame.fragment.slice());
    pending.size += frame.fragment.length;
    if (++pending.frames > MAX_CONTINUATIONS) {
      throw connectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `Header block in more than ${MAX_CONTINUATIONS} CONTINUATION frames`,
      );
    }
    this.#checkPendingSize();
    if (!frame.endHeaders) return;
    this.#clearTimer(pending.timer);
    this.#pending = null;
    const block = new Uint8Array(pending.size);
    let at = 0;
    for (const fragment of pending.fragments) {
      block.set(fragment, at);
      at += fragment.length;
    }
    this.#onHeaderBlock(pending.streamId, block, pending.endStream);
  }

  /** A header block larger than the list it may decode to is refused without decoding (CONTINUATION flood). */
  #checkPendingSize(): void {
    if (this.#pending!.size > this.#o.maxHeaderListSize * 2) {
      throw connectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `Header block over ${this.#o.maxHeaderListSize * 2} bytes`,
      );
    }
  }

  #headerTimeout(): void {
    this.#fail(
      connectionError(
        ErrorCode.PROTOCOL_ERROR,
        "Header block not completed within readHeaderTimeout",
      ),
    );
  }

  #onHeaderBlock(id: number, block: Uint8Array, endStream: boolean): void {
    let decoded;
    try {
      decoded = this.#decoder.decode(block);
    } catch (error) {
      if (error instanceof HpackError) {
        throw connectionError(ErrorCode.COMPRESSION_ERROR, error.message);
      }
      throw error;
    }
    const existing = this.#streams.get(id);
    if (existing !== undefined) return this.#onTrailers(existing, decoded.fields, endStream);
    if (!this.#isIdle(id)) {
      if (this.#recentlyReset.includes(id)) return;
      throw connectionError(ErrorCode.STREAM_CLOSED, `HEADERS on closed stream ${id}`);
    }
    this.#lastStreamId = id;
    if (this.#goawaySent && id > this.#goawayLastId) return; // ignored after GOAWAY (§6.8)
    if (this.#streams.size >= this.#o.maxConcurrentStreams) this.#reclaimAnswered();
    if (
      this.#handlers >= this.#o.maxConcurrentStreams ||
      this.#streams.size >= this.#o.maxConcurrentStreams
    ) {
      // Refused streams count as resets: opening and resetting streams
      // faster than handlers finish is the rapid reset attack.
      this.#countReset();
      this.#rememberReset(id);
      this.#enqueueControl(rstStreamFrame(id, ErrorCode.REFUSED_STREAM));
      return;
    }
    const stream = new Stream(id, endStream, this.#o.initialWindowSize, this.#peerInitialWindow);
    this.#streams.set(id, stream);
    this.#disarmIdle();
    if (decoded.oversized) {
      this.#respondEarly(stream, 431, "Request header fields too large\n");
      return;
    }
    const request = validateRequest(id, decoded.fields);
    stream.contentLength = request.contentLength;
    if (endStream) return this.#startHandler(stream, request);
    if (request.contentLength !== null && request.contentLength > this.#o.maxBodyBytes) {
      stream.refused = true; // answered at once, as HTTP/1.1 does
      this.#respondEarly(
        stream,
        413,
        `Request body is over maxBodyBytes (${this.#o.maxBodyBytes})\n`,
      );
      return;
    }
    stream.body = new StreamBody((n) => this.#consumed(stream, n));
    if (this.#o.readTimeout > 0) {
      stream.readTimer = this.#timer(() => this.#readTimedOut(stream), this.#o.readTimeout);
    }
    this.#startHandler(stream, request);
  }

  #onTrailers(stream: Stream, fields: string[], endStream: boolean): void {
    if (stream.state !== "open" && stream.state !== "half-closed-local") {
      throw streamError(
        stream.id,
        ErrorCode.STREAM_CLOSED,
        `HEADERS after the end of stream ${stream.id}`,
      );
    }
    if (!endStream) {
      throw streamError(stream.id, ErrorCode.PROTOCOL_ERROR, "Trailers without END_STREAM");
    }
    for (let i = 0; i < fields.length; i += 2) {
      if (fields[i].startsWith(":")) {
        throw streamError(
          stream.id,
          ErrorCode.PROTOCOL_ERROR,
          `Pseudo-header ${fields[i]} in trailers`,
        );
      }
    }
    this.#endOfRequest(stream);
  }

  // ── Other frames ──

  /** Counts a stream reset by the client or refused; many more than responses is an attack. */
  #countReset(): void {
    if (++this.#resets > MAX_EXCESS_RESETS + this.#completedResponses * 2) {
      throw connectionError(ErrorCode.ENHANCE_YOUR_CALM, "Too many streams reset or refused");
    }
  }

  #onRstStream(frame: Frame & { type: 0x3 }): void {
    const id = frame.streamId;
    if (this.#isIdle(id)) {
      throw connectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${id}`);
    }
    const stream = this.#streams.get(id);
    if (stream === undefined) {
      // The client knows the stream is closed now: later frames on it are errors.
      const at = this.#recentlyReset.indexOf(id);
      if (at >= 0) this.#recentlyReset.splice(at, 1);
      return;
    }
    this.#countReset();
    this.#closeStream(stream, new Error(`The client reset stream ${id} (code ${frame.errorCode})`));
  }

  #onSettings(frame: Frame & { type: 0x4 }): void {
    if (frame.ack) {
      this.#clearTimer(this.#settingsTimer);
      this.#settingsTimer = null;
      return;
    }
    for (const [id, value] of frame.settings) this.#applySetting(id, value);
    this.#countIdleFrame();
    this.#enqueueControl(settingsFrame([], true));
  }

  #applySetting(id: number, value: number): void {
    switch (id) {
      case Setting.HEADER_TABLE_SIZE:
        this.#encoder.setMaxTableSize(value);
        return;
      case Setting.ENABLE_PUSH:
        if (value > 1) {
          throw connectionError(
            ErrorCode.PROTOCOL_ERROR,
            `SETTINGS_ENABLE_PUSH of ${value}: it must be 0 or 1`,
          );
        }
        return;
      case Setting.INITIAL_WINDOW_SIZE: {
        if (value > MAX_WINDOW) {
          throw connectionError(
            ErrorCode.FLOW_CONTROL_ERROR,
            `SETTINGS_INITIAL_WINDOW_SIZE of ${value} is over 2^31-1`,
          );
        }
        const delta = value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
        for (const stream of this.#streams.values()) {
          stream.sendWindow += delta;
          if (stream.sendWindow > MAX_WINDOW) {
            throw connectionError(
              ErrorCode.FLOW_CONTROL_ERROR,
              `Stream ${stream.id}'s window over 2^31-1`,
            );
          }
          if (delta > 0) wake(stream);
        }
        return;
      }
      case Setting.MAX_FRAME_SIZE:
        if (value < MIN_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE) {
          throw connectionError(
            ErrorCode.PROTOCOL_ERROR,
            `SETTINGS_MAX_FRAME_SIZE of ${value} is out of range`,
          );
        }
        this.#peerMaxFrameSize = value;
        return;
      default:
        return; // MAX_CONCURRENT_STREAMS and MAX_HEADER_LIST_SIZE bind the server's pushes and fields; unknown ones are ignored
    }
  }

  #onPing(frame: Frame & { type: 0x6 }): void {
    if (frame.ack) {
      this.#shutdownPing?.();
      return;
    }
    this.#countIdleFrame();
    this.#enqueueControl(pingFrame(frame.opaque.slice(), true));
  }

  #onGoaway(): void {
    // The client will open no more streams: finish those open, then close.
    this.#peerGoaway = true;
    if (this.#streams.size === 0) this.#closeGracefully();
  }

  #onWindowUpdate(frame: Frame & { type: 0x8 }): void {
    if (frame.streamId === 0) {
      this.#sendWindow += frame.increment;
      if (this.#sendWindow > MAX_WINDOW) {
        throw connectionError(ErrorCode.FLOW_CONTROL_ERROR, "Connection window over 2^31-1");
      }
      for (const stream of this.#streams.values()) wake(stream);
      return;
    }
    if (this.#isIdle(frame.streamId)) {
      throw connectionError(
        ErrorCode.PROTOCOL_ERROR,
        `WINDOW_UPDATE on idle stream ${frame.streamId}`,
      );
    }
    const stream = this.#streams.get(frame.streamId);
    if (stream === undefined) return;
    stream.sendWindow += frame.increment;
    if (stream.sendWindow > MAX_WINDOW) {
      throw streamError(
        stream.id,
        ErrorCode.FLOW_CONTROL_ERROR,
        `Stream ${stream.id}'s window over 2^31-1`,
      );
    }
    wake(stream);
  }

  // ── Requests and responses ──

  #startHandler(stream: Stream, request: ValidRequest): void {
    if (stream.body !== null) request.body = stream.body;
    try {
      stream.exchange = this.#tk.open ? this.#tk.open(request) : openStandard(this.#tk, request);
    } catch (error) {
      throw streamError(
        stream.id,
        ErrorCode.PROTOCOL_ERROR,
        `Malformed request: ${error instanceof Error ? error.message : error}`,
      );
    }
    if (this.#o.writeTimeout > 0) {
      stream.writeTimer = this.#timer(() => this.#writeTimedOut(stream), this.#o.writeTimeout);
    }
    stream.handlerRunning = true;
    this.#handlers++;
    this.#respond(stream, stream.exchange, request.method === "HEAD")
      .catch((error) => {
        if (this.#streams.get(stream.id) === stream) {
          this.#resetStream(stream.id, ErrorCode.INTERNAL_ERROR);
        }
        if (!(error instanceof StreamEnded)) console.error("HTTP/2 response failed:", error);
      })
      .finally(() => {
        stream.handlerRunning = false;
        this.#handlers--;
      });
  }

  async #respond(stream: Stream, exchange: Http2Exchange, head: boolean): Promise<void> {
    const result = exchange.respond();
    const response = result instanceof Response ? result : await result;
    if (stream.state === "closed") throw new StreamEnded();
    const body = (this.#tk.responseBody ?? defaultBody)(response);
    const fields = (fn: (name: string, value: string) => void) =>
      this.#tk.responseFields
        ? this.#tk.responseFields(response, fn)
        : response.headers.forEach((value, name) => fn(name, value));
    await this.#sendResponse(stream, response.status, fields, body, head, trailersOf(response));
  }

  /** writeTimeout ran out before the response ended (a slow handler, or a client granting no window). */
  #writeTimedOut(stream: Stream): void {
    stream.writeTimer = null;
    if (this.#streams.get(stream.id) === stream) this.#resetStream(stream.id, ErrorCode.CANCEL);
  }

  /** Answers before any handler runs (431), then resets the rest of the request. */
  #respondEarly(stream: Stream, status: number, text: string): void {
    const fields = (fn: (name: string, value: string) => void) => fn("content-type", "text/plain");
    this.#sendResponse(stream, status, fields, {
      kind: "text",
      text,
    }, false).catch(() => {});
  }

  async #sendResponse(
    stream: Stream,
    status: number,
    eachField: (fn: (name: string, value: string) => void) => void,
    body: Http2Body,
    head: boolean,
    trailers: Trailers | null = null,
  ): Promise<void> {
    const fields: [string, string][] = [[":status", String(status)]];
    let bytes: Uint8Array | null = null;
    if (body.kind === "text") bytes = encoder.encode(body.text);
    else if (body.kind === "bytes") bytes = body.bytes;
    const noBody = head || status === 204 || status === 304 || body.kind === "none";
    let hasLength = false;
    let hasDate = false;
    eachField((name, value) => {
      if (CONNECTION_FIELDS.has(name)) return;
      if (name === "content-length") hasLength = true;
      else if (name === "date") hasDate = true;
      fields.push([name, value]);
    });
    if (!hasDate && this.#tk.date) fields.push(["date", this.#tk.date()]);
    if (!hasLength && bytes !== null && status !== 204 && status !== 304) {
      fields.push(["content-length", String(bytes.length)]);
    }
    stream.responseStarted = true;
    stream.sent.status = status;
    const endStream = noBody || (bytes !== null && bytes.length === 0 && trailers === null);
    this.#enqueue(
      headersFrames(stream.id, this.#encoder.encode(fields), endStream, this.#peerMaxFrameSize),
    );
    if (endStream) {
      if (body.kind === "stream") body.stream.cancel().catch(() => {});
      return this.#localEnded(stream);
    }
    if (bytes !== null) {
      if (bytes.length > 0) await this.#sendData(stream, bytes, trailers === null);
    } else if (body.kind === "stream") {
      await this.#sendStream(stream, body.stream, trailers === null);
    }
    if (trailers !== null) await this.#sendTrailers(stream, trailers);
    this.#localEnded(stream);
  }

  /**
   * Ends the stream with the trailer fields `trailers` gives, in a HEADERS
   * frame (RFC 9113 §8.1): names lowercased, a field that is invalid or
   * connection-specific left out and reported.
   */
  async #sendTrailers(stream: Stream, trailers: Trailers): Promise<void> {
    const fields: [string, string][] = [];
    for (const [name, value] of await trailers()) {
      const lower = name.toLowerCase();
      if (!TRAILER_NAME.test(lower) || !FIELD_VALUE.test(value) || NOT_TRAILERS.has(lower)) {
        console.error(`brick: Invalid trailer field "${name}": left out of the trailer section`);
        continue;
      }
      fields.push([lower, value]);
    }
    if (stream.state === "closed" || this.#closed) throw new StreamEnded();
    if (fields.length === 0) return await this.#sendData(stream, EMPTY, true);
    this.#enqueue(
      headersFrames(stream.id, this.#encoder.encode(fields), true, this.#peerMaxFrameSize),
    );
  }

  async #sendStream(
    stream: Stream,
    source: ReadableStream<Uint8Array>,
    end = true,
  ): Promise<void> {
    const reader = source.getReader();
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (done) break;
        if (value.length > 0) await this.#sendData(stream, value, false);
      }
    } catch (error) {
      reader.cancel(error).catch(() => {});
      throw error;
    }
    if (end) await this.#sendData(stream, EMPTY, true);
  }

  /** Sends DATA within both send windows and the peer's frame size, waiting for credit. */
  async #sendData(stream: Stream, data: Uint8Array, end: boolean): Promise<void> {
    let at = 0;
    do {
      if (stream.state === "closed" || this.#closed) throw new StreamEnded();
      const left = data.length - at;
      const allowed = Math.min(left, this.#sendWindow, stream.sendWindow, this.#peerMaxFrameSize);
      if (left > 0 && allowed <= 0) {
        await new Promise<void>((resolve) => (stream.wake = resolve));
        continue;
      }
      const last = at + allowed === data.length;
      this.#enqueue(encodeFrame(
        FrameType.DATA,
        last && end ? Flag.END_STREAM : 0,
        stream.id,
        data.subarray(at, at + allowed),
      ));
      at += allowed;
      stream.sent.bodyBytes += allowed;
      this.#sendWindow -= allowed;
      stream.sendWindow -= allowed;
      if (this.#queued > WRITE_HIGH_WATER) await this.#drain();
    } while (at < data.length);
  }

  #localEnded(stream: Stream): void {
    if (stream.state === "open") {
      // The response ended before the request. The stream stays half-closed
      // (local) until the client ends it; if it sends more DATA, or its slot
      // is needed, it is told to stop with RST_STREAM NO_ERROR (§8.1).
      stream.state = "half-closed-local";
    } else if (stream.state === "half-closed-remote") {
      this.#closeStream(stream);
    }
    this.#completedResponses++;
    this.#clearTimer(stream.writeTimer);
    stream.writeTimer = null;
    if (stream.refused && stream.state === "half-closed-local") this.#stopRequest(stream);
    const exchange = stream.exchange;
    if (exchange !== null) {
      this.#drain().then(() => exchange.finish(undefined, stream.sent), () => {});
    }
  }

  /**
   * Ends a stream: its body errors if unfinished, its signal aborts if the
   * response did not complete, its unread bytes go back to the connection window.
   */
  #closeStream(stream: Stream, reason?: Error): void {
    if (this.#streams.get(stream.id) !== stream) return;
    const finishedNormally = reason === undefined;
    stream.state = "closed";
    this.#streams.delete(stream.id);
    this.#clearTimer(stream.readTimer);
    this.#clearTimer(stream.writeTimer);
    if (!finishedNormally) {
      stream.body?.fail(reason);
      stream.exchange?.abort(reason);
      stream.exchange?.finish(reason, stream.sent);
    }
    if (stream.body !== null) this.#giveBackConnection(stream.body.discard());
    wake(stream);
    if (this.#streams.size === 0) {
      if (this.#goawaySent || this.#peerGoaway) this.#closeGracefully();
      else this.#armIdle();
    }
  }

  /** Ends a request whose response is complete: RST_STREAM NO_ERROR (§8.1). */
  #stopRequest(stream: Stream): void {
    this.#rememberReset(stream.id);
    this.#enqueue(rstStreamFrame(stream.id, ErrorCode.NO_ERROR));
    stream.body?.fail(new Error("The response ended before the request body"));
    this.#closeStream(stream);
  }

  /** Frees the slots of streams answered while their requests are still open. */
  #reclaimAnswered(): void {
    for (const stream of [...this.#streams.values()]) {
      if (stream.state === "half-closed-local") this.#stopRequest(stream);
    }
  }

  /** Answers a stream error with RST_STREAM (§5.4.2). */
  #resetStream(id: number, code: number): void {
    this.#rememberReset(id);
    if (id > this.#lastStreamId) this.#lastStreamId = id;
    this.#enqueueControl(rstStreamFrame(id, code));
    const stream = this.#streams.get(id);
    if (stream !== undefined) {
      this.#closeStream(stream, new Error(`Stream ${id} reset: error code ${code}`));
    }
  }

  #rememberReset(id: number): void {
    this.#recentlyReset.push(id);
    if (this.#recentlyReset.length > RECENT_STREAMS) this.#recentlyReset.shift();
  }

  // ── Writing ──

  #enqueue(frame: Uint8Array): void {
    if (this.#closed) return;
    this.#queue.push(frame);
    this.#queued += frame.length;
    if (!this.#flushing) {
      this.#flushing = true;
      // After this turn's I/O: the responses to a batch of streams leave in one write.
      setImmediate(() => this.#flush());
    }
  }

  /** Control frames answer the peer; a peer that sends them without reading is a flood. */
  #enqueueControl(frame: Uint8Array): void {
    if (this.#queued > MAX_QUEUED_CONTROL_BYTES) {
      throw connectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        "The client sends control frames without reading the answers",
      );
    }
    this.#enqueue(frame);
  }

  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const chunk = this.#queue.length === 1 ? this.#queue[0] : concat(this.#queue, this.#queued);
        this.#queue = [];
        this.#queued = 0;
        let at = 0;
        while (at < chunk.length) {
          const written = await this.#t.write(chunk.subarray(at));
          at += typeof written === "number" ? written : chunk.length - at;
        }
      }
    } catch (error) {
      this.#close(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.#flushing = false;
      for (const resolve of this.#drained.splice(0)) resolve();
    }
  }

  /** Resolves once everything queued has been written. */
  #drain(): Promise<void> {
    if (this.#closed || !this.#flushing && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  // ── Settings, timers, shutdown ──

  #sendSettings(): void {
    this.#enqueue(settingsFrame([
      [Setting.MAX_CONCURRENT_STREAMS, this.#o.maxConcurrentStreams],
      [Setting.INITIAL_WINDOW_SIZE, this.#o.initialWindowSize],
      [Setting.MAX_HEADER_LIST_SIZE, this.#o.maxHeaderListSize],
      [Setting.ENABLE_PUSH, 0],
    ]));
    const raise = this.#o.connectionWindowSize - DEFAULT_WINDOW;
    if (raise > 0) {
      this.#enqueue(windowUpdateFrame(0, raise));
      this.#recvWindow += raise;
    }
    this.#settingsTimer = this.#timer(() => {
      this.#fail(connectionError(ErrorCode.SETTINGS_TIMEOUT, "SETTINGS not acknowledged in time"));
    }, this.#o.settingsTimeout);
  }

  /**
   * Starts counting idleTimeout. One timer serves many idle spells: streams
   * that come and go only move {@linkcode #idleSince}, and the timer, when it
   * fires early, waits for the rest (a busy connection goes idle between
   * every batch of streams).
   */
  #armIdle(): void {
    if (this.#closed || this.#o.idleTimeout <= 0) return;
    this.#idleSince = Date.now();
    this.#idleTimer ??= this.#timer(() => this.#idleCheck(), this.#o.idleTimeout);
  }

  #disarmIdle(): void {
    this.#idleSince = -1;
  }

  #idleCheck(): void {
    this.#idleTimer = null;
    if (this.#idleSince < 0) return; // busy: the next idle spell arms it again
    const left = this.#idleSince + this.#o.idleTimeout - Date.now();
    if (left > 0) this.#idleTimer = this.#timer(() => this.#idleCheck(), left);
    else this.shutdown();
  }

  /** Graceful shutdown (§6.8): GOAWAY with the largest id and a PING, then the real last id. */
  async shutdown(): Promise<void> {
    if (this.#closed || this.#goawaySent) return this.finished;
    this.#goawaySent = true;
    this.#enqueue(goawayFrame(MAX_WINDOW, ErrorCode.NO_ERROR));
    this.#enqueue(pingFrame(new Uint8Array(8)));
    await new Promise<void>((resolve) => {
      const timer = this.#timer(resolve, 1_000);
      this.#shutdownPing = () => {
        this.#clearTimer(timer);
        resolve();
      };
    });
    this.#shutdownPing = null;
    if (this.#closed) return;
    this.#goawayLastId = this.#lastStreamId;
    this.#enqueue(goawayFrame(this.#lastStreamId, ErrorCode.NO_ERROR));
    if (this.#streams.size === 0) this.#closeGracefully();
    else this.#timer(() => this.#close(new Error("Shutdown timeout")), this.#o.shutdownTimeout);
    return this.finished;
  }

  #closeGracefully(): void {
    this.#drain().then(() => this.#close());
  }

  /**
   * A connection error: GOAWAY with its code (§5.4.1), a half-close, and the
   * close once the client has closed too or a second has passed (the read
   * loop keeps draining meanwhile).
   */
  #fail(error: unknown): void {
    if (this.#closed || this.#failed) return;
    this.#failed = true;
    if (!(error instanceof Http2Error)) {
      this.#close(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    this.#queue = [];
    this.#queued = 0;
    this.#enqueue(goawayFrame(this.#lastStreamId, error.code, error.message));
    for (const stream of [...this.#streams.values()]) this.#closeStream(stream, error);
    this.#timer(() => this.#close(error), 1_000);
    this.#drain().then(() => this.#t.closeWrite?.()).catch(() => {});
  }

  #timer(fn: () => void, ms: number): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
    return timer;
  }

  #clearTimer(timer: ReturnType<typeof setTimeout> | null | undefined): void {
    if (timer === null || timer === undefined) return;
    clearTimeout(timer);
    this.#timers.delete(timer);
  }

  #peerClosed(): void {
    this.#close(new Error("The client closed the connection"));
  }

  #close(reason?: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    const error = reason ?? new Error("The connection closed");
    for (const stream of [...this.#streams.values()]) this.#closeStream(stream, error);
    try {
      this.#t.close();
    } catch {
      // already closed
    }
    for (const resolve of this.#drained.splice(0)) resolve();
    this.#resolveFinished();
  }
}

/** Thrown into a response writer whose stream ended (reset or connection closed). */
class StreamEnded extends Error {
  constructor() {
    super("The stream ended before the response was written");
  }
}

function wake(stream: Stream): void {
  const resolve = stream.wake;
  stream.wake = null;
  resolve?.();
}

function concat(pieces: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

/**
 * The key under which an error carries its own HTTP answer; mod.ts answers
 * such an error with it when a handler lets it through.
 */
const ERROR_RESPONSE: unique symbol = Symbol.for("brick.errorResponse");

/** A request body that broke a limit: reads fail with it, and it answers 408 or 413. */
class RequestBodyError extends Error {
  constructor(readonly status: 408 | 413, message: string) {
    super(message);
    this.name = "RequestBodyError";
  }

  [ERROR_RESPONSE](): Response {
    return new Response(`${this.message}\n`, { status: this.status });
  }
}

/**
 * The exchange without a toolkit's `open`: a standard `Request` and the
 * toolkit's handler (serve() passes brick's own request object instead).
 */
function openStandard(toolkit: Http2Toolkit, parts: Http2RequestParts): Http2Exchange {
  const target = parts.path === "*" ? "/*" : parts.path;
  const url = `${toolkit.scheme}://${parts.authority ?? toolkit.defaultAuthority}${target}`;
  const headers = new Headers();
  for (let i = 0; i < parts.fields.length; i += 2) {
    headers.append(parts.fields[i], parts.fields[i + 1]);
  }
  const controller = new AbortController();
  const bodyless = parts.method === "GET" || parts.method === "HEAD";
  const request = new Request(url, {
    method: parts.method,
    headers,
    body: bodyless ? null : webStreamOf(parts.body),
    signal: controller.signal,
    // @ts-ignore: `duplex` is needed for a stream body on Node and Deno
    duplex: "half",
  });
  let settle!: (error?: Error) => void;
  const completed = new Promise<void>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve());
  });
  completed.catch(() => {}); // nobody may be listening
  const info: Http2Info = { remoteAddr: toolkit.remoteAddr, completed };
  return {
    async respond() {
      try {
        const response = await toolkit.handler!(request, info);
        if (response instanceof Response) return response;
        throw new TypeError(`The handler returned ${typeof response}, not a Response`);
      } catch (error) {
        return await (toolkit.onError ?? defaultOnError)(error);
      }
    },
    abort: (reason) => controller.abort(reason),
    finish: settle,
  };
}

/** The body as a web stream; a failed read errors it (Bun has no `ReadableStream.from`). */
function webStreamOf(body: Http2RequestBody): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    pull: (controller) =>
      body.next().then((chunk) => chunk === null ? controller.close() : controller.enqueue(chunk)),
    cancel: () => body.cancel(),
  }, { highWaterMark: 0 });
}

function defaultBody(response: Response): Http2Body {
  return response.body === null
    ? { kind: "none" }
    : { kind: "stream", stream: response.body, length: null };
}

function defaultOnError(error: unknown): Response {
  console.error(error);
  return new Response("Internal Server Error\n", { status: 500 });
}

// ── Request header validation (§8.2, §8.3) ──

/** A request's fields once validated, ready for {@linkcode Http2Toolkit.open}. */
interface ValidRequest extends Http2RequestParts {
  contentLength: number | null;
}

/**
 * Checks a request's fields as §8.2–§8.3 require and splits off the
 * pseudo-headers. Every violation makes the request malformed: a stream
 * error of type PROTOCOL_ERROR (§8.1.1).
 */
export function validateRequest(streamId: number, fields: string[]): ValidRequest {
  const malformed = (why: string) =>
    streamError(streamId, ErrorCode.PROTOCOL_ERROR, `Malformed request: ${why}`);
  // :method, :scheme, :authority, :path, in REQUEST_PSEUDO's order; no Map per request.
  const pseudo: (string | undefined)[] = [undefined, undefined, undefined, undefined];
  const headers: string[] = [];
  let cookies: string[] | null = null;
  let host: string | null = null;
  let contentLength: number | null = null;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i];
    const value = fields[i + 1];
    if (!isFieldValue(value)) {
      throw malformed(`the value of ${name} has a forbidden character or surrounding space`);
    }
    if (name.startsWith(":")) {
      if (headers.length > 0 || cookies !== null) {
        throw malformed(`pseudo-header ${name} after a regular field`);
      }
      const slot = REQUEST_PSEUDO.indexOf(name);
      if (slot < 0) throw malformed(`unknown pseudo-header ${name}`);
      if (pseudo[slot] !== undefined) throw malformed(`pseudo-header ${name} twice`);
      pseudo[slot] = value;
      continue;
    }
    if (!isLowercaseToken(name)) throw malformed(`field name "${name}" is not a lowercase token`);
    if (CONNECTION_FIELDS.has(name)) throw malformed(`connection-specific field ${name}`);
    if (name === "te" && value !== "trailers") {
      throw malformed(`te: "${value}" (only "trailers" is allowed)`);
    }
    if (name === "cookie") {
      (cookies ??= []).push(value);
      continue;
    }
    if (name === "host") host = value;
    if (name === "content-length") {
      if (
        !/^[0-9]{1,15}$/.test(value) || (contentLength !== null && contentLength !== Number(value))
      ) {
        throw malformed(`content-length "${value}"`);
      }
      contentLength = Number(value);
    }
    headers.push(name, value);
  }
  if (cookies !== null) headers.push("cookie", cookies.join("; ")); // §8.2.3
  const [method, scheme, givenAuthority, path] = pseudo;
  if (method === undefined) throw malformed(":method is missing");
  if (!isToken(method)) throw malformed(`:method "${method}" is not a token`);
  const authority = givenAuthority ?? host;
  if (method === "CONNECT") {
    if (scheme !== undefined || path !== undefined || authority === null) {
      throw malformed("CONNECT needs :authority and no :scheme or :path");
    }
    return { method, path: "/", authority, fields: headers, body: ENDED_BODY, contentLength };
  }
  if (scheme === undefined) throw malformed(":scheme is missing");
  if (path === undefined) throw malformed(":path is missing");
  if (path === "") throw malformed(":path is empty");
  if (path !== "*" && !path.startsWith("/")) throw malformed(`:path "${path}" is not absolute`);
  return { method, path, authority, fields: headers, body: ENDED_BODY, contentLength };
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const LOWER_TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

function isToken(text: string): boolean {
  return TOKEN.test(text);
}

function isLowercaseToken(text: string): boolean {
  return LOWER_TOKEN.test(text);
}

/** No NUL, CR or LF, no other control but HTAB, no leading or trailing space or tab (§8.2.1). */
function isFieldValue(value: string): boolean {
  if (value.length === 0) return true;
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(value.length - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return false;
  }
  return true;
}
