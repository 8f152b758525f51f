// Tests for cli/access_log.ts: the Common Log Format line, one per response
// (the server's own answers too, with the bytes of body sent), --quiet, and
// the request heads that --verbose prints; and serve()'s onResponse, which
// the access log is written from.

import assert from "node:assert/strict";
import { test } from "node:test";
import { join } from "node:path";
import { type ResponseLogEntry, serve } from "../mod.ts";
import { upgradeWebSocket } from "../websocket.ts";
import { accessLogger, batchedLines, formatAccessLog, formatClfDate } from "./access_log.ts";
import {
  CLF_LINE,
  connect,
  escapeRegExp,
  READ,
  startBrick,
  TIMEOUT,
  withTempDir,
} from "./_test_cli.ts";

test("formatAccessLog() writes Common Log Format with '-' for an unknown size", () => {
  const date = new Date(2026, 10, 21, 10, 0, 0);
  const base = { remoteAddr: "127.0.0.1", date, requestLine: "GET /a?b=c HTTP/1.1", status: 200 };
  const stamp = formatClfDate(date);
  assert.match(stamp, /^21\/Nov\/2026:10:00:00 [+-]\d{4}$/);
  assert.equal(
    formatAccessLog({ ...base, bytes: 13 }),
    `127.0.0.1 - - [${stamp}] "GET /a?b=c HTTP/1.1" 200 13`,
  );
  assert.equal(
    formatAccessLog({ ...base, bytes: undefined }),
    `127.0.0.1 - - [${stamp}] "GET /a?b=c HTTP/1.1" 200 -`,
  );
  assert.equal(
    formatAccessLog({ ...base, requestLine: 'GET /"\x1b[2J HTTP/1.1', bytes: 0 }),
    `127.0.0.1 - - [${stamp}] "GET /\\"\\x1b[2J HTTP/1.1" 200 0`,
  );
});

test("accessLogger() formats each line's own second, with a tab and a quote escaped", () => {
  const lines: string[] = [];
  const logger = accessLogger((line) => lines.push(line));
  const start = new Date(2026, 10, 21, 10, 0, 0).getTime();
  const entry = (startTime: number, requestLine: string): ResponseLogEntry => ({
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
    startTime,
    requestLine,
    status: 200,
    bodyBytes: 2,
  } as ResponseLogEntry);
  logger(entry(start + 10, "GET / HTTP/1.1"));
  logger(entry(start + 990, "GET /b HTTP/1.1"));
  logger(entry(start + 1000, 'GET /"\t HTTP/1.1'));
  const first = formatClfDate(new Date(start));
  const next = formatClfDate(new Date(start + 1000));
  assert.deepEqual(lines, [
    `127.0.0.1 - - [${first}] "GET / HTTP/1.1" 200 2`,
    `127.0.0.1 - - [${first}] "GET /b HTTP/1.1" 200 2`,
    `127.0.0.1 - - [${next}] "GET /\\"\t HTTP/1.1" 200 2`,
  ]);
});

test("batchedLines() writes a turn's lines at once, in order, and on flush()", async () => {
  const writes: string[] = [];
  const log = batchedLines((text) => writes.push(text));
  log("one");
  log("two");
  assert.deepEqual(writes, []);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(writes, ["one\ntwo\n"]);
  log("three");
  log.flush();
  assert.deepEqual(writes, ["one\ntwo\n", "three\n"]);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.deepEqual(writes, ["one\ntwo\n", "three\n"]);
});

test("brick CLI writes one Common Log Format line per request", async () => {
  const { brick, url } = await startBrick();
  try {
    await (await fetch(url + "path/to?x=1&y=%20z")).text();
    const match = await brick.stdout.waitFor(CLF_LINE);
    assert.equal(match[1], "GET /path/to?x=1&y=%20z HTTP/1.1");
    assert.equal(match[2], "200");
    assert.equal(match[3], "13");
    await (await fetch(url + "second", { method: "POST", body: "data" })).text();
    await brick.stdout.waitFor(/"POST \/second HTTP\/1\.1" 200 13$/m);
  } finally {
    await brick.close();
  }
});

test("brick CLI logs the request line as received, with its HTTP version", async () => {
  const { brick, port } = await startBrick();
  try {
    for (
      const [head, line] of [
        ["GET /old?x=1 HTTP/1.0\r\n\r\n", '"GET /old?x=1 HTTP/1.0" 200 13'],
        [
          "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
          '"OPTIONS * HTTP/1.1" 200 13',
        ],
      ]
    ) {
      using conn = await connect(port);
      const { received } = conn;
      await conn.write(head);
      await received.responses(1);
      await received.done;
      const match = await brick.stdout.waitFor(new RegExp(`.*${escapeRegExp(line)}$`, "m"));
      assert.match(match[0], CLF_LINE);
    }
  } finally {
    await brick.close();
  }
});

test("brick CLI prints no access log with --quiet", async () => {
  const { brick, url } = await startBrick(["--quiet"]);
  try {
    await (await fetch(url + "quiet")).text();
    brick.kill("SIGTERM");
    assert.equal((await brick.exit()).code, 0);
    await brick.stdout.done;
    assert.doesNotMatch(brick.stdout.text, /quiet|HTTP\/1\.1/);
  } finally {
    await brick.close();
  }
});

test("brick CLI prints each raw request head as received with --verbose", async () => {
  const { brick, port } = await startBrick(["--verbose"]);
  try {
    using conn = await connect(port);
    const { received } = conn;
    const head = "GET /verbose?q=1 HTTP/1.1\r\nHost: example\r\nX-Trace:  MiXeD case \r\n\r\n";
    await conn.write(head);
    await received.responses(1);
    await brick.stdout.waitFor(/"GET \/verbose\?q=1 HTTP\/1\.1" 200 13$/m);
    assert.ok(
      brick.stdout.text.includes(head),
      `the head appears verbatim in ${JSON.stringify(brick.stdout.text)}`,
    );
    conn.closeWrite();
    await received.done;
  } finally {
    await brick.close();
  }
});

/** Sends `bytes` on a new connection and returns all that comes back until the server closes. */
async function exchange(port: number, bytes: string): Promise<string> {
  using conn = await connect(port);
  await conn.write(bytes);
  await conn.received.done;
  return conn.received.text;
}

/** The body length of a raw response: its Content-Length. */
function contentLength(raw: string): number {
  const match = raw.match(/^content-length: (\d+)\r$/im);
  assert.ok(match, `a Content-Length in ${JSON.stringify(raw)}`);
  return Number(match[1]);
}

/** An app that throws on /throw and streams 6 bytes in 3 chunks, without a length, on /stream. */
const LOG_APP = "export default (request) => {\n" +
  "  const path = new URL(request.url).pathname;\n" +
  '  if (path === "/throw") throw new Error("boom");\n' +
  '  if (path === "/stream") {\n' +
  '    const parts = ["abc", "de", "f"].map((s) => new TextEncoder().encode(s));\n' +
  "    return new Response(new ReadableStream({\n" +
  "      pull(controller) {\n" +
  "        const part = parts.shift();\n" +
  "        if (part) controller.enqueue(part);\n" +
  "        else controller.close();\n" +
  "      },\n" +
  "    }));\n" +
  "  }\n" +
  '  return new Response("ok\\n");\n' +
  "};\n";

test("brick CLI logs the server's own answers and a throwing handler's 500, with body bytes sent", async () => {
  await withTempDir({ "app.mjs": LOG_APP }, async (dir) => {
    const { brick, port } = await startBrick([join(dir, "app.mjs")], { permissions: READ });
    try {
      const cases: [string, string, string][] = [
        [
          "GET /throw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
          "GET /throw HTTP/1.1",
          "500",
        ],
        ["GET / HTTP/1.1\r\nHost: x\r\nBad header\r\n\r\n", "GET / HTTP/1.1", "400"],
        ["GET / HTTP/3.0\r\nHost: x\r\n\r\n", "GET / HTTP/3.0", "505"],
        ["CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", "CONNECT x:443 HTTP/1.1", "501"],
        [
          "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n",
          "POST / HTTP/1.1",
          "413",
        ],
        [
          `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`,
          "GET / HTTP/1.1",
          "431",
        ],
      ];
      for (const [request, line, status] of cases) {
        const raw = await exchange(port, request);
        assert.match(raw, new RegExp(`^HTTP/1\\.1 ${status} `), `answer to ${line}`);
        const bytes = contentLength(raw);
        const logged = `"${escapeRegExp(line)}" ${status} ${bytes === 0 ? "-" : bytes}`;
        const match = await brick.stdout.waitFor(new RegExp(`^.*${logged}$`, "m"));
        assert.match(match[0], CLF_LINE, "a whole Common Log Format line");
      }
      const streamed = await exchange(
        port,
        "GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      );
      // Chunked on Deno and Node; Bun reads a short stream whole and sends its length.
      assert.match(streamed, /\r\n\r\n(?:abcdef|3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n)$/);
      await brick.stdout.waitFor(/"GET \/stream HTTP\/1\.1" 200 6$/m);
      await exchange(port, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      await brick.stdout.waitFor(/"HEAD \/ HTTP\/1\.1" 200 -$/m);
      const lines = brick.stdout.text.split("\n").filter((line) => line.includes('"'));
      assert.equal(lines.length, cases.length + 2, "one line per response");
      for (const line of lines) assert.match(line, CLF_LINE);
    } finally {
      await brick.close();
    }
  });
});

/** Starts serve() on 127.0.0.1 with `options`, collecting what onResponse gets, once it listens. */
async function serveLogged(
  handler: (request: Request) => Response | Promise<Response>,
  options: { readHeaderTimeout?: number; maxConnections?: number } = {},
) {
  const entries: ResponseLogEntry[] = [];
  let changed = () => {};
  let listening!: () => void;
  const listened = new Promise<void>((resolve) => listening = resolve);
  const server = serve({
    handler,
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => listening(),
    onResponse: (entry) => {
      entries.push(entry);
      changed();
    },
    ...options,
  });
  const next = async (count: number): Promise<ResponseLogEntry[]> => {
    const deadline = Date.now() + TIMEOUT;
    while (entries.length < count) {
      if (Date.now() > deadline) throw new Error(`Only ${entries.length} of ${count} responses`);
      await new Promise<void>((resolve) => {
        changed = resolve;
        setTimeout(resolve, 100);
      });
    }
    return entries;
  };
  await listened;
  return { server, entries, next };
}

test("serve() calls onResponse for a 408 and a 503 it sends itself", async () => {
  const { server, next } = await serveLogged(() => new Response("ok"), {
    readHeaderTimeout: 300,
    maxConnections: 1,
  });
  try {
    const { port } = server.addr;
    using slow = await connect(port);
    await slow.write("GET /half HTTP/1.1\r\nHost: x\r\n");
    // The second connection finds the first active: the limit refuses it.
    const refused = await exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(refused, /^HTTP\/1\.1 503 /);
    await slow.received.done;
    assert.match(slow.received.text, /^HTTP\/1\.1 408 /);
    const entries = await next(2);
    const byStatus = new Map(entries.map((entry) => [entry.status, entry]));
    assert.deepEqual([...byStatus.keys()].sort(), [408, 503]);
    const timedOut = byStatus.get(408)!;
    assert.equal(timedOut.requestLine, "GET /half HTTP/1.1");
    assert.equal(timedOut.method, "GET");
    assert.equal(timedOut.target, "/half");
    assert.equal(timedOut.bodyBytes, contentLength(slow.received.text));
    assert.ok(
      timedOut.duration >= 200,
      `the 408 came after the deadline (${timedOut.duration} ms)`,
    );
    assert.equal(byStatus.get(503)!.bodyBytes, contentLength(refused));
    assert.equal(byStatus.get(503)!.requestLine, "");
    assert.equal(timedOut.remoteAddr.transport, "tcp");
  } finally {
    await server.shutdown();
  }
});

test("serve() calls onResponse once per response with the bytes of body sent, for pipelined requests", async () => {
  const { server, next } = await serveLogged((request) =>
    new URL(request.url).pathname === "/empty"
      ? new Response(null, { status: 204 })
      : new Response("hello")
  );
  try {
    const raw = await exchange(
      server.addr.port,
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /empty HTTP/1.1\r\nHost: x\r\n\r\n" +
        "HEAD /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.equal(raw.match(/HTTP\/1\.1 \d{3} /g)?.length, 3);
    const entries = await next(3);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(entries.length, 3, "one call per response");
    assert.deepEqual(
      entries.map((entry) => [entry.requestLine, entry.status, entry.bodyBytes, entry.error]),
      [
        ["GET /a HTTP/1.1", 200, 5, undefined],
        ["GET /empty HTTP/1.1", 204, 0, undefined],
        ["HEAD /c HTTP/1.1", 200, 0, undefined],
      ],
    );
  } finally {
    await server.shutdown();
  }
});

test("serve() calls onResponse with 101 for an upgrade, once the handshake is sent", async () => {
  const { server, next } = await serveLogged((request) => upgradeWebSocket(request).response);
  try {
    using conn = await connect(server.addr.port);
    await conn.write(
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    const [entry] = await next(1);
    const deadline = Date.now() + TIMEOUT;
    while (!conn.received.text.includes("\r\n\r\n") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.match(conn.received.text, /^HTTP\/1\.1 101 /);
    assert.equal(entry.requestLine, "GET /ws HTTP/1.1");
    assert.equal(entry.status, 101);
    assert.equal(entry.bodyBytes, 0);
  } finally {
    await server.shutdown();
  }
});
