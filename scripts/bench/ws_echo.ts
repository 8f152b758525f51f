/**
 * WebSocket echo bench: messages per second and bytes on the wire for brick's WebSocket on Deno
 * with permessage-deflate off and on (and on Node, from the npm build when `npm/` holds one),
 * against the `ws` package on Node with `perMessageDeflate` on, plus what compression costs each
 * idle connection in server memory.
 *
 * ```sh
 * deno run -A scripts/bench/ws_echo.ts [--seconds 5] [--connections 16] [--idle 200]
 * ```
 *
 * Every server runs in a process of its own on 127.0.0.1 and is stopped at the end. One client,
 * the `ws` package on Node in a process of its own (offering permessage-deflate, as browsers
 * do), keeps `connections` sockets busy: each sends a JSON text message of about 2 KiB and waits
 * for its echo before sending the next, for `seconds`. (The client runs on Node because `ws`
 * compressing through Deno's `node:zlib` streams was slower than every server it measured.)
 * Bytes on the wire are the TCP payload both ways (frame headers included), read from the
 * client's sockets. Server CPU per echo is the server process's user + system time (`/proc`,
 * Linux, all threads, so zlib's thread pool counts) over the echoes: on a loaded machine it moves
 * less than messages/s. The idle figure opens `idle` sockets from this process that each echo one
 * message, then reads the server's resident memory: (RSS with the sockets - RSS before) /
 * sockets, half a second later; then the same for as many sockets opened 11 s later, when brick
 * has freed the first ones' idle deflate contexts for them to reuse. `ws` is installed with npm into a cache directory outside the repository. A row for
 * brick on Bun is added when `bun` is on the PATH.
 *
 * {@linkcode benchWsEcho} runs it all and returns the rows, for `deno task bench` to print.
 *
 * @module
 */

import WebSocket from "ws";
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The version of `ws` the Node server runs, the same as the tests' client. */
const WS_VERSION = "8.23.0";
const REPO = fileURLToPath(new URL("../../", import.meta.url));

/** Options for {@linkcode benchWsEcho}. */
export interface WsEchoOptions {
  /** How long each server is measured. @default {5} */
  seconds?: number;
  /** Sockets kept busy at once. @default {16} */
  connections?: number;
  /** Sockets opened for the idle-memory figure. @default {200} */
  idle?: number;
}

/** One server's figures. */
export interface WsEchoRow {
  /** Which server, and how it compresses. */
  server: string;
  /** The `Sec-WebSocket-Extensions` the server answered, or "". */
  extensions: string;
  /** Echoes completed per second, all sockets together. */
  messagesPerSecond: number;
  /** Payload bytes per message, one way. */
  payloadBytes: number;
  /** TCP bytes per echo, both ways (client to server and back). */
  wireBytesPerEcho: number;
  /** Server CPU time per echo in microseconds (user + system, all threads); null off Linux. */
  serverCpuMicrosPerEcho: number | null;
  /** Server RSS growth per idle socket that has echoed one message, in KiB; null off Linux. */
  idleKiBPerSocket: number | null;
  /**
   * The same for a second batch of sockets opened once the first stayed idle
   * 11 s: brick frees a deflate context idle for 5-10 s, and the next
   * connections reuse that memory (RSS itself does not shrink).
   */
  idleKiBPerSocketLater: number | null;
}

/** The servers measured: a label, and the command that starts one (it prints its port). */
interface ServerSpec {
  label: string;
  command: () => Promise<string[]>;
  /** A file the server needs; the row is left out when it is missing (the npm build). */
  needs?: string;
  /** A program the server runs on; the row is left out when it is not on the PATH. */
  program?: string;
}

const SERVERS: ServerSpec[] = [
  {
    label: "brick on Deno, compression off",
    command: () => Promise.resolve(brickCommand(false)),
  },
  {
    label: "brick on Deno, compression on",
    command: () => Promise.resolve(brickCommand(true)),
  },
  {
    label: "brick on Node, compression on",
    command: () => Promise.resolve(["node", "--input-type=module", "-e", brickNodeSource()]),
    needs: join(REPO, "npm", "websocket.js"),
  },
  {
    label: "brick on Bun, compression on",
    command: () => Promise.resolve(["bun", "--eval", brickNodeSource()]),
    needs: join(REPO, "npm", "websocket.js"),
    program: "bun",
  },
  {
    label: "ws on Node, perMessageDeflate on",
    command: async () => ["node", "--input-type=module", "-e", wsServerSource(await wsDir())],
  },
];

/** brick's echo server on Deno, run from this very file. */
function brickCommand(compression: boolean): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    fileURLToPath(import.meta.url),
    "--serve",
    compression ? "on" : "off",
  ];
}

/** brick's echo on Node, from the npm build (`deno task build:npm`), compression on. */
function brickNodeSource(): string {
  const mod = join(REPO, "npm", "mod.js"), websocket = join(REPO, "npm", "websocket.js");
  return `
    import { serve } from ${JSON.stringify(mod)};
    import { upgradeWebSocket } from ${JSON.stringify(websocket)};
    serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen: ({ port }) => console.log(JSON.stringify({ port })),
    }, (request) => {
      const { socket, response } = upgradeWebSocket(request, { compression: true });
      socket.binaryType = "arraybuffer";
      socket.onmessage = (event) => socket.send(event.data);
      return response;
    });
  `;
}

/** A `ws` echo server with perMessageDeflate on (its defaults, threshold 1024 as brick's). */
function wsServerSource(dir: string): string {
  const entry = join(dir, "node_modules", "ws", "wrapper.mjs");
  return `
    import { WebSocketServer } from ${JSON.stringify(entry)};
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: true });
    server.on("connection", (socket) => {
      socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
    });
    server.on("listening", () => console.log(JSON.stringify({ port: server.address().port })));
  `;
}

/** Installs `ws` into a cache directory outside the repository, once. */
async function wsDir(): Promise<string> {
  const dir = join(tmpdir(), "brick-bench-ws");
  const manifest = join(dir, "node_modules", "ws", "package.json");
  if (existsSync(manifest) && JSON.parse(readFileSync(manifest, "utf8")).version === WS_VERSION) {
    return dir;
  }
  const { code, stderr } = await new Deno.Command("npm", {
    args: ["install", "--prefix", dir, "--no-save", "--no-package-lock", `ws@${WS_VERSION}`],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new Error(`Cannot install ws@${WS_VERSION}: ${new TextDecoder().decode(stderr)}`);
  }
  return dir;
}

/** A JSON message of about 2 KiB, like an app's state update: compressible, not trivially. */
function sampleMessage(): string {
  const items = Array.from({ length: 24 }, (_, i) => ({
    id: 1000 + i * 37,
    name: `item-${(i * 7919) % 1000}`,
    price: Math.round(((i * 7.31) % 100) * 100) / 100,
    tags: ["red", "green", "blue", "large", "small"].filter((_, t) => (i + t) % 3 !== 0),
  }));
  return JSON.stringify({ type: "update", at: "2026-12-05T19:00:00Z", items });
}

/** A started server: its port and the child process. */
interface Running {
  port: number;
  child: Deno.ChildProcess;
}

async function start(spec: ServerSpec): Promise<Running> {
  const command = await spec.command();
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = Date.now() + 20_000;
  while (!text.includes("\n")) {
    if (Date.now() > deadline) throw new Error(`${spec.label} did not start within 20 s`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`${spec.label} exited before listening`);
    text += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return { port: JSON.parse(text.split("\n")[0]).port, child };
}

async function stop(running: Running): Promise<void> {
  try {
    running.child.kill("SIGTERM");
  } catch {
    // already gone
  }
  await running.child.status;
}

/** The echo client on Node: prints echoes, seconds, wire bytes and the extensions as JSON. */
function wsClientSource(dir: string, port: number, connections: number, seconds: number): string {
  const entry = join(dir, "node_modules", "ws", "wrapper.mjs");
  return `
    import WebSocket from ${JSON.stringify(entry)};
    const message = ${JSON.stringify(sampleMessage())};
    const open = () => new Promise((resolve, reject) => {
      const ws = new WebSocket("ws://127.0.0.1:${port}/", { perMessageDeflate: true });
      ws.once("open", () => resolve(ws));
      ws.once("error", reject);
    });
    const sockets = await Promise.all(Array.from({ length: ${connections} }, open));
    const wire = () => sockets.reduce((n, ws) => n + ws._socket.bytesRead + ws._socket.bytesWritten, 0);
    const startBytes = wire(), start = performance.now(), end = start + ${seconds * 1000};
    let echoes = 0;
    await Promise.all(sockets.map((ws) => new Promise((resolve, reject) => {
      ws.on("message", (data) => {
        if (String(data).length !== message.length) reject(new Error("A wrong echo"));
        echoes++;
        if (performance.now() < end) ws.send(message);
        else resolve();
      });
      ws.once("error", reject);
      ws.send(message);
    })));
    const seconds = (performance.now() - start) / 1000, bytes = wire() - startBytes;
    for (const ws of sockets) ws.terminate();
    console.log(JSON.stringify({ echoes, seconds, bytes, extensions: sockets[0].extensions }));
  `;
}

/** Whether `program` runs (`program --version`). */
async function available(program: string): Promise<boolean> {
  try {
    const { code } = await new Deno.Command(program, {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    }).output();
    return code === 0;
  } catch {
    return false;
  }
}

/** Opens a client socket; resolves once open, with the answer's extensions. */
function connect(port: number): Promise<{ ws: WebSocket; extensions: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: true });
    let extensions = "";
    ws.on("upgrade", (response) => {
      extensions = String(response.headers["sec-websocket-extensions"] ?? "");
    });
    ws.once("open", () => resolve({ ws, extensions }));
    ws.once("error", reject);
  });
}

/** Keeps `connections` sockets echoing for `seconds` from a Node client; returns the figures. */
async function measureEcho(running: Running, connections: number, seconds: number) {
  const source = wsClientSource(await wsDir(), running.port, connections, seconds);
  const cpuBefore = cpuOf(running.child.pid);
  const { code, stdout, stderr } = await new Deno.Command("node", {
    args: ["--input-type=module", "-e", source],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const cpuAfter = cpuOf(running.child.pid);
  if (code !== 0) throw new Error(`The echo client failed: ${new TextDecoder().decode(stderr)}`);
  const result = JSON.parse(new TextDecoder().decode(stdout));
  return {
    extensions: String(result.extensions),
    messagesPerSecond: result.echoes / result.seconds,
    payloadBytes: new TextEncoder().encode(sampleMessage()).length,
    wireBytesPerEcho: result.bytes / result.echoes,
    serverCpuMicrosPerEcho: cpuBefore === null || cpuAfter === null
      ? null
      : (cpuAfter - cpuBefore) * 1e6 / result.echoes,
  };
}

/** A process's user + system CPU time in seconds, all threads, from /proc; null where there is none. */
function cpuOf(pid: number): number | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    return (Number(fields[11]) + Number(fields[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

/** A process's resident memory in bytes, from /proc; null where there is none. */
function rssOf(pid: number): number | null {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Server memory per idle socket that echoed one compressed-size message, in
 * KiB: for `count` sockets, then for `count` more opened 11 s later.
 */
async function measureIdle(
  running: Running,
  count: number,
): Promise<{ soon: number | null; later: number | null }> {
  const before = rssOf(running.child.pid);
  if (before === null) return { soon: null, later: null };
  const first = await openIdle(running.port, count);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const soon = rssOf(running.child.pid)!;
  await new Promise((resolve) => setTimeout(resolve, 11_000));
  const beforeSecond = rssOf(running.child.pid)!;
  const second = await openIdle(running.port, count);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const later = rssOf(running.child.pid)!;
  for (const ws of [...first, ...second]) ws.terminate();
  return { soon: (soon - before) / count / 1024, later: (later - beforeSecond) / count / 1024 };
}

/** Opens `count` sockets that each echo one message, one after the other. */
async function openIdle(port: number, count: number): Promise<WebSocket[]> {
  const message = sampleMessage();
  const sockets: WebSocket[] = [];
  for (let i = 0; i < count; i++) {
    const { ws } = await connect(port);
    await new Promise<void>((resolve) => {
      ws.once("message", () => resolve());
      ws.send(message);
    });
    sockets.push(ws);
  }
  return sockets;
}

/**
 * Runs the bench on each server in turn.
 *
 * @param options How long, how many sockets.
 * @returns One row per server.
 */
export async function benchWsEcho(options: WsEchoOptions = {}): Promise<WsEchoRow[]> {
  const { seconds = 5, connections = 16, idle = 200 } = options;
  const rows: WsEchoRow[] = [];
  for (const spec of SERVERS) {
    if (spec.needs !== undefined && !existsSync(spec.needs)) continue;
    if (spec.program !== undefined && !(await available(spec.program))) continue;
    const running = await start(spec);
    try {
      const echo = await measureEcho(running, connections, seconds);
      const { soon, later } = await measureIdle(running, idle);
      rows.push({
        server: spec.label,
        ...echo,
        idleKiBPerSocket: soon,
        idleKiBPerSocketLater: later,
      });
    } finally {
      await stop(running);
    }
  }
  return rows;
}

/** The rows as a Markdown table. */
export function formatWsEcho(rows: WsEchoRow[]): string {
  const lines = [
    "| server | msg/s | server CPU us per echo | payload B | wire B per echo | idle KiB per socket | next batch after 11 s | extensions |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const row of rows) {
    lines.push(
      `| ${row.server} | ${Math.round(row.messagesPerSecond)} | ` +
        `${
          row.serverCpuMicrosPerEcho === null ? "n/a" : Math.round(row.serverCpuMicrosPerEcho)
        } | ` +
        `${row.payloadBytes} | ` +
        `${Math.round(row.wireBytesPerEcho)} | ${row.idleKiBPerSocket?.toFixed(1) ?? "n/a"} | ` +
        `${row.idleKiBPerSocketLater?.toFixed(1) ?? "n/a"} | ` +
        `${row.extensions || "none"} |`,
    );
  }
  return lines.join("\n");
}

/** The server side when run with `--serve on|off`: brick's echo, printing its port. */
async function serveEcho(compression: boolean): Promise<void> {
  const { serve } = await import(new URL("mod.ts", "file://" + REPO).href);
  const { upgradeWebSocket } = await import(new URL("websocket.ts", "file://" + REPO).href);
  serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: ({ port }: { port: number }) => console.log(JSON.stringify({ port })),
  }, (request: Request) => {
    const { socket, response } = upgradeWebSocket(request, { compression });
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event: MessageEvent) => socket.send(event.data);
    return response;
  });
}

function flag(args: string[], name: string, fallback: number): number {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
}

if (import.meta.main) {
  const args = Deno.args;
  const serveAt = args.indexOf("--serve");
  if (serveAt >= 0) {
    await serveEcho(args[serveAt + 1] === "on");
  } else {
    const rows = await benchWsEcho({
      seconds: flag(args, "seconds", 5),
      connections: flag(args, "connections", 16),
      idle: flag(args, "idle", 200),
    });
    console.log(formatWsEcho(rows));
  }
}
