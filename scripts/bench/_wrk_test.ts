// Tests of the bench's wrk helpers (_wrk.ts): the parser on wrk's own output, and the Lua
// scripts run by the real wrk against servers on 127.0.0.1 that record what arrives. The tests
// that run wrk are skipped where it is not installed.

import { test } from "../../_test_skips.ts";
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { createServer, type Socket } from "node:net";
import { startServer } from "../../_test_utils.ts";
import { parseWrkOutput, pipelineLua, postLua } from "./_wrk.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const hasWrk = (() => {
  try {
    execFileSync("wrk", ["-v"], { stdio: "ignore" });
    return true;
  } catch (error) {
    // wrk -v exits 1 after printing its version.
    return (error as { code?: string }).code !== "ENOENT";
  }
})();
const noWrk = hasWrk ? false : "wrk is not installed";

/** Output of `wrk --latency` (4.1.0), keep-alive GET. */
const HELLO_OUTPUT = `Running 1s test @ http://127.0.0.1:44809/
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   603.22us    1.36ms  11.75ms   88.85%
    Req/Sec    24.48k     7.85k   37.05k    60.00%
  Latency Distribution
     50%   48.00us
     75%  223.00us
     90%    2.19ms
     99%    6.73ms
  24418 requests in 1.01s, 3.00MB read
Requests/sec:  24260.04
Transfer/sec:      2.98MB
`;

test("parseWrkOutput reads req/s, MiB/s and p99 from wrk --latency output", () => {
  const result = parseWrkOutput(HELLO_OUTPUT);
  assert.equal(result.requestsPerSec, 24260.04);
  assert.equal(result.mibPerSec, 2.98);
  assert.equal(result.p99Ms, 6.73);
  assert.equal(result.errors, 0);
});

test("parseWrkOutput converts wrk's binary size units and latency units", () => {
  const output = HELLO_OUTPUT.replace("Transfer/sec:      2.98MB", "Transfer/sec:      1.50GB")
    .replace("99%    6.73ms", "99%  850.00us");
  assert.equal(parseWrkOutput(output).mibPerSec, 1536);
  assert.equal(parseWrkOutput(output).p99Ms, 0.85);
  const small = HELLO_OUTPUT.replace("Transfer/sec:      2.98MB", "Transfer/sec:    512.00KB");
  assert.equal(parseWrkOutput(small).mibPerSec, 0.5);
});

test("parseWrkOutput adds socket errors and non-2xx responses", () => {
  const output = HELLO_OUTPUT.replace(
    "Requests/sec:",
    "  Socket errors: connect 1, read 2, write 3, timeout 4\n" +
      "  Non-2xx or 3xx responses: 10\nRequests/sec:",
  );
  assert.equal(parseWrkOutput(output).errors, 20);
});

test("parseWrkOutput reports the 0.00us p99 of corrupted percentiles as NaN", () => {
  const output = HELLO_OUTPUT.replace("99%    6.73ms", "99%    0.00us");
  assert.ok(Number.isNaN(parseWrkOutput(output).p99Ms));
});

test("parseWrkOutput throws on output without its figures, quoting it", () => {
  assert.throws(() => parseWrkOutput("unable to connect to 127.0.0.1:1 Connection refused"), {
    message: /Unexpected wrk output:\nunable to connect/,
  });
  const nothing = HELLO_OUTPUT.replace(
    "24418 requests in 1.01s, 3.00MB read",
    "0 requests in 1.01s, 0.00B read",
  );
  assert.throws(() => parseWrkOutput(nothing), { message: /completed no request/ });
});

/** Runs wrk for 1 s with a Lua script; resolves to its stdout. */
function runWrk(url: string, connections: number, lua?: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "brick-wrk-test-"));
  const args = ["--threads", "1", "--connections", String(connections), "--duration", "1s"];
  args.push("--latency");
  if (lua !== undefined) {
    writeFileSync(join(dir, "script.lua"), lua);
    args.push("--script", join(dir, "script.lua"));
  }
  return new Promise<string>((resolve, reject) => {
    execFile("wrk", [...args, url], { timeout: 20_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`wrk failed: ${error.message}\n${stderr}`));
      else resolve(stdout);
    });
  }).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test(
  "postLua makes wrk send POST / with the body and its Content-Length",
  { skip: noWrk },
  async () => {
    const seen = new Set<string>();
    let requests = 0;
    const { server, port } = await startServer(async (request) => {
      const body = new Uint8Array(await request.arrayBuffer());
      requests++;
      seen.add(
        `${request.method} ${new URL(request.url).pathname} ` +
          `length=${request.headers.get("content-length")} body=${body.length}`,
      );
      return new Response("ok");
    });
    try {
      const result = parseWrkOutput(await runWrk(`http://127.0.0.1:${port}/`, 2, postLua(65_536)));
      assert.deepEqual([...seen], ["POST / length=65536 body=65536"]);
      assert.ok(requests > 0 && result.requestsPerSec > 0);
      assert.equal(result.errors, 0);
    } finally {
      await server.shutdown();
    }
  },
);

test("pipelineLua makes wrk write 16 requests at once", { skip: noWrk }, async () => {
  const batches: number[] = [];
  const sockets = new Set<Socket>();
  const raw = createServer((socket) => {
    sockets.add(socket);
    let text = "";
    socket.on("data", (chunk) => {
      text += chunk.toString("latin1");
      const heads = text.split("\r\n\r\n");
      text = heads.pop()!;
      if (heads.length === 0) return;
      batches.push(heads.length);
      socket.write("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".repeat(heads.length));
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve));
  const { port } = raw.address() as { port: number };
  try {
    const result = parseWrkOutput(await runWrk(`http://127.0.0.1:${port}/`, 1, pipelineLua(16)));
    assert.ok(batches.length > 0);
    assert.ok(batches.every((n) => n === 16), `batches of ${[...new Set(batches)]}`);
    assert.ok(result.requestsPerSec > 0);
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => raw.close(resolve));
  }
});

test("parseWrkOutput's MiB/s is what wrk read from a large response", { skip: noWrk }, async () => {
  const MIB = new Uint8Array(1024 * 1024).fill(7);
  const { server, port } = await startServer(() => new Response(MIB));
  try {
    const result = parseWrkOutput(await runWrk(`http://127.0.0.1:${port}/`, 1));
    // One connection: every request is one 1 MiB body, plus the one cut off at the end.
    assert.ok(result.mibPerSec > 0);
    const perRequest = result.mibPerSec / result.requestsPerSec;
    assert.ok(perRequest > 0.9 && perRequest < 1.5, `${perRequest} MiB per request`);
  } finally {
    await server.shutdown();
  }
});
