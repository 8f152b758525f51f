// Tests for _upstream.ts: the response-head parser and framing rules on
// their own, then round trips over real sockets to raw node:net upstreams.

import { describe, test } from "./_test_skips.ts";
import assert from "node:assert/strict";
import net from "node:net";
import {
  latin1Bytes,
  parseResponseHead,
  responseFraming,
  Upstream,
  UpstreamError,
} from "./_upstream.ts";
import { HOST } from "./_test_utils.ts";

function parse(text: string) {
  const bytes = latin1Bytes(text);
  return parseResponseHead(bytes, 0, bytes.length);
}

function rejects(text: string, pattern: RegExp): void {
  assert.throws(() => parse(text), (error: unknown) => {
    assert.ok(error instanceof UpstreamError);
    assert.equal(error.failure, "protocol");
    assert.match(error.message, pattern);
    return true;
  });
}

async function rawServer(onSocket: (socket: net.Socket) => void) {
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    onSocket(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The body as text, whether it came whole with the head or as a stream. */
async function text(
  response: { body: ReadableStream<Uint8Array> | null; bytes: Uint8Array | null },
): Promise<string> {
  if (response.bytes !== null) return new TextDecoder().decode(response.bytes);
  if (response.body === null) return "";
  return await new Response(response.body).text();
}

describe("parseResponseHead()", () => {
  test("reads the status, reason and fields as sent, names in their case", () => {
    const head = parse("HTTP/1.1 404 Not Found\r\nX-A: 1 \r\nx-a:2\r\nSet-Cookie: a=b\r\n\r\n");
    assert.equal(head.status, 404);
    assert.equal(head.statusText, "Not Found");
    assert.deepEqual(head.fields, ["X-A", "1", "x-a", "2", "Set-Cookie", "a=b"]);
    assert.equal(head.http10, false);
  });

  test("accepts an empty reason and HTTP/1.0", () => {
    const head = parse("HTTP/1.0 200 \r\n\r\n");
    assert.equal(head.statusText, "");
    assert.equal(head.http10, true);
    assert.equal(parse("HTTP/1.1 204\r\n\r\n").status, 204);
  });

  test("rejects malformed status lines and field lines", () => {
    rejects("HTTP/2 200 OK\r\n\r\n", /status line/);
    rejects("HTTP/1.1 20 OK\r\n\r\n", /status line/);
    rejects("HTTP/1.1 099 Low\r\n\r\n", /status code/);
    rejects("ICY 200 OK\r\n\r\n", /status line/);
    rejects("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", /field name/);
    rejects("HTTP/1.1 200 OK\r\nName : x\r\n\r\n", /field name/);
    rejects("HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n", /folding/);
    rejects("HTTP/1.1 200 OK\r\nA: x\0y\r\n\r\n", /field value/);
  });
});

describe("responseFraming()", () => {
  const framing = (text: string, method = "GET") => responseFraming(parse(text), method);

  test("frames by Content-Length, chunked, or close, and never for HEAD/204/304", () => {
    assert.deepEqual(framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").framing, {
      kind: "length",
      length: 5,
    });
    assert.equal(
      framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").framing.kind,
      "chunked",
    );
    assert.equal(framing("HTTP/1.1 200 OK\r\n\r\n").framing.kind, "close");
    assert.equal(framing("HTTP/1.1 200 OK\r\n\r\n").reusable, false);
    assert.equal(
      framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD").framing.kind,
      "none",
    );
    assert.equal(
      framing("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n").framing.kind,
      "none",
    );
    assert.equal(framing("HTTP/1.1 204 No Content\r\n\r\n").framing.kind, "none");
  });

  test("does not reuse a connection after TE with CL, Connection: close, or HTTP/1.0", () => {
    const both = framing(
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert.equal(both.framing.kind, "chunked");
    assert.equal(both.reusable, false);
    assert.equal(
      framing("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n").reusable,
      false,
    );
    assert.equal(framing("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").reusable, false);
    assert.equal(
      framing("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n").reusable,
      true,
    );
  });

  test("rejects invalid and conflicting Content-Length", () => {
    assert.throws(() => framing("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), /Content-Length/);
    assert.throws(
      () => framing("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
      /conflicting/,
    );
    assert.equal(
      framing("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n").framing.kind,
      "length",
    );
  });
});

describe("Upstream.roundTrip()", () => {
  const get = { method: "GET", target: "/", fields: ["host", "x"], body: null, bodyLength: null };

  test("reads a chunked body with extensions and trailers, then reuses the connection", async () => {
    let connections = 0;
    const server = await rawServer((socket) => {
      connections++;
      socket.on("data", () => {
        socket.write(
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
            "3;a=b\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n",
        );
      });
    });
    const upstream = new Upstream(HOST, server.port);
    try {
      for (let i = 0; i < 3; i++) {
        const response = await upstream.roundTrip(get);
        assert.equal(await text(response), "abcde");
        assert.deepEqual(response.reader.trailers, ["X-Sum", "5"]);
      }
      assert.equal(connections, 1);
      assert.equal(upstream.idleCount, 1);
    } finally {
      upstream.close();
      await server.close();
    }
  });

  test("skips 1xx informational heads before the final one", async () => {
    const server = await rawServer((socket) => {
      socket.once("data", () => {
        socket.write("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n");
        socket.write("Content-Length: 2\r\n\r\nok");
      });
    });
    const upstream = new Upstream(HOST, server.port);
    try {
      const response = await upstream.roundTrip(get);
      assert.equal(response.status, 200);
      assert.notEqual(response.bytes, null); // the whole body came with the head: no stream
      assert.equal(await text(response), "ok");
    } finally {
      upstream.close();
      await server.close();
    }
  });

  test("fails with 'protocol' on a chunk longer than its size and closes that connection", async () => {
    const server = await rawServer((socket) => {
      socket.once("data", () => {
        socket.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n");
      });
    });
    const upstream = new Upstream(HOST, server.port);
    try {
      const response = await upstream.roundTrip(get);
      await assert.rejects(text(response), /chunk data longer/);
      assert.equal(upstream.openCount, 0);
    } finally {
      upstream.close();
      await server.close();
    }
  });

  test("retries a request without body once when a pooled connection was closed", async () => {
    let connections = 0;
    const server = await rawServer((socket) => {
      connections++;
      // Answers one request, then closes without saying so (no Connection: close).
      socket.once("data", () => {
        socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", () => {
          setTimeout(() => socket.destroy(), 20);
        });
      });
    });
    const upstream = new Upstream(HOST, server.port);
    try {
      assert.equal(await text(await upstream.roundTrip(get)), "ok");
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(await text(await upstream.roundTrip(get)), "ok");
      assert.equal(connections, 2);
    } finally {
      upstream.close();
      await server.close();
    }
  });

  test("closes idle connections after idleConnectionTimeout and keeps at most maxIdleConnections", async () => {
    const server = await rawServer((socket) => {
      socket.on("data", () => socket.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    });
    const upstream = new Upstream(HOST, server.port, {
      maxIdleConnections: 1,
      idleConnectionTimeout: 100,
    });
    try {
      await Promise.all([
        upstream.roundTrip(get),
        upstream.roundTrip(get),
        upstream.roundTrip(get),
      ]);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(upstream.idleCount, 1);
      assert.equal(upstream.openCount, 1);
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(upstream.idleCount, 0);
      assert.equal(upstream.openCount, 0);
    } finally {
      upstream.close();
      await server.close();
    }
  });

  test("rejects invalid options with a RangeError", () => {
    assert.throws(() => new Upstream(HOST, 1, { connectTimeout: -1 }), RangeError);
  });
});
