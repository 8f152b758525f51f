// Tests for cli/server.ts: one server over plain TCP, HTTPS and a Unix socket.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "../_test_skips.ts";
import {
  connect,
  curl,
  delay,
  NO_CURL,
  NO_OPENSSL,
  READ,
  spawnBrick,
  startBrick,
  UNIX,
  withCertificates,
  withTempDir,
} from "./_test_cli.ts";

test("brick CLI answers a request typed line by line and keeps the connection open", async () => {
  const { brick, port } = await startBrick();
  try {
    using conn = await connect(port);
    const { received } = conn;
    const type = (line: string) => conn.write(line + "\r\n");
    for (const line of ["GET / HTTP/1.1", "Host: x"]) {
      await type(line);
      await delay(300);
      assert.equal(received.bytes.length, 0, `no answer before the blank line, after "${line}"`);
    }
    await type("");
    const [first] = await received.responses(1);
    assert.equal(first.statusLine, "HTTP/1.1 200 OK");
    assert.equal(first.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(first.headers.get("content-length"), "13");
    assert.equal(first.body, "Hello, World!");
    assert.notEqual(first.headers.get("connection")?.toLowerCase(), "close");

    await delay(300);
    for (const line of ["GET /again HTTP/1.1", "Host: x", ""]) {
      await type(line);
      await delay(100);
    }
    const [, second] = await received.responses(2);
    assert.equal(second.statusLine, "HTTP/1.1 200 OK");
    assert.equal(second.body, "Hello, World!");
    conn.closeWrite();
    await received.done;
  } finally {
    await brick.close();
  }
});

test("brick CLI with --cert and --key serves HTTPS that curl trusts through the CA", {
  skip: NO_OPENSSL || NO_CURL,
}, async () => {
  await withCertificates(async (pki) => {
    await withTempDir(
      { "url.mjs": "export default (request) => new Response(request.url);\n" },
      async (dir) => {
        const { brick, url, port } = await startBrick(
          [join(dir, "url.mjs"), "--cert", pki.certFile, "--key", pki.keyFile],
          { permissions: READ },
        );
        try {
          assert.equal(url, `https://127.0.0.1:${port}/`, "the banner shows an https URL");
          // HTTP/1.1 on purpose: the access log line below is HTTP/1.1's.
          const result = await curl([
            "--http1.1",
            "--cacert",
            pki.caFile,
            "--include",
            url + "secure?x=1",
          ]);
          assert.equal(result.code, 0, result.stderr);
          assert.match(result.stdout, /^HTTP\/1\.1 200 OK\r\n/);
          const body = result.stdout.slice(result.stdout.indexOf("\r\n\r\n") + 4);
          assert.equal(body, `https://127.0.0.1:${port}/secure?x=1`, "request.url is https");
          await brick.stdout.waitFor(
            /^127\.0\.0\.1 - - \[.+\] "GET \/secure\?x=1 HTTP\/1\.1" 200 /m,
          );
          const untrusted = await curl([url]);
          assert.equal(untrusted.code, 60, "without the CA, curl refuses the certificate");
        } finally {
          await brick.close();
        }
      },
    );
  });
});

test("brick CLI with --unix serves curl --unix-socket, logs 'unix' clients, removes the socket", {
  skip: NO_CURL,
}, async () => {
  await withTempDir({}, async (dir) => {
    const socket = join(dir, "brick.sock");
    const brick = spawnBrick(["--unix", socket], { permissions: UNIX });
    try {
      const [, shown] = await brick.stdout.waitFor(/^ {2}Socket: {2}(.+)$/m);
      assert.equal(shown, socket);
      assert.match(brick.stdout.text, /^ {2}Try: {5}curl --unix-socket \S+ http:\/\/localhost\/$/m);
      assert.doesNotMatch(brick.stdout.text, /Local:|Network:/);
      const result = await curl([
        "--unix-socket",
        socket,
        "--include",
        "http://localhost/over/unix",
      ]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^HTTP\/1\.1 200 OK\r\n/);
      assert.ok(result.stdout.endsWith("\r\n\r\nHello, World!"), result.stdout);
      await brick.stdout.waitFor(/^unix - - \[[^\]]+\] "GET \/over\/unix HTTP\/1\.1" 200 13$/m);
      brick.kill("SIGTERM");
      assert.equal((await brick.exit()).code, 0, brick.stderr.text);
      assert.equal(existsSync(socket), false, "the socket file is removed on shutdown");
    } finally {
      await brick.close();
    }
  });
});
