// The protocol suite for brick's serve(): each test starts a server on
// 127.0.0.1 with port 0 and talks to it over a real TCP socket, with raw bytes
// wherever framing matters. Runtime-neutral (node:test, node:net), so the same
// file runs under `deno test`, `node --test` and `bun test`.

import { after, before } from "node:test";
import { describe, test } from "./_test_skips.ts";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { serve, type ServeInit, type Server, withTrailers } from "./mod.ts";
import {
  capturing,
  deferred,
  delay,
  type Exchange,
  type ExchangeOptions,
  head,
  header,
  HOST,
  IncompleteResponseError,
  latin1,
  latin1Bytes,
  MalformedResponseError,
  parseResponses,
  RawClient,
  rawExchange,
  serveListening,
  startServer,
  until,
  within,
  withServer,
} from "./_test_utils.ts";

// ─── Shared requests, handlers and checks ───────────────────────────────────

/** A minimal valid HTTP/1.1 request, kept alive. */
const GET = head("GET / HTTP/1.1", "Host: x");
/** A minimal valid HTTP/1.1 request that asks the server to close afterwards. */
const GET_CLOSE = head("GET / HTTP/1.1", "Host: x", "Connection: close");

const ok = () => new Response("ok");

/** Bun runs this file too (against the npm build); a few of its node:net gaps are named where they bite. */
const onBun = "Bun" in globalThis;

/** A POST with a Content-Length body and the given extra fields. */
function post(body: string, ...fields: string[]): string {
  return head("POST / HTTP/1.1", "Host: x", `Content-Length: ${body.length}`, ...fields) + body;
}

/** A POST whose body is already framed as chunked. */
function postChunked(chunkedBody: string, ...fields: string[]): string {
  return head("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", ...fields) +
    chunkedBody;
}

/** Answers with what the handler saw: method, url, headers and body text. */
async function echo(request: Request): Promise<Response> {
  return Response.json({
    method: request.method,
    url: request.url,
    headers: Object.fromEntries(request.headers),
    body: await request.text(),
  });
}

/** A handler that records each call and answers 200 "ok". */
function spy() {
  const calls: Request[] = [];
  return {
    calls,
    handler(request: Request) {
      calls.push(request);
      return ok();
    },
  };
}

/** Sends `pieces` on a new connection; returns the strictly parsed responses and the close. */
async function exchange(
  port: number,
  pieces: string | (string | Uint8Array)[],
  options: ExchangeOptions = {},
) {
  const result = await rawExchange(port, [pieces].flat(), options);
  return { ...result, responses: parseResponses(result.bytes, options) };
}

/** The one response to a one-request exchange that ends with the server closing. */
async function answer(port: number, pieces: string | (string | Uint8Array)[]) {
  const { responses, closed, text } = await exchange(port, pieces);
  assert.equal(responses.length, 1, `one response expected, got ${JSON.stringify(text)}`);
  return { response: responses[0], closed };
}

/** Asserts that the server answers `request` with `status`, says close, and closes. */
async function assertRejected(
  port: number,
  request: string | (string | Uint8Array)[],
  status: number,
): Promise<void> {
  const { response, closed } = await answer(port, request);
  assert.equal(response.status, status, response.text);
  assert.equal(header(response, "connection"), "close");
  assert.ok(closed, "the server closes the connection");
}

/** Declares one test per case: the server rejects each request with `status` and closes. */
function rejects(status: number, cases: Record<string, string | (string | Uint8Array)[]>) {
  for (const [what, request] of Object.entries(cases)) {
    test(`serve() answers ${status} to ${what}`, async () => {
      const { calls, handler } = spy();
      await withServer(handler, ({ port }) => assertRejected(port, request, status));
      assert.equal(calls.length, 0, "the handler never runs");
    });
  }
}

/**
 * A response stream of `count` chunks `chunk<i>\n`, one every `everyMs`, or
 * only the first when `everyMs` is "idle" (it then waits, timer-free, until
 * cancelled). `cancelled` resolves with the reason if its consumer cancels it.
 */
function tickingStream(everyMs: number | "idle", count = 100) {
  const cancelled = deferred<unknown>();
  let i = 0;
  let done = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let wake = () => {};
  const pause = () =>
    new Promise<void>((resolve) => {
      wake = resolve;
      if (everyMs !== "idle") timer = setTimeout(resolve, everyMs);
    });
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (i > 0) await pause();
      if (done) return;
      if (i === count) return controller.close();
      controller.enqueue(latin1Bytes(`chunk${i++}\n`));
    },
    cancel(reason) {
      done = true;
      clearTimeout(timer);
      wake();
      cancelled.resolve(reason);
    },
  }, { highWaterMark: 0 });
  return { stream, cancelled: cancelled.promise };
}

/** Resolves to whether a promise settles within `ms`, and how. */
function settledWithin(promise: Promise<unknown>, ms: number) {
  return within(
    promise.then(() => "resolved", () => "rejected"),
    ms,
    "the promise to settle",
  ).catch(() => "pending");
}

/** Runs curl with `args`; resolves to its output, headers included. */
function curl(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("curl", ["-sS", "-i", "--max-time", "5", ...args], (error, stdout) => {
      if (error) reject(error);
      else resolve(stdout);
    });
  });
}
const curlSkip = await new Promise<string | false>((resolve) =>
  execFile("curl", ["--version"], (error) => resolve(error ? "curl is not installed" : false))
);

const isAddrInUse = (error: unknown) =>
  (error as Error)?.name === "AddrInUse" || (error as { code?: string })?.code === "EADDRINUSE";

// ─── The test helper itself ─────────────────────────────────────────────────

describe("parseResponses() (test helper)", () => {
  const parse = (text: string, headFor?: number[]) =>
    parseResponses(latin1Bytes(text), { headFor });

  test("parseResponses() reads Content-Length, chunked, HEAD and close-delimited bodies", () => {
    const [length, chunked, headOnly, closeDelimited] = parse(
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" +
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n" +
        "X-T: 1\r\n\r\n" +
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" +
        "HTTP/1.1 404 Not Found\r\nSet-Cookie: a\r\nset-cookie: b\r\n\r\nrest of it",
      [2],
    );
    assert.deepEqual([length.text, length.framing], ["hi", "length"]);
    assert.deepEqual([chunked.text, chunked.framing, chunked.trailers], ["abcd", "chunked", {
      "x-t": ["1"],
    }]);
    assert.deepEqual([headOnly.body.length, header(headOnly, "content-length")], [0, "5"]);
    assert.deepEqual(
      [closeDelimited.status, closeDelimited.reason, closeDelimited.text],
      [404, "Not Found", "rest of it"],
    );
    assert.deepEqual(closeDelimited.headers["set-cookie"], ["a", "b"]);
  });

  const malformed: Record<string, string> = {
    "a bare LF": "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
    "a bare CR": "HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n",
    "a status line without the space after the code": "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    "a two-digit status": "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
    "HTTP/2 in the status line": "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
    "obs-fold": "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "whitespace before a colon": "HTTP/1.1 200 OK\r\nX : a\r\nContent-Length: 0\r\n\r\n",
    "a line without a colon": "HTTP/1.1 200 OK\r\nXa\r\nContent-Length: 0\r\n\r\n",
    "a NUL in a value": "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n",
    "two Content-Length fields": "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1" +
      "\r\n\r\na",
    "a signed Content-Length": "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\na",
    "Content-Length with Transfer-Encoding": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n" +
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "Content-Length on a 204": "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    "a coding other than chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nx",
    "a bad chunk size": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "a chunk extension":
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;a\r\nx\r\n0\r\n\r\n",
    "chunk data longer than its size":
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
    "a line after a response that is not a status line":
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nxyz\r\n",
    "bytes after a response that cannot start one": "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nx",
  };
  for (const [what, text] of Object.entries(malformed)) {
    test(`parseResponses() rejects ${what}`, () => {
      assert.throws(() => parse(text), MalformedResponseError);
    });
  }

  const incomplete: Record<string, string> = {
    "a head without its empty line": "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n",
    "a body shorter than its Content-Length": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
    "a chunked body without its last chunk":
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    "a chunked body without the final CRLF":
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
  };
  for (const [what, text] of Object.entries(incomplete)) {
    test(`parseResponses() reports ${what} as incomplete`, () => {
      assert.throws(() => parse(text), IncompleteResponseError);
    });
  }
});

// ─── 1. The API ─────────────────────────────────────────────────────────────

describe("serve() API", () => {
  test("serve(handler) listens on 0.0.0.0:8888 and prints where", async (t) => {
    let server: Server | undefined;
    let taken = false;
    const printed = await capturing("log", async (lines) => {
      try {
        server = serve(() => new Response("default"));
        server.finished.catch((error) => taken = isAddrInUse(error));
        await until(() => lines.length > 0 || taken, 2000, "the listening line");
      } catch (error) {
        if (!isAddrInUse(error)) throw error;
        taken = true;
      }
    });
    if (server === undefined || taken) return t.skip?.("port 8888 is taken on this machine");
    try {
      assert.deepEqual(server.addr, { hostname: "0.0.0.0", port: 8888, transport: "tcp" });
      assert.deepEqual(printed, ["Listening on http://0.0.0.0:8888/"]);
      const { response } = await answer(8888, GET_CLOSE);
      assert.equal(response.text, "default");
    } finally {
      await server.shutdown();
    }
  });

  test("serve(options, handler) and serve({ ...options, handler }) both serve", async () => {
    const options = { hostname: HOST, port: 0 };
    const listening = [deferred(), deferred()];
    const servers = [
      serve(
        { ...options, onListen: () => listening[0].resolve() },
        () => new Response("two arguments"),
      ),
      serve({
        ...options,
        onListen: () => listening[1].resolve(),
        handler: () => new Response("init"),
      }),
    ];
    try {
      await within(Promise.all(listening.map((l) => l.promise)), 5000, "both servers");
      const texts = [];
      for (const server of servers) {
        texts.push((await answer(server.addr.port, GET_CLOSE)).response.text);
      }
      assert.deepEqual(texts, ["two arguments", "init"]);
    } finally {
      await Promise.all(servers.map((server) => server.shutdown()));
    }
  });

  test("serve() reports the real port in server.addr and to onListen", async () => {
    const heard: unknown[] = [];
    const server = await serveListening({
      hostname: HOST,
      port: 0,
      onListen: (addr) => heard.push(addr),
      handler: ok,
    });
    try {
      assert.equal(server.addr.hostname, HOST);
      assert.equal(server.addr.transport, "tcp");
      assert.ok(server.addr.port > 0);
      assert.deepEqual(heard, [server.addr]);
      assert.equal((await answer(server.addr.port, GET_CLOSE)).response.status, 200);
    } finally {
      await server.shutdown();
    }
  });

  test("serve() prints 'Listening on http://127.0.0.1:<port>/' without onListen", async () => {
    let server: Server | undefined;
    try {
      const printed = await capturing("log", async (lines) => {
        server = serve({ hostname: HOST, port: 0 }, ok);
        await until(() => lines.length > 0, 2000, "the listening line");
      });
      assert.deepEqual(printed, [`Listening on http://${HOST}:${server!.addr.port}/`]);
    } finally {
      await server?.shutdown();
    }
  });

  test("serve() gives the handler info.remoteAddr with the client's port", async () => {
    await withServer((_, info) => Response.json(info.remoteAddr), async ({ connect }) => {
      const client = await connect();
      await client.write(GET);
      const [response] = await client.responses(1);
      assert.deepEqual(JSON.parse(response.text), {
        hostname: HOST,
        port: client.localPort,
        transport: "tcp",
      });
    });
  });

  test("serve() resolves info.completed once the response is written", async () => {
    const completed = deferred<{ promise: Promise<void> }>();
    await withServer((_, info) => {
      completed.resolve({ promise: info.completed });
      return ok();
    }, async ({ port }) => {
      await exchange(port, GET, { responses: 1 });
      await within((await completed.promise).promise, 5000, "info.completed");
    });
  });

  test(
    "serve() rejects info.completed when the client resets mid-response",
    async () => {
      const completed = deferred<{ promise: Promise<void> }>();
      await withServer((_, info) => {
        completed.resolve({ promise: info.completed });
        return new Response(tickingStream(20).stream);
      }, async ({ connect }) => {
        const client = await connect();
        await client.write(GET);
        await client.waitForText("chunk0");
        client.reset();
        assert.equal(await settledWithin((await completed.promise).promise, 1500), "rejected");
      });
    },
  );

  test("serve() passes each raw request head to onRequestHead", async () => {
    const heads: string[] = [];
    await withServer({
      handler: ok,
      onRequestHead: (bytes, info) => heads.push(`${info.remoteAddr.hostname} ${latin1(bytes)}`),
    }, async ({ port }) => {
      const second = head("GET /b HTTP/1.1", "Host: y", "X-Raw:  kept ");
      await exchange(port, GET + second, { responses: 2 });
      assert.deepEqual(heads, [`${HOST} ${GET}`, `${HOST} ${second}`]);
    });
  });

  test("serve() shuts down gracefully when its signal aborts", async () => {
    const controller = new AbortController();
    const { server, port } = await startServer(ok, { signal: controller.signal });
    try {
      assert.equal((await answer(port, GET_CLOSE)).response.status, 200);
      controller.abort();
      await within(server.finished, 5000, "server.finished");
      await assert.rejects(RawClient.connect(port));
    } finally {
      await server.shutdown();
    }
  });

  test("serve() returns a server that `await using` shuts down", async () => {
    let port = 0;
    let server: Server;
    {
      await using disposable = (await startServer(ok)).server;
      server = disposable;
      port = disposable.addr.port;
      assert.equal((await answer(port, GET_CLOSE)).response.status, 200);
    }
    assert.equal(await settledWithin(server.finished, 0), "resolved");
    await assert.rejects(RawClient.connect(port));
  });

  test("serve() throws a RangeError for an invalid port", () => {
    for (const port of [-1, 65536, 1.5, NaN]) {
      assert.throws(() => serve({ hostname: HOST, port, onListen() {} }, ok), RangeError);
    }
  });

  test("serve() throws a TypeError without a handler", () => {
    const init = { hostname: HOST, port: 0, onListen() {} } as unknown as ServeInit;
    assert.throws(() => serve(init), TypeError);
  });
});

// ─── 2. The request line ────────────────────────────────────────────────────

describe("serve() request line", () => {
  /** The echo of one request the handler answered. */
  async function echoed(request: string) {
    let seen: { method: string; url: string } | undefined;
    await withServer(echo, async ({ port }) => {
      const { responses } = await exchange(port, request, { responses: 1 });
      assert.equal(responses[0].status, 200, responses[0].text);
      seen = JSON.parse(responses[0].text);
    });
    return seen!;
  }

  test("serve() passes the method case-sensitively", async () => {
    assert.equal((await echoed(head("get / HTTP/1.1", "Host: x"))).method, "get");
    assert.equal((await echoed(head("PURGE / HTTP/1.1", "Host: x"))).method, "PURGE");
  });

  test("serve() builds request.url from Host and an origin-form target", async () => {
    const { url } = await echoed(head("GET /a/b?c=d&e HTTP/1.1", "Host: example.com:8080"));
    assert.equal(url, "http://example.com:8080/a/b?c=d&e");
  });

  test("serve() ignores empty lines before a request line", async () => {
    assert.equal(
      (await echoed("\r\n\r\n" + head("GET /after HTTP/1.1", "Host: x"))).url,
      "http://x/after",
    );
  });

  test("serve() parses a head that arrives one byte at a time", async () => {
    await withServer(echo, async ({ port }) => {
      const request = head("GET /slow?q=1 HTTP/1.1", "Host: x", "X-A: 1") + GET;
      const { responses } = await exchange(port, [...request], { delayMs: 1, responses: 2 });
      const seen = responses.map((r) => JSON.parse(r.text));
      assert.deepEqual([seen[0].url, seen[0].headers["x-a"], seen[1].url], [
        "http://x/slow?q=1",
        "1",
        "http://x/",
      ]);
    });
  });

  test("serve() accepts an IPv6 literal in Host", async () => {
    assert.equal(
      (await echoed(head("GET / HTTP/1.1", "Host: [::1]:8080"))).url,
      "http://[::1]:8080/",
    );
  });

  test("serve() passes an absolute-form target as request.url", async () => {
    const { url } = await echoed(head("GET http://other.example/x?y=1 HTTP/1.1", "Host: x"));
    assert.equal(url, "http://other.example/x?y=1");
  });

  test("serve() passes OPTIONS * to the handler", async () => {
    assert.equal((await echoed(head("OPTIONS * HTTP/1.1", "Host: x"))).method, "OPTIONS");
  });

  test("serve() answers 501 without a body to CONNECT and closes", async () => {
    const { calls, handler } = spy();
    await withServer(handler, async ({ port }) => {
      const request = head("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443");
      const { response, closed } = await answer(port, request);
      assert.equal(response.status, 501);
      assert.equal(header(response, "content-length"), "0");
      assert.ok(closed);
    });
    assert.equal(calls.length, 0);
  });

  test("serve() answers HTTP/1.0 and HTTP/1.1 requests with an HTTP/1.1 status line", async () => {
    await withServer(ok, async ({ port }) => {
      for (const request of [head("GET / HTTP/1.0"), GET_CLOSE]) {
        const { response } = await answer(port, request);
        assert.deepEqual([response.version, response.status, response.text], [
          "HTTP/1.1",
          200,
          "ok",
        ]);
      }
    });
  });

  rejects(505, { "an HTTP/2.0 request line": head("GET / HTTP/2.0", "Host: x") });

  test("serve() serves an HTTP/1.2 request as HTTP/1.1, kept alive", async () => {
    await withServer(ok, async ({ port }) => {
      const request = head("GET / HTTP/1.2", "Host: x");
      const { responses, closed } = await exchange(port, [request + request], { responses: 2 });
      assert.deepEqual(responses.map((r) => r.status), [200, 200]);
      assert.equal(header(responses[0], "connection"), undefined);
      assert.ok(!closed);
    });
  });

  test("serve() answers 414 when the request target exceeds maxHeaderBytes", {}, async () => {
    await withServer({ handler: ok, maxHeaderBytes: 1024 }, async ({ port }) => {
      const request = head(`GET /${"a".repeat(2000)} HTTP/1.1`, "Host: x");
      await assertRejected(port, request, 414);
    });
  });

  test("serve() answers 414 when a request line without its end exceeds maxHeaderBytes", async () => {
    await withServer({ handler: ok, maxHeaderBytes: 1024 }, async ({ port }) => {
      await assertRejected(port, `GET /${"a".repeat(2000)}`, 414);
    });
  });

  rejects(400, {
    "a request line with two spaces": head("GET  / HTTP/1.1", "Host: x"),
    "a request line without a version": head("GET /", "Host: x"),
    "a request line with a trailing space": head("GET / HTTP/1.1 ", "Host: x"),
    "a request line with a fourth part": head("GET / HTTP/1.1 extra", "Host: x"),
    "a request line with a leading space": head(" GET / HTTP/1.1", "Host: x"),
    "a lowercase version": head("GET / http/1.1", "Host: x"),
    "a version without a minor digit": head("GET / HTTP/1", "Host: x"),
    "a space inside the target": head("GET /a b HTTP/1.1", "Host: x"),
    "a target with a raw non-ASCII byte": head("GET /caf\xe9 HTTP/1.1", "Host: x"),
    "a target with a broken percent-escape": head("GET /%zz HTTP/1.1", "Host: x"),
    "a target that is not a path or URI": head("GET foo HTTP/1.1", "Host: x"),
    "a method with a delimiter": head("GE(T / HTTP/1.1", "Host: x"),
    "the * target outside OPTIONS": head("GET * HTTP/1.1", "Host: x"),
    "an absolute-form target with userinfo": head("GET http://u:pw@x/ HTTP/1.1", "Host: x"),
    "an absolute-form target with empty userinfo": head("GET http://@x/ HTTP/1.1", "Host: x"),
  });

  const garbage: Record<string, Uint8Array> = {
    "binary garbage": new Uint8Array([0x00, 0xff, 0x80, 0x13, 0x37, 0x0d, 0x0a, 0x0d, 0x0a]),
    "a TLS ClientHello": new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]),
  };
  for (const [what, bytes] of Object.entries(garbage)) {
    test(`serve() answers 400 to ${what} at once and keeps serving`, async () => {
      await withServer(ok, async ({ port }) => {
        const started = Date.now();
        await assertRejected(port, [bytes], 400);
        assert.ok(Date.now() - started < 5000, "answered without waiting for a timeout");
        assert.equal((await answer(port, GET_CLOSE)).response.status, 200);
      });
    });
  }
});

// ─── 3. Header fields ───────────────────────────────────────────────────────

describe("serve() header fields", () => {
  const get = (...fields: string[]) => head("GET / HTTP/1.1", ...fields);

  rejects(400, {
    "whitespace between a field name and its colon": get("Host: x", "X-A : 1"),
    "obs-fold": get("Host: x", "X-A: 1", " continued"),
    "a CR inside a field value": get("Host: x", "X-A: a\rb"),
    "a NUL inside a field value": get("Host: x", "X-A: a\0b"),
    "a control character inside a field value": get("Host: x", "X-A: a\x01b"),
    "a space inside a field name": get("Host: x", "X A: 1"),
    "a delimiter inside a field name": get("Host: x", "X(A): 1"),
    "an empty field name": get("Host: x", ": 1"),
    "a field line without a colon": get("Host: x", "NoColon"),
    "an HTTP/1.1 request without Host": get(),
    "two Host fields": get("Host: a", "Host: b"),
    "a Host with a space": get("Host: a b"),
    "a Host with a slash": get("Host: a/b"),
    "a Host with userinfo": get("Host: user@a"),
    "a Host with a non-numeric port": get("Host: a:8x"),
  });

  test("serve() answers 431 when header fields exceed maxHeaderBytes", async () => {
    await withServer({ handler: ok, maxHeaderBytes: 1024 }, async ({ port }) => {
      await assertRejected(port, get("Host: x", `X-Big: ${"b".repeat(2000)}`), 431);
    });
  });

  test("serve() accepts an HTTP/1.0 request without Host", async () => {
    await withServer(echo, async ({ port, server }) => {
      const { response } = await answer(port, head("GET /p HTTP/1.0"));
      assert.equal(response.status, 200);
      assert.equal(JSON.parse(response.text).url, `http://${HOST}:${server.addr.port}/p`);
    });
  });

  test("serve() gives request.headers trimmed values under case-insensitive names", async () => {
    await withServer((request) => {
      const h = request.headers;
      return Response.json([h.get("x-trim"), h.get("X-MIXED"), h.get("x-twice"), h.get("x-empty")]);
    }, async ({ port }) => {
      const request = get(
        "Host: x",
        "X-Trim: \t  padded  value \t ",
        "x-MiXeD:1",
        "X-Twice: a",
        "X-Empty:",
        "X-Twice: b",
      );
      const { responses } = await exchange(port, request, { responses: 1 });
      assert.deepEqual(JSON.parse(responses[0].text), ["padded  value", "1", "a, b", ""]);
    });
  });

  test("serve() passes header value bytes 0x80-0xFF as latin1 code points", async () => {
    await withServer(
      (request) => Response.json(request.headers.get("x-latin")),
      async ({ port }) => {
        const request = get("Host: x", "X-Latin: caf\xe9 \x80\xff");
        const { responses } = await exchange(port, request, { responses: 1 });
        assert.equal(JSON.parse(responses[0].text), "caf\u00e9 \u0080\u00ff");
      },
    );
  });
});

// ─── 4. Request bodies ──────────────────────────────────────────────────────

describe("serve() request bodies", () => {
  const readers: Record<string, (request: Request) => Promise<string>> = {
    "request.text()": (request) => request.text(),
    "request.arrayBuffer()": async (request) =>
      new TextDecoder().decode(await request.arrayBuffer()),
    "request.json()": async (request) => JSON.stringify(await request.json()),
    "request.body": async (request) => {
      const reader = request.body!.getReader();
      let text = "";
      const decoder = new TextDecoder();
      for (let r = await reader.read(); !r.done; r = await reader.read()) {
        text += decoder.decode(r.value, { stream: true });
      }
      return text;
    },
    "request.formData()": async (request) =>
      JSON.stringify([...(await request.formData()).entries()]),
  };
  const bodies: Record<string, { body: string; expected: string; fields?: string[] }> = {
    "request.json()": { body: '{"a": [1, "é"]}', expected: '{"a":[1,"é"]}' },
    "request.formData()": {
      body: "a=1&b=x%20y&a=2",
      expected: '[["a","1"],["b","x y"],["a","2"]]',
      fields: ["Content-Type: application/x-www-form-urlencoded"],
    },
  };
  for (const [name, read] of Object.entries(readers)) {
    test(`${name} reads a Content-Length body`, async () => {
      const { body, expected, fields = [] } = bodies[name] ??
        { body: "héllo, wörld", expected: "héllo, wörld" };
      const utf8 = latin1(new TextEncoder().encode(body));
      await withServer(async (request) => new Response(await read(request)), async ({ port }) => {
        const { responses } = await exchange(port, post(utf8, ...fields), { responses: 1 });
        assert.equal(responses[0].text, expected);
      });
    });
  }

  /** A POST of "hello" whose head says `fields` (and Host) and nothing else. */
  const framed = (fields: string[], version = "HTTP/1.1") =>
    head(`POST / ${version}`, "Host: x", ...fields) + "hello";
  const length = (value: string) => framed([`Content-Length: ${value}`]);
  const coding = (value: string, version?: string) =>
    framed([`Transfer-Encoding: ${value}`], version).replace("hello", "0\r\n\r\n");

  rejects(400, {
    'Content-Length "+5"': length("+5"),
    'Content-Length "-1"': length("-1"),
    'Content-Length "0x5"': length("0x5"),
    'Content-Length "1 0"': length("1 0"),
    "an empty Content-Length": length(""),
    'Content-Length "5, 6"': length("5, 6"),
    "two different Content-Length fields": framed(["Content-Length: 5", "Content-Length: 6"]),
    "Transfer-Encoding with Content-Length": framed([
      "Transfer-Encoding: chunked",
      "Content-Length: 5",
    ]),
    'Transfer-Encoding "chunked, gzip"': coding("chunked, gzip"),
    'Transfer-Encoding "chunked" twice': coding("chunked, chunked"),
    "Transfer-Encoding in HTTP/1.0": coding("chunked", "HTTP/1.0"),
  });

  rejects(501, { 'Transfer-Encoding "gzip, chunked"': coding("gzip, chunked") });

  // Numbers are 1*DIGIT and lists are #element (RFC 9110 §5.6.1, §8.6; RFC 9112
  // §6.1): leading zeros and empty list elements are valid; a value too large to
  // hold exactly, a sign, a second different length and an empty list are not.
  const validFramings: Record<string, string[]> = {
    "Content-Length with 20 leading zeros": ["Content-Length: 000000000000000000005"],
    'Content-Length "5, 005" (one decimal value)': ["Content-Length: 5, 005"],
    'Transfer-Encoding ", chunked"': ["Transfer-Encoding: , chunked"],
    'Transfer-Encoding "Chunked ,, "': ["Transfer-Encoding: Chunked ,, "],
    "an empty Transfer-Encoding line before a chunked one": [
      "Transfer-Encoding:",
      "Transfer-Encoding: chunked",
    ],
  };
  for (const [what, fields] of Object.entries(validFramings)) {
    test(`serve() reads a body framed by ${what}`, async () => {
      const chunked = fields.some((f) => /chunked/i.test(f));
      const request = framed(fields).replace(
        "hello",
        chunked ? "5\r\nhello\r\n0\r\n\r\n" : "hello",
      );
      await withServer(echo, async ({ port }) => {
        const { responses } = await exchange(port, request + GET, { responses: 2 });
        assert.equal(responses[0].status, 200, responses[0].text);
        assert.equal(JSON.parse(responses[0].text).body, "hello");
        assert.equal(responses[1].status, 200, "the next request starts where the body ends");
      });
    });
  }

  test("serve() reads an empty body of Content-Length with 40 zeros", async () => {
    await withServer(echo, async ({ port }) => {
      const request = head("POST / HTTP/1.1", "Host: x", `Content-Length: ${"0".repeat(40)}`);
      const { responses } = await exchange(port, request + GET, { responses: 2 });
      assert.deepEqual(responses.map((r) => r.status), [200, 200]);
      assert.equal(JSON.parse(responses[0].text).body, "");
    });
  });

  rejects(400, {
    "Content-Length of 16 significant digits": length("0001000000000000000"),
    'Content-Length "005, 6"': length("005, 6"),
    'Content-Length ", 5"': length(", 5"),
    'Content-Length "5,"': length("5,"),
    'Transfer-Encoding ", ,"': coding(", ,"),
    "an empty Transfer-Encoding with Content-Length": framed([
      "Transfer-Encoding:",
      "Content-Length: 5",
    ]),
  });

  test("serve() accepts repeated equal Content-Length values", async () => {
    await withServer(echo, async ({ port }) => {
      const { responses } = await exchange(port, post("hello", "Content-Length: 5"), {
        responses: 1,
      });
      assert.equal(JSON.parse(responses[0].text).body, "hello");
    });
  });

  test("serve() decodes a chunked body with extensions and keeps its trailers out of the headers", async () => {
    await withServer(echo, async ({ port }) => {
      const chunked = '5;name=value;q="a \\"quoted\\" one"\r\nhello\r\n6 ; solo\r\n world\r\n' +
        "0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n";
      const { responses } = await exchange(port, postChunked(chunked), { responses: 1 });
      const seen = JSON.parse(responses[0].text);
      assert.equal(seen.body, "hello world");
      assert.equal(seen.headers["x-trailer"], undefined);
    });
  });

  test('serve() gives a chunked body\'s trailer fields through Symbol.for("brick.trailers") once read', async () => {
    const TRAILERS = Symbol.for("brick.trailers");
    await withServer(async (request) => {
      const trailers = (request as unknown as Record<symbol, () => [string, string][]>)[TRAILERS];
      const before = trailers.call(request);
      const body = await request.text();
      return Response.json({ before, body, after: trailers.call(request) });
    }, async ({ port }) => {
      const chunked = "5\r\nhello\r\n0\r\nX-Sum: 5\r\nx-note:  caf\xe9 \t\r\nX-Sum: again\r\n\r\n";
      const { responses } = await exchange(port, postChunked(chunked) + GET, { responses: 2 });
      assert.deepEqual(JSON.parse(responses[0].text), {
        before: [],
        body: "hello",
        after: [["X-Sum", "5"], ["x-note", "caf\xe9"], ["X-Sum", "again"]],
      });
      assert.deepEqual(JSON.parse(responses[1].text).after, []);
    });
  });

  test("serve() reads chunk sizes with leading zeros and extensions after BWS", async () => {
    await withServer(echo, async ({ port }) => {
      const chunked = `${"0".repeat(30)}5 ;a=b\r\nhello\r\n6\t; q = "x\\"y"\t;z\r\n world\r\n` +
        `${"0".repeat(30)}\r\n\r\n`;
      const { responses } = await exchange(port, postChunked(chunked) + GET, { responses: 2 });
      assert.equal(responses[0].status, 200, responses[0].text);
      assert.equal(JSON.parse(responses[0].text).body, "hello world");
      assert.equal(responses[1].status, 200);
    });
  });

  // Every line of the chunked framing ends in CRLF (RFC 9112 §7.1): the bare LF
  // that §2.2 lets a head use is refused here, and so is anything else that
  // could make brick and a proxy in front of it disagree on where a body ends
  // (Go CVE-2025-22871, Netty CVE-2025-58056). A request pipelined behind the
  // broken body is never served.
  const brokenChunks: Record<string, string> = {
    "an invalid chunk size": "zz\r\nhello\r\n0\r\n\r\n",
    "a chunk size of 20 hex digits": "FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
    "a chunk size of 14 hex digits after leading zeros": "00FFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
    "chunk data without its CRLF": "5\r\nhelloXX\r\n0\r\n\r\n",
    "a chunk size with a space inside": "5 5\r\nhello\r\n0\r\n\r\n",
    "a chunk size followed by a space": "5 \r\nhello\r\n0\r\n\r\n",
    "a chunk extension name followed by a space": "5;a \r\nhello\r\n0\r\n\r\n",
    "a chunk extension followed by a tab": "5;a=b\t\r\nhello\r\n0\r\n\r\n",
    "a chunk extension quoting a control byte": '5;a="\\\x00"\r\nhello\r\n0\r\n\r\n',
    "a chunk-size line ended by a bare LF": "5\nhello\r\n0\r\n\r\n",
    "a chunk-size line with an extension ended by a bare LF": "5;a=b\nhello\r\n0\r\n\r\n",
    "chunk data followed by a bare LF": "5\r\nhello\n0\r\n\r\n",
    "a last-chunk line ended by a bare LF": "5\r\nhello\r\n0\n\r\n",
    "a chunked body framed by bare LFs only": "1\nA\n0\n\n",
    "a trailer field ended by a bare LF": "5\r\nhello\r\n0\r\nX-T: 1\n\r\n",
    "a trailer section ended by a bare LF": "5\r\nhello\r\n0\r\n\n",
  };
  for (const [what, chunked] of Object.entries(brokenChunks)) {
    test(`serve() answers 400 to ${what} and closes`, async () => {
      let readError: unknown;
      await withServer(async (request) => {
        await request.text().catch((error) => readError = error);
        return ok();
      }, ({ port }) => assertRejected(port, postChunked(chunked) + GET, 400));
      assert.ok(readError instanceof Error, "the handler's read rejects");
    });
  }

  test(
    "serve() streams a body: the handler reads it before the client sends the rest",
    {},
    async () => {
      await withServer(async (request) => {
        if (request.method === "GET") return ok();
        const reader = request.body!.getReader();
        const { value } = await reader.read();
        reader.releaseLock();
        return new Response(`first: ${latin1(value!)}`);
      }, async ({ connect }) => {
        const client = await connect();
        await client.write(head("POST / HTTP/1.1", "Host: x", "Content-Length: 10") + "01234");
        const [first] = await client.responses(1);
        assert.equal(first.text, "first: 01234", "answered while half the body is unsent");
        await client.write("56789" + GET);
        const both = await client.responses(2);
        assert.equal(both[1].status, 200, "the rest was drained and the connection reused");
      });
    },
  );

  test("serve() decodes a chunked body that arrives one byte at a time", async () => {
    await withServer(echo, async ({ port }) => {
      const request = postChunked('3;x="y"\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n') + GET;
      const { responses } = await exchange(port, [...request], { delayMs: 1, responses: 2 });
      assert.equal(JSON.parse(responses[0].text).body, "abcde");
      assert.equal(responses[1].status, 200);
    });
  });

  test("serve() answers 431 to a trailer section over 16 KiB and closes", async () => {
    const trailers = Array.from({ length: 20 }, (_, i) => `X-T${i}: ${"a".repeat(1000)}\r\n`);
    let readError: unknown;
    await withServer(async (request) => {
      await request.text().catch((error) => readError = error);
      return ok();
    }, ({ port }) => assertRejected(port, postChunked(`0\r\n${trailers.join("")}\r\n`), 431));
    assert.ok(readError instanceof Error, "the handler's read rejects");
  });

  test("serve() answers 400 to chunk framing that far outweighs its data", async () => {
    const chunk = `1;x=${"e".repeat(2000)}\r\nA\r\n`;
    let readError: unknown;
    await withServer(async (request) => {
      await request.text().catch((error) => readError = error);
      return ok();
    }, async ({ port }) => {
      await assertRejected(port, postChunked(chunk.repeat(20) + "0\r\n\r\n"), 400);
      // Ordinary framing is never near the bound: 1,000 one-byte chunks pass.
      const { response } = await answer(
        port,
        postChunked("1\r\nA\r\n".repeat(1000) + "0\r\n\r\n", "Connection: close"),
      );
      assert.equal(response.status, 200);
    });
    assert.ok(readError instanceof Error, "the handler's read rejects");
  });

  const big = "0123456789abcdef".repeat(65_536); // 1 MiB
  const bigChunked = big.match(/.{1,1000}/g)!.map((c) => `${c.length.toString(16)}\r\n${c}\r\n`)
    .join("") + "0\r\n\r\n";
  const bigRequests: Record<string, string> = {
    "a 1 MiB Content-Length body": post(big),
    "a 1 MiB body in 1000-byte chunks": postChunked(bigChunked),
  };
  for (const [what, request] of Object.entries(bigRequests)) {
    test(`request.text() reads ${what}`, async () => {
      await withServer(async (request) => new Response(await request.text()), async ({ port }) => {
        const { responses } = await exchange(port, request + GET_CLOSE);
        assert.equal(responses.length, 2);
        assert.ok(responses[0].text === big, "the body arrives intact");
      });
    });
  }

  test("serve() drains an unread chunked body and serves the next pipelined request", async () => {
    await withServer((request) => new Response(request.method), async ({ port }) => {
      const request = postChunked("5\r\nhello\r\n0\r\nT: 1\r\n\r\n") + GET;
      const { responses } = await exchange(port, request, { responses: 2 });
      assert.deepEqual(responses.map((r) => r.text), ["POST", "GET"]);
    });
  });

  test("serve() drains a small unread body and serves the next pipelined request", async () => {
    await withServer((request) => new Response(new URL(request.url).pathname), async ({ port }) => {
      const request = post("hello").replace("POST /", "POST /first") +
        head("GET /second HTTP/1.1", "Host: x");
      const { responses } = await exchange(port, request, { responses: 2 });
      assert.deepEqual(responses.map((r) => r.text), ["/first", "/second"]);
    });
  });

  test("serve() closes after a response when a large declared body is unread", async () => {
    await withServer(ok, async ({ port }) => {
      const request = head("POST / HTTP/1.1", "Host: x", "Content-Length: 100000") + "partial";
      const { response, closed } = await answer(port, request);
      assert.equal(response.status, 200);
      assert.equal(header(response, "connection"), "close");
      assert.ok(closed);
    });
  });

  test("serve() answers 413 to a Content-Length over maxBodyBytes without the handler", async () => {
    const { calls, handler } = spy();
    await withServer({ handler, maxBodyBytes: 10 }, async ({ port }) => {
      await assertRejected(port, post("x".repeat(11)), 413);
      assert.equal(
        (await answer(port, post("x".repeat(10), "Connection: close")))
          .response.status,
        200,
      );
    });
    assert.equal(calls.length, 1);
  });

  test("serve() answers 413 when a chunked body grows past maxBodyBytes", async () => {
    let readError: unknown;
    await withServer({
      handler: async (request) => {
        await request.text().catch((error) => readError = error);
        return ok();
      },
      maxBodyBytes: 10,
    }, async ({ port }) => {
      await assertRejected(port, postChunked("8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"), 413);
    });
    assert.ok(readError instanceof Error, "the handler's read rejects");
  });
});

// ─── 5. Line endings ────────────────────────────────────────────────────────

describe("serve() line endings", () => {
  test("serve() accepts a request whose lines end in a bare LF", async () => {
    await withServer(echo, async ({ port }) => {
      const { responses } = await exchange(port, "GET /lf HTTP/1.1\nHost: x\nX-A: 1\n\n", {
        responses: 1,
      });
      const seen = JSON.parse(responses[0].text);
      assert.deepEqual([seen.url, seen.headers["x-a"]], ["http://x/lf", "1"]);
    });
  });

  rejects(400, {
    "a request line ended by a bare CR": "GET / HTTP/1.1\rHost: x\r\n\r\n",
    "a field line ended by a bare CR": "GET / HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n",
  });
});

// ─── 6. Responses ───────────────────────────────────────────────────────────

describe("serve() responses", () => {
  test("serve() reads a byte-stream body into a buffer of its own (BYOB), sized or chunked", async () => {
    const parts = ["alpha-", "beta-", "gamma"];
    for (const length of ["16", null]) {
      const pulls: boolean[] = [];
      const handler = () => {
        let next = 0;
        const body = new ReadableStream({
          type: "bytes",
          pull(controller) {
            const request = controller.byobRequest;
            pulls.push(request !== null && request !== undefined);
            if (next === parts.length) {
              controller.close();
              request?.respond(0);
              return;
            }
            const bytes = new TextEncoder().encode(parts[next++]);
            if (!request) return controller.enqueue(bytes);
            (request.view as Uint8Array).set(bytes);
            request.respond(bytes.length);
          },
        });
        return new Response(body, { headers: length ? { "content-length": length } : {} });
      };
      await withServer(handler, async ({ connect }) => {
        const client = await connect();
        await client.write(GET);
        const [response] = await client.responses(1);
        assert.equal(response.text, "alpha-beta-gamma");
        // Bun: brick peeks at a stream, and one that ends at once gets a Content-Length.
        if (!onBun) {
          assert.equal(header(response, "transfer-encoding"), length ? undefined : "chunked");
        }
      });
      // Bun's byte streams offer no byobRequest; the bytes still arrive intact.
      if (!onBun) assert.ok(pulls.length > 0 && pulls.every(Boolean), `pulls: ${pulls}`);
    }
  });

  // On Bun too, though Bun's own Response hides both the type and the string:
  // brick's light Response keeps them.
  test("serve() sends a string body with Content-Type text/plain;charset=UTF-8", async () => {
    await withServer(() => new Response("typed"), async ({ connect }) => {
      const client = await connect();
      await client.write(GET);
      const [response] = await client.responses(1);
      assert.equal(header(response, "content-type")?.toLowerCase(), "text/plain;charset=utf-8");
    });
  });

  test("serve() keeps a string body's Content-Type once the handler reads its headers", async () => {
    let seen: string | null = null;
    await withServer(() => {
      const response = new Response("typed");
      response.headers.set("x-extra", "1");
      seen = response.headers.get("content-type");
      return response;
    }, async ({ connect }) => {
      const client = await connect();
      await client.write(GET);
      const [response] = await client.responses(1);
      assert.equal(seen, "text/plain;charset=UTF-8");
      assert.equal(header(response, "content-type")?.toLowerCase(), "text/plain;charset=utf-8");
      assert.equal(header(response, "x-extra"), "1");
      assert.equal(response.text, "typed");
    });
  });

  // A string past the size brick copies behind the head is written apart from it.
  for (const headers of [undefined, { "x-kind": "long" }]) {
    test(`serve() types a 100,000-character string body (headers: ${JSON.stringify(headers)})`, async () => {
      const text = "a".repeat(100_000);
      await withServer(() => new Response(text, { headers }), async ({ connect }) => {
        const client = await connect();
        await client.write(GET);
        const [response] = await client.responses(1);
        assert.equal(header(response, "content-type")?.toLowerCase(), "text/plain;charset=utf-8");
        assert.equal(header(response, "content-length"), "100000");
        assert.equal(response.text.length, 100_000);
      });
    });
  }

  // Deno holds a body's implied type aside until the headers are read; brick reads its fields
  // without building them, and must still send the type.
  test("serve() sends the Content-Type each kind of body implies, as the runtime's Response names it", async () => {
    const bodies: Record<string, () => Response> = {
      "string": () => new Response("hi"),
      "string with a status": () => new Response("hi", { status: 201 }),
      "string with fields": () => new Response("hi", { headers: { "x-a": "1" } }),
      "string whose headers were read": () => {
        const response = new Response("hi");
        response.headers.get("x-a");
        return response;
      },
      "bytes": () => new Response(new Uint8Array([1, 2])),
      "bytes with a status": () => new Response(new Uint8Array([1, 2]), { status: 200 }),
      "Blob": () => new Response(new Blob(["x"], { type: "image/png" })),
      "Blob with fields": () =>
        new Response(new Blob(["x"], { type: "image/png" }), { headers: {} }),
      "URLSearchParams": () => new Response(new URLSearchParams("a=1")),
      "URLSearchParams with a status": () =>
        new Response(new URLSearchParams("a=1"), { status: 200 }),
      "Response.json()": () => Response.json({ a: 1 }),
      "null": () => new Response(null),
    };
    for (const [kind, make] of Object.entries(bodies)) {
      await withServer(make, async ({ connect }) => {
        // Made while brick serves: on Node and Bun, with the Response it serves with.
        const expected = make().headers.get("content-type") ?? undefined;
        const client = await connect();
        await client.write(GET);
        const [response] = await client.responses(1);
        assert.equal(header(response, "content-type"), expected, kind);
      });
    }
  });

  test("serve() sends the header fields a Response was made with, not later changes to the init", async () => {
    await withServer(() => {
      const headers: Record<string, string> = { "x-made": "then" };
      const response = new Response("copied", { headers });
      headers["x-made"] = "later";
      headers["x-added"] = "later";
      return response;
    }, async ({ connect }) => {
      const client = await connect();
      await client.write(GET);
      const [response] = await client.responses(1);
      assert.equal(header(response, "x-made"), "then");
      assert.equal(header(response, "x-added"), undefined);
      assert.equal(response.text, "copied");
    });
  });

  test("serve() sends a frozen header record's fields with every response made from it", async () => {
    const headers = Object.freeze({ "X-Shared": "yes", "content-type": "text/x-shared" });
    let count = 0;
    let changing = 0;
    // Frozen too, but a getter's value can change: read for every response.
    const live = Object.freeze({
      get "x-count"() {
        return String(++changing);
      },
    });
    await withServer(() => {
      count++;
      if (count === 2) return new Response(new Uint8Array([104, 105]), { headers });
      if (count >= 4) return new Response("live", { headers: live });
      return new Response("text", { headers });
    }, async ({ connect }) => {
      const client = await connect();
      await client.write(GET + GET + GET + GET + GET);
      const responses = await client.responses(5);
      for (const response of responses.slice(0, 3)) {
        assert.equal(header(response, "x-shared"), "yes");
        assert.equal(header(response, "content-type"), "text/x-shared");
      }
      assert.deepEqual(responses.map((r) => r.text), ["text", "hi", "text", "live", "live"]);
      assert.deepEqual(responses.slice(3).map((r) => header(r, "x-count")), ["1", "2"]);
    });
  });

  /** The parsed response to one GET answered by `handler`, plus the raw text. */
  async function respond(handler: () => Response, request = GET_CLOSE) {
    let result: Awaited<ReturnType<typeof exchange>> | undefined;
    await withServer(handler, async ({ port }) => {
      result = await exchange(port, request);
    });
    assert.equal(result!.responses.length, 1, result!.text);
    return { ...result!, response: result!.responses[0] };
  }

  const statusLines: [ResponseInit, string][] = [
    [{}, "HTTP/1.1 200 OK\r\n"],
    [{ status: 404 }, "HTTP/1.1 404 Not Found\r\n"],
    [{ status: 201, statusText: "Made It" }, "HTTP/1.1 201 Made It\r\n"],
  ];
  for (const [init, line] of statusLines) {
    test(`serve() writes the status line ${JSON.stringify(line.trim())}`, async () => {
      const { text } = await respond(() => new Response("x", init));
      assert.ok(text.startsWith(line), text);
    });
  }

  test("serve() sends a Date header in IMF-fixdate form", async () => {
    const { response } = await respond(ok);
    const date = header(response, "date")!;
    assert.match(
      date,
      /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/,
    );
    assert.ok(Math.abs(Date.parse(date) - Date.now()) < 3000, date);
  });

  const lengths: [string, () => BodyInit | null, string][] = [
    ["a string", () => "héllo", "héllo"],
    ["a Uint8Array", () => new Uint8Array([1, 2, 3]), "\x01\x02\x03"],
    ["a Blob", () => new Blob(["blob", "!"]), "blob!"],
    ["a null body", () => null, ""],
  ];
  for (const [what, body, expected] of lengths) {
    test(`serve() sends Content-Length for ${what}`, async () => {
      const { response } = await respond(() => new Response(body()));
      assert.equal(header(response, "transfer-encoding"), undefined);
      assert.equal(header(response, "content-length"), String(response.body.length));
      assert.equal(response.text, expected);
    });
  }

  test("serve() frames pipelined text bodies of ASCII, accents and emoji by their UTF-8 bytes", async () => {
    // 9 characters, 18 bytes: the Content-Length gains a digit over the character count.
    const bodies = ["plain", "ééééééééé", "", "a😀b", "x".repeat(99) + "é", "ok"];
    let next = 0;
    await withServer(() => new Response(bodies[next++]), async ({ connect }) => {
      const client = await connect();
      await client.write(GET.repeat(bodies.length));
      const responses = await client.responses(bodies.length);
      for (const [i, response] of responses.entries()) {
        const bytes = new TextEncoder().encode(bodies[i]).length;
        assert.equal(header(response, "content-length"), String(bytes));
        assert.equal(response.text, bodies[i]);
      }
    });
  });

  test("serve() sends a ReadableStream body chunked on HTTP/1.1", async () => {
    const { response, text } = await respond(() => new Response(tickingStream(1, 3).stream));
    assert.equal(header(response, "transfer-encoding"), "chunked");
    assert.equal(header(response, "content-length"), undefined);
    assert.ok(
      text.endsWith("\r\n\r\n7\r\nchunk0\n\r\n7\r\nchunk1\n\r\n7\r\nchunk2\n\r\n0\r\n\r\n"),
    );
  });

  test("serve() sends a ReadableStream body close-delimited on HTTP/1.0", async () => {
    const { response, closed } = await respond(
      () => new Response(tickingStream(1, 3).stream),
      head("GET / HTTP/1.0", "Connection: keep-alive"),
    );
    assert.equal(response.framing, "close");
    assert.equal(response.text, "chunk0\nchunk1\nchunk2\n");
    assert.equal(header(response, "connection"), "close");
    assert.ok(closed);
  });

  // A non-ASCII text counts its UTF-8 bytes: 3 characters, 6 bytes.
  for (const [text, length] of [["hello world", "11"], ["\xe9\xe9\xe9", "6"]]) {
    test(`serve() answers HEAD for ${JSON.stringify(text)} without a body but with GET's Content-Length`, async () => {
      await withServer(() => new Response(text), async ({ port }) => {
        const request = head("HEAD / HTTP/1.1", "Host: x") + GET;
        const { responses } = await exchange(port, request, { responses: 2, headFor: [0] });
        assert.deepEqual(responses.map((r) => [r.status, header(r, "content-length"), r.text]), [
          [200, length, ""],
          [200, length, text],
        ]);
      });
    });
  }

  test("serve() keeps the handler's Content-Length on a body-less HEAD response", {}, async () => {
    await withServer(() => new Response(null, { headers: { "content-length": "42" } }), async (
      { port },
    ) => {
      const request = head("HEAD / HTTP/1.1", "Host: x");
      const { responses } = await exchange(port, request, { responses: 1, headFor: [0] });
      assert.equal(header(responses[0], "content-length"), "42");
    });
  });

  test("serve() writes a 1 MiB body completely", async () => {
    const big = new Uint8Array(2 ** 20).map((_, i) => i % 251);
    const { response } = await respond(() => new Response(big));
    assert.equal(header(response, "content-length"), String(big.length));
    assert.deepEqual(response.body, big);
  });

  const mismatched: [string, string][] = [["shorter", "20"], ["longer", "10"]];
  for (const [what, length] of mismatched) {
    test(`serve() closes when a stream body is ${what} than its Content-Length`, async () => {
      let result: Exchange | undefined;
      await capturing("error", async () => {
        await withServer(() => {
          const { stream } = tickingStream(1, 2); // 14 bytes
          return new Response(stream, { headers: { "content-length": length } });
        }, async ({ port }) => {
          result = await rawExchange(port, [GET + GET]);
        });
      });
      assert.ok(result!.closed, "the server closes the connection");
      assert.throws(() => parseResponses(result!.bytes), IncompleteResponseError);
    });
  }

  for (const status of [204, 304]) {
    test(`serve() sends a ${status} without body or Content-Length`, async () => {
      await withServer(() => new Response(null, { status }), async ({ port }) => {
        const { responses } = await exchange(port, GET + GET, { responses: 2 });
        for (const response of responses) {
          assert.equal(response.status, status);
          assert.equal(header(response, "content-length"), undefined);
          assert.equal(header(response, "transfer-encoding"), undefined);
        }
      });
    });
  }

  test("serve() says connection: close on the response that ends a connection", async () => {
    const { response, closed } = await respond(ok, GET_CLOSE);
    assert.equal(header(response, "connection"), "close");
    assert.ok(closed);
  });

  test("serve() keeps the handler's Date header instead of adding one", async () => {
    const date = "Tue, 01 Jan 2030 00:00:00 GMT";
    const { response } = await respond(() => new Response("x", { headers: { date } }));
    assert.equal(header(response, "date"), date);
  });

  test("serve() writes each Set-Cookie on its own line", async () => {
    const { response } = await respond(() => {
      const headers = new Headers();
      headers.append("Set-Cookie", "a=1; Path=/");
      headers.append("Set-Cookie", "b=2, c=3");
      return new Response("x", { headers });
    });
    assert.deepEqual(response.headers["set-cookie"], ["a=1; Path=/", "b=2, c=3"]);
  });

  test("serve() uses the handler's Content-Length for a stream body", async () => {
    await withServer(() => {
      const { stream } = tickingStream(1, 2);
      return new Response(stream, { headers: { "content-length": "14" } });
    }, async ({ port }) => {
      const { responses } = await exchange(port, GET + GET, { responses: 2 });
      for (const response of responses) {
        assert.equal(response.framing, "length");
        assert.equal(response.text, "chunk0\nchunk1\n");
        assert.equal(header(response, "transfer-encoding"), undefined);
      }
    });
  });

  test("withTrailers() sends the trailer fields after the last chunk, byte-exact", async () => {
    let length = 0;
    await withServer(() => {
      const parts = ["hello ", "world"];
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          const part = parts.shift();
          if (part === undefined) return controller.close();
          length += part.length;
          controller.enqueue(latin1Bytes(part));
        },
      });
      const response = new Response(body, { headers: { trailer: "X-Length, X-Note" } });
      return withTrailers(response, () => [["X-Length", String(length)], ["X-Note", "caf\xe9"]]);
    }, async ({ port }) => {
      const { text, responses } = await exchange(port, GET + GET, { responses: 2 });
      assert.ok(
        text.endsWith("5\r\nworld\r\n0\r\nX-Length: 22\r\nX-Note: caf\xe9\r\n\r\n"),
        JSON.stringify(text),
      );
      assert.deepEqual(responses[0].trailers, { "x-length": ["11"], "x-note": ["caf\xe9"] });
      assert.equal(responses[0].text, "hello world");
      assert.equal(header(responses[0], "trailer"), "X-Length, X-Note");
    });
  });

  test("withTrailers() sends a text body chunked, and leaves out invalid and framing fields", async () => {
    const errors = await capturing("error", async () => {
      const { response, text } = await respond(() =>
        withTrailers(new Response("abc"), () => [
          ["X-Ok", "1"],
          ["Bad Name", "2"],
          ["X-Split", "a\r\nInjected: yes"],
          ["Content-Length", "3"],
        ])
      );
      assert.equal(response.framing, "chunked");
      assert.equal(response.text, "abc");
      assert.deepEqual(response.trailers, { "x-ok": ["1"] });
      assert.ok(text.endsWith("0\r\nX-Ok: 1\r\n\r\n"), JSON.stringify(text));
    });
    assert.equal(errors.filter((line) => /Invalid trailer field/.test(line)).length, 3);
  });

  test("withTrailers() sends no trailers to HEAD, to HTTP/1.0, or with a Content-Length", async () => {
    let calls = 0;
    const handler = () =>
      withTrailers(new Response("abc", { headers: { "x-a": "1" } }), () => {
        calls++;
        return [["X-T", "1"]];
      });
    const head10 = await respond(handler, "GET / HTTP/1.0\r\n\r\n");
    assert.equal(head10.response.text, "abc");
    assert.notEqual(head10.response.framing, "chunked");
    await withServer(handler, async ({ port }) => {
      const { text } = await exchange(
        port,
        head("HEAD / HTTP/1.1", "Host: x", "Connection: close"),
        {
          headFor: [0],
        },
      );
      assert.ok(text.endsWith("\r\n\r\n") && !/X-T|\r\n0\r\n/.test(text), JSON.stringify(text));
    });
    const declared = await respond(() =>
      withTrailers(new Response("abc", { headers: { "content-length": "3" } }), () => {
        calls++;
        return [["X-T", "1"]];
      })
    );
    assert.equal(declared.response.framing, "length");
    assert.equal(calls, 0);
  });

  test("withTrailers() leaves the body unterminated and closes when the trailers fail", async () => {
    const errors = await capturing("error", async () => {
      await withServer(
        () => withTrailers(new Response("abc"), () => Promise.reject(new Error("no checksum"))),
        async ({ port }) => {
          const { bytes, text, closed } = await rawExchange(port, [GET]);
          assert.equal(closed, true);
          assert.ok(text.includes("\r\n\r\n3\r\nabc\r\n"), JSON.stringify(text));
          assert.throws(() => parseResponses(bytes), IncompleteResponseError);
        },
      );
    });
    assert.ok(errors.some((line) => /trailers failed/.test(line)), errors.join("\n"));
  });

  test("serve() writes latin1 header values as single bytes", {}, async () => {
    const { text } = await respond(() => new Response("x", { headers: { "x-latin": "caf\xe9" } }));
    assert.ok(text.includes("\r\nx-latin: caf\xe9\r\n"), JSON.stringify(text));
  });

  test("serve() writes the heads of responses sharing one frozen record for each status and body", async () => {
    // Such heads are built from bytes kept with the record; each response must still get its own.
    const record = Object.freeze({ "x-latin": "caf\xe9" });
    const answers = [
      () => new Response("ok", { headers: record }),
      () => new Response("missing", { status: 404, headers: record }),
      () => new Response(new Uint8Array([1, 2, 3]), { headers: record }),
      () => new Response("\xe9\xe9\xe9", { headers: record }),
      () => new Response(null, { status: 204, headers: record }),
      () => new Response("ok", { headers: record }),
    ];
    let next = 0;
    await withServer(() => answers[next++](), async ({ connect }) => {
      const client = await connect();
      await client.write(GET.repeat(answers.length));
      const responses = await client.responses(answers.length);
      const seen = responses.map((
        r,
      ) => [r.status, header(r, "content-length"), header(r, "content-type")]);
      assert.deepEqual(seen, [
        [200, "2", "text/plain;charset=UTF-8"],
        [404, "7", "text/plain;charset=UTF-8"],
        [200, "3", undefined],
        [200, "6", "text/plain;charset=UTF-8"],
        [204, undefined, undefined],
        [200, "2", "text/plain;charset=UTF-8"],
      ]);
      for (const response of responses) assert.equal(header(response, "x-latin"), "caf\xe9");
      assert.equal(responses[3].text, "\xe9\xe9\xe9");
    });
  });
});

// ─── 7. Persistent connections ──────────────────────────────────────────────

describe("serve() persistent connections", () => {
  const path = (request: Request) => new Response(new URL(request.url).pathname);

  test("serve() keeps an HTTP/1.1 connection alive by default", async () => {
    await withServer(path, async ({ connect }) => {
      const client = await connect();
      await client.write(head("GET /one HTTP/1.1", "Host: x"));
      await client.responses(1);
      await client.write(head("GET /two HTTP/1.1", "Host: x"));
      const responses = await client.responses(2);
      assert.deepEqual(responses.map((r) => r.text), ["/one", "/two"]);
      assert.equal(header(responses[0], "connection"), undefined);
      assert.ok(!client.closed);
    });
  });

  test("serve() closes an HTTP/1.0 connection by default", async () => {
    await withServer(path, async ({ port }) => {
      const { response, closed } = await answer(
        port,
        head("GET / HTTP/1.0") + head("GET / HTTP/1.0"),
      );
      assert.equal(header(response, "connection"), "close");
      assert.ok(closed);
    });
  });

  test("serve() keeps an HTTP/1.0 connection alive on Connection: keep-alive", async () => {
    await withServer(path, async ({ connect }) => {
      const client = await connect();
      const request = (p: string) => head(`GET ${p} HTTP/1.0`, "Connection: keep-alive");
      await client.write(request("/one"));
      await client.responses(1);
      await client.write(request("/two"));
      const responses = await client.responses(2);
      assert.deepEqual(responses.map((r) => [r.text, header(r, "connection")]), [
        ["/one", "keep-alive"],
        ["/two", "keep-alive"],
      ]);
    });
  });

  test("serve() honours Connection: close from the client", async () => {
    await withServer(path, async ({ port }) => {
      const { responses, closed } = await exchange(port, GET_CLOSE + GET);
      assert.equal(responses.length, 1);
      assert.equal(header(responses[0], "connection"), "close");
      assert.ok(closed);
    });
  });

  test("serve() closes after a response whose handler set connection: close", async () => {
    const closing = () => new Response("bye", { headers: { connection: "close" } });
    await withServer(closing, async ({ port }) => {
      const { responses, closed } = await exchange(port, GET + GET);
      assert.deepEqual(responses.map((r) => [r.text, header(r, "connection")]), [["bye", "close"]]);
      assert.ok(closed);
    });
  });

  test("serve() still answers a client that half-closes after its request", async () => {
    await withServer(async () => {
      await delay(20);
      return ok();
    }, async ({ port }) => {
      const { responses, closed } = await exchange(port, GET, { endAfter: true });
      assert.deepEqual(responses.map((r) => [r.status, r.text]), [[200, "ok"]]);
      assert.ok(closed);
    });
  });

  test("serve() answers 10 pipelined requests in order", async () => {
    await withServer(async (request) => {
      const n = Number(new URL(request.url).pathname.slice(1));
      await delay((10 - n) * 3); // later requests finish faster if run concurrently
      return new Response(String(n));
    }, async ({ port }) => {
      const requests = Array.from({ length: 10 }, (_, i) => head(`GET /${i} HTTP/1.1`, "Host: x"));
      const { responses } = await exchange(port, requests.join(""), { responses: 10 });
      assert.deepEqual(responses.map((r) => r.text), [..."0123456789"]);
    });
  });

  test("serve() answers a valid request and then 400 to garbage behind it", async () => {
    await withServer(ok, async ({ port }) => {
      const { responses, closed } = await exchange(port, GET + "\x16\x03\x01garbage\r\n\r\n");
      assert.deepEqual(responses.map((r) => r.status), [200, 400]);
      assert.ok(closed);
    });
  });
});

// ─── 8. Expect: 100-continue ────────────────────────────────────────────────

describe("serve() Expect", () => {
  const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";
  const expecting = (version = "HTTP/1.1") =>
    head(`POST / ${version}`, "Host: x", "Content-Length: 5", "Expect: 100-continue");

  test("serve() sends 100 Continue only when the handler reads the body", async () => {
    const gate = deferred();
    await withServer(async (request) => {
      await gate.promise;
      return new Response(`got ${await request.text()}`);
    }, async ({ connect }) => {
      const client = await connect();
      await client.write(expecting());
      await delay(150);
      assert.equal(client.text, "", "no 100 before the handler reads");
      gate.resolve();
      await client.waitForText(CONTINUE);
      assert.equal(client.text, CONTINUE);
      await client.write("hello");
      const [interim, final] = await client.responses(2);
      assert.deepEqual([interim.status, final.status, final.text], [100, 200, "got hello"]);
    });
  });

  test("serve() sends no 100 and closes when the handler ignores the body", async () => {
    await withServer(ok, async ({ port }) => {
      const { response, closed } = await answer(port, expecting());
      assert.equal(response.status, 200);
      assert.equal(header(response, "connection"), "close");
      assert.ok(closed);
    });
  });

  test("serve() never sends 100 Continue to HTTP/1.0", async () => {
    await withServer(async (request) => new Response(await request.text()), async ({ connect }) => {
      const client = await connect();
      await client.write(expecting("HTTP/1.0"));
      await delay(150);
      assert.equal(client.text, "");
      await client.write("hello");
      const [response] = await client.responses(1);
      assert.deepEqual([response.status, response.text], [200, "hello"]);
    });
  });

  test("serve() reads Expect as a list: empty elements, any case, repeated lines", async () => {
    const expects: string[][] = [
      ["Expect: , 100-Continue ,"],
      ["Expect:", "Expect: 100-CONTINUE"],
      ["Expect:"],
    ];
    await withServer(async (request) => new Response(await request.text()), async ({ port }) => {
      for (const fields of expects) {
        const request = head("POST / HTTP/1.1", "Host: x", "Content-Length: 5", ...fields);
        const { responses } = await exchange(port, request + "hello" + GET_CLOSE);
        const final = responses.filter((r) => r.status !== 100);
        assert.deepEqual(
          final.map((r) => [r.status, r.text]),
          [[200, "hello"], [200, ""]],
          fields.join(),
        );
      }
    });
  });

  rejects(417, {
    "Expect: something-else": head("GET / HTTP/1.1", "Host: x", "Expect: something-else"),
    "an Expect list with an unknown member": head(
      "GET / HTTP/1.1",
      "Host: x",
      "Expect: 100-continue, something-else",
    ),
    "an unknown expectation on a second Expect line": head(
      "GET / HTTP/1.1",
      "Host: x",
      "Expect: something-else",
      "Expect: 100-continue",
    ),
  });
});

// ─── 9. Client disconnects ──────────────────────────────────────────────────

describe("serve() client disconnects", () => {
  for (const how of ["closes", "resets"] as const) {
    test(`request.signal aborts when the client ${how} while the handler waits`, async () => {
      const started = deferred();
      const aborted = deferred();
      await withServer((request) => {
        request.signal.addEventListener("abort", () => aborted.resolve());
        started.resolve();
        return aborted.promise.then(ok);
      }, async ({ port, connect }) => {
        const client = await connect();
        await client.write(GET);
        await within(started.promise, 5000, "the handler to start");
        if (how === "closes") client.destroy();
        else client.reset();
        await within(aborted.promise, 5000, "request.signal to abort");
        assert.equal((await answer(port, GET_CLOSE)).response.status, 200);
      });
    });
  }

  test("request.signal is already aborted when first read after the client left", async () => {
    const gate = deferred();
    const started = deferred();
    const aborted = deferred<boolean>();
    await withServer(async (request) => {
      started.resolve();
      await gate.promise;
      aborted.resolve(request.signal.aborted);
      return ok();
    }, async ({ connect }) => {
      const client = await connect();
      await client.write(GET);
      await within(started.promise, 5000, "the handler to start");
      client.destroy();
      await delay(1000); // time for the server to notice; nothing observable says when
      gate.resolve();
      assert.equal(await within(aborted.promise, 5000, "the handler"), true);
    });
  });

  const streams = [["a streaming", 20], ["an idle streaming", "idle"]] as const;
  for (const [what, everyMs] of streams) {
    test(`serve() cancels ${what} response when the client goes away`, async () => {
      const { stream, cancelled } = tickingStream(everyMs);
      await withServer((request) => {
        return new URL(request.url).pathname === "/stream" ? new Response(stream) : ok();
      }, async ({ port, connect }) => {
        const client = await connect();
        await client.write(head("GET /stream HTTP/1.1", "Host: x"));
        await client.waitForText("chunk0");
        client.destroy();
        await within(cancelled, 5000, "the stream's cancel()");
        assert.equal((await answer(port, GET_CLOSE)).response.status, 200);
      });
    });
  }
});

// ─── 10. Handler errors ─────────────────────────────────────────────────────

describe("serve() handler errors", () => {
  /** Sends a failing request and then a good one on one connection. */
  async function failThenServe(port: number) {
    const request = head("GET /fail HTTP/1.1", "Host: x") + GET;
    const { responses } = await exchange(port, request, { responses: 2 });
    assert.equal(responses[1].status, 200, "the connection stays usable");
    return responses[0];
  }
  const failing = (fail: () => Response | Promise<Response>) => (request: Request) =>
    new URL(request.url).pathname === "/fail" ? fail() : ok();

  const failures: Record<string, () => Response | Promise<Response>> = {
    throws: () => {
      throw new Error("thrown");
    },
    rejects: () => Promise.reject(new Error("rejected")),
    "returns a non-Response": () => "not a response" as unknown as Response,
  };
  for (const [what, fail] of Object.entries(failures)) {
    test(`serve() answers 500 and logs when the handler ${what}`, async () => {
      let response;
      const logged = await capturing("error", async () => {
        await withServer(failing(fail), async ({ port }) => {
          response = await failThenServe(port);
        });
      });
      assert.equal(response!.status, 500);
      assert.equal(logged.length, 1, logged.join("\n"));
    });
  }

  test("serve() sends onError's response when the handler throws", async () => {
    await withServer({
      handler: failing(() => {
        throw new Error("boom");
      }),
      onError: (error) => new Response(`custom: ${(error as Error).message}`, { status: 503 }),
    }, async ({ port }) => {
      const response = await failThenServe(port);
      assert.deepEqual([response.status, response.text], [503, "custom: boom"]);
    });
  });

  test("serve() closes without the last chunk when the response stream fails", async () => {
    let result: Exchange | undefined;
    const logged = await capturing("error", async () => {
      await withServer(() => {
        let sent = false;
        return new Response(
          new ReadableStream({
            pull(controller) {
              if (sent) return controller.error(new Error("stream broke"));
              sent = true;
              controller.enqueue(latin1Bytes("partial"));
            },
          }),
        );
      }, async ({ port }) => {
        result = await rawExchange(port, [GET]);
      });
    });
    assert.ok(result!.closed, "the server closes the connection");
    assert.ok(result!.text.endsWith("\r\n\r\n7\r\npartial\r\n"), JSON.stringify(result!.text));
    assert.throws(() => parseResponses(result!.bytes), IncompleteResponseError);
    assert.equal(logged.length, 1);
  });
});

// ─── 11. Concurrency ────────────────────────────────────────────────────────

describe("serve() concurrency", () => {
  // Full-size floods (10,000 connections) and their figures are in `deno task stress`.
  test("serve() answers every one of 250 concurrent connections", async () => {
    await withServer(ok, async ({ port }) => {
      const statuses = await Promise.all(
        Array.from({ length: 250 }, () => answer(port, GET_CLOSE).then((a) => a.response.status)),
      );
      assert.equal(statuses.filter((s) => s === 200).length, 250);
    });
  });

  test("serve() is not held up by a client that sends half a head", async () => {
    await withServer(ok, async ({ port, connect }) => {
      const slow = await connect();
      await slow.write("GET / HTTP/1.1\r\nHo");
      const started = Date.now();
      assert.equal((await answer(port, GET_CLOSE)).response.status, 200);
      assert.ok(Date.now() - started < 5000, "not after the 10 s readHeaderTimeout");
    });
  });
});

// ─── Connection upgrades (the hook websocket.ts uses) ────────────────────────

/** What a brick request offers under Symbol.for("brick.upgrade"). */
interface Upgraded {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<void>;
  close(): void;
  onShutdown: (() => void) | null;
}
type Upgradable = Request & { [key: symbol]: (response: Response) => Promise<Upgraded> };
const UPGRADE = Symbol.for("brick.upgrade");
const UPGRADE_REQUEST = head(
  "GET /chat HTTP/1.1",
  "Host: x",
  "Upgrade: echo",
  "Connection: upgrade",
);

/** A handler that upgrades to a line-less echo protocol: every byte read is written back. */
function echoUpgrade(onUpgraded?: (conn: Upgraded) => void) {
  return (request: Request) => {
    const response = new Response(null, { headers: { upgrade: "echo", connection: "Upgrade" } });
    (request as Upgradable)[UPGRADE](response).then(async (conn) => {
      onUpgraded?.(conn);
      const buffer = new Uint8Array(1024);
      for (;;) {
        const n = await conn.read(buffer).catch(() => null);
        if (n === null) return conn.close();
        await conn.write(buffer.slice(0, n));
      }
    });
    return response;
  };
}

describe("serve() connection upgrades", () => {
  test("serve() answers an upgrade with 101 and hands the raw connection over", async () => {
    await withServer(echoUpgrade(), async ({ connect }) => {
      const client = await connect();
      await client.write(UPGRADE_REQUEST + "early bytes|");
      await client.waitForText("early bytes|");
      assert.match(client.text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
      assert.match(client.text, /\r\nupgrade: echo\r\n/i);
      assert.match(client.text, /\r\nconnection: Upgrade\r\n/i);
      assert.doesNotMatch(client.text, /content-length|transfer-encoding/i);
      // After the handover, bytes that look like HTTP are not parsed as a request.
      await client.write(GET);
      await client.waitForText("\r\n\r\nearly bytes|" + GET);
      assert.doesNotMatch(client.text, /HTTP\/1\.1 200/, "the echoed request is not answered");
    });
  });

  test("serve() keeps an upgraded connection out of the deadlines", async () => {
    await withServer(
      { handler: echoUpgrade(), idleTimeout: 100, readHeaderTimeout: 100 },
      async ({ connect }) => {
        const client = await connect();
        await client.write(UPGRADE_REQUEST);
        await client.waitForText("\r\n\r\n");
        await delay(400);
        await client.write("still here");
        await client.waitForText("still here");
        assert.equal(client.closed, false);
      },
    );
  });

  test("serve() rejects the upgrade and answers normally when the handler returns another response", async () => {
    const rejected = deferred<unknown>();
    await withServer((request) => {
      const upgrade = new Response(null);
      (request as Upgradable)[UPGRADE](upgrade).catch(rejected.resolve);
      return new Response("not upgraded");
    }, async ({ connect }) => {
      const client = await connect();
      await client.write(UPGRADE_REQUEST + GET);
      const [first, second] = await client.responses(2);
      assert.equal(first.status, 200);
      assert.equal(first.text, "not upgraded");
      assert.equal(second.status, 200, "the connection stays HTTP");
      assert.ok(await within(rejected.promise, 5000, "the upgrade to reject") instanceof Error);
    });
  });

  test("serve() refuses to upgrade a request that has a body", async () => {
    const rejected = deferred<unknown>();
    await withServer((request) => {
      const upgrade = new Response(null);
      (request as Upgradable)[UPGRADE](upgrade).catch(rejected.resolve);
      return upgrade;
    }, async ({ connect }) => {
      const client = await connect();
      await client.write(
        head(
          "POST / HTTP/1.1",
          "Host: x",
          "Upgrade: echo",
          "Connection: upgrade",
          "Content-Length: 5",
        ) + "hel",
      );
      const [response] = await client.responses(1);
      assert.equal(response.status, 400);
      assert.ok(await within(rejected.promise, 5000, "the upgrade to reject") instanceof Error);
    });
  });

  test("Server.shutdown() tells upgraded connections, then closes them at shutdownTimeout", async () => {
    const told = deferred<void>();
    const { server, port } = await startServer(
      echoUpgrade((conn) => conn.onShutdown = () => told.resolve()),
      { shutdownTimeout: 200 },
    );
    const client = await RawClient.connect(port);
    await client.write(UPGRADE_REQUEST);
    await client.waitForText("\r\n\r\n");
    const finished = server.shutdown();
    await within(told.promise, 5000, "onShutdown");
    await client.waitClosed(5000);
    await within(finished, 5000, "the shutdown to finish");
  });

  test("serve() answers an error that carries its own response with that response", async () => {
    await withServer(() => {
      throw Object.assign(new Error("handshake"), {
        [Symbol.for("brick.errorResponse")]: () =>
          new Response("upgrade required\n", { status: 426 }),
      });
    }, async ({ connect }) => {
      const client = await connect();
      await client.write(GET);
      const [response] = await client.responses(1);
      assert.equal(response.status, 426);
      assert.equal(response.text, "upgrade required\n");
    });
  });
});

// ─── Connection limit ───────────────────────────────────────────────────────

describe("serve() maxConnections", () => {
  test("serve() answers 503 with Retry-After over maxConnections and keeps the open ones", async () => {
    await withServer({ handler: ok, maxConnections: 2 }, async ({ connect }) => {
      const first = await connect();
      const second = await connect();
      await first.write("GET / HTTP/1.1\r\nHo"); // active: mid-request
      await second.write("GET / HTTP/1.1\r\nHo");
      await delay(500); // for the server to read both
      const third = await connect();
      const [refused] = await third.responses(1);
      assert.equal(refused.status, 503);
      assert.equal(header(refused, "retry-after"), "1");
      assert.equal(header(refused, "connection"), "close");
      await third.waitClosed();
      await first.write("st: x\r\n\r\n");
      await second.write("st: x\r\n\r\n");
      assert.equal((await first.responses(1))[0].status, 200);
      assert.equal((await second.responses(1))[0].status, 200);
    });
  });

  test("serve() closes an idle keep-alive connection to make room at maxConnections", async () => {
    await withServer({ handler: ok, maxConnections: 1 }, async ({ connect }) => {
      const idle = await connect();
      await idle.write(GET);
      await idle.responses(1);
      const newcomer = await connect();
      await newcomer.write(GET);
      assert.equal((await newcomer.responses(1))[0].status, 200);
      await idle.waitClosed();
    });
  });

  test("serve() counts refused connections out once they close", async () => {
    await withServer({ handler: ok, maxConnections: 1 }, async ({ connect, port }) => {
      const busy = await connect();
      await busy.write("GET / HTTP/1.1\r\n");
      await delay(500); // for the server to read it
      for (let i = 0; i < 3; i++) {
        const refused = await connect();
        assert.equal((await refused.responses(1))[0].status, 503);
        await refused.waitClosed();
      }
      busy.destroy();
      let status = 0;
      for (let tries = 0; tries < 40 && status !== 200; tries++) {
        await delay(25);
        status = (await answer(port, GET_CLOSE)).response.status;
      }
      assert.equal(status, 200, "the slot of the closed connection is free again");
    });
  });

  test("serve() throws a RangeError for maxConnections below 1", () => {
    assert.throws(() => serve({ maxConnections: 0, handler: ok }), RangeError);
  });
});

// ─── 12. Graceful shutdown ──────────────────────────────────────────────────

describe("Server.shutdown()", () => {
  test("Server.shutdown() closes an idle keep-alive connection with FIN after a grace", async () => {
    await withServer(ok, async ({ server, connect }) => {
      const client = await connect();
      await client.write(GET);
      await client.responses(1);
      const started = Date.now();
      await within(server.shutdown(), 5000, "shutdown");
      await client.waitClosed(5000);
      assert.equal(client.error, null, "closed with FIN, not reset");
      assert.ok(Date.now() - started >= 500, "the client had time to send one more request");
    });
  });

  test("Server.shutdown() closes a connection that has been idle long without a grace", async () => {
    await withServer(ok, async ({ server, connect }) => {
      const client = await connect();
      await client.write(GET);
      await client.responses(1);
      await delay(1500); // idle for longer than the grace
      await within(server.shutdown(), 5000, "shutdown");
      await client.waitClosed(5000);
      assert.equal(client.error, null, "closed with FIN, not reset");
    });
  });

  test(
    "Server.shutdown() answers the next request on a keep-alive connection, sent as it " +
      "begins or soon after (with connection: close), then closes with FIN",
    async () => {
      await withServer(ok, async ({ server, connect }) => {
        const clients = await Promise.all(Array.from({ length: 8 }, () => connect()));
        for (const client of clients) await client.write(GET);
        for (const client of clients) await client.responses(1);
        // Half the next requests leave as the shutdown starts (in the
        // server's hands or still in the kernel, none read yet), half once
        // it is under way.
        const early = clients.slice(0, 4), late = clients.slice(4);
        const sent = Promise.all(early.map((client) => client.write(GET)));
        const finished = server.shutdown();
        await sent;
        await delay(200);
        await Promise.all(late.map((client) => client.write(GET)));
        for (const client of clients) {
          const responses = await client.responses(2);
          assert.equal(responses[1].status, 200);
          if (late.includes(client)) assert.equal(header(responses[1], "connection"), "close");
          await client.waitClosed(3000);
          assert.equal(client.error, null, "closed with FIN, not reset");
        }
        await within(finished, 3000, "shutdown");
      });
    },
  );

  test("Server.shutdown() lets a request in flight finish with connection: close", async () => {
    const gate = deferred();
    const started = deferred();
    await withServer({
      handler: async () => {
        started.resolve();
        await gate.promise;
        return ok();
      },
      shutdownTimeout: 10_000, // longer than the wait: a finished request must not need it
    }, async ({ server, connect }) => {
      const client = await connect();
      await client.write(GET);
      await started.promise;
      const finished = server.shutdown();
      assert.equal(await settledWithin(finished, 100), "pending");
      gate.resolve();
      const [response] = await client.responses(1);
      assert.deepEqual([response.status, header(response, "connection")], [200, "close"]);
      await within(finished, 5000, "shutdown");
      await client.waitClosed(5000);
    });
  });

  test("Server.shutdown() refuses new connections", async () => {
    await withServer(ok, async ({ server, port }) => {
      await server.shutdown();
      await assert.rejects(RawClient.connect(port));
    });
  });

  test("Server.shutdown() force-closes a never-ending response after shutdownTimeout", async () => {
    const { stream, cancelled } = tickingStream(50);
    await withServer({ handler: () => new Response(stream), shutdownTimeout: 200 }, async (
      { server, connect },
    ) => {
      const client = await connect();
      await client.write(GET);
      await client.waitForText("chunk0");
      const started = Date.now();
      await within(server.shutdown(), 5000, "shutdown");
      assert.ok(Date.now() - started >= 150, "waited for shutdownTimeout");
      await client.waitClosed(5000);
      await within(cancelled, 5000, "the stream's cancel()");
    });
  });
});

// ─── 13. Timeouts and limits ────────────────────────────────────────────────

describe("serve() timeouts and limits", () => {
  test("serve() answers 408 and closes when a head takes longer than readHeaderTimeout", async () => {
    await withServer({ handler: ok, readHeaderTimeout: 300 }, async ({ connect }) => {
      const client = await connect();
      await client.write("GET / HTTP/1.1\r\nHost: x\r\n");
      await client.waitClosed(5000);
      const [response] = parseResponses(client.received);
      assert.equal(response.status, 408);
    });
  });

  test("serve() closes a silent new connection after readHeaderTimeout", async () => {
    await withServer({ handler: ok, readHeaderTimeout: 300 }, async ({ connect }) => {
      const client = await connect();
      await client.waitClosed(5000);
      assert.equal(client.text, "");
    });
  });

  test("serve() answers 408 and closes when a body takes longer than readTimeout", async () => {
    await withServer({
      handler: async (request) => new Response(await request.text().catch(() => "")),
      readTimeout: 300,
    }, async ({ connect }) => {
      const client = await connect();
      await client.write(head("POST / HTTP/1.1", "Host: x", "Content-Length: 10") + "ab");
      await client.waitClosed(5000);
      const [response] = parseResponses(client.received);
      assert.equal(response.status, 408);
    });
  });

  test("serve() closes and aborts request.signal when writeTimeout passes", async () => {
    const aborted = deferred();
    await withServer({
      handler: async (request) => {
        request.signal.addEventListener("abort", () => aborted.resolve());
        await within(aborted.promise, 10_000, "request.signal to abort").catch(() => {});
        return ok();
      },
      writeTimeout: 300,
    }, async ({ connect }) => {
      const client = await connect();
      await client.write(GET);
      await client.waitClosed(5000);
      await within(aborted.promise, 5000, "request.signal to abort");
      assert.equal(client.text, "");
    });
  });

  test("serve() closes a keep-alive connection after idleTimeout", async () => {
    await withServer({ handler: ok, idleTimeout: 300 }, async ({ connect }) => {
      const client = await connect();
      await client.write(GET);
      await client.responses(1);
      const started = Date.now();
      await client.waitClosed(5000);
      assert.ok(Date.now() - started >= 200, "not before idleTimeout");
      assert.equal(parseResponses(client.received).length, 1);
    });
  });

  test("serve() defaults maxHeaderBytes to 16 KiB", async () => {
    await withServer(ok, async ({ port }) => {
      const fields = (size: number) => `X-Big: ${"b".repeat(size)}`;
      const under = await answer(
        port,
        head("GET / HTTP/1.1", "Host: x", "Connection: close", fields(15_000)),
      );
      assert.equal(under.response.status, 200);
      await assertRejected(port, head("GET / HTTP/1.1", "Host: x", fields(17_000)), 431);
    });
  });

  test("serve() defaults maxBodyBytes to 16 MiB", async () => {
    await withServer(ok, async ({ port }) => {
      const request = head("POST / HTTP/1.1", "Host: x", `Content-Length: ${16 * 2 ** 20 + 1}`);
      await assertRejected(port, request, 413);
    });
  });
});

// ─── Responses the handler builds (on Node, brick's light Response) ─────────

describe("serve() with the Response class handlers see", () => {
  /** Runs `body` while a server is up: on Node, that is when the light Response is in place. */
  async function whileServing(body: () => Promise<void> | void): Promise<void> {
    await withServer(ok, async () => await body());
  }

  test("serve() keeps instanceof Response true for built and fetched responses", async () => {
    await withServer(() => new Response("built"), async ({ port }) => {
      const built = new Response("x");
      const fetched = await fetch(`http://${HOST}:${port}/`);
      assert.ok(built instanceof Response && fetched instanceof Response);
      assert.equal(await fetched.text(), "built");
      assert.equal(await built.text(), "x");
    });
  });

  test("serve() keeps a Response's constructor errors where the handler makes it", async () => {
    await whileServing(() => {
      assert.throws(() => new Response("x", { headers: { "x-bad": "a\nb" } }), TypeError);
      assert.throws(() => new Response("x", { status: 99 }), RangeError);
      // Bun's own Response accepts a body with 204; undici's (Node) and Deno's do not.
      if (!onBun) assert.throws(() => new Response("x", { status: 204 }), TypeError);
    });
  });

  test("serve() sends header fields a handler sets after building the Response", async () => {
    await withServer(() => {
      const response = new Response("late", { headers: { "x-early": "1" } });
      response.headers.set("x-late", "2");
      return response;
    }, async ({ port }) => {
      const [response] = (await exchange(port, GET_CLOSE)).responses;
      assert.deepEqual([header(response, "x-early"), header(response, "x-late")], ["1", "2"]);
      assert.equal(response.text, "late");
    });
  });

  test("serve() sends Response.json() and the Content-Type the runtime gives strings", async () => {
    let expected: string | undefined;
    await withServer((request) => {
      expected = new Response("probe").headers.get("content-type") ?? undefined;
      return new URL(request.url).pathname === "/json"
        ? Response.json({ a: 1 })
        : new Response("text");
    }, async ({ port }) => {
      const [json, text] = (await exchange(
        port,
        head("GET /json HTTP/1.1", "Host: x") + GET_CLOSE,
      )).responses;
      assert.match(header(json, "content-type") ?? "", /^application\/json/);
      assert.equal(json.text, '{"a":1}');
      assert.equal(header(text, "content-type"), expected);
    });
  });

  test("serve() sends the fields of a Headers object, an array and a record alike", async () => {
    const inits: HeadersInit[] = [
      new Headers({ "X-A": "1" }),
      [["X-A", "1"]],
      { "X-A": " 1 " },
    ];
    for (const headers of inits) {
      await withServer(() => new Response("h", { headers }), async ({ port }) => {
        const [response] = (await exchange(port, GET_CLOSE)).responses;
        assert.equal(header(response, "x-a"), "1");
      });
    }
  });
});

// ─── 14. Real clients ───────────────────────────────────────────────────────

describe("serve() with real clients", () => {
  let server: Server;
  let base = "";
  before(async () => {
    const started = await startServer(async (request) => {
      const { pathname } = new URL(request.url);
      if (pathname === "/stream") return new Response(tickingStream(5, 3).stream);
      return new Response(`${request.method} ${pathname} ${await request.text()}`);
    });
    server = started.server;
    base = `http://${HOST}:${started.port}`;
  });
  after(() => server.shutdown());

  test("serve() answers fetch() GET", async () => {
    const response = await fetch(`${base}/get`);
    assert.deepEqual([response.status, await response.text()], [200, "GET /get "]);
  });

  test("serve() answers fetch() POST with a body", async () => {
    const response = await fetch(`${base}/post`, { method: "POST", body: "payload" });
    assert.equal(await response.text(), "POST /post payload");
  });

  test("serve() streams a response to fetch()", async () => {
    const response = await fetch(`${base}/stream`);
    assert.equal(response.headers.get("transfer-encoding"), "chunked");
    assert.equal(await response.text(), "chunk0\nchunk1\nchunk2\n");
  });

  test("serve() answers curl", { skip: curlSkip }, async () => {
    const output = await curl(`${base}/curl`);
    assert.match(output, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(output.endsWith("\r\n\r\nGET /curl "), output);
  });

  test("serve() answers curl --http1.0 and closes", { skip: curlSkip }, async () => {
    const output = await curl("--http1.0", `${base}/stream`);
    assert.match(output, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(output, /\r\nconnection: close\r\n/);
    assert.doesNotMatch(output, /transfer-encoding/i);
    assert.ok(output.endsWith("\r\n\r\nchunk0\nchunk1\nchunk2\n"), output);
  });
});
