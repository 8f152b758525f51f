/**
 * Attacks on a running brick server, each sized by its caller: the hardening
 * tests run them small enough for CI, `scripts/stress.ts` at full size. Each
 * returns figures (latencies, memory, times) rather than asserting, so that
 * the tests assert and the stress run prints.
 *
 * Only node:net and web APIs on the client side, so the same code drives the
 * server from Deno, Node and Bun.
 *
 * @example Usage
 * ```ts ignore
 * import { startTarget } from "./harness.ts";
 * import { slowloris } from "./scenarios.ts";
 *
 * await using target = await startTarget({ readHeaderTimeout: 2000 });
 * const figures = await slowloris(target.port, { connections: 200, readHeaderTimeout: 2000 });
 * console.log(figures.latency.p99);
 * ```
 *
 * @module
 */

import net from "node:net";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { HOST, parseResponses, RawClient } from "../../_test_utils.ts";
import {
  cliCommand,
  type ExitStatus,
  type ProcessStats,
  type Runtime,
  serverHoldsConnection,
  spawnProcess,
  type Target,
} from "./harness.ts";

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ─── Latency ────────────────────────────────────────────────────────────────

/** Latency figures in milliseconds. */
export interface Latency {
  /** Requests answered. */
  count: number;
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** Slowest. */
  max: number;
  /** Requests that failed (no 200), with why. */
  failures: string[];
}

/** The `p`-th percentile (0–100) of `values`, by nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/**
 * One GET on a new connection with `Connection: close`; resolves to the
 * milliseconds from connect to the complete response, or rejects with why it
 * was not a 200.
 *
 * @param port The server's port on 127.0.0.1.
 * @param path The path to ask for.
 * @param ms Give up after this long.
 */
export function timedRequest(port: number, path = "/", ms = 5000): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    const socket = net.connect({ host: HOST, port });
    const timer = setTimeout(() => fail(new Error(`No response within ${ms} ms`)), ms);
    const fail = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.setNoDelay(true);
    socket.on("connect", () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    });
    socket.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    socket.on("error", fail);
    socket.on("close", () => {
      clearTimeout(timer);
      try {
        const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let at = 0;
        for (const chunk of chunks) bytes.set(chunk, (at += chunk.length) - chunk.length);
        const [response] = parseResponses(bytes);
        if (response?.status !== 200) throw new Error(`Status ${response?.status}`);
        resolve(performance.now() - started);
      } catch (error) {
        reject(error);
      }
    });
  });
}

/**
 * Sends requests from `clients` sequential clients until `stop()` holds, and
 * measures each one's latency.
 *
 * @param port The server's port.
 * @param clients How many clients run at once.
 * @param stop Checked before each request.
 * @param pauseMs Pause between one client's requests.
 */
export async function measureLatency(
  port: number,
  clients: number,
  stop: () => boolean,
  pauseMs = 5,
): Promise<Latency> {
  const times: number[] = [];
  const failures: string[] = [];
  const client = async () => {
    while (!stop()) {
      try {
        times.push(await timedRequest(port));
      } catch (error) {
        failures.push((error as Error).message);
      }
      await delay(pauseMs);
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  return {
    count: times.length,
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    max: Math.max(...times),
    failures,
  };
}

// ─── Slowloris ──────────────────────────────────────────────────────────────

/** Options for {@linkcode slowloris}. */
export interface SlowlorisOptions {
  /** Connections that dribble header bytes. */
  connections: number;
  /** The server's readHeaderTimeout in ms, which should end each of them. */
  readHeaderTimeout: number;
  /** Pause between one connection's bytes. @default {200} */
  byteEveryMs?: number;
  /** Clients that send normal requests meanwhile. @default {4} */
  normalClients?: number;
}

/** What {@linkcode slowloris} saw. */
export interface SlowlorisFigures {
  /** Normal requests while the slow connections were open. */
  latency: Latency;
  /** How each slow connection ended: "408", "close" (no bytes), or what else came. */
  endings: Record<string, number>;
  /** Milliseconds from each slow connection's start to its close: the earliest and latest. */
  closedAfterMs: { min: number; max: number };
  /** Slow connections still open when the scenario gave up. */
  stillOpen: number;
}

/**
 * Opens `connections` connections that each send a request head one byte at
 * a time, never finishing it, while normal clients keep requesting. Ends once
 * every slow connection is closed (or after three readHeaderTimeouts).
 *
 * @param port The server's port.
 * @param options Sizes and timing.
 * @returns Latencies of the normal requests and how the slow connections ended.
 */
export async function slowloris(
  port: number,
  options: SlowlorisOptions,
): Promise<SlowlorisFigures> {
  const { connections, readHeaderTimeout, byteEveryMs = 200, normalClients = 4 } = options;
  const head = "GET / HTTP/1.1\r\nHost: x\r\nX-Dribble: " + "a".repeat(100_000);
  const slow: { client: RawClient; started: number; closedAt: number }[] = [];
  const open = async () => {
    // The server's deadline starts at accept, after the connect began.
    const started = performance.now();
    slow.push({ client: await RawClient.connect(port), started, closedAt: 0 });
  };
  for (let i = 0; i < connections; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, connections - i) }, open));
  }
  let done = false;
  const dribble = async (entry: (typeof slow)[number]) => {
    // Spread the bytes of all connections over the interval.
    await delay(Math.random() * byteEveryMs);
    for (let i = 0; i < head.length && !entry.client.closed && !done; i++) {
      await entry.client.write(head[i]).catch(() => {});
      await delay(byteEveryMs);
    }
  };
  const watchers = slow.map((entry) =>
    entry.client.waitClosed(readHeaderTimeout * 3).then(
      () => entry.closedAt = performance.now(),
      () => {},
    )
  );
  const dribbling = slow.map(dribble);
  const latency = measureLatency(port, normalClients, () => done);
  await Promise.all(watchers);
  done = true;
  await Promise.all(dribbling);
  const endings: Record<string, number> = {};
  const closedAfter: number[] = [];
  let stillOpen = 0;
  for (const { client, started, closedAt } of slow) {
    if (!closedAt) stillOpen++;
    else closedAfter.push(closedAt - started);
    let ending: string;
    try {
      const responses = parseResponses(client.received);
      ending = responses.length === 0 ? "close" : responses.map((r) => r.status).join("+");
    } catch (error) {
      ending = `malformed: ${(error as Error).message}`;
    }
    endings[ending] = (endings[ending] ?? 0) + 1;
    client.destroy();
  }
  return {
    latency: await latency,
    endings,
    closedAfterMs: { min: Math.min(...closedAfter), max: Math.max(...closedAfter) },
    stillOpen,
  };
}

// ─── Slow and fast readers ──────────────────────────────────────────────────

/** What {@linkcode slowReader} saw. */
export interface SlowReaderFigures {
  /** Bytes the client received before the server closed. */
  received: number;
  /** Milliseconds from the request to the server's close; NaN if it never closed. */
  closedAfterMs: number;
  /** The target's memory before the request, while the reader stalled, and after the close. */
  stats: { before: ProcessStats | null; stalled: ProcessStats | null; after: ProcessStats | null };
}

/**
 * Asks the target for a `bytes`-long stream, reads the first `readFirst`
 * bytes, then stops reading (the socket is paused) until the server closes
 * the connection, which its writeTimeout should do.
 *
 * @param target The target, started with a writeTimeout.
 * @param bytes The stream's length.
 * @param readFirst How much to read before stalling.
 * @param waitMs How long to wait for the close.
 */
export async function slowReader(
  target: Target,
  bytes: number,
  readFirst: number,
  waitMs: number,
): Promise<SlowReaderFigures> {
  // Warm up: the runtime's first connection and stream open file descriptors
  // and allocate memory for good; that is not what this measures.
  await timedRequest(target.port, "/stream?n=1048576");
  await delay(100);
  const before = target.stats();
  const client = await StallingClient.connect(target.port, readFirst);
  try {
    const started = performance.now();
    client.write(`GET /stream?n=${bytes}&chunk=65536 HTTP/1.1\r\nHost: x\r\n\r\n`);
    await Promise.race([client.stalled, delay(waitMs)]);
    // Let the server fill every buffer it will, then look at its memory.
    await delay(Math.min(1000, waitMs / 4));
    const stalled = target.stats();
    // A client that reads nothing cannot see the close: watch the server's
    // side of the connection instead, then read again to let the close through.
    const deadline = started + waitMs;
    while (performance.now() < deadline) {
      if (serverHoldsConnection(target.port, client.localPort) !== true) break;
      await delay(20);
    }
    let closedAfterMs = performance.now() - started;
    client.resume();
    await Promise.race([client.closed, delay(waitMs)]);
    if (!client.isClosed) closedAfterMs = NaN;
    return {
      received: client.received,
      closedAfterMs,
      stats: { before, stalled, after: target.stats() },
    };
  } finally {
    client.destroy();
  }
}

/** The part of Bun's client socket API that {@linkcode StallingClient} uses. */
interface BunClientSocket {
  readonly localPort: number;
  write(data: Uint8Array): number;
  pause(): void;
  resume(): void;
  terminate(): void;
}

/**
 * A client that stops reading, for real, in the data event that brings its
 * `readFirst`th byte, so that the server's writes stall once the kernel's
 * buffers are full. On Bun it is Bun's own client socket: Bun's node:net
 * socket keeps reading into memory while paused, so the server could send
 * everything to a client that reads nothing.
 */
class StallingClient {
  received = 0;
  isClosed = false;
  /** Resolves once `readFirst` bytes have arrived and reading stopped. */
  readonly stalled: Promise<void>;
  /** Resolves once the server closed the connection. */
  readonly closed: Promise<void>;
  #stall!: () => void;
  #close!: () => void;
  #socket: { write(data: Uint8Array): unknown; pause(): void; resume(): void } | null = null;
  #destroy: () => void = () => {};
  localPort = 0;

  private constructor(readonly readFirst: number) {
    this.stalled = new Promise((resolve) => this.#stall = resolve);
    this.closed = new Promise((resolve) => this.#close = resolve);
  }

  static async connect(port: number, readFirst: number): Promise<StallingClient> {
    const client = new StallingClient(readFirst);
    const bun = (globalThis as { Bun?: { connect(options: unknown): Promise<BunClientSocket> } })
      .Bun;
    if (bun) {
      const socket = await bun.connect({
        hostname: HOST,
        port,
        socket: {
          data: (s: BunClientSocket, chunk: Uint8Array) => client.#read(s, chunk.length),
          close: () => client.#closedNow(),
          error: () => client.#closedNow(),
        },
      });
      client.#socket = socket;
      client.localPort = socket.localPort;
      client.#destroy = () => socket.terminate();
      return client;
    }
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const socket = net.createConnection({ host: HOST, port });
      socket.once("error", reject);
      socket.once("connect", () => resolve(socket));
    });
    socket.on("data", (chunk: Uint8Array) => client.#read(socket, chunk.length));
    socket.on("close", () => client.#closedNow());
    socket.on("error", () => client.#closedNow());
    client.#socket = socket;
    client.localPort = socket.localPort!;
    client.#destroy = () => socket.destroy();
    return client;
  }

  #read(socket: { pause(): void }, length: number): void {
    const wasStalled = this.received >= this.readFirst;
    this.received += length;
    if (wasStalled || this.received < this.readFirst) return;
    socket.pause();
    this.#stall();
  }

  #closedNow(): void {
    this.isClosed = true;
    this.#close();
  }

  write(request: string): void {
    this.#socket!.write(new TextEncoder().encode(request));
  }

  resume(): void {
    this.#socket!.resume();
  }

  destroy(): void {
    this.#destroy();
  }
}

/** What {@linkcode fastReader} saw. */
export interface FastReaderFigures {
  /** Milliseconds from the request to the server's close of the endless stream. */
  closedAfterMs: number;
  /** Bytes received meanwhile. */
  received: number;
  /** Normal requests sent meanwhile. */
  latency: Latency;
}

/**
 * Downloads an endless stream as fast as the client can while one client
 * sends normal requests; the server's writeTimeout must end the stream, and
 * the normal requests must not wait for it. The download runs in curl, a
 * process of its own, so that reading hundreds of MiB does not slow down the
 * client that measures latency.
 *
 * @param port The target's port; the target runs with a writeTimeout.
 * @param waitMs Give up waiting for the close after this long.
 */
export async function fastReader(port: number, waitMs: number): Promise<FastReaderFigures> {
  const url = `http://${HOST}:${port}/stream?n=${2 ** 40}&chunk=700`;
  const started = performance.now();
  let done = false;
  const download = new Promise<{ closedAfterMs: number; received: number }>((resolve, reject) => {
    const args = ["-sS", "-o", "/dev/null", "-w", "%{size_download}", "--max-time"];
    const curl = spawn("curl", [...args, String(Math.ceil(waitMs / 1000)), url], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    let output = "";
    curl.stdout!.on("data", (chunk: Uint8Array) => output += new TextDecoder().decode(chunk));
    curl.on("error", reject);
    curl.on("close", (code) => {
      // 18: the chunked body ended early, which is how a cut stream must end.
      const closedAfterMs = code === 28 ? NaN : performance.now() - started;
      resolve({ closedAfterMs, received: Number(output) });
    });
  }).finally(() => done = true);
  const latency = measureLatency(port, 1, () => done, 50);
  return { ...await download, latency: await latency };
}

// ─── Floods ─────────────────────────────────────────────────────────────────

/** What {@linkcode flood} saw. */
export interface FloodFigures {
  /** Connections that got a 200. */
  answered: number;
  /** What went wrong on the others, by message. */
  failures: Record<string, number>;
  /** Milliseconds from the first connect to the last response. */
  ms: number;
  /** The target's open file descriptors with every connection open. */
  peakFds: number | null;
}

/**
 * Opens `connections` connections (at most `batch` connecting at once), sends
 * a GET on each and keeps each open after its response, so that all of them
 * are open together; then closes them all.
 *
 * @param target The target.
 * @param connections How many connections.
 * @param batch How many connect at once.
 */
export async function flood(
  target: Target,
  connections: number,
  batch = 500,
): Promise<FloodFigures> {
  const clients: RawClient[] = [];
  const failures: Record<string, number> = {};
  const fail = (why: string) => failures[why] = (failures[why] ?? 0) + 1;
  let answered = 0;
  const started = performance.now();
  const one = async () => {
    let client: RawClient;
    try {
      client = await RawClient.connect(target.port);
    } catch (error) {
      return fail(`connect: ${(error as { code?: string }).code ?? (error as Error).message}`);
    }
    clients.push(client);
    try {
      await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
      const [response] = await client.responses(1, { ms: 30_000 });
      if (response.status === 200) answered++;
      else fail(`status ${response.status}`);
    } catch (error) {
      fail((error as Error).message.slice(0, 80));
    }
  };
  try {
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(batch, connections) }, async () => {
      while (next < connections) {
        next++;
        await one();
      }
    }));
    const ms = performance.now() - started;
    return { answered, failures, ms, peakFds: target.stats()?.fds ?? null };
  } finally {
    for (const client of clients) client.destroy();
  }
}

// ─── Shutdown under wrk ─────────────────────────────────────────────────────

/** What wrk reported. */
export interface WrkFigures {
  /** Responses wrk received. */
  requests: number;
  /** wrk's socket errors by kind. */
  errors: { connect: number; read: number; write: number; timeout: number };
  /** Responses that were not 2xx or 3xx. */
  non2xx: number;
  /** wrk's whole output. */
  output: string;
}

/**
 * Whether `command` (such as wrk or curl) is installed.
 *
 * @param command The program's name.
 */
export function hasCommand(command: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(command, ["--version"], { stdio: "ignore" });
    child.on("error", () => resolve(false));
    child.on("exit", () => resolve(true));
  });
}

/**
 * Runs wrk against `url` and parses its summary.
 *
 * @param url The URL to load.
 * @param args wrk's options, such as `["-t2", "-c64", "-d3s"]`.
 * @param stop Ends the run early (wrk still reports) when it resolves.
 */
export function runWrk(
  url: string,
  args: string[],
  stop?: Promise<unknown>,
): Promise<WrkFigures> {
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", [...args, url], { stdio: ["ignore", "pipe", "pipe"] });
    // wrk prints its summary when interrupted: SIGINT ends the run early.
    stop?.then(() => child.exitCode === null && child.kill("SIGINT"));
    let output = "";
    child.stdout!.on("data", (chunk: Uint8Array) => output += new TextDecoder().decode(chunk));
    child.stderr!.on("data", (chunk: Uint8Array) => output += new TextDecoder().decode(chunk));
    child.on("error", reject);
    child.on("exit", () => {
      const requests = Number(output.match(/(\d+) requests in/)?.[1]);
      const errors = output.match(
        /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/,
      );
      if (!Number.isFinite(requests)) return reject(new Error(`Unexpected wrk output: ${output}`));
      resolve({
        requests,
        errors: {
          connect: Number(errors?.[1] ?? 0),
          read: Number(errors?.[2] ?? 0),
          write: Number(errors?.[3] ?? 0),
          timeout: Number(errors?.[4] ?? 0),
        },
        non2xx: Number(output.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0),
        output,
      });
    });
  });
}

/** The kernel's TCP counters (RFC 4022 names) of this network namespace. */
export interface TcpCounters {
  /** Connects that failed (SYN-SENT or SYN-RECEIVED to CLOSED): refused ones among them. */
  attemptFails: number;
  /** Established connections that were reset (ESTABLISHED or CLOSE-WAIT straight to CLOSED). */
  estabResets: number;
}

/**
 * Reads the TCP counters from `/proc/net/snmp`, if this is Linux and the
 * network namespace holds only the loopback interface: only then are the
 * counts this run's own, not the whole machine's (run the stress under
 * `unshare --net`, as `deno task stress --netns` does).
 */
export function privateTcpCounters(): TcpCounters | null {
  try {
    const interfaces = readFileSync("/proc/net/dev", "utf8").split("\n").slice(2)
      .map((line) => line.split(":")[0].trim()).filter((name) => name !== "");
    if (interfaces.length !== 1 || interfaces[0] !== "lo") return null;
    const [names, values] = readFileSync("/proc/net/snmp", "utf8").split("\n")
      .filter((line) => line.startsWith("Tcp:")).map((line) => line.split(/\s+/));
    const value = (name: string) => Number(values[names.indexOf(name)]);
    return { attemptFails: value("AttemptFails"), estabResets: value("EstabResets") };
  } catch {
    return null;
  }
}

/** Options for {@linkcode shutdownUnderLoad}. */
export interface ShutdownUnderLoadOptions {
  /** The runtime to run the CLI on. */
  runtime: Runtime;
  /** The npm build, for Node from Deno. */
  npmDir?: string;
  /** wrk's connections. @default {32} */
  connections?: number;
  /**
   * wrk's longest run in seconds; it is stopped once the CLI has exited, and
   * must outlast the shutdown, or wrk's own stop cuts requests off. @default {30}
   */
  seconds?: number;
  /** When to send SIGTERM, in ms after wrk started. @default {1000} */
  signalAfterMs?: number;
  /** wrk's `--timeout` in seconds: a response slower than this counts as a timeout. @default {2} */
  timeoutSeconds?: number;
}

/** What {@linkcode shutdownUnderLoad} saw. */
export interface ShutdownFigures {
  /** How the CLI exited. */
  exit: ExitStatus;
  /** Milliseconds from SIGTERM to the exit. */
  exitMs: number;
  /** What wrk reported. */
  wrk: WrkFigures;
  /** Requests the CLI's access log shows as answered 200. */
  served: number;
  /** What the CLI printed on stderr. */
  stderr: string;
  /**
   * How the TCP counters moved during the run, when the run had a network
   * namespace of its own ({@linkcode privateTcpCounters}); else null.
   */
  tcp: TcpCounters | null;
}

/**
 * Runs brick's CLI, loads it with wrk, and sends SIGTERM mid-run. wrk never
 * retries a request, so a graceful shutdown must lose nothing it can see:
 * every request the server read (one access-log line each) is one wrk
 * received, and wrk counts no read error (a connection closed or reset under
 * a request) and no timeout. Once the listener has closed, wrk's reconnects
 * are refused; wrk counts each as a write error, which {@linkcode TcpCounters}
 * can tell apart.
 *
 * @param options The runtime and the load.
 * @returns The exit, its timing, and both sides' counts.
 */
export async function shutdownUnderLoad(
  options: ShutdownUnderLoadOptions,
): Promise<ShutdownFigures> {
  const { connections = 32, seconds = 30, signalAfterMs = 1000, timeoutSeconds = 2 } = options;
  const [command, args] = cliCommand(
    options.runtime,
    ["--port", "0", "--host", "127.0.0.1"],
    options.npmDir,
  );
  await using cli = spawnProcess(command, args);
  const port = Number((await cli.waitForOutput(/Local:\s+http:\/\/127\.0\.0\.1:(\d+)\//))[1]);
  const tcpBefore = privateTcpCounters();
  // Once the CLI is gone wrk only counts refused connects: stop it there.
  const load = runWrk(`http://127.0.0.1:${port}/`, [
    `-t${Math.min(2, connections)}`,
    `-c${connections}`,
    `-d${seconds}s`,
    `--timeout`,
    `${timeoutSeconds}s`,
  ], cli.exited.then(() => delay(100)));
  await delay(signalAfterMs);
  const signalled = performance.now();
  cli.kill("SIGTERM");
  const exit = await cli.exited;
  const exitMs = performance.now() - signalled;
  const wrk = await load;
  const tcpAfter = privateTcpCounters();
  const tcp = tcpBefore && tcpAfter && {
    attemptFails: tcpAfter.attemptFails - tcpBefore.attemptFails,
    estabResets: tcpAfter.estabResets - tcpBefore.estabResets,
  };
  const served = cli.stdout.match(/^\S+ - - \[[^\]]+\] "GET \/ HTTP\/1\.1" 200 \d+$/gm)?.length ??
    0;
  return { exit, exitMs, wrk, served, stderr: cli.stderr, tcp };
}

// ─── Connection limit under a flood ─────────────────────────────────────────

/** What {@linkcode connectionLimitFlood} saw. */
export interface LimitFigures {
  /** How the newcomers were answered: status code (or "close", or an error) → count. */
  newcomers: Record<string, number>;
  /** How the busy connections ended: status code (or what went wrong) → count. */
  busy: Record<string, number>;
  /** The target's open file descriptors at the height of the flood. */
  peakFds: number | null;
  /** Milliseconds the flood took. */
  ms: number;
}

/**
 * Fills the target's `maxConnections` with busy requests (`/slow`), then
 * floods it with `newcomers` connections that each send a GET. The newcomers
 * should each get a 503; the busy ones must still get their 200.
 *
 * @param target A target started with `maxConnections: busy`.
 * @param busy How many busy connections (the limit).
 * @param newcomers How many connections arrive over the limit.
 * @param slowMs How long each busy request takes; longer than the flood.
 */
export async function connectionLimitFlood(
  target: Target,
  busy: number,
  newcomers: number,
  slowMs: number,
): Promise<LimitFigures> {
  const count = (record: Record<string, number>, key: string) =>
    record[key] = (record[key] ?? 0) + 1;
  const busyClients: RawClient[] = [];
  const all: RawClient[] = [];
  try {
    for (let i = 0; i < busy; i += 200) {
      await Promise.all(Array.from({ length: Math.min(200, busy - i) }, async () => {
        const client = await RawClient.connect(target.port);
        all.push(client);
        busyClients.push(client);
        await client.write(`GET /slow?ms=${slowMs} HTTP/1.1\r\nHost: x\r\n\r\n`);
      }));
    }
    await delay(100); // every busy request is in its handler
    const started = performance.now();
    const answers: Record<string, number> = {};
    let peakFds = target.stats()?.fds ?? null;
    const sampler = setInterval(() => {
      const fds = target.stats()?.fds;
      if (fds !== undefined && peakFds !== null) peakFds = Math.max(peakFds, fds);
    }, 50);
    let next = 0;
    await Promise.all(Array.from({ length: Math.min(500, newcomers) }, async () => {
      while (next < newcomers) {
        next++;
        let client: RawClient;
        try {
          client = await RawClient.connect(target.port);
        } catch (error) {
          count(answers, `connect: ${(error as { code?: string }).code ?? error}`);
          continue;
        }
        all.push(client);
        await client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n").catch(() => {});
        try {
          const [response] = await client.responses(1, { ms: 10_000 });
          count(answers, String(response.status));
        } catch (error) {
          count(answers, client.closed ? "close" : (error as Error).message.slice(0, 60));
        }
        client.destroy();
      }
    }));
    const ms = performance.now() - started;
    clearInterval(sampler);
    const busyEndings: Record<string, number> = {};
    await Promise.all(busyClients.map(async (client) => {
      try {
        const [response] = await client.responses(1, { ms: slowMs + 10_000 });
        count(busyEndings, String(response.status));
      } catch (error) {
        count(busyEndings, (error as Error).message.slice(0, 60));
      }
    }));
    return { newcomers: answers, busy: busyEndings, peakFds, ms };
  } finally {
    for (const client of all) client.destroy();
  }
}
