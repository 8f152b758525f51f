// Tests for websocket.ts: the frame codec on its own, then brick's WebSocket
// over real TCP sockets on 127.0.0.1: raw frames for every protocol rule, and
// real clients (the runtime's WebSocket, the `ws` package, headless Chromium).
// Runtime-neutral (node:test, node:net), so the same file runs under
// `deno test`, `node --test` (on the npm build) and `bun test`.

import { describe, test } from "./_test_skips.ts";
import assert from "node:assert/strict";
import zlib from "node:zlib";
import WebSocket from "ws";
import type { Server } from "./mod.ts";
import {
  decodeClosePayload,
  decodeFrame,
  encodeClosePayload,
  encodeFrame,
  type Frame,
  isValidCloseCode,
  Opcode,
  type ServerWebSocket,
  upgradeWebSocket,
  type UpgradeWebSocketOptions,
  WebSocketHandshakeError,
  WebSocketProtocolError,
} from "./websocket.ts";
import {
  concat,
  deferred,
  delay,
  head,
  header,
  latin1Bytes,
  parseResponses,
  RawClient,
  rawExchange,
  startServer,
  until,
  within,
} from "./_test_utils.ts";
import { chromiumPath, dumpDom } from "./_test_browser.ts";
import chat, { type ChatEvent, createChat, MAX_TEXT } from "./examples/chat.ts";

/**
 * Bun's WebSocket client, which also stands in for the `ws` package on Bun,
 * sends a close frame without its reason and reports a server's 1001 as 1000.
 * The raw-frame tests check those bytes on Bun; client-side checks skip them.
 */
const onBun = "Bun" in globalThis;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytes = (text: string) => encoder.encode(text);

/** A frame as a client sends it: masked, final unless told. */
function clientFrame(opcode: number, payload: Uint8Array | string, fin = true): Uint8Array {
  const data = typeof payload === "string" ? bytes(payload) : payload;
  return encodeFrame({ fin, opcode, payload: data }, { mask: true });
}

/** A close frame's payload as the pair it carries. */
function closeOf(frame: Frame): { code: number; reason: string } {
  assert.equal(frame.opcode, Opcode.Close, `expected a close frame, got opcode ${frame.opcode}`);
  return decodeClosePayload(frame.payload);
}

// ─── The frame codec ────────────────────────────────────────────────────────

describe("frame codec", () => {
  test("encodeFrame() picks the 7-, 16- and 64-bit length forms at their boundaries", () => {
    const cases: [number, number, number][] = [
      [0, 2, 0],
      [125, 2, 125],
      [126, 4, 126],
      [65535, 4, 126],
      [65536, 10, 127],
    ];
    for (const [length, headerSize, lengthCode] of cases) {
      const frame = encodeFrame({
        fin: true,
        opcode: Opcode.Binary,
        payload: new Uint8Array(length),
      });
      assert.equal(frame.length, headerSize + length, `length ${length}`);
      assert.equal(frame[1] & 0x7f, lengthCode, `length ${length}`);
      const decoded = decodeFrame(frame, { masked: false });
      assert.equal(decoded?.frame.payload.length, length);
      assert.equal(decoded?.size, frame.length);
    }
    const big = encodeFrame({ fin: true, opcode: Opcode.Binary, payload: new Uint8Array(70000) });
    assert.deepEqual([...big.subarray(2, 10)], [0, 0, 0, 0, 0, 1, 0x11, 0x70]);
  });

  test("encodeFrame() masks as in RFC 6455's example, and decodeFrame() unmasks", () => {
    // RFC 6455 §5.7: a masked "Hello" with the key 37 fa 21 3d.
    const key = new Uint8Array([0x37, 0xfa, 0x21, 0x3d]);
    const frame = encodeFrame({ fin: true, opcode: Opcode.Text, payload: bytes("Hello") }, {
      mask: key,
    });
    assert.deepEqual(
      [...frame],
      [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
    );
    const decoded = decodeFrame(frame, { masked: true });
    assert.equal(decoder.decode(decoded!.frame.payload), "Hello");
    assert.deepEqual([...frame.subarray(6)], [0x7f, 0x9f, 0x4d, 0x51, 0x58], "input unchanged");
  });

  test("encodeFrame() with mask: true uses a fresh random key", () => {
    const payload = new Uint8Array(64);
    const a = encodeFrame({ fin: true, opcode: Opcode.Binary, payload }, { mask: true });
    const b = encodeFrame({ fin: true, opcode: Opcode.Binary, payload }, { mask: true });
    assert.equal(a[1] & 0x80, 0x80);
    assert.notDeepEqual(a.subarray(2, 6), b.subarray(2, 6));
    assert.deepEqual(decodeFrame(a)!.frame.payload, payload);
  });

  test("decodeFrame() returns null for every proper prefix of a frame", () => {
    for (const length of [5, 300, 70000]) {
      const frame = encodeFrame(
        { fin: false, opcode: Opcode.Text, payload: new Uint8Array(length).fill(65) },
        { mask: true },
      );
      for (const cut of [0, 1, 2, 3, 5, 9, 13, frame.length - 1].filter((n) => n < frame.length)) {
        assert.equal(decodeFrame(frame.subarray(0, cut)), null, `length ${length}, cut ${cut}`);
      }
      const decoded = decodeFrame(concat([frame, new Uint8Array([1, 2, 3])]))!;
      assert.equal(decoded.size, frame.length, "stops at the frame's end");
      assert.equal(decoded.frame.fin, false);
    }
  });

  test("decodeFrame() rejects what no single frame may be, with the close code to send", () => {
    const raw = (...values: number[]) => new Uint8Array(values);
    const cases: [string, Uint8Array, DecodeCase][] = [
      ["RSV1 set", raw(0xc1, 0x00), { code: 1002 }],
      ["RSV3 set", raw(0x92, 0x00), { code: 1002 }],
      ["opcode 0x3", raw(0x83, 0x00), { code: 1002 }],
      ["opcode 0xb", raw(0x8b, 0x00), { code: 1002 }],
      ["fragmented ping", raw(0x09, 0x00), { code: 1002 }],
      ["close of 126 bytes", raw(0x88, 0x7e, 0x00, 0x7e), { code: 1002 }],
      ["64-bit length top bit", raw(0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1), { code: 1002 }],
      ["unmasked, masking required", raw(0x81, 0x00), { code: 1002, masked: true }],
      ["masked, masking forbidden", raw(0x81, 0x80, 1, 2, 3, 4), { code: 1002, masked: false }],
      ["over maxPayload", raw(0x82, 0x7e, 0x01, 0x00), { code: 1009, maxPayload: 255 }],
    ];
    for (const [what, frame, { code, ...options }] of cases) {
      assert.throws(
        () => decodeFrame(frame, options),
        (error) => error instanceof WebSocketProtocolError && error.code === code,
        what,
      );
    }
    // The size limit is for data: a ping of 125 bytes passes under a smaller limit.
    const ping = encodeFrame({ fin: true, opcode: Opcode.Ping, payload: new Uint8Array(125) });
    assert.equal(decodeFrame(ping, { maxPayload: 10 })?.frame.payload.length, 125);
  });

  test("isValidCloseCode() accepts the codes an endpoint may send and no others", () => {
    const valid = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1014, 3000, 4999];
    const invalid = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 1000.5];
    for (const code of valid) assert.equal(isValidCloseCode(code), true, `${code}`);
    for (const code of invalid) assert.equal(isValidCloseCode(code), false, `${code}`);
  });

  test("decodeClosePayload() reads code and reason, and rejects bad ones", () => {
    assert.deepEqual(decodeClosePayload(encodeClosePayload(4001, "bye ✓")), {
      code: 4001,
      reason: "bye ✓",
    });
    assert.deepEqual(decodeClosePayload(new Uint8Array(0)), { code: 1005, reason: "" });
    const failsWith = (payload: Uint8Array, code: number) =>
      assert.throws(
        () => decodeClosePayload(payload),
        (error) => error instanceof WebSocketProtocolError && error.code === code,
      );
    failsWith(new Uint8Array([0x03]), 1002);
    failsWith(encodeClosePayload(1005), 1002);
    failsWith(encodeClosePayload(1006), 1002);
    failsWith(encodeClosePayload(999), 1002);
    failsWith(new Uint8Array([0x03, 0xe8, 0xc3, 0x28]), 1007);
  });
});

interface DecodeCase {
  code: number;
  masked?: boolean;
  maxPayload?: number;
}

// ─── Servers and raw WebSocket clients ──────────────────────────────────────

/** What a test server saw of its sockets. */
interface Seen {
  sockets: ServerWebSocket[];
  messages: (string | ArrayBuffer | Blob)[];
  closes: CloseEvent[];
  errors: Event[];
  /** Resolves with each socket's close event, in order of closing. */
  closed(count?: number): Promise<CloseEvent[]>;
}

interface WsServer {
  server: Server;
  port: number;
  seen: Seen;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts brick with a WebSocket echo on every path: each message goes back as
 * it came. `setup` may change the socket (binaryType, handlers) before it opens.
 */
async function startEcho(
  options: UpgradeWebSocketOptions = {},
  setup: (socket: ServerWebSocket, request: Request) => void = () => {},
): Promise<WsServer> {
  const seen: Seen = {
    sockets: [],
    messages: [],
    closes: [],
    errors: [],
    async closed(count = 1) {
      await until(() => seen.closes.length >= count, 5000, `${count} server close event(s)`);
      return seen.closes;
    },
  };
  const { server, port } = await startServer((request) => {
    const { socket, response } = upgradeWebSocket(request, options);
    seen.sockets.push(socket);
    socket.onmessage = (event) => {
      seen.messages.push(event.data);
      socket.send(event.data);
    };
    socket.onclose = (event) => seen.closes.push(event);
    socket.onerror = (event) => seen.errors.push(event);
    setup(socket, request);
    return response;
  });
  return { server, port, seen, [Symbol.asyncDispose]: () => server.shutdown() };
}

const KEY = "dGhlIHNhbXBsZSBub25jZQ==";
/** The accept value RFC 6455 §1.3 gives for KEY. */
const ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/** A WebSocket handshake request; `fields` replace the defaults of the same name. */
function handshake(...fields: string[]): string {
  const defaults = [
    "Host: x",
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${KEY}`,
    "Sec-WebSocket-Version: 13",
  ];
  const names = new Set(fields.map((field) => field.split(":")[0].toLowerCase()));
  const kept = defaults.filter((field) => !names.has(field.split(":")[0].toLowerCase()));
  return head("GET /chat HTTP/1.1", ...kept, ...fields.filter((field) => !field.endsWith(": -")));
}

/** A raw TCP client that did the handshake and now reads server frames. */
class RawWebSocket {
  constructor(readonly client: RawClient, readonly headEnd: number, readonly head: string) {}

  static async open(port: number, ...fields: string[]): Promise<RawWebSocket> {
    const client = await RawClient.connect(port);
    await client.write(handshake(...fields));
    await client.waitForText("\r\n\r\n");
    const end = client.text.indexOf("\r\n\r\n") + 4;
    const ws = new RawWebSocket(client, end, client.text.slice(0, end));
    assert.match(ws.head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    return ws;
  }

  /** Every complete server frame so far; throws if the server broke the protocol. */
  get frames(): Frame[] {
    const frames: Frame[] = [];
    let rest = this.client.received.subarray(this.headEnd);
    for (;;) {
      const decoded = decodeFrame(rest, { masked: false, allowedRsv: 4 });
      if (decoded === null) return frames;
      frames.push(decoded.frame);
      rest = rest.subarray(decoded.size);
    }
  }

  /** Waits for `count` frames in all and returns them. */
  async waitFrames(count: number, ms = 3000): Promise<Frame[]> {
    await this.client.waitFor(() => this.frames.length >= count, `${count} frame(s)`, ms);
    return this.frames;
  }

  /** Waits for the server's close frame and for the server to close TCP. */
  async waitClose(ms = 3000): Promise<{ code: number; reason: string }> {
    await this.client.waitFor(
      () => this.frames.some((frame) => frame.opcode === Opcode.Close),
      "a close frame",
      ms,
    );
    await this.client.waitClosed(ms);
    return closeOf(this.frames.find((frame) => frame.opcode === Opcode.Close)!);
  }

  send(frame: Uint8Array): Promise<void> {
    return this.client.write(frame);
  }

  destroy(): void {
    this.client.destroy();
  }
}

/** Opens a raw WebSocket to a fresh echo server, runs `body`, then cleans up. */
async function withRaw(
  body: (ws: RawWebSocket, ctx: WsServer) => Promise<void>,
  options: UpgradeWebSocketOptions = {},
  setup?: (socket: ServerWebSocket, request: Request) => void,
): Promise<void> {
  await using ctx = await startEcho(options, setup);
  const ws = await RawWebSocket.open(ctx.port);
  try {
    await body(ws, ctx);
  } finally {
    ws.destroy();
  }
}

/** Sends `frame` and expects the server to fail the connection with `code`. */
async function expectFailure(
  frames: Uint8Array[],
  code: number,
  options?: UpgradeWebSocketOptions,
) {
  await withRaw(async (ws, { seen }) => {
    for (const frame of frames) await ws.send(frame);
    const close = await ws.waitClose();
    assert.equal(close.code, code, `close reason: ${close.reason}`);
    const [event] = await seen.closed();
    assert.equal(event.code, code);
    assert.equal(event.wasClean, false);
    assert.equal(seen.errors.length, 1, "an error event before close");
  }, options);
}

// ─── The handshake ──────────────────────────────────────────────────────────

describe("upgradeWebSocket() handshake", () => {
  test("answers 101 with RFC 6455's accept key, Upgrade and Connection", async () => {
    let status = 0;
    await using ctx = await startEcho({}, (_socket, request) => {
      status = request.headers.get("sec-websocket-key") === KEY ? 101 : 0;
    });
    const ws = await RawWebSocket.open(ctx.port);
    try {
      const [response] = parseResponses(latin1Bytes(ws.head));
      assert.equal(response.status, 101);
      assert.equal(header(response, "sec-websocket-accept"), ACCEPT);
      assert.equal(header(response, "upgrade")?.toLowerCase(), "websocket");
      assert.equal(header(response, "connection")?.toLowerCase(), "upgrade");
      assert.equal(header(response, "sec-websocket-protocol"), undefined);
      assert.equal(header(response, "content-length"), undefined);
      assert.equal(header(response, "transfer-encoding"), undefined);
      assert.equal(status, 101);
    } finally {
      ws.destroy();
    }
  });

  test("the response the handler returns has status 101, as Deno's does", async () => {
    const seen = deferred<number>();
    const { server, port } = await startServer((request) => {
      const { response } = upgradeWebSocket(request);
      seen.resolve(response.status);
      return response;
    });
    try {
      const ws = await RawWebSocket.open(port);
      ws.destroy();
      assert.equal(await seen.promise, 101);
    } finally {
      await server.shutdown();
    }
  });

  const refusals: [string, string, number, RegExp][] = [
    ["a POST", handshake().replace("GET", "POST"), 400, /must be a GET request, not POST/],
    ["no Sec-WebSocket-Key", handshake("Sec-WebSocket-Key: -"), 400, /Sec-WebSocket-Key/],
    ["a short key", handshake("Sec-WebSocket-Key: c2hvcnQ="), 400, /Sec-WebSocket-Key/],
    ["two keys", handshake(`Sec-WebSocket-Key: ${KEY}`, `Sec-WebSocket-Key: ${KEY}`), 400, /Key/],
    ["no Upgrade", handshake("Upgrade: -"), 400, /Upgrade: websocket/],
    ["Upgrade: h2c", handshake("Upgrade: h2c"), 400, /Upgrade: websocket/],
    ["no Connection", handshake("Connection: -"), 400, /Connection: Upgrade/],
    ["Connection: keep-alive", handshake("Connection: keep-alive"), 400, /Connection: Upgrade/],
    ["version 8", handshake("Sec-WebSocket-Version: 8"), 426, /version 13/],
    ["no version", handshake("Sec-WebSocket-Version: -"), 426, /version 13/],
  ];
  for (const [what, request, status, reason] of refusals) {
    test(`answers ${status} to a handshake with ${what}`, async () => {
      let onErrorCalls = 0;
      const { server, port } = await startServer(
        (request) => upgradeWebSocket(request).response,
        {
          onError() {
            onErrorCalls++;
            return new Response("onError", { status: 500 });
          },
        },
      );
      try {
        const reply = await rawExchange(port, [request], { responses: 1 });
        const [response] = parseResponses(reply.bytes);
        assert.equal(response.status, status);
        assert.match(response.text, reason);
        if (status === 426) assert.equal(header(response, "sec-websocket-version"), "13");
        assert.equal(onErrorCalls, 0, "a handshake error carries its answer past onError");
      } finally {
        await server.shutdown();
      }
    });
  }

  test("accepts Upgrade and Connection as token lists, in any case", async () => {
    await using ctx = await startEcho();
    const ws = await RawWebSocket.open(
      ctx.port,
      "Upgrade: foo/2, WebSocket",
      "Connection: keep-alive, UPGRADE",
    );
    ws.destroy();
  });

  test("WebSocketHandshakeError.toResponse() gives the answer for a custom handler", async () => {
    const { server, port } = await startServer((request) => {
      try {
        return upgradeWebSocket(request).response;
      } catch (error) {
        if (error instanceof WebSocketHandshakeError) return error.toResponse();
        throw error;
      }
    });
    try {
      const reply = await rawExchange(port, [handshake("Sec-WebSocket-Version: 7")], {
        responses: 1,
      });
      const [response] = parseResponses(reply.bytes);
      assert.equal(response.status, 426);
      assert.equal(header(response, "sec-websocket-version"), "13");
    } finally {
      await server.shutdown();
    }
  });

  test("throws a TypeError for a request that is not from brick's serve()", () => {
    const request = new Request("http://x/", {
      headers: {
        upgrade: "websocket",
        connection: "Upgrade",
        "sec-websocket-key": KEY,
        "sec-websocket-version": "13",
      },
    });
    assert.throws(() => upgradeWebSocket(request), {
      name: "TypeError",
      message: /needs a request from brick's serve\(\)/,
    });
  });

  const selections: [string, string | string[] | undefined, string | undefined][] = [
    ["chat, superchat", "superchat", "superchat"],
    ["chat, superchat", ["v3", "chat", "superchat"], "chat"],
    ["chat", ["v3", "v4"], undefined],
    ["chat", undefined, undefined],
  ];
  for (const [offered, wanted, selected] of selections) {
    test(`selects subprotocol ${selected} of ${offered} when the server wants ${wanted}`, async () => {
      let protocol = "unset";
      await using ctx = await startEcho({ protocol: wanted }, (socket) => {
        protocol = socket.protocol;
      });
      const ws = await RawWebSocket.open(ctx.port, `Sec-WebSocket-Protocol: ${offered}`);
      ws.destroy();
      const [response] = parseResponses(latin1Bytes(ws.head));
      assert.equal(header(response, "sec-websocket-protocol"), selected);
      assert.equal(protocol, selected ?? "");
    });
  }

  test("a handler that returns another response gets plain HTTP, and the socket closes", async () => {
    const closed = deferred<CloseEvent>();
    const errors: Event[] = [];
    const { server, port } = await startServer((request) => {
      const { socket } = upgradeWebSocket(request);
      socket.onerror = (event) => errors.push(event);
      socket.onclose = (event) => closed.resolve(event);
      return new Response("not today", { status: 403 });
    });
    try {
      const reply = await rawExchange(port, [handshake()], { responses: 1 });
      const [response] = parseResponses(reply.bytes);
      assert.equal(response.status, 403);
      assert.equal(response.text, "not today");
      const event = await within(closed.promise, 5000, "the socket's close event");
      assert.equal(event.code, 1006);
      assert.equal(event.wasClean, false);
      assert.equal(errors.length, 1);
    } finally {
      await server.shutdown();
    }
  });

  test("send() before the socket opens throws InvalidStateError", async () => {
    const thrown = deferred<unknown>();
    const { server, port } = await startServer((request) => {
      const { socket, response } = upgradeWebSocket(request);
      try {
        socket.send("too early");
        thrown.resolve(null);
      } catch (error) {
        thrown.resolve(error);
      }
      return response;
    });
    try {
      const ws = await RawWebSocket.open(port);
      ws.destroy();
      const error = await thrown.promise;
      assert.ok(error instanceof DOMException);
      assert.equal(error.name, "InvalidStateError");
    } finally {
      await server.shutdown();
    }
  });
});

// ─── Frames over a raw socket ───────────────────────────────────────────────

describe("ServerWebSocket over raw frames", () => {
  test("echoes masked text and binary frames as unmasked frames", async () => {
    await withRaw(
      async (ws) => {
        await ws.send(clientFrame(Opcode.Text, "héllo"));
        await ws.send(clientFrame(Opcode.Binary, new Uint8Array([0, 1, 2, 255])));
        const [text, binary] = await ws.waitFrames(2);
        assert.equal(text.opcode, Opcode.Text);
        assert.equal(decoder.decode(text.payload), "héllo");
        assert.equal(binary.opcode, Opcode.Binary);
        assert.deepEqual([...binary.payload], [0, 1, 2, 255]);
        assert.ok(text.fin && binary.fin);
      },
      {},
      (socket) => socket.binaryType = "arraybuffer",
    );
  });

  test("joins a fragmented message, answering a ping between its fragments", async () => {
    await withRaw(async (ws, { seen }) => {
      // "€" is three bytes, split across the first two fragments.
      const euro = bytes("€");
      await ws.send(clientFrame(Opcode.Text, concat([bytes("a"), euro.subarray(0, 1)]), false));
      await ws.send(clientFrame(Opcode.Ping, "mid"));
      await ws.send(
        clientFrame(Opcode.Continuation, concat([euro.subarray(1), bytes("b")]), false),
      );
      await ws.send(clientFrame(Opcode.Continuation, "c", true));
      const [pong, echo] = await ws.waitFrames(2);
      assert.equal(pong.opcode, Opcode.Pong);
      assert.equal(decoder.decode(pong.payload), "mid");
      assert.equal(decoder.decode(echo.payload), "a€bc");
      assert.deepEqual(seen.messages, ["a€bc"]);
    });
  });

  test("joins a fragmented binary message delivered as an ArrayBuffer", async () => {
    await withRaw(
      async (ws, { seen }) => {
        await ws.send(clientFrame(Opcode.Binary, new Uint8Array([1, 2]), false));
        await ws.send(clientFrame(Opcode.Continuation, new Uint8Array([3]), false));
        await ws.send(clientFrame(Opcode.Continuation, new Uint8Array([4, 5]), true));
        const [echo] = await ws.waitFrames(1);
        assert.deepEqual([...echo.payload], [1, 2, 3, 4, 5]);
        assert.ok(seen.messages[0] instanceof ArrayBuffer);
      },
      {},
      (socket) => socket.binaryType = "arraybuffer",
    );
  });

  test("delivers binary as a Blob by default, and sends a Blob back in order", async () => {
    await withRaw(async (ws, { seen }) => {
      await ws.send(clientFrame(Opcode.Binary, new Uint8Array([7, 8, 9])));
      await ws.send(clientFrame(Opcode.Text, "after"));
      const [first, second] = await ws.waitFrames(2);
      assert.ok(seen.messages[0] instanceof Blob);
      assert.deepEqual([...first.payload], [7, 8, 9]);
      assert.equal(decoder.decode(second.payload), "after");
    });
  });

  test("reads a frame that arrives one byte at a time", async () => {
    await withRaw(async (ws) => {
      const frame = clientFrame(Opcode.Text, "x".repeat(300));
      for (let i = 0; i < frame.length; i += 1) {
        await ws.send(frame.subarray(i, i + 1));
        if (i < 12) await delay(2);
      }
      const [echo] = await ws.waitFrames(1);
      assert.equal(decoder.decode(echo.payload), "x".repeat(300));
    });
  });

  test("reads frames larger than its read buffer, split anywhere and packed with small ones", async () => {
    const big = (size: number, seed: number) =>
      new Uint8Array(size).map((_, i) => (i * seed) & 0xff);
    const a = big(40_000, 7), b = big(20_000, 13), c = big(70_000, 3);
    const stream = concat([
      clientFrame(Opcode.Binary, a),
      clientFrame(Opcode.Text, "small"),
      clientFrame(Opcode.Binary, b, false),
      clientFrame(Opcode.Ping, "p"),
      clientFrame(Opcode.Continuation, c, true),
      clientFrame(Opcode.Text, "last"),
    ]);
    await withRaw(
      async (ws) => {
        for (let at = 0, step = 1; at < stream.length; at += step, step = step * 3 + 1) {
          await ws.send(stream.subarray(at, at + step));
        }
        const frames = await ws.waitFrames(5);
        assert.deepEqual(frames.map((frame) => frame.opcode), [2, 1, 0xa, 2, 1]);
        assert.deepEqual(frames[0].payload, a);
        assert.equal(decoder.decode(frames[1].payload), "small");
        assert.deepEqual(frames[3].payload, concat([b, c]));
        assert.equal(decoder.decode(frames[4].payload), "last");
      },
      {},
      (socket) => socket.binaryType = "arraybuffer",
    );
  });

  test("answers a ping with a pong carrying the same payload", async () => {
    await withRaw(async (ws) => {
      await ws.send(clientFrame(Opcode.Ping, new Uint8Array([1, 2, 3])));
      await ws.send(clientFrame(Opcode.Pong, "unsolicited pongs are ignored"));
      await ws.send(clientFrame(Opcode.Ping, new Uint8Array(125).fill(9)));
      const [a, b] = await ws.waitFrames(2);
      assert.equal(a.opcode, Opcode.Pong);
      assert.deepEqual([...a.payload], [1, 2, 3]);
      assert.equal(b.opcode, Opcode.Pong);
      assert.equal(b.payload.length, 125);
    });
  });

  test("completes a client's close handshake, with code and reason seen by the server", async () => {
    await withRaw(async (ws, { seen }) => {
      await ws.send(clientFrame(Opcode.Close, encodeClosePayload(4001, "done here")));
      const close = await ws.waitClose();
      assert.equal(close.code, 4001, "the server echoes the code");
      const [event] = await seen.closed();
      assert.equal(event.code, 4001);
      assert.equal(event.reason, "done here");
      assert.equal(event.wasClean, true);
      assert.equal(seen.errors.length, 0);
      assert.equal(seen.sockets[0].readyState, 3);
    });
  });

  test("answers an empty close frame with an empty one; the server sees 1005", async () => {
    await withRaw(async (ws, { seen }) => {
      await ws.send(clientFrame(Opcode.Close, new Uint8Array(0)));
      await ws.client.waitClosed();
      const [frame] = ws.frames;
      assert.equal(frame.opcode, Opcode.Close);
      assert.equal(frame.payload.length, 0);
      const [event] = await seen.closed();
      assert.equal(event.code, 1005);
      assert.equal(event.wasClean, true);
    });
  });

  test("close() from the server sends code and reason, then waits for the client's close", async () => {
    await withRaw(
      async (ws, { seen }) => {
        seen.sockets[0].close(1000, "bye now");
        assert.equal(seen.sockets[0].readyState, 2);
        const [frame] = await ws.waitFrames(1);
        assert.deepEqual(closeOf(frame), { code: 1000, reason: "bye now" });
        await delay(50);
        assert.equal(ws.client.closed, false, "TCP stays open until the client answers");
        await ws.send(clientFrame(Opcode.Close, encodeClosePayload(1000)));
        await ws.client.waitClosed();
        const [event] = await seen.closed();
        assert.equal(event.code, 1000);
        assert.equal(event.wasClean, true);
      },
      {},
      (socket) => socket.onopen = () => {},
    );
  });

  test("close() before the socket opens sends the close right after the 101, and no open event", async () => {
    let opened = false;
    await withRaw(
      async (ws, { seen }) => {
        const [frame] = await ws.waitFrames(1);
        assert.deepEqual(closeOf(frame), { code: 4003, reason: "not welcome" });
        await ws.send(clientFrame(Opcode.Close, encodeClosePayload(4003)));
        const [event] = await seen.closed();
        assert.equal(event.wasClean, true);
        assert.equal(opened, false);
      },
      {},
      (socket) => {
        socket.onopen = () => opened = true;
        socket.close(4003, "not welcome");
      },
    );
  });

  test("send() takes strings, ArrayBuffers, views at an offset and Blobs, in order", async () => {
    await withRaw(
      async (ws) => {
        const frames = await ws.waitFrames(5);
        assert.deepEqual(frames.map((frame) => frame.opcode), [1, 2, 2, 2, 2]);
        assert.equal(decoder.decode(frames[0].payload), "text");
        assert.deepEqual([...frames[1].payload], [1, 2]);
        assert.deepEqual([...frames[2].payload], [12, 13, 14]);
        assert.deepEqual([...frames[3].payload], [0, 0, 1, 0]);
        assert.deepEqual([...frames[4].payload], [98, 108, 111, 98]);
      },
      {},
      (socket) => {
        socket.onopen = () => {
          socket.send("text");
          socket.send(new Uint8Array([1, 2]).buffer);
          socket.send(new Uint8Array([10, 11, 12, 13, 14, 15]).subarray(2, 5));
          const view = new DataView(new ArrayBuffer(8), 2, 4);
          view.setUint16(2, 256);
          socket.send(view);
          socket.send(new Blob(["blob"]));
        };
      },
    );
  });

  test("close() validates its code and reason like a browser", async () => {
    await withRaw((_ws, { seen }) => {
      const socket = seen.sockets[0];
      assert.throws(() => socket.close(1005), { name: "InvalidAccessError" });
      assert.throws(() => socket.close(2000), { name: "InvalidAccessError" });
      assert.throws(() => socket.close(1000, "x".repeat(124)), { name: "SyntaxError" });
      assert.equal(socket.readyState, 1, "a refused close() leaves the socket open");
      return Promise.resolve();
    });
  });

  test("messages that arrive after close() are dropped", async () => {
    await withRaw(async (ws, { seen }) => {
      seen.sockets[0].close(1000);
      await ws.send(clientFrame(Opcode.Text, "late"));
      await ws.send(clientFrame(Opcode.Close, encodeClosePayload(1000)));
      await ws.client.waitClosed();
      assert.deepEqual(seen.messages, []);
      assert.deepEqual(ws.frames.map((frame) => frame.opcode), [Opcode.Close]);
    });
  });

  test(
    "closes TCP when the client does not answer close() within 5 s",
    { timeout: 15_000 },
    async () => {
      await withRaw(async (ws, { seen }) => {
        const started = Date.now();
        seen.sockets[0].close(4000);
        await ws.client.waitClosed(8000);
        const waited = Date.now() - started;
        assert.ok(waited >= 4500 && waited < 8000, `closed after ${waited} ms`);
        const [event] = await seen.closed();
        assert.equal(event.code, 1006);
        assert.equal(event.wasClean, false);
      });
    },
  );

  test("a client that vanishes fires close with 1006 and wasClean false", async () => {
    await withRaw(async (ws, { seen }) => {
      await ws.send(clientFrame(Opcode.Text, "hi"));
      await ws.waitFrames(1);
      ws.client.reset();
      const [event] = await seen.closed();
      assert.equal(event.code, 1006);
      assert.equal(event.wasClean, false);
      assert.equal(seen.sockets[0].readyState, 3);
    });
  });

  test("a client that sends FIN without a close frame fires close with 1006", async () => {
    await withRaw(async (ws, { seen }) => {
      await ws.client.end();
      const [event] = await seen.closed();
      assert.equal(event.code, 1006);
      assert.equal(event.wasClean, false);
      await ws.client.waitClosed();
    });
  });

  test("bytes after the upgrade are frames, never HTTP", async () => {
    const request = head("GET /other HTTP/1.1", "Host: x");
    await withRaw(async (ws) => {
      await ws.send(clientFrame(Opcode.Text, request));
      const [echo] = await ws.waitFrames(1);
      assert.equal(decoder.decode(echo.payload), request);
      await delay(50);
      const after = ws.client.received.subarray(ws.headEnd);
      assert.equal(after.length, decodeFrame(after)!.size, "the echo frame and nothing else");
    });
    // Sent bare, a request's first byte "G" (0x47) reads as a frame with RSV bits set.
    await expectFailure([latin1Bytes(request)], 1002);
  });

  test("frames sent right behind the handshake, in the same write, are read", async () => {
    await using ctx = await startEcho();
    const client = await RawClient.connect(ctx.port);
    try {
      await client.write(concat([latin1Bytes(handshake()), clientFrame(Opcode.Text, "eager")]));
      await client.waitFor(() => /eager$/.test(client.text), "the echo");
    } finally {
      client.destroy();
    }
  });
});

describe("ServerWebSocket fails the connection on protocol errors", () => {
  test("an unmasked client frame: close 1002", async () => {
    await expectFailure(
      [encodeFrame({ fin: true, opcode: Opcode.Text, payload: bytes("x") })],
      1002,
    );
  });

  test("invalid UTF-8 in a text frame: close 1007", async () => {
    await expectFailure([clientFrame(Opcode.Text, new Uint8Array([0x68, 0xc3, 0x28]))], 1007);
  });

  test("invalid UTF-8 in a fragment, before the message ends: close 1007", async () => {
    await expectFailure([
      clientFrame(Opcode.Text, "fine", false),
      clientFrame(Opcode.Continuation, new Uint8Array([0xed, 0xa0, 0x80]), false),
    ], 1007);
  });

  test("a text message that ends inside a character: close 1007", async () => {
    await expectFailure([
      clientFrame(Opcode.Text, "ok", false),
      clientFrame(Opcode.Continuation, new Uint8Array([0xe2, 0x82]), true),
    ], 1007);
  });

  test("a control frame over 125 bytes: close 1002", async () => {
    await expectFailure([clientFrame(Opcode.Ping, new Uint8Array(126))], 1002);
  });

  test("a fragmented control frame: close 1002", async () => {
    await expectFailure([clientFrame(Opcode.Ping, "x", false)], 1002);
  });

  test("reserved bits without an extension: close 1002", async () => {
    const frame = encodeFrame({ fin: true, rsv: 4, opcode: Opcode.Text, payload: bytes("x") }, {
      mask: true,
    });
    await expectFailure([frame], 1002);
  });

  for (const opcode of [0x3, 0x7, 0xb, 0xf]) {
    test(`unknown opcode 0x${opcode.toString(16)}: close 1002`, async () => {
      await expectFailure([clientFrame(opcode, "")], 1002);
    });
  }

  test("a continuation frame with no message to continue: close 1002", async () => {
    await expectFailure([clientFrame(Opcode.Continuation, "x")], 1002);
  });

  test("a new message before the fragmented one ended: close 1002", async () => {
    await expectFailure([
      clientFrame(Opcode.Text, "a", false),
      clientFrame(Opcode.Binary, "b"),
    ], 1002);
  });

  test("a close frame with a one-byte payload: close 1002", async () => {
    await expectFailure([clientFrame(Opcode.Close, new Uint8Array([3]))], 1002);
  });

  test("a close frame with code 1005 (reserved): close 1002", async () => {
    await expectFailure([clientFrame(Opcode.Close, encodeClosePayload(1005))], 1002);
  });

  test("a close reason that is not UTF-8: close 1007", async () => {
    await expectFailure([clientFrame(Opcode.Close, new Uint8Array([0x03, 0xe8, 0xff]))], 1007);
  });

  test("a message over maxMessageSize in one frame: close 1009", async () => {
    await expectFailure([clientFrame(Opcode.Binary, new Uint8Array(1001))], 1009, {
      maxMessageSize: 1000,
    });
  });

  test("a message over maxMessageSize across fragments: close 1009", async () => {
    await expectFailure(
      [
        clientFrame(Opcode.Binary, new Uint8Array(600), false),
        clientFrame(Opcode.Continuation, new Uint8Array(600), true),
      ],
      1009,
      { maxMessageSize: 1000 },
    );
  });

  test("a frame header announcing too much: close 1009 before the payload is sent", async () => {
    // Only the header of a 1 GiB frame: the server must not wait for the payload.
    const header = new Uint8Array([0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]);
    await expectFailure([header], 1009);
  });

  test("a message exactly at maxMessageSize passes", async () => {
    await withRaw(async (ws) => {
      await ws.send(clientFrame(Opcode.Binary, new Uint8Array(400), false));
      await ws.send(clientFrame(Opcode.Continuation, new Uint8Array(600), true));
      const [echo] = await ws.waitFrames(1);
      assert.equal(echo.payload.length, 1000);
    }, { maxMessageSize: 1000 });
  });
});

// ─── Bounded messages: fragments, memory and UTF-8 as it arrives ─────────────

const MiB = 1024 * 1024;

/** `count` empty, masked, non-final continuation frames (6 bytes each), back to back. */
function emptyContinuations(count: number): Uint8Array {
  const frames = new Uint8Array(count * 6);
  for (let i = 0; i < frames.length; i += 6) {
    frames[i + 1] = 0x80; // masked, no payload; the key stays 00 00 00 00
  }
  return frames;
}

/**
 * Sends the start of a text message, then `count` empty continuation frames
 * in writes of 1 MiB; stops early if the server closes. Returns how many left.
 */
async function sendEmptyFragments(ws: RawWebSocket, count: number): Promise<number> {
  await ws.send(clientFrame(Opcode.Text, "x", false));
  const perBatch = Math.floor(MiB / 6);
  const batch = emptyContinuations(perBatch);
  // Bun never acknowledges a write after the peer closed: stop at the close.
  const closed = ws.client.waitFor(() => ws.client.closed, "the close", 120_000).catch(() => {});
  let sent = 0;
  while (sent < count && !ws.client.closed) {
    const n = Math.min(perBatch, count - sent);
    try {
      await Promise.race([ws.send(n === perBatch ? batch : batch.subarray(0, n * 6)), closed]);
    } catch {
      break; // the server closed the connection
    }
    sent += n;
  }
  return sent;
}

/** The process's resident memory, or null where the runtime does not say. */
function rss(): number | null {
  try {
    return process.memoryUsage().rss;
  } catch {
    return null;
  }
}

/** Asserts that RSS grew less than `limit` bytes since `before`. */
function assertGrowthBelow(before: number | null, limit: number): void {
  const after = rss();
  if (before === null || after === null) return;
  const growth = after - before;
  assert.ok(growth < limit, `RSS grew ${(growth / MiB).toFixed(1)} MiB`);
}

describe("ServerWebSocket keeps each message bounded", () => {
  test("3 million empty continuation frames: closed with 1008 at maxFragments", {
    timeout: 60_000,
  }, async () => {
    await withRaw(async (ws, { seen }) => {
      const before = rss();
      await sendEmptyFragments(ws, 3_000_000);
      const close = await ws.waitClose(20_000);
      assert.equal(close.code, 1008, close.reason);
      assert.match(close.reason, /more than 65536 fragments/);
      const [event] = await seen.closed();
      assert.equal(event.code, 1008);
      assertGrowthBelow(before, 16 * MiB);
    });
  });

  test("3 million empty continuation frames with no fragment limit: memory stays bounded", {
    timeout: 120_000,
  }, async () => {
    await withRaw(async (ws, { seen }) => {
      const before = rss();
      const sent = await sendEmptyFragments(ws, 3_000_000);
      assert.equal(sent, 3_000_000);
      await ws.send(clientFrame(Opcode.Continuation, "y", true));
      const [echo] = await ws.waitFrames(1, 60_000);
      assert.equal(decoder.decode(echo.payload), "xy");
      assert.deepEqual(seen.messages, ["xy"]);
      // The client's 18 MB of frames are built in this process too, and Bun
      // collects them late (17.6 MiB seen once under load); a server that kept
      // each fragment would hold 3 million objects, hundreds of MiB.
      assertGrowthBelow(before, 48 * MiB);
    }, { maxFragments: Infinity });
  });

  test("maxFragments: a message in one frame more than the limit closes with 1008", async () => {
    const frames = (count: number) =>
      concat([
        clientFrame(Opcode.Binary, "a", false),
        ...Array.from({ length: count - 2 }, () => clientFrame(Opcode.Continuation, "b", false)),
        clientFrame(Opcode.Continuation, "c", true),
      ]);
    await withRaw(async (ws) => {
      await ws.send(frames(4));
      const [echo] = await ws.waitFrames(1);
      assert.equal(decoder.decode(echo.payload), "abbc");
    }, { maxFragments: 4 });
    await expectFailure([frames(5)], 1008, { maxFragments: 4 });
  });

  test("a 1 MiB message in 16,384 fragments of 64 bytes arrives whole", {
    timeout: 30_000, // Bun stops a test after 5 s unless told
  }, async () => {
    const message = new Uint8Array(MiB).map((_, i) => (i * 7) & 0xff);
    const frames: Uint8Array[] = [];
    for (let at = 0; at < message.length; at += 64) {
      const opcode = at === 0 ? Opcode.Binary : Opcode.Continuation;
      frames.push(clientFrame(opcode, message.subarray(at, at + 64), at + 64 === message.length));
    }
    await withRaw(async (ws) => {
      await ws.send(concat(frames));
      const [echo] = await ws.waitFrames(1, 10_000);
      assert.equal(echo.payload.length, message.length);
      assert.deepEqual(echo.payload, message);
    });
  });

  test("upgradeWebSocket() rejects a maxFragments below 1", async () => {
    let thrown: unknown;
    const { server, port } = await startServer((request) => {
      try {
        upgradeWebSocket(request, { maxFragments: 0 });
      } catch (error) {
        thrown = error;
      }
      return new Response("checked");
    });
    try {
      await rawExchange(port, [handshake()], { responses: 1 });
      assert.ok(thrown instanceof RangeError, String(thrown));
      assert.match(thrown.message, /maxFragments must be 1 or more, got 0/);
    } finally {
      await server.shutdown();
    }
  });
});

describe("ServerWebSocket checks UTF-8 as the bytes arrive", () => {
  /**
   * Sends a text frame made of `pieces` in separate writes 100 ms apart, as
   * Autobahn's cases 6.4.3 and 6.4.4 do (a second apart there), and expects
   * the close 1007 right after piece `bad`, before the rest was sent.
   */
  async function failsAfterPiece(pieces: Uint8Array[], bad: number, fin = true) {
    await withRaw(async (ws) => {
      const payload = concat(pieces);
      const frame = clientFrame(Opcode.Text, payload, fin);
      const headerSize = frame.length - payload.length;
      let at = headerSize;
      await ws.send(frame.subarray(0, headerSize));
      for (let i = 0; i <= bad; i++) {
        await delay(100);
        await ws.send(frame.subarray(at, at + pieces[i].length));
        at += pieces[i].length;
      }
      const close = await ws.waitClose(2000);
      assert.equal(close.code, 1007, close.reason);
    });
  }

  const valid = bytes("κόσμε");

  test("a bad code point in the middle piece of a frame (Autobahn 6.4.3)", async () => {
    const bad = new Uint8Array([0xf4, 0x90, 0x80, 0x80]); // past U+10FFFF
    await failsAfterPiece([valid, bad, bytes("edited")], 1);
  });

  test("the first two bytes of a bad code point (Autobahn 6.4.4)", async () => {
    const rest = concat([new Uint8Array([0x80, 0x80]), bytes("edited")]);
    await failsAfterPiece([valid, new Uint8Array([0xf4, 0x90]), rest], 1);
  });

  test("a bad byte early in a 1 MiB frame, read straight into its message", async () => {
    const start = new Uint8Array(64 * 1024).fill(0x61);
    await failsAfterPiece([start, new Uint8Array([0xc0, 0xaf]), new Uint8Array(MiB)], 1);
  });

  test("a bad byte in the middle of an unfinished fragment", async () => {
    await failsAfterPiece([valid, new Uint8Array([0xed, 0xa0, 0x80]), valid], 1, false);
  });

  test("valid text split inside characters, across reads and fragments, arrives whole", async () => {
    const text = "a€𝄞κόσμε".repeat(3000);
    const payload = bytes(text);
    await withRaw(async (ws, { seen }) => {
      const first = clientFrame(Opcode.Text, payload.subarray(0, 7001), false);
      const last = clientFrame(Opcode.Continuation, payload.subarray(7001), true);
      const wire = concat([first, last]);
      let at = 0;
      for (const cut of [3, 9, 5001, 7012, 7016, 7019, 20001, wire.length]) {
        await ws.send(wire.subarray(at, cut));
        at = cut;
        await delay(20);
      }
      await ws.waitFrames(1);
      assert.deepEqual(seen.messages, [text]);
    });
  });
});

// ─── permessage-deflate (RFC 7692) ──────────────────────────────────────────

/** Raw deflate of `data` with a sync flush, its `00 00 ff ff` tail removed: one message's payload. */
function deflateMessage(data: Uint8Array | string): Uint8Array {
  const out = zlib.deflateRawSync(typeof data === "string" ? bytes(data) : data, {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  return new Uint8Array(out.subarray(0, out.length - 4));
}

/** Inflates one message's payload, as a client that keeps no context would. */
function inflateMessage(payload: Uint8Array): Uint8Array {
  const tail = new Uint8Array([0, 0, 0xff, 0xff]);
  return new Uint8Array(
    zlib.inflateRawSync(concat([payload, tail]), { finishFlush: zlib.constants.Z_SYNC_FLUSH }),
  );
}

/** A masked client frame with RSV1 set (a compressed message's first frame). */
function compressedFrame(opcode: number, payload: Uint8Array, fin = true): Uint8Array {
  return encodeFrame({ fin, rsv: 4, opcode, payload }, { mask: true });
}

/** The `Sec-WebSocket-Extensions` answer to `offer`, or undefined when none was given. */
async function extensionAnswer(
  offer: string | null,
  compression: UpgradeWebSocketOptions["compression"],
): Promise<{ answer: string | undefined; extensions: string }> {
  let extensions = "unset";
  const options = compression === undefined ? {} : { compression };
  await using ctx = await startEcho(options, (socket) => extensions = socket.extensions);
  const fields = offer === null ? [] : [`Sec-WebSocket-Extensions: ${offer}`];
  const ws = await RawWebSocket.open(ctx.port, ...fields);
  ws.destroy();
  const [response] = parseResponses(latin1Bytes(ws.head));
  return { answer: header(response, "sec-websocket-extensions"), extensions };
}

describe("permessage-deflate negotiation (RFC 7692 §5-§7)", () => {
  const cases: [
    string,
    string | null,
    UpgradeWebSocketOptions["compression"],
    string | undefined,
  ][] = [
    ["off by default", "permessage-deflate", undefined, undefined],
    ["no offer, no answer", null, true, undefined],
    ["a plain offer", "permessage-deflate", true, "permessage-deflate"],
    ["names in any case", "PerMessage-Deflate", true, "permessage-deflate"],
    [
      "client_max_window_bits without a value",
      "permessage-deflate; client_max_window_bits",
      true,
      "permessage-deflate",
    ],
    [
      "client_max_window_bits with a value",
      "permessage-deflate; client_max_window_bits=10",
      true,
      "permessage-deflate; client_max_window_bits=10",
    ],
    [
      "a quoted value",
      'permessage-deflate; client_max_window_bits="10"',
      true,
      "permessage-deflate; client_max_window_bits=10",
    ],
    [
      "server_max_window_bits granted",
      "permessage-deflate; server_max_window_bits=10",
      true,
      "permessage-deflate; server_max_window_bits=10",
    ],
    [
      "server_max_window_bits lowered to the server's own",
      "permessage-deflate; server_max_window_bits=14",
      { serverMaxWindowBits: 11 },
      "permessage-deflate; server_max_window_bits=11",
    ],
    [
      "server_no_context_takeover granted",
      "permessage-deflate; server_no_context_takeover",
      true,
      "permessage-deflate; server_no_context_takeover",
    ],
    [
      "client_no_context_takeover offered: the server may leave it out",
      "permessage-deflate; client_no_context_takeover",
      true,
      "permessage-deflate",
    ],
    [
      "the server asks for client_no_context_takeover and its own",
      "permessage-deflate",
      { clientNoContextTakeover: true, serverNoContextTakeover: true },
      "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    ],
    [
      "clientMaxWindowBits asked for when the client let the server choose",
      "permessage-deflate; client_max_window_bits",
      { clientMaxWindowBits: 10 },
      "permessage-deflate; client_max_window_bits=10",
    ],
    [
      "clientMaxWindowBits never sent when the client did not offer the parameter",
      "permessage-deflate",
      { clientMaxWindowBits: 10 },
      "permessage-deflate",
    ],
    [
      "another extension first",
      "x-webkit-foo; bar=1, permessage-deflate",
      true,
      "permessage-deflate",
    ],
    [
      "an unknown parameter declines that offer, the next is taken",
      "permessage-deflate; foo=1, permessage-deflate; server_no_context_takeover",
      true,
      "permessage-deflate; server_no_context_takeover",
    ],
    ["an unknown parameter, no other offer", "permessage-deflate; foo", true, undefined],
    [
      "a repeated parameter declines the offer",
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      true,
      undefined,
    ],
    [
      "a value on server_no_context_takeover declines the offer",
      "permessage-deflate; server_no_context_takeover=1",
      true,
      undefined,
    ],
    [
      "server_max_window_bits without a value declines the offer",
      "permessage-deflate; server_max_window_bits",
      true,
      undefined,
    ],
    ...["7", "16", "08", "1x"].map((value): [
      string,
      string,
      true,
      undefined,
    ] => [
      `window bits ${value} decline the offer`,
      `permessage-deflate; client_max_window_bits=${value}`,
      true,
      undefined,
    ]),
    [
      "server_max_window_bits=8 declined (zlib cannot), the next offer taken",
      "permessage-deflate; server_max_window_bits=8, permessage-deflate",
      true,
      "permessage-deflate",
    ],
    [
      "the first acceptable of several offers, in two header lines' worth",
      "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9, " +
      "permessage-deflate",
      true,
      "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
    ],
  ];
  for (const [what, offer, compression, expected] of cases) {
    test(`${what}: ${expected ?? "no extension"}`, async () => {
      const { answer, extensions } = await extensionAnswer(offer, compression);
      assert.equal(answer, expected);
      assert.equal(extensions, expected ?? "");
    });
  }

  test("offers in two Sec-WebSocket-Extensions lines are read as one list", async () => {
    await using ctx = await startEcho({ compression: true });
    const ws = await RawWebSocket.open(
      ctx.port,
      "Sec-WebSocket-Extensions: permessage-deflate; foo",
      "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover",
    );
    ws.destroy();
    const [response] = parseResponses(latin1Bytes(ws.head));
    assert.equal(
      header(response, "sec-websocket-extensions"),
      "permessage-deflate; server_no_context_takeover",
    );
  });

  test("upgradeWebSocket() rejects compression settings out of range", async () => {
    const errors: unknown[] = [];
    const { server, port } = await startServer((request) => {
      for (
        const compression of [
          { serverMaxWindowBits: 8 },
          { clientMaxWindowBits: 16 },
          { level: 10 },
          { memLevel: 0 },
          { threshold: -1 },
        ]
      ) {
        try {
          upgradeWebSocket(request, { compression });
        } catch (error) {
          errors.push(error);
        }
      }
      return new Response("checked");
    });
    try {
      await rawExchange(port, [handshake()], { responses: 1 });
      assert.equal(errors.length, 5);
      for (const error of errors) assert.ok(error instanceof RangeError, String(error));
      assert.match((errors[0] as Error).message, /compression.serverMaxWindowBits must be 9 to 15/);
    } finally {
      await server.shutdown();
    }
  });
});

describe("permessage-deflate frames", () => {
  const offer = "Sec-WebSocket-Extensions: permessage-deflate";

  /** Opens a raw client that negotiated permessage-deflate with an echo server. */
  async function withDeflate(
    body: (ws: RawWebSocket, ctx: WsServer) => Promise<void>,
    options: UpgradeWebSocketOptions = {},
    fields: string[] = [offer],
  ) {
    await using ctx = await startEcho({ compression: { threshold: 0 }, ...options }, (socket) => {
      socket.binaryType = "arraybuffer";
    });
    const ws = await RawWebSocket.open(ctx.port, ...fields);
    try {
      await body(ws, ctx);
    } finally {
      ws.destroy();
    }
  }

  test("a compressed text message is inflated, and the echo is compressed with RSV1", async () => {
    await withDeflate(
      async (ws, { seen }) => {
        const text = "Hello, compressed world! ".repeat(20);
        await ws.send(compressedFrame(Opcode.Text, deflateMessage(text)));
        const [echo] = await ws.waitFrames(1);
        assert.deepEqual(seen.messages, [text]);
        assert.equal(echo.rsv, 4, "RSV1 on the echo");
        assert.ok(echo.payload.length < text.length / 4, `payload of ${echo.payload.length} bytes`);
        assert.equal(decoder.decode(inflateMessage(echo.payload)), text);
      },
      {},
      [offer + "; server_no_context_takeover"],
    );
  });

  test("a compressed message in fragments: RSV1 on the first frame only", async () => {
    await withDeflate(async (ws, { seen }) => {
      const data = new Uint8Array(5000).map((_, i) => i % 7);
      const payload = deflateMessage(data);
      const third = Math.floor(payload.length / 3);
      await ws.send(concat([
        compressedFrame(Opcode.Binary, payload.subarray(0, third), false),
        clientFrame(Opcode.Ping, "between"),
        clientFrame(Opcode.Continuation, payload.subarray(third, 2 * third), false),
        clientFrame(Opcode.Continuation, payload.subarray(2 * third), true),
      ]));
      const [pong, echo] = await ws.waitFrames(2);
      assert.equal(pong.opcode, Opcode.Pong);
      assert.equal(pong.rsv, 0, "control frames are never compressed");
      assert.deepEqual(new Uint8Array(seen.messages[0] as ArrayBuffer), data);
      assert.equal(echo.rsv, 4);
    });
  });

  test("uncompressed messages still pass on a compressed connection", async () => {
    await withDeflate(async (ws, { seen }) => {
      await ws.send(clientFrame(Opcode.Text, "plain"));
      await ws.send(compressedFrame(Opcode.Text, deflateMessage("packed")));
      await ws.waitFrames(2);
      assert.deepEqual(seen.messages, ["plain", "packed"]);
    });
  });

  test("messages below the threshold are sent uncompressed", async () => {
    await withDeflate(async (ws) => {
      await ws.send(clientFrame(Opcode.Text, "short"));
      await ws.send(clientFrame(Opcode.Text, "long enough ".repeat(10)));
      const [short, long] = await ws.waitFrames(2);
      assert.equal(short.rsv, 0);
      assert.equal(decoder.decode(short.payload), "short");
      assert.equal(long.rsv, 4);
    }, { compression: { threshold: 100 } });
  });

  test("context takeover: the client's second message refers back to its first", async () => {
    await withDeflate(async (ws, { seen }) => {
      const deflater = zlib.createDeflateRaw();
      const compress = (text: string) =>
        new Promise<Uint8Array>((resolve) => {
          const chunks: Uint8Array[] = [];
          const collect = (chunk: Uint8Array) => chunks.push(chunk);
          deflater.on("data", collect);
          deflater.write(bytes(text));
          deflater.flush(zlib.constants.Z_SYNC_FLUSH, () => {
            deflater.off("data", collect);
            const out = concat(chunks);
            resolve(out.subarray(0, out.length - 4));
          });
        });
      const text = "the same sentence, said twice over. ".repeat(4);
      const first = await compress(text);
      const second = await compress(text);
      deflater.close();
      assert.ok(second.length < first.length / 2, "the second refers to the first");
      await ws.send(compressedFrame(Opcode.Text, first));
      await ws.send(compressedFrame(Opcode.Text, second));
      await ws.waitFrames(2);
      assert.deepEqual(seen.messages, [text, text]);
    });
  });

  test("a deflate context idle for 10 s is freed: the next message starts from an empty window", {
    timeout: 30_000,
  }, async () => {
    await withDeflate(async (ws) => {
      const text = "a sentence the server compresses more than once. ".repeat(20);
      const echo = async (count: number) => {
        await ws.send(clientFrame(Opcode.Text, bytes(text)));
        return (await ws.waitFrames(count))[count - 1].payload;
      };
      const first = await echo(1), second = await echo(2);
      assert.ok(second.length < first.length / 2, "the second refers back to the first");
      await new Promise((resolve) => setTimeout(resolve, 10_500)); // two sweeps, 5 s apart
      const third = await echo(3);
      assert.ok(third.length > 2 * second.length, `${third.length} bytes: an empty window`);
      // It refers to nothing before it, so it inflates on its own.
      assert.equal(decoder.decode(inflateMessage(third)), text);
    });
  });

  test("RSV1 on a continuation frame: close 1002", async () => {
    await withDeflate(async (ws) => {
      const payload = deflateMessage("abcdef");
      await ws.send(compressedFrame(Opcode.Text, payload.subarray(0, 2), false));
      await ws.send(compressedFrame(Opcode.Continuation, payload.subarray(2), true));
      assert.equal((await ws.waitClose()).code, 1002);
    });
  });

  test("RSV1 on a control frame: close 1002", async () => {
    await withDeflate(async (ws) => {
      await ws.send(compressedFrame(Opcode.Ping, new Uint8Array(0)));
      assert.equal((await ws.waitClose()).code, 1002);
    });
  });

  test("RSV2 and RSV3 stay errors: close 1002", async () => {
    await withDeflate(async (ws) => {
      await ws.send(encodeFrame({ fin: true, rsv: 2, opcode: Opcode.Text, payload: bytes("x") }, {
        mask: true,
      }));
      assert.equal((await ws.waitClose()).code, 1002);
    });
  });

  test("RSV1 when the client did not negotiate compression: close 1002", async () => {
    await withDeflate(
      async (ws) => {
        await ws.send(compressedFrame(Opcode.Text, deflateMessage("x")));
        assert.equal((await ws.waitClose()).code, 1002);
      },
      {},
      [],
    );
  });

  test("data that does not inflate: close 1007", async () => {
    await withDeflate(async (ws) => {
      await ws.send(compressedFrame(Opcode.Binary, new Uint8Array([0xff, 0xff, 0xff, 0xff])));
      assert.equal((await ws.waitClose()).code, 1007);
    });
  });

  test("compressed text that inflates to bad UTF-8: close 1007", async () => {
    await withDeflate(async (ws) => {
      await ws.send(
        compressedFrame(Opcode.Text, deflateMessage(new Uint8Array([0x61, 0xc0, 0xaf]))),
      );
      assert.equal((await ws.waitClose()).code, 1007);
    });
  });

  test("maxMessageSize limits the inflated size: exactly at it passes, one byte more is 1009", async () => {
    const limit = 64 * 1024;
    await withDeflate(async (ws, { seen }) => {
      await ws.send(compressedFrame(Opcode.Binary, deflateMessage(new Uint8Array(limit))));
      await ws.waitFrames(1);
      assert.equal((seen.messages[0] as ArrayBuffer).byteLength, limit);
    }, { maxMessageSize: limit });
    await withDeflate(async (ws, { seen }) => {
      await ws.send(compressedFrame(Opcode.Binary, deflateMessage(new Uint8Array(limit + 1))));
      const close = await ws.waitClose();
      assert.equal(close.code, 1009, close.reason);
      assert.equal(seen.messages.length, 0);
    }, { maxMessageSize: limit });
  });

  test("a 1 MiB message that inflates to 1 GiB closes with 1009, memory bounded", {
    timeout: 60_000,
  }, async () => {
    // 1 MiB of zeros deflates to about 1 KiB; after the first, every further
    // MiB gives the same bytes, so the bomb is built without deflating 1 GiB.
    const deflater = zlib.createDeflateRaw({ level: 9 });
    const chunks: Uint8Array[] = [];
    deflater.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    const zeros = new Uint8Array(MiB);
    const nextMiB = () =>
      new Promise<Uint8Array>((resolve) => {
        deflater.write(zeros);
        deflater.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve(concat(chunks.splice(0))));
      });
    const first = await nextMiB(), repeated = await nextMiB();
    deflater.close();
    const bomb = concat([first, ...Array.from({ length: 1023 }, () => repeated)]);
    assert.ok(bomb.length < 1.1 * MiB, `${bomb.length} bytes`);
    await withDeflate(async (ws, { seen }) => {
      const before = rss();
      await ws.send(compressedFrame(Opcode.Binary, bomb));
      const close = await ws.waitClose(30_000);
      assert.equal(close.code, 1009, close.reason);
      assert.match(close.reason, /inflates to more than 16777216 bytes/);
      assert.equal(seen.messages.length, 0);
      // The 16 MiB limit, its buffer doubling from 8 MiB, and zlib's state.
      assertGrowthBelow(before, 64 * MiB);
    });
  });
});

describe("permessage-deflate with the ws package", () => {
  for (
    const [what, perMessageDeflate, compression, expected] of [
      ["context takeover", true, { threshold: 0 }, "permessage-deflate"],
      [
        "no context takeover on either side",
        { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0 },
        { threshold: 0, clientNoContextTakeover: true },
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
      ],
    ] as const
  ) {
    test(`echoes text and binary, with ${what}`, async () => {
      await using ctx = await startEcho(
        { compression },
        (socket) => socket.binaryType = "arraybuffer",
      );
      let answer: string | undefined;
      const ws = await openWs(`ws://127.0.0.1:${ctx.port}/`, undefined, (ws) => {
        ws.on("upgrade", (response) => {
          answer = response.headers["sec-websocket-extensions"] as string;
        });
      }, perMessageDeflate);
      try {
        if (onBun) {
          // Bun's stand-in for ws makes its own offer and fires no upgrade event.
          assert.match(ctx.seen.sockets[0].extensions, /^permessage-deflate/);
        } else {
          assert.equal(answer, expected);
          assert.equal(ctx.seen.sockets[0].extensions, expected);
        }
        const text = "ü and more text, repeated. ".repeat(2000);
        const binary = new Uint8Array(200_000).map((_, i) => (i >> 4) & 0xff);
        for (let round = 0; round < 3; round++) {
          ws.send(text);
          assert.equal(decoder.decode((await nextWsMessage(ws)).data), text);
          ws.send(binary);
          assert.deepEqual((await nextWsMessage(ws)).data, binary);
          ws.send("short");
          assert.equal(decoder.decode((await nextWsMessage(ws)).data), "short");
        }
      } finally {
        ws.terminate();
      }
    });
  }

  test("a Blob sent before strings is compressed first: all arrive in order and inflate", async () => {
    let socket: ServerWebSocket | undefined;
    await using ctx = await startEcho({ compression: { threshold: 0 } }, (s) => socket = s);
    const ws = await openWs(`ws://127.0.0.1:${ctx.port}/`, undefined, () => {}, true);
    try {
      await until(() => socket?.readyState === 1, 2000, "the socket to open");
      const received: string[] = [];
      ws.on("message", (data) => received.push(String(data)));
      const texts = [
        "the blob goes first, ".repeat(50),
        "then a string, ".repeat(50),
        "and one more",
      ];
      socket!.send(new Blob([texts[0]]));
      socket!.send(texts[1]);
      socket!.send(texts[2]);
      await until(() => received.length === 3, 5000, "three messages");
      assert.deepEqual(received, texts);
    } finally {
      ws.terminate();
    }
  });

  test("bufferedAmount counts the uncompressed bytes until they are written", async () => {
    let socket: ServerWebSocket | undefined;
    await using ctx = await startEcho({ compression: true }, (s) => socket = s);
    const ws = await openWs(`ws://127.0.0.1:${ctx.port}/`, undefined, () => {}, true);
    try {
      await until(() => socket?.readyState === 1, 2000, "the socket to open");
      const received: string[] = [];
      ws.on("message", (data) => received.push(String(data)));
      const text = "x".repeat(100_000);
      socket!.send(text);
      socket!.send(text);
      assert.equal(socket!.bufferedAmount, 200_000);
      await until(() => received.length === 2, 5000, "both messages");
      assert.deepEqual(received, [text, text]);
      await until(() => socket!.bufferedAmount === 0, 2000, "bufferedAmount to drain");
    } finally {
      ws.terminate();
    }
  });
});

// ─── Liveness, backpressure and shutdown ────────────────────────────────────

describe("ServerWebSocket liveness and flow", () => {
  test("idleTimeout: pings a quiet client, then closes with 1001 when no pong comes", async () => {
    await withRaw(async (ws, { seen }) => {
      const started = Date.now();
      const [ping] = await ws.waitFrames(1);
      assert.equal(ping.opcode, Opcode.Ping);
      const close = await ws.waitClose();
      const took = Date.now() - started;
      assert.equal(close.code, 1001);
      assert.ok(took >= 300 && took < 5000, `closed after ${took} ms`);
      const [event] = await seen.closed();
      assert.equal(event.code, 1001);
      assert.equal(event.wasClean, false);
      assert.equal(seen.errors.length, 1);
    }, { idleTimeout: 0.2 });
  });

  test("idleTimeout: a client that answers pings stays connected", {
    timeout: 30_000, // Bun stops a test after 5 s unless told
  }, async () => {
    await withRaw(async (ws, { seen }) => {
      let answered = 0;
      // The client answers in this process's event loop: a pong late by
      // idleTimeout closes, so idleTimeout is long enough for a loaded machine
      // (0.5 s was missed once with three test suites running beside it).
      const deadline = Date.now() + 6000;
      while (Date.now() < deadline) {
        const pings = ws.frames.filter((frame) => frame.opcode === Opcode.Ping).length;
        for (; answered < pings; answered++) await ws.send(clientFrame(Opcode.Pong, ""));
        await delay(20);
      }
      assert.ok(answered >= 2, `answered ${answered} pings`);
      assert.equal(ws.client.closed, false);
      assert.equal(seen.sockets[0].readyState, 1);
    }, { idleTimeout: 1.5 });
  });

  test("send() queues behind a slow reader: bufferedAmount rises, then drains to 0", {
    timeout: 30_000, // Bun stops a test after 5 s unless told
  }, async () => {
    const count = 24;
    await withRaw(async (ws, { seen }) => {
      const socket = seen.sockets[0];
      let received = 0;
      ws.client.socket.on("data", (chunk: Uint8Array) => received += chunk.length);
      ws.client.socket.pause();
      for (let i = 0; i < count; i++) socket.send(new Uint8Array(MiB).fill(i));
      assert.equal(socket.bufferedAmount, count * MiB, "everything queued at first");
      await delay(300);
      const stalled = socket.bufferedAmount;
      assert.ok(stalled > 0, "a paused reader holds the queue back");
      ws.client.socket.resume();
      await until(() => socket.bufferedAmount === 0, 10_000, "bufferedAmount to drain");
      const total = count * (MiB + 10);
      await until(() => received >= total, 10_000, `${total} bytes`);
      const frames = ws.frames;
      assert.equal(frames.length, count);
      frames.forEach((frame, i) => {
        assert.equal(frame.payload.length, MiB);
        assert.equal(frame.payload[MiB - 1], i, `message ${i} in order`);
      });
    });
  });

  test("server.shutdown() sends close 1001 to open sockets and finishes", async () => {
    const ctx = await startEcho();
    const ws = await RawWebSocket.open(ctx.port);
    try {
      const finished = ctx.server.shutdown();
      const [frame] = await ws.waitFrames(1);
      assert.equal(closeOf(frame).code, 1001);
      await ws.send(clientFrame(Opcode.Close, encodeClosePayload(1001)));
      await within(finished, 5000, "the server to finish");
      const [event] = await ctx.seen.closed();
      assert.equal(event.code, 1001);
      assert.equal(event.wasClean, true);
    } finally {
      ws.destroy();
      await ctx.server.shutdown();
    }
  });

  test("server.shutdown() closes a socket whose client ignores the close, after shutdownTimeout", async () => {
    const ctx = await startEcho();
    const ws = await RawWebSocket.open(ctx.port);
    try {
      const started = Date.now();
      await within(ctx.server.shutdown(), 4000, "the server to finish");
      assert.ok(Date.now() - started < 4000);
      await ws.client.waitClosed();
      const [event] = await ctx.seen.closed();
      assert.equal(event.wasClean, false);
    } finally {
      ws.destroy();
    }
  });
});

// ─── Real clients ───────────────────────────────────────────────────────────

/** Resolves with the `ws` client once open; rejects on error. `setup` runs before the open. */
function openWs(
  url: string,
  protocols?: string[],
  setup: (ws: WebSocket) => void = () => {},
  perMessageDeflate: WebSocket.ClientOptions["perMessageDeflate"] = true,
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { perMessageDeflate });
    setup(ws);
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

/** The next message the `ws` client receives. */
function nextWsMessage(ws: WebSocket): Promise<{ data: Uint8Array; isBinary: boolean }> {
  return within(
    new Promise((resolve) => {
      ws.once("message", (data, isBinary) => {
        const buffer = Array.isArray(data) ? concat(data) : new Uint8Array(data as ArrayBuffer);
        resolve({ data: buffer, isBinary });
      });
    }),
    5000,
    "a message",
  );
}

/** The `ws` client's close: code and reason. */
function wsClosed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return within(
    new Promise((resolve) => {
      // Bun replaces the ws package with its own, which passes the reason as a string.
      ws.once("close", (code, reason: Uint8Array | string) => {
        resolve({ code, reason: typeof reason === "string" ? reason : decoder.decode(reason) });
      });
    }),
    5000,
    "the close",
  );
}

describe("ServerWebSocket with the ws package", () => {
  test("echoes text and binary", async () => {
    await using ctx = await startEcho({}, (socket) => socket.binaryType = "arraybuffer");
    const ws = await openWs(`ws://127.0.0.1:${ctx.port}/`);
    try {
      ws.send("hello, ✓");
      const text = await nextWsMessage(ws);
      assert.equal(text.isBinary, false);
      assert.equal(decoder.decode(text.data), "hello, ✓");
      ws.send(new Uint8Array([1, 2, 3]));
      const binary = await nextWsMessage(ws);
      assert.equal(binary.isBinary, true);
      assert.deepEqual([...binary.data], [1, 2, 3]);
    } finally {
      ws.terminate();
    }
  });

  test("echoes a 1 MiB message both ways", async () => {
    await using ctx = await startEcho({}, (socket) => socket.binaryType = "arraybuffer");
    const ws = await openWs(`ws://127.0.0.1:${ctx.port}/`);
    try {
      const big = new Uint8Array(1024 * 1024);
      for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
      ws.send(big);
      const echo = await nextWsMessage(ws);
      assert.equal(echo.data.length, big.length);
      assert.deepEqual(echo.data, big);
      const text = "ü".repeat(512 * 1024); // 1 MiB of UTF-8
      ws.send(text);
      assert.equal(decoder.decode((await nextWsMessage(ws)).data), text);
    } finally {
      ws.terminate();
    }
  });

  test("negotiates a subprotocol the client offered", async () => {
    await using ctx = await startEcho({ protocol: ["v2.chat", "chat"] });
    const ws = await openWs(`ws://127.0.0.1:${ctx.port}/`, ["chat", "v2.chat"]);
    try {
      assert.equal(ws.protocol, "v2.chat");
      assert.equal(ctx.seen.sockets[0].protocol, "v2.chat");
    } finally {
      ws.terminate();
    }
  });

  test("the client's close code and reason reach the server, and the server's the client", async () => {
    await using ctx = await startEcho();
    const ws = await openWs(`ws://127.0.0.1:${ctx.port}/`);
    const closed = wsClosed(ws);
    ws.close(4321, "client says bye");
    assert.equal((await closed).code, 4321);
    const [event] = await ctx.seen.closed();
    assert.deepEqual([event.code, event.wasClean], [4321, true]);
    if (!onBun) assert.equal(event.reason, "client says bye");

    const ws2 = await openWs(`ws://127.0.0.1:${ctx.port}/`);
    const closed2 = wsClosed(ws2);
    await until(() => ctx.seen.sockets.length === 2, 2000, "the second socket");
    ctx.seen.sockets[1].close(4000, "server says bye");
    assert.deepEqual(await closed2, { code: 4000, reason: "server says bye" });
    const [, event2] = await ctx.seen.closed(2);
    assert.deepEqual([event2.code, event2.wasClean], [4000, true]);
  });

  test("answers the client's ping", async () => {
    await using ctx = await startEcho();
    const ws = await openWs(`ws://127.0.0.1:${ctx.port}/`);
    try {
      const pong = new Promise<Uint8Array>((resolve) => ws.once("pong", resolve));
      ws.ping("are you there");
      assert.equal(decoder.decode(await within(pong, 5000, "the pong")), "are you there");
    } finally {
      ws.terminate();
    }
  });

  test("server.shutdown() closes the client with 1001", async () => {
    const ctx = await startEcho();
    const ws = await openWs(`ws://127.0.0.1:${ctx.port}/`);
    const closed = wsClosed(ws);
    await within(ctx.server.shutdown(), 5000, "the shutdown");
    assert.equal((await closed).code, onBun ? 1000 : 1001);
  });

  test("HTTP keep-alive on other connections keeps working while sockets are open", async () => {
    const { server, port } = await startServer((request) => {
      if (new URL(request.url).pathname !== "/ws") return new Response("plain ok");
      const { socket, response } = upgradeWebSocket(request);
      socket.onmessage = (event) => socket.send(event.data);
      return response;
    });
    const sockets = await Promise.all([1, 2, 3].map(() => openWs(`ws://127.0.0.1:${port}/ws`)));
    try {
      const get = head("GET / HTTP/1.1", "Host: x");
      const reply = await rawExchange(port, [get, get, get], { responses: 3 });
      const responses = parseResponses(reply.bytes);
      assert.deepEqual(responses.map((r) => r.text), ["plain ok", "plain ok", "plain ok"]);
      assert.equal(reply.closed, false, "kept alive");
      for (const ws of sockets) {
        ws.send("still here");
        assert.equal(decoder.decode((await nextWsMessage(ws)).data), "still here");
      }
    } finally {
      for (const ws of sockets) ws.terminate();
      await server.shutdown();
    }
  });
});

const runtimeWebSocket = (globalThis as { WebSocket?: typeof globalThis.WebSocket }).WebSocket;

describe("ServerWebSocket with the runtime's own WebSocket", () => {
  test("echoes text and binary, and closes with code and reason", {
    skip: runtimeWebSocket === undefined && "this runtime has no global WebSocket (Node 20)",
  }, async () => {
    await using ctx = await startEcho({ protocol: "echo" });
    const ws = new runtimeWebSocket!(`ws://127.0.0.1:${ctx.port}/`, ["echo"]);
    ws.binaryType = "arraybuffer";
    const received: (string | ArrayBuffer)[] = [];
    const opened = deferred(), closed = deferred<CloseEvent>();
    ws.onopen = () => opened.resolve();
    ws.onmessage = (event) => received.push(event.data);
    ws.onclose = (event) => closed.resolve(event);
    ws.onerror = () => opened.reject(new Error("the client failed to connect"));
    await within(opened.promise, 5000, "the connection");
    assert.equal(ws.protocol, "echo");
    ws.send("from the runtime");
    ws.send(new Uint8Array([9, 8, 7]));
    await until(() => received.length === 2, 5000, "two echoes");
    assert.equal(received[0], "from the runtime");
    assert.deepEqual([...new Uint8Array(received[1] as ArrayBuffer)], [9, 8, 7]);
    ws.close(3001, "runtime done");
    const event = await within(closed.promise, 5000, "the client's close event");
    assert.equal(event.code, 3001);
    assert.equal(event.wasClean, true);
    const [serverEvent] = await ctx.seen.closed();
    assert.equal(serverEvent.code, 3001);
    if (!onBun) assert.equal(serverEvent.reason, "runtime done");
  });
});

// ─── Headless Chromium ──────────────────────────────────────────────────────

/**
 * A page that opens a WebSocket to /ws, sends a message and writes the echo
 * into #result. The server keeps the page's body open until the socket has
 * closed, so Chromium's load event (and `--dump-dom`) comes after the echo.
 */
const PAGE_HEAD = `<!doctype html>
<html><head><meta charset="utf-8"><title>echo</title></head><body>
<p id="result">waiting</p>
<script>
  const ws = new WebSocket("ws://" + location.host + "/ws");
  ws.onopen = () => ws.send("chromium says héllo");
  ws.onmessage = (event) => {
    document.getElementById("result").textContent = "echo: " + event.data;
    ws.close(1000, "page done");
  };
  ws.onerror = () => document.getElementById("result").textContent = "error";
</script>
`;

/** A page that echoes through a compressed socket and shows what the browser negotiated. */
const DEFLATE_PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>deflate</title></head><body>
<p id="result">waiting</p>
<script>
  const ws = new WebSocket("ws://" + location.host + "/ws");
  const big = "Chromium compresses this line. ".repeat(4000);
  const sent = ["short héllo", big, big];
  const got = [];
  ws.onopen = () => sent.forEach((message) => ws.send(message));
  ws.onmessage = (event) => {
    got.push(event.data);
    if (got.length < sent.length) return;
    const same = got.every((message, i) => message === sent[i]);
    document.getElementById("result").textContent =
      "extensions: " + ws.extensions + "; echoes " + (same ? "match" : "differ");
    ws.close(1000, "page done");
  };
  ws.onerror = () => document.getElementById("result").textContent = "error";
</script>
`;

describe("ServerWebSocket with headless Chromium", () => {
  test("a page negotiates permessage-deflate and echoes compressed messages", {
    skip: chromiumPath() === null && "Chromium is not installed",
    timeout: 60_000, // Bun stops a test after 5 s unless told
  }, async () => {
    const socketClosed = deferred<CloseEvent>();
    const { server, port } = await startServer((request) => {
      if (new URL(request.url).pathname === "/ws") {
        const { socket, response } = upgradeWebSocket(request, { compression: true });
        socket.onmessage = (event) => socket.send(event.data);
        socket.onclose = (event) => socketClosed.resolve(event);
        return response;
      }
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(bytes(DEFLATE_PAGE));
          await within(socketClosed.promise, 20_000, "the page's socket to close").catch(() => {});
          controller.enqueue(bytes("</body></html>\n"));
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/html; charset=utf-8" } });
    });
    try {
      const dom = await dumpDom(`http://127.0.0.1:${port}/`, { timeoutMs: 30_000 });
      assert.match(
        dom,
        /<p id="result">extensions: permessage-deflate[^<]*; echoes match<\/p>/,
      );
      const event = await within(socketClosed.promise, 1000, "the server's close event");
      assert.deepEqual([event.code, event.wasClean], [1000, true]);
    } finally {
      await server.shutdown();
    }
  });

  test("a page's WebSocket sends, gets the echo and closes cleanly", {
    skip: chromiumPath() === null && "Chromium is not installed",
    timeout: 60_000, // Bun stops a test after 5 s unless told
  }, async () => {
    const socketClosed = deferred<CloseEvent>();
    const { server, port } = await startServer((request) => {
      if (new URL(request.url).pathname === "/ws") {
        const { socket, response } = upgradeWebSocket(request);
        socket.onmessage = (event) => socket.send(event.data);
        socket.onclose = (event) => socketClosed.resolve(event);
        return response;
      }
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(bytes(PAGE_HEAD));
          await within(socketClosed.promise, 20_000, "the page's socket to close").catch(() => {});
          controller.enqueue(bytes("</body></html>\n"));
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/html; charset=utf-8" } });
    });
    try {
      const dom = await dumpDom(`http://127.0.0.1:${port}/`, { timeoutMs: 30_000 });
      assert.match(dom, /<p id="result">echo: chromium says héllo<\/p>/);
      const event = await within(socketClosed.promise, 5000, "the server's close event");
      assert.deepEqual([event.code, event.reason, event.wasClean], [1000, "page done", true]);
    } finally {
      await server.shutdown();
    }
  });
});

// ─── examples/chat.ts ───────────────────────────────────────────────────────

/** A `ws` client in the chat, with every event it received. */
interface ChatMember {
  ws: WebSocket;
  events: ChatEvent[];
  /** Waits until an event matches. */
  see(match: (event: ChatEvent) => boolean, what: string): Promise<void>;
}

async function joinChat(port: number, name: string): Promise<ChatMember> {
  const events: ChatEvent[] = [];
  // Listen before the open: the server's first event may arrive with the 101.
  const ws = await openWs(
    `ws://127.0.0.1:${port}/ws?name=${encodeURIComponent(name)}`,
    undefined,
    (ws) => ws.on("message", (data) => events.push(JSON.parse(String(data)))),
  );
  return {
    ws,
    events,
    see: (match, what) => until(() => events.some(match), 5000, what),
  };
}

describe("examples/chat.ts", () => {
  test("its default export serves a chat where two clients see each other", async () => {
    const { server, port } = await startServer((request) => chat.fetch(request));
    const members: ChatMember[] = [];
    try {
      const ann = await joinChat(port, "Ann");
      members.push(ann);
      await ann.see((e) => e.type === "join" && e.name === "Ann", "Ann's own join");
      const bob = await joinChat(port, "Bob");
      members.push(bob);
      await ann.see((e) => e.type === "join" && e.name === "Bob" && e.count === 2, "Bob's join");
      bob.ws.send("hi <b>Ann</b> & all");
      const said = (e: ChatEvent) =>
        e.type === "message" && e.name === "Bob" && e.text === "hi <b>Ann</b> & all";
      await ann.see(said, "Bob's message at Ann");
      await bob.see(said, "Bob's message at Bob");
      ann.ws.send("hello Bob");
      await bob.see((e) => e.type === "message" && e.name === "Ann", "Ann's message at Bob");
      ann.ws.close();
      await bob.see((e) => e.type === "leave" && e.name === "Ann" && e.count === 1, "Ann leaving");
      assert.deepEqual(chat.members, ["Bob"]);
    } finally {
      for (const member of members) member.ws.terminate();
      await server.shutdown();
    }
  });

  test("cleans names, keeps them unique, and cuts long messages", async () => {
    const room = createChat();
    const { server, port } = await startServer((request) => room.fetch(request));
    const members: ChatMember[] = [];
    try {
      const first = await joinChat(port, "  Eve\n\t the\u0000great  ");
      members.push(first);
      await first.see((e) => e.type === "join", "the join");
      const second = await joinChat(port, "Eve the great");
      const nameless = await joinChat(port, "   ");
      members.push(second, nameless);
      await until(() => room.members.length === 3, 3000, "three members");
      assert.deepEqual(room.members, ["Eve the great", "Eve the great (2)", "anonymous"]);
      second.ws.send("x".repeat(MAX_TEXT + 50));
      await first.see((e) => e.type === "message", "the long message");
      const message = first.events.find((e) => e.type === "message");
      assert.equal(message?.type === "message" && message.text.length, MAX_TEXT);
      assert.equal(message?.name, "Eve the great (2)");
    } finally {
      for (const member of members) member.ws.terminate();
      await server.shutdown();
    }
  });

  test("serves the page with a strict CSP, 404 elsewhere, and 400 for /ws without a handshake", async () => {
    const room = createChat();
    const { server, port } = await startServer((request) => room.fetch(request));
    try {
      const get = (path: string) => head(`GET ${path} HTTP/1.1`, "Host: x");
      const reply = await rawExchange(port, [get("/"), get("/nope"), get("/ws")], { responses: 3 });
      const [page, missing, ws] = parseResponses(reply.bytes);
      assert.equal(page.status, 200);
      assert.match(header(page, "content-type")!, /^text\/html/);
      assert.match(header(page, "content-security-policy")!, /script-src 'sha256-[^']+'/);
      assert.match(page.text, /new WebSocket\(url\)/);
      assert.equal(missing.status, 404);
      assert.equal(ws.status, 400);
    } finally {
      await server.shutdown();
    }
  });

  test("in Chromium, the page joins, shows others' messages as text, and passes its CSP", {
    skip: chromiumPath() === null && "Chromium is not installed",
    timeout: 60_000, // Bun stops a test after 5 s unless told
  }, async () => {
    const room = createChat();
    const shown = deferred();
    const { server, port } = await startServer(async (request) => {
      const response = room.fetch(request);
      if (new URL(request.url).pathname !== "/") return response;
      // Hold the page's last bytes until the test has talked to it, so
      // Chromium's load event (and --dump-dom) comes after the exchange.
      const html = await response.text();
      const cut = html.lastIndexOf("</body>");
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(bytes(html.slice(0, cut)));
          await within(shown.promise, 20_000, "the exchange").catch(() => {});
          controller.enqueue(bytes(html.slice(cut)));
          controller.close();
        },
      });
      return new Response(body, { headers: response.headers });
    });
    let bob: ChatMember | null = null;
    try {
      const dom = dumpDom(`http://127.0.0.1:${port}/?name=Ann`, { timeoutMs: 30_000 });
      await until(() => room.members.includes("Ann"), 20_000, "the page to join as Ann");
      bob = await joinChat(port, "Bob");
      bob.ws.send(`<img src=x onerror="document.title='pwned'">`);
      await bob.see((e) => e.type === "message", "Bob's own message");
      await delay(2000); // the page renders what it was sent; nothing outside it says when
      shown.resolve();
      const html = await dom;
      assert.match(html, /Ann joined \(1 here\)/);
      assert.match(html, /Bob joined \(2 here\)/);
      assert.match(html, /<b>Bob: <\/b>&lt;img src=x onerror="document.title='pwned'"&gt;/);
      assert.doesNotMatch(html, /<title>pwned/);
    } finally {
      shown.resolve();
      bob?.ws.terminate();
      await server.shutdown();
    }
  });
});
