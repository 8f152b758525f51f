// Tests for cli/banner.ts: the startup banner, its Local and Network URLs.

import assert from "node:assert/strict";
import { test } from "node:test";
import { formatBanner, formatSize } from "./banner.ts";
import { startBrick, VERSION } from "./_test_cli.ts";

test("formatBanner() lists Network URLs only when listening on all interfaces", () => {
  const networkAddresses = ["192.168.1.5", "10.0.0.2"];
  assert.equal(
    formatBanner({ host: "0.0.0.0", port: 8888, networkAddresses, color: false }),
    `brick ${VERSION} is listening\n` +
      "  Local:   http://localhost:8888/\n" +
      "  Network: http://192.168.1.5:8888/\n" +
      "  Network: http://10.0.0.2:8888/\n" +
      "Press Ctrl+C to stop",
  );
  const local = formatBanner({ host: "127.0.0.1", port: 80, networkAddresses, color: false });
  assert.match(local, /Local: {3}http:\/\/127\.0\.0\.1:80\//);
  assert.doesNotMatch(local, /Network/);
  assert.ok(!local.includes("\x1b"), "no colour codes");
  const colored = formatBanner({ host: "::1", port: 1, networkAddresses, color: true });
  assert.ok(colored.includes("\x1b["), "colour codes");
  assert.match(colored, /http:\/\/\[::1\]:/);
});

test("formatBanner() shows each --proxy mount and the cache, shared or per worker", () => {
  const mounts = [
    { prefix: "/api", upstream: "http://127.0.0.1:3000" },
    { prefix: "/auth", upstream: "http://127.0.0.1:4000/v1" },
  ];
  const base = { host: "127.0.0.1", port: 80, networkAddresses: [], color: false };
  assert.equal(
    formatBanner({ ...base, proxy: { mounts, cacheBytes: 256 * 1024 ** 2 } }),
    `brick ${VERSION} is listening\n` +
      "  Proxy:   /api → http://127.0.0.1:3000 (cache 256 MiB, shared)\n" +
      "  Proxy:   /auth → http://127.0.0.1:4000/v1 (cache 256 MiB, shared)\n" +
      "  Local:   http://127.0.0.1:80/\n" +
      "Press Ctrl+C to stop",
  );
  const one = formatBanner({
    ...base,
    workers: { count: 4 },
    proxy: { mounts: [{ prefix: "/", upstream: "http://127.0.0.1:3000" }], cacheBytes: 1 << 30 },
  });
  assert.match(
    one,
    /\n {2}Proxy: {3}everything → http:\/\/127\.0\.0\.1:3000 \(cache 1 GiB per worker\)\n/,
  );
  assert.doesNotMatch(formatBanner({ ...base, proxy: { mounts } }), /cache/);
});

test("formatSize() writes sizes in powers of 1024", () => {
  assert.equal(formatSize(900), "900 bytes");
  assert.equal(formatSize(64 * 1024), "64 KiB");
  assert.equal(formatSize(1.5 * 1024 ** 3), "1.5 GiB");
  assert.equal(formatSize(256 * 1024 ** 2 + 1), "256 MiB");
});

test("brick CLI serves Hello, World! and prints the real port in the banner", async () => {
  const { brick, url, port } = await startBrick();
  try {
    assert.ok(port > 0, `the banner shows port ${port}`);
    const response = await fetch(url + "any/path?x=1");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(await response.text(), "Hello, World!");
    assert.match(brick.stdout.text, new RegExp(`^brick ${VERSION} is listening\n`));
  } finally {
    await brick.close();
  }
});

test("brick CLI shows only the Local URL with --host 127.0.0.1, even with --allow-sys", async () => {
  const { brick } = await startBrick([], { permissions: ["--allow-net", "--allow-sys"] });
  try {
    assert.doesNotMatch(brick.stdout.text, /Network:/);
  } finally {
    await brick.close();
  }
});

test("formatBanner() shows https URLs with TLS, a socket path, and the workers", () => {
  const base = { host: "0.0.0.0", port: 8443, networkAddresses: ["10.0.0.2"], color: false };
  assert.equal(
    formatBanner({ ...base, tls: true, workers: { count: 2, pids: [41, 42] } }),
    `brick ${VERSION} is listening\n` +
      "  Workers: 2 processes (pids 41, 42)\n" +
      "  Local:   https://localhost:8443/\n" +
      "  Network: https://10.0.0.2:8443/\n" +
      "Press Ctrl+C to stop",
  );
  assert.match(formatBanner({ ...base, workers: { count: 4 } }), /^ {2}Workers: 4 threads$/m);
  assert.equal(
    formatBanner({ ...base, socket: "/run/my app.sock" }),
    `brick ${VERSION} is listening\n` +
      "  Socket:  /run/my app.sock\n" +
      "  Try:     curl --unix-socket '/run/my app.sock' http://localhost/\n" +
      "Press Ctrl+C to stop",
  );
});
