// Tests for cli/access_log.ts: the Common Log Format line, one per request,
// --quiet, and the request heads that --verbose prints.

import assert from "node:assert/strict";
import { test } from "node:test";
import { formatAccessLog, formatClfDate } from "./access_log.ts";
import { CLF_LINE, connect, escapeRegExp, startBrick } from "./_test_cli.ts";

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
