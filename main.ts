/**
 * The `brick` command line: serves an app module, a folder of static files,
 * or `Hello, World!` on every path; prints where it listens, and writes an
 * access log line per request in Common Log Format.
 *
 * ```sh
 * deno run --allow-net main.ts                            # Hello, World! on port 8888
 * deno run --allow-net --allow-read main.ts app.ts        # app.ts's default export
 * deno run --allow-net --allow-read main.ts ./public      # the files in ./public
 * deno run --allow-net main.ts -p 0 -H 127.0.0.1 --verbose
 * deno run --allow-net --allow-sys main.ts                # also lists the Network URLs
 * deno run --allow-net --allow-read main.ts --cert cert.pem --key key.pem   # HTTPS
 * deno run --allow-net --allow-read --allow-write main.ts --unix /tmp/brick.sock
 * deno run --allow-net --allow-read --unstable-net main.ts app.ts --workers auto
 * deno run --allow-net main.ts --proxy http://127.0.0.1:3000 --cache 256MB   # a caching proxy
 * npx brick --port 0 app.js                               # the npm package, on Node
 * ```
 *
 * An app is a module whose default export is a fetch handler: a function
 * `(request, info) => Response`, or an object with a `fetch(request, info)`
 * method, as `deno serve` and Bun expect (a Hono app is one). A folder is
 * served by {@linkcode serveDir}: index.html, directory listings, ranges,
 * ETags and compression.
 *
 * With `--cert` and `--key` it speaks HTTPS; with `--unix` it listens on a
 * Unix domain socket instead of a TCP port, for a reverse proxy on the same
 * machine. With `--workers n` (or `auto`, one per core) n workers serve the
 * same port: threads on Deno, processes on Node (`node:cluster`) and Bun
 * (`SO_REUSEPORT`), with one banner, one access log, and a replacement for
 * any worker that crashes.
 *
 * The same file runs on Deno, Node (as the npm package's `brick` command) and
 * Bun: it uses `node:` modules, and Deno's permission API only where `Deno`
 * exists.
 *
 * Flags: `--port/-p`, `--host/-H`, `--cert <file>`, `--key <file>`,
 * `--unix <path>`, `--workers <n>`, `--app <module>`, `--root <folder>`,
 * `--dotfiles`, `--no-listing`, `--no-compress`, `--cors`,
 * `--header "Name: value"` (repeatable), `--proxy [/path=]<url>` (repeatable),
 * `--cache <size>`, `--verbose/-v` (print each request
 * head as received), `--quiet/-q` (no access log), `--help/-h`,
 * `--version/-V`. The hidden `--debug-worker` names the worker that answered
 * in an `x-brick-worker` response header.
 *
 * This file only wires the command together; each job has its own module in
 * `cli/`: `flags.ts` (flags, `--help`), `app.ts` (what to serve, loading an
 * app), `proxy.ts` (`--proxy`, `--cache`), `headers.ts` (`--cors`, `--header`), `access_log.ts` (the access log
 * line), `banner.ts` (the startup banner), `errors.ts` (permission and listen
 * errors), `signals.ts` (Ctrl+C and SIGTERM), `server.ts` (one server),
 * `workers.ts` (the supervisor that starts and restarts workers), `worker.ts`
 * (a worker's side), `command.ts` (how brick was started) and `run.ts` (from
 * arguments to exit code).
 *
 * Exit codes: `0` after a graceful shutdown (SIGINT or SIGTERM) or `--help` /
 * `--version`; `1` when the server cannot start (a port in use, no
 * `--allow-net`), the app module throws while loading, or a worker keeps
 * crashing; `2` on a bad flag, a missing or unreadable file, a certificate
 * the TLS library refuses, a module without a fetch handler, a missing
 * `--allow-read`, or a Deno flag that `--workers` needs; `130` when a second
 * SIGINT or SIGTERM cuts the graceful shutdown short.
 *
 * @module
 */

import process from "node:process";
import { isEntryPoint } from "./cli/command.ts";
import { main, runCli } from "./cli/run.ts";
import { serveAsThread, threadScope } from "./cli/worker.ts";

export { main } from "./cli/run.ts";
export {
  DEFAULT_HOST,
  DEFAULT_PORT,
  type Flags,
  formatHelp,
  parseFlags,
  USAGE,
  UsageError,
} from "./cli/flags.ts";
export { handlerFromModule, resolveTarget, type Target } from "./cli/app.ts";
export { type AccessLogEntry, formatAccessLog, formatClfDate } from "./cli/access_log.ts";
export { type BannerOptions, formatBanner, printBanner } from "./cli/banner.ts";
export { CliError, describeListenError } from "./cli/errors.ts";

// A worker thread on Deno runs this module too, as its entry point: it waits
// for the supervisor's start message instead. No top-level await: while one
// is pending, Bun does not exit on an uncaught error, and a crashed app would
// hang instead of ending its worker.
const thread = threadScope();
if (thread) serveAsThread(thread, runCli);
else if (isEntryPoint(import.meta)) main(process.argv.slice(2)).then((code) => process.exit(code));
