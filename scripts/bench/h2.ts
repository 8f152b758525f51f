/**
 * HTTP/2 bench: "hello" over h2c (prior knowledge) and over TLS (h2 by ALPN),
 * measured with h2load with many streams per connection (`-c 10 -m 32`), for
 * brick on Deno, brick's npm build on Node, `Deno.serve` and `node:http2`.
 * Runs alone, and exports {@linkcode benchHttp2} for `deno task bench`.
 *
 * ```sh
 * deno task build:npm                 # for brick on Node
 * deno run -A scripts/bench/h2.ts [--seconds 5] [--connections 10] [--streams 32] [--rounds 1]
 * ```
 *
 * Each server is a child process started from a small inline source, on
 * 127.0.0.1 and a free port; each runs alone while h2load measures it, after
 * a warm-up. Figures on a shared machine are noisy: compare ratios taken in
 * one run, not figures across runs.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { makeTestCertificates } from "../../_test_tls.ts";

/** The body every server answers with. */
const HELLO = "Hello, World!";

/** What one h2load run measured. */
export interface H2BenchResult {
  /** The server, e.g. "brick (Deno)". */
  server: string;
  /** "h2c" (prior knowledge, plain TCP) or "h2" (TLS, ALPN). */
  transport: "h2c" | "h2";
  /** Requests per second, or null when the run failed (see `note`). */
  rps: number | null;
  /** Requests that failed or got another status than 2xx. */
  failed: number;
  /** Why there is no figure, when there is none. */
  note?: string;
}

/** How {@linkcode benchHttp2} measures. */
export interface H2BenchOptions {
  /** Seconds each server is measured, after a one-second warm-up. @default {5} */
  seconds?: number;
  /** h2load's `-c`: client connections. @default {10} */
  connections?: number;
  /** h2load's `-m`: concurrent streams per connection. @default {32} */
  streams?: number;
  /**
   * Rounds over all servers; each figure is the best of its rounds, which
   * filters out the moments other jobs took the CPU. @default {1}
   */
  rounds?: number;
  /** Progress lines. @default {console.error} */
  log?: (line: string) => void;
}

interface ServerSpec {
  name: string;
  runtime: "deno" | "node";
  /** ES module source; `CERT_FILE`/`KEY_FILE` in the environment ask for TLS. It prints its port. */
  source: string;
  /** Why it cannot run here, if it cannot. */
  missing?: string;
}

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const npmMod = join(root, "npm", "mod.js");

const TLS_FILES = `
import { readFileSync } from "node:fs";
import process from "node:process";
const certFile = process.env.CERT_FILE, keyFile = process.env.KEY_FILE;
const tls = certFile ? { cert: readFileSync(certFile, "utf8"), key: readFileSync(keyFile, "utf8") } : {};
`;

function brickSource(modUrl: string): string {
  return `${TLS_FILES}
import { serve } from ${JSON.stringify(modUrl)};
serve({
  hostname: "127.0.0.1", port: 0, ...tls,
  onListen: ({ port }) => console.log(port),
}, () => new Response(${JSON.stringify(HELLO)}));
`;
}

const SERVERS: ServerSpec[] = [
  {
    name: "brick (Deno)",
    runtime: "deno",
    source: brickSource(pathToFileURL(join(root, "mod.ts")).href),
  },
  {
    name: "brick (Node)",
    runtime: "node",
    source: brickSource(pathToFileURL(npmMod).href),
    missing: existsSync(npmMod) ? undefined : "no npm/mod.js: run `deno task build:npm` first",
  },
  {
    name: "Deno.serve",
    runtime: "deno",
    source: `${TLS_FILES}
Deno.serve({
  hostname: "127.0.0.1", port: 0, ...tls,
  onListen: ({ port }) => console.log(port),
}, () => new Response(${JSON.stringify(HELLO)}));
`,
  },
  {
    name: "node:http2",
    runtime: "node",
    source: `${TLS_FILES}
import http2 from "node:http2";
const server = certFile ? http2.createSecureServer({ ...tls, allowHTTP1: true }) : http2.createServer();
server.on("stream", (stream) => {
  stream.respond({ ":status": 200, "content-type": "text/plain;charset=UTF-8" });
  stream.end(${JSON.stringify(HELLO)});
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
`,
  },
];

/**
 * Measures every server over h2c and TLS, one at a time.
 *
 * @param options how long and how hard
 * @returns one result a server and transport, in the order run
 *
 * @example Usage
 * ```ts ignore
 * const results = await benchHttp2({ seconds: 5 });
 * console.log(formatHttp2Results(results));
 * ```
 */
export async function benchHttp2(options: H2BenchOptions = {}): Promise<H2BenchResult[]> {
  const { seconds = 5, connections = 10, streams = 32, rounds = 1, log = console.error } = options;
  const dir = mkdtempSync(join(tmpdir(), "brick-h2-bench-"));
  const best = new Map<string, H2BenchResult>();
  try {
    const certs = await makeTestCertificates(dir);
    for (const spec of SERVERS) writeFileSync(sourceFile(dir, spec), spec.source);
    for (let round = 1; round <= rounds; round++) {
      for (const spec of SERVERS) {
        for (const transport of ["h2c", "h2"] as const) {
          const key = `${spec.name} ${transport}`;
          const base = { server: spec.name, transport, failed: 0 };
          if (spec.missing) {
            best.set(key, { ...base, rps: null, note: spec.missing });
            continue;
          }
          log(
            `round ${round}/${rounds}: ${key}, ${seconds} s of h2load -c ${connections} -m ${streams}`,
          );
          const env: Record<string, string> = transport === "h2"
            ? { CERT_FILE: certs.certFile, KEY_FILE: certs.keyFile }
            : {};
          const load = { seconds, connections, streams };
          const result = {
            ...base,
            ...await measure(spec, sourceFile(dir, spec), env, transport, load),
          };
          const previous = best.get(key);
          if (!previous || (result.rps ?? -1) > (previous.rps ?? -1)) best.set(key, result);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return [...best.values()];
}

function sourceFile(dir: string, spec: ServerSpec): string {
  return join(dir, `${spec.name.replace(/\W+/g, "_")}.mjs`);
}

async function measure(
  spec: ServerSpec,
  file: string,
  env: Record<string, string>,
  transport: "h2c" | "h2",
  load: { seconds: number; connections: number; streams: number },
): Promise<Omit<H2BenchResult, "server" | "transport">> {
  const command = spec.runtime === "deno" ? Deno.execPath() : "node";
  const args = spec.runtime === "deno" ? ["run", "-A", file] : [file];
  const child = spawn(command, args, {
    env: { ...Deno.env.toObject(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on(
    "data",
    (chunk) => (stderr += chunk).length > 4096 && (stderr = stderr.slice(-4096)),
  );
  try {
    const port = await firstLine(child.stdout!, 20_000);
    const scheme = transport === "h2" ? "https" : "http";
    const output = await run("h2load", [
      "-c",
      String(load.connections),
      "-m",
      String(load.streams),
      "-t",
      "1",
      "--warm-up-time",
      "1",
      "-D",
      String(load.seconds),
      `${scheme}://127.0.0.1:${port}/`,
    ], (load.seconds + 30) * 1000);
    return parseH2load(output);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    return {
      rps: null,
      failed: 0,
      note: `${why}${stderr ? `: ${stderr.trim().split("\n")[0]}` : ""}`,
    };
  } finally {
    child.kill("SIGTERM");
  }
}

/** req/s and the failures from h2load's summary; no figure when nothing succeeded. */
export function parseH2load(output: string): { rps: number | null; failed: number; note?: string } {
  const rate = /finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(output);
  const counts = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed/
    .exec(output);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output);
  const succeeded = counts ? Number(counts[2]) : 0;
  const failed = (counts ? Number(counts[3]) : 0) +
    (codes ? Number(codes[2]) + Number(codes[3]) + Number(codes[4]) : 0);
  if (!rate || succeeded === 0) {
    const why = output.split("\n").find((line) => /error|fail|refused|not/i.test(line));
    return { rps: null, failed, note: `no request succeeded${why ? ` (${why.trim()})` : ""}` };
  }
  return { rps: Number(rate[1]), failed };
}

/** A table of the results, and each server's ratio to node:http2 on the same transport. */
export function formatHttp2Results(results: H2BenchResult[]): string {
  const lines = [
    "| server | transport | req/s | vs node:http2 | failed |",
    "|---|---|---:|---:|---:|",
  ];
  for (const r of results) {
    const node = results.find((n) => n.server === "node:http2" && n.transport === r.transport);
    const ratio = r.rps !== null && node?.rps ? `${(r.rps / node.rps).toFixed(2)}x` : "-";
    const rps = r.rps === null ? `- (${r.note})` : Math.round(r.rps).toString();
    lines.push(`| ${r.server} | ${r.transport} | ${rps} | ${ratio} | ${r.failed} |`);
  }
  return lines.join("\n");
}

function firstLine(stream: NodeJS.ReadableStream, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(
      () => reject(new Error(`The server did not start within ${ms} ms`)),
      ms,
    );
    stream.on("data", (chunk) => {
      text += chunk;
      const end = text.indexOf("\n");
      if (end < 0) return;
      clearTimeout(timer);
      resolve(text.slice(0, end).trim());
    });
    stream.on("end", () => {
      clearTimeout(timer);
      reject(new Error("The server exited before it printed its port"));
    });
  });
}

function run(command: string, args: string[], ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (chunk) => (output += chunk));
    child.stderr!.on("data", (chunk) => (output += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`Cannot run ${command}: ${error.message} (install nghttp2-client)`));
    });
    child.on("close", () => {
      clearTimeout(timer);
      resolve(output);
    });
  });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      seconds: { type: "string", default: "5" },
      connections: { type: "string", default: "10" },
      streams: { type: "string", default: "32" },
      rounds: { type: "string", default: "1" },
    },
  });
  const results = await benchHttp2({
    seconds: Number(values.seconds),
    connections: Number(values.connections),
    streams: Number(values.streams),
    rounds: Number(values.rounds),
  });
  console.log(formatHttp2Results(results));
}
