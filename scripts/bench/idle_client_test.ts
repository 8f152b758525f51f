// Tests of the idle scenario's client (idle_client.mjs) against real brick servers on
// 127.0.0.1: it must count connections that opened, failed or were closed by the server, and
// never hang. The client runs as a child process, on the runtime running these tests.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer } from "node:net";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { startServer } from "../../_test_utils.ts";

const CLIENT = fileURLToPath(new URL("./idle_client.mjs", import.meta.url));

/** What one run of the client printed and how it exited. */
interface ClientRun {
  code: number;
  opened?: { open: number; failed: number };
  held?: { open: number; closed: number };
  stderr: string;
}

/** Runs the client to its end (killed after `timeoutMs`) and parses its two lines. */
function runClient(args: string[], timeoutMs = 20_000): Promise<ClientRun> {
  const runtime = "Deno" in globalThis ? ["run", "--allow-net", CLIENT] : [CLIENT];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...runtime, ...args],
      { timeout: timeoutMs, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        const opened = stdout.match(/^OPENED (\d+) (\d+) \d+$/m);
        const held = stdout.match(/^HELD (\d+) (\d+)$/m);
        resolve({
          code: error === null ? 0 : typeof error.code === "number" ? error.code : -1,
          opened: opened ? { open: Number(opened[1]), failed: Number(opened[2]) } : undefined,
          held: held ? { open: Number(held[1]), closed: Number(held[2]) } : undefined,
          stderr,
        });
      },
    );
  });
}

test("idle_client keeps every connection open against a server that keeps them", async () => {
  let requests = 0;
  const { server, port } = await startServer(() => {
    requests++;
    return new Response("Hello, World!");
  });
  try {
    const run = await runClient(["--port", String(port), "--connections", "300", "--hold", "500"]);
    assert.deepEqual(run.opened, { open: 300, failed: 0 }, run.stderr);
    assert.deepEqual(run.held, { open: 300, closed: 0 }, run.stderr);
    assert.equal(run.code, 0);
    assert.equal(requests, 300, "one request per connection");
  } finally {
    await server.shutdown();
  }
});

test("idle_client counts the connections a server closes during the hold", async () => {
  const { server, port } = await startServer(() => new Response("Hello, World!"), {
    idleTimeout: 200,
  });
  try {
    const run = await runClient(["--port", String(port), "--connections", "50", "--hold", "2000"]);
    assert.deepEqual(run.opened, { open: 50, failed: 0 }, run.stderr);
    assert.deepEqual(run.held, { open: 0, closed: 50 }, run.stderr);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /the server closed an idle connection/);
  } finally {
    await server.shutdown();
  }
});

test("idle_client counts a response other than 200 as a failed connection", async () => {
  const { server, port } = await startServer(() => new Response("no", { status: 503 }));
  try {
    const run = await runClient(["--port", String(port), "--connections", "20", "--hold", "0"]);
    assert.deepEqual(run.opened, { open: 0, failed: 20 });
    assert.deepEqual(run.held, { open: 0, closed: 0 });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /status 503 instead of 200/);
  } finally {
    await server.shutdown();
  }
});

test("idle_client fails every connection to a port nobody listens on, and ends", async () => {
  // A port that was free a moment ago: bind one, note it, close it.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));

  const run = await runClient(["--port", String(port), "--connections", "30", "--hold", "0"]);
  assert.deepEqual(run.opened, { open: 0, failed: 30 });
  assert.equal(run.code, 1);
  assert.match(run.stderr, /connection error/);
});

test("idle_client gives up on a server that never answers, within its timeouts", async () => {
  // Accepts and reads, never writes.
  const silent = createServer((socket) => socket.resume());
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const { port } = silent.address() as { port: number };
  try {
    const started = Date.now();
    const run = await runClient([
      "--port",
      String(port),
      "--connections",
      "5",
      "--hold",
      "0",
      "--connection-timeout",
      "300",
    ]);
    assert.deepEqual(run.opened, { open: 0, failed: 5 });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /no response within 300 ms/);
    assert.ok(Date.now() - started < 10_000, "bounded by the per-connection timeout");
  } finally {
    // The client's exit closed the accepted sockets; this closes the listener.
    silent.close();
  }
});

test("idle_client refuses a host that is not a loopback address", async () => {
  const run = await runClient(["--host", "192.0.2.1", "--port", "80"]);
  assert.equal(run.code, 2);
  assert.equal(run.opened, undefined);
  assert.match(run.stderr, /--host must be a loopback address/);
});
