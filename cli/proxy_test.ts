// Tests for cli/proxy.ts: the --proxy and --cache values, and the handler
// that routes mounted paths to their upstream over real sockets.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type net from "node:net";
import { parseByteSize, parseProxyFlag, proxyHandler } from "./proxy.ts";
import { HOST, startServer } from "../_test_utils.ts";

describe("parseProxyFlag()", () => {
  test("reads a bare upstream and a path mounted on one", () => {
    assert.deepEqual(parseProxyFlag("http://127.0.0.1:3000"), {
      prefix: "/",
      upstream: "http://127.0.0.1:3000",
    });
    assert.deepEqual(parseProxyFlag("/api/=http://127.0.0.1:3000/v1/"), {
      prefix: "/api",
      upstream: "http://127.0.0.1:3000/v1",
    });
  });

  test("refuses what it cannot forward to, saying what to write", () => {
    assert.throws(() => parseProxyFlag("/api"), /needs its upstream, as in \/api=http/);
    assert.throws(() => parseProxyFlag("127.0.0.1:3000"), /only http:\/\/|is not a URL/);
    assert.throws(() => parseProxyFlag("https://example.com"), /only http:\/\//);
    assert.throws(() => parseProxyFlag("/a=http://x/?q=1"), /no query/);
    assert.throws(() => parseProxyFlag("/a=nothing"), /is not a URL/);
  });
});

describe("parseByteSize()", () => {
  test("reads sizes with units in powers of 1024", () => {
    assert.equal(parseByteSize("256MB"), 256 * 1024 * 1024);
    assert.equal(parseByteSize("64m"), 64 * 1024 * 1024);
    assert.equal(parseByteSize("1.5GiB"), 1.5 * 1024 ** 3);
    assert.equal(parseByteSize("4096"), 4096);
    assert.equal(parseByteSize("512 k"), 512 * 1024);
  });

  test("refuses junk and zero", () => {
    for (const bad of ["", "MB", "-1MB", "0", "12XB", "1e6"]) {
      assert.throws(() => parseByteSize(bad), /Invalid size/, bad);
    }
  });
});

describe("proxyHandler()", () => {
  test("forwards a mounted path with its prefix, caches, and leaves the rest to the fallback", async () => {
    let upstreamRequests = 0;
    const upstream = http.createServer((req, res) => {
      upstreamRequests++;
      res.setHeader("cache-control", "max-age=60");
      res.end(`upstream saw ${req.url}`);
    });
    await new Promise<void>((resolve) => upstream.listen(0, HOST, resolve));
    const port = (upstream.address() as net.AddressInfo).port;
    const handler = proxyHandler([parseProxyFlag(`/api=http://${HOST}:${port}`)], {
      cacheBytes: parseByteSize("1MB"),
      fallback: () => new Response("from the folder"),
    });
    const { server, port: front } = await startServer(handler);
    try {
      const text = async (path: string) =>
        await (await fetch(`http://${HOST}:${front}${path}`)).text();
      assert.equal(await text("/api/users?x=1"), "upstream saw /api/users?x=1");
      assert.equal(await text("/api"), "upstream saw /api");
      assert.equal(await text("/apix"), "from the folder");
      assert.equal(await text("/index.html"), "from the folder");
      const again = await fetch(`http://${HOST}:${front}/api/users?x=1`);
      assert.match(again.headers.get("cache-status") ?? "", /hit/);
      await again.text();
      assert.equal(upstreamRequests, 2);
    } finally {
      handler.close();
      await server.shutdown();
      await new Promise<void>((resolve) => upstream.close(() => resolve()));
    }
  });

  test("answers 404 outside the mounts when there is no fallback", async () => {
    const handler = proxyHandler([parseProxyFlag("/api=http://127.0.0.1:9")]);
    const response = await handler(new Request("http://x/other"), {});
    assert.equal(response.status, 404);
    handler.close();
  });
});
