// TLS and Unix domain sockets: the transports beside plain TCP. Certificates
// are made with openssl at test time (_test_tls.ts); clients are curl and each runtime's
// fetch, trusting that CA. Runs under `deno test`, `node --test` and `bun test`.

import { after, before } from "node:test";
import { describe, test } from "./_test_skips.ts";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { serve, type Server, type UnixAddr } from "./mod.ts";
import { makeTestCertificates, opensslMissing } from "./_test_tls.ts";
import {
  deferred,
  head,
  HOST,
  missing,
  parseResponses,
  RawClient,
  run,
  serveListening,
  within,
} from "./_test_utils.ts";

const deno = (globalThis as { Deno?: typeof Deno }).Deno;
const bun = (globalThis as { Bun?: unknown }).Bun;
const quiet = { onListen() {} };
const hello = (request: Request) => new Response(`hello from ${request.url}`);

/** A temporary directory, removed after the suites (Deno's node:test runs only nested after()). */
const dir = mkdtempSync(join(tmpdir(), "brick-transport-"));
const removeDir = () => rmSync(dir, { recursive: true, force: true });

// ─── TLS ────────────────────────────────────────────────────────────────────

interface Pki {
  ca: string;
  cert: string;
  key: string;
  caFile: string;
}

/** A CA and a certificate for localhost and 127.0.0.1 signed by it, as PEM text. */
async function makePki(): Promise<Pki> {
  const files = await makeTestCertificates(dir);
  const read = (file: string) => readFileSync(file, "utf8");
  return {
    ca: read(files.caFile),
    cert: read(files.certFile),
    key: read(files.keyFile),
    caFile: files.caFile,
  };
}

/** GETs `url` with this runtime's fetch, trusting only `pki`'s CA besides the defaults. */
async function fetchTrusting(pki: Pki, url: string): Promise<{ status: number; text: string }> {
  if (deno) {
    const client = deno.createHttpClient({ caCerts: [pki.ca] });
    try {
      const response = await fetch(url, { client } as RequestInit);
      return { status: response.status, text: await response.text() };
    } finally {
      client.close();
    }
  }
  if (bun) {
    const response = await fetch(url, { tls: { ca: pki.ca } } as RequestInit);
    return { status: response.status, text: await response.text() };
  }
  // Node's fetch reads extra CAs only at start-up: ask a fresh node process.
  const script = `const r = await fetch(${JSON.stringify(url)});` +
    "console.log(JSON.stringify({ status: r.status, text: await r.text() }));";
  const out = await run(process.execPath, ["--input-type=module", "-e", script], {
    env: { NODE_EXTRA_CA_CERTS: pki.caFile },
  });
  return JSON.parse(out);
}

const opensslSkip = await opensslMissing();
const curlSkip = await missing("curl");

test("serve() on hostname localhost reports the address it bound, not the name", async () => {
  const server = await serveListening({ ...quiet, hostname: "localhost", port: 0, handler: hello });
  try {
    assert.ok(
      ["127.0.0.1", "::1"].includes(server.addr.hostname),
      `addr.hostname ${server.addr.hostname}`,
    );
    const response = await fetch(`http://localhost:${server.addr.port}/`);
    assert.equal(response.status, 200);
    await response.body?.cancel();
  } finally {
    await server.shutdown();
  }
});

describe("serve() over TLS", { skip: opensslSkip }, () => {
  let pki: Pki;
  let server: Server;
  let port: number;

  before(async () => {
    pki = await makePki();
    server = await serveListening({
      ...quiet,
      hostname: HOST,
      port: 0,
      cert: pki.cert,
      key: pki.key,
      handler: hello,
      shutdownTimeout: 1000,
    });
    port = server.addr.port;
  });
  after(() => server?.shutdown());

  test("serve() with cert and key answers fetch over https, with an https request.url", async () => {
    const { status, text } = await fetchTrusting(pki, `https://localhost:${port}/tls?x=1`);
    assert.equal(status, 200);
    assert.equal(text, `hello from https://localhost:${port}/tls?x=1`);
  });

  test("serve() with cert and key answers curl --cacert", { skip: curlSkip }, async () => {
    const out = await run("curl", [
      "-sS",
      "--max-time",
      "5",
      "--cacert",
      pki.caFile,
      `https://localhost:${port}/curl`,
    ]);
    assert.equal(out, `hello from https://localhost:${port}/curl`);
  });

  test("serve() over TLS keeps connections alive and pipelines", { skip: curlSkip }, async () => {
    const out = await run("curl", [
      "-sS",
      "--max-time",
      "5",
      "--cacert",
      pki.caFile,
      "-w",
      "|%{num_connects}\\n",
      `https://localhost:${port}/a`,
      `https://localhost:${port}/b`,
    ]);
    assert.equal(
      out,
      `hello from https://localhost:${port}/a|1\nhello from https://localhost:${port}/b|0\n`,
      "the second request reuses the connection",
    );
  });

  test("serve() over TLS survives a plain-HTTP request to its port and serves the next client", async () => {
    const plain = await RawClient.connect(port);
    await plain.write(head("GET / HTTP/1.1", "Host: x"));
    await plain.waitClosed(5000);
    assert.doesNotMatch(plain.text, /hello from/);
    const { status } = await fetchTrusting(pki, `https://localhost:${port}/after`);
    assert.equal(status, 200);
  });

  test("serve() over TLS serves other clients while a handshake stalls", async () => {
    const stalled = await RawClient.connect(port);
    await stalled.write("\x16\x03\x01"); // the start of a ClientHello, then nothing
    const { status } = await fetchTrusting(pki, `https://localhost:${port}/meanwhile`);
    assert.equal(status, 200);
    stalled.destroy();
  });

  // Deno.listenTls finishes handshakes before accept() hands the connection
  // over, so a stalled handshake never reaches brick's deadlines there.
  const stalledSkip = deno ? "Deno.listenTls holds connections until their handshake ends" : false;
  test("serve() over TLS closes a client that never completes the handshake at readHeaderTimeout", {
    skip: stalledSkip,
  }, async () => {
    const slow = await serveListening({
      ...quiet,
      hostname: HOST,
      port: 0,
      cert: pki.cert,
      key: pki.key,
      handler: hello,
      readHeaderTimeout: 300,
    });
    try {
      const client = await RawClient.connect(slow.addr.port);
      await client.write("\x16\x03\x01"); // the start of a ClientHello, then nothing
      await client.waitClosed(5000);
    } finally {
      await slow.shutdown();
    }
  });

  test("serve() prints an https:// URL for a TLS server", async () => {
    const printed: string[] = [];
    const log = console.log;
    console.log = (line: string) => printed.push(line);
    let tlsServer: Server | undefined;
    try {
      tlsServer = serve({ hostname: HOST, port: 0, cert: pki.cert, key: pki.key }, hello);
      const listening = deferred();
      const poll = setInterval(() => printed.length > 0 && listening.resolve(), 5);
      await within(listening.promise, 5000, "the listening line").finally(() =>
        clearInterval(poll)
      );
    } finally {
      console.log = log;
      await tlsServer?.shutdown();
    }
    assert.match(printed[0], /^Listening on https:\/\/127\.0\.0\.1:\d+\/$/);
  });
});

describe("serve() TLS options", () => {
  test("serve() throws a TypeError for a cert without a key, naming both", () => {
    assert.throws(
      () => serve({ ...quiet, port: 0, cert: "-----BEGIN CERTIFICATE-----" }, hello),
      (error: Error) =>
        error instanceof TypeError && /cert was given without key/.test(error.message),
    );
  });

  test("serve() throws a TypeError for a key without a cert", () => {
    assert.throws(
      () => serve({ ...quiet, port: 0, key: "-----BEGIN PRIVATE KEY-----" }, hello),
      (error: Error) =>
        error instanceof TypeError && /key was given without cert/.test(error.message),
    );
  });

  test("serve() throws a TypeError for a file path given as cert", () => {
    assert.throws(
      () => serve({ ...quiet, port: 0, cert: "./cert.pem", key: "./key.pem" }, hello),
      (error: Error) => error instanceof TypeError && /PEM text/.test(error.message),
    );
  });

  test("serve() fails with a readable error for a PEM that is not a certificate", async () => {
    const bad = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
    let failure: unknown;
    try {
      const server = serve({ ...quiet, hostname: HOST, port: 0, cert: bad, key: bad }, hello);
      await server.finished; // Node and Bun may report it here
    } catch (error) {
      failure = error;
    }
    assert.ok(failure instanceof Error, "an error");
    assert.match((failure as Error).message, /TLS certificate and key/);
  });
});

// ─── Unix domain sockets ────────────────────────────────────────────────────

/** Sends one raw request over the Unix socket at `path` and parses the answer. */
async function askUnix(path: string, request: string) {
  const socket = net.createConnection({ path });
  const chunks: Uint8Array[] = [];
  const closed = deferred();
  socket.on("data", (chunk: Uint8Array) => chunks.push(new Uint8Array(chunk)));
  socket.on("close", () => closed.resolve());
  socket.on("error", (error) => closed.reject(error));
  socket.write(request);
  await within(closed.promise, 5000, "the server to answer and close");
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return parseResponses(bytes);
}

const REQUEST_CLOSE = head("GET /unix HTTP/1.1", "Host: brick", "Connection: close");

describe("serve() on a Unix domain socket", () => {
  after(removeDir); // the last suite of the file
  test("serve({ path }) answers over the socket and reports a unix address", async () => {
    const path = join(dir, "a.sock");
    let seen: UnixAddr | undefined;
    const listening = deferred<UnixAddr>();
    const server = serve({ path, onListen: listening.resolve }, (request, info) => {
      seen = info.remoteAddr;
      return new Response(`unix ${request.url}`);
    });
    assert.deepEqual(await within(listening.promise, 5000, "onListen"), {
      path,
      transport: "unix",
    });
    try {
      assert.deepEqual(server.addr, { path, transport: "unix" });
      const [response] = await askUnix(path, REQUEST_CLOSE);
      assert.equal(response.status, 200);
      assert.equal(response.text, "unix http://brick/unix");
      assert.equal(seen?.transport, "unix");
    } finally {
      await server.shutdown();
    }
  });

  test("serve({ path }) answers curl --unix-socket", { skip: curlSkip }, async () => {
    const path = join(dir, "curl.sock");
    const server = serve({ ...quiet, path }, () => new Response("over a unix socket"));
    try {
      await waitForFile(path);
      const out = await run("curl", ["-sS", "--max-time", "5", "--unix-socket", path, "http://x/"]);
      assert.equal(out, "over a unix socket");
    } finally {
      await server.shutdown();
    }
  });

  test("serve({ path }) removes the socket file on shutdown", async () => {
    const path = join(dir, "removed.sock");
    const server = serve({ ...quiet, path }, () => new Response("ok"));
    await waitForFile(path);
    await server.shutdown();
    assert.equal(existsSync(path), false);
  });

  test("serve({ path }) replaces a socket file left by a dead server", async () => {
    const path = join(dir, "stale.sock");
    await leaveStaleSocket(path);
    assert.ok(existsSync(path), "the dead server's file is there");
    const server = serve({ ...quiet, path }, () => new Response("fresh"));
    try {
      await waitForFile(path);
      const [response] = await askUnixEventually(path);
      assert.equal(response.text, "fresh");
    } finally {
      await server.shutdown();
    }
  });

  test("serve({ path }) refuses a path where a live server listens, and leaves it alone", async () => {
    const path = join(dir, "live.sock");
    const first = serve({ ...quiet, path }, () => new Response("first"));
    try {
      await waitForFile(path);
      const second = serve({ ...quiet, path }, () => new Response("second"));
      await assert.rejects(second.finished, (error: Error & { code?: string }) => {
        assert.equal(error.code, "EADDRINUSE");
        assert.match(error.message, /already in use/);
        return true;
      });
      const [response] = await askUnix(path, REQUEST_CLOSE);
      assert.equal(response.text, "first");
    } finally {
      await first.shutdown();
    }
  });

  test("serve({ path }) refuses a path taken by a file that is not a socket", async () => {
    const path = join(dir, "regular-file");
    writeFileSync(path, "keep me");
    const server = serve({ ...quiet, path }, () => new Response("never"));
    await assert.rejects(server.finished, /not a socket/);
    assert.equal(readFileSync(path, "utf8"), "keep me");
  });

  test("serve() throws a TypeError for path together with port", () => {
    assert.throws(
      () => serve({ ...quiet, path: join(dir, "x.sock"), port: 1 } as never, hello),
      /does not apply to a Unix socket/,
    );
  });
});

/** Waits until `path` exists (the listener binds in the background). */
async function waitForFile(path: string): Promise<void> {
  for (let i = 0; i < 200 && !existsSync(path); i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.ok(existsSync(path), `${path} was not created`);
}

/** Retries while the server is still binding after removing the stale file. */
async function askUnixEventually(path: string) {
  for (let i = 0;; i++) {
    try {
      return await askUnix(path, REQUEST_CLOSE);
    } catch (error) {
      if (i >= 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/**
 * Leaves a socket file with no server behind it: a child process listens on
 * `path` and is killed with SIGKILL, so it cannot remove the file.
 */
async function leaveStaleSocket(path: string): Promise<void> {
  const script = `require("net").createServer().listen(${JSON.stringify(path)}, () => ` +
    `console.log("listening"))`;
  const child = spawn("node", ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const listening = deferred();
  child.stdout!.on("data", () => listening.resolve());
  child.on("exit", () => listening.reject(new Error("the stale-socket child exited early")));
  await within(listening.promise, 5000, "the child to listen");
  const exited = new Promise((resolve) => child.on("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}
