// Tests for http2.ts: the frame layer on its own, then the engine over real
// TCP sockets on 127.0.0.1, with Node's own HTTP/2 client (`node:http2`,
// which Deno and Bun provide too) and with raw frames for every error and
// attack. Runtime-neutral (node:test, node:net, node:http2).

import { after } from "node:test";
import { describe, test } from "./_test_skips.ts";
import assert from "node:assert/strict";
import net from "node:net";
import http2 from "node:http2";
import tls from "node:tls";
import { HpackDecoder, HpackEncoder } from "./_hpack.ts";
import {
  checkFrameSize,
  encodeFrame,
  ErrorCode,
  Flag,
  FRAME_HEADER_SIZE,
  FrameType,
  headersFrames,
  Http2Error,
  type Http2Options,
  type Http2Session,
  type Http2Transport,
  parseFrame,
  pingFrame,
  PREFACE,
  readFrameHeader,
  rstStreamFrame,
  serveHttp2,
  Setting,
  settingsFrame,
  validateRequest,
  windowUpdateFrame,
} from "./http2.ts";
import { deferred, delay, missing, run, startServer, until, within } from "./_test_utils.ts";
import { makeTestCertificates, opensslMissing } from "./_test_tls.ts";
import { chromiumPath, dumpDom } from "./_test_browser.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ResponseLogEntry, withTrailers } from "./mod.ts";

const NO_CURL = await missing("curl");
const NO_NGHTTP = await missing("nghttp", "--version");
const NO_H2LOAD = await missing("h2load", "--version");
const NO_OPENSSL = await opensslMissing();

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ─── Harness ────────────────────────────────────────────────────────────────

/** A `node:net` socket as the engine's transport. */
function socketTransport(socket: net.Socket): Http2Transport {
  const chunks: Uint8Array[] = [];
  let ended = false;
  let waiting: ((n: number | null) => void) | null = null;
  let target: Uint8Array | null = null;
  const take = (buffer: Uint8Array): number => {
    let n = 0;
    while (n < buffer.length && chunks.length > 0) {
      const chunk = chunks[0];
      const count = Math.min(chunk.length, buffer.length - n);
      buffer.set(chunk.subarray(0, count), n);
      n += count;
      if (count === chunk.length) chunks.shift();
      else chunks[0] = chunk.subarray(count);
    }
    return n;
  };
  const settle = () => {
    if (waiting === null || target === null) return;
    const resolve = waiting;
    if (chunks.length > 0) {
      waiting = null;
      resolve(take(target));
    } else if (ended) {
      waiting = null;
      resolve(null);
    }
  };
  socket.on("data", (chunk: Uint8Array) => {
    chunks.push(chunk);
    settle();
  });
  const end = () => {
    ended = true;
    settle();
  };
  socket.on("end", end);
  socket.on("close", end);
  socket.on("error", end);
  return {
    read(buffer) {
      if (chunks.length > 0) return Promise.resolve(take(buffer));
      if (ended) return Promise.resolve(null);
      target = buffer;
      return new Promise((resolve) => (waiting = resolve));
    },
    write(data) {
      return new Promise((resolve, reject) => {
        if (socket.destroyed) return reject(new Error("The socket is closed"));
        socket.write(data, (error) => (error ? reject(error) : resolve(data.length)));
      });
    },
    closeWrite() {
      return new Promise((resolve) => socket.end(resolve));
    },
    close() {
      socket.destroy();
    },
  };
}

type TestHandler = (request: Request, info: { completed: Promise<void> }) =>
  | Response
  | Promise<Response>;

interface H2Server {
  port: number;
  sessions: Http2Session[];
  close(): Promise<void>;
}

const servers: H2Server[] = [];
after(async () => {
  for (const server of servers) await server.close();
});

/** An h2c server (prior knowledge) on 127.0.0.1, port 0, running the engine. */
async function startH2(handler: TestHandler, options: Http2Options = {}): Promise<H2Server> {
  const sessions: Http2Session[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    sessions.push(serveHttp2(socketTransport(socket), {
      handler,
      remoteAddr: { hostname: socket.remoteAddress, port: socket.remotePort },
      scheme: "http",
      defaultAuthority: "localhost",
      onError(error) {
        return new Response(`failed: ${error}`, { status: 500 });
      },
    }, options));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const h2: H2Server = {
    port,
    sessions,
    async close() {
      for (const socket of sockets) socket.destroy();
      await Promise.all(sessions.map((s) => s.finished));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  servers.push(h2);
  return h2;
}

/** A response as `node:http2` gives it. */
interface ClientResponse {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Uint8Array;
  /** The trailer fields, when a HEADERS frame ended the stream. */
  trailers: http2.IncomingHttpHeaders | null;
}

function request(
  client: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Uint8Array | string,
): Promise<ClientResponse> {
  return new Promise((resolve, reject) => {
    const stream = client.request(headers, { endStream: body === undefined });
    const pieces: Uint8Array[] = [];
    let responseHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | null = null;
    stream.on("response", (h) => (responseHeaders = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (chunk: Uint8Array) => pieces.push(chunk));
    stream.on("end", () =>
      resolve({
        status: Number(responseHeaders[":status"]),
        headers: responseHeaders,
        body: new Uint8Array(Buffer.concat(pieces)),
        trailers,
      }));
    stream.on("error", reject);
    if (body !== undefined) stream.end(body);
  });
}

function connect(port: number): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.once("connect", () => resolve(client));
    client.once("error", reject);
  });
}

function closeClient(client: http2.ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => client.close(() => resolve()));
}

// ─── A raw HTTP/2 client ────────────────────────────────────────────────────

interface RawFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Uint8Array;
  /** A HEADERS frame's fields, decoded on arrival (in order, as HPACK needs). */
  fields?: string[];
}

/** Frames in, bytes out: for the cases no real client would send. */
class RawH2 {
  #socket: net.Socket;
  #buffer = new Uint8Array(0);
  frames: RawFrame[] = [];
  closed = false;
  #changed: (() => void) | null = null;
  hpack = new HpackEncoder();
  #hpackIn = new HpackDecoder();

  private constructor(socket: net.Socket) {
    this.#socket = socket;
    socket.on("data", (chunk: Uint8Array) => this.#receive(chunk));
    socket.on("close", () => {
      this.closed = true;
      this.#notify();
    });
    socket.on("error", () => {});
  }

  static async open(port: number, preface = true): Promise<RawH2> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const raw = new RawH2(socket);
    if (preface) {
      raw.send(PREFACE, settingsFrame([]));
      await raw.next((f) => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0);
      raw.send(settingsFrame([], true));
    }
    return raw;
  }

  #receive(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    let at = 0;
    while (joined.length - at >= FRAME_HEADER_SIZE) {
      const header = readFrameHeader(joined, at);
      if (joined.length - at < FRAME_HEADER_SIZE + header.length) break;
      const start = at + FRAME_HEADER_SIZE;
      const frame: RawFrame = { ...header, payload: joined.slice(start, start + header.length) };
      if (frame.type === FrameType.HEADERS) {
        frame.fields = this.#hpackIn.decode(frame.payload).fields;
      }
      this.frames.push(frame);
      at = start + header.length;
    }
    this.#buffer = joined.slice(at);
    this.#notify();
  }

  #notify(): void {
    const changed = this.#changed;
    this.#changed = null;
    changed?.();
  }

  send(...pieces: Uint8Array[]): void {
    for (const piece of pieces) this.#socket.write(piece);
  }

  /** A request's HEADERS frame (END_HEADERS), with extra fields. */
  headers(
    streamId: number,
    fields: [string, string][] = [],
    endStream = true,
    pseudo: [string, string][] = [[":method", "GET"], [":scheme", "http"], [":path", "/"], [
      ":authority",
      "localhost",
    ]],
  ): Uint8Array {
    const block = this.hpack.encode([...pseudo, ...fields]);
    return encodeFrame(
      FrameType.HEADERS,
      Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0),
      streamId,
      block,
    );
  }

  /** Waits for (and removes) the first frame that matches. */
  async next(match: (frame: RawFrame) => boolean, ms = 5_000): Promise<RawFrame> {
    const deadline = Date.now() + ms;
    while (true) {
      const at = this.frames.findIndex(match);
      if (at >= 0) return this.frames.splice(at, 1)[0];
      if (this.closed) throw new Error("The connection closed before the frame came");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`No matching frame within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#changed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** The GOAWAY the server sends, as its error code. */
  async goaway(ms = 5_000): Promise<number> {
    const frame = await this.next((f) => f.type === FrameType.GOAWAY, ms);
    return new DataView(frame.payload.buffer, frame.payload.byteOffset).getUint32(4);
  }

  async rst(streamId: number, ms = 5_000): Promise<number> {
    const frame = await this.next(
      (f) => f.type === FrameType.RST_STREAM && f.streamId === streamId,
      ms,
    );
    return new DataView(frame.payload.buffer, frame.payload.byteOffset).getUint32(0);
  }

  async waitClosed(ms = 5_000): Promise<void> {
    await until(() => this.closed, ms, "the server to close the connection");
  }

  close(): void {
    this.#socket.destroy();
  }
}

function errorCodeOf(frame: RawFrame, offset: number): number {
  return new DataView(frame.payload.buffer, frame.payload.byteOffset).getUint32(offset);
}

const hello = () => new Response("hello\n", { headers: { "content-type": "text/plain" } });

// ─── The frame layer ────────────────────────────────────────────────────────

describe("frames (RFC 9113 §4, §6)", () => {
  const header = (type: number, length: number, streamId: number, flags = 0) => ({
    type,
    length,
    streamId,
    flags,
  });
  const fails = (fn: () => unknown, code: number, streamId: number) =>
    assert.throws(fn, (error: unknown) => {
      assert.ok(error instanceof Http2Error);
      assert.equal(error.code, code, error.message);
      assert.equal(error.streamId, streamId, error.message);
      return true;
    });

  test("parseFrame() enforces each fixed length with the error and scope §6 gives", () => {
    const bytes = (n: number) => new Uint8Array(n);
    fails(() => parseFrame(header(FrameType.PING, 7, 0), bytes(7)), ErrorCode.FRAME_SIZE_ERROR, 0);
    fails(
      () => parseFrame(header(FrameType.RST_STREAM, 3, 1), bytes(3)),
      ErrorCode.FRAME_SIZE_ERROR,
      0,
    );
    fails(
      () => parseFrame(header(FrameType.WINDOW_UPDATE, 3, 1), bytes(3)),
      ErrorCode.FRAME_SIZE_ERROR,
      0,
    );
    fails(
      () => parseFrame(header(FrameType.SETTINGS, 5, 0), bytes(5)),
      ErrorCode.FRAME_SIZE_ERROR,
      0,
    );
    fails(
      () => parseFrame(header(FrameType.SETTINGS, 6, 0, Flag.ACK), bytes(6)),
      ErrorCode.FRAME_SIZE_ERROR,
      0,
    );
    fails(
      () => parseFrame(header(FrameType.PRIORITY, 4, 3), bytes(4)),
      ErrorCode.FRAME_SIZE_ERROR,
      3,
    );
    fails(
      () => parseFrame(header(FrameType.GOAWAY, 7, 0), bytes(7)),
      ErrorCode.FRAME_SIZE_ERROR,
      0,
    );
  });

  test("parseFrame() checks stream ids: stream-only frames on 0, connection frames on a stream", () => {
    const bytes = (n: number) => new Uint8Array(n);
    for (const type of [FrameType.DATA, FrameType.HEADERS, FrameType.PRIORITY]) {
      fails(
        () => parseFrame(header(type, type === FrameType.PRIORITY ? 5 : 0, 0), bytes(5)),
        ErrorCode.PROTOCOL_ERROR,
        0,
      );
    }
    fails(
      () => parseFrame(header(FrameType.RST_STREAM, 4, 0), bytes(4)),
      ErrorCode.PROTOCOL_ERROR,
      0,
    );
    fails(
      () => parseFrame(header(FrameType.SETTINGS, 0, 1), bytes(0)),
      ErrorCode.PROTOCOL_ERROR,
      0,
    );
    fails(() => parseFrame(header(FrameType.PING, 8, 1), bytes(8)), ErrorCode.PROTOCOL_ERROR, 0);
    fails(() => parseFrame(header(FrameType.GOAWAY, 8, 1), bytes(8)), ErrorCode.PROTOCOL_ERROR, 0);
    fails(
      () => parseFrame(header(FrameType.PUSH_PROMISE, 4, 1), bytes(4)),
      ErrorCode.PROTOCOL_ERROR,
      0,
    );
    fails(
      () => parseFrame(header(FrameType.CONTINUATION, 0, 0), bytes(0)),
      ErrorCode.PROTOCOL_ERROR,
      0,
    );
  });

  test("parseFrame() removes padding and rejects a pad length that fills the frame", () => {
    const payload = Uint8Array.of(2, 0x61, 0x62, 0, 0);
    const frame = parseFrame(header(FrameType.DATA, 5, 1, Flag.PADDED | Flag.END_STREAM), payload);
    assert.equal(frame.type, FrameType.DATA);
    if (frame.type !== FrameType.DATA) return;
    assert.equal(decoder.decode(frame.data), "ab");
    assert.equal(frame.flowLength, 5);
    assert.equal(frame.endStream, true);
    fails(
      () => parseFrame(header(FrameType.DATA, 3, 1, Flag.PADDED), Uint8Array.of(3, 0, 0)),
      ErrorCode.PROTOCOL_ERROR,
      0,
    );
    fails(
      () => parseFrame(header(FrameType.HEADERS, 2, 1, Flag.PADDED), Uint8Array.of(2, 0)),
      ErrorCode.PROTOCOL_ERROR,
      0,
    );
  });

  test("parseFrame() reads HEADERS priority fields, and a stream depending on itself is a stream error", () => {
    const payload = Uint8Array.of(0, 0, 0, 1, 16, 0x82);
    fails(
      () => parseFrame(header(FrameType.HEADERS, 6, 1, Flag.PRIORITY | Flag.END_HEADERS), payload),
      ErrorCode.PROTOCOL_ERROR,
      1,
    );
    const ok = parseFrame(
      header(FrameType.HEADERS, 6, 3, Flag.PRIORITY | Flag.END_HEADERS),
      payload,
    );
    assert.ok(ok.type === FrameType.HEADERS && ok.fragment.length === 1 && ok.dependency === 1);
  });

  test("parseFrame() treats a zero WINDOW_UPDATE as a stream or connection error by its stream", () => {
    const zero = new Uint8Array(4);
    fails(
      () => parseFrame(header(FrameType.WINDOW_UPDATE, 4, 5), zero),
      ErrorCode.PROTOCOL_ERROR,
      5,
    );
    fails(
      () => parseFrame(header(FrameType.WINDOW_UPDATE, 4, 0), zero),
      ErrorCode.PROTOCOL_ERROR,
      0,
    );
  });

  test("parseFrame() passes unknown frame types through to be ignored", () => {
    assert.equal(parseFrame(header(0xfa, 3, 1), new Uint8Array(3)).type, -1);
  });

  test("checkFrameSize() makes an oversized DATA a stream error, an oversized HEADERS a connection error", () => {
    fails(
      () => checkFrameSize(header(FrameType.DATA, 16_385, 1), 16_384),
      ErrorCode.FRAME_SIZE_ERROR,
      1,
    );
    fails(
      () => checkFrameSize(header(FrameType.HEADERS, 16_385, 1), 16_384),
      ErrorCode.FRAME_SIZE_ERROR,
      0,
    );
    checkFrameSize(header(FrameType.DATA, 16_384, 1), 16_384);
  });

  test("headersFrames() splits a block into HEADERS and CONTINUATION at the frame size", () => {
    const block = Uint8Array.from({ length: 40 }, (_, i) => i);
    const bytes = headersFrames(7, block, true, 16);
    const frames: RawFrame[] = [];
    for (let at = 0; at < bytes.length;) {
      const h = readFrameHeader(bytes, at);
      frames.push({ ...h, payload: bytes.slice(at + 9, at + 9 + h.length) });
      at += 9 + h.length;
    }
    assert.deepEqual(frames.map((f) => [f.type, f.flags, f.streamId, f.payload.length]), [
      [FrameType.HEADERS, Flag.END_STREAM, 7, 16],
      [FrameType.CONTINUATION, 0, 7, 16],
      [FrameType.CONTINUATION, Flag.END_HEADERS, 7, 8],
    ]);
    assert.deepEqual(new Uint8Array(Buffer.concat(frames.map((f) => f.payload))), block);
  });
});

describe("validateRequest() (RFC 9113 §8.2-§8.3)", () => {
  const base = [":method", "GET", ":scheme", "https", ":path", "/a?b", ":authority", "x.test"];
  const malformed = (fields: string[]) =>
    assert.throws(() => validateRequest(1, fields), (error: unknown) => {
      assert.ok(error instanceof Http2Error);
      assert.equal(error.code, ErrorCode.PROTOCOL_ERROR);
      assert.equal(error.streamId, 1);
      return true;
    });

  test("splits pseudo-headers off and joins cookies with '; '", () => {
    const request = validateRequest(1, [
      ...base,
      "cookie",
      "a=1",
      "accept",
      "*/*",
      "cookie",
      "b=2",
    ]);
    assert.equal(request.method, "GET");
    assert.equal(request.path, "/a?b");
    assert.equal(request.authority, "x.test");
    assert.deepEqual(request.fields, ["accept", "*/*", "cookie", "a=1; b=2"]);
  });

  test("rejects uppercase names, connection-specific fields, TE other than trailers", () => {
    malformed([...base, "Accept", "*/*"]);
    malformed([...base, "connection", "keep-alive"]);
    malformed([...base, "transfer-encoding", "chunked"]);
    malformed([...base, "upgrade", "h2c"]);
    malformed([...base, "te", "gzip"]);
    validateRequest(1, [...base, "te", "trailers"]);
  });

  test("rejects missing, duplicate, unknown, late and response pseudo-headers", () => {
    malformed([":scheme", "https", ":path", "/"]);
    malformed([":method", "GET", ":path", "/"]);
    malformed([":method", "GET", ":scheme", "https"]);
    malformed([":method", "GET", ":scheme", "https", ":path", ""]);
    malformed([...base, ":method", "POST"]);
    malformed([...base, ":foo", "bar"]);
    malformed([...base, ":status", "200"]);
    malformed([":method", "GET", "accept", "*/*", ":scheme", "https", ":path", "/"]);
  });

  test("rejects NUL, CR, LF and surrounding whitespace in values, and bad content-length", () => {
    malformed([...base, "x-a", "a\0b"]);
    malformed([...base, "x-a", "a\r\nb: c"]);
    malformed([...base, "x-a", " padded"]);
    malformed([...base, "content-length", "12a"]);
    malformed([...base, "content-length", "1", "content-length", "2"]);
    assert.equal(validateRequest(1, [...base, "content-length", "12"]).contentLength, 12);
  });

  test("accepts CONNECT with :authority only", () => {
    validateRequest(1, [":method", "CONNECT", ":authority", "x.test:443"]);
    malformed([":method", "CONNECT", ":authority", "x.test:443", ":path", "/"]);
  });
});

// ─── The engine, with node:http2 ───────────────────────────────────────────

describe("serveHttp2() with node:http2 as the client", () => {
  test("answers a GET with status, headers and body; the handler sees url, method and headers", async () => {
    let seen: { url: string; method: string; agent: string | null; cookie: string | null } | null =
      null;
    const server = await startH2((request) => {
      seen = {
        url: request.url,
        method: request.method,
        agent: request.headers.get("x-agent"),
        cookie: request.headers.get("cookie"),
      };
      return hello();
    });
    const client = await connect(server.port);
    const response = await within(
      request(client, { ":path": "/path?q=1", "x-agent": "test", cookie: ["a=1", "b=2"] }),
      5_000,
      "the response",
    );
    assert.equal(response.status, 200);
    assert.equal(response.headers["content-type"], "text/plain");
    assert.equal(decoder.decode(response.body), "hello\n");
    assert.deepEqual(seen, {
      url: `http://127.0.0.1:${server.port}/path?q=1`,
      method: "GET",
      agent: "test",
      cookie: "a=1; b=2",
    });
    await closeClient(client);
  });

  test("echoes a 1 MiB upload: flow control both ways past the 64 KiB default windows", async () => {
    const server = await startH2(async (request) => {
      const body = new Uint8Array(await request.arrayBuffer());
      return new Response(body);
    });
    const client = await connect(server.port);
    const upload = Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 31) & 0xff);
    const response = await within(
      request(client, { ":method": "POST", ":path": "/echo" }, upload),
      10_000,
      "the echo",
    );
    assert.equal(response.status, 200);
    assert.equal(response.body.length, upload.length);
    assert.deepEqual(response.body, upload);
    await closeClient(client);
  });

  test("multiplexes 100 concurrent requests on one connection", async () => {
    const server = await startH2(async (request) => {
      await delay(10);
      return new Response(new URL(request.url).pathname);
    });
    const client = await connect(server.port);
    const responses = await within(
      Promise.all(Array.from({ length: 100 }, (_, i) => request(client, { ":path": `/${i}` }))),
      10_000,
      "100 responses",
    );
    responses.forEach((response, i) => assert.equal(decoder.decode(response.body), `/${i}`));
    assert.equal(server.sessions.length, 1);
    await closeClient(client);
  });

  test("answers HEAD without a body but with its length, and 204 without a body", async () => {
    const server = await startH2((request) =>
      new URL(request.url).pathname === "/empty"
        ? new Response(null, { status: 204 })
        : new Response("twelve bytes")
    );
    const client = await connect(server.port);
    const head = await request(client, { ":method": "HEAD", ":path": "/" });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    const empty = await request(client, { ":path": "/empty" });
    assert.equal(empty.status, 204);
    assert.equal(empty.body.length, 0);
    await closeClient(client);
  });

  test("ends a response with the withTrailers() fields in a HEADERS frame, names lowercased", async () => {
    const errors: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => errors.push(args.join(" "));
    const server = await startH2((request) => {
      const parts = ["hello ", "world"];
      const stream = new ReadableStream<Uint8Array>({
        pull(controller) {
          const part = parts.shift();
          if (part === undefined) controller.close();
          else controller.enqueue(encoder.encode(part));
        },
      });
      const body = new URL(request.url).pathname === "/text" ? "abc" : stream;
      return withTrailers(new Response(body), () => [
        ["X-Sum", "11"],
        ["Connection", "close"],
        ["x-bad", "a\r\nb"],
      ]);
    });
    try {
      const client = await connect(server.port);
      for (const [path, text] of [["/stream", "hello world"], ["/text", "abc"]]) {
        const response = await within(request(client, { ":path": path }), 5_000, "the response");
        assert.equal(decoder.decode(response.body), text);
        assert.equal(response.trailers?.["x-sum"], "11", path);
        assert.equal(response.trailers?.["connection"], undefined);
        assert.equal(response.trailers?.["x-bad"], undefined);
      }
      await closeClient(client);
    } finally {
      console.error = original;
    }
    assert.equal(errors.filter((line) => /Invalid trailer field/.test(line)).length, 4);
  });

  test("streams a response body as the handler produces it", async () => {
    const server = await startH2(() => {
      let n = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          await delay(5);
          if (n === 5) return controller.close();
          controller.enqueue(encoder.encode(`chunk ${n++}\n`));
        },
      });
      return new Response(body);
    });
    const client = await connect(server.port);
    const response = await within(request(client, { ":path": "/" }), 5_000, "the stream");
    assert.equal(
      decoder.decode(response.body),
      "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n",
    );
    await closeClient(client);
  });

  test("aborts request.signal and rejects info.completed when the client cancels the stream", async () => {
    const aborted = deferred<void>();
    const completed = deferred<string>();
    const started = deferred<void>();
    const server = await startH2((request, info) => {
      request.signal.addEventListener("abort", () => aborted.resolve());
      info.completed.then(() => completed.resolve("resolved"), () => completed.resolve("rejected"));
      started.resolve();
      return new Response(new ReadableStream({ pull: () => delay(1_000) }));
    });
    const client = await connect(server.port);
    const stream = client.request({ ":path": "/" });
    stream.on("error", () => {});
    await within(started.promise, 5_000, "the handler");
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await within(aborted.promise, 5_000, "request.signal to abort");
    assert.equal(await within(completed.promise, 5_000, "info.completed"), "rejected");
    await closeClient(client);
  });

  test("reads a request body as a stream, chunk by chunk, while the client sends it", async () => {
    const server = await startH2(async (request) => {
      let total = 0;
      for await (const chunk of request.body!) total += chunk.length;
      return new Response(String(total));
    });
    const client = await connect(server.port);
    const stream = client.request({ ":method": "POST", ":path": "/" }, { endStream: false });
    const pieces: Uint8Array[] = [];
    stream.on("data", (chunk: Uint8Array) => pieces.push(chunk));
    const ended = new Promise((resolve) => stream.on("end", resolve));
    for (let i = 0; i < 10; i++) {
      stream.write(new Uint8Array(10_000));
      await delay(5);
    }
    stream.end();
    await within(ended, 5_000, "the response");
    assert.equal(decoder.decode(Buffer.concat(pieces)), "100000");
    await closeClient(client);
  });
});

// ─── The engine, with raw frames ───────────────────────────────────────────

describe("serveHttp2() protocol errors, with raw frames", () => {
  test("answers a bad preface with GOAWAY PROTOCOL_ERROR and closes", async () => {
    const server = await startH2(hello);
    const raw = await RawH2.open(server.port, false);
    raw.send(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.equal(await raw.goaway(), ErrorCode.PROTOCOL_ERROR);
    await raw.waitClosed();
  });

  test("resets a malformed request with PROTOCOL_ERROR and keeps serving the connection", async () => {
    let calls = 0;
    const server = await startH2(() => {
      calls++;
      return hello();
    });
    const raw = await RawH2.open(server.port);
    raw.send(raw.headers(1, [["X-Upper", "1"]]));
    assert.equal(await raw.rst(1), ErrorCode.PROTOCOL_ERROR);
    raw.send(raw.headers(3));
    const response = await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 3);
    assert.ok(response.flags & Flag.END_HEADERS);
    assert.equal(calls, 1);
    raw.close();
  });

  test("answers an undecodable header block with GOAWAY COMPRESSION_ERROR", async () => {
    const server = await startH2(hello);
    const raw = await RawH2.open(server.port);
    raw.send(
      encodeFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, Uint8Array.of(0x80)),
    );
    assert.equal(await raw.goaway(), ErrorCode.COMPRESSION_ERROR);
    await raw.waitClosed();
  });

  test("answers DATA over the stream's window with RST_STREAM FLOW_CONTROL_ERROR", async () => {
    const server = await startH2(
      () => new Response(new ReadableStream({ pull: () => delay(5_000) })),
      {
        initialWindowSize: 1_000,
      },
    );
    const raw = await RawH2.open(server.port);
    raw.send(raw.headers(1, [], false, [[":method", "POST"], [":scheme", "http"], [":path", "/"]]));
    raw.send(encodeFrame(FrameType.DATA, 0, 1, new Uint8Array(1_001)));
    assert.equal(await raw.rst(1), ErrorCode.FLOW_CONTROL_ERROR);
    raw.close();
  });

  test("a response that ends before its request: more DATA is answered RST_STREAM NO_ERROR (§8.1)", async () => {
    const server = await startH2(() => new Response("early", { status: 413 }));
    const raw = await RawH2.open(server.port);
    raw.send(raw.headers(1, [], false, [[":method", "POST"], [":scheme", "http"], [":path", "/"]]));
    await raw.next((f) => f.type === FrameType.DATA && (f.flags & Flag.END_STREAM) !== 0);
    raw.send(encodeFrame(FrameType.DATA, 0, 1, new Uint8Array(100)));
    assert.equal(await raw.rst(1), ErrorCode.NO_ERROR);
    // Frames the client had in flight for it are ignored: the connection lives on.
    raw.send(encodeFrame(FrameType.DATA, Flag.END_STREAM, 1, new Uint8Array(100)));
    raw.send(raw.headers(3));
    await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 3);
    raw.close();
  });

  test("answers a header list over maxHeaderListSize with 431 and keeps the connection", async () => {
    const server = await startH2(hello, { maxHeaderListSize: 4_096 });
    const raw = await RawH2.open(server.port);
    raw.send(raw.headers(1, [["x-big", "a".repeat(5_000)]]));
    const head = await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 1);
    assert.deepEqual(head.fields?.slice(0, 2), [":status", "431"]);
    raw.send(raw.headers(3));
    await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 3);
    raw.close();
  });

  test("waits for SETTINGS to be acknowledged, then sends GOAWAY SETTINGS_TIMEOUT", async () => {
    const server = await startH2(hello, { settingsTimeout: 200 });
    const raw = await RawH2.open(server.port, false);
    raw.send(PREFACE, settingsFrame([])); // and never an ACK
    assert.equal(await raw.goaway(3_000), ErrorCode.SETTINGS_TIMEOUT);
    await raw.waitClosed();
  });

  test("closes a header block that is not finished within readHeaderTimeout", async () => {
    const server = await startH2(hello, { readHeaderTimeout: 200 });
    const raw = await RawH2.open(server.port);
    const frame = raw.headers(1);
    frame[4] = Flag.END_STREAM; // no END_HEADERS: CONTINUATION must follow
    raw.send(frame);
    assert.equal(await raw.goaway(3_000), ErrorCode.PROTOCOL_ERROR);
    await raw.waitClosed();
  });
});

// ─── Attacks known from other servers ──────────────────────────────────────

describe("serveHttp2() against known attacks", () => {
  test("rapid reset (CVE-2023-44487): handlers stay bounded and the connection gets ENHANCE_YOUR_CALM", async () => {
    let running = 0;
    let peak = 0;
    const server = await startH2(async () => {
      peak = Math.max(peak, ++running);
      await delay(200);
      running--;
      return hello();
    }, { maxConcurrentStreams: 10 });
    const raw = await RawH2.open(server.port);
    const burst: Uint8Array[] = [];
    for (let id = 1; id < 2_000; id += 2) {
      burst.push(raw.headers(id), rstStreamFrame(id, ErrorCode.CANCEL));
    }
    raw.send(...burst);
    assert.equal(await raw.goaway(), ErrorCode.ENHANCE_YOUR_CALM);
    await raw.waitClosed();
    assert.ok(peak <= 10, `at most maxConcurrentStreams handlers ran at once: ${peak}`);
  });

  test("CONTINUATION flood: endless CONTINUATION frames end in ENHANCE_YOUR_CALM", async () => {
    const server = await startH2(hello);
    const raw = await RawH2.open(server.port);
    const first = raw.headers(1);
    first[4] = Flag.END_STREAM;
    const flood = [first];
    for (let i = 0; i < 1_000; i++) {
      flood.push(encodeFrame(FrameType.CONTINUATION, 0, 1, new Uint8Array(0)));
    }
    raw.send(...flood);
    assert.equal(await raw.goaway(), ErrorCode.ENHANCE_YOUR_CALM);
    await raw.waitClosed();
  });

  test("CONTINUATION flood: a header block over twice maxHeaderListSize is refused before decoding", async () => {
    const server = await startH2(hello, { maxHeaderListSize: 4_096 });
    const raw = await RawH2.open(server.port);
    const first = encodeFrame(FrameType.HEADERS, 0, 1, new Uint8Array(8_000).fill(0x82));
    raw.send(first, encodeFrame(FrameType.CONTINUATION, 0, 1, new Uint8Array(8_000).fill(0x82)));
    assert.equal(await raw.goaway(), ErrorCode.ENHANCE_YOUR_CALM);
    await raw.waitClosed();
  });

  test("HPACK bomb: one big table entry named thousands of times is answered 431", async () => {
    let calls = 0;
    const server = await startH2(() => {
      calls++;
      return hello();
    }, { maxHeaderListSize: 16_384 });
    const raw = await RawH2.open(server.port);
    // First request inserts a 4000-byte field; the second names it 3000 times.
    raw.send(raw.headers(1, [["x-bomb", "b".repeat(4_000)]]));
    await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 1);
    const block = new Uint8Array([0x82, 0x86, 0x84, ...new Array(3_000).fill(0xbe)]);
    raw.send(encodeFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, block));
    const head = await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 3);
    assert.deepEqual(head.fields?.slice(0, 2), [":status", "431"]);
    assert.equal(calls, 1, "the handler never saw the bomb");
    raw.close();
  });

  for (
    const [name, frame] of [
      ["PING", pingFrame(new Uint8Array(8))],
      ["SETTINGS", settingsFrame([])],
      ["empty DATA", encodeFrame(FrameType.DATA, 0, 1, new Uint8Array(0))],
      ["PRIORITY", encodeFrame(FrameType.PRIORITY, 0, 1, Uint8Array.of(0, 0, 0, 0, 16))],
    ] as const
  ) {
    test(`${name} flood ends in ENHANCE_YOUR_CALM`, async () => {
      const server = await startH2(() =>
        new Response(new ReadableStream({ pull: () => delay(5_000) }))
      );
      const raw = await RawH2.open(server.port);
      raw.send(
        raw.headers(1, [], false, [[":method", "POST"], [":scheme", "http"], [":path", "/"]]),
      );
      raw.send(...new Array(5_000).fill(frame));
      assert.equal(await raw.goaway(), ErrorCode.ENHANCE_YOUR_CALM);
      await raw.waitClosed();
    });
  }

  test("zero-window stall: a client that grants no window pins no more than one chunk", async () => {
    let pulled = 0;
    const cancelled = deferred<void>();
    const server = await startH2(() =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            pulled++;
            controller.enqueue(new Uint8Array(64 * 1024));
          },
          cancel: () => cancelled.resolve(),
        }, { highWaterMark: 0 }),
      )
    );
    const raw = await RawH2.open(server.port, false);
    raw.send(PREFACE, settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 0]]), settingsFrame([], true));
    raw.send(raw.headers(1));
    await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 1);
    await delay(300);
    assert.ok(pulled <= 2, `the body was read ${pulled} times while no window was granted`);
    // A little window lets exactly that much through.
    raw.send(windowUpdateFrame(1, 100));
    const data = await raw.next((f) => f.type === FrameType.DATA && f.streamId === 1);
    assert.equal(data.payload.length, 100);
    raw.send(rstStreamFrame(1, ErrorCode.CANCEL));
    await within(cancelled.promise, 5_000, "the body to be cancelled after the reset");
    raw.close();
  });

  test("too many streams: the one past maxConcurrentStreams gets REFUSED_STREAM", async () => {
    const gate = deferred<void>();
    const server = await startH2(async () => {
      await gate.promise;
      return hello();
    }, { maxConcurrentStreams: 2 });
    const raw = await RawH2.open(server.port);
    raw.send(raw.headers(1), raw.headers(3), raw.headers(5));
    assert.equal(await raw.rst(5), ErrorCode.REFUSED_STREAM);
    gate.resolve();
    await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 1);
    await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 3);
    raw.close();
  });
});

// ─── Shutdown and timeouts ──────────────────────────────────────────────────

describe("serveHttp2() shutdown", () => {
  test("shutdown() sends GOAWAY twice (§6.8), lets the stream in flight finish, then closes", async () => {
    const gate = deferred<void>();
    const started = deferred<void>();
    const server = await startH2(async () => {
      started.resolve();
      await gate.promise;
      return hello();
    });
    const raw = await RawH2.open(server.port);
    raw.send(raw.headers(1));
    await within(started.promise, 5_000, "the handler");
    const done = server.sessions[0].shutdown();
    const first = await raw.next((f) => f.type === FrameType.GOAWAY);
    assert.equal(errorCodeOf(first, 0), 0x7fff_ffff);
    const ping = await raw.next((f) => f.type === FrameType.PING);
    raw.send(pingFrame(ping.payload, true));
    const second = await raw.next((f) => f.type === FrameType.GOAWAY);
    assert.equal(errorCodeOf(second, 0), 1);
    assert.equal(errorCodeOf(second, 4), ErrorCode.NO_ERROR);
    gate.resolve();
    await raw.next((f) => f.type === FrameType.DATA && (f.flags & Flag.END_STREAM) !== 0);
    await within(done, 5_000, "the shutdown");
    await raw.waitClosed();
  });

  test("closes an idle connection after idleTimeout with GOAWAY NO_ERROR", async () => {
    const server = await startH2(hello, { idleTimeout: 200 });
    const raw = await RawH2.open(server.port);
    const frame = await raw.next((f) => f.type === FrameType.GOAWAY, 3_000);
    assert.equal(errorCodeOf(frame, 4), ErrorCode.NO_ERROR);
    await raw.waitClosed(5_000);
  });
});

// ─── Through serve(): the hand-over in mod.ts ──────────────────────────────

describe("serve() with HTTP/2", () => {
  const echo = async (request: Request) =>
    new Response(
      `${request.method} ${request.url} ${request.body ? (await request.text()).length : 0}`,
      { headers: { "x-proto": "brick" } },
    );

  test("speaks h2c with prior knowledge and HTTP/1.1 on the same plain port", async () => {
    const { server, port } = await startServer(echo);
    try {
      const client = await connect(port);
      const h2 = await request(client, { ":method": "POST", ":path": "/h2?x=1" }, "abc");
      assert.equal(h2.status, 200);
      assert.equal(h2.headers["x-proto"], "brick");
      assert.match(String(h2.headers["date"]), /^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
      assert.equal(decoder.decode(h2.body), `POST http://127.0.0.1:${port}/h2?x=1 3`);
      await closeClient(client);
      const h1 = await fetch(`http://127.0.0.1:${port}/h1`);
      assert.equal(await h1.text(), `GET http://127.0.0.1:${port}/h1 0`);
    } finally {
      await server.shutdown();
    }
  });

  test("curl --http2-prior-knowledge and nghttp get answers over h2c", {
    skip: NO_CURL || NO_NGHTTP,
  }, async () => {
    const { server, port } = await startServer(echo);
    try {
      const curl = await run("curl", [
        "-s",
        "-i",
        "--http2-prior-knowledge",
        `http://127.0.0.1:${port}/curl`,
      ]);
      assert.match(curl, /^HTTP\/2 200 \r\n/);
      assert.ok(curl.endsWith(`GET http://127.0.0.1:${port}/curl 0`), curl);
      const nghttp = await run("nghttp", [
        "-n",
        "-v",
        `http://127.0.0.1:${port}/a`,
        `http://127.0.0.1:${port}/b`,
      ]);
      assert.equal(nghttp.match(/:status: 200/g)?.length, 2, nghttp);
    } finally {
      await server.shutdown();
    }
  });

  test("h2load's requests, multiplexed 16 deep over h2c and TLS, all succeed", {
    skip: NO_H2LOAD || NO_OPENSSL,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "brick-h2load-"));
    try {
      const pki = await makeTestCertificates(dir);
      const plain = await startServer(() => new Response("Hello, World!"));
      const secure = await startServer(() => new Response("Hello, World!"), {
        cert: pki.cert,
        key: pki.key,
      });
      try {
        for (
          const url of [`http://127.0.0.1:${plain.port}/`, `https://127.0.0.1:${secure.port}/`]
        ) {
          const out = await run("h2load", ["-n", "2000", "-c", "4", "-m", "16", url], {
            timeoutMs: 60_000,
          });
          assert.match(out, /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded/, out);
          assert.match(out, /status codes: 2000 2xx/, out);
          if (url.startsWith("https")) assert.match(out, /Application protocol: h2/, out);
        }
      } finally {
        await plain.server.shutdown();
        await secure.server.shutdown();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("Deno's own fetch speaks h2 to brick over TLS", {
    skip: !("Deno" in globalThis) ? "Deno's HTTP client: runs on Deno" : NO_OPENSSL,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "brick-h2-deno-"));
    try {
      const pki = await makeTestCertificates(dir);
      const lines: string[] = [];
      const { server, port } = await startServer(echo, {
        cert: pki.cert,
        key: pki.key,
        onResponse: (entry) => lines.push(entry.requestLine),
      });
      const deno = (globalThis as unknown as {
        Deno: { createHttpClient(o: object): { close(): void } };
      }).Deno;
      const client = deno.createHttpClient({ caCerts: [pki.ca], http1: false, http2: true });
      try {
        const url = `https://localhost:${port}/deno?x=1`;
        const response = await fetch(url, { client, method: "POST", body: "abc" } as RequestInit);
        assert.equal(response.status, 200);
        assert.equal(await response.text(), `POST ${url} 3`);
        await until(() => lines.length === 1, 5000, "the onResponse entry");
        assert.deepEqual(lines, ["POST /deno?x=1 HTTP/2"]);
      } finally {
        client.close();
        await server.shutdown();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("negotiates h2 by ALPN on TLS and still offers http/1.1", {
    skip: NO_OPENSSL || NO_CURL,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "brick-h2-"));
    try {
      const pki = await makeTestCertificates(dir);
      const { server, port } = await startServer(echo, { cert: pki.cert, key: pki.key });
      try {
        const url = `https://localhost:${port}/tls`;
        const h2 = await run("curl", ["-s", "-i", "--http2", "--cacert", pki.caFile, url]);
        assert.match(h2, /^HTTP\/2 200 \r\n/);
        assert.ok(h2.endsWith(`GET https://localhost:${port}/tls 0`), h2);
        const h1 = await run("curl", ["-s", "-i", "--http1.1", "--cacert", pki.caFile, url]);
        assert.match(h1, /^HTTP\/1\.1 200 OK\r\n/);
        const client = http2.connect(url, { ca: pki.ca });
        client.on("error", () => {});
        const response = await within(request(client, { ":path": "/node" }), 5_000, "node:http2");
        assert.equal(decoder.decode(response.body), `GET https://localhost:${port}/node 0`);
        await closeClient(client);
      } finally {
        await server.shutdown();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("http2: { h2: false } offers only http/1.1 by ALPN on TLS", {
    skip: NO_OPENSSL || NO_CURL,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "brick-h2-"));
    try {
      const pki = await makeTestCertificates(dir);
      const { server, port } = await startServer(echo, {
        cert: pki.cert,
        key: pki.key,
        http2: { h2: false },
      });
      try {
        const url = `https://localhost:${port}/tls`;
        const result = await run("curl", ["-s", "-i", "--http2", "--cacert", pki.caFile, url]);
        assert.match(result, /^HTTP\/1\.1 200 OK\r\n/);
      } finally {
        await server.shutdown();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a bad preface after ALPN chose h2 is an HTTP/2 connection error: GOAWAY PROTOCOL_ERROR", {
    skip: NO_OPENSSL,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "brick-h2-"));
    try {
      const pki = await makeTestCertificates(dir);
      const { server, port } = await startServer(echo, { cert: pki.cert, key: pki.key });
      try {
        const socket = tls.connect({
          host: "127.0.0.1",
          port,
          servername: "localhost",
          ca: pki.ca,
          ALPNProtocols: ["h2"],
        });
        socket.on("error", () => {});
        await new Promise((resolve) => socket.once("secureConnect", resolve));
        assert.equal(socket.alpnProtocol, "h2");
        const received: Uint8Array[] = [];
        socket.on("data", (chunk: Uint8Array) => received.push(chunk));
        const closed = new Promise((resolve) => socket.once("close", resolve));
        socket.write("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
        await within(closed, 5_000, "the server to close");
        const bytes = new Uint8Array(Buffer.concat(received));
        let goaway = -1;
        for (let at = 0; at + FRAME_HEADER_SIZE <= bytes.length;) {
          const h = readFrameHeader(bytes, at);
          if (h.type === FrameType.GOAWAY) {
            goaway = new DataView(bytes.buffer, bytes.byteOffset + at + 9).getUint32(4);
          }
          at += FRAME_HEADER_SIZE + h.length;
        }
        assert.equal(goaway, ErrorCode.PROTOCOL_ERROR);
      } finally {
        await server.shutdown();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("headless Chromium loads a page and its fetch over https with h2", {
    skip: NO_OPENSSL || (chromiumPath() === null && "Chromium is not installed"),
    timeout: 60_000, // Chromium's start on a loaded machine exceeds Bun's 5 s default
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "brick-h2-"));
    try {
      const pki = await makeTestCertificates(dir);
      const page = "<!doctype html><p id=out>loading</p><script>" +
        "const nav = performance.getEntriesByType('navigation')[0].nextHopProtocol;" +
        "fetch('/data').then((r) => r.text()).then((t) => {" +
        "document.getElementById('out').textContent = nav + ' ' + t; });</script>";
      const { server, port } = await startServer(
        (request) =>
          new URL(request.url).pathname === "/data"
            ? new Response("data over h2")
            : new Response(page, { headers: { "content-type": "text/html" } }),
        {
          cert: pki.cert,
          key: pki.key,
        },
      );
      try {
        const dom = await dumpDom(`https://localhost:${port}/`, {
          timeoutMs: 30_000,
          virtualTimeBudgetMs: 5_000,
          args: ["--ignore-certificate-errors"],
        });
        assert.match(dom, /<p id="out">h2 data over h2<\/p>/);
      } finally {
        await server.shutdown();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const http2Option of [false, { h2c: false }] as const) {
    test(`http2: ${JSON.stringify(http2Option)} keeps plain connections on HTTP/1.1`, async () => {
      const { server, port } = await startServer(echo, { http2: http2Option });
      try {
        const raw = await RawH2.open(port, false);
        raw.send(PREFACE);
        await raw.waitClosed();
        assert.equal(raw.frames.filter((f) => f.type === FrameType.SETTINGS).length, 0);
      } finally {
        await server.shutdown();
      }
    });
  }

  test("shutdown() ends an HTTP/2 connection with GOAWAY after its stream finishes", async () => {
    const started = deferred<void>();
    const gate = deferred<void>();
    const { server, port } = await startServer(async () => {
      started.resolve();
      await gate.promise;
      return new Response("done");
    }, { shutdownTimeout: 5_000 });
    const raw = await RawH2.open(port);
    raw.send(raw.headers(1));
    await within(started.promise, 5_000, "the handler");
    const finished = server.shutdown();
    await raw.next((f) => f.type === FrameType.GOAWAY);
    gate.resolve();
    const data = await raw.next((f) => f.type === FrameType.DATA && f.streamId === 1);
    assert.equal(decoder.decode(data.payload), "done");
    await within(finished, 5_000, "the shutdown");
    await raw.waitClosed();
  });
});

describe("serve() with HTTP/2: the request object, limits and timeouts of HTTP/1.1", () => {
  const statusOf = (frame: RawFrame) => frame.fields![frame.fields!.indexOf(":status") + 1];
  const dataFrame = (id: number, bytes: number, end = false) =>
    encodeFrame(FrameType.DATA, end ? Flag.END_STREAM : 0, id, new Uint8Array(bytes));
  const POST: [string, string][] = [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "localhost"],
  ];

  test("an h2 request is the same lazy request object as HTTP/1.1's, not a built Request", async () => {
    const prototypes: object[] = [];
    const { server, port } = await startServer(async (request) => {
      prototypes.push(Object.getPrototypeOf(request));
      const line = `${request.method} ${request.url} ${request.headers.get("x-a")}`;
      return new Response(`${line} ${await request.text()}`);
    });
    try {
      const client = await connect(port);
      const h2 = await request(client, { ":method": "PUT", ":path": "/p?q", "x-a": "1" }, "body");
      assert.equal(decoder.decode(h2.body), `PUT http://127.0.0.1:${port}/p?q 1 body`);
      await closeClient(client);
      const h1 = await fetch(`http://127.0.0.1:${port}/`, { method: "POST", body: "x" });
      await h1.text();
      assert.equal(prototypes.length, 2);
      assert.notEqual(prototypes[0], Request.prototype, "h2 built a standard Request");
      assert.equal(prototypes[0], prototypes[1]);
    } finally {
      await server.shutdown();
    }
  });

  test("onResponse gets one entry per h2 response, with its status and the body bytes sent", async () => {
    const entries: ResponseLogEntry[] = [];
    const { server, port } = await startServer((request) => {
      if (new URL(request.url).pathname === "/boom") throw new Error("handler failed on purpose");
      return new Response(new Uint8Array(70_000), { status: 201 });
    }, {
      onResponse: (entry) => entries.push(entry),
      onError: () => new Response("no", { status: 500 }),
    });
    try {
      const client = await connect(port);
      const big = await request(client, { ":method": "GET", ":path": "/big?x=1" });
      const boom = await request(client, { ":method": "GET", ":path": "/boom" });
      const head = await request(client, { ":method": "HEAD", ":path": "/big" });
      assert.deepEqual([big.status, boom.status, head.status], [201, 500, 201]);
      await closeClient(client);
      await until(() => entries.length === 3, 5000, "three onResponse entries");
      const seen = entries.map((e) => [e.requestLine, e.method, e.target, e.status, e.bodyBytes]);
      seen.sort((a, b) => String(a[0]).localeCompare(String(b[0])));
      assert.deepEqual(seen, [
        ["GET /big?x=1 HTTP/2", "GET", "/big?x=1", 201, 70_000],
        ["GET /boom HTTP/2", "GET", "/boom", 500, 2],
        ["HEAD /big HTTP/2", "HEAD", "/big", 201, 0],
      ]);
      for (const entry of entries) {
        assert.equal(entry.error, undefined);
        assert.equal(entry.remoteAddr.transport, "tcp");
      }
    } finally {
      await server.shutdown();
    }
  });

  test("an :authority with userinfo or a bad host is malformed (§8.3.1): RST_STREAM PROTOCOL_ERROR", async () => {
    const { server, port } = await startServer(() => new Response("ran"));
    try {
      const raw = await RawH2.open(port);
      const ask = (id: number, authority: string) =>
        raw.headers(id, [], true, [[":method", "GET"], [":scheme", "http"], [":path", "/"], [
          ":authority",
          authority,
        ]]);
      raw.send(ask(1, "user@localhost"), ask(3, "bad host"), ask(5, "localhost:8080"));
      assert.equal(await raw.rst(1), ErrorCode.PROTOCOL_ERROR);
      assert.equal(await raw.rst(3), ErrorCode.PROTOCOL_ERROR);
      const ok = await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 5);
      assert.equal(statusOf(ok), "200");
      raw.close();
    } finally {
      await server.shutdown();
    }
  });

  test("request.bytes() and request.body read a 1 MiB upload past the stream windows", async () => {
    const { server, port } = await startServer(async (request) => {
      if (request.url.endsWith("/bytes")) return new Response(`${(await request.bytes()).length}`);
      let total = 0;
      for await (const chunk of request.body!) total += chunk.length;
      return new Response(`${total}`);
    });
    try {
      const client = await connect(port);
      const upload = new Uint8Array(1024 * 1024).fill(7);
      for (const path of ["/bytes", "/stream"]) {
        const response = await request(client, { ":method": "POST", ":path": path }, upload);
        assert.equal(decoder.decode(response.body), String(upload.length), path);
      }
      await closeClient(client);
    } finally {
      await server.shutdown();
    }
  });

  test("request.signal aborts and info.completed rejects when the client sends RST_STREAM", async () => {
    const aborted = deferred<unknown>();
    const completed = deferred<string>();
    const started = deferred<void>();
    const { server, port } = await startServer((request, info) => {
      request.signal.addEventListener("abort", () => aborted.resolve(request.signal.reason));
      info.completed.then(() => completed.resolve("resolved"), () => completed.resolve("rejected"));
      started.resolve();
      return new Promise<Response>(() => {}); // answers never
    });
    try {
      const raw = await RawH2.open(port);
      raw.send(raw.headers(1));
      await within(started.promise, 5_000, "the handler");
      raw.send(rstStreamFrame(1, ErrorCode.CANCEL));
      assert.match(
        String(await within(aborted.promise, 5_000, "request.signal")),
        /reset stream 1/,
      );
      assert.equal(await within(completed.promise, 5_000, "info.completed"), "rejected");
      raw.close();
    } finally {
      await server.shutdown();
    }
  });

  test("a content-length over maxBodyBytes is answered 413 before the handler, then RST_STREAM NO_ERROR", async () => {
    let calls = 0;
    const { server, port } = await startServer(() => {
      calls++;
      return new Response("ran");
    }, { maxBodyBytes: 1_000 });
    try {
      const raw = await RawH2.open(port);
      raw.send(raw.headers(1, [["content-length", "5000"]], false, POST));
      const head = await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 1);
      assert.equal(statusOf(head), "413");
      assert.equal(await raw.rst(1), ErrorCode.NO_ERROR);
      assert.equal(calls, 0);
      raw.close();
    } finally {
      await server.shutdown();
    }
  });

  test("a body that grows past maxBodyBytes fails its read, and the error the handler lets through answers 413", async () => {
    const { server, port } = await startServer(async (request) => {
      return new Response(`read ${(await request.bytes()).length}`);
    }, { maxBodyBytes: 1_000 });
    try {
      const raw = await RawH2.open(port);
      raw.send(raw.headers(1, [], false, POST), dataFrame(1, 600), dataFrame(1, 600));
      const head = await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 1);
      assert.equal(statusOf(head), "413");
      assert.equal(await raw.rst(1), ErrorCode.NO_ERROR);
      // The connection still serves.
      raw.send(raw.headers(3));
      const next = await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 3);
      assert.equal(statusOf(next), "200");
      raw.close();
    } finally {
      await server.shutdown();
    }
  });

  test("readTimeout: a request body that stalls is answered 408", async () => {
    const { server, port } = await startServer(async (request) => {
      return new Response(await request.text());
    }, { readTimeout: 300 });
    try {
      const raw = await RawH2.open(port);
      raw.send(raw.headers(1, [], false, POST), dataFrame(1, 10));
      const head = await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 1);
      assert.equal(statusOf(head), "408");
      raw.close();
    } finally {
      await server.shutdown();
    }
  });

  test("writeTimeout: a response stalled on a zero window is reset with CANCEL and request.signal aborts", async () => {
    const aborted = deferred<void>();
    const { server, port } = await startServer((request) => {
      request.signal.addEventListener("abort", () => aborted.resolve());
      return new Response(new Uint8Array(100_000));
    }, { writeTimeout: 300 });
    try {
      const raw = await RawH2.open(port, false);
      raw.send(PREFACE, settingsFrame([[Setting.INITIAL_WINDOW_SIZE, 0]]), settingsFrame([], true));
      raw.send(raw.headers(1));
      await raw.next((f) => f.type === FrameType.HEADERS && f.streamId === 1);
      assert.equal(await raw.rst(1), ErrorCode.CANCEL);
      await within(aborted.promise, 5_000, "request.signal");
      raw.close();
    } finally {
      await server.shutdown();
    }
  });
});
