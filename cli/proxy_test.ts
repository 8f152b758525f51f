// Tests for cli/proxy.ts: the --proxy and --cache values, the handler that
// routes mounted paths to their upstream, and the CLI run with them, over
// real sockets against a node:http upstream.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type net from "node:net";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ServeInfo } from "../mod.ts";
import { parseByteSize, parseProxyFlag, proxyHandler } from "./proxy.ts";
import { HOST, startServer } from "../_test_utils.ts";
import { parseFlags, UsageError } from "./flags.ts";
import {
  APPS,
  connect,
  DEFAULT_FLAGS,
  NO_TESTDATA,
  READ,
  runBrick,
  SITE,
  startBrick,
  USAGE,
} from "./_test_cli.ts";

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
    const response = await handler(new Request("http://x/other"), {} as ServeInfo);
    assert.equal(response.status, 404);
    handler.close();
  });
});

/** A node:http upstream on 127.0.0.1 that answers with what it saw; `requests` counts them. */
async function startUpstream() {
  const upstream = {
    requests: 0,
    url: "",
    server: http.createServer((req, res) => {
      upstream.requests++;
      res.setHeader("cache-control", "max-age=60");
      res.setHeader("content-type", "text/plain");
      res.end(`upstream saw ${req.method} ${req.url} host=${req.headers.host}`);
    }),
    close: () => new Promise<void>((resolve) => upstream.server.close(() => resolve())),
  };
  await new Promise<void>((resolve) => upstream.server.listen(0, HOST, resolve));
  upstream.url = `http://${HOST}:${(upstream.server.address() as net.AddressInfo).port}`;
  return upstream;
}

test("parseFlags() reads repeated --proxy values in order and --cache in bytes", () => {
  const flags = parseFlags([
    "--proxy",
    "/api=http://127.0.0.1:3000",
    "--proxy=/static/=http://127.0.0.1:4000/files",
    "--cache",
    "64MB",
  ]);
  assert.deepEqual(flags, {
    ...DEFAULT_FLAGS,
    proxy: [
      { prefix: "/api", upstream: "http://127.0.0.1:3000" },
      { prefix: "/static", upstream: "http://127.0.0.1:4000/files" },
    ],
    cacheBytes: 64 * 1024 * 1024,
  });
  assert.throws(() => parseFlags(["--cache", "1MB"]), UsageError);
  assert.throws(() => parseFlags(["--proxy", "ftp://x"]), UsageError);
});

/** GETs `path` on a connection of its own, which the kernel or node:cluster gives to any worker. */
async function getOnce(port: number, path: string) {
  using conn = await connect(port);
  await conn.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const [response] = await conn.received.responses(1);
  return response;
}

describe("brick CLI --proxy", () => {
  test("forwards every path to a bare upstream, says so in the banner, and logs it", async () => {
    const upstream = await startUpstream();
    const { brick, url } = await startBrick(["--proxy", upstream.url]);
    try {
      const response = await fetch(url + "any/path?x=1", { method: "POST", body: "hi" });
      const text = await response.text();
      assert.equal(response.status, 200);
      assert.match(text, /^upstream saw POST \/any\/path\?x=1 host=127\.0\.0\.1:\d+$/);
      assert.match(response.headers.get("via") ?? "", /1\.1 brick$/);
      assert.match(brick.stdout.text, new RegExp(`Proxy: {3}everything → ${upstream.url}\n`));
      await brick.stdout.waitFor(
        new RegExp(
          `"POST /any/path\\?x=1 HTTP/1\\.1" 200 ${new TextEncoder().encode(text).length}`,
        ),
      );
      assert.equal(upstream.requests, 1);
    } finally {
      await brick.close();
      await upstream.close();
    }
  });

  test("mounts a path on an upstream and serves the rest from the folder, with a cache", {
    skip: NO_TESTDATA,
  }, async () => {
    const upstream = await startUpstream();
    const { brick, url } = await startBrick(
      [SITE, "--proxy", `/api=${upstream.url}`, "--cache", "1MB", "--header", "X-Site: 1"],
      { permissions: READ },
    );
    try {
      assert.match(
        brick.stdout.text,
        new RegExp(`Proxy: {3}/api → ${upstream.url} \\(cache 1 MiB\\)\n`),
      );
      const first = await fetch(url + "api/users?page=2");
      assert.match(await first.text(), /^upstream saw GET \/api\/users\?page=2 /);
      assert.match(first.headers.get("cache-status") ?? "", /^brick; fwd=uri-miss; .*stored/);
      assert.equal(first.headers.get("x-site"), "1", "--header applies to proxied responses");
      const again = await fetch(url + "api/users?page=2");
      assert.match(await again.text(), /^upstream saw GET \/api\/users\?page=2 /);
      assert.match(again.headers.get("cache-status") ?? "", /^brick; hit/);
      assert.equal(upstream.requests, 1, "the second answer came from the cache");

      const page = await fetch(url + "hello.txt");
      assert.equal(page.status, 200);
      assert.equal(await page.text(), readFileSync(join(SITE, "hello.txt"), "utf8"));
      assert.equal(page.headers.get("cache-status"), null);
      const apix = await fetch(url + "apix");
      assert.equal(apix.status, 404, "/apix is not below /api");
      await apix.body?.cancel();
      await brick.stdout.waitFor(/"GET \/api\/users\?page=2 HTTP\/1\.1" 200 \d+\n[^]*"GET \/apix/);
      assert.equal(upstream.requests, 1);
    } finally {
      await brick.close();
      await upstream.close();
    }
  });

  test("mounts a path on an upstream beside an app module", { skip: NO_TESTDATA }, async () => {
    const upstream = await startUpstream();
    const { brick, url } = await startBrick(
      [join(APPS, "handler.mjs"), "--proxy", `/api/v2=${upstream.url}/base`],
      { permissions: READ },
    );
    try {
      const proxied = await fetch(url + "api/v2/items");
      assert.match(await proxied.text(), /^upstream saw GET \/base\/api\/v2\/items /);
      const app = await fetch(url + "api/v1");
      assert.doesNotMatch(await app.text(), /upstream saw/);
      assert.equal(upstream.requests, 1);
    } finally {
      await brick.close();
      await upstream.close();
    }
  });

  test("serves with --workers 2, each worker with a cache of its own", {
    timeout: 30_000,
  }, async () => {
    const upstream = await startUpstream();
    const { brick, port } = await startBrick(
      ["--proxy", upstream.url, "--cache", "2MB", "--workers", "2"],
      { permissions: ["--allow-net", "--allow-read", "--unstable-net"] },
    );
    try {
      assert.match(
        brick.stdout.text,
        new RegExp(`Proxy: {3}everything → ${upstream.url} \\(cache 2 MiB per worker\\)\n`),
      );
      // New connections reach either worker; each misses once and then hits.
      const statuses: string[] = [];
      for (let i = 0; i < 6; i++) {
        const response = await getOnce(port, "/shared");
        assert.match(response.body, /^upstream saw GET \/shared /);
        statuses.push(response.headers.get("cache-status") ?? "");
      }
      assert.ok(statuses.some((status) => /hit/.test(status)), statuses.join("\n"));
      assert.ok(upstream.requests >= 1 && upstream.requests <= 2, `${upstream.requests} misses`);
    } finally {
      await brick.close();
      await upstream.close();
    }
  });

  test("answers 404 outside the mounts when there is neither app nor folder", async () => {
    const upstream = await startUpstream();
    const { brick, url } = await startBrick(["--proxy", `/api=${upstream.url}`]);
    try {
      const response = await fetch(url + "index.html");
      assert.equal(response.status, 404);
      await response.body?.cancel();
      assert.equal(upstream.requests, 0);
    } finally {
      await brick.close();
      await upstream.close();
    }
  });

  test("exits 2 with the usage line on a bad --proxy or --cache", {
    timeout: 30_000,
  }, async () => {
    const cases: [string[], string][] = [
      [
        ["--cache", "256MB"],
        'Flag "--cache" needs "--proxy": it caches upstream responses ' +
        "(e.g. --proxy http://127.0.0.1:3000 --cache 256MB)",
      ],
      [
        ["--proxy", "/api"],
        'Invalid --proxy "/api": a path needs its upstream, as in /api=http://127.0.0.1:3000',
      ],
      [
        ["--proxy", "https://example.com"],
        'Invalid --proxy "https://example.com": only http:// upstreams are supported',
      ],
      [
        ["--proxy", "http://127.0.0.1:3000", "--cache", "lots"],
        'Invalid size "lots": give a number with an optional unit, e.g. 256MB',
      ],
      [
        ["--proxy", "/a=http://127.0.0.1:1", "--proxy", "/a/=http://127.0.0.1:2"],
        'Flag "--proxy" is given twice for "/a": each path forwards to one upstream',
      ],
      [
        ["public", "--proxy", "http://127.0.0.1:3000"],
        'Flag "--proxy http://127.0.0.1:3000" forwards every path, so "public" would never ' +
        "be served: mount the upstream on a path instead, as in --proxy /api=http://127.0.0.1:3000",
      ],
      [
        ["--proxy", "http://127.0.0.1:3000", "--dotfiles"],
        'Flag "--dotfiles" applies to a folder only, and brick serves a proxy',
      ],
    ];
    for (const [args, message] of cases) {
      const { code, stdout, stderr } = await runBrick(args, { permissions: READ });
      assert.equal(code, 2, `for ${args}`);
      assert.equal(stderr, `${message}\n${USAGE}\n`);
      assert.equal(stdout, "");
    }
  });

  test("--help lists --proxy and --cache", async () => {
    const { code, stdout } = await runBrick(["--help"]);
    assert.equal(code, 0);
    assert.match(stdout, /^ {6}--proxy <\[\/path=\]url> +Forward to an http:\/\/ upstream/m);
    assert.match(stdout, /^ {6}--cache <size> +Cache upstream responses/m);
  });
});
