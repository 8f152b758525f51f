// Tests for proxy.ts: brick in front of a real upstream (a brick server, a
// node:http server, or a raw node:net server where framing matters), over
// real sockets on 127.0.0.1. Runtime-neutral (node:test, node:net, node:http),
// so the same file runs under deno test, node --test and bun test.

import { describe, test } from "./_test_skips.ts";
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { readdirSync } from "node:fs";
import type { Server } from "./mod.ts";
import { createProxy, type ProxyOptions } from "./proxy.ts";
import { upgradeWebSocket } from "./websocket.ts";
import WebSocket from "ws";
import {
  deferred,
  delay,
  head,
  header,
  HOST,
  latin1,
  parseResponses,
  RawClient,
  rawExchange,
  startServer,
  until,
  within,
} from "./_test_utils.ts";

/** Starts a node:http upstream; returns its port and a close function. */
export async function nodeUpstream(
  handler: http.RequestListener,
): Promise<{ port: number; close(): Promise<void>; connections: () => number }> {
  const server = http.createServer(handler);
  let connections = 0;
  const sockets = new Set<net.Socket>();
  server.on("connection", (socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Starts a raw TCP upstream that runs `onSocket` for every connection. */
export async function rawUpstream(
  onSocket: (socket: net.Socket) => void,
): Promise<{ port: number; close(): Promise<void>; connections: () => number }> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Starts brick with a proxy to `upstreamPort`; returns its port. */
export async function startProxy(
  upstreamPort: number,
  options: Partial<ProxyOptions> = {},
): Promise<{ server: Server; port: number; close(): Promise<void> }> {
  const handler = createProxy({ upstream: `http://${HOST}:${upstreamPort}`, ...options });
  const { server, port } = await startServer((request, info) => handler(request, info));
  return {
    server,
    port,
    close: async () => {
      handler.close();
      await server.shutdown();
    },
  };
}

/** Open file descriptors of this process, or null where /proc is absent. */
function openFds(): number | null {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return null;
  }
}

/** Reads a request's body as text. */
function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("latin1");
    req.on("data", (chunk: string) => text += chunk);
    req.on("end", () => resolve(text));
    req.on("error", reject);
  });
}

describe("proxy() forwarding", () => {
  test("forwards method, path, query and body to a brick upstream and returns its answer", async () => {
    const { server: upstream, port } = await startServer(async (request) => {
      const url = new URL(request.url);
      return new Response(
        `${request.method} ${url.pathname}${url.search} ${await request.text()}`,
        {
          status: 201,
          headers: { "x-upstream": "brick", "set-cookie": "a=1" },
        },
      );
    });
    const front = await startProxy(port);
    try {
      const response = await fetch(`http://${HOST}:${front.port}/some/path?q=1`, {
        method: "POST",
        body: "hello",
      });
      assert.equal(response.status, 201);
      assert.equal(await response.text(), "POST /some/path?q=1 hello");
      assert.equal(response.headers.get("x-upstream"), "brick");
      assert.equal(response.headers.get("set-cookie"), "a=1");
      assert.match(response.headers.get("via") ?? "", /^1\.1 brick$/);
    } finally {
      await front.close();
      await upstream.shutdown();
    }
  });

  test("removes hop-by-hop request fields and those Connection names, and adds Via and Forwarded", async () => {
    let seen: http.IncomingHttpHeaders = {};
    const upstream = await nodeUpstream((req, res) => {
      seen = req.headers;
      res.end("ok");
    });
    const front = await startProxy(upstream.port);
    const client = await RawClient.connect(front.port);
    try {
      await client.write(head(
        "GET /h HTTP/1.1",
        "Host: example.test",
        "Connection: keep-alive, X-Secret",
        "X-Secret: 1",
        "Keep-Alive: timeout=5",
        "TE: trailers",
        "Proxy-Authorization: Basic eA==",
        "Proxy-Connection: keep-alive",
        "X-Forwarded-For: 6.6.6.6",
        "Forwarded: for=6.6.6.6",
        "X-End: kept",
        "Via: 1.0 other",
      ));
      const [response] = await client.responses(1);
      assert.equal(response.status, 200);
      for (
        const name of ["x-secret", "keep-alive", "te", "proxy-authorization", "proxy-connection"]
      ) {
        assert.equal(seen[name], undefined, name);
      }
      assert.equal(seen["x-end"], "kept");
      assert.equal(seen["host"], `${HOST}:${upstream.port}`);
      assert.equal(seen["x-forwarded-host"], "example.test");
      assert.equal(seen["x-forwarded-for"], HOST);
      assert.equal(seen["x-forwarded-proto"], "http");
      assert.equal(seen["forwarded"], `for=${HOST};host=example.test;proto=http`);
      assert.equal(seen["via"], "1.0 other, 1.1 brick");
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });

  test("keeps Host and appends to trusted forwarding fields when told to", async () => {
    let seen: http.IncomingHttpHeaders = {};
    const upstream = await nodeUpstream((req, res) => {
      seen = req.headers;
      res.end("ok");
    });
    const front = await startProxy(upstream.port, { preserveHost: true, trustForwarded: true });
    const client = await RawClient.connect(front.port);
    try {
      await client.write(head(
        "GET / HTTP/1.1",
        "Host: example.test",
        "X-Forwarded-For: 10.0.0.1",
        "Forwarded: for=10.0.0.1",
      ));
      await client.responses(1);
      assert.equal(seen["host"], "example.test");
      assert.equal(seen["x-forwarded-for"], `10.0.0.1, ${HOST}`);
      assert.equal(seen["forwarded"], `for=10.0.0.1, for=${HOST};host=example.test;proto=http`);
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });

  test("removes hop-by-hop response fields and those Connection names", async () => {
    const upstream = await rawUpstream((socket) => {
      socket.once("data", () => {
        socket.write(
          "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=1\r\n" +
            "Upgrade: foo\r\nX-End: 2\r\nContent-Length: 2\r\n\r\nhi",
        );
      });
    });
    const front = await startProxy(upstream.port);
    try {
      const response = await fetch(`http://${HOST}:${front.port}/`);
      assert.equal(await response.text(), "hi");
      assert.equal(response.headers.get("x-hop"), null);
      assert.equal(response.headers.get("keep-alive"), null);
      assert.equal(response.headers.get("upgrade"), null);
      assert.equal(response.headers.get("x-end"), "2");
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("streams a 2 MiB body both ways and reuses one upstream connection", {
    timeout: 30_000,
  }, async () => {
    const upstream = await nodeUpstream((req, res) => {
      res.setHeader("content-type", "application/octet-stream");
      req.pipe(res); // node:http answers chunked
    });
    const front = await startProxy(upstream.port);
    try {
      const size = 2 << 20;
      const body = new Uint8Array(size);
      for (let i = 0; i < size; i++) body[i] = i * 7;
      for (let round = 0; round < 2; round++) {
        const response = await fetch(`http://${HOST}:${front.port}/echo`, { method: "PUT", body });
        const echoed = new Uint8Array(await response.arrayBuffer());
        assert.equal(echoed.length, size);
        assert.ok(echoed.every((b, i) => b === ((i * 7) & 255)));
      }
      assert.equal(upstream.connections(), 1);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("forwards a chunked request body chunked and a close-delimited response", async () => {
    let received = "";
    const upstream = await rawUpstream((socket) => {
      let text = "";
      socket.setEncoding("latin1");
      socket.on("data", (chunk: string) => {
        text += chunk;
        if (text.endsWith("0\r\n\r\n")) {
          received = text;
          socket.end("HTTP/1.1 200 OK\r\n\r\nuntil close");
        }
      });
    });
    const front = await startProxy(upstream.port);
    const client = await RawClient.connect(front.port);
    try {
      await client.write(
        head("POST /c HTTP/1.1", "Host: a", "Transfer-Encoding: chunked") + "3\r\nabc\r\n0\r\n\r\n",
      );
      const [response] = await client.responses(1);
      assert.equal(response.status, 200);
      assert.equal(response.text, "until close");
      assert.match(received, /transfer-encoding: chunked\r\n/i);
      assert.match(received, /\r\n\r\n3\r\nabc\r\n0\r\n\r\n$/);
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });

  test("passes a chunked response's trailer fields on to the client, byte-exact, also through a cache", async () => {
    const upstream = await rawUpstream((socket) => {
      socket.on("data", () => {
        socket.write(
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum, X-Note\r\n" +
            "Cache-Control: max-age=60\r\n\r\n" +
            "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\nX-Note: caf\xe9\r\n" +
            "Connection: x\r\n\r\n",
          "latin1",
        );
      });
    });
    for (const options of [{}, { cache: {} }]) {
      const front = await startProxy(upstream.port, options);
      try {
        const { text, bytes } = await rawExchange(front.port, [
          head("GET /t HTTP/1.1", "Host: a", "TE: trailers", "Connection: close"),
        ]);
        const [response] = parseResponses(bytes);
        assert.equal(response.text, "hello world");
        assert.equal(response.framing, "chunked");
        assert.equal(header(response, "trailer"), "X-Sum, X-Note");
        // The fields come as the upstream wrote them, in order; its hop-by-hop one stays behind.
        assert.ok(text.endsWith("0\r\nX-Sum: 11\r\nX-Note: caf\xe9\r\n\r\n"), JSON.stringify(text));
        if ("cache" in options) {
          // A hit has the body, and no Trailer field announcing fields it lacks.
          const again = await rawExchange(front.port, [
            head("GET /t HTTP/1.1", "Host: a", "Connection: close"),
          ]);
          const [hit] = parseResponses(again.bytes);
          assert.match(header(hit, "cache-status") ?? "", /hit/);
          assert.equal(hit.text, "hello world");
          assert.equal(header(hit, "trailer"), undefined);
        }
      } finally {
        await front.close();
      }
    }
    await upstream.close();
  });

  test("passes a chunked request's trailer fields on to the upstream, byte-exact", async () => {
    let received = "";
    const upstream = await rawUpstream((socket) => {
      socket.setEncoding("latin1");
      socket.on("data", (text: string) => {
        received += text;
        if (/\r\n0\r\n(?:[^\r]+\r\n)*\r\n$/.test(received)) {
          socket.end("HTTP/1.1 204 No Content\r\n\r\n");
        }
      });
    });
    const front = await startProxy(upstream.port);
    try {
      const { text } = await rawExchange(front.port, [
        head("POST /up HTTP/1.1", "Host: a", "Transfer-Encoding: chunked", "Trailer: X-Checksum") +
        "5\r\nhello\r\n0\r\nX-Checksum: caf\xe9\r\nKeep-Alive: 1\r\nx-Last: z\r\n\r\n",
      ], { responses: 1 });
      assert.match(text, /^HTTP\/1\.1 204/);
      assert.match(received, /\r\nTrailer: X-Checksum\r\n/);
      assert.ok(
        received.endsWith("5\r\nhello\r\n0\r\nX-Checksum: caf\xe9\r\nx-Last: z\r\n\r\n"),
        JSON.stringify(received),
      );
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("forwards an HTTP/2 client's body of unknown length chunked, and no body as none", async () => {
    const upstream = await nodeUpstream(async (req, res) => {
      const framing = req.headers["transfer-encoding"] ?? `length ${req.headers["content-length"]}`;
      res.end(`${framing}: ${await readBody(req)}`);
    });
    const front = await startProxy(upstream.port);
    const client = http2.connect(`http://${HOST}:${front.port}`);
    const post = (pieces: string[]) =>
      new Promise<string>((resolve, reject) => {
        const stream = client.request({ ":method": "POST", ":path": "/" }, {
          endStream: pieces.length === 0,
        });
        let text = "";
        stream.setEncoding("utf8");
        stream.on("data", (chunk: string) => text += chunk);
        stream.on("end", () => resolve(text));
        stream.on("error", reject);
        if (pieces.length > 0) {
          stream.write(pieces[0]);
          setTimeout(() => stream.end(pieces[1]), 20);
        }
      });
    try {
      assert.equal(
        await within(post(["hello", " world"]), 10_000, "the body"),
        "chunked: hello world",
      );
      assert.equal(await within(post([]), 10_000, "no body"), "length undefined: ");
    } finally {
      client.close();
      await front.close();
      await upstream.close();
    }
  });

  test("handles Expect: 100-continue by waiting for the upstream's 100", async () => {
    let expect: string | undefined;
    const upstream = await nodeUpstream(async (req, res) => {
      expect = req.headers["expect"];
      res.end("got " + await readBody(req));
    });
    const front = await startProxy(upstream.port);
    const client = await RawClient.connect(front.port);
    try {
      await client.write(
        head("POST / HTTP/1.1", "Host: a", "Content-Length: 5", "Expect: 100-continue"),
      );
      await client.waitForText("HTTP/1.1 100 Continue\r\n\r\n", 5000);
      await client.write("12345");
      await client.waitForText("got 12345", 5000);
      assert.equal(expect, "100-continue");
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });

  test("answers a HEAD with the upstream's length and no body", async () => {
    const upstream = await nodeUpstream((req, res) => {
      res.setHeader("content-length", "1000");
      res.end(req.method === "HEAD" ? undefined : "x".repeat(1000));
    });
    const front = await startProxy(upstream.port);
    const client = await RawClient.connect(front.port);
    try {
      await client.write(head("HEAD / HTTP/1.1", "Host: a") + head("GET /x HTTP/1.1", "Host: a"));
      const [first, second] = await client.responses(2, { headFor: [0] });
      assert.equal(header(first, "content-length"), "1000");
      assert.equal(first.body.length, 0);
      assert.equal(second.text, "x".repeat(1000));
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });
});

/** A raw upstream that records each request head it receives, byte for byte, and answers `reply`. */
async function recordingUpstream(reply: string) {
  const heads: string[] = [];
  const upstream = await rawUpstream((socket) => {
    let text = "";
    socket.on("data", (chunk: Uint8Array) => {
      text += latin1(new Uint8Array(chunk));
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return;
      heads.push(text.slice(0, end + 4));
      text = text.slice(end + 4);
      socket.write(reply);
    });
  });
  return { ...upstream, heads };
}

/** The field lines of a recorded head that the client sent (brick's own additions left out). */
function passedLines(recorded: string): string[] {
  const added = /^(host|via|forwarded|x-forwarded-(for|proto|host)):/i;
  return recorded.split("\r\n").slice(1, -2).filter((line) => !added.test(line));
}

describe("proxy() forwards fields as received", () => {
  test("sends request fields upstream in the client's order and case, repeats kept", async () => {
    const upstream = await recordingUpstream("HTTP/1.1 204 No Content\r\n\r\n");
    const front = await startProxy(upstream.port);
    const client = await RawClient.connect(front.port);
    try {
      await client.write(
        "GET /raw?q=1 HTTP/1.1\r\n" +
          "Host: example.test\r\n" +
          "X-Custom-B: 1\r\n" +
          "x-custom-a:   two  \r\n" +
          "Connection: keep-alive, X-Drop\r\n" +
          "X-Drop: secret\r\n" +
          "X-CUSTOM-B: 3\r\n" +
          "Keep-Alive: timeout=5\r\n" +
          "Cookie: a=1\r\n" +
          "Accept: */*\r\n" +
          "cookie: b=2\r\n" +
          "\r\n",
      );
      const [response] = await client.responses(1);
      assert.equal(response.status, 204);
      assert.equal(upstream.heads.length, 1);
      assert.match(upstream.heads[0], /^GET \/raw\?q=1 HTTP\/1\.1\r\n/);
      assert.deepEqual(passedLines(upstream.heads[0]), [
        "X-Custom-B: 1",
        "x-custom-a: two",
        "X-CUSTOM-B: 3",
        "Cookie: a=1",
        "Accept: */*",
        "cookie: b=2",
      ]);
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });

  test("keeps the client's order and case through the cache, with its changes in place", async () => {
    const upstream = await recordingUpstream(
      'HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nETag: "v1"\r\nContent-Length: 2\r\n\r\nok',
    );
    const front = await startProxy(upstream.port, { cache: { maxBytes: 1 << 20 } });
    const client = await RawClient.connect(front.port);
    try {
      await client.write(head("GET /c HTTP/1.1", "Host: x", "X-B: 1", "accept: */*", "X-b: 3"));
      await client.responses(1);
      // A miss: the cache's copy adds Surrogate-Capability, which goes last.
      assert.deepEqual(passedLines(upstream.heads[0]), [
        "X-B: 1",
        "accept: */*",
        "X-b: 3",
        'surrogate-capability: brick="Surrogate/1.0"',
      ]);
      await client.write(
        head("GET /c HTTP/1.1", "Host: x", "X-B: 1", 'If-None-Match: "old"', "accept: */*"),
      );
      await client.responses(2);
      // Stale: the cache validates with its own ETag, in the client's field's place.
      assert.deepEqual(passedLines(upstream.heads[1]), [
        "X-B: 1",
        'If-None-Match: "v1"',
        "accept: */*",
        'surrogate-capability: brick="Surrogate/1.0"',
      ]);
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });

  test("falls back to request.headers for a Request that brick's server did not receive", async () => {
    const upstream = await recordingUpstream("HTTP/1.1 204 No Content\r\n\r\n");
    const handler = createProxy({ upstream: `http://${HOST}:${upstream.port}` });
    try {
      const request = new Request("http://front.test/made", {
        headers: [["X-Custom-B", "1"], ["Accept", "*/*"], ["X-Custom-B", "3"]],
      });
      const response = await handler(request);
      assert.equal(response.status, 204);
      // Headers lowercases, sorts, and joins repeats: that is all such a request keeps.
      assert.deepEqual(passedLines(upstream.heads[0]), ["accept: */*", "x-custom-b: 1, 3"]);
    } finally {
      handler.close();
      await upstream.close();
    }
  });

  test("sends repeated response fields on in order; names come out lowercase", async () => {
    const upstream = await recordingUpstream(
      "HTTP/1.1 200 OK\r\nX-Zeta: 1\r\nSet-Cookie: a=1\r\nX-Alpha: 2\r\nx-zeta: 3\r\n" +
        "Set-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok",
    );
    const front = await startProxy(upstream.port);
    const client = await RawClient.connect(front.port);
    try {
      await client.write(head("GET / HTTP/1.1", "Host: x"));
      const [response] = await client.responses(1);
      assert.equal(response.text, "ok");
      // brick writes a Response's fields from its Headers: repeats of one name
      // joined in order (RFC 9110 §5.3), Set-Cookie lines kept apart.
      assert.deepEqual(response.headers["x-zeta"], ["1, 3"]);
      assert.deepEqual(response.headers["set-cookie"], ["a=1", "b=2"]);
      assert.deepEqual(response.headers["x-alpha"], ["2"]);
      const names = client.text.split("\r\n").slice(1).map((line) => line.split(":")[0]);
      assert.ok(names.includes("x-zeta") && !names.includes("X-Zeta"), names.join(" "));
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });
});

describe("proxy() failures", () => {
  test("answers 502 when the upstream refuses the connection", async () => {
    const closed = await rawUpstream(() => {});
    const port = closed.port;
    await closed.close();
    const front = await startProxy(port);
    try {
      const response = await fetch(`http://${HOST}:${front.port}/`);
      assert.equal(response.status, 502);
      assert.match(await response.text(), /Cannot connect/);
    } finally {
      await front.close();
    }
  });

  test("answers 504 when the upstream sends no head within responseHeaderTimeout", async () => {
    const upstream = await rawUpstream(() => {});
    const front = await startProxy(upstream.port, { responseHeaderTimeout: 200 });
    try {
      const response = await within(fetch(`http://${HOST}:${front.port}/`), 5000, "the 504");
      assert.equal(response.status, 504);
      await response.text();
      await until(() => upstream.connections() === 1, 1000, "the upstream connection");
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("answers 502 to a malformed response and discards that connection", async () => {
    let answers = 0;
    const upstream = await rawUpstream((socket) => {
      socket.on("data", () => {
        answers++;
        socket.write(
          answers === 1
            ? "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n"
            : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        );
      });
    });
    const front = await startProxy(upstream.port);
    try {
      const bad = await fetch(`http://${HOST}:${front.port}/`);
      assert.equal(bad.status, 502);
      assert.match(await bad.text(), /Malformed upstream response/);
      const good = await fetch(`http://${HOST}:${front.port}/`);
      assert.equal(good.status, 200);
      assert.equal(await good.text(), "ok");
      assert.equal(upstream.connections(), 2);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("answers 502 to conflicting Content-Length and to a body cut short", async () => {
    const upstream = await rawUpstream((socket) => {
      socket.once("data", (data) => {
        if (String(data).startsWith("GET /conflict")) {
          socket.end("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc");
        } else socket.end("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
      });
    });
    const front = await startProxy(upstream.port);
    const client = await RawClient.connect(front.port);
    try {
      const conflict = await fetch(`http://${HOST}:${front.port}/conflict`);
      assert.equal(conflict.status, 502);
      await conflict.text();
      // The head went out already: the client sees the connection end mid-body.
      await client.write(head("GET /short HTTP/1.1", "Host: a"));
      await client.waitClosed(5000);
      assert.match(client.text, /^HTTP\/1\.1 200 OK/);
      assert.doesNotMatch(client.text, /\r\n0\r\n\r\n$/);
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });

  test("closes the client connection when the body stalls past readIdleTimeout", async () => {
    const upstream = await rawUpstream((socket) => {
      socket.once(
        "data",
        () => socket.write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"),
      );
    });
    const front = await startProxy(upstream.port, { readIdleTimeout: 200 });
    const client = await RawClient.connect(front.port);
    try {
      await client.write(head("GET / HTTP/1.1", "Host: a"));
      await client.waitClosed(5000);
      assert.match(client.text, /^HTTP\/1\.1 200 OK[^]*partial$/);
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });

  test("aborts the upstream request when the client goes away", async () => {
    const upstreamClosed = deferred();
    const arrived = deferred();
    const upstream = await rawUpstream((socket) => {
      socket.once("data", () => arrived.resolve());
      socket.on("close", () => upstreamClosed.resolve());
    });
    const front = await startProxy(upstream.port);
    const client = await RawClient.connect(front.port);
    try {
      await client.write(head("GET /slow HTTP/1.1", "Host: a"));
      await within(arrived.promise, 5000, "the request upstream");
      client.destroy();
      await within(upstreamClosed.promise, 5000, "the upstream connection to close");
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("closes the upstream connection when the client goes away mid-body", async () => {
    const upstreamClosed = deferred();
    const upstream = await rawUpstream((socket) => {
      socket.once(
        "data",
        () => socket.write("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nfirst bytes"),
      );
      socket.on("close", () => upstreamClosed.resolve());
    });
    const front = await startProxy(upstream.port);
    const client = await RawClient.connect(front.port);
    try {
      await client.write(head("GET / HTTP/1.1", "Host: a"));
      await client.waitForText("first bytes", 5000);
      client.destroy();
      await within(upstreamClosed.promise, 5000, "the upstream connection to close");
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test(
    "leaks no file descriptors over successes and failures",
    { skip: openFds() === null },
    async () => {
      let n = 0;
      const upstream = await rawUpstream((socket) => {
        socket.on("data", () => {
          n++;
          if (n % 3 === 0) socket.end("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort");
          else if (n % 3 === 1) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
          else socket.write("garbage\r\n\r\n");
        });
      });
      const front = await startProxy(upstream.port, { maxIdleConnections: 2 });
      try {
        const warm = await fetch(`http://${HOST}:${front.port}/`);
        await warm.text();
        await delay(50);
        const before = openFds()!;
        for (let i = 0; i < 60; i++) {
          try {
            const response = await fetch(`http://${HOST}:${front.port}/${i}`);
            await response.text();
          } catch { /* a body cut short */ }
        }
        await delay(200);
        const after = openFds()!;
        assert.ok(after <= before + 6, `fds before ${before}, after ${after}`);
      } finally {
        await front.close();
        await upstream.close();
      }
    },
  );
});

describe("proxy() upgrades", () => {
  test("carries a WebSocket (ws client) to a brick WebSocket upstream and back", async () => {
    const { server: upstream, port } = await startServer((request) => {
      const { socket, response } = upgradeWebSocket(request);
      socket.onmessage = (event) => socket.send(`echo: ${event.data}`);
      return response;
    });
    const front = await startProxy(port);
    const ws = new WebSocket(`ws://${HOST}:${front.port}/chat`);
    try {
      await within(
        new Promise<void>((resolve, reject) => {
          ws.once("open", () => resolve());
          ws.once("error", reject);
        }),
        5000,
        "the WebSocket to open",
      );
      const reply = new Promise<string>((resolve) =>
        ws.once("message", (data) => resolve(String(data)))
      );
      ws.send("héllo through the proxy");
      assert.equal(await within(reply, 5000, "the echo"), "echo: héllo through the proxy");
      const closed = new Promise<number>((resolve) => ws.once("close", (code) => resolve(code)));
      ws.close(1000, "done");
      assert.equal(await within(closed, 5000, "the close"), 1000);
    } finally {
      ws.terminate();
      await front.close();
      await upstream.shutdown();
    }
  });

  test("passes an upgrade through: the 101, then bytes both ways", async () => {
    // A raw upstream: Bun's node:http has no 'upgrade' event to test with.
    const upstream = await rawUpstream((socket) => {
      let head = "";
      socket.setEncoding("latin1");
      const onHead = (chunk: string) => {
        head += chunk;
        const end = head.indexOf("\r\n\r\n");
        if (end < 0) return;
        socket.off("data", onHead);
        const asked = /\r\nupgrade: *([^\r]*)/i.exec(head)?.[1];
        socket.write(
          "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n" +
            `X-Asked: ${asked}\r\n\r\nwelcome;` + head.slice(end + 4),
        );
        socket.on("data", (more: string) => socket.write(more));
        socket.on("end", () => socket.end());
      };
      socket.on("data", onHead);
    });
    const front = await startProxy(upstream.port);
    const client = await RawClient.connect(front.port);
    try {
      await client.write(
        head("GET /tunnel HTTP/1.1", "Host: a", "Connection: Upgrade", "Upgrade: echo"),
      );
      await client.waitForText("welcome;", 5000);
      assert.match(client.text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
      assert.match(client.text, /\r\nupgrade: echo\r\n/i);
      assert.match(client.text, /\r\nx-asked: echo\r\n/i);
      await client.write("ping-bytes");
      await client.waitForText("welcome;ping-bytes", 5000);
      await client.end();
      await client.waitClosed(5000);
    } finally {
      client.destroy();
      await front.close();
      await upstream.close();
    }
  });
});

describe("proxy() with a cache", () => {
  /** A node:http upstream whose handler sees a request counter. */
  async function counted(
    handler: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void,
  ) {
    let n = 0;
    const upstream = await nodeUpstream((req, res) => handler(req, res, ++n));
    return { upstream, count: () => n };
  }

  async function get(port: number, path = "/", init: RequestInit = {}) {
    const response = await fetch(`http://${HOST}:${port}${path}`, init);
    return {
      response,
      text: await response.text(),
      status: response.headers.get("cache-status") ?? "",
    };
  }

  test("serves a fresh stored response with Age and Cache-Status: hit, and HEAD and ranges from it", async () => {
    const { upstream, count } = await counted((_req, res, n) => {
      res.setHeader("cache-control", "max-age=60");
      res.end(`body ${n} 0123456789`);
    });
    const front = await startProxy(upstream.port, { cache: { maxBytes: 1 << 20 } });
    try {
      const first = await get(front.port, "/a");
      assert.equal(first.text, "body 1 0123456789");
      assert.match(first.status, /^brick; fwd=uri-miss; fwd-status=200; stored$/);
      const second = await get(front.port, "/a");
      assert.equal(second.text, "body 1 0123456789");
      assert.match(second.status, /^brick; hit; ttl=\d+$/);
      assert.match(second.response.headers.get("age") ?? "", /^\d+$/);
      const head = await fetch(`http://${HOST}:${front.port}/a`, { method: "HEAD" });
      assert.equal(head.headers.get("content-length"), "17");
      assert.match(head.headers.get("cache-status") ?? "", /hit/);
      const part = await get(front.port, "/a", { headers: { range: "bytes=7-9" } });
      assert.equal(part.response.status, 206);
      assert.equal(part.text, "012");
      assert.equal(part.response.headers.get("content-range"), "bytes 7-9/17");
      assert.equal(count(), 1);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("does not store no-store, private, or a response to Authorization", async () => {
    const { upstream, count } = await counted((req, res) => {
      res.setHeader(
        "cache-control",
        req.url === "/private"
          ? "private, max-age=60"
          : req.url === "/auth"
          ? "max-age=60"
          : "no-store",
      );
      res.end("x");
    });
    const front = await startProxy(upstream.port, { cache: {} });
    try {
      for (const path of ["/nostore", "/private"]) {
        await get(front.port, path);
        const again = await get(front.port, path);
        assert.match(again.status, /fwd=uri-miss; fwd-status=200; detail=(no-store|private)/);
      }
      await get(front.port, "/auth", { headers: { authorization: "Basic eDp5" } });
      const again = await get(front.port, "/auth", { headers: { authorization: "Basic eDp5" } });
      assert.match(again.status, /detail=authorization/);
      assert.equal(count(), 6);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("validates a stale response with If-None-Match and merges the 304", async () => {
    const seen: (string | undefined)[] = [];
    const { upstream } = await counted((req, res, n) => {
      seen.push(req.headers["if-none-match"]);
      res.setHeader("cache-control", "max-age=0");
      res.setHeader("etag", '"v1"');
      res.setHeader("x-round", String(n));
      if (n > 1 && req.headers["if-none-match"] === '"v1"') {
        res.statusCode = 304;
        res.end();
      } else res.end("stored body");
    });
    const front = await startProxy(upstream.port, { cache: {} });
    try {
      await get(front.port, "/v");
      const second = await get(front.port, "/v");
      assert.equal(second.response.status, 200);
      assert.equal(second.text, "stored body");
      assert.equal(second.response.headers.get("x-round"), "2"); // updated from the 304
      assert.match(second.status, /fwd=stale; fwd-status=304/);
      assert.deepEqual(seen, [undefined, '"v1"']);
      const conditional = await get(front.port, "/v", { headers: { "if-none-match": '"v1"' } });
      assert.equal(conditional.response.status, 304);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("invalidates the stored response after a successful POST to its URL", async () => {
    const { upstream, count } = await counted((req, res) => {
      res.setHeader("cache-control", "max-age=60");
      res.end(req.method);
    });
    const front = await startProxy(upstream.port, { cache: {} });
    try {
      await get(front.port, "/r");
      assert.match((await get(front.port, "/r")).status, /hit/);
      const post = await get(front.port, "/r", { method: "POST", body: "x" });
      assert.match(post.status, /fwd=method/);
      assert.match((await get(front.port, "/r")).status, /fwd=uri-miss/);
      assert.equal(count(), 3);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("keeps one response per Vary value", async () => {
    const { upstream, count } = await counted((req, res) => {
      res.setHeader("cache-control", "max-age=60");
      res.setHeader("vary", "accept-language");
      res.end(String(req.headers["accept-language"]));
    });
    const front = await startProxy(upstream.port, { cache: {} });
    try {
      const en = { headers: { "accept-language": "en" } };
      const fr = { headers: { "accept-language": "fr" } };
      assert.equal((await get(front.port, "/l", en)).text, "en");
      assert.equal((await get(front.port, "/l", fr)).text, "fr");
      const again = await get(front.port, "/l", en);
      assert.equal(again.text, "en");
      assert.match(again.status, /hit/);
      assert.equal(count(), 2);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("honours request directives: only-if-cached, no-cache, max-age, max-stale", async () => {
    const { upstream, count } = await counted((_req, res, n) => {
      res.setHeader("cache-control", "max-age=1");
      res.setHeader("date", new Date(Date.now() - 5000).toUTCString()); // 5 s old: stale
      res.end(String(n));
    });
    const front = await startProxy(upstream.port, { cache: {} });
    try {
      const miss = await get(front.port, "/d", { headers: { "cache-control": "only-if-cached" } });
      assert.equal(miss.response.status, 504);
      assert.match(miss.status, /only-if-cached/);
      await get(front.port, "/d");
      const stale = await get(front.port, "/d", { headers: { "cache-control": "max-stale=60" } });
      assert.match(stale.status, /hit; detail=stale/);
      assert.equal(count(), 1);
      const nocache = await get(front.port, "/d", { headers: { "cache-control": "no-cache" } });
      assert.match(nocache.status, /fwd=request/);
      assert.equal(count(), 2);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("serves stale while revalidating, and stale on an upstream error", async () => {
    const { upstream, count } = await counted((req, res, n) => {
      res.setHeader("date", new Date(Date.now() - 5000).toUTCString());
      if (req.url === "/swr") {
        res.setHeader("cache-control", "max-age=1, stale-while-revalidate=60");
        res.end(String(n));
      } else if (n === 2) {
        res.statusCode = 500;
        res.end("boom");
      } else {
        res.setHeader("cache-control", "max-age=1, stale-if-error=60");
        res.end("good");
      }
    });
    const front = await startProxy(upstream.port, { cache: {} });
    try {
      await get(front.port, "/sie"); // 1
      const error = await get(front.port, "/sie"); // 2: a 500
      assert.equal(error.text, "good");
      assert.match(error.status, /stale-if-error/);
      await get(front.port, "/swr"); // 3
      const swr = await get(front.port, "/swr");
      assert.equal(swr.text, "3");
      assert.match(swr.status, /stale-while-revalidate/);
      await until(() => count() === 4, 2000, "the background revalidation");
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  // RFC 9111 §4.2.4: no stale response where a directive forbids it, even
  // when the upstream is gone and the response allows stale-if-error.
  test("answers 502, not the stale copy, when the upstream closes and a directive forbids stale", async () => {
    const forbidding = ["must-revalidate", "proxy-revalidate", "no-cache", "s-maxage=1"];
    const seen = new Map<string, number>();
    const upstream = await nodeUpstream((req, res) => {
      const n = (seen.get(req.url!) ?? 0) + 1;
      seen.set(req.url!, n);
      if (n > 1) return req.socket.destroy(); // the origin fails: no response at all
      const directive = forbidding[Number(req.url!.slice(1))] ?? "public";
      res.setHeader("cache-control", `max-age=1, ${directive}, stale-if-error=60`);
      res.setHeader("date", new Date(Date.now() - 5000).toUTCString()); // stale on arrival
      res.end("stored");
    });
    const front = await startProxy(upstream.port, { cache: {} });
    try {
      for (const [i, directive] of forbidding.entries()) {
        assert.equal((await get(front.port, `/${i}`)).text, "stored", directive);
        const second = await get(front.port, `/${i}`);
        assert.equal(second.response.status, 502, directive);
        assert.doesNotMatch(second.text, /stored/, directive);
        assert.match(second.status, /fwd=stale; fwd-status=502/, directive);
      }
      // The control: with nothing forbidding it, stale-if-error serves the copy.
      assert.equal((await get(front.port, "/9")).text, "stored");
      const allowed = await get(front.port, "/9");
      assert.equal(allowed.text, "stored");
      assert.match(allowed.status, /stale-if-error/);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("validates before answering when s-maxage or must-revalidate forbid stale-while-revalidate", async () => {
    const { upstream, count } = await counted((req, res, n) => {
      const directive = req.url === "/s" ? "s-maxage=1" : "max-age=1, must-revalidate";
      res.setHeader("cache-control", `${directive}, stale-while-revalidate=60`);
      res.setHeader("date", new Date(Date.now() - 5000).toUTCString());
      res.end(`body ${n}`);
    });
    const front = await startProxy(upstream.port, { cache: {} });
    try {
      assert.equal((await get(front.port, "/s")).text, "body 1");
      const shared = await get(front.port, "/s");
      assert.equal(shared.text, "body 2");
      assert.match(shared.status, /fwd=stale; fwd-status=200/);
      assert.equal((await get(front.port, "/m")).text, "body 3");
      const must = await get(front.port, "/m");
      assert.equal(must.text, "body 4");
      assert.match(must.status, /fwd=stale; fwd-status=200/);
      assert.equal(count(), 4);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("collapses concurrent misses for one URL into one upstream request", async () => {
    const { upstream, count } = await counted((_req, res) => {
      res.setHeader("cache-control", "max-age=60");
      setTimeout(() => res.end("slow"), 200);
    });
    const front = await startProxy(upstream.port, { cache: {} });
    try {
      const answers = await Promise.all(Array.from({ length: 5 }, () => get(front.port, "/c")));
      assert.ok(answers.every((a) => a.text === "slow"));
      assert.equal(count(), 1);
      assert.equal(answers.filter((a) => /collapsed/.test(a.status)).length, 4);
    } finally {
      await front.close();
      await upstream.close();
    }
  });

  test("streams a body over maxEntryBytes through uncached and evicts to stay within maxBytes", async () => {
    const { upstream, count } = await counted((req, res) => {
      res.setHeader("cache-control", "max-age=60");
      res.end("z".repeat(req.url === "/big" ? 100_000 : 3000));
    });
    const front = await startProxy(upstream.port, {
      cache: { maxBytes: 8000, maxEntryBytes: 4000 },
    });
    try {
      assert.equal((await get(front.port, "/big")).text.length, 100_000);
      assert.match((await get(front.port, "/big")).status, /too-large/);
      for (const path of ["/1", "/2", "/3"]) await get(front.port, path);
      assert.match((await get(front.port, "/3")).status, /hit/);
      assert.match((await get(front.port, "/1")).status, /fwd=uri-miss/); // evicted
      assert.equal(count(), 6);
    } finally {
      await front.close();
      await upstream.close();
    }
  });
});
