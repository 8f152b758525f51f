/**
 * Requests per second through brick's reverse proxy (proxy.ts) against nginx
 * as a proxy, both pinned to the same core, in front of the same upstream:
 *
 * - `cached hello`: a 13-byte response with `max-age`, served from the cache;
 * - `uncached hello`: the same with `no-store`, forwarded every time;
 * - `1 MiB body`: a 1 MiB response with `no-store`, streamed through.
 *
 * ```sh
 * deno run -A scripts/bench/proxy.ts                 # 5 s per scenario, 50 connections
 * deno run -A scripts/bench/proxy.ts --duration 10 --connections 100
 * ```
 *
 * The upstream (a brick server) and wrk run on core 1, the proxies on core 0
 * (`taskset`). nginx runs with one worker, `proxy_cache` and upstream
 * keep-alive, from a config written under the system's temp folder. Needs
 * wrk, taskset and nginx on the PATH; loopback only.
 *
 * The same file is each role: `--role upstream` and `--role proxy` are the
 * processes it starts.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serve } from "../../mod.ts";
import { createProxy } from "../../proxy.ts";

const HOST = "127.0.0.1";
const MIB = new Uint8Array(1024 * 1024).fill(120);

const args = parseArgs({
  args: Deno.args,
  options: {
    role: { type: "string" },
    port: { type: "string" },
    upstream: { type: "string" },
    duration: { type: "string", default: "5" },
    connections: { type: "string", default: "50" },
    keep: { type: "boolean" },
  },
});

if (args.values.role === "upstream") runUpstream(Number(args.values.port));
else if (args.values.role === "proxy") {
  runProxy(Number(args.values.port), args.values.upstream!);
} else await main();

/** The upstream: /hello (cacheable), /hello-nocache, /1mib (no-store). */
function runUpstream(port: number): void {
  serve({ hostname: HOST, port, onListen() {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/1mib") return new Response(MIB, { headers: { "cache-control": "no-store" } });
    const cache = path === "/hello" ? "max-age=3600" : "no-store";
    return new Response("Hello, World!", { headers: { "cache-control": cache } });
  });
}

/** brick as a caching reverse proxy. */
function runProxy(port: number, upstream: string): void {
  const handler = createProxy({ upstream, cache: { maxBytes: 64 * 1024 * 1024 } });
  serve({ hostname: HOST, port, onListen() {} }, handler);
}

/** A free port, by binding port 0 and closing. */
function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function waitListening(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: HOST, port })).close();
      return;
    } catch (error) {
      if (Date.now() > deadline) {
        throw new Error(`Nothing listens on ${port} after 10 s`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

function start(core: number, command: string, commandArgs: string[]): Deno.ChildProcess {
  return new Deno.Command("taskset", {
    args: ["-c", String(core), command, ...commandArgs],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* already gone */ }
  await child.status;
}

/** Runs wrk pinned to core 1 and returns requests per second. */
async function wrk(url: string, seconds: number, connections: number): Promise<number> {
  const { stdout, success } = await new Deno.Command("taskset", {
    args: ["-c", "1", "wrk", "-t1", `-c${connections}`, `-d${seconds}s`, "--timeout", "10s", url],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(stdout);
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: [^\n]+/.exec(text);
  if (!success || rate === null) throw new Error(`wrk failed on ${url}:\n${text}`);
  if (errors) throw new Error(`wrk saw errors on ${url}: ${errors[0]}`);
  return Number(rate[1]);
}

function nginxConfig(folder: string, port: number, upstreamPort: number): string {
  return `worker_processes 1;
daemon off;
pid ${folder}/nginx.pid;
error_log ${folder}/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${folder}/body;
  proxy_temp_path ${folder}/proxy_temp;
  fastcgi_temp_path ${folder}/fcgi; uwsgi_temp_path ${folder}/uwsgi; scgi_temp_path ${folder}/scgi;
  proxy_cache_path ${folder}/cache keys_zone=bench:10m max_size=64m;
  upstream origin { server ${HOST}:${upstreamPort}; keepalive 64; }
  server {
    listen ${HOST}:${port};
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
    }
  }
}
`;
}

async function main(): Promise<void> {
  const seconds = Number(args.values.duration);
  const connections = Number(args.values.connections);
  const self = new URL(import.meta.url).pathname;
  const deno = Deno.execPath();
  const upstreamPort = freePort();
  const brickPort = freePort();
  const nginxPort = freePort();
  const folder = mkdtempSync(join(tmpdir(), "brick-proxy-bench-"));
  chmodSync(folder, 0o755); // nginx's workers run as another user and keep their cache here
  writeFileSync(join(folder, "nginx.conf"), nginxConfig(folder, nginxPort, upstreamPort));
  const children = [
    start(1, deno, ["run", "-A", self, "--role", "upstream", "--port", String(upstreamPort)]),
    start(0, deno, [
      "run",
      "-A",
      self,
      "--role",
      "proxy",
      "--port",
      String(brickPort),
      "--upstream",
      `http://${HOST}:${upstreamPort}`,
    ]),
    start(0, "nginx", ["-c", join(folder, "nginx.conf"), "-p", folder]),
  ];
  try {
    await Promise.all([upstreamPort, brickPort, nginxPort].map(waitListening));
    console.log(`upstream :${upstreamPort}, brick :${brickPort}, nginx :${nginxPort}`);
    // The 1 MiB run uses a fifth of the connections: 50 MiB in flight is a
    // bandwidth test of the loopback, not of the proxy.
    const scenarios: [string, string, number][] = [
      ["cached hello", "/hello", connections],
      ["uncached hello", "/hello-nocache", connections],
      ["1 MiB body", "/1mib", Math.max(1, Math.floor(connections / 5))],
    ];
    console.log(
      `${seconds} s per run, ${connections} connections, proxies on core 0, wrk and upstream on core 1`,
    );
    console.log("| scenario | brick req/s | nginx req/s | brick / nginx |");
    console.log("| --- | ---: | ---: | ---: |");
    for (const [name, path, connections] of scenarios) {
      // One short warm-up each (JIT, pool, cache fill), then the measured run.
      await wrk(`http://${HOST}:${brickPort}${path}`, 1, connections);
      await wrk(`http://${HOST}:${nginxPort}${path}`, 1, connections);
      const brick = await wrk(`http://${HOST}:${brickPort}${path}`, seconds, connections);
      const nginx = await wrk(`http://${HOST}:${nginxPort}${path}`, seconds, connections);
      console.log(
        `| ${name} | ${brick.toFixed(0)} | ${nginx.toFixed(0)} | ${(brick / nginx).toFixed(2)} |`,
      );
    }
  } finally {
    await Promise.all(children.map(stop));
    if (args.values.keep === undefined) rmSync(folder, { recursive: true, force: true });
    else console.log(`nginx files kept in ${folder}`);
  }
}
