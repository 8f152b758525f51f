// Tests for cli/signals.ts: SIGINT and SIGTERM shut brick down gracefully.

import assert from "node:assert/strict";
import { test } from "node:test";
import { connect, delay, startBrick } from "./_test_cli.ts";

test("brick CLI shuts down gracefully and exits 0 on SIGTERM and SIGINT", async () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    const { brick, url } = await startBrick();
    try {
      await (await fetch(url)).text();
      brick.kill(signal);
      const status = await brick.exit();
      await brick.stderr.done;
      assert.equal(status.code, 0, `after ${signal}: ${brick.stderr.text}`);
      assert.equal(brick.stderr.text, "Shutting down\n");
    } finally {
      await brick.close();
    }
  }
});

test("brick CLI exits 130 at once on a second SIGINT while a request is unfinished", async () => {
  const { brick, port } = await startBrick();
  try {
    using conn = await connect(port);
    const { received } = conn;
    await conn.write("GET / HTTP/1.1\r\n");
    await delay(100);
    brick.kill("SIGINT");
    await brick.stderr.waitFor(/Shutting down\n/);
    await delay(100);
    const started = Date.now();
    brick.kill("SIGINT");
    const status = await brick.exit();
    assert.equal(status.code, 130);
    assert.ok(Date.now() - started < 2000, "the second SIGINT does not wait for the request");
    await brick.stderr.done;
    assert.equal(brick.stderr.text, "Shutting down\nForcing exit\n");
    await received.done;
  } finally {
    await brick.close();
  }
});
